//! Rebuilding what was done before acting: from the account's history, the center's records and
//! the outbox, at start-up and after every reconnect of the terminal.

use super::delivery::{all_hedges, CommandAnswer};
use super::{Hedger, HedgerError, HedgerEvent};
use crate::account_view::watched_positions;
use crate::netting_hedges::HedgeLedger;
use hedge_agent_runtime::outbox::OutboxKind;
use hedge_center_api::model::{HedgeExecuted, HedgeStatus};
use hedge_domain::CmdId;
use hedge_protocol::{History, HistoryRange};

impl Hedger {
    /// Rebuilds what was done from the account, the center and the outbox; records executed hedges
    /// the center has not seen. Called at start-up and after every reconnect of the terminal.
    pub async fn rebuild(&mut self) -> Result<(), HedgerError> {
        let netting = self
            .terminal
            .hello()
            .map(|h| h.margin_mode.is_netting())
            .unwrap_or(false);
        self.state.start_rebuild(netting);
        self.generation = self.terminal.with_state(|s| s.generation);
        self.read_history().await;
        self.read_center_records().await;
        self.read_outbox()?;
        let recorded = self.record_missing()?;
        self.watched = self
            .terminal
            .with_state(|s| watched_positions(s.positions.values()));
        let fills = self.state.book.all_fills().count();
        tracing::info!(login = %self.opts.login, netting = self.state.netting, fills, recorded, "hedger state rebuilt");
        self.emit(HedgerEvent::Ready {
            login: self.opts.login,
            netting: self.state.netting,
            fills,
            recorded,
        });
        Ok(())
    }

    /// 1. What the account shows: every hedge-tagged deal of the look-back window.
    async fn read_history(&mut self) {
        let now = self.now_ms();
        // The ledger needs the whole history to know which hedges are open; elsewhere the
        // look-back window is enough to find the hedge deals.
        let from = if self.state.netting {
            0
        } else {
            now - i64::from(self.opts.history_days) * 86_400_000
        };
        let history = self
            .terminal
            .history(
                CmdId(format!("hedger-history-{}-{now}", self.generation)),
                HistoryRange {
                    from,
                    to: now + 86_400_000,
                    page_size: None,
                    cursor: None,
                },
            )
            .await;
        match history {
            Ok(h) => {
                for deal in &h.deals {
                    self.state.take_deal(deal);
                }
                if self.state.netting {
                    self.replay_ledger(&h);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "account history unavailable; relying on the center's records");
                if self.state.netting {
                    self.state.ledger = None;
                }
            }
        }
    }

    /// Netting accounts: the hedges replayed from the whole history.
    fn replay_ledger(&mut self, h: &History) {
        let mode = self
            .terminal
            .hello()
            .map(|h| h.margin_mode)
            .unwrap_or(hedge_domain::AccountMarginMode::RetailNetting);
        match HedgeLedger::replay(self.opts.login, mode, &h.orders, &h.deals) {
            Ok(ledger) => {
                tracing::info!(
                    hedges = ledger.hedges().len(),
                    deals = h.deals.len(),
                    "hedges rebuilt from the account's history through the ledger"
                );
                self.state.ledger = Some(ledger);
            }
            Err(e) => {
                tracing::error!(error = %e, "the account's history does not replay; reducing against the net position");
                self.state.ledger = None;
            }
        }
    }

    /// 2. What the center recorded.
    async fn read_center_records(&mut self) {
        let Some(center) = &self.center else {
            return;
        };
        match all_hedges(center, self.opts.login, None).await {
            Ok(hedges) => {
                for h in hedges.iter().filter(|h| h.status != HedgeStatus::Failed) {
                    self.state
                        .recorded_elsewhere(h.plan_item_id, h.volume, h.deal);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "center unreachable; rebuilding from the account and the outbox")
            }
        }
    }

    /// 3. What waits in the outbox.
    fn read_outbox(&mut self) -> Result<(), HedgerError> {
        for queued in self.outbox.peek(100_000)? {
            if queued.kind == OutboxKind::CommandResult {
                if let Ok(answer) = serde_json::from_str::<CommandAnswer>(&queued.body) {
                    self.state.answer_queued(answer.id);
                }
            }
            if queued.kind == OutboxKind::HedgeExecuted {
                if let Ok(rec) = serde_json::from_str::<HedgeExecuted>(&queued.body) {
                    self.state
                        .recorded_elsewhere(rec.plan_item_id, rec.volume, rec.deal);
                }
            }
        }
        Ok(())
    }

    /// 4. Executed but unrecorded: record now, before acting. Returns the executions recorded.
    fn record_missing(&mut self) -> Result<usize, HedgerError> {
        let mut recorded = 0;
        for item in self.state.unrecorded_items() {
            if self.record_executed(item, None, None)? {
                recorded += 1;
                tracing::warn!(item = %item, "hedge found on the account but not in the center; recorded it");
            }
        }
        for symbol in self.state.unrecorded_reductions() {
            self.record_holding(&symbol, None)?;
        }
        self.state.all_fills_recorded();
        // A reduction whose deal never reached the ledger live is in the history just read (or
        // it did not happen); either way the holding is current now.
        for due in self.state.take_due_holdings() {
            self.record_holding(&due.symbol, None)?;
        }
        Ok(recorded)
    }
}
