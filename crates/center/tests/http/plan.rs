//! The hedge plan's arithmetic.

use crate::common::*;
use hedge_center_api::model::*;
use hedge_domain::{Login, Side};
use std::collections::BTreeSet;

both_backends!(plan_arithmetic,);

async fn plan_arithmetic(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    env.client2
        .register_account(&client_registration(CLIENT2, "0.5"))
        .await
        .unwrap();
    let c = &env.client;
    // EURUSD: client1 +0.30 -0.07; client2 (ratio 0.5) -0.25 => 0.23 - 0.125 = 0.105 -> sell 0.10
    // (exactly between two steps: the smaller order, so a covered plan asks for nothing more)
    c.report_position(&open(CLIENT, 1, "EURUSD", Side::Buy, "0.3"))
        .await
        .unwrap();
    c.report_position(&open(CLIENT, 2, "EURUSD", Side::Sell, "0.07"))
        .await
        .unwrap();
    env.client2
        .report_position(&open(CLIENT2, 1, "EURUSD", Side::Sell, "0.25"))
        .await
        .unwrap();
    // GBPUSD: step 0.1, max 2: -3.26 => buy 2 (clamped), residual
    c.report_position(&open(CLIENT, 3, "GBPUSD", Side::Sell, "3.26"))
        .await
        .unwrap();
    // XAUUSD named GOLD on the hedge account
    c.report_position(&open(CLIENT, 4, "XAUUSD", Side::Buy, "1.5"))
        .await
        .unwrap();
    // USDJPY: no spec on the hedge account; AUDUSD below min after rounding
    c.report_position(&open(CLIENT, 5, "USDJPY", Side::Buy, "1"))
        .await
        .unwrap();
    env.hedge
        .register_account(&{
            let mut r = hedge_registration();
            r.symbols.push(spec("AUDUSD.h", "0.1", "0.1", "10"));
            r
        })
        .await
        .unwrap();
    c.report_position(&open(CLIENT, 6, "AUDUSD", Side::Buy, "0.04"))
        .await
        .unwrap();

    let plan = env.hedge.plan(HEDGE).await.unwrap();
    let item = |s: &str| {
        plan.items
            .iter()
            .find(|i| i.symbol == s)
            .unwrap_or_else(|| panic!("no item for {s}: {plan:?}"))
    };
    let eur = item("EURUSD");
    assert_eq!(
        (eur.side, eur.volume, eur.exposure),
        (Side::Sell, vol("0.1"), vol("0.105"))
    );
    assert_eq!(eur.account_symbol, "EURUSD.h");
    assert_eq!(eur.residual, vol("0.005"));
    // same contract sizes on both sides: base quantity is lots x 100,000
    assert_eq!(
        (eur.client_lots, eur.base_quantity, eur.hedge_lots),
        (vol("-0.02"), vol("10500"), vol("-0.1"))
    );
    let gbp = item("GBPUSD");
    assert_eq!(
        (gbp.side, gbp.volume, gbp.residual),
        (Side::Buy, vol("2"), vol("-1.26"))
    );
    let gold = item("XAUUSD");
    assert_eq!(
        (gold.account_symbol.as_str(), gold.side, gold.volume),
        ("GOLD", Side::Sell, vol("1.5"))
    );
    let reasons: BTreeSet<_> = plan
        .residuals
        .iter()
        .map(|r| (r.symbol.clone(), r.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("AUDUSD".to_owned(), ResidualReason::BelowMin),
            ("USDJPY".to_owned(), ResidualReason::NoSymbolSpec)
        ]
        .into_iter()
        .collect()
    );
    // ids are unique and stable while nothing changes
    let ids: BTreeSet<_> = plan.items.iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), plan.items.len());
    let again = env.hedge.plan(HEDGE).await.unwrap();
    assert_eq!(again.items, plan.items);
    // a change of EURUSD changes its id only
    c.report_position(&open(CLIENT, 7, "EURUSD", Side::Buy, "0.01"))
        .await
        .unwrap();
    let changed = env.hedge.plan(HEDGE).await.unwrap();
    let eur2 = changed.items.iter().find(|i| i.symbol == "EURUSD").unwrap();
    assert_ne!(eur2.id, eur.id);
    assert_eq!(
        changed
            .items
            .iter()
            .find(|i| i.symbol == "GBPUSD")
            .unwrap()
            .id,
        gbp.id
    );
    // plan reads need the hedge token (or admin)
    assert_eq!(
        env.client.plan(HEDGE).await.unwrap_err().status(),
        Some(403)
    );
    assert_eq!(
        env.viewer.plan(HEDGE).await.unwrap_err().status(),
        Some(403)
    );
    env.admin.plan(HEDGE).await.unwrap();
    assert_eq!(
        env.admin.plan(CLIENT).await.unwrap_err().status(),
        Some(409)
    );
    assert_eq!(
        env.admin.plan(Login(3)).await.unwrap_err().status(),
        Some(404)
    );
    env.finish().await;
}
