//! One instance's readers share their event-horizon queries.
//!
//! Each read transaction needs a horizon read before its snapshot begins, and reading it scans
//! the server's lock table under all of its partition locks (which the writers' lock requests
//! wait for meanwhile). Readers that arrive while a horizon query is on its way wait for the next
//! one and share it: the first of them sends it on its own connection, the others take its
//! answer. A reader only takes the answer of a query sent after it arrived, so what it reads is
//! as recent as if it had asked on its own: a report acknowledged, on any instance, before the
//! read began is at or below the horizon it gets (unless a lower id is still in flight), exactly
//! as before. A horizon kept from an earlier query is never handed out, since that guarantee
//! would not hold for it.

use super::StoreError;

#[derive(Default)]
struct State {
    /// Queries started so far; the last one may still be on its way.
    started: u64,
    in_flight: bool,
    /// The newest answer: which query gave it, and the horizon.
    last: Option<(u64, u64)>,
}

/// The horizon queries of one instance's readers.
#[derive(Default)]
pub(crate) struct SharedHorizon {
    state: parking_lot::Mutex<State>,
    answered: parking_lot::Condvar,
}

impl SharedHorizon {
    /// The horizon as given by a query sent after this call began: the answer of another
    /// reader's query if one such is on its way or answered, else `query`'s, which then serves
    /// the readers that arrive while it runs. A failed query serves nobody else: each of the
    /// waiting readers then asks again.
    pub(crate) fn read(
        &self,
        query: impl FnOnce() -> Result<u64, StoreError>,
    ) -> Result<u64, StoreError> {
        let mut state = self.state.lock();
        // A query numbered `started` may have been sent before this call began.
        let wanted = state.started + 1;
        loop {
            if let Some((by, horizon)) = state.last {
                if by >= wanted {
                    return Ok(horizon);
                }
            }
            if !state.in_flight {
                break;
            }
            self.answered.wait(&mut state);
        }
        state.started += 1;
        state.in_flight = true;
        let mine = state.started;
        drop(state);
        let answer = query();
        let mut state = self.state.lock();
        state.in_flight = false;
        if let Ok(horizon) = answer {
            state.last = Some((mine, horizon));
        }
        self.answered.notify_all();
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Barrier};

    /// Readers arriving while a query runs share the next one, never the one already on its way,
    /// and a failed query leaves the next reader to ask again.
    #[test]
    fn readers_share_only_queries_sent_after_they_arrived() {
        let shared = Arc::new(SharedHorizon::default());
        let queries = Arc::new(AtomicU64::new(0));
        assert_eq!(shared.read(|| Ok(5)).unwrap(), 5);
        // Not the answer of a query that came before.
        assert_eq!(shared.read(|| Ok(6)).unwrap(), 6);
        assert!(shared.read(|| Err(StoreError::Closed)).is_err());
        assert_eq!(shared.read(|| Ok(7)).unwrap(), 7);

        // A slow query; eight readers arrive while it runs and share one query after it.
        let (started, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let first = {
            let (shared, queries) = (shared.clone(), queries.clone());
            let (started, release) = (started.clone(), release.clone());
            std::thread::spawn(move || {
                shared.read(|| {
                    queries.fetch_add(1, Ordering::SeqCst);
                    started.wait();
                    release.wait();
                    Ok(10)
                })
            })
        };
        started.wait();
        let waiting: Vec<_> = (0..8)
            .map(|_| {
                let (shared, queries) = (shared.clone(), queries.clone());
                std::thread::spawn(move || {
                    shared.read(|| {
                        let n = queries.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        Ok(10 + n)
                    })
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(200));
        release.wait();
        assert_eq!(first.join().unwrap().unwrap(), 10);
        let answers: Vec<u64> = waiting
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        // None takes the answer of the query on its way when it arrived; they share the next
        // (one more when a thread was so slow to start that it came after that one was sent).
        assert!(answers.iter().all(|&a| a >= 11), "{answers:?}");
        let asked = queries.load(Ordering::SeqCst);
        assert!(asked < 9, "{asked} queries for 9 readers");
        assert!(
            answers.iter().filter(|&&a| a == 11).count() > 1,
            "{answers:?}"
        );
    }
}
