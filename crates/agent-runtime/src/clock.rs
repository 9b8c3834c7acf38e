//! Wall-clock time as the agents write it into keys, reports and heartbeats: milliseconds since the
//! Unix epoch, read from the domain's [`SystemClock`], the clock the center, the hedger and the
//! simulator are given, so every part of the system has one definition of "now".

use crate::observed::TimeMs;
use hedge_domain::clock::{Clock, SystemClock};

/// Now, in milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_ms() -> TimeMs {
    SystemClock.now_ms()
}
