//! Trade actions on bi-directional positions, planned by the ledger and executed by the caller.
//!
//! A plan is an ordered list of broker requests, each with its own timeout and retry budget. The
//! order follows one rule: a stop-loss order is cancelled before any counter-order is sent and
//! re-placed only after the counter-order has executed, so a stale stop can never open a position.
//! [`Execution`] walks a plan step by step from broker results: retryable retcodes (requote, price
//! changed, off quotes, too many requests, timeout, connection) are retried up to the budget, fatal
//! ones fail the plan, and cancelling an order that is already gone counts as done.

use crate::codec::{self, encode, CodecError, LinkKind};
use crate::ledger::{order_state_is_pending, Ledger, PairingMode};
use crate::position::ActivePosition;
use hedge_domain::{
    Magic, OrderState, OrderTicket, OrderType, PositionId, Price, Retcode, RetcodeClass, Rounding,
    Side, SymbolSpec, Volume,
};
use std::time::Duration;

/// Default time a step may take before it counts as failed (and is retried).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of retries of a step after a retryable failure.
pub const MAX_RETRIES: u32 = 3;
/// Longest exit comment MT5 keeps.
pub const MAX_COMMENT: usize = 31;

/// One request to the trade server.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum BrokerRequest {
    /// A market order (`TRADE_ACTION_DEAL`). On hedging accounts a reducing order names the
    /// position it closes (`position`); without it MT5 would open a new opposite position.
    Market {
        symbol: String,
        side: Side,
        volume: Volume,
        magic: Magic,
        comment: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        position: Option<PositionId>,
    },
    /// A pending stop order (`TRADE_ACTION_PENDING`, BUY_STOP / SELL_STOP) acting as the stop-loss.
    PlaceStop {
        symbol: String,
        order_type: OrderType,
        volume: Volume,
        price: Price,
        magic: Magic,
        comment: String,
        /// Good till cancelled, or until the symbol's expiry (B§6.3, see [`with_stop_expiry`]).
        expiry: StopExpiry,
    },
    /// On exchange-execution symbols: a limit order acting as a market order (time-in-force DAY).
    LimitAsMarket {
        symbol: String,
        order_type: OrderType,
        volume: Volume,
        price: Price,
        magic: Magic,
        comment: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        position: Option<PositionId>,
    },
    /// Set, move or remove (`sl` 0) the stop-loss of the position itself (`TRADE_ACTION_SLTP` with
    /// the position ticket): hedging accounts, where a pending stop order would open a new
    /// position when it fires instead of closing this one. The take-profit it sends stays 0, as
    /// the ledger's take-profit is virtual.
    PositionStop {
        symbol: String,
        position: PositionId,
        sl: Price,
    },
    /// Move a pending order's price in place (`TRADE_ACTION_MODIFY`).
    ModifyStop { order: OrderTicket, price: Price },
    /// Delete a pending order (`TRADE_ACTION_REMOVE`).
    CancelOrder { order: OrderTicket },
}

/// How long a stop order works.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type_time", rename_all = "snake_case")]
pub enum StopExpiry {
    /// `ORDER_TIME_GTC`.
    Gtc,
    /// `ORDER_TIME_SPECIFIED` until `expiration_msc` (both stop directions alike, unlike the
    /// original's SELL_STOP).
    Specified { expiration_msc: i64 },
}

/// What a market step must have done, so that a step whose answer never came is resent only when
/// it certainly did not execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FillGuard {
    pub position: PositionId,
    /// The position's volume when the plan was made.
    pub before: Volume,
    /// The volume the step closes.
    pub volume: Volume,
    pub magic: Magic,
    /// The highest order ticket the ledger knew when planning: the step's order comes after it.
    pub after_order: u64,
}

/// A request with its execution limits.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PlanStep {
    pub request: BrokerRequest,
    #[serde(with = "secs")]
    pub timeout: Duration,
    pub max_retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<FillGuard>,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// What an action does to a position, as ordered broker requests.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ActionPlan {
    pub position: PositionId,
    pub steps: Vec<PlanStep>,
    /// A new exit comment to keep locally (positions without a stop order).
    pub local_exit_comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("volume {requested} exceeds the position's {available}")]
    VolumeTooLarge {
        requested: Volume,
        available: Volume,
    },
    #[error("volume {0} is not positive or below the symbol's step/minimum")]
    BadVolume(Volume),
    #[error("position {0} already has a stop-loss; modify it instead")]
    StopExists(PositionId),
    #[error("position {0} has no stop-loss")]
    NoStop(PositionId),
    #[error("nothing changes")]
    NoChanges,
    #[error("take-profit {tp} is on the wrong side of the current price {price}")]
    BadTakeProfit { tp: Price, price: Price },
    #[error("stop-loss {sl} is on the wrong side of the current price {price}")]
    BadStopLoss { sl: Price, price: Price },
    #[error("magic {0} has bit 63 set and would be read as a link")]
    LinkMagic(Magic),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

fn step(request: BrokerRequest) -> PlanStep {
    PlanStep {
        request,
        timeout: STEP_TIMEOUT,
        max_retries: MAX_RETRIES,
        guard: None,
    }
}

/// Whether the position is on a hedging account (native pairing), where a reducing request names
/// its position and the stop-loss lives on the position rather than in a stop order.
fn on_hedging(pos: &ActivePosition<'_>) -> bool {
    pos.ledger.mode() == PairingMode::Native
}

/// The position ticket a reducing request must carry: hedging accounts only.
fn position_ticket(pos: &ActivePosition<'_>) -> Option<PositionId> {
    on_hedging(pos).then(|| pos.id())
}

fn position_stop(pos: &ActivePosition<'_>, sl: Price) -> PlanStep {
    step(BrokerRequest::PositionStop {
        symbol: pos.symbol().to_owned(),
        position: pos.id(),
        sl,
    })
}

/// Sets every stop order of a plan to expire with its symbol: the symbol's expiration plus one day,
/// as the original placed them (B§6.3). Symbols without an expiration keep GTC.
pub fn with_stop_expiry(mut plan: ActionPlan, symbol_expiration_msc: Option<i64>) -> ActionPlan {
    let Some(exp) = symbol_expiration_msc.filter(|&t| t > 0) else {
        return plan;
    };
    for s in &mut plan.steps {
        if let BrokerRequest::PlaceStop { expiry, .. } = &mut s.request {
            *expiry = StopExpiry::Specified {
                expiration_msc: exp.saturating_add(86_400_000),
            };
        }
    }
    plan
}

fn truncate_comment(c: &str) -> String {
    c.chars().take(MAX_COMMENT).collect()
}

fn stop_type(position_side: Side) -> OrderType {
    match position_side {
        Side::Buy => OrderType::SellStop,
        Side::Sell => OrderType::BuyStop,
    }
}

/// The market order that opens a new position. The caller's own magic (an EA number) is kept; it must
/// not have bit 63 set, or the ledger would read it as a link. The new position's id will be the
/// order's ticket.
pub fn plan_open(
    symbol: &str,
    side: Side,
    volume: Volume,
    magic: Magic,
    comment: &str,
    spec: Option<&SymbolSpec>,
) -> Result<BrokerRequest, ActionError> {
    if codec::is_link(magic) {
        return Err(ActionError::LinkMagic(magic));
    }
    let volume = normalize(volume, spec)?;
    Ok(BrokerRequest::Market {
        symbol: symbol.to_owned(),
        side,
        volume,
        magic,
        comment: truncate_comment(comment),
        position: None,
    })
}

fn normalize(volume: Volume, spec: Option<&SymbolSpec>) -> Result<Volume, ActionError> {
    if !volume.is_positive() {
        return Err(ActionError::BadVolume(volume));
    }
    match spec {
        Some(s) => s
            .normalize_volume(volume, Rounding::Down)
            .map_err(|_| ActionError::BadVolume(volume)),
        None => Ok(volume),
    }
}

/// Close all (`volume` = `None` or the full volume) or part of a position. `kind` marks the close as a
/// plain, stop-loss or take-profit close in the link magic.
pub fn plan_close(
    pos: &ActivePosition<'_>,
    volume: Option<Volume>,
    kind: LinkKind,
    exit_comment: &str,
    spec: Option<&SymbolSpec>,
) -> Result<ActionPlan, ActionError> {
    let available = pos.volume();
    let volume = match volume {
        None => available,
        Some(v) if v == available => available,
        Some(v) if v > available => {
            return Err(ActionError::VolumeTooLarge {
                requested: v,
                available,
            })
        }
        Some(v) => normalize(v, spec)?,
    };
    let magic = encode(pos.entry_order(), kind)?;
    let comment = truncate_comment(exit_comment);
    let mut steps = Vec::new();
    let stop = pos.stop_loss_order().zip(pos.stop_loss());
    if let Some((order, _)) = stop {
        steps.push(step(BrokerRequest::CancelOrder { order }));
    }
    let mut close = step(BrokerRequest::Market {
        symbol: pos.symbol().to_owned(),
        side: pos.side().opposite(),
        volume,
        magic,
        comment: comment.clone(),
        position: position_ticket(pos),
    });
    close.guard = Some(FillGuard {
        position: pos.id(),
        before: available,
        volume,
        magic,
        after_order: pos.ledger.orders.last().map_or(0, |o| o.ticket),
    });
    steps.push(close);
    if let Some((_, price)) = stop {
        if volume < available && on_hedging(pos) {
            // The stop order was cancelled above; the remainder gets its stop on the position.
            steps.push(position_stop(pos, price));
        } else if volume < available {
            steps.push(step(BrokerRequest::PlaceStop {
                symbol: pos.symbol().to_owned(),
                order_type: stop_type(pos.side()),
                volume: available - volume,
                price,
                magic: encode(pos.entry_order(), LinkKind::StopLoss)?,
                comment: pos
                    .stop_loss_comment()
                    .map(truncate_comment)
                    .unwrap_or(comment),
                expiry: StopExpiry::Gtc,
            }));
        }
    }
    Ok(ActionPlan {
        position: pos.id(),
        steps,
        local_exit_comment: None,
    })
}

/// Place a stop-loss on a position that has none. `current` (Bid for long, Ask for short) guards
/// against a stop that would trigger at once.
pub fn plan_set_stop_loss(
    pos: &ActivePosition<'_>,
    price: Price,
    current: Option<Price>,
    exit_comment: &str,
) -> Result<ActionPlan, ActionError> {
    if pos.stop_loss_order().is_some() {
        return Err(ActionError::StopExists(pos.id()));
    }
    check_stop_side(pos.side(), price, current)?;
    if on_hedging(pos) {
        // The exit comment cannot ride on a position's stop: it is kept locally.
        return Ok(ActionPlan {
            position: pos.id(),
            steps: vec![position_stop(pos, price)],
            local_exit_comment: Some(truncate_comment(exit_comment)),
        });
    }
    Ok(ActionPlan {
        position: pos.id(),
        steps: vec![step(BrokerRequest::PlaceStop {
            symbol: pos.symbol().to_owned(),
            order_type: stop_type(pos.side()),
            volume: pos.volume(),
            price,
            magic: encode(pos.entry_order(), LinkKind::StopLoss)?,
            comment: truncate_comment(exit_comment),
            expiry: StopExpiry::Gtc,
        })],
        local_exit_comment: None,
    })
}

fn check_stop_side(side: Side, sl: Price, current: Option<Price>) -> Result<(), ActionError> {
    let Some(price) = current else { return Ok(()) };
    let wrong = match side {
        Side::Buy => sl >= price,
        Side::Sell => sl <= price,
    };
    if wrong || !sl.is_positive() {
        return Err(ActionError::BadStopLoss { sl, price });
    }
    Ok(())
}

/// Move the existing stop order in place. On hedging accounts the position's own stop-loss is set
/// to the new level, and a stop order found there (which would open a position) is cancelled first.
pub fn plan_modify_stop_loss(
    pos: &ActivePosition<'_>,
    price: Price,
    current: Option<Price>,
) -> Result<ActionPlan, ActionError> {
    if pos.stop_loss() == Some(price) {
        return Err(ActionError::NoChanges);
    }
    if on_hedging(pos) {
        check_stop_side(pos.side(), price, current)?;
        let mut steps: Vec<PlanStep> = pos
            .stop_loss_order()
            .map(|order| step(BrokerRequest::CancelOrder { order }))
            .into_iter()
            .collect();
        steps.push(position_stop(pos, price));
        return Ok(ActionPlan {
            position: pos.id(),
            steps,
            local_exit_comment: None,
        });
    }
    let order = pos.stop_loss_order().ok_or(ActionError::NoStop(pos.id()))?;
    check_stop_side(pos.side(), price, current)?;
    Ok(ActionPlan {
        position: pos.id(),
        steps: vec![step(BrokerRequest::ModifyStop { order, price })],
        local_exit_comment: None,
    })
}

/// Remove the stop-loss: the stop order, or on hedging accounts the position's own stop-loss.
pub fn plan_delete_stop_loss(pos: &ActivePosition<'_>) -> Result<ActionPlan, ActionError> {
    if on_hedging(pos) && pos.stop_loss_order().is_none() {
        return Ok(ActionPlan {
            position: pos.id(),
            steps: vec![position_stop(pos, Price::ZERO)],
            local_exit_comment: None,
        });
    }
    let order = pos.stop_loss_order().ok_or(ActionError::NoStop(pos.id()))?;
    Ok(ActionPlan {
        position: pos.id(),
        steps: vec![step(BrokerRequest::CancelOrder { order })],
        local_exit_comment: None,
    })
}

/// Change the exit comment: with a stop order the comment lives on it, so the stop is re-created;
/// otherwise it is local only.
pub fn plan_change_exit_comment(
    pos: &ActivePosition<'_>,
    comment: &str,
) -> Result<ActionPlan, ActionError> {
    let comment = truncate_comment(comment);
    // On hedging accounts the stop-loss is the position's own, which carries no comment; re-placing
    // a stop order there would open a position when it fires.
    let stop = pos
        .stop_loss_order()
        .zip(pos.stop_loss())
        .filter(|_| !on_hedging(pos));
    match stop {
        Some((order, price)) => {
            if pos.stop_loss_comment() == Some(comment.as_str()) {
                return Err(ActionError::NoChanges);
            }
            Ok(ActionPlan {
                position: pos.id(),
                steps: vec![
                    step(BrokerRequest::CancelOrder { order }),
                    step(BrokerRequest::PlaceStop {
                        symbol: pos.symbol().to_owned(),
                        order_type: stop_type(pos.side()),
                        volume: pos.volume(),
                        price,
                        magic: encode(pos.entry_order(), LinkKind::StopLoss)?,
                        comment,
                        expiry: StopExpiry::Gtc,
                    }),
                ],
                local_exit_comment: None,
            })
        }
        None => Ok(ActionPlan {
            position: pos.id(),
            steps: Vec::new(),
            local_exit_comment: Some(comment),
        }),
    }
}

/// For symbols with exchange execution and a deviation: turns a market request into a limit order that
/// acts as one (a sell becomes SELL_LIMIT at Bid − deviation·point, a buy BUY_LIMIT at Ask +
/// deviation·point, both rounded down to the tick size). Other requests pass through unchanged.
pub fn as_exchange_limit(
    request: BrokerRequest,
    bid: Price,
    ask: Price,
    deviation_points: u32,
    spec: &SymbolSpec,
) -> BrokerRequest {
    let BrokerRequest::Market {
        symbol,
        side,
        volume,
        magic,
        comment,
        position,
    } = request
    else {
        return request;
    };
    if deviation_points == 0 {
        return BrokerRequest::Market {
            symbol,
            side,
            volume,
            magic,
            comment,
            position,
        };
    }
    let offset = spec.point.0 * rust_decimal::Decimal::from(deviation_points);
    let (order_type, raw) = match side {
        Side::Sell => (OrderType::SellLimit, bid.0 - offset),
        Side::Buy => (OrderType::BuyLimit, ask.0 + offset),
    };
    let tick = if spec.tick_size.is_positive() {
        spec.tick_size.0
    } else {
        spec.point.0
    };
    let price = if tick.is_zero() {
        raw
    } else {
        (raw / tick).floor() * tick
    };
    BrokerRequest::LimitAsMarket {
        symbol,
        order_type,
        volume,
        price: Price(price.normalize()),
        magic,
        comment,
        position,
    }
}

/// Whether a new virtual take-profit is acceptable: 0 removes it; otherwise long needs TP ≥ Bid and
/// short TP ≤ Ask.
pub fn validate_take_profit(
    side: Side,
    tp: Price,
    old: Option<Price>,
    bid: Price,
    ask: Price,
) -> Result<(), ActionError> {
    if tp.is_negative() {
        return Err(ActionError::BadTakeProfit { tp, price: bid });
    }
    if old.unwrap_or(Price::ZERO) == tp {
        return Err(ActionError::NoChanges);
    }
    if tp.is_zero() {
        return Ok(());
    }
    match side {
        Side::Buy if tp < bid => Err(ActionError::BadTakeProfit { tp, price: bid }),
        Side::Sell if tp > ask => Err(ActionError::BadTakeProfit { tp, price: ask }),
        _ => Ok(()),
    }
}

/// Whether a virtual take-profit fires at these prices (long: TP ≤ Bid; short: TP ≥ Ask).
pub fn take_profit_hit(side: Side, tp: Price, bid: Price, ask: Price) -> bool {
    tp.is_positive()
        && match side {
            Side::Buy => tp <= bid,
            Side::Sell => tp >= ask,
        }
}

/// On a price update: the take-profit close plan when a virtual TP is hit.
pub fn check_take_profit(
    pos: &ActivePosition<'_>,
    tp: Price,
    bid: Price,
    ask: Price,
    exit_comment: &str,
) -> Result<Option<ActionPlan>, ActionError> {
    if !take_profit_hit(pos.side(), tp, bid, ask) {
        return Ok(None);
    }
    plan_close(pos, None, LinkKind::TakeProfit, exit_comment, None).map(Some)
}

/// A trailing stop: the distance captured when it was enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrailingStop {
    pub distance: Price,
}

impl TrailingStop {
    /// Enables trailing on a position with a stop-loss at the current price (Bid for long, Ask for
    /// short).
    pub fn enable(pos: &ActivePosition<'_>, current: Price) -> Result<Self, ActionError> {
        let sl = pos.stop_loss().ok_or(ActionError::NoStop(pos.id()))?;
        Ok(TrailingStop {
            distance: (current - sl).abs(),
        })
    }

    /// The stop level to move to at `current`, only if it is strictly better than the present one
    /// (up for long, down for short): a gap through the stop never moves it back.
    pub fn new_level(&self, side: Side, sl: Price, current: Price) -> Option<Price> {
        let candidate = match side {
            Side::Buy => current - self.distance,
            Side::Sell => current + self.distance,
        };
        let better = match side {
            Side::Buy => candidate > sl,
            Side::Sell => candidate < sl,
        };
        (better && candidate.is_positive()).then_some(candidate)
    }

    /// The modify plan for a price update, if the stop should move.
    pub fn on_price(
        &self,
        pos: &ActivePosition<'_>,
        current: Price,
        spec: Option<&SymbolSpec>,
    ) -> Option<ActionPlan> {
        let sl = pos.stop_loss()?;
        let level = self.new_level(pos.side(), sl, current)?;
        let level = spec.map(|s| s.normalize_price(level)).unwrap_or(level);
        if level == sl {
            return None;
        }
        plan_modify_stop_loss(pos, level, None).ok()
    }
}

/// Progress of one plan.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Status {
    /// Send `plan.steps[step]` (attempt number `attempt`, from 0).
    Send {
        step: usize,
        attempt: u32,
    },
    /// Waiting for the result of the request sent at `since_ms`.
    Waiting {
        step: usize,
        attempt: u32,
        since_ms: i64,
    },
    /// A market step timed out (or came back as timeout / no connection): it may have executed.
    /// Nothing is resent until [`Execution::confirm`] finds it certainly did not.
    Unconfirmed {
        step: usize,
        attempt: u32,
        since_ms: i64,
    },
    Done,
    Failed {
        step: usize,
        retcode: Option<Retcode>,
        reason: String,
    },
}

/// Drives a plan from broker results; the caller sends requests and reports what came back.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Execution {
    pub plan: ActionPlan,
    pub status: Status,
}

impl Execution {
    pub fn new(plan: ActionPlan) -> Self {
        let status = if plan.steps.is_empty() {
            Status::Done
        } else {
            Status::Send {
                step: 0,
                attempt: 0,
            }
        };
        Execution { plan, status }
    }

    /// The request to send now, if any; marks it as sent at `now_ms`.
    pub fn next_request(&mut self, now_ms: i64) -> Option<&BrokerRequest> {
        if let Status::Send { step, attempt } = self.status {
            self.status = Status::Waiting {
                step,
                attempt,
                since_ms: now_ms,
            };
            return self.plan.steps.get(step).map(|s| &s.request);
        }
        None
    }

    /// The broker's answer to the current request. `order_missing` tells that a cancel failed because
    /// the order no longer exists, which counts as done.
    pub fn on_result(&mut self, retcode: Retcode, order_missing: bool) {
        let Status::Waiting { step, attempt, .. } = self.status else {
            return;
        };
        let request = self.plan.steps.get(step).map(|s| &s.request);
        let is_cancel = matches!(request, Some(BrokerRequest::CancelOrder { .. }));
        // A resent position stop that the first attempt already set is answered "no changes".
        let stop_already_set = matches!(request, Some(BrokerRequest::PositionStop { .. }))
            && retcode == Retcode::NO_CHANGES;
        let ambiguous = matches!(retcode, Retcode::TIMEOUT | Retcode::CONNECTION);
        match retcode.class() {
            RetcodeClass::Done => self.advance(step),
            _ if is_cancel && order_missing => self.advance(step),
            _ if stop_already_set => self.advance(step),
            _ if ambiguous && self.guard(step).is_some() => self.unconfirmed(step, attempt),
            RetcodeClass::Retryable => self.retry(step, attempt, Some(retcode), "retryable"),
            RetcodeClass::Fatal => {
                self.status = Status::Failed {
                    step,
                    retcode: Some(retcode),
                    reason: retcode.description().to_owned(),
                }
            }
        }
    }

    /// Call periodically: a request unanswered past its step's timeout is retried (or fails).
    pub fn on_tick(&mut self, now_ms: i64) {
        if let Status::Waiting {
            step,
            attempt,
            since_ms,
        } = self.status
        {
            let timeout = self
                .plan
                .steps
                .get(step)
                .map(|s| s.timeout.as_millis() as i64)
                .unwrap_or(0);
            if now_ms - since_ms >= timeout {
                if self.guard(step).is_some() {
                    self.unconfirmed(step, attempt);
                } else {
                    self.retry(step, attempt, None, "timed out");
                }
            }
        }
    }

    fn guard(&self, step: usize) -> Option<FillGuard> {
        self.plan.steps.get(step).and_then(|s| s.guard)
    }

    fn unconfirmed(&mut self, step: usize, attempt: u32) {
        let since_ms = match self.status {
            Status::Waiting { since_ms, .. } => since_ms,
            _ => 0,
        };
        self.status = Status::Unconfirmed {
            step,
            attempt,
            since_ms,
        };
    }

    /// Decides an unconfirmed market step from the ledger, once it holds the broker's latest
    /// orders and deals. The first request counts as executed when the position lost the step's
    /// volume; it is resent only when the position is untouched and no order carrying the close
    /// magic appeared since planning. A working such order, or a filled one whose deal has not
    /// arrived, means wait (call again later); a partial reduction fails the plan, to be planned
    /// again from what is left.
    pub fn confirm(&mut self, ledger: &Ledger) {
        let Status::Unconfirmed { step, attempt, .. } = self.status else {
            return;
        };
        let Some(g) = self.guard(step) else {
            self.retry(step, attempt, None, "timed out");
            return;
        };
        let mut working = false;
        let mut filled = false;
        for o in ledger.orders.iter().rev() {
            if o.ticket <= g.after_order {
                break;
            }
            if o.magic == g.magic.get() {
                working |= order_state_is_pending(o.state);
                filled |= o.state == OrderState::Filled;
            }
        }
        let now = ledger
            .active(g.position)
            .map_or(Volume::ZERO, |p| p.volume());
        let reduced = g.before - now;
        if reduced >= g.volume {
            self.advance(step);
        } else if reduced.is_positive() {
            self.status = Status::Failed {
                step,
                retcode: None,
                reason: format!("partially filled: {reduced} of {}", g.volume),
            };
        } else if !working && !filled {
            self.retry(step, attempt, None, "not executed after a timeout");
        }
    }

    fn retry(&mut self, step: usize, attempt: u32, retcode: Option<Retcode>, why: &str) {
        let budget = self
            .plan
            .steps
            .get(step)
            .map(|s| s.max_retries)
            .unwrap_or(0);
        self.status = if attempt < budget {
            Status::Send {
                step,
                attempt: attempt + 1,
            }
        } else {
            Status::Failed {
                step,
                retcode,
                reason: format!("{why} after {} attempts", attempt + 1),
            }
        };
    }

    fn advance(&mut self, step: usize) {
        self.status = if step + 1 < self.plan.steps.len() {
            Status::Send {
                step: step + 1,
                attempt: 0,
            }
        } else {
            Status::Done
        };
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.status, Status::Done | Status::Failed { .. })
    }
}
