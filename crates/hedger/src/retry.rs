//! How an order is carried out: the filling mode, what to do with each retcode, and when to stop
//! trading a symbol. Pure rules; the agent applies them around the terminal's replies.

use hedge_domain::{Retcode, RetcodeClass};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Bounded exponential backoff for retryable retcodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(200),
        }
    }
}

/// What to do after a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The order was carried out.
    Done,
    /// Send it again (a new command id, a fresh price) after the delay.
    Retry(Duration),
    /// Give up on this order.
    GiveUp(Failure),
}

/// Why an order was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The server refused it for good.
    Fatal,
    /// Retryable refusals until the attempts ran out.
    RetriesExhausted,
}

impl RetryPolicy {
    /// The decision after attempt number `attempt` (0-based) got `retcode`.
    pub fn next(&self, attempt: u32, retcode: Retcode) -> Next {
        match retcode.class() {
            RetcodeClass::Done => Next::Done,
            RetcodeClass::Fatal => Next::GiveUp(Failure::Fatal),
            RetcodeClass::Retryable if attempt + 1 >= self.max_attempts => {
                Next::GiveUp(Failure::RetriesExhausted)
            }
            RetcodeClass::Retryable => Next::Retry(self.delay(attempt)),
        }
    }

    /// `base * 2^attempt`, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// Why a symbol's breaker is open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Trip {
    pub retcode: Retcode,
    pub rejects: u32,
    pub reason: String,
}

/// A circuit breaker per symbol: after `threshold` consecutive orders given up (fatal rejects or
/// exhausted retries) the symbol is not traded any more until reset, because an account that rejects
/// everything (no money, trading disabled, symbol closed) would otherwise be hammered on every plan
/// change.
#[derive(Clone, Debug)]
pub struct Breakers {
    threshold: u32,
    consecutive: BTreeMap<String, u32>,
    open: BTreeMap<String, Trip>,
}

impl Breakers {
    pub fn new(threshold: u32) -> Self {
        Breakers {
            threshold: threshold.max(1),
            consecutive: BTreeMap::new(),
            open: BTreeMap::new(),
        }
    }

    /// A carried-out order closes the run of failures.
    pub fn success(&mut self, symbol: &str) {
        self.consecutive.remove(symbol);
    }

    /// A given-up order. Returns the trip when this failure opens the breaker.
    pub fn failure(&mut self, symbol: &str, retcode: Retcode) -> Option<Trip> {
        if self.open.contains_key(symbol) {
            return None;
        }
        let n = self.consecutive.entry(symbol.to_owned()).or_insert(0);
        *n += 1;
        if *n < self.threshold {
            return None;
        }
        let trip = Trip {
            retcode,
            rejects: *n,
            reason: format!(
                "{n} consecutive rejected orders, last retcode {retcode}: {}",
                retcode.description()
            ),
        };
        self.open.insert(symbol.to_owned(), trip.clone());
        Some(trip)
    }

    pub fn is_open(&self, symbol: &str) -> bool {
        self.open.contains_key(symbol)
    }

    pub fn trip(&self, symbol: &str) -> Option<&Trip> {
        self.open.get(symbol)
    }

    /// Open breakers by symbol, with their reasons (what the planner skips).
    pub fn halted(&self) -> BTreeMap<String, String> {
        self.open
            .iter()
            .map(|(s, t)| (s.clone(), t.reason.clone()))
            .collect()
    }

    pub fn reset(&mut self, symbol: &str) {
        self.open.remove(symbol);
        self.consecutive.remove(symbol);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_and_back_off() {
        let p = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(25),
        };
        assert_eq!(p.next(0, Retcode::DONE), Next::Done);
        assert_eq!(p.next(0, Retcode::DONE_PARTIAL), Next::Done);
        assert_eq!(
            p.next(0, Retcode::REQUOTE),
            Next::Retry(Duration::from_millis(10))
        );
        assert_eq!(
            p.next(1, Retcode::PRICE_OFF),
            Next::Retry(Duration::from_millis(20))
        );
        assert_eq!(
            p.next(2, Retcode::TIMEOUT),
            Next::Retry(Duration::from_millis(25))
        );
        assert_eq!(
            p.next(3, Retcode::REQUOTE),
            Next::GiveUp(Failure::RetriesExhausted)
        );
        assert_eq!(p.next(0, Retcode::NO_MONEY), Next::GiveUp(Failure::Fatal));
        assert_eq!(p.next(0, Retcode(77777)), Next::GiveUp(Failure::Fatal));
        assert_eq!(p.delay(u32::MAX), Duration::from_millis(25));
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_only() {
        let mut b = Breakers::new(3);
        assert!(b.failure("EURUSD", Retcode::REJECT).is_none());
        assert!(b.failure("EURUSD", Retcode::REJECT).is_none());
        b.success("EURUSD");
        assert!(b.failure("EURUSD", Retcode::REJECT).is_none());
        assert!(b.failure("EURUSD", Retcode::REJECT).is_none());
        assert!(b.failure("GBPUSD", Retcode::REJECT).is_none());
        let trip = b.failure("EURUSD", Retcode::NO_MONEY).unwrap();
        assert_eq!(trip.rejects, 3);
        assert!(trip.reason.contains("10019"));
        assert!(b.is_open("EURUSD"));
        assert!(!b.is_open("GBPUSD"));
        assert!(
            b.failure("EURUSD", Retcode::REJECT).is_none(),
            "reported once"
        );
        assert_eq!(b.halted().len(), 1);
        b.reset("EURUSD");
        assert!(!b.is_open("EURUSD"));
    }
}
