//! The hedger's status heartbeat to the center.

use super::Hedger;
use hedge_agent_runtime::valuation;
use hedge_center_api::model::{AccountStatus, BreakerState};
use hedge_domain::CmdId;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

impl Hedger {
    /// The hedger's status for the center's dashboard: breakers, the account's money and the marks
    /// of its open positions, so the dashboard can show each hedge's P/L. `refresh` asks the
    /// terminal for a fresh snapshot first (current prices and profit), off the hedger's loop so
    /// the wait never delays an order.
    pub(super) fn send_status(&mut self, message: Option<String>, refresh: bool) {
        let Some(center) = self.center.clone() else {
            return;
        };
        let mut breakers = BTreeMap::new();
        for symbol in self.breakers.halted().keys() {
            breakers.insert(symbol.clone(), BreakerState::Open);
        }
        let open: BTreeSet<hedge_domain::PositionId> = self
            .terminal
            .with_state(|s| s.positions.keys().copied().collect());
        self.state.commissions.retain_open(&open);
        let commissions = self.state.commissions.clone();
        // On a netting account the terminal's one position per symbol holds every hedge of that
        // symbol: its mark is no hedge's own, so none is sent.
        let netting = self.state.netting;
        let (dead_letters, dead_letter_reason) =
            self.outbox.dead_letter_summary().unwrap_or((0, None));
        let base = AccountStatus {
            outbox_pending: self.outbox.pending().unwrap_or(0),
            dead_letters,
            dead_letter_reason,
            breakers,
            message,
            pretrade_refusals: self.refusals_status(),
            ..AccountStatus::default()
        };
        let terminal = self.terminal.clone();
        let login = self.opts.login;
        let cmd_id = format!("hedger-status-{login}-{}", self.now_ms());
        tokio::spawn(async move {
            if refresh && terminal.is_connected() {
                let before = terminal.with_state(|s| s.last_time);
                let asked = tokio::time::timeout(
                    Duration::from_secs(2),
                    terminal.request_snapshot(CmdId(cmd_id)),
                )
                .await;
                if matches!(asked, Ok(Ok(ref r)) if r.is_done()) {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                    while terminal.with_state(|s| s.last_time) == before
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            let status = terminal.with_state(|s| {
                let positions: Vec<_> = s.positions.values().cloned().collect();
                AccountStatus {
                    connected: s.connected,
                    last_event_ms: Some(s.last_time),
                    account: s.account.as_ref().map(valuation::account_money),
                    marks: if netting {
                        Vec::new()
                    } else {
                        valuation::terminal_marks(&positions, &commissions)
                    },
                    ..base
                }
            });
            if let Err(e) = center.heartbeat(login, &status).await {
                tracing::debug!(error = %e, "status not sent");
            }
        });
    }
}
