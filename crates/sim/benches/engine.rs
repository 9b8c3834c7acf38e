//! Trade server throughput: market orders executed per second on one core (validation, fill, deal,
//! position update, transactions), for both account modes, and quotes processed per second with
//! SL/TP and pending orders to check. Run: `cargo bench -p hedge-sim --bench engine`.

use hedge_domain::{
    AccountMarginMode, DealReason, Money, OrderType, PositionId, Price, Side, TradeAction, Volume,
};
use hedge_protocol::TradeRequest;
use hedge_sim::{default_symbols, Account, AccountConfig};
use rust_decimal::Decimal;
use std::hint::black_box;
use std::time::Instant;

const T0: i64 = 1_700_000_000_000;

fn fresh(mode: AccountMarginMode) -> Account {
    Account::new(
        AccountConfig {
            mode,
            balance: Money(Decimal::from(1_000_000_000i64)),
            ..AccountConfig::default()
        },
        default_symbols(""),
        T0,
    )
}

fn main() {
    let symbols = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"];
    for mode in [
        AccountMarginMode::RetailNetting,
        AccountMarginMode::RetailHedging,
    ] {
        let mut account = fresh(mode);
        let n = 200_000usize;
        let start = Instant::now();
        let mut open: Vec<(PositionId, &str, Side)> = Vec::new();
        let mut txs = 0usize;
        for i in 0..n {
            let symbol = symbols[i % symbols.len()];
            let side = if (i / 4) % 3 == 0 {
                Side::Sell
            } else {
                Side::Buy
            };
            let mut req = TradeRequest::market(
                symbol,
                OrderType::market(side),
                Volume(Decimal::new(1 + (i % 7) as i64, 2)),
            );
            // On hedging, every third order closes an earlier position instead of opening one.
            if mode == AccountMarginMode::RetailHedging && i % 3 == 2 {
                if let Some((id, sym, pside)) = open.pop() {
                    req = TradeRequest::close(
                        sym,
                        id,
                        OrderType::market(pside.opposite()),
                        Volume(Decimal::new(1, 2)),
                    );
                }
            }
            let ex = account.send(&req, DealReason::Expert);
            txs += ex.txs.len();
            if mode == AccountMarginMode::RetailHedging && req.position.0 == 0 && open.len() < 1000
            {
                open.push((ex.reply.position, symbol, side));
            }
            black_box(&ex.reply);
        }
        let elapsed = start.elapsed();
        println!(
            "{:?}: {:>9.0} market orders/s ({} orders, {} deals, {} transactions, {} open positions)",
            mode,
            n as f64 / elapsed.as_secs_f64(),
            n,
            account.deals().len(),
            txs,
            account.positions().len()
        );
    }

    // Quotes against 1,000 positions with stops and 1,000 pending orders.
    let mut account = fresh(AccountMarginMode::RetailHedging);
    for i in 0..1000 {
        let mut r = TradeRequest::market("EURUSD", OrderType::Buy, Volume(Decimal::new(1, 2)));
        r.sl = Price(Decimal::new(100_000 - i, 5));
        account.send(&r, DealReason::Expert);
        let mut p = TradeRequest::market("EURUSD", OrderType::BuyLimit, Volume(Decimal::new(1, 2)));
        p.action = TradeAction::Pending;
        p.price = Price(Decimal::new(107_000 - i, 5));
        account.send(&p, DealReason::Expert);
    }
    let quotes = 20_000;
    let start = Instant::now();
    for i in 0..quotes {
        let bid = Decimal::new(108_312 + (i % 20) as i64, 5);
        let ask = bid + Decimal::new(12, 5);
        black_box(account.quote("EURUSD", Price(bid), Price(ask), T0 + i as i64));
    }
    let elapsed = start.elapsed();
    println!(
        "quotes with 1,000 positions with SL and 1,000 pending orders: {:>9.0} quotes/s",
        quotes as f64 / elapsed.as_secs_f64()
    );
}
