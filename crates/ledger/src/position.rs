//! Read-only views of active and history positions, with typed properties.

use crate::codec::{self, LinkKind};
use crate::ledger::{ActivePos, Frag, HistPos, Ledger};
use hedge_domain::fixed::{self, from_units};
use hedge_domain::{
    DealTicket, Magic, Money, OrderTicket, OrderType, PositionId, Price, Side, SymbolSpec, Volume,
};
use rust_decimal::Decimal;

/// One deal (or the fragment of a deal) inside a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DealFragment {
    pub ticket: DealTicket,
    pub time_msc: i64,
    pub volume: Volume,
    pub price: Price,
    /// The deal's commission in proportion to this fragment's volume.
    pub commission: Money,
    /// The deal's swap in proportion to this fragment's volume.
    pub swap: Money,
}

impl From<&Frag> for DealFragment {
    fn from(f: &Frag) -> Self {
        DealFragment {
            ticket: DealTicket(f.deal),
            time_msc: f.time,
            volume: Volume(from_units(f.vol)),
            price: Price(from_units(f.price)),
            commission: Money(from_units(f.comm)),
            swap: Money(from_units(f.swap)),
        }
    }
}

/// Facts about an order as the ledger knows them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OrderInfo {
    pub ticket: OrderTicket,
    pub order_type: OrderType,
    pub magic: Magic,
    pub price_setup: Price,
    pub volume_setup: Volume,
    pub time_setup_msc: i64,
    pub time_done_msc: i64,
    pub state: hedge_domain::OrderState,
    pub comment: String,
}

struct Sums {
    vol: i64,
    pv: i128,
    comm: i64,
    swap: i64,
    time: i64,
}

fn sums<'a>(frags: impl Iterator<Item = &'a Frag>) -> Sums {
    let mut s = Sums {
        vol: 0,
        pv: 0,
        comm: 0,
        swap: 0,
        time: 0,
    };
    for f in frags {
        s.vol += f.vol;
        s.pv += f.price as i128 * f.vol as i128;
        s.comm += f.comm;
        s.swap += f.swap;
        s.time = s.time.max(f.time);
    }
    s
}

/// Profit in account currency (B §10, "Forex" mode): price difference in ticks × tick value × volume.
/// Commission and swap are not included.
pub fn profit(spec: &SymbolSpec, side: Side, entry: Price, exit: Price, volume: Volume) -> Money {
    let tick = if spec.tick_size.is_positive() {
        spec.tick_size.0
    } else {
        Decimal::ONE
    };
    let diff = (exit.0 - entry.0) * Decimal::from(side.sign());
    let value = diff
        .checked_div(tick)
        .and_then(|t| t.checked_mul(spec.tick_value.0))
        .and_then(|t| t.checked_mul(volume.0))
        .unwrap_or(Decimal::ZERO);
    Money(value)
}

/// An open bi-directional position.
#[derive(Clone, Copy)]
pub struct ActivePosition<'a> {
    pub(crate) ledger: &'a Ledger,
    pub(crate) pos: &'a ActivePos,
}

impl<'a> ActivePosition<'a> {
    /// Stable identity: the ticket of the opening order (the position id on hedging accounts).
    pub fn id(&self) -> PositionId {
        PositionId(self.pos.id)
    }
    pub fn entry_order(&self) -> OrderTicket {
        OrderTicket(self.pos.entry_order)
    }
    pub fn symbol(&self) -> &'a str {
        self.ledger.symbols.get(self.pos.symbol)
    }
    pub fn side(&self) -> Side {
        self.pos.side
    }
    pub fn volume(&self) -> Volume {
        Volume(from_units(self.pos.volume()))
    }
    /// Volume-weighted average of the remaining entry deals.
    pub fn entry_price(&self) -> Price {
        let s = sums(self.pos.deals.iter());
        Price(fixed::weighted_average(s.pv, s.vol))
    }
    /// Time of the latest entry deal.
    pub fn entry_time_msc(&self) -> i64 {
        sums(self.pos.deals.iter()).time
    }
    /// The opening order's magic (a link magic marks an "unmanaged" position).
    pub fn entry_magic(&self) -> Magic {
        Magic(self.pos.entry_magic)
    }
    /// Opened by an order whose own magic was a link that matched nothing (shown "UNMANAGMENT").
    pub fn is_unmanaged(&self) -> bool {
        codec::is_link(Magic(self.pos.entry_magic))
    }
    pub fn entry_comment(&self) -> &'a str {
        self.ledger
            .order(self.pos.entry_order)
            .map(|o| self.ledger.comments.get(o.comment))
            .unwrap_or("")
    }
    pub fn entry_order_type(&self) -> OrderType {
        self.ledger
            .order(self.pos.entry_order)
            .map(|o| o.otype)
            .unwrap_or(OrderType::market(self.pos.side))
    }
    /// The pending stop-loss order protecting this position.
    pub fn stop_loss_order(&self) -> Option<OrderTicket> {
        self.pos.stop.map(OrderTicket)
    }
    /// The stop-loss level: the stop order's set price.
    pub fn stop_loss(&self) -> Option<Price> {
        let o = self.ledger.order(self.pos.stop?)?;
        Some(Price(from_units(o.price)))
    }
    /// The stop order's comment, which is the exit comment while a stop exists.
    pub fn stop_loss_comment(&self) -> Option<&'a str> {
        let o = self.ledger.order(self.pos.stop?)?;
        Some(self.ledger.comments.get(o.comment))
    }
    pub fn commission(&self) -> Money {
        Money(from_units(sums(self.pos.deals.iter()).comm))
    }
    pub fn swap(&self) -> Money {
        Money(from_units(sums(self.pos.deals.iter()).swap))
    }
    pub fn deals(&self) -> impl Iterator<Item = DealFragment> + 'a {
        self.pos.deals.iter().map(DealFragment::from)
    }
    /// Floating profit at `current` (Bid for long, Ask for short).
    pub fn profit(&self, spec: &SymbolSpec, current: Price) -> Money {
        profit(
            spec,
            self.side(),
            self.entry_price(),
            current,
            self.volume(),
        )
    }
}

impl std::fmt::Debug for ActivePosition<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivePosition")
            .field("id", &self.id())
            .field("symbol", &self.symbol())
            .field("side", &self.side())
            .field("volume", &self.volume())
            .field("entry_price", &self.entry_price())
            .finish()
    }
}

/// How a history position was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseKind {
    Market,
    StopLoss,
    TakeProfit,
}

/// A closed position (or one closed part of a position): entry deals matched with exit deals.
#[derive(Clone, Copy)]
pub struct HistoryPosition<'a> {
    pub(crate) ledger: &'a Ledger,
    pub(crate) pos: &'a HistPos,
}

impl<'a> HistoryPosition<'a> {
    pub fn id(&self) -> PositionId {
        PositionId(self.pos.id)
    }
    pub fn entry_order(&self) -> OrderTicket {
        OrderTicket(self.pos.entry_order)
    }
    pub fn exit_order(&self) -> OrderTicket {
        OrderTicket(self.pos.exit_order)
    }
    pub fn symbol(&self) -> &'a str {
        self.ledger.symbols.get(self.pos.symbol)
    }
    pub fn side(&self) -> Side {
        self.pos.side
    }
    pub fn volume(&self) -> Volume {
        Volume(from_units(
            self.ledger
                .entry_frags(self.pos)
                .iter()
                .map(|f| f.vol)
                .sum(),
        ))
    }
    pub fn entry_price(&self) -> Price {
        let s = sums(self.ledger.entry_frags(self.pos).iter());
        Price(fixed::weighted_average(s.pv, s.vol))
    }
    pub fn exit_price(&self) -> Price {
        let s = sums(self.ledger.exit_frags(self.pos).iter());
        Price(fixed::weighted_average(s.pv, s.vol))
    }
    pub fn entry_time_msc(&self) -> i64 {
        sums(self.ledger.entry_frags(self.pos).iter()).time
    }
    pub fn exit_time_msc(&self) -> i64 {
        sums(self.ledger.exit_frags(self.pos).iter()).time
    }
    pub fn entry_magic(&self) -> Magic {
        Magic(
            self.ledger
                .order(self.pos.entry_order)
                .map(|o| o.magic)
                .unwrap_or(0),
        )
    }
    pub fn exit_magic(&self) -> Magic {
        Magic(
            self.ledger
                .order(self.pos.exit_order)
                .map(|o| o.magic)
                .unwrap_or(0),
        )
    }
    pub fn is_unmanaged(&self) -> bool {
        self.pos.entry_magic_is_link
    }
    pub fn entry_order_type(&self) -> OrderType {
        self.ledger
            .order(self.pos.entry_order)
            .map(|o| o.otype)
            .unwrap_or(OrderType::market(self.pos.side))
    }
    /// Closed by a stop-loss or take-profit typed order, or a plain close.
    pub fn close_kind(&self) -> CloseKind {
        match codec::decode(self.exit_magic()).and_then(|l| l.kind()) {
            Some(LinkKind::StopLoss) => CloseKind::StopLoss,
            Some(LinkKind::TakeProfit) => CloseKind::TakeProfit,
            _ => CloseKind::Market,
        }
    }
    /// The stop order shown as this position's SL: the executed stop that closed it, else the last
    /// cancelled stop linked to it.
    pub fn stop_loss_order(&self) -> Option<OrderTicket> {
        (self.pos.sl_order != 0).then_some(OrderTicket(self.pos.sl_order))
    }
    pub fn stop_loss(&self) -> Option<Price> {
        let o = self.ledger.order(self.pos.sl_order)?;
        Some(Price(from_units(o.price)))
    }
    /// The exit price when the exit order was TP-typed.
    pub fn take_profit(&self) -> Option<Price> {
        (self.close_kind() == CloseKind::TakeProfit).then(|| self.exit_price())
    }
    pub fn entry_comment(&self) -> &'a str {
        self.ledger
            .order(self.pos.entry_order)
            .map(|o| self.ledger.comments.get(o.comment))
            .unwrap_or("")
    }
    pub fn exit_comment(&self) -> &'a str {
        self.ledger
            .order(self.pos.exit_order)
            .map(|o| self.ledger.comments.get(o.comment))
            .unwrap_or("")
    }
    pub fn commission(&self) -> Money {
        let a = sums(self.ledger.entry_frags(self.pos).iter()).comm;
        let b = sums(self.ledger.exit_frags(self.pos).iter()).comm;
        Money(from_units(a + b))
    }
    pub fn swap(&self) -> Money {
        let a = sums(self.ledger.entry_frags(self.pos).iter()).swap;
        let b = sums(self.ledger.exit_frags(self.pos).iter()).swap;
        Money(from_units(a + b))
    }
    pub fn entry_deals(&self) -> impl Iterator<Item = DealFragment> + 'a {
        self.ledger
            .entry_frags(self.pos)
            .iter()
            .map(DealFragment::from)
    }
    pub fn exit_deals(&self) -> impl Iterator<Item = DealFragment> + 'a {
        self.ledger
            .exit_frags(self.pos)
            .iter()
            .map(DealFragment::from)
    }
    pub fn profit(&self, spec: &SymbolSpec) -> Money {
        profit(
            spec,
            self.side(),
            self.entry_price(),
            self.exit_price(),
            self.volume(),
        )
    }
}

impl std::fmt::Debug for HistoryPosition<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryPosition")
            .field("id", &self.id())
            .field("exit_order", &self.exit_order())
            .field("symbol", &self.symbol())
            .field("side", &self.side())
            .field("volume", &self.volume())
            .field("entry_price", &self.entry_price())
            .field("exit_price", &self.exit_price())
            .finish()
    }
}

impl Ledger {
    /// Active positions, ascending by id.
    pub fn active_positions(&self) -> Vec<ActivePosition<'_>> {
        let mut v: Vec<ActivePosition<'_>> = self
            .active
            .values()
            .map(|pos| ActivePosition { ledger: self, pos })
            .collect();
        v.sort_by_key(|p| p.pos.id);
        v
    }

    /// The active position with this id.
    pub fn active(&self, id: PositionId) -> Option<ActivePosition<'_>> {
        self.active
            .get(&id.get())
            .map(|pos| ActivePosition { ledger: self, pos })
    }

    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// History positions in the order they were closed.
    pub fn history_positions(&self) -> impl ExactSizeIterator<Item = HistoryPosition<'_>> + '_ {
        self.history
            .iter()
            .map(move |pos| HistoryPosition { ledger: self, pos })
    }

    pub fn history_count(&self) -> usize {
        self.history.len()
    }

    /// Distinct positions fully closed: ids with history rows and no active remainder.
    pub fn closed_position_count(&self) -> usize {
        let mut ids: Vec<u64> = self
            .history
            .iter()
            .map(|h| h.id)
            .filter(|id| !self.active.contains_key(id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    /// Signed net volume (long positive) of the visible active positions on `symbol`.
    pub fn net_volume(&self, symbol: &str) -> Volume {
        let Some(sym) = self.symbols.lookup(symbol) else {
            return Volume::ZERO;
        };
        let units: i64 = self
            .active
            .values()
            .filter(|p| p.symbol == sym)
            .map(|p| p.volume() * p.side.sign() as i64)
            .sum();
        Volume(from_units(units))
    }

    /// Signed net volume per symbol, sorted by symbol, flat symbols included only if they have
    /// active positions.
    pub fn net_volumes(&self) -> Vec<(String, Volume)> {
        let mut m: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
        for p in self.active.values() {
            *m.entry(self.symbols.get(p.symbol)).or_default() += p.volume() * p.side.sign() as i64;
        }
        m.into_iter()
            .map(|(s, u)| (s.to_owned(), Volume(from_units(u))))
            .collect()
    }

    /// What the ledger knows about an order.
    pub fn order_info(&self, ticket: u64) -> Option<OrderInfo> {
        let o = self.order(ticket)?;
        Some(OrderInfo {
            ticket: OrderTicket(o.ticket),
            order_type: o.otype,
            magic: Magic(o.magic),
            price_setup: Price(from_units(o.price)),
            volume_setup: Volume(from_units(o.vol_initial)),
            time_setup_msc: o.time_setup,
            time_done_msc: o.time_done,
            state: o.state,
            comment: self.comments.get(o.comment).to_owned(),
        })
    }
}

impl Ledger {
    /// Decimals to print `symbol`'s prices with when no symbol spec says: the most any of its deal
    /// or order prices in the history has. `None` for a symbol the history does not name.
    pub fn price_digits(&self, symbol: &str) -> Option<u32> {
        let s = self.symbols.lookup(symbol)? as usize;
        Some(self.digits.get(s).copied().unwrap_or(0) as u32)
    }

    /// The price of each symbol's latest deal, sorted by symbol: the fallback for current prices
    /// when no quotes are given.
    pub fn last_prices(&self) -> Vec<(String, Price)> {
        let mut v: Vec<(String, Price)> = self
            .last_price
            .iter()
            .enumerate()
            .filter(|(_, &p)| p != 0)
            .map(|(s, &p)| (self.symbols.get(s as u32).to_owned(), Price(from_units(p))))
            .collect();
        v.sort();
        v
    }
}
