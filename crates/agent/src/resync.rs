//! Bringing the center back to the terminal's positions (pure).
//!
//! A report the center refused (dead-lettered), or anything else that made the center's books
//! differ from the terminal's, would otherwise leave the exposure unhedged for good: the next
//! events of that position build on a state the center never had, and are refused too. The client
//! agent therefore compares, per position id, what it reported (the tracker, which follows the
//! terminal) with what the center holds, and queues one ordinary corrective report per difference.
//! Each takes the center's state to the tracker's under the center's own rules
//! (`hedge_center::positions::apply`) and carries a sequence number above both the tracker's and
//! the center's, so it is never stale and its idempotency key (`login:position:seq`) is new.

use crate::tracker::{PositionChange, PositionEvent, PositionState};
use hedge_agent_runtime::observed::{CloseDetail, TimeMs};
use hedge_center_api::model::{Position, PositionStatus};
use hedge_domain::{Login, PositionId, Price, Volume};
use std::collections::{BTreeMap, BTreeSet};

/// A position the agent holds as reported, with the canonical symbol it is reported under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub state: PositionState,
    pub symbol: String,
}

/// The corrective reports of one position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Correction {
    pub position: PositionId,
    /// In order; their sequence numbers follow each other.
    pub events: Vec<PositionEvent>,
    /// The tracker's sequence after these reports (`None`: the tracker does not hold it).
    pub tracker_seq: Option<u32>,
    /// What differed, for the log.
    pub what: String,
}

/// What a comparison found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub corrections: Vec<Correction>,
    /// Every position on which the books differ, corrected or not; the others agree.
    pub differing: BTreeSet<PositionId>,
    /// Differences no report can correct, with why (the log says them; their dead letters stay).
    pub stuck: Vec<(PositionId, Uncorrectable)>,
}

/// Why no report can bring the center's position to the terminal's. Final for that position:
/// comparing again finds the same, so only an operator can resolve it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Uncorrectable {
    /// The center refuses every report of a position under another symbol.
    #[error("the center holds it on {center}, the terminal on {terminal}")]
    OtherSymbol { center: String, terminal: String },
    /// The next report's sequence number would not fit the agent's.
    #[error("sequence {0} is out of the agent's range")]
    SequenceOutOfRange(u64),
}

fn non_zero(p: Price) -> Option<Price> {
    (!p.is_zero()).then_some(p)
}

fn describe(p: &Position) -> String {
    if p.status == PositionStatus::Closed {
        format!("closed (seq {})", p.last_seq)
    } else {
        format!("{} {} (seq {})", p.side, p.volume, p.last_seq)
    }
}

/// A corrective report built from the tracker's state of the position.
fn event(
    login: Login,
    s: &PositionState,
    kind: PositionChange,
    seq: u32,
    time: TimeMs,
) -> PositionEvent {
    PositionEvent {
        login,
        position: s.id,
        seq,
        kind,
        symbol: s.symbol.clone(),
        side: s.side,
        volume: s.volume,
        delta: Volume::ZERO,
        price_open: s.price_open,
        sl: s.sl,
        tp: s.tp,
        magic: s.magic,
        comment: s.comment.clone(),
        time,
        reversal: false,
        close: None,
        resync: true,
    }
}

fn closing(time: TimeMs) -> Option<CloseDetail> {
    Some(CloseDetail {
        time,
        price: None,
        deal: None,
        confirmed: true,
        comment: String::new(),
        money: None,
    })
}

/// The reports that take the center's `c` to the tracker's `h`; empty when they agree.
fn correct_held(
    login: Login,
    h: &Held,
    c: Option<&Position>,
    time: TimeMs,
) -> Result<Vec<PositionEvent>, Uncorrectable> {
    let s = &h.state;
    if let Some(c) = c.filter(|c| c.symbol != h.symbol) {
        return Err(Uncorrectable::OtherSymbol {
            center: c.symbol.clone(),
            terminal: h.symbol.clone(),
        });
    }
    let base = u64::from(s.seq).max(c.map_or(0, |c| c.last_seq));
    let open = c.filter(|c| c.status != PositionStatus::Closed);
    let mut out: Vec<PositionEvent> = Vec::new();
    // Each report's sequence follows the previous one's, above both sides' last.
    let mut count = 0u64;
    let seq = |count: &mut u64| -> Result<u32, Uncorrectable> {
        *count += 1;
        let seq = base + *count;
        u32::try_from(seq).map_err(|_| Uncorrectable::SequenceOutOfRange(seq))
    };
    match open {
        None => {
            let mut e = event(login, s, PositionChange::Open, seq(&mut count)?, time);
            e.delta = s.volume;
            out.push(e);
        }
        Some(c) if c.side != s.side => {
            // As the tracker reports a netting reversal: the old side closed, the new one opened.
            let mut close = event(login, s, PositionChange::Close, seq(&mut count)?, time);
            close.side = c.side;
            close.volume = Volume::ZERO;
            close.delta = c.volume;
            close.reversal = true;
            close.close = closing(time);
            out.push(close);
            let mut e = event(login, s, PositionChange::Open, seq(&mut count)?, time);
            e.delta = s.volume;
            e.reversal = true;
            out.push(e);
        }
        Some(c) if c.volume != s.volume => {
            let (kind, delta) = if s.volume > c.volume {
                (PositionChange::Increase, s.volume - c.volume)
            } else {
                (PositionChange::PartialClose, c.volume - s.volume)
            };
            let mut e = event(login, s, kind, seq(&mut count)?, time);
            e.delta = delta;
            if kind == PositionChange::PartialClose {
                e.close = closing(time);
            }
            out.push(e);
        }
        Some(_) => {}
    }
    // A report without stops leaves the center's as they were; only a modify clears them.
    let before = (c.and_then(|c| c.sl), c.and_then(|c| c.tp));
    let after = if out.is_empty() {
        before
    } else {
        (non_zero(s.sl).or(before.0), non_zero(s.tp).or(before.1))
    };
    if after != (non_zero(s.sl), non_zero(s.tp)) {
        out.push(event(
            login,
            s,
            PositionChange::Modify,
            seq(&mut count)?,
            time,
        ));
    }
    Ok(out)
}

/// Compares the agent's held positions with the center's positions of the account (its open and
/// partially closed ones, and the stored record of any held position it lacks there, closed or
/// not) and plans the corrective reports, at terminal time `time`.
pub fn plan(login: Login, held: &[Held], center: &[Position], time: TimeMs) -> Plan {
    let by_id: BTreeMap<PositionId, &Position> = center
        .iter()
        .filter(|p| p.login == login)
        .map(|p| (p.position_id, p))
        .collect();
    let held_ids: BTreeSet<PositionId> = held.iter().map(|h| h.state.id).collect();
    let mut plan = Plan::default();
    for h in held.iter().filter(|h| h.state.volume.is_positive()) {
        let c = by_id.get(&h.state.id).copied();
        match correct_held(login, h, c, time) {
            Ok(events) if events.is_empty() => {}
            Ok(events) => {
                plan.differing.insert(h.state.id);
                plan.corrections.push(Correction {
                    position: h.state.id,
                    tracker_seq: events.last().map(|e| e.seq),
                    events,
                    what: format!(
                        "center {}, terminal {} {}",
                        c.map_or_else(|| "none".to_owned(), describe),
                        h.state.side,
                        h.state.volume
                    ),
                });
            }
            Err(why) => {
                plan.differing.insert(h.state.id);
                plan.stuck.push((h.state.id, why));
            }
        }
    }
    for c in by_id.values() {
        if held_ids.contains(&c.position_id) || c.status == PositionStatus::Closed {
            continue;
        }
        plan.differing.insert(c.position_id);
        let Some(seq) = c
            .last_seq
            .checked_add(1)
            .and_then(|s| u32::try_from(s).ok())
        else {
            plan.stuck.push((
                c.position_id,
                Uncorrectable::SequenceOutOfRange(c.last_seq.saturating_add(1)),
            ));
            continue;
        };
        let account_symbol = if c.account_symbol.is_empty() {
            c.symbol.clone()
        } else {
            c.account_symbol.clone()
        };
        plan.corrections.push(Correction {
            position: c.position_id,
            events: vec![PositionEvent {
                login,
                position: c.position_id,
                seq,
                kind: PositionChange::Close,
                symbol: account_symbol,
                side: c.side,
                volume: Volume::ZERO,
                delta: c.volume,
                price_open: c.price.unwrap_or(Price::ZERO),
                sl: Price::ZERO,
                tp: Price::ZERO,
                magic: c.magic,
                comment: c.comment.clone(),
                time,
                reversal: false,
                close: closing(time),
                resync: true,
            }],
            tracker_seq: None,
            what: format!("center {}, terminal none", describe(c)),
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::report;
    use hedge_center::positions::{apply, validate};
    use hedge_domain::{Magic, Side};
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use std::collections::HashSet;

    const LOGIN: Login = Login(7);

    fn vol(hundredths: i64) -> Volume {
        Volume(Decimal::new(hundredths, 2))
    }

    fn price(n: i64) -> Price {
        Price(Decimal::new(11000 + n, 4))
    }

    fn held(id: u64, side: Side, v: i64, seq: u32) -> Held {
        Held {
            state: PositionState {
                id: PositionId(id),
                symbol: "EURUSD".into(),
                side,
                volume: vol(v),
                price_open: price(0),
                sl: Price::ZERO,
                tp: Price::ZERO,
                magic: Magic(0),
                comment: "entry".into(),
                opened: 100,
                updated: 100,
                seq,
            },
            symbol: "EURUSD".into(),
        }
    }

    fn stored(id: u64, side: Side, v: i64, status: PositionStatus, last_seq: u64) -> Position {
        let volume = if status == PositionStatus::Closed {
            Volume::ZERO
        } else {
            vol(v)
        };
        Position {
            login: LOGIN,
            position_id: PositionId(id),
            symbol: "EURUSD".into(),
            account_symbol: "EURUSD".into(),
            side,
            volume,
            max_volume: if status == PositionStatus::PartiallyClosed {
                vol(v * 2)
            } else {
                vol(v)
            },
            price: Some(price(0)),
            sl: None,
            tp: None,
            magic: Magic(0),
            comment: String::new(),
            exit_comment: None,
            status,
            opened_ms: 1,
            updated_ms: 1,
            last_seq,
            last_event_id: hedge_center_api::model::EventId(1),
            price_current: None,
            swap: None,
            profit: None,
            commission: None,
            exit_price: None,
            realized_profit: None,
            realized_commission: None,
            realized_swap: None,
            realized_fee: None,
        }
    }

    fn kinds(plan: &Plan) -> Vec<(u64, u32, PositionChange, Side, Volume)> {
        plan.corrections
            .iter()
            .flat_map(|c| &c.events)
            .map(|e| (e.position.get(), e.seq, e.kind, e.side, e.volume))
            .collect()
    }

    #[test]
    fn agreeing_books_need_nothing() {
        let plan = plan(
            LOGIN,
            &[held(1, Side::Buy, 30, 3)],
            &[stored(1, Side::Buy, 30, PositionStatus::Open, 3)],
            500,
        );
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn a_refused_open_is_opened_again_above_the_centers_newer_seq() {
        // The account: EURUSD 0.3 refused, GBPUSD 0.1 never stored; the center had
        // position 1 closed by a report with seq 10.
        let mut gbp = held(2, Side::Buy, 10, 1);
        gbp.symbol = "GBPUSD".into();
        gbp.state.symbol = "GBPUSD".into();
        let plan = plan(
            LOGIN,
            &[held(1, Side::Buy, 30, 2), gbp],
            &[stored(1, Side::Buy, 30, PositionStatus::Closed, 10)],
            500,
        );
        assert_eq!(
            kinds(&plan),
            vec![
                (1, 11, PositionChange::Open, Side::Buy, vol(30)),
                (2, 2, PositionChange::Open, Side::Buy, vol(10)),
            ]
        );
        assert_eq!(plan.corrections[0].tracker_seq, Some(11));
        assert!(plan
            .corrections
            .iter()
            .flat_map(|c| &c.events)
            .all(|e| e.resync && e.time == 500));
        assert_eq!(
            plan.corrections[0].what,
            "center closed (seq 10), terminal buy 0.3"
        );
        let r = report(&plan.corrections[0].events[0], "EURUSD");
        assert_eq!(r.idempotency_key, "7:1:11");
        assert_eq!(r.comment, "entry; re-synced from the terminal");
    }

    #[test]
    fn volume_and_side_are_corrected_as_the_tracker_reports_them() {
        let plan = plan(
            LOGIN,
            &[
                held(1, Side::Buy, 30, 2),
                held(2, Side::Buy, 10, 4),
                held(3, Side::Sell, 20, 5),
            ],
            &[
                stored(1, Side::Buy, 10, PositionStatus::PartiallyClosed, 3),
                stored(2, Side::Buy, 30, PositionStatus::Open, 2),
                stored(3, Side::Buy, 20, PositionStatus::Open, 5),
            ],
            500,
        );
        assert_eq!(
            kinds(&plan),
            vec![
                (1, 4, PositionChange::Increase, Side::Buy, vol(30)),
                (2, 5, PositionChange::PartialClose, Side::Buy, vol(10)),
                (3, 6, PositionChange::Close, Side::Buy, Volume::ZERO),
                (3, 7, PositionChange::Open, Side::Sell, vol(20)),
            ]
        );
        assert_eq!(plan.corrections[2].tracker_seq, Some(7));
        assert!(plan.corrections[2].events.iter().all(|e| e.reversal));
    }

    #[test]
    fn a_position_only_the_center_holds_is_closed_and_one_on_another_symbol_is_stuck() {
        let mut other = stored(2, Side::Buy, 10, PositionStatus::Open, 1);
        other.symbol = "GBPUSD".into();
        let plan = plan(
            LOGIN,
            &[held(2, Side::Buy, 10, 1)],
            &[stored(9, Side::Sell, 10, PositionStatus::Open, 4), other],
            500,
        );
        assert_eq!(
            kinds(&plan),
            vec![(9, 5, PositionChange::Close, Side::Sell, Volume::ZERO)]
        );
        assert_eq!(plan.corrections[0].tracker_seq, None);
        assert_eq!(plan.stuck.len(), 1);
        assert_eq!(plan.stuck[0].0, PositionId(2));
        assert_eq!(
            plan.stuck[0].1,
            Uncorrectable::OtherSymbol {
                center: "GBPUSD".into(),
                terminal: "EURUSD".into()
            }
        );
        let differing: Vec<u64> = plan.differing.iter().map(|p| p.get()).collect();
        assert_eq!(differing, vec![2, 9]);
    }

    #[test]
    fn stops_the_center_kept_from_before_are_cleared() {
        let mut closed = stored(1, Side::Buy, 30, PositionStatus::Closed, 3);
        closed.sl = Some(price(-50));
        let plan = plan(LOGIN, &[held(1, Side::Buy, 30, 3)], &[closed], 500);
        let k: Vec<PositionChange> = kinds(&plan).into_iter().map(|k| k.2).collect();
        assert_eq!(k, vec![PositionChange::Open, PositionChange::Modify]);
    }

    /// Stops as hundredths of a price step; 0 is none.
    fn stop(n: u8) -> Price {
        if n == 0 {
            Price::ZERO
        } else {
            price(i64::from(n))
        }
    }

    fn side(buy: bool) -> Side {
        if buy {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    type HeldSpec = (bool, i64, u8, u8, u32);
    type StoredSpec = (bool, i64, u8, u8, u8, u64);

    proptest! {
        /// Whatever the tracker holds and whatever the center stored, the corrective reports are
        /// all accepted by the center's own rules, their keys are new, and afterwards the center
        /// holds exactly the tracker's positions.
        #[test]
        fn corrections_take_any_center_to_the_trackers_state(
            tracked in proptest::collection::btree_map(0u64..10, (any::<bool>(), 1i64..500, 0u8..3, 0u8..3, 1u32..20), 0..8),
            centers in proptest::collection::btree_map(0u64..10, (any::<bool>(), 1i64..500, 0u8..3, 0u8..3, 0u8..3, 1u64..30), 0..8),
        ) {
            let tracked: BTreeMap<u64, HeldSpec> = tracked;
            let centers: BTreeMap<u64, StoredSpec> = centers;
            let held: Vec<Held> = tracked
                .iter()
                .map(|(id, (buy, v, sl, tp, seq))| {
                    let mut h = held(*id, side(*buy), *v, *seq);
                    h.state.sl = stop(*sl);
                    h.state.tp = stop(*tp);
                    h
                })
                .collect();
            let mut books: BTreeMap<PositionId, Position> = centers
                .iter()
                .map(|(id, (buy, v, status, sl, tp, last_seq))| {
                    let status = [PositionStatus::Open, PositionStatus::PartiallyClosed, PositionStatus::Closed][usize::from(*status)];
                    let mut p = stored(*id, side(*buy), *v, status, *last_seq);
                    p.sl = non_zero(stop(*sl));
                    p.tp = non_zero(stop(*tp));
                    (p.position_id, p)
                })
                .collect();
            let before: Vec<Position> = books.values().cloned().collect();
            let plan = plan(LOGIN, &held, &before, 900);
            prop_assert!(plan.stuck.is_empty());
            let mut keys = HashSet::new();
            for c in &plan.corrections {
                let floor = tracked.get(&c.position.get()).map_or(0, |t| u64::from(t.4))
                    .max(centers.get(&c.position.get()).map_or(0, |s| s.5));
                prop_assert_eq!(c.tracker_seq.is_some(), tracked.contains_key(&c.position.get()));
                if let Some(seq) = c.tracker_seq {
                    prop_assert_eq!(Some(seq), c.events.last().map(|e| e.seq));
                }
                for e in &c.events {
                    prop_assert!(u64::from(e.seq) > floor, "seq {} not above {}", e.seq, floor);
                    let r = report(e, "EURUSD");
                    prop_assert!(keys.insert(r.idempotency_key.clone()));
                    prop_assert!(validate(&r).is_ok(), "{:?} invalid: {:?}", r, validate(&r));
                    let t = apply(books.get(&r.position_id), &r);
                    prop_assert!(t.is_ok(), "{:?} refused: {:?}", r, t);
                    if let Ok(t) = t {
                        books.insert(r.position_id, t.position);
                    }
                }
            }
            let open: BTreeMap<PositionId, (Side, Volume, Option<Price>, Option<Price>)> = books
                .values()
                .filter(|p| p.status != PositionStatus::Closed)
                .map(|p| (p.position_id, (p.side, p.volume, p.sl, p.tp)))
                .collect();
            let expected: BTreeMap<PositionId, (Side, Volume, Option<Price>, Option<Price>)> = held
                .iter()
                .map(|h| (h.state.id, (h.state.side, h.state.volume, non_zero(h.state.sl), non_zero(h.state.tp))))
                .collect();
            prop_assert_eq!(open, expected);
            // Agreement is exactly what needed no report.
            let corrected: BTreeSet<PositionId> = plan.corrections.iter().map(|c| c.position).collect();
            prop_assert_eq!(corrected, plan.differing);
            // And a second comparison finds nothing more to do.
            let after: Vec<Position> = books.values().cloned().collect();
            let again = super::plan(LOGIN, &held, &after, 901);
            prop_assert!(again.corrections.is_empty(), "{:?}", again.corrections);
        }
    }
}
