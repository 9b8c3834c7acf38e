//! Accounts and authentication.

use crate::common::*;
use hedge_center_api::model::*;
use hedge_domain::Login;
use reqwest::Method;

both_backends!(accounts_and_auth, stamped_with_the_centers_clock,);

/// What the center records carries its clock's time, not the agent's nor the machine's.
async fn stamped_with_the_centers_clock(b: Backend) {
    const T0: i64 = 1_700_000_000_000;
    let clock = std::sync::Arc::new(hedge_domain::ManualClock::new(T0));
    let env = Env::start_with_clock(b, clock.clone()).await;
    env.admin
        .register_account(&client_registration(CLIENT, "1"))
        .await
        .unwrap();
    clock.advance(5_000);
    env.admin
        .register_account(&client_registration(CLIENT, "0.5"))
        .await
        .unwrap();
    let account = env.viewer.account(CLIENT).await.unwrap();
    assert_eq!(account.registered_ms, T0);
    assert_eq!(account.last_seen_ms, T0 + 5_000);
    let events = env.viewer.events(&PageQuery::default()).await.unwrap();
    let times: Vec<i64> = events
        .items
        .iter()
        .filter(|e| e.kind == EventKind::AccountRegistered)
        .map(|e| e.time_ms)
        .collect();
    assert_eq!(times, vec![T0, T0 + 5_000]);
    env.finish().await;
}

async fn accounts_and_auth(b: Backend) {
    let env = Env::start(b).await;
    // no token, unknown token, wrong scheme
    let err = env.anonymous.accounts().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_retryable());
    let bad =
        hedge_center_api::CenterClient::new(&env.url, Some("not-a-valid-token".into())).unwrap();
    assert_eq!(bad.accounts().await.unwrap_err().status(), Some(401));
    let (s, _) = env.raw(Method::GET, "/v1/accounts", None, None).await;
    assert_eq!(s, 401);

    env.register_defaults().await;
    // a client may not register another login, nor as a hedge account
    let err = env
        .client
        .register_account(&client_registration(CLIENT2, "1"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    let mut as_hedge = client_registration(CLIENT, "1");
    as_hedge.role = AccountRole::Hedge;
    assert_eq!(
        env.client
            .register_account(&as_hedge)
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    // body/path mismatch and bad ratio
    let (s, body) = env
        .raw(
            Method::PUT,
            "/v1/accounts/1001",
            Some(ADMIN_TOKEN),
            Some(&serde_json::to_string(&client_registration(CLIENT2, "1")).unwrap()),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    let err = env
        .admin
        .register_account(&client_registration(CLIENT2, "-1"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422));

    let accounts = env.viewer.accounts().await.unwrap();
    assert_eq!(
        accounts
            .iter()
            .map(|a| a.registration.login)
            .collect::<Vec<_>>(),
        vec![CLIENT, HEDGE]
    );
    let hedge = env.viewer.account(HEDGE).await.unwrap();
    assert_eq!(hedge.registration, hedge_registration());
    assert_eq!(
        env.viewer.account(Login(5)).await.unwrap_err().status(),
        Some(404)
    );

    // heartbeat: own account only
    let status = AccountStatus {
        connected: true,
        last_event_ms: Some(5),
        outbox_pending: 3,
        breakers: [("EURUSD".to_owned(), BreakerState::Open)]
            .into_iter()
            .collect(),
        message: Some("ok".into()),
        ..AccountStatus::default()
    };
    let a = env.client.heartbeat(CLIENT, &status).await.unwrap();
    assert_eq!(a.status.as_ref(), Some(&status));
    assert_eq!(
        env.client
            .heartbeat(HEDGE, &status)
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    assert_eq!(
        env.admin
            .heartbeat(Login(77), &status)
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    // registering the same thing again records no new event
    let before = env
        .admin
        .events(&PageQuery::default())
        .await
        .unwrap()
        .items
        .len();
    env.hedge
        .register_account(&hedge_registration())
        .await
        .unwrap();
    env.client.heartbeat(CLIENT, &status).await.unwrap();
    let after = env.admin.events(&PageQuery::default()).await.unwrap().items;
    assert_eq!(before, after.len());
    assert!(after
        .iter()
        .any(|e| e.kind == EventKind::AccountStatus && e.actor == "client-1001"));
    env.finish().await;
}
