//! The simulated terminal: connects to an agent exactly as the EA does and speaks the terminal side
//! of the line protocol over a [`crate::account::Account`].
//!
//! On every (re)connection it sends `hello`, `symbols`, `snapshot`; then it pushes each trade
//! transaction, a heartbeat and a periodic snapshot, and executes commands. Trading commands run at
//! most once per `cmd_id`: a bounded ring keeps recent replies, and a resent id is answered from it.
//! The connection is re-established with exponential backoff; the account (and the ring) live on.

use crate::account::{Account, AccountConfig};
use crate::faults::Faults;
use crate::feed::{RandomWalk, Tick};
use crate::symbols::SimSymbol;
use hedge_domain::{
    CmdId, DealReason, Magic, OrderType, PositionId, Price, Retcode, SharedClock, Side,
    SystemClock, TradeAction, Volume,
};
use hedge_protocol::{
    decode_agent, encode, AccountInfo, AgentMsg, Cmd, DealRecord, ErrorCode, ErrorMsg, Heartbeat,
    HistoryPage, HistoryRange, HistorySummary, LineReader, Op, OrderRecord, PositionRecord,
    ProtocolError, Reply, Symbols, TerminalMsg, TimeMs, TradeRequest, Tx, LINE_RESERVE, MAX_LINE,
};
use hedge_protocol::{json_len, split_by_size};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Where quotes come from.
#[derive(Clone, Debug)]
pub enum FeedConfig {
    /// Quotes change only through [`SimTerminal::set_quote`] or a script.
    Manual,
    /// A seeded random walk, one step of every symbol per interval.
    RandomWalk { interval: Duration },
    /// Recorded ticks, replayed with their original spacing divided by `speed`.
    Replay { ticks: Vec<Tick>, speed: f64 },
}

/// Everything a simulated terminal needs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The agent's address, e.g. `127.0.0.1:7001`.
    pub connect: String,
    pub account: AccountConfig,
    pub symbols: Vec<SimSymbol>,
    pub feed: FeedConfig,
    pub heartbeat_interval: Duration,
    pub snapshot_interval: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Replies kept for at-most-once execution.
    pub ring_capacity: usize,
    /// Largest history page, in records.
    pub max_page: u32,
    pub ea_version: String,
    /// This terminal side's `hello.instance`, the same across its reconnections (the agent refuses a
    /// second instance for one login).
    pub instance: String,
    /// Start as a terminal that has not logged in yet: like the EA, connect to the agent only after
    /// [`SimTerminal::log_in`].
    pub start_logged_out: bool,
    /// The terminal's wall clock (server time of deals, heartbeats, pings) unless a replayed feed
    /// sets the time; the system clock but in tests.
    pub clock: SharedClock,
}

/// A new instance name per simulated terminal in this process.
fn next_instance() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("sim-{}-{n}", std::process::id())
}

impl SimConfig {
    pub fn new(connect: impl Into<String>, account: AccountConfig) -> Self {
        SimConfig {
            connect: connect.into(),
            account,
            symbols: crate::symbols::default_symbols(""),
            feed: FeedConfig::Manual,
            heartbeat_interval: Duration::from_secs(5),
            snapshot_interval: Duration::from_secs(60),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            ring_capacity: 4096,
            max_page: 1000,
            ea_version: concat!("hedge-sim ", env!("CARGO_PKG_VERSION")).into(),
            instance: next_instance(),
            start_logged_out: false,
            clock: SystemClock::shared(),
        }
    }
}

/// Recent trading commands and their replies.
struct Ring {
    capacity: usize,
    order: VecDeque<CmdId>,
    replies: HashMap<CmdId, Reply>,
}

impl Ring {
    fn new(capacity: usize) -> Self {
        Ring {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            replies: HashMap::new(),
        }
    }

    fn get(&self, id: &CmdId) -> Option<Reply> {
        self.replies.get(id).cloned()
    }

    fn put(&mut self, reply: Reply) {
        if self.replies.contains_key(&reply.cmd_id) {
            return;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.replies.remove(&old);
            }
        }
        self.order.push_back(reply.cmd_id.clone());
        self.replies.insert(reply.cmd_id.clone(), reply);
    }
}

enum Control {
    Disconnect,
    Stop,
}

struct Shared {
    account: Mutex<Account>,
    ring: Mutex<Ring>,
    /// Transactions from outside the connection (user trades, quotes) to push to the agent.
    out: mpsc::UnboundedSender<TerminalMsg>,
    wall_clock: bool,
    clock: SharedClock,
    commands_executed: Mutex<u64>,
    /// Whether the terminal is logged in to its account (`ACCOUNT_LOGIN` set).
    logged_in: watch::Sender<bool>,
}

impl Shared {
    fn touch_clock(&self, account: &mut Account) {
        if self.wall_clock {
            account.set_time(self.clock.now_ms());
        }
    }

    fn push(&self, txs: Vec<Tx>) {
        for tx in txs {
            log_tx(&tx);
            let _ = self.out.send(TerminalMsg::Tx(tx));
        }
    }
}

fn log_tx(tx: &Tx) {
    if let Some(d) = &tx.deal_record {
        if d.deal_type.is_trade() {
            tracing::info!(
                deal = %d.ticket, order = %d.order, position = %d.position_id,
                side = %d.deal_type, entry = %d.entry, reason = %d.reason,
                symbol = %d.symbol, volume = %d.volume, price = %d.price, profit = %d.profit,
                "deal"
            );
        }
    }
}

/// A running simulated terminal. Dropping the handle leaves it running; call [`SimTerminal::stop`].
pub struct SimTerminal {
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
    connected: watch::Receiver<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl SimTerminal {
    /// Starts the terminal (inside a tokio runtime): it connects to `config.connect` and keeps
    /// reconnecting until stopped.
    pub fn spawn(config: SimConfig) -> SimTerminal {
        let start = match &config.feed {
            FeedConfig::Replay { ticks, .. } => ticks.first().map(|t| t.time).unwrap_or(0),
            _ => config.clock.now_ms(),
        };
        let wall_clock = !matches!(config.feed, FeedConfig::Replay { .. });
        let account = Account::new(config.account.clone(), config.symbols.clone(), start);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            account: Mutex::new(account),
            ring: Mutex::new(Ring::new(config.ring_capacity)),
            out: out_tx,
            wall_clock,
            clock: config.clock.clone(),
            commands_executed: Mutex::new(0),
            logged_in: watch::Sender::new(!config.start_logged_out),
        });
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (connected_tx, connected_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(drive(
            shared.clone(),
            config.clone(),
            control_rx,
            out_rx,
            connected_tx,
        ))];
        if let Some(feed) = feed_task(shared.clone(), &config) {
            tasks.push(feed);
        }
        SimTerminal {
            shared,
            control: control_tx,
            connected: connected_rx,
            tasks: Mutex::new(tasks),
        }
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until the handshake with the agent has been sent.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn account(&self) -> AccountInfo {
        self.shared.account.lock().account_info()
    }

    pub fn positions(&self) -> Vec<PositionRecord> {
        self.shared.account.lock().positions()
    }

    pub fn orders(&self) -> Vec<OrderRecord> {
        self.shared.account.lock().orders()
    }

    pub fn deals(&self) -> Vec<DealRecord> {
        self.shared.account.lock().deals().to_vec()
    }

    /// Trading commands received from the agent and executed (resends answered from the ring are not
    /// counted).
    pub fn commands_executed(&self) -> u64 {
        *self.shared.commands_executed.lock()
    }

    /// Direct access to the account. Transactions it returns are not pushed; use the trading methods
    /// for changes the agent should see.
    pub fn with_account<T>(&self, f: impl FnOnce(&mut Account) -> T) -> T {
        f(&mut self.shared.account.lock())
    }

    /// A request made on the terminal by hand (`DEAL_REASON_CLIENT`), as the user or a copier would;
    /// its transactions are pushed to the agent.
    pub fn trade(&self, request: TradeRequest) -> Reply {
        let execution = {
            let mut account = self.shared.account.lock();
            self.shared.touch_clock(&mut account);
            account.send(&request, DealReason::Client)
        };
        tracing::info!(
            action = %request.action, symbol = %request.symbol, volume = %request.volume,
            retcode = %execution.reply.retcode, order = %execution.reply.order,
            position = %execution.reply.position, "manual trade"
        );
        self.shared.push(execution.txs);
        execution.reply
    }

    /// Opens a market position.
    pub fn open(
        &self,
        symbol: &str,
        side: Side,
        volume: Volume,
        magic: Magic,
        comment: &str,
    ) -> Reply {
        let mut r = TradeRequest::market(symbol, OrderType::market(side), volume);
        r.magic = magic;
        r.comment = comment.into();
        self.trade(r)
    }

    /// Closes `volume` of a position (all of it when `None`) with an opposite market order naming it.
    pub fn close(&self, position: PositionId, volume: Option<Volume>) -> Reply {
        let found = self
            .shared
            .account
            .lock()
            .position(position)
            .map(|p| (p.symbol.clone(), p.side, p.volume, p.magic));
        let Some((symbol, side, open_volume, magic)) = found else {
            let mut r = Reply::new(
                CmdId::new(""),
                Retcode::POSITION_CLOSED,
                format!("position {position} is not open"),
            );
            r.position = position;
            return r;
        };
        let mut r = TradeRequest::close(
            symbol,
            position,
            OrderType::market(side.opposite()),
            volume.unwrap_or(open_volume),
        );
        r.magic = magic;
        self.trade(r)
    }

    /// Sets a position's stops (`TRADE_ACTION_SLTP`).
    pub fn modify(&self, position: PositionId, sl: Price, tp: Price) -> Reply {
        let symbol = self
            .shared
            .account
            .lock()
            .position(position)
            .map(|p| p.symbol.clone())
            .unwrap_or_default();
        let mut r = TradeRequest::market(symbol, OrderType::Buy, Volume::ZERO);
        r.action = TradeAction::Sltp;
        r.position = position;
        r.sl = sl;
        r.tp = tp;
        self.trade(r)
    }

    /// A new quote; whatever it triggers (SL/TP, pending orders, remainders) is pushed.
    pub fn set_quote(&self, symbol: &str, bid: Price, ask: Price) {
        let txs = {
            let mut account = self.shared.account.lock();
            let now = if self.shared.wall_clock {
                self.shared.clock.now_ms()
            } else {
                account.now()
            };
            account.quote(symbol, bid, ask, now)
        };
        self.shared.push(txs);
    }

    /// A deposit (positive) or withdrawal on the account, pushed as its balance deal; a withdrawal
    /// that takes the margin level to the stop-out level closes positions as the server would.
    pub fn balance_operation(&self, amount: hedge_domain::Money, comment: &str) {
        let txs = {
            let mut account = self.shared.account.lock();
            self.shared.touch_clock(&mut account);
            account.balance_change(amount, comment)
        };
        tracing::info!(%amount, comment, "balance operation");
        self.shared.push(txs);
    }

    /// A new quote; without `ask`, the symbol keeps its current spread (a trader moving the price
    /// by hand thinks of one price).
    pub fn set_quote_keeping_spread(&self, symbol: &str, bid: Price, ask: Option<Price>) {
        let ask = ask.unwrap_or_else(|| {
            let spread = self
                .shared
                .account
                .lock()
                .symbol(symbol)
                .map(|s| s.ask.0 - s.bid.0)
                .unwrap_or_default();
            Price(bid.0 + spread)
        });
        self.set_quote(symbol, bid, ask);
    }

    /// The account's symbol names.
    pub fn symbol_names(&self) -> Vec<String> {
        self.shared.account.lock().symbol_names()
    }

    /// The terminal finishes logging in (see [`SimConfig::start_logged_out`]); it connects now.
    pub fn log_in(&self) {
        self.shared.logged_in.send_replace(true);
    }

    /// The terminal loses its login (the account was switched, the password changed): as the EA,
    /// it drops the link to the agent and connects again only after [`SimTerminal::log_in`]. The
    /// account keeps its positions.
    pub fn log_out(&self) {
        self.shared.logged_in.send_replace(false);
        let _ = self.control.send(Control::Disconnect);
    }

    /// The terminal's link to the trade server came back: as the EA does, a fresh snapshot follows,
    /// because positions may have changed while it was away.
    pub fn trade_server_reconnected(&self) {
        let snapshot = {
            let mut account = self.shared.account.lock();
            self.shared.touch_clock(&mut account);
            account.snapshot(None)
        };
        let _ = self.shared.out.send(TerminalMsg::Snapshot(snapshot));
    }

    /// The server re-opens a position with a new ticket (swap rollover, split); the identifier
    /// stays. The change is pushed as a `POSITION` transaction. Returns the new ticket, or `None`
    /// when the position is not open.
    pub fn reticket(&self, position: PositionId) -> Option<u64> {
        let (record, now) = {
            let mut account = self.shared.account.lock();
            self.shared.touch_clock(&mut account);
            (account.reticket(position)?, account.now())
        };
        let ticket = record.ticket;
        let mut tx = Tx::new(now, hedge_domain::TradeTransactionType::Position);
        tx.symbol = record.symbol.clone();
        tx.position = record.identifier;
        tx.position_record = Some(record);
        self.shared.push(vec![tx]);
        Some(ticket)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.account.lock().set_faults(faults);
    }

    /// Drops the current connection; the terminal reconnects after its backoff.
    pub fn disconnect(&self) {
        let _ = self.control.send(Control::Disconnect);
    }

    /// Stops connecting and the feed, and waits for the tasks to end.
    pub async fn stop(&self) {
        let _ = self.control.send(Control::Stop);
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
        for (i, t) in tasks.into_iter().enumerate() {
            if i > 0 {
                t.abort();
            }
            let _ = t.await;
        }
    }
}

fn feed_task(shared: Arc<Shared>, config: &SimConfig) -> Option<JoinHandle<()>> {
    match config.feed.clone() {
        FeedConfig::Manual => None,
        FeedConfig::RandomWalk { interval } => {
            let mut walk = RandomWalk::new(config.account.seed, &config.symbols);
            Some(tokio::spawn(async move {
                let mut timer = tokio::time::interval(interval.max(Duration::from_millis(1)));
                loop {
                    timer.tick().await;
                    let txs = {
                        let mut account = shared.account.lock();
                        let now = shared.clock.now_ms();
                        let mut txs = Vec::new();
                        for t in walk.step(now) {
                            txs.extend(account.quote(&t.symbol, t.bid, t.ask, t.time));
                        }
                        txs
                    };
                    shared.push(txs);
                }
            }))
        }
        FeedConfig::Replay { ticks, speed } => Some(tokio::spawn(async move {
            let speed = if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            };
            let mut last: Option<TimeMs> = None;
            for t in ticks {
                if let Some(prev) = last {
                    let gap = (t.time - prev).max(0) as f64 / speed;
                    tokio::time::sleep(Duration::from_micros((gap * 1000.0) as u64)).await;
                }
                last = Some(t.time);
                let txs = shared.account.lock().quote(&t.symbol, t.bid, t.ask, t.time);
                shared.push(txs);
            }
            tracing::info!("tick file replayed to the end");
        })),
    }
}

/// Connect, serve, reconnect; until stopped.
async fn drive(
    shared: Arc<Shared>,
    config: SimConfig,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut out: mpsc::UnboundedReceiver<TerminalMsg>,
    connected: watch::Sender<bool>,
) {
    let mut backoff = config.reconnect_min;
    let mut sent_total: u64 = 0;
    let mut disconnect_fired = false;
    let mut logged_in = shared.logged_in.subscribe();
    loop {
        // As the EA: no connection before the account is logged in, or its hello would say login 0.
        let ready = tokio::select! {
            r = logged_in.wait_for(|l| *l) => r.is_ok(),
            c = control.recv() => matches!(c, Some(Control::Disconnect)),
        };
        if !ready {
            return;
        }
        if !*logged_in.borrow() {
            continue;
        }
        let attempt = tokio::select! {
            r = TcpStream::connect(&config.connect) => Some(r),
            c = control.recv() => match c {
                Some(Control::Disconnect) => None,
                _ => return,
            },
        };
        let stream = match attempt {
            Some(Ok(s)) if hedge_protocol::connected_to_itself(&s) => {
                // With the agent down, the kernel can pick the agent's port as this end's own:
                // the connection is to itself and would keep the port from the restarted agent.
                tracing::debug!(addr = %config.connect, "connected to itself; dropping it");
                drop(s);
                if wait_or_stop(backoff, &mut control, &mut out).await {
                    return;
                }
                backoff = (backoff * 2).min(config.reconnect_max);
                continue;
            }
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::debug!(addr = %config.connect, error = %e, "agent not reachable");
                if wait_or_stop(backoff, &mut control, &mut out).await {
                    return;
                }
                backoff = (backoff * 2).min(config.reconnect_max);
                continue;
            }
            None => continue,
        };
        backoff = config.reconnect_min;
        tracing::info!(addr = %config.connect, "connected to agent");
        let mut session = Session {
            shared: &shared,
            config: &config,
            writer: None,
            seq: 0,
            buf: Vec::with_capacity(64 * 1024),
            sent_total: &mut sent_total,
            disconnect_fired: &mut disconnect_fired,
        };
        let end = session
            .run(stream, &mut control, &mut out, &connected)
            .await;
        connected.send_replace(false);
        match end {
            End::Stop => return,
            End::Lost(reason) => {
                tracing::warn!(%reason, "disconnected from agent");
                if wait_or_stop(config.reconnect_min, &mut control, &mut out).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps, discarding pushes meant for a connection that is not there (the next snapshot carries the
/// state). `true` when asked to stop.
async fn wait_or_stop(
    delay: Duration,
    control: &mut mpsc::UnboundedReceiver<Control>,
    out: &mut mpsc::UnboundedReceiver<TerminalMsg>,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return false,
            c = control.recv() => match c {
                Some(Control::Disconnect) => {}
                _ => return true,
            },
            m = out.recv() => if m.is_none() { return true },
        }
    }
}

/// Why queued messages could not be sent to the agent. Either way the link is lost and the
/// terminal connects again, as MT5 does: both are worth retrying.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("no connection")]
    NoConnection,
    #[error("write error: {0}")]
    Write(#[from] std::io::Error),
}

enum End {
    Stop,
    Lost(String),
}

struct Session<'a> {
    shared: &'a Arc<Shared>,
    config: &'a SimConfig,
    writer: Option<OwnedWriteHalf>,
    seq: u64,
    buf: Vec<u8>,
    sent_total: &'a mut u64,
    disconnect_fired: &'a mut bool,
}

impl Session<'_> {
    async fn run(
        &mut self,
        stream: TcpStream,
        control: &mut mpsc::UnboundedReceiver<Control>,
        out: &mut mpsc::UnboundedReceiver<TerminalMsg>,
        connected: &watch::Sender<bool>,
    ) -> End {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        self.writer = Some(write);
        let mut reader = LineReader::new(read, MAX_LINE);

        // Pushes queued before this point are covered by the snapshot.
        while out.try_recv().is_ok() {}
        let (mut hello, symbols, snapshot) = {
            let mut account = self.shared.account.lock();
            self.shared.touch_clock(&mut account);
            (
                account.hello(&self.config.ea_version),
                account.symbol_infos(),
                account.snapshot(None),
            )
        };
        hello.instance = self.config.instance.clone();
        self.queue(TerminalMsg::Hello(hello));
        // A Market Watch of thousands of symbols does not fit in one line: it goes in as many
        // `symbols` messages as needed, and the snapshot ends the list.
        for symbols in split_by_size(symbols, MAX_LINE - LINE_RESERVE) {
            self.queue(TerminalMsg::Symbols(Symbols { seq: 0, symbols }));
        }
        self.queue(TerminalMsg::Snapshot(snapshot));
        if let Err(e) = self.flush().await {
            return End::Lost(e.to_string());
        }
        connected.send_replace(true);

        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        let mut snapshots = tokio::time::interval(self.config.snapshot_interval);
        heartbeat.tick().await;
        snapshots.tick().await;
        loop {
            tokio::select! {
                line = reader.next_line() => {
                    match line {
                        Ok(None) => return End::Lost("agent closed the connection".into()),
                        Err(e) => return End::Lost(format!("read error: {e}")),
                        Ok(Some(Err(e))) => {
                            tracing::warn!(error = %e, "bad line from agent");
                            self.queue_error(&e);
                        }
                        Ok(Some(Ok(line))) => match decode_agent(line) {
                            Ok(AgentMsg::Cmd(cmd)) => {
                                let latency = self.shared.account.lock().faults().latency_ms;
                                if latency > 0 {
                                    tokio::time::sleep(Duration::from_millis(latency)).await;
                                }
                                self.command(cmd);
                            }
                            Ok(AgentMsg::Error(e)) => {
                                tracing::warn!(code = %e.code, message = %e.message, "agent reported an error");
                                if matches!(e.code, ErrorCode::UnsupportedVersion | ErrorCode::LoginMismatch | ErrorCode::Handshake | ErrorCode::NotReady | ErrorCode::Duplicate) {
                                    return End::Lost(format!("refused by agent: {}", e.message));
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "bad line from agent");
                                self.queue_error(&e);
                            }
                        },
                    }
                }
                m = out.recv() => match m {
                    Some(m) => self.queue(m),
                    None => return End::Stop,
                },
                _ = heartbeat.tick() => {
                    self.queue(TerminalMsg::Heartbeat(Heartbeat { seq: 0, time: self.shared.clock.now_ms() }));
                }
                _ = snapshots.tick() => {
                    let s = {
                        let mut account = self.shared.account.lock();
                        self.shared.touch_clock(&mut account);
                        account.snapshot(None)
                    };
                    self.queue(TerminalMsg::Snapshot(s));
                }
                c = control.recv() => match c {
                    Some(Control::Disconnect) => return End::Lost("disconnect requested".into()),
                    _ => return End::Stop,
                },
            }
            // Drain what else is ready so a burst goes out in one write.
            while let Ok(m) = out.try_recv() {
                self.queue(m);
            }
            if let Err(e) = self.flush().await {
                return End::Lost(e.to_string());
            }
            if let Some(limit) = self.shared.account.lock().faults().disconnect_after {
                if !*self.disconnect_fired && *self.sent_total >= limit {
                    *self.disconnect_fired = true;
                    return End::Lost(format!("injected disconnect after {limit} messages"));
                }
            }
        }
    }

    fn queue(&mut self, mut msg: TerminalMsg) {
        self.seq += 1;
        msg.set_seq(self.seq);
        if let Err(e) = encode(&msg, &mut self.buf) {
            tracing::error!(error = %e, kind = msg.type_name(), "message could not be encoded");
            self.seq -= 1;
            return;
        }
        *self.sent_total += 1;
    }

    fn queue_error(&mut self, e: &ProtocolError) {
        self.queue(TerminalMsg::Error(ErrorMsg {
            seq: 0,
            code: e.code,
            message: e.message.clone(),
            cmd_id: e.cmd_id.clone(),
        }));
    }

    async fn flush(&mut self) -> Result<(), SendError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(w) = self.writer.as_mut() else {
            return Err(SendError::NoConnection);
        };
        let r = w.write_all(&self.buf).await;
        self.buf.clear();
        Ok(r?)
    }

    fn reply(&mut self, cmd_id: &CmdId, mut reply: Reply) {
        reply.cmd_id = cmd_id.clone();
        self.queue(TerminalMsg::Reply(reply));
    }

    fn command(&mut self, cmd: Cmd) {
        let Cmd { cmd_id, op } = cmd;
        match op {
            Op::OrderSend(req) => {
                if let Some(stored) = self.shared.ring.lock().get(&cmd_id) {
                    tracing::info!(cmd_id = %cmd_id, "resent command answered from the ring");
                    self.queue(TerminalMsg::Reply(stored));
                    return;
                }
                let execution = {
                    let mut account = self.shared.account.lock();
                    self.shared.touch_clock(&mut account);
                    account.send(&req, DealReason::Expert)
                };
                *self.shared.commands_executed.lock() += 1;
                let mut reply = execution.reply;
                reply.cmd_id = cmd_id.clone();
                if req.is_async && reply.retcode == Retcode::DONE {
                    // OrderSendAsync reports acceptance; the outcome follows as transactions.
                    reply.retcode = Retcode::PLACED;
                }
                tracing::info!(
                    cmd_id = %cmd_id, action = %req.action, order_type = %req.order_type,
                    symbol = %req.symbol, volume = %req.volume, position = %req.position,
                    retcode = %reply.retcode, order = %reply.order, deal = %reply.deal,
                    comment = %reply.comment, "order"
                );
                self.shared.ring.lock().put(reply.clone());
                self.queue(TerminalMsg::Reply(reply));
                for mut tx in execution.txs {
                    if tx.tx_type == hedge_domain::TradeTransactionType::Request {
                        tx.cmd_id = Some(cmd_id.clone());
                    }
                    log_tx(&tx);
                    self.queue(TerminalMsg::Tx(tx));
                }
            }
            Op::OrderCheck(req) => {
                let reply = self.shared.account.lock().check(&req);
                self.reply(&cmd_id, reply);
            }
            Op::History(range) => self.history(&cmd_id, range),
            Op::Snapshot => {
                let s = {
                    let mut account = self.shared.account.lock();
                    self.shared.touch_clock(&mut account);
                    account.snapshot(Some(cmd_id.clone()))
                };
                self.queue(TerminalMsg::Snapshot(s));
                self.reply(
                    &cmd_id,
                    Reply::new(cmd_id.clone(), Retcode::DONE, "snapshot sent"),
                );
            }
            Op::SymbolInfo { symbol } => {
                let info = self.shared.account.lock().symbol(&symbol).map(|s| s.info());
                let reply = match info {
                    Some(info) => {
                        let mut r = Reply::new(cmd_id.clone(), Retcode::DONE, "");
                        r.bid = info.bid.unwrap_or(Price::ZERO);
                        r.ask = info.ask.unwrap_or(Price::ZERO);
                        r.symbol = Some(info);
                        r
                    }
                    None => Reply::new(
                        cmd_id.clone(),
                        Retcode::INVALID,
                        format!("unknown symbol {symbol:?}"),
                    ),
                };
                self.reply(&cmd_id, reply);
            }
            Op::Ping => {
                let mut r = Reply::new(cmd_id.clone(), Retcode::DONE, "pong");
                r.time = self.shared.clock.now_ms();
                self.reply(&cmd_id, r);
            }
        }
    }

    /// Pages of orders and deals, orders first then deals (each sorted by time, ticket). The cursor is
    /// the number of records of the range already sent, which stays valid because history only grows
    /// at its end.
    fn history(&mut self, cmd_id: &CmdId, range: HistoryRange) {
        let (orders, deals) = self.shared.account.lock().history(range.from, range.to);
        let offset = match range.cursor.as_deref() {
            None => Some(0usize),
            Some(c) => c.strip_prefix("n:").and_then(|n| n.parse().ok()),
        };
        let Some(offset) = offset else {
            self.reply(
                cmd_id,
                Reply::new(
                    cmd_id.clone(),
                    Retcode::INVALID,
                    "unreadable history cursor",
                ),
            );
            return;
        };
        let page_size = range
            .page_size
            .unwrap_or(500)
            .clamp(1, self.config.max_page.max(1)) as usize;
        let total = orders.len() + deals.len();
        let mut at = offset.min(total);
        let mut page = 0u32;
        let (mut sent_orders, mut sent_deals) = (0u32, 0u32);
        let n = orders.len();
        let record_len = |i: usize| -> usize {
            let len = if i < n {
                json_len(&orders[i])
            } else {
                json_len(&deals[i - n])
            };
            len.saturating_add(1)
        };
        loop {
            // At most page_size records, and never more than fits in one line.
            let mut end = at;
            let mut bytes = 0usize;
            while end < total && end - at < page_size {
                let len = record_len(end);
                if end > at && bytes.saturating_add(len) > MAX_LINE - LINE_RESERVE {
                    break;
                }
                bytes = bytes.saturating_add(len);
                end += 1;
            }
            let page_orders: Vec<OrderRecord> = orders[at.min(n)..end.min(n)].to_vec();
            let page_deals: Vec<DealRecord> = deals[at.max(n) - n..end.max(n) - n].to_vec();
            sent_orders += page_orders.len() as u32;
            sent_deals += page_deals.len() as u32;
            let last = end >= total;
            self.queue(TerminalMsg::History(HistoryPage {
                seq: 0,
                cmd_id: cmd_id.clone(),
                page,
                orders: page_orders,
                deals: page_deals,
                cursor: Some(format!("n:{end}")),
                last,
            }));
            page += 1;
            at = end;
            if last {
                break;
            }
        }
        let mut reply = Reply::new(cmd_id.clone(), Retcode::DONE, "history sent");
        reply.history = Some(HistorySummary {
            pages: page,
            orders: sent_orders,
            deals: sent_deals,
            cursor: Some(format!("n:{at}")),
        });
        self.reply(cmd_id, reply);
    }
}

#[cfg(test)]
mod tests {
    use hedge_protocol::connected_to_itself;
    use tokio::net::{TcpListener, TcpSocket, TcpStream};

    #[tokio::test]
    async fn a_connection_to_its_own_port_is_told_apart_from_one_to_an_agent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let normal = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        assert!(!connected_to_itself(&normal));
        // A socket bound to a free port and connecting to that same port: TCP's simultaneous
        // open makes it a connection to itself, as a reconnecting terminal can stumble into.
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(port).unwrap();
        let itself = socket.connect(port).await.unwrap();
        assert!(connected_to_itself(&itself));
    }
}
