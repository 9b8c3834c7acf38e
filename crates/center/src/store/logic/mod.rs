//! The store's rules and statements, written once for both databases.

use super::{Conn, Dialect, Lock, Row, StoreError, Val, WriteError};
use crate::plan::{ClientConfig, ClientExposure, HedgeCover, PlanInputs};
use crate::positions::{self, check_symbol, lots, Realized, Refusal};
use hedge_center_api::model::*;
use hedge_domain::fixed::{self, Exposure, Lots};
use hedge_domain::{
    DealTicket, Login, Magic, Money, OrderTicket, PositionId, Price, Retcode, Side, SymbolMap,
    Volume,
};
use rust_decimal::Decimal;
use std::str::FromStr;

/// Declares the columns a statement selects for one row kind, once, in `SELECT` order: an enum whose
/// variants are the column names, so a decoder reads `r.text(HedgeCol::symbol)` and each index
/// follows from the list; `LIST`, the same names as SQL text; `COUNT`, where the next table's
/// columns start in a joined row. `tests::column_lists_name_real_columns` runs every list against
/// the migrated schema of both databases' shared DDL.
macro_rules! columns {
    ($(#[$meta:meta])* $vis:vis $name:ident { $first:ident $(, $col:ident)* $(,)? }) => {
        $(#[$meta])*
        #[allow(non_camel_case_types, dead_code)]
        #[derive(Clone, Copy, Debug)]
        $vis enum $name {
            $first $(, $col)*
        }

        #[allow(dead_code)]
        impl $name {
            $vis const LIST: &'static str = concat!(stringify!($first) $(, ", ", stringify!($col))*);
            $vis const COUNT: usize = [stringify!($first) $(, stringify!($col))*].len();

            /// This column's index in a row where the list starts at column `base`.
            $vis const fn after(self, base: usize) -> usize {
                base + self as usize
            }

            /// The list with each column qualified by a table alias (`p.login, p.position_id, …`).
            $vis fn qualified(alias: &str) -> String {
                Self::LIST
                    .split(", ")
                    .map(|col| format!("{alias}.{col}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }

        impl From<$name> for usize {
            fn from(col: $name) -> usize {
                col as usize
            }
        }
    };
}

columns! {
    /// The one column of a statement that selects a single value (an id, a count, a definition).
    pub(super) Single { value }
}

mod accounts;
mod actions;
mod allocations;
mod answers;
mod client_positions;
mod commands;
mod events;
mod hedges;
mod legacy;
mod migrations;
mod overrides;
mod plan_inputs;
mod reports;
mod rows;
mod settings;
mod status;

pub use accounts::*;
pub use actions::*;
pub use allocations::*;
pub use answers::*;
pub use client_positions::*;
pub use commands::*;
pub use events::*;
pub use hedges::*;
pub use legacy::*;
pub use migrations::*;
use overrides::*;
pub use plan_inputs::*;
pub use reports::*;
use rows::*;
use settings::*;
pub use status::*;

/// A value that could not be encoded as JSON for the store.
pub(super) fn db<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Internal(e.to_string())
}

pub(super) fn to_i64(v: u64, field: &str) -> Result<i64, Refusal> {
    i64::try_from(v).map_err(|_| Refusal::invalid(field, format!("{field} is out of range")))
}

/// Refuses (422) a change that would carry a running total out of i64 units (about 9.2e10 lots).
/// Left to the database, SQLite silently turns the column into a float (digits lost for good)
/// and PostgreSQL fails the write with an error that looks transient; both must refuse alike.
/// `select` reads the current total by the key in `key`.
pub(super) fn check_total(
    c: &mut dyn Conn,
    select: &str,
    key: &[Val],
    delta: Exposure,
    field: &str,
    what: &str,
) -> Result<(), WriteError> {
    let current = match c.query_one(select, key)? {
        Some(r) => r.int(0usize)?,
        None => 0,
    };
    Ok(total_within(current, delta, field, what)?)
}

/// The check of [`check_total`] on a total already read.
pub(super) fn total_within(
    current: i64,
    delta: Exposure,
    field: &str,
    what: &str,
) -> Result<(), Refusal> {
    // i64::MIN too: its magnitude, which the books print, has no i64.
    if Exposure::from_units(current)
        .checked_add(delta)
        .and_then(Exposure::size)
        .is_none()
    {
        return Err(Refusal::invalid(
            field,
            format!(
                "{what} would pass the largest total the center keeps ({} lots)",
                fixed::from_units(i64::MAX)
            ),
        ));
    }
    Ok(())
}

/// Starts the write transaction of a batch of anything but position reports. PostgreSQL: holds
/// [`Lock::Writes`] for the whole transaction, so these writes (rare beside reports: registrations,
/// heartbeats, hedges, actions) run one after the other across instances. Reports lock less
/// ([`begin_reports`], [`report_batch`]).
pub fn begin_write(c: &mut dyn Conn) -> Result<(), StoreError> {
    match c.dialect() {
        Dialect::Sqlite => c.control("BEGIN IMMEDIATE"),
        Dialect::Postgres => {
            c.control("BEGIN")?;
            c.lock(&[Lock::Writes])
        }
    }
}

/// Starts the write transaction of a batch of position reports: on PostgreSQL without a lock, which
/// [`report_batch`] takes per position and per exposure total.
pub fn begin_reports(c: &mut dyn Conn) -> Result<(), StoreError> {
    match c.dialect() {
        Dialect::Sqlite => c.control("BEGIN IMMEDIATE"),
        Dialect::Postgres => c.control("BEGIN"),
    }
}

/// Runs `op` in a read transaction (one consistent snapshot; on PostgreSQL, one that holds every
/// event up to the event horizon read just before it, see [`Conn::begin_read`]).
pub fn in_read_tx<T>(
    c: &mut dyn Conn,
    op: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    c.begin_read()?;
    let result = op(c);
    let _ = c.batch("COMMIT");
    result
}

/// A size column (10^-8 lot) as a volume; a negative one is a corrupt row, never a volume.
pub(super) fn size_column(units: i64) -> Result<Volume, StoreError> {
    Lots::from_units(units)
        .map(Lots::volume)
        .ok_or_else(|| StoreError::Corrupt(format!("negative size {units}")))
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(db)
}

pub(super) fn price_text(p: Option<Price>) -> Val {
    Val::opt_text(p.map(|p| p.0.normalize().to_string()))
}

pub(super) fn parse_price(t: Option<&str>) -> Result<Option<Price>, StoreError> {
    t.map(|t| {
        Decimal::from_str(t)
            .map(Price)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    })
    .transpose()
}

pub(super) fn parse_side(t: &str) -> Result<Side, StoreError> {
    match t {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        other => Err(StoreError::Corrupt(format!("bad side {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{sqlite, Synchronous};

    fn report_of(id: u64) -> PositionReport {
        crate::store::sample_open(id, format!("k{id}"))
    }

    fn in_tx<T>(c: &mut dyn Conn, op: impl FnOnce(&mut dyn Conn) -> Result<T, WriteError>) -> T {
        begin_write(c).unwrap();
        let out = op(c).unwrap();
        c.batch("COMMIT").unwrap();
        out
    }

    /// A store written before migration 5 keeps every row, id and answer through it, its ids go
    /// on from the largest one, and its tables end up without `AUTOINCREMENT` and, where keyed,
    /// `WITHOUT ROWID`, with their indexes.
    #[test]
    fn compact_layout_keeps_the_data_of_an_older_store() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _) = sqlite::open(&dir.path().join("old.db"), 0, Synchronous::Normal).unwrap();
        let c = c.as_mut();
        // The reports below are written by today's code, which needs the columns of migration 7:
        // taken early, they also show the rebuild keeps columns added after the first version.
        let before: Vec<_> = MIGRATIONS
            .iter()
            .copied()
            .filter(|(v, _)| *v < 5 || *v == 7)
            .collect();
        migrate_through(c, &before).unwrap();
        let first: Vec<(String, bool)> = (1..=3)
            .map(|id| in_tx(c, |c| report(c, "test", &report_of(id), 10)))
            .collect();
        in_tx(c, |c| {
            legacy_report(
                c,
                "test",
                "EURUSD",
                Side::Sell,
                Volume(Decimal::new(5, 2)),
                None,
                10,
            )
        });

        migrate(c).unwrap();

        let schema: Vec<String> = c
            .query("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL", &[])
            .unwrap()
            .iter()
            .map(|r| r.text(Single::value).unwrap().to_owned())
            .collect();
        assert!(
            schema.iter().all(|s| !s.contains("AUTOINCREMENT")),
            "{schema:?}"
        );
        for table in KEYED_TABLES {
            assert!(
                schema
                    .iter()
                    .any(|s| s.contains(&format!("\"{table}\"")) && s.ends_with("WITHOUT ROWID")),
                "{table}: {schema:?}"
            );
        }
        for index in [
            "positions_symbol",
            "hedges_plan_item",
            "commands_login_status",
        ] {
            assert!(
                schema
                    .iter()
                    .any(|s| s.contains(&format!("INDEX {index} "))),
                "{index}: {schema:?}"
            );
        }

        // The stored answers replay unchanged, and new ids go on after the old ones.
        for (id, (answer, _)) in (1..=3).zip(&first) {
            let replay = in_tx(c, |c| report(c, "test", &report_of(id), 20));
            assert_eq!(&replay, &(answer.clone(), true));
        }
        let head = max_event_id(c).unwrap();
        assert_eq!(head, 4);
        let (answer, replayed) = in_tx(c, |c| report(c, "test", &report_of(4), 20));
        assert!(!replayed);
        assert!(answer.contains("\"event_id\":5"), "{answer}");
        let all = positions(c, &PositionFilter::default()).unwrap();
        let ids: Vec<u64> = all.items.iter().map(|p| p.position_id.0).collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
        let units = lots(Volume(Decimal::new(5, 2)), "volume").unwrap().units();
        assert_eq!(legacy_book(c).unwrap(), vec![("EURUSD".to_owned(), -units)]);

        // Running the migrations again changes nothing.
        migrate(c).unwrap();
        assert_eq!(max_event_id(c).unwrap(), 5);
    }

    /// A position stored before migration 7 has unknown realized figures (its earlier closes
    /// came without their deals), and a later close with its deal does not make them known.
    #[test]
    fn positions_stored_before_realized_figures_stay_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _) = sqlite::open(&dir.path().join("old.db"), 0, Synchronous::Normal).unwrap();
        let c = c.as_mut();
        let before: Vec<_> = MIGRATIONS.iter().copied().filter(|(v, _)| *v < 7).collect();
        migrate_through(c, &before).unwrap();
        in_tx(c, |c| {
            c.execute(
                "INSERT INTO positions (login, position_id, symbol, account_symbol, side, volume_units,
                   max_units, price, magic, comment, status, opened_ms, updated_ms, last_seq, last_event_id)
                 VALUES (1, 7, 'EURUSD', 'EURUSD', 'buy', 10000000, 30000000, '1.1', 0, '',
                   'partially_closed', 1, 2, 2, 0)",
                &[],
            )?;
            Ok(())
        });
        migrate(c).unwrap();
        let mut close = PositionReport::new(
            PositionEventKind::Close,
            Login(1),
            PositionId(7),
            "EURUSD",
            Side::Buy,
            Volume::ZERO,
            3,
        );
        close.exit = Some(ExitDeal {
            price: Price(Decimal::new(12, 1)),
            profit: Money(Decimal::ONE),
            commission: Money::ZERO,
            swap: Money::ZERO,
            fee: Money::ZERO,
        });
        in_tx(c, |c| report(c, "test", &close, 10));
        let p = positions(c, &PositionFilter::default())
            .unwrap()
            .items
            .remove(0);
        assert_eq!(p.status, PositionStatus::Closed);
        assert_eq!((p.realized_profit, p.exit_price), (None, None));
    }

    /// Every column list names columns of its table in the migrated schema: a misspelt or dropped
    /// column fails here rather than on the first request that reads it. (The HTTP tests read each
    /// list on PostgreSQL as well.)
    #[test]
    fn column_lists_name_real_columns() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _) = sqlite::open(&dir.path().join("cols.db"), 0, Synchronous::Normal).unwrap();
        let c = c.as_mut();
        migrate(c).unwrap();
        let lists = [
            ("accounts", AccountCol::LIST),
            ("allocations", AllocationCol::LIST),
            ("account_overrides", OverrideCol::LIST),
            ("idempotency", AnswerCol::LIST),
            ("action_keys", AnswerCol::LIST),
            ("position_marks", MarkCol::LIST),
            ("positions", PositionCol::LIST),
            ("position_volumes", VolumeCol::LIST),
            ("exposures", ExposureCol::LIST),
            ("hedge_exposures", HedgeExposureCol::LIST),
            ("hedges", HedgeCol::LIST),
            ("events", EventCol::LIST),
            ("pauses", PauseCol::LIST),
            ("commands", CommandCol::LIST),
            ("legacy_book", LegacyCol::LIST),
        ];
        for (table, list) in lists {
            c.query(&format!("SELECT {list} FROM {table} LIMIT 0"), &[])
                .unwrap_or_else(|e| panic!("{table} ({list}): {e}"));
        }
        assert_eq!(PositionCol::COUNT, 26);
        assert_eq!(MarkCol::commission.after(PositionCol::COUNT), 30);
    }
}
