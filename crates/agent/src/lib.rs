//! The `client` and `tumbler` agents, on the runtime every agent shares (`hedge-agent-runtime`).
//!
//! An agent sits beside one MT5 terminal; the runtime gives it its command line, config, secrets,
//! outbox, terminal session and center delivery. The client agent reports every position event
//! exactly once ([`client`]; [`tracker`] is its pure core and [`resync`] the pure comparison that
//! corrects the center from the terminal); the tumbler kills configured processes the moment a new
//! position appears ([`tumbler`], killing through [`kill`]).

pub mod client;
pub mod kill;
pub mod resync;
pub mod tracker;
pub mod tumbler;
