//! Refusals at the edges: tokens, legacy access and writes, exact numbers and visible symbols,
//! start-up order and file modes.

mod common;

use common::*;
use hedge_center::auth::{Role, TokenEntry, Tokens};
use hedge_center::legacy::LegacyToken;
use hedge_center::server::StartError;
use hedge_center::{CenterConfig, CenterServer};
use std::net::SocketAddr;

const LEGACY_TOKEN: &str = "legacy-secret-token-1";

fn sqlite_config(dir: &tempfile::TempDir) -> CenterConfig {
    CenterConfig::sqlite(dir.path().join("center.db"), tokens())
}

#[tokio::test]
async fn two_tokens_with_one_secret_do_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(&dir);
    config.tokens = Tokens::new(vec![
        TokenEntry::new("client-1001", Role::Client(CLIENT), "same-secret-for-both").unwrap(),
        TokenEntry::new("ops", Role::Admin, "same-secret-for-both").unwrap(),
    ]);
    let Err(err) = CenterServer::start(config).await else {
        panic!("started with a shared secret");
    };
    let text = err.to_string();
    assert!(
        text.contains("(client-1001) and #2 (ops) share a secret"),
        "{text}"
    );
    assert!(!dir.path().join("center.db").exists());
}

#[tokio::test]
async fn legacy_on_a_public_address_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(&dir);
    config.legacy = true;
    config.listen = SocketAddr::from(([0, 0, 0, 0], 0));
    config.legacy_listen = SocketAddr::from(([0, 0, 0, 0], 0));
    let Err(err) = CenterServer::start(config.clone()).await else {
        panic!("legacy served on all interfaces without a token");
    };
    assert!(matches!(err, StartError::LegacyPublic(_)), "{err}");
    assert!(err.to_string().contains("--legacy-token"), "{err}");

    config.legacy_token = Some(LegacyToken::new(LEGACY_TOKEN).unwrap());
    let center = CenterServer::start(config).await.unwrap();
    let port = center.legacy_addr.unwrap().port();
    let url = format!("http://127.0.0.1:{port}/all_positions/");
    let http = reqwest::Client::new();
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = http
        .get(&url)
        .bearer_auth("not-the-legacy-token")
        .send()
        .await;
    assert_eq!(wrong.unwrap().status(), 401);
    let bearer = http.get(&url).bearer_auth(LEGACY_TOKEN).send().await;
    assert_eq!(bearer.unwrap().status(), 200);
    let query = http.get(format!("{url}?token={LEGACY_TOKEN}")).send().await;
    assert_eq!(query.unwrap().status(), 200);
    center.shutdown().await;
}

async fn legacy_book(env: &Env) -> String {
    let (status, body) = env
        .raw(reqwest::Method::GET, "/all_positions/", None, None)
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<String>(&body).unwrap()
}

async fn legacy_write(env: &Env, key: Option<&str>, body: &str) -> (u16, bool, String) {
    let mut req = env
        .http
        .get(format!("{}/new_position/", env.url))
        .body(body.to_owned());
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let replayed = resp
        .headers()
        .get("idempotent-replay")
        .is_some_and(|v| v == "true");
    (status, replayed, resp.text().await.unwrap())
}

async fn legacy_writes_are_idempotent_and_strict(backend: Backend) {
    let env = Env::start(backend).await;
    let body = r#"{"symbol":"EURUSD","volume":0.1,"side":0}"#;
    assert_eq!(legacy_write(&env, Some("k-1"), body).await.0, 200);
    let (status, replayed, _) = legacy_write(&env, Some("k-1"), body).await;
    assert_eq!((status, replayed), (200, true));
    let other = r#"{"symbol":"EURUSD","volume":0.2,"side":0}"#;
    let (status, _, text) = legacy_write(&env, Some("k-1"), other).await;
    assert_eq!(status, 409, "{text}");
    assert_eq!(
        legacy_book(&env).await,
        r#"{"EURUSD":{"volume":0.1,"side":0}}"#
    );
    // The key outlives the process: a client resending after the center restarted is answered
    // again, not stored twice.
    let mut env = env;
    if let Some(h) = env.handle.take() {
        h.shutdown().await;
    }
    let handle = common::start_at(env.location.clone()).await;
    env.url = handle.url();
    env.handle = Some(handle);
    let (status, replayed, _) = legacy_write(&env, Some("k-1"), body).await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(
        legacy_book(&env).await,
        r#"{"EURUSD":{"volume":0.1,"side":0}}"#
    );

    let twice = r#"{"symbol":"EURUSD","volume":0.1,"volume":5,"side":0}"#;
    let (status, _, text) = legacy_write(&env, None, twice).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("more than once"), "{text}");
    let rounded = r#"{"symbol":"EURUSD","volume":0.10000000000000000001,"side":0}"#;
    let (status, _, text) = legacy_write(&env, None, rounded).await;
    assert_eq!(status, 422, "{text}");
    let hidden = r#"{"symbol":"EUR\u200bUSD","volume":0.1,"side":0}"#;
    let (status, _, text) = legacy_write(&env, None, hidden).await;
    assert_eq!(status, 422, "{text}");
    assert_eq!(
        legacy_book(&env).await,
        r#"{"EURUSD":{"volume":0.1,"side":0}}"#
    );
    env.finish().await;
}

async fn v1_refuses_rounded_numbers_and_invisible_characters(backend: Backend) {
    let env = Env::start(backend).await;
    env.register_defaults().await;
    let post = |body: String| {
        let env = &env;
        async move {
            env.raw(
                reqwest::Method::POST,
                "/v1/positions/events",
                Some(CLIENT_TOKEN),
                Some(&body),
            )
            .await
        }
    };
    let good =
        serde_json::to_string(&open(CLIENT, 1, "EURUSD", hedge_domain::Side::Buy, "0.1")).unwrap();
    assert!(good.contains(r#""volume":0.1,"#), "{good}");
    let cases = [
        good.replace(r#""volume":0.1,"#, r#""volume":0.10000000000000000001,"#),
        good.replace(r#""symbol":"EURUSD""#, r#""symbol":"EUR\u200bUSD""#),
        good.replace(r#""symbol":"EURUSD""#, r#""symbol":"EUR\u202eDSU""#),
        good.replace(r#""comment":"test""#, r#""comment":"a\u202eb""#),
        good.replace(r#""comment":"test""#, r#""comment":"a\u0007b""#),
    ];
    for (i, body) in cases.iter().enumerate() {
        assert_ne!(body, &good, "case {i} changed nothing");
        let (status, text) = post(body.clone()).await;
        assert_eq!(status, 422, "case {i}: {text}");
    }
    let positions = env.admin.positions(&Default::default()).await.unwrap();
    assert!(positions.items.is_empty(), "{positions:?}");
    let (status, text) = post(good).await;
    assert_eq!(status, 200, "{text}");
    env.finish().await;
}

both_backends!(
    legacy_writes_are_idempotent_and_strict,
    v1_refuses_rounded_numbers_and_invisible_characters
);

#[tokio::test]
async fn a_busy_port_leaves_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = sqlite_config(&dir);
    config.listen = busy.local_addr().unwrap();
    let Err(err) = CenterServer::start(config).await else {
        panic!("started on a busy port");
    };
    assert!(matches!(err, StartError::Bind { .. }), "{err}");
    assert!(!dir.path().join("center.db").exists());
}

#[cfg(unix)]
#[tokio::test]
async fn database_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let center = CenterServer::start(sqlite_config(&dir)).await.unwrap();
    let client = hedge_center::CenterClient::new(center.url(), Some(CLIENT_TOKEN.into())).unwrap();
    client
        .register_account(&client_registration(CLIENT, "1"))
        .await
        .unwrap();
    let mut seen = 0;
    for name in ["center.db", "center.db-wal", "center.db-shm"] {
        if let Ok(meta) = std::fs::metadata(dir.path().join(name)) {
            seen += 1;
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        }
    }
    assert!(seen >= 2, "the database and its WAL exist");
    center.shutdown().await;
}

#[tokio::test]
async fn a_token_holds_a_bounded_number_of_event_streams() {
    let env = Env::start(Backend::Sqlite).await;
    let open = |token: &'static str| {
        let http = env.http.clone();
        let url = format!("{}/v1/events/stream?after=0", env.url);
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let mut streams = Vec::new();
    for _ in 0..hedge_center::events::MAX_STREAMS_PER_TOKEN {
        let resp = open(VIEWER_TOKEN).await;
        assert_eq!(resp.status(), 200);
        streams.push(resp);
    }
    let refused = open(VIEWER_TOKEN).await;
    assert_eq!(refused.status(), 429);
    let text = refused.text().await.unwrap();
    assert!(text.contains("dashboard already has"), "{text}");
    // Another token is not affected.
    assert_eq!(open(ADMIN_TOKEN).await.status(), 200);
    // A closed stream gives its place back.
    streams.pop();
    let mut reopened = false;
    for _ in 0..50 {
        if open(VIEWER_TOKEN).await.status() == 200 {
            reopened = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(reopened, "the closed stream's place was not given back");
    drop(streams);
    env.finish().await;
}

#[tokio::test]
async fn public_metrics_serves_metrics_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(&dir);
    config.public_metrics = true;
    let center = CenterServer::start(config).await.unwrap();
    let http = reqwest::Client::new();
    for path in ["/metrics", "/openapi.json"] {
        let resp = http
            .get(format!("{}{path}", center.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    // Still no data without a token.
    let resp = http
        .get(format!("{}/v1/positions", center.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    center.shutdown().await;
}
