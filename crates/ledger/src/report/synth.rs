//! Hedging-account histories from the generator's netting ones, so reports of both account modes
//! can be written and imported back.

use crate::codec::decode;
use crate::record::{History, LedgerAccount, LedgerDeal};
use hedge_domain::{AccountMarginMode, DealEntry, Login, PositionId, Side, Volume};
use rust_decimal::Decimal;
use std::collections::HashMap;

/// The same trading on a hedging account: an order that links to a live position closes it (by
/// at most its volume, as a close by position does), every other order opens a position of its
/// own (id = order ticket). Deals carry their position ids, as the terminal records them.
pub fn to_hedging(netting: &History) -> History {
    let links: HashMap<u64, u64> = netting
        .orders
        .iter()
        .filter_map(|o| decode(o.magic).map(|l| (o.ticket.get(), l.ticket.get())))
        .collect();
    let mut live: HashMap<u64, (String, Side, Decimal)> = HashMap::new();
    let mut deals: Vec<LedgerDeal> = Vec::with_capacity(netting.deals.len());
    let mut sorted: Vec<&LedgerDeal> = netting.deals.iter().collect();
    sorted.sort_by_key(|d| (d.time_msc, d.ticket.get()));
    for d in sorted {
        let Some(side) = d.deal_type.side() else {
            deals.push(d.clone());
            continue;
        };
        let order = d.order.get();
        let target = links.get(&order).copied().filter(|t| {
            live.get(t)
                .is_some_and(|(s, sd, v)| *s == d.symbol && *sd != side && !v.is_zero())
        });
        let mut deal = d.clone();
        match target {
            Some(t) => {
                let Some(p) = live.get_mut(&t) else { continue };
                let vol = d.volume.0.min(p.2);
                p.2 -= vol;
                if p.2.is_zero() {
                    live.remove(&t);
                }
                deal.entry = DealEntry::Out;
                deal.volume = Volume(vol);
                deal.position_id = PositionId(t);
            }
            None => {
                let p = live
                    .entry(order)
                    .or_insert((d.symbol.clone(), side, Decimal::ZERO));
                p.2 += d.volume.0;
                deal.entry = DealEntry::In;
                deal.position_id = PositionId(order);
            }
        }
        deals.push(deal);
    }
    History {
        account: LedgerAccount {
            login: Login(netting.account.login.get().max(1)),
            margin_mode: AccountMarginMode::RetailHedging,
            currency: "USD".into(),
        },
        orders: netting.orders.clone(),
        deals,
    }
}
