//! Hedge records and how they shrink the plan.

use crate::common::*;
use hedge_center_api::model::*;
use hedge_domain::{DealTicket, Retcode, Side};

both_backends!(hedges_shrink_the_plan,);

async fn hedges_shrink_the_plan(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    env.client
        .report_position(&open(CLIENT, 1, "EURUSD", Side::Buy, "0.3"))
        .await
        .unwrap();
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    let item = plan.items[0].clone();
    // a failed attempt is recorded and changes nothing
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
    assert_eq!(
        (failed.status, failed.retcode),
        (HedgeStatus::Failed, Some(Retcode::REQUOTE))
    );
    assert_eq!(env.hedge.plan(HEDGE).await.unwrap().items, plan.items);
    // executed twice (concurrently) -> one hedge
    let h = executed(&item, "0.3");
    let (a, b2) = tokio::join!(env.hedge.hedge_executed(&h), env.hedge.hedge_executed(&h));
    let (a, b2) = (a.unwrap(), b2.unwrap());
    assert_eq!(a.id, b2.id);
    assert_eq!(a.account_symbol, "EURUSD.h");
    let hedges = env
        .viewer
        .hedges(&PageQuery {
            login: Some(HEDGE),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        hedges
            .items
            .iter()
            .filter(|h| h.status != HedgeStatus::Failed)
            .count(),
        1
    );
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    assert!(
        plan.items.is_empty() && plan.residuals.is_empty(),
        "{plan:?}"
    );
    // same item id with another side is a conflict; another account's token is refused
    let mut other = h.clone();
    other.side = Side::Buy;
    assert_eq!(
        env.hedge.hedge_executed(&other).await.unwrap_err().status(),
        Some(409)
    );
    assert_eq!(
        env.client.hedge_executed(&h).await.unwrap_err().status(),
        Some(403)
    );
    // client shrinks -> plan asks to reduce the hedge; recording the reduction empties it again
    env.client
        .report_position(&report(
            CLIENT,
            PositionEventKind::PartialClose,
            1,
            "EURUSD",
            Side::Buy,
            "0.1",
            2,
        ))
        .await
        .unwrap();
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    let reduce = &plan.items[0];
    assert_eq!(
        (reduce.action, reduce.side, reduce.volume),
        (PlanAction::Reduce, Side::Buy, vol("0.2"))
    );
    let reduced = env
        .hedge
        .hedge_reduced(
            a.id,
            &HedgeReduce {
                remaining: vol("0.1"),
                deal: Some(DealTicket(9)),
                price: None,
                time_ms: 2,
                reason: "mirror".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (reduced.status, reduced.open_volume),
        (HedgeStatus::PartiallyClosed, vol("0.1"))
    );
    // the same absolute remaining volume again changes nothing; more than open is refused
    let same = env
        .hedge
        .hedge_reduced(
            a.id,
            &HedgeReduce {
                remaining: vol("0.1"),
                deal: None,
                price: None,
                time_ms: 3,
                reason: String::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(same.event_id, reduced.event_id);
    let err = env
        .hedge
        .hedge_reduced(
            a.id,
            &HedgeReduce {
                remaining: vol("0.5"),
                deal: None,
                price: None,
                time_ms: 3,
                reason: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert!(env.hedge.plan(HEDGE).await.unwrap().items.is_empty());
    env.client
        .report_position(&report(
            CLIENT,
            PositionEventKind::Close,
            1,
            "EURUSD",
            Side::Buy,
            "0",
            3,
        ))
        .await
        .unwrap();
    let closed = env
        .hedge
        .hedge_reduced(
            a.id,
            &HedgeReduce {
                remaining: vol("0"),
                deal: None,
                price: None,
                time_ms: 4,
                reason: String::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(closed.status, HedgeStatus::Closed);
    assert!(env.hedge.plan(HEDGE).await.unwrap().items.is_empty());
    let kinds: Vec<_> = env
        .viewer
        .events(&PageQuery {
            login: Some(HEDGE),
            ..Default::default()
        })
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains(&EventKind::HedgeFailed)
            && kinds.contains(&EventKind::HedgeReduced)
            && kinds.contains(&EventKind::HedgeClosed)
    );
    env.finish().await;
}
