//! Deals and positions: MT5's netting and hedging semantics in `apply_deal` (in, out, in/out
//! reversal, close-by) and the margin a deal would add.

use super::*;

impl Account {
    /// Margin the deal would add (0 when it only reduces exposure).
    pub(super) fn added_margin(&self, symbol: &str, side: Side, volume: Volume, close: PositionId) -> Money {
        if self.config.mode.is_netting() {
            let existing = self.positions.values().find(|p| p.symbol == symbol);
            match existing {
                Some(p) if p.side != side => {
                    let extra = volume - p.volume;
                    if extra.is_positive() {
                        self.margin_for(symbol, extra)
                    } else {
                        Money::ZERO
                    }
                }
                _ => self.margin_for(symbol, volume),
            }
        } else if close.0 != 0 {
            Money::ZERO
        } else {
            self.margin_for(symbol, volume)
        }
    }

    /// Books one deal and moves positions as MT5 does for the account's mode. Returns `DEAL_ADD`
    /// (with the deal and the position after the change).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_deal(
        &mut self,
        symbol: &str,
        side: Side,
        volume: Volume,
        price: Price,
        order: OrderTicket,
        close: PositionId,
        magic: Magic,
        comment: &str,
        reason: DealReason,
        sl: Price,
        tp: Price,
    ) -> Vec<Tx> {
        let now = self.now;
        let digits = self.symbols.get(symbol).map(|s| s.spec.digits).unwrap_or(5);
        let (entry, position_id, profit, after) = if self.config.mode.is_netting() {
            let existing = self
                .positions
                .values()
                .find(|p| p.symbol == symbol)
                .cloned();
            match existing {
                None => {
                    let p = self.open_position(
                        order, symbol, side, volume, price, magic, comment, reason, sl, tp,
                    );
                    (DealEntry::In, p.id, Money::ZERO, p)
                }
                Some(mut p) if p.side == side => {
                    let total = p.volume + volume;
                    let avg = (p.price_open.0 * p.volume.0 + price.0 * volume.0) / total.0;
                    p.price_open = Price(avg.round_dp(digits + 3).normalize());
                    p.volume = total;
                    p.time_update = now;
                    self.put_position(p.clone());
                    (DealEntry::In, p.id, Money::ZERO, p)
                }
                Some(mut p) => {
                    if volume < p.volume {
                        let profit = self.profit(symbol, p.side, volume, p.price_open, price);
                        p.volume -= volume;
                        p.time_update = now;
                        self.put_position(p.clone());
                        (DealEntry::Out, p.id, profit, p)
                    } else if volume == p.volume {
                        let profit = self.profit(symbol, p.side, volume, p.price_open, price);
                        self.drop_position(p.id);
                        p.volume = Volume::ZERO;
                        (DealEntry::Out, p.id, profit, p)
                    } else {
                        // Reversal: the position keeps its identifier and takes the new side.
                        let profit = self.profit(symbol, p.side, p.volume, p.price_open, price);
                        p.volume = volume - p.volume;
                        p.side = side;
                        p.price_open = price;
                        p.sl = sl;
                        p.tp = tp;
                        p.time_update = now;
                        self.put_position(p.clone());
                        (DealEntry::InOut, p.id, profit, p)
                    }
                }
            }
        } else if close.0 != 0 {
            match self.positions.get(&close).cloned() {
                Some(mut p) => {
                    let volume = volume.min(p.volume);
                    let profit = self.profit(symbol, p.side, volume, p.price_open, price);
                    p.volume -= volume;
                    p.time_update = now;
                    if p.volume.is_zero() {
                        self.drop_position(p.id);
                    } else {
                        self.put_position(p.clone());
                    }
                    (DealEntry::Out, p.id, profit, p)
                }
                None => {
                    // Checked before execution; a vanished position cannot be closed twice.
                    return Vec::new();
                }
            }
        } else if let Some(mut p) = self.positions.get(&PositionId(order.0)).cloned() {
            // A further fill of the order that opened this position adds to it.
            let total = p.volume + volume;
            let avg = (p.price_open.0 * p.volume.0 + price.0 * volume.0) / total.0;
            p.price_open = Price(avg.round_dp(digits + 3).normalize());
            p.volume = total;
            p.time_update = now;
            self.put_position(p.clone());
            (DealEntry::In, p.id, Money::ZERO, p)
        } else {
            let p = self.open_position(
                order, symbol, side, volume, price, magic, comment, reason, sl, tp,
            );
            (DealEntry::In, p.id, Money::ZERO, p)
        };
        self.balance += profit;
        let deal = DealRecord {
            ticket: self.new_deal(),
            order,
            position_id,
            time: now,
            deal_type: if side == Side::Buy {
                DealType::Buy
            } else {
                DealType::Sell
            },
            entry,
            reason,
            magic,
            volume,
            price,
            commission: Money::ZERO,
            swap: Money::ZERO,
            profit,
            fee: Money::ZERO,
            symbol: symbol.to_owned(),
            comment: comment.to_owned(),
            external_id: String::new(),
        };
        let mut tx = Tx::new(now, TradeTransactionType::DealAdd);
        tx.deal = deal.ticket;
        tx.order = order;
        tx.symbol = symbol.to_owned();
        tx.deal_type = Some(deal.deal_type);
        tx.order_type = Some(OrderType::market(side));
        tx.price = price;
        tx.volume = volume;
        tx.position = position_id;
        tx.deal_record = Some(deal.clone());
        tx.position_record = Some(if after.volume.is_zero() {
            self.closed_record(&after)
        } else {
            self.position_record(&after)
        });
        self.deals.push(deal);
        vec![tx]
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn open_position(
        &mut self,
        order: OrderTicket,
        symbol: &str,
        side: Side,
        volume: Volume,
        price: Price,
        magic: Magic,
        comment: &str,
        reason: DealReason,
        sl: Price,
        tp: Price,
    ) -> Position {
        let p = Position {
            id: PositionId(order.0),
            ticket: order.0,
            symbol: symbol.to_owned(),
            side,
            volume,
            price_open: price,
            sl,
            tp,
            magic,
            comment: comment.to_owned(),
            time: self.now,
            time_update: self.now,
            reason,
        };
        self.put_position(p.clone());
        p
    }
}
