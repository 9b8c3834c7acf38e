//! The trade server: one account, its symbols and quotes, positions, working orders and history.
//!
//! Pure and synchronous: time is given by the caller, randomness (fault injection) comes from a seeded
//! generator, so a sequence of calls always gives the same tickets, deals and retcodes. Every change
//! returns the trade transactions MT5 would report for it, in MT5's order.

use crate::faults::Faults;
use crate::symbols::SimSymbol;
use hedge_domain::{
    AccountMarginMode, CmdId, DealEntry, DealReason, DealTicket, DealType, Login, Magic, Money,
    OrderFilling, OrderState, OrderTicket, OrderTime, OrderType, PositionId, PositionType, Price,
    Retcode, Side, SymbolSpec, TradeAction, TradeTransactionType, Volume,
};
use hedge_protocol::{
    AccountInfo, CheckResult, DealRecord, Filling, Hello, OrderRecord, PositionRecord, Reply,
    Snapshot, SymbolInfo, TimeMs, TradeRequest, Tx, PROTOCOL_VERSION,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::BTreeMap;

/// How the account is set up.
#[derive(Clone, Debug)]
pub struct AccountConfig {
    pub login: Login,
    pub mode: AccountMarginMode,
    pub currency: String,
    pub leverage: u32,
    pub balance: Money,
    pub server: String,
    pub company: String,
    /// Seed of the fault generator.
    pub seed: u64,
    pub faults: Faults,
    /// First order ticket; deals start at twice this.
    pub first_ticket: u64,
    /// `ACCOUNT_TRADE_EXPERT`: whether the server accepts orders from Expert Advisors. When false,
    /// protocol commands are refused (10026) and trades by hand still work.
    pub trade_expert: bool,
}

impl Default for AccountConfig {
    fn default() -> Self {
        AccountConfig {
            login: Login(1000),
            mode: AccountMarginMode::RetailHedging,
            currency: "USD".into(),
            leverage: 100,
            balance: Money(Decimal::from(10_000)),
            server: "HedgeSim-Demo".into(),
            company: "hedge simulator".into(),
            seed: 1,
            faults: Faults::default(),
            first_ticket: 100_000,
            trade_expert: true,
        }
    }
}

/// Characters of an order comment MT5 keeps; the rest is cut by the trade server.
pub const COMMENT_CHARS: usize = 31;

/// An open position.
#[derive(Clone, Debug, PartialEq)]
pub struct Position {
    pub id: PositionId,
    /// `POSITION_TICKET`: the identifier's number until the server re-opens the position (a swap
    /// rollover, a split), which gives it a new ticket and keeps the identifier.
    pub ticket: u64,
    pub symbol: String,
    pub side: Side,
    pub volume: Volume,
    pub price_open: Price,
    pub sl: Price,
    pub tp: Price,
    pub magic: Magic,
    pub comment: String,
    pub time: TimeMs,
    pub time_update: TimeMs,
    pub reason: DealReason,
}

/// A working order: a pending order, or the remainder of a RETURN market order.
#[derive(Clone, Debug, PartialEq)]
struct Working {
    record: OrderRecord,
    /// For a hedging close: the position the order closes.
    position: PositionId,
}

/// Open volume and volume-weighted cost of one symbol's buys and sells.
#[derive(Clone, Debug, Default)]
struct Exposure {
    buy_volume: Decimal,
    buy_cost: Decimal,
    sell_volume: Decimal,
    sell_cost: Decimal,
}

/// The outcome of a request: the reply (without `cmd_id`, set by the caller) and the transactions.
#[derive(Clone, Debug)]
pub struct Execution {
    pub reply: Reply,
    pub txs: Vec<Tx>,
}

/// The simulated trade server for one account.
#[derive(Debug)]
pub struct Account {
    config: AccountConfig,
    rng: ChaCha8Rng,
    now: TimeMs,
    balance: Money,
    symbols: BTreeMap<String, SimSymbol>,
    positions: BTreeMap<PositionId, Position>,
    /// Per-symbol sums over open positions, so equity and margin cost O(symbols), not O(positions).
    exposure: BTreeMap<String, Exposure>,
    working: BTreeMap<OrderTicket, Working>,
    history_orders: Vec<OrderRecord>,
    deals: Vec<DealRecord>,
    next_order: u64,
    next_deal: u64,
    next_request: u32,
}

fn dec(v: i64) -> Decimal {
    Decimal::from(v)
}

impl Account {
    pub fn new(config: AccountConfig, symbols: Vec<SimSymbol>, now: TimeMs) -> Self {
        let first = config.first_ticket.max(1);
        let mut account = Account {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            now,
            balance: Money::ZERO,
            symbols: symbols
                .into_iter()
                .map(|s| (s.spec.name.clone(), s))
                .collect(),
            positions: BTreeMap::new(),
            exposure: BTreeMap::new(),
            working: BTreeMap::new(),
            history_orders: Vec::new(),
            deals: Vec::new(),
            next_order: first,
            next_deal: first * 2,
            next_request: 1,
            config,
        };
        let initial = account.config.balance;
        if !initial.is_zero() {
            account.balance_operation(initial, "initial deposit");
        }
        account
    }

    pub fn config(&self) -> &AccountConfig {
        &self.config
    }

    pub fn mode(&self) -> AccountMarginMode {
        self.config.mode
    }

    pub fn now(&self) -> TimeMs {
        self.now
    }

    /// Moves the clock forward (never back).
    pub fn set_time(&mut self, now: TimeMs) {
        self.now = self.now.max(now);
    }

    pub fn faults(&self) -> &Faults {
        &self.config.faults
    }

    pub fn set_faults(&mut self, faults: Faults) {
        self.config.faults = faults;
    }

    /// A deposit (positive) or withdrawal: a `DEAL_TYPE_BALANCE` deal.
    pub fn balance_operation(&mut self, amount: Money, comment: &str) -> Tx {
        self.balance += amount;
        let deal = DealRecord {
            ticket: self.new_deal(),
            order: OrderTicket(0),
            position_id: PositionId(0),
            time: self.now,
            deal_type: DealType::Balance,
            entry: DealEntry::In,
            reason: DealReason::Client,
            magic: Magic(0),
            volume: Volume::ZERO,
            price: Price::ZERO,
            commission: Money::ZERO,
            swap: Money::ZERO,
            profit: amount,
            fee: Money::ZERO,
            symbol: String::new(),
            comment: comment.into(),
            external_id: String::new(),
        };
        let mut tx = Tx::new(self.now, TradeTransactionType::DealAdd);
        tx.deal = deal.ticket;
        tx.deal_type = Some(DealType::Balance);
        tx.deal_record = Some(deal.clone());
        self.deals.push(deal);
        tx
    }

    // ----- reading -----

    pub fn symbol(&self, name: &str) -> Option<&SimSymbol> {
        self.symbols.get(name)
    }

    pub fn symbol_names(&self) -> Vec<String> {
        self.symbols.keys().cloned().collect()
    }

    pub fn symbol_infos(&self) -> Vec<SymbolInfo> {
        self.symbols.values().map(SimSymbol::info).collect()
    }

    /// Gives an open position a new ticket, as a server does when it re-opens positions (swap
    /// rollover, split): the identifier stays. Returns the position's record after the change, or
    /// `None` when it is not open.
    pub fn reticket(&mut self, id: PositionId) -> Option<PositionRecord> {
        let ticket = self.new_order().0;
        let p = self.positions.get_mut(&id)?;
        p.ticket = ticket;
        let p = p.clone();
        Some(self.position_record(&p))
    }

    pub fn position(&self, id: PositionId) -> Option<&Position> {
        self.positions.get(&id)
    }

    pub fn open_positions(&self) -> impl Iterator<Item = &Position> {
        self.positions.values()
    }

    pub fn positions(&self) -> Vec<PositionRecord> {
        self.positions
            .values()
            .map(|p| self.position_record(p))
            .collect()
    }

    pub fn orders(&self) -> Vec<OrderRecord> {
        self.working.values().map(|w| w.record.clone()).collect()
    }

    pub fn deals(&self) -> &[DealRecord] {
        &self.deals
    }

    pub fn history_orders(&self) -> &[OrderRecord] {
        &self.history_orders
    }

    /// History orders (by `time_done`) and deals (by `time`) with `from <= time < to`, sorted by time
    /// then ticket.
    pub fn history(&self, from: TimeMs, to: TimeMs) -> (Vec<OrderRecord>, Vec<DealRecord>) {
        let mut orders: Vec<_> = self
            .history_orders
            .iter()
            .filter(|o| o.time_done >= from && o.time_done < to)
            .cloned()
            .collect();
        orders.sort_by_key(|o| (o.time_done, o.ticket));
        let mut deals: Vec<_> = self
            .deals
            .iter()
            .filter(|d| d.time >= from && d.time < to)
            .cloned()
            .collect();
        deals.sort_by_key(|d| (d.time, d.ticket));
        (orders, deals)
    }

    pub fn balance(&self) -> Money {
        self.balance
    }

    /// Unrealized profit of all open positions at the current quotes.
    pub fn floating_profit(&self) -> Money {
        let mut total = Decimal::ZERO;
        for (symbol, e) in &self.exposure {
            let Some(s) = self.symbols.get(symbol) else {
                continue;
            };
            let tick = if s.spec.tick_size.is_positive() {
                s.spec.tick_size.0
            } else {
                s.spec.point.0
            };
            if tick.is_zero() {
                continue;
            }
            let diff =
                (s.bid.0 * e.buy_volume - e.buy_cost) + (e.sell_cost - s.ask.0 * e.sell_volume);
            total += diff / tick * s.spec.tick_value.0;
        }
        Money(total.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero))
    }

    fn put_position(&mut self, p: Position) {
        if let Some(old) = self.positions.insert(p.id, p.clone()) {
            self.expose(&old, -Decimal::ONE);
        }
        self.expose(&p, Decimal::ONE);
    }

    fn drop_position(&mut self, id: PositionId) {
        if let Some(old) = self.positions.remove(&id) {
            self.expose(&old, -Decimal::ONE);
        }
    }

    fn expose(&mut self, p: &Position, sign: Decimal) {
        let e = self.exposure.entry(p.symbol.clone()).or_default();
        let volume = p.volume.0 * sign;
        let cost = p.volume.0 * p.price_open.0 * sign;
        match p.side {
            Side::Buy => {
                e.buy_volume += volume;
                e.buy_cost += cost;
            }
            Side::Sell => {
                e.sell_volume += volume;
                e.sell_cost += cost;
            }
        }
    }

    pub fn equity(&self) -> Money {
        self.balance + self.floating_profit()
    }

    pub fn margin(&self) -> Money {
        self.exposure
            .iter()
            .map(|(symbol, e)| self.margin_for(symbol, Volume(e.buy_volume + e.sell_volume)))
            .sum()
    }

    pub fn account_info(&self) -> AccountInfo {
        let equity = self.equity();
        let margin = self.margin();
        AccountInfo {
            login: self.config.login,
            currency: self.config.currency.clone(),
            margin_mode: self.config.mode,
            leverage: self.config.leverage,
            balance: self.balance,
            credit: Money::ZERO,
            equity,
            profit: self.floating_profit(),
            margin,
            margin_free: equity - margin,
        }
    }

    pub fn hello(&self, ea_version: &str) -> Hello {
        Hello {
            seq: 0,
            v: PROTOCOL_VERSION,
            login: self.config.login,
            server: self.config.server.clone(),
            company: self.config.company.clone(),
            currency: self.config.currency.clone(),
            margin_mode: self.config.mode,
            build: 4755,
            ea_version: ea_version.into(),
            leverage: self.config.leverage,
            trade_allowed: true,
            time: self.now,
            trade_expert: self.config.trade_expert,
            account_trade_allowed: true,
            instance: String::new(),
        }
    }

    pub fn snapshot(&self, cmd_id: Option<CmdId>) -> Snapshot {
        Snapshot {
            seq: 0,
            time: self.now,
            cmd_id,
            account: self.account_info(),
            positions: self.positions(),
            orders: self.orders(),
        }
    }

    /// Net signed volume per symbol (buys positive).
    pub fn net_positions(&self) -> BTreeMap<String, Decimal> {
        let mut net = BTreeMap::new();
        for p in self.positions.values() {
            *net.entry(p.symbol.clone()).or_insert(Decimal::ZERO) +=
                p.volume.0 * Decimal::from(p.side.sign());
        }
        net
    }

    fn position_record(&self, p: &Position) -> PositionRecord {
        PositionRecord {
            ticket: p.ticket,
            identifier: p.id,
            symbol: p.symbol.clone(),
            position_type: PositionType::from(p.side),
            volume: p.volume,
            price_open: p.price_open,
            price_current: self.close_price(&p.symbol, p.side).unwrap_or(p.price_open),
            sl: p.sl,
            tp: p.tp,
            swap: Money::ZERO,
            profit: self.profit_of(p),
            magic: p.magic,
            comment: p.comment.clone(),
            time: p.time,
            time_update: p.time_update,
            reason: p.reason.code(),
        }
    }

    fn closed_record(&self, p: &Position) -> PositionRecord {
        let mut r = self.position_record(p);
        r.volume = Volume::ZERO;
        r.profit = Money::ZERO;
        r
    }

    /// Bid for closing a buy, ask for closing a sell.
    fn close_price(&self, symbol: &str, side: Side) -> Option<Price> {
        let s = self.symbols.get(symbol)?;
        Some(match side {
            Side::Buy => s.bid,
            Side::Sell => s.ask,
        })
    }

    /// Profit of moving `volume` from `open` to `close` on `side`, in the account currency.
    fn profit(&self, symbol: &str, side: Side, volume: Volume, open: Price, close: Price) -> Money {
        let Some(s) = self.symbols.get(symbol) else {
            return Money::ZERO;
        };
        let tick = if s.spec.tick_size.is_positive() {
            s.spec.tick_size.0
        } else {
            s.spec.point.0
        };
        if tick.is_zero() {
            return Money::ZERO;
        }
        let diff = (close.0 - open.0) * Decimal::from(side.sign());
        let value = diff / tick * s.spec.tick_value.0 * volume.0;
        Money(value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero))
    }

    fn profit_of(&self, p: &Position) -> Money {
        match self.close_price(&p.symbol, p.side) {
            Some(close) => self.profit(&p.symbol, p.side, p.volume, p.price_open, close),
            None => Money::ZERO,
        }
    }

    fn margin_for(&self, symbol: &str, volume: Volume) -> Money {
        match self.symbols.get(symbol) {
            Some(s) => Money(s.spec.margin_per_lot.0 * volume.0),
            None => Money::ZERO,
        }
    }

    fn new_order(&mut self) -> OrderTicket {
        let t = OrderTicket(self.next_order);
        self.next_order += 1;
        t
    }

    fn new_deal(&mut self) -> DealTicket {
        let t = DealTicket(self.next_deal);
        self.next_deal += 1;
        t
    }

    fn reply(&mut self, retcode: Retcode, comment: impl Into<String>, symbol: &str) -> Reply {
        let mut r = Reply::new(CmdId::new(""), retcode, comment);
        r.request_id = self.next_request;
        self.next_request += 1;
        r.time = self.now;
        if let Some(s) = self.symbols.get(symbol) {
            r.bid = s.bid;
            r.ask = s.ask;
        }
        r
    }

    fn refuse(&mut self, retcode: Retcode, comment: impl Into<String>, symbol: &str) -> Execution {
        let reply = self.reply(retcode, comment, symbol);
        Execution {
            reply,
            txs: Vec::new(),
        }
    }

    // ----- quotes -----

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
        txs
    }

    fn expire_orders(&mut self, txs: &mut Vec<Tx>) {
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

    fn finish_working(&mut self, ticket: OrderTicket, state: OrderState, txs: &mut Vec<Tx>) {
        let Some(w) = self.working.remove(&ticket) else {
            return;
        };
        let mut record = w.record;
        record.state = state;
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
    }

    fn trigger_pending(&mut self, symbol: &str, txs: &mut Vec<Tx>) {
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
                    let mut upd = Tx::new(self.now, TradeTransactionType::OrderUpdate);
                    fill_order_fields(&mut upd, &record);
                    upd.order_record = Some(record);
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
    fn fill_remainders(&mut self, symbol: &str, txs: &mut Vec<Tx>) {
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

    fn fill_working(
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
                let mut upd = Tx::new(self.now, TradeTransactionType::OrderUpdate);
                fill_order_fields(&mut upd, &record);
                upd.order_record = Some(record);
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

    fn trigger_stops(&mut self, symbol: &str, txs: &mut Vec<Tx>) {
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
            let ticket = self.new_order();
            let order_type = OrderType::market(p.side.opposite());
            let mut record = OrderRecord {
                ticket,
                symbol: p.symbol.clone(),
                order_type,
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
                comment: format!(
                    "[{} {}]",
                    if reason == DealReason::Sl { "sl" } else { "tp" },
                    if reason == DealReason::Sl { p.sl } else { p.tp }
                ),
            };
            let mut add = Tx::new(self.now, TradeTransactionType::OrderAdd);
            fill_order_fields(&mut add, &record);
            add.order_record = Some(record.clone());
            txs.push(add);
            txs.extend(self.apply_deal(
                symbol,
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
            let mut del = Tx::new(self.now, TradeTransactionType::OrderDelete);
            fill_order_fields(&mut del, &record);
            del.order_record = Some(record.clone());
            txs.push(del);
            let mut hist = Tx::new(self.now, TradeTransactionType::HistoryAdd);
            fill_order_fields(&mut hist, &record);
            hist.order_record = Some(record.clone());
            txs.push(hist);
            self.history_orders.push(record);
        }
    }

    // ----- deals and positions -----

    /// Margin the deal would add (0 when it only reduces exposure).
    fn added_margin(&self, symbol: &str, side: Side, volume: Volume, close: PositionId) -> Money {
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
    fn apply_deal(
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
    fn open_position(
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

    // ----- requests -----

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

    /// `OrderCheck`: the margin the request needs and what would be left, without executing.
    pub fn check(&mut self, req: &TradeRequest) -> Reply {
        let symbol = req.symbol.clone();
        let retcode = match self.validate_market(req) {
            Ok(_) => Retcode(0),
            Err((code, _)) => code,
        };
        let side = req.order_type.side().unwrap_or(Side::Buy);
        let added = self.added_margin(&symbol, side, req.volume, req.position);
        let equity = self.equity();
        let margin = self.margin() + added;
        let mut reply = self.reply(
            if retcode.0 == 0 && margin > equity {
                Retcode::NO_MONEY
            } else if retcode.0 == 0 {
                Retcode(0)
            } else {
                retcode
            },
            "",
            &symbol,
        );
        reply.comment = if reply.retcode.0 == 0 {
            "Done".into()
        } else {
            reply.retcode.description().into()
        };
        let level = if margin.is_zero() {
            Money::ZERO
        } else {
            Money((equity.0 / margin.0 * dec(100)).round_dp(2))
        };
        reply.check = Some(CheckResult {
            balance: self.balance,
            equity,
            profit: self.floating_profit(),
            margin,
            margin_free: equity - margin,
            margin_level: level,
        });
        reply
    }

    fn spec(&self, symbol: &str) -> Option<&SymbolSpec> {
        self.symbols.get(symbol).map(|s| &s.spec)
    }

    fn check_volume(&self, spec: &SymbolSpec, volume: Volume) -> Result<(), (Retcode, String)> {
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

    fn resolve_filling(
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
    fn validate_market(&self, req: &TradeRequest) -> Result<OrderFilling, (Retcode, String)> {
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

    fn market(&mut self, req: &TradeRequest, reason: DealReason) -> Execution {
        let filling = match self.validate_market(req) {
            Ok(f) => f,
            Err((code, why)) => return self.refuse(code, why, &req.symbol),
        };
        let side = req.order_type.side().unwrap_or(Side::Buy);
        // Injected faults come before pricing, as a dealer's refusal would.
        let faults = self.config.faults.clone();
        if faults.reject_rate > 0.0 && self.rng.gen_bool(faults.reject_rate.clamp(0.0, 1.0)) {
            return self.refuse(
                Retcode::REJECT,
                "rejected by dealer (injected)",
                &req.symbol,
            );
        }
        if faults.requote_rate > 0.0 && self.rng.gen_bool(faults.requote_rate.clamp(0.0, 1.0)) {
            let code = if self.rng.gen_bool(0.5) {
                Retcode::REQUOTE
            } else {
                Retcode::PRICE_OFF
            };
            return self.refuse(
                code,
                format!("{} (injected)", code.description()),
                &req.symbol,
            );
        }
        let Some(s) = self.symbols.get(&req.symbol) else {
            return self.refuse(Retcode::INVALID, "unknown symbol", &req.symbol);
        };
        if !s.bid.is_positive() || !s.ask.is_positive() {
            return self.refuse(Retcode::PRICE_OFF, "no quotes", &req.symbol);
        }
        let market_price = if side == Side::Buy { s.ask } else { s.bid };
        if req.price.is_positive() {
            let allowed = s.spec.point.0 * Decimal::from(req.deviation);
            if (req.price.0 - market_price.0).abs() > allowed {
                return self.refuse(
                    Retcode::REQUOTE,
                    format!(
                        "price {} moved to {market_price}, beyond deviation {} points",
                        req.price, req.deviation
                    ),
                    &req.symbol,
                );
            }
        }
        let available = s.liquidity_left;
        let fill = match available {
            Some(left) => req.volume.min(left),
            None => req.volume,
        };
        if fill < req.volume {
            match filling {
                OrderFilling::Fok => {
                    return self.refuse(
                        Retcode::REJECT,
                        format!("fill or kill: only {fill} of {} available", req.volume),
                        &req.symbol,
                    )
                }
                _ if fill.is_zero() && filling == OrderFilling::Ioc => {
                    return self.refuse(
                        Retcode::PRICE_OFF,
                        "no liquidity at this price",
                        &req.symbol,
                    )
                }
                _ => {}
            }
        }
        let added = self.added_margin(&req.symbol, side, req.volume, req.position);
        if added.is_positive() && self.margin() + added > self.equity() {
            return self.refuse(
                Retcode::NO_MONEY,
                format!(
                    "needs margin {added}, free margin {}",
                    self.equity() - self.margin()
                ),
                &req.symbol,
            );
        }

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
        let mut add = Tx::new(self.now, TradeTransactionType::OrderAdd);
        fill_order_fields(&mut add, &record);
        add.order_record = Some(record.clone());
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

    fn pending(&mut self, req: &TradeRequest, reason: DealReason) -> Execution {
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
            return self.refuse(
                Retcode::INVALID_PRICE,
                format!("price {price} is on the wrong side of the market ({bid}/{ask})"),
                &req.symbol,
            );
        }
        if matches!(
            req.order_type,
            OrderType::BuyStopLimit | OrderType::SellStopLimit
        ) && !req.stoplimit.is_positive()
        {
            return self.refuse(
                Retcode::INVALID_PRICE,
                "stop-limit needs a stoplimit price",
                &req.symbol,
            );
        }
        if matches!(
            req.type_time,
            OrderTime::Specified | OrderTime::SpecifiedDay
        ) && req.expiration <= self.now
        {
            return self.refuse(
                Retcode::INVALID_EXPIRATION,
                "expiration is in the past",
                &req.symbol,
            );
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
        let mut add = Tx::new(self.now, TradeTransactionType::OrderAdd);
        fill_order_fields(&mut add, &record);
        add.order_record = Some(record.clone());
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

    fn sltp(&mut self, req: &TradeRequest) -> Execution {
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

    fn modify(&mut self, req: &TradeRequest) -> Execution {
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
        let mut tx = Tx::new(self.now, TradeTransactionType::OrderUpdate);
        fill_order_fields(&mut tx, &record);
        tx.order_record = Some(record.clone());
        let mut reply = self.reply(Retcode::DONE, "Request executed", &record.symbol);
        reply.order = record.ticket;
        let mut txs = vec![tx];
        self.trigger_pending(&record.symbol, &mut txs);
        Execution { reply, txs }
    }

    fn remove(&mut self, req: &TradeRequest) -> Execution {
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
    fn close_by(&mut self, req: &TradeRequest, reason: DealReason) -> Execution {
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
        for (p, other) in [(&a, &b), (&b, &a)] {
            let profit = self.profit(&p.symbol, p.side, volume, p.price_open, price);
            self.balance += profit;
            let mut after = p.clone();
            after.volume -= volume;
            after.time_update = self.now;
            if after.volume.is_zero() {
                self.drop_position(p.id);
            } else {
                self.put_position(after.clone());
            }
            let deal = DealRecord {
                ticket: self.new_deal(),
                order: ticket,
                position_id: p.id,
                time: self.now,
                deal_type: if p.side == Side::Buy {
                    DealType::Sell
                } else {
                    DealType::Buy
                },
                entry: DealEntry::OutBy,
                reason,
                magic: req.magic,
                volume,
                price,
                commission: Money::ZERO,
                swap: Money::ZERO,
                profit,
                fee: Money::ZERO,
                symbol: p.symbol.clone(),
                comment: format!("close #{} by #{}", p.id, other.id),
                external_id: String::new(),
            };
            deal_tickets.push(deal.ticket);
            let mut tx = Tx::new(self.now, TradeTransactionType::DealAdd);
            tx.deal = deal.ticket;
            tx.order = ticket;
            tx.symbol = p.symbol.clone();
            tx.deal_type = Some(deal.deal_type);
            tx.volume = volume;
            tx.price = price;
            tx.position = p.id;
            tx.position_by = other.id;
            tx.deal_record = Some(deal.clone());
            tx.position_record = Some(if after.volume.is_zero() {
                self.closed_record(&after)
            } else {
                self.position_record(&after)
            });
            txs.push(tx);
            self.deals.push(deal);
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
        let mut hist = Tx::new(self.now, TradeTransactionType::HistoryAdd);
        fill_order_fields(&mut hist, &record);
        hist.order_record = Some(record.clone());
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
}

fn fill_order_fields(tx: &mut Tx, o: &OrderRecord) {
    tx.order = o.ticket;
    tx.symbol = o.symbol.clone();
    tx.order_type = Some(o.order_type);
    tx.order_state = Some(o.state);
    tx.time_type = Some(o.type_time);
    tx.expiration = o.expiration;
    tx.price = o.price_open;
    tx.price_trigger = o.price_stoplimit;
    tx.sl = o.sl;
    tx.tp = o.tp;
    tx.volume = o.volume_current;
    tx.position = o.position_id;
    tx.position_by = o.position_by_id;
}
