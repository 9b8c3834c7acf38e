//! Client positions: which reports are acceptable and what each one does to a stored position.
//!
//! Pure functions; the store calls them inside its transaction with the position as stored, so a
//! report that contradicts the state is refused before anything is written. Entry points:
//! [`validate`] (the report alone), [`apply`] (the transition), [`realize`] (what the exit deals
//! realized: exact sums, unknown for good once a close comes without its deal). A resent report
//! never reaches them: the store answers it from its idempotency key, so nothing is added twice.

use hedge_center_api::model::{
    EventId, EventKind, Position, PositionEventKind, PositionReport, PositionStatus,
};
use hedge_domain::fixed::{self, Exposure, Lots};
use hedge_domain::{Login, Money, PositionId, Price, Volume};
use rust_decimal::{Decimal, RoundingStrategy};

/// The largest size one report or record may carry (10^9 lots), far below the `i64` range of the
/// stored 10^-8 units, so that a sum of a few never comes near it.
const MAX_LOTS: Lots = match Lots::from_units(1_000_000_000 * fixed::ONE) {
    Some(l) => l,
    None => Lots::ZERO,
};
pub const MAX_SYMBOL_LEN: usize = 64;
pub const MAX_KEY_LEN: usize = 200;
pub const MAX_COMMENT_LEN: usize = 512;

/// Why a report (or another write) is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request itself is malformed (422).
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// The request is well-formed but contradicts what is stored (409).
    #[error("{0}")]
    Conflict(String),
    /// Something it refers to does not exist (404).
    #[error("{0}")]
    NotFound(String),
}

impl Refusal {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Refusal::Invalid {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
}

/// A size (an order's, a position's, a hedge's) in exact 10^-8 lot, as the store keeps it; refuses
/// negatives, more decimals than that and absurd sizes, naming `field`.
pub fn lots(volume: Volume, field: &str) -> Result<Lots, Refusal> {
    let lots =
        Lots::from_volume(volume).map_err(|e| Refusal::invalid(field, format!("{field} {e}")))?;
    if lots > MAX_LOTS {
        return Err(Refusal::invalid(field, format!("{field} is too large")));
    }
    Ok(lots)
}

/// Checks a symbol name (canonical or account): non-empty, short, printable, no spaces.
pub fn check_symbol(symbol: &str, field: &str) -> Result<(), Refusal> {
    if symbol.is_empty() {
        return Err(Refusal::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if symbol.len() > MAX_SYMBOL_LEN {
        return Err(Refusal::invalid(field, format!("{field} is too long")));
    }
    // Only what brokers put in symbol names: an invisible character would make a second book
    // that displays exactly like the first.
    if let Some(c) = symbol
        .chars()
        .find(|c| !hedge_domain::text::is_symbol_char(*c))
    {
        return Err(Refusal::invalid(
            field,
            format!(
                "{field} may hold only ASCII letters, digits and {} ({} is not one of them)",
                hedge_domain::text::SYMBOL_PUNCTUATION,
                c.escape_unicode()
            ),
        ));
    }
    Ok(())
}

/// Refuses a JSON body holding a number that reading would round (more significant digits than
/// a `f64` keeps): `0.10000000000000000001` must not quietly become `0.1` when the same text in a
/// string is refused.
pub fn check_exact_numbers(body: &[u8]) -> Result<(), Refusal> {
    match hedge_domain::json::inexact_number(body) {
        None => Ok(()),
        Some(number) => {
            let shown: String = number.chars().take(40).collect();
            let more = if shown.len() < number.len() {
                "…"
            } else {
                ""
            };
            Err(Refusal::invalid(
                "body",
                format!(
                    "number {shown}{more} cannot be read exactly: write it with at most 15 significant digits"
                ),
            ))
        }
    }
}

/// Checks an idempotency key: not blank, at most [`MAX_KEY_LEN`] bytes.
pub fn check_key(key: &str) -> Result<(), Refusal> {
    if key.trim().is_empty() {
        return Err(Refusal::invalid(
            "idempotency_key",
            "idempotency_key must not be empty",
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Refusal::invalid(
            "idempotency_key",
            "idempotency_key is too long",
        ));
    }
    Ok(())
}

/// Checks an account number and a position id fit the store's signed 64-bit columns.
pub fn check_position_ref(login: Login, position_id: PositionId) -> Result<(), Refusal> {
    if login.0 == 0 || login.0 > i64::MAX as u64 {
        return Err(Refusal::invalid(
            "login",
            "login must be a positive account number",
        ));
    }
    if position_id.0 > i64::MAX as u64 {
        return Err(Refusal::invalid(
            "position_id",
            "position_id is out of range",
        ));
    }
    Ok(())
}

/// Checks what can be checked without the stored state.
pub fn validate(report: &PositionReport) -> Result<(), Refusal> {
    check_symbol(&report.symbol, "symbol")?;
    if !report.account_symbol.is_empty() {
        check_symbol(&report.account_symbol, "account_symbol")?;
    }
    check_key(report.idempotency_key.as_str())?;
    if report.comment.len() > MAX_COMMENT_LEN {
        return Err(Refusal::invalid("comment", "comment is too long"));
    }
    if let Some(c) = report
        .comment
        .chars()
        .find(|c| hedge_domain::text::is_invisible(*c))
    {
        return Err(Refusal::invalid(
            "comment",
            format!(
                "comment must not hold control or invisible characters ({} is one)",
                c.escape_unicode()
            ),
        ));
    }
    check_position_ref(report.login, report.position_id)?;
    if report.seq > i64::MAX as u64 {
        return Err(Refusal::invalid("seq", "seq is out of range"));
    }
    if report.time_ms < 0 {
        return Err(Refusal::invalid("time_ms", "time_ms must not be negative"));
    }
    if let Some(exit) = &report.exit {
        if !matches!(
            report.kind,
            PositionEventKind::PartialClose | PositionEventKind::Close
        ) {
            return Err(Refusal::invalid(
                "exit",
                format!(
                    "exit is the deal of a partial_close or close, not of {}",
                    report.kind.as_str()
                ),
            ));
        }
        if !exit.price.is_positive() {
            return Err(Refusal::invalid(
                "exit.price",
                "exit.price must be positive",
            ));
        }
    }
    for (name, price) in [
        ("price", report.price),
        ("sl", report.sl),
        ("tp", report.tp),
    ] {
        if price.is_some_and(|p| p.is_negative()) {
            return Err(Refusal::invalid(
                name,
                format!("{name} must not be negative"),
            ));
        }
    }
    let size = lots(report.volume, "volume")?;
    match report.kind {
        PositionEventKind::Close if !size.is_zero() => Err(Refusal::invalid(
            "volume",
            "volume of a close must be 0 (the remaining volume)",
        )),
        PositionEventKind::Close => Ok(()),
        _ if size.is_zero() => Err(Refusal::invalid(
            "volume",
            "volume must be positive (the remaining volume after the event)",
        )),
        _ => Ok(()),
    }
}

/// The result of applying a report to a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub event: EventKind,
    /// The position after the event (`last_event_id` still to be set by the store).
    pub position: Position,
    /// Change of the signed open volume (buys positive).
    pub exposure_delta: Exposure,
    /// Whether the volume changed (a volume-history entry is due).
    pub volume_changed: bool,
    pub reason: String,
}

fn exposure(p: &Position) -> Result<Exposure, Refusal> {
    if p.status == PositionStatus::Closed {
        return Ok(Exposure::ZERO);
    }
    Ok(lots(p.volume, "volume")?.signed(p.side))
}

/// Applies a validated report to the stored position (`None` if unknown).
pub fn apply(current: Option<&Position>, report: &PositionReport) -> Result<Transition, Refusal> {
    if let Some(p) = current {
        check_continues(p, report)?;
    }
    let account_symbol = if report.account_symbol.is_empty() {
        report.symbol.clone()
    } else {
        report.account_symbol.clone()
    };
    let before = current.map(exposure).transpose()?.unwrap_or_default();
    let mut next = match current {
        Some(p) => p.clone(),
        None => Position {
            login: report.login,
            position_id: report.position_id,
            symbol: report.symbol.clone(),
            account_symbol: account_symbol.clone(),
            side: report.side,
            volume: report.volume,
            max_volume: report.volume,
            price: report.price,
            sl: report.sl,
            tp: report.tp,
            magic: report.magic,
            comment: report.comment.clone(),
            exit_comment: None,
            status: PositionStatus::Open,
            opened_ms: report.time_ms,
            updated_ms: report.time_ms,
            last_seq: report.seq,
            last_event_id: EventId(0),
            price_current: None,
            swap: None,
            profit: None,
            commission: None,
            exit_price: None,
            realized_profit: None,
            realized_commission: None,
            realized_swap: None,
            realized_fee: None,
        },
    };
    next.last_seq = report.seq;
    next.updated_ms = report.time_ms;
    next.account_symbol = account_symbol;
    if report.sl.is_some() || report.kind == PositionEventKind::Modify {
        next.sl = report.sl;
    }
    if report.tp.is_some() || report.kind == PositionEventKind::Modify {
        next.tp = report.tp;
    }
    let (event, reason) = change(current, report, &mut next)?;
    if next.status != PositionStatus::Closed {
        next.status = if next.volume < next.max_volume {
            PositionStatus::PartiallyClosed
        } else {
            PositionStatus::Open
        };
    }
    let after = exposure(&next)?;
    let volume_changed = current
        .is_none_or(|p| p.volume != next.volume || p.side != next.side || p.status != next.status);
    Ok(Transition {
        event,
        position: next,
        // Both sides are at most MAX_LOTS, so their difference always fits.
        exposure_delta: after
            .checked_sub(before)
            .ok_or_else(|| Refusal::invalid("volume", "the change of exposure is out of range"))?,
        volume_changed,
        reason,
    })
}

/// Refuses a report that cannot follow the stored position: another symbol, or a seq not after
/// the last one applied.
fn check_continues(p: &Position, report: &PositionReport) -> Result<(), Refusal> {
    if p.symbol != report.symbol {
        return Err(Refusal::Conflict(format!(
            "position {} of account {} is on {}, not {}",
            p.position_id, p.login, p.symbol, report.symbol
        )));
    }
    if report.seq <= p.last_seq {
        return Err(Refusal::Conflict(format!(
            "stale event: seq {} is not after the position's last seq {}",
            report.seq, p.last_seq
        )));
    }
    Ok(())
}

/// What the report's kind does to `next` (a copy of `current`, or the first position), with the
/// event and the reason to record; refuses a kind the stored state does not allow.
fn change(
    current: Option<&Position>,
    report: &PositionReport,
    next: &mut Position,
) -> Result<(EventKind, String), Refusal> {
    let open_now = current.filter(|p| p.status != PositionStatus::Closed);
    let volume = report.volume.normalize();
    match (report.kind, open_now) {
        (PositionEventKind::Open, Some(p)) => Err(Refusal::Conflict(format!(
            "position {} of account {} is already open ({} {})",
            p.position_id, p.login, p.side, p.volume
        ))),
        (PositionEventKind::Open, None) => Ok(open(report, volume, current.is_some(), next)),
        (_, None) => Err(Refusal::Conflict(format!(
            "{} for position {} of account {}, which is not open",
            report.kind.as_str(),
            report.position_id,
            report.login
        ))),
        (kind, Some(p)) if kind != PositionEventKind::Reverse && report.side != p.side => {
            Err(Refusal::Conflict(format!(
                "{} reports side {} but position {} is {}",
                kind.as_str(),
                report.side,
                p.position_id,
                p.side
            )))
        }
        (PositionEventKind::Increase, Some(p)) => increase(p, report, volume, next),
        (PositionEventKind::PartialClose, Some(p)) => partial_close(p, report, volume, next),
        (PositionEventKind::Close, Some(p)) => {
            next.volume = Volume::ZERO;
            next.status = PositionStatus::Closed;
            next.exit_comment = exit_comment(report);
            Ok((
                EventKind::PositionClosed,
                format!("client closed {} {} {}", p.side, p.volume, p.symbol),
            ))
        }
        (PositionEventKind::Modify, Some(p)) => {
            if volume != p.volume {
                return Err(Refusal::Conflict(format!(
                    "modify reports volume {volume} but the open volume is {}",
                    p.volume
                )));
            }
            Ok((
                EventKind::PositionModified,
                format!("client changed SL/TP of {} {}", p.side, p.symbol),
            ))
        }
        (PositionEventKind::Reverse, Some(p)) => reverse(p, report, volume, next),
    }
}

/// An open of a position not open now: new, or `reopened` after a close.
fn open(
    report: &PositionReport,
    volume: Volume,
    reopened: bool,
    next: &mut Position,
) -> (EventKind, String) {
    next.side = report.side;
    next.volume = volume;
    next.max_volume = volume;
    next.price = report.price;
    next.magic = report.magic;
    next.comment = report.comment.clone();
    next.status = PositionStatus::Open;
    next.opened_ms = report.time_ms;
    let how = if reopened { "reopened" } else { "opened" };
    (
        EventKind::PositionOpened,
        format!("client {how} {} {} {}", report.side, volume, report.symbol),
    )
}

fn increase(
    p: &Position,
    report: &PositionReport,
    volume: Volume,
    next: &mut Position,
) -> Result<(EventKind, String), Refusal> {
    if volume <= p.volume {
        return Err(Refusal::Conflict(format!(
            "increase to {volume} is not above the open volume {}",
            p.volume
        )));
    }
    next.volume = volume;
    next.max_volume = p.max_volume.max(volume);
    if report.price.is_some() {
        next.price = report.price;
    }
    Ok((
        EventKind::PositionIncreased,
        format!("client increased {} {} to {volume}", p.side, p.symbol),
    ))
}

fn partial_close(
    p: &Position,
    report: &PositionReport,
    volume: Volume,
    next: &mut Position,
) -> Result<(EventKind, String), Refusal> {
    if volume >= p.volume {
        return Err(Refusal::Conflict(format!(
            "partial close to {volume} is not below the open volume {}",
            p.volume
        )));
    }
    next.volume = volume;
    next.exit_comment = exit_comment(report);
    Ok((
        EventKind::PositionReduced,
        format!(
            "client reduced {} {} from {} to {volume}",
            p.side, p.symbol, p.volume
        ),
    ))
}

fn reverse(
    p: &Position,
    report: &PositionReport,
    volume: Volume,
    next: &mut Position,
) -> Result<(EventKind, String), Refusal> {
    if report.side == p.side {
        return Err(Refusal::Conflict(format!(
            "reverse must flip the side, but position {} is already {}",
            p.position_id, p.side
        )));
    }
    next.side = report.side;
    next.volume = volume;
    next.max_volume = volume;
    if report.price.is_some() {
        next.price = report.price;
    }
    Ok((
        EventKind::PositionReversed,
        format!(
            "client reversed {} {} {} to {} {volume}",
            p.side, p.volume, p.symbol, report.side
        ),
    ))
}

/// Decimals of an exit price whose symbol's digits the center does not know (the account
/// registered no spec for it): enough for any MT5 quote.
pub const FALLBACK_PRICE_DIGITS: u32 = 8;

/// What a position's exit deals realized, as the store keeps it: exact sums, so any number of
/// partial closes add up without rounding, and the exact notional (price × volume) the exit price
/// is averaged from. A position's `Option<Realized>` is `None` while unknown: once one of its
/// closing reports came without its deal, a sum of the others would pass for the whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Realized {
    /// Volume the exit deals closed, in 10^-8 lot.
    pub units: i64,
    /// Σ price × volume over the exit deals.
    pub notional: Decimal,
    /// `notional / volume` rounded (half away from zero) to the symbol's digits; `None` while
    /// nothing was closed.
    pub price: Option<Price>,
    pub profit: Money,
    pub commission: Money,
    pub swap: Money,
    pub fee: Money,
}

impl Realized {
    /// Puts the figures on `p` (the API's view: the sums without the notional).
    pub fn show(realized: Option<&Realized>, p: &mut Position) {
        p.exit_price = realized.and_then(|r| r.price);
        p.realized_profit = realized.map(|r| r.profit);
        p.realized_commission = realized.map(|r| r.commission);
        p.realized_swap = realized.map(|r| r.swap);
        p.realized_fee = realized.map(|r| r.fee);
    }
}

/// The realized figures of a position after `report`, which [`apply`] accepted against `current`
/// (the position before it). An open starts them at zero (a reopened id starts over, as its
/// volumes do); a partial close or close with its exit deal adds the deal, one without makes them
/// unknown for good, as does a reversal (it closes the old side with no deal). `digits` is the
/// symbol's price digits, for the average exit price.
pub fn realize(
    before: Option<&Realized>,
    current: Option<&Position>,
    report: &PositionReport,
    digits: Option<u32>,
) -> Result<Option<Realized>, Refusal> {
    match report.kind {
        PositionEventKind::Open => return Ok(Some(Realized::default())),
        PositionEventKind::Increase | PositionEventKind::Modify => return Ok(before.cloned()),
        PositionEventKind::Reverse => return Ok(None),
        PositionEventKind::PartialClose | PositionEventKind::Close => {}
    }
    let (Some(before), Some(exit), Some(current)) = (before, &report.exit, current) else {
        return Ok(None);
    };
    let out_of_range = || Refusal::invalid("exit", "exit's figures are out of range");
    // `apply` accepted the report, so it closed `current.volume - report.volume` (all of it for
    // a close, whose volume is 0).
    let closed = lots(current.volume, "volume")?
        .checked_sub(lots(report.volume, "volume")?)
        .ok_or_else(out_of_range)?;
    let units = Lots::from_units(before.units)
        .and_then(|b| b.checked_add(closed))
        .ok_or_else(out_of_range)?;
    let notional = exit
        .price
        .0
        .checked_mul(closed.volume().0)
        .and_then(|n| before.notional.checked_add(n))
        .ok_or_else(out_of_range)?;
    let sum = |a: Money, b: Money| a.0.checked_add(b.0).map(Money).ok_or_else(out_of_range);
    let price = (!units.is_zero())
        .then(|| {
            notional
                .checked_div(units.volume().0)
                .map(|p| {
                    Price(
                        p.round_dp_with_strategy(
                            digits.unwrap_or(FALLBACK_PRICE_DIGITS),
                            RoundingStrategy::MidpointAwayFromZero,
                        )
                        .normalize(),
                    )
                })
                .ok_or_else(out_of_range)
        })
        .transpose()?;
    Ok(Some(Realized {
        units: units.units(),
        notional,
        price,
        profit: sum(before.profit, exit.profit)?,
        commission: sum(before.commission, exit.commission)?,
        swap: sum(before.swap, exit.swap)?,
        fee: sum(before.fee, exit.fee)?,
    }))
}

/// A reduction's or close's comment is the exit comment; an empty one leaves none.
fn exit_comment(report: &PositionReport) -> Option<String> {
    (!report.comment.is_empty()).then(|| report.comment.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedge_center_api::model::ExitDeal;
    use hedge_domain::{Login, PositionId, Side};
    use rust_decimal_macros::dec;

    fn report(kind: PositionEventKind, side: Side, volume: Decimal, seq: u64) -> PositionReport {
        PositionReport {
            time_ms: 1,
            ..PositionReport::new(
                kind,
                Login(1),
                PositionId(10),
                "EURUSD",
                side,
                Volume(volume),
                seq,
            )
        }
    }

    #[test]
    fn lifecycle_and_exposure() {
        let open = report(PositionEventKind::Open, Side::Buy, dec!(0.3), 1);
        validate(&open).unwrap();
        let t = apply(None, &open).unwrap();
        assert_eq!(t.exposure_delta.units(), 30_000_000);
        assert_eq!(t.position.status, PositionStatus::Open);
        let p = t.position;
        let t = apply(
            Some(&p),
            &report(PositionEventKind::PartialClose, Side::Buy, dec!(0.1), 2),
        )
        .unwrap();
        assert_eq!(t.exposure_delta.units(), -20_000_000);
        assert_eq!(t.position.status, PositionStatus::PartiallyClosed);
        let p = t.position;
        let t = apply(
            Some(&p),
            &report(PositionEventKind::Reverse, Side::Sell, dec!(0.2), 3),
        )
        .unwrap();
        assert_eq!(t.exposure_delta.units(), -30_000_000);
        let p = t.position;
        let t = apply(
            Some(&p),
            &report(PositionEventKind::Close, Side::Sell, dec!(0), 4),
        )
        .unwrap();
        assert_eq!(t.exposure_delta.units(), 20_000_000);
        assert_eq!(t.position.status, PositionStatus::Closed);
        // netting reversal as close + open on the same id
        let p = t.position;
        let t = apply(
            Some(&p),
            &report(PositionEventKind::Open, Side::Buy, dec!(1), 5),
        )
        .unwrap();
        assert_eq!(t.exposure_delta.units(), 100_000_000);
    }

    #[test]
    fn contradictions_are_refused() {
        let p = apply(
            None,
            &report(PositionEventKind::Open, Side::Buy, dec!(0.3), 1),
        )
        .unwrap()
        .position;
        let bigger = report(PositionEventKind::PartialClose, Side::Buy, dec!(0.5), 2);
        assert!(matches!(
            apply(Some(&p), &bigger),
            Err(Refusal::Conflict(_))
        ));
        let unknown = report(PositionEventKind::Close, Side::Buy, dec!(0), 2);
        assert!(matches!(apply(None, &unknown), Err(Refusal::Conflict(_))));
        let stale = report(PositionEventKind::Modify, Side::Buy, dec!(0.3), 1);
        assert!(matches!(apply(Some(&p), &stale), Err(Refusal::Conflict(_))));
        let wrong_side = report(PositionEventKind::PartialClose, Side::Sell, dec!(0.1), 2);
        assert!(matches!(
            apply(Some(&p), &wrong_side),
            Err(Refusal::Conflict(_))
        ));
        assert!(validate(&report(PositionEventKind::Close, Side::Buy, dec!(0.1), 2)).is_err());
        assert!(validate(&report(PositionEventKind::Open, Side::Buy, dec!(0), 2)).is_err());
        assert!(validate(&report(PositionEventKind::Open, Side::Buy, dec!(-1), 2)).is_err());
        assert!(validate(&report(
            PositionEventKind::Open,
            Side::Buy,
            dec!(0.000000001),
            2
        ))
        .is_err());
    }

    fn exit(price: Decimal, profit: Decimal, commission: Decimal) -> ExitDeal {
        ExitDeal {
            price: Price(price),
            profit: Money(profit),
            commission: Money(commission),
            swap: Money(dec!(-0.1)),
            fee: Money(dec!(0)),
        }
    }

    /// Applies `r` as the store does: the transition, then the realized figures.
    fn step(
        p: Option<&Position>,
        realized: Option<&Realized>,
        r: &PositionReport,
    ) -> (Position, Option<Realized>) {
        validate(r).unwrap();
        let mut next = apply(p, r).unwrap().position;
        let realized = realize(realized, p, r, Some(5)).unwrap();
        Realized::show(realized.as_ref(), &mut next);
        (next, realized)
    }

    #[test]
    fn realized_figures_add_up_exactly_over_partial_closes() {
        let open = report(PositionEventKind::Open, Side::Buy, dec!(0.3), 1);
        let (p, r) = step(None, None, &open);
        assert_eq!(r, Some(Realized::default()));
        assert_eq!(p.realized_profit, Some(Money::ZERO));
        assert_eq!(p.exit_price, None);

        let mut first = report(PositionEventKind::PartialClose, Side::Buy, dec!(0.2), 2);
        first.exit = Some(exit(dec!(1.10012), dec!(0.1), dec!(-0.1)));
        let (p, r) = step(Some(&p), r.as_ref(), &first);
        assert_eq!(p.exit_price, Some(Price(dec!(1.10012))));
        let mut second = report(PositionEventKind::PartialClose, Side::Buy, dec!(0.05), 3);
        second.exit = Some(exit(dec!(1.10031), dec!(0.2), dec!(-0.2)));
        let (p, r) = step(Some(&p), r.as_ref(), &second);
        let mut close = report(PositionEventKind::Close, Side::Buy, dec!(0), 4);
        close.exit = Some(exit(dec!(1.10047), dec!(-0.07), dec!(0)));
        let (p, r) = step(Some(&p), r.as_ref(), &close);
        let r = r.unwrap();
        // 0.1 + 0.15 + 0.05 lots; (1.10012*0.1 + 1.10031*0.15 + 1.10047*0.05) / 0.3 = 1.1002733…
        assert_eq!(r.units, 30_000_000);
        assert_eq!(r.notional, dec!(0.330082));
        assert_eq!(p.exit_price, Some(Price(dec!(1.10027))));
        // Sums no binary float gets right (0.1 + 0.2).
        assert_eq!(p.realized_profit, Some(Money(dec!(0.23))));
        assert_eq!(p.realized_commission, Some(Money(dec!(-0.3))));
        assert_eq!(p.realized_swap, Some(Money(dec!(-0.3))));
        assert_eq!(p.realized_fee, Some(Money(dec!(0))));
        assert_eq!(p.status, PositionStatus::Closed);

        // The same id reopened (netting close + open) starts over.
        let reopen = report(PositionEventKind::Open, Side::Sell, dec!(1), 5);
        let (p, r) = step(Some(&p), Some(&r), &reopen);
        assert_eq!(r, Some(Realized::default()));
        assert_eq!(p.exit_price, None);
    }

    #[test]
    fn a_close_without_its_deal_makes_the_figures_unknown_for_good() {
        let (p, r) = step(
            None,
            None,
            &report(PositionEventKind::Open, Side::Sell, dec!(0.3), 1),
        );
        let (p, r) = step(
            Some(&p),
            r.as_ref(),
            &report(PositionEventKind::PartialClose, Side::Sell, dec!(0.1), 2),
        );
        assert_eq!(r, None);
        assert_eq!((p.realized_profit, p.exit_price), (None, None));
        // An increase keeps what is known; a later deal cannot make a partial sum whole.
        let (p, r) = step(
            Some(&p),
            r.as_ref(),
            &report(PositionEventKind::Increase, Side::Sell, dec!(0.2), 3),
        );
        assert_eq!(r, None);
        let mut close = report(PositionEventKind::Close, Side::Sell, dec!(0), 4);
        close.exit = Some(exit(dec!(1.2), dec!(5), dec!(-1)));
        let (p, r) = step(Some(&p), r.as_ref(), &close);
        assert_eq!(r, None);
        assert_eq!(p.realized_commission, None);
        // A reversal closes the old side with no deal.
        let (p, r) = step(
            None,
            None,
            &report(PositionEventKind::Open, Side::Buy, dec!(0.3), 1),
        );
        let (_, r) = step(
            Some(&p),
            r.as_ref(),
            &report(PositionEventKind::Reverse, Side::Sell, dec!(0.1), 2),
        );
        assert_eq!(r, None);
    }

    #[test]
    fn the_exit_price_rounds_to_the_symbols_digits_or_else_to_eight() {
        let (p, r) = step(
            None,
            None,
            &report(PositionEventKind::Open, Side::Buy, dec!(0.3), 1),
        );
        let mut part = report(PositionEventKind::PartialClose, Side::Buy, dec!(0.1), 2);
        part.exit = Some(exit(dec!(1.1), dec!(0), dec!(0)));
        let r = realize(r.as_ref(), Some(&p), &part, None).unwrap();
        let mut next = apply(Some(&p), &part).unwrap().position;
        Realized::show(r.as_ref(), &mut next);
        let mut close = report(PositionEventKind::Close, Side::Buy, dec!(0), 3);
        close.exit = Some(exit(dec!(1.2), dec!(0), dec!(0)));
        // 0.2 lots at 1.1 and 0.1 at 1.2: 1.1333…
        let unknown = realize(r.as_ref(), Some(&next), &close, None).unwrap();
        assert_eq!(unknown.unwrap().price, Some(Price(dec!(1.13333333))));
        let three = realize(r.as_ref(), Some(&next), &close, Some(3)).unwrap();
        assert_eq!(three.unwrap().price, Some(Price(dec!(1.133))));
        // Half away from zero: 0.1 at 1.2 and 0.1 at 1.3 average 1.25 exactly, 1.3 with 1 digit.
        let tenth = Realized {
            units: 10_000_000,
            notional: dec!(0.12),
            ..Realized::default()
        };
        let mut last = report(PositionEventKind::Close, Side::Buy, dec!(0), 3);
        last.exit = Some(exit(dec!(1.3), dec!(0), dec!(0)));
        let half = Position {
            volume: Volume(dec!(0.1)),
            ..next.clone()
        };
        let one = realize(Some(&tenth), Some(&half), &last, Some(1)).unwrap();
        assert_eq!(one.unwrap().price, Some(Price(dec!(1.3))));
    }

    #[test]
    fn an_exit_deal_is_refused_where_it_makes_no_sense() {
        let mut open = report(PositionEventKind::Open, Side::Buy, dec!(0.3), 1);
        open.exit = Some(exit(dec!(1.1), dec!(0), dec!(0)));
        assert!(matches!(
            validate(&open),
            Err(Refusal::Invalid { field: Some(f), .. }) if f == "exit"
        ));
        let mut close = report(PositionEventKind::Close, Side::Buy, dec!(0), 2);
        close.exit = Some(exit(dec!(0), dec!(0), dec!(0)));
        assert!(matches!(
            validate(&close),
            Err(Refusal::Invalid { field: Some(f), .. }) if f == "exit.price"
        ));
        // A sum past what a decimal holds is refused, not wrapped.
        let (p, _) = step(
            None,
            None,
            &report(PositionEventKind::Open, Side::Buy, dec!(0.3), 1),
        );
        let huge = Realized {
            profit: Money(Decimal::MAX),
            ..Realized::default()
        };
        let mut part = report(PositionEventKind::PartialClose, Side::Buy, dec!(0.1), 2);
        part.exit = Some(exit(dec!(1.1), dec!(1), dec!(0)));
        assert!(matches!(
            realize(Some(&huge), Some(&p), &part, Some(5)),
            Err(Refusal::Invalid { .. })
        ));
    }

    #[test]
    fn sizes_are_exact_and_bounded() {
        assert_eq!(lots(Volume(dec!(0.1)), "v").unwrap().units(), 10_000_000);
        assert_eq!(lots(Volume(dec!(1000000000)), "v").unwrap(), MAX_LOTS);
        let too_large = lots(Volume(dec!(1000000000.00000001)), "v").unwrap_err();
        assert_eq!(too_large, Refusal::invalid("v", "v is too large"));
        let negative = lots(Volume(dec!(-0.1)), "v").unwrap_err();
        assert_eq!(negative, Refusal::invalid("v", "v must not be negative"));
    }
}
