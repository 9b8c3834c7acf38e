//! Valuing the account for the status heartbeat: the account block, the marks of the open
//! positions (the ledger's on a netting account, with fresh quotes) and the netting reconciliation.

use super::ClientAgent;
use hedge_agent_runtime::clock::now_ms;
use hedge_agent_runtime::netting::NettingBook;
use hedge_agent_runtime::valuation::{self, Valuation};
use hedge_domain::PositionId;
use hedge_protocol::{AccountInfo, PositionRecord, SymbolInfo};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

impl ClientAgent {
    /// Values the account for the status heartbeat: the account block, the marks of the open
    /// positions (the ledger's on a netting account) and the reconciliation.
    pub(super) async fn value(&mut self, positions: &[PositionRecord], account: &AccountInfo) {
        let now = now_ms();
        let (marks, reconciliation) = if self.ledger_mode {
            let Some(symbols) = self.book.as_ref().map(NettingBook::symbols) else {
                self.status.set_valuation(Valuation {
                    account: Some(valuation::account_money(account)),
                    marks: Vec::new(),
                    reconciliation: Some(valuation::ledger_unavailable(now)),
                });
                return;
            };
            let quotes = self.quotes(&symbols).await;
            let Some(book) = &self.book else { return };
            let marks = valuation::ledger_marks(
                book,
                |symbol, side| {
                    let q = quotes.get(symbol)?;
                    Some(valuation::close_price(side, q.bid?, q.ask?))
                },
                |symbol| quotes.get(symbol).map(|q| q.spec.clone()),
            );
            let reconciliation = valuation::reconcile_netting(
                symbols.iter().map(String::as_str),
                |s| book.net_volume(s),
                positions,
                now,
            );
            (marks, reconciliation)
        } else {
            let open: BTreeSet<PositionId> = positions.iter().map(|p| p.identifier).collect();
            self.commissions.retain_open(&open);
            self.learn_commissions(positions).await;
            (
                valuation::terminal_marks(positions, &self.commissions),
                valuation::reconciled(now),
            )
        };
        self.status.set_valuation(Valuation {
            account: Some(valuation::account_money(account)),
            marks,
            reconciliation: Some(reconciliation),
        });
    }

    /// Reads the deals of open positions whose commission is not known yet (opened before this
    /// agent started) from the terminal's history.
    async fn learn_commissions(&mut self, positions: &[PositionRecord]) {
        let unknown: Vec<&PositionRecord> = positions
            .iter()
            .filter(|p| !self.commissions.knows(p.identifier))
            .collect();
        let Some(from) = unknown.iter().map(|p| p.time).min() else {
            return;
        };
        let ids: Vec<PositionId> = unknown.iter().map(|p| p.identifier).collect();
        let to = self.terminal.with_state(|s| s.last_time).max(from) + 60_000;
        if let Some(deals) = self.history(from - 1000, to).await {
            for d in &deals {
                self.commissions.record(d);
            }
        }
        // Asked once: a position the history does not show keeps a commission of 0.
        for id in ids {
            self.commissions.mark_known(id);
        }
    }

    /// Current quotes and specs of `symbols`, fresh from the terminal (the cached quote when the
    /// terminal does not answer).
    async fn quotes(&mut self, symbols: &[String]) -> HashMap<String, SymbolInfo> {
        let mut out = HashMap::new();
        for symbol in symbols {
            let cmd_id = self.next_cmd_id("quote");
            let fresh = match tokio::time::timeout(
                Duration::from_secs(2),
                self.terminal.symbol_info(cmd_id.into(), symbol.clone()),
            )
            .await
            {
                Ok(Ok(reply)) if reply.is_done() => reply.symbol,
                _ => None,
            };
            if let Some(info) = fresh.or_else(|| self.terminal.symbol(symbol)) {
                out.insert(symbol.clone(), info);
            }
        }
        out
    }
}
