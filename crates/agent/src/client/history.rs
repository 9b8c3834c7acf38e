//! What the terminal's records say about positions, read without I/O: a position record as the
//! tracker's [`Observed`], and from history deals the closing deal of each position and the positions
//! that opened and closed entirely while the agent was away.

use hedge_agent_runtime::observed::{CloseDetail, ClosedWhileAway, Observed, TimeMs};
use hedge_domain::{DealEntry, PositionId, Price, Volume};
use hedge_protocol::{DealRecord, PositionRecord};
use std::collections::{BTreeMap, HashMap};

/// Turns a terminal position into the tracker's view of it.
pub fn observed(p: &PositionRecord) -> Observed {
    Observed {
        id: p.identifier,
        symbol: p.symbol.clone(),
        side: p.position_type.side(),
        volume: p.volume,
        price_open: p.price_open,
        sl: p.sl,
        tp: p.tp,
        magic: p.magic,
        comment: p.comment.clone(),
        time: p.time,
        time_update: p.time_update,
    }
}

pub(super) fn is_exit(entry: DealEntry) -> bool {
    matches!(entry, DealEntry::Out | DealEntry::OutBy | DealEntry::InOut)
}

/// From history deals: the last exit deal of every position that has one (the close of a position
/// that vanished, or the reduction of one still open), and the positions that opened after `since`
/// and were entirely closed again.
pub(super) fn read_history(
    deals: &[DealRecord],
    since: Option<TimeMs>,
) -> (HashMap<PositionId, CloseDetail>, Vec<ClosedWhileAway>) {
    let mut by_position: BTreeMap<PositionId, Vec<&DealRecord>> = BTreeMap::new();
    for d in deals
        .iter()
        .filter(|d| d.deal_type.is_trade() && d.position_id.get() != 0)
    {
        by_position.entry(d.position_id).or_default().push(d);
    }
    let mut closes = HashMap::new();
    for (id, ds) in &by_position {
        if let Some(last_exit) = ds
            .iter()
            .filter(|d| is_exit(d.entry))
            .max_by_key(|d| (d.time, d.ticket))
        {
            closes.insert(*id, CloseDetail::from_deal(last_exit));
        }
    }
    let mut away = Vec::new();
    if let Some(since) = since {
        for (id, ds) in &by_position {
            let mut ds = ds.clone();
            ds.sort_by_key(|d| (d.time, d.ticket));
            let Some(first) = ds.first() else { continue };
            if first.entry != DealEntry::In || first.time <= since {
                continue;
            }
            let Some(side) = first.deal_type.side() else {
                continue;
            };
            let opened: Volume = ds
                .iter()
                .filter(|d| d.entry == DealEntry::In)
                .fold(Volume::ZERO, |a, d| a + d.volume);
            let closed: Volume = ds
                .iter()
                .filter(|d| matches!(d.entry, DealEntry::Out | DealEntry::OutBy))
                .fold(Volume::ZERO, |a, d| a + d.volume);
            let has_reversal = ds.iter().any(|d| d.entry == DealEntry::InOut);
            let Some(last) = ds.last() else { continue };
            if has_reversal || closed < opened || !is_exit(last.entry) {
                continue;
            }
            away.push(ClosedWhileAway {
                position: Observed {
                    id: *id,
                    symbol: first.symbol.clone(),
                    side,
                    volume: Volume::ZERO,
                    price_open: first.price,
                    sl: Price::ZERO,
                    tp: Price::ZERO,
                    magic: first.magic,
                    comment: first.comment.clone(),
                    time: first.time,
                    time_update: last.time,
                },
                volume: opened,
                close: CloseDetail::from_deal(last),
            });
        }
    }
    (closes, away)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use hedge_domain::{DealTicket, DealType};
    use rust_decimal::Decimal;

    pub(in crate::client) fn deal(
        ticket: u64,
        pos: u64,
        entry: DealEntry,
        t: DealType,
        vol: i64,
        time: i64,
    ) -> DealRecord {
        DealRecord {
            position_id: PositionId(pos),
            time,
            ..DealRecord::trade(
                DealTicket(ticket),
                "EURUSD",
                t,
                entry,
                Volume(Decimal::new(vol, 2)),
                Price(Decimal::new(11000 + ticket as i64, 4)),
            )
        }
    }

    #[test]
    fn history_gives_closing_deals_and_positions_missed_entirely() {
        let deals = vec![
            deal(1, 10, DealEntry::In, DealType::Buy, 10, 100),
            deal(2, 10, DealEntry::Out, DealType::Sell, 10, 200),
            // Opened after the agent's last look and closed in two parts.
            deal(3, 20, DealEntry::In, DealType::Sell, 20, 300),
            deal(4, 20, DealEntry::Out, DealType::Buy, 5, 310),
            deal(5, 20, DealEntry::Out, DealType::Buy, 15, 320),
            // Still partly open: not a missed round trip.
            deal(6, 30, DealEntry::In, DealType::Buy, 20, 330),
            deal(7, 30, DealEntry::Out, DealType::Sell, 10, 340),
        ];
        let (closes, away) = read_history(&deals, Some(150));
        assert_eq!(closes[&PositionId(10)].deal, Some(DealTicket(2)));
        // The reduction of a position still open, for the partial close found by a snapshot.
        assert_eq!(closes[&PositionId(30)].deal, Some(DealTicket(7)));
        assert_eq!(away.len(), 1);
        assert_eq!(away[0].position.id, PositionId(20));
        assert_eq!(away[0].position.side, hedge_domain::Side::Sell);
        assert_eq!(away[0].volume, Volume(Decimal::new(20, 2)));
        assert_eq!(away[0].close.deal, Some(DealTicket(5)));
        let (_, none) = read_history(&deals, None);
        assert!(none.is_empty());
    }
}
