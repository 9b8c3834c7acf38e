//! A simulated MT5 trade server that speaks the terminal side of the hedge line protocol.
//!
//! [`account::Account`] is the pure, deterministic matching engine: netting and hedging accounts with
//! MT5's semantics (one position per symbol reduced with `OUT` or reversed with `INOUT` on netting; one
//! position per market order and closes naming `position` on hedging), market orders with deviation
//! and every filling mode, partial fills under limited liquidity, pending orders, SL/TP triggers, a
//! margin check, and the full order and deal history, with exact decimals and injected faults drawn
//! from a seed. [`terminal::SimTerminal`] runs it as a terminal connecting out to an agent, exactly as
//! the EA does; [`feed`] moves prices (random walk or tick file), [`script`] drives scripted scenarios,
//! [`control`] takes trades typed into a running simulator, and [`cli`] is the `hedge sim`
//! subcommand.

pub mod account;
pub mod cli;
pub mod control;
pub mod faults;
pub mod feed;
pub mod script;
pub mod symbols;
pub mod terminal;

pub use account::{Account, AccountConfig, Execution, Position};
pub use faults::Faults;
pub use feed::{parse_ticks, RandomWalk, Tick};
pub use script::Script;
pub use symbols::{default_symbols, default_symbols_for, SimSymbol};
pub use terminal::{FeedConfig, SimConfig, SimTerminal};
