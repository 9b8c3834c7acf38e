//! Sending legs to the terminal: the request each leg becomes, and the retry loop around it.

use crate::account_view::fill_from_reply;
use crate::planner::{Fill, Leg};
use crate::retry::{Failure, Next, RetryPolicy};
use crate::tag::{command_comment, HedgeTag, ItemIdTooLarge};
use hedge_agent_runtime::ExecMode;
use hedge_domain::{CmdId, OrderFilling, OrderType, Price, Retcode, Side, SymbolSpec};
use hedge_protocol::{Filling, Reply, Terminal, TerminalError, TradeRequest};
use std::time::{Duration, Instant};

/// How orders are sent.
#[derive(Clone, Debug)]
pub struct OrderSettings {
    pub exec_mode: ExecMode,
    pub retry: RetryPolicy,
    /// Accepted slippage in points.
    pub deviation: u64,
    /// How long to wait for one reply before sending the same command again.
    pub reply_timeout: Duration,
}

impl Default for OrderSettings {
    fn default() -> Self {
        OrderSettings {
            exec_mode: ExecMode::Auto,
            retry: RetryPolicy::default(),
            deviation: 20,
            reply_timeout: Duration::from_secs(5),
        }
    }
}

/// The market price an order on `side` trades at: the ask to buy, the bid to sell.
fn side_price(side: Side, bid: Price, ask: Price) -> Price {
    match side {
        Side::Buy => ask,
        Side::Sell => bid,
    }
}

/// The command id of one attempt of a leg: the terminal runs an id at most once. A leg sent again
/// after its item was given up starts past the attempts already used, so the terminal trades it
/// instead of answering with the earlier refusal from its memory.
fn leg_cmd_id(leg: &Leg, tag: &HedgeTag, attempt: u32) -> CmdId {
    let attempt = leg.attempt_base.saturating_add(attempt);
    match leg.command {
        Some(id) => CmdId(format!("cmd-{id}-{}-{attempt}", leg.leg)),
        None => tag.cmd_id(leg.leg, attempt),
    }
}

/// The request for one attempt of a leg. `quote` is the freshest (bid, ask) known.
pub fn build_request(
    leg: &Leg,
    tag: &HedgeTag,
    spec: Option<&SymbolSpec>,
    settings: &OrderSettings,
    quote: Option<(Price, Price)>,
) -> TradeRequest {
    let order_type = OrderType::market(leg.side);
    let mut request = match leg.close {
        Some(position) => TradeRequest::close(leg.symbol.clone(), position, order_type, leg.volume),
        None => TradeRequest::market(leg.symbol.clone(), order_type, leg.volume),
    };
    // A linked reduction keeps the plan item in its comment only: the magic is the ledger's.
    request.magic = leg.link.unwrap_or(tag.magic);
    request.comment = match leg.command {
        Some(id) => command_comment(id),
        None => tag.comment.clone(),
    };
    request.deviation = settings.deviation;
    request.type_filling = match spec.and_then(|s| settings.exec_mode.filling_for(s)) {
        Some(mode) => Filling::Mode(mode),
        // No specification (or no usable mode): the terminal knows the symbol and picks.
        None => Filling::Auto,
    };
    if let Some((bid, ask)) = quote {
        let price = side_price(leg.side, bid, ask);
        if price.is_positive() {
            request.price = match spec {
                Some(s) => s.normalize_price(price),
                None => price,
            };
        }
    }
    request
}

/// A fill-or-kill market order refused (10006) on a symbol that also takes IOC.
fn fok_refused(request: &TradeRequest, reply: &Reply, spec: Option<&SymbolSpec>) -> bool {
    reply.retcode == Retcode::REJECT
        && request.type_filling == Filling::Mode(OrderFilling::Fok)
        && spec.is_some_and(|s| s.filling.allows(OrderFilling::Ioc))
}

/// How a leg ended.
#[derive(Clone, Debug)]
pub enum LegOutcome {
    /// Carried out (fully or partially: `fill` says how much).
    Filled {
        reply: Box<Reply>,
        fill: Option<Fill>,
    },
    /// Given up: refused for good, or retryable refusals until the attempts ran out.
    Rejected {
        failure: Failure,
        retcode: Retcode,
        comment: String,
    },
    /// The link failed so that the outcome is unknown (shutdown, or timeouts on every attempt). The
    /// account will show the result after the next snapshot; the leg must not be sent again blindly.
    Unknown(String),
}

/// The result of one leg with what it took.
#[derive(Clone, Debug)]
pub struct LegReport {
    pub leg: Leg,
    /// The last request sent (its side is the side actually traded).
    pub request: TradeRequest,
    pub attempts: u32,
    /// Retcodes of every attempt, in order.
    pub retcodes: Vec<Retcode>,
    pub outcome: LegOutcome,
    /// From the first write to the final reply.
    pub latency: Duration,
    /// The price asked for on the first attempt (for slippage), zero when the terminal chose.
    pub requested_price: Price,
}

/// A leg's attempts so far: what its report carries besides the leg, the request and the outcome.
struct Attempts {
    started: Instant,
    /// The price asked for on the first attempt.
    requested_price: Price,
    /// The current attempt, from 0.
    attempt: u32,
    retcodes: Vec<Retcode>,
}

impl Attempts {
    fn report(self, leg: Leg, request: TradeRequest, outcome: LegOutcome) -> LegReport {
        LegReport {
            leg,
            request,
            attempts: self.attempt + 1,
            retcodes: self.retcodes,
            outcome,
            latency: self.started.elapsed(),
            requested_price: self.requested_price,
        }
    }
}

/// The quote to price a retry with, after waiting `delay`: the refusal's own quote, or the
/// terminal's when that is newer.
async fn retry_quote(
    terminal: &Terminal,
    symbol: &str,
    reply: &Reply,
    mut quote: Option<(Price, Price)>,
    delay: Duration,
) -> Option<(Price, Price)> {
    if reply.bid.is_positive() && reply.ask.is_positive() {
        quote = Some((reply.bid, reply.ask));
    }
    tokio::time::sleep(delay).await;
    if let Some(i) = terminal.symbol(symbol) {
        if let (Some(b), Some(a)) = (i.bid, i.ask) {
            if i.time >= reply.time || quote.is_none() {
                quote = Some((b, a));
            }
        }
    }
    quote
}

/// Sends a leg, retrying retryable refusals with a fresh price and a new command id each time.
pub async fn execute_leg(
    terminal: &Terminal,
    leg: Leg,
    settings: &OrderSettings,
) -> Result<LegReport, ItemIdTooLarge> {
    let tag = HedgeTag::new(leg.item)?;
    let started = Instant::now();
    let info = terminal.symbol(&leg.symbol);
    let spec = info.as_ref().map(|i| i.spec.clone());
    let mut quote = info.as_ref().and_then(|i| Some((i.bid?, i.ask?)));
    let mut timeouts: u32 = 0;
    let mut ioc_tried = false;
    let mut request = build_request(&leg, &tag, spec.as_ref(), settings, quote);
    let mut tries = Attempts {
        started,
        requested_price: request.price,
        attempt: 0,
        retcodes: Vec::new(),
    };
    loop {
        let cmd_id = leg_cmd_id(&leg, &tag, tries.attempt);
        tracing::debug!(%cmd_id, symbol = %request.symbol, side = %leg.side, volume = %leg.volume, "sending hedge order");
        match terminal
            .send_timeout(
                cmd_id.clone(),
                hedge_protocol::Op::OrderSend(request.clone()),
                settings.reply_timeout,
            )
            .await
        {
            Ok(reply) => {
                tries.retcodes.push(reply.retcode);
                if !ioc_tried && fok_refused(&request, &reply, spec.as_ref()) {
                    // Thin liquidity refuses all-or-nothing; what the market offers now is
                    // better than nothing, and the next plan asks for the rest.
                    tracing::info!(%cmd_id, comment = %reply.comment, "fill or kill refused; taking what the market offers (IOC)");
                    ioc_tried = true;
                    tries.attempt += 1;
                    request.type_filling = Filling::Mode(OrderFilling::Ioc);
                    continue;
                }
                match settings.retry.next(tries.attempt, reply.retcode) {
                    Next::Done => {
                        let fill = fill_from_reply(&request, &reply, reply.time, leg.reduces);
                        let outcome = LegOutcome::Filled {
                            reply: Box::new(reply),
                            fill,
                        };
                        return Ok(tries.report(leg, request, outcome));
                    }
                    Next::Retry(delay) => {
                        tracing::info!(%cmd_id, retcode = %reply.retcode, ?delay, "retryable refusal; retrying with a fresh price");
                        quote = retry_quote(terminal, &leg.symbol, &reply, quote, delay).await;
                        tries.attempt += 1;
                        request = build_request(&leg, &tag, spec.as_ref(), settings, quote);
                        if ioc_tried {
                            // The market was thin a moment ago: all-or-nothing would fail again.
                            request.type_filling = Filling::Mode(OrderFilling::Ioc);
                        }
                    }
                    Next::GiveUp(failure) => {
                        let outcome = LegOutcome::Rejected {
                            failure,
                            retcode: reply.retcode,
                            comment: reply.comment,
                        };
                        return Ok(tries.report(leg, request, outcome));
                    }
                }
            }
            Err(TerminalError::Timeout { .. }) if timeouts + 1 < settings.retry.max_attempts => {
                // The command may have run: the same id again is answered from the terminal's memory
                // if it did, executed if it did not.
                timeouts += 1;
                tracing::warn!(%cmd_id, "no reply in time; sending the same command again");
            }
            Err(TerminalError::InFlight(_)) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => {
                let outcome = LegOutcome::Unknown(e.to_string());
                return Ok(tries.report(leg, request, outcome));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::{command_of, PlanItemId};
    use hedge_center_api::model::CommandId;
    use hedge_domain::{FillingModes, OrderFilling, PositionId, Volume};
    use rust_decimal_macros::dec;

    fn leg(side: Side, close: Option<PositionId>) -> Leg {
        Leg {
            item: PlanItemId(4),
            canonical: "EURUSD".into(),
            symbol: "EURUSD.h".into(),
            side,
            volume: Volume(dec!(0.2)),
            close,
            link: None,
            command: None,
            reduces: close.is_some(),
            leg: 0,
            attempt_base: 0,
        }
    }

    #[test]
    fn linked_and_command_legs_say_so_in_magic_comment_and_command_id() {
        let tag = HedgeTag::new(PlanItemId(4)).unwrap();
        let settings = OrderSettings::default();
        let link = crate::tag::close_link(hedge_domain::OrderTicket(55)).unwrap();
        let mut linked = leg(Side::Buy, None);
        linked.link = Some(link);
        let r = build_request(&linked, &tag, None, &settings, None);
        assert_eq!(r.magic, link);
        assert_eq!(r.comment, "hedge:4");
        assert_eq!(
            crate::tag::item_of(r.magic, &r.comment),
            Some(PlanItemId(4))
        );
        assert_eq!(leg_cmd_id(&linked, &tag, 1).as_str(), "hedge-4-0-1");

        let mut command = leg(Side::Buy, Some(PositionId(77)));
        command.command = Some(CommandId(12));
        command.leg = 2;
        let r = build_request(&command, &tag, None, &settings, None);
        assert_eq!(r.magic, tag.magic);
        assert_eq!(r.comment, "cmd:12");
        assert_eq!(command_of(&r.comment), Some(CommandId(12)));
        assert_eq!(command_of("cmd:12 [tp]"), Some(CommandId(12)));
        assert_eq!(command_of("cmd:"), None);
        assert_eq!(command_of("hedge:12"), None);
        assert_eq!(leg_cmd_id(&command, &tag, 0).as_str(), "cmd-12-2-0");
        // Sent again after a refusal: new ids.
        linked.attempt_base = 5;
        assert_eq!(leg_cmd_id(&linked, &tag, 1).as_str(), "hedge-4-0-6");
    }

    #[test]
    fn requests_carry_the_tag_the_side_and_an_allowed_filling() {
        let tag = HedgeTag::new(PlanItemId(4)).unwrap();
        let mut spec = SymbolSpec::forex("EURUSD.h", 5);
        spec.filling = FillingModes {
            ioc: true,
            ..FillingModes::default()
        };
        let settings = OrderSettings {
            exec_mode: ExecMode::Fixed(OrderFilling::Fok),
            ..OrderSettings::default()
        };
        let quote = Some((Price(dec!(1.10001)), Price(dec!(1.10011))));
        let r = build_request(&leg(Side::Sell, None), &tag, Some(&spec), &settings, quote);
        assert_eq!(r.order_type, OrderType::Sell);
        assert_eq!(r.magic, tag.magic);
        assert_eq!(r.comment, "hedge:4");
        assert_eq!(r.type_filling, Filling::Mode(OrderFilling::Ioc));
        assert_eq!(r.price, Price(dec!(1.10001)));
        assert_eq!(r.position, PositionId(0));

        let r = build_request(
            &leg(Side::Buy, Some(PositionId(77))),
            &tag,
            None,
            &settings,
            quote,
        );
        assert_eq!(r.order_type, OrderType::Buy);
        assert_eq!(r.position, PositionId(77));
        assert_eq!(r.type_filling, Filling::Auto);
        assert_eq!(r.price, Price(dec!(1.10011)));
    }
}
