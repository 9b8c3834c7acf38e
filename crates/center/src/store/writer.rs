//! The writer threads: each blocks for one request, takes whatever else is queued, runs the
//! reports among them in one transaction and the other writes in another, commits, then answers
//! everybody; after the commit it moves the head and hands the committed events on.
//!
//! Entry point: [`writer_loop`]. Invariant: no answer leaves before its commit returned.

use super::*;
/// A request for the writer thread: runs inside the batch transaction and returns whether it
/// succeeded plus what to do once the batch's commit outcome is known. It may run twice (see
/// [`writer_loop`]); only the completion of the run that counts is called.
pub(super) type Job = Box<dyn FnMut(&mut dyn Conn) -> (bool, Completion) + Send>;
pub(super) type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A position report for the writer, and where its outcome goes.
pub(super) struct ReportWork {
    pub(super) request: logic::ReportRequest,
    pub(super) done: Box<dyn FnOnce(logic::ReportOutcome) + Send>,
}

/// What the writer thread is asked to do.
pub(super) enum Work {
    Job(Job),
    /// Reports are the bulk of the writes and are batched by [`logic::report_batch`].
    Report(Box<ReportWork>),
}

/// Largest number of requests taken from the queue at once.
pub(super) const MAX_BATCH: usize = 512;

/// Writer connections of one PostgreSQL instance. Batches on different positions commit side by
/// side (nothing global is locked), so while one writer waits for its round trips and its commit's
/// flush, the others store the requests that queued meanwhile. SQLite has one writer.
pub(super) const PG_WRITERS: usize = 4;

/// Largest number of reports in one transaction: on PostgreSQL each position is an advisory lock,
/// and the server's lock table is shared (`max_locks_per_transaction` × connections, 6,400 by
/// default).
pub(super) const MAX_REPORTS: usize = 256;

/// How often a report batch that lost a race (deadlock, serialization failure) is run again
/// before its reports are answered with the failure.
pub(super) const REPORT_ATTEMPTS: u32 = 3;

/// The writer thread's loop: block for one request, take whatever else is queued, run the reports
/// among them in one transaction ([`run_reports`]) and the other writes in another ([`run_pass`]),
/// commit, then answer everybody.
///
/// The other writes run first without a savepoint per request: in most batches no request is
/// refused, and the savepoints (two statements per request, plus SQLite's copies of every page
/// they protect) were about a tenth of the writer's work. If a request is refused, nothing of that
/// pass is kept and the batch runs again with a savepoint per request, so the refusal changes
/// nothing while the others commit. A lone request never needs one: its refusal rolls the
/// transaction back. Reports need none: a refused report writes nothing.
pub(super) fn writer_loop(
    mut conn: Box<dyn Conn>,
    work: Arc<parking_lot::Mutex<std::sync::mpsc::Receiver<Work>>>,
    head: AfterCommit,
    notify: Option<String>,
) {
    loop {
        // One writer at a time takes what is queued; the others wait for what comes next. The
        // writer that took reports keeps its turn until their batch is written and only its
        // commit is left (see [`Turn`]).
        let (queued, turn) = {
            let work = work.lock();
            let Ok(first) = work.recv() else { return };
            let mut queued = vec![first];
            while queued.len() < MAX_BATCH {
                match work.try_recv() {
                    Ok(w) => queued.push(w),
                    Err(_) => break,
                }
            }
            (queued, work)
        };
        let mut turn = Turn(Some(turn));
        let (mut reports, mut batch) = (Vec::new(), Vec::new());
        for w in queued {
            match w {
                Work::Report(r) => reports.push(*r),
                Work::Job(j) => batch.push(j),
            }
        }
        while !reports.is_empty() {
            let rest = reports.split_off(reports.len().min(MAX_REPORTS));
            run_reports(conn.as_mut(), reports, &head, notify.as_deref(), &mut turn);
            reports = rest;
        }
        turn.end();
        if batch.is_empty() {
            continue;
        }
        let notify = notify.as_deref();
        if let Pass::Refused = run_pass(conn.as_mut(), &mut batch, false, &head, notify) {
            run_pass(conn.as_mut(), &mut batch, true, &head, notify);
        }
    }
}

/// A writer's turn at the request queue, held from taking requests until the reports among them
/// are written and only their commit is left. The next writer then takes what queued meanwhile:
/// while one batch waits for its round trips the requests pile up for the next one instead of each
/// idle writer taking the first that comes, so batches stay large and the database runs fewer
/// statements per report (each costs it an executor's set-up whatever its rows); the commits'
/// flushes still overlap. Measured on PostgreSQL: with four writers taking requests as they came,
/// batches were small whenever the instance's share of the load was light (two instances splitting
/// it), and the writers then cost the database 1.7 to 2 times the CPU per report of one instance.
pub(super) struct Turn<'a>(Option<parking_lot::MutexGuard<'a, std::sync::mpsc::Receiver<Work>>>);

impl Turn<'_> {
    /// Lets the next writer take the queue.
    pub(super) fn end(&mut self) {
        self.0.take();
    }
}

/// Stores `works` in one transaction and answers each after the commit. A batch that lost a race
/// runs again; one the database refused (a failure no single report's rules foresaw) is stored
/// report by report, so the failure is only its own report's.
pub(super) fn run_reports(
    conn: &mut dyn Conn,
    works: Vec<ReportWork>,
    head: &AfterCommit,
    channel: Option<&str>,
    turn: &mut Turn<'_>,
) {
    let (requests, dones): (Vec<_>, Vec<_>) =
        works.into_iter().map(|w| (w.request, w.done)).unzip();
    let mut attempt = 1;
    let stored = loop {
        match reports_transaction(conn, &requests, turn) {
            // SQLite's contention is a lock that stayed busy for the whole busy timeout already.
            Err(StoreError::Contention(e))
                if attempt < REPORT_ATTEMPTS && conn.dialect() == Dialect::Postgres =>
            {
                tracing::debug!(error = %e, attempt, "report batch lost a race, running it again");
                attempt += 1;
            }
            other => break other,
        }
    };
    match stored {
        Ok(batch) => {
            if let Some(id) = batch.head {
                head.committed(conn, id, Change::Reports(&batch.exposures));
            }
            for (done, outcome) in dones.into_iter().zip(batch.outcomes) {
                done(outcome);
            }
            if let (Some(channel), Some(id)) = (channel, batch.head) {
                announce(conn, channel, id);
            }
        }
        Err(e) if requests.len() > 1 && !e.is_retryable() => {
            tracing::warn!(error = %e, reports = requests.len(), "report batch refused, storing its reports one by one");
            for (request, done) in requests.into_iter().zip(dones) {
                run_reports(
                    conn,
                    vec![ReportWork { request, done }],
                    head,
                    channel,
                    turn,
                );
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "report batch failed, nothing of it was stored");
            for done in dones {
                done(Err(WriteError::Store(e.clone())));
            }
        }
    }
}

/// One transaction of reports: stored and committed; rolled back if any of it failed.
pub(super) fn reports_transaction(
    conn: &mut dyn Conn,
    requests: &[logic::ReportRequest],
    turn: &mut Turn<'_>,
) -> Result<logic::ReportBatch, StoreError> {
    let written = logic::begin_reports(conn).and_then(|_| logic::report_batch(conn, requests));
    turn.end();
    let batch = match written {
        Ok(batch) => batch,
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            return Err(e);
        }
    };
    if let Err(e) = conn.control("COMMIT") {
        // PostgreSQL ends a transaction whose COMMIT failed; SQLite keeps it open.
        if conn.dialect() == Dialect::Sqlite {
            let _ = conn.batch("ROLLBACK");
        }
        return Err(e);
    }
    Ok(batch)
}

pub(super) enum Pass {
    /// Committed, or failed as a whole; everybody answered.
    Done,
    /// A request was refused in a pass without savepoints: rolled back, nobody answered.
    Refused,
}

/// Runs `batch` in one transaction, each request in its own savepoint when `savepoints`.
pub(super) fn run_pass(
    conn: &mut dyn Conn,
    batch: &mut [Job],
    savepoints: bool,
    head: &AfterCommit,
    channel: Option<&str>,
) -> Pass {
    if let Err(e) = logic::begin_write(conn) {
        tracing::error!(error = %e, "cannot begin a write transaction");
        let _ = conn.batch("ROLLBACK");
        // Not run: the requests are answered with `Closed` when their jobs are dropped.
        return Pass::Done;
    }
    let lone = batch.len() == 1;
    let mut completions = Vec::with_capacity(batch.len());
    let mut failed: Option<StoreError> = None;
    for job in batch.iter_mut() {
        if savepoints {
            if let Err(e) = conn.control("SAVEPOINT job") {
                failed = Some(e);
                break;
            }
        }
        let (ok, completion) = job(conn);
        // The request's pipelined statements must all have succeeded before it counts as done;
        // a failure among them is that request's failure, not the batch's.
        let own = if ok { conn.flush().err() } else { None };
        let refused = !ok || own.is_some();
        if !savepoints {
            if refused {
                if let Err(e) = conn.control("ROLLBACK") {
                    tracing::error!(error = %e, "cannot roll back a refused request");
                }
                if lone {
                    // Nothing to keep: the refusal itself is the answer.
                    completion(own.map_or(Ok(()), Err));
                    return Pass::Done;
                }
                return Pass::Refused;
            }
            completions.push((completion, None));
            continue;
        }
        let end = if refused {
            conn.control("ROLLBACK TO SAVEPOINT job")
                .and_then(|_| conn.control("RELEASE SAVEPOINT job"))
        } else {
            conn.control("RELEASE SAVEPOINT job")
        };
        completions.push((completion, own));
        if let Err(e) = end {
            failed = Some(e);
            break;
        }
    }
    let mut max_id = None;
    if failed.is_none() {
        match logic::max_event_id(conn) {
            Ok(id) => max_id = Some(id),
            Err(e) => failed = Some(e),
        }
    }
    let outcome = match failed {
        None => conn.control("COMMIT"),
        Some(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    };
    if let Err(e) = &outcome {
        tracing::error!(error = %e, "write batch failed, nothing of it was stored");
    }
    // The head moves before anybody is answered: a request that follows an acknowledged write
    // sees a head that includes it, so an answer cached under an older head is never served.
    match (&outcome, max_id) {
        (Ok(()), Some(id)) => head.committed(conn, id, Change::Other),
        // Nothing of it was stored; the held plan inputs are dropped all the same, so that a
        // commit whose outcome is in doubt never leaves them behind the database.
        _ => head.forget_plan_inputs(),
    }
    for (completion, own) in completions {
        completion(match own {
            Some(e) => Err(e),
            None => outcome.clone(),
        });
    }
    if let (Ok(()), Some(id), Some(channel)) = (&outcome, max_id, channel) {
        announce(conn, channel, id);
    }
    Pass::Done
}

/// Events handed from the writer to this instance's event stream per commit, at most.
pub(super) const COMMITTED_PAGE: u32 = 1000;

/// What the writer hands to this instance's event stream after a commit.
pub struct Committed {
    /// The commit's events, in order (at most [`COMMITTED_PAGE`]).
    pub events: Vec<Event>,
    /// Every hedge account's plan inputs, read on the writer's connection right after the commit,
    /// when the stream asked for them ([`Store::plans_on_commit`]) and an event can move a plan:
    /// the stream's plan frames then need no read of their own, which on a reader connection was
    /// two thread hand-overs and the same statements on a colder cache.
    pub plan_inputs: Option<Arc<crate::plan::PlanInputs>>,
}

/// Where [`Store::follow_commits`] takes the commits, and whether it wants plan inputs with them.
#[derive(Default)]
pub(super) struct CommitFollower {
    pub(super) to: Option<UnboundedSender<Committed>>,
    /// Somebody reads the stream live. Without a reader the writer answers without reading the
    /// commit's events first, and the stream reads them itself when the head moves.
    pub(super) streams_open: bool,
    pub(super) plan_inputs: bool,
    /// Set when the writer's last read of the plan inputs took longer than
    /// [`PLAN_INPUTS_BUDGET`]: until then the plan frames read them on reader connections.
    pub(super) plan_inputs_paused_until: Option<std::time::Instant>,
    /// [`PLAN_INPUTS_BUDGET`] unless set (tests whose debug builds read slower than a release).
    pub(super) plan_inputs_budget: Option<Duration>,
    /// How many commits handed over plan inputs carried over from the previous ones rather than
    /// read (see [`HeldInputs`]).
    pub(super) plan_inputs_carried: u64,
}

/// The longest the writer may spend reading the plan inputs after a commit. The read is done on
/// the writer's connection to spare the plan frames two thread hand-overs (about 0.1 ms), but the
/// next batch waits for it: with a large book (thousands of open positions) it takes milliseconds,
/// and then the readers, which run beside the writer, are the better place.
pub(super) const PLAN_INPUTS_BUDGET: Duration = Duration::from_micros(500);

/// How long a read over budget leaves the plan inputs to the readers before the writer tries again.
pub(super) const PLAN_INPUTS_PAUSE: Duration = Duration::from_secs(30);

/// The follower of the commits, shared by the store and its writer.
pub(super) type CommittedEvents = Arc<parking_lot::Mutex<CommitFollower>>;

/// What a commit changed, for the plan inputs the writer holds ([`HeldInputs`]).
pub(super) enum Change<'a> {
    /// Position reports only: the exposure totals they changed, as stored now.
    Reports(&'a [logic::ExposureTotal]),
    /// Anything else (registrations, statuses, overrides, settings, hedges, allocations, pauses,
    /// commands, pruning...): the held inputs are read again.
    Other,
}

/// The plan inputs the writer read last, kept current as of the event `inputs.as_of_event_id`
/// through the report batches committed since: a batch of reports changes nothing the plan reads
/// but the exposure totals it touched (and the head), and it says what they are now, so the
/// writer updates those few entries instead of reading every account, status, total, pause and
/// allocation again after each report (about 0.1 ms in series before the event and its plan
/// leave). Any other write, a total the batch created, a commit it cannot account for, or a
/// stream that did not want them drops them, and the next commit that needs them reads them all.
pub(super) struct HeldInputs {
    inputs: Arc<crate::plan::PlanInputs>,
    /// Where each client total is in `inputs.exposures`.
    index: std::collections::HashMap<(u64, String), usize>,
}

impl HeldInputs {
    fn new(inputs: Arc<crate::plan::PlanInputs>) -> Self {
        let index = inputs
            .exposures
            .iter()
            .enumerate()
            .map(|(i, e)| ((e.login.0, e.symbol.clone()), i))
            .collect();
        HeldInputs { inputs, index }
    }

    /// The inputs after a commit of reports that changed `totals` and whose newest event is
    /// `head`; `None` when one of the totals is not one the inputs hold (a new row, an account
    /// the plan does not count as a client): then only a read says where it goes.
    fn advance(mut self, totals: &[logic::ExposureTotal], head: u64) -> Option<HeldInputs> {
        // The stream may still hold the previous inputs (its frames are computed from them):
        // those are copied, never changed under it.
        let inputs = Arc::make_mut(&mut self.inputs);
        for total in totals {
            let i = *self.index.get(&total.key)?;
            let exposure = inputs.exposures.get_mut(i)?;
            exposure.net = hedge_domain::Exposure::from_units(total.net_units?);
            exposure.last_event_id = EventId(total.last_event_id);
        }
        inputs.as_of_event_id = EventId(head);
        Some(self)
    }
}

/// What the writer does after a commit: moves the head, and on SQLite hands the committed events
/// themselves to this instance's event stream, read on the writer's own connection right after
/// the commit, so the stream has them without waking a reader of its own.
#[derive(Clone)]
pub(super) struct AfterCommit {
    pub(super) head: watch::Sender<u64>,
    pub(super) events: CommittedEvents,
    /// The plan inputs this writer keeps current (see [`HeldInputs`]); SQLite's one writer only.
    pub(super) held: Arc<parking_lot::Mutex<Option<HeldInputs>>>,
}

impl AfterCommit {
    /// After a commit whose newest event is `id`: the events after the previous head go to the
    /// stream (if it follows), then the head moves, before anybody is answered (a request that
    /// follows an acknowledged write sees a head that includes it). PostgreSQL's events come to
    /// the stream through the head alone: other instances write there too, and their order is the
    /// log's.
    fn committed(&self, conn: &mut dyn Conn, id: u64, change: Change<'_>) {
        let before = *self.head.borrow();
        if id > before && conn.dialect() == Dialect::Sqlite {
            self.hand_over(conn, before, id, change);
        } else {
            self.forget_plan_inputs();
        }
        // Its watchers wake even when `id` is not above it: with several writers the commit may be
        // that of a lower id the event horizon was waiting for, after which the log reads further.
        self.head.send_modify(|h| *h = (*h).max(id));
    }

    /// Drops the held plan inputs: the next commit that needs them reads them all.
    pub(super) fn forget_plan_inputs(&self) {
        self.held.lock().take();
    }

    /// Sends the events after `after` (up to `id`, this commit's newest) to the stream, with the
    /// plan inputs if it wants them: the held ones brought up to this commit when it stored only
    /// reports, else read. A failed read only leaves the events to the stream's own read, which the
    /// head wakes, and the plan inputs to the plan frames' own read.
    fn hand_over(&self, conn: &mut dyn Conn, after: u64, id: u64, change: Change<'_>) {
        // One writer on SQLite: the lock is never waited for.
        let mut held = self.held.lock();
        let previous = held.take();
        let (to, wants_plan_inputs) = {
            let follower = self.events.lock();
            let paused = follower
                .plan_inputs_paused_until
                .is_some_and(|until| std::time::Instant::now() < until);
            match &follower.to {
                Some(to) if follower.streams_open => (to.clone(), follower.plan_inputs && !paused),
                _ => return,
            }
        };
        let query = PageQuery {
            after: Some(after),
            limit: Some(COMMITTED_PAGE),
            ..Default::default()
        };
        let events = match logic::events(conn, &query) {
            Ok(page) => page.items,
            Err(e) => {
                tracing::debug!(error = %e, "committed events left to the stream's read");
                return;
            }
        };
        // Held inputs carry over only from exactly the previous head, and only across a commit
        // of reports that wrote every event since it.
        let carried = match (previous, change) {
            (Some(previous), Change::Reports(totals))
                if wants_plan_inputs
                    && previous.inputs.as_of_event_id.get() == after
                    && events.last().map(|e| e.id.get()) == Some(id) =>
            {
                previous.advance(totals, id)
            }
            _ => None,
        };
        let plan_inputs = if wants_plan_inputs && events.iter().any(|e| e.kind.moves_plan()) {
            match carried {
                Some(kept) => {
                    let inputs = kept.inputs.clone();
                    *held = Some(kept);
                    self.events.lock().plan_inputs_carried += 1;
                    Some(inputs)
                }
                None => self.read_plan_inputs(conn, &mut held),
            }
        } else {
            *held = carried;
            None
        };
        drop(held);
        if to
            .send(Committed {
                events,
                plan_inputs,
            })
            .is_err()
        {
            self.events.lock().to.take();
        }
    }

    /// Every hedge account's plan inputs, read on the writer's connection; held for the next
    /// commits when the read was within [`PLAN_INPUTS_BUDGET`].
    fn read_plan_inputs(
        &self,
        conn: &mut dyn Conn,
        held: &mut Option<HeldInputs>,
    ) -> Option<Arc<crate::plan::PlanInputs>> {
        let started = std::time::Instant::now();
        let read = logic::in_read_tx(conn, logic::all_plan_inputs);
        let took = started.elapsed();
        let budget = self.events.lock().plan_inputs_budget;
        let over_budget = took > budget.unwrap_or(PLAN_INPUTS_BUDGET);
        if over_budget {
            tracing::debug!(
                took_us = took.as_micros() as u64,
                "plan inputs read over budget, left to the readers for a while"
            );
            self.events.lock().plan_inputs_paused_until =
                Some(std::time::Instant::now() + PLAN_INPUTS_PAUSE);
        }
        match read {
            Ok(inputs) => {
                let inputs = Arc::new(inputs);
                if !over_budget {
                    *held = Some(HeldInputs::new(inputs.clone()));
                }
                Some(inputs)
            }
            Err(e) => {
                tracing::debug!(error = %e, "plan inputs left to the plan frames' read");
                None
            }
        }
    }
}

/// Announces event `id` to every instance (PostgreSQL `pg_notify` on `channel`, see
/// [`Conn::announce`]), after the commit that stored it and after its requests were answered. A
/// failure is logged: a notification lost only delays the other instances' streams until their
/// next poll.
pub(super) fn announce(conn: &mut dyn Conn, channel: &str, id: u64) {
    if let Err(e) = conn.announce(channel, id) {
        tracing::warn!(error = %e, "cannot announce new events to the other instances");
    }
}

/// Keeps why a write failed in `fault` until a write succeeds again (see `Inner::write_fault`); a
/// refusal is the request's fault, not the database's, and leaves it as it was.
pub(super) fn note_outcome<T>(
    fault: &parking_lot::Mutex<Option<String>>,
    outcome: &Result<T, WriteError>,
) {
    match outcome {
        Ok(_) => *fault.lock() = None,
        Err(WriteError::Store(e)) => *fault.lock() = Some(e.to_string()),
        Err(WriteError::Refused(_)) => {}
    }
}
