//! `hedge soak`: runs the whole system, each part in its own process, on a seeded random trading
//! script with seeded faults from every layer, then checks that the books agree.
//!
//! The center and every agent (client agents, a hedger per hedge account, a tumbler) are child
//! processes of the `hedge` binary, so a fault can be a real `kill -9`. The terminals are simulated
//! in this process (`hedge-sim`), which is what lets the soak trade into them and read the
//! accounts' true state at the end. The agents reach the center through [`proxy`], which refuses
//! writes (as a full disk does), answers slowly, or loses answers after the center committed.
//!
//! Entry points: [`cli::run`] (the command), [`script::Script::generate`] (the pure, seeded
//! schedule: the same seed gives the same script), [`invariants::check`] (pure: the checks over
//! what was collected from the center and the accounts).
//!
//! Invariants checked once trading stopped and everything settled:
//! - every client position is in the center exactly once, as the terminal holds it;
//! - the center's open hedges equal the hedge accounts' positions, per position and per symbol;
//! - each hedge account's net per symbol is the opposite of its clients' net, or a residual the
//!   plan shows;
//! - no plan item filled beyond its volume, no order on a hedge account without a plan item or an
//!   operator command;
//! - all of it reached within the settle timeout after the last fault.

pub mod cli;
pub mod invariants;
pub mod proxy;
pub mod script;
pub mod system;
