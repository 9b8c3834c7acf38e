//! The three simulated accounts and what is played on them: each terminal connects to its agent as
//! the EA does, the signal opens the same basket everywhere, the central close reaches only the
//! hedge account, and the final table compares what the accounts hold.

use super::{lots, wait_for, CLIENT_A, CLIENT_B, HEDGE, SIGNAL_MAGIC};
use crate::exposure::{holds, table, ExposureRow, Holding};
use crate::live::LiveAccount;
use crate::timeline::Timeline;
use anyhow::bail;
use hedge_center_api::client::CenterClient;
use hedge_domain::{AccountMarginMode, Login, Side, SymbolMap, Volume};
use hedge_sim::{default_symbols_for, AccountConfig, FeedConfig, SimConfig, SimTerminal};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One trade of the signal on one account.
struct SignalTrade {
    canonical: &'static str,
    side: Side,
    volume: Volume,
}

/// One simulated account and its naming rule.
pub(super) struct SimAccount {
    pub name: &'static str,
    pub sim: Arc<SimTerminal>,
    pub map: SymbolMap,
}

impl SimAccount {
    fn holdings(&self) -> Vec<Holding> {
        self.sim
            .positions()
            .into_iter()
            .map(|p| Holding {
                symbol: self.map.to_canonical(&p.symbol).unwrap_or(p.symbol.clone()),
                side: p.position_type.side(),
                volume: p.volume,
            })
            .collect()
    }
}

/// Client A (netting), client B (hedging) and the hedge account (hedging).
pub(super) struct SimAccounts {
    pub a: SimAccount,
    pub b: SimAccount,
    pub hedge: SimAccount,
}

/// Where each account's terminal connects.
pub(super) struct Ports {
    pub a: String,
    pub b: String,
    pub hedge: String,
}

fn sim(
    port: String,
    login: Login,
    mode: AccountMarginMode,
    map: &SymbolMap,
    seed: u64,
    n: u64,
) -> Arc<SimTerminal> {
    let mut account = AccountConfig {
        login,
        mode,
        seed: seed.wrapping_add(n),
        first_ticket: 100_000 * (n + 1),
        ..AccountConfig::default()
    };
    account.server = "HedgeSim-Demo".into();
    let mut config = SimConfig::new(port, account);
    config.symbols = default_symbols_for(map);
    config.feed = FeedConfig::RandomWalk {
        interval: Duration::from_millis(250),
    };
    Arc::new(SimTerminal::spawn(config))
}

impl SimAccounts {
    /// Starts the three terminals and waits for each to connect to its agent.
    pub(super) async fn connect(ports: Ports, seed: u64, t: &Timeline) -> anyhow::Result<Self> {
        let map_a = SymbolMap::from_affix(".r");
        let map_b = SymbolMap::from_affix("m*");
        let map_h = SymbolMap::from_affix("-ECN");
        let accounts = SimAccounts {
            a: SimAccount {
                name: "client A 1001",
                sim: sim(
                    ports.a,
                    CLIENT_A,
                    AccountMarginMode::RetailNetting,
                    &map_a,
                    seed,
                    1,
                ),
                map: map_a,
            },
            b: SimAccount {
                name: "client B 1002",
                sim: sim(
                    ports.b,
                    CLIENT_B,
                    AccountMarginMode::RetailHedging,
                    &map_b,
                    seed,
                    2,
                ),
                map: map_b,
            },
            hedge: SimAccount {
                name: "hedge 2001",
                sim: sim(
                    ports.hedge,
                    HEDGE,
                    AccountMarginMode::RetailHedging,
                    &map_h,
                    seed,
                    3,
                ),
                map: map_h,
            },
        };
        for (name, s) in [
            (
                "client A (1001, netting, EURUSD.r; client agent and tumbler)",
                &accounts.a.sim,
            ),
            ("client B (1002, hedging, mEURUSD)", &accounts.b.sim),
            (
                "hedge account (2001, hedging, EURUSD-ECN)",
                &accounts.hedge.sim,
            ),
        ] {
            if !s.wait_connected(Duration::from_secs(10)).await {
                bail!("the simulated terminal of {name} did not connect to its agent");
            }
            t.emit("terminal", format!("{name} connected"), json!({}));
        }
        Ok(accounts)
    }

    /// The signal: the copier opens the same basket on every account.
    pub(super) fn play_signal(&self, t: &Timeline) -> anyhow::Result<()> {
        let basket = |eur: i64, xau: i64| {
            vec![
                SignalTrade {
                    canonical: "EURUSD",
                    side: Side::Buy,
                    volume: lots(eur),
                },
                SignalTrade {
                    canonical: "XAUUSD",
                    side: Side::Sell,
                    volume: lots(xau),
                },
            ]
        };
        t.emit(
            "signal",
            "signal: the copier opens EURUSD buy / XAUUSD sell on every account",
            json!({}),
        );
        for (account, trades) in [
            (&self.a, basket(10, 5)),
            (&self.b, basket(20, 3)),
            (&self.hedge, basket(1, 1)),
        ] {
            let name = account.name;
            for trade in trades {
                let symbol = account.map.to_account(trade.canonical);
                let reply =
                    account
                        .sim
                        .open(&symbol, trade.side, trade.volume, SIGNAL_MAGIC, "signal#42");
                t.emit(
                    "open",
                    format!(
                        "{name}: {} {} {} -> retcode {}, position {}",
                        trade.side, trade.volume, symbol, reply.retcode, reply.position
                    ),
                    json!({ "account": name, "symbol": symbol, "side": trade.side, "volume": trade.volume, "retcode": reply.retcode }),
                );
                if !reply.retcode.is_done() {
                    bail!("the signal's open on {name} failed: {}", reply.retcode);
                }
            }
        }
        Ok(())
    }

    /// The central close: the copier is dead, so only the hedge account receives it.
    pub(super) fn central_close(&self, t: &Timeline) {
        t.emit(
            "signal",
            "central close: only the hedge account still follows the signal",
            json!({}),
        );
        let hedge = &self.hedge.sim;
        for p in hedge.positions() {
            if p.magic == SIGNAL_MAGIC {
                let reply = hedge.close(p.identifier, None);
                t.emit(
                    "close",
                    format!(
                        "hedge 2001: close position {} {} -> retcode {}",
                        p.identifier, p.symbol, reply.retcode
                    ),
                    json!({ "position": p.identifier, "retcode": reply.retcode }),
                );
            }
        }
    }

    /// The net table of the clients against the hedge account, now.
    pub(super) fn table(&self) -> Vec<ExposureRow> {
        let mut clients = self.a.holdings();
        clients.extend(self.b.holdings());
        table(&clients, &self.hedge.holdings())
    }

    /// Whether the hedge account is exactly opposite to the clients now.
    pub(super) fn mirrored(&self) -> bool {
        holds(&self.table())
    }

    /// The client accounts as the live phase trades them.
    pub(super) fn live_clients(&self) -> [LiveAccount; 2] {
        [
            LiveAccount {
                name: self.a.name,
                sim: self.a.sim.clone(),
                map: self.a.map.clone(),
                netting: true,
            },
            LiveAccount {
                name: self.b.name,
                sim: self.b.sim.clone(),
                map: self.b.map.clone(),
                netting: false,
            },
        ]
    }

    pub(super) async fn stop(&self) {
        for s in [&self.a.sim, &self.b.sim, &self.hedge.sim] {
            s.stop().await;
        }
    }
}

/// Waits until every account registered with the center: the plan needs the hedge account's
/// symbols.
pub(super) async fn wait_registered(view: &CenterClient) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let accounts = view.accounts().await.unwrap_or_default();
        let logins: Vec<Login> = accounts.iter().map(|a| a.registration.login).collect();
        if [CLIENT_A, CLIENT_B, HEDGE]
            .iter()
            .all(|l| logins.contains(l))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not every agent registered with the center");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits up to 3 s for the hedge account to mirror the clients (a hedge may still be in flight).
pub(super) async fn settle(accounts: &SimAccounts) -> bool {
    wait_for(Duration::from_secs(3), || accounts.mirrored()).await
}
