//! Schema migrations, applied in order at start, and the SQLite layout change of migration 5.

use super::*;
use hedge_domain::{Clock, SystemClock};

/// One schema migration: SQL text, in which `{ID}` is the dialect's auto-increment key, or a
/// function for a change that SQL text alone cannot make.
#[derive(Clone, Copy)]
pub(super) enum Step {
    Sql(&'static str),
    Code(fn(&mut dyn Conn) -> Result<(), StoreError>),
}

/// Schema versions, applied in order at start.
pub(super) const MIGRATIONS: &[(i64, Step)] = &[(
    1,
    Step::Sql("CREATE TABLE accounts (
        login BIGINT PRIMARY KEY,
        role TEXT NOT NULL,
        hedge_ratio TEXT NOT NULL,
        hedge_login BIGINT,
        registration TEXT NOT NULL,
        status TEXT,
        registered_ms BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL
    );
    CREATE TABLE positions (
        row_id {ID},
        login BIGINT NOT NULL,
        position_id BIGINT NOT NULL,
        symbol TEXT NOT NULL,
        account_symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        volume_units BIGINT NOT NULL,
        max_units BIGINT NOT NULL,
        price TEXT,
        sl TEXT,
        tp TEXT,
        magic BIGINT NOT NULL,
        comment TEXT NOT NULL,
        status TEXT NOT NULL,
        opened_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        last_seq BIGINT NOT NULL,
        last_event_id BIGINT NOT NULL,
        UNIQUE (login, position_id)
    );
    CREATE INDEX positions_symbol ON positions (symbol, status);
    CREATE TABLE position_volumes (
        login BIGINT NOT NULL,
        position_id BIGINT NOT NULL,
        event_id BIGINT NOT NULL,
        kind TEXT NOT NULL,
        side TEXT NOT NULL,
        volume_units BIGINT NOT NULL,
        time_ms BIGINT NOT NULL,
        PRIMARY KEY (login, position_id, event_id)
    );
    CREATE TABLE exposures (
        login BIGINT NOT NULL,
        symbol TEXT NOT NULL,
        net_units BIGINT NOT NULL,
        last_event_id BIGINT NOT NULL,
        PRIMARY KEY (login, symbol)
    );
    CREATE TABLE hedges (
        id {ID},
        plan_item_id BIGINT NOT NULL,
        hedge_login BIGINT NOT NULL,
        symbol TEXT NOT NULL,
        account_symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        volume_units BIGINT NOT NULL,
        open_units BIGINT NOT NULL,
        order_ticket BIGINT NOT NULL,
        deal_ticket BIGINT NOT NULL,
        position_id BIGINT NOT NULL,
        price TEXT,
        latency_us BIGINT,
        slippage TEXT,
        status TEXT NOT NULL,
        retcode BIGINT,
        message TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        event_id BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX hedges_plan_item ON hedges (hedge_login, plan_item_id) WHERE status <> 'failed';
    CREATE TABLE hedge_exposures (
        hedge_login BIGINT NOT NULL,
        symbol TEXT NOT NULL,
        net_units BIGINT NOT NULL,
        last_event_id BIGINT NOT NULL,
        PRIMARY KEY (hedge_login, symbol)
    );
    CREATE TABLE events (
        id {ID},
        time_ms BIGINT NOT NULL,
        kind TEXT NOT NULL,
        login BIGINT,
        symbol TEXT,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE TABLE idempotency (
        key TEXT PRIMARY KEY,
        payload TEXT NOT NULL,
        response TEXT NOT NULL,
        event_id BIGINT NOT NULL
    );
    CREATE TABLE pauses (
        scope TEXT PRIMARY KEY,
        login BIGINT,
        symbol TEXT,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        since_ms BIGINT NOT NULL,
        event_id BIGINT NOT NULL
    );
    CREATE TABLE legacy_book (
        symbol TEXT PRIMARY KEY,
        first_seen BIGINT NOT NULL,
        net_units BIGINT NOT NULL
    );"),
),
(
    2,
    Step::Sql("CREATE TABLE position_marks (
        login BIGINT NOT NULL,
        position_id BIGINT NOT NULL,
        price_current TEXT NOT NULL,
        swap TEXT NOT NULL,
        profit TEXT NOT NULL,
        commission TEXT NOT NULL,
        updated_ms BIGINT NOT NULL,
        PRIMARY KEY (login, position_id)
    );
    CREATE TABLE account_overrides (
        login BIGINT NOT NULL,
        field TEXT NOT NULL,
        value TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        since_ms BIGINT NOT NULL,
        event_id BIGINT NOT NULL,
        PRIMARY KEY (login, field)
    );
    CREATE TABLE commands (
        id {ID},
        hedge_login BIGINT NOT NULL,
        kind TEXT NOT NULL,
        hedge_id BIGINT NOT NULL,
        symbol TEXT NOT NULL,
        account_symbol TEXT NOT NULL,
        plan_item_id BIGINT,
        volume_units BIGINT NOT NULL,
        status TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        result_retcode BIGINT,
        result_message TEXT,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    CREATE INDEX commands_login_status ON commands (hedge_login, status, id);"),
    ),
    (3, Step::Sql("ALTER TABLE positions ADD COLUMN exit_comment TEXT")),
    (
        4,
        Step::Sql("CREATE TABLE action_keys (
        key TEXT PRIMARY KEY,
        actor TEXT NOT NULL,
        payload TEXT NOT NULL,
        response TEXT NOT NULL,
        event_id BIGINT NOT NULL,
        created_ms BIGINT NOT NULL
    );"),
    ),
    (5, Step::Code(compact_sqlite_layout)),
    (
        6,
        // Finds the oldest status heartbeats for pruning without reading the decisions around
        // them; only heartbeats pay for its upkeep.
        Step::Sql("CREATE INDEX events_status ON events (id) WHERE kind = 'account_status'"),
    ),
    (
        7,
        // What a position's exit deals realized (`positions::Realized`). Rows stored before it
        // get NULL, unknown: their earlier closes were never reported with their deals.
        Step::Sql(
            "ALTER TABLE positions ADD COLUMN exit_units BIGINT;
        ALTER TABLE positions ADD COLUMN exit_notional TEXT;
        ALTER TABLE positions ADD COLUMN exit_price TEXT;
        ALTER TABLE positions ADD COLUMN realized_profit TEXT;
        ALTER TABLE positions ADD COLUMN realized_commission TEXT;
        ALTER TABLE positions ADD COLUMN realized_swap TEXT;
        ALTER TABLE positions ADD COLUMN realized_fee TEXT;",
        ),
    ),
    (
        8,
        // Which hedge accounts cover a client's exposure; `scope` is `client/symbol` with `*`
        // for every client or symbol, as in `pauses`. `weights` is the JSON list of the
        // allocation's hedge accounts and their exact decimal shares.
        Step::Sql("CREATE TABLE allocations (
        scope TEXT PRIMARY KEY,
        client_login BIGINT,
        symbol TEXT,
        weights TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        since_ms BIGINT NOT NULL,
        event_id BIGINT NOT NULL
    );"),
    ),
    (9, Step::Code(shard_pg_exposures)),
];

/// Tables whose `{ID}` key was created with `AUTOINCREMENT`. Their newest row is never deleted
/// (only old status heartbeats are pruned from `events`, see [`prune_status_events`]), so SQLite's
/// plain rowid (largest id + 1) never hands out an id twice either, without the `sqlite_sequence`
/// row that `AUTOINCREMENT` reads and rewrites on every insert.
pub(super) const AUTOINCREMENT_TABLES: &[&str] = &["events", "positions", "hedges", "commands"];

/// Tables keyed by their own primary key and never read by rowid. As `WITHOUT ROWID` tables each is
/// one b-tree instead of a rowid table plus the index of its key, so a write changes one page
/// rather than two.
pub(super) const KEYED_TABLES: &[&str] = &[
    "idempotency",
    "exposures",
    "position_volumes",
    "hedge_exposures",
    "legacy_book",
    "pauses",
    "position_marks",
    "account_overrides",
];

/// Rebuilds the tables that every report writes so a report's commit writes fewer pages to the
/// write-ahead log (each page is a 4 KiB frame the commit's fsync waits for): without
/// `AUTOINCREMENT` ([`AUTOINCREMENT_TABLES`]) and `WITHOUT ROWID` ([`KEYED_TABLES`]). A report's
/// commit went from 11 pages to about 8, a legacy `new_position` from 4 to 2. Each table is rebuilt
/// from its stored definition (whatever columns earlier migrations added), its rows copied with
/// their ids, and its indexes created again. PostgreSQL has neither cost (a sequence is not a
/// table row, and every table is a heap plus its indexes), so there is nothing to change there.
/// PostgreSQL: an exposure total is kept in up to [`EXPOSURE_SHARDS`] rows, one per writing
/// session's shard (its backend pid modulo the count, the column's default), summed when read. A
/// row is locked by the batch that updates it until that batch commits; one row per total made
/// every batch of an account wait for the commit of the one before, whatever else it touched.
/// SQLite has one writer and keeps one row per total.
pub(super) fn shard_pg_exposures(c: &mut dyn Conn) -> Result<(), StoreError> {
    if c.dialect() != Dialect::Postgres {
        return Ok(());
    }
    c.batch(&format!(
        "ALTER TABLE exposures ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE exposures ALTER COLUMN shard SET DEFAULT (pg_backend_pid() % {EXPOSURE_SHARDS});
         ALTER TABLE exposures DROP CONSTRAINT exposures_pkey, ADD PRIMARY KEY (login, symbol, shard);"
    ))
}

/// How many rows an exposure total may be spread over on PostgreSQL ([`shard_pg_exposures`]).
pub(super) const EXPOSURE_SHARDS: u32 = 64;

pub(super) fn compact_sqlite_layout(c: &mut dyn Conn) -> Result<(), StoreError> {
    if c.dialect() != Dialect::Sqlite {
        return Ok(());
    }
    for table in AUTOINCREMENT_TABLES {
        rebuild_sqlite_table(c, table, false)?;
    }
    for table in KEYED_TABLES {
        rebuild_sqlite_table(c, table, true)?;
    }
    Ok(())
}

pub(super) fn rebuild_sqlite_table(
    c: &mut dyn Conn,
    table: &str,
    without_rowid: bool,
) -> Result<(), StoreError> {
    let definition = c
        .query_one(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
            &[Val::text(table)],
        )?
        .ok_or_else(|| StoreError::Corrupt(format!("table {table} is missing")))?
        .text(Single::value)?
        .to_owned();
    let indexes: Vec<String> = c
        .query(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
            &[Val::text(table)],
        )?
        .iter()
        .map(|r| r.text(Single::value).map(str::to_owned))
        .collect::<Result<_, _>>()?;
    let head = format!("CREATE TABLE {table} (");
    let body = definition
        .strip_prefix(&head)
        .filter(|_| definition.trim_end().ends_with(')'))
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "unexpected definition of table {table}: {definition}"
            ))
        })?;
    let mut rebuilt = format!(
        "CREATE TABLE {table}_compact ({}",
        body.trim_end().replace(" AUTOINCREMENT", "")
    );
    if without_rowid {
        rebuilt.push_str(" WITHOUT ROWID");
    }
    c.batch(&format!(
        "{rebuilt};
         INSERT INTO {table}_compact SELECT * FROM {table};
         DROP TABLE {table};
         ALTER TABLE {table}_compact RENAME TO {table};"
    ))?;
    for index in indexes {
        c.batch(&index)?;
    }
    Ok(())
}

pub fn migrate(c: &mut dyn Conn) -> Result<(), StoreError> {
    migrate_through(c, MIGRATIONS)
}

pub(super) fn migrate_through(
    c: &mut dyn Conn,
    migrations: &[(i64, Step)],
) -> Result<(), StoreError> {
    c.batch("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)")?;
    for (version, step) in migrations {
        begin_write(c)?;
        let done = c
            .query_one(
                "SELECT version FROM schema_migrations WHERE version = ?",
                &[Val::Int(*version)],
            )?
            .is_some();
        if done {
            c.batch("COMMIT")?;
            continue;
        }
        let id = match c.dialect() {
            Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        let run = match step {
            Step::Sql(sql) => c.batch(&sql.replace("{ID}", id)),
            Step::Code(change) => change(c),
        };
        let applied = run.and_then(|_| {
            c.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)",
                &[Val::Int(*version), Val::Int(SystemClock.now_ms())],
            )
        });
        match applied {
            Ok(_) => c.batch("COMMIT")?,
            Err(e) => {
                let _ = c.batch("ROLLBACK");
                return Err(e);
            }
        }
        tracing::info!(version, "applied store migration");
    }
    Ok(())
}
