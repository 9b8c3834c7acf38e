//! PostgreSQL: the scale-out store. Several center instances share one database; after each
//! commit the writer hands the newest event id to the instance's notifying thread, which sends
//! `pg_notify` on a connection of its own ([`announce`]: a notifying commit holds a database-wide
//! lock), and every instance listens, so events written anywhere reach every instance's
//! subscribers.
//!
//! The rules are the synchronous [`Conn`] ones. Each connection has a single-threaded runtime of
//! its own that drives its socket, and the thread using the connection (the writer, a blocking
//! reader) runs it while it waits for an answer. Driving the socket from the shared runtime
//! instead put every round trip behind the HTTP tasks queued there, which under load cost far
//! more than the round trip itself.
//!
//! Round trips, not the server, bound the writer here, so statements whose answer nobody needs
//! ([`Conn::send`], locks, savepoints, `BEGIN`) are pipelined: handed to the connection at once and
//! their answers collected with the next statement that waits, or by [`Conn::flush`];
//! [`Conn::query_many`] sends several queries in one round trip. A batch of reports then costs two
//! round trips whatever its size (see `logic::report_batch`), and each instance runs several
//! writer connections whose batches commit side by side.
//!
//! Instances serialize through advisory locks keyed on the schema ([`Conn::lock`], [`lock_key`]),
//! so centers on different schemas of one database never wait for each other. Event ids are drawn
//! without a global lock, so transactions commit them out of order; readers stop at the event
//! horizon ([`HORIZON_SQL`], [`Conn::begin_read`]) and never pass an id still in flight (the
//! argument is in `docs/postgres.md`). Start-up holds a
//! session lock of its own over every DDL statement (creating the schema, the migrations), so
//! instances started at the same moment on a new schema do not race in the catalogs.

mod announce;
mod horizon;

use super::{Conn, Dialect, Lock, Row, StoreError, Val};
use announce::Announcer;
use futures::StreamExt;
use horizon::SharedHorizon;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::watch;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

/// Classifies a PostgreSQL error by its SQLSTATE class: connection, resources, operator
/// intervention and system errors mean the database is unavailable; a serialization failure,
/// a deadlock or a lock not available mean the transaction lost a race; anything else (a
/// constraint, bad data, bad SQL) is the statement being refused for good. An error without an
/// answer from the server is the connection failing.
fn db(e: tokio_postgres::Error) -> StoreError {
    // The error's Display carries the server message, never the password.
    let Some(d) = e.as_db_error() else {
        let message = e.to_string();
        return if message.starts_with("error serializing")
            || message.starts_with("error deserializing")
        {
            StoreError::Internal(message)
        } else if message.starts_with("invalid c") || message.starts_with("authentication") {
            StoreError::Rejected {
                code: "config".into(),
                message,
            }
        } else {
            StoreError::Unavailable(message)
        };
    };
    let code = d.code().code();
    let message = d.message().to_owned();
    match &code[..2.min(code.len())] {
        "08" | "53" | "57" | "58" | "HV" => StoreError::Unavailable(message),
        "40" => StoreError::Contention(message),
        // lock_not_available; read_only_sql_transaction (a standby or a read-only database).
        _ if code == "55P03" => StoreError::Contention(message),
        _ if code == "25006" => StoreError::Unavailable(message),
        _ => StoreError::Rejected {
            code: code.to_owned(),
            message,
        },
    }
}

/// The advisory lock key of `parts` in this schema: FNV-1a over the parts, so every instance and
/// every build computes the same key (a collision only makes two keys wait for each other).
pub fn lock_key(scope: &str, parts: &[&[u8]]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in std::iter::once(b"hedge-center".as_slice())
        .chain(std::iter::once(scope.as_bytes()))
        .chain(parts.iter().copied())
    {
        for &b in part.iter().chain(std::iter::once(&0u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h as i64
}

fn key_of(scope: &str, lock: &Lock) -> i64 {
    match lock {
        Lock::Writes => lock_key(scope, &[b"writes"]),
        Lock::Position(login, id) => lock_key(
            scope,
            &[b"position", &login.0.to_le_bytes(), &id.0.to_le_bytes()],
        ),
    }
}

/// The 16-bit tag of `scope`'s in-flight markers. A marker is a shared advisory lock in the
/// two-`int4` form (the only locks of that form the center takes): the first key is the tag in its
/// high half and bits 32-47 of the marker in its low half, the second key bits 0-31. A lock of
/// another application that happens to look like a marker only holds the horizon back while it is
/// held; it never lets a reader pass an id in flight.
pub fn marker_tag(scope: &str) -> i64 {
    (lock_key(scope, &[b"in-flight"]) as u64 >> 48) as i64
}

/// The event horizon of the schema whose marker tag is the parameter: the largest id such that no
/// transaction still in flight can commit an event at or below it. It is the lesser of the last id
/// drawn (read first) and the smallest marker held (read after): a transaction takes its marker,
/// the last id drawn before it, ahead of drawing ids of its own, and releases it only after its
/// commit is visible, so every id at or below the horizon was drawn by a transaction that had
/// ended when the locks were read. The read that follows, in a snapshot taken after this, sees
/// every event at or below the horizon that will ever exist.
pub const HORIZON_SQL: &str = "WITH top AS MATERIALIZED (
        SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS id FROM events_id_seq)
    SELECT LEAST(top.id, (
        SELECT MIN(((l.classid::bigint & 65535) << 32) | l.objid::bigint) FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND (l.classid::bigint >> 16) = ?::bigint
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND top.id IS NOT NULL)) FROM top";

/// The read transaction of [`Conn::begin_read`], begun after the horizon is read.
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// `?` placeholders to `$1, $2, ...` (our statements never contain `?` in literals).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

/// The answer of a statement sent without waiting.
type Reply = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

pub struct PgConn {
    /// Declared before `runtime` so that the client is dropped first.
    client: Arc<Client>,
    /// The schema the advisory lock keys belong to (`public` when none is given).
    scope: String,
    /// [`marker_tag`] of `scope`.
    tag: i64,
    /// The event horizon read by the last [`Conn::begin_read`].
    horizon: Option<u64>,
    /// Where the horizon is read, shared by the instance's readers.
    horizons: Arc<SharedHorizon>,
    statements: HashMap<String, Statement>,
    /// Statements sent and not yet answered, oldest first. The connection task hands each
    /// statement's answer to its own small channel and stalls while that channel is full, so the
    /// answers are always awaited oldest first (never a newer one while older ones wait).
    in_flight: VecDeque<Reply>,
    /// Where a writer hands the ids to announce (see [`announce`]).
    announcer: Option<Arc<Announcer>>,
    /// Runs the connection's task; `None` only while being dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // Never blocks, so a connection may be dropped anywhere, even inside async code.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `f` to completion on the connection's own runtime.
fn run<F: Future>(rt: &Option<tokio::runtime::Runtime>, f: F) -> F::Output {
    match rt {
        Some(rt) => rt.block_on(f),
        None => futures::executor::block_on(f),
    }
}

impl PgConn {
    /// Connects with a runtime of its own. Blocks: call it from a blocking thread.
    fn connect_blocking(url: &str, schema: Option<&str>) -> Result<PgConn, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        // `connect` spawns the connection's task onto the runtime it runs on: this one.
        let client = rt.block_on(connect(url, schema))?;
        Ok(PgConn {
            client: Arc::new(client),
            scope: schema.unwrap_or("public").to_owned(),
            tag: marker_tag(schema.unwrap_or("public")),
            horizon: None,
            horizons: Arc::default(),
            statements: HashMap::new(),
            in_flight: VecDeque::new(),
            announcer: None,
            runtime: Some(rt),
        })
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        // Preparing waits for its answer, which comes after those of the statements in flight.
        drain(&self.runtime, &mut self.in_flight)?;
        let s = run(&self.runtime, self.client.prepare(&numbered(sql))).map_err(db)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// Hands `reply`'s request to the connection now (its first poll writes it to the connection's
    /// queue) and keeps it to collect the answer later.
    fn start(&mut self, mut reply: Reply) {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        if let Poll::Ready(r) = reply.as_mut().poll(&mut cx) {
            reply = Box::pin(futures::future::ready(r));
        }
        self.in_flight.push_back(reply);
    }
}

/// Waits for every statement in flight, oldest first; returns the first error among them.
fn drain(
    rt: &Option<tokio::runtime::Runtime>,
    in_flight: &mut VecDeque<Reply>,
) -> Result<(), StoreError> {
    let mut first = None;
    while let Some(reply) = in_flight.pop_front() {
        if let Err(e) = run(rt, reply) {
            first.get_or_insert(db(e));
        }
    }
    first.map_or(Ok(()), Err)
}

/// Sends `request` behind the statements in flight, so they all share one round trip, and waits
/// for everything. An earlier failure is the one reported (it aborted the transaction, which is
/// why a later statement failed too), unless `own_result` says this statement's answer is all
/// that counts (a rollback).
fn wait<T>(
    rt: &Option<tokio::runtime::Runtime>,
    in_flight: &mut VecDeque<Reply>,
    request: impl Future<Output = Result<T, tokio_postgres::Error>>,
    own_result: bool,
) -> Result<T, StoreError> {
    let mut request = std::pin::pin!(request);
    if in_flight.is_empty() {
        return run(rt, request).map_err(db);
    }
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let early = request.as_mut().poll(&mut cx);
    let earlier = drain(rt, in_flight);
    let result = match early {
        Poll::Ready(r) => r,
        Poll::Pending => run(rt, request),
    };
    if !own_result {
        earlier?;
    }
    result.map_err(db)
}

/// A parameterless transaction-control statement whose answer can wait.
fn deferrable(sql: &str) -> bool {
    sql == "BEGIN" || sql.starts_with("SAVEPOINT ") || sql.starts_with("RELEASE SAVEPOINT ")
}

fn boxed(params: &[Val]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    params
        .iter()
        .map(|v| -> Box<dyn ToSql + Sync + Send> {
            match v {
                Val::Int(i) => Box::new(*i),
                Val::Text(t) => Box::new(t.clone()),
                Val::NullInt => Box::new(None::<i64>),
                Val::NullText => Box::new(None::<String>),
                Val::IntArray(a) => Box::new(a.clone()),
                Val::TextArray(a) => Box::new(a.clone()),
            }
        })
        .collect()
}

/// The answer of a query sent without waiting.
type Rows =
    Pin<Box<dyn Future<Output = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>> + Send>>;

/// Polls `f` once, which hands its request to the connection; keeps its answer if already there.
fn started<T: Send + 'static>(
    mut f: Pin<Box<dyn Future<Output = T> + Send>>,
) -> Pin<Box<dyn Future<Output = T> + Send>> {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(r) => Box::pin(futures::future::ready(r)),
        Poll::Pending => f,
    }
}

fn convert_rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Row>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut vals = Vec::with_capacity(row.len());
        for (i, col) in row.columns().iter().enumerate() {
            let t = col.type_();
            let v = if *t == Type::INT8 {
                row.try_get::<_, Option<i64>>(i)
                    .map_err(db)?
                    .map_or(Val::NullInt, Val::Int)
            } else if *t == Type::INT4 {
                row.try_get::<_, Option<i32>>(i)
                    .map_err(db)?
                    .map_or(Val::NullInt, |v| Val::Int(v.into()))
            } else if *t == Type::INT2 {
                row.try_get::<_, Option<i16>>(i)
                    .map_err(db)?
                    .map_or(Val::NullInt, |v| Val::Int(v.into()))
            } else if *t == Type::TEXT
                || *t == Type::VARCHAR
                || *t == Type::NAME
                || *t == Type::BPCHAR
            {
                row.try_get::<_, Option<String>>(i)
                    .map_err(db)?
                    .map_or(Val::NullText, Val::Text)
            } else if *t == Type::VOID {
                Val::NullText
            } else if *t == Type::BOOL {
                row.try_get::<_, Option<bool>>(i)
                    .map_err(db)?
                    .map_or(Val::NullInt, |b| Val::Int(b.into()))
            } else {
                return Err(StoreError::Internal(format!("unsupported column type {t}")));
            };
            vals.push(v);
        }
        out.push(Row(vals));
    }
    Ok(out)
}

impl Conn for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        let stmt = self.statement(sql)?;
        let owned = boxed(params);
        let refs: Vec<&(dyn ToSql + Sync)> = owned
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        wait(
            &self.runtime,
            &mut self.in_flight,
            self.client.execute(&stmt, &refs),
            false,
        )
    }

    fn send(&mut self, sql: &str, params: &[Val]) -> Result<(), StoreError> {
        let stmt = self.statement(sql)?;
        let owned = boxed(params);
        let client = self.client.clone();
        self.start(Box::pin(async move {
            let refs: Vec<&(dyn ToSql + Sync)> = owned
                .iter()
                .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                .collect();
            client.execute(&stmt, &refs).await.map(|_| ())
        }));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        drain(&self.runtime, &mut self.in_flight)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        let stmt = self.statement(sql)?;
        let owned = boxed(params);
        let refs: Vec<&(dyn ToSql + Sync)> = owned
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = wait(
            &self.runtime,
            &mut self.in_flight,
            self.client.query(&stmt, &refs),
            false,
        )?;
        convert_rows(rows)
    }

    fn query_many(
        &mut self,
        statements: &[(String, Vec<Val>)],
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let mut prepared = Vec::with_capacity(statements.len());
        for (sql, _) in statements {
            prepared.push(self.statement(sql)?);
        }
        let mut pending: Vec<Rows> = Vec::with_capacity(statements.len());
        for (stmt, (_, params)) in prepared.into_iter().zip(statements) {
            let owned = boxed(params);
            let client = self.client.clone();
            pending.push(started(Box::pin(async move {
                let refs: Vec<&(dyn ToSql + Sync)> = owned
                    .iter()
                    .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                client.query(&stmt, &refs).await
            })));
        }
        // Oldest answers first: those of the statements sent before these.
        let earlier = drain(&self.runtime, &mut self.in_flight);
        let mut out = Vec::with_capacity(pending.len());
        let mut first = None;
        for rows in pending {
            match run(&self.runtime, rows) {
                Ok(rows) => out.push(rows),
                Err(e) => {
                    first.get_or_insert(db(e));
                }
            }
        }
        earlier?;
        if let Some(e) = first {
            return Err(e);
        }
        out.into_iter().map(convert_rows).collect()
    }

    fn lock(&mut self, locks: &[Lock]) -> Result<(), StoreError> {
        let mut keys: Vec<i64> = locks.iter().map(|l| key_of(&self.scope, l)).collect();
        keys.sort_unstable();
        keys.dedup();
        match keys.as_slice() {
            [] => Ok(()),
            [key] => self.send("SELECT pg_advisory_xact_lock(?)", &[Val::Int(*key)]),
            // One statement; the subquery's order is the order the locks are taken in.
            _ => self.send(
                "SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest(?::bigint[]) AS k ORDER BY k) AS sorted",
                &[Val::IntArray(keys.into_iter().map(Some).collect())],
            ),
        }
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        let rollback = sql.starts_with("ROLLBACK");
        wait(
            &self.runtime,
            &mut self.in_flight,
            self.client.batch_execute(sql),
            rollback,
        )
    }

    fn begin_read(&mut self) -> Result<(), StoreError> {
        self.horizon = None;
        let (shared, tag) = (self.horizons.clone(), self.tag);
        // Outside any transaction: the snapshot is taken after the horizon is read.
        let horizon = shared.read(|| {
            self.query_one(HORIZON_SQL, &[Val::Int(tag)])?
                .ok_or_else(|| StoreError::Corrupt("no event horizon".into()))?
                .u64(0usize)
        })?;
        // Sent with the read's first statement: a REPEATABLE READ transaction takes its snapshot
        // at its first statement, not at BEGIN, so this costs no round trip of its own.
        let client = self.client.clone();
        self.start(Box::pin(
            async move { client.batch_execute(BEGIN_READ).await },
        ));
        self.horizon = Some(horizon);
        Ok(())
    }

    fn event_horizon(&self) -> Option<u64> {
        self.horizon
    }

    fn marker_tag(&self) -> i64 {
        self.tag
    }

    fn announce(&mut self, channel: &str, id: u64) -> Result<(), StoreError> {
        if self.announcer.as_ref().is_some_and(|a| a.announce(id)) {
            return Ok(());
        }
        // No notifying thread (it could not start, or ended): on this connection, in a
        // transaction of its own that waits for no flush.
        let sql = format!(
            "BEGIN; SET LOCAL synchronous_commit TO off; SELECT pg_notify('{channel}', '{id}'); COMMIT"
        );
        self.batch(&sql).inspect_err(|_| {
            let _ = self.batch("ROLLBACK");
        })
    }

    fn control(&mut self, sql: &str) -> Result<(), StoreError> {
        if deferrable(sql) {
            let client = self.client.clone();
            let sql = sql.to_owned();
            self.start(Box::pin(async move { client.batch_execute(&sql).await }));
            return Ok(());
        }
        // COMMIT waits, and reports an earlier failure: PostgreSQL answers COMMIT of an aborted
        // transaction with a silent rollback, which must never pass for a commit.
        self.batch(sql)
    }
}

fn check_schema(schema: &str) -> Result<(), StoreError> {
    if schema.is_empty()
        || schema.len() > 60
        || !schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(StoreError::Rejected {
            code: "config".into(),
            message: format!("schema name {schema:?} must be lowercase letters, digits and _"),
        });
    }
    Ok(())
}

/// Connects and sets the session up: notices off (PostgreSQL sends one for every `IF NOT EXISTS`
/// that finds its object, and the client library logs each at INFO), the schema first on the
/// search path, and a transaction left idle ended after a while: an instance that stopped
/// mid-transaction without its connection closing would otherwise hold the event horizon, and
/// every reader's stream, back for good. Creates nothing: that is [`prepare_schema`]'s, under its lock.
async fn connect(url: &str, schema: Option<&str>) -> Result<Client, StoreError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(db)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection ended");
        }
    });
    let mut setup =
        "SET client_min_messages TO warning; SET idle_in_transaction_session_timeout TO '15s'"
            .to_owned();
    if let Some(schema) = schema {
        check_schema(schema)?;
        setup.push_str(&format!("; SET search_path TO {schema}"));
    }
    client.batch_execute(&setup).await.map_err(db)?;
    Ok(client)
}

/// Creates the schema if it is missing and runs `migrate`, holding a session-level advisory lock
/// keyed on the schema over all of it: the first instance creates and migrates while the others
/// wait, then find everything in place. Without the lock, `CREATE SCHEMA IF NOT EXISTS` and
/// `CREATE TABLE IF NOT EXISTS` started at the same moment by two instances both pass the check and
/// one fails on the catalog's unique index.
fn prepare_schema(
    conn: &mut PgConn,
    schema: Option<&str>,
    migrate: fn(&mut dyn Conn) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let key = lock_key(&conn.scope, &[b"migrate"]);
    conn.batch(&format!("SELECT pg_advisory_lock({key})"))?;
    let prepared = (|| {
        if let Some(schema) = schema {
            let exists = conn
                .query_one(
                    "SELECT 1 FROM pg_namespace WHERE nspname::text = ?",
                    &[Val::text(schema)],
                )?
                .is_some();
            if !exists {
                conn.batch(&format!("CREATE SCHEMA {schema}"))?;
            }
        }
        migrate(conn)
    })();
    let unlocked = conn.batch(&format!("SELECT pg_advisory_unlock({key})"));
    prepared.and(unlocked)
}

/// Whether a failed start lost a race that a second try wins: contention, or an object that
/// another process created at the same moment (a start of an older build, without the lock).
fn lost_a_race(e: &StoreError) -> bool {
    matches!(e, StoreError::Contention(_))
        || matches!(e.code(), Some("23505" | "42P06" | "42P07" | "42710"))
}

/// The writers' planner settings: index lookups, never a scan of a whole table.
///
/// Every statement a writer prepares finds its rows by key (a batch's positions, answers and
/// totals through `unnest` of the keys, `UPDATE ... FROM unnest(...)`), and is planned once per
/// connection: PostgreSQL keeps a generic plan after a few executions and plans again only when
/// the table's statistics change. Planned while the tables are small, as on a new schema, the
/// cheapest plan was a hash join over a sequential scan of `positions` and `idempotency`, kept
/// while they grew: every batch then read both tables whole (measured: 2,767 sequential scans
/// reading 32 million rows in 10 s of reports, most of the database's CPU). With scans and
/// hash or merge joins priced out, a key is one index probe whatever the table's size; the
/// statements that have no index to use (the sequence, tiny tables) still scan, at a cost the
/// planner now counts as huge: JIT compilation, which such a cost would trigger for every
/// execution (90 ms each, measured), is off too, as it should be for statements this short. Set
/// after the migrations, whose statements are not keyed lookups.
const WRITER_PLANS: &str = "SET enable_seqscan TO off; SET enable_hashjoin TO off; \
     SET enable_mergejoin TO off; SET jit TO off";

pub struct Opened {
    pub writers: Vec<Box<dyn Conn>>,
    pub readers: Vec<Box<dyn Conn>>,
    pub channel: String,
}

/// Connects a writer, creates and migrates the schema (`migrate`), then connects `writers - 1`
/// more writers and `readers` read connections. A start that lost a race is tried again a few
/// times.
pub async fn open(
    url: &str,
    schema: Option<&str>,
    writers: usize,
    readers: usize,
    migrate: fn(&mut dyn Conn) -> Result<(), StoreError>,
) -> Result<Opened, StoreError> {
    if let Some(schema) = schema {
        check_schema(schema)?;
    }
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        let (owned_url, owned_schema) = (url.to_owned(), schema.map(str::to_owned));
        let channel = format!("hedge_center_events_{}", schema.unwrap_or("public"));
        let announced = channel.clone();
        let connected = tokio::task::spawn_blocking(move || {
            let (url, schema) = (owned_url.as_str(), owned_schema.as_deref());
            let mut first = PgConn::connect_blocking(url, schema)?;
            prepare_schema(&mut first, schema, migrate)?;
            first.batch(WRITER_PLANS)?;
            let announcer = Arc::new(Announcer::start(url, schema, &announced)?);
            let mut all: Vec<Box<dyn Conn>> = Vec::with_capacity(writers.max(1));
            let mut writer = Some(first);
            for _ in 0..writers.max(1) {
                let mut w = match writer.take() {
                    Some(w) => w,
                    None => {
                        let mut w = PgConn::connect_blocking(url, schema)?;
                        w.batch(WRITER_PLANS)?;
                        w
                    }
                };
                w.announcer = Some(announcer.clone());
                all.push(Box::new(w));
            }
            let horizons = Arc::new(SharedHorizon::default());
            let mut pool: Vec<Box<dyn Conn>> = Vec::with_capacity(readers);
            for _ in 0..readers {
                let mut reader = PgConn::connect_blocking(url, schema)?;
                reader.horizons = horizons.clone();
                pool.push(Box::new(reader));
            }
            Ok::<_, StoreError>((all, pool))
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        match connected {
            Ok((writers, pool)) => {
                return Ok(Opened {
                    writers,
                    readers: pool,
                    channel,
                });
            }
            Err(e) if attempt < ATTEMPTS && lost_a_race(&e) => {
                tracing::warn!(error = %e, attempt, "store start lost a race, trying again");
                tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Listens for the event notifications of every instance and raises `head` accordingly. Every
/// notification wakes the head's watchers, even one whose id is not above the head: it may be the
/// commit of a lower id that the horizon was waiting for, after which the log reads further.
pub async fn listen(
    url: &str,
    schema: Option<&str>,
    channel: &str,
    head: watch::Sender<u64>,
) -> Result<tokio::task::JoinHandle<()>, StoreError> {
    if let Some(schema) = schema {
        check_schema(schema)?;
    }
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.map_err(db)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "postgres listener connection ended");
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .map_err(db)?;
    Ok(tokio::spawn(async move {
        // The client must live as long as we listen.
        let _client = client;
        while let Some(payload) = rx.recv().await {
            if let Ok(id) = payload.trim().parse::<u64>() {
                head.send_modify(|h| *h = (*h).max(id));
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::super::{Conn, Val};

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(super::numbered("a = ? AND b = ?"), "a = $1 AND b = $2");
    }

    fn count(c: &mut dyn Conn) -> Vec<i64> {
        c.query("SELECT k FROM t ORDER BY k", &[])
            .unwrap()
            .iter()
            .map(|r| r.int(0usize).unwrap())
            .collect()
    }

    /// Pipelined statements: a failure among them reaches the caller, a COMMIT after it fails
    /// rather than passing PostgreSQL's silent rollback off as a commit, a savepoint rollback
    /// recovers, and a waiting query sees every write sent before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_failures_are_reported() {
        let url = std::env::var("HEDGE_TEST_PG")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned());
        let schema = format!("hedge_pipe_{:08x}", rand::random::<u32>());
        let opened = super::open(&url, Some(&schema), 1, 0, |_| Ok(()))
            .await
            .unwrap();
        let mut c = opened.writers.into_iter().next().unwrap();
        tokio::task::spawn_blocking(move || {
            let insert = "INSERT INTO t (k) VALUES (?)";
            c.batch("CREATE TABLE t (k BIGINT PRIMARY KEY)").unwrap();

            c.control("BEGIN").unwrap();
            c.send(insert, &[Val::Int(1)]).unwrap();
            c.send(insert, &[Val::Int(1)]).unwrap();
            c.send(insert, &[Val::Int(2)]).unwrap();
            let err = c.control("COMMIT").unwrap_err();
            assert!(err.to_string().contains("duplicate key"), "{err}");
            assert!(count(c.as_mut()).is_empty());

            c.control("BEGIN").unwrap();
            c.send(insert, &[Val::Int(3)]).unwrap();
            c.control("SAVEPOINT job").unwrap();
            c.send(insert, &[Val::Int(3)]).unwrap();
            let err = c.flush().unwrap_err();
            assert!(err.to_string().contains("duplicate key"), "{err}");
            c.control("ROLLBACK TO SAVEPOINT job").unwrap();
            c.control("RELEASE SAVEPOINT job").unwrap();
            c.send(insert, &[Val::Int(4)]).unwrap();
            assert_eq!(count(c.as_mut()), vec![3, 4]);
            c.send(insert, &[Val::Int(4)]).unwrap();
            let err = c.query("SELECT 1", &[]).unwrap_err();
            assert!(err.to_string().contains("duplicate key"), "{err}");
            c.batch("ROLLBACK").unwrap();

            c.control("BEGIN").unwrap();
            c.send(insert, &[Val::Int(5)]).unwrap();
            c.control("COMMIT").unwrap();
            assert_eq!(count(c.as_mut()), vec![5]);
            c.batch(&format!("DROP SCHEMA {schema} CASCADE")).unwrap();
        })
        .await
        .unwrap();
    }
}
