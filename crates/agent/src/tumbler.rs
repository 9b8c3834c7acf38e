//! `hedge tumbler`: on the first new position of its account, kill the configured processes at once.
//!
//! The trigger is the `tx` that carries the new position (a `DEAL_ADD` entering a position id the
//! tumbler has not seen), acted on as soon as it is read, before anything is logged or stored: the
//! kill is the first thing done. Positions that already exist when the tumbler connects are not new;
//! positions that appear in a snapshot after a reconnection are (their `tx` may have been missed).
//! Afterwards the firing is logged with every pid, reported to the center through the outbox, and
//! the tumbler exits, or re-arms with `--rearm`.
//!
//! The positions it has seen are kept in its state store (with the report of a firing, in one
//! transaction), so a restarted tumbler neither fires again on a position it already knew nor
//! ignores one that opened while it was down.
//!
//! On an account a client agent also watches (the copier's client account), the client's role
//! stands: the center never lets a tumbler's registration replace another role. The firing is
//! recorded as a `tumbler_fired` event, not as the account's status, which is the client's.

use crate::kill::{Killed, Killer, DEFAULT_NAMES};
use hedge_agent_runtime::args::{AgentArgs, AgentSettings};
use hedge_agent_runtime::center;
use hedge_agent_runtime::outbox::{Backoff, NewItem, Outbox, OutboxKind, StateWrite};
use hedge_agent_runtime::session::Session;
use hedge_agent_runtime::status::StatusBoard;
use hedge_center_api::model::{AccountRole, IdempotencyKey, TumblerFiring};
use hedge_domain::{DealEntry, Login, Magic, PositionId, Side, Volume};
use hedge_protocol::{Terminal, TerminalEvent, Tx};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

/// State store namespace and key of the positions seen.
const NS_TUMBLER: &str = "tumbler";
const KEY_KNOWN: &str = "known";

/// `hedge tumbler`.
#[derive(clap::Args, Clone, Debug)]
pub struct TumblerArgs {
    #[command(flatten)]
    pub agent: AgentArgs,

    /// Process name to kill (repeatable). Default: terminal.exe, terminal64.exe, javaw.exe.
    #[arg(long = "kill", value_name = "NAME")]
    pub kill: Vec<String>,

    /// Kill the process whose pid this file holds (repeatable).
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_files: Vec<PathBuf>,

    /// Only positions on this symbol trigger (canonical or account name; repeatable). The
    /// positional symbols filter the same way.
    #[arg(long = "symbol", value_name = "SYMBOL")]
    pub symbols: Vec<String>,

    /// Only positions with this magic number trigger (repeatable).
    #[arg(long = "magic", value_name = "MAGIC")]
    pub magics: Vec<u64>,

    /// Keep watching after firing, for the next new position.
    #[arg(long)]
    pub rearm: bool,

    /// Only report: kill nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not register the account with the center: its client agent does (a tumbler on the
    /// copier's client account). Firings are still reported.
    #[arg(long)]
    pub no_register: bool,
}

/// The `[tumbler]` table of the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TumblerSection {
    #[serde(default)]
    pub kill: Vec<String>,
    #[serde(default)]
    pub pid_files: Vec<PathBuf>,
    #[serde(default)]
    pub symbols: Vec<String>,
    #[serde(default)]
    pub magics: Vec<u64>,
    pub rearm: Option<bool>,
    pub dry_run: Option<bool>,
    pub register: Option<bool>,
}

/// A new position that passes the filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub position: PositionId,
    pub symbol: String,
    pub side: Side,
    pub volume: Volume,
    pub magic: Magic,
    pub time: i64,
}

/// Which positions trigger: symbol (canonical or account name) and magic filters, and the ids known
/// before arming. Pure.
#[derive(Clone, Debug)]
pub struct Watch {
    symbols: Vec<String>,
    magics: Vec<Magic>,
    map: hedge_domain::SymbolMap,
    known: HashSet<PositionId>,
}

impl Watch {
    pub fn new(symbols: Vec<String>, magics: Vec<Magic>, map: hedge_domain::SymbolMap) -> Self {
        Watch {
            symbols,
            magics,
            map,
            known: HashSet::new(),
        }
    }

    /// Marks positions as existing (not new).
    pub fn know(&mut self, ids: impl IntoIterator<Item = PositionId>) {
        self.known.extend(ids);
    }

    pub fn is_known(&self, id: PositionId) -> bool {
        self.known.contains(&id)
    }

    /// Every position id seen, sorted (what the state store keeps).
    pub fn known_ids(&self) -> Vec<PositionId> {
        let mut ids: Vec<PositionId> = self.known.iter().copied().collect();
        ids.sort();
        ids
    }

    /// Forgets positions that are no longer open (a closed position id never opens again).
    /// Returns whether anything was forgotten.
    pub fn retain_open(&mut self, open: &HashSet<PositionId>) -> bool {
        let before = self.known.len();
        self.known.retain(|id| open.contains(id));
        self.known.len() != before
    }

    fn passes(&self, symbol: &str, magic: Magic) -> bool {
        let symbol_ok = self.symbols.is_empty()
            || self.symbols.iter().any(|s| {
                s == symbol || self.map.canonical_of(symbol).as_deref() == Some(s.as_str())
            });
        let magic_ok = self.magics.is_empty() || self.magics.contains(&magic);
        symbol_ok && magic_ok
    }

    /// The trigger a `tx` carries, if it opens a position not seen before and passes the filters.
    /// The position is remembered either way, so it triggers at most once.
    pub fn on_tx(&mut self, tx: &Tx) -> Option<Trigger> {
        let candidate = if let Some(d) = tx
            .deal_record
            .as_ref()
            .filter(|d| d.entry == DealEntry::In && d.deal_type.is_trade())
        {
            Trigger {
                position: d.position_id,
                symbol: d.symbol.clone(),
                side: d.deal_type.side()?,
                volume: d.volume,
                magic: d.magic,
                time: d.time,
            }
        } else if let Some(p) = tx
            .position_record
            .as_ref()
            .filter(|p| p.volume.is_positive())
        {
            Trigger {
                position: p.identifier,
                symbol: p.symbol.clone(),
                side: p.position_type.side(),
                volume: p.volume,
                magic: p.magic,
                time: p.time,
            }
        } else {
            return None;
        };
        if candidate.position.get() == 0 || !self.known.insert(candidate.position) {
            return None;
        }
        self.passes(&candidate.symbol, candidate.magic)
            .then_some(candidate)
    }

    /// Triggers for positions in a full list that were not known (opened while disconnected).
    pub fn on_positions(&mut self, positions: &[hedge_protocol::PositionRecord]) -> Vec<Trigger> {
        let mut out = Vec::new();
        for p in positions {
            if p.volume.is_positive()
                && self.known.insert(p.identifier)
                && self.passes(&p.symbol, p.magic)
            {
                out.push(Trigger {
                    position: p.identifier,
                    symbol: p.symbol.clone(),
                    side: p.position_type.side(),
                    volume: p.volume,
                    magic: p.magic,
                    time: p.time,
                });
            }
        }
        out
    }
}

/// The tumbler's settings: the command line, then the config file's `[tumbler]` section, then
/// the defaults.
struct TumblerChoices {
    /// Process names to kill.
    names: Vec<String>,
    pid_files: Vec<PathBuf>,
    symbols: Vec<String>,
    magics: Vec<Magic>,
    rearm: bool,
    dry_run: bool,
    register: bool,
}

impl TumblerChoices {
    fn new(
        args: &TumblerArgs,
        section: &TumblerSection,
        agent_symbols: &[String],
    ) -> anyhow::Result<TumblerChoices> {
        let mut names = if args.kill.is_empty() {
            section.kill.clone()
        } else {
            args.kill.clone()
        };
        let pid_files = if args.pid_files.is_empty() {
            section.pid_files.clone()
        } else {
            args.pid_files.clone()
        };
        if names.is_empty() && pid_files.is_empty() {
            names = DEFAULT_NAMES.iter().map(|s| s.to_string()).collect();
        }
        if let Some(bad) = names
            .iter()
            .find(|n| n.trim().is_empty() || n.contains(['/', '\\']))
        {
            anyhow::bail!("--kill takes a process name (like javaw.exe), not {bad:?}");
        }
        let mut symbols = agent_symbols.to_vec();
        symbols.extend(args.symbols.iter().cloned());
        symbols.extend(section.symbols.iter().cloned());
        let mut magics: Vec<Magic> = args.magics.iter().map(|m| Magic(*m)).collect();
        magics.extend(section.magics.iter().map(|m| Magic(*m)));
        Ok(TumblerChoices {
            names,
            pid_files,
            symbols,
            magics,
            rearm: args.rearm || section.rearm.unwrap_or(false),
            dry_run: args.dry_run || section.dry_run.unwrap_or(false),
            register: !args.no_register && section.register.unwrap_or(true),
        })
    }
}

/// Runs `hedge tumbler` until it fires (or forever with `--rearm`).
pub async fn run(args: TumblerArgs) -> anyhow::Result<()> {
    let settings = args.agent.resolve()?;
    hedge_agent_runtime::logging::init(settings.log_format);
    settings.log_warnings();
    let section: TumblerSection = settings.config.section("tumbler")?;
    let TumblerChoices {
        names,
        pid_files,
        symbols,
        magics,
        rearm,
        dry_run,
        register,
    } = TumblerChoices::new(&args, &section, &settings.symbols)?;

    // The outbox is ready before the terminal can connect, so no first position is missed; a
    // start refused for the terminal's port or the terminal itself removes the state it made.
    let delivery = center::delivery(&settings, None)?;
    let new_state = settings.new_state("tumbler");
    let outbox = Outbox::open(&settings.state_path("tumbler"))?;
    let session = match Session::attach(&settings, "tumbler").await {
        Ok(session) => session,
        Err(e) => {
            drop(outbox);
            new_state.undo();
            return Err(e.into());
        }
    };
    let killer = Arc::new(Killer::new(names, pid_files, dry_run));
    tracing::info!(
        login = %settings.login,
        listen = %session.local_addr(),
        kill = ?killer.names(),
        pid_files = ?killer.pid_files(),
        symbols = ?symbols,
        magics = ?magics.iter().map(|m| m.get()).collect::<Vec<_>>(),
        rearm,
        dry_run,
        "tumbler armed"
    );
    let sender = settings.center.as_ref().map(|_| {
        tokio::spawn(
            outbox
                .clone()
                .run_sender(delivery.clone(), Backoff::default()),
        )
    });
    let status_line = session
        .status
        .spawn(Some(outbox.clone()), settings.status_interval);
    let refresher = spawn_refresher(killer.clone());
    let mut watch = Watch::new(symbols, magics, settings.symbol_map.clone());
    let restored = load_known(&outbox)?;
    if let Some(ids) = &restored {
        tracing::info!(
            positions = ids.len(),
            "restarted: positions seen before are not new"
        );
        watch.know(ids.iter().copied());
    }
    let tumbler = Tumbler {
        restored: restored.is_some(),
        register,
        settings: settings.clone(),
        terminal: session.terminal.clone(),
        status: session.status.clone(),
        outbox: outbox.clone(),
        killer,
        watch,
        rearm,
    };
    let result = tokio::select! {
        r = tumbler.run() => r,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted");
            Ok(())
        }
    };
    refresher.abort();
    status_line.abort();
    if let Some(sender) = sender {
        // Give the center a moment to take the report; it stays in the outbox otherwise.
        if outbox.drain(Duration::from_secs(10)).await > 0 {
            tracing::warn!(
                "center did not take the report yet; it is kept in the outbox for the next start"
            );
        }
        sender.abort();
    }
    session.shutdown().await;
    result
}

/// Rescans the process list in the background so a firing usually has its pids at hand.
fn spawn_refresher(killer: Arc<Killer>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let k = killer.clone();
            let _ = tokio::task::spawn_blocking(move || k.refresh()).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// The tumbler's event loop.
pub struct Tumbler {
    pub settings: AgentSettings,
    pub terminal: Terminal,
    pub status: StatusBoard,
    pub outbox: Arc<Outbox>,
    pub killer: Arc<Killer>,
    pub watch: Watch,
    pub rearm: bool,
    /// The positions seen were restored from the state store: positions in the first snapshot that
    /// are not among them opened while the tumbler was down, and are new.
    pub restored: bool,
    /// Register the account with the center (not when its client agent does).
    pub register: bool,
}

/// The positions a previous run had seen; `None` on a first start.
pub fn load_known(outbox: &Outbox) -> anyhow::Result<Option<Vec<PositionId>>> {
    match outbox.state_get(NS_TUMBLER, KEY_KNOWN)? {
        None => Ok(None),
        Some(text) => {
            let ids: Vec<u64> = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!("the tumbler's state is unreadable ({e}); remove its state file to start afresh")
            })?;
            Ok(Some(ids.into_iter().map(PositionId).collect()))
        }
    }
}

fn known_write(watch: &Watch) -> StateWrite {
    let ids: Vec<u64> = watch.known_ids().iter().map(|id| id.get()).collect();
    StateWrite::Put {
        ns: NS_TUMBLER.into(),
        key: KEY_KNOWN.into(),
        value: serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()),
    }
}

impl Tumbler {
    /// Watches until the first trigger (every trigger with `rearm`).
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut events = self.terminal.subscribe();
        let mut armed_once = false;
        if self.terminal.is_connected() {
            let positions = self.terminal.positions();
            armed_once = true;
            self.on_connected();
            let triggers = self.arm(&positions, Instant::now())?;
            if self.fire_all(&triggers)? {
                return Ok(());
            }
        }
        loop {
            let triggers = match events.recv().await {
                Ok(TerminalEvent::Tx(tx)) => {
                    let received = Instant::now();
                    let known = self.watch.known.len();
                    match self.watch.on_tx(&tx) {
                        Some(t) => vec![(t, received)],
                        None => {
                            if self.watch.known.len() != known {
                                self.persist()?;
                            }
                            continue;
                        }
                    }
                }
                Ok(TerminalEvent::Connected { snapshot, .. }) => {
                    let received = Instant::now();
                    self.on_connected();
                    if !armed_once {
                        armed_once = true;
                        self.arm(&snapshot.positions, received)?
                    } else {
                        self.on_snapshot(&snapshot.positions, received)?
                    }
                }
                Ok(TerminalEvent::Snapshot(snapshot)) => {
                    let received = Instant::now();
                    if !armed_once {
                        armed_once = true;
                        self.arm(&snapshot.positions, received)?
                    } else {
                        self.on_snapshot(&snapshot.positions, received)?
                    }
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        skipped = n,
                        "tumbler fell behind; checking current positions"
                    );
                    let received = Instant::now();
                    let positions = self.terminal.positions();
                    stamp(self.watch.on_positions(&positions), received)
                }
                Err(RecvError::Closed) => return Ok(()),
            };
            if self.fire_all(&triggers)? {
                return Ok(());
            }
        }
    }

    /// Fires on `triggers` (if any); whether the tumbler is done (fired and not re-arming).
    fn fire_all(&mut self, triggers: &[(Trigger, Instant)]) -> anyhow::Result<bool> {
        if triggers.is_empty() {
            return Ok(false);
        }
        self.fire(triggers)?;
        if !self.rearm {
            return Ok(true);
        }
        tracing::info!("tumbler re-armed");
        Ok(false)
    }

    /// The first look at the account. On a first start every open position is old. After a
    /// restart, positions not seen before opened while the tumbler was down: they trigger.
    fn arm(
        &mut self,
        positions: &[hedge_protocol::PositionRecord],
        received: Instant,
    ) -> anyhow::Result<Vec<(Trigger, Instant)>> {
        if self.restored {
            let triggers = self.on_snapshot(positions, received)?;
            if triggers.is_empty() {
                self.persist()?;
            }
            return Ok(triggers);
        }
        self.watch.know(positions.iter().map(|p| p.identifier));
        self.persist()?;
        Ok(Vec::new())
    }

    /// A full list of open positions: new ones trigger, closed ones are forgotten.
    fn on_snapshot(
        &mut self,
        positions: &[hedge_protocol::PositionRecord],
        received: Instant,
    ) -> anyhow::Result<Vec<(Trigger, Instant)>> {
        let triggers = stamp(self.watch.on_positions(positions), received);
        let open: HashSet<PositionId> = positions.iter().map(|p| p.identifier).collect();
        let forgot = self.watch.retain_open(&open);
        if triggers.is_empty() && forgot {
            self.persist()?;
        }
        Ok(triggers)
    }

    /// Writes the positions seen to the state store.
    fn persist(&self) -> anyhow::Result<()> {
        self.outbox.commit(&[], &[known_write(&self.watch)])?;
        Ok(())
    }

    fn on_connected(&self) {
        if self.settings.center.is_none() || !self.register {
            return;
        }
        if let Some(hello) = self.terminal.hello() {
            let reg = center::registration(
                &self.settings,
                AccountRole::Tumbler,
                &hello,
                &self.terminal.symbols(),
                &center::ClientHedging::default(),
            );
            if let Err(e) = center::queue_registration(&self.outbox, &reg) {
                tracing::error!(error = %e, "cannot queue the registration");
            }
        }
    }

    /// Kills first, then logs and reports.
    fn fire(&self, triggers: &[(Trigger, Instant)]) -> anyhow::Result<()> {
        let (killed, first_kill) = self.killer.fire();
        let Some((trigger, received)) = triggers.first() else {
            return Ok(());
        };
        let reaction = first_kill
            .unwrap_or_else(Instant::now)
            .duration_since(*received);
        log_firing(
            self.settings.login,
            trigger,
            &killed,
            self.killer.dry_run(),
            reaction,
        );
        let firing = TumblerFiring {
            login: self.settings.login,
            position_id: trigger.position,
            symbol: trigger.symbol.clone(),
            side: trigger.side,
            volume: trigger.volume,
            magic: trigger.magic,
            time_ms: trigger.time,
            killed: killed
                .iter()
                .filter(|k| k.result.is_ok())
                .map(Killed::label)
                .collect(),
            dry_run: self.killer.dry_run(),
            reaction_us: u64::try_from(reaction.as_micros()).unwrap_or(u64::MAX),
            idempotency_key: IdempotencyKey::firing(self.settings.login, trigger.position),
        };
        self.status.event(firing.describe());
        let mut items = Vec::new();
        if self.settings.center.is_some() {
            items.push(NewItem::json(
                firing.idempotency_key.clone(),
                OutboxKind::TumblerEvent,
                &firing,
            )?);
        }
        // The report and the positions seen in one transaction: after a restart the position is
        // known, and its report is either queued once or was never made.
        self.outbox.commit(&items, &[known_write(&self.watch)])?;
        Ok(())
    }
}

fn stamp(triggers: Vec<Trigger>, at: Instant) -> Vec<(Trigger, Instant)> {
    triggers.into_iter().map(|t| (t, at)).collect()
}

fn log_firing(login: Login, t: &Trigger, killed: &[Killed], dry_run: bool, reaction: Duration) {
    tracing::warn!(
        account = %login,
        position = %t.position,
        symbol = %t.symbol,
        side = %t.side,
        volume = %t.volume,
        magic = t.magic.get(),
        dry_run,
        reaction_us = reaction.as_micros() as u64,
        "new position: tumbler fired"
    );
    if killed.is_empty() {
        tracing::warn!("no matching process was running");
    }
    for k in killed {
        match &k.result {
            Ok(()) if dry_run => {
                tracing::warn!(target_name = %k.target, pid = k.pid, "would kill (dry run)")
            }
            Ok(()) => tracing::warn!(target_name = %k.target, pid = k.pid, "killed"),
            Err(e) => {
                tracing::error!(target_name = %k.target, pid = k.pid, error = %e, "kill failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedge_domain::{
        DealReason, DealTicket, DealType, OrderTicket, Price, TradeTransactionType,
    };
    use hedge_protocol::DealRecord;
    use rust_decimal::Decimal;

    fn open_tx(pos: u64, symbol: &str, magic: u64, entry: DealEntry) -> Tx {
        let mut tx = Tx::new(1, TradeTransactionType::DealAdd);
        tx.deal_record = Some(DealRecord {
            ticket: DealTicket(pos + 1000),
            order: OrderTicket(pos),
            position_id: PositionId(pos),
            time: 5,
            deal_type: DealType::Buy,
            entry,
            reason: DealReason::Client,
            magic: Magic(magic),
            volume: Volume(Decimal::new(1, 1)),
            price: Price(Decimal::new(11, 1)),
            commission: Default::default(),
            swap: Default::default(),
            profit: Default::default(),
            fee: Default::default(),
            symbol: symbol.into(),
            comment: String::new(),
            external_id: String::new(),
        });
        tx
    }

    #[test]
    fn only_new_filtered_positions_trigger_once() {
        let mut w = Watch::new(
            vec!["EURUSD".into()],
            vec![Magic(7)],
            hedge_domain::SymbolMap::from_affix(".r"),
        );
        w.know([PositionId(1)]);
        assert!(
            w.on_tx(&open_tx(1, "EURUSD.r", 7, DealEntry::In)).is_none(),
            "known"
        );
        assert!(
            w.on_tx(&open_tx(2, "GBPUSD.r", 7, DealEntry::In)).is_none(),
            "symbol"
        );
        assert!(
            w.on_tx(&open_tx(3, "EURUSD.r", 8, DealEntry::In)).is_none(),
            "magic"
        );
        assert!(
            w.on_tx(&open_tx(4, "EURUSD.r", 7, DealEntry::Out))
                .is_none(),
            "a close"
        );
        let t = w.on_tx(&open_tx(5, "EURUSD.r", 7, DealEntry::In)).unwrap();
        assert_eq!(t.position, PositionId(5));
        assert!(
            w.on_tx(&open_tx(5, "EURUSD.r", 7, DealEntry::In)).is_none(),
            "once"
        );
        let mut any = Watch::new(vec![], vec![], hedge_domain::SymbolMap::identity());
        assert!(any.on_tx(&open_tx(9, "XAUUSD", 0, DealEntry::In)).is_some());
    }
}
