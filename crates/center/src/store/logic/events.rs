//! The event log: every stored change is one event, written whole in the change's transaction.

use super::*;

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
    row.map_or(Ok(0), |r| r.u64(Single::value))
}

/// An event to write; `data` is the changed object as JSON.
pub(super) struct NewEvent<'a> {
    pub(super) time_ms: i64,
    pub(super) kind: EventKind,
    pub(super) login: Option<Login>,
    pub(super) symbol: Option<&'a str>,
    pub(super) actor: &'a str,
    pub(super) reason: &'a str,
    pub(super) data: String,
}

/// Takes the id of the next event. The object an event carries may record that event's own id (a
/// position's `last_event_id`, a hedge's `event_id`): such a change takes the id first, is written
/// with it, and its event is then written once, whole, by [`write_event`].
pub(super) fn next_event_id(c: &mut dyn Conn) -> Result<u64, StoreError> {
    let sql = match c.dialect() {
        // The rowid SQLite itself would give: the newest event is never deleted
        // ([`prune_status_events`]), so the largest id is the largest ever handed out.
        Dialect::Sqlite => "SELECT COALESCE(MAX(id), 0) + 1 FROM events",
        Dialect::Postgres => "SELECT nextval(pg_get_serial_sequence('events', 'id'))",
    };
    let row = c
        .query_one(sql, &[])?
        .ok_or_else(|| StoreError::Corrupt("no next event id".into()))?;
    row.u64(Single::value)
}

/// Writes event `id`, taken by [`next_event_id`] in this transaction.
pub(super) fn write_event(c: &mut dyn Conn, id: u64, e: NewEvent<'_>) -> Result<(), StoreError> {
    c.send(
        "INSERT INTO events (id, time_ms, kind, login, symbol, actor, reason, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            Val::Int(id as i64),
            Val::Int(e.time_ms),
            Val::text(e.kind.as_str()),
            Val::opt_int(e.login.map(|l| l.0 as i64)),
            Val::opt_text(e.symbol.map(str::to_owned)),
            Val::text(e.actor),
            Val::text(e.reason),
            Val::Text(e.data),
        ],
    )
}

/// Writes an event whose data does not name the event; returns its id.
pub(super) fn insert_event(c: &mut dyn Conn, e: NewEvent<'_>) -> Result<u64, StoreError> {
    let id = next_event_id(c)?;
    write_event(c, id, e)?;
    Ok(id)
}

/// Readiness probe: inserts an event row and rolls it back, so it proves the write path
/// accepts an event without leaving one. Id 0 is never an event's (ids start at 1), so no id
/// is taken from PostgreSQL's sequence and the log keeps no gap.
pub fn probe_write(c: &mut dyn Conn) -> Result<(), WriteError> {
    c.control("SAVEPOINT probe")?;
    let insert = c.execute(
        "INSERT INTO events (id, time_ms, kind, login, symbol, actor, reason, data) VALUES (0, 0, ?, NULL, NULL, 'readyz', 'probe', '{}')",
        &[Val::text(EventKind::AccountStatus.as_str())],
    );
    let undo = c
        .control("ROLLBACK TO SAVEPOINT probe")
        .and_then(|_| c.control("RELEASE SAVEPOINT probe"));
    insert?;
    undo?;
    Ok(())
}

columns! {
    /// An event.
    pub(super) EventCol { id, time_ms, kind, login, symbol, actor, reason, data }
}

pub(super) fn event_from_row(r: &Row) -> Result<Event, StoreError> {
    Ok(Event {
        id: EventId(r.u64(EventCol::id)?),
        time_ms: r.int(EventCol::time_ms)?,
        kind: EventKind::parse(r.text(EventCol::kind)?)
            .ok_or_else(|| StoreError::Corrupt("bad event kind".into()))?,
        login: r.opt_int(EventCol::login)?.map(|l| Login(l as u64)),
        symbol: r.opt_text(EventCol::symbol)?.map(str::to_owned),
        actor: r.text(EventCol::actor)?.to_owned(),
        reason: r.text(EventCol::reason)?.to_owned(),
        data: serde_json::from_str(r.text(EventCol::data)?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

pub fn events(c: &mut dyn Conn, q: &PageQuery) -> Result<Page<Event>, StoreError> {
    let mut sql = format!("SELECT {} FROM events WHERE id > ?", EventCol::LIST);
    let mut params = vec![Val::Int(q.after.unwrap_or(0).min(i64::MAX as u64) as i64)];
    if let Some(login) = q.login {
        sql.push_str(" AND login = ?");
        params.push(Val::Int(login.0.min(i64::MAX as u64) as i64));
    }
    if let Some(symbol) = &q.symbol {
        sql.push_str(" AND symbol = ?");
        params.push(Val::text(symbol));
    }
    // `open` filters hedges only; events have no status.
    let limit = clamp_limit(q.limit);
    sql.push_str(" ORDER BY id LIMIT ?");
    params.push(Val::Int(limit + 1));
    let rows = c.query(&sql, &params)?;
    page(rows, limit, EventCol::id, event_from_row)
}
