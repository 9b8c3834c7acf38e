//! The center's open hedges compared with the account, and whether the account takes orders.

use super::delivery::open_hedges;
use super::{Hedger, HedgerError};
use crate::records::{reduce_targets, HoldingSnapshot};
use hedge_domain::Volume;
use std::collections::BTreeSet;

impl Hedger {
    /// Why the account takes no orders from the hedger at all, as the terminal said in `hello`.
    pub(super) fn trading_refused(&self) -> Option<&'static str> {
        let hello = self.terminal.hello()?;
        if !hello.account_trade_allowed {
            Some("the account may not trade (an investor login?)")
        } else if !hello.trade_expert {
            Some("the trade server refuses orders from Expert Advisors on this account")
        } else if !hello.trade_allowed {
            Some("trading is disabled in the terminal (the Algo Trading button)")
        } else {
            None
        }
    }

    /// Compares the center's open hedges with what the account holds and queues the corrections:
    /// the account is the truth. Symbols whose records are still on their way, or whose deals
    /// have not reached the account's state yet, are left for the next comparison, so a record in
    /// flight is never mistaken for a drift. Returns the corrections queued.
    pub async fn reconcile(&mut self, why: &str) -> Result<usize, HedgerError> {
        let Some(center) = self.center.clone() else {
            return Ok(0);
        };
        if !self.terminal.is_connected() || self.state.ledger_stale {
            return Ok(0);
        }
        // Executed hedges the center never heard of (a reply lost, the fill seen as a `tx`).
        let mut corrections = 0;
        for item in self.state.unrecorded_items() {
            if self.record_executed(item, None, None)? {
                corrections += 1;
                tracing::warn!(item = %item, why, "correction: hedge on the account the center did not hold; recorded it");
            }
        }
        let hedges = match open_hedges(&center, self.opts.login).await {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(error = %e, "center unreachable; comparison skipped");
                return Ok(corrections);
            }
        };
        // Read after the fetch: a record the sender delivered meanwhile is in the fetched list.
        let busy = self.symbols_being_recorded()?;
        let symbols: BTreeSet<String> = hedges.iter().map(|h| h.symbol.clone()).collect();
        let positions = self.held_positions();
        let shared_net = self.state.shared_net();
        for canonical in symbols.difference(&busy) {
            let account_symbol = hedges
                .iter()
                .find(|h| &h.symbol == canonical && !h.account_symbol.is_empty())
                .map(|h| h.account_symbol.clone())
                .unwrap_or_else(|| self.opts.symbol_map.to_account(canonical));
            let holding = HoldingSnapshot::capture(
                canonical,
                &account_symbol,
                shared_net,
                &positions,
                self.now_ms(),
            );
            let targets = reduce_targets(&hedges, &holding);
            if targets.is_empty() {
                continue;
            }
            let found = targets
                .iter()
                .map(|(id, keep)| {
                    let had = hedges
                        .iter()
                        .find(|h| h.id == *id)
                        .map(|h| h.open_volume)
                        .unwrap_or(Volume::ZERO);
                    format!("hedge #{id} open {had} in the center, {keep} on the account")
                })
                .collect::<Vec<_>>()
                .join("; ");
            tracing::warn!(symbol = %canonical, why, %found, "correction: the center's hedges differ from the account");
            self.record_holding(&account_symbol, Some(found))?;
            corrections += targets.len();
        }
        self.state.corrections += corrections as u64;
        Ok(corrections)
    }
}
