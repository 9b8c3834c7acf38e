//! SQLite: one file in WAL mode, `synchronous=FULL`.
//!
//! FULL rather than NORMAL because an acknowledged report must survive a power cut, not only a
//! crash of the process: in WAL mode NORMAL skips the fsync at commit, so the last transactions can
//! vanish with the machine. Group commit in the writer thread makes FULL affordable: one fsync
//! covers every report of the batch.

use super::{Conn, Dialect, Row, StoreError, Val};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use std::path::Path;

impl ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Val::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Val::NullInt | Val::NullText => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

pub struct SqliteConn {
    conn: Connection,
    /// Held by the writer only: dropping it (when the writer thread ends) stops the checkpointer.
    _checkpointer: Option<std::sync::mpsc::Sender<()>>,
}

/// How often the background checkpointer copies the write-ahead log into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Copies committed WAL frames into the database file from a thread of its own, so the writer
/// never pays for a checkpoint (the copy and its fsync) inside a request's commit: with SQLite's
/// automatic checkpoint the request whose commit crosses the threshold waits for all of it. A
/// passive checkpoint does not block the writer. Durability is unchanged: each commit still syncs
/// the log before it is acknowledged.
fn spawn_checkpointer(path: &Path) -> Result<std::sync::mpsc::Sender<()>, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;")
        .map_err(db)?;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("center-checkpoint".into())
        .spawn(move || {
            // Ends once the writer's sender is dropped (or sends a stop).
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(CHECKPOINT_EVERY)
            {
                let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                if let Err(e) = done {
                    tracing::warn!(error = %e, "background checkpoint failed");
                }
            }
        })
        .map_err(|e| StoreError::Db(e.to_string()))?;
    Ok(tx)
}

impl Conn for SqliteConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(db)?;
        let n = stmt
            .execute(rusqlite::params_from_iter(params.iter()))
            .map_err(db)?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(db)?;
        let n = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(db)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db)? {
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                vals.push(match row.get_ref(i).map_err(db)? {
                    ValueRef::Integer(v) => Val::Int(v),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Null => Val::NullInt,
                    ValueRef::Real(f) => Val::Int(f as i64),
                    ValueRef::Blob(b) => Val::Text(String::from_utf8_lossy(b).into_owned()),
                });
            }
            out.push(Row(vals));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.conn.execute_batch(sql).map_err(db)
    }

    fn control(&mut self, sql: &str) -> Result<(), StoreError> {
        // Kept prepared: parsing these anew for every request of every batch is measurable.
        let mut stmt = self.conn.prepare_cached(sql).map_err(db)?;
        stmt.raw_execute().map_err(db)?;
        Ok(())
    }
}

/// The writer connection and the read pool.
pub type Connections = (Box<dyn Conn>, Vec<Box<dyn Conn>>);

/// Opens the writer connection (creating the file) and `readers` read-only connections.
pub fn open(
    path: &Path,
    readers: usize,
    synchronous: super::Synchronous,
) -> Result<Connections, StoreError> {
    let writer = Connection::open(path).map_err(db)?;
    writer
        .execute_batch(match synchronous {
            super::Synchronous::Full => "PRAGMA synchronous = FULL;",
            super::Synchronous::Normal => "PRAGMA synchronous = NORMAL;",
        })
        .map_err(db)?;
    writer
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -65536;",
        )
        .map_err(db)?;
    // The background checkpointer normally keeps the log short; this bound only matters if it
    // falls behind, and then the writer checkpoints itself as SQLite would by default.
    writer
        .execute_batch("PRAGMA wal_autocheckpoint = 16000;")
        .map_err(db)?;
    writer.set_prepared_statement_cache_capacity(64);
    let checkpointer = spawn_checkpointer(path)?;
    let mut pool: Vec<Box<dyn Conn>> = Vec::with_capacity(readers);
    for _ in 0..readers {
        let r = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db)?;
        r.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = 1;")
            .map_err(db)?;
        r.set_prepared_statement_cache_capacity(64);
        pool.push(Box::new(SqliteConn {
            conn: r,
            _checkpointer: None,
        }));
    }
    Ok((
        Box::new(SqliteConn {
            conn: writer,
            _checkpointer: Some(checkpointer),
        }),
        pool,
    ))
}
