//! A small world the HTTP tests share: a hedged client position, and readers of the event log and
//! the command list.

use super::*;
use hedge_domain::{DealTicket, OrderTicket, Retcode};

pub fn executed(item: &PlanItem, volume: &str) -> HedgeExecuted {
    HedgeExecuted {
        plan_item_id: item.id,
        hedge_login: HEDGE,
        symbol: item.symbol.clone(),
        side: item.side,
        volume: vol(volume),
        order: OrderTicket(500 + item.id.get()),
        deal: DealTicket(600 + item.id.get()),
        position_id: PositionId(500 + item.id.get()),
        price: Some(hedge_domain::Price(dec("1.2"))),
        latency_us: Some(850),
        slippage: Some(hedge_domain::Price(dec("0.00002"))),
        time_ms: 1,
    }
}

/// A client buy of 0.3 EURUSD hedged by one executed plan item, plus one failed attempt.
pub async fn hedged_world(env: &Env) -> (Hedge, Hedge) {
    env.register_defaults().await;
    env.client
        .report_position(&open(CLIENT, 1, "EURUSD", Side::Buy, "0.3"))
        .await
        .unwrap();
    let item = env.hedge.plan(HEDGE).await.unwrap().items[0].clone();
    let failed = env
        .hedge
        .hedge_failed(&HedgeFailed {
            plan_item_id: item.id,
            hedge_login: HEDGE,
            symbol: item.symbol.clone(),
            side: item.side,
            volume: item.volume,
            retcode: Retcode::REQUOTE,
            message: "requote".into(),
            time_ms: 1,
        })
        .await
        .unwrap();
    let open = env
        .hedge
        .hedge_executed(&executed(&item, "0.3"))
        .await
        .unwrap();
    (open, failed)
}

pub async fn event_kinds(env: &Env) -> Vec<Event> {
    env.viewer
        .events(&PageQuery {
            limit: Some(1000),
            ..PageQuery::default()
        })
        .await
        .unwrap()
        .items
}

pub async fn all_commands(env: &Env) -> Vec<Command> {
    env.viewer
        .commands(&CommandQuery::default())
        .await
        .unwrap()
        .items
}
