//! What the client's status tells the center about money: the account block, the marks of the open
//! positions, and on netting accounts whether the ledger agrees with the terminal. Pure: the client
//! feeds it the terminal's state and its own books.

use crate::netting::NettingBook;
use hedge_center_api::model::{AccountMoney, PositionMark, Reconciliation};
use hedge_domain::{DealTicket, Money, PositionId, Price, Side, SymbolSpec, Volume};
use hedge_protocol::{AccountInfo, DealRecord, PositionRecord};
use std::collections::{BTreeSet, HashMap};

/// Everything the status carries besides the link state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Valuation {
    pub account: Option<AccountMoney>,
    pub marks: Vec<PositionMark>,
    pub reconciliation: Option<Reconciliation>,
}

/// The terminal's account info as the status's account block.
pub fn account_money(info: &AccountInfo) -> AccountMoney {
    AccountMoney {
        balance: info.balance,
        equity: info.equity,
        margin: info.margin,
        margin_free: info.margin_free,
        profit: info.profit,
        currency: info.currency.clone(),
    }
}

/// Commission per position, from the deals the agent has seen (live or in the history). A deal is
/// counted once however often it is seen.
#[derive(Clone, Debug, Default)]
pub struct Commissions {
    /// Each position's deals, sorted by ticket. A position has a deal or two, so a vector of
    /// them: a map per position would take a whole tree node (about 300 bytes) for its one deal,
    /// for every open position, for as long as it stays open.
    by_position: HashMap<PositionId, Vec<(DealTicket, Money)>>,
}

impl Commissions {
    pub fn record(&mut self, deal: &DealRecord) {
        if !deal.deal_type.is_trade() || deal.position_id.get() == 0 {
            return;
        }
        let deals = self.by_position.entry(deal.position_id).or_default();
        match deals.binary_search_by_key(&deal.ticket, |(ticket, _)| *ticket) {
            Ok(i) => deals[i].1 = deal.commission,
            Err(i) => deals.insert(i, (deal.ticket, deal.commission)),
        }
    }

    /// Records that `id`'s deals have been looked for, even if none was found.
    pub fn mark_known(&mut self, id: PositionId) {
        self.by_position.entry(id).or_default();
    }

    /// Whether `id`'s deals have been seen or looked for.
    pub fn knows(&self, id: PositionId) -> bool {
        self.by_position.contains_key(&id)
    }

    pub fn of(&self, id: PositionId) -> Money {
        self.by_position
            .get(&id)
            .map(|deals| deals.iter().map(|(_, commission)| *commission).sum())
            .unwrap_or(Money::ZERO)
    }

    /// Forgets positions that are no longer open.
    pub fn retain_open(&mut self, open: &BTreeSet<PositionId>) {
        self.by_position.retain(|id, _| open.contains(id));
    }
}

/// Marks of the terminal's own positions (hedging accounts, or netting reported natively).
pub fn terminal_marks(
    positions: &[PositionRecord],
    commissions: &Commissions,
) -> Vec<PositionMark> {
    let mut marks: Vec<PositionMark> = positions
        .iter()
        .filter(|p| p.volume.is_positive())
        .map(|p| PositionMark {
            position_id: p.identifier,
            price_current: p.price_current,
            swap: p.swap,
            profit: p.profit,
            commission: commissions.of(p.identifier),
        })
        .collect();
    marks.sort_by_key(|m| m.position_id);
    marks
}

/// The price a position of `side` closes at: bid for a buy, ask for a sell.
pub fn close_price(side: Side, bid: Price, ask: Price) -> Price {
    match side {
        Side::Buy => bid,
        Side::Sell => ask,
    }
}

/// Marks of the ledger's bi-directional positions: commission and swap are the position's share
/// of its deals (split by volume), profit is valued at `price(symbol, side)` with the symbol's
/// tick size and value. A position whose price or spec is unknown gets no mark.
pub fn ledger_marks(
    book: &NettingBook,
    price: impl Fn(&str, Side) -> Option<Price>,
    spec: impl Fn(&str) -> Option<SymbolSpec>,
) -> Vec<PositionMark> {
    let mut marks = book.marks(price, spec);
    marks.sort_by_key(|m| m.position_id);
    marks
}

/// The terminal's net volume of a symbol (buy positive).
pub fn terminal_net(positions: &[PositionRecord], symbol: &str) -> Volume {
    positions
        .iter()
        .filter(|p| p.symbol == symbol)
        .fold(Volume::ZERO, |a, p| match p.position_type.side() {
            Side::Buy => a + p.volume,
            Side::Sell => a - p.volume,
        })
}

/// Netting accounts: the ledger's net volume per symbol against the terminal's net position.
/// `ledger_net` gives the ledger's net of a symbol; `ledger_symbols` the symbols it holds.
pub fn reconcile_netting<'a>(
    ledger_symbols: impl IntoIterator<Item = &'a str>,
    ledger_net: impl Fn(&str) -> Volume,
    terminal: &[PositionRecord],
    checked_ms: i64,
) -> Reconciliation {
    let mut symbols: BTreeSet<&str> = ledger_symbols.into_iter().collect();
    symbols.extend(terminal.iter().map(|p| p.symbol.as_str()));
    let differing: Vec<String> = symbols
        .into_iter()
        .filter_map(|s| {
            let ledger = ledger_net(s);
            let actual = terminal_net(terminal, s);
            (ledger != actual).then(|| format!("{s}: ledger {ledger}, terminal {actual}"))
        })
        .collect();
    Reconciliation {
        ok: differing.is_empty(),
        detail: differing.join("; "),
        checked_ms,
    }
}

/// A netting account whose ledger could not be built: nothing to compare with.
pub fn ledger_unavailable(checked_ms: i64) -> Reconciliation {
    Reconciliation {
        ok: false,
        detail: "the ledger could not be rebuilt from the account's history".into(),
        checked_ms,
    }
}

/// Hedging accounts (and netting ones reported natively): the positions are the terminal's own.
pub fn reconciled(checked_ms: i64) -> Reconciliation {
    Reconciliation {
        ok: true,
        detail: String::new(),
        checked_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedge_domain::{AccountMarginMode, DealEntry, DealType, Login, Magic, PositionType};
    use rust_decimal_macros::dec;

    fn position(id: u64, symbol: &str, side: Side, volume: Volume) -> PositionRecord {
        PositionRecord {
            ticket: id,
            identifier: PositionId(id),
            symbol: symbol.into(),
            position_type: PositionType::from(side),
            volume,
            price_open: Price(dec!(1.1)),
            price_current: Price(dec!(1.2)),
            sl: Price::ZERO,
            tp: Price::ZERO,
            swap: Money(dec!(-0.5)),
            profit: Money(dec!(12.25)),
            magic: Magic(0),
            comment: String::new(),
            time: 1,
            time_update: 1,
            reason: 0,
        }
    }

    fn deal(
        ticket: u64,
        pos: u64,
        entry: DealEntry,
        t: DealType,
        vol: Volume,
        comm: Money,
    ) -> DealRecord {
        DealRecord {
            position_id: PositionId(pos),
            time: ticket as i64,
            commission: comm,
            ..DealRecord::trade(
                DealTicket(ticket),
                "EURUSD",
                t,
                entry,
                vol,
                Price(dec!(1.1)),
            )
        }
    }

    /// Deals seen out of order and again are each counted once, with what was seen last.
    #[test]
    fn commissions_count_each_deal_once_in_any_order() {
        let mut c = Commissions::default();
        let of = |ticket, commission| {
            deal(
                ticket,
                10,
                DealEntry::In,
                DealType::Buy,
                Volume(dec!(0.1)),
                Money(commission),
            )
        };
        for (ticket, commission) in [(3, dec!(-0.3)), (1, dec!(-0.1)), (2, dec!(-0.2))] {
            c.record(&of(ticket, commission));
        }
        c.record(&of(1, dec!(-0.1)));
        assert_eq!(c.of(PositionId(10)), Money(dec!(-0.6)));
        c.record(&of(2, dec!(-0.5)));
        assert_eq!(c.of(PositionId(10)), Money(dec!(-0.9)));
        assert_eq!(c.of(PositionId(11)), Money::ZERO);
    }

    #[test]
    fn terminal_marks_carry_commission_of_each_deal_once() {
        let mut c = Commissions::default();
        let d = deal(
            1,
            10,
            DealEntry::In,
            DealType::Buy,
            Volume(dec!(0.1)),
            Money(dec!(-0.7)),
        );
        c.record(&d);
        c.record(&d);
        c.record(&deal(
            2,
            10,
            DealEntry::In,
            DealType::Buy,
            Volume(dec!(0.1)),
            Money(dec!(-0.3)),
        ));
        let marks = terminal_marks(
            &[
                position(10, "EURUSD", Side::Buy, Volume(dec!(0.2))),
                position(11, "EURUSD", Side::Sell, Volume(dec!(0.1))),
            ],
            &c,
        );
        assert_eq!(marks.len(), 2);
        assert_eq!(marks[0].position_id, PositionId(10));
        assert_eq!(marks[0].commission, Money(dec!(-1.0)));
        assert_eq!(marks[0].profit, Money(dec!(12.25)));
        assert_eq!(marks[0].swap, Money(dec!(-0.5)));
        assert_eq!(marks[0].price_current, Price(dec!(1.2)));
        assert_eq!(marks[1].commission, Money::ZERO, "no deal known");
        c.retain_open(&BTreeSet::from([PositionId(11)]));
        assert!(!c.knows(PositionId(10)));
    }

    #[test]
    fn reconciliation_names_the_symbols_that_differ() {
        let terminal = vec![
            position(1, "EURUSD", Side::Buy, Volume(dec!(0.3))),
            position(2, "XAUUSD", Side::Sell, Volume(dec!(0.1))),
        ];
        let net = |s: &str| match s {
            "EURUSD" => Volume(dec!(0.3)),
            "GBPUSD" => Volume(dec!(0.2)),
            _ => Volume::ZERO,
        };
        let r = reconcile_netting(["EURUSD", "GBPUSD"], net, &terminal, 99);
        assert!(!r.ok);
        assert_eq!(r.checked_ms, 99);
        assert!(
            r.detail.contains("GBPUSD: ledger 0.2, terminal 0"),
            "{}",
            r.detail
        );
        assert!(
            r.detail.contains("XAUUSD: ledger 0, terminal -0.1"),
            "{}",
            r.detail
        );
        assert!(!r.detail.contains("EURUSD"), "{}", r.detail);
        let same = |s: &str| terminal_net(&terminal, s);
        assert!(reconcile_netting(["EURUSD"], same, &terminal, 1).ok);
    }

    #[test]
    fn ledger_marks_split_commission_and_value_each_side_at_its_own_price() {
        // Buy 0.3 with commission -0.9, then sell 0.1: first-in-first-out leaves buy 0.2 (two thirds
        // of the entry commission) and nothing else open.
        let deals = vec![
            deal(
                1,
                1,
                DealEntry::In,
                DealType::Buy,
                Volume(dec!(0.3)),
                Money(dec!(-0.9)),
            ),
            deal(
                2,
                1,
                DealEntry::Out,
                DealType::Sell,
                Volume(dec!(0.1)),
                Money(dec!(-0.3)),
            ),
        ];
        let book =
            NettingBook::replay(Login(1), AccountMarginMode::RetailNetting, &[], &deals).unwrap();
        let spec = SymbolSpec::forex("EURUSD", 5);
        let marks = ledger_marks(
            &book,
            |_, side| Some(close_price(side, Price(dec!(1.1010)), Price(dec!(1.1012)))),
            |_| Some(spec.clone()),
        );
        assert_eq!(marks.len(), 1);
        let m = &marks[0];
        assert_eq!(m.price_current, Price(dec!(1.1010)));
        assert_eq!(m.commission, Money(dec!(-0.6)));
        // 0.001 above the entry for 0.2 lots of a 100 000 contract: 20.
        assert_eq!(m.profit, Money(dec!(20)));
        let none = ledger_marks(&book, |_, _| None, |_| Some(spec.clone()));
        assert!(none.is_empty(), "no price, no mark");
    }
}
