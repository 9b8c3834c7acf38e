//! Test harness: a center on SQLite (temporary file) or PostgreSQL (fresh schema), over real HTTP.
#![allow(dead_code)]

use hedge_center::auth::{Role, TokenEntry, Tokens};
use hedge_center::store::StoreLocation;
use hedge_center::{CenterConfig, CenterHandle, CenterServer};
use hedge_center_api::model::*;
use hedge_center_api::CenterClient;
use hedge_domain::{
    AccountMarginMode, Login, Magic, PositionId, SharedClock, Side, SymbolMap, SymbolSpec,
    SystemClock, Volume,
};
use rust_decimal::Decimal;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

pub mod world;
#[allow(unused_imports)] // not every test binary uses the shared world
pub use world::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const CLIENT: Login = Login(1001);
pub const CLIENT2: Login = Login(1002);
pub const HEDGE: Login = Login(2001);

pub const CLIENT_TOKEN: &str = "client-secret-1001";
pub const CLIENT2_TOKEN: &str = "client-secret-1002";
pub const HEDGE_TOKEN: &str = "hedge-secret-2001";
pub const ADMIN_TOKEN: &str = "admin-secret-0000";
pub const VIEWER_TOKEN: &str = "viewer-secret-000";
/// The tumbler on the copier's client account, [`CLIENT`].
pub const TUMBLER_TOKEN: &str = "tumbler-secret-1001";

pub fn tokens() -> Tokens {
    Tokens::new(vec![
        TokenEntry::new("client-1001", Role::Client(CLIENT), CLIENT_TOKEN).unwrap(),
        TokenEntry::new("client-1002", Role::Client(CLIENT2), CLIENT2_TOKEN).unwrap(),
        TokenEntry::new("hedge-2001", Role::Hedge(HEDGE), HEDGE_TOKEN).unwrap(),
        TokenEntry::new("ops", Role::Admin, ADMIN_TOKEN).unwrap(),
        TokenEntry::new("dashboard", Role::Viewer, VIEWER_TOKEN).unwrap(),
        TokenEntry::new("tumbler-1001", Role::Tumbler(CLIENT), TUMBLER_TOKEN).unwrap(),
    ])
}

pub fn pg_conninfo() -> String {
    std::env::var("HEDGE_TEST_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

pub struct Env {
    pub handle: Option<CenterHandle>,
    pub backend: Backend,
    pub location: StoreLocation,
    pub url: String,
    pub admin: CenterClient,
    pub client: CenterClient,
    pub client2: CenterClient,
    pub hedge: CenterClient,
    pub viewer: CenterClient,
    pub anonymous: CenterClient,
    pub http: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

fn client(url: &str, token: &str) -> CenterClient {
    CenterClient::new(url, Some(token.to_owned())).unwrap()
}

pub async fn start_at(location: StoreLocation) -> CenterHandle {
    start_with_clock(location, SystemClock::shared()).await
}

/// A center whose every timestamp comes from `clock`.
pub async fn start_with_clock(location: StoreLocation, clock: SharedClock) -> CenterHandle {
    let mut config = CenterConfig::sqlite("unused", tokens());
    config.store = location.clone();
    config.clock = clock;
    config.legacy = true;
    config.sse_heartbeat = Duration::from_millis(300);
    match CenterServer::start(config).await {
        Ok(h) => h,
        Err(e) => match location {
            StoreLocation::Postgres { .. } => panic!(
                "PostgreSQL is required for this test and is unreachable ({e}); \
                 start it on 127.0.0.1:5432 (database `test`) or set HEDGE_TEST_PG"
            ),
            _ => panic!("center did not start: {e}"),
        },
    }
}

/// A store nobody used yet: a SQLite file in a temporary directory (kept while the returned
/// directory lives) or a fresh PostgreSQL schema.
pub fn fresh_location(backend: Backend) -> (StoreLocation, Option<tempfile::TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            (
                StoreLocation::Sqlite(dir.path().join("center.db")),
                Some(dir),
            )
        }
        Backend::Postgres => {
            let schema = format!("hedge_test_{:016x}", rand::random::<u64>());
            (
                StoreLocation::Postgres {
                    url: pg_conninfo(),
                    schema: Some(schema),
                },
                None,
            )
        }
    }
}

impl Env {
    pub async fn start(backend: Backend) -> Env {
        Env::start_with_clock(backend, SystemClock::shared()).await
    }

    pub async fn start_with_clock(backend: Backend, clock: SharedClock) -> Env {
        let (location, dir) = fresh_location(backend);
        let handle = start_with_clock(location.clone(), clock).await;
        let url = handle.url();
        Env {
            backend,
            location,
            admin: client(&url, ADMIN_TOKEN),
            client: client(&url, CLIENT_TOKEN),
            client2: client(&url, CLIENT2_TOKEN),
            hedge: client(&url, HEDGE_TOKEN),
            viewer: client(&url, VIEWER_TOKEN),
            anonymous: CenterClient::new(&url, None).unwrap(),
            http: reqwest::Client::new(),
            url,
            handle: Some(handle),
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.as_ref().unwrap().addr
    }

    /// Stops the center and drops the PostgreSQL schema.
    pub async fn finish(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
        if let StoreLocation::Postgres {
            url,
            schema: Some(schema),
        } = &self.location
        {
            drop_schema(url, schema).await;
        }
    }

    pub async fn register_defaults(&self) {
        self.hedge
            .register_account(&hedge_registration())
            .await
            .unwrap();
        self.client
            .register_account(&client_registration(CLIENT, "1"))
            .await
            .unwrap();
    }

    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.body(b.to_owned());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }
}

impl Env {
    /// `POST /v1/actions` with `body` as sent; `key` is the Idempotency-Key header (none when
    /// `None`). Returns the status, whether the answer was marked a replay, and the body.
    pub async fn raw_action(
        &self,
        token: Option<&str>,
        key: Option<&str>,
        body: &str,
    ) -> (u16, bool, String) {
        let mut req = self
            .http
            .post(format!("{}/v1/actions", self.url))
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let replayed = resp
            .headers()
            .get("idempotent-replay")
            .is_some_and(|v| v.as_bytes() == b"true");
        (status, replayed, resp.text().await.unwrap())
    }
}

impl Drop for Env {
    /// A failed test does not reach `finish`: still drop its schema.
    fn drop(&mut self) {
        if let StoreLocation::Postgres {
            url,
            schema: Some(schema),
        } = self.location.clone()
        {
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(drop_schema(&url, &schema));
                }
            })
            .join();
        }
    }
}

pub async fn drop_schema(url: &str, schema: &str) {
    if let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await;
    }
}

pub fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub fn vol(s: &str) -> Volume {
    Volume(dec(s))
}

pub fn spec(name: &str, min: &str, step: &str, max: &str) -> SymbolSpec {
    let mut s = SymbolSpec::forex(name, 5);
    s.volume_min = vol(min);
    s.volume_step = vol(step);
    s.volume_max = vol(max);
    s
}

pub fn hedge_registration() -> AccountRegistration {
    AccountRegistration {
        login: HEDGE,
        role: AccountRole::Hedge,
        server: "Hedge-Server".into(),
        company: "Hedge Broker".into(),
        margin_mode: AccountMarginMode::RetailHedging,
        symbol_map: SymbolMap::from_affix(".h")
            .with_explicit("GOLD=XAUUSD")
            .unwrap(),
        hedge_ratio: Decimal::ONE,
        hedge_login: None,
        symbols: vec![
            spec("EURUSD.h", "0.01", "0.01", "100"),
            spec("GBPUSD.h", "0.1", "0.1", "2"),
            spec("GOLD", "0.01", "0.01", "50"),
        ],
        currency: "USD".into(),
    }
}

pub fn client_registration(login: Login, ratio: &str) -> AccountRegistration {
    AccountRegistration {
        login,
        role: AccountRole::Client,
        server: "Client-Server".into(),
        company: "Client Broker".into(),
        margin_mode: AccountMarginMode::RetailHedging,
        symbol_map: SymbolMap::from_affix(".r"),
        hedge_ratio: dec(ratio),
        hedge_login: None,
        // What the client agent registers: its own specs, under its names.
        symbols: ["EURUSD", "GBPUSD", "XAUUSD", "USDJPY", "AUDUSD"]
            .iter()
            .map(|s| SymbolSpec::forex(format!("{s}.r"), 5))
            .collect(),
        currency: "USD".into(),
    }
}

pub fn report(
    login: Login,
    kind: PositionEventKind,
    id: u64,
    symbol: &str,
    side: Side,
    volume: &str,
    seq: u64,
) -> PositionReport {
    PositionReport {
        kind,
        login,
        position_id: PositionId(id),
        symbol: symbol.into(),
        account_symbol: format!("{symbol}.r"),
        side,
        volume: vol(volume),
        price: Some(hedge_domain::Price(dec("1.1"))),
        sl: None,
        tp: None,
        time_ms: 1_700_000_000_000 + seq as i64,
        magic: Magic(7),
        comment: "test".into(),
        seq,
        idempotency_key: IdempotencyKey::report(login, PositionId(id), seq),
        exit: None,
    }
}

pub fn open(login: Login, id: u64, symbol: &str, side: Side, volume: &str) -> PositionReport {
    report(login, PositionEventKind::Open, id, symbol, side, volume, 1)
}

/// Runs one async test body against a backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}
