//! Stop-out: the server closes positions when the margin level falls to the account's stop-out
//! level (`ACCOUNT_MARGIN_SO_SO`, in percent).
//!
//! As MT5 does, the position with the largest loss goes first, then the next, until the level is
//! above the stop-out level again or nothing is open. Each close is a market order of the server's
//! (`DEAL_REASON_SO`) whose comment says the level, equity and margin that caused it.

use super::{fill_order_fields, Account};
use hedge_domain::{
    DealReason, OrderFilling, OrderState, OrderTime, OrderType, PositionId, Price,
    TradeTransactionType, Volume,
};
use hedge_protocol::{OrderRecord, Tx};
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
            let ticket = self.new_order();
            let mut record = OrderRecord {
                ticket,
                symbol: p.symbol.clone(),
                order_type: OrderType::market(p.side.opposite()),
                state: OrderState::Started,
                time_setup: self.now,
                time_done: 0,
                type_filling: OrderFilling::Fok,
                type_time: OrderTime::Gtc,
                expiration: 0,
                volume_initial: p.volume,
                volume_current: p.volume,
                price_open: price,
                price_current: price,
                price_stoplimit: Price::ZERO,
                sl: Price::ZERO,
                tp: Price::ZERO,
                magic: p.magic,
                position_id: p.id,
                position_by_id: PositionId(0),
                reason: DealReason::So.code(),
                comment: format!(
                    "[so {}%/{}/{}]",
                    level.round_dp(2).normalize(),
                    equity,
                    margin
                )
                .chars()
                .take(super::COMMENT_CHARS)
                .collect(),
            };
            let mut add = Tx::new(self.now, TradeTransactionType::OrderAdd);
            fill_order_fields(&mut add, &record);
            add.order_record = Some(record.clone());
            txs.push(add);
            let symbol = p.symbol.clone();
            txs.extend(self.apply_deal(
                &symbol,
                p.side.opposite(),
                p.volume,
                price,
                ticket,
                p.id,
                p.magic,
                &record.comment,
                DealReason::So,
                Price::ZERO,
                Price::ZERO,
            ));
            record.state = OrderState::Filled;
            record.volume_current = Volume::ZERO;
            record.time_done = self.now;
            let mut del = Tx::new(self.now, TradeTransactionType::OrderDelete);
            fill_order_fields(&mut del, &record);
            del.order_record = Some(record.clone());
            txs.push(del);
            let mut hist = Tx::new(self.now, TradeTransactionType::HistoryAdd);
            fill_order_fields(&mut hist, &record);
            hist.order_record = Some(record.clone());
            txs.push(hist);
            self.history_orders.push(record);
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
