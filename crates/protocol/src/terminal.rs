//! The agent side of the link: listen for a terminal, keep its state, send it commands.
//!
//! A [`TerminalListener`] binds the agent's port; [`TerminalListener::start`] turns it into a
//! [`Terminal`], a cheap-to-clone handle backed by background tasks that accept the terminal's
//! connection (and every reconnection of the same instance; a terminal not logged in yet, or a
//! second instance for the login, is refused), run the handshake (`hello`, `symbols`, `snapshot`), keep the
//! account, symbols, positions and working orders current from snapshots and `tx` messages, match
//! replies to commands by `cmd_id`, and publish everything as [`TerminalEvent`]s.
//!
//! Commands are written from the caller's task straight to the socket (no channel hop), so a command
//! is on the wire microseconds after [`Terminal::send`] is called. A command whose reply has not come
//! when the link drops stays pending and is written again, with the same `cmd_id`, right after the next
//! handshake: the terminal's at-most-once ring turns that resend into the original reply instead of a
//! second trade.

use crate::codec::{
    check_version, decode_terminal, encode, EncodeError, LineReader, ProtocolError, MAX_LINE,
};
use crate::message::{
    AccountInfo, AgentMsg, Cmd, DealRecord, ErrorCode, ErrorMsg, Hello, HistoryPage, HistoryRange,
    Op, OrderRecord, PositionRecord, Reply, Snapshot, SymbolInfo, Symbols, TerminalMsg, TimeMs,
    TradeRequest, Tx,
};
use hedge_domain::{
    CmdId, DealReason, DealType, Login, OrderState, OrderTicket, PositionId, TradeTransactionType,
};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{broadcast, oneshot, watch};

/// Tuning of a [`Terminal`].
#[derive(Clone, Debug)]
pub struct TerminalConfig {
    /// Longest accepted line in bytes.
    pub max_line: usize,
    /// How long [`Terminal::send`] waits for a reply (across reconnects).
    pub reply_timeout: Duration,
    /// How long a new connection may take to send `hello`, `symbols` and `snapshot`.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing (not even a heartbeat) for this long is dropped.
    pub idle_timeout: Duration,
    /// Refuse a terminal logged in to another account.
    pub expected_login: Option<Login>,
    /// Events buffered per subscriber before it lags.
    pub event_capacity: usize,
}

impl Default for TerminalConfig {
    fn default() -> Self {
        TerminalConfig {
            max_line: MAX_LINE,
            reply_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            expected_login: None,
            event_capacity: 4096,
        }
    }
}

/// What went wrong with a command.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    /// No reply in time. The command may or may not have run: send it again with the same `cmd_id`.
    #[error("no reply to command {cmd_id} within {timeout:?}")]
    Timeout { cmd_id: CmdId, timeout: Duration },
    /// A command with this id is already waiting for its reply.
    #[error("command {0} is already in flight")]
    InFlight(CmdId),
    /// The terminal refused the command line itself (it did not run).
    #[error("terminal refused command: {0}")]
    Refused(ProtocolError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// [`Terminal::shutdown`] was called.
    #[error("terminal link shut down")]
    Shutdown,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Something that happened on the link. Payloads are shared (`Arc`), so subscribers are cheap.
#[derive(Clone, Debug)]
pub enum TerminalEvent {
    /// A terminal completed the handshake; [`Terminal::state`] already reflects `snapshot`. When
    /// `resync` is true this is a reconnection: reconcile against the snapshot, events in between may
    /// have been missed.
    Connected {
        generation: u64,
        hello: Arc<Hello>,
        snapshot: Arc<Snapshot>,
        resync: bool,
    },
    /// The connection was lost; the listener keeps waiting for the terminal to return.
    Disconnected {
        generation: u64,
        reason: String,
    },
    /// A periodic or requested snapshot (state already replaced by it).
    Snapshot(Arc<Snapshot>),
    Symbols(Arc<Symbols>),
    /// A trade transaction (state already updated from its records).
    Tx(Arc<Tx>),
    Heartbeat {
        time: TimeMs,
    },
    /// A reply nobody waits for any more (its `send` timed out): the command did run.
    LateReply(Arc<Reply>),
    /// The terminal reported an error about something the agent sent.
    PeerError(Arc<ErrorMsg>),
    /// Messages were lost on the connection (`seq` jumped); request a snapshot to be safe.
    Gap {
        expected: u64,
        got: u64,
    },
}

/// The terminal's state as last reported.
#[derive(Clone, Debug, Default)]
pub struct TerminalState {
    pub connected: bool,
    /// Number of the current (or last) connection, starting at 1.
    pub generation: u64,
    pub hello: Option<Hello>,
    pub account: Option<AccountInfo>,
    pub symbols: HashMap<String, SymbolInfo>,
    /// Open positions by identifier.
    pub positions: BTreeMap<PositionId, PositionRecord>,
    /// Working orders by ticket.
    pub orders: BTreeMap<OrderTicket, OrderRecord>,
    /// Time of the last heartbeat, snapshot or tx.
    pub last_time: TimeMs,
}

impl TerminalState {
    fn apply_snapshot(&mut self, snapshot: &Snapshot) {
        self.account = Some(snapshot.account.clone());
        self.positions = snapshot
            .positions
            .iter()
            .map(|p| (p.identifier, p.clone()))
            .collect();
        self.orders = snapshot
            .orders
            .iter()
            .map(|o| (o.ticket, o.clone()))
            .collect();
        self.last_time = snapshot.time;
    }

    fn apply_tx(&mut self, tx: &Tx) {
        if let Some(p) = &tx.position_record {
            if p.volume.is_zero() {
                self.positions.remove(&p.identifier);
            } else {
                self.positions.insert(p.identifier, p.clone());
            }
        }
        if tx.tx_type == TradeTransactionType::OrderDelete {
            self.orders.remove(&tx.order);
        } else if let Some(o) = &tx.order_record {
            let working = matches!(
                o.state,
                OrderState::Started
                    | OrderState::Placed
                    | OrderState::Partial
                    | OrderState::RequestAdd
                    | OrderState::RequestModify
                    | OrderState::RequestCancel
            );
            if working && !o.volume_current.is_zero() {
                self.orders.insert(o.ticket, o.clone());
            } else {
                self.orders.remove(&o.ticket);
            }
        }
        self.last_time = self.last_time.max(tx.time);
    }
}

/// A command's reply with the history pages that preceded it.
#[derive(Debug)]
struct Completion {
    reply: Reply,
    pages: Vec<HistoryPage>,
}

struct Pending {
    /// Order of submission, so resends keep it.
    order: u64,
    line: Vec<u8>,
    done: Option<oneshot::Sender<Result<Completion, ProtocolError>>>,
    pages: Vec<HistoryPage>,
}

struct Link {
    writer: Option<OwnedWriteHalf>,
    generation: u64,
}

struct Inner {
    config: TerminalConfig,
    local_addr: SocketAddr,
    state: RwLock<TerminalState>,
    link: tokio::sync::Mutex<Link>,
    pending: Mutex<HashMap<CmdId, Pending>>,
    next_order: Mutex<u64>,
    events: broadcast::Sender<TerminalEvent>,
    /// Current generation and whether it is connected; wakes waiters and replaced readers.
    status: watch::Sender<(u64, bool)>,
    shutdown: watch::Sender<bool>,
}

/// The agent's listening socket, before it starts accepting.
pub struct TerminalListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: TerminalConfig,
}

impl TerminalListener {
    /// Binds `addr` (e.g. `127.0.0.1:0`) with the default configuration.
    pub async fn bind(addr: impl ToSocketAddrs) -> std::io::Result<Self> {
        Self::bind_with(addr, TerminalConfig::default()).await
    }

    pub async fn bind_with(
        addr: impl ToSocketAddrs,
        config: TerminalConfig,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(TerminalListener {
            listener,
            local_addr,
            config,
        })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts accepting in the background and returns at once; see [`Terminal::ready`].
    pub fn start(self) -> Terminal {
        let (events, _) = broadcast::channel(self.config.event_capacity.max(16));
        let (status, _) = watch::channel((0, false));
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            config: self.config,
            local_addr: self.local_addr,
            state: RwLock::new(TerminalState::default()),
            link: tokio::sync::Mutex::new(Link {
                writer: None,
                generation: 0,
            }),
            pending: Mutex::new(HashMap::new()),
            next_order: Mutex::new(0),
            events,
            status,
            shutdown,
        });
        tokio::spawn(accept_loop(inner.clone(), self.listener));
        Terminal { inner }
    }

    /// Starts accepting and waits until a terminal has completed its handshake.
    pub async fn accept(self) -> Result<Terminal, TerminalError> {
        let terminal = self.start();
        terminal.ready().await?;
        Ok(terminal)
    }
}

/// A handle on the terminal link. Clone it freely; all clones share one link and one state. The
/// background tasks keep listening until [`Terminal::shutdown`] is called, even when every handle has
/// been dropped.
#[derive(Clone)]
pub struct Terminal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("local_addr", &self.inner.local_addr)
            .field("status", &*self.inner.status.borrow())
            .finish()
    }
}

/// The answer to a `history` command.
#[derive(Clone, Debug)]
pub struct History {
    pub reply: Reply,
    pub orders: Vec<OrderRecord>,
    pub deals: Vec<DealRecord>,
    /// Where to continue if the range holds more (the terminal's last cursor).
    pub cursor: Option<String>,
}

impl Terminal {
    /// The address the agent listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn config(&self) -> &TerminalConfig {
        &self.inner.config
    }

    /// Waits until a terminal is connected and has completed its handshake.
    pub async fn ready(&self) -> Result<(), TerminalError> {
        let mut status = self.inner.status.subscribe();
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            if *shutdown.borrow() {
                return Err(TerminalError::Shutdown);
            }
            if status.borrow_and_update().1 {
                return Ok(());
            }
            tokio::select! {
                r = status.changed() => if r.is_err() { return Err(TerminalError::Shutdown) },
                _ = shutdown.changed() => {}
            }
        }
    }

    /// [`Terminal::ready`] with a time limit; `false` when it ran out.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.ready()).await,
            Ok(Ok(()))
        )
    }

    pub fn is_connected(&self) -> bool {
        self.inner.status.borrow().1
    }

    /// Subscribes to events from now on. A subscriber that falls more than `event_capacity` events
    /// behind gets `RecvError::Lagged` and should resync from [`Terminal::state`].
    pub fn subscribe(&self) -> broadcast::Receiver<TerminalEvent> {
        self.inner.events.subscribe()
    }

    /// A copy of the whole state.
    pub fn state(&self) -> TerminalState {
        self.inner.state.read().clone()
    }

    /// Reads the state in place without copying it.
    pub fn with_state<T>(&self, f: impl FnOnce(&TerminalState) -> T) -> T {
        f(&self.inner.state.read())
    }

    pub fn hello(&self) -> Option<Hello> {
        self.inner.state.read().hello.clone()
    }

    pub fn account(&self) -> Option<AccountInfo> {
        self.inner.state.read().account.clone()
    }

    pub fn symbol(&self, name: &str) -> Option<SymbolInfo> {
        self.inner.state.read().symbols.get(name).cloned()
    }

    pub fn symbols(&self) -> Vec<SymbolInfo> {
        let mut all: Vec<_> = self.inner.state.read().symbols.values().cloned().collect();
        all.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        all
    }

    pub fn positions(&self) -> Vec<PositionRecord> {
        self.inner
            .state
            .read()
            .positions
            .values()
            .cloned()
            .collect()
    }

    pub fn orders(&self) -> Vec<OrderRecord> {
        self.inner.state.read().orders.values().cloned().collect()
    }

    /// Sends a command and waits for its reply (up to `reply_timeout`, across reconnects).
    pub async fn send(&self, cmd_id: CmdId, op: Op) -> Result<Reply, TerminalError> {
        let timeout = self.inner.config.reply_timeout;
        self.send_timeout(cmd_id, op, timeout).await
    }

    /// [`Terminal::send`] with an explicit timeout.
    pub async fn send_timeout(
        &self,
        cmd_id: CmdId,
        op: Op,
        timeout: Duration,
    ) -> Result<Reply, TerminalError> {
        self.execute(cmd_id, op, timeout).await.map(|c| c.reply)
    }

    /// `OrderSend`: the reply carries the retcode and the order, deal and position tickets.
    pub async fn order_send(
        &self,
        cmd_id: CmdId,
        request: TradeRequest,
    ) -> Result<Reply, TerminalError> {
        self.send(cmd_id, Op::OrderSend(request)).await
    }

    /// `OrderCheck`: the reply's `check` holds margin and free margin after the request.
    pub async fn order_check(
        &self,
        cmd_id: CmdId,
        request: TradeRequest,
    ) -> Result<Reply, TerminalError> {
        self.send(cmd_id, Op::OrderCheck(request)).await
    }

    /// A symbol's specification and current quote, fresh from the terminal (`reply.symbol`).
    pub async fn symbol_info(
        &self,
        cmd_id: CmdId,
        symbol: impl Into<String>,
    ) -> Result<Reply, TerminalError> {
        self.send(
            cmd_id,
            Op::SymbolInfo {
                symbol: symbol.into(),
            },
        )
        .await
    }

    /// Round trip to the terminal.
    pub async fn ping(&self, cmd_id: CmdId) -> Result<Reply, TerminalError> {
        self.send(cmd_id, Op::Ping).await
    }

    /// Asks for a fresh snapshot; state is replaced by it before this returns.
    pub async fn request_snapshot(&self, cmd_id: CmdId) -> Result<Reply, TerminalError> {
        self.send(cmd_id, Op::Snapshot).await
    }

    /// Orders and deals in a time range, all pages collected.
    pub async fn history(
        &self,
        cmd_id: CmdId,
        range: HistoryRange,
    ) -> Result<History, TerminalError> {
        let timeout = self.inner.config.reply_timeout;
        let done = self.execute(cmd_id, Op::History(range), timeout).await?;
        let mut orders = Vec::new();
        let mut deals = Vec::new();
        let mut cursor = None;
        for page in done.pages {
            orders.extend(page.orders);
            deals.extend(page.deals);
            cursor = page.cursor.or(cursor);
        }
        Ok(History {
            reply: done.reply,
            orders,
            deals,
            cursor,
        })
    }

    /// Stops accepting, closes the connection and fails every waiting command with `Shutdown`.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let mut link = self.inner.link.lock().await;
        if let Some(mut w) = link.writer.take() {
            let _ = w.shutdown().await;
        }
        self.inner.pending.lock().clear();
    }

    async fn execute(
        &self,
        cmd_id: CmdId,
        op: Op,
        timeout: Duration,
    ) -> Result<Completion, TerminalError> {
        if *self.inner.shutdown.borrow() {
            return Err(TerminalError::Shutdown);
        }
        let mut line = Vec::with_capacity(256);
        encode(
            &AgentMsg::Cmd(Cmd {
                cmd_id: cmd_id.clone(),
                op,
            }),
            &mut line,
        )?;
        let (done, wait) = oneshot::channel();
        {
            // The link lock is held across registration and write so a reconnect's resend can neither
            // miss this command nor write it twice.
            let mut link = self.inner.link.lock().await;
            {
                let mut pending = self.inner.pending.lock();
                if pending.contains_key(&cmd_id) {
                    return Err(TerminalError::InFlight(cmd_id));
                }
                let order = {
                    let mut next = self.inner.next_order.lock();
                    *next += 1;
                    *next
                };
                pending.insert(
                    cmd_id.clone(),
                    Pending {
                        order,
                        line: line.clone(),
                        done: Some(done),
                        pages: Vec::new(),
                    },
                );
            }
            if let Some(writer) = link.writer.as_mut() {
                if let Err(e) = writer.write_all(&line).await {
                    tracing::warn!(cmd_id = %cmd_id, error = %e, "writing command failed; it will be resent on reconnect");
                    link.writer = None;
                }
            }
        }
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(Ok(completion))) => Ok(completion),
            Ok(Ok(Err(refused))) => Err(TerminalError::Refused(refused)),
            Ok(Err(_)) => Err(TerminalError::Shutdown),
            Err(_) => {
                self.inner.pending.lock().remove(&cmd_id);
                Err(TerminalError::Timeout { cmd_id, timeout })
            }
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    let mut shutdown = inner.shutdown.subscribe();
    tracing::info!(addr = %inner.local_addr, "waiting for the terminal");
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(run_connection(inner.clone(), stream, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }
}

async fn write_error(writer: &mut OwnedWriteHalf, error: &ProtocolError) {
    let mut line = Vec::with_capacity(128);
    if encode(&AgentMsg::Error(error.to_msg()), &mut line).is_ok() {
        let _ = writer.write_all(&line).await;
    }
}

struct Handshake {
    hello: Hello,
    symbols: Symbols,
    snapshot: Snapshot,
    last_seq: u64,
}

/// Reads `hello`, `symbols`, `snapshot` in that order. Bad lines in between are answered with an error
/// and skipped, as everywhere; anything else out of order fails the handshake.
async fn handshake(
    reader: &mut LineReader<OwnedReadHalf>,
    writer: &mut OwnedWriteHalf,
    config: &TerminalConfig,
) -> Result<Handshake, ProtocolError> {
    let mut hello = None;
    // A long symbol list comes as several `symbols` messages; the snapshot ends it.
    let mut symbols: Option<Symbols> = None;
    loop {
        let line = match reader.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => {
                return Err(ProtocolError::new(
                    ErrorCode::Handshake,
                    "connection closed during handshake",
                ))
            }
            Err(e) => return Err(ProtocolError::new(ErrorCode::Handshake, e.to_string())),
        };
        let msg = match line.and_then(decode_terminal) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::warn!(error = %e, "bad line from terminal during handshake");
                write_error(writer, &e).await;
                continue;
            }
        };
        match (msg, hello.is_some(), symbols.is_some()) {
            (TerminalMsg::Hello(h), false, _) => {
                check_version(h.v)?;
                if h.login.get() == 0 {
                    // A terminal still starting has no account yet; treating 0 as a login would
                    // answer login_mismatch on every attempt, or worse adopt an empty account.
                    return Err(ProtocolError::new(
                        ErrorCode::NotReady,
                        "the terminal is not logged in yet (hello with login 0); connect once \
                         ACCOUNT_LOGIN is set",
                    ));
                }
                if let Some(expected) = config.expected_login {
                    if h.login != expected {
                        return Err(ProtocolError::new(
                            ErrorCode::LoginMismatch,
                            format!(
                                "expected account {expected}, terminal is logged in to {}",
                                h.login
                            ),
                        ));
                    }
                }
                hello = Some(h);
            }
            (TerminalMsg::Symbols(s), true, _) => match symbols.as_mut() {
                Some(all) => all.symbols.extend(s.symbols),
                None => symbols = Some(s),
            },
            (TerminalMsg::Snapshot(snapshot), true, true) => {
                let last_seq = snapshot.seq;
                return match (hello, symbols) {
                    (Some(hello), Some(symbols)) => Ok(Handshake {
                        hello,
                        symbols,
                        snapshot,
                        last_seq,
                    }),
                    _ => Err(ProtocolError::new(
                        ErrorCode::Internal,
                        "handshake state lost",
                    )),
                };
            }
            (TerminalMsg::Heartbeat(_), true, _) => {}
            (other, _, _) => {
                return Err(ProtocolError::new(
                    ErrorCode::Handshake,
                    format!(
                        "expected hello, symbols, snapshot in order; got {:?}",
                        other.type_name()
                    ),
                ))
            }
        }
    }
}

async fn run_connection(inner: Arc<Inner>, stream: TcpStream, peer: SocketAddr) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
    let (read, mut writer) = stream.into_split();
    let mut reader = LineReader::new(read, inner.config.max_line);
    tracing::info!(%peer, "terminal connecting");
    let hs = match tokio::time::timeout(
        inner.config.handshake_timeout,
        handshake(&mut reader, &mut writer, &inner.config),
    )
    .await
    {
        Ok(Ok(hs)) => hs,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "terminal refused");
            write_error(&mut writer, &e).await;
            let _ = writer.shutdown().await;
            return;
        }
        Err(_) => {
            let e = ProtocolError::new(ErrorCode::Handshake, "handshake timed out");
            tracing::warn!(%peer, "terminal handshake timed out");
            write_error(&mut writer, &e).await;
            let _ = writer.shutdown().await;
            return;
        }
    };

    let generation = match install(&inner, writer, &hs).await {
        Ok(generation) => generation,
        Err((mut writer, e)) => {
            tracing::warn!(%peer, login = %hs.hello.login, error = %e, "second terminal refused");
            write_error(&mut writer, &e).await;
            let _ = writer.shutdown().await;
            return;
        }
    };
    tracing::info!(%peer, login = %hs.hello.login, server = %hs.hello.server, generation, "terminal connected");

    let reason = read_loop(&inner, &mut reader, generation, hs.last_seq).await;

    let mut link = inner.link.lock().await;
    if link.generation == generation {
        link.writer = None;
        inner.state.write().connected = false;
        inner.status.send_replace((generation, false));
        tracing::warn!(%peer, generation, %reason, "terminal disconnected");
        let _ = inner
            .events
            .send(TerminalEvent::Disconnected { generation, reason });
    }
}

/// Why a new connection must not replace the current one: another terminal side for the same login
/// is connected. Each side keeps its own ring of executed `cmd_id`s, so two of them could each execute
/// a resent command once; the first stays, the newer is refused. A reconnection of the same instance
/// (or of a terminal that does not say its instance) replaces the old connection as before.
fn refuse_second_instance(current: &TerminalState, hello: &Hello) -> Option<ProtocolError> {
    let existing = current.hello.as_ref().filter(|_| current.connected)?;
    let other_instance = !existing.instance.is_empty()
        && !hello.instance.is_empty()
        && existing.instance != hello.instance;
    (other_instance && existing.login == hello.login).then(|| {
        ProtocolError::new(
            ErrorCode::Duplicate,
            format!(
                "account {} is already connected from another terminal or EA instance ({}); \
                 run one HedgeBridge per account",
                hello.login, existing.instance
            ),
        )
    })
}

/// Makes a freshly handshaken connection the current one: replaces the state from its snapshot and
/// resends every command still waiting for a reply, in submission order.
async fn install(
    inner: &Arc<Inner>,
    writer: OwnedWriteHalf,
    hs: &Handshake,
) -> Result<u64, (OwnedWriteHalf, ProtocolError)> {
    let mut link = inner.link.lock().await;
    if let Some(e) = refuse_second_instance(&inner.state.read(), &hs.hello) {
        return Err((writer, e));
    }
    link.generation += 1;
    let generation = link.generation;
    link.writer = Some(writer);
    {
        let mut state = inner.state.write();
        state.connected = true;
        state.generation = generation;
        state.hello = Some(hs.hello.clone());
        state.symbols = hs
            .symbols
            .symbols
            .iter()
            .map(|s| (s.spec.name.clone(), s.clone()))
            .collect();
        state.apply_snapshot(&hs.snapshot);
    }
    let resend: Vec<(u64, CmdId, Vec<u8>)> = {
        let mut pending = inner.pending.lock();
        let mut all: Vec<_> = pending
            .iter_mut()
            .map(|(id, p)| {
                p.pages.clear();
                (p.order, id.clone(), p.line.clone())
            })
            .collect();
        all.sort_by_key(|(order, _, _)| *order);
        all
    };
    if let Some(w) = link.writer.as_mut() {
        for (_, cmd_id, line) in &resend {
            tracing::info!(cmd_id = %cmd_id, "resending command after reconnect");
            if let Err(e) = w.write_all(line).await {
                tracing::warn!(error = %e, "resend failed");
                break;
            }
        }
    }
    inner.status.send_replace((generation, true));
    let _ = inner.events.send(TerminalEvent::Connected {
        generation,
        hello: Arc::new(hs.hello.clone()),
        snapshot: Arc::new(hs.snapshot.clone()),
        resync: generation > 1,
    });
    Ok(generation)
}

async fn read_loop(
    inner: &Arc<Inner>,
    reader: &mut LineReader<OwnedReadHalf>,
    generation: u64,
    mut last_seq: u64,
) -> String {
    let mut status = inner.status.subscribe();
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let next = tokio::select! {
            r = tokio::time::timeout(inner.config.idle_timeout, reader.next_line()) => r,
            _ = status.changed() => {
                if status.borrow().0 != generation {
                    return "replaced by a newer connection".into();
                }
                continue;
            }
            _ = shutdown.changed() => return "shut down".into(),
        };
        let line = match next {
            Err(_) => return format!("nothing received for {:?}", inner.config.idle_timeout),
            Ok(Err(e)) => return format!("read error: {e}"),
            Ok(Ok(None)) => return "connection closed by terminal".into(),
            Ok(Ok(Some(line))) => line,
        };
        match line.and_then(decode_terminal) {
            Ok(msg) => {
                let seq = msg.seq();
                if seq != 0 {
                    if last_seq != 0 && seq != last_seq + 1 {
                        tracing::warn!(
                            expected = last_seq + 1,
                            got = seq,
                            "terminal message sequence gap"
                        );
                        let _ = inner.events.send(TerminalEvent::Gap {
                            expected: last_seq + 1,
                            got: seq,
                        });
                    }
                    last_seq = seq;
                }
                handle(inner, msg);
            }
            Err(e) => {
                tracing::warn!(error = %e, "bad line from terminal");
                let mut link = inner.link.lock().await;
                if link.generation == generation {
                    if let Some(w) = link.writer.as_mut() {
                        write_error(w, &e).await;
                    }
                }
            }
        }
    }
}

/// Deal types and reasons this build does not know, already logged: a newer terminal may send a new
/// code on every deal, and one line about it is enough.
static UNKNOWN_CODES_SEEN: Mutex<BTreeSet<(&'static str, u8)>> =
    parking_lot::const_mutex(BTreeSet::new());

/// Logs, once per code, a deal type or reason this build does not know. The record is kept with the
/// code as it came (`Other`), so nothing is lost.
fn note_unknown_codes(deal: &DealRecord) {
    let mut unknown = Vec::with_capacity(2);
    if !deal.deal_type.is_known() {
        unknown.push((DealType::enumeration(), deal.deal_type.code()));
    }
    if !deal.reason.is_known() {
        unknown.push((DealReason::enumeration(), deal.reason.code()));
    }
    for key in unknown {
        if UNKNOWN_CODES_SEEN.lock().insert(key) {
            tracing::warn!(
                enumeration = key.0,
                code = key.1,
                deal = %deal.ticket,
                "the terminal sent a code this build does not know; kept as is"
            );
        }
    }
}

fn handle(inner: &Arc<Inner>, msg: TerminalMsg) {
    match msg {
        TerminalMsg::Tx(tx) => {
            if let Some(deal) = &tx.deal_record {
                note_unknown_codes(deal);
            }
            inner.state.write().apply_tx(&tx);
            let _ = inner.events.send(TerminalEvent::Tx(Arc::new(tx)));
        }
        TerminalMsg::Reply(reply) => {
            let pending = inner.pending.lock().remove(&reply.cmd_id);
            match pending.and_then(|mut p| p.done.take().map(|d| (d, p.pages))) {
                Some((done, pages)) => {
                    if let Err(Ok(c)) = done.send(Ok(Completion { reply, pages })) {
                        let _ = inner
                            .events
                            .send(TerminalEvent::LateReply(Arc::new(c.reply)));
                    }
                }
                None => {
                    tracing::info!(cmd_id = %reply.cmd_id, retcode = %reply.retcode, "reply to a command nobody waits for");
                    let _ = inner.events.send(TerminalEvent::LateReply(Arc::new(reply)));
                }
            }
        }
        TerminalMsg::Heartbeat(hb) => {
            {
                let mut state = inner.state.write();
                state.last_time = state.last_time.max(hb.time);
            }
            let _ = inner
                .events
                .send(TerminalEvent::Heartbeat { time: hb.time });
        }
        TerminalMsg::Snapshot(snapshot) => {
            inner.state.write().apply_snapshot(&snapshot);
            let _ = inner
                .events
                .send(TerminalEvent::Snapshot(Arc::new(snapshot)));
        }
        TerminalMsg::History(page) => {
            page.deals.iter().for_each(note_unknown_codes);
            let mut pending = inner.pending.lock();
            match pending.get_mut(&page.cmd_id) {
                Some(p) => p.pages.push(page),
                None => {
                    tracing::debug!(cmd_id = %page.cmd_id, "history page for no pending command")
                }
            }
        }
        TerminalMsg::Symbols(symbols) => {
            {
                let mut state = inner.state.write();
                for s in &symbols.symbols {
                    state.symbols.insert(s.spec.name.clone(), s.clone());
                }
            }
            let _ = inner.events.send(TerminalEvent::Symbols(Arc::new(symbols)));
        }
        TerminalMsg::Hello(hello) => {
            tracing::info!(login = %hello.login, "terminal repeated hello");
            inner.state.write().hello = Some(hello);
        }
        TerminalMsg::Error(error) => {
            tracing::warn!(code = %error.code, message = %error.message, cmd_id = ?error.cmd_id, "terminal reported an error");
            if let Some(cmd_id) = &error.cmd_id {
                let pending = inner.pending.lock().remove(cmd_id);
                if let Some(done) = pending.and_then(|mut p| p.done.take()) {
                    let mut refused = ProtocolError::new(error.code, error.message.clone());
                    refused.cmd_id = Some(cmd_id.clone());
                    let _ = done.send(Err(refused));
                }
            }
            let _ = inner.events.send(TerminalEvent::PeerError(Arc::new(error)));
        }
    }
}
/// A loopback port that is free now and that the kernel never hands out on its own: below the
/// ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range` on Linux, 32768 elsewhere), so no
/// outgoing connection (a terminal reconnecting, an HTTP client) can take it as its local end
/// between this call and the listener's bind. A port from `bind(0)` lies inside that range and can
/// be taken so, which leaves the agent meant to listen there waiting. Falls back to `bind(0)` when
/// no port below the range is free.
pub fn free_listen_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let low = ephemeral_low().unwrap_or(32768).clamp(2048, 65535);
    let first = 1024u64;
    let span = u64::from(low) - first;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 32);
    for _ in 0..64 {
        // A different port per draw, spread over the range (a multiplicative hash of a counter), so
        // two callers in one process started in the same instant do not try the same ports.
        let n = DRAWS.fetch_add(1, Ordering::Relaxed);
        let mixed = (seed ^ n)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
        let port = (first + mixed % span) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().map(|a| a.port());
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}

/// The first port of the kernel's ephemeral range, where it says.
fn ephemeral_low() -> Option<u16> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Whether `stream`'s two ends are one address: a TCP self-connection. A terminal reconnecting to
/// a loopback port nobody listens on can get one when the kernel picks that same port for its own
/// end; it then holds the port the agent needs.
pub fn connected_to_itself(stream: &TcpStream) -> bool {
    matches!((stream.local_addr(), stream.peer_addr()), (Ok(l), Ok(p)) if l == p)
}
