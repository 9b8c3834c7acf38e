//! Reading the hedge account: protocol records turned into what the planner needs, and the trigger.

use crate::planner::{Fill, HeldPosition};
use crate::tag::command_of;
use crate::tag::item_of;
use hedge_domain::{DealEntry, Magic, PositionId, TradeTransactionType};
use hedge_protocol::{DealRecord, PositionRecord, Reply, TradeRequest, Tx};
use std::collections::BTreeMap;

pub fn held_position(p: &PositionRecord) -> HeldPosition {
    HeldPosition {
        id: p.identifier,
        symbol: p.symbol.clone(),
        side: p.position_type.side(),
        volume: p.volume,
        magic: p.magic,
        comment: p.comment.clone(),
    }
}

/// The fill a deal represents, if it is a trade carrying a hedge tag.
pub fn fill_from_deal(d: &DealRecord) -> Option<Fill> {
    let item = item_of(d.magic, &d.comment)?;
    let side = d.deal_type.side()?;
    if !d.volume.is_positive() {
        return None;
    }
    Some(Fill {
        item,
        deal: d.ticket,
        order: d.order,
        position: d.position_id,
        symbol: d.symbol.clone(),
        side,
        volume: d.volume,
        price: d.price,
        time: d.time,
        // A linked deal takes volume back from a hedge even where the netting terminal books it
        // as an entry into a reversed position.
        closing: matches!(d.entry, DealEntry::Out | DealEntry::OutBy)
            || hedge_ledger::codec::is_link(d.magic),
    })
}

/// Whether a record with this magic and comment comes from the hedger: a hedge order, a linked
/// reduction, or an operator command it carried out. None of them is a trigger.
pub fn is_hedger_order(magic: Magic, comment: &str) -> bool {
    item_of(magic, comment).is_some()
        || hedge_ledger::codec::is_link(magic)
        || command_of(comment).is_some()
}

/// The fill a successful reply reports, for the order the hedger sent. The deal transaction carries
/// the same deal ticket; whichever arrives first counts, the other is recognised as the same.
pub fn fill_from_reply(
    request: &TradeRequest,
    reply: &Reply,
    time: i64,
    closing: bool,
) -> Option<Fill> {
    let item = item_of(request.magic, &request.comment)?;
    if reply.deal.get() == 0 || !reply.volume.is_positive() {
        return None;
    }
    Some(Fill {
        item,
        deal: reply.deal,
        order: reply.order,
        position: reply.position,
        symbol: request.symbol.clone(),
        side: request.order_type.side()?,
        volume: reply.volume,
        price: reply.price,
        time,
        closing,
    })
}

/// One of the account's own (non-hedge) positions closed: what `trigger` mode waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub position: PositionId,
    pub symbol: String,
    /// How it was seen: the closing deal, or the position missing from a fresh snapshot.
    pub how: &'static str,
    /// Terminal time of the close (ms), 0 when unknown.
    pub time: i64,
}

/// The trigger a transaction carries: a deal that closes (entry OUT or OUT_BY) a position that no
/// hedge order opened. Hedge deals never trigger, so the hedger's own reductions cannot set it off.
pub fn trigger_of(tx: &Tx) -> Option<Trigger> {
    if tx.tx_type != TradeTransactionType::DealAdd {
        return None;
    }
    let deal = tx.deal_record.as_ref()?;
    if !matches!(deal.entry, DealEntry::Out | DealEntry::OutBy) || !deal.deal_type.is_trade() {
        return None;
    }
    if is_hedger_order(deal.magic, &deal.comment) {
        return None;
    }
    // Only a full close counts; a partial close leaves the position (and the signal) open.
    if let Some(p) = &tx.position_record {
        if !p.volume.is_zero() {
            return None;
        }
    }
    Some(Trigger {
        position: deal.position_id,
        symbol: deal.symbol.clone(),
        how: "closing deal",
        time: deal.time,
    })
}

/// The account's own (non-hedge) open positions, by id: compared across a reconnect to find a close
/// that happened while the link was down.
pub fn watched_positions<'a>(
    positions: impl IntoIterator<Item = &'a PositionRecord>,
) -> BTreeMap<PositionId, String> {
    positions
        .into_iter()
        .filter(|p| !is_hedger_order(p.magic, &p.comment))
        .map(|p| (p.identifier, p.symbol.clone()))
        .collect()
}

/// Positions watched before that are gone now.
pub fn vanished(
    before: &BTreeMap<PositionId, String>,
    now: &BTreeMap<PositionId, String>,
) -> Vec<Trigger> {
    before
        .iter()
        .filter(|(id, _)| !now.contains_key(id))
        .map(|(id, symbol)| Trigger {
            position: *id,
            symbol: symbol.clone(),
            how: "position gone from the snapshot",
            time: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::{HedgeTag, PlanItemId};
    use hedge_domain::{
        DealTicket, DealType, Magic, Money, OrderTicket, PositionType, Price, Volume,
    };
    use rust_decimal_macros::dec;

    fn deal(entry: DealEntry, magic: Magic, comment: &str) -> DealRecord {
        DealRecord {
            order: OrderTicket(8),
            position_id: PositionId(7),
            time: 1000,
            magic,
            comment: comment.into(),
            ..DealRecord::trade(
                DealTicket(9),
                "EURUSD",
                DealType::Sell,
                entry,
                Volume(dec!(0.1)),
                Price(dec!(1.1)),
            )
        }
    }

    fn position(id: u64, volume: Volume, magic: Magic) -> PositionRecord {
        PositionRecord {
            ticket: id,
            identifier: PositionId(id),
            symbol: "EURUSD".into(),
            position_type: PositionType::Buy,
            volume,
            price_open: Price(dec!(1.1)),
            price_current: Price::ZERO,
            sl: Price::ZERO,
            tp: Price::ZERO,
            swap: Money::ZERO,
            profit: Money::ZERO,
            magic,
            comment: String::new(),
            time: 0,
            time_update: 0,
            reason: 0,
        }
    }

    fn tx_with(deal: DealRecord, remaining: Volume) -> Tx {
        let mut tx = Tx::new(1000, TradeTransactionType::DealAdd);
        tx.deal_record = Some(deal);
        tx.position_record = Some(position(7, remaining, Magic(0)));
        tx
    }

    #[test]
    fn a_full_close_of_an_own_position_triggers() {
        let t = trigger_of(&tx_with(deal(DealEntry::Out, Magic(0), ""), Volume::ZERO)).unwrap();
        assert_eq!(t.position, PositionId(7));
        assert!(trigger_of(&tx_with(deal(DealEntry::OutBy, Magic(0), ""), Volume::ZERO)).is_some());
    }

    #[test]
    fn opens_partial_closes_and_hedge_deals_do_not_trigger() {
        assert!(trigger_of(&tx_with(deal(DealEntry::In, Magic(0), ""), Volume::ZERO)).is_none());
        assert!(trigger_of(&tx_with(
            deal(DealEntry::Out, Magic(0), ""),
            Volume(dec!(0.1))
        ))
        .is_none());
        let tag = HedgeTag::new(PlanItemId(3)).unwrap();
        assert!(trigger_of(&tx_with(deal(DealEntry::Out, tag.magic, ""), Volume::ZERO)).is_none());
        assert!(trigger_of(&tx_with(
            deal(DealEntry::Out, Magic(0), "hedge:3"),
            Volume::ZERO
        ))
        .is_none());
        // Linked reductions and operator closes are the hedger's own orders too.
        let link = crate::tag::close_link(OrderTicket(3)).unwrap();
        assert!(trigger_of(&tx_with(deal(DealEntry::Out, link, ""), Volume::ZERO)).is_none());
        assert!(trigger_of(&tx_with(
            deal(DealEntry::Out, Magic(0), "cmd:9"),
            Volume::ZERO
        ))
        .is_none());
        let mut other = tx_with(deal(DealEntry::Out, Magic(0), ""), Volume::ZERO);
        other.tx_type = TradeTransactionType::HistoryAdd;
        assert!(trigger_of(&other).is_none());
    }

    #[test]
    fn hedge_deals_become_fills() {
        let tag = HedgeTag::new(PlanItemId(3)).unwrap();
        let f = fill_from_deal(&deal(DealEntry::In, tag.magic, &tag.comment)).unwrap();
        assert_eq!(f.item, PlanItemId(3));
        assert_eq!(f.deal, DealTicket(9));
        assert!(fill_from_deal(&deal(DealEntry::In, Magic(0), "manual")).is_none());
    }

    #[test]
    fn positions_gone_after_a_reconnect_are_triggers() {
        let tag = HedgeTag::new(PlanItemId(3)).unwrap();
        let before = watched_positions(&[
            position(1, Volume(dec!(0.1)), Magic(0)),
            position(2, Volume(dec!(0.1)), tag.magic),
        ]);
        assert_eq!(before.len(), 1, "hedges are not watched");
        let now = watched_positions(&[]);
        let gone = vanished(&before, &now);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].position, PositionId(1));
    }
}
