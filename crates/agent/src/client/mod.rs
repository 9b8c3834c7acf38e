//! `hedge client`: reports every position event of its account to the center, exactly once.
//!
//! The terminal's stream (handshake snapshot, `tx` records, periodic snapshots) goes through the
//! [`Tracker`]; the events it yields are written to the outbox together with the tracker's new state
//! in one transaction, then sent in order by the outbox's sender. On every (re)connection the fresh
//! snapshot is reconciled against the persisted state: positions that vanished while the agent was
//! away are reported closed (with their closing deal from the terminal's history when it has one),
//! and positions that opened and closed entirely while it was away are found in the history.
//!
//! On a netting account the positions are the ledger's bi-directional ones
//! ([`hedge_agent_runtime::netting`]): the whole history is replayed at every (re)connection, each
//! live deal is fed to the ledger, and the tracker sees the ledger's positions instead of the
//! terminal's single net position, so a second buy is an open of its own and a sell reduces the
//! oldest buy first. `native_netting = true` in the config file's `[client]` table keeps the
//! terminal's net position.
//!
//! Entry points: [`run`] (`hedge client`) and [`ClientAgent`]. The agent's loop is here; its parts
//! are `reconcile` (terminal → tracker), `history` (pure reading of history deals), `report`
//! (tracker events → outbox, one transaction per batch), `value` (the heartbeat's valuation),
//! `heartbeat` (status and the center check) and `center_resync` (center ← terminal corrections).

use crate::tracker::{PositionState, Tracker};
use anyhow::Context;
use center_resync::CenterResync;
use hedge_agent_runtime::args::{AgentArgs, AgentSettings};
use hedge_agent_runtime::center::{self, ClientHedging};
use hedge_agent_runtime::netting::NettingBook;
use hedge_agent_runtime::observed::{Observed, TimeMs};
use hedge_agent_runtime::outbox::{Backoff, Outbox, OutboxError};
use hedge_agent_runtime::session::Session;
use hedge_agent_runtime::status::StatusBoard;
use hedge_agent_runtime::valuation::Commissions;
use hedge_center_api::client::CenterClient;
use hedge_center_api::model::AccountRole;
use hedge_protocol::{Hello, Terminal, TerminalEvent};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

mod center_resync;
mod heartbeat;
mod history;
mod reconcile;
mod report;
mod value;

pub use heartbeat::{books_of, spawn_heartbeat, status_of, CenterCheck};
pub use history::observed;
pub use report::report;

/// State namespaces in the outbox database.
pub(crate) const NS_POSITION: &str = "position";
pub(crate) const NS_META: &str = "meta";
pub(crate) const KEY_LAST_SEEN: &str = "last_seen";

/// `hedge client`.
#[derive(clap::Args, Clone, Debug)]
pub struct ClientArgs {
    #[command(flatten)]
    pub agent: AgentArgs,

    /// Also report each open in the prototype's format (`GET /new_position/`) to this
    /// prototype-style center.
    #[arg(long, value_name = "URL")]
    pub legacy_center: Option<String>,

    /// Factor applied to this account's volumes in the hedge plan (default 1).
    #[arg(long, value_name = "RATIO")]
    pub hedge_ratio: Option<Decimal>,

    /// The hedge account covering this client (default: as the operator allocates it; with one
    /// hedge account and no allocation, that account).
    #[arg(long, value_name = "LOGIN")]
    pub hedge_login: Option<u64>,
}

/// The `[client]` table of the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    pub legacy_center: Option<String>,
    pub hedge_ratio: Option<toml::Value>,
    pub hedge_login: Option<u64>,
    /// On a netting account, report the terminal's single net position per symbol instead of the
    /// ledger's bi-directional positions.
    #[serde(default)]
    pub native_netting: bool,
}

/// What the client reports and where.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Report every event to the center's `/v1` API.
    pub center: bool,
    /// Report opens to a prototype-style center.
    pub legacy: bool,
    pub hedging: ClientHedging,
    /// Netting accounts: the terminal's net positions instead of the ledger's.
    pub native_netting: bool,
}

/// Why the client agent's loop stopped. Neither is worth retrying in the same run: the state
/// database failed, or what it holds cannot be read or written; the agent exits, and a restart
/// resumes from the last durable state.
#[derive(Debug, thiserror::Error)]
pub enum ClientAgentError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("persisted state is unreadable ({what}): {message}")]
    State { what: String, message: String },
}

/// Runs `hedge client` until interrupted.
pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let settings = args.agent.resolve()?;
    let section: ClientSection = settings.config.section("client")?;
    let legacy = args.legacy_center.clone().or(section.legacy_center.clone());
    if settings.center.is_none() && legacy.is_none() {
        anyhow::bail!(
            "nowhere to report to: give --center URL (or set HEDGE_CENTER, or `center = \"URL\"` \
             in ./hedge.toml or the --config file; the token from HEDGE_CENTER_TOKEN or \
             --center-token-file) and/or --legacy-center URL"
        );
    }
    let hedge_ratio = match (args.hedge_ratio, &section.hedge_ratio) {
        (Some(r), _) => Some(r),
        (None, Some(v)) => Some(ratio_from_toml(v)?),
        (None, None) => None,
    };
    if let Some(r) = hedge_ratio {
        anyhow::ensure!(r > Decimal::ZERO, "hedge ratio must be positive, got {r}");
    }
    // Logging starts once the arguments are known to be usable, so a refused start says only why.
    hedge_agent_runtime::logging::init(settings.log_format);
    settings.log_warnings();
    let options = ClientOptions {
        center: settings.center.is_some(),
        legacy: legacy.is_some(),
        hedging: ClientHedging {
            hedge_ratio,
            hedge_login: args
                .hedge_login
                .or(section.hedge_login)
                .map(hedge_domain::Login),
        },
        native_netting: section.native_netting,
    };
    let delivery = center::delivery(&settings, legacy.as_deref())?;
    let state_path = settings.state_path("client");
    // The outbox is ready before the terminal can connect, so the agent sees its first snapshot;
    // a start refused for the terminal's port or the terminal itself removes the state it made.
    let new_state = settings.new_state("client");
    let outbox = Outbox::open(&state_path)?;
    // A report is on the reaction path: it goes out while its commit is being synced.
    outbox.send_while_committing();
    let session = match Session::attach(&settings, "client").await {
        Ok(session) => session,
        Err(e) => {
            drop(outbox);
            new_state.undo();
            return Err(e.into());
        }
    };
    tracing::info!(
        login = %settings.login,
        listen = %session.local_addr(),
        state = %state_path.display(),
        center = settings.center.as_ref().map(|c| c.url.as_str()),
        legacy_center = legacy.as_deref(),
        pending_outbox = outbox.pending().unwrap_or(0),
        "client agent started"
    );
    let on_difference = Arc::new(tokio::sync::Notify::new());
    let mut agent = ClientAgent::load(
        settings.clone(),
        outbox.clone(),
        session.terminal.clone(),
        session.status.clone(),
        options,
    )?;
    if let Some(center) = &delivery.center {
        agent = agent.with_center(center.clone(), on_difference.clone());
    }
    let sender = tokio::spawn(
        outbox
            .clone()
            .run_sender(delivery.clone(), Backoff::default()),
    );
    let status_line = session
        .status
        .spawn(Some(outbox.clone()), settings.status_interval);
    let heartbeat = delivery.center.clone().map(|c| {
        spawn_heartbeat(
            c,
            settings.login,
            session.status.clone(),
            outbox.clone(),
            settings.status_interval,
            Some(session.terminal.clone()),
            Some(CenterCheck {
                map: settings.symbol_map.clone(),
                on_difference: on_difference.clone(),
            }),
        )
    });
    let result = tokio::select! {
        r = agent.run() => r.context("client agent failed"),
        r = sender => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("outbox sender failed")),
            Err(e) => Err(anyhow::anyhow!("outbox sender stopped: {e}")),
        },
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; pending reports stay in the outbox");
            Ok(())
        }
    };
    status_line.abort();
    if let Some(h) = heartbeat {
        h.abort();
    }
    session.shutdown().await;
    result
}

fn ratio_from_toml(v: &toml::Value) -> anyhow::Result<Decimal> {
    match v {
        toml::Value::Float(f) => hedge_domain::num::decimal_from_f64(*f)
            .ok_or_else(|| anyhow::anyhow!("hedge_ratio is not a finite number")),
        toml::Value::Integer(i) => Ok(Decimal::from(*i)),
        toml::Value::String(s) => hedge_domain::num::parse_decimal(s)
            .ok_or_else(|| anyhow::anyhow!("hedge_ratio {s:?} is not a number")),
        _ => anyhow::bail!("hedge_ratio must be a number"),
    }
}

/// The client agent's event loop over one terminal link.
pub struct ClientAgent {
    settings: AgentSettings,
    /// The terminal's symbol names read through the symbol map (aliases, decorations), from the
    /// latest handshake: what each position is reported under.
    names: hedge_domain::Resolution,
    outbox: Arc<Outbox>,
    terminal: Terminal,
    status: StatusBoard,
    tracker: Tracker,
    options: ClientOptions,
    /// Terminal time of the latest message whose effects are durable (persisted with them).
    last_seen: Option<TimeMs>,
    commands: u64,
    /// Netting account reported through the ledger; the book is `None` until the history replays.
    ledger_mode: bool,
    margin_mode: hedge_domain::AccountMarginMode,
    book: Option<NettingBook>,
    /// A live record did not fit the book: replay the history before the next message.
    rebuild_now: bool,
    /// Commission per open position from the deals seen (accounts reported natively).
    commissions: Commissions,
    /// Where the center's books are read to re-sync them (`None`: no `/v1` center).
    center: Option<CenterClient>,
    resync: CenterResync,
}

impl ClientAgent {
    /// Resumes from the state persisted in `outbox`.
    pub fn load(
        settings: AgentSettings,
        outbox: Arc<Outbox>,
        terminal: Terminal,
        status: StatusBoard,
        options: ClientOptions,
    ) -> Result<Self, ClientAgentError> {
        let mut states = Vec::new();
        for (key, value) in outbox.state_list(NS_POSITION)? {
            let state: PositionState =
                serde_json::from_str(&value).map_err(|e| ClientAgentError::State {
                    what: format!("position {key}"),
                    message: e.to_string(),
                })?;
            states.push(state);
        }
        let last_seen = outbox
            .state_get(NS_META, KEY_LAST_SEEN)?
            .and_then(|v| v.parse::<i64>().ok());
        let (dead_letters, _) = outbox.dead_letter_summary()?;
        tracing::info!(
            positions = states.len(),
            last_seen,
            dead_letters,
            "client state restored"
        );
        Ok(ClientAgent {
            tracker: Tracker::restore(settings.login, states),
            names: settings.symbol_map.resolve([]),
            settings,
            outbox,
            terminal,
            status,
            options,
            last_seen,
            commands: 0,
            ledger_mode: false,
            margin_mode: hedge_domain::AccountMarginMode::RetailHedging,
            book: None,
            rebuild_now: false,
            commissions: Commissions::default(),
            center: None,
            resync: CenterResync {
                // Refused reports from before a restart: the center still lacks what they said.
                due: dead_letters > 0,
                ..CenterResync::default()
            },
        })
    }

    /// Re-syncs `center` from the terminal after a refused report, and when `on_difference` is
    /// raised.
    pub fn with_center(
        mut self,
        center: CenterClient,
        on_difference: Arc<tokio::sync::Notify>,
    ) -> Self {
        self.center = Some(center);
        self.resync.on_difference = on_difference;
        self
    }

    /// Processes the terminal's events until the link is shut down.
    pub async fn run(mut self) -> Result<(), ClientAgentError> {
        let mut events = self.terminal.subscribe();
        if self.terminal.is_connected() {
            // Connected before this loop subscribed: the current state is all there is to go by.
            if let Some(hello) = self.terminal.hello() {
                self.register(&hello)?;
                self.resync().await?;
            }
        }
        let mut dead = self.outbox.dead_lettered();
        let mut acks = self.outbox.acks();
        let on_difference = self.resync.on_difference.clone();
        loop {
            let retry_at = self.resync.retry_at;
            let waiting = self.resync.due;
            let received = tokio::select! {
                r = events.recv() => r,
                Ok(()) = dead.changed() => {
                    self.resync.due = true;
                    self.resync_center().await?;
                    continue;
                }
                () = on_difference.notified() => {
                    self.resync.due = true;
                    self.resync_center().await?;
                    continue;
                }
                // The outbox drained: a comparison that waited for it can run.
                Ok(()) = acks.changed(), if waiting => {
                    self.resync_center().await?;
                    continue;
                }
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)),
                    if retry_at.is_some() =>
                {
                    self.resync.retry_at = None;
                    self.resync.due = true;
                    self.resync_center().await?;
                    continue;
                }
            };
            match received {
                Ok(TerminalEvent::Connected {
                    hello, snapshot, ..
                }) => {
                    // The handshake snapshot, not the live state: events queued behind this one
                    // are newer than the snapshot and must be applied after it.
                    self.register(&hello)?;
                    if self.ledger_mode {
                        self.rebuild_and_reconcile(&snapshot.positions, snapshot.time)
                            .await?;
                    } else {
                        let rows: Vec<Observed> = snapshot.positions.iter().map(observed).collect();
                        self.reconcile(&rows, snapshot.time, true).await?;
                    }
                    self.value(&snapshot.positions, &snapshot.account).await;
                }
                Ok(TerminalEvent::Snapshot(s)) => {
                    if self.ledger_mode {
                        self.reconcile_ledger(&s.positions, s.time).await?;
                    } else {
                        let rows: Vec<Observed> = s.positions.iter().map(observed).collect();
                        self.reconcile(&rows, s.time, false).await?;
                    }
                    self.value(&s.positions, &s.account).await;
                }
                Ok(TerminalEvent::Tx(tx)) => {
                    self.on_tx(&tx)?;
                    if std::mem::take(&mut self.rebuild_now) {
                        self.resync().await?;
                    }
                }
                Ok(TerminalEvent::Gap { .. }) => self.resync().await?,
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "client fell behind the terminal; resyncing");
                    self.resync().await?;
                }
                Err(RecvError::Closed) => return Ok(()),
            }
            self.resync_center().await?;
        }
    }

    /// A fresh `cmd_id` for a request of kind `what` to the terminal.
    fn next_cmd_id(&mut self, what: &str) -> String {
        self.commands += 1;
        format!(
            "client-{}-{what}-{}-{}",
            self.settings.login,
            hedge_agent_runtime::clock::now_ms(),
            self.commands
        )
    }

    fn register(&mut self, hello: &Hello) -> Result<(), ClientAgentError> {
        let symbols = self.terminal.symbols();
        self.names =
            hedge_agent_runtime::session::resolve_symbol_names(&self.settings.symbol_map, &symbols);
        if self.options.center {
            let reg = center::registration(
                &self.settings,
                AccountRole::Client,
                hello,
                &symbols,
                &self.options.hedging,
            );
            center::queue_registration(&self.outbox, &reg)?;
        }
        let ledger_mode = hello.margin_mode.is_netting() && !self.options.native_netting;
        if ledger_mode != self.ledger_mode {
            self.book = None;
        }
        self.ledger_mode = ledger_mode;
        self.margin_mode = hello.margin_mode;
        if ledger_mode {
            tracing::info!("netting account: reporting the ledger's bi-directional positions");
        } else if hello.margin_mode.is_netting() {
            tracing::info!("netting account: reporting the terminal's net position per symbol");
        }
        Ok(())
    }
}
