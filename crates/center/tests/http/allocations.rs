//! Allocations of client exposure to several hedge accounts, in base quantity.

use crate::common::*;
use hedge_center_api::client::new_action_key;
use hedge_center_api::model::*;
use hedge_domain::{Login, Side, SymbolMap, SymbolSpec};

both_backends!(allocations_split_and_move_the_hedge,);

const HEDGE2: Login = Login(2002);

/// A second hedge account whose gold is `XAUUSD.pro` of 10 oz a lot, in steps of 0.1.
fn second_hedge() -> AccountRegistration {
    let mut gold = SymbolSpec::forex("XAUUSD.pro", 2);
    gold.contract_size = dec("10");
    gold.volume_min = vol("0.1");
    gold.volume_step = vol("0.1");
    gold.volume_max = vol("1000");
    AccountRegistration {
        login: HEDGE2,
        symbol_map: SymbolMap::identity(),
        symbols: vec![gold],
        ..hedge_registration()
    }
}

fn weights(w: &[(Login, &str)]) -> Vec<AllocationWeight> {
    w.iter()
        .map(|(h, x)| AllocationWeight {
            hedge_login: *h,
            weight: dec(x),
        })
        .collect()
}

fn set(client: Option<Login>, w: &[(Login, &str)]) -> ActionRequest {
    ActionRequest {
        login: client,
        weights: Some(weights(w)),
        ..ActionRequest::new(ActionKind::SetAllocation)
    }
}

fn all_events() -> PageQuery {
    PageQuery {
        limit: Some(1000),
        ..PageQuery::default()
    }
}

fn gold(plan: &HedgePlan) -> Option<&PlanItem> {
    plan.items.iter().find(|i| i.symbol == "XAUUSD")
}

async fn allocations_split_and_move_the_hedge(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    // The client's gold is 100 oz a lot; the first hedge account's (GOLD) too.
    let mut client = client_registration(CLIENT, "1");
    for s in &mut client.symbols {
        if s.name == "XAUUSD.r" {
            s.contract_size = dec("100");
        }
    }
    env.client.register_account(&client).await.unwrap();
    let mut hedge = hedge_registration();
    for s in &mut hedge.symbols {
        if s.name == "GOLD" {
            s.contract_size = dec("100");
        }
    }
    env.hedge.register_account(&hedge).await.unwrap();
    env.client
        .report_position(&open(CLIENT, 1, "XAUUSD", Side::Buy, "2"))
        .await
        .unwrap();
    // one hedge account: it covers everything by default
    let plan = env.admin.plan(HEDGE).await.unwrap();
    assert_eq!(gold(&plan).unwrap().volume, vol("2"));

    // a second one: nobody is hedged until an allocation says how
    env.admin.register_account(&second_hedge()).await.unwrap();
    let plan = env.admin.plan(HEDGE).await.unwrap();
    assert!(plan.items.is_empty(), "{plan:?}");
    assert_eq!(
        plan.client_residuals
            .iter()
            .map(|r| (r.client_login, r.symbol.as_str(), r.reason))
            .collect::<Vec<_>>(),
        vec![(Some(CLIENT), "XAUUSD", ResidualReason::NoAllocation)]
    );
    assert_eq!(
        env.admin.plan(HEDGE2).await.unwrap().client_residuals,
        plan.client_residuals
    );

    // refused allocations change nothing
    let head = env.admin.events(&all_events()).await.unwrap().items.len();
    for (request, status) in [
        (set(None, &[(HEDGE, "0.6"), (HEDGE2, "0.3")]), 422),
        (set(None, &[(HEDGE, "0.6"), (HEDGE, "0.4")]), 422),
        (set(None, &[(HEDGE, "1.5"), (HEDGE2, "-0.5")]), 422),
        (set(None, &[]), 422),
        (set(None, &[(HEDGE, "0.6"), (Login(4242), "0.4")]), 404),
        (set(None, &[(HEDGE, "0.6"), (CLIENT2, "0.4")]), 404),
        (set(None, &[(HEDGE, "0.6"), (CLIENT, "0.4")]), 409),
        (set(Some(HEDGE2), &[(HEDGE, "1")]), 409),
        (ActionRequest::new(ActionKind::SetAllocation), 422),
        (
            ActionRequest {
                weights: Some(weights(&[(HEDGE, "1")])),
                ..ActionRequest::new(ActionKind::Pause)
            },
            422,
        ),
    ] {
        let err = env
            .admin
            .action(&new_action_key(), &request)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(status), "{request:?}: {err}");
    }
    assert_eq!(
        env.admin.events(&all_events()).await.unwrap().items.len(),
        head
    );
    assert!(env.admin.allocations().await.unwrap().is_empty());
    // only operators allocate
    assert_eq!(
        env.hedge
            .action(&new_action_key(), &set(None, &[(HEDGE, "1")]))
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );

    // 60/40: 120 oz on the first (1.2 lots of 100), 80 oz on the second (8 lots of 10)
    let ack = env
        .admin
        .action(
            &new_action_key(),
            &set(None, &[(HEDGE, "0.6"), (HEDGE2, "0.4")]),
        )
        .await
        .unwrap()
        .ack;
    assert!(ack.changed);
    let stored = ack.allocations.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].weights,
        weights(&[(HEDGE, "0.6"), (HEDGE2, "0.4")])
    );
    assert_eq!(env.admin.allocations().await.unwrap(), stored);
    let a = env.admin.plan(HEDGE).await.unwrap();
    let b2 = env.admin.plan(HEDGE2).await.unwrap();
    let (ga, gb) = (gold(&a).unwrap(), gold(&b2).unwrap());
    assert!(a.client_residuals.is_empty());
    assert_eq!(
        (ga.side, ga.volume, ga.base_quantity, ga.client_lots),
        (Side::Sell, vol("1.2"), vol("120"), vol("1.2"))
    );
    assert_eq!(
        (
            gb.account_symbol.as_str(),
            gb.volume,
            gb.base_quantity,
            gb.hedge_lots
        ),
        ("XAUUSD.pro", vol("8"), vol("80"), vol("-8"))
    );
    // the hedges are done; then the operator moves the allocation to 40/60
    for (login, item) in [(HEDGE, ga.clone()), (HEDGE2, gb.clone())] {
        env.admin
            .hedge_executed(&HedgeExecuted {
                plan_item_id: item.id,
                hedge_login: login,
                symbol: "XAUUSD".into(),
                side: item.side,
                volume: item.volume,
                order: hedge_domain::OrderTicket(item.id.get() + login.0),
                deal: hedge_domain::DealTicket(item.id.get() + login.0),
                position_id: hedge_domain::PositionId(item.id.get() + login.0),
                price: None,
                latency_us: None,
                slippage: None,
                time_ms: 1,
            })
            .await
            .unwrap();
    }
    assert!(gold(&env.admin.plan(HEDGE).await.unwrap()).is_none());
    assert!(gold(&env.admin.plan(HEDGE2).await.unwrap()).is_none());
    let mv = set(None, &[(HEDGE, "0.4"), (HEDGE2, "0.6")]);
    let key = new_action_key();
    let first = env.admin.action(&key, &mv).await.unwrap();
    let again = env.admin.action(&key, &mv).await.unwrap();
    assert!(again.replayed && again.ack == first.ack);
    let (a, b2) = (
        env.admin.plan(HEDGE).await.unwrap(),
        env.admin.plan(HEDGE2).await.unwrap(),
    );
    let (ga, gb) = (gold(&a).unwrap(), gold(&b2).unwrap());
    assert_eq!(
        (ga.side, ga.volume, ga.action, ga.hedge_lots),
        (Side::Buy, vol("0.4"), PlanAction::Reduce, vol("-0.8"))
    );
    assert_eq!(
        (gb.side, gb.volume, gb.action, gb.hedge_lots),
        (Side::Sell, vol("4"), PlanAction::Open, vol("-12"))
    );
    // the same weights again change nothing; clearing brings the residual back
    let same = env.admin.action(&new_action_key(), &mv).await.unwrap().ack;
    assert!(!same.changed);
    let clear = ActionRequest::new(ActionKind::ClearAllocation);
    assert!(
        env.admin
            .action(&new_action_key(), &clear)
            .await
            .unwrap()
            .ack
            .changed
    );
    assert!(env.admin.allocations().await.unwrap().is_empty());
    let plan = env.admin.plan(HEDGE).await.unwrap();
    assert_eq!(
        plan.client_residuals[0].reason,
        ResidualReason::NoAllocation
    );
    // the hedges that are open are taken back
    assert_eq!(gold(&plan).unwrap().action, PlanAction::Reduce);
    let events = env.admin.events(&all_events()).await.unwrap().items;
    assert!(events
        .iter()
        .any(|e| e.kind == EventKind::AllocationSet && e.actor == "ops"));
    assert!(events
        .iter()
        .any(|e| e.kind == EventKind::AllocationCleared));
    env.finish().await;
}
