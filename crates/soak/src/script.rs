//! The soak's schedule: trades and faults at fixed offsets, drawn from one seed.
//!
//! Pure: [`Script::generate`] is a function of the seed, the duration and the rates, so the same
//! seed replays the same run. Which position a step reduces is a number (`pick`) resolved against
//! the account when the step runs, so the script does not depend on tickets it cannot know.

use hedge_domain::{Side, Volume};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use serde::Serialize;

/// Canonical symbols the clients trade.
pub const SYMBOLS: [&str; 4] = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"];

/// How often each kind of step happens.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rates {
    /// Mean time between two client trades.
    pub trade_interval_ms: u64,
    /// `kill -9` of the center, per minute.
    pub center_kills_per_min: f64,
    /// `kill -9` of one agent (client, hedger or tumbler), per minute.
    pub agent_kills_per_min: f64,
    /// A terminal restarted (reconnects and sends a fresh snapshot), per minute.
    pub terminal_restarts_per_min: f64,
    /// A position closed by its stop-loss (clients and hedge accounts alike), per minute.
    pub stop_outs_per_min: f64,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            trade_interval_ms: 250,
            center_kills_per_min: 2.0,
            agent_kills_per_min: 4.0,
            terminal_restarts_per_min: 3.0,
            stop_outs_per_min: 4.0,
        }
    }
}

/// An account of the soak, by role and index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "role", content = "index", rename_all = "snake_case")]
pub enum AccountRef {
    Client(usize),
    Hedge(usize),
    /// The account the copier trades into, watched by the tumbler.
    Copier,
}

/// A process of the soak that can be killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "process", content = "index", rename_all = "snake_case")]
pub enum Process {
    Center,
    Client(usize),
    Hedger(usize),
    Tumbler,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    Open {
        client: usize,
        symbol: &'static str,
        side: Side,
        volume: Volume,
    },
    /// Reduces the `pick`-th open position (modulo their count) by `percent` (100 closes it).
    Reduce {
        client: usize,
        pick: u64,
        percent: u8,
    },
    /// The `pick`-th open position of the account is closed by its stop-loss.
    StopOut {
        account: AccountRef,
        pick: u64,
    },
    Kill {
        process: Process,
        down_ms: u64,
    },
    RestartTerminal {
        account: AccountRef,
    },
    /// The copier opens a position on its account (the tumbler's cue).
    CopierOpen {
        symbol: &'static str,
    },
}

impl Step {
    /// The fault's kind, for the tally; `None` for a trade.
    pub fn fault_kind(&self) -> Option<&'static str> {
        match self {
            Step::Kill {
                process: Process::Center,
                ..
            } => Some("center_kill"),
            Step::Kill { .. } => Some("agent_kill"),
            Step::RestartTerminal { .. } => Some("terminal_restart"),
            Step::StopOut { .. } => Some("stop_out"),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timed {
    pub at_ms: u64,
    pub step: Step,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Script {
    pub seed: u64,
    pub steps: Vec<Timed>,
}

impl Script {
    /// The schedule of a run of `duration_ms` with `clients` client and `hedges` hedge accounts.
    pub fn generate(
        seed: u64,
        duration_ms: u64,
        rates: &Rates,
        clients: usize,
        hedges: usize,
    ) -> Script {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut steps = Vec::new();
        let tick = rates.trade_interval_ms.max(10);
        let per_tick = |per_min: f64| (per_min * tick as f64 / 60_000.0).clamp(0.0, 1.0);
        // The first seconds let every part start; the last ones belong to trades only, so the
        // settling time is measured from a known last fault.
        let mut at = 2_000;
        while at < duration_ms {
            steps.push(Timed {
                at_ms: at,
                step: trade(&mut rng, clients),
            });
            if rng.gen_bool(per_tick(rates.center_kills_per_min)) {
                steps.push(Timed {
                    at_ms: at + 1,
                    step: Step::Kill {
                        process: Process::Center,
                        down_ms: rng.gen_range(200..3_000),
                    },
                });
            }
            if rng.gen_bool(per_tick(rates.agent_kills_per_min)) {
                let process = match rng.gen_range(0..clients + hedges + 1) {
                    n if n < clients => Process::Client(n),
                    n if n < clients + hedges => Process::Hedger(n - clients),
                    _ => Process::Tumbler,
                };
                steps.push(Timed {
                    at_ms: at + 2,
                    step: Step::Kill {
                        process,
                        down_ms: rng.gen_range(100..2_500),
                    },
                });
            }
            if rng.gen_bool(per_tick(rates.terminal_restarts_per_min)) {
                steps.push(Timed {
                    at_ms: at + 3,
                    step: Step::RestartTerminal {
                        account: any_account(&mut rng, clients, hedges),
                    },
                });
            }
            if rng.gen_bool(per_tick(rates.stop_outs_per_min)) {
                let account = if rng.gen_bool(0.5) {
                    AccountRef::Client(rng.gen_range(0..clients))
                } else {
                    AccountRef::Hedge(rng.gen_range(0..hedges))
                };
                steps.push(Timed {
                    at_ms: at + 4,
                    step: Step::StopOut {
                        account,
                        pick: rng.gen(),
                    },
                });
            }
            if rng.gen_bool(per_tick(3.0)) {
                steps.push(Timed {
                    at_ms: at + 5,
                    step: Step::CopierOpen {
                        symbol: SYMBOLS[rng.gen_range(0..SYMBOLS.len())],
                    },
                });
            }
            at += rng.gen_range(tick / 2..=tick + tick / 2);
        }
        Script { seed, steps }
    }

    /// When the last fault happens (0 without faults).
    pub fn last_fault_ms(&self) -> u64 {
        self.steps
            .iter()
            .filter(|s| s.step.fault_kind().is_some())
            .map(|s| s.at_ms)
            .max()
            .unwrap_or(0)
    }
}

fn any_account(rng: &mut ChaCha8Rng, clients: usize, hedges: usize) -> AccountRef {
    match rng.gen_range(0..clients + hedges) {
        n if n < clients => AccountRef::Client(n),
        n => AccountRef::Hedge(n - clients),
    }
}

fn trade(rng: &mut ChaCha8Rng, clients: usize) -> Step {
    let client = rng.gen_range(0..clients);
    match rng.gen_range(0..100) {
        0..=54 => Step::Open {
            client,
            symbol: SYMBOLS[rng.gen_range(0..SYMBOLS.len())],
            side: if rng.gen_bool(0.5) {
                Side::Buy
            } else {
                Side::Sell
            },
            volume: Volume(Decimal::new(rng.gen_range(1..=50), 2)),
        },
        55..=79 => Step::Reduce {
            client,
            pick: rng.gen(),
            percent: rng.gen_range(20..=80),
        },
        _ => Step::Reduce {
            client,
            pick: rng.gen(),
            percent: 100,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_script_and_another_seed_another() {
        let rates = Rates::default();
        let a = Script::generate(7, 60_000, &rates, 3, 2);
        let b = Script::generate(7, 60_000, &rates, 3, 2);
        let c = Script::generate(8, 60_000, &rates, 3, 2);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.steps.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(a.steps.iter().all(|s| s.at_ms < 60_000 + 10));
    }

    #[test]
    fn a_minute_has_trades_and_every_kind_of_fault() {
        let script = Script::generate(1, 60_000, &Rates::default(), 3, 2);
        let trades = script
            .steps
            .iter()
            .filter(|s| s.step.fault_kind().is_none())
            .count();
        assert!(trades > 150, "{trades} trades");
        for kind in ["center_kill", "agent_kill", "terminal_restart", "stop_out"] {
            assert!(
                script
                    .steps
                    .iter()
                    .any(|s| s.step.fault_kind() == Some(kind)),
                "no {kind}"
            );
        }
        assert!(script.last_fault_ms() > 0);
    }

    #[test]
    fn volumes_are_on_the_lot_grid_and_positive() {
        let script = Script::generate(3, 30_000, &Rates::default(), 3, 2);
        for s in &script.steps {
            if let Step::Open { volume, .. } = s.step {
                assert!(volume.is_positive());
                assert_eq!(volume.0.scale(), 2);
            }
        }
    }
}
