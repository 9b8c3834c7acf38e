//! Requests that change what exists: SL/TP of a position, a pending order's modification or
//! removal, and close-by.

use super::*;

impl Account {
    pub(super) fn sltp(&mut self, req: &TradeRequest) -> Execution {
        let id = if req.position.0 != 0 {
            Some(req.position)
        } else if self.config.mode.is_netting() {
            self.positions
                .values()
                .find(|p| p.symbol == req.symbol)
                .map(|p| p.id)
        } else {
            None
        };
        let Some(mut p) = id.and_then(|id| self.positions.get(&id).cloned()) else {
            return self.refuse(
                Retcode::POSITION_CLOSED,
                format!("position {} is not open", req.position),
                &req.symbol,
            );
        };
        let Some(close) = self.close_price(&p.symbol, p.side) else {
            return self.refuse(Retcode::INVALID, "unknown symbol", &p.symbol);
        };
        let bad = match p.side {
            Side::Buy => {
                (req.sl.is_positive() && req.sl >= close)
                    || (req.tp.is_positive() && req.tp <= close)
            }
            Side::Sell => {
                (req.sl.is_positive() && req.sl <= close)
                    || (req.tp.is_positive() && req.tp >= close)
            }
        };
        if bad {
            return self.refuse(
                Retcode::INVALID_STOPS,
                format!(
                    "stops sl={} tp={} invalid against price {close}",
                    req.sl, req.tp
                ),
                &p.symbol,
            );
        }
        if p.sl == req.sl && p.tp == req.tp {
            return self.refuse(Retcode::NO_CHANGES, "no changes", &p.symbol);
        }
        p.sl = req.sl;
        p.tp = req.tp;
        p.time_update = self.now;
        self.put_position(p.clone());
        let mut tx = Tx::new(self.now, TradeTransactionType::Position);
        tx.symbol = p.symbol.clone();
        tx.position = p.id;
        tx.sl = p.sl;
        tx.tp = p.tp;
        tx.volume = p.volume;
        tx.price = p.price_open;
        tx.position_record = Some(self.position_record(&p));
        let symbol = p.symbol.clone();
        let mut reply = self.reply(Retcode::DONE, "Request executed", &symbol);
        reply.position = p.id;
        Execution {
            reply,
            txs: vec![tx],
        }
    }

    pub(super) fn modify(&mut self, req: &TradeRequest) -> Execution {
        let Some(w) = self.working.get(&req.order).cloned() else {
            return self.refuse(
                Retcode::INVALID_ORDER,
                format!("order {} is not working", req.order),
                &req.symbol,
            );
        };
        if !w.record.order_type.is_pending() {
            return self.refuse(
                Retcode::INVALID_ORDER,
                "only pending orders can be modified",
                &req.symbol,
            );
        }
        let spec = match self.spec(&w.record.symbol) {
            Some(s) => s.clone(),
            None => return self.refuse(Retcode::INVALID, "unknown symbol", &req.symbol),
        };
        let mut record = w.record.clone();
        if req.price.is_positive() {
            record.price_open = spec.normalize_price(req.price);
        }
        record.sl = req.sl;
        record.tp = req.tp;
        if req.stoplimit.is_positive() {
            record.price_stoplimit = spec.normalize_price(req.stoplimit);
        }
        record.type_time = req.type_time;
        record.expiration = req.expiration;
        if record == w.record {
            return self.refuse(Retcode::NO_CHANGES, "no changes", &record.symbol);
        }
        if let Some(entry) = self.working.get_mut(&req.order) {
            entry.record = record.clone();
        }
        let tx = order_tx(self.now, TradeTransactionType::OrderUpdate, &record);
        let mut reply = self.reply(Retcode::DONE, "Request executed", &record.symbol);
        reply.order = record.ticket;
        let mut txs = vec![tx];
        self.trigger_pending(&record.symbol, &mut txs);
        Execution { reply, txs }
    }

    pub(super) fn remove(&mut self, req: &TradeRequest) -> Execution {
        let Some(w) = self.working.get(&req.order).cloned() else {
            return self.refuse(
                Retcode::INVALID_ORDER,
                format!("order {} is not working", req.order),
                &req.symbol,
            );
        };
        let mut txs = Vec::new();
        self.finish_working(req.order, OrderState::Canceled, &mut txs);
        let mut reply = self.reply(Retcode::DONE, "Request executed", &w.record.symbol);
        reply.order = req.order;
        Execution { reply, txs }
    }

    /// Close-by (hedging): closes `position` with the opposite `position_by`, by the smaller volume, at
    /// `position_by`'s open price, booking an `OUT_BY` deal for each.
    pub(super) fn close_by(&mut self, req: &TradeRequest, reason: DealReason) -> Execution {
        if self.config.mode.is_netting() {
            return self.refuse(
                Retcode::INVALID_ORDER,
                "close-by needs a hedging account",
                &req.symbol,
            );
        }
        let (Some(a), Some(b)) = (
            self.positions.get(&req.position).cloned(),
            self.positions.get(&req.position_by).cloned(),
        ) else {
            return self.refuse(Retcode::POSITION_CLOSED, "position not open", &req.symbol);
        };
        if a.symbol != b.symbol || a.side == b.side {
            return self.refuse(
                Retcode::INVALID,
                "close-by needs opposite positions on one symbol",
                &a.symbol,
            );
        }
        let volume = a.volume.min(b.volume);
        let price = b.price_open;
        let ticket = self.new_order();
        let mut txs = Vec::new();
        let mut deal_tickets = Vec::new();
        let fill = CloseByFill {
            order: ticket,
            volume,
            price,
            magic: req.magic,
            reason,
        };
        for (p, other) in [(&a, &b), (&b, &a)] {
            deal_tickets.push(self.close_one_by(p, other, &fill, &mut txs));
        }
        let record = OrderRecord {
            ticket,
            symbol: a.symbol.clone(),
            order_type: OrderType::CloseBy,
            state: OrderState::Filled,
            time_setup: self.now,
            time_done: self.now,
            type_filling: OrderFilling::Fok,
            type_time: OrderTime::Gtc,
            expiration: 0,
            volume_initial: volume,
            volume_current: Volume::ZERO,
            price_open: price,
            price_current: price,
            price_stoplimit: Price::ZERO,
            sl: Price::ZERO,
            tp: Price::ZERO,
            magic: req.magic,
            position_id: a.id,
            position_by_id: b.id,
            reason: reason.code(),
            comment: req.comment.clone(),
        };
        let hist = order_tx(self.now, TradeTransactionType::HistoryAdd, &record);
        txs.push(hist);
        self.history_orders.push(record);
        let mut reply = self.reply(Retcode::DONE, "Request executed", &a.symbol);
        reply.order = ticket;
        reply.deal = deal_tickets[0];
        reply.position = a.id;
        reply.volume = volume;
        reply.price = price;
        Execution { reply, txs }
    }

    /// One side of a close-by: `p` loses `fill.volume` against `other`, booking its `OUT_BY` deal
    /// and the deal's transaction; returns the deal's ticket.
    fn close_one_by(
        &mut self,
        p: &Position,
        other: &Position,
        fill: &CloseByFill,
        txs: &mut Vec<Tx>,
    ) -> DealTicket {
        let profit = self.profit(&p.symbol, p.side, fill.volume, p.price_open, fill.price);
        self.balance += profit;
        let mut after = p.clone();
        after.volume -= fill.volume;
        after.time_update = self.now;
        if after.volume.is_zero() {
            self.drop_position(p.id);
        } else {
            self.put_position(after.clone());
        }
        let deal = DealRecord {
            ticket: self.new_deal(),
            order: fill.order,
            position_id: p.id,
            time: self.now,
            deal_type: if p.side == Side::Buy {
                DealType::Sell
            } else {
                DealType::Buy
            },
            entry: DealEntry::OutBy,
            reason: fill.reason,
            magic: fill.magic,
            volume: fill.volume,
            price: fill.price,
            commission: Money::ZERO,
            swap: Money::ZERO,
            profit,
            fee: Money::ZERO,
            symbol: p.symbol.clone(),
            comment: format!("close #{} by #{}", p.id, other.id),
            external_id: String::new(),
        };
        let mut tx = Tx::new(self.now, TradeTransactionType::DealAdd);
        tx.deal = deal.ticket;
        tx.order = fill.order;
        tx.symbol = p.symbol.clone();
        tx.deal_type = Some(deal.deal_type);
        tx.volume = fill.volume;
        tx.price = fill.price;
        tx.position = p.id;
        tx.position_by = other.id;
        tx.deal_record = Some(deal.clone());
        tx.position_record = Some(if after.volume.is_zero() {
            self.closed_record(&after)
        } else {
            self.position_record(&after)
        });
        txs.push(tx);
        let deal_ticket = deal.ticket;
        self.deals.push(deal);
        deal_ticket
    }
}

/// What both deals of a close-by share: the close-by order, the volume closed, the price (the
/// opposite position's open price), the magic and the reason.
struct CloseByFill {
    order: OrderTicket,
    volume: Volume,
    price: Price,
    magic: Magic,
    reason: DealReason,
}
