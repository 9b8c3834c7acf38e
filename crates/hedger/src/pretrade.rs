//! Pre-trade checks: whether an opening hedge order may go to the hedge account, and how much of it.
//!
//! Entry points: [`PretradeLimits`] (the limits the hedge account was configured with),
//! [`limit_leg`] (the limits that need no terminal: order size, per-symbol exposure in lots and in
//! units of the base asset), [`judge_check`] and [`judge_probe`] (the terminal's `order_check`
//! answers: retcode, free margin and margin level after the order), [`Refusals`] (what is refused
//! now, per canonical symbol, for the status and the dashboard).
//!
//! Invariants: only opening legs are judged, a reduction is sent as it is whatever the limits say;
//! a volume allowed is on the symbol's grid and never more than the leg asked for; every refusal
//! carries a reason a trader can read, and a refused order is not sent (the next reaction checks
//! again, so hedging resumes by itself once the margin or the exposure allows it).
//!
//! The margin arithmetic reads only the figures `OrderCheck` gives *after* the order (equity and
//! free margin), so it does not depend on whether a terminal's `margin` field is the account's total
//! or the order's own. The margin an order takes grows linearly with its volume, so two checks at two
//! volumes give the margin per lot and the account's margin before the order, and from them the
//! largest volume that keeps the free margin and the margin level within bounds.

use hedge_domain::{Money, Retcode, Rounding, Side, SymbolSpec, Volume};
use hedge_protocol::Reply;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// A limit per canonical symbol, with an optional default for every other symbol (`*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolLimits {
    per_symbol: BTreeMap<String, Decimal>,
    all: Option<Decimal>,
}

/// A limit that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("{0:?}: expected SYMBOL=NUMBER (or *=NUMBER for every symbol)")]
    Shape(String),
    #[error("{0:?}: the limit must be a number above zero")]
    Value(String),
    #[error("{0:?}: the symbol is given twice")]
    Twice(String),
}

fn positive(text: &str, whole: &str) -> Result<Decimal, LimitError> {
    hedge_domain::num::parse_decimal(text.trim())
        .filter(|d| d.is_sign_positive() && !d.is_zero())
        .ok_or_else(|| LimitError::Value(whole.to_owned()))
}

impl SymbolLimits {
    /// Reads `SYMBOL=NUMBER` entries (`*=NUMBER` for every symbol without its own).
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, LimitError> {
        let mut limits = SymbolLimits::default();
        for entry in entries {
            let (symbol, value) = entry
                .split_once('=')
                .ok_or_else(|| LimitError::Shape(entry.to_owned()))?;
            let symbol = symbol.trim();
            if symbol.is_empty() {
                return Err(LimitError::Shape(entry.to_owned()));
            }
            let value = positive(value, entry)?;
            let twice = if symbol == "*" {
                limits.all.replace(value).is_some()
            } else {
                limits.per_symbol.insert(symbol.to_owned(), value).is_some()
            };
            if twice {
                return Err(LimitError::Twice(entry.to_owned()));
            }
        }
        Ok(limits)
    }

    /// The limit of a canonical symbol: its own, else the one for every symbol.
    pub fn get(&self, canonical: &str) -> Option<Decimal> {
        self.per_symbol.get(canonical).copied().or(self.all)
    }

    pub fn is_empty(&self) -> bool {
        self.per_symbol.is_empty() && self.all.is_none()
    }
}

/// The hedge account's limits. The default has none: every order goes to the terminal's check only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PretradeLimits {
    /// The largest opening order, in lots.
    pub max_order: Option<Volume>,
    /// The largest net position per symbol on the account, in lots.
    pub max_exposure: SymbolLimits,
    /// The largest net position per symbol in units of the base asset (lots × contract size).
    pub max_exposure_base: SymbolLimits,
    /// Margin level (equity / margin, in percent) below which only reductions are sent, and below
    /// which no opening order may take it.
    pub min_margin_level: Option<Decimal>,
    /// Check every opening order with the terminal, even far from any margin limit (see
    /// [`far_from_limits`]).
    pub always_check: bool,
}

/// How far from the limits the account must be for the terminal's check to be left out: the
/// margin level after the reaction at least this many times the stricter of the minimum margin
/// level and 100 % (where the free margin runs out).
pub const FAR_FACTOR: u32 = 2;

/// Whether the terminal's `order_check` can be left out for a reaction: the account's `equity`
/// and the margin it uses (`margin_now`, the larger of what the terminal last reported and the
/// positions it holds now at their margin per lot), plus the margin every opening order of the
/// reaction adds (`margin_added`), leave the margin level at least [`FAR_FACTOR`] times above the
/// stricter of `min_level` and 100 %. The terminal's own margin check still stands behind every
/// order sent.
pub fn far_from_limits(
    equity: Money,
    margin_now: Money,
    margin_added: Money,
    min_level: Option<Decimal>,
) -> bool {
    if !equity.is_positive() {
        return false;
    }
    let after = margin_now + margin_added;
    if !after.is_positive() {
        return true;
    }
    let bound = min_level.unwrap_or_default().max(Decimal::from(100)) * Decimal::from(FAR_FACTOR);
    equity.0 * Decimal::from(100) / after.0 >= bound
}

/// Why an opening order (or part of it) is not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The order was cut to the largest order size; the rest goes with the next order.
    OrderSize { max: Volume },
    /// The symbol's net position is at its limit in lots.
    Exposure {
        symbol: String,
        held: Volume,
        max: Decimal,
    },
    /// The symbol's net position is at its limit in units of the base asset.
    ExposureBase {
        symbol: String,
        held: Decimal,
        max: Decimal,
    },
    /// A limit in base units is set but the symbol's contract size is unknown.
    NoContractSize { symbol: String },
    /// The account's margin level is below the minimum: only reductions are sent.
    MarginLevel { level: Decimal, min: Decimal },
    /// Even the smallest order would take the margin level below the minimum.
    MarginLevelAfter { level: Decimal, min: Decimal },
    /// Not enough free margin for the smallest order.
    FreeMargin { free: Money, needed: Money },
    /// The terminal's `order_check` refused it for another reason.
    Terminal { retcode: Retcode, comment: String },
    /// The terminal did not answer the check (the order is not sent without one).
    NoAnswer(String),
}

/// A signed net position for reading: `buy 1.5`, `sell 2`, `none`.
fn net_text(held: Decimal) -> String {
    if held.is_zero() {
        "none".into()
    } else if held.is_sign_positive() {
        format!("buy {}", held.normalize())
    } else {
        format!("sell {}", (-held).normalize())
    }
}

/// A percentage for reading: two decimals at most, no trailing zeros.
fn pct(d: Decimal) -> Decimal {
    d.round_dp(2).normalize()
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::OrderSize { max } => {
                write!(f, "order size limited to {max} lots (maximum order size)")
            }
            Reason::Exposure { symbol, held, max } => write!(
                f,
                "exposure limit of {} lots on {symbol} (net position: {})",
                max.normalize(),
                net_text(held.0)
            ),
            Reason::ExposureBase { symbol, held, max } => write!(
                f,
                "exposure limit of {} units of the base asset on {symbol} (net position: {})",
                max.normalize(),
                net_text(*held)
            ),
            Reason::NoContractSize { symbol } => write!(
                f,
                "the contract size of {symbol} is unknown, so its limit in base units cannot be checked"
            ),
            Reason::MarginLevel { level, min } => write!(
                f,
                "margin level {}% below minimum {}%",
                pct(*level),
                pct(*min)
            ),
            Reason::MarginLevelAfter { level, min } => write!(
                f,
                "margin level after the order would be {}%, below minimum {}%",
                pct(*level),
                pct(*min)
            ),
            Reason::FreeMargin { free, needed } => write!(
                f,
                "not enough free margin: {free} free, the smallest order needs {needed}"
            ),
            Reason::Terminal { retcode, comment } => {
                write!(f, "the terminal's check answered {retcode}: {comment}")
            }
            Reason::NoAnswer(why) => write!(f, "the terminal did not answer the check: {why}"),
        }
    }
}

/// What to send of one opening leg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The volume to send; zero when the leg is refused.
    pub volume: Volume,
    /// Why not all of it (or none of it).
    pub reason: Option<Reason>,
}

impl Verdict {
    pub fn all(volume: Volume) -> Self {
        Verdict {
            volume,
            reason: None,
        }
    }

    pub fn refuse(reason: Reason) -> Self {
        Verdict {
            volume: Volume::ZERO,
            reason: Some(reason),
        }
    }

    pub fn refused(&self) -> bool {
        !self.volume.is_positive()
    }

    /// `volume` of what was asked, cut for `reason`; rounded down to the grid, and refused for that
    /// reason when nothing tradeable is left.
    fn cut(asked: Volume, room: Decimal, spec: &SymbolSpec, reason: Reason) -> Self {
        if room >= asked.0 {
            return Verdict::all(asked);
        }
        if room <= Decimal::ZERO {
            return Verdict::refuse(reason);
        }
        match spec.normalize_volume(Volume(room), Rounding::Down) {
            Ok(v) if v.is_positive() && v <= asked => Verdict {
                volume: v,
                reason: Some(reason),
            },
            _ => Verdict::refuse(reason),
        }
    }

    /// The stricter of two verdicts on the same leg.
    fn and(self, other: Verdict) -> Verdict {
        if other.volume < self.volume {
            other
        } else {
            self
        }
    }
}

/// One opening leg as the limits see it.
#[derive(Clone, Copy, Debug)]
pub struct LegFacts<'a> {
    pub canonical: &'a str,
    /// The account's name for the symbol.
    pub symbol: &'a str,
    pub side: Side,
    pub volume: Volume,
    pub spec: &'a SymbolSpec,
    /// The account's signed net position in the symbol (buys positive), whatever opened it.
    pub held: Volume,
}

/// The limits that need no terminal: order size and exposure. The strictest wins.
pub fn limit_leg(leg: &LegFacts<'_>, limits: &PretradeLimits) -> Verdict {
    let mut verdict = Verdict::all(leg.volume);
    let sign = Decimal::from(leg.side.sign());
    if let Some(max) = limits.max_order {
        verdict = verdict.and(Verdict::cut(
            leg.volume,
            max.0,
            leg.spec,
            Reason::OrderSize { max },
        ));
    }
    if let Some(max) = limits.max_exposure.get(leg.canonical) {
        // What the leg may add in its own direction: up to the limit, plus whatever it first takes
        // back from an opposite position.
        let room = max - leg.held.0 * sign;
        verdict = verdict.and(Verdict::cut(
            leg.volume,
            room,
            leg.spec,
            Reason::Exposure {
                symbol: leg.symbol.to_owned(),
                held: leg.held,
                max,
            },
        ));
    }
    if let Some(max) = limits.max_exposure_base.get(leg.canonical) {
        let contract = leg.spec.contract_size;
        if contract <= Decimal::ZERO {
            return Verdict::refuse(Reason::NoContractSize {
                symbol: leg.symbol.to_owned(),
            });
        }
        let held = leg.held.0 * contract;
        let room = (max - held * sign) / contract;
        verdict = verdict.and(Verdict::cut(
            leg.volume,
            room,
            leg.spec,
            Reason::ExposureBase {
                symbol: leg.symbol.to_owned(),
                held,
                max,
            },
        ));
    }
    verdict
}

/// What the figures of one `order_check` say about the account after the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct After {
    equity: Decimal,
    free: Decimal,
}

impl After {
    fn of(reply: &Reply) -> Option<After> {
        let c = reply.check.as_ref()?;
        Some(After {
            equity: c.equity.0,
            free: c.margin_free.0,
        })
    }

    fn margin(&self) -> Decimal {
        self.equity - self.free
    }

    /// Margin level in percent; `None` while no margin is used.
    fn level(&self) -> Option<Decimal> {
        let margin = self.margin();
        (margin > Decimal::ZERO).then(|| self.equity / margin * Decimal::from(100))
    }
}

/// Whether a check passed: MT5 answers 0, the bridge EA and the simulator 10009.
fn check_passed(retcode: Retcode) -> bool {
    retcode.0 == 0 || retcode == Retcode::DONE
}

/// After the first check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckNext {
    /// Decided.
    Decided(Verdict),
    /// The order does not fit as it is: check this smaller (or other) volume too, then
    /// [`judge_probe`] finds how much fits.
    Probe(Volume),
}

/// The volume of the second check: the smallest order, or the next step up when the leg is
/// already the smallest. `None` when the grid has no other volume.
fn probe_volume(spec: &SymbolSpec, volume: Volume) -> Option<Volume> {
    let min = spec.volume_min.max(spec.volume_step);
    if min.is_positive() && min < volume {
        return Some(min);
    }
    let next = volume + spec.volume_step;
    (spec.volume_step.is_positive() && next <= spec.volume_max).then_some(next)
}

/// Judges the terminal's answer to the check of `volume`.
pub fn judge_check(
    volume: Volume,
    spec: &SymbolSpec,
    reply: &Reply,
    min_level: Option<Decimal>,
) -> CheckNext {
    let passed = check_passed(reply.retcode);
    if !passed && reply.retcode != Retcode::NO_MONEY {
        return CheckNext::Decided(Verdict::refuse(Reason::Terminal {
            retcode: reply.retcode,
            comment: reply.comment.clone(),
        }));
    }
    let after = After::of(reply);
    let level_ok = match (min_level, after.and_then(|a| a.level())) {
        (None, _) => true,
        (Some(_), None) => after.is_some(),
        (Some(min), Some(level)) => level >= min,
    };
    if passed && level_ok {
        return CheckNext::Decided(Verdict::all(volume));
    }
    let Some(after) = after else {
        // Refused or unverifiable without figures: nothing to scale.
        return CheckNext::Decided(Verdict::refuse(if passed {
            Reason::NoAnswer("no margin figures in the answer".into())
        } else {
            Reason::Terminal {
                retcode: reply.retcode,
                comment: reply.comment.clone(),
            }
        }));
    };
    match probe_volume(spec, volume) {
        Some(p) => CheckNext::Probe(p),
        None => CheckNext::Decided(Verdict::refuse(match (min_level, after.level()) {
            (Some(min), Some(level)) if level < min => Reason::MarginLevelAfter { level, min },
            _ => Reason::Terminal {
                retcode: reply.retcode,
                comment: reply.comment.clone(),
            },
        })),
    }
}

/// Judges the two checks: the one of the leg's `volume` (`first`) and the one of `probe_volume`
/// (`probe`). Finds the margin per lot and the account's margin before the order, refuses while the
/// margin level is below the minimum, and otherwise sends the largest volume that leaves free margin
/// and keeps the level at or above the minimum.
pub fn judge_probe(
    volume: Volume,
    spec: &SymbolSpec,
    first: &Reply,
    probe_volume: Volume,
    probe: &Reply,
    min_level: Option<Decimal>,
) -> Verdict {
    let terminal = || {
        Verdict::refuse(Reason::Terminal {
            retcode: first.retcode,
            comment: first.comment.clone(),
        })
    };
    let usable = |r: &Reply| check_passed(r.retcode) || r.retcode == Retcode::NO_MONEY;
    let (Some(a), Some(b)) = (After::of(first), After::of(probe)) else {
        return terminal();
    };
    if !usable(probe) || probe_volume == volume {
        return terminal();
    }
    let per_lot = (a.margin() - b.margin()) / (volume.0 - probe_volume.0);
    let equity = a.equity;
    let before = a.margin() - per_lot * volume.0;
    if let (Some(min), true) = (min_level, before > Decimal::ZERO) {
        let level = equity / before * Decimal::from(100);
        if level < min {
            return Verdict::refuse(Reason::MarginLevel { level, min });
        }
    }
    if per_lot <= Decimal::ZERO {
        // The margin does not grow with the volume: the refusal is about something else.
        return terminal();
    }
    let free_now = equity - before;
    let by_free = free_now / per_lot;
    let by_level = min_level.map(|min| (equity * Decimal::from(100) / min - before) / per_lot);
    let smallest = spec.volume_min.max(spec.volume_step);
    let level_binds = by_level.is_some_and(|l| l < by_free);
    let reason = match (min_level, level_binds) {
        (Some(min), true) => {
            let margin = before + per_lot * smallest.0;
            Reason::MarginLevelAfter {
                level: if margin > Decimal::ZERO {
                    equity / margin * Decimal::from(100)
                } else {
                    Decimal::ZERO
                },
                min,
            }
        }
        _ => Reason::FreeMargin {
            free: Money(free_now.round_dp(2)),
            needed: Money((per_lot * smallest.0).round_dp(2)),
        },
    };
    let room = by_level.map_or(by_free, |l| l.min(by_free));
    Verdict::cut(volume, room, spec, reason)
}

/// One refused (or cut) opening order, as the status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Canonical symbol.
    pub symbol: String,
    pub account_symbol: String,
    pub side: Side,
    /// The volume not sent.
    pub volume: Volume,
    pub reason: Reason,
    /// When this reason was first given for the symbol, ms since the epoch.
    pub since_ms: i64,
}

impl Refusal {
    /// The text the trader reads.
    pub fn text(&self) -> String {
        format!("refused by pre-trade check: {}", self.reason)
    }
}

/// What is refused now, per canonical symbol.
#[derive(Clone, Debug, Default)]
pub struct Refusals {
    by_symbol: BTreeMap<String, Refusal>,
}

impl Refusals {
    /// Sets (or clears, with `None`) the refusal of `symbol`. A refusal for the same reason keeps
    /// the time it was first given. Returns whether what a trader reads changed.
    pub fn set(&mut self, symbol: &str, refusal: Option<Refusal>) -> bool {
        match refusal {
            None => self.by_symbol.remove(symbol).is_some(),
            Some(mut new) => {
                let old = self.by_symbol.get(symbol);
                if let Some(old) = old {
                    if std::mem::discriminant(&old.reason) == std::mem::discriminant(&new.reason) {
                        new.since_ms = old.since_ms;
                    }
                }
                let changed = old.is_none_or(|o| o.text() != new.text() || o.volume != new.volume);
                self.by_symbol.insert(symbol.to_owned(), new);
                changed
            }
        }
    }

    /// Keeps only the symbols `keep` says yes to; returns whether any was removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) -> bool {
        let before = self.by_symbol.len();
        self.by_symbol.retain(|s, _| keep(s));
        self.by_symbol.len() != before
    }

    pub fn get(&self, symbol: &str) -> Option<&Refusal> {
        self.by_symbol.get(symbol)
    }

    pub fn symbols(&self) -> Vec<String> {
        self.by_symbol.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.by_symbol.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Refusal> {
        self.by_symbol.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedge_protocol::CheckResult;
    use rust_decimal_macros::dec;

    fn gold() -> SymbolSpec {
        let mut s = SymbolSpec::forex("XAUUSD.h", 2);
        s.contract_size = dec!(100);
        s
    }

    fn facts<'a>(spec: &'a SymbolSpec, side: Side, volume: Decimal, held: Decimal) -> LegFacts<'a> {
        LegFacts {
            canonical: "XAUUSD",
            symbol: "XAUUSD.h",
            side,
            volume: Volume(volume),
            spec,
            held: Volume(held),
        }
    }

    /// A check answer: equity and the margin the account would use after the order.
    fn answer(retcode: Retcode, equity: Decimal, margin_after: Decimal) -> Reply {
        let mut r = Reply::new(hedge_domain::CmdId::new("c"), retcode, "x");
        r.check = Some(CheckResult {
            balance: Money(equity),
            equity: Money(equity),
            profit: Money::ZERO,
            margin: Money(margin_after),
            margin_free: Money(equity - margin_after),
            margin_level: Money::ZERO,
        });
        r
    }

    #[test]
    fn limits_are_read_per_symbol_with_a_default() {
        let l = SymbolLimits::parse(["XAUUSD=2", "*=10", "EURUSD=0.5"]).unwrap();
        assert_eq!(l.get("XAUUSD"), Some(dec!(2)));
        assert_eq!(l.get("EURUSD"), Some(dec!(0.5)));
        assert_eq!(l.get("GBPUSD"), Some(dec!(10)));
        assert!(SymbolLimits::parse([]).unwrap().is_empty());
        assert_eq!(
            SymbolLimits::parse(["XAUUSD=2"]).unwrap().get("EURUSD"),
            None
        );
        for bad in ["XAUUSD", "=2", "XAUUSD=0", "XAUUSD=-1", "XAUUSD=lots"] {
            assert!(SymbolLimits::parse([bad]).is_err(), "{bad}");
        }
        assert_eq!(
            SymbolLimits::parse(["XAUUSD=2", "XAUUSD=3"]).unwrap_err(),
            LimitError::Twice("XAUUSD=3".into())
        );
        assert!(SymbolLimits::parse(["*=2", "*=2"]).is_err());
    }

    #[test]
    fn no_limits_let_everything_through() {
        let spec = gold();
        let v = limit_leg(
            &facts(&spec, Side::Buy, dec!(7), dec!(100)),
            &PretradeLimits::default(),
        );
        assert_eq!(v, Verdict::all(Volume(dec!(7))));
    }

    #[test]
    fn the_order_size_cuts_the_leg_and_says_why() {
        let spec = gold();
        let limits = PretradeLimits {
            max_order: Some(Volume(dec!(1.5))),
            ..PretradeLimits::default()
        };
        let v = limit_leg(&facts(&spec, Side::Sell, dec!(4), dec!(0)), &limits);
        assert_eq!(v.volume, Volume(dec!(1.5)));
        assert_eq!(
            v.reason.unwrap().to_string(),
            "order size limited to 1.5 lots (maximum order size)"
        );
        let v = limit_leg(&facts(&spec, Side::Sell, dec!(1), dec!(0)), &limits);
        assert_eq!(v, Verdict::all(Volume(dec!(1))));
    }

    #[test]
    fn exposure_stops_at_the_limit_in_the_leg_direction_only() {
        let spec = gold();
        let limits = PretradeLimits {
            max_exposure: SymbolLimits::parse(["XAUUSD=2"]).unwrap(),
            ..PretradeLimits::default()
        };
        // Long 1.5: a buy may add 0.5 more.
        let v = limit_leg(&facts(&spec, Side::Buy, dec!(1), dec!(1.5)), &limits);
        assert_eq!(v.volume, Volume(dec!(0.5)));
        // At the limit: refused, with the position and the limit in the reason.
        let v = limit_leg(&facts(&spec, Side::Buy, dec!(1), dec!(2)), &limits);
        assert!(v.refused());
        assert_eq!(
            v.reason.unwrap().to_string(),
            "exposure limit of 2 lots on XAUUSD.h (net position: buy 2)"
        );
        // Short 2: a buy first takes the short back, then may go long up to 2.
        let v = limit_leg(&facts(&spec, Side::Buy, dec!(3), dec!(-2)), &limits);
        assert_eq!(v, Verdict::all(Volume(dec!(3))));
        let v = limit_leg(&facts(&spec, Side::Buy, dec!(5), dec!(-2)), &limits);
        assert_eq!(v.volume, Volume(dec!(4)));
        // Sells are limited on the short side the same way.
        let v = limit_leg(&facts(&spec, Side::Sell, dec!(3), dec!(0)), &limits);
        assert_eq!(v.volume, Volume(dec!(2)));
        // A limit of another symbol does not apply.
        let mut eur = SymbolSpec::forex("EURUSD.h", 5);
        eur.contract_size = dec!(100000);
        let leg = LegFacts {
            canonical: "EURUSD",
            symbol: "EURUSD.h",
            ..facts(&eur, Side::Buy, dec!(9), dec!(0))
        };
        assert_eq!(limit_leg(&leg, &limits), Verdict::all(Volume(dec!(9))));
    }

    #[test]
    fn exposure_in_base_units_uses_the_contract_size() {
        let mut spec = gold();
        spec.contract_size = dec!(10);
        let limits = PretradeLimits {
            max_exposure_base: SymbolLimits::parse(["XAUUSD=50"]).unwrap(),
            ..PretradeLimits::default()
        };
        // 10 oz a lot: 3 lots held are 30 oz, 2 more lots reach 50 oz.
        let v = limit_leg(&facts(&spec, Side::Buy, dec!(4), dec!(3)), &limits);
        assert_eq!(v.volume, Volume(dec!(2)));
        assert_eq!(
            v.reason.unwrap().to_string(),
            "exposure limit of 50 units of the base asset on XAUUSD.h (net position: buy 30)"
        );
        // Both limits: the stricter wins.
        let both = PretradeLimits {
            max_exposure: SymbolLimits::parse(["*=4"]).unwrap(),
            ..limits.clone()
        };
        let v = limit_leg(&facts(&spec, Side::Buy, dec!(4), dec!(3)), &both);
        assert_eq!(v.volume, Volume(dec!(1)));
        // Without a contract size the base limit cannot be checked: refused, never guessed.
        spec.contract_size = Decimal::ZERO;
        let v = limit_leg(&facts(&spec, Side::Buy, dec!(1), dec!(0)), &limits);
        assert!(v.refused());
        assert!(matches!(v.reason, Some(Reason::NoContractSize { .. })));
    }

    #[test]
    fn a_cut_below_the_minimum_volume_is_a_refusal() {
        let mut spec = gold();
        spec.volume_min = Volume(dec!(0.1));
        spec.volume_step = Volume(dec!(0.1));
        let limits = PretradeLimits {
            max_exposure: SymbolLimits::parse(["XAUUSD=2"]).unwrap(),
            ..PretradeLimits::default()
        };
        let v = limit_leg(&facts(&spec, Side::Buy, dec!(1), dec!(1.95)), &limits);
        assert!(v.refused(), "{v:?}");
        // Cuts round down to the grid.
        let v = limit_leg(&facts(&spec, Side::Buy, dec!(1), dec!(1.45)), &limits);
        assert_eq!(v.volume, Volume(dec!(0.5)));
    }

    #[test]
    fn a_passed_check_sends_everything() {
        let spec = gold();
        let r = answer(Retcode::DONE, dec!(10000), dec!(4000));
        assert_eq!(
            judge_check(Volume(dec!(1)), &spec, &r, Some(dec!(200))),
            CheckNext::Decided(Verdict::all(Volume(dec!(1))))
        );
        // MT5's own 0 is a pass too.
        let r = answer(Retcode(0), dec!(10000), dec!(4000));
        assert_eq!(
            judge_check(Volume(dec!(1)), &spec, &r, None),
            CheckNext::Decided(Verdict::all(Volume(dec!(1))))
        );
    }

    #[test]
    fn a_terminal_refusal_other_than_margin_is_final() {
        let spec = gold();
        let mut r = answer(Retcode::MARKET_CLOSED, dec!(10000), dec!(0));
        r.comment = "Market is closed".into();
        let CheckNext::Decided(v) = judge_check(Volume(dec!(1)), &spec, &r, None) else {
            panic!("decided");
        };
        assert!(v.refused());
        assert_eq!(
            v.reason.unwrap().to_string(),
            format!(
                "the terminal's check answered {}: Market is closed",
                Retcode::MARKET_CLOSED
            )
        );
    }

    #[test]
    fn no_money_is_cut_to_the_free_margin() {
        let spec = gold();
        // Equity 10,000, margin now 8,000, 2,000 a lot: 1 lot fits, 3 do not.
        let first = answer(Retcode::NO_MONEY, dec!(10000), dec!(14000));
        let CheckNext::Probe(p) = judge_check(Volume(dec!(3)), &spec, &first, None) else {
            panic!("probe");
        };
        assert_eq!(p, Volume(dec!(0.01)));
        let probe = answer(Retcode::DONE, dec!(10000), dec!(8020));
        let v = judge_probe(Volume(dec!(3)), &spec, &first, p, &probe, None);
        assert_eq!(v.volume, Volume(dec!(1)));
        assert_eq!(
            v.reason.unwrap().to_string(),
            "not enough free margin: 2000 free, the smallest order needs 20"
        );
        // Nothing free: refused.
        let first = answer(Retcode::NO_MONEY, dec!(10000), dec!(16000));
        let probe = answer(Retcode::NO_MONEY, dec!(10000), dec!(10020));
        let v = judge_probe(Volume(dec!(3)), &spec, &first, p, &probe, None);
        assert!(v.refused());
    }

    #[test]
    fn below_the_minimum_margin_level_only_reductions_go() {
        let spec = gold();
        // Equity 8,500 on 10,000 margin: 85 %.
        let first = answer(Retcode::DONE, dec!(8500), dec!(12000));
        let CheckNext::Probe(p) = judge_check(Volume(dec!(1)), &spec, &first, Some(dec!(100)))
        else {
            panic!("probe");
        };
        let probe = answer(Retcode::DONE, dec!(8500), dec!(10020));
        let v = judge_probe(Volume(dec!(1)), &spec, &first, p, &probe, Some(dec!(100)));
        assert!(v.refused());
        assert_eq!(
            v.reason.unwrap().to_string(),
            "margin level 85% below minimum 100%"
        );
    }

    #[test]
    fn an_order_is_cut_so_the_margin_level_stays_at_the_minimum() {
        let spec = gold();
        // Equity 10,000, margin 4,000 (250 %), 2,000 a lot, minimum 200 %: margin may reach
        // 5,000, so 0.5 lot.
        let first = answer(Retcode::DONE, dec!(10000), dec!(6000));
        let CheckNext::Probe(p) = judge_check(Volume(dec!(1)), &spec, &first, Some(dec!(200)))
        else {
            panic!("probe");
        };
        let probe = answer(Retcode::DONE, dec!(10000), dec!(4020));
        let v = judge_probe(Volume(dec!(1)), &spec, &first, p, &probe, Some(dec!(200)));
        assert_eq!(v.volume, Volume(dec!(0.5)));
        assert!(matches!(v.reason, Some(Reason::MarginLevelAfter { .. })));
        // At the minimum already: nothing more, and the reason says what the smallest order does.
        let first = answer(Retcode::DONE, dec!(10000), dec!(7000));
        let probe = answer(Retcode::DONE, dec!(10000), dec!(5020));
        let v = judge_probe(Volume(dec!(1)), &spec, &first, p, &probe, Some(dec!(200)));
        assert!(v.refused());
        assert_eq!(
            v.reason.unwrap().to_string(),
            "margin level after the order would be 199.2%, below minimum 200%"
        );
    }

    #[test]
    fn the_smallest_order_is_probed_one_step_up() {
        let spec = gold();
        let first = answer(Retcode::NO_MONEY, dec!(10), dec!(30));
        assert_eq!(
            judge_check(Volume(dec!(0.01)), &spec, &first, None),
            CheckNext::Probe(Volume(dec!(0.02)))
        );
        let probe = answer(Retcode::NO_MONEY, dec!(10), dec!(50));
        let v = judge_probe(
            Volume(dec!(0.01)),
            &spec,
            &first,
            Volume(dec!(0.02)),
            &probe,
            None,
        );
        assert!(v.refused());
        assert!(matches!(v.reason, Some(Reason::FreeMargin { .. })));
    }

    #[test]
    fn a_check_without_figures_is_not_trusted_with_a_minimum_level() {
        let spec = gold();
        let r = Reply::new(hedge_domain::CmdId::new("c"), Retcode::DONE, "Done");
        assert_eq!(
            judge_check(Volume(dec!(1)), &spec, &r, None),
            CheckNext::Decided(Verdict::all(Volume(dec!(1))))
        );
        let CheckNext::Decided(v) = judge_check(Volume(dec!(1)), &spec, &r, Some(dec!(100))) else {
            panic!("decided");
        };
        assert!(v.refused());
    }

    #[test]
    fn the_check_is_left_out_only_far_from_every_limit() {
        let m = |d: Decimal| Money(d);
        // Level after 1,000 / 400 = 250 %: at least twice 100 %, but not twice a 150 % minimum.
        assert!(far_from_limits(
            m(dec!(1000)),
            m(dec!(300)),
            m(dec!(100)),
            None
        ));
        assert!(!far_from_limits(
            m(dec!(1000)),
            m(dec!(300)),
            m(dec!(100)),
            Some(dec!(150))
        ));
        // Exactly twice is far enough; just under is not.
        assert!(far_from_limits(
            m(dec!(1000)),
            m(dec!(400)),
            m(dec!(100)),
            None
        ));
        assert!(!far_from_limits(
            m(dec!(1000)),
            m(dec!(400)),
            m(dec!(101)),
            None
        ));
        // No margin at all: nothing to fear. No equity: always check.
        assert!(far_from_limits(
            m(dec!(1000)),
            Money::ZERO,
            Money::ZERO,
            None
        ));
        assert!(!far_from_limits(Money::ZERO, Money::ZERO, m(dec!(1)), None));
    }

    #[test]
    fn refusals_keep_their_first_time_and_say_when_they_change() {
        let refusal = |reason: Reason, since_ms: i64| Refusal {
            symbol: "XAUUSD".into(),
            account_symbol: "XAUUSD.h".into(),
            side: Side::Buy,
            volume: Volume(dec!(1)),
            reason,
            since_ms,
        };
        let low = |level: Decimal| Reason::MarginLevel {
            level,
            min: dec!(100),
        };
        let mut r = Refusals::default();
        assert!(r.set("XAUUSD", Some(refusal(low(dec!(85)), 1))));
        assert!(!r.set("XAUUSD", Some(refusal(low(dec!(85)), 2))));
        assert!(r.set("XAUUSD", Some(refusal(low(dec!(80)), 3))));
        assert_eq!(r.get("XAUUSD").unwrap().since_ms, 1);
        assert_eq!(
            r.get("XAUUSD").unwrap().text(),
            "refused by pre-trade check: margin level 80% below minimum 100%"
        );
        assert!(r.set(
            "XAUUSD",
            Some(refusal(
                Reason::FreeMargin {
                    free: Money::ZERO,
                    needed: Money(dec!(20))
                },
                4
            ))
        ));
        assert_eq!(r.get("XAUUSD").unwrap().since_ms, 4);
        assert!(r.set("XAUUSD", None));
        assert!(!r.set("XAUUSD", None));
        assert!(r.is_empty());
    }
}
