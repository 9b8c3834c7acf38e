//! The hedger agent: it watches the hedge account and executes the center's hedge plan on it.
//!
//! The plan is held in memory and kept current from the center's event stream, so that when the
//! trigger arrives (one of the hedge account's positions closes, in `trigger` mode) or the plan
//! changes (in `mirror` mode) the orders go out without waiting on a request. Deciding what to send
//! is pure ([`planner`], [`retry`]); every order carries its plan item id in its magic, comment
//! and command id ([`tag`]), so that after a restart the agent matches what the account holds against
//! what the center recorded before it acts, and never hedges twice. Before an opening order goes out
//! it is checked with the terminal (`order_check`) and against the account's limits ([`pretrade`]);
//! what is refused is reported to the center with its reason instead of being sent.

pub mod account_view;
pub mod cli;
pub mod netting_hedges;
pub mod orders;
pub mod planner;
pub mod pretrade;
pub mod probe;
pub mod records;
pub mod retry;
pub mod runtime;
pub mod tag;
