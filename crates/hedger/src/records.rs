//! What the hedger tells the center about its hedges, computed purely from the account.
//!
//! Opens are recorded once per plan item (the center deduplicates on the item id), with every fill
//! of the item summed. Reductions are recorded as absolute remaining volumes derived from what the
//! account holds, so a record sent twice, or computed again after a restart, says the same thing.

use crate::planner::{Fill, HeldPosition};
use crate::tag::PlanItemId;
use hedge_center_api::model::{Hedge, HedgeExecuted, HedgeId, HedgeStatus};
use hedge_domain::{Login, Price, Side, SymbolMap, Volume};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The record of an executed plan item from its fills. `None` when there are no fills.
pub fn executed_record(
    login: Login,
    item: PlanItemId,
    fills: &[Fill],
    symbols: &SymbolMap,
    latency_us: Option<u64>,
    requested_price: Option<Price>,
) -> Option<HedgeExecuted> {
    let first = fills.first()?;
    let volume: Volume = fills.iter().map(|f| f.volume).sum();
    if !volume.is_positive() {
        return None;
    }
    // Volume-weighted average price, exact.
    let notional: Decimal = fills.iter().map(|f| f.price.0 * f.volume.0).sum();
    let price = Price((notional / volume.0).round_dp(8).normalize());
    let slippage = requested_price
        .filter(|p| p.is_positive())
        .map(|p| match first.side {
            // Positive slippage is a worse price: paid more to buy, got less to sell.
            Side::Buy => Price(price.0 - p.0),
            Side::Sell => Price(p.0 - price.0),
        });
    Some(HedgeExecuted {
        plan_item_id: item,
        hedge_login: login,
        symbol: symbols
            .to_canonical(&first.symbol)
            .unwrap_or_else(|| first.symbol.clone()),
        side: first.side,
        volume,
        order: first.order,
        deal: first.deal,
        position_id: first.position,
        price: Some(price),
        latency_us,
        slippage,
        time_ms: fills.iter().map(|f| f.time).max().unwrap_or(0),
    })
}

/// What the account holds for one symbol, captured when hedges were reduced: enough to compute
/// each hedge's remaining volume later, when the center is reachable again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldingSnapshot {
    /// Canonical symbol.
    pub symbol: String,
    /// One net position shared by every hedge of the symbol (a netting account seen without the
    /// ledger). False when each hedge has positions of its own: a hedging account, or a netting
    /// account seen through the ledger (position id = the hedge's opening order).
    pub netting: bool,
    /// Hedge positions on the account for this symbol: id → (side, volume).
    pub positions: BTreeMap<u64, (Side, Volume)>,
    pub time_ms: i64,
    /// Set when the holding corrects center records found to differ from the account (the
    /// periodic comparison), with what was found: the center's event then says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<String>,
}

impl HoldingSnapshot {
    pub fn capture(
        symbol: &str,
        account_symbol: &str,
        netting: bool,
        positions: &[HeldPosition],
        time_ms: i64,
    ) -> Self {
        HoldingSnapshot {
            symbol: symbol.to_owned(),
            netting,
            positions: positions
                .iter()
                .filter(|p| p.symbol == account_symbol && (netting || p.item().is_some()))
                .map(|p| (p.id.0, (p.side, p.volume)))
                .collect(),
            time_ms,
            correction: None,
        }
    }
}

/// The hedges whose recorded open volume differs from what the account holds, with the volume they
/// should have. Hedging accounts: a hedge keeps the volume of its own position (0 once gone).
/// Netting accounts: the one net position is shared out over the hedges on its side, oldest first.
pub fn reduce_targets(hedges: &[Hedge], holding: &HoldingSnapshot) -> Vec<(HedgeId, Volume)> {
    let mut open: Vec<&Hedge> = hedges
        .iter()
        .filter(|h| {
            h.symbol == holding.symbol
                && matches!(h.status, HedgeStatus::Open | HedgeStatus::PartiallyClosed)
                && h.open_volume.is_positive()
        })
        .collect();
    open.sort_by_key(|h| h.id);
    let mut out = Vec::new();
    if holding.netting {
        let (side, mut left) = holding
            .positions
            .values()
            .next()
            .copied()
            .unwrap_or((Side::Buy, Volume::ZERO));
        for h in open {
            let keep = if h.side == side {
                let keep = h.open_volume.min(left);
                left -= keep;
                keep
            } else {
                Volume::ZERO
            };
            if keep < h.open_volume {
                out.push((h.id, keep));
            }
        }
    } else {
        for h in open {
            let held = holding
                .positions
                .get(&h.position_id.0)
                .filter(|(side, _)| *side == h.side)
                .map(|(_, v)| *v)
                .unwrap_or(Volume::ZERO);
            if held < h.open_volume {
                out.push((h.id, held));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedge_center_api::model::EventId;
    use hedge_domain::{DealTicket, OrderTicket, PositionId, Retcode};
    use rust_decimal_macros::dec;

    fn hedge(id: u64, position: u64, side: Side, open: Volume) -> Hedge {
        Hedge {
            id: HedgeId(id),
            plan_item_id: PlanItemId(id),
            hedge_login: Login(9),
            symbol: "EURUSD".into(),
            account_symbol: "EURUSD.h".into(),
            side,
            volume: open,
            open_volume: open,
            order: OrderTicket(position),
            deal: DealTicket(position),
            position_id: PositionId(position),
            price: None,
            latency_us: None,
            slippage: None,
            status: HedgeStatus::Open,
            retcode: None::<Retcode>,
            message: String::new(),
            created_ms: 0,
            updated_ms: 0,
            event_id: EventId(id),
            mark: None,
        }
    }

    fn fill(deal: u64, volume: Volume, price: Price) -> Fill {
        Fill {
            item: PlanItemId(3),
            deal: DealTicket(deal),
            order: OrderTicket(deal),
            position: PositionId(deal),
            symbol: "EURUSD.h".into(),
            side: Side::Sell,
            volume,
            price,
            time: deal as i64,
            closing: false,
        }
    }

    #[test]
    fn an_item_is_recorded_once_with_all_its_fills() {
        let map = SymbolMap::from_affix(".h");
        let fills = [
            fill(1, Volume(dec!(0.1)), Price(dec!(1.1))),
            fill(2, Volume(dec!(0.3)), Price(dec!(1.2))),
        ];
        let r = executed_record(
            Login(9),
            PlanItemId(3),
            &fills,
            &map,
            Some(120),
            Some(Price(dec!(1.2))),
        )
        .unwrap();
        assert_eq!(r.symbol, "EURUSD");
        assert_eq!(r.volume, Volume(dec!(0.4)));
        assert_eq!(r.price, Some(Price(dec!(1.175))));
        assert_eq!(r.slippage, Some(Price(dec!(0.025))));
        assert_eq!(r.deal, DealTicket(1));
        assert!(executed_record(Login(9), PlanItemId(3), &[], &map, None, None).is_none());
    }

    #[test]
    fn hedging_targets_follow_each_position() {
        let hedges = [
            hedge(1, 100, Side::Sell, Volume(dec!(0.2))),
            hedge(2, 101, Side::Sell, Volume(dec!(0.1))),
            hedge(3, 102, Side::Sell, Volume(dec!(0.1))),
        ];
        let mut positions = BTreeMap::new();
        positions.insert(100, (Side::Sell, Volume(dec!(0.05))));
        positions.insert(102, (Side::Sell, Volume(dec!(0.1))));
        let holding = HoldingSnapshot {
            symbol: "EURUSD".into(),
            netting: false,
            positions,
            time_ms: 0,
            correction: None,
        };
        assert_eq!(
            reduce_targets(&hedges, &holding),
            vec![(HedgeId(1), Volume(dec!(0.05))), (HedgeId(2), Volume::ZERO)]
        );
    }

    #[test]
    fn netting_targets_share_the_net_position_oldest_first() {
        let hedges = [
            hedge(1, 100, Side::Sell, Volume(dec!(0.2))),
            hedge(2, 100, Side::Sell, Volume(dec!(0.1))),
        ];
        let mut positions = BTreeMap::new();
        positions.insert(100, (Side::Sell, Volume(dec!(0.25))));
        let holding = HoldingSnapshot {
            symbol: "EURUSD".into(),
            netting: true,
            positions,
            time_ms: 0,
            correction: None,
        };
        assert_eq!(
            reduce_targets(&hedges, &holding),
            vec![(HedgeId(2), Volume(dec!(0.05)))]
        );
        // Reversed: every sell hedge is gone.
        let mut positions = BTreeMap::new();
        positions.insert(100, (Side::Buy, Volume(dec!(0.1))));
        let holding = HoldingSnapshot {
            positions,
            ..holding
        };
        assert_eq!(
            reduce_targets(&hedges, &holding),
            vec![(HedgeId(1), Volume::ZERO), (HedgeId(2), Volume::ZERO)]
        );
    }
}
