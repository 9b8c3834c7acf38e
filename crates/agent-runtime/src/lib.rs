//! The runtime every hedge agent shares (the client, the tumbler and the hedger).
//!
//! An agent sits beside one MT5 terminal. The terminal's Expert Advisor (or `hedge sim`) connects to
//! the agent's port and streams the account; the agent turns that stream into reports to the decision
//! center. This crate covers what every agent needs: the legacy-compatible command line
//! ([`args`]) merged with a TOML file ([`config`]), passwords that never reach a log ([`secret`]), a
//! durable outbox that holds reports while the center is down and sends them in order
//! ([`outbox`]), the terminal session ([`session`]), delivery and registration with the center
//! ([`center`]), a periodic status line ([`status`]) and the account's valuation for heartbeats
//! ([`valuation`]), the bi-directional positions of a netting account ([`netting`], over the
//! position shapes of [`observed`]), logging ([`logging`]) and the wall clock ([`clock`]).
//!
//! The agents themselves live elsewhere: `hedge-agent` (client and tumbler) and `hedge-hedger`.

pub mod args;
pub mod center;
pub mod clock;
pub mod config;
pub mod logging;
pub mod netting;
pub mod observed;
pub mod outbox;
pub mod secret;
pub mod session;
pub mod status;
pub mod valuation;

pub use args::{AgentArgs, AgentSettings, ExecMode, LogFormat, TerminalSource};
pub use outbox::{Delivery, DeliveryError, NewItem, Outbox, OutboxItem};
pub use secret::Secret;
pub use session::{Session, SessionError};
pub use status::StatusBoard;
