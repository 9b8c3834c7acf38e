//! Running a center: in-process (tests, the demo) or from the `hedge center` command.

use crate::api::{self, AppState};
use crate::auth::Tokens;
use crate::events::Hub;
use crate::legacy;
use crate::limits::{self, ConnLimits, Slots};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, StoreLocation};
use hedge_domain::{SharedClock, SystemClock};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Everything a center needs to start.
#[derive(Clone, Debug)]
pub struct CenterConfig {
    pub store: StoreLocation,
    /// Where `/v1` is served (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    pub tokens: Tokens,
    /// Serve the legacy endpoints. They are served on `listen` when that is a loopback address,
    /// otherwise only on `legacy_listen` (loopback by default), never on a public address.
    pub legacy: bool,
    pub legacy_listen: SocketAddr,
    /// Required by the legacy endpoints when set; needed to serve them on a non-loopback address.
    pub legacy_token: Option<legacy::LegacyToken>,
    /// Interval of SSE heartbeat comments.
    pub sse_heartbeat: Duration,
    /// SQLite commit durability (FULL by default).
    pub synchronous: crate::store::Synchronous,
    /// How long status heartbeat events are kept; `None` keeps them forever.
    pub status_retention: Option<Duration>,
    /// Timeouts and connection cap of the listeners.
    pub limits: ConnLimits,
    /// Serve `/metrics` and `/openapi.json` without a token (for a scraper on a trusted network).
    pub public_metrics: bool,
    /// The time written on everything the center records (events, hedges, accounts) and the
    /// heartbeats' retention is measured against; the system clock but in tests.
    pub clock: SharedClock,
}

impl CenterConfig {
    /// SQLite at `path`, listening on 127.0.0.1 with a free port, with these tokens.
    pub fn sqlite(path: impl Into<std::path::PathBuf>, tokens: Tokens) -> Self {
        CenterConfig {
            store: StoreLocation::Sqlite(path.into()),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens,
            legacy: false,
            legacy_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            legacy_token: None,
            sse_heartbeat: Duration::from_secs(15),
            synchronous: crate::store::Synchronous::Full,
            status_retention: Some(DEFAULT_STATUS_RETENTION),
            limits: ConnLimits::default(),
            public_metrics: false,
            clock: SystemClock::shared(),
        }
    }
}

/// Status heartbeats older than this are pruned unless configured otherwise.
pub const DEFAULT_STATUS_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often the pruner looks for status heartbeats past their retention.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Heartbeats deleted per write: small enough that a report queued behind it barely waits.
const PRUNE_BATCH: u32 = 500;

/// The time before which heartbeats are pruned. A retention too long to express keeps everything.
fn prune_before(now_ms: i64, retention: Duration) -> i64 {
    let kept = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    now_ms.saturating_sub(kept)
}

/// Deletes status heartbeats past `retention`, in small writes, every [`PRUNE_EVERY`] (the first
/// time a minute after start), until shutdown.
fn spawn_pruner(
    store: Store,
    clock: SharedClock,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut wait = Duration::from_secs(60);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            wait = PRUNE_EVERY;
            let before = prune_before(clock.now_ms(), retention);
            let mut pruned = 0u64;
            loop {
                match store.prune_status_events(before, PRUNE_BATCH).await {
                    Ok(n) => {
                        pruned += n;
                        if n < u64::from(PRUNE_BATCH) {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "pruning old status heartbeats failed");
                        break;
                    }
                }
            }
            if pruned > 0 {
                tracing::info!(pruned, "old status heartbeats pruned");
            }
        }
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid tokens: {0}")]
    Tokens(#[from] crate::auth::TokenError),
    #[error(
        "the legacy endpoints would be served on {0}, which is not a loopback address: \
         set a legacy token (--legacy-token) or use a loopback --legacy-listen"
    )]
    LegacyPublic(SocketAddr),
    #[error("cannot prepare the database file {path}: {source}")]
    DbFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the event stream: {0}")]
    Events(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running center.
pub struct CenterHandle {
    /// Where `/v1` is served.
    pub addr: SocketAddr,
    /// Where the legacy endpoints are served, when enabled.
    pub legacy_addr: Option<SocketAddr>,
    pub store_kind: &'static str,
    store: Store,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl CenterHandle {
    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for the servers to end; the store's writer finishes its queue.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        self.store.close();
    }

    /// Resolves when the servers stop (error or shutdown).
    pub async fn wait(&mut self) {
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

async fn bind(at: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind { addr: at, source };
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    Ok((listener, addr))
}

/// Makes the SQLite database owner-only before SQLite opens it: SQLite gives its `-wal` and
/// `-shm` files the database's mode, so they follow. Files left by an older version are
/// tightened too.
#[cfg(unix)]
fn private_db_files(db: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(db)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn private_db_files(_db: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

/// The center as a library.
pub struct CenterServer;

impl CenterServer {
    pub async fn start(config: CenterConfig) -> Result<CenterHandle, StartError> {
        config.tokens.check()?;
        // Where the legacy endpoints go: beside `/v1` on a loopback address, else on their own.
        let legacy_apart = config.legacy && !config.listen.ip().is_loopback();
        if legacy_apart && !config.legacy_listen.ip().is_loopback() && config.legacy_token.is_none()
        {
            return Err(StartError::LegacyPublic(config.legacy_listen));
        }
        // Bound before the store is touched: a busy port must not leave a migrated database.
        let (listener, addr) = bind(config.listen).await?;
        let legacy_listener = match legacy_apart {
            true => Some(bind(config.legacy_listen).await?),
            false => None,
        };
        if let StoreLocation::Sqlite(path) = &config.store {
            private_db_files(path).map_err(|source| StartError::DbFile {
                path: path.clone(),
                source,
            })?;
        }
        let store = Store::open_with(&config.store, config.synchronous).await?;
        let metrics = Arc::new(Metrics::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let hub = Hub::start(
            store.clone(),
            metrics.clone(),
            config.sse_heartbeat,
            shutdown_rx.clone(),
        )
        .await
        .map_err(|e| StartError::Events(e.to_string()))?;
        let state = Arc::new(AppState {
            store: store.clone(),
            hub,
            tokens: config.tokens.clone(),
            metrics,
            legacy: config.legacy,
            public_metrics: config.public_metrics,
            clock: config.clock.clone(),
        });
        let mut app = api::router(state.clone());
        let mut tasks = Vec::new();
        let slots = Slots::new(&config.limits);
        let mut legacy_addr = None;
        let legacy_app = || legacy::router(state.clone(), config.legacy_token.clone());
        if let Some((l, at)) = legacy_listener {
            legacy_addr = Some(at);
            tasks.push(limits::serve(
                l,
                legacy_app(),
                config.limits.clone(),
                slots.clone(),
                shutdown_rx.clone(),
            ));
        } else if config.legacy {
            app = legacy_app().merge(app);
            legacy_addr = Some(addr);
        }
        if let Some(retention) = config.status_retention {
            // Not in `tasks`: shutdown waits for the servers, the pruner just stops.
            spawn_pruner(
                store.clone(),
                config.clock.clone(),
                retention,
                shutdown_rx.clone(),
            );
        }
        tasks.push(limits::serve(
            listener,
            app,
            config.limits.clone(),
            slots,
            shutdown_rx,
        ));
        Ok(CenterHandle {
            addr,
            legacy_addr,
            store_kind: store.kind(),
            store,
            shutdown,
            tasks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retention_too_long_to_express_prunes_nothing() {
        let now = 1_800_000_000_000;
        assert_eq!(
            prune_before(now, Duration::from_secs(7 * 24 * 3600)),
            now - 7 * 24 * 3600 * 1000
        );
        // `--status-retention-days` near u64::MAX: the cutoff lies before any event.
        assert!(prune_before(now, Duration::from_secs(u64::MAX)) < 0);
        assert!(prune_before(now, Duration::from_secs(u64::MAX / 2)) < 0);
    }
}
