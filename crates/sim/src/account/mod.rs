//! The trade server: one account, its symbols and quotes, positions, working orders and history.
//!
//! Pure and synchronous: time is given by the caller, randomness (fault injection) comes from a seeded
//! generator, so a sequence of calls always gives the same tickets, deals and retcodes. Every change
//! returns the trade transactions MT5 would report for it, in MT5's order.
//!
//! This file holds the account's state and what reads it; the engine's parts are `quotes.rs`
//! (fills, expiries, SL/TP and pending triggers), `deals.rs` (netting and hedging semantics),
//! `requests.rs` (validation, market and pending requests), `changes.rs` (SL/TP, modify,
//! remove, close-by), `order_check.rs` (`OrderCheck`) and `stop_out.rs` (the stop-out).

mod changes;
mod deals;
mod order_check;
mod quotes;
mod requests;
mod stop_out;

use crate::faults::Faults;
use crate::symbols::SimSymbol;
use hedge_domain::{
    AccountMarginMode, CmdId, DealEntry, DealReason, DealTicket, DealType, Login, Magic, Money,
    OrderFilling, OrderState, OrderTicket, OrderTime, OrderType, PositionId, PositionType, Price,
    Retcode, Side, SymbolSpec, TradeAction, TradeTransactionType, Volume,
};
use hedge_protocol::{
    AccountInfo, DealRecord, Filling, Hello, OrderRecord, PositionRecord, Reply, Snapshot,
    SymbolInfo, TimeMs, TradeRequest, Tx, PROTOCOL_VERSION,
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
    /// `ACCOUNT_MARGIN_SO_SO` in percent: when the margin level (equity / margin × 100) falls to it,
    /// the server closes the position with the largest loss, then the next, until the level is above
    /// it again (`DEAL_REASON_SO`). `None`: no stop-out.
    pub stop_out_level: Option<Decimal>,
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
            stop_out_level: None,
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
}

/// A transaction of `kind` about order `o`: its fields and the whole record.
fn order_tx(now: TimeMs, kind: TradeTransactionType, o: &OrderRecord) -> Tx {
    let mut tx = Tx::new(now, kind);
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
    tx.order_record = Some(o.clone());
    tx
}
