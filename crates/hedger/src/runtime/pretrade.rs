//! Pre-trade checks around each reaction: before the legs go out, every opening leg is checked
//! against the account's limits and with the terminal (`order_check`); reductions pass as they are.
//! What is refused, or cut, becomes the symbol's refusal, which the status heartbeat carries to the
//! center and the dashboard; it goes once the symbol's hedge is sent in full or no longer asked for.
//!
//! The terminal's check costs a round trip before the orders; it is left out when the account is
//! far from every margin limit ([`crate::pretrade::far_from_limits`]: the margin level after the
//! whole reaction, estimated from the terminal's last report and the margin per lot of every symbol
//! held and traded, at least twice the stricter of the minimum level and 100 %), unless
//! `always_check` is set. The order-size and exposure limits need no terminal and always apply.
//!
//! A refused leg is never sent, so a refusal costs one check per reaction, not an order: no
//! rejected orders, no breaker. In mirror mode the periodic reaction checks again; in trigger mode
//! the refused symbols are checked again at the same interval ([`Hedger::retry_refused`]).

use super::{Hedger, HedgerError, HedgerEvent};
use crate::orders::{build_request, OrderSettings};
use crate::planner::Leg;
use crate::pretrade::{
    far_from_limits, judge_check, judge_probe, limit_leg, CheckNext, LegFacts, PretradeLimits,
    Reason, Refusal, Refusals, Verdict,
};
use crate::tag::{HedgeTag, ItemIdTooLarge};
use hedge_center_api::model::PretradeRefusal;
use hedge_domain::{CmdId, Money, Side, SymbolSpec, Volume};
use hedge_protocol::{Op, Reply, Terminal, TerminalError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a symbol that passed the terminal's check may be sent without one while far from the
/// margin limits.
const PASSED_FOR: Duration = Duration::from_secs(30);

/// The pre-trade state between reactions.
#[derive(Debug, Default)]
pub(super) struct PretradeMemory {
    /// What is refused now, per canonical symbol.
    refusals: Refusals,
    /// Account symbols whose last check passed, and when.
    passed: HashMap<String, Instant>,
}

impl PretradeMemory {
    pub(super) fn has_refusals(&self) -> bool {
        !self.refusals.is_empty()
    }

    /// An order of `symbol` was refused by the server: its next one is checked again, so a
    /// closed market or a close-only symbol costs one rejected order, not one per reaction.
    pub(super) fn rejected(&mut self, symbol: &str) {
        self.passed.remove(symbol);
    }

    fn passed_lately(&self, symbol: &str, now: Instant) -> bool {
        self.passed
            .get(symbol)
            .is_some_and(|at| now.duration_since(*at) < PASSED_FOR)
    }
}

/// A new id for each check: checks are read-only and not remembered by the terminal, but replies
/// are matched by id, so two checks in flight must not share one.
fn check_id(leg: &Leg) -> CmdId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    CmdId(format!("check-{}-{}-{n}", leg.item, leg.leg))
}

/// Why an `order_check` gave no verdict: the plan item's id cannot be tagged (it never will be),
/// or the terminal did not answer (worth asking again at the next pass).
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error(transparent)]
    Tag(#[from] ItemIdTooLarge),
    #[error(transparent)]
    Terminal(#[from] TerminalError),
}

/// One `order_check` of `leg` at `volume`, with the request the order itself would carry.
async fn check(
    terminal: &Terminal,
    settings: &OrderSettings,
    leg: &Leg,
    spec: &SymbolSpec,
    volume: Volume,
) -> Result<Reply, CheckError> {
    let tag = HedgeTag::new(leg.item)?;
    let quote = terminal
        .symbol(&leg.symbol)
        .and_then(|i| Some((i.bid?, i.ask?)));
    let sized = Leg {
        volume,
        ..leg.clone()
    };
    let request = build_request(&sized, &tag, Some(spec), settings, quote);
    Ok(terminal
        .send_timeout(
            check_id(leg),
            Op::OrderCheck(request),
            settings.reply_timeout,
        )
        .await?)
}

/// The terminal's verdict on `volume` of `leg`: one check, and a second at another volume when the
/// first does not fit, to find how much does.
async fn margin_verdict(
    terminal: &Terminal,
    settings: &OrderSettings,
    leg: &Leg,
    spec: &SymbolSpec,
    volume: Volume,
    min_level: Option<rust_decimal::Decimal>,
) -> Verdict {
    let first = match check(terminal, settings, leg, spec, volume).await {
        Ok(reply) => reply,
        Err(why) => return Verdict::refuse(Reason::NoAnswer(why.to_string())),
    };
    match judge_check(volume, spec, &first, min_level) {
        CheckNext::Decided(verdict) => verdict,
        CheckNext::Probe(probe_volume) => {
            match check(terminal, settings, leg, spec, probe_volume).await {
                Ok(probe) => judge_probe(volume, spec, &first, probe_volume, &probe, min_level),
                Err(why) => Verdict::refuse(Reason::NoAnswer(why.to_string())),
            }
        }
    }
}

/// An opening leg with what its checks decided.
struct Screened {
    leg: Leg,
    verdict: Verdict,
    /// The terminal checked it and took all of it.
    passed: bool,
}

/// The account's signed net volume in each symbol of `legs` (buys positive), whatever opened it.
fn net_by_symbol(terminal: &Terminal, legs: &[Leg]) -> BTreeMap<String, Volume> {
    // Only the legs' symbols: the account may hold many positions on others.
    let mut net: BTreeMap<String, Volume> = legs
        .iter()
        .map(|l| (l.symbol.clone(), Volume::ZERO))
        .collect();
    terminal.with_state(|s| {
        for p in s.positions.values() {
            if let Some(total) = net.get_mut(&p.symbol) {
                *total += match p.position_type.side() {
                    Side::Buy => p.volume,
                    Side::Sell => -p.volume,
                };
            }
        }
    });
    net
}

/// Margin per lot of a symbol, when its specification gives one.
fn per_lot(specs: &HashMap<String, SymbolSpec>, symbol: &str) -> Option<Money> {
    specs
        .get(symbol)
        .map(|s| s.margin_per_lot)
        .filter(|m| m.is_positive())
}

/// Whether the whole reaction is far enough from the margin limits to send without the terminal's
/// check ([`far_from_limits`]). Needs every symbol traded to have passed a check lately (`recent`,
/// so what margin cannot tell, a closed market or a close-only symbol, is found by a check and not
/// by a stream of rejected orders), the account's last reported money, and a margin per lot for
/// every symbol held and traded; anything unknown means "check".
fn skip_check(
    terminal: &Terminal,
    specs: &HashMap<String, SymbolSpec>,
    legs: &[(&Leg, Volume)],
    limits: &PretradeLimits,
    recent: &BTreeSet<String>,
) -> bool {
    if limits.always_check || legs.iter().any(|(leg, _)| !recent.contains(&leg.symbol)) {
        return false;
    }
    let Some((equity, reported)) =
        terminal.with_state(|s| s.account.as_ref().map(|a| (a.equity, a.margin)))
    else {
        return false;
    };
    // The positions the account holds now, gross: a conservative stand-in for a report that may
    // be older than the last fills.
    let gross: Option<Money> = terminal.with_state(|s| {
        s.positions
            .values()
            .map(|p| per_lot(specs, &p.symbol).map(|m| m * p.volume.0))
            .sum()
    });
    let Some(held) = gross else {
        return false;
    };
    let added: Option<Money> = legs
        .iter()
        .map(|(leg, volume)| per_lot(specs, &leg.symbol).map(|m| m * volume.0))
        .sum();
    let Some(added) = added else {
        return false;
    };
    far_from_limits(equity, reported.max(held), added, limits.min_margin_level)
}

/// Checks the opening legs against `limits` and the terminal, all at once.
async fn screen_openings(
    terminal: &Terminal,
    settings: &OrderSettings,
    limits: &PretradeLimits,
    specs: &HashMap<String, SymbolSpec>,
    openings: Vec<Leg>,
    recent: &BTreeSet<String>,
) -> Vec<Screened> {
    let net = &net_by_symbol(terminal, &openings);
    let limited: Vec<(Leg, Verdict)> = openings
        .into_iter()
        .map(|leg| {
            let verdict = match specs.get(&leg.symbol) {
                Some(spec) => limit_leg(
                    &LegFacts {
                        canonical: &leg.canonical,
                        symbol: &leg.symbol,
                        side: leg.side,
                        volume: leg.volume,
                        spec,
                        held: net.get(&leg.symbol).copied().unwrap_or(Volume::ZERO),
                    },
                    limits,
                ),
                // The planner skips symbols without a specification; nothing to judge here.
                None => Verdict::all(leg.volume),
            };
            (leg, verdict)
        })
        .collect();
    let sized: Vec<(&Leg, Volume)> = limited.iter().map(|(l, v)| (l, v.volume)).collect();
    if skip_check(terminal, specs, &sized, limits, recent) {
        tracing::debug!("far from the margin limits: opening orders sent without order_check");
        return limited
            .into_iter()
            .map(|(leg, verdict)| Screened {
                leg,
                verdict,
                passed: false,
            })
            .collect();
    }
    let judged = limited.into_iter().map(|(leg, limited)| async move {
        let Some(spec) = specs.get(&leg.symbol) else {
            return Screened {
                leg,
                verdict: limited,
                passed: false,
            };
        };
        if limited.refused() {
            return Screened {
                leg,
                verdict: limited,
                passed: false,
            };
        }
        let margin = margin_verdict(
            terminal,
            settings,
            &leg,
            spec,
            limited.volume,
            limits.min_margin_level,
        )
        .await;
        let passed = margin.reason.is_none();
        // The stricter verdict, with its reason.
        let verdict = if margin.volume < limited.volume {
            margin
        } else {
            limited
        };
        Screened {
            leg,
            verdict,
            passed,
        }
    });
    futures::future::join_all(judged).await
}

impl Hedger {
    /// Checks the opening legs of one reaction before they are sent. Returns the legs to send:
    /// reductions and operator commands as they are, openings whole, cut, or not at all. The
    /// refusals of the symbols in scope (`only`, or all) follow what was decided.
    pub(super) async fn screen(&mut self, legs: Vec<Leg>, only: Option<&str>) -> Vec<Leg> {
        let (openings, mut send): (Vec<Leg>, Vec<Leg>) = legs
            .into_iter()
            .partition(|l| !l.reduces && l.command.is_none());
        let mut seen: BTreeSet<String> = send.iter().map(|l| l.canonical.clone()).collect();
        let mut refused: BTreeMap<String, Refusal> = BTreeMap::new();
        if !openings.is_empty() {
            let started = Instant::now();
            let specs = self.specs();
            let recent: BTreeSet<String> = openings
                .iter()
                .filter(|l| self.pretrade.passed_lately(&l.symbol, started))
                .map(|l| l.symbol.clone())
                .collect();
            let screened = screen_openings(
                &self.terminal,
                &self.opts.orders,
                &self.opts.pretrade,
                &specs,
                openings,
                &recent,
            )
            .await;
            tracing::debug!(
                legs = screened.len(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "pre-trade checks done"
            );
            for Screened {
                leg,
                verdict,
                passed,
            } in screened
            {
                seen.insert(leg.canonical.clone());
                if passed {
                    self.pretrade.passed.insert(leg.symbol.clone(), started);
                }
                if let Some(reason) = verdict.reason.clone() {
                    let left = leg.volume - verdict.volume;
                    if left.is_positive() {
                        refused.insert(
                            leg.canonical.clone(),
                            Refusal {
                                symbol: leg.canonical.clone(),
                                account_symbol: leg.symbol.clone(),
                                side: leg.side,
                                volume: left,
                                reason,
                                since_ms: self.now_ms(),
                            },
                        );
                    }
                }
                if verdict.volume.is_positive() {
                    send.push(Leg {
                        volume: verdict.volume,
                        ..leg
                    });
                }
            }
        }
        let mut changed = false;
        for symbol in &seen {
            let refusal = refused.remove(symbol);
            if let Some(r) = &refusal {
                tracing::warn!(symbol = %r.symbol, side = %r.side, volume = %r.volume, reason = %r.reason, "hedge order not sent: {}", r.text());
                self.emit(HedgerEvent::Refused {
                    symbol: r.symbol.clone(),
                    volume: r.volume,
                    reason: r.text(),
                });
            }
            changed |= self.pretrade.refusals.set(symbol, refusal);
        }
        changed |= self.settle_refusals(&seen, only);
        if changed {
            self.send_status(None, false);
        }
        send
    }

    /// Drops the refusals of symbols in scope that this reaction had no leg for and whose plan
    /// item is gone or done (the clients reduced, the plan moved on). Returns whether any went.
    pub(super) fn settle_refusals(&mut self, seen: &BTreeSet<String>, only: Option<&str>) -> bool {
        if self.pretrade.refusals.is_empty() {
            return false;
        }
        let wanted: BTreeSet<String> = self
            .plan_items()
            .into_iter()
            .filter(|i| {
                let done = self.state.book.executed(i.id) + self.state.book.in_flight(i.id);
                (i.volume - done).is_positive()
            })
            .map(|i| i.symbol)
            .collect();
        self.pretrade.refusals.retain(|symbol| {
            let in_scope = only.is_none_or(|s| s == symbol);
            !in_scope || seen.contains(symbol) || wanted.contains(symbol)
        })
    }

    /// Trigger mode: checks the refused symbols again (at the reconcile interval), so their hedges
    /// go out once the margin or the exposure allows, without waiting for the next trigger.
    pub(super) async fn retry_refused(&mut self) -> Result<(), HedgerError> {
        for symbol in self.pretrade.refusals.symbols() {
            self.act_on("pre-trade retry", Instant::now(), Some(&symbol))
                .await?;
        }
        Ok(())
    }

    /// The refusals as the status carries them.
    pub(super) fn refusals_status(&self) -> Vec<PretradeRefusal> {
        self.pretrade
            .refusals
            .iter()
            .map(|r| PretradeRefusal {
                symbol: r.symbol.clone(),
                account_symbol: r.account_symbol.clone(),
                side: r.side,
                volume: r.volume,
                reason: r.text(),
                since_ms: r.since_ms,
            })
            .collect()
    }
}
