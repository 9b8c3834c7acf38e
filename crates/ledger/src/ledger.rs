//! The replay engine: deals in, bi-directional positions out.
//!
//! Every trade deal is integrated on its own, in execution-time order (ties by deal ticket). On a
//! netting account a deal's parent order either continues a position (same order), closes the active
//! position its link magic names (opposite direction, same symbol), or opens a position of its own. A
//! close takes volume from the position's oldest deals first and books a history position keyed by
//! (entry id, exit order); any excess volume becomes an opposite position of its own. The result is a
//! pure function of the history and the exclusions.

use crate::codec::{self, LinkKind};
use crate::fixed::{self, to_units};
use crate::record::{AccountInfo, DealRecord, History, OrderRecord};
use hedge_domain::{
    AccountMarginMode, DealEntry, DealTicket, Magic, OrderState, OrderTicket, OrderType,
    PositionId, Price, Side, Volume,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Tickets are not attacker-chosen hash keys: a multiplicative hash is enough and far cheaper than
/// SipHash on the per-deal path.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_u64(&mut self, x: u64) {
        let h = (self.0 ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 31);
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(x as u64);
    }
}

pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;
pub(crate) type IdSet = HashSet<u64, BuildHasherDefault<IdHasher>>;

/// How deals are assigned to positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairingMode {
    /// Netting accounts: link magics decide (HedgeTerminal's rules).
    Links,
    /// Hedging accounts: the deal's native position id decides.
    Native,
    /// Netting histories without magics (MT5 reports): `out` and `in/out` deals close the symbol's
    /// oldest opposite positions first, and the rest of an `in/out` opens the reversed position.
    Fifo,
}

impl PairingMode {
    /// The natural mode of an account.
    pub fn for_account(mode: AccountMarginMode) -> Self {
        if mode.is_netting() {
            PairingMode::Links
        } else {
            PairingMode::Native
        }
    }
}

/// A slice of one deal's volume, with its share of the deal's commission and swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frag {
    pub deal: u64,
    pub time: i64,
    pub price: i64,
    pub vol: i64,
    pub comm: i64,
    pub swap: i64,
}

impl Frag {
    /// Cuts `v` off this fragment, keeping commission and swap proportional; the sums stay exact.
    fn take(&mut self, v: i64) -> Frag {
        let comm = fixed::prorate(self.comm, v, self.vol);
        let swap = fixed::prorate(self.swap, v, self.vol);
        let taken = Frag {
            vol: v,
            comm,
            swap,
            ..*self
        };
        self.vol -= v;
        self.comm -= comm;
        self.swap -= swap;
        taken
    }
}

#[derive(Clone, Debug)]
pub(crate) struct OrderRow {
    pub ticket: u64,
    pub magic: u64,
    pub price: i64,
    pub vol_initial: i64,
    pub time_setup: i64,
    pub time_done: i64,
    pub comment: u32,
    pub symbol: u16,
    pub otype: OrderType,
    pub state: OrderState,
}

/// Deduplicated strings (symbols, comments); index 0 is the empty string.
#[derive(Debug)]
pub(crate) struct Interner {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, u32, BuildHasherDefault<IdHasher>>,
}

impl Default for Interner {
    fn default() -> Self {
        let mut i = Interner {
            names: Vec::new(),
            index: HashMap::default(),
        };
        i.intern("");
        i
    }
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.into());
        self.index.insert(s.into(), i);
        i
    }
    pub fn get(&self, i: u32) -> &str {
        self.names.get(i as usize).map(|s| &**s).unwrap_or("")
    }
    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.index.get(s).copied()
    }
}

const NO_HIST: u32 = u32::MAX;

#[derive(Clone, Debug)]
pub(crate) struct ActivePos {
    pub id: u64,
    pub entry_order: u64,
    pub entry_magic: u64,
    pub symbol: u32,
    pub side: Side,
    pub deals: VecDeque<Frag>,
    pub stop: Option<u64>,
    pub last_cancelled_sl: Option<u64>,
    pub last_hist: u32,
    pub seq: u32,
}

impl ActivePos {
    pub fn volume(&self) -> i64 {
        self.deals.iter().map(|f| f.vol).sum()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct HistPos {
    pub id: u64,
    pub entry_order: u64,
    pub exit_order: u64,
    pub sl_order: u64,
    pub frag_start: u32,
    pub n_entry: u16,
    pub n_exit: u16,
    pub symbol: u32,
    pub side: Side,
    pub entry_magic_is_link: bool,
}

/// Something in the history the ledger handled in a defined but noteworthy way.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
pub enum Warning {
    /// An order linked to a position on another symbol; it opened its own position instead.
    SymbolMismatch {
        order: OrderTicket,
        position: PositionId,
        order_symbol: String,
        position_symbol: String,
    },
    /// A deal ticket seen twice; the repeat was ignored.
    DuplicateDeal { deal: DealTicket },
    /// A pending stop order linked to a position with the wrong direction or symbol; not adopted.
    StopNotAdopted {
        order: OrderTicket,
        position: PositionId,
    },
    /// A hedging-account deal closed a position id the ledger does not hold; it opened its own.
    UnknownPosition {
        deal: DealTicket,
        position: PositionId,
    },
}

/// What happened to a position, in order, for idempotent reporting: `(position, seq)` is unique.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PositionEvent {
    pub position: PositionId,
    /// 1 for the opening event, then +1 for each later event of that position.
    pub seq: u32,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    Opened {
        side: Side,
        volume: Volume,
        price: Price,
    },
    /// More deals of the opening order (a multi-deal fill).
    Increased { volume: Volume },
    PartiallyClosed {
        exit_order: OrderTicket,
        volume: Volume,
        remaining: Volume,
    },
    Closed {
        exit_order: OrderTicket,
        volume: Volume,
    },
    /// The position's stop-loss order changed (`None`: no stop order any more).
    StopLossChanged {
        order: Option<OrderTicket>,
        price: Option<Price>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("deal {deal}: {what} {value} is not representable exactly (at most 8 decimals, |x| < 9.2e10)")]
    Inexact {
        deal: u64,
        what: &'static str,
        value: String,
    },
    #[error("order {order}: {what} {value} is not representable exactly")]
    InexactOrder {
        order: u64,
        what: &'static str,
        value: String,
    },
    #[error("deal {deal}: negative volume {volume}")]
    NegativeVolume { deal: u64, volume: Volume },
    #[error("order {order}: negative volume {volume}")]
    NegativeOrderVolume { order: u64, volume: Volume },
    #[error(
        "deal {deal} at {time} ms is older than the last replayed deal; replay the history again"
    )]
    OutOfOrder { deal: u64, time: i64 },
}

/// Counters from a replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayStats {
    pub trade_deals: u64,
    pub skipped_deals: u64,
    pub orders: u64,
}

/// Bi-directional positions of one account.
#[derive(Debug)]
pub struct Ledger {
    pub(crate) mode: PairingMode,
    pub(crate) account: AccountInfo,
    pub(crate) symbols: Interner,
    pub(crate) comments: Interner,
    pub(crate) orders: Vec<OrderRow>,
    pub(crate) active: IdMap<ActivePos>,
    pub(crate) history: Vec<HistPos>,
    pub(crate) frags: Vec<Frag>,
    fifo: HashMap<u32, VecDeque<u64>>,
    last_key: (i64, u64),
    live_deals: IdSet,
    live: bool,
    pub(crate) orphan_stops: Vec<OrderTicket>,
    pub(crate) warnings: Vec<Warning>,
    events: Option<Vec<PositionEvent>>,
    pub(crate) hidden: Vec<PositionId>,
    pub(crate) stats: ReplayStats,
    /// id → last history index; built on the first live lookup that misses the recent window, then
    /// kept current.
    hist_by_id: Option<IdMap<u32>>,
    /// Reused buffers for the entry and exit fragments of a close.
    scratch: (Vec<Frag>, Vec<Frag>),
    /// Index of the last order found for a deal: deals mostly come in order-ticket order, so the next
    /// lookup usually hits it or its neighbour without a binary search.
    order_hint: usize,
}

/// How many recent history rows a live cancellation searches before building the full index.
const RECENT_HISTORY: usize = 4096;

/// A trade deal reduced to what pairing needs.
struct Flat {
    order: u64,
    magic: u64,
    symbol: u32,
    side: Side,
    entry: DealEntry,
    position_id: u64,
    frag: Frag,
}

impl Ledger {
    /// An empty ledger for an account, pairing in the account's natural mode.
    pub fn new(account: AccountInfo) -> Self {
        let mode = PairingMode::for_account(account.margin_mode);
        Self::with_mode(account, mode)
    }

    /// An empty ledger with an explicit pairing mode.
    pub fn with_mode(account: AccountInfo, mode: PairingMode) -> Self {
        Ledger {
            mode,
            account,
            symbols: Interner::default(),
            comments: Interner::default(),
            orders: Vec::new(),
            active: IdMap::default(),
            history: Vec::new(),
            frags: Vec::new(),
            fifo: HashMap::new(),
            last_key: (i64::MIN, 0),
            live_deals: IdSet::default(),
            live: false,
            orphan_stops: Vec::new(),
            warnings: Vec::new(),
            events: None,
            hidden: Vec::new(),
            stats: ReplayStats::default(),
            hist_by_id: None,
            scratch: (Vec::new(), Vec::new()),
            order_hint: 0,
        }
    }

    /// Replays a whole history in the account's natural mode.
    pub fn replay(history: &History) -> Result<Ledger, LedgerError> {
        Self::replay_with(
            history,
            PairingMode::for_account(history.account.margin_mode),
            |_| {},
        )
    }

    /// Replays a whole history: every order is loaded, then every trade deal is integrated in
    /// (time, ticket) order, then cancelled stop orders are attached, then pending stop orders are
    /// adopted (the original's order of work). `progress` is called with the number of deals done.
    pub fn replay_with(
        history: &History,
        mode: PairingMode,
        mut progress: impl FnMut(u64),
    ) -> Result<Ledger, LedgerError> {
        let mut ledger = Ledger::with_mode(history.account.clone(), mode);
        // Capacity up front: untouched pages cost no memory, and growing by copying would.
        ledger.orders.reserve(history.orders.len());
        ledger.frags.reserve(history.deals.len() * 2);
        ledger.history.reserve(history.deals.len());
        for o in &history.orders {
            ledger.upsert_order(o)?;
        }
        let mut idx: Vec<u32> = (0..history.deals.len() as u32).collect();
        idx.sort_by_key(|&i| {
            let d = &history.deals[i as usize];
            (d.time_msc, d.ticket.get())
        });
        for (n, &i) in idx.iter().enumerate() {
            ledger.apply_deal(&history.deals[i as usize])?;
            if n % 65_536 == 0 {
                progress(n as u64);
            }
        }
        progress(idx.len() as u64);
        // Later records of a ticket replace earlier ones: only final states count below.
        let mut last: IdMap<usize> = IdMap::default();
        for (i, o) in history.orders.iter().enumerate() {
            last.insert(o.ticket.get(), i);
        }
        let is_final = |i: usize, o: &OrderRecord| last.get(&o.ticket.get()) == Some(&i);
        let mut cancelled: Vec<&OrderRecord> = history
            .orders
            .iter()
            .enumerate()
            .filter(|(i, o)| is_final(*i, o) && o.is_cancelled())
            .map(|(_, o)| o)
            .collect();
        cancelled.sort_by_key(|o| (o.time_done_msc, o.ticket.get()));
        let hist_index = ledger.history_index();
        for o in cancelled {
            ledger.attach_cancelled(o, Some(&hist_index));
        }
        let mut pending: Vec<&OrderRecord> = history
            .orders
            .iter()
            .enumerate()
            .filter(|(i, o)| is_final(*i, o) && o.is_pending())
            .map(|(_, o)| o)
            .collect();
        pending.sort_by_key(|o| o.ticket.get());
        for o in pending {
            ledger.adopt_pending(o);
        }
        Ok(ledger)
    }

    /// From now on, record position events (call after the initial replay, before live updates).
    pub fn track_events(&mut self) {
        self.live = true;
        if self.events.is_none() {
            self.events = Some(Vec::new());
        }
    }

    /// Takes the events recorded since the last call.
    pub fn drain_events(&mut self) -> Vec<PositionEvent> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Takes the stop orders that no longer protect anything (superseded, duplicate, or left behind by
    /// a close) and should be cancelled on the server.
    pub fn take_orphan_stops(&mut self) -> Vec<OrderTicket> {
        std::mem::take(&mut self.orphan_stops)
    }

    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    pub fn mode(&self) -> PairingMode {
        self.mode
    }

    pub fn account(&self) -> &AccountInfo {
        &self.account
    }

    /// A live order update: a new pending order, a modification, a fill, a cancellation.
    pub fn apply_order(&mut self, order: &OrderRecord) -> Result<(), LedgerError> {
        self.upsert_order(order)?;
        if order.is_pending() {
            self.adopt_pending(order);
        } else if order.is_cancelled() {
            self.attach_cancelled(order, None);
        }
        Ok(())
    }

    fn upsert_order(&mut self, o: &OrderRecord) -> Result<(), LedgerError> {
        let t = o.ticket.get();
        let bad = |what: &'static str, value: String| LedgerError::InexactOrder {
            order: t,
            what,
            value,
        };
        if o.volume_initial.is_negative() {
            return Err(LedgerError::NegativeOrderVolume {
                order: t,
                volume: o.volume_initial,
            });
        }
        let price =
            to_units(o.price_open.0).ok_or_else(|| bad("price", o.price_open.to_string()))?;
        let vol = to_units(o.volume_initial.0)
            .ok_or_else(|| bad("volume", o.volume_initial.to_string()))?;
        let row = OrderRow {
            ticket: t,
            magic: o.magic.get(),
            price,
            vol_initial: vol,
            time_setup: o.time_setup_msc,
            time_done: o.time_done_msc,
            symbol: u16::try_from(self.symbols.intern(&o.symbol))
                .map_err(|_| bad("symbol", format!("{:?}: more than 65535 symbols", o.symbol)))?,
            comment: self.comments.intern(&o.comment),
            otype: o.order_type,
            state: o.state,
        };
        match self.orders.last() {
            Some(last) if last.ticket < t => self.orders.push(row),
            None => self.orders.push(row),
            _ => match self.orders.binary_search_by_key(&t, |r| r.ticket) {
                Ok(i) => self.orders[i] = row,
                Err(i) => self.orders.insert(i, row),
            },
        }
        self.stats.orders = self.orders.len() as u64;
        Ok(())
    }

    pub(crate) fn order(&self, ticket: u64) -> Option<&OrderRow> {
        self.orders
            .binary_search_by_key(&ticket, |r| r.ticket)
            .ok()
            .map(|i| &self.orders[i])
    }

    /// Integrates one deal (replay or live). Non-trade deals (balance, credit, rollover, ...) are
    /// counted and skipped; they never open positions.
    pub fn apply_deal(&mut self, d: &DealRecord) -> Result<(), LedgerError> {
        let t = d.ticket.get();
        let key = (d.time_msc, t);
        if key <= self.last_key {
            if key == self.last_key || self.live_deals.contains(&t) {
                self.warnings
                    .push(Warning::DuplicateDeal { deal: d.ticket });
                return Ok(());
            }
            return Err(LedgerError::OutOfOrder {
                deal: t,
                time: d.time_msc,
            });
        }
        let Some(side) = d.deal_type.side() else {
            self.stats.skipped_deals += 1;
            self.last_key = key;
            return Ok(());
        };
        if d.order.get() == 0 {
            // Rollover / variation-margin deals and orphans carry no order: swap bookings only.
            self.stats.skipped_deals += 1;
            self.last_key = key;
            return Ok(());
        }
        if d.volume.is_negative() {
            return Err(LedgerError::NegativeVolume {
                deal: t,
                volume: d.volume,
            });
        }
        let inexact = |what: &'static str, value: String| LedgerError::Inexact {
            deal: t,
            what,
            value,
        };
        let vol = to_units(d.volume.0).ok_or_else(|| inexact("volume", d.volume.to_string()))?;
        let price = to_units(d.price.0).ok_or_else(|| inexact("price", d.price.to_string()))?;
        let comm = to_units(d.commission.0)
            .ok_or_else(|| inexact("commission", d.commission.to_string()))?;
        let swap = to_units(d.swap.0).ok_or_else(|| inexact("swap", d.swap.to_string()))?;
        self.last_key = key;
        if self.live {
            self.live_deals.insert(t);
        }
        self.stats.trade_deals += 1;
        if vol == 0 {
            return Ok(());
        }
        let order = d.order.get();
        let found = [self.order_hint, self.order_hint + 1]
            .into_iter()
            .find(|&i| self.orders.get(i).is_some_and(|r| r.ticket == order))
            .or_else(|| self.orders.binary_search_by_key(&order, |r| r.ticket).ok());
        if let Some(i) = found {
            self.order_hint = i;
        }
        let (magic, order_symbol) = match found.and_then(|i| self.orders.get(i)) {
            Some(row) => (row.magic, row.symbol as u32),
            None => (d.magic.get(), 0),
        };
        let symbol = if d.symbol.is_empty() {
            order_symbol
        } else {
            self.symbols.intern(&d.symbol)
        };
        let flat = Flat {
            order,
            magic,
            symbol,
            side,
            entry: d.entry,
            position_id: d.position_id.get(),
            frag: Frag {
                deal: t,
                time: d.time_msc,
                price,
                vol,
                comm,
                swap,
            },
        };
        match self.mode {
            PairingMode::Links => self.pair_by_link(flat),
            PairingMode::Native => self.pair_native(flat),
            PairingMode::Fifo => self.pair_fifo(flat),
        }
        Ok(())
    }

    fn pair_by_link(&mut self, f: Flat) {
        let link = codec::decode(Magic(f.magic));
        let key = link.map(|l| l.ticket.get()).unwrap_or(f.order);
        let Some(p) = self.active.get(&key) else {
            self.open_or_continue(f.order, f.magic, f.symbol, f.side, f.frag);
            return;
        };
        if p.entry_order == f.order {
            self.open_or_continue(f.order, f.magic, f.symbol, f.side, f.frag);
            return;
        }
        let links_here = link.is_some_and(|l| l.ticket.get() == p.id);
        if links_here && p.side != f.side {
            if p.symbol != f.symbol {
                self.warnings.push(Warning::SymbolMismatch {
                    order: OrderTicket(f.order),
                    position: PositionId(p.id),
                    order_symbol: self.symbols.get(f.symbol).to_owned(),
                    position_symbol: self.symbols.get(p.symbol).to_owned(),
                });
                self.open_or_continue(f.order, f.magic, f.symbol, f.side, f.frag);
                return;
            }
            let kind = link.and_then(|l| l.kind()).unwrap_or(LinkKind::Market);
            let mut frag = f.frag;
            self.close(key, f.order, kind, &mut frag);
            if frag.vol > 0 {
                self.open_or_continue(f.order, f.magic, f.symbol, f.side, frag);
            }
            return;
        }
        self.open_or_continue(f.order, f.magic, f.symbol, f.side, f.frag);
    }

    fn pair_native(&mut self, f: Flat) {
        let pid = if f.position_id != 0 {
            f.position_id
        } else {
            f.order
        };
        match self.active.get(&pid) {
            Some(p) if p.side != f.side => {
                let mut frag = f.frag;
                self.close(pid, f.order, LinkKind::Market, &mut frag);
                if frag.vol > 0 {
                    self.open_or_continue(f.order, f.magic, f.symbol, f.side, frag);
                }
            }
            Some(_) => self.append(pid, f.frag),
            None => {
                if matches!(f.entry, DealEntry::Out | DealEntry::OutBy) {
                    self.warnings.push(Warning::UnknownPosition {
                        deal: DealTicket(f.frag.deal),
                        position: PositionId(pid),
                    });
                    self.open_or_continue(f.order, f.magic, f.symbol, f.side, f.frag);
                } else {
                    self.insert_new(pid, f.order, f.magic, f.symbol, f.side, f.frag);
                }
            }
        }
    }

    fn pair_fifo(&mut self, f: Flat) {
        let mut frag = f.frag;
        if !matches!(f.entry, DealEntry::In) {
            while frag.vol > 0 {
                let Some(&front) = self.fifo.get(&f.symbol).and_then(|q| q.front()) else {
                    break;
                };
                match self.active.get(&front) {
                    Some(p) if p.side != f.side => {
                        self.close(front, f.order, LinkKind::Market, &mut frag);
                    }
                    Some(_) => break,
                    None => {
                        if let Some(q) = self.fifo.get_mut(&f.symbol) {
                            q.pop_front();
                        }
                    }
                }
            }
        }
        if frag.vol > 0 {
            self.open_or_continue(f.order, f.magic, f.symbol, f.side, frag);
        }
    }

    /// Appends to the active position with id `order` (merge by id), or opens it.
    fn open_or_continue(&mut self, order: u64, magic: u64, symbol: u32, side: Side, frag: Frag) {
        match self.active.get(&order) {
            Some(p) if p.side == side => self.append(order, frag),
            Some(_) => {
                // Same id, opposite direction: only possible with a corrupt history. Netting it keeps
                // the total consistent with the account.
                let mut frag = frag;
                self.close(order, order, LinkKind::Market, &mut frag);
                if frag.vol > 0 {
                    self.insert_new(order, order, magic, symbol, side, frag);
                }
            }
            None => self.insert_new(order, order, magic, symbol, side, frag),
        }
    }

    fn insert_new(
        &mut self,
        id: u64,
        entry_order: u64,
        magic: u64,
        symbol: u32,
        side: Side,
        frag: Frag,
    ) {
        let mut deals = VecDeque::with_capacity(1);
        deals.push_back(frag);
        let p = ActivePos {
            id,
            entry_order,
            entry_magic: magic,
            symbol,
            side,
            deals,
            stop: None,
            last_cancelled_sl: None,
            last_hist: NO_HIST,
            seq: 0,
        };
        self.active.insert(id, p);
        if self.mode == PairingMode::Fifo {
            self.fifo.entry(symbol).or_default().push_back(id);
        }
        self.emit(
            id,
            EventKind::Opened {
                side,
                volume: Volume(fixed::from_units(frag.vol)),
                price: Price(fixed::from_units(frag.price)),
            },
        );
    }

    fn append(&mut self, id: u64, frag: Frag) {
        if let Some(p) = self.active.get_mut(&id) {
            p.deals.push_back(frag);
        }
        self.emit(
            id,
            EventKind::Increased {
                volume: Volume(fixed::from_units(frag.vol)),
            },
        );
    }

    fn emit(&mut self, id: u64, kind: EventKind) {
        let Some(events) = self.events.as_mut() else {
            return;
        };
        let Some(p) = self.active.get_mut(&id) else {
            return;
        };
        p.seq += 1;
        events.push(PositionEvent {
            position: PositionId(id),
            seq: p.seq,
            kind,
        });
    }

    /// Closes position `id` FIFO with `out` (reduced in place by the volume used) and books the
    /// history position (id, exit_order).
    fn close(&mut self, id: u64, exit_order: u64, kind: LinkKind, out: &mut Frag) {
        let Some(mut p) = self.active.remove(&id) else {
            return;
        };
        let (mut hin, mut hout) = std::mem::take(&mut self.scratch);
        hin.clear();
        hout.clear();
        while out.vol > 0 {
            let Some(front) = p.deals.front_mut() else {
                break;
            };
            let v = front.vol.min(out.vol);
            hin.push(front.take(v));
            hout.push(out.take(v));
            if front.vol == 0 {
                p.deals.pop_front();
            }
        }
        let closed: i64 = hout.iter().map(|f| f.vol).sum();
        let sl_order = if kind == LinkKind::StopLoss {
            exit_order
        } else {
            p.last_cancelled_sl.unwrap_or(0)
        };
        let entry_magic_is_link = codec::is_link(Magic(p.entry_magic));
        // Fragment counts are u16: a row that would overflow starts a new row instead of merging.
        let merged = p.last_hist != NO_HIST
            && self.history.get(p.last_hist as usize).is_some_and(|h| {
                h.exit_order == exit_order
                    && h.id == p.id
                    && (h.n_entry as usize + hin.len()) < u16::MAX as usize
                    && (h.n_exit as usize + hout.len()) < u16::MAX as usize
            });
        if merged {
            self.merge_history(p.last_hist as usize, &hin, &hout);
            if let Some(h) = self.history.get_mut(p.last_hist as usize) {
                if kind == LinkKind::StopLoss {
                    h.sl_order = exit_order;
                }
            }
        } else {
            // hin and hout pair up one to one; rows hold at most u16::MAX - 1 pairs each.
            const CHUNK: usize = u16::MAX as usize - 1;
            for (ci, co) in hin.chunks(CHUNK).zip(hout.chunks(CHUNK)) {
                let start = self.frags.len() as u32;
                self.frags.extend_from_slice(ci);
                self.frags.extend_from_slice(co);
                p.last_hist = self.history.len() as u32;
                if let Some(ix) = self.hist_by_id.as_mut() {
                    ix.insert(p.id, p.last_hist);
                }
                self.history.push(HistPos {
                    id: p.id,
                    entry_order: p.entry_order,
                    exit_order,
                    sl_order,
                    frag_start: start,
                    n_entry: ci.len() as u16,
                    n_exit: co.len() as u16,
                    symbol: p.symbol,
                    side: p.side,
                    entry_magic_is_link,
                });
            }
        }
        let remaining = p.volume();
        if remaining > 0 {
            let pid = p.id;
            self.active.insert(pid, p);
            self.emit(
                pid,
                EventKind::PartiallyClosed {
                    exit_order: OrderTicket(exit_order),
                    volume: Volume(fixed::from_units(closed)),
                    remaining: Volume(fixed::from_units(remaining)),
                },
            );
        } else {
            if let Some(stop) = p.stop {
                if stop != exit_order {
                    self.orphan_stops.push(OrderTicket(stop));
                }
            }
            if let Some(events) = self.events.as_mut() {
                events.push(PositionEvent {
                    position: PositionId(p.id),
                    seq: p.seq + 1,
                    kind: EventKind::Closed {
                        exit_order: OrderTicket(exit_order),
                        volume: Volume(fixed::from_units(closed)),
                    },
                });
            }
            if self.mode == PairingMode::Fifo {
                if let Some(q) = self.fifo.get_mut(&p.symbol) {
                    if q.front() == Some(&p.id) {
                        q.pop_front();
                    } else {
                        q.retain(|&x| x != p.id);
                    }
                }
            }
        }
        self.scratch = (hin, hout);
    }

    fn merge_history(&mut self, hi: usize, hin: &[Frag], hout: &[Frag]) {
        let Some(h) = self.history.get(hi).cloned() else {
            return;
        };
        let start = h.frag_start as usize;
        let mid = start + h.n_entry as usize;
        let end = mid + h.n_exit as usize;
        let old_exit: Vec<Frag> = self.frags[mid..end].to_vec();
        let new_start = if end == self.frags.len() {
            self.frags.truncate(mid);
            start
        } else {
            let old_entry: Vec<Frag> = self.frags[start..mid].to_vec();
            let s = self.frags.len();
            self.frags.extend_from_slice(&old_entry);
            s
        };
        self.frags.extend_from_slice(hin);
        self.frags.extend_from_slice(&old_exit);
        self.frags.extend_from_slice(hout);
        if let Some(h) = self.history.get_mut(hi) {
            h.frag_start = new_start as u32;
            h.n_entry += hin.len() as u16;
            h.n_exit += hout.len() as u16;
        }
    }

    /// id → index of the last history position with that id.
    fn history_index(&self) -> IdMap<u32> {
        let mut m = IdMap::with_capacity_and_hasher(self.history.len(), Default::default());
        for (i, h) in self.history.iter().enumerate() {
            m.insert(h.id, i as u32);
        }
        m
    }

    fn find_history(&mut self, id: u64) -> Option<u32> {
        if let Some(ix) = &self.hist_by_id {
            return ix.get(&id).copied();
        }
        let n = self.history.len();
        let recent = self.history[n.saturating_sub(RECENT_HISTORY)..]
            .iter()
            .rposition(|h| h.id == id)
            .map(|i| (i + n.saturating_sub(RECENT_HISTORY)) as u32);
        if recent.is_some() || n <= RECENT_HISTORY {
            return recent;
        }
        let ix = self.history_index();
        let found = ix.get(&id).copied();
        self.hist_by_id = Some(ix);
        found
    }

    /// A cancelled or expired stop order: drop it from its active position, or show it as the SL of
    /// the closed position it protected (unless that one was closed by an executed stop).
    fn attach_cancelled(&mut self, o: &OrderRecord, index: Option<&IdMap<u32>>) {
        let Some(link) = codec::decode(o.magic) else {
            return;
        };
        if !(link.is_stop_loss() || link.is_take_profit()) {
            return;
        }
        let target = link.ticket.get();
        let t = o.ticket.get();
        if let Some(p) = self.active.get_mut(&target) {
            p.last_cancelled_sl = Some(t);
            if p.stop == Some(t) {
                p.stop = None;
                self.emit(
                    target,
                    EventKind::StopLossChanged {
                        order: None,
                        price: None,
                    },
                );
            }
            return;
        }
        let hi = match index {
            Some(ix) => ix.get(&target).copied(),
            None => self.find_history(target),
        };
        if let Some(h) = hi.and_then(|i| self.history.get_mut(i as usize)) {
            if h.sl_order == 0 || h.sl_order != h.exit_order {
                h.sl_order = t;
            }
        }
    }

    /// A pending stop-loss order linked to an active position becomes (or replaces) its stop.
    fn adopt_pending(&mut self, o: &OrderRecord) {
        let Some(link) = codec::decode(o.magic) else {
            return;
        };
        if !link.is_stop_loss() {
            return;
        }
        let target = link.ticket.get();
        let t = o.ticket.get();
        let Some(p) = self.active.get(&target) else {
            return;
        };
        let symbol_ok = o.symbol.is_empty() || self.symbols.get(p.symbol) == o.symbol;
        let side_ok = o.order_type.side() == Some(p.side.opposite());
        if !symbol_ok || !side_ok {
            self.warnings.push(Warning::StopNotAdopted {
                order: o.ticket,
                position: PositionId(target),
            });
            self.orphan_stops.push(o.ticket);
            return;
        }
        let previous = p.stop;
        if let Some(old) = previous {
            if old != t {
                self.orphan_stops.push(OrderTicket(old));
            }
        }
        if let Some(p) = self.active.get_mut(&target) {
            p.stop = Some(t);
        }
        self.emit(
            target,
            EventKind::StopLossChanged {
                order: Some(o.ticket),
                price: Some(o.price_open),
            },
        );
    }

    /// Hides the active positions whose ids are listed (exclusions). Pairing already happened, so a
    /// later order linking to a hidden position opens a position of its own.
    pub fn hide(&mut self, ids: &HashSet<u64>) -> usize {
        let before = self.active.len();
        let hidden: Vec<u64> = self
            .active
            .keys()
            .copied()
            .filter(|id| ids.contains(id))
            .collect();
        for id in hidden {
            if let Some(p) = self.active.remove(&id) {
                if let Some(q) = self.fifo.get_mut(&p.symbol) {
                    q.retain(|&x| x != id);
                }
                self.hidden.push(PositionId(id));
            }
        }
        self.hidden.sort();
        before - self.active.len()
    }

    /// Hides the active positions on symbols that have expired (futures past their expiration), as the
    /// original did at startup. Returns how many were hidden.
    pub fn hide_expired_symbols(&mut self, expired: &HashSet<String>) -> usize {
        let syms: HashSet<u32> = expired
            .iter()
            .filter_map(|s| self.symbols.lookup(s))
            .collect();
        let ids: HashSet<u64> = self
            .active
            .values()
            .filter(|p| syms.contains(&p.symbol))
            .map(|p| p.id)
            .collect();
        self.hide(&ids)
    }

    /// Ids hidden by exclusions.
    pub fn hidden(&self) -> &[PositionId] {
        &self.hidden
    }

    pub(crate) fn entry_frags(&self, h: &HistPos) -> &[Frag] {
        let s = h.frag_start as usize;
        &self.frags[s..s + h.n_entry as usize]
    }

    pub(crate) fn exit_frags(&self, h: &HistPos) -> &[Frag] {
        let s = h.frag_start as usize + h.n_entry as usize;
        &self.frags[s..s + h.n_exit as usize]
    }

    /// Bytes used by the order, history and fragment tables (lengths, not capacities), for the
    /// benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.orders.len() * std::mem::size_of::<OrderRow>()
            + self.history.len() * std::mem::size_of::<HistPos>()
            + self.frags.len() * std::mem::size_of::<Frag>()
    }
}
