//! `hedge demo`: the whole system in one process, on loopback, in well under a minute.
//!
//! It starts a center on SQLite in a temporary directory and simulated terminals at four brokers
//! that disagree on gold as real ones do: client A (netting, `.r` names, gold `XAUUSD.r` of 10 oz
//! a lot), client B (hedging, `m` names, gold `GOLD` of 100 oz), hedge account 2001 (`-ECN`, 100 oz)
//! and hedge account 2002 (`.pro`, 10 oz). It runs the client agents (which find `GOLD` by its
//! common name), the tumbler on client A (the account the copier trades into; [`relay`] streams
//! that terminal to both agents) and a hedger per hedge account in trigger mode, and the operator
//! allocates the clients' exposure 60/40 between the hedge accounts through the center's API.
//! Then it plays the signal users know: the copier opens the basket on every account, the tumbler
//! kills the copier (a real, harmless dummy process), and the "central close" reaches only the
//! hedge accounts; that close triggers the hedgers, which open their share of the opposite of the
//! clients' exposure, converted through ounces. Everything is printed as it happens
//! ([`timeline`]), and the final table ([`exposure`]) proves in base quantity that the hedge
//! accounts together are opposite the clients and split as allocated. With `--duration`, the
//! [`live`] phase follows: client trading goes on and the hedgers, now in mirror mode, follow the
//! plan and execute operator commands.

pub mod cli;
pub mod exposure;
pub mod interrupt;
pub mod live;
pub mod relay;
pub mod scenario;
pub mod timeline;
