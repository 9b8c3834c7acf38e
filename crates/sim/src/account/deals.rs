//! Deals and positions: MT5's netting and hedging semantics in `apply_deal` (in, out, in/out
//! reversal, close-by) and the margin a deal would add.

use super::*;

impl Account {
    /// Margin the deal would add (0 when it only reduces exposure).
    pub(super) fn added_margin(
        &self,
        symbol: &str,
        side: Side,
        volume: Volume,
        close: PositionId,
    ) -> Money {
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
                Some(p) if p.side == side => {
                    let p = self.add_volume(p, volume, price);
                    (DealEntry::In, p.id, Money::ZERO, p)
                }
                Some(p) => {
                    let (entry, profit, p) = self.net_opposite(p, side, volume, price, sl, tp);
                    (entry, p.id, profit, p)
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
        } else if let Some(p) = self.positions.get(&PositionId(order.0)).cloned() {
            // A further fill of the order that opened this position adds to it.
            let p = self.add_volume(p, volume, price);
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
        let tx = self.deal_added(&deal, side, &after);
        self.deals.push(deal);
        vec![tx]
    }

    /// `volume` more at `price` on position `p`, at the volume-weighted open price.
    fn add_volume(&mut self, mut p: Position, volume: Volume, price: Price) -> Position {
        let digits = self
            .symbols
            .get(&p.symbol)
            .map(|s| s.spec.digits)
            .unwrap_or(5);
        let total = p.volume + volume;
        let avg = (p.price_open.0 * p.volume.0 + price.0 * volume.0) / total.0;
        p.price_open = Price(avg.round_dp(digits + 3).normalize());
        p.volume = total;
        p.time_update = self.now;
        self.put_position(p.clone());
        p
    }

    /// A netting deal against the position's side: a reduction, a close, or a reversal (the
    /// position keeps its identifier and takes the new side with what is left over).
    fn net_opposite(
        &mut self,
        mut p: Position,
        side: Side,
        volume: Volume,
        price: Price,
        sl: Price,
        tp: Price,
    ) -> (DealEntry, Money, Position) {
        let closed = volume.min(p.volume);
        let profit = self.profit(&p.symbol, p.side, closed, p.price_open, price);
        p.time_update = self.now;
        if volume < p.volume {
            p.volume -= volume;
            self.put_position(p.clone());
            (DealEntry::Out, profit, p)
        } else if volume == p.volume {
            self.drop_position(p.id);
            p.volume = Volume::ZERO;
            (DealEntry::Out, profit, p)
        } else {
            p.volume = volume - p.volume;
            p.side = side;
            p.price_open = price;
            p.sl = sl;
            p.tp = tp;
            self.put_position(p.clone());
            (DealEntry::InOut, profit, p)
        }
    }

    /// The `DEAL_ADD` transaction of `deal`, with the position as it is after it.
    fn deal_added(&self, deal: &DealRecord, side: Side, after: &Position) -> Tx {
        let mut tx = Tx::new(deal.time, TradeTransactionType::DealAdd);
        tx.deal = deal.ticket;
        tx.order = deal.order;
        tx.symbol = deal.symbol.clone();
        tx.deal_type = Some(deal.deal_type);
        tx.order_type = Some(OrderType::market(side));
        tx.price = deal.price;
        tx.volume = deal.volume;
        tx.position = deal.position_id;
        tx.deal_record = Some(deal.clone());
        tx.position_record = Some(if after.volume.is_zero() {
            self.closed_record(after)
        } else {
            self.position_record(after)
        });
        tx
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
