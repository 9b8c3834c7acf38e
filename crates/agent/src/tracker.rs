//! The client agent's core: turns what the terminal says about positions into position events, each
//! exactly once. Pure and synchronous; the agent feeds it and persists its state.
//!
//! The tracker compares states, never counts: it keeps the last reported state of every open
//! position by id, and each observation of a position (a `tx` record, a snapshot row) is diffed
//! against it. A new id is an open whatever else happened just before, so an open right after a
//! close is never lost (the legacy agent compared position counts and missed exactly that).
//! Observing the same state twice yields nothing, so duplicate or replayed messages are harmless.
//!
//! Every event carries a per-position sequence number starting at 1 with the open; its idempotency
//! key is `login:position:seq`. Because the sequence is part of the persisted state, a restart
//! continues from where the last durable report left off and regenerates the same keys for anything
//! not yet committed.

use hedge_agent_runtime::observed::{CloseDetail, ClosedWhileAway, Observed, TimeMs};
use hedge_center_api::model::IdempotencyKey;
use hedge_domain::{Login, Magic, PositionId, Price, Side, Volume};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// How many closed position ids are remembered to ignore late records about them.
const CLOSED_MEMORY: usize = 4096;

/// The last reported state of an open position; persisted across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionState {
    pub id: PositionId,
    pub symbol: String,
    pub side: Side,
    pub volume: Volume,
    pub price_open: Price,
    pub sl: Price,
    pub tp: Price,
    pub magic: Magic,
    #[serde(default)]
    pub comment: String,
    pub opened: TimeMs,
    pub updated: TimeMs,
    /// Sequence number of the last event reported for this position.
    pub seq: u32,
}

/// What changed in a position, as the tracker reports it. Unlike the center's
/// `PositionEventKind` there is no single reverse: a netting reversal is a close and an open, each
/// with [`PositionEvent::reversal`] set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionChange {
    Open,
    /// Volume added to an open position (netting accounts).
    Increase,
    PartialClose,
    Close,
    /// Stop loss or take profit changed.
    Modify,
}

impl PositionChange {
    pub const fn as_str(self) -> &'static str {
        match self {
            PositionChange::Open => "open",
            PositionChange::Increase => "increase",
            PositionChange::PartialClose => "partial_close",
            PositionChange::Close => "close",
            PositionChange::Modify => "modify",
        }
    }
}

/// One reportable change of one position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionEvent {
    pub login: Login,
    pub position: PositionId,
    /// 1 for the open, then +1 per event of this position.
    pub seq: u32,
    pub kind: PositionChange,
    /// The account's symbol name.
    pub symbol: String,
    pub side: Side,
    /// Volume after the event (0 after a close).
    pub volume: Volume,
    /// Volume opened, added or closed by this event (0 for a modify).
    pub delta: Volume,
    pub price_open: Price,
    pub sl: Price,
    pub tp: Price,
    pub magic: Magic,
    /// The position's entry comment.
    #[serde(default)]
    pub comment: String,
    pub time: TimeMs,
    /// Part of a reversal on a netting account (a close of the old side and an open of the new).
    #[serde(default)]
    pub reversal: bool,
    /// For a close: the closing deal, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<CloseDetail>,
    /// A correction that brings the center back to the terminal's state ([`crate::resync`]).
    #[serde(default)]
    pub resync: bool,
}

impl PositionEvent {
    /// The report's idempotency key, the one of its position and sequence.
    pub fn key(&self) -> IdempotencyKey {
        IdempotencyKey::report(self.login, self.position, u64::from(self.seq))
    }

    /// A short description for logs and the status line.
    pub fn describe(&self) -> String {
        format!(
            "{} #{} {} {} {} (seq {})",
            self.kind.as_str(),
            self.position,
            self.symbol,
            self.side,
            if self.kind == PositionChange::Modify {
                self.volume
            } else {
                self.delta
            },
            self.seq
        )
    }
}

/// The position tracker of one account.
#[derive(Clone, Debug)]
pub struct Tracker {
    login: Login,
    open: BTreeMap<PositionId, PositionState>,
    closed: HashSet<PositionId>,
    closed_order: VecDeque<PositionId>,
}

impl Tracker {
    pub fn new(login: Login) -> Self {
        Tracker {
            login,
            open: BTreeMap::new(),
            closed: HashSet::new(),
            closed_order: VecDeque::new(),
        }
    }

    /// A tracker resuming from persisted states.
    pub fn restore(login: Login, states: impl IntoIterator<Item = PositionState>) -> Self {
        let mut t = Tracker::new(login);
        for s in states {
            t.open.insert(s.id, s);
        }
        t
    }

    pub fn login(&self) -> Login {
        self.login
    }

    /// The open positions as last reported.
    pub fn positions(&self) -> impl Iterator<Item = &PositionState> {
        self.open.values()
    }

    pub fn get(&self, id: PositionId) -> Option<&PositionState> {
        self.open.get(&id)
    }

    /// Raises the sequence of open position `id` to `seq` (corrective reports were queued with it),
    /// so its next event continues after them.
    pub fn advance_seq(&mut self, id: PositionId, seq: u32) {
        if let Some(s) = self.open.get_mut(&id) {
            s.seq = s.seq.max(seq);
        }
    }

    /// Whether `id` was closed recently (late records about it are ignored).
    pub fn was_closed(&self, id: PositionId) -> bool {
        self.closed.contains(&id)
    }

    fn remember_closed(&mut self, id: PositionId) {
        if self.closed.insert(id) {
            self.closed_order.push_back(id);
            if self.closed_order.len() > CLOSED_MEMORY {
                if let Some(old) = self.closed_order.pop_front() {
                    self.closed.remove(&old);
                }
            }
        }
    }

    fn event(
        &self,
        state: &PositionState,
        kind: PositionChange,
        delta: Volume,
        time: TimeMs,
    ) -> PositionEvent {
        PositionEvent {
            login: self.login,
            position: state.id,
            seq: state.seq,
            kind,
            symbol: state.symbol.clone(),
            side: state.side,
            volume: state.volume,
            delta,
            price_open: state.price_open,
            sl: state.sl,
            tp: state.tp,
            magic: state.magic,
            comment: state.comment.clone(),
            time,
            reversal: false,
            close: None,
            resync: false,
        }
    }

    fn open_new(&mut self, obs: &Observed, out: &mut Vec<PositionEvent>) {
        let state = PositionState {
            id: obs.id,
            symbol: obs.symbol.clone(),
            side: obs.side,
            volume: obs.volume,
            price_open: obs.price_open,
            sl: obs.sl,
            tp: obs.tp,
            magic: obs.magic,
            comment: obs.comment.clone(),
            opened: obs.time,
            updated: obs.time_update.max(obs.time),
            seq: 1,
        };
        out.push(self.event(&state, PositionChange::Open, state.volume, obs.time));
        self.open.insert(obs.id, state);
    }

    /// Applies the current state of one position (from a `tx` record or a snapshot row). A volume of
    /// 0 means it has just been closed; `close` then says how, when known. For a position that
    /// shrank, `close` is the reducing deal, attached to the partial close (its exit comment).
    pub fn observe(&mut self, obs: &Observed, close: Option<CloseDetail>) -> Vec<PositionEvent> {
        let mut out = Vec::new();
        if !obs.volume.is_positive() {
            self.close_one(
                obs.id,
                close.unwrap_or(CloseDetail {
                    time: obs.time_update.max(obs.time),
                    price: None,
                    deal: None,
                    confirmed: true,
                    comment: String::new(),
                    money: None,
                }),
                &mut out,
            );
            return out;
        }
        let Some(prev) = self.open.get(&obs.id).cloned() else {
            if self.closed.contains(&obs.id) {
                // A record older than the close we already reported (messages queued in the terminal).
                return out;
            }
            self.open_new(obs, &mut out);
            return out;
        };
        if obs.time_update > 0 && prev.updated > 0 && obs.time_update < prev.updated {
            return out;
        }
        let time = if obs.time_update > 0 {
            obs.time_update
        } else {
            prev.updated
        };
        let mut next = prev.clone();
        next.updated = prev.updated.max(obs.time_update);
        next.symbol = obs.symbol.clone();
        next.magic = obs.magic;

        if obs.side != prev.side {
            // Netting reversal: the same id now holds the other side. Report the old side closed
            // and the new side opened, so that a receiver that knows no reversals stays right.
            next.seq += 1;
            next.volume = Volume::ZERO;
            let mut close = self.event(&next, PositionChange::Close, prev.volume, time);
            close.reversal = true;
            out.push(close);
            next.seq += 1;
            next.side = obs.side;
            next.volume = obs.volume;
            next.price_open = obs.price_open;
            next.sl = obs.sl;
            next.tp = obs.tp;
            let mut open = self.event(&next, PositionChange::Open, obs.volume, time);
            open.reversal = true;
            out.push(open);
            self.open.insert(obs.id, next);
            return out;
        }

        if obs.volume != prev.volume {
            let (kind, delta) = if obs.volume > prev.volume {
                (PositionChange::Increase, obs.volume - prev.volume)
            } else {
                (PositionChange::PartialClose, prev.volume - obs.volume)
            };
            next.seq += 1;
            next.volume = obs.volume;
            next.price_open = obs.price_open;
            let mut event = self.event(&next, kind, delta, time);
            if kind == PositionChange::PartialClose {
                event.close = close;
            }
            out.push(event);
        }
        if obs.sl != prev.sl || obs.tp != prev.tp {
            next.seq += 1;
            next.sl = obs.sl;
            next.tp = obs.tp;
            out.push(self.event(&next, PositionChange::Modify, Volume::ZERO, time));
        }
        self.open.insert(obs.id, next);
        out
    }

    /// Reports `id` closed (no-op when it is not open).
    pub fn close(&mut self, id: PositionId, detail: CloseDetail) -> Vec<PositionEvent> {
        let mut out = Vec::new();
        self.close_one(id, detail, &mut out);
        out
    }

    fn close_one(&mut self, id: PositionId, detail: CloseDetail, out: &mut Vec<PositionEvent>) {
        let Some(mut state) = self.open.remove(&id) else {
            return;
        };
        let closed_volume = state.volume;
        state.seq += 1;
        state.volume = Volume::ZERO;
        let mut event = self.event(&state, PositionChange::Close, closed_volume, detail.time);
        event.close = Some(detail);
        out.push(event);
        self.remember_closed(id);
    }

    /// Positions tracked as open that a full snapshot no longer shows: closed while the agent was
    /// not listening. The caller looks for their closing deals before calling [`Tracker::reconcile`].
    pub fn missing_from(&self, snapshot: &[Observed]) -> Vec<PositionId> {
        let present: HashSet<PositionId> = snapshot.iter().map(|o| o.id).collect();
        self.open
            .keys()
            .filter(|id| !present.contains(id))
            .copied()
            .collect()
    }

    /// Brings the tracker in line with a full snapshot: positions it shows are observed (a reduction
    /// with `closes[id]`, the position's last exit deal, when that is newer than what was seen),
    /// tracked ones it lacks are closed (with `closes[id]` when the history told how, else
    /// unconfirmed at `time`).
    /// Events come out in position-id order, closes first.
    pub fn reconcile(
        &mut self,
        snapshot: &[Observed],
        closes: &HashMap<PositionId, CloseDetail>,
        time: TimeMs,
    ) -> Vec<PositionEvent> {
        let mut out = Vec::new();
        for id in self.missing_from(snapshot) {
            let detail = closes.get(&id).cloned().unwrap_or(CloseDetail {
                time,
                price: None,
                deal: None,
                confirmed: false,
                comment: String::new(),
                money: None,
            });
            self.close_one(id, detail, &mut out);
        }
        let mut rows: Vec<&Observed> = snapshot.iter().filter(|o| o.volume.is_positive()).collect();
        rows.sort_by_key(|o| o.id);
        for obs in rows {
            // A snapshot is the current truth: a position we closed earlier cannot reappear under
            // the same id on MT5, but if the terminal says so, trust it.
            if self.closed.contains(&obs.id) && !self.open.contains_key(&obs.id) {
                self.closed.remove(&obs.id);
                self.closed_order.retain(|c| *c != obs.id);
            }
            // An exit deal newer than what was last seen of a position still open is what
            // reduced it while the agent was away: its comment and price go with the partial close.
            let reduced_by = closes
                .get(&obs.id)
                .filter(|d| self.open.get(&obs.id).is_some_and(|p| d.time >= p.updated))
                .cloned();
            out.extend(self.observe(obs, reduced_by));
        }
        out
    }

    /// Reports a position that opened and closed while the agent was away (found in history): an
    /// open then a close. Nothing when the id is known (tracked or recently closed).
    pub fn closed_while_away(&mut self, away: &ClosedWhileAway) -> Vec<PositionEvent> {
        let id = away.position.id;
        if self.open.contains_key(&id) || self.closed.contains(&id) || !away.volume.is_positive() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let obs = Observed {
            volume: away.volume,
            ..away.position.clone()
        };
        self.open_new(&obs, &mut out);
        self.close_one(id, away.close.clone(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedge_domain::DealTicket;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn vol(lots_hundredths: i64) -> Volume {
        Volume(Decimal::new(lots_hundredths, 2))
    }

    fn obs(id: u64, side: Side, v: i64, t: TimeMs) -> Observed {
        Observed {
            id: PositionId(id),
            symbol: "EURUSD".into(),
            side,
            volume: vol(v),
            price_open: Price(Decimal::new(11000, 4)),
            sl: Price::ZERO,
            tp: Price::ZERO,
            magic: Magic(0),
            comment: String::new(),
            time: 1000,
            time_update: t,
        }
    }

    fn kinds(events: &[PositionEvent]) -> Vec<(u64, u32, PositionChange)> {
        events
            .iter()
            .map(|e| (e.position.get(), e.seq, e.kind))
            .collect()
    }

    #[test]
    fn a_partial_close_carries_its_reducing_deal_and_an_increase_none() {
        let mut t = Tracker::new(Login(7));
        t.observe(&obs(1, Side::Buy, 30, 1000), None);
        let deal = |ticket: u64, comment: &str| CloseDetail {
            time: 1100,
            price: Some(Price(Decimal::new(11010, 4))),
            deal: Some(DealTicket(ticket)),
            confirmed: true,
            comment: comment.into(),
            money: None,
        };
        let e = t.observe(&obs(1, Side::Buy, 10, 1100), Some(deal(5, "tp1 hit")));
        assert_eq!(kinds(&e), vec![(1, 2, PositionChange::PartialClose)]);
        assert_eq!(e[0].close, Some(deal(5, "tp1 hit")));
        // An increase is no exit: a deal passed with it is not its exit.
        let e = t.observe(&obs(1, Side::Buy, 20, 1200), Some(deal(6, "add")));
        assert_eq!(kinds(&e), vec![(1, 3, PositionChange::Increase)]);
        assert_eq!(e[0].close, None);
        let e = t.observe(&obs(1, Side::Buy, 0, 1300), Some(deal(7, "tp2 hit")));
        assert_eq!(kinds(&e), vec![(1, 4, PositionChange::Close)]);
        assert_eq!(e[0].close, Some(deal(7, "tp2 hit")));
    }

    #[test]
    fn open_partial_close_close_then_open_again() {
        let mut t = Tracker::new(Login(7));
        let e = t.observe(&obs(1, Side::Buy, 30, 1000), None);
        assert_eq!(kinds(&e), vec![(1, 1, PositionChange::Open)]);
        assert_eq!(e[0].key(), "7:1:1");
        assert!(t.observe(&obs(1, Side::Buy, 30, 1000), None).is_empty());
        let e = t.observe(&obs(1, Side::Buy, 10, 1100), None);
        assert_eq!(kinds(&e), vec![(1, 2, PositionChange::PartialClose)]);
        assert_eq!(e[0].delta, vol(20));
        assert_eq!(e[0].volume, vol(10));
        let e = t.observe(&obs(1, Side::Buy, 0, 1200), None);
        assert_eq!(kinds(&e), vec![(1, 3, PositionChange::Close)]);
        assert_eq!(e[0].delta, vol(10));
        // The legacy agent's blind spot: a new open right after a close, same count of positions.
        let e = t.observe(&obs(2, Side::Buy, 10, 1300), None);
        assert_eq!(kinds(&e), vec![(2, 1, PositionChange::Open)]);
        // A late record about the closed position is ignored.
        assert!(t.observe(&obs(1, Side::Buy, 10, 1150), None).is_empty());
    }

    #[test]
    fn netting_increase_reversal_and_sltp() {
        let mut t = Tracker::new(Login(7));
        t.observe(&obs(5, Side::Buy, 10, 1000), None);
        let e = t.observe(&obs(5, Side::Buy, 30, 1100), None);
        assert_eq!(kinds(&e), vec![(5, 2, PositionChange::Increase)]);
        let e = t.observe(&obs(5, Side::Sell, 20, 1200), None);
        assert_eq!(
            kinds(&e),
            vec![(5, 3, PositionChange::Close), (5, 4, PositionChange::Open)]
        );
        assert!(e.iter().all(|e| e.reversal));
        assert_eq!(e[0].side, Side::Buy);
        assert_eq!(e[0].delta, vol(30));
        assert_eq!(e[1].side, Side::Sell);
        assert_eq!(e[1].volume, vol(20));
        let mut m = obs(5, Side::Sell, 20, 1300);
        m.sl = Price(Decimal::new(12000, 4));
        let e = t.observe(&m, None);
        assert_eq!(kinds(&e), vec![(5, 5, PositionChange::Modify)]);
        assert_eq!(e[0].sl, m.sl);
        // Older record than what we have: ignored.
        assert!(t.observe(&obs(5, Side::Sell, 20, 1250), None).is_empty());
    }

    #[test]
    fn reconcile_reports_what_happened_while_away() {
        let mut t = Tracker::new(Login(7));
        t.observe(&obs(1, Side::Buy, 10, 1000), None);
        t.observe(&obs(2, Side::Sell, 10, 1000), None);
        let state: Vec<PositionState> = t.positions().cloned().collect();
        // Restart: 1 closed, 2 partially closed, 3 opened while down.
        let mut t = Tracker::restore(Login(7), state);
        let snap = vec![obs(2, Side::Sell, 5, 2000), obs(3, Side::Buy, 10, 2000)];
        assert_eq!(t.missing_from(&snap), vec![PositionId(1)]);
        let mut closes = HashMap::new();
        closes.insert(
            PositionId(1),
            CloseDetail {
                time: 1500,
                price: Some(Price(Decimal::new(11100, 4))),
                deal: Some(DealTicket(99)),
                confirmed: true,
                comment: "sl hit".into(),
                money: None,
            },
        );
        let e = t.reconcile(&snap, &closes, 2000);
        assert_eq!(
            kinds(&e),
            vec![
                (1, 2, PositionChange::Close),
                (2, 2, PositionChange::PartialClose),
                (3, 1, PositionChange::Open)
            ]
        );
        assert_eq!(e[0].close.as_ref().unwrap().deal, Some(DealTicket(99)));
        assert!(t.reconcile(&snap, &HashMap::new(), 2100).is_empty());

        let away = ClosedWhileAway {
            position: obs(4, Side::Buy, 0, 1700),
            volume: vol(20),
            close: CloseDetail {
                time: 1800,
                price: None,
                deal: Some(DealTicket(100)),
                confirmed: true,
                comment: String::new(),
                money: None,
            },
        };
        let e = t.closed_while_away(&away);
        assert_eq!(
            kinds(&e),
            vec![(4, 1, PositionChange::Open), (4, 2, PositionChange::Close)]
        );
        assert!(t.closed_while_away(&away).is_empty());
    }

    /// A random history of one account: what the terminal truly holds after each step.
    #[derive(Clone, Debug)]
    enum Step {
        Open { side: bool, v: i64 },
        Resize { which: usize, v: i64 },
        Flip { which: usize, v: i64 },
        Stops { which: usize, sl: i64 },
        Close { which: usize },
        Snapshot,
        Duplicate,
        Restart,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (any::<bool>(), 1i64..500).prop_map(|(side, v)| Step::Open { side, v }),
            2 => (any::<usize>(), 1i64..500).prop_map(|(which, v)| Step::Resize { which, v }),
            1 => (any::<usize>(), 1i64..500).prop_map(|(which, v)| Step::Flip { which, v }),
            1 => (any::<usize>(), 0i64..100).prop_map(|(which, sl)| Step::Stops { which, sl }),
            2 => any::<usize>().prop_map(|which| Step::Close { which }),
            1 => Just(Step::Snapshot),
            1 => Just(Step::Duplicate),
            1 => Just(Step::Restart),
        ]
    }

    proptest! {
        /// Whatever the history, replaying the events gives the terminal's true positions; keys are
        /// unique; each position's sequence is 1, 2, 3, ... with no gap; duplicates, snapshots and
        /// restarts add nothing.
        #[test]
        fn events_rebuild_the_truth_exactly_once(steps in proptest::collection::vec(step(), 1..80)) {
            let login = Login(42);
            let mut tracker = Tracker::new(login);
            let mut truth: BTreeMap<PositionId, Observed> = BTreeMap::new();
            let mut next_id = 100u64;
            let mut clock = 1000;
            let mut last: Option<Observed> = None;
            let mut events: Vec<PositionEvent> = Vec::new();
            for s in steps {
                clock += 10;
                let ids: Vec<PositionId> = truth.keys().copied().collect();
                let pick = |which: usize| ids.get(which % ids.len().max(1)).copied();
                match s {
                    Step::Open { side, v } => {
                        next_id += 1;
                        let o = obs(next_id, if side { Side::Buy } else { Side::Sell }, v, clock);
                        truth.insert(o.id, o.clone());
                        events.extend(tracker.observe(&o, None));
                        last = Some(o);
                    }
                    Step::Resize { which, v } | Step::Flip { which, v } | Step::Stops { which, sl: v } => {
                        let Some(id) = pick(which) else { continue };
                        let Some(o) = truth.get_mut(&id) else { continue };
                        match s {
                            Step::Resize { .. } => o.volume = vol(v),
                            Step::Flip { .. } => { o.side = o.side.opposite(); o.volume = vol(v); }
                            _ => o.sl = Price(Decimal::new(v, 2)),
                        }
                        o.time_update = clock;
                        let o = o.clone();
                        events.extend(tracker.observe(&o, None));
                        last = Some(o);
                    }
                    Step::Close { which } => {
                        let Some(id) = pick(which) else { continue };
                        let Some(mut o) = truth.remove(&id) else { continue };
                        o.volume = Volume::ZERO;
                        o.time_update = clock;
                        events.extend(tracker.observe(&o, None));
                        last = Some(o);
                    }
                    Step::Snapshot => {
                        let snap: Vec<Observed> = truth.values().cloned().collect();
                        let e = tracker.reconcile(&snap, &HashMap::new(), clock);
                        prop_assert!(e.is_empty(), "snapshot of known state produced {:?}", e);
                    }
                    Step::Duplicate => {
                        if let Some(o) = &last {
                            let e = tracker.observe(o, None);
                            prop_assert!(e.is_empty(), "duplicate produced {:?}", e);
                        }
                    }
                    Step::Restart => {
                        let saved: Vec<PositionState> = tracker.positions().cloned().collect();
                        let json = serde_json::to_string(&saved).unwrap();
                        let restored: Vec<PositionState> = serde_json::from_str(&json).unwrap();
                        tracker = Tracker::restore(login, restored);
                        let snap: Vec<Observed> = truth.values().cloned().collect();
                        let e = tracker.reconcile(&snap, &HashMap::new(), clock);
                        prop_assert!(e.is_empty(), "restart produced {:?}", e);
                    }
                }
            }
            let mut keys = HashSet::new();
            let mut rebuilt: BTreeMap<PositionId, (Side, Volume, Price)> = BTreeMap::new();
            let mut seqs: HashMap<PositionId, u32> = HashMap::new();
            for e in &events {
                prop_assert!(keys.insert(e.key()), "duplicate key {}", e.key());
                let prev = seqs.insert(e.position, e.seq).unwrap_or(0);
                prop_assert_eq!(e.seq, prev + 1);
                match e.kind {
                    PositionChange::Close => { rebuilt.remove(&e.position); }
                    _ => { rebuilt.insert(e.position, (e.side, e.volume, e.sl)); }
                }
            }
            let expected: BTreeMap<PositionId, (Side, Volume, Price)> =
                truth.values().map(|o| (o.id, (o.side, o.volume, o.sl))).collect();
            prop_assert_eq!(rebuilt, expected);
        }
    }
}
