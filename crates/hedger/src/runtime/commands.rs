//! Operator commands from the center: closing a hedge, retrying a halted symbol, and the answers.

use super::act::send_legs;
use super::delivery::{all_hedges, CommandAnswer};
use super::{Hedger, HedgerError, HedgerEvent, OrderEvent};
use crate::orders::{LegOutcome, LegReport};
use crate::planner::{HeldPosition, Leg};
use crate::tag::{ItemIdTooLarge, PlanItemId};
use hedge_agent_runtime::outbox::{NewItem, OutboxKind};
use hedge_center_api::client::CenterClient;
use hedge_center_api::model::{Command, CommandId, CommandKind, CommandResult, CommandStatus};
use hedge_domain::{DealTicket, OrderTicket, PositionId, Retcode, Volume};
use std::collections::BTreeSet;
use std::time::Instant;

pub(super) fn done(retcode: Option<Retcode>, message: String) -> CommandResult {
    CommandResult {
        status: CommandStatus::Done,
        retcode,
        message: Some(message),
    }
}

pub(super) fn failed(retcode: Option<Retcode>, message: String) -> CommandResult {
    CommandResult {
        status: CommandStatus::Failed,
        retcode,
        message: Some(message),
    }
}

/// What the orders of a close command did.
#[derive(Default)]
struct CloseOutcome {
    closed: Volume,
    deals: BTreeSet<DealTicket>,
    last_retcode: Option<Retcode>,
    refused: Vec<(Retcode, String)>,
    unknown: bool,
}

impl CloseOutcome {
    /// The command's answer; `None` when an order's outcome is unknown, so the command is tried
    /// again with the same command ids.
    fn answer(&self) -> Option<CommandResult> {
        let closed = self.closed;
        if let Some((retcode, comment)) = self.refused.first() {
            return Some(failed(
                Some(*retcode),
                format!(
                    "{}: {comment} (closed {closed} of the hedge)",
                    retcode.description()
                ),
            ));
        }
        if self.unknown {
            return None;
        }
        Some(done(self.last_retcode, format!("closed {closed}")))
    }
}

impl Hedger {
    /// Carries out the account's pending operator commands, oldest first. A command whose result is
    /// already recorded is skipped; one already carried out on the account is only answered.
    pub(super) async fn run_commands(&mut self) -> Result<(), HedgerError> {
        let Some(center) = self.center.clone() else {
            return Ok(());
        };
        if !self.terminal.is_connected() {
            return Ok(());
        }
        let mut pending = match center.pending_commands(self.opts.login).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "pending commands not available");
                return Ok(());
            }
        };
        pending.sort_by_key(|c| c.id);
        for command in pending {
            if command.hedge_login != self.opts.login
                || command.status != CommandStatus::Pending
                || self.state.command_answered(command.id)
            {
                continue;
            }
            tracing::info!(command = %command.id, kind = command.kind.as_str(), hedge = %command.hedge_id,
                symbol = %command.symbol, actor = %command.actor, "operator command");
            let result = match command.kind {
                CommandKind::CloseHedge => self.close_hedge(&center, &command).await?,
                CommandKind::RetryHedge => Some(self.retry_hedge(&command).await?),
            };
            if let Some(result) = result {
                self.answer(command.id, result)?;
            }
        }
        Ok(())
    }

    /// Queues a command's result for the center (once per command).
    fn answer(&mut self, id: CommandId, result: CommandResult) -> Result<(), HedgerError> {
        tracing::info!(command = %id, status = result.status.as_str(), retcode = ?result.retcode,
            message = ?result.message, "operator command answered");
        self.outbox.push(NewItem::json(
            format!("command:{}:{id}", self.opts.login),
            OutboxKind::CommandResult,
            &CommandAnswer { id, result },
        )?)?;
        self.state.answer_queued(id);
        Ok(())
    }

    /// Closes every position of the hedge: by ticket on a hedging account, by an order linked to
    /// the hedge's opening order on a netting one. `None` when the outcome is unknown (the link
    /// failed): the command stays pending and is tried again with the same command ids.
    async fn close_hedge(
        &mut self,
        center: &CenterClient,
        command: &Command,
    ) -> Result<Option<CommandResult>, HedgerError> {
        let account_symbol = if command.account_symbol.is_empty() {
            self.opts.symbol_map.to_account(&command.symbol)
        } else {
            command.account_symbol.clone()
        };
        if self.state.command_on_account(command.id) {
            // Carried out before a restart: make sure the reduction is recorded, then answer.
            self.record_holding(&account_symbol, None)?;
            return Ok(Some(done(
                None,
                "already carried out on the hedge account".into(),
            )));
        }
        let (item, opening) = match self.hedge_of(center, command).await {
            Ok(found) => found,
            Err(answer) => return Ok(answer),
        };
        let positions: Vec<HeldPosition> = self
            .held_positions()
            .into_iter()
            .filter(|p| {
                p.symbol == account_symbol
                    && p.volume.is_positive()
                    && (opening == Some(p.id) || (item.is_some() && p.item() == item))
            })
            .collect();
        if positions.is_empty() {
            return Ok(Some(done(None, "nothing open for this hedge".into())));
        }
        let legs = match self.close_legs(command, item, &positions) {
            Ok(legs) => legs,
            Err(refused) => return Ok(Some(refused)),
        };
        let started = Instant::now();
        let reports = send_legs(&self.terminal, &self.opts.orders, legs).await;
        let outcome = self.book_closes(command, reports, started);
        if outcome.closed.is_positive() {
            self.record_holding_after(&account_symbol, outcome.deals.clone(), Instant::now())?;
        }
        Ok(outcome.answer())
    }

    /// The hedge's positions: tagged with its plan item, or (no item known) the one the center
    /// recorded for it. `Err` carries the command's answer when they cannot be told.
    async fn hedge_of(
        &self,
        center: &CenterClient,
        command: &Command,
    ) -> Result<(Option<PlanItemId>, Option<PositionId>), Option<CommandResult>> {
        if let Some(item) = command.plan_item {
            return Ok((Some(item), None));
        }
        match all_hedges(center, self.opts.login, Some(command.symbol.clone())).await {
            Ok(hedges) => match hedges.into_iter().find(|h| h.id == command.hedge_id) {
                Some(h) => Ok((
                    Some(h.plan_item_id),
                    Some(if self.state.netting {
                        PositionId(h.order.0)
                    } else {
                        h.position_id
                    }),
                )),
                None => Err(Some(failed(
                    None,
                    format!(
                        "hedge {} is not a hedge of account {}",
                        command.hedge_id, self.opts.login
                    ),
                ))),
            },
            Err(e) => {
                tracing::warn!(error = %e, "hedge record not available; the command waits");
                Err(None)
            }
        }
    }

    /// One closing leg per position of the hedge.
    fn close_legs(
        &self,
        command: &Command,
        item: Option<PlanItemId>,
        positions: &[HeldPosition],
    ) -> Result<Vec<Leg>, CommandResult> {
        let netting = self.state.netting;
        let mut legs = Vec::with_capacity(positions.len());
        for (n, p) in positions.iter().enumerate() {
            // On a netting account only a linked order closes this hedge and no other; a ticket
            // the link format cannot carry is refused rather than closed by a plain order.
            let link = if netting {
                match crate::tag::close_link(OrderTicket(p.id.0)) {
                    Ok(m) => Some(m),
                    Err(e) => return Err(failed(None, format!("cannot link the close: {e}"))),
                }
            } else {
                None
            };
            legs.push(Leg {
                item: p.item().or(item).unwrap_or(PlanItemId(0)),
                canonical: command.symbol.clone(),
                symbol: p.symbol.clone(),
                side: p.side.opposite(),
                volume: p.volume,
                close: (!netting).then_some(p.id),
                link,
                command: Some(command.id),
                reduces: true,
                leg: u32::try_from(n).unwrap_or(u32::MAX),
                attempt_base: 0,
            });
        }
        Ok(legs)
    }

    /// Books the replies to a close command's orders and tells the timeline.
    fn book_closes(
        &mut self,
        command: &Command,
        reports: Vec<Result<LegReport, ItemIdTooLarge>>,
        started: Instant,
    ) -> CloseOutcome {
        let mut outcome = CloseOutcome::default();
        let total = reports.len();
        for report in reports.into_iter().flatten() {
            let mut event = OrderEvent::sent(&report);
            let sent_side = event.side;
            match &report.outcome {
                LegOutcome::Filled { reply, fill } => {
                    outcome.closed += reply.volume;
                    outcome.deals.insert(reply.deal);
                    outcome.last_retcode = Some(reply.retcode);
                    event.filled = reply.volume;
                    event.price = Some(reply.price);
                    event.outcome = "filled".into();
                    if let Some(f) = fill.clone() {
                        self.state.book.add_fill(f);
                    }
                    self.state.command_carried_out(command.id);
                    tracing::info!(command = %command.id, symbol = %report.leg.symbol, side = %sent_side,
                        volume = %reply.volume, price = %reply.price, "hedge closed by operator command");
                }
                LegOutcome::Rejected {
                    retcode, comment, ..
                } => {
                    event.outcome = "rejected".into();
                    outcome.refused.push((*retcode, comment.clone()));
                }
                LegOutcome::Unknown(why) => {
                    event.outcome = format!("unknown: {why}");
                    outcome.unknown = true;
                }
            }
            self.emit(HedgerEvent::Order(event));
        }
        self.emit(HedgerEvent::Batch {
            reason: format!("command {}", command.id),
            orders: total,
            filled: usize::from(outcome.closed.is_positive()),
            elapsed_us: started.elapsed().as_micros() as u64,
        });
        outcome
    }

    /// Resets the symbol's breaker and acts on the current plan for that symbol.
    async fn retry_hedge(&mut self, command: &Command) -> Result<CommandResult, HedgerError> {
        let was_open = self.breakers.is_open(&command.symbol);
        self.breakers.reset(&command.symbol);
        if was_open {
            self.send_status(
                Some(format!("{} resumed by operator command", command.symbol)),
                false,
            );
        }
        if !self.terminal.is_connected() {
            return Ok(done(
                None,
                "breaker reset; the terminal is not connected".into(),
            ));
        }
        let summary = self
            .act_on("retry", Instant::now(), Some(&command.symbol))
            .await?;
        Ok(match summary.rejected.first() {
            Some((retcode, comment)) => failed(
                Some(*retcode),
                format!("{}: {comment}", retcode.description()),
            ),
            None => done(
                None,
                format!("breaker reset; {} order(s) filled", summary.filled),
            ),
        })
    }
}
