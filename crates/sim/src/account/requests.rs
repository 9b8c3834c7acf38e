//! Trade requests: `send` and `check`, validation of market requests (filling modes, 10030, volume
//! grid, trade mode) and the market and pending paths.

use super::*;

impl Account {
    /// `OrderSend`. `reason` is how the order was placed (`Expert` for protocol commands, `Client`
    /// for trades made "by hand" on the simulated terminal).
    pub fn send(&mut self, req: &TradeRequest, reason: DealReason) -> Execution {
        if reason == DealReason::Expert && !self.config.trade_expert {
            return self.refuse(
                Retcode::SERVER_DISABLES_AT,
                "trading by Expert Advisors is disabled for this account (ACCOUNT_TRADE_EXPERT is \
                 false); ask the broker to enable it",
                &req.symbol,
            );
        }
        let cut;
        let req = if req.comment.chars().count() > COMMENT_CHARS {
            cut = TradeRequest {
                comment: req.comment.chars().take(COMMENT_CHARS).collect(),
                ..req.clone()
            };
            &cut
        } else {
            req
        };
        match req.action {
            TradeAction::Deal => self.market(req, reason),
            TradeAction::Pending => self.pending(req, reason),
            TradeAction::Sltp => self.sltp(req),
            TradeAction::Modify => self.modify(req),
            TradeAction::Remove => self.remove(req),
            TradeAction::CloseBy => self.close_by(req, reason),
        }
    }

    pub(super) fn spec(&self, symbol: &str) -> Option<&SymbolSpec> {
        self.symbols.get(symbol).map(|s| &s.spec)
    }

    pub(super) fn check_volume(
        &self,
        spec: &SymbolSpec,
        volume: Volume,
    ) -> Result<(), (Retcode, String)> {
        if !volume.is_positive() || volume < spec.volume_min || volume > spec.volume_max {
            return Err((
                Retcode::INVALID_VOLUME,
                format!(
                    "volume {volume} outside [{}, {}]",
                    spec.volume_min, spec.volume_max
                ),
            ));
        }
        if spec.volume_step.is_positive() && !(volume.0 % spec.volume_step.0).is_zero() {
            return Err((
                Retcode::INVALID_VOLUME,
                format!("volume {volume} is not a multiple of {}", spec.volume_step),
            ));
        }
        Ok(())
    }

    pub(super) fn resolve_filling(
        &self,
        spec: &SymbolSpec,
        filling: Filling,
    ) -> Result<OrderFilling, (Retcode, String)> {
        match filling {
            Filling::Auto => spec.filling.preferred().ok_or((
                Retcode::INVALID_FILL,
                format!(
                    "{} uses market execution and allows neither FOK nor IOC, and RETURN is not \
                     valid there: no filling mode can be sent",
                    spec.name
                ),
            )),
            Filling::Mode(OrderFilling::Boc) => {
                Err((Retcode::INVALID_FILL, "BOC is for limit orders only".into()))
            }
            Filling::Mode(m) if spec.filling.allows(m) => Ok(m),
            Filling::Mode(m) => Err((
                Retcode::INVALID_FILL,
                format!("{} does not allow filling {}", spec.name, m),
            )),
        }
    }

    /// Everything about a market request that does not depend on chance. Returns the filling mode.
    pub(super) fn validate_market(
        &self,
        req: &TradeRequest,
    ) -> Result<OrderFilling, (Retcode, String)> {
        let spec = self
            .spec(&req.symbol)
            .ok_or((Retcode::INVALID, format!("unknown symbol {:?}", req.symbol)))?;
        let side = req
            .order_type
            .side()
            .filter(|_| req.order_type.is_market())
            .ok_or((
                Retcode::INVALID_ORDER,
                format!("order type {} is not a market order", req.order_type),
            ))?;
        self.check_volume(spec, req.volume)?;
        let filling = self.resolve_filling(spec, req.type_filling)?;
        let closing = if self.config.mode.is_netting() {
            self.positions
                .values()
                .find(|p| p.symbol == req.symbol)
                .is_some_and(|p| p.side != side && req.volume <= p.volume)
        } else if req.position.0 != 0 {
            let p = self.positions.get(&req.position).ok_or((
                Retcode::POSITION_CLOSED,
                format!("position {} is not open", req.position),
            ))?;
            if p.symbol != req.symbol {
                return Err((
                    Retcode::INVALID,
                    format!("position {} is on {}, not {}", p.id, p.symbol, req.symbol),
                ));
            }
            if p.side == side {
                return Err((
                    Retcode::INVALID,
                    format!("a {side} order cannot close {} position {}", p.side, p.id),
                ));
            }
            if req.volume > p.volume {
                return Err((
                    Retcode::INVALID_CLOSE_VOLUME,
                    format!(
                        "close volume {} exceeds position volume {}",
                        req.volume, p.volume
                    ),
                ));
            }
            true
        } else {
            false
        };
        match spec.trade_mode {
            hedge_domain::SymbolTradeMode::Disabled => {
                return Err((Retcode::TRADE_DISABLED, "trading disabled".into()))
            }
            _ if !closing && !spec.allows_open(side) => {
                let code = match spec.trade_mode {
                    hedge_domain::SymbolTradeMode::LongOnly => Retcode::LONG_ONLY,
                    hedge_domain::SymbolTradeMode::ShortOnly => Retcode::SHORT_ONLY,
                    _ => Retcode::CLOSE_ONLY,
                };
                return Err((code, code.description().into()));
            }
            _ => {}
        }
        Ok(filling)
    }

    pub(super) fn market(&mut self, req: &TradeRequest, reason: DealReason) -> Execution {
        let admitted = self
            .validate_market(req)
            .and_then(|filling| Ok((filling, self.admit_market(req, filling)?)));
        match admitted {
            Ok((filling, (price, fill))) => self.fill_market(req, reason, filling, price, fill),
            Err((code, why)) => self.refuse(code, why, &req.symbol),
        }
    }

    /// What a valid market request meets at the dealer: injected faults, the quote and the
    /// deviation, the liquidity left for its filling mode, and the margin. The price and the
    /// volume it may fill, or the refusal.
    fn admit_market(
        &mut self,
        req: &TradeRequest,
        filling: OrderFilling,
    ) -> Result<(Price, Volume), (Retcode, String)> {
        let side = req.order_type.side().unwrap_or(Side::Buy);
        // Injected faults come before pricing, as a dealer's refusal would.
        let faults = self.config.faults.clone();
        if faults.reject_rate > 0.0 && self.rng.gen_bool(faults.reject_rate.clamp(0.0, 1.0)) {
            return Err((Retcode::REJECT, "rejected by dealer (injected)".into()));
        }
        if faults.requote_rate > 0.0 && self.rng.gen_bool(faults.requote_rate.clamp(0.0, 1.0)) {
            let code = if self.rng.gen_bool(0.5) {
                Retcode::REQUOTE
            } else {
                Retcode::PRICE_OFF
            };
            return Err((code, format!("{} (injected)", code.description())));
        }
        let Some(s) = self.symbols.get(&req.symbol) else {
            return Err((Retcode::INVALID, "unknown symbol".into()));
        };
        if !s.bid.is_positive() || !s.ask.is_positive() {
            return Err((Retcode::PRICE_OFF, "no quotes".into()));
        }
        let market_price = if side == Side::Buy { s.ask } else { s.bid };
        if req.price.is_positive() {
            let allowed = s.spec.point.0 * Decimal::from(req.deviation);
            if (req.price.0 - market_price.0).abs() > allowed {
                return Err((
                    Retcode::REQUOTE,
                    format!(
                        "price {} moved to {market_price}, beyond deviation {} points",
                        req.price, req.deviation
                    ),
                ));
            }
        }
        let fill = match s.liquidity_left {
            Some(left) => req.volume.min(left),
            None => req.volume,
        };
        if fill < req.volume {
            match filling {
                OrderFilling::Fok => {
                    return Err((
                        Retcode::REJECT,
                        format!("fill or kill: only {fill} of {} available", req.volume),
                    ))
                }
                _ if fill.is_zero() && filling == OrderFilling::Ioc => {
                    return Err((Retcode::PRICE_OFF, "no liquidity at this price".into()))
                }
                _ => {}
            }
        }
        let added = self.added_margin(&req.symbol, side, req.volume, req.position);
        if added.is_positive() && self.margin() + added > self.equity() {
            return Err((
                Retcode::NO_MONEY,
                format!(
                    "needs margin {added}, free margin {}",
                    self.equity() - self.margin()
                ),
            ));
        }
        Ok((market_price, fill))
    }

    /// Places the admitted market order and fills `fill` of it at `market_price`; IOC cancels
    /// the rest.
    fn fill_market(
        &mut self,
        req: &TradeRequest,
        reason: DealReason,
        filling: OrderFilling,
        market_price: Price,
        fill: Volume,
    ) -> Execution {
        let ticket = self.new_order();
        let record = OrderRecord {
            ticket,
            symbol: req.symbol.clone(),
            order_type: req.order_type,
            state: OrderState::Started,
            time_setup: self.now,
            time_done: 0,
            type_filling: filling,
            type_time: OrderTime::Gtc,
            expiration: 0,
            volume_initial: req.volume,
            volume_current: req.volume,
            price_open: market_price,
            price_current: market_price,
            price_stoplimit: Price::ZERO,
            sl: req.sl,
            tp: req.tp,
            magic: req.magic,
            position_id: if self.config.mode.is_netting() {
                PositionId(0)
            } else {
                req.position
            },
            position_by_id: PositionId(0),
            reason: reason.code(),
            comment: req.comment.clone(),
        };
        let mut txs = Vec::new();
        let add = order_tx(self.now, TradeTransactionType::OrderAdd, &record);
        txs.push(add);
        self.working.insert(
            ticket,
            Working {
                record,
                position: if self.config.mode.is_netting() {
                    PositionId(0)
                } else {
                    req.position
                },
            },
        );
        let deals_before = self.deals.len();
        if fill.is_positive() {
            self.fill_working(ticket, fill, market_price, reason, &mut txs);
        }
        let remainder = req.volume - fill;
        if remainder.is_positive() && filling == OrderFilling::Ioc {
            // IOC: what could not be filled now is cancelled.
            self.finish_working(ticket, OrderState::Partial, &mut txs);
        }
        let deal = self.deals[deals_before..].first().cloned();
        let retcode = if remainder.is_positive() {
            Retcode::DONE_PARTIAL
        } else {
            Retcode::DONE
        };
        let mut reply = self.reply(retcode, retcode.description(), &req.symbol);
        reply.order = ticket;
        reply.volume = fill;
        reply.price = market_price;
        if let Some(d) = deal {
            reply.deal = d.ticket;
            reply.position = d.position_id;
        }
        let mut request_tx = Tx::new(self.now, TradeTransactionType::Request);
        request_tx.order = ticket;
        request_tx.symbol = req.symbol.clone();
        request_tx.order_type = Some(req.order_type);
        request_tx.volume = req.volume;
        request_tx.position = reply.position;
        txs.push(request_tx);
        Execution { reply, txs }
    }

    /// Refuses a pending order whose price is on the market's side of its stops level, a
    /// stop-limit without its limit price, and an expiration already past.
    fn check_pending_price(
        &self,
        spec: &SymbolSpec,
        req: &TradeRequest,
        price: Price,
        bid: Price,
        ask: Price,
    ) -> Result<(), (Retcode, String)> {
        let level = spec.point.0 * Decimal::from(spec.stops_level);
        let ok = price.is_positive()
            && match req.order_type {
                OrderType::BuyLimit => price.0 <= ask.0 - level,
                OrderType::SellLimit => price.0 >= bid.0 + level,
                OrderType::BuyStop | OrderType::BuyStopLimit => price.0 >= ask.0 + level,
                OrderType::SellStop | OrderType::SellStopLimit => price.0 <= bid.0 - level,
                _ => false,
            };
        if !ok {
            return Err((
                Retcode::INVALID_PRICE,
                format!("price {price} is on the wrong side of the market ({bid}/{ask})"),
            ));
        }
        if matches!(
            req.order_type,
            OrderType::BuyStopLimit | OrderType::SellStopLimit
        ) && !req.stoplimit.is_positive()
        {
            return Err((
                Retcode::INVALID_PRICE,
                "stop-limit needs a stoplimit price".to_owned(),
            ));
        }
        if matches!(
            req.type_time,
            OrderTime::Specified | OrderTime::SpecifiedDay
        ) && req.expiration <= self.now
        {
            return Err((
                Retcode::INVALID_EXPIRATION,
                "expiration is in the past".to_owned(),
            ));
        }
        Ok(())
    }

    pub(super) fn pending(&mut self, req: &TradeRequest, reason: DealReason) -> Execution {
        let Some(s) = self.symbols.get(&req.symbol) else {
            return self.refuse(
                Retcode::INVALID,
                format!("unknown symbol {:?}", req.symbol),
                &req.symbol,
            );
        };
        let spec = s.spec.clone();
        let (bid, ask) = (s.bid, s.ask);
        if !req.order_type.is_pending() {
            return self.refuse(
                Retcode::INVALID_ORDER,
                format!("{} is not a pending order type", req.order_type),
                &req.symbol,
            );
        }
        if let Err((code, why)) = self.check_volume(&spec, req.volume) {
            return self.refuse(code, why, &req.symbol);
        }
        // MT5 takes RETURN for every pending order, whatever the execution mode and the flags.
        let filling = match req.type_filling {
            Filling::Auto => OrderFilling::Return,
            other => match self.resolve_filling(&spec, other) {
                Ok(f) => f,
                Err((code, why)) => return self.refuse(code, why, &req.symbol),
            },
        };
        let side = req.order_type.side().unwrap_or(Side::Buy);
        if !spec.allows_open(side) {
            return self.refuse(
                Retcode::TRADE_DISABLED,
                "opening disabled on this symbol",
                &req.symbol,
            );
        }
        let price = spec.normalize_price(req.price);
        if let Err((code, why)) = self.check_pending_price(&spec, req, price, bid, ask) {
            return self.refuse(code, why, &req.symbol);
        }
        let ticket = self.new_order();
        let record = OrderRecord {
            ticket,
            symbol: req.symbol.clone(),
            order_type: req.order_type,
            state: OrderState::Placed,
            time_setup: self.now,
            time_done: 0,
            type_filling: filling,
            type_time: req.type_time,
            expiration: req.expiration,
            volume_initial: req.volume,
            volume_current: req.volume,
            price_open: price,
            price_current: if side == Side::Buy { ask } else { bid },
            price_stoplimit: spec.normalize_price(req.stoplimit),
            sl: req.sl,
            tp: req.tp,
            magic: req.magic,
            position_id: PositionId(0),
            position_by_id: PositionId(0),
            reason: reason.code(),
            comment: req.comment.clone(),
        };
        let add = order_tx(self.now, TradeTransactionType::OrderAdd, &record);
        self.working.insert(
            ticket,
            Working {
                record,
                position: PositionId(0),
            },
        );
        let mut reply = self.reply(Retcode::PLACED, "Order placed", &req.symbol);
        reply.order = ticket;
        reply.volume = req.volume;
        reply.price = price;
        let mut txs = vec![add];
        // Placement is valid only away from the market, so nothing can trigger here; the next quote
        // through the price does.
        Execution {
            reply,
            txs: std::mem::take(&mut txs),
        }
    }
}
