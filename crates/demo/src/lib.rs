//! `hedge demo`: the whole system in one process, on loopback, in well under a minute.
//!
//! It starts a center on SQLite in a temporary directory, simulated terminals for two client accounts
//! (one netting with `.r` names, one hedging with `m` names) and a hedge account (`-ECN` names), the
//! client agents, the tumbler on client A (the account the copier trades into; [`relay`] streams
//! that terminal to both agents) and the hedger in trigger mode. Then it plays the signal users
//! know: the copier opens the same trades on every account, the tumbler kills the copier (a real,
//! harmless dummy process), and the "central close" reaches only the hedge account; that close
//! triggers the hedger, which opens the opposite of the clients' net exposure. Everything is printed
//! as it happens ([`timeline`]), and the final table ([`exposure`]) proves the hedge account is net
//! opposite to the clients. With `--duration`, the [`live`] phase follows: client trading goes on
//! and the hedger, now in mirror mode, follows the plan and executes operator commands.

pub mod cli;
pub mod exposure;
pub mod interrupt;
pub mod live;
pub mod relay;
pub mod scenario;
pub mod timeline;
