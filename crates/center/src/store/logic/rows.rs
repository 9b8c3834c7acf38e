//! Statements over many rows at once: on PostgreSQL one statement whose parameters are columns
//! (`unnest` of arrays), so a batch costs a statement per table rather than one per row; on SQLite
//! the one-row statement for each row, which costs no round trip there.

use super::*;

/// A column's SQL type in a multi-row statement.
#[derive(Clone, Copy, Debug)]
pub(super) enum Ty {
    Int,
    Text,
}

/// A column of a multi-row statement: its name and type.
pub(super) type Col = (&'static str, Ty);

fn names(cols: &[Col]) -> String {
    cols.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// `unnest(?::bigint[], ?::text[], ...)`, one array per column.
fn unnest(cols: &[Col]) -> String {
    let arrays: Vec<&str> = cols
        .iter()
        .map(|(_, ty)| match ty {
            Ty::Int => "?::bigint[]",
            Ty::Text => "?::text[]",
        })
        .collect();
    format!("unnest({})", arrays.join(", "))
}

/// The rows' values as one array per column.
pub(super) fn columns_of(cols: &[Col], rows: &[Vec<Val>]) -> Result<Vec<Val>, StoreError> {
    let mut out = Vec::with_capacity(cols.len());
    for (i, (name, ty)) in cols.iter().enumerate() {
        let bad =
            |v: Option<&Val>| StoreError::Internal(format!("column {name}: {v:?} is not {ty:?}"));
        out.push(match ty {
            Ty::Int => Val::IntArray(
                rows.iter()
                    .map(|r| match r.get(i) {
                        Some(Val::Int(v)) => Ok(Some(*v)),
                        Some(Val::NullInt | Val::NullText) => Ok(None),
                        other => Err(bad(other)),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Ty::Text => Val::TextArray(
                rows.iter()
                    .map(|r| match r.get(i) {
                        Some(Val::Text(v)) => Ok(Some(v.clone())),
                        Some(Val::NullInt | Val::NullText) => Ok(None),
                        other => Err(bad(other)),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        });
    }
    Ok(out)
}

/// Inserts `rows` (each its values in `cols` order) into `table`, `tail` after the values (an
/// `ON CONFLICT` clause, whose keys must then be distinct among the rows). Pipelined.
pub(super) fn insert_rows(
    c: &mut dyn Conn,
    table: &str,
    cols: &[Col],
    rows: &[Vec<Val>],
    tail: &str,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match c.dialect() {
        Dialect::Postgres => c.send(&insert_sql(table, cols, tail), &columns_of(cols, rows)?),
        Dialect::Sqlite => {
            let list = names(cols);
            let marks = vec!["?"; cols.len()].join(", ");
            let sql = format!("INSERT INTO {table} ({list}) VALUES ({marks}) {tail}");
            rows.iter().try_for_each(|r| c.send(&sql, r))
        }
    }
}

/// PostgreSQL: the statement of [`insert_rows`]; its parameters are [`columns_of`] `cols`.
pub(super) fn insert_sql(table: &str, cols: &[Col], tail: &str) -> String {
    format!(
        "INSERT INTO {table} ({}) SELECT * FROM {} {tail}",
        names(cols),
        unnest(cols)
    )
}

/// PostgreSQL: the statement of [`update_rows`]; its parameters are [`columns_of`] `cols` then
/// `keys`.
pub(super) fn update_sql(table: &str, cols: &[Col], keys: &[Col]) -> String {
    let all: Vec<Col> = cols.iter().chain(keys).copied().collect();
    let set: Vec<String> = cols.iter().map(|(n, _)| format!("{n} = u.{n}")).collect();
    let on: Vec<String> = keys.iter().map(|(n, _)| format!("t.{n} = u.{n}")).collect();
    format!(
        "UPDATE {table} AS t SET {} FROM {} AS u ({}) WHERE {}",
        set.join(", "),
        unnest(&all),
        names(&all),
        on.join(" AND ")
    )
}

/// Sets `cols` of the rows of `table` whose `keys` match; each row's values are `cols` then `keys`.
/// Pipelined.
pub(super) fn update_rows(
    c: &mut dyn Conn,
    table: &str,
    cols: &[Col],
    keys: &[Col],
    rows: &[Vec<Val>],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match c.dialect() {
        Dialect::Postgres => {
            let all: Vec<Col> = cols.iter().chain(keys).copied().collect();
            c.send(&update_sql(table, cols, keys), &columns_of(&all, rows)?)
        }
        Dialect::Sqlite => {
            let set: Vec<String> = cols.iter().map(|(n, _)| format!("{n} = ?")).collect();
            let on: Vec<String> = keys.iter().map(|(n, _)| format!("{n} = ?")).collect();
            let sql = format!(
                "UPDATE {table} SET {} WHERE {}",
                set.join(", "),
                on.join(" AND ")
            );
            rows.iter().try_for_each(|r| c.send(&sql, r))
        }
    }
}

/// Deletes the rows of `table` whose `keys` columns equal one of `rows`. Pipelined.
pub(super) fn delete_rows(
    c: &mut dyn Conn,
    table: &str,
    keys: &[Col],
    rows: &[Vec<Val>],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match c.dialect() {
        Dialect::Postgres => c.send(
            &format!(
                "DELETE FROM {table} WHERE ({}) IN (SELECT * FROM {})",
                names(keys),
                unnest(keys)
            ),
            &columns_of(keys, rows)?,
        ),
        Dialect::Sqlite => {
            let on: Vec<String> = keys.iter().map(|(n, _)| format!("{n} = ?")).collect();
            let sql = format!("DELETE FROM {table} WHERE {}", on.join(" AND "));
            rows.iter().try_for_each(|r| c.send(&sql, r))
        }
    }
}

/// Reads gathered to be sent together ([`Conn::query_many`]: one round trip on PostgreSQL).
#[derive(Default)]
pub(super) struct Reads {
    statements: Vec<(String, Vec<Val>)>,
    /// Which statements each read added (SQLite: one per key).
    spans: Vec<std::ops::Range<usize>>,
}

impl Reads {
    /// The rows of `table` (columns `select`) whose `keys` columns equal one of `wanted` (each the
    /// key's values in `keys` order); returns the read's index into [`Reads::run`]'s answer.
    pub(super) fn keyed(
        &mut self,
        dialect: Dialect,
        select: &str,
        table: &str,
        keys: &[Col],
        wanted: &[Vec<Val>],
    ) -> Result<usize, StoreError> {
        let start = self.statements.len();
        if !wanted.is_empty() {
            match dialect {
                Dialect::Postgres => self.statements.push((
                    format!(
                        "SELECT {select} FROM {table} WHERE ({}) IN (SELECT * FROM {})",
                        names(keys),
                        unnest(keys)
                    ),
                    columns_of(keys, wanted)?,
                )),
                Dialect::Sqlite => {
                    let on: Vec<String> = keys.iter().map(|(n, _)| format!("{n} = ?")).collect();
                    let sql = format!("SELECT {select} FROM {table} WHERE {}", on.join(" AND "));
                    for key in wanted {
                        self.statements.push((sql.clone(), key.clone()));
                    }
                }
            }
        }
        self.spans.push(start..self.statements.len());
        Ok(self.spans.len() - 1)
    }

    /// One statement as it is; returns its index like [`Reads::keyed`].
    pub(super) fn plain(&mut self, sql: &str, params: Vec<Val>) -> usize {
        let start = self.statements.len();
        self.statements.push((sql.to_owned(), params));
        self.spans.push(start..self.statements.len());
        self.spans.len() - 1
    }

    /// Runs every read; the rows of each, in the order they were added.
    pub(super) fn run(self, c: &mut dyn Conn) -> Result<Vec<Vec<Row>>, StoreError> {
        let mut answers = c.query_many(&self.statements)?.into_iter();
        Ok(self
            .spans
            .iter()
            .map(|span| answers.by_ref().take(span.len()).flatten().collect())
            .collect())
    }
}
