//! PostgreSQL: the scale-out store. Several center instances share one database; the writer of
//! each sends `pg_notify` with the newest event id in the same transaction, and every instance
//! listens, so events written anywhere reach every instance's subscribers.
//!
//! The rules are the synchronous [`Conn`] ones. Each connection has a single-threaded runtime of
//! its own that drives its socket, and the thread using the connection (the writer, a blocking
//! reader) runs it while it waits for an answer. Driving the socket from the shared runtime
//! instead put every round trip behind the HTTP tasks queued there, which under load cost far
//! more than the round trip itself.
//!
//! Round trips, not the server, bound the writer here, so statements whose answer nobody needs
//! ([`Conn::send`], savepoints, `BEGIN`) are pipelined: handed to the connection at once and their
//! answers collected with the next statement that waits, or by [`Conn::flush`]. A report then costs
//! four round trips instead of ten.

use super::{Conn, Dialect, Row, StoreError, Val};
use futures::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::watch;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

fn db(e: tokio_postgres::Error) -> StoreError {
    // The error's Display already carries the server message, never the password.
    let detail = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string());
    StoreError::Db(detail)
}

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
    statements: HashMap<String, Statement>,
    /// Statements sent and not yet answered, oldest first. The connection task hands each
    /// statement's answer to its own small channel and stalls while that channel is full, so the
    /// answers are always awaited oldest first (never a newer one while older ones wait).
    in_flight: VecDeque<Reply>,
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
            .map_err(|e| StoreError::Db(e.to_string()))?;
        // `connect` spawns the connection's task onto the runtime it runs on: this one.
        let client = rt.block_on(connect(url, schema))?;
        Ok(PgConn {
            client: Arc::new(client),
            statements: HashMap::new(),
            in_flight: VecDeque::new(),
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
            }
        })
        .collect()
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
                    return Err(StoreError::Db(format!("unsupported column type {t}")));
                };
                vals.push(v);
            }
            out.push(Row(vals));
        }
        Ok(out)
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
        return Err(StoreError::Db(format!(
            "schema name {schema:?} must be lowercase letters, digits and _"
        )));
    }
    Ok(())
}

async fn connect(url: &str, schema: Option<&str>) -> Result<Client, StoreError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(db)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection ended");
        }
    });
    if let Some(schema) = schema {
        check_schema(schema)?;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
            ))
            .await
            .map_err(db)?;
    }
    Ok(client)
}

pub struct Opened {
    pub writer: Box<dyn Conn>,
    pub readers: Vec<Box<dyn Conn>>,
    pub channel: String,
}

/// Connects the writer and `readers` read connections.
pub async fn open(url: &str, schema: Option<&str>, readers: usize) -> Result<Opened, StoreError> {
    let (owned_url, owned_schema) = (url.to_owned(), schema.map(str::to_owned));
    let (writer, pool) = tokio::task::spawn_blocking(move || {
        let (url, schema) = (owned_url.as_str(), owned_schema.as_deref());
        let writer = PgConn::connect_blocking(url, schema)?;
        let mut pool: Vec<Box<dyn Conn>> = Vec::with_capacity(readers);
        for _ in 0..readers {
            pool.push(Box::new(PgConn::connect_blocking(url, schema)?));
        }
        Ok::<_, StoreError>((writer, pool))
    })
    .await
    .map_err(|e| StoreError::Db(e.to_string()))??;
    let channel = format!("hedge_center_events_{}", schema.unwrap_or("public"));
    Ok(Opened {
        writer: Box::new(writer),
        readers: pool,
        channel,
    })
}

/// Listens for the event notifications of every instance and raises `head` accordingly.
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
                head.send_if_modified(|h| {
                    if id > *h {
                        *h = id;
                        true
                    } else {
                        false
                    }
                });
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
        let opened = super::open(&url, Some(&schema), 0).await.unwrap();
        let mut c = opened.writer;
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
