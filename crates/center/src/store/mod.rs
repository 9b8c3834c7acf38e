//! Durable storage: accounts, client positions with their volume history, hedges, pauses, the
//! legacy book and the append-only event log.
//!
//! The rules live here once, written against [`Conn`], a small synchronous SQL connection trait with
//! two implementations: [`sqlite`] (embedded default) and [`postgres`] (scale-out). Writes go through
//! a writer thread (SQLite: one per center instance; PostgreSQL: a few, whose transactions run side
//! by side) that batches concurrent requests into one transaction
//! (group commit): a refused request changes nothing while the others in the batch commit (the
//! batch is run again with a savepoint per request when one is refused), and every answer is sent
//! only after the commit returned, i.e. once the change is durable. Reads use a small pool of
//! separate connections.

pub mod logic;
pub mod postgres;
pub mod sqlite;
mod writer;

use crate::plan::PlanInputs;
use crate::positions::Refusal;
use hedge_center_api::model::*;
use hedge_domain::{Login, PositionId, Side, Volume};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{oneshot, watch};
pub use writer::Committed;
use writer::*;

/// A failure of the database itself (not of the request), classified by what the caller may do
/// about it: [`StoreError::is_retryable`] says whether the same request may succeed later.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or cannot take work now: connection refused or lost, server
    /// shutting down, disk full, out of connections or memory, a timeout. Retryable.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The transaction lost a race with another one and changed nothing: a deadlock, a
    /// serialization failure, a lock that could not be had (SQLite: busy). Retryable.
    #[error("database contention: {0}")]
    Contention(String),
    /// The database refused the statement itself: a constraint, bad data, bad SQL. The same
    /// statement fails the same way again. `code` is PostgreSQL's SQLSTATE or SQLite's code.
    #[error("database refused the statement ({code}): {message}")]
    Rejected { code: String, message: String },
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A value could not be encoded for the database (a bug, not a database state).
    #[error("internal store error: {0}")]
    Internal(String),
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    /// Whether the same request may succeed if sent again (503 rather than 500 over HTTP).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Contention(_) | StoreError::Closed
        )
    }

    /// The SQLSTATE (PostgreSQL) or error code (SQLite) of a refused statement.
    pub fn code(&self) -> Option<&str> {
        match self {
            StoreError::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Why a write did not happen.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A value bound to or read from SQL. Only integers and text are used, so both databases store the
/// same thing (volumes as integer units, prices as decimal text, objects as JSON text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val {
    Int(i64),
    Text(String),
    NullInt,
    NullText,
    /// One column of many rows, bound as a PostgreSQL `bigint[]` (multi-row statements through
    /// `unnest`); never bound on SQLite, where the rows go one statement each.
    IntArray(Vec<Option<i64>>),
    /// The same as `text[]`.
    TextArray(Vec<Option<String>>),
}

impl Val {
    pub fn opt_int(v: Option<i64>) -> Val {
        v.map_or(Val::NullInt, Val::Int)
    }
    pub fn opt_text(v: Option<String>) -> Val {
        v.map_or(Val::NullText, Val::Text)
    }
    pub fn text(v: impl Into<String>) -> Val {
        Val::Text(v.into())
    }
}

/// One result row. Its columns are read by name through a row kind's column list (the `columns!`
/// lists in [`logic`]), which is also where the statement's `SELECT` list comes from.
#[derive(Clone, Debug, Default)]
pub struct Row(pub Vec<Val>);

impl Row {
    pub fn int(&self, i: impl Into<usize>) -> Result<i64, StoreError> {
        let i = i.into();
        match self.0.get(i) {
            Some(Val::Int(v)) => Ok(*v),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected integer, got {other:?}"
            ))),
        }
    }
    pub fn u64(&self, i: impl Into<usize>) -> Result<u64, StoreError> {
        let i = i.into();
        u64::try_from(self.int(i)?)
            .map_err(|_| StoreError::Corrupt(format!("column {i}: negative id")))
    }
    pub fn opt_int(&self, i: impl Into<usize>) -> Result<Option<i64>, StoreError> {
        let i = i.into();
        match self.0.get(i) {
            Some(Val::Int(v)) => Ok(Some(*v)),
            Some(Val::NullInt) | Some(Val::NullText) => Ok(None),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected integer, got {other:?}"
            ))),
        }
    }
    pub fn text(&self, i: impl Into<usize>) -> Result<&str, StoreError> {
        let i = i.into();
        match self.0.get(i) {
            Some(Val::Text(v)) => Ok(v),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }
    pub fn opt_text(&self, i: impl Into<usize>) -> Result<Option<&str>, StoreError> {
        let i = i.into();
        match self.0.get(i) {
            Some(Val::Text(v)) => Ok(Some(v)),
            Some(Val::NullInt) | Some(Val::NullText) => Ok(None),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }
}

/// Which SQL dialect a connection speaks; the statements are written once with `?` placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// What a write transaction serializes against the other instances writing to the same database.
/// Held until the transaction ends. SQLite has one writer, so it locks nothing; PostgreSQL takes an
/// advisory lock per key of the instance's schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lock {
    /// Every write that is not a batch of position reports (registrations, heartbeats, hedges,
    /// actions, commands): these run one after the other, across instances too.
    Writes,
    /// One client position: its stored state, sequence and idempotency keys.
    Position(Login, PositionId),
}

/// A synchronous SQL connection. Implemented for SQLite and PostgreSQL.
pub trait Conn: Send {
    fn dialect(&self) -> Dialect;

    /// Takes `locks` for the rest of the transaction, in one canonical order whatever the order
    /// given, so two transactions that lock overlapping sets never wait for each other in a circle.
    /// May be pipelined like [`Conn::send`]: the locks are held before any later statement runs.
    fn lock(&mut self, locks: &[Lock]) -> Result<(), StoreError> {
        let _ = locks;
        Ok(())
    }

    /// Runs several queries and returns their rows, in order. PostgreSQL sends them all at once
    /// (one round trip); a failure is the first among them.
    fn query_many(
        &mut self,
        statements: &[(String, Vec<Val>)],
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        statements
            .iter()
            .map(|(sql, params)| self.query(sql, params))
            .collect()
    }
    /// Runs one statement; returns the number of rows changed.
    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError>;
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError>;
    /// Runs statements without parameters (transaction control, DDL).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;

    /// Runs one parameterless transaction-control statement (`BEGIN`, `SAVEPOINT`, `COMMIT`...)
    /// that the writer issues for every request; implementations may keep it prepared, and may
    /// pipeline `BEGIN`, `SAVEPOINT` and `RELEASE SAVEPOINT` like [`Conn::send`]. `COMMIT` and
    /// `ROLLBACK` always wait, and `COMMIT` fails if a pipelined statement before it failed.
    fn control(&mut self, sql: &str) -> Result<(), StoreError> {
        self.batch(sql)
    }

    /// Runs one statement whose row count the caller does not need. A connection may send it
    /// without waiting for the answer (pipelining); its failure is then returned by the next call
    /// that waits for an answer, or by [`Conn::flush`].
    fn send(&mut self, sql: &str, params: &[Val]) -> Result<(), StoreError> {
        self.execute(sql, params).map(|_| ())
    }

    /// Waits for the answers of every statement sent and not yet answered; the first failure.
    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn query_one(&mut self, sql: &str, params: &[Val]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Begins a read transaction. PostgreSQL reads the event horizon first (kept for
    /// [`Conn::event_horizon`]), then begins a `REPEATABLE READ` snapshot, which therefore holds
    /// every event at or below the horizon that will ever be committed.
    fn begin_read(&mut self) -> Result<(), StoreError> {
        self.batch("BEGIN")
    }

    /// The event horizon read by the last [`Conn::begin_read`]: no transaction still in flight can
    /// commit an event at or below it, so a reader of the log stops there. `None` where events
    /// commit in id order (SQLite's one writer) and on a connection that never began a read.
    fn event_horizon(&self) -> Option<u64> {
        None
    }

    /// Tells every instance of the schema that events up to `id` are committed (PostgreSQL:
    /// `pg_notify` on `channel`, never inside the transaction that stored them: PostgreSQL
    /// serializes the commits of every notifying transaction of a database). Nothing on SQLite,
    /// whose one writer is the instance's.
    fn announce(&mut self, channel: &str, id: u64) -> Result<(), StoreError> {
        let _ = (channel, id);
        Ok(())
    }

    /// The tag of this connection's schema in the in-flight markers a transaction takes before it
    /// draws event ids (PostgreSQL; see `logic::DRAW_EVENT_IDS`).
    fn marker_tag(&self) -> i64 {
        0
    }
}

/// SQLite's commit durability (`PRAGMA synchronous` in WAL mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync at every commit: an acknowledged report survives a power cut. The default.
    #[default]
    Full,
    /// No fsync at commit (WAL is synced at checkpoints): an acknowledged report survives a crash
    /// or `kill -9` of the center, but the last commits can be lost if the machine loses power.
    Normal,
}

impl std::str::FromStr for Synchronous {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Synchronous::Full),
            "normal" => Ok(Synchronous::Normal),
            other => Err(format!("synchronous must be full or normal, not {other:?}")),
        }
    }
}

/// Where the data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(std::path::PathBuf),
    /// A libpq-style connection string or URL, and optionally a schema to use (created if missing;
    /// tests use one fresh schema each).
    Postgres {
        url: String,
        schema: Option<String>,
    },
}

impl StoreLocation {
    /// `postgres://...`/`postgresql://...`/`host=...` → PostgreSQL; `sqlite://path` or a plain path →
    /// SQLite.
    pub fn parse(text: &str) -> StoreLocation {
        let t = text.trim();
        if t.starts_with("postgres://") || t.starts_with("postgresql://") || t.contains("host=") {
            StoreLocation::Postgres {
                url: t.to_owned(),
                schema: None,
            }
        } else {
            let path = t.strip_prefix("sqlite://").unwrap_or(t);
            StoreLocation::Sqlite(path.into())
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            StoreLocation::Sqlite(_) => "sqlite",
            StoreLocation::Postgres { .. } => "postgres",
        }
    }
}

/// A pool of read connections used from blocking threads.
struct ReadPool {
    conns: parking_lot::Mutex<Vec<Box<dyn Conn>>>,
    available: tokio::sync::Semaphore,
}

/// The center's store: its writer threads, a few readers, and the id of the newest event known.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Rendered answers and the event head each was read at (see [`Store::at_head`]).
struct AnswerCache<K>(parking_lot::Mutex<std::collections::HashMap<K, (u64, bytes::Bytes)>>);

impl<K> Default for AnswerCache<K> {
    fn default() -> Self {
        AnswerCache(parking_lot::Mutex::new(std::collections::HashMap::new()))
    }
}

struct Inner {
    kind: &'static str,
    jobs: parking_lot::Mutex<Option<std::sync::mpsc::Sender<Work>>>,
    readers: ReadPool,
    head: watch::Sender<u64>,
    /// Where the writer hands each commit's events (see [`Store::follow_commits`]).
    committed: CommittedEvents,
    /// The legacy `all_positions` answer (see [`Store::legacy_book_answer`]).
    legacy_answer: AnswerCache<()>,
    /// Each hedge account's rendered plan (see [`Store::plan_answer`]).
    plan_answers: AnswerCache<Login>,
    /// Why the last write that reached the database failed, until a write commits again: a
    /// database that reads but cannot write (disk full, read-only file) is not ready.
    write_fault: Arc<parking_lot::Mutex<Option<String>>>,
    _listener: Option<tokio::task::JoinHandle<()>>,
}

impl Store {
    /// Opens (creating if needed) the store and applies pending migrations.
    pub async fn open(location: &StoreLocation) -> Result<Store, StoreError> {
        Self::open_with(location, Synchronous::Full).await
    }

    /// Like [`Store::open`], choosing SQLite's commit durability.
    pub async fn open_with(
        location: &StoreLocation,
        synchronous: Synchronous,
    ) -> Result<Store, StoreError> {
        type Conns = Vec<Box<dyn Conn>>;
        let (writers, readers, notify, listener_setup): (Conns, Conns, _, _) = match location {
            StoreLocation::Sqlite(path) => {
                let path = path.clone();
                let (w, r) = tokio::task::spawn_blocking(move || {
                    let (mut w, r) = sqlite::open(&path, 4, synchronous)?;
                    logic::migrate(w.as_mut())?;
                    Ok::<_, StoreError>((w, r))
                })
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))??;
                (vec![w], r, None, None)
            }
            StoreLocation::Postgres { url, schema } => {
                // Migrated under the start-up lock (see `postgres::open`).
                let opened =
                    postgres::open(url, schema.as_deref(), PG_WRITERS, 4, logic::migrate).await?;
                (
                    opened.writers,
                    opened.readers,
                    Some(opened.channel.clone()),
                    Some((url.clone(), schema.clone(), opened.channel)),
                )
            }
        };
        let mut writers = writers;
        let (writers, head_id) = tokio::task::spawn_blocking(move || {
            let first = writers
                .first_mut()
                .ok_or_else(|| StoreError::Internal("no writer".into()))?;
            let id = logic::max_event_id(first.as_mut())?;
            Ok::<_, StoreError>((writers, id))
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        let (head, _) = watch::channel(head_id);
        let listener = match listener_setup {
            Some((url, schema, channel)) => {
                Some(postgres::listen(&url, schema.as_deref(), &channel, head.clone()).await?)
            }
            None => None,
        };
        let (tx, rx) = std::sync::mpsc::channel::<Work>();
        let rx = Arc::new(parking_lot::Mutex::new(rx));
        let committed = CommittedEvents::default();
        for writer in writers {
            let (rx, notify) = (rx.clone(), notify.clone());
            let after_commit = AfterCommit {
                head: head.clone(),
                events: committed.clone(),
                held: Arc::default(),
            };
            std::thread::Builder::new()
                .name("center-writer".into())
                .spawn(move || writer_loop(writer, rx, after_commit, notify))
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
        let n = readers.len();
        Ok(Store {
            inner: Arc::new(Inner {
                kind: location.kind(),
                jobs: parking_lot::Mutex::new(Some(tx)),
                readers: ReadPool {
                    conns: parking_lot::Mutex::new(readers),
                    available: tokio::sync::Semaphore::new(n),
                },
                head,
                committed,
                legacy_answer: AnswerCache::default(),
                plan_answers: AnswerCache::default(),
                write_fault: Arc::default(),
                _listener: listener,
            }),
        })
    }

    pub fn kind(&self) -> &'static str {
        self.inner.kind
    }

    /// The id of the newest event this instance knows of; changes wake the event stream.
    pub fn head(&self) -> watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    /// The events of every later commit of this instance, in order, as the writer committed them
    /// (at most [`COMMITTED_PAGE`] per commit; the head says when there were more). Only on
    /// SQLite, whose one writer is this instance's (`None` on PostgreSQL). One follower: a second
    /// call takes the events from the first.
    pub fn follow_commits(&self) -> Option<UnboundedReceiver<Committed>> {
        if self.inner.kind != "sqlite" {
            return None;
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.inner.committed.lock().to = Some(tx);
        Some(rx)
    }

    /// Whether the stream has live readers: only then does the writer hand it each commit's
    /// events before answering (a read on the answer's path); without one the stream reads them
    /// itself when the head moves, off that path.
    pub fn streams_open(&self, open: bool) {
        self.inner.committed.lock().streams_open = open;
    }

    /// Whether the commits handed to [`Store::follow_commits`] carry every hedge account's plan
    /// inputs, read right after each commit that can move a plan: on while a stream sends plans.
    pub fn plans_on_commit(&self, on: bool) {
        self.inner.committed.lock().plan_inputs = on;
    }

    /// Raises the known head (events written by other instances, found by polling).
    pub fn observe_head(&self, id: u64) {
        self.inner.head.send_if_modified(|h| {
            if id > *h {
                *h = id;
                true
            } else {
                false
            }
        });
    }

    /// Stops accepting writes; the writer threads end once the queue is drained.
    pub fn close(&self) {
        self.inner.jobs.lock().take();
    }

    /// Queues `op` for the writer. `op` may run twice (the first run rolled back), so it must not
    /// act outside the store.
    fn write<T: Send + 'static>(
        &self,
        op: impl FnMut(&mut dyn Conn) -> Result<T, WriteError> + Send + 'static,
    ) -> impl Future<Output = Result<T, WriteError>> + Send + 'static {
        self.queue_write(op, Some(self.inner.write_fault.clone()))
    }

    /// Queues `op` like [`Store::write`]; its outcome is kept in `fault` when given (a refusal
    /// is the request's fault, not the database's, and leaves it as it was).
    fn queue_write<T: Send + 'static>(
        &self,
        mut op: impl FnMut(&mut dyn Conn) -> Result<T, WriteError> + Send + 'static,
        fault: Option<Arc<parking_lot::Mutex<Option<String>>>>,
    ) -> impl Future<Output = Result<T, WriteError>> + Send + 'static {
        let (tx, rx) = oneshot::channel::<Result<T, WriteError>>();
        let answer_to = Arc::new(parking_lot::Mutex::new(Some(tx)));
        let job: Job = Box::new(move |conn| {
            let result = op(conn);
            let ok = result.is_ok();
            let answer_to = answer_to.clone();
            let fault = fault.clone();
            let completion: Completion = Box::new(move |commit| {
                let answer = match commit {
                    Ok(()) => result,
                    Err(e) => Err(WriteError::Store(e)),
                };
                if let Some(fault) = &fault {
                    note_outcome(fault, &answer);
                }
                if let Some(tx) = answer_to.lock().take() {
                    let _ = tx.send(answer);
                }
            });
            (ok, completion)
        });
        self.queue(Work::Job(job), rx)
    }

    /// Hands `work` to the writer; the answer comes on `rx`.
    fn queue<T: Send + 'static>(
        &self,
        work: Work,
        rx: oneshot::Receiver<Result<T, WriteError>>,
    ) -> impl Future<Output = Result<T, WriteError>> + Send + 'static {
        let sent = match self.inner.jobs.lock().as_ref() {
            Some(jobs) => jobs.send(work).is_ok(),
            None => false,
        };
        async move {
            if !sent {
                return Err(WriteError::Store(StoreError::Closed));
            }
            rx.await
                .unwrap_or(Err(WriteError::Store(StoreError::Closed)))
        }
    }

    /// Runs `op` on a read connection in one snapshot. Reads fail only when the database does.
    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = self
            .inner
            .readers
            .available
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let inner = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || {
            let conn = inner.readers.conns.lock().pop();
            let Some(mut conn) = conn else {
                return Err(StoreError::Unavailable("no read connection".into()));
            };
            let result = logic::in_read_tx(conn.as_mut(), op);
            inner.readers.conns.lock().push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        drop(permit);
        result
    }

    pub async fn register_account(
        &self,
        actor: String,
        reg: AccountRegistration,
        now_ms: i64,
    ) -> Result<Account, WriteError> {
        self.write(move |c| logic::register_account(c, &actor, &reg, now_ms))
            .await
    }

    pub async fn heartbeat(
        &self,
        actor: String,
        login: Login,
        status: AccountStatus,
        now_ms: i64,
    ) -> Result<Account, WriteError> {
        self.write(move |c| logic::heartbeat(c, &actor, login, &status, now_ms))
            .await
    }

    /// Records a tumbler firing; returns the answer (JSON) and whether it was a replay.
    pub async fn tumbler_fired(
        &self,
        actor: String,
        firing: TumblerFiring,
        now_ms: i64,
    ) -> Result<(String, bool), WriteError> {
        self.write(move |c| logic::tumbler_fired(c, &actor, &firing, now_ms))
            .await
    }

    pub async fn account(&self, login: Login) -> Result<Option<Account>, StoreError> {
        self.read(move |c| logic::account(c, login)).await
    }

    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read(logic::accounts).await
    }

    /// Stores a position report; returns the acknowledgement as JSON text (the exact first answer)
    /// and whether it is a replay.
    pub async fn report(
        &self,
        actor: String,
        report: PositionReport,
        now_ms: i64,
    ) -> Result<(String, bool), WriteError> {
        let (tx, rx) = oneshot::channel();
        let fault = self.inner.write_fault.clone();
        let work = Work::Report(Box::new(ReportWork {
            request: logic::ReportRequest {
                actor,
                report,
                now_ms,
            },
            done: Box::new(move |outcome| {
                note_outcome(&fault, &outcome);
                let _ = tx.send(outcome);
            }),
        }));
        self.queue(work, rx).await
    }

    pub async fn positions(&self, filter: PositionFilter) -> Result<Page<Position>, StoreError> {
        self.read(move |c| logic::positions(c, &filter)).await
    }

    pub async fn position(
        &self,
        login: Login,
        id: PositionId,
    ) -> Result<Option<PositionDetail>, StoreError> {
        self.read(move |c| logic::position_detail(c, login, id))
            .await
    }

    /// The inputs of a hedge account's plan, or why there is no plan for that account.
    pub async fn plan_inputs(
        &self,
        hedge_login: Login,
    ) -> Result<Result<PlanInputs, Refusal>, StoreError> {
        self.read(move |c| logic::plan_inputs(c, hedge_login)).await
    }

    /// The plan of `hedge_login` rendered by `render`, computed again only when an event was
    /// stored since (see [`Store::at_head`]): every input of the plan (registrations, overrides,
    /// pauses, allocations, client and hedge exposures) changes only together with an event in the same
    /// transaction, and the plan does not depend on the time. A refusal (unknown or non-hedge
    /// account) is never kept.
    pub async fn plan_answer(
        &self,
        hedge_login: Login,
        render: impl FnOnce(&PlanInputs) -> Result<bytes::Bytes, StoreError>,
    ) -> Result<Result<bytes::Bytes, Refusal>, StoreError> {
        let answer = self
            .at_head(&self.inner.plan_answers, hedge_login, async {
                match self.plan_inputs(hedge_login).await? {
                    Ok(inputs) => Ok(render(&inputs)?),
                    Err(refusal) => Err(WriteError::Refused(refusal)),
                }
            })
            .await;
        match answer {
            Ok(plan) => Ok(Ok(plan)),
            Err(WriteError::Refused(refusal)) => Ok(Err(refusal)),
            Err(WriteError::Store(e)) => Err(e),
        }
    }

    /// The answer kept in `cache` under `key` if no event was stored since it was read, else
    /// `read`'s, kept for the next caller. The head moves before a write is acknowledged, so an
    /// unchanged head means unchanged data for anything that changes only together with an event.
    /// Only on SQLite, whose one writer is this instance's: on PostgreSQL other instances' writes
    /// reach the head a notification later, so every read goes to the database.
    async fn at_head<K: Eq + std::hash::Hash, E>(
        &self,
        cache: &AnswerCache<K>,
        key: K,
        read: impl Future<Output = Result<bytes::Bytes, E>>,
    ) -> Result<bytes::Bytes, E> {
        if self.inner.kind != "sqlite" {
            return read.await;
        }
        // Taken before the read: what is read is at least as new as this head.
        let head = *self.inner.head.borrow();
        if let Some((at, answer)) = cache.0.lock().get(&key) {
            if *at == head {
                return Ok(answer.clone());
            }
        }
        let answer = read.await?;
        let mut cached = cache.0.lock();
        if cached.get(&key).is_none_or(|(at, _)| *at < head) {
            cached.insert(key, (head, answer.clone()));
        }
        Ok(answer)
    }

    pub async fn hedge_executed(
        &self,
        actor: String,
        hedge: HedgeExecuted,
        now_ms: i64,
    ) -> Result<(Hedge, bool), WriteError> {
        self.write(move |c| logic::hedge_executed(c, &actor, &hedge, now_ms))
            .await
    }

    pub async fn hedge_failed(
        &self,
        actor: String,
        failure: HedgeFailed,
        now_ms: i64,
    ) -> Result<Hedge, WriteError> {
        self.write(move |c| logic::hedge_failed(c, &actor, &failure, now_ms))
            .await
    }

    pub async fn hedge_reduce(
        &self,
        actor: String,
        id: HedgeId,
        reduce: HedgeReduce,
        now_ms: i64,
    ) -> Result<Hedge, WriteError> {
        self.write(move |c| logic::hedge_reduce(c, &actor, id, &reduce, now_ms))
            .await
    }

    pub async fn hedge(&self, id: HedgeId) -> Result<Option<Hedge>, StoreError> {
        self.read(move |c| logic::hedge_by_id(c, id)).await
    }

    pub async fn hedges(&self, query: PageQuery) -> Result<Page<Hedge>, StoreError> {
        self.read(move |c| logic::hedges(c, &query)).await
    }

    pub async fn events(&self, query: PageQuery) -> Result<Page<Event>, StoreError> {
        self.read(move |c| logic::events(c, &query)).await
    }

    /// Deletes up to `limit` of the oldest status heartbeats stored before `before_ms` (see
    /// [`logic::prune_status_events`]); returns how many.
    pub async fn prune_status_events(&self, before_ms: i64, limit: u32) -> Result<u64, WriteError> {
        self.write(move |c| Ok(logic::prune_status_events(c, before_ms, limit)?))
            .await
    }

    pub async fn last_event_id(&self) -> Result<u64, StoreError> {
        self.read(|c| logic::max_event_id(c)).await
    }

    /// Performs an operator action once per idempotency key; returns the answer and whether it is
    /// the stored answer of an earlier request with the same key.
    pub async fn action(
        &self,
        actor: String,
        key: String,
        action: ActionRequest,
        now_ms: i64,
    ) -> Result<(ActionAck, bool), WriteError> {
        self.write(move |c| logic::keyed_action(c, &actor, &key, &action, now_ms))
            .await
    }

    pub async fn commands(&self, query: CommandQuery) -> Result<Page<Command>, StoreError> {
        self.read(move |c| logic::commands(c, &query)).await
    }

    pub async fn command(&self, id: CommandId) -> Result<Option<Command>, StoreError> {
        self.read(move |c| logic::command_by_id(c, id)).await
    }

    /// Records a command's result; returns the command and whether it repeats the stored result.
    pub async fn command_result(
        &self,
        actor: String,
        id: CommandId,
        result: CommandResult,
        now_ms: i64,
    ) -> Result<(Command, bool), WriteError> {
        self.write(move |c| logic::command_result(c, &actor, id, &result, now_ms))
            .await
    }

    pub async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        self.read(|c| logic::pauses(c)).await
    }

    pub async fn allocations(&self) -> Result<Vec<Allocation>, StoreError> {
        self.read(|c| logic::allocations(c)).await
    }

    pub async fn legacy_report(
        &self,
        actor: String,
        symbol: String,
        side: Side,
        volume: Volume,
        key: Option<String>,
        now_ms: i64,
    ) -> Result<logic::LegacyOutcome, WriteError> {
        self.write(move |c| {
            logic::legacy_report(c, &actor, &symbol, side, volume, key.as_deref(), now_ms)
        })
        .await
    }

    /// The legacy book: (symbol, signed net units), first-seen order, zero nets left out.
    pub async fn legacy_book(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|c| logic::legacy_book(c)).await
    }

    /// The legacy book rendered by `render`, read again only when an event was stored since the
    /// last read (see [`Store::at_head`]): every change of the book stores an event in the same
    /// transaction.
    pub async fn legacy_book_answer(
        &self,
        render: impl FnOnce(&[(String, i64)]) -> bytes::Bytes,
    ) -> Result<bytes::Bytes, StoreError> {
        self.at_head(&self.inner.legacy_answer, (), async {
            Ok(render(&self.legacy_book().await?))
        })
        .await
    }

    /// Readiness: a read answers, the writer takes a write (an event row, rolled back), and the
    /// last write that reached the database did not fail. The probe alone would miss a full
    /// disk, whose failure shows only when a commit must reach the file; the last outcome alone
    /// would miss a fault that arose since. A failed write keeps the store unready until a write
    /// commits again, so an operator sees it even when the probe passes.
    pub async fn ping(&self) -> Result<(), WriteError> {
        let timed = |what: &'static str| {
            move |_| WriteError::Store(StoreError::Unavailable(format!("store {what} timed out")))
        };
        let probe = self.queue_write(logic::probe_write, None);
        tokio::time::timeout(
            Duration::from_secs(2),
            self.read(|c| {
                c.query("SELECT 1", &[])?;
                Ok(())
            }),
        )
        .await
        .map_err(timed("read"))??;
        tokio::time::timeout(Duration::from_secs(2), probe)
            .await
            .map_err(timed("write probe"))??;
        match self.inner.write_fault.lock().clone() {
            Some(e) => Err(WriteError::Store(StoreError::Unavailable(format!(
                "the last write failed: {e}"
            )))),
            None => Ok(()),
        }
    }
}

/// An open of `id` lots/100 of EURUSD on account 7 under `key`, for the store's unit tests.
#[cfg(test)]
pub(crate) fn sample_open(id: u64, key: String) -> PositionReport {
    PositionReport {
        time_ms: 1,
        idempotency_key: key.into(),
        ..PositionReport::new(
            PositionEventKind::Open,
            Login(7),
            PositionId(id),
            "EURUSD",
            Side::Buy,
            Volume(rust_decimal::Decimal::new(id as i64, 2)),
            1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(id: u64, key: String) -> PositionReport {
        sample_open(id, key)
    }

    /// Requests queued together commit in one batch. A refused one among them (every fifth reuses
    /// the key of the one before with another payload) changes nothing, and every other one is
    /// stored once with its own answer: the batch's first pass is rolled back and the batch runs
    /// again with a savepoint per request.
    async fn refusal_inside_a_batch(store: Store) {
        let queued: Vec<_> = (0..40u64)
            .map(|i| {
                let key = format!("k{}", if i % 5 == 4 { i - 1 } else { i });
                store.report("test".into(), open(i + 1, key), 1)
            })
            .collect();
        let answers = futures::future::join_all(queued).await;
        for (i, answer) in answers.iter().enumerate() {
            if i % 5 == 4 {
                assert!(
                    matches!(answer, Err(WriteError::Refused(Refusal::Conflict(_)))),
                    "{i}: {answer:?}"
                );
            } else {
                let (_, replayed) = answer.as_ref().unwrap();
                assert!(!replayed, "{i}");
            }
        }
        let stored = store.positions(PositionFilter::default()).await.unwrap();
        let mut ids: Vec<u64> = stored.items.iter().map(|p| p.position_id.0).collect();
        ids.sort();
        let expected: Vec<u64> = (0..40u64).filter(|i| i % 5 != 4).map(|i| i + 1).collect();
        assert_eq!(ids, expected);
        // One event per stored report. (PostgreSQL does not give back the ids a rolled-back pass
        // drew from the sequence, so ids may have gaps; readers resume by "after id", never count.)
        let events = store
            .events(PageQuery {
                limit: Some(1000),
                ..PageQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(events.items.len(), 32);
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refusal_inside_a_batch_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let location = StoreLocation::Sqlite(dir.path().join("center.db"));
        refusal_inside_a_batch(Store::open(&location).await.unwrap()).await;
    }

    /// Drives random writes of every kind through a SQLite store whose event stream wants the
    /// plan inputs with each commit, and checks after each step that the inputs handed over (the
    /// writer's held ones, carried through report batches) are those a full read finds, and so is
    /// every hedge account's plan computed from them.
    async fn held_plan_inputs_match_a_full_read(seed: u64) {
        use crate::plan;
        use hedge_domain::{AccountMarginMode, SymbolMap, SymbolSpec};
        use rand::{Rng, SeedableRng};
        use rust_decimal::Decimal;

        const HEDGE: Login = Login(100);
        const SYMBOLS: [&str; 3] = ["EURUSD", "XAUUSD", "GBPUSD"];
        let registration = |login: Login, role: AccountRole, ratio: Decimal| AccountRegistration {
            login,
            role,
            server: "Server".into(),
            company: "Broker".into(),
            margin_mode: AccountMarginMode::RetailHedging,
            symbol_map: SymbolMap::default(),
            hedge_ratio: ratio,
            hedge_login: None,
            symbols: SYMBOLS
                .iter()
                .map(|s| SymbolSpec::forex(s.to_string(), 5))
                .collect(),
            currency: "USD".into(),
        };
        let lots = |n: i64| Volume(Decimal::new(n, 2));

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Sqlite(dir.path().join("center.db")))
            .await
            .unwrap();
        let mut committed = store.follow_commits().unwrap();
        store.streams_open(true);
        store.plans_on_commit(true);
        // A debug build on a busy machine reads over the writer's budget, which neither keeps
        // the inputs nor lets the writer read them for a while: not what this test is about.
        store.inner.committed.lock().plan_inputs_budget = Some(Duration::MAX);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        store
            .register_account(
                "t".into(),
                registration(HEDGE, AccountRole::Hedge, Decimal::ONE),
                1,
            )
            .await
            .unwrap();
        for login in [1, 2] {
            store
                .register_account(
                    "t".into(),
                    registration(Login(login), AccountRole::Client, Decimal::ONE),
                    1,
                )
                .await
                .unwrap();
        }

        // Position state as the test last reported it: (login, id) -> (symbol, side, volume, seq).
        let mut positions: std::collections::BTreeMap<(u64, u64), (&str, Side, i64, u64)> =
            Default::default();
        let mut next_id = 1u64;
        let mut compared = 0;
        for step in 0..300u64 {
            let roll = rng.gen_range(0..100);
            let mut reports = Vec::new();
            let mut jobs: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>> = Vec::new();
            if roll < 70 || (90..95).contains(&roll) {
                for _ in 0..rng.gen_range(1..4) {
                    // Mostly the registered clients; now and then an account that never
                    // registered or the hedge account itself, which the plan does not count.
                    let login = match rng.gen_range(0..20) {
                        0 => 9,
                        1 => HEDGE.0,
                        n => 1 + n % 2,
                    };
                    let open: Vec<(u64, u64)> = positions
                        .keys()
                        .filter(|(l, _)| *l == login)
                        .copied()
                        .collect();
                    let report = if open.is_empty() || rng.gen_bool(0.3) {
                        let id = next_id;
                        next_id += 1;
                        let symbol = SYMBOLS[rng.gen_range(0..SYMBOLS.len())];
                        let side = if rng.gen_bool(0.5) {
                            Side::Buy
                        } else {
                            Side::Sell
                        };
                        let volume = rng.gen_range(1..500);
                        positions.insert((login, id), (symbol, side, volume, 1));
                        PositionReport::new(
                            PositionEventKind::Open,
                            Login(login),
                            PositionId(id),
                            symbol,
                            side,
                            lots(volume),
                            1,
                        )
                    } else {
                        let key = open[rng.gen_range(0..open.len())];
                        let (symbol, side, volume, seq) = positions[&key];
                        let seq = seq + 1;
                        let (kind, to) = match rng.gen_range(0..4) {
                            0 => (PositionEventKind::Increase, volume + rng.gen_range(1..100)),
                            1 if volume > 1 => {
                                (PositionEventKind::PartialClose, rng.gen_range(1..volume))
                            }
                            2 => (PositionEventKind::Modify, volume),
                            _ => (PositionEventKind::Close, volume),
                        };
                        if kind == PositionEventKind::Close {
                            positions.remove(&key);
                        } else {
                            positions.insert(key, (symbol, side, to, seq));
                        }
                        PositionReport::new(
                            kind,
                            Login(key.0),
                            PositionId(key.1),
                            symbol,
                            side,
                            lots(to),
                            seq,
                        )
                    };
                    reports.push(report);
                }
            }
            if roll >= 70 {
                let s = store.clone();
                let symbol = SYMBOLS[rng.gen_range(0..SYMBOLS.len())].to_owned();
                let volume = lots(rng.gen_range(1..300));
                let side = if rng.gen_bool(0.5) {
                    Side::Buy
                } else {
                    Side::Sell
                };
                let n = rng.gen_range(0..5);
                jobs.push(Box::pin(async move {
                    let _ = match n {
                        0 => s
                            .hedge_executed(
                                "t".into(),
                                HedgeExecuted {
                                    plan_item_id: PlanItemId(10_000 + step),
                                    hedge_login: HEDGE,
                                    symbol,
                                    side,
                                    volume,
                                    order: Default::default(),
                                    deal: Default::default(),
                                    position_id: Default::default(),
                                    price: None,
                                    latency_us: None,
                                    slippage: None,
                                    time_ms: 1,
                                },
                                1,
                            )
                            .await
                            .map(|_| ()),
                        1 => {
                            let refusals = vec![PretradeRefusal {
                                symbol,
                                account_symbol: String::new(),
                                side,
                                volume,
                                reason: "margin".into(),
                                since_ms: 1,
                            }];
                            let status = AccountStatus {
                                pretrade_refusals: if step % 2 == 0 { refusals } else { vec![] },
                                ..Default::default()
                            };
                            s.heartbeat("t".into(), HEDGE, status, 1).await.map(|_| ())
                        }
                        2 => {
                            let ratio = Decimal::new(1 + step as i64 % 3, 0);
                            s.register_account(
                                "t".into(),
                                registration(Login(2), AccountRole::Client, ratio),
                                1,
                            )
                            .await
                            .map(|_| ())
                        }
                        3 => {
                            let kind = if step % 2 == 0 {
                                ActionKind::Pause
                            } else {
                                ActionKind::Resume
                            };
                            let mut action = ActionRequest::new(kind);
                            action.symbol = Some(symbol);
                            s.action("t".into(), format!("pause-{step}"), action, 1)
                                .await
                                .map(|_| ())
                        }
                        _ => s
                            .heartbeat("t".into(), Login(1), AccountStatus::default(), 1)
                            .await
                            .map(|_| ()),
                    };
                }));
            }
            let sent = reports.into_iter().map(|r| {
                let s = store.clone();
                Box::pin(async move {
                    let _ = s.report("t".into(), r, 1).await;
                }) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
            });
            futures::future::join_all(sent.chain(jobs)).await;

            let mut latest = None;
            while let Ok(commit) = committed.try_recv() {
                if let Some(inputs) = commit.plan_inputs {
                    latest = Some(inputs);
                }
            }
            let head = store.last_event_id().await.unwrap();
            let Some(handed) = latest.filter(|i| i.as_of_event_id.get() == head) else {
                continue;
            };
            let read = store.plan_inputs(HEDGE).await.unwrap().unwrap();
            assert_eq!(*handed, read, "seed {seed}, step {step}");
            assert_eq!(
                plan::compute_all(&handed),
                plan::compute_all(&read),
                "seed {seed}, step {step}"
            );
            compared += 1;
        }
        let carried = store.inner.committed.lock().plan_inputs_carried;
        assert!(
            compared > 100,
            "seed {seed}: only {compared} steps compared"
        );
        assert!(
            carried > 50,
            "seed {seed}: only {carried} commits carried the inputs over"
        );
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn held_plan_inputs_match_a_full_read_sqlite() {
        for seed in [1, 2, 3] {
            held_plan_inputs_match_a_full_read(seed).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refusal_inside_a_batch_postgres() {
        let url = std::env::var("HEDGE_TEST_PG")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned());
        let schema = format!("hedge_batch_{:08x}", rand::random::<u32>());
        let location = StoreLocation::Postgres {
            url: url.clone(),
            schema: Some(schema.clone()),
        };
        refusal_inside_a_batch(Store::open(&location).await.unwrap()).await;
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }
}
