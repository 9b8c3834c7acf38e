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
            Val::IntArray(_) | Val::TextArray(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "SQLite takes no array parameters".into(),
                ))
            }
        })
    }
}

/// Classifies a SQLite error by what trying again can do: a busy or locked database is
/// contention, a full disk, an I/O error or a file that cannot be opened or written is the
/// database being unavailable; a constraint, a type or size error, or a bad statement is refused
/// for good.
fn db(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    let message = e.to_string();
    let rusqlite::Error::SqliteFailure(failure, _) = &e else {
        return StoreError::Rejected {
            code: "client".into(),
            message,
        };
    };
    match failure.code {
        C::DatabaseBusy | C::DatabaseLocked => StoreError::Contention(message),
        C::DiskFull
        | C::SystemIoFailure
        | C::CannotOpen
        | C::ReadOnly
        | C::OutOfMemory
        | C::FileLockingProtocolFailed
        | C::PermissionDenied
        | C::OperationInterrupted
        | C::NoLargeFileSupport => StoreError::Unavailable(message),
        C::DatabaseCorrupt | C::NotADatabase => StoreError::Corrupt(message),
        _ => StoreError::Rejected {
            code: format!("sqlite {}", failure.extended_code),
            message,
        },
    }
}

pub struct SqliteConn {
    conn: Connection,
    /// Per statement text: the same insert without `RETURNING id`, when that can be answered with
    /// the rowid instead (see [`SqliteConn::rowid_insert`]), or `None`.
    returning_id: std::collections::HashMap<String, Option<String>>,
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
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
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
        if let Some(plain) = self.rowid_insert(sql)? {
            let inserted = self.execute(&plain, params)?;
            return Ok(if inserted == 1 {
                vec![Row(vec![Val::Int(self.conn.last_insert_rowid())])]
            } else {
                Vec::new()
            });
        }
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

impl SqliteConn {
    fn new(conn: Connection, checkpointer: Option<std::sync::mpsc::Sender<()>>) -> SqliteConn {
        SqliteConn {
            conn,
            returning_id: Default::default(),
            _checkpointer: checkpointer,
        }
    }

    /// `INSERT INTO t (...) VALUES (...) RETURNING id` without its `RETURNING id`, when one row is
    /// inserted and `id` is `t`'s rowid: the id is then `last_insert_rowid()`. SQLite runs a
    /// RETURNING clause through a temporary table that it opens and closes on every execution,
    /// which made it the dearest part of storing an event. Anything else (several rows, an
    /// upsert, a SELECT, a table whose `id` is not its rowid) keeps the clause.
    fn rowid_insert(&mut self, sql: &str) -> Result<Option<String>, StoreError> {
        if let Some(known) = self.returning_id.get(sql) {
            return Ok(known.clone());
        }
        let head = sql.strip_suffix(" RETURNING id").filter(|head| {
            head.starts_with("INSERT INTO ")
                && head.ends_with(')')
                && head.matches("VALUES").count() == 1
                && !head.contains("),")
                && !head.contains("ON CONFLICT")
                && !head.contains("SELECT")
        });
        let plain = match head {
            Some(head) => {
                let table = head["INSERT INTO ".len()..]
                    .split([' ', '('])
                    .next()
                    .unwrap_or_default();
                id_is_rowid(&self.conn, table)?.then(|| head.to_owned())
            }
            None => None,
        };
        self.returning_id.insert(sql.to_owned(), plain.clone());
        Ok(plain)
    }
}

/// Whether `table`'s `id` column is its rowid: the table's only primary-key column, declared
/// `INTEGER`, and the table not `WITHOUT ROWID`.
fn id_is_rowid(conn: &Connection, table: &str) -> Result<bool, StoreError> {
    let (id_pk, pks): (i64, i64) = conn
        .query_row(
            "SELECT COALESCE(SUM(CASE WHEN name = 'id' AND pk = 1 AND upper(type) = 'INTEGER' THEN 1 ELSE 0 END), 0), COUNT(*) FROM pragma_table_info(?1) WHERE pk > 0",
            [table],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db)?;
    let without_rowid: bool = conn
        .query_row(
            "SELECT COALESCE(MAX(upper(sql) LIKE '%WITHOUT ROWID%'), 0) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .map_err(db)?;
    Ok(id_pk == 1 && pks == 1 && !without_rowid)
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
        pool.push(Box::new(SqliteConn::new(r, None)));
    }
    Ok((Box::new(SqliteConn::new(writer, Some(checkpointer))), pool))
}

#[cfg(test)]
mod tests {
    use super::super::{Synchronous, Val};

    /// `RETURNING id` is answered with the rowid only where that is the same answer.
    #[test]
    fn returning_id_uses_the_rowid_only_where_it_is_the_id() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _) = super::open(&dir.path().join("t.db"), 0, Synchronous::Normal).unwrap();
        c.batch(
            "CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT NOT NULL);
             CREATE TABLE b (id TEXT PRIMARY KEY, v TEXT NOT NULL);",
        )
        .unwrap();
        let into_a = "INSERT INTO a (v) VALUES (?) RETURNING id";
        for expected in 1..=3 {
            let rows = c.query(into_a, &[Val::text("x")]).unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].int(0usize).unwrap(), expected);
        }
        assert!(c.query(into_a, &[Val::NullText]).is_err());
        assert_eq!(
            c.query(into_a, &[Val::text("y")]).unwrap()[0]
                .int(0usize)
                .unwrap(),
            4
        );

        let into_b = "INSERT INTO b (id, v) VALUES (?, ?) RETURNING id";
        let rows = c.query(into_b, &[Val::text("k"), Val::text("x")]).unwrap();
        assert_eq!(rows[0].text(0usize).unwrap(), "k");
        let upsert = "INSERT INTO a (id, v) VALUES (?, ?) ON CONFLICT (id) DO NOTHING RETURNING id";
        assert!(c
            .query(upsert, &[Val::Int(1), Val::text("z")])
            .unwrap()
            .is_empty());
        let two = "INSERT INTO a (v) VALUES (?), (?) RETURNING id";
        let rows = c.query(two, &[Val::text("p"), Val::text("q")]).unwrap();
        let ids: Vec<i64> = rows.iter().map(|r| r.int(0usize).unwrap()).collect();
        assert_eq!(ids, vec![5, 6]);
    }
}
