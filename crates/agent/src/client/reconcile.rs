//! Bringing the tracker in line with the terminal: on every (re)connection and snapshot
//! (`reconcile`, or through the netting book on a netting account), from each `tx` record
//! (`on_tx`), and the terminal history requests that find what happened while the agent was away.

use super::history::{is_exit, observed, read_history};
use super::{ClientAgent, ClientAgentError};
use hedge_agent_runtime::netting::{NettingBook, NettingError};
use hedge_agent_runtime::observed::{CloseDetail, Observed, TimeMs};
use hedge_agent_runtime::valuation;
use hedge_domain::PositionId;
use hedge_protocol::{DealRecord, HistoryRange, OrderRecord, PositionRecord, Tx};
use std::collections::HashMap;
use std::time::Duration;

impl ClientAgent {
    /// Reconciles against the terminal's current state, looking in the history for what may have
    /// been missed since the last durable event.
    pub(super) async fn resync(&mut self) -> Result<(), ClientAgentError> {
        if self.ledger_mode {
            let (positions, time) = self.terminal.with_state(|s| {
                (
                    s.positions.values().cloned().collect::<Vec<_>>(),
                    s.last_time,
                )
            });
            return self.rebuild_and_reconcile(&positions, time).await;
        }
        let (rows, time) = self.terminal.with_state(|s| {
            (
                s.positions.values().map(observed).collect::<Vec<_>>(),
                s.last_time,
            )
        });
        self.reconcile(&rows, time, true).await
    }

    /// Brings the tracker in line with a full list of open positions. `sweep`: also search the
    /// history since the last durable event for positions that opened and closed unseen.
    pub(super) async fn reconcile(
        &mut self,
        rows: &[Observed],
        time: TimeMs,
        sweep: bool,
    ) -> Result<(), ClientAgentError> {
        let missing = self.tracker.missing_from(rows);
        let mut closes = HashMap::new();
        let mut away = Vec::new();
        let since = self.last_seen.filter(|_| sweep);
        if !missing.is_empty() || since.is_some_and(|s| s < time) {
            let oldest_open = missing
                .iter()
                .filter_map(|id| self.tracker.get(*id).map(|p| p.opened))
                .min();
            let from = match (oldest_open, since) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => time,
            };
            match self.history(from - 1000, time.max(from) + 60_000).await {
                Some(deals) => {
                    for d in &deals {
                        self.commissions.record(d);
                    }
                    let present: Vec<PositionId> = rows.iter().map(|r| r.id).collect();
                    let (c, a) = read_history(&deals, since);
                    closes = c;
                    away = a
                        .into_iter()
                        .filter(|w| !present.contains(&w.position.id))
                        .collect();
                }
                None => {
                    if !missing.is_empty() {
                        tracing::warn!(
                            positions = ?missing,
                            "history unavailable; reporting vanished positions as closed without their deal"
                        );
                    }
                }
            }
        }
        let mut events = Vec::new();
        for w in &away {
            events.extend(self.tracker.closed_while_away(w));
        }
        events.extend(self.tracker.reconcile(rows, &closes, time));
        self.commit(events, time)
    }

    /// Netting through the ledger: replays the whole history into a fresh book, then reconciles the
    /// tracker against the book's positions, with closes and missed round trips from the book.
    pub(super) async fn rebuild_and_reconcile(
        &mut self,
        terminal: &[PositionRecord],
        time: TimeMs,
    ) -> Result<(), ClientAgentError> {
        self.book = None;
        let Some((orders, deals)) = self.full_history(0, time + 60_000).await else {
            tracing::warn!(
                "history unavailable; bi-directional positions wait for the next resync"
            );
            return Ok(());
        };
        match NettingBook::replay(self.settings.login, self.margin_mode, &orders, &deals) {
            Ok(book) => {
                tracing::info!(
                    mode = ?book.mode(),
                    deals = deals.len(),
                    positions = book.rows().len(),
                    "ledger rebuilt from the account's history"
                );
                self.book = Some(book);
            }
            Err(e) => {
                tracing::error!(error = %e, "history does not replay; nothing reported until it does");
                return Ok(());
            }
        }
        self.reconcile_ledger_sweep(terminal, time, self.last_seen)
    }

    /// A periodic snapshot on a netting account: the book's positions are the truth; a book that
    /// disagrees with the terminal's net volume is rebuilt.
    pub(super) async fn reconcile_ledger(
        &mut self,
        terminal: &[PositionRecord],
        time: TimeMs,
    ) -> Result<(), ClientAgentError> {
        let consistent = self.book.as_ref().is_some_and(|b| {
            let mut symbols: Vec<&str> = terminal.iter().map(|p| p.symbol.as_str()).collect();
            symbols.extend(self.tracker.positions().map(|p| p.symbol.as_str()));
            symbols
                .iter()
                .all(|s| b.net_volume(s) == valuation::terminal_net(terminal, s))
        });
        if !consistent {
            if self.book.is_some() {
                tracing::warn!("ledger disagrees with the terminal's net positions; rebuilding");
            }
            return self.rebuild_and_reconcile(terminal, time).await;
        }
        self.reconcile_ledger_sweep(terminal, time, None)
    }

    fn reconcile_ledger_sweep(
        &mut self,
        terminal: &[PositionRecord],
        time: TimeMs,
        since: Option<TimeMs>,
    ) -> Result<(), ClientAgentError> {
        let Some(book) = &self.book else {
            return Ok(());
        };
        let rows = book.rows();
        for p in terminal {
            let net = book.net_volume(&p.symbol);
            if net != valuation::terminal_net(terminal, &p.symbol) {
                tracing::warn!(symbol = %p.symbol, ledger = %net, "ledger net volume differs from the terminal's position");
            }
        }
        let missing = self.tracker.missing_from(&rows);
        let tracker = &self.tracker;
        let (closes, away) = book.closes(&missing, since, |id| tracker.was_closed(id));
        let mut events = Vec::new();
        for w in &away {
            events.extend(self.tracker.closed_while_away(w));
        }
        events.extend(self.tracker.reconcile(&rows, &closes, time));
        self.commit(events, time)
    }

    async fn full_history(
        &mut self,
        from: TimeMs,
        to: TimeMs,
    ) -> Option<(Vec<OrderRecord>, Vec<DealRecord>)> {
        self.history_records(from, to).await
    }

    pub(super) async fn history(&mut self, from: TimeMs, to: TimeMs) -> Option<Vec<DealRecord>> {
        self.history_records(from, to).await.map(|(_, d)| d)
    }

    async fn history_records(
        &mut self,
        from: TimeMs,
        to: TimeMs,
    ) -> Option<(Vec<OrderRecord>, Vec<DealRecord>)> {
        let cmd_id = self.next_cmd_id("history");
        let range = HistoryRange {
            from: from.max(0),
            to,
            page_size: None,
            cursor: None,
        };
        match tokio::time::timeout(
            Duration::from_secs(15),
            self.terminal.history(cmd_id.into(), range),
        )
        .await
        {
            Ok(Ok(h)) if h.reply.is_done() => Some((h.orders, h.deals)),
            Ok(Ok(h)) => {
                tracing::warn!(retcode = %h.reply.retcode, comment = %h.reply.comment, "history refused");
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "history request failed");
                None
            }
            Err(_) => {
                tracing::warn!("history request timed out");
                None
            }
        }
    }

    pub(super) fn on_tx(&mut self, tx: &Tx) -> Result<(), ClientAgentError> {
        if self.ledger_mode {
            return self.on_tx_ledger(tx);
        }
        if let Some(d) = &tx.deal_record {
            self.commissions.record(d);
        }
        let Some(p) = &tx.position_record else {
            return Ok(());
        };
        let obs = observed(p);
        // The deal that closed the position, or the exit deal that reduced it (a partial close
        // carries its comment too).
        let close = tx
            .deal_record
            .as_ref()
            .filter(|d| d.position_id == obs.id && (obs.volume.is_zero() || is_exit(d.entry)))
            .map(CloseDetail::from_deal);
        let events = self.tracker.observe(&obs, close);
        if events.is_empty() {
            return Ok(());
        }
        self.commit(events, tx.time)
    }

    /// Netting through the ledger: each live deal becomes the bi-directional positions it touched.
    fn on_tx_ledger(&mut self, tx: &Tx) -> Result<(), ClientAgentError> {
        let Some(book) = &mut self.book else {
            // Not replayed yet: the next snapshot rebuilds from history, which holds this deal.
            return Ok(());
        };
        let mut touched = Vec::new();
        let result = (|| {
            if let Some(o) = &tx.order_record {
                book.apply_order(o)?;
            }
            if let Some(d) = &tx.deal_record {
                touched = book.apply_deal(d)?;
            }
            Ok::<(), NettingError>(())
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "live record does not fit the ledger; rebuilding from history");
            self.book = None;
            self.rebuild_now = true;
            return Ok(());
        }
        let mut events = Vec::new();
        for t in touched {
            events.extend(self.tracker.observe(&t.position, t.close));
        }
        if events.is_empty() {
            return Ok(());
        }
        self.commit(events, tx.time)
    }
}
