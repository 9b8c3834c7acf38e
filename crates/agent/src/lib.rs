//! The hedge agents: the runtime they share, and the `client` and `tumbler` agents.
//!
//! An agent sits beside one MT5 terminal. The terminal's Expert Advisor (or `hedge sim`) connects to
//! the agent's port and streams the account; the agent turns that stream into reports to the decision
//! center. The shared runtime covers what every agent needs: the prototype-compatible command line
//! ([`args`]) merged with a TOML file ([`config`]), passwords that never reach a log ([`secret`]), a
//! durable outbox that holds reports while the center is down and sends them in order
//! ([`outbox`]), the terminal session ([`session`]), registration with the center ([`center`]) and a
//! periodic status line ([`status`]). The client agent reports every position event exactly once
//! ([`tracker`] is its pure core); the tumbler kills configured processes the moment a new position
//! appears ([`kill`]).

pub mod args;
pub mod center;
pub mod client;
pub mod config;
pub mod kill;
pub mod logging;
pub mod netting;
pub mod outbox;
pub mod resync;
pub mod secret;
pub mod session;
pub mod status;
pub mod tracker;
pub mod tumbler;
pub mod valuation;

pub use args::{AgentArgs, AgentSettings, ExecMode, LogFormat, TerminalSource};
pub use outbox::{Delivery, DeliveryError, NewItem, Outbox, OutboxItem};
pub use secret::Secret;
pub use session::{Session, SessionError};
pub use status::StatusBoard;
