//! Position reports, a batch at a time: what the writer runs for the reports queued together.
//!
//! Entry point: [`report_batch`], inside a transaction begun by [`begin_reports`] and committed by
//! the caller. The rules are those of one report after another, applied in memory in the order the
//! reports came (idempotency by key and payload, [`positions::apply`], the bound on exposure
//! totals), so a batch stores exactly what its reports sent one by one would have, and a refused
//! report writes nothing (no savepoint needed). On PostgreSQL a batch is two round trips and seven
//! statements whatever its size ([`postgres_batch`]):
//!
//! 1. `BEGIN`, lock the batch's positions ([`Lock::Position`], in key order), read their stored
//!    answers and rows, the exposure totals of their (account, symbol) pairs, and draw one event id
//!    per idempotency key not answered yet (with the in-flight marker, [`DRAW_REPORT_IDS`]);
//! 2. the reports decided in memory, every table's rows written by one statement, and the caller's
//!    `COMMIT`.
//!
//! SQLite, which has no round trips to save, reads only the totals the batch changes, once it is
//! decided which ([`sqlite_batch`]).
//!
//! No lock is global: batches on different positions run side by side to their commits, on one
//! instance or several. The position lock makes the rows read in step 1 still current at the
//! commit: nothing else writes a position, its volumes or a report's answer without it. An
//! exposure total, shared by every position of an (account, symbol), is only ever added to
//! (`net_units + delta`, which commutes), so it needs no lock: on PostgreSQL each writing session
//! adds to its own shard row of the total (`shard_pg_exposures`), so two batches of one account
//! do not even wait for each other's row. The total is read only for its bound, the largest total
//! the center keeps, which two batches racing at that bound could pass together; the sum then
//! fails to read as a total (an error, never a wrong figure).

use super::*;
use std::collections::{BTreeMap, HashMap};

/// A report to store, as the writer received it.
#[derive(Clone, Debug)]
pub struct ReportRequest {
    pub actor: String,
    pub report: PositionReport,
    pub now_ms: i64,
}

/// A report's answer: the acknowledgement (JSON, exactly as first given) and whether it is a
/// replay; or why it was refused.
pub type ReportOutcome = Result<(String, bool), WriteError>;

/// What a batch did: one outcome per request, in order, the newest event id it wrote, and the
/// exposure totals it changed.
pub struct ReportBatch {
    pub outcomes: Vec<ReportOutcome>,
    pub head: Option<u64>,
    /// Every exposure total the batch changed, as stored once it commits (SQLite only: on
    /// PostgreSQL a total is the sum of shards that other sessions add to as well).
    pub exposures: Vec<ExposureTotal>,
}

/// A client's exposure total in one symbol as a batch left it: what the writer's held plan inputs
/// take in place of a read of the table ([`crate::plan::PlanInputs::exposures`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExposureTotal {
    /// The account's login and the canonical symbol.
    pub key: (u64, String),
    /// The stored total in 10^-8 units; `None` when the batch created its row (no total was
    /// stored before it), so where the row stands among the others is for a read to say.
    pub net_units: Option<i64>,
    /// The id of the batch's last event that changed it.
    pub last_event_id: u64,
}

type PosKey = (u64, u64);
type ExposureKey = (u64, String);

/// The columns a position's write sets, the key last; the values come from [`position_values`].
const POSITION_SET: &[Col] = &[
    ("symbol", Ty::Text),
    ("account_symbol", Ty::Text),
    ("side", Ty::Text),
    ("volume_units", Ty::Int),
    ("max_units", Ty::Int),
    ("price", Ty::Text),
    ("sl", Ty::Text),
    ("tp", Ty::Text),
    ("magic", Ty::Int),
    ("comment", Ty::Text),
    ("status", Ty::Text),
    ("opened_ms", Ty::Int),
    ("updated_ms", Ty::Int),
    ("last_seq", Ty::Int),
    ("last_event_id", Ty::Int),
    ("exit_comment", Ty::Text),
    ("exit_units", Ty::Int),
    ("exit_notional", Ty::Text),
    ("exit_price", Ty::Text),
    ("realized_profit", Ty::Text),
    ("realized_commission", Ty::Text),
    ("realized_swap", Ty::Text),
    ("realized_fee", Ty::Text),
];
const POSITION_KEY: &[Col] = &[("login", Ty::Int), ("position_id", Ty::Int)];

const EVENT_COLS: &[Col] = &[
    ("id", Ty::Int),
    ("time_ms", Ty::Int),
    ("kind", Ty::Text),
    ("login", Ty::Int),
    ("symbol", Ty::Text),
    ("actor", Ty::Text),
    ("reason", Ty::Text),
    ("data", Ty::Text),
];

const VOLUME_COLS: &[Col] = &[
    ("login", Ty::Int),
    ("position_id", Ty::Int),
    ("event_id", Ty::Int),
    ("kind", Ty::Text),
    ("side", Ty::Text),
    ("volume_units", Ty::Int),
    ("time_ms", Ty::Int),
];

const EXPOSURE_COLS: &[Col] = &[
    ("login", Ty::Int),
    ("symbol", Ty::Text),
    ("net_units", Ty::Int),
    ("last_event_id", Ty::Int),
];

const ANSWER_COLS: &[Col] = &[
    ("key", Ty::Text),
    ("payload", Ty::Text),
    ("response", Ty::Text),
    ("event_id", Ty::Int),
];

/// `p`'s values in [`POSITION_SET`] order (`realized`: what its exit deals realized, `None`
/// unknown), then its key.
fn position_values(p: &Position, realized: Option<&Realized>) -> Result<Vec<Val>, WriteError> {
    let money = |m: Option<Money>| Val::opt_text(m.map(|m| m.0.normalize().to_string()));
    Ok(vec![
        Val::text(&p.symbol),
        Val::text(&p.account_symbol),
        Val::text(p.side.as_str()),
        Val::Int(lots(p.volume, "volume")?.units()),
        Val::Int(lots(p.max_volume, "volume")?.units()),
        price_text(p.price),
        price_text(p.sl),
        price_text(p.tp),
        Val::Int(to_i64(p.magic.0, "magic")?),
        Val::text(&p.comment),
        Val::text(p.status.as_str()),
        Val::Int(p.opened_ms),
        Val::Int(p.updated_ms),
        Val::Int(p.last_seq as i64),
        Val::Int(p.last_event_id.get() as i64),
        Val::opt_text(p.exit_comment.clone()),
        Val::opt_int(realized.map(|r| r.units)),
        money(realized.map(|r| Money(r.notional))),
        price_text(realized.and_then(|r| r.price)),
        money(realized.map(|r| r.profit)),
        money(realized.map(|r| r.commission)),
        money(realized.map(|r| r.swap)),
        money(realized.map(|r| r.fee)),
        Val::Int(p.login.0 as i64),
        Val::Int(p.position_id.0 as i64),
    ])
}

/// The payloads a report's answer may have been stored under: its own, and when it carries an exit
/// deal, the same report without it (a center from before exit deals stored it without the field
/// it did not know: resent after the upgrade it is still the same report).
struct Payloads {
    own: String,
    without_exit: Option<String>,
}

/// The price digits of the symbol `report` is about, from the account's registered specs (by the
/// account's own name of it); `None` when the account registered no spec for it.
fn price_digits(
    registration: Option<&AccountRegistration>,
    report: &PositionReport,
) -> Option<u32> {
    let name = if report.account_symbol.is_empty() {
        &report.symbol
    } else {
        &report.account_symbol
    };
    registration?
        .symbols
        .iter()
        .find(|s| &s.name == name)
        .map(|s| s.digits)
}

/// A report's fields checked, and its payload as stored with its answer.
fn check(r: &ReportRequest) -> Result<Payloads, WriteError> {
    positions::validate(&r.report)?;
    to_i64(r.report.magic.0, "magic")?;
    let without_exit = match r.report.exit {
        Some(_) => Some(json(&PositionReport {
            exit: None,
            ..r.report.clone()
        })?),
        None => None,
    };
    Ok(Payloads {
        own: json(&r.report)?,
        without_exit,
    })
}

/// Stores one report (a batch of one); for tests that drive the rules without the writer.
#[cfg(test)]
pub(super) fn report(
    c: &mut dyn Conn,
    actor: &str,
    report: &PositionReport,
    now: i64,
) -> Result<(String, bool), WriteError> {
    let request = ReportRequest {
        actor: actor.to_owned(),
        report: report.clone(),
        now_ms: now,
    };
    let mut batch = report_batch(c, std::slice::from_ref(&request))?;
    batch
        .outcomes
        .pop()
        .unwrap_or_else(|| Err(StoreError::Internal("no outcome".into()).into()))
}

/// Stores `requests` in the current transaction (see the module's documentation). Fails as a
/// whole only when the database does; each request's refusal is its own outcome.
pub fn report_batch(
    c: &mut dyn Conn,
    requests: &[ReportRequest],
) -> Result<ReportBatch, StoreError> {
    let checked: Vec<Result<Payloads, WriteError>> = requests.iter().map(check).collect();
    let valid: Vec<&PositionReport> = requests
        .iter()
        .zip(&checked)
        .filter_map(|(r, p)| p.as_ref().ok().map(|_| &r.report))
        .collect();

    match c.dialect() {
        Dialect::Sqlite => sqlite_batch(c, requests, &checked, &valid),
        Dialect::Postgres => postgres_batch(c, requests, &checked, &valid),
    }
}

/// SQLite (one writer, no round trips): the positions, then only the totals the batch changes,
/// then its writes.
fn sqlite_batch(
    c: &mut dyn Conn,
    requests: &[ReportRequest],
    checked: &[Result<Payloads, WriteError>],
    valid: &[&PositionReport],
) -> Result<ReportBatch, StoreError> {
    // 1. The positions, their rows and the answers stored under the batch's keys.
    let stored = read_stored(c, valid, false)?;
    let known = Known {
        answers: &stored.answers,
        positions: &stored.positions,
        registrations: &stored.registrations,
    };

    // 2. How many events the batch writes, and which totals it changes; then those totals and the
    // next id.
    let counted = decide(requests, checked, &known, None, &mut Ids::Count(0))?;
    if counted.used == 0 {
        return Ok(ReportBatch {
            outcomes: counted.outcomes,
            head: None,
            exposures: Vec::new(),
        });
    }
    let (totals, mut ids) = read_totals_and_ids(c, &counted)?;

    // 3. The batch as it is decided, written.
    let decided = decide(requests, checked, &known, Some(&totals), &mut ids)?;
    write_rows(c, &decided.writes, &stored.positions)?;
    // As the upsert of `write_rows` adds them: the stored total plus the batch's change.
    let exposures = decided
        .writes
        .exposures
        .into_iter()
        .map(|(key, (delta, last_event_id))| ExposureTotal {
            net_units: totals.get(&key).and_then(|t| t.checked_add(delta)),
            key,
            last_event_id,
        })
        .collect();
    Ok(ReportBatch {
        outcomes: decided.outcomes,
        head: decided.writes.head,
        exposures,
    })
}

/// PostgreSQL, two round trips: the positions locked, their rows, the answers under the batch's
/// keys, the totals of every (account, symbol) a report of the batch is about and the event ids
/// (one per key not answered yet) in the first; the writes, in one statement, and the commit in the
/// second. Each statement costs the server its executor's set-up whatever its rows, so reading a
/// total the batch turns out not to change costs less than a round trip of its own.
fn postgres_batch(
    c: &mut dyn Conn,
    requests: &[ReportRequest],
    checked: &[Result<Payloads, WriteError>],
    valid: &[&PositionReport],
) -> Result<ReportBatch, StoreError> {
    let stored = read_stored(c, valid, true)?;
    let known = Known {
        answers: &stored.answers,
        positions: &stored.positions,
        registrations: &stored.registrations,
    };
    let mut ids = Ids::Drawn {
        left: stored.ids.iter().copied().collect(),
        short: 0,
    };
    let mut decided = decide(requests, checked, &known, Some(&stored.totals), &mut ids)?;
    if let Ids::Drawn { short, .. } = ids {
        if short > 0 {
            // More ids than keys not answered: a key refused earlier in the batch and used again,
            // or an answer gone since the draw counted it. Rare; the ids drawn first stay unused
            // (a gap, as a rolled-back write leaves) and the batch is decided again with new ones.
            let mut drawn = draw_ids(c, decided.used)?;
            drawn.sort_unstable();
            let mut more = Ids::Drawn {
                left: drawn.into(),
                short: 0,
            };
            decided = decide(requests, checked, &known, Some(&stored.totals), &mut more)?;
            if matches!(more, Ids::Drawn { short, .. } if short > 0) {
                return Err(StoreError::Internal(
                    "a report batch ran out of event ids".into(),
                ));
            }
        }
    }
    if decided.used > 0 {
        write_rows_at_once(c, &decided.writes, &stored.positions)?;
    }
    Ok(ReportBatch {
        outcomes: decided.outcomes,
        head: decided.writes.head,
        // A total there is the sum of shards that other sessions add to as well.
        exposures: Vec::new(),
    })
}

/// PostgreSQL: draws `n` event ids, with the in-flight marker, in a round trip of its own.
fn draw_ids(c: &mut dyn Conn, n: usize) -> Result<Vec<u64>, StoreError> {
    let tag = c.marker_tag();
    c.query(DRAW_EVENT_IDS, &[Val::Int(tag), Val::Int(n as i64)])?
        .iter()
        .map(|r| r.u64(Single::value))
        .collect()
}

/// What the batch's reports find stored: the answers under their keys, their positions and the
/// registrations of the accounts whose reports carry an exit deal (its price's digits).
#[derive(Default)]
struct Stored {
    answers: HashMap<String, (String, String)>,
    positions: HashMap<PosKey, (Position, Option<Realized>)>,
    registrations: HashMap<u64, AccountRegistration>,
    /// PostgreSQL: the totals of every (account, symbol) of the reports, and the ids drawn.
    totals: HashMap<ExposureKey, i64>,
    ids: Vec<u64>,
}

/// Locks the positions of the `valid` reports (PostgreSQL) and reads what they find stored, in one
/// round trip; `with_totals_and_ids` (PostgreSQL): the totals of their (account, symbol) pairs and
/// the event ids too.
fn read_stored(
    c: &mut dyn Conn,
    valid: &[&PositionReport],
    with_totals_and_ids: bool,
) -> Result<Stored, StoreError> {
    let dialect = c.dialect();
    let mut positions_wanted: Vec<PosKey> =
        valid.iter().map(|r| (r.login.0, r.position_id.0)).collect();
    positions_wanted.sort_unstable();
    positions_wanted.dedup();
    let mut keys_wanted: Vec<&str> = valid.iter().map(|r| r.idempotency_key.as_str()).collect();
    keys_wanted.sort_unstable();
    keys_wanted.dedup();
    let locks: Vec<Lock> = positions_wanted
        .iter()
        .map(|&(l, p)| Lock::Position(Login(l), PositionId(p)))
        .collect();
    c.lock(&locks)?;
    let mut reads = Reads::default();
    let answers_read = reads.keyed(
        dialect,
        &format!("key, {}", AnswerCol::LIST),
        REQUEST_ANSWER,
        &[("key", Ty::Text)],
        &keys_wanted
            .iter()
            .map(|k| vec![Val::text(*k)])
            .collect::<Vec<_>>(),
    )?;
    let positions_read = reads.keyed(
        dialect,
        PositionCol::LIST,
        "positions",
        POSITION_KEY,
        &positions_wanted
            .iter()
            .map(|&(l, p)| vec![Val::Int(l as i64), Val::Int(p as i64)])
            .collect::<Vec<_>>(),
    )?;
    // The registrations of the accounts whose reports carry an exit deal: its price's digits.
    let mut logins_wanted: Vec<u64> = valid
        .iter()
        .filter(|r| r.exit.is_some())
        .map(|r| r.login.0)
        .collect();
    logins_wanted.sort_unstable();
    logins_wanted.dedup();
    let registrations_read = reads.keyed(
        dialect,
        "login, registration",
        "accounts",
        &[("login", Ty::Int)],
        &logins_wanted
            .iter()
            .map(|l| vec![Val::Int(*l as i64)])
            .collect::<Vec<_>>(),
    )?;
    // After the position locks (sent first, taken first): the ids' in-flight marker is then never
    // held while the batch waits for a position.
    let (totals_read, ids_read) = if with_totals_and_ids {
        let mut pairs: Vec<(u64, &str)> = valid
            .iter()
            .map(|r| (r.login.0, r.symbol.as_str()))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let totals_read = reads.plain(
            TOTALS_SQL,
            vec![
                Val::IntArray(pairs.iter().map(|(l, _)| Some(*l as i64)).collect()),
                Val::TextArray(pairs.iter().map(|(_, s)| Some((*s).to_owned())).collect()),
            ],
        );
        let ids_read = reads.plain(
            DRAW_REPORT_IDS,
            vec![
                Val::Int(c.marker_tag()),
                Val::Int(keys_wanted.len() as i64),
                Val::TextArray(keys_wanted.iter().map(|k| Some((*k).to_owned())).collect()),
            ],
        );
        (Some(totals_read), Some(ids_read))
    } else {
        (None, None)
    };
    let mut read = reads.run(c)?;
    let mut stored = Stored::default();
    if let Some(totals_read) = totals_read {
        for r in &read[totals_read] {
            stored
                .totals
                .insert((r.u64(0usize)?, r.text(1usize)?.to_owned()), r.int(2usize)?);
        }
    }
    if let Some(ids_read) = ids_read {
        stored.ids = read[ids_read]
            .iter()
            .map(|r| r.u64(Single::value))
            .collect::<Result<_, _>>()?;
        stored.ids.sort_unstable();
    }
    for r in &read[registrations_read] {
        let registration: AccountRegistration = serde_json::from_str(r.text(1usize)?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        stored.registrations.insert(r.u64(0usize)?, registration);
    }
    for r in &read[answers_read] {
        stored.answers.insert(
            r.text(0usize)?.to_owned(),
            (
                r.text(AnswerCol::payload.after(1))?.to_owned(),
                r.text(AnswerCol::response.after(1))?.to_owned(),
            ),
        );
    }
    for r in std::mem::take(&mut read[positions_read]) {
        let p = position_from_row(&r)?;
        let realized = realized_from_row(&r)?;
        stored
            .positions
            .insert((p.login.0, p.position_id.0), (p, realized));
    }
    Ok(stored)
}

/// PostgreSQL: the totals of the (account, symbol) pairs given as two arrays, each the sum of its
/// shards as committed now; no lock (see the module's documentation).
const TOTALS_SQL: &str = "SELECT login, symbol, SUM(net_units)::bigint FROM exposures
   WHERE (login, symbol) IN (SELECT * FROM unnest(?::bigint[], ?::text[]))
   GROUP BY login, symbol";

/// SQLite: the stored totals the batch changes (`counted.touched`) and the next event id.
fn read_totals_and_ids(
    c: &mut dyn Conn,
    counted: &Decided,
) -> Result<(HashMap<ExposureKey, i64>, Ids), StoreError> {
    let dialect = c.dialect();
    let mut reads = Reads::default();
    let totals_read = reads.keyed(
        dialect,
        "login, symbol, net_units",
        "exposures",
        &[("login", Ty::Int), ("symbol", Ty::Text)],
        &counted
            .touched
            .iter()
            .map(|(l, s)| vec![Val::Int(*l as i64), Val::text(s)])
            .collect::<Vec<_>>(),
    )?;
    // One writer: the ids after the largest, as [`next_event_id`] gives them.
    let ids_read = reads.plain("SELECT COALESCE(MAX(id), 0) + 1 FROM events", vec![]);
    let read = reads.run(c)?;
    let mut totals = HashMap::new();
    for r in &read[totals_read] {
        totals.insert((r.u64(0usize)?, r.text(1usize)?.to_owned()), r.int(2usize)?);
    }
    let ids = Ids::Next(
        read[ids_read]
            .first()
            .ok_or_else(|| StoreError::Corrupt("no next event id".into()))?
            .u64(Single::value)?,
    );
    Ok((totals, ids))
}

/// Position rows (each its [`position_values`]): those to insert, then those to update.
type PositionRows = (Vec<Vec<Val>>, Vec<Vec<Val>>);

/// The decided batch's position rows.
fn position_rows(
    w: &Writes,
    stored_positions: &HashMap<PosKey, (Position, Option<Realized>)>,
) -> Result<PositionRows, StoreError> {
    let (mut new_rows, mut changed_rows) = (Vec::new(), Vec::new());
    for key in &w.position_order {
        let (p, realized) = &w.positions[key];
        let values = position_values(p, realized.as_ref()).map_err(|e| match e {
            WriteError::Store(e) => e,
            WriteError::Refused(r) => StoreError::Internal(r.to_string()),
        })?;
        if stored_positions.contains_key(key) {
            changed_rows.push(values);
        } else {
            new_rows.push(values);
        }
    }
    Ok((new_rows, changed_rows))
}

/// The decided batch's exposure rows: per total, the batch's change and its last event.
fn exposure_rows(w: &Writes) -> Vec<Vec<Val>> {
    w.exposures
        .iter()
        .map(|((login, symbol), (delta, event_id))| {
            vec![
                Val::Int(*login as i64),
                Val::text(symbol),
                Val::Int(*delta),
                Val::Int(*event_id as i64),
            ]
        })
        .collect()
}

/// SQLite: the total's one row.
const SQLITE_EXPOSURE_UPSERT: &str = "ON CONFLICT (login, symbol) DO UPDATE SET net_units = exposures.net_units + excluded.net_units,
   last_event_id = excluded.last_event_id";

/// PostgreSQL: this session's shard of each total (the `shard` column's default).
const PG_EXPOSURE_UPSERT: &str = "ON CONFLICT (login, symbol, shard) DO UPDATE SET net_units = exposures.net_units + excluded.net_units,
   last_event_id = GREATEST(exposures.last_event_id, excluded.last_event_id)";

/// SQLite: writes the decided batch, a statement per row (no round trips there).
fn write_rows(
    c: &mut dyn Conn,
    w: &Writes,
    stored_positions: &HashMap<PosKey, (Position, Option<Realized>)>,
) -> Result<(), StoreError> {
    insert_rows(c, "events", EVENT_COLS, &w.events, "")?;
    let (new_rows, changed_rows) = position_rows(w, stored_positions)?;
    let insert_cols: Vec<Col> = POSITION_SET.iter().chain(POSITION_KEY).copied().collect();
    insert_rows(c, "positions", &insert_cols, &new_rows, "")?;
    update_rows(c, "positions", POSITION_SET, POSITION_KEY, &changed_rows)?;
    insert_rows(c, "position_volumes", VOLUME_COLS, &w.volumes, "")?;
    insert_rows(
        c,
        "exposures",
        EXPOSURE_COLS,
        &exposure_rows(w),
        SQLITE_EXPOSURE_UPSERT,
    )?;
    insert_rows(c, REQUEST_ANSWER, ANSWER_COLS, &w.answers, "")?;
    Ok(())
}

/// PostgreSQL: the statement of [`write_rows_at_once`], built once.
fn write_all_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let insert_cols: Vec<Col> = POSITION_SET.iter().chain(POSITION_KEY).copied().collect();
        // Data-modifying `WITH` clauses all run, to completion, whether the query reads them or
        // not; they write disjoint rows, so none needs to see another's.
        format!(
            "WITH events_written AS ({}),
              positions_added AS ({}),
              positions_changed AS ({}),
              volumes_written AS ({}),
              exposures_written AS ({})
             {}",
            insert_sql("events", EVENT_COLS, ""),
            insert_sql("positions", &insert_cols, ""),
            update_sql("positions", POSITION_SET, POSITION_KEY),
            insert_sql("position_volumes", VOLUME_COLS, ""),
            insert_sql("exposures", EXPOSURE_COLS, PG_EXPOSURE_UPSERT),
            insert_sql(REQUEST_ANSWER, ANSWER_COLS, ""),
        )
    })
}

/// PostgreSQL: writes the decided batch in one statement (every table's rows as arrays, an empty
/// array for a table without any), pipelined ahead of the commit: the server sets an executor up
/// once rather than once per table, and plans the statement once per connection.
fn write_rows_at_once(
    c: &mut dyn Conn,
    w: &Writes,
    stored_positions: &HashMap<PosKey, (Position, Option<Realized>)>,
) -> Result<(), StoreError> {
    let (new_rows, changed_rows) = position_rows(w, stored_positions)?;
    let insert_cols: Vec<Col> = POSITION_SET.iter().chain(POSITION_KEY).copied().collect();
    let update_cols: Vec<Col> = POSITION_SET.iter().chain(POSITION_KEY).copied().collect();
    let mut params = columns_of(EVENT_COLS, &w.events)?;
    params.extend(columns_of(&insert_cols, &new_rows)?);
    params.extend(columns_of(&update_cols, &changed_rows)?);
    params.extend(columns_of(VOLUME_COLS, &w.volumes)?);
    params.extend(columns_of(EXPOSURE_COLS, &exposure_rows(w))?);
    params.extend(columns_of(ANSWER_COLS, &w.answers)?);
    c.send(write_all_sql(), &params)
}

/// What the batch found stored.
struct Known<'a> {
    answers: &'a HashMap<String, (String, String)>,
    /// Each position and what its exit deals realized (`None` inside: unknown).
    positions: &'a HashMap<PosKey, (Position, Option<Realized>)>,
    registrations: &'a HashMap<u64, AccountRegistration>,
}

/// Where a batch's event ids come from.
enum Ids {
    /// Counting only: nothing is rendered or written.
    Count(usize),
    /// PostgreSQL: drawn from the sequence, in ascending order; `short` counts the ids wanted
    /// once they ran out (0 stands in for each: the batch is then decided again, see
    /// [`postgres_batch`]).
    Drawn {
        left: std::collections::VecDeque<u64>,
        short: usize,
    },
    /// SQLite (one writer): the next one.
    Next(u64),
}

impl Ids {
    fn take(&mut self) -> u64 {
        match self {
            Ids::Count(n) => {
                *n += 1;
                0
            }
            Ids::Drawn { left, short } => left.pop_front().unwrap_or_else(|| {
                *short += 1;
                0
            }),
            Ids::Next(next) => {
                let id = *next;
                *next += 1;
                id
            }
        }
    }
}

/// The rows a batch writes.
#[derive(Default)]
struct Writes {
    events: Vec<Vec<Val>>,
    volumes: Vec<Vec<Val>>,
    answers: Vec<Vec<Val>>,
    /// Each changed position's final state, in the order first changed (new rows get their
    /// `row_id`, the positions' page order, in that order).
    positions: HashMap<PosKey, (Position, Option<Realized>)>,
    position_order: Vec<PosKey>,
    /// Per changed total: the sum of the batch's changes and the id of the last event changing it.
    exposures: BTreeMap<ExposureKey, (i64, u64)>,
    head: Option<u64>,
}

struct Decided {
    outcomes: Vec<ReportOutcome>,
    /// Event ids taken.
    used: usize,
    /// The totals changed by a report that was not refused.
    touched: std::collections::BTreeSet<ExposureKey>,
    writes: Writes,
}

/// Applies the batch's reports one after another in memory. `totals` (the stored exposure totals
/// of [`Decided::touched`]) is `None` when only counting: the bound on totals is then not checked
/// and nothing is rendered.
fn decide(
    requests: &[ReportRequest],
    checked: &[Result<Payloads, WriteError>],
    known: &Known<'_>,
    totals: Option<&HashMap<ExposureKey, i64>>,
    ids: &mut Ids,
) -> Result<Decided, StoreError> {
    let render = totals.is_some();
    let mut answers: HashMap<&str, (&str, String)> = HashMap::new();
    let mut current: HashMap<PosKey, Option<(Position, Option<Realized>)>> = HashMap::new();
    let mut running: HashMap<ExposureKey, i64> = HashMap::new();
    let mut out = Decided {
        outcomes: Vec::with_capacity(requests.len()),
        used: 0,
        touched: Default::default(),
        writes: Writes::default(),
    };
    for (request, payload) in requests.iter().zip(checked) {
        let (payload, without_exit) = match payload {
            Ok(p) => (p.own.as_str(), p.without_exit.as_deref()),
            Err(e) => {
                out.outcomes.push(Err(e.clone()));
                continue;
            }
        };
        let r = &request.report;
        let key = r.idempotency_key.as_str();
        if let Some(outcome) = answered(&answers, known, key, payload, without_exit) {
            out.outcomes.push(outcome);
            continue;
        }
        let pk = (r.login.0, r.position_id.0);
        let held = current
            .entry(pk)
            .or_insert_with(|| known.positions.get(&pk).cloned());
        let (transition, realized) = match transition(held.as_ref(), r, known) {
            Ok(next) => next,
            Err(refusal) => {
                out.outcomes.push(Err(refusal.into()));
                continue;
            }
        };
        let exposure_key = (r.login.0, r.symbol.clone());
        let stored_total = |key: &ExposureKey| {
            running
                .get(key)
                .copied()
                .or_else(|| totals.and_then(|t| t.get(key).copied()))
                .unwrap_or(0)
        };
        if totals.is_some() && !transition.exposure_delta.is_zero() {
            let what = format!("the net volume of account {} in {}", r.login, r.symbol);
            let total = stored_total(&exposure_key);
            if let Err(refusal) = total_within(total, transition.exposure_delta, "volume", &what) {
                out.outcomes.push(Err(refusal.into()));
                continue;
            }
        }
        let event_id = ids.take();
        out.used += 1;
        let positions::Transition {
            event,
            mut position,
            exposure_delta,
            volume_changed,
            reason,
        } = transition;
        // The batch's running totals are kept as the stored 10^-8 units.
        let exposure_delta = exposure_delta.units();
        Realized::show(realized.as_ref(), &mut position);
        position.last_event_id = EventId(event_id);
        let change = Change {
            event,
            reason: &reason,
            volume_changed,
        };
        let answer = if render {
            match render_report(
                request,
                payload,
                &position,
                realized.as_ref(),
                &change,
                event_id,
            ) {
                Ok((answer, rows)) => {
                    let total = (exposure_delta != 0).then_some((&exposure_key, exposure_delta));
                    let state = (position.clone(), realized.clone());
                    out.writes.add(rows, event_id, pk, state, total);
                    answer
                }
                Err(WriteError::Refused(refusal)) => {
                    // Its id stays unused: a gap, as a rolled-back write leaves.
                    out.outcomes.push(Err(refusal.into()));
                    continue;
                }
                Err(WriteError::Store(e)) => return Err(e),
            }
        } else {
            String::new()
        };
        if exposure_delta != 0 {
            let base = stored_total(&exposure_key);
            // Checked above when the totals are known; when counting, only the keys matter.
            running.insert(exposure_key.clone(), base.saturating_add(exposure_delta));
            out.touched.insert(exposure_key);
        }
        *held = Some((position, realized));
        answers.insert(key, (payload, answer.clone()));
        out.outcomes.push(Ok((answer, false)));
    }
    Ok(out)
}

/// What report `r` does to the position it finds (`held`: its state and realized money): the
/// transition, and the money realized after it; or why it is refused.
fn transition(
    held: Option<&(Position, Option<Realized>)>,
    r: &PositionReport,
    known: &Known<'_>,
) -> Result<(positions::Transition, Option<Realized>), Refusal> {
    let (held_position, held_realized) = match held {
        Some((p, realized)) => (Some(p), realized.as_ref()),
        None => (None, None),
    };
    let transition = positions::apply(held_position, r)?;
    let digits = match r.exit {
        Some(_) => price_digits(known.registrations.get(&r.login.0), r),
        None => None,
    };
    let realized = positions::realize(held_realized, held_position, r, digits)?;
    Ok((transition, realized))
}

/// The outcome of a report whose key was answered before, in this batch or stored: the same
/// answer again for the same report (or the same without its exit deal), a conflict otherwise.
fn answered(
    in_batch: &HashMap<&str, (&str, String)>,
    known: &Known<'_>,
    key: &str,
    payload: &str,
    without_exit: Option<&str>,
) -> Option<ReportOutcome> {
    let (first_payload, answer) =
        in_batch
            .get(key)
            .map(|(p, a)| (*p, a.as_str()))
            .or_else(|| {
                known
                    .answers
                    .get(key)
                    .map(|(p, a)| (p.as_str(), a.as_str()))
            })?;
    Some(
        if first_payload == payload || Some(first_payload) == without_exit {
            Ok((answer.to_owned(), true))
        } else {
            Err(Refusal::Conflict(format!(
                "idempotency key {key:?} was already used for a different report"
            ))
            .into())
        },
    )
}

impl Writes {
    /// Adds a stored report's rows, its position's new state and its change of the total.
    fn add(
        &mut self,
        rows: ReportRows,
        event_id: u64,
        pk: PosKey,
        state: (Position, Option<Realized>),
        total: Option<(&ExposureKey, i64)>,
    ) {
        self.events.push(rows.event);
        self.volumes.extend(rows.volume);
        self.answers.push(rows.answer);
        self.head = Some(self.head.map_or(event_id, |h| h.max(event_id)));
        if !self.positions.contains_key(&pk) {
            self.position_order.push(pk);
        }
        self.positions.insert(pk, state);
        if let Some((key, delta)) = total {
            let e = self.exposures.entry(key.clone()).or_insert((0, 0));
            e.0 += delta;
            e.1 = event_id;
        }
    }
}

/// What a report changed, beside the position itself.
struct Change<'a> {
    event: EventKind,
    reason: &'a str,
    volume_changed: bool,
}

/// One stored report's rows.
struct ReportRows {
    event: Vec<Val>,
    volume: Option<Vec<Val>>,
    answer: Vec<Val>,
}

/// The acknowledgement of a report stored as event `event_id`, and the rows that store it.
fn render_report(
    request: &ReportRequest,
    payload: &str,
    position: &Position,
    realized: Option<&Realized>,
    transition: &Change<'_>,
    event_id: u64,
) -> Result<(String, ReportRows), WriteError> {
    let r = &request.report;
    // Checked here so that a position the table cannot hold is this report's refusal.
    position_values(position, realized)?;
    let volume = if transition.volume_changed {
        Some(vec![
            Val::Int(r.login.0 as i64),
            Val::Int(r.position_id.0 as i64),
            Val::Int(event_id as i64),
            Val::text(r.kind.as_str()),
            Val::text(position.side.as_str()),
            Val::Int(lots(position.volume, "volume")?.units()),
            Val::Int(r.time_ms),
        ])
    } else {
        None
    };
    let event = vec![
        Val::Int(event_id as i64),
        Val::Int(request.now_ms),
        Val::text(transition.event.as_str()),
        Val::Int(r.login.0 as i64),
        Val::text(&r.symbol),
        Val::text(&request.actor),
        Val::text(transition.reason),
        Val::Text(json(position)?),
    ];
    let answer = json(&ReportAck {
        event_id: EventId(event_id),
        idempotency_key: r.idempotency_key.clone(),
        status: position.status,
        volume: position.volume,
    })?;
    let stored = vec![
        Val::text(r.idempotency_key.as_str()),
        Val::text(payload),
        Val::text(&answer),
        Val::Int(event_id as i64),
    ];
    Ok((
        answer,
        ReportRows {
            event,
            volume,
            answer: stored,
        },
    ))
}
