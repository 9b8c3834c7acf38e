//! What each token may read: an account token its own account, a hedge token also the clients it
//! covers, the viewer and operators everything.

use crate::common::*;
use hedge_center_api::client::EventSubscription;
use hedge_center_api::model::*;
use hedge_domain::{Login, Side};
use reqwest::Method;
use std::time::Duration;

both_backends!(reads_are_scoped, event_stream_is_scoped,);

/// A hedge account other than [`HEDGE`]: [`CLIENT2`] is hedged there, so [`HEDGE`] does not
/// cover it.
const OTHER_HEDGE: Login = Login(2999);

async fn setup(env: &Env) {
    env.register_defaults().await;
    let mut reg = client_registration(CLIENT2, "1");
    reg.hedge_login = Some(OTHER_HEDGE);
    env.client2.register_account(&reg).await.unwrap();
    env.client
        .report_position(&open(CLIENT, 1, "EURUSD", Side::Buy, "0.1"))
        .await
        .unwrap();
    env.client2
        .report_position(&open(CLIENT2, 1, "EURUSD", Side::Buy, "0.2"))
        .await
        .unwrap();
}

async fn logins_in(env: &Env, token: &str, path: &str) -> Vec<u64> {
    let (s, body) = env.raw(Method::GET, path, Some(token), None).await;
    assert_eq!(s, 200, "{path}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let items = v.get("items").unwrap_or(&v).as_array().unwrap().clone();
    items
        .iter()
        .map(|i| i["login"].as_u64().unwrap_or(0))
        .collect()
}

async fn reads_are_scoped(b: Backend) {
    let env = Env::start(b).await;
    setup(&env).await;
    let forbidden = [
        "/v1/accounts/1002",
        "/v1/positions?login=1002",
        "/v1/positions/1002/1",
        "/v1/events?login=1002",
        "/v1/hedges",
        "/v1/hedges?login=2001",
    ];
    for token in [CLIENT_TOKEN, TUMBLER_TOKEN] {
        for path in forbidden {
            let (s, body) = env.raw(Method::GET, path, Some(token), None).await;
            assert_eq!(s, 403, "{path}: {body}");
        }
        assert_eq!(logins_in(&env, token, "/v1/accounts").await, [1001]);
        assert_eq!(logins_in(&env, token, "/v1/positions").await, [1001]);
        let own = env
            .raw(Method::GET, "/v1/positions?login=1001", Some(token), None)
            .await;
        assert_eq!(own.0, 200, "{}", own.1);
        let events = logins_in(&env, token, "/v1/events").await;
        assert!(
            !events.is_empty() && events.iter().all(|l| *l == 1001),
            "{events:?}"
        );
    }
    // The hedge token reads itself and the client it covers, not the one hedged elsewhere.
    for path in [
        "/v1/accounts/1002",
        "/v1/positions/1002/1",
        "/v1/hedges?login=2999",
    ] {
        let (s, body) = env.raw(Method::GET, path, Some(HEDGE_TOKEN), None).await;
        assert_eq!(s, 403, "{path}: {body}");
    }
    assert_eq!(
        logins_in(&env, HEDGE_TOKEN, "/v1/accounts").await,
        [1001, 2001]
    );
    assert_eq!(logins_in(&env, HEDGE_TOKEN, "/v1/positions").await, [1001]);
    let (s, body) = env
        .raw(Method::GET, "/v1/positions/1001/1", Some(HEDGE_TOKEN), None)
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = env
        .raw(
            Method::GET,
            "/v1/hedges?login=2001&open=true",
            Some(HEDGE_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let events = logins_in(&env, HEDGE_TOKEN, "/v1/events").await;
    assert!(
        events.iter().all(|l| [1001, 2001].contains(l)),
        "{events:?}"
    );
    // The viewer and operators read everything.
    for token in [VIEWER_TOKEN, ADMIN_TOKEN] {
        assert_eq!(logins_in(&env, token, "/v1/positions").await, [1001, 1002]);
        let (s, body) = env
            .raw(Method::GET, "/v1/positions/1002/1", Some(token), None)
            .await;
        assert_eq!(s, 200, "{body}");
    }
    // Metrics and the API description need a token (any) unless the center was told otherwise.
    for path in ["/metrics", "/openapi.json"] {
        assert_eq!(
            env.raw(Method::GET, path, None, None).await.0,
            401,
            "{path}"
        );
        let (s, body) = env.raw(Method::GET, path, Some(CLIENT_TOKEN), None).await;
        assert_eq!(s, 200, "{path}: {body}");
    }
    env.finish().await;
}

/// Events from `sub` until one about `login`'s position `id` arrives; panics after 10 s.
async fn until_position(sub: &mut EventSubscription, login: Login, id: u64) -> Vec<Event> {
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = sub.next().await {
            let e = e.unwrap();
            let done = e.login == Some(login) && e.data["position_id"] == id;
            seen.push(e);
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event of position {login}/{id}: {seen:?}"));
    seen
}

async fn event_stream_is_scoped(b: Backend) {
    let env = Env::start(b).await;
    setup(&env).await;
    let mut client2 = env.client2.subscribe(Some(EventId(0)));
    let mut hedge = env.hedge.subscribe(Some(EventId(0)));
    // Replayed from the log: only the token's own account.
    let replayed = until_position(&mut client2, CLIENT2, 1).await;
    assert!(
        replayed.iter().all(|e| e.login == Some(CLIENT2)),
        "{replayed:?}"
    );
    // Live: a position of another account is left out, the next one of its own arrives.
    env.client
        .report_position(&open(CLIENT, 2, "EURUSD", Side::Buy, "0.1"))
        .await
        .unwrap();
    env.client2
        .report_position(&open(CLIENT2, 2, "EURUSD", Side::Buy, "0.1"))
        .await
        .unwrap();
    let live = until_position(&mut client2, CLIENT2, 2).await;
    assert!(live.iter().all(|e| e.login == Some(CLIENT2)), "{live:?}");
    // The hedger sees the client it covers, never the one hedged elsewhere.
    let seen = until_position(&mut hedge, CLIENT, 2).await;
    assert!(seen.iter().all(|e| e.login != Some(CLIENT2)), "{seen:?}");
    assert!(seen.iter().any(|e| e.login == Some(CLIENT)), "{seen:?}");
    env.finish().await;
}
