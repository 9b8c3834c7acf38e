//! The replay engine: deals in, bi-directional positions out.
//!
//! Every trade deal is integrated on its own, in execution-time order (ties by deal ticket). On a
//! netting account a deal's parent order either continues a position (same order), closes the active
//! position its link magic names (opposite direction, same symbol), or opens a position of its own. A
//! close takes volume from the position's oldest deals first and books a history position keyed by
//! (entry id, exit order); any excess volume becomes an opposite position of its own. The result is a
//! pure function of the history and the exclusions.

use crate::codec::{self, LinkKind};
use crate::record::{History, LedgerAccount, LedgerDeal, LedgerOrder};
use hedge_domain::fixed::{self, to_units};
use hedge_domain::{
    AccountMarginMode, DealEntry, DealTicket, Magic, OrderState, OrderTicket, OrderType,
    PositionId, Price, Side, Volume,
};
use std::collections::{HashMap, VecDeque};

mod hide;
mod ids;
mod orders;
mod steps;
mod stops;

pub(crate) use steps::order_state_is_pending;
use steps::{replay_steps, StepKind};

pub(crate) use ids::{IdMap, IdSet, Interner};

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
    pub(crate) fn take(&mut self, v: i64) -> Frag {
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
    /// History rows booked while this position was open, by exit order: a close by an exit order
    /// already seen merges into its row, however the fills of several exits interleave.
    pub rows: Vec<(u64, u32)>,
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
    pub kind: PositionChange,
}

/// What one [`PositionEvent`] did to its bi-directional position (the center's event log has its
/// own, wider `EventKind`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PositionChange {
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
    pub(crate) account: LedgerAccount,
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
    /// Excluded ids and the deal time from which each is hidden (`None`: from its opening).
    pub(crate) excluded: IdMap<Option<i64>>,
    /// Timed exclusions not yet reached, latest first (popped from the end).
    pub(crate) exclusion_queue: Vec<(i64, u64)>,
    /// Hidden positions still receive their own opening order's deals (and, on hedging accounts,
    /// the deals naming their position id), so they never reappear as new positions.
    pub(crate) hidden_pos: IdMap<ActivePos>,
    /// Per symbol id: the most decimals seen in its deal and order prices (report digits when no
    /// symbol spec is given).
    pub(crate) digits: Vec<u8>,
    /// Per symbol id: the price of its latest deal (0: none).
    pub(crate) last_price: Vec<i64>,
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
    pub fn new(account: LedgerAccount) -> Self {
        let mode = PairingMode::for_account(account.margin_mode);
        Self::with_mode(account, mode)
    }

    /// An empty ledger with an explicit pairing mode.
    pub fn with_mode(account: LedgerAccount, mode: PairingMode) -> Self {
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
            excluded: IdMap::default(),
            exclusion_queue: Vec::new(),
            hidden_pos: IdMap::default(),
            digits: Vec::new(),
            last_price: Vec::new(),
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

    /// Replays a whole history without exclusions (see [`Ledger::replay_excluding`]).
    pub fn replay_with(
        history: &History,
        mode: PairingMode,
        progress: impl FnMut(u64),
    ) -> Result<Ledger, LedgerError> {
        Self::replay_excluding(history, mode, &[], progress)
    }

    /// Replays a whole history through the same steps a live feed takes, in time order: every
    /// order is loaded first (its final state), then trade deals, stop placements and stop
    /// cancellations are integrated by time (ties: orders before deals, then by ticket). A stop
    /// order counts as placed at its setup time and cancelled at its done time, so a history cut
    /// anywhere, replayed, and fed the rest live ends where the whole replay does.
    ///
    /// `exclusions` hides positions: `(id, None)` from the moment the position opens, `(id,
    /// Some(t))` once every deal at or before `t` ms is replayed. A hidden position no longer pairs
    /// with later closes (they open positions of their own, as the broker's net requires).
    /// `progress` is called with the number of deals done.
    pub fn replay_excluding(
        history: &History,
        mode: PairingMode,
        exclusions: &[(PositionId, Option<i64>)],
        mut progress: impl FnMut(u64),
    ) -> Result<Ledger, LedgerError> {
        let mut ledger = Ledger::with_mode(history.account.clone(), mode);
        for &(id, from) in exclusions {
            ledger.exclude(id, from);
        }
        // Capacity up front: untouched pages cost no memory, and growing by copying would.
        ledger.orders.reserve(history.orders.len());
        ledger.frags.reserve(history.deals.len() * 2);
        ledger.history.reserve(history.deals.len());
        for o in &history.orders {
            ledger.upsert_order(o)?;
        }
        let steps = replay_steps(history);
        let total = history.deals.len() as u64;
        let mut done = 0u64;
        for s in steps {
            match s.kind {
                StepKind::Deal => {
                    ledger.apply_deal(&history.deals[s.index as usize])?;
                    done += 1;
                    if done.is_multiple_of(65_536) {
                        progress(done);
                    }
                }
                StepKind::Place => ledger.adopt_pending(&history.orders[s.index as usize]),
                StepKind::Cancel => ledger.attach_cancelled(&history.orders[s.index as usize]),
            }
        }
        progress(total);
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

    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    pub fn mode(&self) -> PairingMode {
        self.mode
    }

    pub fn account(&self) -> &LedgerAccount {
        &self.account
    }

    /// A live order update: a new pending order, a modification, a fill, a cancellation.
    pub fn apply_order(&mut self, order: &LedgerOrder) -> Result<(), LedgerError> {
        self.upsert_order(order)?;
        if order.is_pending() {
            self.adopt_pending(order);
        } else if order.is_cancelled() {
            self.attach_cancelled(order);
        }
        Ok(())
    }

    fn upsert_order(&mut self, o: &LedgerOrder) -> Result<(), LedgerError> {
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
        let price = to_units(o.price_open.0).map_err(|_| bad("price", o.price_open.to_string()))?;
        let vol = to_units(o.volume_initial.0)
            .map_err(|_| bad("volume", o.volume_initial.to_string()))?;
        let symbol = self.symbols.intern(&o.symbol);
        self.note_price(symbol, price, false);
        let row = OrderRow {
            ticket: t,
            magic: o.magic.get(),
            price,
            vol_initial: vol,
            time_setup: o.time_setup_msc,
            time_done: o.time_done_msc,
            symbol: u16::try_from(symbol)
                .map_err(|_| bad("symbol", format!("{:?}: more than 65535 symbols", o.symbol)))?,
            comment: self.comments.intern(&o.comment),
            otype: o.order_type,
            state: o.state,
        };
        match self.orders.last() {
            Some(last) if last.ticket < t => self.orders.push(row),
            None => self.orders.push(row),
            _ => match orders::index_of(&self.orders, t) {
                Ok(i) => self.orders[i] = row,
                Err(i) => self.orders.insert(i, row),
            },
        }
        self.stats.orders = self.orders.len() as u64;
        Ok(())
    }

    /// Keeps the symbol's report digits (the most decimals of any of its prices) and, for deals,
    /// its latest price.
    fn note_price(&mut self, symbol: u32, price: i64, is_deal: bool) {
        let s = symbol as usize;
        if self.digits.len() <= s {
            self.digits.resize(s + 1, 0);
            self.last_price.resize(s + 1, 0);
        }
        if price != 0 {
            self.digits[s] = self.digits[s].max(fixed::decimals(price));
        }
        if is_deal {
            self.last_price[s] = price;
        }
    }

    /// Integrates one deal (replay or live). Non-trade deals (balance, credit, rollover, ...) are
    /// counted and skipped; they never open positions.
    pub fn apply_deal(&mut self, d: &LedgerDeal) -> Result<(), LedgerError> {
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
        let vol = to_units(d.volume.0).map_err(|_| inexact("volume", d.volume.to_string()))?;
        let price = to_units(d.price.0).map_err(|_| inexact("price", d.price.to_string()))?;
        let comm = to_units(d.commission.0)
            .map_err(|_| inexact("commission", d.commission.to_string()))?;
        let swap = to_units(d.swap.0).map_err(|_| inexact("swap", d.swap.to_string()))?;
        self.last_key = key;
        if self.live {
            self.live_deals.insert(t);
        }
        self.stats.trade_deals += 1;
        self.hide_reached(d.time_msc, false);
        if vol == 0 {
            self.hide_reached(d.time_msc, true);
            return Ok(());
        }
        let order = d.order.get();
        let found = [self.order_hint, self.order_hint + 1]
            .into_iter()
            .find(|&i| self.orders.get(i).is_some_and(|r| r.ticket == order))
            .or_else(|| orders::index_of(&self.orders, order).ok());
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
        self.note_price(symbol, price, true);
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
        self.hide_reached(d.time_msc, true);
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
        if self.hidden_pos.contains_key(&pid) {
            self.absorb_hidden(pid, f.order, f.magic, f.side, f.frag);
            return;
        }
        // The same close gives the same view on both account modes: a stop-loss or take-profit
        // typed link on the closing order marks the close as it does on netting accounts.
        let kind = codec::decode(Magic(f.magic))
            .filter(|l| l.ticket.get() == pid)
            .and_then(|l| l.kind())
            .unwrap_or(LinkKind::Market);
        match self.active.get(&pid) {
            Some(p) if p.side != f.side => {
                let mut frag = f.frag;
                self.close(pid, f.order, kind, &mut frag);
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
    pub(crate) fn open_or_continue(
        &mut self,
        order: u64,
        magic: u64,
        symbol: u32,
        side: Side,
        frag: Frag,
    ) {
        if self.hidden_pos.contains_key(&order) {
            self.absorb_hidden(order, order, magic, side, frag);
            return;
        }
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
        if self.excluded_at(id, frag.time) {
            self.hide_new(id, entry_order, magic, symbol, side, frag);
            return;
        }
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
            rows: Vec::new(),
            seq: 0,
        };
        self.active.insert(id, p);
        if self.mode == PairingMode::Fifo {
            self.fifo.entry(symbol).or_default().push_back(id);
        }
        self.emit(id, || PositionChange::Opened {
            side,
            volume: Volume(fixed::from_units(frag.vol)),
            price: Price(fixed::from_units(frag.price)),
        });
    }

    fn append(&mut self, id: u64, frag: Frag) {
        if let Some(p) = self.active.get_mut(&id) {
            p.deals.push_back(frag);
        }
        self.emit(id, || PositionChange::Increased {
            volume: Volume(fixed::from_units(frag.vol)),
        });
    }

    /// Records an event of active position `id`. The event is only built when events are tracked:
    /// a replay or a plain live ledger never reads them, so it should not pay for their decimals.
    fn emit(&mut self, id: u64, kind: impl FnOnce() -> PositionChange) {
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
            kind: kind(),
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
        // The row's S/L: the stop that executed it, else the stop that protected the position when
        // it closed (close plans cancel the stop just before the counter-order, hence the last
        // cancelled one).
        let sl_order = if kind == LinkKind::StopLoss {
            exit_order
        } else {
            p.stop.or(p.last_cancelled_sl).unwrap_or(0)
        };
        if p.stop == Some(exit_order) {
            p.stop = None;
        }
        self.book_history(&mut p, exit_order, kind, sl_order, &hin, &hout);
        let remaining = p.volume();
        if remaining > 0 {
            let pid = p.id;
            self.active.insert(pid, p);
            self.emit(pid, || PositionChange::PartiallyClosed {
                exit_order: OrderTicket(exit_order),
                volume: Volume(fixed::from_units(closed)),
                remaining: Volume(fixed::from_units(remaining)),
            });
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
                    kind: PositionChange::Closed {
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

    /// Books the closed fragments under (position, exit order): into that pair's row when one
    /// exists, else as a new row.
    fn book_history(
        &mut self,
        p: &mut ActivePos,
        exit_order: u64,
        kind: LinkKind,
        sl_order: u64,
        hin: &[Frag],
        hout: &[Frag],
    ) {
        // Fragment counts are u16: a row that would overflow starts a new row instead of merging.
        let existing = p
            .rows
            .iter()
            .rev()
            .find(|(exit, _)| *exit == exit_order)
            .map(|&(_, i)| i as usize)
            .filter(|&i| {
                self.history.get(i).is_some_and(|h| {
                    (h.n_entry as usize + hin.len()) < u16::MAX as usize
                        && (h.n_exit as usize + hout.len()) < u16::MAX as usize
                })
            });
        if let Some(i) = existing {
            self.merge_history(i, hin, hout);
            if let Some(h) = self.history.get_mut(i) {
                if kind == LinkKind::StopLoss {
                    h.sl_order = exit_order;
                }
            }
            return;
        }
        let entry_magic_is_link = codec::is_link(Magic(p.entry_magic));
        // hin and hout pair up one to one; rows hold at most u16::MAX - 1 pairs each.
        const CHUNK: usize = u16::MAX as usize - 1;
        for (ci, co) in hin.chunks(CHUNK).zip(hout.chunks(CHUNK)) {
            let start = self.frags.len() as u32;
            self.frags.extend_from_slice(ci);
            self.frags.extend_from_slice(co);
            let row = self.history.len() as u32;
            p.rows.retain(|(exit, _)| *exit != exit_order);
            p.rows.push((exit_order, row));
            if let Some(ix) = self.hist_by_id.as_mut() {
                ix.insert(p.id, row);
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
