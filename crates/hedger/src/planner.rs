//! Which orders to send: the pure decision at the heart of the hedger.
//!
//! Inputs are the plan held in memory (per canonical symbol, the order that covers the clients' net
//! unhedged exposure, each item with its id), what the hedge account holds (positions, and the fills
//! that carry a hedge tag) and what the center has recorded. The output is a list of legs, each one
//! market order. Two rules make it safe to run again at any time, after a restart or a reconnect:
//! an item's remaining volume is its volume minus everything already executed or in flight for it
//! (the larger of what the account shows and what the center recorded), so an item is never
//! over-executed; and on a hedging account an item that points against existing hedge positions
//! closes them by position first, so the account never holds a hedge and its opposite at once.

use crate::tag::{item_of, PlanItemId};
use hedge_center_api::model::CommandId;
use hedge_domain::{
    DealTicket, Magic, OrderTicket, PositionId, Price, Rounding, Side, SymbolMap, SymbolSpec,
    Volume, VolumeError,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The order one item of the center's hedge plan asks for, reduced to what the decision needs (the
/// center's `PlanItem` also carries the exposure figures behind it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOrder {
    pub id: PlanItemId,
    /// Canonical symbol (`EURUSD`).
    pub symbol: String,
    /// The side of the hedge order (opposite of the clients' net exposure).
    pub side: Side,
    pub volume: Volume,
}

/// An open position on the hedge account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldPosition {
    pub id: PositionId,
    /// The account's symbol name.
    pub symbol: String,
    pub side: Side,
    pub volume: Volume,
    pub magic: Magic,
    pub comment: String,
}

impl HeldPosition {
    /// The plan item that opened this position, if a hedge order did.
    pub fn item(&self) -> Option<PlanItemId> {
        item_of(self.magic, &self.comment)
    }
}

/// A deal on the hedge account that carries a hedge tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub item: PlanItemId,
    pub deal: DealTicket,
    pub order: OrderTicket,
    pub position: PositionId,
    /// The account's symbol name.
    pub symbol: String,
    pub side: Side,
    pub volume: Volume,
    pub price: Price,
    /// Deal time, ms since the epoch.
    pub time: i64,
    /// The deal reduced a hedge (entry OUT) rather than opening one.
    #[serde(default)]
    pub closing: bool,
}

/// What has been done for each plan item: fills seen on the account, volumes the center recorded,
/// and orders sent whose outcome is not known yet.
#[derive(Clone, Debug, Default)]
pub struct HedgeBook {
    fills: BTreeMap<PlanItemId, Vec<Fill>>,
    deals: BTreeSet<DealTicket>,
    recorded_volume: BTreeMap<PlanItemId, Volume>,
    recorded_deals: BTreeSet<DealTicket>,
    in_flight: BTreeMap<PlanItemId, Volume>,
    /// Attempts spent on orders of an item that were given up.
    given_up: BTreeMap<PlanItemId, u32>,
}

impl HedgeBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a fill seen on the account (from history, a transaction or a reply). Returns false if the
    /// deal was already known, so a fill reported twice counts once.
    pub fn add_fill(&mut self, fill: Fill) -> bool {
        if !self.deals.insert(fill.deal) {
            return false;
        }
        self.fills.entry(fill.item).or_default().push(fill);
        true
    }

    /// What the center says it has recorded for an item: the total volume and the deals.
    pub fn set_recorded(
        &mut self,
        item: PlanItemId,
        volume: Volume,
        deals: impl IntoIterator<Item = DealTicket>,
    ) {
        let entry = self.recorded_volume.entry(item).or_insert(Volume::ZERO);
        if volume > *entry {
            *entry = volume;
        }
        self.recorded_deals.extend(deals);
    }

    /// Marks a fill as recorded in the center (after a successful report).
    pub fn mark_recorded(&mut self, deal: DealTicket) {
        self.recorded_deals.insert(deal);
    }

    pub fn begin(&mut self, item: PlanItemId, volume: Volume) {
        *self.in_flight.entry(item).or_insert(Volume::ZERO) += volume;
    }

    /// Ends an order in flight (whatever its outcome; a fill is added separately).
    pub fn end(&mut self, item: PlanItemId, volume: Volume) {
        if let Some(v) = self.in_flight.get_mut(&item) {
            *v -= volume;
            if !v.is_positive() {
                self.in_flight.remove(&item);
            }
        }
    }

    pub fn fills(&self, item: PlanItemId) -> &[Fill] {
        self.fills.get(&item).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn all_fills(&self) -> impl Iterator<Item = &Fill> {
        self.fills.values().flatten()
    }

    /// Volume executed for an item: the larger of the account's fills and the center's record (the
    /// account's history may be incomplete, the center may be behind; either alone may undercount).
    pub fn executed(&self, item: PlanItemId) -> Volume {
        let filled: Volume = self.fills(item).iter().map(|f| f.volume).sum();
        let recorded = self
            .recorded_volume
            .get(&item)
            .copied()
            .unwrap_or(Volume::ZERO);
        filled.max(recorded)
    }

    /// An order of `item` was given up after `attempts` attempts.
    pub fn gave_up(&mut self, item: PlanItemId, attempts: u32) {
        let used = self.given_up.entry(item).or_insert(0);
        *used = used.saturating_add(attempts);
    }

    pub fn attempts_used(&self, item: PlanItemId) -> u32 {
        self.given_up.get(&item).copied().unwrap_or(0)
    }

    pub fn in_flight(&self, item: PlanItemId) -> Volume {
        self.in_flight.get(&item).copied().unwrap_or(Volume::ZERO)
    }

    /// Fills on the account the center has not recorded yet, oldest first: what a restart must report
    /// before acting.
    pub fn unrecorded(&self) -> Vec<&Fill> {
        let mut out: Vec<&Fill> = self
            .all_fills()
            .filter(|f| !self.recorded_deals.contains(&f.deal))
            .collect();
        out.sort_by_key(|f| (f.time, f.deal));
        out
    }
}

/// One market order to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leg {
    pub item: PlanItemId,
    /// Canonical symbol.
    pub canonical: String,
    /// The account's symbol name.
    pub symbol: String,
    pub side: Side,
    pub volume: Volume,
    /// The hedge position this leg closes (hedging accounts), or `None` for a plain market order.
    pub close: Option<PositionId>,
    /// Netting accounts: the ledger link to the opening order of the hedge this leg reduces (the
    /// order's magic), so that the ledger takes the volume from that hedge and no other.
    pub link: Option<Magic>,
    /// The operator command this leg carries out (its comment and command id name the command
    /// instead of the plan item).
    pub command: Option<CommandId>,
    /// The leg takes back hedge volume (a close by position, or on a netting account a deal against
    /// the net hedge position) instead of adding to it.
    pub reduces: bool,
    /// Fills of the item already seen plus this leg's index: part of the command id, stable when the
    /// same decision is taken again.
    pub leg: u32,
    /// Attempts already used by earlier rounds of this item that were given up: the first attempt
    /// number of this leg's command ids.
    pub attempt_base: u32,
}

/// Why an item produced no order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Everything is executed or in flight.
    Done,
    /// The symbol's circuit breaker is open.
    Halted(String),
    /// The hedge account has no such symbol.
    UnknownSymbol(String),
    /// The remaining volume cannot be traded (below the minimum, bad step).
    Volume(VolumeError),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Done => f.write_str("already executed"),
            SkipReason::Halted(why) => write!(f, "symbol halted: {why}"),
            SkipReason::UnknownSymbol(s) => write!(f, "symbol {s} is not on the hedge account"),
            SkipReason::Volume(e) => write!(f, "{e}"),
        }
    }
}

/// The planner's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub legs: Vec<Leg>,
    pub skipped: Vec<(PlanItemId, SkipReason)>,
}

/// Everything about the hedge account the planner looks at.
pub struct AccountView<'a> {
    /// Netting accounts hold one position per symbol; hedging accounts one per order.
    pub netting: bool,
    /// Hedging accounts: the terminal's positions. Netting accounts: the hedges as the ledger
    /// keeps them, one position per hedge opening order.
    pub positions: &'a [HeldPosition],
    pub symbols: &'a SymbolMap,
    /// Specifications by the account's symbol name.
    pub specs: &'a HashMap<String, SymbolSpec>,
}

/// The legs that execute what remains of `items`. `halted` names the symbols whose breaker is open
/// (canonical name → reason).
pub fn plan(
    items: &[PlanOrder],
    account: &AccountView<'_>,
    book: &HedgeBook,
    halted: &BTreeMap<String, String>,
) -> Decision {
    let mut decision = Decision::default();
    // Volume of each hedge position already promised to an earlier leg of this decision.
    let mut claimed: HashMap<PositionId, Volume> = HashMap::new();
    for item in items {
        let done = book.executed(item.id) + book.in_flight(item.id);
        let remaining = item.volume - done;
        if !remaining.is_positive() {
            decision.skipped.push((item.id, SkipReason::Done));
            continue;
        }
        if let Some(why) = halted.get(&item.symbol) {
            decision
                .skipped
                .push((item.id, SkipReason::Halted(why.clone())));
            continue;
        }
        let symbol = account.symbols.to_account(&item.symbol);
        let Some(spec) = account.specs.get(&symbol) else {
            decision
                .skipped
                .push((item.id, SkipReason::UnknownSymbol(symbol)));
            continue;
        };
        let mut leg_no = u32::try_from(book.fills(item.id).len()).unwrap_or(u32::MAX);
        let mut left = remaining;
        let mut legs = Vec::new();
        // Hedge positions this item points against: reduce them instead of adding the opposite.
        let mut against: Vec<&HeldPosition> = account
            .positions
            .iter()
            .filter(|p| {
                p.symbol == symbol
                    && p.side == item.side.opposite()
                    && p.item().is_some()
                    && p.volume.is_positive()
            })
            .collect();
        against.sort_by_key(|p| p.id);
        for p in against {
            if !left.is_positive() {
                break;
            }
            let free = p.volume - claimed.get(&p.id).copied().unwrap_or(Volume::ZERO);
            if !free.is_positive() {
                continue;
            }
            // On a netting account the reduction is linked to the hedge's opening order (the
            // ledger's position id); a ticket the link cannot carry is left alone.
            let link = if account.netting {
                match crate::tag::close_link(OrderTicket(p.id.0)) {
                    Ok(m) => Some(m),
                    Err(_) => continue,
                }
            } else {
                None
            };
            let take = free.min(left);
            let volume = if take == p.volume {
                take
            } else {
                match spec.normalize_volume(take, Rounding::Down) {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            *claimed.entry(p.id).or_insert(Volume::ZERO) += volume;
            left -= volume;
            legs.push(Leg {
                item: item.id,
                canonical: item.symbol.clone(),
                symbol: symbol.clone(),
                side: item.side,
                volume,
                // Naming the position is for hedging accounts, where it is what prevents a new
                // position; on a netting account the link does that for the ledger.
                close: (!account.netting).then_some(p.id),
                link,
                command: None,
                reduces: true,
                leg: leg_no,
                attempt_base: book.attempts_used(item.id),
            });
            leg_no = leg_no.saturating_add(1);
        }
        if left.is_positive() {
            // Rounded down: an item is never executed beyond its volume (the center already rounds
            // plan volumes to the step, so this only matters for off-grid remainders).
            match spec.normalize_volume(left, Rounding::Down) {
                Ok(volume) => legs.push(Leg {
                    item: item.id,
                    canonical: item.symbol.clone(),
                    symbol: symbol.clone(),
                    side: item.side,
                    volume,
                    close: None,
                    link: None,
                    command: None,
                    reduces: false,
                    leg: leg_no,
                    attempt_base: book.attempts_used(item.id),
                }),
                Err(e) if legs.is_empty() => {
                    decision.skipped.push((item.id, SkipReason::Volume(e)));
                }
                Err(_) => {}
            }
        }
        decision.legs.extend(legs);
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::HedgeTag;
    use rust_decimal_macros::dec;

    fn v(d: rust_decimal::Decimal) -> Volume {
        Volume(d)
    }

    fn specs(names: &[&str]) -> HashMap<String, SymbolSpec> {
        names
            .iter()
            .map(|n| (n.to_string(), SymbolSpec::forex(*n, 5)))
            .collect()
    }

    fn item(id: u64, symbol: &str, side: Side, volume: Volume) -> PlanOrder {
        PlanOrder {
            id: PlanItemId(id),
            symbol: symbol.into(),
            side,
            volume,
        }
    }

    fn hedge_position(
        id: u64,
        symbol: &str,
        side: Side,
        volume: Volume,
        item: u64,
    ) -> HeldPosition {
        let tag = HedgeTag::new(PlanItemId(item)).unwrap();
        HeldPosition {
            id: PositionId(id),
            symbol: symbol.into(),
            side,
            volume,
            magic: tag.magic,
            comment: tag.comment,
        }
    }

    fn fill(item: u64, deal: u64, volume: Volume) -> Fill {
        Fill {
            item: PlanItemId(item),
            deal: DealTicket(deal),
            order: OrderTicket(deal),
            position: PositionId(deal),
            symbol: "EURUSD.h".into(),
            side: Side::Sell,
            volume,
            price: Price(dec!(1.1)),
            time: deal as i64,
            closing: false,
        }
    }

    #[test]
    fn every_item_becomes_one_open_leg_on_a_fresh_account() {
        let map = SymbolMap::from_affix(".h");
        let specs = specs(&["EURUSD.h", "XAUUSD.h"]);
        let account = AccountView {
            netting: false,
            positions: &[],
            symbols: &map,
            specs: &specs,
        };
        let items = [
            item(1, "EURUSD", Side::Sell, v(dec!(0.2))),
            item(2, "XAUUSD", Side::Buy, v(dec!(0.05))),
        ];
        let d = plan(&items, &account, &HedgeBook::new(), &BTreeMap::new());
        assert_eq!(d.legs.len(), 2);
        assert_eq!(d.legs[0].symbol, "EURUSD.h");
        assert_eq!(d.legs[0].side, Side::Sell);
        assert_eq!(d.legs[0].volume, v(dec!(0.2)));
        assert_eq!(d.legs[0].close, None);
        assert_eq!(d.legs[1].symbol, "XAUUSD.h");
        assert!(d.skipped.is_empty());
    }

    #[test]
    fn executed_and_in_flight_volume_is_not_sent_again() {
        let map = SymbolMap::from_affix(".h");
        let specs = specs(&["EURUSD.h"]);
        let account = AccountView {
            netting: true,
            positions: &[],
            symbols: &map,
            specs: &specs,
        };
        let items = [item(1, "EURUSD", Side::Sell, v(dec!(0.3)))];
        let mut book = HedgeBook::new();
        assert!(book.add_fill(fill(1, 10, v(dec!(0.1)))));
        assert!(!book.add_fill(fill(1, 10, v(dec!(0.1)))), "same deal twice");
        let d = plan(&items, &account, &book, &BTreeMap::new());
        assert_eq!(d.legs.len(), 1);
        assert_eq!(d.legs[0].volume, v(dec!(0.2)));
        assert_eq!(d.legs[0].leg, 1);

        book.begin(PlanItemId(1), v(dec!(0.2)));
        let d = plan(&items, &account, &book, &BTreeMap::new());
        assert!(d.legs.is_empty());
        assert_eq!(d.skipped, vec![(PlanItemId(1), SkipReason::Done)]);

        // The center recorded more than the account's history shows: trust the larger.
        book.end(PlanItemId(1), v(dec!(0.2)));
        book.set_recorded(PlanItemId(1), v(dec!(0.3)), []);
        let d = plan(&items, &account, &book, &BTreeMap::new());
        assert!(d.legs.is_empty());
    }

    #[test]
    fn halted_and_unknown_symbols_are_skipped_with_a_reason() {
        let map = SymbolMap::identity();
        let specs = specs(&["EURUSD"]);
        let account = AccountView {
            netting: true,
            positions: &[],
            symbols: &map,
            specs: &specs,
        };
        let items = [
            item(1, "EURUSD", Side::Sell, v(dec!(0.1))),
            item(2, "GBPUSD", Side::Sell, v(dec!(0.1))),
        ];
        let mut halted = BTreeMap::new();
        halted.insert("EURUSD".to_string(), "3 rejects".to_string());
        let d = plan(&items, &account, &HedgeBook::new(), &halted);
        assert!(d.legs.is_empty());
        assert!(matches!(d.skipped[0].1, SkipReason::Halted(_)));
        assert!(matches!(d.skipped[1].1, SkipReason::UnknownSymbol(_)));
    }

    #[test]
    fn hedging_account_reduces_by_position_and_opens_only_the_rest() {
        let map = SymbolMap::identity();
        let specs = specs(&["EURUSD"]);
        let positions = [
            hedge_position(100, "EURUSD", Side::Sell, v(dec!(0.2)), 1),
            hedge_position(101, "EURUSD", Side::Sell, v(dec!(0.1)), 1),
            // Not a hedge: never touched.
            HeldPosition {
                id: PositionId(50),
                symbol: "EURUSD".into(),
                side: Side::Sell,
                volume: v(dec!(5)),
                magic: Magic(0),
                comment: String::new(),
            },
        ];
        let account = AccountView {
            netting: false,
            positions: &positions,
            symbols: &map,
            specs: &specs,
        };
        // Clients reduced: buy 0.25 back.
        let d = plan(
            &[item(2, "EURUSD", Side::Buy, v(dec!(0.25)))],
            &account,
            &HedgeBook::new(),
            &BTreeMap::new(),
        );
        assert_eq!(d.legs.len(), 2);
        assert_eq!(d.legs[0].close, Some(PositionId(100)));
        assert_eq!(d.legs[0].volume, v(dec!(0.2)));
        assert_eq!(d.legs[1].close, Some(PositionId(101)));
        assert_eq!(d.legs[1].volume, v(dec!(0.05)));
        assert_ne!(d.legs[0].leg, d.legs[1].leg);

        // Clients reversed: close everything, open the rest.
        let d = plan(
            &[item(3, "EURUSD", Side::Buy, v(dec!(0.5)))],
            &account,
            &HedgeBook::new(),
            &BTreeMap::new(),
        );
        let closed: Volume = d
            .legs
            .iter()
            .filter(|l| l.close.is_some())
            .map(|l| l.volume)
            .sum();
        let opened: Volume = d
            .legs
            .iter()
            .filter(|l| l.close.is_none())
            .map(|l| l.volume)
            .sum();
        assert_eq!(closed, v(dec!(0.3)));
        assert_eq!(opened, v(dec!(0.2)));
    }

    #[test]
    fn netting_account_reduces_each_hedge_by_a_linked_order() {
        let map = SymbolMap::identity();
        let specs = specs(&["EURUSD"]);
        // The ledger's view: two hedges, each its own position (id = opening order ticket).
        let positions = [
            hedge_position(100, "EURUSD", Side::Sell, v(dec!(0.3)), 1),
            hedge_position(105, "EURUSD", Side::Sell, v(dec!(0.1)), 4),
        ];
        let account = AccountView {
            netting: true,
            positions: &positions,
            symbols: &map,
            specs: &specs,
        };
        let d = plan(
            &[item(2, "EURUSD", Side::Buy, v(dec!(0.1)))],
            &account,
            &HedgeBook::new(),
            &BTreeMap::new(),
        );
        assert_eq!(d.legs.len(), 1);
        assert_eq!(d.legs[0].close, None);
        assert!(d.legs[0].reduces);
        assert_eq!(d.legs[0].side, Side::Buy);
        let link = d.legs[0].link.expect("linked");
        assert_eq!(
            hedge_ledger::decode(link).map(|l| l.ticket),
            Some(OrderTicket(100))
        );

        // A reversal: linked orders take both hedges back, a plain one opens the new hedge.
        let d = plan(
            &[item(3, "EURUSD", Side::Buy, v(dec!(0.6)))],
            &account,
            &HedgeBook::new(),
            &BTreeMap::new(),
        );
        assert_eq!(d.legs.len(), 3);
        let linked: Vec<(Option<OrderTicket>, Volume)> = d
            .legs
            .iter()
            .map(|l| {
                (
                    l.link.and_then(hedge_ledger::decode).map(|k| k.ticket),
                    l.volume,
                )
            })
            .collect();
        assert_eq!(
            linked,
            vec![
                (Some(OrderTicket(100)), v(dec!(0.3))),
                (Some(OrderTicket(105)), v(dec!(0.1))),
                (None, v(dec!(0.2))),
            ]
        );
        assert!(d.legs[0].reduces && d.legs[1].reduces && !d.legs[2].reduces);
    }

    #[test]
    fn unrecorded_fills_are_listed_oldest_first() {
        let mut book = HedgeBook::new();
        book.add_fill(fill(2, 20, v(dec!(0.1))));
        book.add_fill(fill(1, 10, v(dec!(0.1))));
        book.mark_recorded(DealTicket(20));
        let open: Vec<DealTicket> = book.unrecorded().iter().map(|f| f.deal).collect();
        assert_eq!(open, vec![DealTicket(10)]);
    }

    proptest::proptest! {
        /// Executing the legs, then planning again any number of times, never trades an item beyond
        /// its volume and ends with nothing left to do.
        #[test]
        fn replanning_never_over_executes(
            volumes in proptest::collection::vec(1i64..500, 1..6),
            partial in proptest::collection::vec(0i64..100, 1..6),
            netting in proptest::bool::ANY,
        ) {
            let map = SymbolMap::identity();
            let specs = specs(&["EURUSD", "GBPUSD", "USDJPY"]);
            let names = ["EURUSD", "GBPUSD", "USDJPY"];
            let items: Vec<PlanOrder> = volumes.iter().enumerate().map(|(i, units)| PlanOrder {
                id: PlanItemId(i as u64 + 1),
                symbol: names[i % 3].to_string(),
                side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
                volume: Volume(rust_decimal::Decimal::new(*units, 2)),
            }).collect();
            let mut book = HedgeBook::new();
            let mut deal = 1u64;
            for round in 0..4 {
                let account = AccountView { netting, positions: &[], symbols: &map, specs: &specs };
                let d = plan(&items, &account, &book, &BTreeMap::new());
                for leg in d.legs {
                    // Fill a part of the leg in the first rounds (IOC partial fills), all of it later.
                    let pct = if round < 2 { partial[(deal as usize) % partial.len()] } else { 100 };
                    let filled = spec_down(leg.volume * rust_decimal::Decimal::new(pct, 2));
                    if filled.is_positive() {
                        book.add_fill(Fill { item: leg.item, deal: DealTicket(deal), order: OrderTicket(deal),
                            position: PositionId(deal), symbol: leg.symbol.clone(), side: leg.side,
                            volume: filled, price: Price::ZERO, time: deal as i64, closing: leg.reduces });
                        deal += 1;
                    }
                }
                for it in &items {
                    proptest::prop_assert!(book.executed(it.id) <= it.volume);
                }
            }
            let account = AccountView { netting, positions: &[], symbols: &map, specs: &specs };
            let d = plan(&items, &account, &book, &BTreeMap::new());
            proptest::prop_assert!(d.legs.is_empty());
            for it in &items {
                proptest::prop_assert_eq!(book.executed(it.id), it.volume);
            }
        }
    }

    fn spec_down(volume: Volume) -> Volume {
        hedge_domain::symbol::round_to_step(volume, Volume(dec!(0.01)), Rounding::Down)
            .unwrap_or(Volume::ZERO)
    }
}
