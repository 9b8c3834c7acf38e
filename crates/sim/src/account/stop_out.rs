//! Stop-out: the server closes positions when the margin level falls to the account's stop-out
//! level (`ACCOUNT_MARGIN_SO_SO`, in percent).
//!
//! As MT5 does, the position with the largest loss goes first, then the next, until the level is
//! above the stop-out level again or nothing is open. Each close is a market order of the server's
//! (`DEAL_REASON_SO`) whose comment says the level, equity and margin that caused it.

use super::Account;
use hedge_domain::DealReason;
use hedge_protocol::Tx;
use rust_decimal::Decimal;

impl Account {
    /// Closes positions while the margin level is at or below the stop-out level; the
    /// transactions are appended to `txs`. Nothing happens without a stop-out level.
    pub(super) fn stop_out(&mut self, txs: &mut Vec<Tx>) {
        let Some(limit) = self.config.stop_out_level else {
            return;
        };
        loop {
            let margin = self.margin();
            if !margin.is_positive() {
                return;
            }
            let equity = self.equity();
            let level = equity.0 / margin.0 * Decimal::from(100);
            if level > limit {
                return;
            }
            let Some(p) = self
                .positions
                .values()
                .min_by_key(|p| (self.profit_of(p), p.id))
                .cloned()
            else {
                return;
            };
            let Some(price) = self.close_price(&p.symbol, p.side) else {
                // Without a quote nothing can be closed; the next quote tries again.
                return;
            };
            let comment = format!(
                "[so {}%/{}/{}]",
                level.round_dp(2).normalize(),
                equity,
                margin
            )
            .chars()
            .take(super::COMMENT_CHARS)
            .collect();
            self.close_by_server(&p, price, DealReason::So, comment, txs);
            if self.positions.contains_key(&p.id) {
                // The close did not take the whole position: stop rather than loop.
                return;
            }
        }
    }

    /// A deposit or withdrawal followed by the stop-out it may cause (a withdrawal lowers equity):
    /// the balance deal's transaction first, then any stop-out closes.
    pub fn balance_change(&mut self, amount: hedge_domain::Money, comment: &str) -> Vec<Tx> {
        let mut txs = vec![self.balance_operation(amount, comment)];
        self.stop_out(&mut txs);
        txs
    }
}
