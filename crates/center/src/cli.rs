//! `hedge center`: runs the decision center.
//!
//! With no arguments it stores in `hedge-center.db` in the working directory and listens on
//! `127.0.0.1:8080`. Tokens come from `--config` (`[[token]]` tables) and/or `HEDGE_CENTER_TOKENS`.
//! When none is configured the center does not run open: it creates an admin token once, keeps it
//! in `hedge-center.token` (mode 0600, next to the database) and prints where it is, never the
//! token itself.

use crate::auth::{parse_env_tokens, Role, TokenConfig, TokenEntry, Tokens};
use crate::hosts::AllowedHosts;
use crate::legacy::LegacyToken;
use crate::limits::ConnLimits;
use crate::server::{CenterConfig, CenterServer};
use crate::store::StoreLocation;
use anyhow::Context;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
The dashboard is served at / of the --listen address (http://127.0.0.1:8080/ by default); sign in \
with an admin or viewer token.

Tokens: [[token]] tables in --config and/or HEDGE_CENTER_TOKENS, entries role[:login]=token \
separated by commas or spaces, e.g. \
HEDGE_CENTER_TOKENS='client:1001=s3cret-1,hedge:2001=s3cret-2,admin=s3cret-3' (roles: client, \
hedge, tumbler with their login; admin, viewer). With none configured the center creates an admin \
token once in --token-file and prints where it is.")]
pub struct CenterArgs {
    /// Store: a SQLite file path (default `hedge-center.db`), or `postgres://user@host/db`.
    #[arg(long)]
    pub db: Option<String>,
    /// PostgreSQL schema to use (created if missing).
    #[arg(long)]
    pub pg_schema: Option<String>,
    /// Address of the API (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Serve the legacy center's `/new_position/` and `/all_positions/` endpoints.
    #[arg(long)]
    pub legacy: bool,
    /// Where the legacy endpoints are served when `--listen` is not a loopback address.
    #[arg(long)]
    pub legacy_listen: Option<SocketAddr>,
    /// Token the legacy endpoints require (as `Authorization: Bearer` or `?token=`); needed to
    /// serve them on a non-loopback `--legacy-listen`.
    #[arg(long, env = "HEDGE_CENTER_LEGACY_TOKEN", hide_env_values = true)]
    pub legacy_token: Option<String>,
    /// TOML config file: `db`, `listen`, `legacy`, `legacy_listen` and `[[token]]` entries
    /// (`name`, `role`, `login`, `token` or `token_env`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// File holding the generated admin token when no token is configured [default:
    /// the database's name with `.token` (hedge-center.token), in the working folder with PostgreSQL].
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// SQLite commit durability: `full` (fsync each commit, survives power loss; default) or
    /// `normal` (survives a crash of the center, not a power cut).
    #[arg(long, default_value = "full")]
    pub synchronous: crate::store::Synchronous,
    /// Seconds between SSE heartbeat comments.
    #[arg(long, default_value_t = 15)]
    pub sse_heartbeat_secs: u64,
    /// Days to keep the agents' status heartbeats in the event log (0 keeps them forever).
    /// Decisions are always kept.
    #[arg(long, default_value_t = 7)]
    pub status_retention_days: u64,
    /// Seconds a connection may take to send a complete request head, counted from when the
    /// center waits for one (silent and half-open sockets are closed after it).
    #[arg(long, default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds a request body may take to arrive in full (a stalled body is answered 408).
    #[arg(long, default_value_t = 30)]
    pub body_timeout_secs: u64,
    /// Seconds without a byte in either direction after which a connection is closed (event
    /// streams stay open on their heartbeat, which must be shorter).
    #[arg(long, default_value_t = 120)]
    pub idle_timeout_secs: u64,
    /// Most connections served at once (default: the open-file limit less a margin).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// A host name clients use to reach the center (repeatable). Requests naming another host
    /// are refused (421); IP addresses and `localhost` are always accepted.
    #[arg(long = "allowed-host")]
    pub allowed_hosts: Vec<String>,
    /// Serve `/metrics` and `/openapi.json` without a token (they need any valid token otherwise).
    #[arg(long)]
    pub public_metrics: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    db: Option<String>,
    pg_schema: Option<String>,
    listen: Option<SocketAddr>,
    #[serde(default)]
    legacy: bool,
    legacy_listen: Option<SocketAddr>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    token: Vec<TokenConfig>,
}

/// The generated admin token: read from `path`, or a fresh one that [`run`] writes there only
/// once the center started (a start that fails leaves no file behind).
fn dev_admin_token(path: &Path) -> anyhow::Result<(TokenEntry, Option<String>)> {
    let (secret, fresh) = match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => (text.trim().to_owned(), false),
        _ => (Tokens::generate_secret(), true),
    };
    let entry = TokenEntry::new("admin", Role::Admin, secret.clone())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((entry, fresh.then_some(secret)))
}

/// The generated admin token file: where, and the secret still to write there.
pub struct GeneratedToken {
    pub path: PathBuf,
    unwritten: Option<String>,
}

impl GeneratedToken {
    fn write(&self) -> anyhow::Result<()> {
        if let Some(secret) = &self.unwritten {
            write_private(&self.path, secret).with_context(|| {
                format!("cannot write the admin token file {}", self.path.display())
            })?;
        }
        Ok(())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{text}\n"))
}

/// Builds the configuration from the arguments, the config file and the environment.
pub fn config(args: &CenterArgs) -> anyhow::Result<(CenterConfig, Option<GeneratedToken>)> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let db = args
        .db
        .clone()
        .or(file.db)
        .unwrap_or_else(|| "hedge-center.db".into());
    let mut store = StoreLocation::parse(&db);
    if let StoreLocation::Postgres { schema, .. } = &mut store {
        *schema = args.pg_schema.clone().or(file.pg_schema);
    }
    let mut entries = Vec::new();
    for (i, t) in file.token.iter().enumerate() {
        entries.push(
            t.entry()
                .map_err(|e| anyhow::anyhow!("config token #{}: {e}", i + 1))?,
        );
    }
    if let Ok(text) = std::env::var("HEDGE_CENTER_TOKENS") {
        entries.extend(
            parse_env_tokens(&text).map_err(|e| anyhow::anyhow!("HEDGE_CENTER_TOKENS: {e}"))?,
        );
    }
    Tokens::new(entries.clone())
        .check()
        .context("refusing to start")?;
    let mut generated = None;
    if entries.is_empty() {
        let path = args.token_file.clone().unwrap_or_else(|| match &store {
            StoreLocation::Sqlite(p) => p.with_extension("token"),
            StoreLocation::Postgres { .. } => PathBuf::from("hedge-center.token"),
        });
        let (entry, unwritten) = dev_admin_token(&path)?;
        entries.push(entry);
        generated = Some(GeneratedToken { path, unwritten });
    }
    let sse_heartbeat = Duration::from_secs(args.sse_heartbeat_secs.max(1));
    let limits = ConnLimits {
        header_read_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
        body_timeout: Duration::from_secs(args.body_timeout_secs.max(1)),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs.max(1)),
        max_connections: args.max_connections,
        allowed_hosts: AllowedHosts::new(
            args.allowed_hosts
                .iter()
                .chain(&file.allowed_hosts)
                .cloned(),
        ),
    };
    if limits.idle_timeout <= sse_heartbeat {
        anyhow::bail!(
            "--idle-timeout-secs ({}) must be longer than --sse-heartbeat-secs ({}), or event streams would be closed between heartbeats",
            limits.idle_timeout.as_secs(),
            sse_heartbeat.as_secs()
        );
    }
    let config = CenterConfig {
        store,
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
        tokens: Tokens::new(entries),
        legacy: args.legacy || file.legacy,
        legacy_listen: args
            .legacy_listen
            .or(file.legacy_listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8081))),
        legacy_token: args
            .legacy_token
            .as_deref()
            .map(LegacyToken::new)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--legacy-token: {e}"))?,
        sse_heartbeat,
        synchronous: args.synchronous,
        status_retention: (args.status_retention_days > 0)
            .then(|| Duration::from_secs(args.status_retention_days.saturating_mul(24 * 3600))),
        limits,
        public_metrics: args.public_metrics,
        clock: hedge_domain::SystemClock::shared(),
    };
    Ok((config, generated))
}

pub async fn run(args: CenterArgs) -> anyhow::Result<()> {
    let (config, generated) = config(&args)?;
    let where_ = match &config.store {
        StoreLocation::Sqlite(p) => format!("sqlite {}", p.display()),
        StoreLocation::Postgres { schema, .. } => {
            format!(
                "postgres{}",
                schema
                    .as_ref()
                    .map(|s| format!(" (schema {s})"))
                    .unwrap_or_default()
            )
        }
    };
    let token_count = config.tokens.len();
    let mut handle = CenterServer::start(config).await?;
    if let Some(token) = &generated {
        if let Err(e) = token.write() {
            handle.shutdown().await;
            return Err(e);
        }
    }
    println!(
        "hedge center listening on {} (store: {where_}, {token_count} token(s))",
        handle.url()
    );
    if let Some(token) = generated {
        println!(
            "no tokens configured: using the admin token in {} (configure tokens with --config or HEDGE_CENTER_TOKENS)",
            token.path.display()
        );
    }
    if let Some(addr) = handle.legacy_addr {
        println!("legacy endpoints on http://{addr}/new_position/ and /all_positions/");
    }
    tokio::select! {
        _ = handle.wait() => anyhow::bail!("the center's server stopped"),
        _ = tokio::signal::ctrl_c() => {
            println!("shutting down");
            handle.shutdown().await;
        }
    }
    Ok(())
}
