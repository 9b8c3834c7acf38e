//! Quotes: a new bid/ask fills working orders (liquidity, FOK/IOC/RETURN remainders), expires
//! orders past their time, and fires SL/TP and pending orders.

use super::*;

impl Account {
    /// New bid/ask for a symbol at `time`: fills working orders and fires SL/TP and pending orders.
    pub fn quote(&mut self, symbol: &str, bid: Price, ask: Price, time: TimeMs) -> Vec<Tx> {
        self.set_time(time);
        let Some(s) = self.symbols.get_mut(symbol) else {
            return Vec::new();
        };
        if !bid.is_positive() || !ask.is_positive() || ask < bid {
            return Vec::new();
        }
        s.bid = bid;
        s.ask = ask;
        s.quote_time = time;
        s.liquidity_left = s.liquidity;
        let mut txs = Vec::new();
        self.expire_orders(&mut txs);
        self.trigger_pending(symbol, &mut txs);
        self.fill_remainders(symbol, &mut txs);
        self.trigger_stops(symbol, &mut txs);
        self.stop_out(&mut txs);
        txs
    }

    pub(super) fn expire_orders(&mut self, txs: &mut Vec<Tx>) {
        let now = self.now;
        let expired: Vec<OrderTicket> = self
            .working
            .values()
            .filter(|w| {
                matches!(
                    w.record.type_time,
                    OrderTime::Specified | OrderTime::SpecifiedDay
                ) && w.record.expiration > 0
                    && w.record.expiration <= now
            })
            .map(|w| w.record.ticket)
            .collect();
        for ticket in expired {
            self.finish_working(ticket, OrderState::Expired, txs);
        }
    }

    pub(super) fn finish_working(
        &mut self,
        ticket: OrderTicket,
        state: OrderState,
        txs: &mut Vec<Tx>,
    ) {
        let Some(w) = self.working.remove(&ticket) else {
            return;
        };
        let mut record = w.record;
        record.state = state;
        record.time_done = self.now;
        let del = order_tx(self.now, TradeTransactionType::OrderDelete, &record);
        txs.push(del);
        let hist = order_tx(self.now, TradeTransactionType::HistoryAdd, &record);
        txs.push(hist);
        self.history_orders.push(record);
    }

    pub(super) fn trigger_pending(&mut self, symbol: &str, txs: &mut Vec<Tx>) {
        let Some(s) = self.symbols.get(symbol) else {
            return;
        };
        let (bid, ask) = (s.bid, s.ask);
        let due: Vec<OrderTicket> = self
            .working
            .values()
            .filter(|w| w.record.symbol == symbol && w.record.order_type.is_pending())
            .filter(|w| {
                let p = w.record.price_open;
                match w.record.order_type {
                    OrderType::BuyLimit => ask <= p,
                    OrderType::SellLimit => bid >= p,
                    OrderType::BuyStop | OrderType::BuyStopLimit => ask >= p,
                    OrderType::SellStop | OrderType::SellStopLimit => bid <= p,
                    _ => false,
                }
            })
            .map(|w| w.record.ticket)
            .collect();
        for ticket in due {
            let Some(w) = self.working.get_mut(&ticket) else {
                continue;
            };
            match w.record.order_type {
                // A stop-limit becomes a limit order at its stop-limit price.
                OrderType::BuyStopLimit | OrderType::SellStopLimit => {
                    w.record.order_type = if w.record.order_type == OrderType::BuyStopLimit {
                        OrderType::BuyLimit
                    } else {
                        OrderType::SellLimit
                    };
                    w.record.price_open = w.record.price_stoplimit;
                    w.record.price_stoplimit = Price::ZERO;
                    let record = w.record.clone();
                    let upd = order_tx(self.now, TradeTransactionType::OrderUpdate, &record);
                    txs.push(upd);
                }
                _ => {
                    let w = w.clone();
                    let side = w.record.order_type.side().unwrap_or(Side::Buy);
                    let price = match w.record.order_type {
                        // Limits fill at their price (or better, the simulator gives the limit).
                        OrderType::BuyLimit | OrderType::SellLimit => w.record.price_open,
                        _ => {
                            if side == Side::Buy {
                                ask
                            } else {
                                bid
                            }
                        }
                    };
                    let volume = w.record.volume_current;
                    self.fill_working(ticket, volume, price, DealReason::Expert, txs);
                }
            }
        }
    }

    /// RETURN remainders of market orders take what liquidity the new quote offers.
    pub(super) fn fill_remainders(&mut self, symbol: &str, txs: &mut Vec<Tx>) {
        let due: Vec<(OrderTicket, Side)> = self
            .working
            .values()
            .filter(|w| w.record.symbol == symbol && w.record.order_type.is_market())
            .filter_map(|w| w.record.order_type.side().map(|s| (w.record.ticket, s)))
            .collect();
        for (ticket, side) in due {
            let Some(s) = self.symbols.get(symbol) else {
                return;
            };
            let price = if side == Side::Buy { s.ask } else { s.bid };
            let left = s.liquidity_left;
            let Some(w) = self.working.get(&ticket) else {
                continue;
            };
            let want = w.record.volume_current;
            let fill = match left {
                Some(l) => want.min(l),
                None => want,
            };
            if fill.is_zero() {
                continue;
            }
            self.fill_working(ticket, fill, price, DealReason::Expert, txs);
        }
    }

    pub(super) fn fill_working(
        &mut self,
        ticket: OrderTicket,
        volume: Volume,
        price: Price,
        reason: DealReason,
        txs: &mut Vec<Tx>,
    ) {
        let Some(w) = self.working.get(&ticket).cloned() else {
            return;
        };
        let side = w.record.order_type.side().unwrap_or(Side::Buy);
        let symbol = w.record.symbol.clone();
        if w.position.0 != 0 && !self.positions.contains_key(&w.position) {
            // The position this remainder was closing is gone (closed by SL/TP or by hand).
            self.finish_working(ticket, OrderState::Canceled, txs);
            return;
        }
        let margin_needed = self.added_margin(&symbol, side, volume, w.position);
        if margin_needed.is_positive() && self.margin() + margin_needed > self.equity() {
            // Not enough money any more: the order is cancelled, as MT5 does on activation.
            self.finish_working(ticket, OrderState::Rejected, txs);
            return;
        }
        if let Some(s) = self.symbols.get_mut(&symbol) {
            if let Some(left) = s.liquidity_left.as_mut() {
                *left = (*left - volume).max(Volume::ZERO);
            }
        }
        let mut deal_txs = self.apply_deal(
            &symbol,
            side,
            volume,
            price,
            ticket,
            w.position,
            w.record.magic,
            &w.record.comment,
            reason,
            w.record.sl,
            w.record.tp,
        );
        let remaining = w.record.volume_current - volume;
        if remaining.is_positive() {
            if let Some(entry) = self.working.get_mut(&ticket) {
                entry.record.volume_current = remaining;
                entry.record.state = OrderState::Partial;
                let record = entry.record.clone();
                let upd = order_tx(self.now, TradeTransactionType::OrderUpdate, &record);
                deal_txs.push(upd);
            }
            txs.extend(deal_txs);
        } else {
            if let Some(entry) = self.working.get_mut(&ticket) {
                entry.record.volume_current = Volume::ZERO;
                entry.record.price_current = price;
            }
            txs.extend(deal_txs);
            self.finish_working(ticket, OrderState::Filled, txs);
        }
    }

    pub(super) fn trigger_stops(&mut self, symbol: &str, txs: &mut Vec<Tx>) {
        let Some((bid, ask)) = self.symbols.get(symbol).map(|s| (s.bid, s.ask)) else {
            return;
        };
        let hits: Vec<(PositionId, DealReason)> = self
            .positions
            .values()
            .filter(|p| (p.sl.is_positive() || p.tp.is_positive()) && p.symbol == symbol)
            .filter_map(|p| {
                let close = match p.side {
                    Side::Buy => bid,
                    Side::Sell => ask,
                };
                let (sl_hit, tp_hit) = match p.side {
                    Side::Buy => (
                        p.sl.is_positive() && close <= p.sl,
                        p.tp.is_positive() && close >= p.tp,
                    ),
                    Side::Sell => (
                        p.sl.is_positive() && close >= p.sl,
                        p.tp.is_positive() && close <= p.tp,
                    ),
                };
                if sl_hit {
                    Some((p.id, DealReason::Sl))
                } else if tp_hit {
                    Some((p.id, DealReason::Tp))
                } else {
                    None
                }
            })
            .collect();
        for (id, reason) in hits {
            let Some(p) = self.positions.get(&id).cloned() else {
                continue;
            };
            let Some(price) = self.close_price(symbol, p.side) else {
                continue;
            };
            let comment = format!(
                "[{} {}]",
                if reason == DealReason::Sl { "sl" } else { "tp" },
                if reason == DealReason::Sl { p.sl } else { p.tp }
            );
            self.close_by_server(&p, price, reason, comment, txs);
        }
    }
}

impl Account {
    /// Closes a whole position at `price` as the trade server does on its own (stop-loss,
    /// take-profit, stop-out): a market order in the opposite direction, its deal, and the order's
    /// way to history, each with its transaction, in MT5's order.
    pub(super) fn close_by_server(
        &mut self,
        p: &Position,
        price: Price,
        reason: DealReason,
        comment: String,
        txs: &mut Vec<Tx>,
    ) {
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
            reason: reason.code(),
            comment,
        };
        let add = order_tx(self.now, TradeTransactionType::OrderAdd, &record);
        txs.push(add);
        txs.extend(self.apply_deal(
            &p.symbol,
            p.side.opposite(),
            p.volume,
            price,
            ticket,
            p.id,
            p.magic,
            &record.comment,
            reason,
            Price::ZERO,
            Price::ZERO,
        ));
        record.state = OrderState::Filled;
        record.volume_current = Volume::ZERO;
        record.time_done = self.now;
        for kind in [
            TradeTransactionType::OrderDelete,
            TradeTransactionType::HistoryAdd,
        ] {
            let tx = order_tx(self.now, kind, &record);
            txs.push(tx);
        }
        self.history_orders.push(record);
    }
}
