//! Wall-clock time, injected: the one place a component asks what time it is.
//!
//! Entry points: [`Clock`] (what a component holds, usually as [`SharedClock`]), [`SystemClock`]
//! (the real time, the default everywhere) and [`ManualClock`] (a time that moves only when a test
//! says so, so timestamps written by the center or the hedger can be asserted exactly).
//!
//! Invariant: times are milliseconds since the Unix epoch, the unit MT5 (`*_TIME_MSC`), the
//! protocol and the center's API all use; a system clock set before 1970 reads as 0, never panics.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of wall-clock time.
pub trait Clock: fmt::Debug + Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// A clock shared by the tasks of one component.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that stands still until it is set or advanced.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        ManualClock(AtomicI64::new(now_ms))
    }

    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms` (saturating) and returns the new time.
    pub fn advance(&self, ms: i64) -> i64 {
        let mut current = self.0.load(Ordering::SeqCst);
        loop {
            let next = current.saturating_add(ms);
            match self
                .0
                .compare_exchange(current, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        assert_eq!(clock.advance(500), 1_500);
        assert_eq!(clock.now_ms(), 1_500);
        clock.set(7);
        assert_eq!(clock.now_ms(), 7);
        clock.set(i64::MAX - 1);
        assert_eq!(clock.advance(10), i64::MAX);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        // 2020-01-01T00:00:00Z
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
