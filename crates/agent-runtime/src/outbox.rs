//! The durable local outbox, and the agent's small state store beside it, in one SQLite file.
//!
//! Every report an agent makes is first written here, then sent. An item leaves the outbox only when
//! the receiver acknowledged it, so a crash or a center outage loses nothing; items go out strictly
//! in the order they were written (the next is not tried before the previous is acknowledged or
//! dead-lettered), so the center sees a position's events in sequence. An item the receiver rejects
//! as invalid (HTTP 4xx) is moved to a dead-letter table with the reason instead of blocking the queue
//! forever.
//!
//! The state table holds what an agent must remember across restarts (the last reported state of each
//! position). [`Outbox::commit`] writes new items and state changes in one transaction: either both
//! are durable or neither is, which is what makes "nothing reported twice, nothing missed" hold
//! across a `kill -9`.
//!
//! Sending can overlap the commit ([`Outbox::send_while_committing`]): when nothing is queued (the
//! sender is idle), the items of a commit
//! are handed to the sender as soon as they are written, and their POST goes out while the
//! transaction is being synced; the sender acknowledges (removes) such an item only once its
//! transaction has finished. A crash in between leaves the receiver with a report the outbox does
//! not hold, and the agent's state without the change that made it: on start-up the agent finds the
//! change again in the terminal's state and reports it again under the same idempotency key, which
//! the receiver answers as a replay. The order of delivery is the order of the queue either way.

use crate::clock::now_ms;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot create state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// What an outbox item is; tells the delivery how to send it. The text of each kind is what the
/// outbox stores, so it never changes: an outbox written by an older agent must still be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutboxKind {
    /// An account registration (`/v1/accounts`).
    Register,
    /// A client position report (`/v1/positions/events`).
    PositionEvent,
    /// A legacy `GET /new_position/`.
    LegacyOpen,
    /// A tumbler firing (`/v1/tumbler/firings`).
    TumblerEvent,
    /// A hedge the hedger opened.
    HedgeExecuted,
    /// A hedge order that failed for good.
    HedgeFailed,
    /// What the hedge account still holds of a symbol after a reduction or a correction.
    HedgeHolding,
    /// The result of an operator command.
    CommandResult,
}

impl OutboxKind {
    pub const ALL: [OutboxKind; 8] = [
        OutboxKind::Register,
        OutboxKind::PositionEvent,
        OutboxKind::LegacyOpen,
        OutboxKind::TumblerEvent,
        OutboxKind::HedgeExecuted,
        OutboxKind::HedgeFailed,
        OutboxKind::HedgeHolding,
        OutboxKind::CommandResult,
    ];

    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Register => "register",
            OutboxKind::PositionEvent => "position_event",
            OutboxKind::LegacyOpen => "legacy_open",
            OutboxKind::TumblerEvent => "tumbler_event",
            OutboxKind::HedgeExecuted => "hedge_executed",
            OutboxKind::HedgeFailed => "hedge_failed",
            OutboxKind::HedgeHolding => "hedge_holding",
            OutboxKind::CommandResult => "command_result",
        }
    }

    /// The kind of a stored item; `None` for a kind this version does not know (left by another
    /// version), which the delivery refuses rather than guesses.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl std::fmt::Display for OutboxKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets a stored item's kind be compared with a kind directly.
impl PartialEq<OutboxKind> for String {
    fn eq(&self, other: &OutboxKind) -> bool {
        self == other.as_str()
    }
}

/// An item to enqueue. `key` is the idempotency key: an item whose key is already queued is not
/// queued again, and the receiver deduplicates on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewItem {
    pub key: String,
    pub kind: OutboxKind,
    /// The JSON payload.
    pub body: String,
}

impl NewItem {
    pub fn json<T: serde::Serialize>(
        key: impl Into<String>,
        kind: OutboxKind,
        body: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(NewItem {
            key: key.into(),
            kind,
            body: serde_json::to_string(body)?,
        })
    }
}

/// A queued item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxItem {
    /// Position in the queue; strictly increasing in enqueue order.
    pub seq: i64,
    pub key: String,
    pub kind: String,
    pub body: String,
    pub created_ms: i64,
    /// Failed delivery attempts so far.
    pub attempts: u32,
}

/// An item the receiver refused, kept for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub seq: i64,
    pub key: String,
    pub kind: String,
    pub body: String,
    pub error: String,
    pub failed_ms: i64,
}

/// A change to the state table, committed together with new items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateWrite {
    Put {
        ns: String,
        key: String,
        value: String,
    },
    Delete {
        ns: String,
        key: String,
    },
}

/// Why a delivery failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver could not be reached or answered 5xx/429: retry the same item later.
    #[error("receiver unavailable: {0}")]
    Unavailable(String),
    /// The receiver refused the item itself (4xx): retrying cannot help; dead-letter it.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// Sends one item to its receiver. Implemented by the center client, the legacy center, and tests.
pub trait Delivery: Send + Sync {
    fn deliver(&self, item: &OutboxItem) -> impl Future<Output = Result<(), DeliveryError>> + Send;
}

/// Retry delays while the receiver is unreachable: doubling from `initial` up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// Capped at 2 s: a refused connection costs the center nothing, and once it is back every
    /// second a report waits is a second a client position goes unhedged.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The delay before attempt `failures + 1`.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(20)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// What the sender is doing, for the status line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SenderStatus {
    /// `false` after a failed delivery, until the next success.
    pub receiver_up: bool,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub delivered: u64,
    pub dead_lettered: u64,
}

/// The outbox and state store of one agent.
pub struct Outbox {
    conn: Mutex<Connection>,
    wake: Notify,
    /// Items handed to the sender as they were written, before their transaction finished: only
    /// ever the items of a commit that found the queue empty, so nothing queued is older.
    early: Mutex<VecDeque<OutboxItem>>,
    /// The highest seq whose transaction has finished (committed or rolled back): an early item is
    /// acknowledged only after it.
    settled: tokio::sync::watch::Sender<i64>,
    /// Whether commits hand items over early ([`Outbox::send_while_committing`]).
    send_early: std::sync::atomic::AtomicBool,
    /// Counts acknowledgements, for whoever waits on what the receiver has stored: a watch rather
    /// than a notification, so an acknowledgement between a look at the queue and the wait that
    /// follows it is not missed.
    acked: tokio::sync::watch::Sender<u64>,
    /// Counts items moved to the dead-letter table, for whoever repairs what they left undone.
    dead: tokio::sync::watch::Sender<u64>,
    status: Mutex<SenderStatus>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );
    CREATE TABLE IF NOT EXISTS dead_letter (
        seq INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        failed_ms INTEGER NOT NULL,
        error TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS state (
        ns TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (ns, key)
    );
";

impl Outbox {
    /// Opens (creating if needed) the state database at `path`, creating its directory too.
    pub fn open(path: &Path) -> Result<Arc<Self>, OutboxError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OutboxError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| OutboxError::Open {
            path: path.to_owned(),
            source,
        })?;
        // WAL + FULL: a committed transaction survives a power cut, and readers never block writers.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Self::with_connection(conn)
    }

    /// An outbox that lives in memory only (tests, `--dry-run`).
    pub fn open_in_memory() -> Result<Arc<Self>, OutboxError> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(conn: Connection) -> Result<Arc<Self>, OutboxError> {
        conn.execute_batch(SCHEMA)?;
        Ok(Arc::new(Outbox {
            conn: Mutex::new(conn),
            wake: Notify::new(),
            early: Mutex::new(VecDeque::new()),
            settled: tokio::sync::watch::Sender::new(0),
            send_early: std::sync::atomic::AtomicBool::new(false),
            acked: tokio::sync::watch::Sender::new(0),
            dead: tokio::sync::watch::Sender::new(0),
            status: Mutex::new(SenderStatus {
                receiver_up: true,
                ..SenderStatus::default()
            }),
        }))
    }

    /// From now on, a commit that finds the queue empty hands its items to the sender before its
    /// sync (see the module docs). For an agent whose reports are on a reaction path (the client):
    /// the sync is then run with the worker handed over to another thread, which costs a thread
    /// switch, so an agent whose items are only records (the hedger, the tumbler) leaves it off.
    pub fn send_while_committing(&self) {
        self.send_early
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Enqueues one item; `false` when an item with the same key is already queued.
    pub fn push(&self, item: NewItem) -> Result<bool, OutboxError> {
        Ok(self.commit(std::slice::from_ref(&item), &[])? == 1)
    }

    /// Enqueues `items` (in order) and applies `writes` to the state table, atomically. Returns how
    /// many items were new (items whose key is already queued are skipped). When nothing was queued,
    /// the new items go to the sender before the transaction is synced (see the module docs).
    pub fn commit(&self, items: &[NewItem], writes: &[StateWrite]) -> Result<usize, OutboxError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let idle = !items.is_empty()
            && self.send_early.load(std::sync::atomic::Ordering::Relaxed)
            && !queue_holds_items(&tx)?;
        let mut added = 0;
        let mut early = Vec::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO outbox (key, kind, body, created_ms) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let now = now_ms();
            for item in items {
                let new = insert.execute(params![item.key, item.kind.as_str(), item.body, now])?;
                added += new;
                if new == 1 && idle {
                    early.push(OutboxItem {
                        seq: tx.last_insert_rowid(),
                        key: item.key.clone(),
                        kind: item.kind.as_str().to_owned(),
                        body: item.body.clone(),
                        created_ms: now,
                        attempts: 0,
                    });
                }
            }
            let mut put = tx.prepare_cached(
                "INSERT INTO state (ns, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value",
            )?;
            let mut delete = tx.prepare_cached("DELETE FROM state WHERE ns = ?1 AND key = ?2")?;
            for w in writes {
                match w {
                    StateWrite::Put { ns, key, value } => {
                        put.execute(params![ns, key, value])?;
                    }
                    StateWrite::Delete { ns, key } => {
                        delete.execute(params![ns, key])?;
                    }
                }
            }
        }
        let Some(last) = early.last().map(|i| i.seq) else {
            tx.commit()?;
            drop(conn);
            if added > 0 {
                self.wake.notify_one();
            }
            return Ok(added);
        };
        let first = early[0].seq;
        self.early.lock().extend(early);
        self.wake.notify_one();
        let committed = commit_beside_the_sender(tx);
        drop(conn);
        if committed.is_err() {
            // Rolled back: what the sender has not taken yet is not sent.
            self.early
                .lock()
                .retain(|i| !(first..=last).contains(&i.seq));
        }
        self.settled.send_modify(|s| *s = (*s).max(last));
        committed?;
        Ok(added)
    }

    /// The next early item the sender has not dealt with yet (`done`: the last seq it finished).
    fn take_early(&self, done: i64) -> Option<OutboxItem> {
        let mut early = self.early.lock();
        while let Some(item) = early.pop_front() {
            if item.seq > done {
                return Some(item);
            }
        }
        None
    }

    /// Waits until the transaction that wrote `item` has finished; whether it is queued now (a
    /// rolled-back item is not, and its seq may since belong to another item).
    async fn settle(&self, item: &OutboxItem) -> Result<bool, OutboxError> {
        let mut settled = self.settled.subscribe();
        // The sender owns the receiver's lifetime here; the sender half lives as long as `self`.
        let _ = settled.wait_for(|s| *s >= item.seq).await;
        let conn = self.conn.lock();
        let queued = conn
            .prepare_cached("SELECT 1 FROM outbox WHERE seq = ?1 AND key = ?2")?
            .exists(params![item.seq, item.key])?;
        Ok(queued)
    }

    /// One value of the state table.
    pub fn state_get(&self, ns: &str, key: &str) -> Result<Option<String>, OutboxError> {
        let conn = self.conn.lock();
        Ok(conn
            .query_row(
                "SELECT value FROM state WHERE ns = ?1 AND key = ?2",
                params![ns, key],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Every `(key, value)` of a namespace, ordered by key.
    pub fn state_list(&self, ns: &str) -> Result<Vec<(String, String)>, OutboxError> {
        let conn = self.conn.lock();
        let mut stmt =
            conn.prepare_cached("SELECT key, value FROM state WHERE ns = ?1 ORDER BY key")?;
        let rows = stmt
            .query_map(params![ns], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The oldest queued item.
    pub fn front(&self) -> Result<Option<OutboxItem>, OutboxError> {
        Ok(self.peek(1)?.into_iter().next())
    }

    /// Up to `limit` oldest items, in order.
    pub fn peek(&self, limit: usize) -> Result<Vec<OutboxItem>, OutboxError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, key, kind, body, created_ms, attempts FROM outbox ORDER BY seq LIMIT ?1",
        )?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(OutboxItem {
                    seq: r.get(0)?,
                    key: r.get(1)?,
                    kind: r.get(2)?,
                    body: r.get(3)?,
                    created_ms: r.get(4)?,
                    attempts: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Removes an acknowledged item.
    pub fn ack(&self, seq: i64) -> Result<(), OutboxError> {
        self.conn
            .lock()
            .prepare_cached("DELETE FROM outbox WHERE seq = ?1")?
            .execute(params![seq])?;
        self.acked.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Removes an item the receiver acknowledged, without waiting for the disk: an acknowledgement
    /// lost to a power cut only makes the item go out again, and the receiver answers that resend
    /// as a replay of its key. The next synced commit makes it durable with it.
    fn ack_delivered(&self, item: &OutboxItem) -> Result<(), OutboxError> {
        {
            let conn = self.conn.lock();
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            let deleted = conn
                .prepare_cached("DELETE FROM outbox WHERE seq = ?1 AND key = ?2")
                .and_then(|mut delete| delete.execute(params![item.seq, item.key]));
            conn.pragma_update(None, "synchronous", "FULL")?;
            deleted?;
        }
        self.acked.send_modify(|n| *n += 1);
        Ok(())
    }

    /// The count of acknowledgements, to wait on with `changed()`.
    pub fn acks(&self) -> tokio::sync::watch::Receiver<u64> {
        self.acked.subscribe()
    }

    /// Records a failed attempt on an item that stays queued.
    pub fn record_failure(&self, seq: i64, error: &str) -> Result<(), OutboxError> {
        self.conn.lock().execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2 WHERE seq = ?1",
            params![seq, error],
        )?;
        Ok(())
    }

    /// Moves a refused item to the dead-letter table.
    pub fn dead_letter(&self, seq: i64, error: &str) -> Result<(), OutboxError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO dead_letter (seq, key, kind, body, created_ms, failed_ms, error)
             SELECT seq, key, kind, body, created_ms, ?2, ?3 FROM outbox WHERE seq = ?1",
            params![seq, now_ms(), error],
        )?;
        tx.execute("DELETE FROM outbox WHERE seq = ?1", params![seq])?;
        tx.commit()?;
        drop(conn);
        self.dead.send_modify(|n| *n += 1);
        Ok(())
    }

    /// The count of items dead-lettered by this outbox, to wait on with `changed()`.
    pub fn dead_lettered(&self) -> tokio::sync::watch::Receiver<u64> {
        self.dead.subscribe()
    }

    /// Removes the dead letters with these idempotency keys (what they failed to report is in the
    /// receiver's books now); returns how many were removed.
    pub fn remove_dead_letters(&self, keys: &[String]) -> Result<usize, OutboxError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let mut removed = 0;
        {
            let mut delete = tx.prepare_cached("DELETE FROM dead_letter WHERE key = ?1")?;
            for key in keys {
                removed += delete.execute(params![key])?;
            }
        }
        tx.commit()?;
        Ok(removed)
    }

    /// Number of items waiting.
    pub fn pending(&self) -> Result<u64, OutboxError> {
        // Prepared once: the hedger asks before each reaction, and preparing the statement
        // again each time cost more than counting.
        let n: i64 = self
            .conn
            .lock()
            .prepare_cached("SELECT COUNT(*) FROM outbox")?
            .query_row([], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// Waits up to `within` for the sender to deliver what is queued, as an agent does at
    /// shutdown to give the center a moment to take the last records; returns how many are still
    /// queued (they stay for the next start).
    pub async fn drain(&self, within: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + within;
        while self.pending().unwrap_or(0) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.pending().unwrap_or(0)
    }

    /// How many items are dead-lettered, and the reason of the newest (read from the database, so
    /// it survives restarts).
    pub fn dead_letter_summary(&self) -> Result<(u64, Option<String>), OutboxError> {
        let conn = self.conn.lock();
        let count: i64 = conn.query_row("SELECT COUNT(*) FROM dead_letter", [], |r| r.get(0))?;
        let reason: Option<String> = conn
            .query_row(
                "SELECT error FROM dead_letter ORDER BY failed_ms DESC, seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        // The center takes a status message of 2 KiB at most; the start of the reason says it.
        let reason = reason.map(|r| r.chars().take(1000).collect());
        Ok((u64::try_from(count).unwrap_or(0), reason))
    }

    /// Every dead-lettered item, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, OutboxError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, key, kind, body, error, failed_ms FROM dead_letter ORDER BY seq",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(DeadLetter {
                    seq: r.get(0)?,
                    key: r.get(1)?,
                    kind: r.get(2)?,
                    body: r.get(3)?,
                    error: r.get(4)?,
                    failed_ms: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The sender's current state.
    pub fn sender_status(&self) -> SenderStatus {
        self.status.lock().clone()
    }

    /// Sends queued items through `delivery` forever, in order: an item is acknowledged (removed)
    /// only after `delivery` succeeded; an unreachable receiver is retried with `backoff`; a
    /// rejected item is dead-lettered. Returns only on a database error. Safe to abort at any await
    /// point: an item whose delivery was cut short stays queued and is sent again (the receiver
    /// deduplicates by key).
    pub async fn run_sender<D: Delivery>(
        self: Arc<Self>,
        delivery: D,
        backoff: Backoff,
    ) -> Result<(), OutboxError> {
        // The seq of the last item delivered or dead-lettered: an early item at or below it was
        // taken from the queue meanwhile.
        let mut done = 0;
        loop {
            let (item, early) = match self.take_early(done) {
                Some(item) => (item, true),
                None => match self.front()? {
                    Some(item) => (item, false),
                    None => {
                        // The timeout covers items pushed by another process sharing the file.
                        let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified())
                            .await;
                        continue;
                    }
                },
            };
            let delivered = delivery.deliver(&item).await;
            if early && !self.settle(&item).await? {
                continue;
            }
            match delivered {
                Ok(()) => {
                    self.ack_delivered(&item)?;
                    done = item.seq;
                    let mut s = self.status.lock();
                    if !s.receiver_up {
                        tracing::info!(
                            pending = item.seq,
                            "center reachable again; draining outbox"
                        );
                    }
                    s.receiver_up = true;
                    s.consecutive_failures = 0;
                    s.delivered += 1;
                }
                Err(DeliveryError::Rejected(reason)) => {
                    tracing::error!(key = %item.key, kind = %item.kind, %reason,
                        "report rejected by the center; moved to the dead-letter list");
                    self.dead_letter(item.seq, &reason)?;
                    done = item.seq;
                    self.status.lock().dead_lettered += 1;
                }
                Err(DeliveryError::Unavailable(reason)) => {
                    // The item stays first in the queue; whatever was handed over after it is
                    // queued too and follows it from there, in order.
                    self.early.lock().clear();
                    self.record_failure(item.seq, &reason)?;
                    let failures = {
                        let mut s = self.status.lock();
                        if s.receiver_up {
                            tracing::warn!(%reason, "center unreachable; reports wait in the outbox");
                        }
                        s.receiver_up = false;
                        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                        s.last_error = Some(reason);
                        s.consecutive_failures
                    };
                    tokio::time::sleep(backoff.delay(failures.saturating_sub(1))).await;
                }
            }
        }
    }
}

/// Whether the queue holds any item (read inside the caller's transaction).
fn queue_holds_items(tx: &rusqlite::Transaction<'_>) -> Result<bool, rusqlite::Error> {
    tx.prepare_cached("SELECT 1 FROM outbox LIMIT 1")?
        .exists([])
}

/// Commits `tx`. On a multi-thread runtime the sync runs with this worker handed over to another
/// thread: the sender, woken for the early items, would otherwise wait in this worker's queue
/// until the sync is over, and the send would not overlap it.
fn commit_beside_the_sender(tx: rusqlite::Transaction<'_>) -> Result<(), rusqlite::Error> {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(|| tx.commit())
    } else {
        tx.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn item(key: &str) -> NewItem {
        NewItem {
            key: key.into(),
            kind: OutboxKind::PositionEvent,
            body: format!("{{\"k\":\"{key}\"}}"),
        }
    }

    #[test]
    fn kinds_keep_their_stored_text() {
        // Outboxes written by older agents are read with these texts: changing one strands items.
        let stored: Vec<&str> = OutboxKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            stored,
            [
                "register",
                "position_event",
                "legacy_open",
                "tumbler_event",
                "hedge_executed",
                "hedge_failed",
                "hedge_holding",
                "command_result"
            ]
        );
        for kind in OutboxKind::ALL {
            assert_eq!(OutboxKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(OutboxKind::parse("test"), None);
    }

    #[test]
    fn refused_reports_are_counted_with_their_reason_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        {
            let ob = Outbox::open(&path).unwrap();
            assert_eq!(ob.dead_letter_summary().unwrap(), (0, None));
            ob.push(item("a")).unwrap();
            ob.push(item("b")).unwrap();
            ob.dead_letter(ob.front().unwrap().unwrap().seq, "422: unknown symbol")
                .unwrap();
            ob.dead_letter(ob.front().unwrap().unwrap().seq, &"x".repeat(5000))
                .unwrap();
        }
        // A restarted agent still reports them: the center must not look complete.
        let ob = Outbox::open(&path).unwrap();
        let (count, reason) = ob.dead_letter_summary().unwrap();
        assert_eq!(count, 2);
        assert_eq!(reason.map(|r| r.len()), Some(1000));
        // Once the receiver holds what they failed to say, they go, and only they.
        assert_eq!(
            ob.remove_dead_letters(&["b".into(), "unknown".into()])
                .unwrap(),
            1
        );
        let (count, reason) = ob.dead_letter_summary().unwrap();
        assert_eq!((count, reason.as_deref()), (1, Some("422: unknown symbol")));
    }

    #[tokio::test]
    async fn a_dead_letter_wakes_whoever_watches() {
        let ob = Outbox::open_in_memory().unwrap();
        let mut dead = ob.dead_lettered();
        ob.push(item("a")).unwrap();
        ob.dead_letter(ob.front().unwrap().unwrap().seq, "409 stale")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), dead.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*dead.borrow(), 1);
    }

    #[test]
    fn items_survive_reopen_in_order_and_dedup_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/agent.db");
        {
            let ob = Outbox::open(&path).unwrap();
            assert!(ob.push(item("a")).unwrap());
            assert!(ob.push(item("b")).unwrap());
            assert!(!ob.push(item("a")).unwrap());
            ob.commit(
                &[item("c")],
                &[StateWrite::Put {
                    ns: "pos".into(),
                    key: "1".into(),
                    value: "x".into(),
                }],
            )
            .unwrap();
        }
        let ob = Outbox::open(&path).unwrap();
        let keys: Vec<_> = ob.peek(10).unwrap().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, vec!["a", "b", "c"]);
        assert_eq!(ob.state_get("pos", "1").unwrap().as_deref(), Some("x"));
        let front = ob.front().unwrap().unwrap();
        ob.ack(front.seq).unwrap();
        assert_eq!(ob.pending().unwrap(), 2);
        ob.dead_letter(ob.front().unwrap().unwrap().seq, "bad")
            .unwrap();
        assert_eq!(ob.pending().unwrap(), 1);
        let dead = ob.dead_letters().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].key, "b");
        assert_eq!(dead[0].error, "bad");
        ob.commit(
            &[],
            &[StateWrite::Delete {
                ns: "pos".into(),
                key: "1".into(),
            }],
        )
        .unwrap();
        assert!(ob.state_list("pos").unwrap().is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(400));
        assert_eq!(b.delay(10), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }

    /// Fails while `down` is set, rejects keys starting with `bad`, records the order of successes.
    struct Flaky {
        down: Arc<std::sync::atomic::AtomicBool>,
        seen: Arc<Mutex<Vec<String>>>,
        calls: Arc<AtomicUsize>,
    }

    impl Delivery for Flaky {
        async fn deliver(&self, item: &OutboxItem) -> Result<(), DeliveryError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(DeliveryError::Unavailable("down".into()));
            }
            if item.key.starts_with("bad") {
                return Err(DeliveryError::Rejected("400 bad".into()));
            }
            self.seen.lock().push(item.key.clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn sender_waits_out_an_outage_and_drains_in_order() {
        let ob = Outbox::open_in_memory().unwrap();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let flaky = Flaky {
            down: down.clone(),
            seen: seen.clone(),
            calls: calls.clone(),
        };
        for k in ["e1", "bad-2", "e3"] {
            ob.push(item(k)).unwrap();
        }
        let task = tokio::spawn(ob.clone().run_sender(
            flaky,
            Backoff {
                initial: Duration::from_millis(5),
                max: Duration::from_millis(20),
            },
        ));
        while calls.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!ob.sender_status().receiver_up);
        assert_eq!(ob.pending().unwrap(), 3);
        assert!(seen.lock().is_empty());
        down.store(false, Ordering::SeqCst);
        ob.push(item("e4")).unwrap();
        for _ in 0..400 {
            if ob.pending().unwrap() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*seen.lock(), vec!["e1", "e3", "e4"]);
        assert_eq!(ob.dead_letters().unwrap().len(), 1);
        let st = ob.sender_status();
        assert!(st.receiver_up);
        assert_eq!(st.delivered, 3);
        assert_eq!(st.dead_lettered, 1);
        task.abort();
    }

    /// Records every delivery, in order.
    #[derive(Clone, Default)]
    struct Recorder {
        seen: Arc<Mutex<Vec<String>>>,
    }

    impl Delivery for Recorder {
        async fn deliver(&self, item: &OutboxItem) -> Result<(), DeliveryError> {
            self.seen.lock().push(item.key.clone());
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn items_sent_while_their_commit_syncs_go_out_once_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("agent.db")).unwrap();
        ob.send_while_committing();
        let recorder = Recorder::default();
        let task = tokio::spawn(ob.clone().run_sender(recorder.clone(), Backoff::default()));
        let mut expected = Vec::new();
        for round in 0..40 {
            // One, two or three items per commit; some commits find the queue empty (handed over
            // early), others find earlier items still queued.
            let batch: Vec<NewItem> = (0..=round % 3)
                .map(|i| item(&format!("r{round}-{i}")))
                .collect();
            expected.extend(batch.iter().map(|i| i.key.clone()));
            ob.commit(&batch, &[]).unwrap();
            if round % 4 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for _ in 0..400 {
            if ob.pending().unwrap() == 0 && recorder.seen.lock().len() >= expected.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(ob.pending().unwrap(), 0);
        assert_eq!(*recorder.seen.lock(), expected);
        assert_eq!(ob.sender_status().delivered, expected.len() as u64);
        task.abort();
    }

    #[tokio::test]
    async fn an_item_handed_over_early_is_acknowledged_only_if_its_commit_held() {
        let ob = Outbox::open_in_memory().unwrap();
        ob.send_while_committing();
        // A commit that fails at COMMIT itself (a deferred constraint), after its item was handed
        // over to the sender.
        ob.conn
            .lock()
            .execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TABLE anchor (id INTEGER PRIMARY KEY);
                 CREATE TABLE guard (
                     ref INTEGER REFERENCES anchor (id) DEFERRABLE INITIALLY DEFERRED
                 );
                 CREATE TRIGGER boom AFTER INSERT ON outbox WHEN NEW.key = 'boom'
                 BEGIN INSERT INTO guard (ref) VALUES (42); END;",
            )
            .unwrap();
        assert!(ob.commit(&[item("boom")], &[]).is_err());
        // Rolled back: not handed over any more, and nothing queued.
        assert!(ob.take_early(0).is_none());
        assert_eq!(ob.pending().unwrap(), 0);

        // Had the sender taken it before the failure, the seq it held now belongs to the next
        // item: settling the lost one says it is not queued, so it is neither acknowledged nor
        // dead-lettered, and the next item is.
        let lost = OutboxItem {
            seq: 1,
            key: "boom".into(),
            kind: OutboxKind::PositionEvent.as_str().into(),
            body: String::new(),
            created_ms: 0,
            attempts: 0,
        };
        ob.commit(&[item("next")], &[]).unwrap();
        let next = ob.take_early(0).unwrap();
        assert_eq!((next.seq, next.key.as_str()), (lost.seq, "next"));
        assert!(!ob.settle(&lost).await.unwrap());
        assert!(ob.settle(&next).await.unwrap());
        ob.ack_delivered(&lost).unwrap();
        assert_eq!(ob.pending().unwrap(), 1);
        ob.ack_delivered(&next).unwrap();
        assert_eq!(ob.pending().unwrap(), 0);
    }

    #[tokio::test]
    async fn only_a_commit_that_finds_the_queue_empty_hands_its_items_over() {
        let ob = Outbox::open_in_memory().unwrap();
        // Off unless asked for.
        ob.commit(&[item("z")], &[]).unwrap();
        assert!(ob.take_early(0).is_none());
        let z = ob.front().unwrap().unwrap();
        ob.ack_delivered(&z).unwrap();
        ob.send_while_committing();
        ob.commit(&[item("a"), item("b")], &[]).unwrap();
        // Queued behind "a" and "b": goes out from the queue, after them.
        ob.commit(&[item("c")], &[]).unwrap();
        let a = ob.take_early(0).unwrap();
        let b = ob.take_early(a.seq).unwrap();
        assert_eq!((a.key.as_str(), b.key.as_str()), ("a", "b"));
        assert!(ob.take_early(b.seq).is_none());
        assert_eq!(ob.pending().unwrap(), 3);
        // A key already queued is not handed over again.
        for i in [&a, &b] {
            ob.ack_delivered(i).unwrap();
        }
        ob.commit(&[item("c"), item("d")], &[]).unwrap();
        assert!(ob.take_early(0).is_none());
        assert_eq!(
            ob.peek(10)
                .unwrap()
                .into_iter()
                .map(|i| i.key)
                .collect::<Vec<_>>(),
            ["c", "d"]
        );
    }
}
