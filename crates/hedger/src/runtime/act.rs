//! Acting on the held plan: which legs to send now, sending them all at once, and booking the
//! replies.

use super::{Hedger, HedgerError, HedgerEvent, Mode, OrderEvent};
use crate::account_view::Trigger;
use crate::orders::{execute_leg, LegOutcome, LegReport, OrderSettings};
use crate::planner::{self, AccountView, Leg, PlanOrder};
use crate::probe::Stage;
use crate::retry::Failure;
use crate::tag::{ItemIdTooLarge, PlanItemId};
use hedge_agent_runtime::outbox::{NewItem, OutboxKind};
use hedge_center_api::model::HedgeFailed;
use hedge_domain::{DealTicket, Price, Retcode};
use hedge_protocol::Terminal;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// What one reaction did.
#[derive(Debug, Default)]
pub(super) struct ActSummary {
    pub(super) filled: usize,
    /// Legs given up, with the last retcode and the server's comment.
    pub(super) rejected: Vec<(Retcode, String)>,
}

/// The replies of one batch, booked.
#[derive(Default)]
struct Booked {
    filled: usize,
    rejected: Vec<(Retcode, String)>,
    /// Items opened, with the first leg's latency and requested price.
    opened: BTreeMap<PlanItemId, (Duration, Price)>,
    /// Account symbols reduced, with the deals that reduced them.
    reduced: BTreeMap<String, BTreeSet<DealTicket>>,
}

/// Sends every leg at once: each writes its command as soon as it is polled, so the orders are on
/// the wire back to back and their round trips overlap.
pub(super) async fn send_legs(
    terminal: &Terminal,
    settings: &OrderSettings,
    legs: Vec<Leg>,
) -> Vec<Result<LegReport, ItemIdTooLarge>> {
    futures::future::join_all(
        legs.into_iter()
            .map(|leg| execute_leg(terminal, leg, settings)),
    )
    .await
}

impl Hedger {
    pub(super) fn plan_items(&self) -> Vec<PlanOrder> {
        self.plan
            .items()
            .into_iter()
            .filter(|i| self.opts.symbols.is_empty() || self.opts.symbols.contains(&i.symbol))
            .map(|i| PlanOrder {
                id: i.id,
                symbol: i.symbol,
                side: i.side,
                volume: i.volume,
            })
            .collect()
    }

    /// Plans and sends everything the held plan asks for, all orders at once.
    pub async fn act(&mut self, reason: &str, started: Instant) -> Result<usize, HedgerError> {
        Ok(self.act_on(reason, started, None).await?.filled)
    }

    /// Plans and sends what the held plan asks for, for one canonical symbol or all of them.
    pub(super) async fn act_on(
        &mut self,
        reason: &str,
        started: Instant,
        only: Option<&str>,
    ) -> Result<ActSummary, HedgerError> {
        let legs = self.decide(reason, only)?;
        if legs.is_empty() {
            if self.settle_refusals(&Default::default(), only) {
                self.send_status(None, false);
            }
            return Ok(ActSummary::default());
        }
        if let Some(why) = self.trading_refused() {
            // Every order would come back 10026 and open the breakers; the plan waits instead,
            // and the trader reads why on the dashboard.
            tracing::warn!(reason = why, orders = legs.len(), "hedge orders not sent");
            self.send_status(Some(format!("hedge orders not sent: {why}")), false);
            return Ok(ActSummary::default());
        }
        // Opening legs are checked with the terminal and the account's limits; what is refused
        // is not sent and is reported instead.
        let legs = self.screen(legs, only).await;
        if legs.is_empty() {
            return Ok(ActSummary::default());
        }
        for leg in &legs {
            self.state.book.begin(leg.item, leg.volume);
        }
        let written = Instant::now();
        for leg in &legs {
            self.plan.mark(Stage::OrderWritten, leg.item.0, written);
        }
        let reports = send_legs(&self.terminal, &self.opts.orders, legs).await;
        let elapsed = started.elapsed();
        let total = reports.len();
        let booked = self.book_reports(reports, written)?;
        for (item, (latency, requested)) in booked.opened {
            self.record_executed(item, Some(latency), Some(requested))?;
        }
        for (symbol, deals) in booked.reduced {
            self.record_holding_after(&symbol, deals, Instant::now())?;
        }
        let filled = booked.filled;
        tracing::info!(
            reason,
            orders = total,
            filled,
            elapsed_us = elapsed.as_micros() as u64,
            "hedge orders done"
        );
        self.emit(HedgerEvent::Batch {
            reason: reason.to_owned(),
            orders: total,
            filled,
            elapsed_us: elapsed.as_micros() as u64,
        });
        Ok(ActSummary {
            filled,
            rejected: booked.rejected,
        })
    }

    /// The legs the held plan asks for now, for one canonical symbol or all of them.
    fn decide(&mut self, reason: &str, only: Option<&str>) -> Result<Vec<Leg>, HedgerError> {
        let items: Vec<PlanOrder> = self
            .plan_items()
            .into_iter()
            .filter(|i| only.is_none_or(|s| s == i.symbol))
            .collect();
        let specs = self.specs();
        let positions = self.held_positions_against(&items);
        let mut decision = {
            let view = AccountView {
                netting: self.state.netting,
                positions: &positions,
                symbols: &self.opts.symbol_map,
                specs: &specs,
            };
            planner::plan(&items, &view, &self.state.book, &self.breakers.halted())
        };
        if self.opts.mode == Mode::Mirror && reason != "retry" && !decision.legs.is_empty() {
            // A plan computed before a trade's records were stored asks for that trade again: an
            // open would be hedged twice, a reduction reduced twice. Symbols traded since the
            // held plan, or whose records are still on their way, wait for a plan fetched after
            // them.
            let recording = self.state.held_back(self.symbols_being_recorded()?);
            if !recording.is_empty() {
                decision.legs.retain(|l| !recording.contains(&l.canonical));
                tracing::debug!(symbols = ?recording, "waiting for the trades to be recorded");
            }
        }
        // The periodic retry sees the same skipped items every second: said once, when the plan
        // or the account changed, is enough.
        let periodic = reason == "periodic";
        for (item, why) in &decision.skipped {
            if matches!(why, planner::SkipReason::Done) {
                continue;
            }
            if periodic {
                tracing::debug!(item = %item, reason = %why, "plan item not executed");
            } else {
                tracing::warn!(item = %item, reason = %why, "plan item not executed");
            }
        }
        Ok(decision.legs)
    }

    /// Books the replies of one batch sent at `written`.
    fn book_reports(
        &mut self,
        reports: Vec<Result<LegReport, ItemIdTooLarge>>,
        written: Instant,
    ) -> Result<Booked, HedgerError> {
        let mut booked = Booked::default();
        for report in reports.into_iter().flatten() {
            if let LegOutcome::Rejected {
                retcode, comment, ..
            } = &report.outcome
            {
                booked.rejected.push((*retcode, comment.clone()));
                self.state.book.gave_up(report.leg.item, report.attempts);
                self.pretrade.rejected(&report.leg.symbol);
            }
            self.plan.mark(
                Stage::OrderAnswered,
                report.leg.item.0,
                written + report.latency,
            );
            self.state.book.end(report.leg.item, report.leg.volume);
            if !self.handle_report(&report)? {
                continue;
            }
            booked.filled += 1;
            if self.opts.mode == Mode::Mirror {
                self.state.traded(&report.leg.canonical);
            }
            if report.leg.reduces {
                let deals = booked.reduced.entry(report.leg.symbol.clone()).or_default();
                if let LegOutcome::Filled { reply, .. } = &report.outcome {
                    deals.insert(reply.deal);
                }
            } else {
                booked
                    .opened
                    .entry(report.leg.item)
                    .or_insert((report.latency, report.requested_price));
            }
        }
        Ok(booked)
    }

    /// Books one leg's outcome; true when it filled.
    fn handle_report(&mut self, report: &LegReport) -> Result<bool, HedgerError> {
        let mut event = OrderEvent::sent(report);
        let sent_side = event.side;
        let filled = match &report.outcome {
            LegOutcome::Filled { reply, fill } => {
                self.breakers.success(&report.leg.canonical);
                event.filled = reply.volume;
                event.price = Some(reply.price);
                event.outcome = "filled".into();
                tracing::info!(
                    item = %report.leg.item, symbol = %report.leg.symbol, side = %sent_side,
                    volume = %report.leg.volume, filled = %reply.volume, price = %reply.price,
                    closes = ?report.leg.close, retcode = %reply.retcode, attempts = report.attempts,
                    latency_us = report.latency.as_micros() as u64, "hedge order filled"
                );
                if let Some(f) = fill.clone() {
                    self.state.book.add_fill(f);
                }
                true
            }
            LegOutcome::Rejected {
                failure,
                retcode,
                comment,
            } => {
                event.outcome = match failure {
                    Failure::Fatal => "rejected".into(),
                    Failure::RetriesExhausted => "retries exhausted".into(),
                };
                tracing::warn!(
                    item = %report.leg.item, symbol = %report.leg.symbol, side = %sent_side,
                    volume = %report.leg.volume, retcode = %retcode, attempts = report.attempts,
                    %comment, "hedge order given up"
                );
                self.outbox.push(NewItem::json(
                    format!(
                        "hedge-failed:{}:{}:{}:{}",
                        self.opts.login, report.leg.item, report.leg.leg, report.attempts
                    ),
                    OutboxKind::HedgeFailed,
                    &HedgeFailed {
                        plan_item_id: report.leg.item,
                        hedge_login: self.opts.login,
                        symbol: report.leg.canonical.clone(),
                        side: sent_side,
                        volume: report.leg.volume,
                        retcode: *retcode,
                        message: format!("{}: {comment}", retcode.description()),
                        time_ms: self.now_ms(),
                    },
                )?)?;
                if let Some(trip) = self.breakers.failure(&report.leg.canonical, *retcode) {
                    tracing::error!(symbol = %report.leg.canonical, reason = %trip.reason, "circuit breaker open: symbol halted");
                    self.emit(HedgerEvent::Breaker {
                        symbol: report.leg.canonical.clone(),
                        reason: trip.reason.clone(),
                    });
                    self.send_status(
                        Some(format!("{} halted: {}", report.leg.canonical, trip.reason)),
                        false,
                    );
                }
                false
            }
            LegOutcome::Unknown(why) => {
                event.outcome = format!("unknown: {why}");
                tracing::warn!(item = %report.leg.item, symbol = %report.leg.symbol, %why,
                    "hedge order outcome unknown; the account will tell after the next snapshot");
                false
            }
        };
        self.emit(HedgerEvent::Order(event));
        Ok(filled)
    }

    /// Acts on what was deferred once the trades are recorded, with a plan fetched after them.
    pub(super) async fn act_deferred(&mut self) -> Result<(), HedgerError> {
        self.state.deferred_fetch_failed = false;
        if !self.symbols_being_recorded()?.is_empty() {
            return Ok(());
        }
        let Some(center) = self.center.clone() else {
            self.state.deferred = false;
            return Ok(());
        };
        match center.plan(self.opts.login).await {
            Ok(plan) => {
                self.state.plan_after_records();
                self.plan.set(plan);
                if self.terminal.is_connected() {
                    self.act("plan after records", Instant::now()).await?;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "plan not available; trying again");
                self.state.deferred_fetch_failed = true;
            }
        }
        Ok(())
    }

    /// Handles a trigger; true when the hedger should stop (`--once`).
    pub(super) async fn on_trigger(
        &mut self,
        trigger: Trigger,
        started: Instant,
    ) -> Result<bool, HedgerError> {
        tracing::info!(position = %trigger.position, symbol = %trigger.symbol, how = trigger.how, "trigger: own position closed");
        self.emit(HedgerEvent::Trigger {
            position: trigger.position.0,
            symbol: trigger.symbol.clone(),
            how: trigger.how.to_owned(),
        });
        self.act("trigger", started).await?;
        if self.opts.once {
            tracing::info!("--once: trigger handled, stopping");
            self.emit(HedgerEvent::Finished);
            return Ok(true);
        }
        Ok(false)
    }
}
