//! Tumbler firings and registrations over real HTTP, on SQLite and on PostgreSQL.

mod common;

use common::*;
use hedge_center_api::model::*;
use hedge_domain::{Magic, PositionId, Side};
use reqwest::Method;

both_backends!(
    firings_are_events_stored_once,
    firing_refusals_store_nothing,
    a_tumbler_registration_never_replaces_another_role,
);

fn firing(position: u64) -> TumblerFiring {
    TumblerFiring {
        login: CLIENT,
        position_id: PositionId(position),
        symbol: "EURUSD.a".into(),
        side: Side::Buy,
        volume: vol("0.1"),
        magic: Magic(7),
        time_ms: 1_700_000_000_000,
        killed: vec!["javaw.exe:4242".into(), "terminal64.exe:4243".into()],
        dry_run: false,
        reaction_us: 310,
        idempotency_key: IdempotencyKey::firing(CLIENT, PositionId(position)),
    }
}

async fn firings(env: &Env) -> Vec<Event> {
    env.viewer
        .events(&PageQuery::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.kind == EventKind::TumblerFired)
        .collect()
}

async fn firings_are_events_stored_once(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    env.admin
        .heartbeat(
            CLIENT,
            &AccountStatus {
                connected: true,
                message: Some("client agent running".into()),
                ..AccountStatus::default()
            },
        )
        .await
        .unwrap();
    let tumbler =
        hedge_center_api::CenterClient::new(&env.url, Some(TUMBLER_TOKEN.into())).unwrap();
    let f = firing(501);
    let ack = tumbler.tumbler_fired(&f).await.unwrap();
    assert_eq!(ack.idempotency_key, "tumbler:1001:501");

    // The same firing again: the first answer, marked as a replay, and no second event.
    let body = serde_json::to_string(&f).unwrap();
    let again = env
        .http
        .post(format!("{}/v1/tumbler/firings", env.url))
        .bearer_auth(TUMBLER_TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replay")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let replayed: FiringAck = again.json().await.unwrap();
    assert_eq!(replayed, ack);

    let events = firings(&env).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.id, ack.event_id);
    assert_eq!(e.login, Some(CLIENT));
    assert_eq!(e.symbol.as_deref(), Some("EURUSD.a"));
    assert_eq!(e.actor, "tumbler-1001");
    assert_eq!(e.reason, f.describe());
    assert!(e.reason.contains("javaw.exe:4242, terminal64.exe:4243"));
    let stored: TumblerFiring = serde_json::from_value(e.data.clone()).unwrap();
    assert_eq!(stored, f);
    // The client's status message is the client's: the firing does not replace it, and it is not a
    // change of the plan.
    let account = env.viewer.account(CLIENT).await.unwrap();
    assert_eq!(
        account.status.and_then(|s| s.message).as_deref(),
        Some("client agent running")
    );
    assert!(!EventKind::TumblerFired.moves_plan());

    // An admin may record one too (a firing replayed from an agent's logs, say).
    let mut other = firing(502);
    other.dry_run = true;
    other.killed.clear();
    let second = env.admin.tumbler_fired(&other).await.unwrap();
    assert!(second.event_id > ack.event_id);
    let events = firings(&env).await;
    assert_eq!(events.len(), 2);
    assert!(events[1]
        .reason
        .starts_with("tumbler dry run: position #502"));
    assert!(events[1].reason.contains("would kill nothing"));
    env.finish().await;
}

/// Makes a valid firing invalid in one field.
type Spoil = Box<dyn Fn(&mut TumblerFiring)>;

async fn firing_refusals_store_nothing(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    let before = env.viewer.events(&PageQuery::default()).await.unwrap();
    let tumbler =
        hedge_center_api::CenterClient::new(&env.url, Some(TUMBLER_TOKEN.into())).unwrap();

    // Only the account's own tumbler (or an admin) records its firings.
    let err = env.client.tumbler_fired(&firing(1)).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    let mut elsewhere = firing(1);
    elsewhere.login = CLIENT2;
    let err = tumbler.tumbler_fired(&elsewhere).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    let (s, _) = env
        .raw(
            Method::POST,
            "/v1/tumbler/firings",
            None,
            Some(&serde_json::to_string(&firing(1)).unwrap()),
        )
        .await;
    assert_eq!(s, 401);

    // Bad input: 422 naming the field.
    let cases: Vec<(&str, Spoil)> = vec![
        ("symbol", Box::new(|f| f.symbol.clear())),
        ("volume", Box::new(|f| f.volume = vol("0"))),
        ("volume", Box::new(|f| f.volume = vol("-0.1"))),
        ("time_ms", Box::new(|f| f.time_ms = -1)),
        (
            "idempotency_key",
            Box::new(|f| f.idempotency_key = IdempotencyKey::default()),
        ),
        (
            "idempotency_key",
            Box::new(|f| f.idempotency_key = "k".repeat(201).into()),
        ),
        (
            "killed",
            Box::new(|f| f.killed = (0..65).map(|i| format!("p.exe:{i}")).collect()),
        ),
    ];
    for (field, spoil) in cases {
        let mut f = firing(2);
        spoil(&mut f);
        let err = tumbler.tumbler_fired(&f).await.unwrap_err();
        assert_eq!(err.status(), Some(422), "{field}: {err}");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    for body in [
        "not json",
        "[]",
        r#"{"login": 1001}"#,
        r#"{"login":1001,"position_id":1,"symbol":"EURUSD","side":"up","volume":"0.1","magic":0,"time_ms":1,"killed":[],"dry_run":false,"reaction_us":1}"#,
    ] {
        let (s, text) = env
            .raw(
                Method::POST,
                "/v1/tumbler/firings",
                Some(TUMBLER_TOKEN),
                Some(body),
            )
            .await;
        assert_eq!(s, 422, "{body}: {text}");
    }

    // The same key for a different firing: a conflict, and the first stands.
    tumbler.tumbler_fired(&firing(3)).await.unwrap();
    let mut changed = firing(3);
    changed.reaction_us = 999;
    let err = tumbler.tumbler_fired(&changed).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");

    let after = env.viewer.events(&PageQuery::default()).await.unwrap();
    assert_eq!(after.items.len(), before.items.len() + 1);
    let events = firings(&env).await;
    assert_eq!(events.len(), 1);
    let stored: TumblerFiring = serde_json::from_value(events[0].data.clone()).unwrap();
    assert_eq!(stored, firing(3));
    env.finish().await;
}

async fn a_tumbler_registration_never_replaces_another_role(b: Backend) {
    let env = Env::start(b).await;
    let tumbler =
        hedge_center_api::CenterClient::new(&env.url, Some(TUMBLER_TOKEN.into())).unwrap();
    let mut as_tumbler = client_registration(CLIENT, "1");
    as_tumbler.role = AccountRole::Tumbler;

    // The client agent first: the tumbler's registration leaves the client's in place.
    let client = client_registration(CLIENT, "1");
    env.client.register_account(&client).await.unwrap();
    let answer = tumbler.register_account(&as_tumbler).await.unwrap();
    assert_eq!(answer.registration, client);
    let stored = env.viewer.account(CLIENT).await.unwrap();
    assert_eq!(stored.registration, client);
    let registrations = env
        .viewer
        .events(&PageQuery::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.kind == EventKind::AccountRegistered)
        .count();
    assert_eq!(registrations, 1, "the tumbler's registration was recorded");

    // The tumbler first: the client agent's registration takes the account over.
    let fresh = Env::start(b).await;
    let tumbler =
        hedge_center_api::CenterClient::new(&fresh.url, Some(TUMBLER_TOKEN.into())).unwrap();
    let first = tumbler.register_account(&as_tumbler).await.unwrap();
    assert_eq!(first.registration.role, AccountRole::Tumbler);
    fresh.client.register_account(&client).await.unwrap();
    let stored = fresh.viewer.account(CLIENT).await.unwrap();
    assert_eq!(stored.registration, client);
    // And a tumbler coming back later does not undo it.
    tumbler.register_account(&as_tumbler).await.unwrap();
    assert_eq!(
        fresh.viewer.account(CLIENT).await.unwrap().registration,
        client
    );
    fresh.finish().await;
    env.finish().await;
}
