//! Queuing the center's records in the outbox: executions once per item, holdings once their deals
//! reached the account's state. What a record says is computed in [`crate::records`].

use super::state::HoldingReadiness;
use super::{Hedger, HedgerError};
use crate::records::HoldingSnapshot;
use crate::tag::PlanItemId;
use hedge_agent_runtime::outbox::{NewItem, OutboxKind};
use hedge_center_api::model::HedgeExecuted;
use hedge_domain::{DealTicket, Price};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

impl Hedger {
    /// Queues the record of an executed item (once per item). Returns whether it queued one.
    pub(super) fn record_executed(
        &mut self,
        item: PlanItemId,
        latency: Option<Duration>,
        requested: Option<Price>,
    ) -> Result<bool, HedgerError> {
        let Some(record) = self.state.execution_record(
            self.opts.login,
            item,
            &self.opts.symbol_map,
            latency,
            requested,
        ) else {
            return Ok(false);
        };
        self.outbox.push(NewItem::json(
            format!("hedge:{}:{}", self.opts.login, item),
            OutboxKind::HedgeExecuted,
            &record,
        )?)?;
        self.state.execution_recorded(item);
        Ok(true)
    }

    /// Records what a symbol holds once the account's state has taken `deals` (the reductions
    /// just filled): the replies come before the deals' transactions, and a holding captured
    /// earlier would still show the volume they took back, so the center would never hear of the
    /// reduction. On a netting account seen through the ledger, the ledger must have them.
    pub(super) fn record_holding_after(
        &mut self,
        account_symbol: &str,
        deals: BTreeSet<DealTicket>,
        since: Instant,
    ) -> Result<(), HedgerError> {
        match self
            .state
            .await_deals(account_symbol, deals, since, since.elapsed())
        {
            HoldingReadiness::Ready => self.record_holding(account_symbol, None),
            HoldingReadiness::GaveUpWaiting => {
                tracing::debug!(
                    symbol = account_symbol,
                    "deal transactions missing; recording the holding as it is"
                );
                self.record_holding(account_symbol, None)
            }
            HoldingReadiness::Waiting => Ok(()),
        }
    }

    /// Canonical symbols with an execution or reduction record still in the outbox, or with a
    /// reduction whose deals have not reached the account's state: until they have, the
    /// positions (or the ledger's hedges) still show what the reduction took back, and a plan
    /// acted on then would close the same hedge again (on a netting account, a linked close of a
    /// hedge already closed opens a reversed position).
    pub(super) fn symbols_being_recorded(&self) -> Result<BTreeSet<String>, HedgerError> {
        let mut due = self.state.due_symbols(&self.opts.symbol_map);
        if self.outbox.pending()? == 0 {
            return Ok(due);
        }
        due.extend(self.outbox.peek(100_000)?.into_iter().filter_map(|i| {
            match OutboxKind::parse(&i.kind) {
                Some(OutboxKind::HedgeExecuted) => serde_json::from_str::<HedgeExecuted>(&i.body)
                    .ok()
                    .map(|h| h.symbol),
                Some(OutboxKind::HedgeHolding) => serde_json::from_str::<HoldingSnapshot>(&i.body)
                    .ok()
                    .map(|h| h.symbol),
                _ => None,
            }
        }));
        Ok(due)
    }

    /// Records the holdings that were waiting for their deals, where the state now has them.
    pub(super) fn flush_holdings(&mut self) -> Result<(), HedgerError> {
        for due in self.state.take_due_holdings() {
            self.record_holding_after(&due.symbol, due.deals, due.since)?;
        }
        Ok(())
    }

    /// Queues what the account now holds for a symbol, so the center's hedges are reduced to it.
    /// `correction` names why a drift was found, for the center's event.
    pub(super) fn record_holding(
        &mut self,
        account_symbol: &str,
        correction: Option<String>,
    ) -> Result<(), HedgerError> {
        let canonical = self
            .opts
            .symbol_map
            .to_canonical(account_symbol)
            .unwrap_or_else(|| account_symbol.to_owned());
        let positions = self.held_positions();
        // Through the ledger a netting account holds one position per hedge, like a hedging one.
        let shared_net = self.state.shared_net();
        let mut holding = HoldingSnapshot::capture(
            &canonical,
            account_symbol,
            shared_net,
            &positions,
            self.now_ms(),
        );
        holding.correction = correction;
        let key = format!(
            "holding:{}:{}:{}",
            self.opts.login,
            canonical,
            serde_json::to_string(&holding.positions)?
        );
        self.outbox
            .push(NewItem::json(key, OutboxKind::HedgeHolding, &holding)?)?;
        Ok(())
    }
}
