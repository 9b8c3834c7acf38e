//! Fault injection: the misbehaviours of real trade servers and links, at rates drawn from the
//! account's seeded generator so a run can be repeated exactly.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// Probability (0..1) that a market order is answered with a requote (10004) or an off-quote
    /// (10021), half each.
    #[serde(default)]
    pub requote_rate: f64,
    /// Probability (0..1) that a market order is rejected (10006).
    #[serde(default)]
    pub reject_rate: f64,
    /// Added delay before each command is executed, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Drop the connection once after this many messages have been sent to the agent.
    #[serde(default)]
    pub disconnect_after: Option<u64>,
}
