//! Bi-directional positions on MT5 accounts, the way HedgeTerminal kept them on netting accounts.
//!
//! A netting account shows one net position per symbol; traders and hedging agents need to see, and
//! close, the individual positions behind it. Every order placed through the ledger carries a link
//! magic ([`codec`]) naming the position it closes or protects, so a replay of the account's deals
//! ([`Ledger`]) rebuilds the same bi-directional positions on any machine, deal by deal, and keeps
//! them current from live updates. Hedging accounts get the same view from native position ids. The
//! crate also plans the broker requests that manage those positions ([`actions`]), keeps the few
//! local facts (virtual take-profit, freezes) in a lock-protected store ([`state`]), imports MT5
//! "Trade History Report" exports ([`report`]), handles exclusions and net reconciliation, and
//! writes `Active.csv` / `History.csv`. The core is pure and synchronous; only [`state`] and the CLI
//! touch files.

pub mod actions;
pub mod cli;
pub mod codec;
pub mod exclusions;
pub mod export;
pub mod generator;
pub mod ledger;
pub mod position;
pub mod reconcile;
pub mod record;
pub mod report;
pub mod state;

pub use codec::{decode, encode, CodecError, Link, LinkKind};
pub use ledger::{
    Ledger, LedgerError, PairingMode, PositionChange, PositionEvent, ReplayStats, Warning,
};
pub use position::{ActivePosition, CloseKind, DealFragment, HistoryPosition, OrderInfo};
pub use record::{History, HistoryError, HistoryLine, LedgerAccount, LedgerDeal, LedgerOrder};
