//! The replay's work list: deals and stop events in the order a live feed delivers them.

use super::{stops, IdMap};
use crate::record::History;
use hedge_domain::OrderState;

/// Whether an order in this state still works on the server.
pub(crate) fn order_state_is_pending(state: OrderState) -> bool {
    matches!(
        state,
        OrderState::Started
            | OrderState::Placed
            | OrderState::Partial
            | OrderState::RequestAdd
            | OrderState::RequestModify
            | OrderState::RequestCancel
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum StepKind {
    Place,
    Cancel,
    Deal,
}

/// One unit of replay work: a deal, or a stop order's placement or cancellation.
pub(super) struct Step {
    time: i64,
    pub kind: StepKind,
    /// Order within one millisecond: 0 before its deals, 1 the deals, 2 after them.
    rank: u8,
    ticket: u64,
    pub index: u32,
}

/// The replay's work list in the order a live feed delivers it. A missing time puts a stop event
/// after every deal, where a live feed would have reported it at the latest. A stop placed before
/// its position's opening deal (clocks never allow it) finds nothing to protect.
pub(super) fn replay_steps(history: &History) -> Vec<Step> {
    // Later records of a ticket replace earlier ones: only final states count.
    let mut last: IdMap<usize> = IdMap::default();
    for (i, o) in history.orders.iter().enumerate() {
        last.insert(o.ticket.get(), i);
    }
    let mut steps: Vec<Step> = history
        .deals
        .iter()
        .enumerate()
        .map(|(i, d)| Step {
            time: d.time_msc,
            kind: StepKind::Deal,
            rank: 1,
            ticket: d.ticket.get(),
            index: i as u32,
        })
        .collect();
    for (i, o) in history.orders.iter().enumerate() {
        if last.get(&o.ticket.get()) != Some(&i) || !stops::is_stop_loss_order(o) {
            continue;
        }
        let known = |t: i64| (t > 0).then_some(t);
        let placed = known(o.time_setup_msc)
            .or(known(o.time_done_msc))
            .unwrap_or(i64::MAX);
        let step = |time, kind, rank| Step {
            time,
            kind,
            rank,
            ticket: o.ticket.get(),
            index: i as u32,
        };
        let done = o
            .is_cancelled()
            .then(|| known(o.time_done_msc).unwrap_or(i64::MAX).max(placed));
        // Within one millisecond a stop is placed after the deals (it protects what they opened)
        // and cancelled before them (a close plan cancels the stop first), unless it is placed
        // and cancelled in that same millisecond.
        let place_rank = if done == Some(placed) { 0 } else { 2 };
        steps.push(step(placed, StepKind::Place, place_rank));
        if let Some(done) = done {
            steps.push(step(done, StepKind::Cancel, 0));
        }
    }
    steps.sort_unstable_by_key(|s| (s.time, s.rank, s.ticket, s.kind));
    steps
}
