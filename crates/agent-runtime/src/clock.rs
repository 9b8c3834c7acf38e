//! Wall-clock time as the agents write it into keys, reports and heartbeats: milliseconds since the
//! Unix epoch. One function, so every part of the runtime reads the same clock.

use crate::observed::TimeMs;

/// Now, in milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_ms() -> TimeMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
