//! `hedge client`: reports every position event of its account to the center, exactly once.
//!
//! The terminal's stream (handshake snapshot, `tx` records, periodic snapshots) goes through the
//! [`Tracker`]; the events it yields are written to the outbox together with the tracker's new state
//! in one transaction, then sent in order by the outbox's sender. On every (re)connection the fresh
//! snapshot is reconciled against the persisted state: positions that vanished while the agent was
//! away are reported closed (with their closing deal from the terminal's history when it has one),
//! and positions that opened and closed entirely while it was away are found in the history.
//!
//! On a netting account the positions are the ledger's bi-directional ones ([`crate::netting`]):
//! the whole history is replayed at every (re)connection, each live deal is fed to the ledger, and
//! the tracker sees the ledger's positions instead of the terminal's single net position, so a
//! second buy is an open of its own and a sell reduces the oldest buy first. `native_netting = true`
//! in the config file's `[client]` table keeps the terminal's net position.

use crate::args::{AgentArgs, AgentSettings};
use crate::center::{self, ClientHedging, LegacyOpen};
use crate::netting::NettingBook;
use crate::outbox::{Backoff, NewItem, Outbox, OutboxError, OutboxKind, StateWrite};
use crate::resync::{self, Held};
use crate::session::Session;
use crate::status::StatusBoard;
use crate::tracker::{
    CloseDetail, ClosedWhileAway, EventKind, Observed, PositionEvent, PositionState, TimeMs,
    Tracker,
};
use crate::valuation::{self, Commissions, Valuation};
use anyhow::Context;
use hedge_center_api::client::CenterClient;
use hedge_center_api::model::{AccountRole, PositionEventKind, PositionReport};
use hedge_domain::{DealEntry, PositionId, Price, Volume};
use hedge_protocol::{
    AccountInfo, DealRecord, Hello, HistoryRange, OrderRecord, PositionRecord, SymbolInfo,
    Terminal, TerminalEvent, Tx,
};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// State namespaces in the outbox database.
const NS_POSITION: &str = "position";
const NS_META: &str = "meta";
const KEY_LAST_SEEN: &str = "last_seen";

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

    /// The hedge account covering this client (default: every hedge account).
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

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
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
    crate::logging::init(settings.log_format);
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
    let delivery = center::delivery(&settings, legacy.as_deref()).map_err(anyhow::Error::msg)?;
    let state_path = settings.state_path("client");
    // The outbox is ready before the terminal can connect, so the agent sees its first snapshot;
    // a start refused for the terminal's port or the terminal itself removes the state it made.
    let new_state = settings.new_state("client");
    let outbox = Outbox::open(&state_path)?;
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
        center::spawn_heartbeat(
            c,
            settings.login,
            session.status.clone(),
            outbox.clone(),
            settings.status_interval,
            Some(session.terminal.clone()),
            Some(center::CenterCheck {
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

/// Turns a terminal position into the tracker's view of it.
pub fn observed(p: &PositionRecord) -> Observed {
    Observed {
        id: p.identifier,
        symbol: p.symbol.clone(),
        side: p.position_type.side(),
        volume: p.volume,
        price_open: p.price_open,
        sl: p.sl,
        tp: p.tp,
        magic: p.magic,
        comment: p.comment.clone(),
        time: p.time,
        time_update: p.time_update,
    }
}

fn is_exit(entry: DealEntry) -> bool {
    matches!(entry, DealEntry::Out | DealEntry::OutBy | DealEntry::InOut)
}

/// From history deals: the last exit deal of every position that has one (the close of a position
/// that vanished, or the reduction of one still open), and the positions that opened after `since`
/// and were entirely closed again.
fn read_history(
    deals: &[DealRecord],
    since: Option<TimeMs>,
) -> (HashMap<PositionId, CloseDetail>, Vec<ClosedWhileAway>) {
    let mut by_position: BTreeMap<PositionId, Vec<&DealRecord>> = BTreeMap::new();
    for d in deals
        .iter()
        .filter(|d| d.deal_type.is_trade() && d.position_id.get() != 0)
    {
        by_position.entry(d.position_id).or_default().push(d);
    }
    let mut closes = HashMap::new();
    for (id, ds) in &by_position {
        if let Some(last_exit) = ds
            .iter()
            .filter(|d| is_exit(d.entry))
            .max_by_key(|d| (d.time, d.ticket))
        {
            closes.insert(*id, CloseDetail::from_deal(last_exit));
        }
    }
    let mut away = Vec::new();
    if let Some(since) = since {
        for (id, ds) in &by_position {
            let mut ds = ds.clone();
            ds.sort_by_key(|d| (d.time, d.ticket));
            let Some(first) = ds.first() else { continue };
            if first.entry != DealEntry::In || first.time <= since {
                continue;
            }
            let Some(side) = first.deal_type.side() else {
                continue;
            };
            let opened: Volume = ds
                .iter()
                .filter(|d| d.entry == DealEntry::In)
                .fold(Volume::ZERO, |a, d| a + d.volume);
            let closed: Volume = ds
                .iter()
                .filter(|d| matches!(d.entry, DealEntry::Out | DealEntry::OutBy))
                .fold(Volume::ZERO, |a, d| a + d.volume);
            let has_reversal = ds.iter().any(|d| d.entry == DealEntry::InOut);
            let Some(last) = ds.last() else { continue };
            if has_reversal || closed < opened || !is_exit(last.entry) {
                continue;
            }
            away.push(ClosedWhileAway {
                position: Observed {
                    id: *id,
                    symbol: first.symbol.clone(),
                    side,
                    volume: Volume::ZERO,
                    price_open: first.price,
                    sl: Price::ZERO,
                    tp: Price::ZERO,
                    magic: first.magic,
                    comment: first.comment.clone(),
                    time: first.time,
                    time_update: last.time,
                },
                volume: opened,
                close: CloseDetail::from_deal(last),
            });
        }
    }
    (closes, away)
}

/// The client agent's event loop over one terminal link.
pub struct ClientAgent {
    settings: AgentSettings,
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

/// How often one position may be corrected: a report the center keeps refusing must not loop.
const RESYNC_EVERY: Duration = Duration::from_secs(60);
/// How soon a re-sync that could not read the center's books is tried again.
const RESYNC_RETRY: Duration = Duration::from_secs(5);

/// The state of re-syncing the center from the terminal ([`crate::resync`]).
#[derive(Debug, Default)]
struct CenterResync {
    /// A comparison is wanted (a dead letter, a difference seen by the heartbeat, start-up with
    /// dead letters, corrections waiting to be verified); it runs once nothing is pending.
    due: bool,
    /// When each position was last corrected.
    attempts: HashMap<PositionId, tokio::time::Instant>,
    /// When to compare again (a correction held back by [`RESYNC_EVERY`], an unreadable center).
    retry_at: Option<tokio::time::Instant>,
    /// Raised by the heartbeat when the center's positions differ from the terminal's.
    on_difference: Arc<tokio::sync::Notify>,
}

impl ClientAgent {
    /// Resumes from the state persisted in `outbox`.
    pub fn load(
        settings: AgentSettings,
        outbox: Arc<Outbox>,
        terminal: Terminal,
        status: StatusBoard,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let mut states = Vec::new();
        for (key, value) in outbox.state_list(NS_POSITION)? {
            let state: PositionState =
                serde_json::from_str(&value).map_err(|e| ClientError::State {
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
    pub async fn run(mut self) -> Result<(), ClientError> {
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

    /// Values the account for the status heartbeat: the account block, the marks of the open
    /// positions (the ledger's on a netting account) and the reconciliation.
    async fn value(&mut self, positions: &[PositionRecord], account: &AccountInfo) {
        let now = center::now_ms();
        let (marks, reconciliation) = if self.ledger_mode {
            let Some(symbols) = self.book.as_ref().map(NettingBook::symbols) else {
                self.status.set_valuation(Valuation {
                    account: Some(valuation::account_money(account)),
                    marks: Vec::new(),
                    reconciliation: Some(valuation::ledger_unavailable(now)),
                });
                return;
            };
            let quotes = self.quotes(&symbols).await;
            let Some(book) = &self.book else { return };
            let marks = valuation::ledger_marks(
                book,
                |symbol, side| {
                    let q = quotes.get(symbol)?;
                    Some(valuation::close_price(side, q.bid?, q.ask?))
                },
                |symbol| quotes.get(symbol).map(|q| q.spec.clone()),
            );
            let reconciliation = valuation::reconcile_netting(
                symbols.iter().map(String::as_str),
                |s| book.net_volume(s),
                positions,
                now,
            );
            (marks, reconciliation)
        } else {
            let open: BTreeSet<PositionId> = positions.iter().map(|p| p.identifier).collect();
            self.commissions.retain_open(&open);
            self.learn_commissions(positions).await;
            (
                valuation::terminal_marks(positions, &self.commissions),
                valuation::reconciled(now),
            )
        };
        self.status.set_valuation(Valuation {
            account: Some(valuation::account_money(account)),
            marks,
            reconciliation: Some(reconciliation),
        });
    }

    /// Reads the deals of open positions whose commission is not known yet (opened before this
    /// agent started) from the terminal's history.
    async fn learn_commissions(&mut self, positions: &[PositionRecord]) {
        let unknown: Vec<&PositionRecord> = positions
            .iter()
            .filter(|p| !self.commissions.knows(p.identifier))
            .collect();
        let Some(from) = unknown.iter().map(|p| p.time).min() else {
            return;
        };
        let ids: Vec<PositionId> = unknown.iter().map(|p| p.identifier).collect();
        let to = self.terminal.with_state(|s| s.last_time).max(from) + 60_000;
        if let Some(deals) = self.history(from - 1000, to).await {
            for d in &deals {
                self.commissions.record(d);
            }
        }
        // Asked once: a position the history does not show keeps a commission of 0.
        for id in ids {
            self.commissions.mark_known(id);
        }
    }

    /// Current quotes and specs of `symbols`, fresh from the terminal (the cached quote when the
    /// terminal does not answer).
    async fn quotes(&mut self, symbols: &[String]) -> HashMap<String, SymbolInfo> {
        let mut out = HashMap::new();
        for symbol in symbols {
            self.commands += 1;
            let cmd_id = format!(
                "client-{}-quote-{}-{}",
                self.settings.login,
                center::now_ms(),
                self.commands
            );
            let fresh = match tokio::time::timeout(
                Duration::from_secs(2),
                self.terminal.symbol_info(cmd_id.into(), symbol.clone()),
            )
            .await
            {
                Ok(Ok(reply)) if reply.is_done() => reply.symbol,
                _ => None,
            };
            if let Some(info) = fresh.or_else(|| self.terminal.symbol(symbol)) {
                out.insert(symbol.clone(), info);
            }
        }
        out
    }

    fn register(&mut self, hello: &Hello) -> Result<(), ClientError> {
        if self.options.center {
            let reg = center::registration(
                &self.settings,
                AccountRole::Client,
                hello,
                &self.terminal.symbols(),
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

    /// Reconciles against the terminal's current state, looking in the history for what may have
    /// been missed since the last durable event.
    async fn resync(&mut self) -> Result<(), ClientError> {
        if self.ledger_mode {
            let (positions, time) = self.terminal.with_state(|s| {
                (
                    s.positions.values().cloned().collect::<Vec<_>>(),
                    s.last_time,
                )
            });
            return self.rebuild_and_reconcile(&positions, time).await;
        }
        let (rows, time) = self.terminal.with_state(|s| {
            (
                s.positions.values().map(observed).collect::<Vec<_>>(),
                s.last_time,
            )
        });
        self.reconcile(&rows, time, true).await
    }

    /// Brings the tracker in line with a full list of open positions. `sweep`: also search the
    /// history since the last durable event for positions that opened and closed unseen.
    async fn reconcile(
        &mut self,
        rows: &[Observed],
        time: TimeMs,
        sweep: bool,
    ) -> Result<(), ClientError> {
        let missing = self.tracker.missing_from(rows);
        let mut closes = HashMap::new();
        let mut away = Vec::new();
        let since = self.last_seen.filter(|_| sweep);
        if !missing.is_empty() || since.is_some_and(|s| s < time) {
            let oldest_open = missing
                .iter()
                .filter_map(|id| self.tracker.get(*id).map(|p| p.opened))
                .min();
            let from = match (oldest_open, since) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => time,
            };
            match self.history(from - 1000, time.max(from) + 60_000).await {
                Some(deals) => {
                    for d in &deals {
                        self.commissions.record(d);
                    }
                    let present: Vec<PositionId> = rows.iter().map(|r| r.id).collect();
                    let (c, a) = read_history(&deals, since);
                    closes = c;
                    away = a
                        .into_iter()
                        .filter(|w| !present.contains(&w.position.id))
                        .collect();
                }
                None => {
                    if !missing.is_empty() {
                        tracing::warn!(
                            positions = ?missing,
                            "history unavailable; reporting vanished positions as closed without their deal"
                        );
                    }
                }
            }
        }
        let mut events = Vec::new();
        for w in &away {
            events.extend(self.tracker.closed_while_away(w));
        }
        events.extend(self.tracker.reconcile(rows, &closes, time));
        self.commit(events, time)
    }

    /// Netting through the ledger: replays the whole history into a fresh book, then reconciles the
    /// tracker against the book's positions, with closes and missed round trips from the book.
    async fn rebuild_and_reconcile(
        &mut self,
        terminal: &[PositionRecord],
        time: TimeMs,
    ) -> Result<(), ClientError> {
        self.book = None;
        let Some((orders, deals)) = self.full_history(0, time + 60_000).await else {
            tracing::warn!(
                "history unavailable; bi-directional positions wait for the next resync"
            );
            return Ok(());
        };
        match NettingBook::replay(self.settings.login, self.margin_mode, &orders, &deals) {
            Ok(book) => {
                tracing::info!(
                    mode = ?book.mode(),
                    deals = deals.len(),
                    positions = book.rows().len(),
                    "ledger rebuilt from the account's history"
                );
                self.book = Some(book);
            }
            Err(e) => {
                tracing::error!(error = %e, "history does not replay; nothing reported until it does");
                return Ok(());
            }
        }
        self.reconcile_ledger_sweep(terminal, time, self.last_seen)
    }

    /// A periodic snapshot on a netting account: the book's positions are the truth; a book that
    /// disagrees with the terminal's net volume is rebuilt.
    async fn reconcile_ledger(
        &mut self,
        terminal: &[PositionRecord],
        time: TimeMs,
    ) -> Result<(), ClientError> {
        let consistent = self.book.as_ref().is_some_and(|b| {
            let mut symbols: Vec<&str> = terminal.iter().map(|p| p.symbol.as_str()).collect();
            symbols.extend(self.tracker.positions().map(|p| p.symbol.as_str()));
            symbols
                .iter()
                .all(|s| b.net_volume(s) == valuation::terminal_net(terminal, s))
        });
        if !consistent {
            if self.book.is_some() {
                tracing::warn!("ledger disagrees with the terminal's net positions; rebuilding");
            }
            return self.rebuild_and_reconcile(terminal, time).await;
        }
        self.reconcile_ledger_sweep(terminal, time, None)
    }

    fn reconcile_ledger_sweep(
        &mut self,
        terminal: &[PositionRecord],
        time: TimeMs,
        since: Option<TimeMs>,
    ) -> Result<(), ClientError> {
        let Some(book) = &self.book else {
            return Ok(());
        };
        let rows = book.rows();
        for p in terminal {
            let net = book.net_volume(&p.symbol);
            if net != valuation::terminal_net(terminal, &p.symbol) {
                tracing::warn!(symbol = %p.symbol, ledger = %net, "ledger net volume differs from the terminal's position");
            }
        }
        let missing = self.tracker.missing_from(&rows);
        let tracker = &self.tracker;
        let (closes, away) = book.closes(&missing, since, |id| tracker.was_closed(id));
        let mut events = Vec::new();
        for w in &away {
            events.extend(self.tracker.closed_while_away(w));
        }
        events.extend(self.tracker.reconcile(&rows, &closes, time));
        self.commit(events, time)
    }

    async fn full_history(
        &mut self,
        from: TimeMs,
        to: TimeMs,
    ) -> Option<(Vec<OrderRecord>, Vec<DealRecord>)> {
        self.history_records(from, to).await
    }

    async fn history(&mut self, from: TimeMs, to: TimeMs) -> Option<Vec<DealRecord>> {
        self.history_records(from, to).await.map(|(_, d)| d)
    }

    async fn history_records(
        &mut self,
        from: TimeMs,
        to: TimeMs,
    ) -> Option<(Vec<OrderRecord>, Vec<DealRecord>)> {
        self.commands += 1;
        let cmd_id = format!(
            "client-{}-history-{}-{}",
            self.settings.login,
            center::now_ms(),
            self.commands
        );
        let range = HistoryRange {
            from: from.max(0),
            to,
            page_size: None,
            cursor: None,
        };
        match tokio::time::timeout(
            Duration::from_secs(15),
            self.terminal.history(cmd_id.into(), range),
        )
        .await
        {
            Ok(Ok(h)) if h.reply.is_done() => Some((h.orders, h.deals)),
            Ok(Ok(h)) => {
                tracing::warn!(retcode = %h.reply.retcode, comment = %h.reply.comment, "history refused");
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "history request failed");
                None
            }
            Err(_) => {
                tracing::warn!("history request timed out");
                None
            }
        }
    }

    fn on_tx(&mut self, tx: &Tx) -> Result<(), ClientError> {
        if self.ledger_mode {
            return self.on_tx_ledger(tx);
        }
        if let Some(d) = &tx.deal_record {
            self.commissions.record(d);
        }
        let Some(p) = &tx.position_record else {
            return Ok(());
        };
        let obs = observed(p);
        // The deal that closed the position, or the exit deal that reduced it (a partial close
        // carries its comment too).
        let close = tx
            .deal_record
            .as_ref()
            .filter(|d| d.position_id == obs.id && (obs.volume.is_zero() || is_exit(d.entry)))
            .map(CloseDetail::from_deal);
        let events = self.tracker.observe(&obs, close);
        if events.is_empty() {
            return Ok(());
        }
        self.commit(events, tx.time)
    }

    /// Netting through the ledger: each live deal becomes the bi-directional positions it touched.
    fn on_tx_ledger(&mut self, tx: &Tx) -> Result<(), ClientError> {
        let Some(book) = &mut self.book else {
            // Not replayed yet: the next snapshot rebuilds from history, which holds this deal.
            return Ok(());
        };
        let mut touched = Vec::new();
        let result = (|| {
            if let Some(o) = &tx.order_record {
                book.apply_order(o)?;
            }
            if let Some(d) = &tx.deal_record {
                touched = book.apply_deal(d)?;
            }
            Ok::<(), crate::netting::NettingError>(())
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "live record does not fit the ledger; rebuilding from history");
            self.book = None;
            self.rebuild_now = true;
            return Ok(());
        }
        let mut events = Vec::new();
        for t in touched {
            events.extend(self.tracker.observe(&t.position, t.close));
        }
        if events.is_empty() {
            return Ok(());
        }
        self.commit(events, tx.time)
    }

    /// The canonical symbol a position on account symbol `symbol` is reported under; `None` when
    /// it is not watched (never reported).
    fn reported_symbol(&self, symbol: &str) -> Option<String> {
        let canonical = self
            .settings
            .symbol_map
            .to_canonical(symbol)
            .unwrap_or_else(|| symbol.to_owned());
        self.settings.watches(&canonical).then_some(canonical)
    }

    /// When a comparison is due and can be trusted, reads the center's positions of the account
    /// and queues the reports that bring them to the tracker's (the terminal's) state; clears the
    /// dead letters of positions on which the books agree.
    async fn resync_center(&mut self) -> Result<(), ClientError> {
        if !self.resync.due {
            return Ok(());
        }
        let Some(center) = self.center.clone() else {
            self.resync.due = false;
            return Ok(());
        };
        // The tracker follows the terminal only while it is connected (on a netting account, once
        // the ledger replayed); reports still queued are not in the center's books yet. Whatever
        // ends the wait (the handshake, the next acknowledgement) comes back here.
        if !self.terminal.is_connected()
            || (self.ledger_mode && self.book.is_none())
            || self.outbox.pending()? > 0
        {
            return Ok(());
        }
        self.resync.due = false;
        let held: Vec<Held> = self
            .tracker
            .positions()
            .filter_map(|s| {
                Some(Held {
                    symbol: self.reported_symbol(&s.symbol)?,
                    state: s.clone(),
                })
            })
            .collect();
        let login = self.settings.login;
        let ids: Vec<PositionId> = held.iter().map(|h| h.state.id).collect();
        let books = match center::books_of(&center, login, &ids).await {
            Ok(books) => books,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the center's positions to compare them with the terminal's; trying again");
                self.resync.due = true;
                self.resync.retry_at = Some(tokio::time::Instant::now() + RESYNC_RETRY);
                return Ok(());
            }
        };
        let books: Vec<_> = books
            .into_iter()
            .filter(|p| self.settings.watches(&p.symbol))
            .collect();
        let time = self
            .terminal
            .with_state(|s| s.last_time)
            .max(self.last_seen.unwrap_or(0));
        let plan = resync::plan(login, &held, &books, time);
        for (id, why) in &plan.stuck {
            tracing::warn!(position = %id, %why, "the center's position differs from the terminal's and no report can correct it");
        }
        let events = self.admit_corrections(plan.corrections);
        if !events.is_empty() {
            self.commit(events, time)?;
            // Compared again once they are delivered: agreement then clears the dead letters.
            self.resync.due = true;
        }
        self.clear_agreed_dead_letters(&plan.differing)
    }

    /// The corrections not held back by [`RESYNC_EVERY`], logged, with the tracker's sequences
    /// moved past them; a held-back one sets when to compare again.
    fn admit_corrections(&mut self, corrections: Vec<resync::Correction>) -> Vec<PositionEvent> {
        let now = tokio::time::Instant::now();
        self.resync
            .attempts
            .retain(|_, t| now.duration_since(*t) < RESYNC_EVERY);
        self.resync.retry_at = None;
        let mut events = Vec::new();
        for c in corrections {
            if let Some(last) = self.resync.attempts.get(&c.position) {
                let at = *last + RESYNC_EVERY;
                self.resync.retry_at = Some(self.resync.retry_at.map_or(at, |r| r.min(at)));
                tracing::debug!(position = %c.position, differed = %c.what, "corrected less than a minute ago; waiting");
                continue;
            }
            let reports: Vec<String> = c.events.iter().map(PositionEvent::describe).collect();
            tracing::warn!(
                position = %c.position,
                differed = %c.what,
                reports = %reports.join(", "),
                "the center's position differs from the terminal's; re-syncing it"
            );
            self.resync.attempts.insert(c.position, now);
            if let Some(seq) = c.tracker_seq {
                self.tracker.advance_seq(c.position, seq);
            }
            events.extend(c.events);
        }
        events
    }

    /// Removes the dead letters of position reports whose position the center now holds as the
    /// terminal does (not in `differing`): the red state goes only when the books agree.
    fn clear_agreed_dead_letters(
        &self,
        differing: &BTreeSet<PositionId>,
    ) -> Result<(), ClientError> {
        let login = self.settings.login;
        let keys: Vec<String> = self
            .outbox
            .dead_letters()?
            .into_iter()
            .filter(|d| OutboxKind::parse(&d.kind) == Some(OutboxKind::PositionEvent))
            .filter(|d| {
                serde_json::from_str::<PositionReport>(&d.body)
                    .is_ok_and(|r| r.login == login && !differing.contains(&r.position_id))
            })
            .map(|d| d.key)
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let removed = self.outbox.remove_dead_letters(&keys)?;
        tracing::info!(
            removed,
            keys = %keys.join(", "),
            "the center holds the terminal's positions again; refused reports cleared"
        );
        Ok(())
    }

    /// Queues the reports of `events` and persists the tracker's new state, in one transaction.
    fn commit(&mut self, events: Vec<PositionEvent>, time: TimeMs) -> Result<(), ClientError> {
        let event_time = events.iter().map(|e| e.time).max().unwrap_or(time);
        let seen = self.last_seen.unwrap_or(0).max(time).max(event_time);
        if events.is_empty() && self.last_seen == Some(seen) {
            return Ok(());
        }
        let mut items = Vec::new();
        let mut writes = Vec::new();
        let mut touched: Vec<PositionId> = Vec::new();
        for e in &events {
            if !touched.contains(&e.position) {
                touched.push(e.position);
            }
            let canonical = match self.settings.symbol_map.to_canonical(&e.symbol) {
                Some(c) => c,
                None => {
                    if self.settings.symbols.is_empty() {
                        tracing::warn!(symbol = %e.symbol, "symbol does not match the prefix; reported under its account name");
                    }
                    e.symbol.clone()
                }
            };
            if !self.settings.watches(&canonical) {
                tracing::debug!(event = %e.describe(), "not a watched symbol; not reported");
                continue;
            }
            tracing::info!(
                key = %e.key(),
                kind = e.kind.as_str(),
                position = %e.position,
                symbol = %e.symbol,
                side = %e.side,
                volume = %e.volume,
                delta = %e.delta,
                reversal = e.reversal,
                "position event"
            );
            self.status.event(e.describe());
            if self.options.center {
                items.push(
                    NewItem::json(e.key(), OutboxKind::PositionEvent, &report(e, &canonical))
                        .map_err(|err| ClientError::State {
                            what: "report".into(),
                            message: err.to_string(),
                        })?,
                );
            }
            // A correction is for the `/v1` center's books; the prototype center had the open.
            if self.options.legacy && e.kind == EventKind::Open && !e.resync {
                items.push(
                    NewItem::json(
                        format!("{}:legacy", e.key()),
                        OutboxKind::LegacyOpen,
                        &LegacyOpen::new(canonical.clone(), e.volume, e.side),
                    )
                    .map_err(|err| ClientError::State {
                        what: "legacy report".into(),
                        message: err.to_string(),
                    })?,
                );
            }
        }
        for id in touched {
            let key = id.to_string();
            match self.tracker.get(id) {
                Some(state) => writes.push(StateWrite::Put {
                    ns: NS_POSITION.into(),
                    key,
                    value: serde_json::to_string(state).map_err(|err| ClientError::State {
                        what: "position".into(),
                        message: err.to_string(),
                    })?,
                }),
                None => writes.push(StateWrite::Delete {
                    ns: NS_POSITION.into(),
                    key,
                }),
            }
        }
        writes.push(StateWrite::Put {
            ns: NS_META.into(),
            key: KEY_LAST_SEEN.into(),
            value: seen.to_string(),
        });
        self.outbox.commit(&items, &writes)?;
        self.last_seen = Some(seen);
        Ok(())
    }
}

fn non_zero(p: Price) -> Option<Price> {
    (!p.is_zero()).then_some(p)
}

/// The center's report for one event.
pub fn report(e: &PositionEvent, canonical: &str) -> PositionReport {
    let kind = match e.kind {
        EventKind::Open => PositionEventKind::Open,
        EventKind::Increase => PositionEventKind::Increase,
        EventKind::PartialClose => PositionEventKind::PartialClose,
        EventKind::Close => PositionEventKind::Close,
        EventKind::Modify => PositionEventKind::Modify,
    };
    let price = match (&e.kind, &e.close) {
        (EventKind::Close, Some(c)) => c.price.or(Some(e.price_open)),
        _ => Some(e.price_open),
    };
    // Opens, increases and modifications carry the position's own comment (its entry comment); a
    // reduction or close carries its deal's (the exit comment). What the agent only inferred is
    // said after it.
    let own = match e.kind {
        EventKind::PartialClose | EventKind::Close => {
            e.close.as_ref().map_or("", |c| c.comment.as_str())
        }
        EventKind::Open | EventKind::Increase | EventKind::Modify => e.comment.as_str(),
    };
    let mut notes: Vec<&str> = Vec::new();
    if !own.is_empty() {
        notes.push(own);
    }
    if e.reversal {
        notes.push("reversal");
    }
    if e.resync {
        notes.push("re-synced from the terminal");
    }
    if e.close.as_ref().is_some_and(|c| !c.confirmed) {
        notes.push("closed while the agent was away; no closing deal found");
    }
    let comment = notes.join("; ");
    PositionReport {
        kind,
        login: e.login,
        position_id: e.position,
        symbol: canonical.to_owned(),
        account_symbol: e.symbol.clone(),
        side: e.side,
        volume: e.volume,
        price: price.and_then(non_zero),
        sl: non_zero(e.sl),
        tp: non_zero(e.tp),
        time_ms: e.time,
        magic: e.magic,
        comment,
        seq: u64::from(e.seq),
        idempotency_key: e.key(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedge_domain::{DealTicket, DealType, Magic};

    fn deal(
        ticket: u64,
        pos: u64,
        entry: DealEntry,
        t: DealType,
        vol: i64,
        time: i64,
    ) -> DealRecord {
        DealRecord {
            position_id: PositionId(pos),
            time,
            ..DealRecord::trade(
                DealTicket(ticket),
                "EURUSD",
                t,
                entry,
                Volume(Decimal::new(vol, 2)),
                Price(Decimal::new(11000 + ticket as i64, 4)),
            )
        }
    }

    #[test]
    fn reports_carry_the_entry_comment_then_the_closing_deals() {
        let mut tracker = crate::tracker::Tracker::new(hedge_domain::Login(7));
        let mut seen = crate::tracker::Observed {
            id: PositionId(10),
            symbol: "EURUSD".into(),
            side: hedge_domain::Side::Buy,
            volume: Volume(Decimal::new(10, 2)),
            price_open: Price(Decimal::new(11000, 4)),
            sl: Price::ZERO,
            tp: Price::ZERO,
            magic: Magic(0),
            comment: "signal #42".into(),
            time: 100,
            time_update: 100,
        };
        let opened = tracker.observe(&seen, None);
        assert_eq!(report(&opened[0], "EURUSD").comment, "signal #42");

        let mut closing = deal(2, 10, DealEntry::Out, DealType::Sell, 10, 200);
        closing.comment = "[sl 1.09000]".into();
        seen.volume = Volume::ZERO;
        seen.time_update = 200;
        let closed = tracker.observe(&seen, Some(CloseDetail::from_deal(&closing)));
        let r = report(&closed[0], "EURUSD");
        assert_eq!(r.kind, PositionEventKind::Close);
        assert_eq!(r.comment, "[sl 1.09000]");

        // A close only inferred from a snapshot says so, and has no deal comment to give.
        seen.id = PositionId(11);
        seen.volume = Volume(Decimal::new(10, 2));
        tracker.observe(&seen, None);
        let gone = tracker.reconcile(&[], &std::collections::HashMap::new(), 300);
        assert_eq!(
            report(&gone[0], "EURUSD").comment,
            "closed while the agent was away; no closing deal found"
        );
    }

    #[test]
    fn history_gives_closing_deals_and_positions_missed_entirely() {
        let deals = vec![
            deal(1, 10, DealEntry::In, DealType::Buy, 10, 100),
            deal(2, 10, DealEntry::Out, DealType::Sell, 10, 200),
            // Opened after the agent's last look and closed in two parts.
            deal(3, 20, DealEntry::In, DealType::Sell, 20, 300),
            deal(4, 20, DealEntry::Out, DealType::Buy, 5, 310),
            deal(5, 20, DealEntry::Out, DealType::Buy, 15, 320),
            // Still partly open: not a missed round trip.
            deal(6, 30, DealEntry::In, DealType::Buy, 20, 330),
            deal(7, 30, DealEntry::Out, DealType::Sell, 10, 340),
        ];
        let (closes, away) = read_history(&deals, Some(150));
        assert_eq!(closes[&PositionId(10)].deal, Some(DealTicket(2)));
        // The reduction of a position still open, for the partial close found by a snapshot.
        assert_eq!(closes[&PositionId(30)].deal, Some(DealTicket(7)));
        assert_eq!(away.len(), 1);
        assert_eq!(away[0].position.id, PositionId(20));
        assert_eq!(away[0].position.side, hedge_domain::Side::Sell);
        assert_eq!(away[0].volume, Volume(Decimal::new(20, 2)));
        assert_eq!(away[0].close.deal, Some(DealTicket(5)));
        let (_, none) = read_history(&deals, None);
        assert!(none.is_empty());
    }
}
