//! The hedges of a netting hedge account, one bi-directional position each.
//!
//! A netting terminal shows one net position per symbol, which cannot say which hedge is still
//! open. Every hedge order opens its own position in the ledger (its magic is the plan item's, not a
//! link), and every order that reduces or closes a hedge carries the ledger link to that hedge's
//! opening order, so replaying the account's deals yields exactly the hedges that are open, with
//! their volumes, on any machine and after any restart. The replay and the live updates are the
//! agents' [`NettingBook`]; this module keeps the records it needs to replay again, and reads the
//! hedges out of it.

use crate::planner::HeldPosition;
use crate::tag::item_from_magic;
use hedge_agent_runtime::netting::{NettingBook, NettingError};
use hedge_domain::{
    AccountMarginMode, DealReason, DealTicket, Login, OrderTicket, PositionId, Side, Volume,
};
use hedge_ledger::PairingMode;
use hedge_protocol::{DealRecord, OrderRecord, Tx};
use std::collections::{BTreeMap, BTreeSet};

/// The account's orders and deals, and the ledger replayed from them.
#[derive(Debug)]
pub struct HedgeLedger {
    login: Login,
    margin_mode: AccountMarginMode,
    orders: BTreeMap<OrderTicket, OrderRecord>,
    deals: BTreeMap<DealTicket, DealRecord>,
    book: NettingBook,
}

impl HedgeLedger {
    /// Replays the account's history.
    pub fn replay(
        login: Login,
        margin_mode: AccountMarginMode,
        orders: &[OrderRecord],
        deals: &[DealRecord],
    ) -> Result<Self, NettingError> {
        let orders: BTreeMap<OrderTicket, OrderRecord> =
            orders.iter().map(|o| (o.ticket, o.clone())).collect();
        let deals: BTreeMap<DealTicket, DealRecord> =
            deals.iter().map(|d| (d.ticket, d.clone())).collect();
        let book = Self::book(login, margin_mode, &orders, &deals)?;
        Ok(HedgeLedger {
            login,
            margin_mode,
            orders,
            deals,
            book,
        })
    }

    fn book(
        login: Login,
        margin_mode: AccountMarginMode,
        orders: &BTreeMap<OrderTicket, OrderRecord>,
        deals: &BTreeMap<DealTicket, DealRecord>,
    ) -> Result<NettingBook, NettingError> {
        let orders: Vec<OrderRecord> = orders.values().cloned().collect();
        let deals: Vec<DealRecord> = deals.values().cloned().collect();
        // Links from the first deal: every hedge order opens its own position, even one that
        // points against the account's own positions on the symbol.
        NettingBook::replay_with(login, margin_mode, PairingMode::Links, &orders, &deals)
    }

    /// A live transaction. A record the book cannot take incrementally (a deal older than the last
    /// one) is taken by replaying everything again; an error means even that failed, and the ledger
    /// is unchanged.
    pub fn apply(&mut self, tx: &Tx) -> Result<(), NettingError> {
        if tx.order_record.is_none() && tx.deal_record.is_none() {
            return Ok(());
        }
        let incremental = (|| {
            if let Some(o) = &tx.order_record {
                self.book.apply_order(o)?;
            }
            if let Some(d) = &tx.deal_record {
                self.book.apply_deal(d)?;
            }
            Ok::<(), NettingError>(())
        })();
        let mut orders = self.orders.clone();
        let mut deals = self.deals.clone();
        if let Some(o) = &tx.order_record {
            orders.insert(o.ticket, o.clone());
        }
        if let Some(d) = &tx.deal_record {
            deals.insert(d.ticket, d.clone());
        }
        if let Err(e) = incremental {
            tracing::debug!(error = %e, "live record replayed with the whole history");
            self.book = Self::book(self.login, self.margin_mode, &orders, &deals)?;
        }
        self.orders = orders;
        self.deals = deals;
        Ok(())
    }

    /// The open hedges: the ledger's positions opened by a hedge order, by position id (the
    /// opening order's ticket).
    ///
    /// A deal the hedger did not send (the broker's stop-loss, take-profit or stop-out, or a trade
    /// by hand: any reason but an expert's) carries no link, so the ledger takes it for a position
    /// of its own, while on the account it reduced the net position, i.e. the hedges. Such a deal
    /// closes the hedges on the other side that were open when it happened, oldest first, and its
    /// own position is no hedge. Without this the hedges would stay open here, and a linked close
    /// of one of them would open a reversed position on the account.
    pub fn hedges(&self) -> Vec<HeldPosition> {
        let mut external: Vec<&DealRecord> = self
            .deals
            .values()
            .filter(|d| d.deal_type.is_trade() && d.reason != DealReason::Expert)
            .collect();
        external.sort_by_key(|d| (d.time, d.ticket));
        let not_hedges: BTreeSet<PositionId> =
            external.iter().map(|d| PositionId(d.order.0)).collect();
        let mut rows: Vec<_> = self
            .book
            .rows()
            .into_iter()
            .filter(|r| {
                item_from_magic(r.magic).is_some()
                    && r.volume.is_positive()
                    && !not_hedges.contains(&r.id)
            })
            .collect();
        rows.sort_by_key(|r| (r.time, r.id));
        for deal in external {
            let Some(side) = deal.deal_type.side() else {
                continue;
            };
            let mut left = deal.volume;
            for r in rows.iter_mut().filter(|r| {
                r.symbol == deal.symbol && r.side == side.opposite() && r.time <= deal.time
            }) {
                if !left.is_positive() {
                    break;
                }
                let take = left.min(r.volume);
                r.volume -= take;
                left -= take;
            }
        }
        rows.into_iter()
            .filter(|r| r.volume.is_positive())
            .map(|r| HeldPosition {
                id: r.id,
                symbol: r.symbol,
                side: r.side,
                volume: r.volume,
                magic: r.magic,
                comment: String::new(),
            })
            .collect()
    }

    /// The open hedge opened by `order`, if any.
    pub fn hedge(&self, order: OrderTicket) -> Option<HeldPosition> {
        self.hedges()
            .into_iter()
            .find(|p| p.id == PositionId(order.0))
    }

    /// Net hedge volume per account symbol (buys positive), for a check against the terminal.
    pub fn hedge_net(&self, symbol: &str) -> Volume {
        self.hedges()
            .iter()
            .filter(|p| p.symbol == symbol)
            .map(|p| match p.side {
                Side::Buy => p.volume,
                Side::Sell => -p.volume,
            })
            .sum()
    }

    /// Whether the ledger has taken deal `ticket`.
    pub fn knows_deal(&self, ticket: DealTicket) -> bool {
        self.deals.contains_key(&ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::{close_link, HedgeTag, PlanItemId};
    use hedge_domain::{DealEntry, DealReason, DealType, Magic, Price, TradeTransactionType};
    use rust_decimal::Decimal;

    fn lots(v: i64) -> Volume {
        Volume(Decimal::new(v, 2))
    }

    fn deal(ticket: u64, t: DealType, entry: DealEntry, vol: i64, magic: Magic) -> DealRecord {
        DealRecord {
            // A netting terminal: one position id for the symbol.
            position_id: PositionId(1),
            time: 1_000 * ticket as i64,
            reason: DealReason::Expert,
            magic,
            ..DealRecord::trade(
                DealTicket(ticket),
                "EURUSD",
                t,
                entry,
                lots(vol),
                Price(Decimal::new(110_000 + ticket as i64, 5)),
            )
        }
    }

    fn tag(item: u64) -> Magic {
        HedgeTag::new(PlanItemId(item)).unwrap().magic
    }

    fn tx(d: DealRecord) -> Tx {
        let mut tx = Tx::new(d.time, TradeTransactionType::DealAdd);
        tx.deal_record = Some(d);
        tx
    }

    fn held(l: &HedgeLedger) -> Vec<(u64, Side, Volume)> {
        l.hedges()
            .iter()
            .map(|p| (p.id.0, p.side, p.volume))
            .collect()
    }

    #[test]
    fn each_hedge_is_its_own_position_and_a_linked_order_reduces_only_its_hedge() {
        // Two hedges on the same side: the terminal shows one net short of 0.5.
        let history = [
            deal(10, DealType::Sell, DealEntry::In, 20, tag(1)),
            deal(11, DealType::Sell, DealEntry::In, 30, tag(2)),
        ];
        let mut l =
            HedgeLedger::replay(Login(9), AccountMarginMode::RetailNetting, &[], &history).unwrap();
        assert_eq!(
            held(&l),
            vec![(10, Side::Sell, lots(20)), (11, Side::Sell, lots(30))]
        );
        // Reduce the second hedge (not the oldest: first-in-first-out would take the first).
        let link = close_link(OrderTicket(11)).unwrap();
        l.apply(&tx(deal(12, DealType::Buy, DealEntry::Out, 10, link)))
            .unwrap();
        assert_eq!(
            held(&l),
            vec![(10, Side::Sell, lots(20)), (11, Side::Sell, lots(20))]
        );
        // Close it.
        l.apply(&tx(deal(13, DealType::Buy, DealEntry::Out, 20, link)))
            .unwrap();
        assert_eq!(held(&l), vec![(10, Side::Sell, lots(20))]);
        assert_eq!(l.hedge_net("EURUSD"), -lots(20));
        assert!(l.hedge(OrderTicket(11)).is_none());
        assert!(l.hedge(OrderTicket(10)).is_some());

        // A restart replays the same history to the same hedges.
        let deals: Vec<DealRecord> = l.deals.values().cloned().collect();
        let again =
            HedgeLedger::replay(Login(9), AccountMarginMode::RetailNetting, &[], &deals).unwrap();
        assert_eq!(held(&again), held(&l));
    }

    #[test]
    fn positions_that_are_not_hedges_are_left_out_and_a_repeat_changes_nothing() {
        let own = deal(10, DealType::Buy, DealEntry::In, 100, Magic(777));
        let hedge = deal(11, DealType::Sell, DealEntry::InOut, 20, tag(4));
        let mut l =
            HedgeLedger::replay(Login(9), AccountMarginMode::RetailNetting, &[], &[own]).unwrap();
        l.apply(&tx(hedge.clone())).unwrap();
        l.apply(&tx(hedge)).unwrap();
        assert_eq!(held(&l), vec![(11, Side::Sell, lots(20))]);
    }

    #[test]
    fn a_stop_loss_of_the_net_position_closes_the_hedges_it_took_oldest_first() {
        // Two hedges short 0.5 in all; the broker closes 0.4 of the net by its stop-loss. The
        // closing deal carries the position's magic (the first hedge's), not a link.
        let mut sl = deal(12, DealType::Buy, DealEntry::Out, 40, tag(1));
        sl.reason = DealReason::Sl;
        sl.comment = "[sl 1.10500]".into();
        sl.order = OrderTicket(12);
        let history = [
            deal(10, DealType::Sell, DealEntry::In, 20, tag(1)),
            deal(11, DealType::Sell, DealEntry::In, 30, tag(2)),
            sl,
        ];
        let mut l =
            HedgeLedger::replay(Login(9), AccountMarginMode::RetailNetting, &[], &history).unwrap();
        assert_eq!(held(&l), vec![(11, Side::Sell, lots(10))]);
        assert_eq!(l.hedge_net("EURUSD"), -lots(10));
        // A hedge opened after the stop-loss is not touched by it.
        l.apply(&tx(deal(13, DealType::Sell, DealEntry::In, 20, tag(3))))
            .unwrap();
        assert_eq!(
            held(&l),
            vec![(11, Side::Sell, lots(10)), (13, Side::Sell, lots(20))]
        );
        // Closing what is left of the second hedge by its link leaves the third alone.
        let link = close_link(OrderTicket(11)).unwrap();
        l.apply(&tx(deal(14, DealType::Buy, DealEntry::Out, 10, link)))
            .unwrap();
        assert_eq!(held(&l), vec![(13, Side::Sell, lots(20))]);
        let deals: Vec<DealRecord> = l.deals.values().cloned().collect();
        let again =
            HedgeLedger::replay(Login(9), AccountMarginMode::RetailNetting, &[], &deals).unwrap();
        assert_eq!(held(&again), held(&l));
    }

    #[test]
    fn links_beyond_the_format_are_refused() {
        assert!(close_link(OrderTicket(1 << 58)).is_err());
        let m = close_link(OrderTicket(42)).unwrap();
        assert!(hedge_ledger::codec::is_link(m));
        assert!(item_from_magic(m).is_none());
    }
}
