//! Synthetic netting-account histories of any size, for tests and benchmarks.
//!
//! The generator plays a trader working through link magics: it opens positions with market orders
//! (some filled in several deals, some only partly), closes and partially closes them with linked
//! counter-orders (occasionally for more than the position, which reverses the net position), places
//! stop-loss orders that are later cancelled or triggered, closes one position with two exit orders
//! whose fills interleave, closes through an exchange limit order carrying the stop-loss link, and
//! now and then repeats a close that was already consumed. Prices move within each symbol's real
//! range and digits (EURUSD ~1.08000, USDJPY ~150.000, XAUUSD ~2000.00). Records come out as a stream in time order, each order before its deals, so a
//! million-deal history never has to sit in memory; [`generate`] collects a small one.

use crate::codec::{encode, LinkKind};
use crate::record::{History, HistoryLine, LedgerAccount, LedgerDeal, LedgerOrder};
use hedge_domain::{
    DealEntry, DealTicket, DealType, Magic, Money, OrderState, OrderTicket, OrderType, PositionId,
    Price, Side, Volume,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use std::collections::VecDeque;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Number of trade deals to produce (the stream stops at the first order boundary after it).
    pub deals: u64,
    pub seed: u64,
    /// Symbols traded (EURUSD, GBPUSD, ... are used in turn).
    pub symbols: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            deals: 1000,
            seed: 1,
            symbols: 3,
        }
    }
}

const SYMBOLS: &[&str] = &[
    "EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "AUDUSD", "USDCHF", "NZDUSD", "USDCAD",
];

/// Each symbol's price as a trader knows it: (starting price in points, digits, largest step in
/// points). A USDJPY at 1.497 or gold with five decimals would look wrong in every report.
const MARKETS: &[(i64, u32, i64)] = &[
    (108_000, 5, 20),
    (127_000, 5, 25),
    (150_000, 3, 20),
    (200_000, 2, 60),
    (66_000, 5, 15),
    (88_000, 5, 15),
    (61_000, 5, 15),
    (136_000, 5, 20),
];

struct Model {
    id: u64,
    symbol: usize,
    side: Side,
    /// Remaining volume in 0.01 lots.
    remaining: u64,
    stop: Option<Stop>,
}

/// A working stop order: MT5 keeps its ticket, setup time and price through to its final state.
#[derive(Clone, Copy)]
struct Stop {
    ticket: u64,
    setup: i64,
    price: Price,
}

/// A stream of history lines.
pub struct Generator {
    rng: ChaCha8Rng,
    cfg: GenConfig,
    queue: VecDeque<HistoryLine>,
    open: Vec<Model>,
    closed: VecDeque<u64>,
    net: Vec<i64>,
    prices: Vec<i64>,
    next_order: u64,
    next_deal: u64,
    time: i64,
    deals_out: u64,
    started: bool,
}

impl Generator {
    pub fn new(cfg: GenConfig) -> Self {
        let n = cfg.symbols.clamp(1, SYMBOLS.len());
        Generator {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg: GenConfig { symbols: n, ..cfg },
            queue: VecDeque::new(),
            open: Vec::new(),
            closed: VecDeque::new(),
            net: vec![0; n],
            prices: (0..n).map(|i| MARKETS[i].0).collect(),
            next_order: 1_000_000,
            next_deal: 5_000_000,
            time: 1_700_000_000_000,
            deals_out: 0,
            started: false,
        }
    }

    fn tick(&mut self) -> i64 {
        self.time += self.rng.gen_range(1..5_000);
        self.time
    }

    fn price(&mut self, s: usize) -> Price {
        let (start, digits, step) = MARKETS[s];
        let p = &mut self.prices[s];
        // A random walk held within ±20 % of the start, so a long history stays plausible.
        *p = (*p + self.rng.gen_range(-step..=step)).clamp(start * 4 / 5, start * 6 / 5);
        Price(Decimal::new(*p, digits))
    }

    fn order(
        &mut self,
        s: usize,
        ty: OrderType,
        magic: Magic,
        vol: u64,
        state: OrderState,
        price: Price,
    ) -> u64 {
        self.next_order += self.rng.gen_range(1..4);
        let t = self.tick();
        let ticket = self.next_order;
        self.queue.push_back(HistoryLine::Order(LedgerOrder {
            ticket: OrderTicket(ticket),
            symbol: SYMBOLS[s].to_owned(),
            order_type: ty,
            state,
            magic,
            volume_initial: Volume(Decimal::new(vol as i64, 2)),
            volume_current: Volume::ZERO,
            price_open: price,
            time_setup_msc: t,
            time_done_msc: if state == OrderState::Placed { 0 } else { t },
            position_id: PositionId(0),
            comment: String::new(),
        }));
        ticket
    }

    fn deal(&mut self, order: u64, s: usize, side: Side, vol: u64) {
        self.next_deal += 1;
        let signed = vol as i64 * side.sign() as i64;
        let before = self.net[s];
        let after = before + signed;
        let entry = if before == 0 || before.signum() == signed.signum() {
            DealEntry::In
        } else if after == 0 || after.signum() == before.signum() {
            DealEntry::Out
        } else {
            DealEntry::InOut
        };
        self.net[s] = after;
        let price = self.price(s);
        let time = self.tick();
        let commission = Money(Decimal::new(-(vol as i64) * 7, 2));
        self.queue.push_back(HistoryLine::Deal(LedgerDeal {
            ticket: DealTicket(self.next_deal),
            order: OrderTicket(order),
            symbol: SYMBOLS[s].to_owned(),
            deal_type: if side == Side::Buy {
                DealType::Buy
            } else {
                DealType::Sell
            },
            entry,
            magic: Magic(0),
            position_id: PositionId(0),
            volume: Volume(Decimal::new(vol as i64, 2)),
            price,
            commission,
            swap: Money::ZERO,
            profit: Money::ZERO,
            time_msc: time,
            comment: String::new(),
        }));
        self.deals_out += 1;
    }

    /// Splits `vol` into 1..=3 fills.
    fn fills(&mut self, vol: u64) -> Vec<u64> {
        let parts = if vol >= 3 && self.rng.gen_bool(0.2) {
            self.rng.gen_range(2..=3)
        } else {
            1
        };
        let mut out = Vec::new();
        let mut left = vol;
        for i in 0..parts {
            let v = if i + 1 == parts {
                left
            } else {
                self.rng.gen_range(1..=left - (parts - i - 1))
            };
            out.push(v);
            left -= v;
        }
        out.retain(|&v| v > 0);
        out
    }

    fn step(&mut self) {
        if !self.started {
            self.started = true;
            self.queue
                .push_back(HistoryLine::Account(LedgerAccount::default()));
            return;
        }
        let r: f64 = self.rng.gen();
        // A trader keeps a handful of positions open: open less the more are open.
        let open_p = match self.open.len() {
            0..=1 => 1.0,
            2..=9 => 0.40,
            10..=29 => 0.25,
            _ => 0.05,
        };
        if r < open_p {
            self.open_position();
        } else if r < open_p + 0.35 {
            self.close_position();
        } else if r < open_p + 0.48 {
            self.place_stop();
        } else if r < open_p + 0.55 {
            self.trigger_or_cancel_stop();
        } else if r < open_p + 0.58 {
            self.repeat_close();
        } else if r < open_p + 0.61 {
            self.interleaved_closes();
        } else if r < open_p + 0.63 {
            self.exchange_stop_close();
        } else {
            self.close_position();
        }
    }

    fn open_position(&mut self) {
        let s = self.rng.gen_range(0..self.cfg.symbols);
        let side = if self.rng.gen_bool(0.5) {
            Side::Buy
        } else {
            Side::Sell
        };
        let vol = self.rng.gen_range(1..=300u64);
        let magic = Magic(if self.rng.gen_bool(0.5) { 0 } else { 12345 });
        let partial = self.rng.gen_bool(0.05);
        let filled = if partial { vol.div_ceil(2) } else { vol };
        let ticket = self.order(
            s,
            OrderType::market(side),
            magic,
            vol,
            OrderState::Filled,
            Price::ZERO,
        );
        for v in self.fills(filled) {
            self.deal(ticket, s, side, v);
        }
        self.open.push(Model {
            id: ticket,
            symbol: s,
            side,
            remaining: filled,
            stop: None,
        });
    }

    fn close_position(&mut self) {
        let k = self.rng.gen_range(0..self.open.len());
        let (id, s, side, remaining, stop) = {
            let p = &self.open[k];
            (p.id, p.symbol, p.side, p.remaining, p.stop)
        };
        let excess = self.rng.gen_bool(0.04);
        let vol = if excess {
            remaining + self.rng.gen_range(1..=100)
        } else if self.rng.gen_bool(0.6) {
            remaining
        } else {
            self.rng.gen_range(1..=remaining)
        };
        let magic = encode(OrderTicket(id), LinkKind::Market).unwrap_or_default();
        // The stop goes first, as the ledger's plans do.
        if stop.is_some() && vol >= remaining {
            self.cancel_stop(k);
        }
        let ticket = self.order(
            s,
            OrderType::market(side.opposite()),
            magic,
            vol,
            OrderState::Filled,
            Price::ZERO,
        );
        for v in self.fills(vol) {
            self.deal(ticket, s, side.opposite(), v);
        }
        if vol >= remaining {
            self.open.swap_remove(k);
            self.closed.push_back(id);
            if self.closed.len() > 64 {
                self.closed.pop_front();
            }
            if vol > remaining {
                self.open.push(Model {
                    id: ticket,
                    symbol: s,
                    side: side.opposite(),
                    remaining: vol - remaining,
                    stop: None,
                });
            }
        } else {
            self.open[k].remaining -= vol;
        }
    }

    fn place_stop(&mut self) {
        let k = self.rng.gen_range(0..self.open.len());
        let (id, s, side, remaining) = {
            let p = &self.open[k];
            (p.id, p.symbol, p.side, p.remaining)
        };
        if self.open[k].stop.is_some() {
            self.cancel_stop(k);
        }
        let magic = encode(OrderTicket(id), LinkKind::StopLoss).unwrap_or_default();
        let ty = if side == Side::Buy {
            OrderType::SellStop
        } else {
            OrderType::BuyStop
        };
        let price = self.price(s);
        let ticket = self.order(s, ty, magic, remaining, OrderState::Placed, price);
        self.open[k].stop = Some(Stop {
            ticket,
            setup: self.time,
            price,
        });
    }

    fn cancel_stop(&mut self, k: usize) {
        let Some(stop) = self.open[k].stop.take() else {
            return;
        };
        let t = self.tick();
        let id = self.open[k].id;
        let s = self.open[k].symbol;
        let side = self.open[k].side;
        let magic = encode(OrderTicket(id), LinkKind::StopLoss).unwrap_or_default();
        self.queue.push_back(HistoryLine::Order(LedgerOrder {
            ticket: OrderTicket(stop.ticket),
            symbol: SYMBOLS[s].to_owned(),
            order_type: if side == Side::Buy {
                OrderType::SellStop
            } else {
                OrderType::BuyStop
            },
            state: OrderState::Canceled,
            magic,
            volume_initial: Volume(Decimal::new(self.open[k].remaining as i64, 2)),
            volume_current: Volume(Decimal::new(self.open[k].remaining as i64, 2)),
            price_open: stop.price,
            time_setup_msc: stop.setup,
            time_done_msc: t,
            position_id: PositionId(0),
            comment: String::new(),
        }));
    }

    fn trigger_or_cancel_stop(&mut self) {
        let Some(k) = self.open.iter().position(|p| p.stop.is_some()) else {
            self.open_position();
            return;
        };
        if self.rng.gen_bool(0.5) {
            self.cancel_stop(k);
            return;
        }
        let p = self.open.swap_remove(k);
        let Some(stop) = p.stop else { return };
        let t = self.tick();
        let magic = encode(OrderTicket(p.id), LinkKind::StopLoss).unwrap_or_default();
        let vol = Volume(Decimal::new(p.remaining as i64, 2));
        self.queue.push_back(HistoryLine::Order(LedgerOrder {
            ticket: OrderTicket(stop.ticket),
            symbol: SYMBOLS[p.symbol].to_owned(),
            order_type: if p.side == Side::Buy {
                OrderType::SellStop
            } else {
                OrderType::BuyStop
            },
            state: OrderState::Filled,
            magic,
            volume_initial: vol,
            volume_current: Volume::ZERO,
            price_open: stop.price,
            time_setup_msc: stop.setup,
            time_done_msc: t,
            position_id: PositionId(0),
            comment: String::new(),
        }));
        self.deal(stop.ticket, p.symbol, p.side.opposite(), p.remaining);
        self.closed.push_back(p.id);
    }

    /// Two partial closes of one position whose fills alternate (A, B, A), as two working exit
    /// orders on an exchange fill: still one history row per exit order.
    fn interleaved_closes(&mut self) {
        let Some(k) = self.open.iter().position(|p| p.remaining >= 4) else {
            self.open_position();
            return;
        };
        let (id, s, side) = (self.open[k].id, self.open[k].symbol, self.open[k].side);
        let quarter = self.open[k].remaining / 4;
        let magic = encode(OrderTicket(id), LinkKind::Market).unwrap_or_default();
        let ty = OrderType::market(side.opposite());
        let price = Price::ZERO;
        let a = self.order(s, ty, magic, 2 * quarter, OrderState::Filled, price);
        let b = self.order(s, ty, magic, quarter, OrderState::Filled, price);
        self.deal(a, s, side.opposite(), quarter);
        self.deal(b, s, side.opposite(), quarter);
        self.deal(a, s, side.opposite(), quarter);
        self.open[k].remaining -= 3 * quarter;
    }

    /// An exchange close sent as a limit order acting as a market order, carrying the stop-loss
    /// link (a close marked as SL): briefly pending, then filled. It is never the position's stop.
    fn exchange_stop_close(&mut self) {
        let k = self.rng.gen_range(0..self.open.len());
        let (id, s, side, remaining) = {
            let p = &self.open[k];
            (p.id, p.symbol, p.side, p.remaining)
        };
        if self.open[k].stop.is_some() {
            self.cancel_stop(k);
        }
        let magic = encode(OrderTicket(id), LinkKind::StopLoss).unwrap_or_default();
        let ty = match side {
            Side::Buy => OrderType::SellLimit,
            Side::Sell => OrderType::BuyLimit,
        };
        let price = self.price(s);
        let ticket = self.order(s, ty, magic, remaining, OrderState::Placed, price);
        let setup = self.time;
        let done = self.tick();
        self.queue.push_back(HistoryLine::Order(LedgerOrder {
            ticket: OrderTicket(ticket),
            symbol: SYMBOLS[s].to_owned(),
            order_type: ty,
            state: OrderState::Filled,
            magic,
            volume_initial: Volume(Decimal::new(remaining as i64, 2)),
            volume_current: Volume::ZERO,
            price_open: price,
            time_setup_msc: setup,
            time_done_msc: done,
            position_id: PositionId(0),
            comment: String::new(),
        }));
        self.deal(ticket, s, side.opposite(), remaining);
        let p = self.open.swap_remove(k);
        self.closed.push_back(p.id);
    }

    /// A close that names a position already closed: the ledger books it as a new position.
    fn repeat_close(&mut self) {
        let Some(&id) = self.closed.back() else {
            self.open_position();
            return;
        };
        let s = self.rng.gen_range(0..self.cfg.symbols);
        let side = if self.rng.gen_bool(0.5) {
            Side::Buy
        } else {
            Side::Sell
        };
        let vol = self.rng.gen_range(1..=50);
        let magic = encode(OrderTicket(id), LinkKind::Market).unwrap_or_default();
        let ticket = self.order(
            s,
            OrderType::market(side),
            magic,
            vol,
            OrderState::Filled,
            Price::ZERO,
        );
        self.deal(ticket, s, side, vol);
        self.open.push(Model {
            id: ticket,
            symbol: s,
            side,
            remaining: vol,
            stop: None,
        });
    }
}

impl Iterator for Generator {
    type Item = HistoryLine;

    fn next(&mut self) -> Option<HistoryLine> {
        loop {
            if let Some(line) = self.queue.pop_front() {
                return Some(line);
            }
            if self.deals_out >= self.cfg.deals {
                return None;
            }
            self.step();
        }
    }
}

/// A whole generated history, orders de-duplicated to their final state.
pub fn generate(cfg: GenConfig) -> History {
    let mut h = History::default();
    let mut order_index: std::collections::HashMap<u64, usize> = Default::default();
    for line in Generator::new(cfg) {
        match line {
            HistoryLine::Account(a) => h.account = a,
            HistoryLine::Order(o) => match order_index.get(&o.ticket.get()) {
                Some(&i) => h.orders[i] = o,
                None => {
                    order_index.insert(o.ticket.get(), h.orders.len());
                    h.orders.push(o);
                }
            },
            HistoryLine::Deal(d) => h.deals.push(d),
        }
    }
    h
}
