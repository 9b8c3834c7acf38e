//! PostgreSQL: the scale-out store. Several center instances share one database; the writer of
//! each sends `pg_notify` with the newest event id in the same transaction, and every instance
//! listens, so events written anywhere reach every instance's subscribers.
//!
//! The rules are the synchronous [`Conn`] ones: `tokio_postgres` client calls only wait on channels
//! (the connection itself is driven by a task on the runtime), so the writer thread and the blocking
//! readers wait for them with a plain `block_on`.

use super::{Conn, Dialect, Row, StoreError, Val};
use futures::StreamExt;
use std::collections::HashMap;
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

pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl PgConn {
    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = futures::executor::block_on(self.client.prepare(&numbered(sql))).map_err(db)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
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
        futures::executor::block_on(self.client.execute(&stmt, &refs)).map_err(db)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        let stmt = self.statement(sql)?;
        let owned = boxed(params);
        let refs: Vec<&(dyn ToSql + Sync)> = owned
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = futures::executor::block_on(self.client.query(&stmt, &refs)).map_err(db)?;
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
        futures::executor::block_on(self.client.batch_execute(sql)).map_err(db)
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
    let writer = connect(url, schema).await?;
    let mut pool: Vec<Box<dyn Conn>> = Vec::with_capacity(readers);
    for _ in 0..readers {
        pool.push(Box::new(PgConn {
            client: connect(url, schema).await?,
            statements: HashMap::new(),
        }));
    }
    let channel = format!("hedge_center_events_{}", schema.unwrap_or("public"));
    Ok(Opened {
        writer: Box::new(PgConn {
            client: writer,
            statements: HashMap::new(),
        }),
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
    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(super::numbered("a = ? AND b = ?"), "a = $1 AND b = $2");
    }
}
