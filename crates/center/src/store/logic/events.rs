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

/// The newest event id; in a read on PostgreSQL, no newer than the event horizon (an id above it
/// may still be joined by a lower one committed later, so it is not yet the log's head).
pub fn max_event_id(c: &mut dyn Conn) -> Result<u64, StoreError> {
    let row = c.query_one("SELECT COALESCE(MAX(id), 0) FROM events", &[])?;
    let max = row.map_or(Ok(0), |r| r.u64(Single::value))?;
    Ok(c.event_horizon().map_or(max, |horizon| max.min(horizon)))
}

/// The common table expressions that take a transaction's in-flight marker (`held`), the first
/// parameter being the schema's marker tag: see [`DRAW_EVENT_IDS`].
macro_rules! in_flight_marker {
    () => {
        "WITH top AS MATERIALIZED (
        SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS id FROM events_id_seq),
    marker AS MATERIALIZED (
        SELECT (?::bigint << 16) | (id >> 32) AS high, id & 4294967295 AS low FROM top),
    held AS MATERIALIZED (
        SELECT pg_advisory_xact_lock_shared(
            (high - CASE WHEN high >= 2147483648 THEN 4294967296 ELSE 0 END)::int4,
            (low - CASE WHEN low >= 2147483648 THEN 4294967296 ELSE 0 END)::int4) FROM marker)"
    };
}

/// PostgreSQL: draws the second parameter's number of event ids; the first is the schema's marker
/// tag ([`Conn::marker_tag`]). Ahead of drawing, the transaction takes its in-flight marker: a
/// shared advisory lock (two-`int4` form) holding the last id drawn so far, below every id it
/// draws, until the transaction ends. Readers stop below the smallest marker held (the event
/// horizon, `postgres::HORIZON_SQL`), so an id committed out of order is never passed. Shared:
/// writers never wait for each other's markers. The sequence must not cache values (`CACHE 1`,
/// `BIGSERIAL`'s default), or `last_value` would run ahead of the ids sessions hand out.
pub(super) const DRAW_EVENT_IDS: &str = concat!(
    in_flight_marker!(),
    " SELECT nextval('events_id_seq') FROM held, generate_series(1, ?::bigint)"
);

/// PostgreSQL: [`DRAW_EVENT_IDS`] for a batch of reports, sent with the batch's first reads: the
/// parameters are the marker tag, how many distinct idempotency keys the batch's reports carry,
/// and those keys. It draws one id per key not answered yet (a report resent gets its first
/// answer and writes nothing, so it costs no id and leaves no gap in the log).
pub(super) const DRAW_REPORT_IDS: &str = concat!(
    in_flight_marker!(),
    ",
    wanted AS MATERIALIZED (
        SELECT ?::bigint - (SELECT COUNT(*) FROM idempotency WHERE key = ANY(?::text[])) AS n)
    SELECT nextval('events_id_seq') FROM held, wanted, generate_series(1, wanted.n)"
);

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
    let row = match c.dialect() {
        // The rowid SQLite itself would give: the newest event is never deleted
        // ([`prune_status_events`]), so the largest id is the largest ever handed out.
        Dialect::Sqlite => c.query_one("SELECT COALESCE(MAX(id), 0) + 1 FROM events", &[])?,
        Dialect::Postgres => {
            let tag = c.marker_tag();
            c.query_one(DRAW_EVENT_IDS, &[Val::Int(tag), Val::Int(1)])?
        }
    };
    let row = row.ok_or_else(|| StoreError::Corrupt("no next event id".into()))?;
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
    if let Some(horizon) = c.event_horizon() {
        // Past the horizon a lower id may still commit: the page ends before it.
        sql.push_str(" AND id <= ?");
        params.push(Val::Int(horizon.min(i64::MAX as u64) as i64));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres;

    fn status(reason: &str) -> NewEvent<'_> {
        NewEvent {
            time_ms: 1,
            kind: EventKind::AccountStatus,
            login: None,
            symbol: None,
            actor: "test",
            reason,
            data: "{}".into(),
        }
    }

    /// The ids a reader finds in the log, and the head it reports.
    fn read(c: &mut dyn Conn) -> (Vec<u64>, u64) {
        in_read_tx(c, |c| {
            let page = events(c, &PageQuery::default())?;
            let ids = page.items.iter().map(|e| e.id.get()).collect();
            Ok((ids, max_event_id(c)?))
        })
        .unwrap()
    }

    /// Two writers: the first draws a lower id and stays open while the second draws a higher one
    /// and commits. A reader finds neither (the higher one is past the horizon) until the first
    /// commits; then both, in order. A draw rolled back leaves a gap that holds nobody back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_stop_below_an_id_in_flight() {
        let url = std::env::var("HEDGE_TEST_PG")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned());
        let schema = format!("hedge_horizon_{:08x}", rand::random::<u32>());
        let opened = postgres::open(&url, Some(&schema), 2, 1, migrate)
            .await
            .expect("PostgreSQL is required: 127.0.0.1:5432, database `test`, or HEDGE_TEST_PG");
        let mut writers = opened.writers;
        let (mut low, mut high) = (writers.remove(0), writers.remove(0));
        let mut reader = opened.readers.into_iter().next().unwrap();
        tokio::task::spawn_blocking(move || {
            let (low, high, reader) = (low.as_mut(), high.as_mut(), reader.as_mut());
            low.control("BEGIN").unwrap();
            let low_id = next_event_id(low).unwrap();
            high.control("BEGIN").unwrap();
            let high_id = insert_event(high, status("high")).unwrap();
            high.control("COMMIT").unwrap();
            assert!(low_id < high_id);
            assert_eq!(
                read(reader),
                (vec![], low_id - 1),
                "read past an id in flight"
            );

            write_event(low, low_id, status("low")).unwrap();
            low.control("COMMIT").unwrap();
            assert_eq!(read(reader), (vec![low_id, high_id], high_id));

            low.control("BEGIN").unwrap();
            let dropped = next_event_id(low).unwrap();
            high.control("BEGIN").unwrap();
            let after_gap = insert_event(high, status("after the gap")).unwrap();
            high.control("COMMIT").unwrap();
            assert!(dropped < after_gap);
            assert_eq!(read(reader).1, high_id, "the draw in flight holds the head");
            low.batch("ROLLBACK").unwrap();
            assert_eq!(read(reader), (vec![low_id, high_id, after_gap], after_gap));
            low.batch(&format!("DROP SCHEMA {schema} CASCADE")).unwrap();
        })
        .await
        .unwrap();
    }
}
