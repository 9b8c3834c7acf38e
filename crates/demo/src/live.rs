//! The live phase: after the scripted scenario, client trading goes on so the dashboard has
//! something to show. Every tick one client account (taking turns) opens a position or closes one
//! it opened earlier; which, on what symbol, which side and how much comes from the seed.

use crate::timeline::Timeline;
use hedge_domain::{Magic, PositionId, Side, SymbolMap, Volume};
use hedge_sim::SimTerminal;
use rust_decimal::Decimal;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// The magic of the live phase's trades (the signal's positions are left alone).
pub const LIVE_MAGIC: Magic = Magic(4242);

/// Canonical symbols the live phase trades.
pub const SYMBOLS: [&str; 4] = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"];

/// At most this many live trades stay open per account; more are closed first.
const MAX_OPEN: usize = 3;

/// A small deterministic generator (xorshift64*), so a seed replays the same session.
#[derive(Clone, Debug)]
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What one tick does on one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Open {
        canonical: &'static str,
        side: Side,
        volume: Volume,
    },
    /// Close the live trade at this index of the account's open list.
    Close { index: usize },
}

/// The next step for an account holding `open` live trades. Pure.
pub fn next_step(dice: &mut Dice, open: usize) -> Step {
    let close = match open {
        0 => false,
        n if n >= MAX_OPEN => true,
        _ => dice.below(2) == 0,
    };
    if close {
        return Step::Close {
            index: dice.below(open as u64) as usize,
        };
    }
    let canonical = SYMBOLS[dice.below(SYMBOLS.len() as u64) as usize];
    let side = if dice.below(2) == 0 {
        Side::Buy
    } else {
        Side::Sell
    };
    // 0.01 to 0.10 lots; gold in smaller sizes.
    let max = if canonical == "XAUUSD" { 5 } else { 10 };
    let volume = Volume(Decimal::new(1 + dice.below(max) as i64, 2));
    Step::Open {
        canonical,
        side,
        volume,
    }
}

/// What a trade of `side` `volume` does to the account's position on its symbol, in words: on a
/// netting account an opposite trade reduces, closes or reverses the one position, and saying
/// "opens" there would contradict the reduction the center reports next.
pub fn netting_effect(side: Side, volume: Volume, held: Option<(Side, Volume)>) -> String {
    let Some((held_side, held_volume)) = held.filter(|(_, v)| v.is_positive()) else {
        return format!("opens {side} {volume}");
    };
    if held_side == side {
        let total = Volume(held_volume.0 + volume.0);
        return format!("{side} {volume} adds to the {held_side} {held_volume} (now {total})");
    }
    match volume.0.cmp(&held_volume.0) {
        std::cmp::Ordering::Less => format!(
            "{side} {volume} reduces the {held_side} {held_volume} to {}",
            Volume(held_volume.0 - volume.0)
        ),
        std::cmp::Ordering::Equal => {
            format!("{side} {volume} closes the {held_side} {held_volume}")
        }
        std::cmp::Ordering::Greater => format!(
            "{side} {volume} closes the {held_side} {held_volume} and opens {side} {}",
            Volume(volume.0 - held_volume.0)
        ),
    }
}

/// The account's position on `symbol` when it is a netting account (one position per symbol).
fn held(account: &LiveAccount, symbol: &str) -> Option<(Side, Volume)> {
    if !account.netting {
        return None;
    }
    account
        .sim
        .positions()
        .into_iter()
        .find(|p| p.symbol == symbol)
        .map(|p| (p.position_type.side(), p.volume))
}

/// A client account the live phase trades on.
pub struct LiveAccount {
    pub name: &'static str,
    pub sim: Arc<SimTerminal>,
    pub map: SymbolMap,
    /// Netting: a close is the opposite trade of the same volume (there is one position per
    /// symbol); hedging: the position is closed by its id.
    pub netting: bool,
}

#[derive(Clone, Debug)]
struct LiveTrade {
    symbol: String,
    side: Side,
    volume: Volume,
    position: PositionId,
}

/// What the live phase did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveSummary {
    pub opens: usize,
    pub closes: usize,
    pub refused: usize,
}

/// Trades every `interval` until `stop` resolves, taking turns between `accounts`.
pub async fn run(
    t: &Timeline,
    accounts: &[LiveAccount],
    seed: u64,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> LiveSummary {
    let mut dice = Dice::new(seed);
    let mut open: Vec<Vec<LiveTrade>> = accounts.iter().map(|_| Vec::new()).collect();
    let mut summary = LiveSummary::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    tokio::pin!(stop);
    let mut turn = 0usize;
    loop {
        tokio::select! {
            _ = &mut stop => return summary,
            _ = tick.tick() => {}
        }
        if accounts.is_empty() {
            continue;
        }
        let i = turn % accounts.len();
        turn += 1;
        let account = &accounts[i];
        match next_step(&mut dice, open[i].len()) {
            Step::Open {
                canonical,
                side,
                volume,
            } => {
                let symbol = account.map.to_account(canonical);
                let effect = netting_effect(side, volume, held(account, &symbol));
                let reply = account.sim.open(&symbol, side, volume, LIVE_MAGIC, "live");
                let done = reply.retcode.is_done();
                t.emit(
                    "live",
                    format!(
                        "{}: {symbol}: {effect} -> retcode {}, position {}",
                        account.name, reply.retcode, reply.position
                    ),
                    json!({ "account": account.name, "action": "open", "symbol": symbol, "side": side, "volume": volume, "retcode": reply.retcode, "position": reply.position }),
                );
                if done {
                    summary.opens += 1;
                    open[i].push(LiveTrade {
                        symbol,
                        side,
                        volume,
                        position: reply.position,
                    });
                } else {
                    summary.refused += 1;
                }
            }
            Step::Close { index } => {
                let trade = open[i].remove(index);
                // On a netting account the close is an opposite trade: say what it does there.
                let effect = match account.netting {
                    true => format!(
                        ": {}",
                        netting_effect(
                            trade.side.opposite(),
                            trade.volume,
                            held(account, &trade.symbol)
                        )
                    ),
                    false => String::new(),
                };
                let reply = if account.netting {
                    account.sim.open(
                        &trade.symbol,
                        trade.side.opposite(),
                        trade.volume,
                        LIVE_MAGIC,
                        "live close",
                    )
                } else {
                    account.sim.close(trade.position, None)
                };
                t.emit(
                    "live",
                    format!(
                        "{}: {}: closes its {} {} (position {}){effect} -> retcode {}",
                        account.name,
                        trade.symbol,
                        trade.side,
                        trade.volume,
                        trade.position,
                        reply.retcode
                    ),
                    json!({ "account": account.name, "action": "close", "symbol": trade.symbol, "position": trade.position, "retcode": reply.retcode }),
                );
                if reply.retcode.is_done() {
                    summary.closes += 1;
                } else {
                    summary.refused += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netting_trades_say_what_they_do_to_the_position() {
        let v = |s: &str| Volume(s.parse().unwrap());
        assert_eq!(
            netting_effect(Side::Buy, v("0.02"), Some((Side::Sell, v("0.05")))),
            "buy 0.02 reduces the sell 0.05 to 0.03"
        );
        assert_eq!(
            netting_effect(Side::Buy, v("0.05"), Some((Side::Sell, v("0.05")))),
            "buy 0.05 closes the sell 0.05"
        );
        assert_eq!(
            netting_effect(Side::Sell, v("0.07"), Some((Side::Buy, v("0.05")))),
            "sell 0.07 closes the buy 0.05 and opens sell 0.02"
        );
        assert_eq!(
            netting_effect(Side::Buy, v("0.01"), Some((Side::Buy, v("0.05")))),
            "buy 0.01 adds to the buy 0.05 (now 0.06)"
        );
        assert_eq!(netting_effect(Side::Sell, v("0.1"), None), "opens sell 0.1");
    }

    #[test]
    fn steps_are_bounded_repeatable_and_varied() {
        let mut a = Dice::new(42);
        let mut b = Dice::new(42);
        let mut open = 0usize;
        let mut symbols = std::collections::BTreeSet::new();
        let mut closes = 0;
        for _ in 0..200 {
            let step = next_step(&mut a, open);
            assert_eq!(step, next_step(&mut b, open), "same seed, same session");
            match step {
                Step::Open {
                    canonical, volume, ..
                } => {
                    assert!(volume.0 >= Decimal::new(1, 2) && volume.0 <= Decimal::new(10, 2));
                    symbols.insert(canonical);
                    open += 1;
                }
                Step::Close { index } => {
                    assert!(index < open);
                    open -= 1;
                    closes += 1;
                }
            }
            assert!(open <= MAX_OPEN);
        }
        assert_eq!(symbols.len(), SYMBOLS.len(), "every symbol traded");
        assert!(closes > 20);
        assert_eq!(
            next_step(&mut Dice::new(1), 0).clone(),
            next_step(&mut Dice::new(1), 0)
        );
        assert!(matches!(
            next_step(&mut Dice::new(5), MAX_OPEN),
            Step::Close { .. }
        ));
    }
}
