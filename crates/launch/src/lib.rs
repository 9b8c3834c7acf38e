//! Starting a real MT5 terminal for a hedge agent, from the command line, on Windows or under Wine.
//!
//! An agent given `<path> <login> <password> <server>` instead of a terminal port asks this crate to
//! start the terminal at `<path>` the way MT5 documents it: in portable mode, with a generated
//! `/config:` start-up file that logs in, enables algo trading and attaches the bridge Expert Advisor
//! (`mql5/HedgeBridge.mq5`, embedded here, copied into the terminal's `MQL5/Experts` and compiled
//! with MetaEditor when needed) to a chart, its inputs pointing at the agent's port. The agent then
//! waits on its own listener through [`RunningTerminal::wait_for`], which fails early and clearly
//! when the login is refused or the terminal exits, and after a timeout lists the likely causes.
//! The password lives only in memory and, for the seconds the terminal needs to read it, in an
//! owner-only start-up file: never in argv, logs, errors or `Debug` output.
//!
//! The text builders ([`startup`], [`command`], [`layout`]) are pure; [`launcher`], [`files`] and
//! [`journal`] do the I/O.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use hedge_launch::{LaunchSpec, Launcher, Secret};
//! // Bind first: the bridge is told the agent's real port.
//! let listener = hedge_protocol::TerminalListener::bind("127.0.0.1:0").await?;
//! let spec = LaunchSpec::new(
//!     "/opt/mt5-demo/terminal64.exe",
//!     hedge_domain::Login(5012345),
//!     Secret::from_arg("env:MT5_PASSWORD")?,
//!     "Broker-Demo",
//!     listener.local_addr().port(),
//! );
//! // Blocking (it may run MetaEditor), hence spawn_blocking inside a runtime.
//! let mut running = tokio::task::spawn_blocking(move || Launcher::new(spec).start()).await??;
//! let terminal = listener.start();
//! // Fails early on a refused login or an exited terminal, else after the timeout, with a diagnosis.
//! running.wait_for(terminal.ready()).await??;
//! # Ok(()) }
//! ```

pub mod cli;
pub mod command;
pub mod files;
pub mod journal;
pub mod launcher;
pub mod layout;
pub mod secret;
pub mod startup;

pub use command::WineMode;
pub use journal::Finding;
pub use launcher::{
    chart_symbol_for, Diagnosis, LaunchError, LaunchSpec, Launcher, RunningTerminal, TerminalState,
    EA_SOURCE, FALLBACK_CHART_SYMBOL,
};
pub use layout::DataFolder;
pub use secret::{PasswordError, Secret};
pub use startup::{ExpertInputs, ExpertLogLevel};
