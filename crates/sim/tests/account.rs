//! Trade server semantics: netting and hedging, fills, retcodes, stops, pending orders, faults.

use hedge_domain::{
    AccountMarginMode, DealEntry, DealReason, DealType, FillingModes, Magic, Money, OrderFilling,
    OrderState, OrderType, PositionId, Price, Retcode, Side, TradeAction, Volume,
};
use hedge_protocol::{Filling, TradeRequest};
use hedge_sim::{default_symbols, Account, AccountConfig, Faults, SimSymbol};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const T0: i64 = 1_700_000_000_000;

fn account(mode: AccountMarginMode) -> Account {
    account_with(mode, default_symbols(""))
}

fn account_with(mode: AccountMarginMode, symbols: Vec<SimSymbol>) -> Account {
    let config = AccountConfig {
        mode,
        balance: Money(dec!(100000)),
        ..AccountConfig::default()
    };
    let mut a = Account::new(config, symbols, T0);
    a.quote("EURUSD", Price(dec!(1.1)), Price(dec!(1.1002)), T0);
    a
}

fn v(d: Decimal) -> Volume {
    Volume(d)
}

fn market(symbol: &str, side: Side, volume: Decimal) -> TradeRequest {
    TradeRequest::market(symbol, OrderType::market(side), v(volume))
}

fn send(a: &mut Account, r: TradeRequest) -> hedge_protocol::Reply {
    a.send(&r, DealReason::Expert).reply
}

#[test]
fn netting_reduces_then_reverses_keeping_the_position_id() {
    let mut a = account(AccountMarginMode::RetailNetting);
    let open = send(&mut a, market("EURUSD", Side::Buy, dec!(0.3)));
    assert_eq!(open.retcode, Retcode::DONE);
    assert_eq!(
        open.position,
        PositionId(open.order.0),
        "position id = opening order ticket"
    );

    let reduce = send(&mut a, market("EURUSD", Side::Sell, dec!(0.1)));
    assert_eq!(reduce.position, open.position);
    let deal = a.deals().last().unwrap().clone();
    assert_eq!(deal.entry, DealEntry::Out);
    assert_eq!(a.positions()[0].volume, v(dec!(0.2)));

    let reverse = send(&mut a, market("EURUSD", Side::Sell, dec!(0.5)));
    assert_eq!(reverse.retcode, Retcode::DONE);
    let deal = a.deals().last().unwrap().clone();
    assert_eq!(deal.entry, DealEntry::InOut);
    assert_eq!(deal.volume, v(dec!(0.5)));
    assert_eq!(deal.position_id, open.position);
    let positions = a.positions();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].identifier, open.position);
    assert_eq!(positions[0].position_type.side(), Side::Sell);
    assert_eq!(positions[0].volume, v(dec!(0.3)));

    let flat = send(&mut a, market("EURUSD", Side::Buy, dec!(0.3)));
    assert_eq!(flat.retcode, Retcode::DONE);
    assert_eq!(a.deals().last().unwrap().entry, DealEntry::Out);
    assert!(a.positions().is_empty());
    // A new position after flat gets a new id.
    let again = send(&mut a, market("EURUSD", Side::Buy, dec!(0.1)));
    assert_ne!(again.position, open.position);
}

#[test]
fn netting_same_side_adds_with_an_average_price() {
    let mut a = account(AccountMarginMode::RetailNetting);
    send(&mut a, market("EURUSD", Side::Buy, dec!(0.1)));
    a.quote("EURUSD", Price(dec!(1.1010)), Price(dec!(1.1012)), T0 + 1);
    send(&mut a, market("EURUSD", Side::Buy, dec!(0.1)));
    let p = &a.positions()[0];
    assert_eq!(p.volume, v(dec!(0.2)));
    assert_eq!(p.price_open, Price(dec!(1.1007)));
    assert_eq!(a.deals().last().unwrap().entry, DealEntry::In);
}

#[test]
fn hedging_closes_by_position_and_an_opposite_order_without_it_opens_a_new_one() {
    let mut a = account(AccountMarginMode::RetailHedging);
    let first = send(&mut a, market("EURUSD", Side::Buy, dec!(0.2)));
    // The classic pitfall: a sell without `position` is a new short, not a close.
    let second = send(&mut a, market("EURUSD", Side::Sell, dec!(0.2)));
    assert_ne!(first.position, second.position);
    assert_eq!(a.positions().len(), 2);
    assert_eq!(a.deals().last().unwrap().entry, DealEntry::In);

    let mut partial = market("EURUSD", Side::Sell, dec!(0.05));
    partial.position = first.position;
    let r = send(&mut a, partial);
    assert_eq!(r.retcode, Retcode::DONE);
    assert_eq!(r.position, first.position);
    assert_eq!(a.deals().last().unwrap().entry, DealEntry::Out);
    assert_eq!(a.position(first.position).unwrap().volume, v(dec!(0.15)));

    let mut too_much = market("EURUSD", Side::Sell, dec!(0.5));
    too_much.position = first.position;
    assert_eq!(
        send(&mut a, too_much).retcode,
        Retcode::INVALID_CLOSE_VOLUME
    );

    let mut same_side = market("EURUSD", Side::Buy, dec!(0.05));
    same_side.position = first.position;
    assert_eq!(send(&mut a, same_side).retcode, Retcode::INVALID);

    let mut close = market("EURUSD", Side::Sell, dec!(0.15));
    close.position = first.position;
    assert_eq!(send(&mut a, close.clone()).retcode, Retcode::DONE);
    assert!(a.position(first.position).is_none());
    assert_eq!(send(&mut a, close).retcode, Retcode::POSITION_CLOSED);
    assert_eq!(a.positions().len(), 1);
}

#[test]
fn close_by_books_out_by_deals() {
    let mut a = account(AccountMarginMode::RetailHedging);
    let long = send(&mut a, market("EURUSD", Side::Buy, dec!(0.3)));
    let short = send(&mut a, market("EURUSD", Side::Sell, dec!(0.1)));
    let mut r = market("EURUSD", Side::Buy, dec!(0.1));
    r.action = TradeAction::CloseBy;
    r.order_type = OrderType::CloseBy;
    r.position = long.position;
    r.position_by = short.position;
    assert_eq!(send(&mut a, r).retcode, Retcode::DONE);
    let n = a.deals().len();
    assert!(a.deals()[n - 2..]
        .iter()
        .all(|d| d.entry == DealEntry::OutBy));
    assert_eq!(a.positions().len(), 1);
    assert_eq!(a.position(long.position).unwrap().volume, v(dec!(0.2)));
}

fn limited(filling: FillingModes, liquidity: Decimal) -> Account {
    let symbols = default_symbols("")
        .into_iter()
        .map(|s| {
            if s.spec.name == "EURUSD" {
                s.with_filling(filling).with_liquidity(Some(v(liquidity)))
            } else {
                s
            }
        })
        .collect();
    account_with(AccountMarginMode::RetailHedging, symbols)
}

fn with_filling(mut r: TradeRequest, f: OrderFilling) -> TradeRequest {
    r.type_filling = Filling::Mode(f);
    r
}

#[test]
fn fok_is_rejected_when_liquidity_is_short() {
    let mut a = limited(FillingModes::ALL, dec!(0.5));
    let r = send(
        &mut a,
        with_filling(market("EURUSD", Side::Buy, dec!(1)), OrderFilling::Fok),
    );
    assert_eq!(r.retcode, Retcode::REJECT);
    assert!(a.positions().is_empty() && a.orders().is_empty());
    // Within the liquidity it fills.
    let r = send(
        &mut a,
        with_filling(market("EURUSD", Side::Buy, dec!(0.5)), OrderFilling::Fok),
    );
    assert_eq!(r.retcode, Retcode::DONE);
}

#[test]
fn ioc_fills_what_it_can_and_cancels_the_rest() {
    let mut a = limited(FillingModes::ALL, dec!(0.5));
    let r = send(
        &mut a,
        with_filling(market("EURUSD", Side::Buy, dec!(1)), OrderFilling::Ioc),
    );
    assert_eq!(r.retcode, Retcode::DONE_PARTIAL);
    assert_eq!(r.volume, v(dec!(0.5)));
    assert_eq!(a.positions()[0].volume, v(dec!(0.5)));
    assert!(a.orders().is_empty(), "nothing keeps working");
    let h = a.history_orders().last().unwrap();
    assert_eq!(h.state, OrderState::Partial);
    assert_eq!(h.volume_current, v(dec!(0.5)));
    // Liquidity used up until the next quote: no price at all is 10021 (retryable), as trade
    // servers answer, not a rejection.
    let r = send(
        &mut a,
        with_filling(market("EURUSD", Side::Buy, dec!(0.1)), OrderFilling::Ioc),
    );
    assert_eq!(r.retcode, Retcode::PRICE_OFF);
    assert!(r.retcode.is_retryable());
}

#[test]
fn return_keeps_the_rest_working_until_liquidity_returns() {
    let mut a = limited(FillingModes::ALL, dec!(0.4));
    let r = send(
        &mut a,
        with_filling(market("EURUSD", Side::Buy, dec!(1)), OrderFilling::Return),
    );
    assert_eq!(r.retcode, Retcode::DONE_PARTIAL);
    assert_eq!(r.volume, v(dec!(0.4)));
    let working = a.orders();
    assert_eq!(working.len(), 1);
    assert_eq!(working[0].volume_current, v(dec!(0.6)));
    assert_eq!(working[0].state, OrderState::Partial);
    a.quote("EURUSD", Price(dec!(1.1)), Price(dec!(1.1002)), T0 + 10);
    assert_eq!(a.orders()[0].volume_current, v(dec!(0.2)));
    let txs = a.quote("EURUSD", Price(dec!(1.1)), Price(dec!(1.1002)), T0 + 20);
    assert!(a.orders().is_empty());
    assert!(!txs.is_empty());
    let positions = a.positions();
    assert_eq!(
        positions.len(),
        1,
        "every fill of one order adds to its position"
    );
    assert_eq!(positions[0].volume, v(dec!(1)));
    assert_eq!(positions[0].identifier, PositionId(r.order.0));
    assert_eq!(a.history_orders().last().unwrap().state, OrderState::Filled);
}

#[test]
fn a_filling_mode_the_symbol_does_not_allow_is_10030_and_auto_avoids_it() {
    let ioc_only = FillingModes {
        ioc: true,
        ..FillingModes::default()
    };
    let mut a = limited(ioc_only, dec!(100));
    let r = send(
        &mut a,
        with_filling(market("EURUSD", Side::Buy, dec!(0.1)), OrderFilling::Fok),
    );
    assert_eq!(r.retcode, Retcode::INVALID_FILL);
    assert_eq!(r.retcode.code(), 10030);
    assert!(a.positions().is_empty());
    let r = send(&mut a, market("EURUSD", Side::Buy, dec!(0.1)));
    assert_eq!(r.retcode, Retcode::DONE);
    assert_eq!(
        a.history_orders().last().unwrap().type_filling,
        OrderFilling::Ioc
    );
}

#[test]
fn stop_loss_and_take_profit_trigger_on_the_closing_price() {
    let mut a = account(AccountMarginMode::RetailHedging);
    let mut buy = market("EURUSD", Side::Buy, dec!(0.1));
    buy.sl = Price(dec!(1.095));
    buy.tp = Price(dec!(1.11));
    let long = send(&mut a, buy);
    let mut sell = market("EURUSD", Side::Sell, dec!(0.2));
    sell.tp = Price(dec!(1.0955));
    let short = send(&mut a, sell);
    // Ask falls to 1.0952: the short's TP (ask <= 1.0955) fires; bid 1.095 also hits the long's SL.
    let txs = a.quote("EURUSD", Price(dec!(1.095)), Price(dec!(1.0952)), T0 + 100);
    assert!(a.positions().is_empty());
    let closing: Vec<_> = a
        .deals()
        .iter()
        .filter(|d| d.entry == DealEntry::Out)
        .cloned()
        .collect();
    assert_eq!(closing.len(), 2);
    let by_pos = |p: PositionId| closing.iter().find(|d| d.position_id == p).unwrap().clone();
    let sl = by_pos(long.position);
    assert_eq!(sl.reason, DealReason::Sl);
    assert_eq!(sl.deal_type, DealType::Sell);
    assert_eq!(sl.price, Price(dec!(1.095)));
    assert_eq!(sl.profit, Money(dec!(-52)));
    let tp = by_pos(short.position);
    assert_eq!(tp.reason, DealReason::Tp);
    assert_eq!(tp.price, Price(dec!(1.0952)));
    assert_eq!(tp.profit, Money(dec!(96)));
    // The agent sees the closes with the positions' final state.
    assert!(txs
        .iter()
        .filter_map(|t| t.position_record.as_ref())
        .all(|p| p.volume.is_zero()));
    assert_eq!(a.balance(), Money(dec!(100000) + dec!(44)));
}

#[test]
fn modifying_stops_validates_and_reports_a_position_transaction() {
    let mut a = account(AccountMarginMode::RetailHedging);
    let long = send(&mut a, market("EURUSD", Side::Buy, dec!(0.1)));
    let mut m = market("EURUSD", Side::Buy, dec!(0));
    m.action = TradeAction::Sltp;
    m.position = long.position;
    m.sl = Price(dec!(1.2));
    let ex = a.send(&m, DealReason::Expert);
    assert_eq!(ex.reply.retcode, Retcode::INVALID_STOPS);
    m.sl = Price(dec!(1.09));
    let ex = a.send(&m, DealReason::Expert);
    assert_eq!(ex.reply.retcode, Retcode::DONE);
    assert_eq!(
        ex.txs[0].position_record.as_ref().unwrap().sl,
        Price(dec!(1.09))
    );
    assert_eq!(
        a.send(&m, DealReason::Expert).reply.retcode,
        Retcode::NO_CHANGES
    );
}

#[test]
fn margin_check_refuses_with_10019() {
    let config = AccountConfig {
        balance: Money(dec!(1000)),
        ..AccountConfig::default()
    };
    let mut a = Account::new(config, default_symbols(""), T0);
    // EURUSD needs 1,100 per lot.
    let r = send(&mut a, market("EURUSD", Side::Buy, dec!(1)));
    assert_eq!(r.retcode, Retcode::NO_MONEY);
    assert_eq!(r.retcode.code(), 10019);
    assert_eq!(
        send(&mut a, market("EURUSD", Side::Buy, dec!(0.5))).retcode,
        Retcode::DONE
    );
    let check = a.check(&market("EURUSD", Side::Buy, dec!(0.5)));
    assert_eq!(check.retcode, Retcode::NO_MONEY);
    assert_eq!(check.check.unwrap().margin, Money(dec!(1100)));
}

#[test]
fn invalid_requests_change_nothing() {
    let mut a = account(AccountMarginMode::RetailHedging);
    let deals = a.deals().len();
    assert_eq!(
        send(&mut a, market("NOPE", Side::Buy, dec!(0.1))).retcode,
        Retcode::INVALID
    );
    assert_eq!(
        send(&mut a, market("EURUSD", Side::Buy, dec!(0.001))).retcode,
        Retcode::INVALID_VOLUME
    );
    assert_eq!(
        send(&mut a, market("EURUSD", Side::Buy, dec!(0.015))).retcode,
        Retcode::INVALID_VOLUME
    );
    assert_eq!(
        send(&mut a, market("EURUSD", Side::Buy, dec!(1000))).retcode,
        Retcode::INVALID_VOLUME
    );
    let mut far = market("EURUSD", Side::Buy, dec!(0.1));
    // 20 points from the ask.
    far.price = Price(dec!(1.1004));
    far.deviation = 5;
    assert_eq!(send(&mut a, far.clone()).retcode, Retcode::REQUOTE);
    far.deviation = 20;
    assert_eq!(send(&mut a, far).retcode, Retcode::DONE);
    assert_eq!(a.deals().len(), deals + 1);
}

#[test]
fn pending_orders_trigger_and_can_be_removed() {
    let mut a = account(AccountMarginMode::RetailHedging);
    let mut limit = market("EURUSD", Side::Buy, dec!(0.2));
    limit.action = TradeAction::Pending;
    limit.order_type = OrderType::BuyLimit;
    limit.price = Price(dec!(1.0990));
    limit.sl = Price(dec!(1.09));
    let placed = send(&mut a, limit.clone());
    assert_eq!(placed.retcode, Retcode::PLACED);
    limit.price = Price(dec!(1.2));
    assert_eq!(send(&mut a, limit).retcode, Retcode::INVALID_PRICE);

    let mut stop = market("EURUSD", Side::Sell, dec!(0.1));
    stop.action = TradeAction::Pending;
    stop.order_type = OrderType::SellStop;
    stop.price = Price(dec!(1.08));
    let stop = send(&mut a, stop);
    assert_eq!(a.orders().len(), 2);

    a.quote("EURUSD", Price(dec!(1.0985)), Price(dec!(1.0987)), T0 + 5);
    assert_eq!(a.orders().len(), 1);
    let p = &a.positions()[0];
    assert_eq!(p.identifier, PositionId(placed.order.0));
    assert_eq!(p.price_open, Price(dec!(1.099)));
    assert_eq!(p.sl, Price(dec!(1.09)));

    let mut remove = market("EURUSD", Side::Sell, dec!(0));
    remove.action = TradeAction::Remove;
    remove.order = stop.order;
    assert_eq!(send(&mut a, remove.clone()).retcode, Retcode::DONE);
    assert!(a.orders().is_empty());
    assert_eq!(
        a.history_orders().last().unwrap().state,
        OrderState::Canceled
    );
    assert_eq!(send(&mut a, remove).retcode, Retcode::INVALID_ORDER);
}

#[test]
fn injected_faults_are_deterministic_for_a_seed() {
    let run = |seed: u64| -> Vec<Retcode> {
        let config = AccountConfig {
            seed,
            balance: Money(dec!(1000000)),
            faults: Faults {
                requote_rate: 0.3,
                reject_rate: 0.1,
                ..Faults::default()
            },
            ..AccountConfig::default()
        };
        let mut a = Account::new(config, default_symbols(""), T0);
        (0..200)
            .map(|_| send(&mut a, market("EURUSD", Side::Buy, dec!(0.01))).retcode)
            .collect()
    };
    let a = run(7);
    assert_eq!(a, run(7));
    assert_ne!(a, run(8));
    for code in [
        Retcode::REQUOTE,
        Retcode::PRICE_OFF,
        Retcode::REJECT,
        Retcode::DONE,
    ] {
        assert!(a.contains(&code), "{code} never happened");
    }
}

#[test]
fn history_selects_by_time() {
    let mut a = account(AccountMarginMode::RetailNetting);
    send(&mut a, market("EURUSD", Side::Buy, dec!(0.1)));
    a.set_time(T0 + 1000);
    send(&mut a, market("EURUSD", Side::Sell, dec!(0.1)));
    let (orders, deals) = a.history(T0 + 500, T0 + 2000);
    assert_eq!(orders.len(), 1);
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0].entry, DealEntry::Out);
    let (_, all) = a.history(0, i64::MAX);
    // Initial deposit plus two trades.
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].deal_type, DealType::Balance);
}

#[derive(Clone, Debug)]
enum OpKind {
    Open(usize, bool, i64),
    Close(usize, i64),
    Quote(usize, i64),
}

fn op_strategy() -> impl proptest::strategy::Strategy<Value = OpKind> {
    use proptest::prelude::*;
    prop_oneof![
        (0usize..3, any::<bool>(), 1i64..300).prop_map(|(s, b, v)| OpKind::Open(s, b, v)),
        (0usize..20, 1i64..300).prop_map(|(i, v)| OpKind::Close(i, v)),
        (0usize..3, -50i64..50).prop_map(|(s, m)| OpKind::Quote(s, m)),
    ]
}

fn check_invariant(
    mode: AccountMarginMode,
    ops: &[OpKind],
) -> Result<(), proptest::test_runner::TestCaseError> {
    let names = ["EURUSD", "GBPUSD", "XAUUSD"];
    let mut a = Account::new(
        AccountConfig {
            mode,
            balance: Money(dec!(100000000)),
            ..AccountConfig::default()
        },
        default_symbols(""),
        T0,
    );
    for (i, op) in ops.iter().enumerate() {
        let t = T0 + i as i64;
        a.set_time(t);
        match op {
            OpKind::Open(s, buy, units) => {
                let mut r = market(
                    names[*s],
                    if *buy { Side::Buy } else { Side::Sell },
                    Decimal::new(*units, 2),
                );
                r.sl = Price::ZERO;
                a.send(&r, DealReason::Expert);
            }
            OpKind::Close(idx, units) => {
                let positions = a.positions();
                if positions.is_empty() {
                    continue;
                }
                let p = &positions[idx % positions.len()];
                let volume = v(Decimal::new(*units, 2)).min(p.volume);
                let mut r = TradeRequest::close(
                    p.symbol.clone(),
                    p.identifier,
                    OrderType::market(p.position_type.side().opposite()),
                    volume,
                );
                r.magic = Magic(1);
                a.send(&r, DealReason::Expert);
            }
            OpKind::Quote(s, moves) => {
                let spec = a.symbol(names[*s]).unwrap().clone();
                let bid = Price(spec.bid.0 + spec.spec.point.0 * Decimal::from(*moves));
                let ask = Price(bid.0 + spec.spec.point.0 * Decimal::from(10));
                a.quote(names[*s], bid, ask, t);
            }
        }
    }
    let mut from_deals: std::collections::BTreeMap<String, Decimal> = Default::default();
    for d in a.deals() {
        if let Some(side) = d.deal_type.side() {
            *from_deals.entry(d.symbol.clone()).or_default() +=
                d.volume.0 * Decimal::from(side.sign());
        }
    }
    let net = a.net_positions();
    for name in names {
        let x = from_deals.get(name).copied().unwrap_or_default();
        let y = net.get(name).copied().unwrap_or_default();
        proptest::prop_assert_eq!(x, y, "{} in {:?}", name, mode);
    }
    // The incremental per-symbol sums agree with the positions themselves.
    let margin: Money = a
        .positions()
        .iter()
        .map(|p| Money(a.symbol(&p.symbol).unwrap().spec.margin_per_lot.0 * p.volume.0))
        .sum();
    proptest::prop_assert_eq!(a.margin(), margin);
    let floating: Money = a.positions().iter().map(|p| p.profit).sum();
    let slack = Decimal::new(1, 2) * Decimal::from(a.positions().len() as i64 + 1);
    proptest::prop_assert!((a.floating_profit().0 - floating.0).abs() <= slack);
    if mode.is_netting() {
        let mut seen = std::collections::BTreeSet::new();
        for p in a.positions() {
            proptest::prop_assert!(
                seen.insert(p.symbol.clone()),
                "two positions on {}",
                p.symbol
            );
        }
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    #[test]
    fn deal_volumes_sum_to_the_net_position_on_netting(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        check_invariant(AccountMarginMode::RetailNetting, &ops)?;
    }

    #[test]
    fn deal_volumes_sum_to_the_net_position_on_hedging(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        check_invariant(AccountMarginMode::RetailHedging, &ops)?;
    }
}

#[test]
fn order_check_gives_the_figures_after_the_order_and_changes_nothing() {
    let mut a = account(AccountMarginMode::RetailHedging);
    let open = send(&mut a, market("EURUSD", Side::Buy, dec!(1)));
    assert_eq!(open.retcode, Retcode::DONE);
    a.quote("EURUSD", Price(dec!(1.1050)), Price(dec!(1.1052)), T0 + 1);
    let (deals, equity) = (a.deals().len(), a.equity());
    // Opening another lot: 1,100 more margin, balance and profit as they are.
    let r = a.check(&market("EURUSD", Side::Buy, dec!(1)));
    assert_eq!((r.retcode, r.comment.as_str()), (Retcode::DONE, "Done"));
    let c = r.check.unwrap();
    assert_eq!(c.margin, Money(dec!(2200)));
    assert_eq!(c.equity, equity);
    assert_eq!(c.margin_free, equity - Money(dec!(2200)));
    assert_eq!(c.balance, Money(dec!(100000)));
    // Closing half of the position: margin released, its profit moves into the balance.
    let mut close = market("EURUSD", Side::Sell, dec!(0.5));
    close.position = open.position;
    let c = a.check(&close).check.unwrap();
    assert_eq!(c.margin, Money(dec!(550)));
    // 0.5 lot from 1.1002 to 1.1050: 480 ticks of 1 a lot.
    assert_eq!(c.balance, Money(dec!(100240)));
    assert_eq!(c.profit, Money(dec!(240)));
    assert_eq!(c.equity, equity);
    // Equity 100,480 on 550 of margin.
    assert_eq!(c.margin_level, Money(dec!(18269.09)));
    assert_eq!(a.deals().len(), deals, "a check books nothing");
    assert_eq!(a.positions().len(), 1);
    assert_eq!(a.margin_level(), Some(equity.0 / dec!(1100) * dec!(100)));
}

#[test]
fn stop_out_closes_the_largest_loss_first_until_the_level_recovers() {
    let config = AccountConfig {
        balance: Money(dec!(3000)),
        stop_out_level: Some(dec!(50)),
        ..AccountConfig::default()
    };
    let mut a = Account::new(config, default_symbols(""), T0);
    a.quote("EURUSD", Price(dec!(1.1)), Price(dec!(1.1)), T0);
    a.quote("GBPUSD", Price(dec!(1.3)), Price(dec!(1.3)), T0);
    let eur = send(&mut a, market("EURUSD", Side::Buy, dec!(1)));
    let gbp = send(&mut a, market("GBPUSD", Side::Buy, dec!(1)));
    assert!(eur.retcode.is_done() && gbp.retcode.is_done());
    // Margin 2,370. EURUSD falls 200 points (-2,000): equity 1,000, level 42 %.
    let txs = a.quote("EURUSD", Price(dec!(1.08)), Price(dec!(1.08)), T0 + 1);
    let closes: Vec<_> = txs.iter().filter_map(|t| t.deal_record.as_ref()).collect();
    assert_eq!(closes.len(), 1, "one close brings the level back");
    assert_eq!(
        closes[0].position_id, eur.position,
        "the largest loss first"
    );
    assert_eq!(closes[0].reason, DealReason::So);
    assert_eq!(closes[0].entry, DealEntry::Out);
    assert!(
        closes[0].comment.starts_with("[so 42.19%"),
        "{}",
        closes[0].comment
    );
    assert_eq!(a.balance(), Money(dec!(1000)));
    assert_eq!(a.positions().len(), 1);
    // A withdrawal that takes the level down stops the last one out.
    let txs = a.balance_change(Money(dec!(-500)), "withdrawal");
    assert_eq!(txs[0].deal_type, Some(DealType::Balance));
    assert!(txs.iter().any(|t| t
        .deal_record
        .as_ref()
        .is_some_and(|d| d.reason == DealReason::So)));
    assert!(a.positions().is_empty());
}

#[test]
fn without_a_stop_out_level_nothing_is_closed() {
    let config = AccountConfig {
        balance: Money(dec!(3000)),
        ..AccountConfig::default()
    };
    let mut a = Account::new(config, default_symbols(""), T0);
    a.quote("EURUSD", Price(dec!(1.1)), Price(dec!(1.1)), T0);
    send(&mut a, market("EURUSD", Side::Buy, dec!(1)));
    let txs = a.quote("EURUSD", Price(dec!(1.08)), Price(dec!(1.08)), T0 + 1);
    assert!(txs.is_empty());
    assert_eq!(a.positions().len(), 1);
}

#[test]
fn a_smaller_contract_is_a_smaller_lot_in_margin_and_profit() {
    let ten_oz: Vec<SimSymbol> = default_symbols("")
        .into_iter()
        .map(|s| {
            if s.spec.name == "XAUUSD" {
                s.with_contract_size(dec!(10))
            } else {
                s
            }
        })
        .collect();
    let mut small = account_with(AccountMarginMode::RetailHedging, ten_oz);
    let mut large = account(AccountMarginMode::RetailHedging);
    for a in [&mut small, &mut large] {
        a.quote("XAUUSD", Price(dec!(1900)), Price(dec!(1900)), T0);
    }
    // 100 oz either way: 10 lots of 10 oz, 1 lot of 100 oz.
    assert!(send(&mut small, market("XAUUSD", Side::Buy, dec!(10)))
        .retcode
        .is_done());
    assert!(send(&mut large, market("XAUUSD", Side::Buy, dec!(1)))
        .retcode
        .is_done());
    assert_eq!(small.margin(), large.margin());
    for a in [&mut small, &mut large] {
        a.quote("XAUUSD", Price(dec!(1910)), Price(dec!(1910)), T0 + 1);
    }
    assert_eq!(small.floating_profit(), Money(dec!(1000)));
    assert_eq!(small.floating_profit(), large.floating_profit());
}
