//! The store's rules and statements, written once for both databases.

use super::{Conn, Dialect, Row, StoreError, Val, WriteError};
use crate::plan::{ClientConfig, ClientExposure, HedgeCover, PlanInputs};
use crate::positions::{self, check_symbol, units_volume, volume_units, Refusal};
use hedge_center_api::model::*;
use hedge_domain::{
    DealTicket, Login, Magic, Money, OrderTicket, PositionId, Price, Retcode, Side, SymbolMap,
    Volume,
};
use rust_decimal::Decimal;
use std::str::FromStr;

/// One schema migration: SQL text, in which `{ID}` is the dialect's auto-increment key, or a
/// function for a change that SQL text alone cannot make.
#[derive(Clone, Copy)]
enum Step {
    Sql(&'static str),
    Code(fn(&mut dyn Conn) -> Result<(), StoreError>),
}

/// Schema versions, applied in order at start.
const MIGRATIONS: &[(i64, Step)] = &[(
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
];

/// Tables whose `{ID}` key was created with `AUTOINCREMENT`. Their newest row is never deleted
/// (only old status heartbeats are pruned from `events`, see [`prune_status_events`]), so SQLite's
/// plain rowid (largest id + 1) never hands out an id twice either, without the `sqlite_sequence`
/// row that `AUTOINCREMENT` reads and rewrites on every insert.
const AUTOINCREMENT_TABLES: &[&str] = &["events", "positions", "hedges", "commands"];

/// Tables keyed by their own primary key and never read by rowid. As `WITHOUT ROWID` tables each is
/// one b-tree instead of a rowid table plus the index of its key, so a write changes one page
/// rather than two.
const KEYED_TABLES: &[&str] = &[
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
fn compact_sqlite_layout(c: &mut dyn Conn) -> Result<(), StoreError> {
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

fn rebuild_sqlite_table(
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
        .text(0)?
        .to_owned();
    let indexes: Vec<String> = c
        .query(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
            &[Val::text(table)],
        )?
        .iter()
        .map(|r| r.text(0).map(str::to_owned))
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

fn db<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

fn to_i64(v: u64, field: &str) -> Result<i64, Refusal> {
    i64::try_from(v).map_err(|_| Refusal::invalid(field, format!("{field} is out of range")))
}

/// Starts the write transaction of a batch. PostgreSQL: a transaction-level advisory lock makes
/// batches of all instances commit one after the other, so event ids become visible in order and
/// an event stream resumed by id never skips one.
pub fn begin_write(c: &mut dyn Conn) -> Result<(), StoreError> {
    match c.dialect() {
        Dialect::Sqlite => c.control("BEGIN IMMEDIATE"),
        Dialect::Postgres => {
            c.control("BEGIN")?;
            c.query("SELECT pg_advisory_xact_lock(72570001)", &[])?;
            Ok(())
        }
    }
}

/// Runs `op` in a read transaction (one consistent snapshot).
pub fn in_read_tx<T>(
    c: &mut dyn Conn,
    op: impl FnOnce(&mut dyn Conn) -> Result<T, WriteError>,
) -> Result<T, WriteError> {
    match c.dialect() {
        Dialect::Sqlite => c.batch("BEGIN")?,
        Dialect::Postgres => c.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?,
    }
    let result = op(c);
    let _ = c.batch("COMMIT");
    result
}

pub fn migrate(c: &mut dyn Conn) -> Result<(), StoreError> {
    migrate_through(c, MIGRATIONS)
}

fn migrate_through(c: &mut dyn Conn, migrations: &[(i64, Step)]) -> Result<(), StoreError> {
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
                &[Val::Int(*version), Val::Int(now_ms())],
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

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Deletes up to `limit` of the oldest status heartbeat events (`account_status`) stored before
/// `before_ms`; returns how many. Heartbeats are telemetry (connection, money, marks), written
/// every few seconds per account: kept forever they would outgrow everything else. Decisions are
/// never deleted, and neither is the newest event, whatever its kind: its id is the floor of the
/// next one (see [`AUTOINCREMENT_TABLES`]), so no id is ever handed out twice and a stream resumed
/// from any id stays in order.
pub fn prune_status_events(
    c: &mut dyn Conn,
    before_ms: i64,
    limit: u32,
) -> Result<u64, StoreError> {
    c.execute(
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE kind = 'account_status' ORDER BY id LIMIT ?)
           AND time_ms < ? AND id < (SELECT MAX(id) FROM events)",
        &[Val::Int(i64::from(limit)), Val::Int(before_ms)],
    )
}

pub fn max_event_id(c: &mut dyn Conn) -> Result<u64, StoreError> {
    let row = c.query_one("SELECT COALESCE(MAX(id), 0) FROM events", &[])?;
    row.map_or(Ok(0), |r| r.u64(0))
}

struct NewEvent<'a> {
    time_ms: i64,
    kind: EventKind,
    login: Option<Login>,
    symbol: Option<&'a str>,
    actor: &'a str,
    reason: &'a str,
    data: String,
}

fn insert_event(c: &mut dyn Conn, e: NewEvent<'_>) -> Result<u64, StoreError> {
    let row = c
        .query_one(
            "INSERT INTO events (time_ms, kind, login, symbol, actor, reason, data) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            &[
                Val::Int(e.time_ms),
                Val::text(e.kind.as_str()),
                Val::opt_int(e.login.map(|l| l.0 as i64)),
                Val::opt_text(e.symbol.map(str::to_owned)),
                Val::text(e.actor),
                Val::text(e.reason),
                Val::Text(e.data),
            ],
        )?
        .ok_or_else(|| StoreError::Db("event insert returned no id".into()))?;
    row.u64(0)
}

/// Rewrites the data of an event whose object needed the event's own id.
fn set_event_data(c: &mut dyn Conn, id: u64, data: String) -> Result<(), StoreError> {
    c.send(
        "UPDATE events SET data = ? WHERE id = ?",
        &[Val::Text(data), Val::Int(id as i64)],
    )?;
    Ok(())
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(db)
}

fn price_text(p: Option<Price>) -> Val {
    Val::opt_text(p.map(|p| p.0.normalize().to_string()))
}

fn parse_price(t: Option<&str>) -> Result<Option<Price>, StoreError> {
    t.map(|t| {
        Decimal::from_str(t)
            .map(Price)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    })
    .transpose()
}

fn parse_side(t: &str) -> Result<Side, StoreError> {
    match t {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        other => Err(StoreError::Corrupt(format!("bad side {other:?}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts

const ACCOUNT_COLS: &str = "registration, status, registered_ms, last_seen_ms";

fn account_from_row(r: &Row) -> Result<Account, StoreError> {
    let registration: AccountRegistration =
        serde_json::from_str(r.text(0)?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let status = r
        .opt_text(1)?
        .map(serde_json::from_str::<AccountStatus>)
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Account {
        registration,
        status,
        registered_ms: r.int(2)?,
        last_seen_ms: r.int(3)?,
        overrides: AccountOverrides::default(),
    })
}

/// Operator overrides per login (all accounts, or one).
fn load_overrides(
    c: &mut dyn Conn,
    login: Option<Login>,
) -> Result<std::collections::BTreeMap<u64, AccountOverrides>, StoreError> {
    let rows = match login {
        Some(l) => c.query(
            "SELECT login, field, value FROM account_overrides WHERE login = ?",
            &[Val::Int(l.0 as i64)],
        )?,
        None => c.query("SELECT login, field, value FROM account_overrides", &[])?,
    };
    let mut out = std::collections::BTreeMap::<u64, AccountOverrides>::new();
    for r in rows {
        let entry = out.entry(r.u64(0)?).or_default();
        let value = r.text(2)?;
        match OverrideField::parse(r.text(1)?) {
            Some(OverrideField::SymbolMap) => {
                entry.symbol_map = Some(
                    serde_json::from_str(value).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                )
            }
            Some(OverrideField::HedgeRatio) => {
                entry.hedge_ratio =
                    Some(Decimal::from_str(value).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            }
            None => return Err(StoreError::Corrupt("bad override field".into())),
        }
    }
    Ok(out)
}

pub fn account(c: &mut dyn Conn, login: Login) -> Result<Option<Account>, WriteError> {
    if login.0 > i64::MAX as u64 {
        return Ok(None);
    }
    let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE login = ?");
    let Some(mut account) = c
        .query_one(&sql, &[Val::Int(login.0 as i64)])?
        .map(|r| account_from_row(&r))
        .transpose()?
    else {
        return Ok(None);
    };
    if let Some(o) = load_overrides(c, Some(login))?.remove(&login.0) {
        account.overrides = o;
    }
    Ok(Some(account))
}

pub fn accounts(c: &mut dyn Conn) -> Result<Vec<Account>, WriteError> {
    let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY login");
    let rows = c.query(&sql, &[])?;
    let mut overrides = load_overrides(c, None)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut account = account_from_row(r)?;
        if let Some(o) = overrides.remove(&account.registration.login.0) {
            account.overrides = o;
        }
        out.push(account);
    }
    Ok(out)
}

fn validate_registration(reg: &AccountRegistration) -> Result<(), Refusal> {
    if reg.login.0 == 0 || reg.login.0 > i64::MAX as u64 {
        return Err(Refusal::invalid(
            "login",
            "login must be a positive account number",
        ));
    }
    if reg.hedge_ratio.is_sign_negative() || reg.hedge_ratio.is_zero() {
        return Err(Refusal::invalid(
            "hedge_ratio",
            "hedge_ratio must be positive",
        ));
    }
    if reg.hedge_ratio > Decimal::from(1000) {
        return Err(Refusal::invalid(
            "hedge_ratio",
            "hedge_ratio must be at most 1000",
        ));
    }
    if reg.symbols.len() > 10_000 {
        return Err(Refusal::invalid("symbols", "too many symbols"));
    }
    for spec in &reg.symbols {
        check_symbol(&spec.name, "symbols.name")?;
        if !spec.volume_step.is_positive() {
            return Err(Refusal::invalid(
                "symbols.volume_step",
                format!("volume_step of {} must be positive", spec.name),
            ));
        }
        if spec.volume_min.is_negative() || spec.volume_max < spec.volume_min {
            return Err(Refusal::invalid(
                "symbols.volume_max",
                format!("volume_min/volume_max of {} are inconsistent", spec.name),
            ));
        }
    }
    for field in [&reg.server, &reg.company, &reg.currency] {
        if field.len() > 256 {
            return Err(Refusal::invalid("server", "text field too long"));
        }
    }
    Ok(())
}

pub fn register_account(
    c: &mut dyn Conn,
    actor: &str,
    reg: &AccountRegistration,
    now: i64,
) -> Result<Account, WriteError> {
    validate_registration(reg)?;
    let login = reg.login.0 as i64;
    let text = json(reg)?;
    let existing = account(c, reg.login)?;
    if let Some(known) = existing
        .as_ref()
        .filter(|a| reg.role == AccountRole::Tumbler && a.registration.role != reg.role)
    {
        // A tumbler on a copier's client account only watches it: turning the account into a
        // tumbler account would take the client out of the hedge plan. Decided here, inside the
        // write, so that it holds whichever agent registers first.
        return Ok(known.clone());
    }
    let changed = existing.as_ref().is_none_or(|a| a.registration != *reg);
    let registered_ms = existing.as_ref().map_or(now, |a| a.registered_ms);
    c.execute(
        "INSERT INTO accounts (login, role, hedge_ratio, hedge_login, registration, status, registered_ms, last_seen_ms)
         VALUES (?, ?, ?, ?, ?, NULL, ?, ?)
         ON CONFLICT (login) DO UPDATE SET role = excluded.role, hedge_ratio = excluded.hedge_ratio,
           hedge_login = excluded.hedge_login, registration = excluded.registration, last_seen_ms = excluded.last_seen_ms",
        &[
            Val::Int(login),
            Val::text(reg.role.as_str()),
            Val::Text(reg.hedge_ratio.normalize().to_string()),
            Val::opt_int(reg.hedge_login.map(|l| l.0 as i64)),
            Val::Text(text),
            Val::Int(registered_ms),
            Val::Int(now),
        ],
    )?;
    let stored = account(c, reg.login)?
        .ok_or_else(|| StoreError::Db("account vanished after upsert".into()))?;
    if changed {
        let reason = if existing.is_some() {
            format!(
                "account {} updated its registration ({})",
                reg.login,
                reg.role.as_str()
            )
        } else {
            format!("account {} registered as {}", reg.login, reg.role.as_str())
        };
        insert_event(
            c,
            NewEvent {
                time_ms: now,
                kind: EventKind::AccountRegistered,
                login: Some(reg.login),
                symbol: None,
                actor,
                reason: &reason,
                data: json(&stored)?,
            },
        )?;
    }
    Ok(stored)
}

/// Reads the first answer under a key of the agents' requests (reports, tumbler firings).
const REQUEST_ANSWER: &str = "SELECT payload, response FROM idempotency WHERE key = ?";
/// Reads the first answer under a key of the operators' actions.
const ACTION_ANSWER: &str = "SELECT payload, response FROM action_keys WHERE key = ?";

/// The answer stored under `key` (read by `lookup`, [`REQUEST_ANSWER`] or [`ACTION_ANSWER`]), if
/// the key was used before: the same `payload` gets it again, another payload is a conflict
/// (`what` names the kind of request in the refusal).
fn first_answer(
    c: &mut dyn Conn,
    lookup: &str,
    key: &str,
    payload: &str,
    what: &str,
) -> Result<Option<String>, WriteError> {
    let Some(row) = c.query_one(lookup, &[Val::text(key)])? else {
        return Ok(None);
    };
    if row.text(0)? != payload {
        return Err(Refusal::Conflict(format!(
            "idempotency key {key:?} was already used for a different {what}"
        ))
        .into());
    }
    Ok(Some(row.text(1)?.to_owned()))
}

/// Keeps `response` under `key`, in the same transaction as the change it answers.
fn remember_answer(
    c: &mut dyn Conn,
    key: &str,
    payload: String,
    response: &str,
    event_id: u64,
) -> Result<(), StoreError> {
    c.send(
        "INSERT INTO idempotency (key, payload, response, event_id) VALUES (?, ?, ?, ?)",
        &[
            Val::text(key),
            Val::Text(payload),
            Val::text(response),
            Val::Int(event_id as i64),
        ],
    )
}

/// Records a tumbler firing as an event, once per idempotency key.
pub fn tumbler_fired(
    c: &mut dyn Conn,
    actor: &str,
    firing: &TumblerFiring,
    now: i64,
) -> Result<(String, bool), WriteError> {
    validate_firing(firing)?;
    let payload = json(firing)?;
    if let Some(answer) = first_answer(
        c,
        REQUEST_ANSWER,
        firing.idempotency_key.as_str(),
        &payload,
        "request",
    )? {
        return Ok((answer, true));
    }
    let event_id = insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: EventKind::TumblerFired,
            login: Some(firing.login),
            symbol: Some(&firing.symbol),
            actor,
            reason: &firing.describe(),
            data: payload.clone(),
        },
    )?;
    let response = json(&FiringAck {
        event_id,
        idempotency_key: firing.idempotency_key.clone(),
    })?;
    remember_answer(
        c,
        firing.idempotency_key.as_str(),
        payload,
        &response,
        event_id,
    )?;
    Ok((response, false))
}

/// A firing's fields within what the store and the dashboard can hold.
fn validate_firing(f: &TumblerFiring) -> Result<(), Refusal> {
    /// More than any terminal and copier set runs; bounds the event's size.
    const MAX_KILLED: usize = 64;
    check_symbol(&f.symbol, "symbol")?;
    positions::check_position_ref(f.login, f.position_id)?;
    if !f.volume.is_positive() {
        return Err(Refusal::invalid("volume", "volume must be positive"));
    }
    if f.time_ms < 0 {
        return Err(Refusal::invalid("time_ms", "time_ms must not be negative"));
    }
    positions::check_key(f.idempotency_key.as_str())?;
    if f.killed.len() > MAX_KILLED
        || f.killed
            .iter()
            .any(|k| k.len() > positions::MAX_COMMENT_LEN)
    {
        return Err(Refusal::invalid(
            "killed",
            "killed lists too many processes or too long a name",
        ));
    }
    Ok(())
}

pub fn heartbeat(
    c: &mut dyn Conn,
    actor: &str,
    login: Login,
    status: &AccountStatus,
    now: i64,
) -> Result<Account, WriteError> {
    let Some(existing) = account(c, login)? else {
        return Err(Refusal::NotFound(format!("account {login} is not registered")).into());
    };
    validate_status(status)?;
    // Marks live in their own table (latest per position), not in the stored status.
    let changed_marks = store_marks(c, login, &status.marks, now)?;
    let kept = AccountStatus {
        marks: Vec::new(),
        ..status.clone()
    };
    c.execute(
        "UPDATE accounts SET status = ?, last_seen_ms = ? WHERE login = ?",
        &[
            Val::Text(json(&kept)?),
            Val::Int(now),
            Val::Int(login.0 as i64),
        ],
    )?;
    let stored =
        account(c, login)?.ok_or_else(|| StoreError::Db("account vanished after update".into()))?;
    if existing.status.as_ref() != Some(&kept) || !changed_marks.is_empty() {
        let reason = format!(
            "account {login} status: {}, outbox {}",
            if status.connected {
                "connected"
            } else {
                "disconnected"
            },
            status.outbox_pending
        );
        let mut data = serde_json::to_value(&stored).map_err(db)?;
        if !changed_marks.is_empty() {
            // The marks that moved, so the dashboard updates its position rows from the event
            // alone without the event carrying every position of a large account.
            if let Some(obj) = data.as_object_mut() {
                obj.insert(
                    "marks".into(),
                    serde_json::to_value(&changed_marks).map_err(db)?,
                );
            }
        }
        insert_event(
            c,
            NewEvent {
                time_ms: now,
                kind: EventKind::AccountStatus,
                login: Some(login),
                symbol: None,
                actor,
                reason: &reason,
                data: data.to_string(),
            },
        )?;
    }
    Ok(stored)
}

fn validate_status(status: &AccountStatus) -> Result<(), Refusal> {
    if status.breakers.len() > 10_000
        || status.message.as_ref().is_some_and(|m| m.len() > 2048)
        || status
            .dead_letter_reason
            .as_ref()
            .is_some_and(|m| m.len() > 2048)
    {
        return Err(Refusal::invalid("breakers", "status too large"));
    }
    if status.marks.len() > 100_000 {
        return Err(Refusal::invalid("marks", "too many marks"));
    }
    let mut seen = std::collections::HashSet::with_capacity(status.marks.len());
    for m in &status.marks {
        if m.position_id.0 == 0 || m.position_id.0 > i64::MAX as u64 {
            return Err(Refusal::invalid(
                "marks.position_id",
                "position_id must be a positive ticket",
            ));
        }
        if !seen.insert(m.position_id) {
            return Err(Refusal::invalid(
                "marks.position_id",
                format!("position {} is marked twice", m.position_id),
            ));
        }
        if m.price_current.0.is_sign_negative() && !m.price_current.0.is_zero() {
            return Err(Refusal::invalid(
                "marks.price_current",
                "price_current must not be negative",
            ));
        }
    }
    if let Some(a) = &status.account {
        if a.currency.len() > 16 {
            return Err(Refusal::invalid("account.currency", "currency is too long"));
        }
    }
    if let Some(r) = &status.reconciliation {
        if r.detail.len() > 8192 {
            return Err(Refusal::invalid(
                "reconciliation.detail",
                "reconciliation detail is too long",
            ));
        }
    }
    Ok(())
}

fn money_text(m: Money) -> Val {
    Val::Text(m.0.normalize().to_string())
}

fn parse_money(t: Option<&str>) -> Result<Option<Money>, StoreError> {
    Ok(parse_price(t)?.map(|p| Money(p.0)))
}

/// Makes `marks` the account's marks (nothing when the status carries none): changed ones are
/// written, those of positions no longer listed removed, unchanged ones left alone so a large
/// account costs the writer only what moved. Returns the marks that changed.
fn store_marks(
    c: &mut dyn Conn,
    login: Login,
    marks: &[PositionMark],
    now: i64,
) -> Result<Vec<PositionMark>, StoreError> {
    if marks.is_empty() {
        return Ok(Vec::new());
    }
    let existing: std::collections::HashMap<u64, PositionMark> = marks_of(c, login)?
        .into_iter()
        .map(|m| (m.position_id.0, m))
        .collect();
    let wanted: std::collections::HashSet<u64> = marks.iter().map(|m| m.position_id.0).collect();
    for gone in existing.keys().filter(|id| !wanted.contains(id)) {
        c.execute(
            "DELETE FROM position_marks WHERE login = ? AND position_id = ?",
            &[Val::Int(login.0 as i64), Val::Int(*gone as i64)],
        )?;
    }
    let mut changed = Vec::new();
    for m in marks {
        if existing.get(&m.position_id.0) == Some(m) {
            continue;
        }
        c.execute(
            "INSERT INTO position_marks (login, position_id, price_current, swap, profit, commission, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (login, position_id) DO UPDATE SET price_current = excluded.price_current, swap = excluded.swap,
               profit = excluded.profit, commission = excluded.commission, updated_ms = excluded.updated_ms",
            &[
                Val::Int(login.0 as i64),
                Val::Int(m.position_id.0 as i64),
                Val::Text(m.price_current.0.normalize().to_string()),
                money_text(m.swap),
                money_text(m.profit),
                money_text(m.commission),
                Val::Int(now),
            ],
        )?;
        changed.push(m.clone());
    }
    Ok(changed)
}

fn mark_from_row(r: &Row, at: usize) -> Result<Option<PositionMark>, StoreError> {
    let Some(price) = parse_price(r.opt_text(at + 1)?)? else {
        return Ok(None);
    };
    Ok(Some(PositionMark {
        position_id: PositionId(r.u64(at)?),
        price_current: price,
        swap: parse_money(r.opt_text(at + 2)?)?.unwrap_or_default(),
        profit: parse_money(r.opt_text(at + 3)?)?.unwrap_or_default(),
        commission: parse_money(r.opt_text(at + 4)?)?.unwrap_or_default(),
    }))
}

fn marks_of(c: &mut dyn Conn, login: Login) -> Result<Vec<PositionMark>, StoreError> {
    c.query(
        "SELECT position_id, price_current, swap, profit, commission FROM position_marks WHERE login = ?",
        &[Val::Int(login.0 as i64)],
    )?
    .iter()
    .filter_map(|r| mark_from_row(r, 0).transpose())
    .collect()
}

/// Puts a mark on an open position (closed positions show none: the mark is of the last open state).
fn apply_mark(p: &mut Position, mark: Option<PositionMark>) {
    if p.status == PositionStatus::Closed {
        return;
    }
    if let Some(m) = mark {
        p.price_current = Some(m.price_current);
        p.swap = Some(m.swap);
        p.profit = Some(m.profit);
        p.commission = Some(m.commission);
    }
}

// ---------------------------------------------------------------------------------------------
// Positions

/// The columns of a stored position, in the order [`position_from_row`] reads them. A macro so
/// that statements can be spelled out at compile time (`concat!`) rather than formatted per call.
macro_rules! position_cols {
    () => {
        "login, position_id, symbol, account_symbol, side, volume_units, max_units, price, sl, tp, magic, comment, status, opened_ms, updated_ms, last_seq, last_event_id, row_id, exit_comment"
    };
}
const POSITION_COLS: &str = position_cols!();

fn position_from_row(r: &Row) -> Result<Position, StoreError> {
    Ok(Position {
        login: Login(r.u64(0)?),
        position_id: PositionId(r.u64(1)?),
        symbol: r.text(2)?.to_owned(),
        account_symbol: r.text(3)?.to_owned(),
        side: parse_side(r.text(4)?)?,
        volume: units_volume(r.int(5)?),
        max_volume: units_volume(r.int(6)?),
        price: parse_price(r.opt_text(7)?)?,
        sl: parse_price(r.opt_text(8)?)?,
        tp: parse_price(r.opt_text(9)?)?,
        magic: Magic(r.u64(10)?),
        comment: r.text(11)?.to_owned(),
        exit_comment: r.opt_text(18)?.map(str::to_owned),
        status: PositionStatus::parse(r.text(12)?)
            .ok_or_else(|| StoreError::Corrupt("bad position status".into()))?,
        opened_ms: r.int(13)?,
        updated_ms: r.int(14)?,
        last_seq: r.u64(15)?,
        last_event_id: r.u64(16)?,
        price_current: None,
        swap: None,
        profit: None,
        commission: None,
    })
}

fn load_position(
    c: &mut dyn Conn,
    login: Login,
    id: PositionId,
) -> Result<Option<Position>, StoreError> {
    const SQL: &str = concat!(
        "SELECT ",
        position_cols!(),
        " FROM positions WHERE login = ? AND position_id = ?"
    );
    c.query_one(SQL, &[Val::Int(login.0 as i64), Val::Int(id.0 as i64)])?
        .map(|r| position_from_row(&r))
        .transpose()
}

/// Writes `p`: a plain insert when the transaction found no row for it (`exists` false), else an
/// update of that row. The caller read the row in the same write transaction, so the choice is
/// exact, and neither statement pays for the other's path as an upsert would.
fn store_position(c: &mut dyn Conn, p: &Position, exists: bool) -> Result<(), WriteError> {
    // Both statements bind the same values in the same order: the key last.
    let sql = if exists {
        "UPDATE positions SET symbol = ?, account_symbol = ?, side = ?, volume_units = ?, max_units = ?,
           price = ?, sl = ?, tp = ?, magic = ?, comment = ?, status = ?, opened_ms = ?, updated_ms = ?,
           last_seq = ?, last_event_id = ?, exit_comment = ?
         WHERE login = ? AND position_id = ?"
    } else {
        "INSERT INTO positions (symbol, account_symbol, side, volume_units, max_units, price, sl, tp, magic, comment, status, opened_ms, updated_ms, last_seq, last_event_id, exit_comment, login, position_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    };
    c.send(
        sql,
        &[
            Val::text(&p.symbol),
            Val::text(&p.account_symbol),
            Val::text(p.side.as_str()),
            Val::Int(volume_units(p.volume, "volume")?),
            Val::Int(volume_units(p.max_volume, "volume")?),
            price_text(p.price),
            price_text(p.sl),
            price_text(p.tp),
            Val::Int(to_i64(p.magic.0, "magic")?),
            Val::text(&p.comment),
            Val::text(p.status.as_str()),
            Val::Int(p.opened_ms),
            Val::Int(p.updated_ms),
            Val::Int(p.last_seq as i64),
            Val::Int(p.last_event_id as i64),
            Val::opt_text(p.exit_comment.clone()),
            Val::Int(p.login.0 as i64),
            Val::Int(p.position_id.0 as i64),
        ],
    )?;
    Ok(())
}

pub fn report(
    c: &mut dyn Conn,
    actor: &str,
    report: &PositionReport,
    now: i64,
) -> Result<(String, bool), WriteError> {
    positions::validate(report)?;
    to_i64(report.magic.0, "magic")?;
    let payload = json(report)?;
    if let Some(answer) = first_answer(
        c,
        REQUEST_ANSWER,
        report.idempotency_key.as_str(),
        &payload,
        "report",
    )? {
        return Ok((answer, true));
    }
    let current = load_position(c, report.login, report.position_id)?;
    let transition = positions::apply(current.as_ref(), report)?;
    let mut position = transition.position;
    let event_id = insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: transition.event,
            login: Some(report.login),
            symbol: Some(&report.symbol),
            actor,
            reason: &transition.reason,
            data: String::new(),
        },
    )?;
    position.last_event_id = event_id;
    set_event_data(c, event_id, json(&position)?)?;
    store_position(c, &position, current.is_some())?;
    if transition.volume_changed {
        c.send(
            "INSERT INTO position_volumes (login, position_id, event_id, kind, side, volume_units, time_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            &[
                Val::Int(report.login.0 as i64),
                Val::Int(report.position_id.0 as i64),
                Val::Int(event_id as i64),
                Val::text(report.kind.as_str()),
                Val::text(position.side.as_str()),
                Val::Int(volume_units(position.volume, "volume")?),
                Val::Int(report.time_ms),
            ],
        )?;
    }
    if transition.exposure_delta != 0 {
        c.send(
            "INSERT INTO exposures (login, symbol, net_units, last_event_id) VALUES (?, ?, ?, ?)
             ON CONFLICT (login, symbol) DO UPDATE SET net_units = exposures.net_units + excluded.net_units,
               last_event_id = excluded.last_event_id",
            &[
                Val::Int(report.login.0 as i64),
                Val::text(&report.symbol),
                Val::Int(transition.exposure_delta),
                Val::Int(event_id as i64),
            ],
        )?;
    }
    let ack = ReportAck {
        event_id,
        idempotency_key: report.idempotency_key.clone(),
        status: position.status,
        volume: position.volume,
    };
    let response = json(&ack)?;
    remember_answer(
        c,
        report.idempotency_key.as_str(),
        payload,
        &response,
        event_id,
    )?;
    Ok((response, false))
}

fn clamp_limit(limit: Option<u32>) -> i64 {
    i64::from(limit.unwrap_or(100).clamp(1, 1000))
}

pub fn positions(c: &mut dyn Conn, f: &PositionFilter) -> Result<Page<Position>, WriteError> {
    let cols = POSITION_COLS
        .split(", ")
        .map(|col| format!("p.{col}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!(
        "SELECT {cols}, m.position_id, m.price_current, m.swap, m.profit, m.commission
         FROM positions p LEFT JOIN position_marks m ON m.login = p.login AND m.position_id = p.position_id
         WHERE p.row_id > ?"
    );
    let mut params = vec![Val::Int(f.after.unwrap_or(0).min(i64::MAX as u64) as i64)];
    if let Some(login) = f.login {
        sql.push_str(" AND p.login = ?");
        params.push(Val::Int(login.0.min(i64::MAX as u64) as i64));
    }
    if let Some(symbol) = &f.symbol {
        sql.push_str(" AND p.symbol = ?");
        params.push(Val::text(symbol));
    }
    if let Some(status) = f.status {
        sql.push_str(" AND p.status = ?");
        params.push(Val::text(status.as_str()));
    }
    let limit = clamp_limit(f.limit);
    sql.push_str(" ORDER BY p.row_id LIMIT ?");
    params.push(Val::Int(limit + 1));
    let rows = c.query(&sql, &params)?;
    page(rows, limit, 17, |r| {
        let mut p = position_from_row(r)?;
        apply_mark(&mut p, mark_from_row(r, 19)?);
        Ok(p)
    })
}

fn page<T>(
    rows: Vec<Row>,
    limit: i64,
    cursor_col: usize,
    map: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Page<T>, WriteError> {
    let more = rows.len() as i64 > limit;
    let mut items = Vec::with_capacity(rows.len());
    let mut last = None;
    for r in rows.iter().take(limit as usize) {
        items.push(map(r)?);
        last = Some(r.u64(cursor_col)?);
    }
    Ok(Page {
        items,
        next_after: if more { last } else { None },
    })
}

pub fn position_detail(
    c: &mut dyn Conn,
    login: Login,
    id: PositionId,
) -> Result<Option<PositionDetail>, WriteError> {
    if login.0 > i64::MAX as u64 || id.0 > i64::MAX as u64 {
        return Ok(None);
    }
    let Some(mut position) = load_position(c, login, id)? else {
        return Ok(None);
    };
    let mark = c
        .query_one(
            "SELECT position_id, price_current, swap, profit, commission FROM position_marks WHERE login = ? AND position_id = ?",
            &[Val::Int(login.0 as i64), Val::Int(id.0 as i64)],
        )?
        .map(|r| mark_from_row(&r, 0))
        .transpose()?
        .flatten();
    apply_mark(&mut position, mark);
    let rows = c.query(
        "SELECT event_id, kind, side, volume_units, time_ms FROM position_volumes WHERE login = ? AND position_id = ? ORDER BY event_id",
        &[Val::Int(login.0 as i64), Val::Int(id.0 as i64)],
    )?;
    let history = rows
        .iter()
        .map(|r| {
            Ok(VolumeChange {
                event_id: r.u64(0)?,
                kind: PositionEventKind::parse(r.text(1)?)
                    .ok_or_else(|| StoreError::Corrupt("bad event kind".into()))?,
                side: parse_side(r.text(2)?)?,
                volume: units_volume(r.int(3)?),
                time_ms: r.int(4)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(PositionDetail { position, history }))
}

// ---------------------------------------------------------------------------------------------
// Plan

pub fn plan_inputs(c: &mut dyn Conn, hedge_login: Login) -> Result<PlanInputs, WriteError> {
    let Some(hedge) = account(c, hedge_login)? else {
        return Err(
            Refusal::NotFound(format!("hedge account {hedge_login} is not registered")).into(),
        );
    };
    if hedge.registration.role != AccountRole::Hedge {
        return Err(Refusal::Conflict(format!(
            "account {hedge_login} is registered as {}, not as a hedge account",
            hedge.registration.role.as_str()
        ))
        .into());
    }
    let as_of_event_id = max_event_id(c)?;
    let overrides = load_overrides(c, None)?;
    let mut configs = std::collections::BTreeMap::new();
    for r in c.query(
        "SELECT login, role, hedge_ratio, hedge_login FROM accounts",
        &[],
    )? {
        let login = r.u64(0)?;
        let registered =
            Decimal::from_str(r.text(2)?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let ratio = overrides
            .get(&login)
            .and_then(|o| o.hedge_ratio)
            .unwrap_or(registered);
        configs.insert(
            login,
            (
                r.text(1)?.to_owned(),
                ratio,
                r.opt_int(3)?.map(|l| Login(l as u64)),
            ),
        );
    }
    let mut exposures = Vec::new();
    let mut clients = Vec::new();
    for r in c.query(
        "SELECT login, symbol, net_units, last_event_id FROM exposures",
        &[],
    )? {
        let login = r.u64(0)?;
        match configs.get(&login) {
            Some((role, ratio, hedge)) if role == "client" => clients.push(ClientConfig {
                login: Login(login),
                ratio: *ratio,
                hedge_login: *hedge,
            }),
            // Reports from an account not (yet) registered count 1:1 on every hedge account.
            None => clients.push(ClientConfig {
                login: Login(login),
                ratio: Decimal::ONE,
                hedge_login: None,
            }),
            Some(_) => continue,
        }
        exposures.push(ClientExposure {
            login: Login(login),
            symbol: r.text(1)?.to_owned(),
            net_units: r.int(2)?,
            last_event_id: r.u64(3)?,
        });
    }
    clients.sort_by_key(|c| c.login);
    clients.dedup_by_key(|c| c.login);
    let hedges = c
        .query(
            "SELECT symbol, net_units, last_event_id FROM hedge_exposures WHERE hedge_login = ?",
            &[Val::Int(hedge_login.0 as i64)],
        )?
        .iter()
        .map(|r| {
            Ok(HedgeCover {
                symbol: r.text(0)?.to_owned(),
                net_units: r.int(1)?,
                last_event_id: r.u64(2)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(PlanInputs {
        hedge: hedge.effective(),
        clients,
        exposures,
        hedges,
        pauses: pauses(c)?,
        as_of_event_id,
    })
}

// ---------------------------------------------------------------------------------------------
// Hedges

const HEDGE_COLS: &str = "id, plan_item_id, hedge_login, symbol, account_symbol, side, volume_units, open_units, order_ticket, deal_ticket, position_id, price, latency_us, slippage, status, retcode, message, created_ms, updated_ms, event_id";

fn hedge_from_row(r: &Row) -> Result<Hedge, StoreError> {
    Ok(Hedge {
        id: r.u64(0)?,
        plan_item_id: r.u64(1)?,
        hedge_login: Login(r.u64(2)?),
        symbol: r.text(3)?.to_owned(),
        account_symbol: r.text(4)?.to_owned(),
        side: parse_side(r.text(5)?)?,
        volume: units_volume(r.int(6)?),
        open_volume: units_volume(r.int(7)?),
        order: OrderTicket(r.u64(8)?),
        deal: DealTicket(r.u64(9)?),
        position_id: PositionId(r.u64(10)?),
        price: parse_price(r.opt_text(11)?)?,
        latency_us: r.opt_int(12)?.map(|v| v as u64),
        slippage: parse_price(r.opt_text(13)?)?,
        status: HedgeStatus::parse(r.text(14)?)
            .ok_or_else(|| StoreError::Corrupt("bad hedge status".into()))?,
        retcode: r.opt_int(15)?.map(|v| Retcode(v as u32)),
        message: r.text(16)?.to_owned(),
        created_ms: r.int(17)?,
        updated_ms: r.int(18)?,
        event_id: r.u64(19)?,
        mark: None,
    })
}

/// Puts on each open hedge the hedge account's latest mark of the hedge's position.
fn mark_hedges(c: &mut dyn Conn, hedges: &mut [Hedge]) -> Result<(), StoreError> {
    let open = |h: &Hedge| matches!(h.status, HedgeStatus::Open | HedgeStatus::PartiallyClosed);
    let logins: std::collections::BTreeSet<Login> = hedges
        .iter()
        .filter(|h| open(h))
        .map(|h| h.hedge_login)
        .collect();
    for login in logins {
        let marks: std::collections::HashMap<PositionId, PositionMark> = marks_of(c, login)?
            .into_iter()
            .map(|m| (m.position_id, m))
            .collect();
        for h in hedges
            .iter_mut()
            .filter(|h| h.hedge_login == login && open(h))
        {
            h.mark = marks.get(&h.position_id).cloned();
        }
    }
    Ok(())
}

/// The row of `table` with that id, read by `from_row`. An id beyond SQL's integer range names no
/// row, rather than wrapping to a negative one that might.
fn row_by_id<T>(
    c: &mut dyn Conn,
    table: &str,
    cols: &str,
    id: u64,
    from_row: fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, WriteError> {
    let Ok(id) = i64::try_from(id) else {
        return Ok(None);
    };
    let sql = format!("SELECT {cols} FROM {table} WHERE id = ?");
    Ok(c.query_one(&sql, &[Val::Int(id)])?
        .map(|r| from_row(&r))
        .transpose()?)
}

pub fn hedge_by_id(c: &mut dyn Conn, id: u64) -> Result<Option<Hedge>, WriteError> {
    row_by_id(c, "hedges", HEDGE_COLS, id, hedge_from_row)
}

fn hedge_account(c: &mut dyn Conn, login: Login) -> Result<AccountRegistration, WriteError> {
    match account(c, login)? {
        Some(a) if a.registration.role == AccountRole::Hedge => Ok(a.effective()),
        Some(_) => Err(Refusal::Conflict(format!("account {login} is not a hedge account")).into()),
        None => Err(Refusal::NotFound(format!("hedge account {login} is not registered")).into()),
    }
}

struct HedgeRow<'a> {
    plan_item_id: u64,
    hedge_login: Login,
    symbol: &'a str,
    account_symbol: String,
    side: Side,
    volume_units: i64,
    open_units: i64,
    order: OrderTicket,
    deal: DealTicket,
    position_id: PositionId,
    price: Option<Price>,
    latency_us: Option<u64>,
    slippage: Option<Price>,
    status: HedgeStatus,
    retcode: Option<Retcode>,
    message: &'a str,
    now: i64,
    event_id: u64,
}

fn insert_hedge(c: &mut dyn Conn, h: HedgeRow<'_>) -> Result<u64, WriteError> {
    let row = c
        .query_one(
            &format!(
                "INSERT INTO hedges ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                HEDGE_COLS.trim_start_matches("id, ")
            ),
            &[
                Val::Int(to_i64(h.plan_item_id, "plan_item_id")?),
                Val::Int(h.hedge_login.0 as i64),
                Val::text(h.symbol),
                Val::Text(h.account_symbol),
                Val::text(h.side.as_str()),
                Val::Int(h.volume_units),
                Val::Int(h.open_units),
                Val::Int(to_i64(h.order.0, "order")?),
                Val::Int(to_i64(h.deal.0, "deal")?),
                Val::Int(to_i64(h.position_id.0, "position_id")?),
                price_text(h.price),
                Val::opt_int(h.latency_us.map(|v| v.min(i64::MAX as u64) as i64)),
                price_text(h.slippage),
                Val::text(h.status.as_str()),
                Val::opt_int(h.retcode.map(|r| i64::from(r.0))),
                Val::text(h.message),
                Val::Int(h.now),
                Val::Int(h.now),
                Val::Int(h.event_id as i64),
            ],
        )?
        .ok_or_else(|| StoreError::Db("hedge insert returned no id".into()))?;
    Ok(row.u64(0)?)
}

fn add_hedge_exposure(
    c: &mut dyn Conn,
    hedge_login: Login,
    symbol: &str,
    delta: i64,
    event_id: u64,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO hedge_exposures (hedge_login, symbol, net_units, last_event_id) VALUES (?, ?, ?, ?)
         ON CONFLICT (hedge_login, symbol) DO UPDATE SET net_units = hedge_exposures.net_units + excluded.net_units,
           last_event_id = excluded.last_event_id",
        &[Val::Int(hedge_login.0 as i64), Val::text(symbol), Val::Int(delta), Val::Int(event_id as i64)],
    )?;
    Ok(())
}

pub fn hedge_executed(
    c: &mut dyn Conn,
    actor: &str,
    h: &HedgeExecuted,
    now: i64,
) -> Result<(Hedge, bool), WriteError> {
    check_symbol(&h.symbol, "symbol")?;
    let units = volume_units(h.volume, "volume")?;
    if units == 0 {
        return Err(Refusal::invalid("volume", "volume must be positive").into());
    }
    to_i64(h.plan_item_id, "plan_item_id")?;
    if h.hedge_login.0 > i64::MAX as u64 {
        return Err(Refusal::invalid("hedge_login", "hedge_login is out of range").into());
    }
    let sql = format!(
        "SELECT {HEDGE_COLS} FROM hedges WHERE hedge_login = ? AND plan_item_id = ? AND status <> 'failed'"
    );
    if let Some(row) = c.query_one(
        &sql,
        &[
            Val::Int(h.hedge_login.0 as i64),
            Val::Int(h.plan_item_id as i64),
        ],
    )? {
        let existing = hedge_from_row(&row)?;
        if existing.symbol != h.symbol || existing.side != h.side {
            return Err(Refusal::Conflict(format!(
                "plan item {} was already executed as {} {} {}",
                h.plan_item_id, existing.side, existing.volume, existing.symbol
            ))
            .into());
        }
        return Ok((existing, true));
    }
    let account = hedge_account(c, h.hedge_login)?;
    let reason = format!(
        "hedge {} {} {} executed on {} for plan item {}",
        h.side, h.volume, h.symbol, h.hedge_login, h.plan_item_id
    );
    let event_id = insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: EventKind::HedgeExecuted,
            login: Some(h.hedge_login),
            symbol: Some(&h.symbol),
            actor,
            reason: &reason,
            data: String::new(),
        },
    )?;
    let id = insert_hedge(
        c,
        HedgeRow {
            plan_item_id: h.plan_item_id,
            hedge_login: h.hedge_login,
            symbol: &h.symbol,
            account_symbol: account.symbol_map.to_account(&h.symbol),
            side: h.side,
            volume_units: units,
            open_units: units,
            order: h.order,
            deal: h.deal,
            position_id: h.position_id,
            price: h.price,
            latency_us: h.latency_us,
            slippage: h.slippage,
            status: HedgeStatus::Open,
            retcode: None,
            message: "",
            now,
            event_id,
        },
    )?;
    add_hedge_exposure(
        c,
        h.hedge_login,
        &h.symbol,
        units * i64::from(h.side.sign()),
        event_id,
    )?;
    let hedge = hedge_by_id(c, id)?.ok_or_else(|| StoreError::Db("hedge vanished".into()))?;
    set_event_data(c, event_id, json(&hedge)?)?;
    Ok((hedge, false))
}

pub fn hedge_failed(
    c: &mut dyn Conn,
    actor: &str,
    f: &HedgeFailed,
    now: i64,
) -> Result<Hedge, WriteError> {
    check_symbol(&f.symbol, "symbol")?;
    let units = volume_units(f.volume, "volume")?;
    to_i64(f.plan_item_id, "plan_item_id")?;
    if f.message.len() > 2048 {
        return Err(Refusal::invalid("message", "message is too long").into());
    }
    let account = hedge_account(c, f.hedge_login)?;
    let reason = format!(
        "hedge {} {} {} failed on {} for plan item {}: retcode {} {}",
        f.side, f.volume, f.symbol, f.hedge_login, f.plan_item_id, f.retcode.0, f.message
    );
    let event_id = insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: EventKind::HedgeFailed,
            login: Some(f.hedge_login),
            symbol: Some(&f.symbol),
            actor,
            reason: &reason,
            data: String::new(),
        },
    )?;
    let id = insert_hedge(
        c,
        HedgeRow {
            plan_item_id: f.plan_item_id,
            hedge_login: f.hedge_login,
            symbol: &f.symbol,
            account_symbol: account.symbol_map.to_account(&f.symbol),
            side: f.side,
            volume_units: units,
            open_units: 0,
            order: OrderTicket(0),
            deal: DealTicket(0),
            position_id: PositionId(0),
            price: None,
            latency_us: None,
            slippage: None,
            status: HedgeStatus::Failed,
            retcode: Some(f.retcode),
            message: &f.message,
            now,
            event_id,
        },
    )?;
    let hedge = hedge_by_id(c, id)?.ok_or_else(|| StoreError::Db("hedge vanished".into()))?;
    set_event_data(c, event_id, json(&hedge)?)?;
    Ok(hedge)
}

pub fn hedge_reduce(
    c: &mut dyn Conn,
    actor: &str,
    id: u64,
    r: &HedgeReduce,
    now: i64,
) -> Result<Hedge, WriteError> {
    let remaining = volume_units(r.remaining, "remaining")?;
    let Some(hedge) = hedge_by_id(c, id)? else {
        return Err(Refusal::NotFound(format!("hedge {id} does not exist")).into());
    };
    if hedge.status == HedgeStatus::Failed {
        return Err(
            Refusal::Conflict(format!("hedge {id} failed; there is nothing to reduce")).into(),
        );
    }
    let open = volume_units(hedge.open_volume, "open_volume")?;
    if remaining == open {
        return Ok(hedge);
    }
    if remaining > open {
        return Err(Refusal::Conflict(format!(
            "hedge {id} has {} open; remaining {} would increase it",
            hedge.open_volume, r.remaining
        ))
        .into());
    }
    let status = if remaining == 0 {
        HedgeStatus::Closed
    } else {
        HedgeStatus::PartiallyClosed
    };
    let kind = if remaining == 0 {
        EventKind::HedgeClosed
    } else {
        EventKind::HedgeReduced
    };
    let reason = format!(
        "hedge {id} ({} {}) reduced from {} to {}{}",
        hedge.side,
        hedge.symbol,
        hedge.open_volume,
        r.remaining.normalize(),
        if r.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", r.reason)
        }
    );
    let event_id = insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind,
            login: Some(hedge.hedge_login),
            symbol: Some(&hedge.symbol),
            actor,
            reason: &reason,
            data: String::new(),
        },
    )?;
    c.execute(
        "UPDATE hedges SET open_units = ?, status = ?, updated_ms = ?, event_id = ? WHERE id = ?",
        &[
            Val::Int(remaining),
            Val::text(status.as_str()),
            Val::Int(now),
            Val::Int(event_id as i64),
            Val::Int(id as i64),
        ],
    )?;
    let delta = (open - remaining) * -i64::from(hedge.side.sign());
    add_hedge_exposure(c, hedge.hedge_login, &hedge.symbol, delta, event_id)?;
    let stored = hedge_by_id(c, id)?.ok_or_else(|| StoreError::Db("hedge vanished".into()))?;
    set_event_data(c, event_id, json(&stored)?)?;
    Ok(stored)
}

pub fn hedges(c: &mut dyn Conn, q: &PageQuery) -> Result<Page<Hedge>, WriteError> {
    let mut sql = format!("SELECT {HEDGE_COLS} FROM hedges WHERE id > ?");
    let mut params = vec![Val::Int(q.after.unwrap_or(0).min(i64::MAX as u64) as i64)];
    if let Some(login) = q.login {
        sql.push_str(" AND hedge_login = ?");
        params.push(Val::Int(login.0.min(i64::MAX as u64) as i64));
    }
    if let Some(symbol) = &q.symbol {
        sql.push_str(" AND symbol = ?");
        params.push(Val::text(symbol));
    }
    if q.open == Some(true) {
        sql.push_str(" AND status IN ('open', 'partially_closed')");
    }
    let limit = clamp_limit(q.limit);
    sql.push_str(" ORDER BY id LIMIT ?");
    params.push(Val::Int(limit + 1));
    let rows = c.query(&sql, &params)?;
    let mut hedges = page(rows, limit, 0, hedge_from_row)?;
    mark_hedges(c, &mut hedges.items)?;
    Ok(hedges)
}

// ---------------------------------------------------------------------------------------------
// Events

fn event_from_row(r: &Row) -> Result<Event, StoreError> {
    Ok(Event {
        id: r.u64(0)?,
        time_ms: r.int(1)?,
        kind: EventKind::parse(r.text(2)?)
            .ok_or_else(|| StoreError::Corrupt("bad event kind".into()))?,
        login: r.opt_int(3)?.map(|l| Login(l as u64)),
        symbol: r.opt_text(4)?.map(str::to_owned),
        actor: r.text(5)?.to_owned(),
        reason: r.text(6)?.to_owned(),
        data: serde_json::from_str(r.text(7)?).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

pub fn events(c: &mut dyn Conn, q: &PageQuery) -> Result<Page<Event>, WriteError> {
    let mut sql =
        "SELECT id, time_ms, kind, login, symbol, actor, reason, data FROM events WHERE id > ?"
            .to_owned();
    let mut params = vec![Val::Int(q.after.unwrap_or(0).min(i64::MAX as u64) as i64)];
    if let Some(login) = q.login {
        sql.push_str(" AND login = ?");
        params.push(Val::Int(login.0.min(i64::MAX as u64) as i64));
    }
    if let Some(symbol) = &q.symbol {
        sql.push_str(" AND symbol = ?");
        params.push(Val::text(symbol));
    }
    if q.open == Some(true) {
        sql.push_str(" AND status IN ('open', 'partially_closed')");
    }
    let limit = clamp_limit(q.limit);
    sql.push_str(" ORDER BY id LIMIT ?");
    params.push(Val::Int(limit + 1));
    let rows = c.query(&sql, &params)?;
    page(rows, limit, 0, event_from_row)
}

// ---------------------------------------------------------------------------------------------
// Pauses

pub fn pauses(c: &mut dyn Conn) -> Result<Vec<Pause>, StoreError> {
    c.query(
        "SELECT login, symbol, actor, reason, since_ms, event_id FROM pauses ORDER BY event_id",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(Pause {
            login: r.opt_int(0)?.map(|l| Login(l as u64)),
            symbol: r.opt_text(1)?.map(str::to_owned),
            actor: r.text(2)?.to_owned(),
            reason: r.text(3)?.to_owned(),
            since_ms: r.int(4)?,
            event_id: r.u64(5)?,
        })
    })
    .collect()
}

/// Checks an operator action's idempotency key: 1 to [`positions::MAX_KEY_LEN`] visible ASCII
/// characters (it travels in a header).
fn check_action_key(key: &str) -> Result<(), Refusal> {
    if key.is_empty() {
        return Err(Refusal::invalid(
            "Idempotency-Key",
            "Idempotency-Key must not be empty",
        ));
    }
    if key.len() > positions::MAX_KEY_LEN {
        return Err(Refusal::invalid(
            "Idempotency-Key",
            format!(
                "Idempotency-Key is longer than {} characters",
                positions::MAX_KEY_LEN
            ),
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Refusal::invalid(
            "Idempotency-Key",
            "Idempotency-Key must be visible ASCII characters without spaces",
        ));
    }
    Ok(())
}

/// An operator action under its idempotency key: the first request with a key acts and stores its
/// answer with the key in the same transaction; the same key with the same action returns that
/// answer (`true`: a replay) and changes nothing, even when the command it created has finished
/// since; the same key with another action is refused. A refused action stores nothing, so its
/// key may be sent again.
pub fn keyed_action(
    c: &mut dyn Conn,
    actor: &str,
    key: &str,
    a: &ActionRequest,
    now: i64,
) -> Result<(ActionAck, bool), WriteError> {
    check_action_key(key)?;
    let payload = json(a)?;
    if let Some(answer) = first_answer(c, ACTION_ANSWER, key, &payload, "action")? {
        let ack = serde_json::from_str(&answer).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        return Ok((ack, true));
    }
    let ack = action(c, actor, a, now)?;
    c.execute(
        "INSERT INTO action_keys (key, actor, payload, response, event_id, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
        &[
            Val::text(key),
            Val::text(actor),
            Val::Text(payload),
            Val::Text(json(&ack)?),
            Val::Int(ack.event_id as i64),
            Val::Int(now),
        ],
    )?;
    Ok((ack, false))
}

fn action(
    c: &mut dyn Conn,
    actor: &str,
    a: &ActionRequest,
    now: i64,
) -> Result<ActionAck, WriteError> {
    if a.reason.len() > 1024 {
        return Err(Refusal::invalid("reason", "reason is too long").into());
    }
    if a.login.is_some_and(|l| l.0 > i64::MAX as u64) {
        return Err(Refusal::invalid("login", "login is out of range").into());
    }
    if let Some(symbol) = &a.symbol {
        check_symbol(symbol, "symbol")?;
    }
    // A field the action does not use is refused rather than ignored: the operator meant something.
    let unused = |field: &str, present: bool| -> Result<(), Refusal> {
        if present {
            Err(Refusal::invalid(
                field,
                format!("{field} is not used by {}", a.action.as_str()),
            ))
        } else {
            Ok(())
        }
    };
    let uses = |login: bool, symbol: bool, hedge: bool, map: bool, ratio: bool, field: bool| {
        unused("login", !login && a.login.is_some())?;
        unused("symbol", !symbol && a.symbol.is_some())?;
        unused("hedge_id", !hedge && a.hedge_id.is_some())?;
        unused("symbol_map", !map && a.symbol_map.is_some())?;
        unused("hedge_ratio", !ratio && a.hedge_ratio.is_some())?;
        unused("field", !field && a.field.is_some())
    };
    match a.action {
        ActionKind::Pause | ActionKind::Resume => {
            uses(true, true, false, false, false, false)?;
            let pause = a.action == ActionKind::Pause;
            let (event_id, changed) = set_pause(
                c,
                actor,
                pause,
                a.login,
                a.symbol.as_deref(),
                &a.reason,
                now,
            )?;
            Ok(ActionAck {
                event_id,
                changed,
                pauses: pauses(c)?,
                command: None,
                account: None,
            })
        }
        ActionKind::CloseHedge | ActionKind::RetryHedge => {
            uses(false, false, true, false, false, false)?;
            issue_command(c, actor, a, now)
        }
        ActionKind::SetSymbolMap => {
            uses(true, false, false, true, false, false)?;
            let map = a
                .symbol_map
                .as_ref()
                .ok_or_else(|| Refusal::invalid("symbol_map", "set_symbol_map needs symbol_map"))?;
            validate_symbol_map(map)?;
            set_override(c, actor, a, OverrideField::SymbolMap, Some(json(map)?), now)
        }
        ActionKind::SetHedgeRatio => {
            uses(true, false, false, false, true, false)?;
            let ratio = a.hedge_ratio.ok_or_else(|| {
                Refusal::invalid("hedge_ratio", "set_hedge_ratio needs hedge_ratio")
            })?;
            if ratio.is_sign_negative() || ratio.is_zero() || ratio > Decimal::from(1000) {
                return Err(Refusal::invalid(
                    "hedge_ratio",
                    "hedge_ratio must be positive and at most 1000",
                )
                .into());
            }
            let text = ratio.normalize().to_string();
            set_override(c, actor, a, OverrideField::HedgeRatio, Some(text), now)
        }
        ActionKind::ClearOverride => {
            uses(true, false, false, false, false, true)?;
            let field = a
                .field
                .ok_or_else(|| Refusal::invalid("field", "clear_override needs field"))?;
            set_override(c, actor, a, field, None, now)
        }
    }
}

/// Pauses (close-only) or resumes a scope; returns the event id (0 when nothing changed) and
/// whether anything changed.
fn set_pause(
    c: &mut dyn Conn,
    actor: &str,
    pause: bool,
    login: Option<Login>,
    symbol: Option<&str>,
    why: &str,
    now: i64,
) -> Result<(u64, bool), WriteError> {
    let scope = format!(
        "{}/{}",
        login.map_or("*".to_owned(), |l| l.to_string()),
        symbol.unwrap_or("*")
    );
    let exists = c
        .query_one(
            "SELECT event_id FROM pauses WHERE scope = ?",
            &[Val::text(&scope)],
        )?
        .is_some();
    let changed = if pause { !exists } else { exists };
    if !changed {
        return Ok((0, false));
    }
    let what = format!(
        "{}{}",
        login.map_or("all accounts".to_owned(), |l| format!("account {l}")),
        symbol.map_or(String::new(), |s| format!(", {s}"))
    );
    let reason = if pause {
        format!("{actor} paused hedging (close-only) for {what}")
    } else {
        format!("{actor} resumed hedging for {what}")
    } + &if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    };
    let mut data = ActionRequest::new(if pause {
        ActionKind::Pause
    } else {
        ActionKind::Resume
    });
    data.login = login;
    data.symbol = symbol.map(str::to_owned);
    data.reason = why.to_owned();
    let event_id = insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: if pause {
                EventKind::Paused
            } else {
                EventKind::Resumed
            },
            login,
            symbol,
            actor,
            reason: &reason,
            data: json(&data)?,
        },
    )?;
    if pause {
        c.execute(
            "INSERT INTO pauses (scope, login, symbol, actor, reason, since_ms, event_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            &[
                Val::text(&scope),
                Val::opt_int(login.map(|l| l.0 as i64)),
                Val::opt_text(symbol.map(str::to_owned)),
                Val::text(actor),
                Val::text(why),
                Val::Int(now),
                Val::Int(event_id as i64),
            ],
        )?;
    } else {
        c.execute("DELETE FROM pauses WHERE scope = ?", &[Val::text(&scope)])?;
    }
    Ok((event_id, true))
}

// ---------------------------------------------------------------------------------------------
// Operator overrides

fn validate_symbol_map(map: &SymbolMap) -> Result<(), Refusal> {
    for (field, text) in [
        ("symbol_map.prefix", &map.prefix),
        ("symbol_map.suffix", &map.suffix),
    ] {
        if text.len() > 32 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Refusal::invalid(
                field,
                format!("{field} must be at most 32 characters without spaces"),
            ));
        }
    }
    if map.explicit.len() > 10_000 {
        return Err(Refusal::invalid(
            "symbol_map.explicit",
            "too many explicit entries",
        ));
    }
    let mut canonical = std::collections::BTreeMap::new();
    for (account, name) in &map.explicit {
        check_symbol(account, "symbol_map.explicit")?;
        check_symbol(name, "symbol_map.explicit")?;
        if let Some(first) = canonical.insert(name.as_str(), account.as_str()) {
            return Err(Refusal::invalid(
                "symbol_map.explicit",
                format!("canonical symbol {name} is mapped twice ({first} and {account})"),
            ));
        }
    }
    Ok(())
}

/// Sets (`value` = Some) or clears an override of account `a.login`.
fn set_override(
    c: &mut dyn Conn,
    actor: &str,
    a: &ActionRequest,
    field: OverrideField,
    value: Option<String>,
    now: i64,
) -> Result<ActionAck, WriteError> {
    let login = a
        .login
        .ok_or_else(|| Refusal::invalid("login", format!("{} needs login", a.action.as_str())))?;
    let Some(before) = account(c, login)? else {
        return Err(Refusal::NotFound(format!("account {login} is not registered")).into());
    };
    if field == OverrideField::HedgeRatio
        && value.is_some()
        && before.registration.role != AccountRole::Client
    {
        return Err(Refusal::Conflict(format!(
            "account {login} is a {} account; a hedge ratio applies to client accounts",
            before.registration.role.as_str()
        ))
        .into());
    }
    let current = c
        .query_one(
            "SELECT value FROM account_overrides WHERE login = ? AND field = ?",
            &[Val::Int(login.0 as i64), Val::text(field.as_str())],
        )?
        .map(|r| r.text(0).map(str::to_owned))
        .transpose()?;
    if current == value {
        return Ok(ActionAck {
            event_id: 0,
            changed: false,
            pauses: pauses(c)?,
            command: None,
            account: Some(before),
        });
    }
    let reason = match &value {
        Some(v) => format!(
            "{actor} overrode the {} of account {login} with {v}",
            field.as_str().replace('_', " ")
        ),
        None => format!(
            "{actor} removed the {} override of account {login}",
            field.as_str().replace('_', " ")
        ),
    } + &if a.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", a.reason)
    };
    let event_id = insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: if value.is_some() {
                EventKind::OverrideSet
            } else {
                EventKind::OverrideCleared
            },
            login: Some(login),
            symbol: None,
            actor,
            reason: &reason,
            data: String::new(),
        },
    )?;
    match &value {
        Some(v) => {
            c.execute(
                "INSERT INTO account_overrides (login, field, value, actor, reason, since_ms, event_id) VALUES (?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (login, field) DO UPDATE SET value = excluded.value, actor = excluded.actor,
                   reason = excluded.reason, since_ms = excluded.since_ms, event_id = excluded.event_id",
                &[
                    Val::Int(login.0 as i64),
                    Val::text(field.as_str()),
                    Val::text(v),
                    Val::text(actor),
                    Val::text(&a.reason),
                    Val::Int(now),
                    Val::Int(event_id as i64),
                ],
            )?;
        }
        None => {
            c.execute(
                "DELETE FROM account_overrides WHERE login = ? AND field = ?",
                &[Val::Int(login.0 as i64), Val::text(field.as_str())],
            )?;
        }
    }
    let after = account(c, login)?.ok_or_else(|| StoreError::Db("account vanished".to_owned()))?;
    set_event_data(c, event_id, json(&after)?)?;
    Ok(ActionAck {
        event_id,
        changed: true,
        pauses: pauses(c)?,
        command: None,
        account: Some(after),
    })
}

// ---------------------------------------------------------------------------------------------
// Operator commands

const COMMAND_COLS: &str = "id, hedge_login, kind, hedge_id, symbol, account_symbol, plan_item_id, volume_units, status, actor, reason, result_retcode, result_message, created_ms, updated_ms";

fn command_from_row(r: &Row) -> Result<Command, StoreError> {
    Ok(Command {
        id: r.u64(0)?,
        hedge_login: Login(r.u64(1)?),
        kind: CommandKind::parse(r.text(2)?)
            .ok_or_else(|| StoreError::Corrupt("bad command kind".into()))?,
        hedge_id: r.u64(3)?,
        symbol: r.text(4)?.to_owned(),
        account_symbol: r.text(5)?.to_owned(),
        plan_item: r.opt_int(6)?.map(|v| v as u64),
        volume: units_volume(r.int(7)?),
        status: CommandStatus::parse(r.text(8)?)
            .ok_or_else(|| StoreError::Corrupt("bad command status".into()))?,
        actor: r.text(9)?.to_owned(),
        reason: r.text(10)?.to_owned(),
        result_retcode: r.opt_int(11)?.map(|v| Retcode(v as u32)),
        result_message: r.opt_text(12)?.map(str::to_owned),
        created_ms: r.int(13)?,
        updated_ms: r.int(14)?,
    })
}

pub fn command_by_id(c: &mut dyn Conn, id: u64) -> Result<Option<Command>, WriteError> {
    row_by_id(c, "commands", COMMAND_COLS, id, command_from_row)
}

pub fn commands(c: &mut dyn Conn, q: &CommandQuery) -> Result<Page<Command>, WriteError> {
    let mut sql = format!("SELECT {COMMAND_COLS} FROM commands WHERE id > ?");
    let mut params = vec![Val::Int(q.after.unwrap_or(0).min(i64::MAX as u64) as i64)];
    if let Some(login) = q.login {
        sql.push_str(" AND hedge_login = ?");
        params.push(Val::Int(login.0.min(i64::MAX as u64) as i64));
    }
    if let Some(status) = q.status {
        sql.push_str(" AND status = ?");
        params.push(Val::text(status.as_str()));
    }
    let limit = clamp_limit(q.limit);
    sql.push_str(" ORDER BY id LIMIT ?");
    params.push(Val::Int(limit + 1));
    let rows = c.query(&sql, &params)?;
    page(rows, limit, 0, command_from_row)
}

fn issue_command(
    c: &mut dyn Conn,
    actor: &str,
    a: &ActionRequest,
    now: i64,
) -> Result<ActionAck, WriteError> {
    let kind = match a.action {
        ActionKind::CloseHedge => CommandKind::CloseHedge,
        _ => CommandKind::RetryHedge,
    };
    let hedge_id = a.hedge_id.ok_or_else(|| {
        Refusal::invalid("hedge_id", format!("{} needs hedge_id", a.action.as_str()))
    })?;
    let Some(hedge) = hedge_by_id(c, hedge_id)? else {
        return Err(Refusal::NotFound(format!("hedge {hedge_id} does not exist")).into());
    };
    match (kind, hedge.status) {
        (CommandKind::CloseHedge, HedgeStatus::Closed) => {
            return Err(Refusal::Conflict(format!("hedge {hedge_id} is already closed")).into())
        }
        (CommandKind::CloseHedge, HedgeStatus::Failed) => {
            return Err(Refusal::Conflict(format!(
                "hedge {hedge_id} failed, nothing of it is open to close (retry it instead)"
            ))
            .into())
        }
        (CommandKind::RetryHedge, status) if status != HedgeStatus::Failed => {
            return Err(Refusal::Conflict(format!(
                "hedge {hedge_id} is {}, only a failed hedge can be retried",
                status.as_str()
            ))
            .into())
        }
        _ => {}
    }
    // A second click while the first command is still pending gets that command back, so the
    // hedger never receives the same order twice.
    let sql = format!(
        "SELECT {COMMAND_COLS} FROM commands WHERE hedge_id = ? AND kind = ? AND status = 'pending' ORDER BY id LIMIT 1"
    );
    if let Some(row) = c.query_one(&sql, &[Val::Int(hedge_id as i64), Val::text(kind.as_str())])? {
        return Ok(ActionAck {
            event_id: 0,
            changed: false,
            pauses: pauses(c)?,
            command: Some(command_from_row(&row)?),
            account: None,
        });
    }
    let volume = match kind {
        CommandKind::CloseHedge => hedge.open_volume,
        CommandKind::RetryHedge => hedge.volume,
    };
    let row = c
        .query_one(
            &format!(
                "INSERT INTO commands ({}) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, NULL, NULL, ?, ?) RETURNING id",
                COMMAND_COLS.trim_start_matches("id, ")
            ),
            &[
                Val::Int(hedge.hedge_login.0 as i64),
                Val::text(kind.as_str()),
                Val::Int(hedge_id as i64),
                Val::text(&hedge.symbol),
                Val::text(&hedge.account_symbol),
                Val::Int(to_i64(hedge.plan_item_id, "plan_item_id")?),
                Val::Int(volume_units(volume, "volume")?),
                Val::text(actor),
                Val::text(&a.reason),
                Val::Int(now),
                Val::Int(now),
            ],
        )?
        .ok_or_else(|| StoreError::Db("command insert returned no id".into()))?;
    let command =
        command_by_id(c, row.u64(0)?)?.ok_or_else(|| StoreError::Db("command vanished".into()))?;
    let reason = format!(
        "{actor} asked to {} hedge {hedge_id} ({} {} {} on {}), command {}",
        match kind {
            CommandKind::CloseHedge => "close",
            CommandKind::RetryHedge => "retry",
        },
        hedge.side,
        volume.normalize(),
        hedge.symbol,
        hedge.hedge_login,
        command.id
    ) + &if a.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", a.reason)
    };
    let event_id = insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: EventKind::CommandIssued,
            login: Some(hedge.hedge_login),
            symbol: Some(&hedge.symbol),
            actor,
            reason: &reason,
            data: json(&command)?,
        },
    )?;
    if kind == CommandKind::CloseHedge {
        // Close-only on that symbol, or mirror mode would open the hedge again right away.
        let why = format!("close of hedge {hedge_id} (command {})", command.id);
        set_pause(
            c,
            actor,
            true,
            Some(hedge.hedge_login),
            Some(&hedge.symbol),
            &why,
            now,
        )?;
    }
    Ok(ActionAck {
        event_id,
        changed: true,
        pauses: pauses(c)?,
        command: Some(command),
        account: None,
    })
}

/// Records what the hedger did with a command; returns the command and whether this is a repeat of
/// the result already stored.
pub fn command_result(
    c: &mut dyn Conn,
    actor: &str,
    id: u64,
    r: &CommandResult,
    now: i64,
) -> Result<(Command, bool), WriteError> {
    if r.status == CommandStatus::Pending {
        return Err(Refusal::invalid("status", "a result is done or failed").into());
    }
    if r.message.as_ref().is_some_and(|m| m.len() > 2048) {
        return Err(Refusal::invalid("message", "message is too long").into());
    }
    let Some(command) = command_by_id(c, id)? else {
        return Err(Refusal::NotFound(format!("command {id} does not exist")).into());
    };
    if command.status != CommandStatus::Pending {
        if command.status == r.status
            && command.result_retcode == r.retcode
            && command.result_message == r.message
        {
            return Ok((command, true));
        }
        return Err(Refusal::Conflict(format!(
            "command {id} already has the result {}",
            command.status.as_str()
        ))
        .into());
    }
    c.execute(
        "UPDATE commands SET status = ?, result_retcode = ?, result_message = ?, updated_ms = ? WHERE id = ?",
        &[
            Val::text(r.status.as_str()),
            Val::opt_int(r.retcode.map(|v| i64::from(v.0))),
            Val::opt_text(r.message.clone()),
            Val::Int(now),
            Val::Int(id as i64),
        ],
    )?;
    let stored = command_by_id(c, id)?.ok_or_else(|| StoreError::Db("command vanished".into()))?;
    let reason = format!(
        "command {id} ({} hedge {}) {}{}{}",
        command.kind.as_str().replace('_', " "),
        command.hedge_id,
        r.status.as_str(),
        r.retcode
            .map_or(String::new(), |v| format!(", retcode {}", v.0)),
        r.message
            .as_deref()
            .filter(|m| !m.is_empty())
            .map_or(String::new(), |m| format!(": {m}"))
    );
    insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: if r.status == CommandStatus::Done {
                EventKind::CommandDone
            } else {
                EventKind::CommandFailed
            },
            login: Some(command.hedge_login),
            symbol: Some(&command.symbol),
            actor,
            reason: &reason,
            data: json(&stored)?,
        },
    )?;
    Ok((stored, false))
}

// ---------------------------------------------------------------------------------------------
// Legacy book

pub fn legacy_report(
    c: &mut dyn Conn,
    actor: &str,
    symbol: &str,
    side: Side,
    volume: Volume,
    now: i64,
) -> Result<u64, WriteError> {
    let units = volume_units(volume, "volume")?;
    let signed = units * i64::from(side.sign());
    let reason = format!("legacy new_position {side} {} {symbol}", volume.normalize());
    let event_id = insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: EventKind::LegacyPosition,
            login: None,
            symbol: Some(symbol),
            actor,
            reason: &reason,
            data: serde_json::json!({"symbol": symbol, "side": side.code(), "volume": volume})
                .to_string(),
        },
    )?;
    c.send(
        "INSERT INTO legacy_book (symbol, first_seen, net_units) VALUES (?, ?, ?)
         ON CONFLICT (symbol) DO UPDATE SET net_units = legacy_book.net_units + excluded.net_units",
        &[
            Val::text(symbol),
            Val::Int(event_id as i64),
            Val::Int(signed),
        ],
    )?;
    Ok(event_id)
}

pub fn legacy_book(c: &mut dyn Conn) -> Result<Vec<(String, i64)>, StoreError> {
    c.query(
        "SELECT symbol, net_units FROM legacy_book WHERE net_units <> 0 ORDER BY first_seen",
        &[],
    )?
    .iter()
    .map(|r| Ok((r.text(0)?.to_owned(), r.int(1)?)))
    .collect()
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
        let before: Vec<_> = MIGRATIONS.iter().copied().filter(|(v, _)| *v < 5).collect();
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
                10,
            )
        });

        migrate(c).unwrap();

        let schema: Vec<String> = c
            .query("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL", &[])
            .unwrap()
            .iter()
            .map(|r| r.text(0).unwrap().to_owned())
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
        let units = volume_units(Volume(Decimal::new(5, 2)), "volume").unwrap();
        assert_eq!(legacy_book(c).unwrap(), vec![("EURUSD".to_owned(), -units)]);

        // Running the migrations again changes nothing.
        migrate(c).unwrap();
        assert_eq!(max_event_id(c).unwrap(), 5);
    }
}
