//! The four simulated accounts and what is played on them: each terminal connects to its agent as
//! the EA does, the signal opens its basket everywhere, the central close reaches only the hedge
//! accounts, and the final table compares what the accounts hold in base quantity.
//!
//! The brokers disagree on gold as real ones do: client A's is `XAUUSD.r` of 10 oz a lot, client
//! B's `GOLD` of 100 oz; hedge account 2001's `XAUUSD-ECN` of 100 oz, 2002's `XAUUSD.pro` of
//! 10 oz. Nobody tells the agents that `GOLD` is gold: they find it by its common name.

use super::{lots, CLIENT_A, CLIENT_B, HEDGE_1, HEDGE_2, SIGNAL_MAGIC};
use crate::exposure::{holds, table, Book, BookRole, Explanation, ExposureRow, Holding, LotSpec};
use crate::live::LiveAccount;
use crate::timeline::Timeline;
use anyhow::bail;
use hedge_center_api::client::CenterClient;
use hedge_domain::{AccountMarginMode, Login, Side, SymbolMap, Volume};
use hedge_sim::{
    default_symbols_for, AccountConfig, FeedConfig, SimConfig, SimSymbol, SimTerminal,
};
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GOLD: &str = "XAUUSD";

/// One account at its broker: how the broker names and sizes things, and its part in the demo.
#[derive(Clone, Debug)]
pub(super) struct Broker {
    pub name: &'static str,
    pub login: Login,
    pub mode: AccountMarginMode,
    /// The naming rule as the agent is told it (its `<prefix>` argument).
    pub affix: &'static str,
    /// Gold's name at this broker when the rule does not give it (`GOLD`).
    pub gold_name: Option<&'static str>,
    /// Ounces in one lot of gold.
    pub gold_oz: Decimal,
    pub role: BookRole,
    /// The signal's basket here: EURUSD lots bought and gold lots sold (the copier's lot
    /// multiplier per account).
    pub signal: (i64, i64),
}

impl Broker {
    /// The broker's full naming: the rule plus gold's own name.
    pub fn map(&self) -> SymbolMap {
        let map = SymbolMap::from_affix(self.affix);
        match self.gold_name {
            Some(name) => map
                .clone()
                .with_explicit(&format!("{name}={GOLD}"))
                .unwrap_or(map),
            None => map,
        }
    }

    /// The simulator's default symbols under this broker's names, gold resized.
    pub fn symbols(&self) -> Vec<SimSymbol> {
        let map = self.map();
        default_symbols_for(&map)
            .into_iter()
            .map(|s| {
                if map.to_canonical(&s.spec.name).as_deref() == Some(GOLD) {
                    s.with_contract_size(self.gold_oz)
                } else {
                    s
                }
            })
            .collect()
    }

    /// Canonical symbol → this account's lot.
    pub fn specs(&self) -> BTreeMap<String, LotSpec> {
        let map = self.map();
        self.symbols()
            .into_iter()
            .filter_map(|s| {
                let canonical = map.to_canonical(&s.spec.name)?;
                Some((
                    canonical,
                    LotSpec {
                        account_symbol: s.spec.name,
                        contract_size: s.spec.contract_size,
                        volume_step: s.spec.volume_step,
                    },
                ))
            })
            .collect()
    }

    /// One line on how this broker differs, for the timeline.
    pub fn describe(&self) -> String {
        let map = self.map();
        format!(
            "{} ({}; EURUSD is {}, gold is {} of {} oz a lot)",
            self.name,
            match self.mode {
                AccountMarginMode::RetailNetting => "netting",
                _ => "hedging",
            },
            map.to_account("EURUSD"),
            map.to_account(GOLD),
            self.gold_oz
        )
    }
}

/// The demo's four accounts: client A (netting, `.r` names), client B (hedging, `m` prefix and
/// `GOLD`) and the hedge accounts 2001 (`-ECN`) and 2002 (`.pro`), allocated 60/40.
pub(super) fn brokers() -> [Broker; 4] {
    let hedge = |weight: i64| BookRole::Hedge {
        weight: Decimal::new(weight, 2),
    };
    [
        Broker {
            name: "client A 1001",
            login: CLIENT_A,
            mode: AccountMarginMode::RetailNetting,
            affix: ".r",
            gold_name: None,
            gold_oz: Decimal::from(10),
            role: BookRole::Client,
            signal: (10, 150),
        },
        Broker {
            name: "client B 1002",
            login: CLIENT_B,
            mode: AccountMarginMode::RetailHedging,
            affix: "m*",
            gold_name: Some("GOLD"),
            gold_oz: Decimal::from(100),
            role: BookRole::Client,
            signal: (20, 20),
        },
        Broker {
            name: "hedge 2001",
            login: HEDGE_1,
            mode: AccountMarginMode::RetailHedging,
            affix: "-ECN",
            gold_name: None,
            gold_oz: Decimal::from(100),
            role: hedge(60),
            signal: (1, 1),
        },
        Broker {
            name: "hedge 2002",
            login: HEDGE_2,
            mode: AccountMarginMode::RetailHedging,
            affix: ".pro",
            gold_name: None,
            gold_oz: Decimal::from(10),
            role: hedge(40),
            signal: (1, 1),
        },
    ]
}

/// One simulated account.
pub(super) struct SimAccount {
    pub broker: Broker,
    pub sim: Arc<SimTerminal>,
    pub map: SymbolMap,
    specs: BTreeMap<String, LotSpec>,
}

impl SimAccount {
    fn book(&self) -> Book {
        Book {
            name: self.broker.name.to_owned(),
            login: self.broker.login,
            role: self.broker.role,
            specs: self.specs.clone(),
            holdings: self
                .sim
                .positions()
                .into_iter()
                .map(|p| Holding {
                    symbol: self.map.to_canonical(&p.symbol).unwrap_or(p.symbol.clone()),
                    side: p.position_type.side(),
                    volume: p.volume,
                })
                .collect(),
        }
    }
}

/// The client accounts and the hedge accounts.
pub(super) struct SimAccounts {
    pub clients: Vec<SimAccount>,
    pub hedges: Vec<SimAccount>,
}

fn sim(port: String, broker: &Broker, seed: u64, n: u64) -> Arc<SimTerminal> {
    let mut account = AccountConfig {
        login: broker.login,
        mode: broker.mode,
        seed: seed.wrapping_add(n),
        first_ticket: 100_000 * (n + 1),
        ..AccountConfig::default()
    };
    account.server = "HedgeSim-Demo".into();
    let mut config = SimConfig::new(port, account);
    config.symbols = broker.symbols();
    config.feed = FeedConfig::RandomWalk {
        interval: Duration::from_millis(250),
    };
    Arc::new(SimTerminal::spawn(config))
}

impl SimAccounts {
    /// Starts a terminal per broker, each connecting to the address beside it, and waits for
    /// every one to connect to its agent.
    pub(super) async fn connect(
        setup: Vec<(Broker, String)>,
        seed: u64,
        t: &Timeline,
    ) -> anyhow::Result<Self> {
        let mut accounts = SimAccounts {
            clients: Vec::new(),
            hedges: Vec::new(),
        };
        for (n, (broker, port)) in setup.into_iter().enumerate() {
            let account = SimAccount {
                sim: sim(port, &broker, seed, n as u64 + 1),
                map: broker.map(),
                specs: broker.specs(),
                broker,
            };
            match account.broker.role {
                BookRole::Client => accounts.clients.push(account),
                BookRole::Hedge { .. } => accounts.hedges.push(account),
            }
        }
        for account in accounts.all() {
            let what = account.broker.describe();
            if !account.sim.wait_connected(Duration::from_secs(10)).await {
                bail!("the simulated terminal of {what} did not connect to its agent");
            }
            t.emit(
                "terminal",
                format!("{what} connected"),
                json!({ "login": account.broker.login, "gold": account.map.to_account(GOLD), "gold_oz": account.broker.gold_oz }),
            );
        }
        Ok(accounts)
    }

    fn all(&self) -> impl Iterator<Item = &SimAccount> {
        self.clients.iter().chain(&self.hedges)
    }

    /// The signal: the copier opens the basket on every account, scaled by its lot multiplier
    /// there.
    pub(super) fn play_signal(&self, t: &Timeline) -> anyhow::Result<()> {
        t.emit(
            "signal",
            "signal: the copier opens EURUSD buy / gold sell on every account",
            json!({}),
        );
        for account in self.all() {
            let name = account.broker.name;
            let (eur, gold) = account.broker.signal;
            for (canonical, side, volume) in [
                ("EURUSD", Side::Buy, lots(eur)),
                (GOLD, Side::Sell, lots(gold)),
            ] {
                let symbol = account.map.to_account(canonical);
                let reply = account
                    .sim
                    .open(&symbol, side, volume, SIGNAL_MAGIC, "signal#42");
                t.emit(
                    "open",
                    format!(
                        "{name}: {side} {} lots {symbol}{} -> retcode {}, position {}",
                        super::table::lot_count(volume.0),
                        in_base(&account.specs, canonical, volume),
                        reply.retcode,
                        reply.position
                    ),
                    json!({ "account": name, "symbol": symbol, "side": side, "volume": volume, "retcode": reply.retcode }),
                );
                if !reply.retcode.is_done() {
                    bail!("the signal's open on {name} failed: {}", reply.retcode);
                }
            }
        }
        Ok(())
    }

    /// The central close: the copier is dead, so only the hedge accounts receive it.
    pub(super) fn central_close(&self, t: &Timeline) {
        t.emit(
            "signal",
            "central close: only the hedge accounts still follow the signal",
            json!({}),
        );
        for account in &self.hedges {
            let hedge = &account.sim;
            for p in hedge.positions() {
                if p.magic == SIGNAL_MAGIC {
                    let reply = hedge.close(p.identifier, None);
                    t.emit(
                        "close",
                        format!(
                            "{}: close position {} {} -> retcode {}",
                            account.broker.name, p.identifier, p.symbol, reply.retcode
                        ),
                        json!({ "account": account.broker.name, "position": p.identifier, "retcode": reply.retcode }),
                    );
                }
            }
        }
    }

    /// The table of the clients against the hedge accounts, now; `residuals` are the plans'
    /// explanations of what the grids leave.
    pub(super) fn table(&self, residuals: &[Explanation]) -> Vec<ExposureRow> {
        let books: Vec<Book> = self.all().map(SimAccount::book).collect();
        table(&books, residuals)
    }

    /// The client accounts as the live phase trades them.
    pub(super) fn live_clients(&self) -> Vec<LiveAccount> {
        self.clients
            .iter()
            .map(|a| LiveAccount {
                name: a.broker.name,
                sim: a.sim.clone(),
                map: a.map.clone(),
                netting: a.broker.mode == AccountMarginMode::RetailNetting,
            })
            .collect()
    }

    pub(super) async fn stop(&self) {
        for a in self.all() {
            a.sim.stop().await;
        }
    }
}

/// ` (15 oz)`: what `volume` lots of `canonical` are in base quantity on an account.
fn in_base(specs: &BTreeMap<String, LotSpec>, canonical: &str, volume: Volume) -> String {
    specs.get(canonical).map_or_else(String::new, |s| {
        format!(
            " ({} {})",
            crate::exposure::quantity(volume.0 * s.contract_size).trim_start_matches('+'),
            crate::exposure::unit_of(canonical)
        )
    })
}

/// Waits until every account registered with the center with its symbols: the plan needs the
/// hedge accounts' contract sizes and the clients'.
pub(super) async fn wait_registered(view: &CenterClient) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let accounts = view.accounts().await.unwrap_or_default();
        if [CLIENT_A, CLIENT_B, HEDGE_1, HEDGE_2].iter().all(|l| {
            accounts
                .iter()
                .any(|a| a.registration.login == *l && !a.registration.symbols.is_empty())
        }) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not every agent registered with the center");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits up to 3 s for the hedge accounts to mirror the clients, but for what the plans explain
/// (a hedge may still be in flight).
pub(super) async fn settle(accounts: &SimAccounts, view: &CenterClient) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let explained = super::residuals(view, &brokers()).await;
        if holds(&accounts.table(&explained)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
