//! Stage timestamps along the mirror path, for the reaction benchmark.
//!
//! The mirror reaction crosses several hops (the center's event stream, the plan, the terminal); a
//! single end-to-end figure cannot say which hop a slow run spent its time in. A probe records when
//! each stage happened for a key the stages share: the center event id, which is also the id of the
//! plan item that event produced. It is off unless installed, and recording is a short lock and a
//! push, never on the order's own path before the write.

use parking_lot::Mutex;
use std::time::Instant;

/// A point on the mirror path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// The event, or a plan as of it (which the stream sends ahead of the event), arrived on the
    /// hedger's stream subscription (key: event id).
    EventReceived,
    /// A plan holding the item is in memory (key: plan item id).
    PlanHeld,
    /// The hedger started writing the item's order (key: plan item id).
    OrderWritten,
    /// The terminal answered the item's order (key: plan item id).
    OrderAnswered,
}

/// One recorded stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub stage: Stage,
    pub key: u64,
    pub at: Instant,
}

/// The recorder, shared by the plan follower and the runtime.
#[derive(Debug, Default)]
pub struct Probe {
    marks: Mutex<Vec<Mark>>,
}

impl Probe {
    pub fn record(&self, stage: Stage, key: u64, at: Instant) {
        self.marks.lock().push(Mark { stage, key, at });
    }

    /// The first time `stage` was recorded for `key`.
    pub fn first(&self, stage: Stage, key: u64) -> Option<Instant> {
        self.marks
            .lock()
            .iter()
            .filter(|m| m.stage == stage && m.key == key)
            .map(|m| m.at)
            .min()
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        self.marks.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_first_mark_of_a_stage_and_key_wins() {
        let p = Probe::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1);
        p.record(Stage::PlanHeld, 7, t1);
        p.record(Stage::PlanHeld, 7, t0);
        p.record(Stage::PlanHeld, 8, t0);
        assert_eq!(p.first(Stage::PlanHeld, 7), Some(t0));
        assert_eq!(p.first(Stage::OrderWritten, 7), None);
        p.clear();
        assert_eq!(p.first(Stage::PlanHeld, 8), None);
    }
}
