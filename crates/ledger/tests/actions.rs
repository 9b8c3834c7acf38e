//! Action plans, virtual take-profit, trailing stop, execution with retries, reconciliation and
//! reports, on small ledgers.

use hedge_domain::{
    DealEntry, DealTicket, DealType, Login, Magic, Money, OrderState, OrderTicket, OrderType,
    PositionId, Price, Retcode, Side, SymbolSpec, Volume,
};
use hedge_ledger::actions::{
    self, plan_change_exit_comment, plan_close, plan_delete_stop_loss, plan_modify_stop_loss,
    plan_open, plan_set_stop_loss, ActionError, BrokerRequest, Execution, Status, TrailingStop,
};
use hedge_ledger::export::{self, Columns, CsvEncoding, ReportContext};
use hedge_ledger::reconcile::{hide_flat, propose_correction, reconcile, HideError};
use hedge_ledger::{decode, encode, History, Ledger, LedgerDeal, LedgerOrder, LinkKind};
use rust_decimal::Decimal;
use std::str::FromStr;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}
fn v(s: &str) -> Volume {
    Volume(d(s))
}
fn p(s: &str) -> Price {
    Price(d(s))
}

fn order(
    t: u64,
    ty: OrderType,
    magic: Magic,
    state: OrderState,
    price: &str,
    comment: &str,
) -> LedgerOrder {
    LedgerOrder {
        ticket: OrderTicket(t),
        symbol: "EURUSD".into(),
        order_type: ty,
        state,
        magic,
        volume_initial: v("1"),
        volume_current: Volume::ZERO,
        price_open: p(price),
        time_setup_msc: t as i64,
        time_done_msc: t as i64,
        position_id: PositionId(0),
        comment: comment.into(),
    }
}

fn deal(t: u64, order: u64, side: Side, vol: &str, price: &str) -> LedgerDeal {
    LedgerDeal {
        ticket: DealTicket(t),
        order: OrderTicket(order),
        symbol: "EURUSD".into(),
        deal_type: if side == Side::Buy {
            DealType::Buy
        } else {
            DealType::Sell
        },
        entry: DealEntry::In,
        magic: Magic(0),
        position_id: PositionId(0),
        volume: v(vol),
        price: p(price),
        commission: Money(d("-2")),
        swap: Money::ZERO,
        profit: Money::ZERO,
        time_msc: t as i64,
        comment: String::new(),
    }
}

/// A long position 10 (2 lots @ 1.1000) with a pending SL order 11 at 1.0900, and a short 20 without SL.
fn ledger() -> Ledger {
    let mut h = History::default();
    h.account.login = Login(77);
    h.orders.push(order(
        10,
        OrderType::Buy,
        Magic(555),
        OrderState::Filled,
        "0",
        "entry",
    ));
    h.deals.push(deal(100, 10, Side::Buy, "2", "1.1"));
    let mut stop = order(
        11,
        OrderType::SellStop,
        encode(OrderTicket(10), LinkKind::StopLoss).unwrap(),
        OrderState::Placed,
        "1.09",
        "my exit",
    );
    // Placed after the position's opening deal, as the server's clock has it.
    stop.time_setup_msc = 150;
    stop.time_done_msc = 0;
    h.orders.push(stop);
    h.orders.push(order(
        20,
        OrderType::Sell,
        Magic(0),
        OrderState::Filled,
        "0",
        "",
    ));
    h.deals.push(deal(200, 20, Side::Sell, "1", "1.2"));
    Ledger::replay(&h).unwrap()
}

#[test]
fn partial_close_cancels_the_stop_first_and_replaces_it_after() {
    let l = ledger();
    let pos = l.active(PositionId(10)).unwrap();
    let plan = plan_close(&pos, Some(v("0.5")), LinkKind::Market, "bye", None).unwrap();
    assert_eq!(plan.steps.len(), 3);
    assert_eq!(
        plan.steps[0].request,
        BrokerRequest::CancelOrder {
            order: OrderTicket(11)
        }
    );
    match &plan.steps[1].request {
        BrokerRequest::Market {
            side,
            volume,
            magic,
            ..
        } => {
            assert_eq!(*side, Side::Sell);
            assert_eq!(*volume, v("0.5"));
            let link = decode(*magic).unwrap();
            assert_eq!(link.ticket, OrderTicket(10));
            assert_eq!(link.kind(), Some(LinkKind::Market));
        }
        other => panic!("{other:?}"),
    }
    match &plan.steps[2].request {
        BrokerRequest::PlaceStop {
            order_type,
            volume,
            price,
            magic,
            comment,
            ..
        } => {
            assert_eq!(*order_type, OrderType::SellStop);
            assert_eq!(*volume, v("1.5"));
            assert_eq!(*price, p("1.09"));
            assert_eq!(comment, "my exit");
            assert!(decode(*magic).unwrap().is_stop_loss());
        }
        other => panic!("{other:?}"),
    }
    // A full close has no re-placement; too much volume is refused.
    let full = plan_close(&pos, None, LinkKind::StopLoss, "", None).unwrap();
    assert_eq!(full.steps.len(), 2);
    assert!(matches!(
        plan_close(&pos, Some(v("3")), LinkKind::Market, "", None),
        Err(ActionError::VolumeTooLarge { .. })
    ));
    // The symbol's step applies to partial volumes.
    let spec = SymbolSpec::forex("EURUSD", 5);
    assert!(plan_close(&pos, Some(v("0.001")), LinkKind::Market, "", Some(&spec)).is_err());
}

#[test]
fn stop_loss_set_modify_delete_and_comment() {
    let l = ledger();
    let long = l.active(PositionId(10)).unwrap();
    let short = l.active(PositionId(20)).unwrap();
    assert!(matches!(
        plan_set_stop_loss(&long, p("1.0"), None, ""),
        Err(ActionError::StopExists(_))
    ));
    let set = plan_set_stop_loss(&short, p("1.25"), Some(p("1.21")), "c").unwrap();
    assert!(matches!(
        &set.steps[0].request,
        BrokerRequest::PlaceStop {
            order_type: OrderType::BuyStop,
            ..
        }
    ));
    // A stop on the wrong side of the price would trigger at once.
    assert!(plan_set_stop_loss(&short, p("1.19"), Some(p("1.21")), "").is_err());
    let m = plan_modify_stop_loss(&long, p("1.095"), Some(p("1.1"))).unwrap();
    assert_eq!(
        m.steps[0].request,
        BrokerRequest::ModifyStop {
            order: OrderTicket(11),
            price: p("1.095")
        }
    );
    assert_eq!(
        plan_modify_stop_loss(&long, p("1.09"), None),
        Err(ActionError::NoChanges)
    );
    assert!(matches!(
        plan_delete_stop_loss(&short),
        Err(ActionError::NoStop(_))
    ));
    assert_eq!(plan_delete_stop_loss(&long).unwrap().steps.len(), 1);
    let c = plan_change_exit_comment(&long, "a much longer comment than thirty-one characters")
        .unwrap();
    assert_eq!(c.steps.len(), 2);
    match &c.steps[1].request {
        BrokerRequest::PlaceStop { comment, .. } => assert_eq!(comment.chars().count(), 31),
        other => panic!("{other:?}"),
    }
    let local = plan_change_exit_comment(&short, "x").unwrap();
    assert!(local.steps.is_empty());
    assert_eq!(local.local_exit_comment.as_deref(), Some("x"));
    assert!(matches!(
        plan_open("EURUSD", Side::Buy, v("1"), Magic(1 << 63), "", None),
        Err(ActionError::LinkMagic(_))
    ));
}

#[test]
fn virtual_take_profit_and_trailing_stop() {
    let l = ledger();
    let long = l.active(PositionId(10)).unwrap();
    assert!(
        actions::validate_take_profit(Side::Buy, p("1.2"), None, p("1.1"), p("1.1001")).is_ok()
    );
    assert!(
        actions::validate_take_profit(Side::Buy, p("1.05"), None, p("1.1"), p("1.1001")).is_err()
    );
    assert_eq!(
        actions::validate_take_profit(Side::Buy, p("1.2"), Some(p("1.2")), p("1.1"), p("1.1")),
        Err(ActionError::NoChanges)
    );
    assert!(
        actions::check_take_profit(&long, p("1.2"), p("1.19"), p("1.1901"), "")
            .unwrap()
            .is_none()
    );
    let fire = actions::check_take_profit(&long, p("1.2"), p("1.2"), p("1.2001"), "tp")
        .unwrap()
        .unwrap();
    match &fire.steps.last().unwrap().request {
        BrokerRequest::Market { magic, .. } => assert!(decode(*magic).unwrap().is_take_profit()),
        other => panic!("{other:?}"),
    }
    // Trailing: distance 0.01 captured at 1.10; moves up with the price, never down.
    let t = TrailingStop::enable(&long, p("1.1")).unwrap();
    assert_eq!(t.distance, p("0.01"));
    assert_eq!(
        t.new_level(Side::Buy, p("1.09"), p("1.105")),
        Some(p("1.095"))
    );
    assert_eq!(t.new_level(Side::Buy, p("1.09"), p("1.08")), None);
    assert_eq!(
        t.new_level(Side::Buy, p("1.09"), p("1.05")),
        None,
        "a gap through the stop"
    );
    assert_eq!(
        t.new_level(Side::Sell, p("1.21"), p("1.19")),
        Some(p("1.2"))
    );
    assert_eq!(t.new_level(Side::Sell, p("1.21"), p("1.25")), None);
    let plan = t
        .on_price(&long, p("1.12"), Some(&SymbolSpec::forex("EURUSD", 5)))
        .unwrap();
    assert_eq!(
        plan.steps[0].request,
        BrokerRequest::ModifyStop {
            order: OrderTicket(11),
            price: p("1.11")
        }
    );
}

#[test]
fn execution_retries_retryable_fails_fatal_and_accepts_gone_orders() {
    let l = ledger();
    let pos = l.active(PositionId(10)).unwrap();
    let plan = plan_close(&pos, None, LinkKind::Market, "", None).unwrap();
    let mut ex = Execution::new(plan.clone());
    assert!(matches!(
        ex.next_request(0),
        Some(BrokerRequest::CancelOrder { .. })
    ));
    ex.on_result(Retcode::INVALID_ORDER, true); // already gone: done
    assert!(matches!(
        ex.next_request(1),
        Some(BrokerRequest::Market { .. })
    ));
    ex.on_result(Retcode::REQUOTE, false);
    assert_eq!(
        ex.status,
        Status::Send {
            step: 1,
            attempt: 1
        }
    );
    ex.next_request(2);
    ex.on_tick(2 + 29_999);
    assert!(matches!(ex.status, Status::Waiting { .. }));
    ex.on_tick(2 + 30_000); // timed out: it may have filled, so nothing is resent yet
    assert!(matches!(ex.status, Status::Unconfirmed { step: 1, .. }));
    assert!(ex.next_request(30_003).is_none());
    ex.confirm(&l); // the history shows no such order and the position is whole: resend
    assert_eq!(
        ex.status,
        Status::Send {
            step: 1,
            attempt: 2
        }
    );
    ex.next_request(40_000);
    ex.on_result(Retcode::DONE, false);
    assert_eq!(ex.status, Status::Done);
    assert!(ex.is_finished());

    let mut ex = Execution::new(plan.clone());
    ex.next_request(0);
    ex.on_result(Retcode::NO_MONEY, false);
    assert!(matches!(ex.status, Status::Failed { step: 0, .. }));

    let mut ex = Execution::new(plan);
    ex.next_request(0);
    ex.on_result(Retcode::DONE, false);
    for i in 0..=3 {
        ex.next_request(i);
        ex.on_result(Retcode::PRICE_CHANGED, false);
    }
    assert!(
        matches!(ex.status, Status::Failed { step: 1, .. }),
        "{:?}",
        ex.status
    );
}

#[test]
fn reconciliation_reports_mismatches_and_proposes_a_fix() {
    let l = ledger();
    // Ledger: EURUSD +2 - 1 = +1.
    assert!(reconcile(&l, &[("EURUSD".into(), v("1"))]).is_empty());
    let m = reconcile(
        &l,
        &[("EURUSD".into(), v("0.5")), ("GBPUSD".into(), v("-1"))],
    );
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].symbol, "EURUSD");
    assert_eq!((m[0].ledger, m[0].broker), (v("1"), v("0.5")));
    assert_eq!((m[1].ledger, m[1].broker), (Volume::ZERO, v("-1")));
    let c = propose_correction(&l, &m[0]);
    assert_eq!(c.exclude, vec![PositionId(10), PositionId(20)]);
    match c.order {
        Some(BrokerRequest::Market {
            side,
            volume,
            magic,
            ..
        }) => {
            assert_eq!((side, volume, magic), (Side::Sell, v("0.5"), Magic(0)));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        hide_flat(&l, &[("EURUSD".into(), v("1"))]),
        Err(HideError::NotFlat(_))
    ));
    assert_eq!(hide_flat(&l, &[]).unwrap().len(), 2);
}

#[test]
fn csv_reports_follow_the_columns_and_encodings() {
    let l = ledger();
    let mut ctx = ReportContext::default();
    ctx.specs
        .insert("EURUSD".into(), SymbolSpec::forex("EURUSD", 5));
    ctx.prices
        .insert("EURUSD".into(), (p("1.1010"), p("1.1012")));
    let cols = Columns::parse("Magic,Symbol,EntryID=Entry ID,Type,Volume,EntryPrice,StopLoss,CurrentPrice,Commission,Profit,ExitComment", false).unwrap();
    let csv = String::from_utf8(export::active_csv(&l, &ctx, &cols, CsvEncoding::Utf8)).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "Magic;Symbol;Entry ID;Type;Volume;EntryPrice;StopLoss;CurrentPrice;Commission;Profit;ExitComment");
    assert_eq!(
        lines[1],
        "555;EURUSD;10;BUY;2.00;1.10000;1.09000;1.10100;-2.00000;200.00000000;my exit"
    );
    assert_eq!(
        lines[2],
        "0;EURUSD;20;SELL;1.00;1.20000;0.00000;1.10120;-2.00000;9880.00000000;"
    );
    let bytes = export::active_csv(&l, &ctx, &cols, CsvEncoding::Utf16Excel);
    assert_eq!(&bytes[..2], &[0xFF, 0xFE]);
    let text = String::from_utf16(
        &bytes[2..]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(text.starts_with("Magic;Symbol;"));
    assert!(text.contains(";ExitComment;\r\n555;"));
    assert!(Columns::parse("ExitPrice", false).is_err());
    assert!(Columns::parse("CurrentPrice", true).is_err());
    assert!(Columns::parse("Nope", true).is_err());
    let rows = export::active_rows(&l, &ctx);
    assert_eq!(
        export::active_summary(&rows, Money(d("10000")), Money(d("100")), Money(d("11188"))),
        "Balance: 10000.00  Floating P/L: 10080.00 (100.80%)  Margin: 0.89%"
    );
    let h = export::history_csv(&l, &ctx, &Columns::default_history(), CsvEncoding::Utf8);
    assert_eq!(String::from_utf8(h).unwrap().lines().count(), 1);
    assert_eq!(
        export::history_summary(&[], Money(d("5")), "USD"),
        "Balance: 5.00  Total P/L: 0.00$ Pos.: 0"
    );
}

#[test]
fn columns_from_the_original_settings_file() {
    let xml = r#"<Hedge-Terminal-Settings>
  <Show-Columns>
    <Active-Position>
      <Column ID="Magic" Name="Magic" Width="100"/>
      <Column ID="Symbol" Name="Symbol" Width="70"/>
      <Column ID="ExitPrice" Name="Exit" Width="50"/>
      <Column ID="EntryID" Name="Entry ID" Width="0"/>
    </Active-Position>
    <History-Position>
      <!-- <Column ID="Magic" Name="Magic" Width="100"/> -->
      <Column ID="EntryID" Name="Entry ID" Width="80"/>
      <Column ID="CurrentPrice" Name="Price" Width="50"/>
      <Column ID="ExitPrice" Name="Exit Price" Width="50"></Column>
    </History-Position>
  </Show-Columns>
  <Other-Settings><Deviation Value="30"/></Other-Settings>
</Hedge-Terminal-Settings>"#;
    let (a, h) = Columns::from_settings_xml(xml).unwrap();
    assert_eq!(
        a.0.iter()
            .map(|(c, n)| (c.id(), n.as_str()))
            .collect::<Vec<_>>(),
        vec![("Magic", "Magic"), ("Symbol", "Symbol")]
    );
    assert_eq!(
        h.0.iter().map(|(c, _)| c.id()).collect::<Vec<_>>(),
        vec!["EntryID", "ExitPrice"]
    );
    assert!(Columns::from_settings_xml("<a><b></a>").is_err());
}

#[test]
fn history_shows_a_virtual_take_profit_that_never_fired() {
    let mut h = History::default();
    h.orders.push(order(
        10,
        OrderType::Buy,
        Magic(0),
        OrderState::Filled,
        "0",
        "",
    ));
    h.deals.push(deal(100, 10, Side::Buy, "1", "1.1"));
    h.orders.push(order(
        12,
        OrderType::Sell,
        encode(OrderTicket(10), LinkKind::Market).unwrap(),
        OrderState::Filled,
        "0",
        "",
    ));
    h.deals.push(deal(101, 12, Side::Sell, "1", "1.12"));
    let l = Ledger::replay(&h).unwrap();
    let mut state = hedge_ledger::state::LocalState::default();
    state.position_mut(0, PositionId(10)).take_profit = Some(p("1.15"));
    let ctx = ReportContext {
        local: Some(state.clone()),
        ..Default::default()
    };
    assert_eq!(
        export::history_rows(&l, &ctx)[0].take_profit,
        Some(p("1.15"))
    );
    // A level below the exit price of a long would have fired: not shown.
    state.position_mut(0, PositionId(10)).take_profit = Some(p("1.11"));
    let ctx = ReportContext {
        local: Some(state),
        ..Default::default()
    };
    assert_eq!(export::history_rows(&l, &ctx)[0].take_profit, None);
}

#[test]
fn exchange_symbols_send_limit_orders_acting_as_market() {
    let mut spec = SymbolSpec::forex("SBER", 2);
    spec.tick_size = p("0.05");
    let req = plan_open("SBER", Side::Sell, v("1"), Magic(0), "", None).unwrap();
    match actions::as_exchange_limit(req, p("250.13"), p("250.20"), 30, &spec) {
        BrokerRequest::LimitAsMarket {
            order_type, price, ..
        } => {
            assert_eq!(order_type, OrderType::SellLimit);
            assert_eq!(price, p("249.8")); // 250.13 - 0.30 = 249.83, down to the tick
        }
        other => panic!("{other:?}"),
    }
    let req = plan_open("SBER", Side::Buy, v("1"), Magic(0), "", None).unwrap();
    match actions::as_exchange_limit(req, p("250.13"), p("250.20"), 30, &spec) {
        BrokerRequest::LimitAsMarket {
            order_type, price, ..
        } => {
            assert_eq!(order_type, OrderType::BuyLimit);
            assert_eq!(price, p("250.5"));
        }
        other => panic!("{other:?}"),
    }
    let cancel = BrokerRequest::CancelOrder {
        order: OrderTicket(1),
    };
    assert_eq!(
        actions::as_exchange_limit(cancel.clone(), p("1"), p("1"), 30, &spec),
        cancel
    );
}

#[test]
fn csv_prices_take_the_history_digits_not_the_arithmetic() {
    // One order filled at 1.1 and 1.2 (average 1.1666...), partly closed at 1.15; no symbol specs.
    let mut h = History::default();
    let mut open = order(1, OrderType::Buy, Magic(0), OrderState::Filled, "0", "");
    open.volume_initial = v("3");
    h.orders.push(open);
    h.deals.push(deal(11, 1, Side::Buy, "1", "1.1"));
    h.deals.push(deal(12, 1, Side::Buy, "2", "1.2"));
    h.orders.push(order(
        2,
        OrderType::Sell,
        Magic(0),
        OrderState::Filled,
        "0",
        "",
    ));
    h.deals.push(deal(13, 2, Side::Sell, "1", "1.15"));
    let l = Ledger::replay(&h).unwrap();
    let cols = Columns::parse("EntryID,EntryPrice,StopLoss,Commission", false).unwrap();
    let csv = String::from_utf8(export::active_csv(
        &l,
        &ReportContext::default(),
        &cols,
        CsvEncoding::Utf8,
    ))
    .unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows, vec!["1;1.17;0.00;-4.00", "2;1.15;0.00;-2.00"]);
}

#[test]
fn csv_text_cells_are_quoted_and_neutralised_but_numbers_are_not() {
    let mut h = History::default();
    h.orders.push(order(
        1,
        OrderType::Sell,
        Magic(0),
        OrderState::Filled,
        "0",
        "=HYPERLINK(\"x\");a",
    ));
    h.deals.push(deal(11, 1, Side::Sell, "1", "1.1"));
    h.orders.push(order(
        2,
        OrderType::Buy,
        Magic(0),
        OrderState::Filled,
        "0",
        "-5 lots",
    ));
    h.deals.push(deal(12, 2, Side::Buy, "1", "1.1"));
    let l = Ledger::replay(&h).unwrap();
    let cols = Columns::parse("EntryID,Commission,EntryComment=@Note", false).unwrap();
    let csv = String::from_utf8(export::active_csv(
        &l,
        &ReportContext::default(),
        &cols,
        CsvEncoding::Utf8,
    ))
    .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        vec![
            "EntryID;Commission;'@Note",
            "1;-2.0;\"'=HYPERLINK(\"\"x\"\");a\"",
            "2;-2.0;'-5 lots",
        ]
    );
    assert_eq!(export::neutralize("EURUSD"), "EURUSD");
    assert_eq!(export::neutralize("\tcmd"), "'\tcmd");
}

/// The ledger after the close order `order` filled `vol` of position 10 (which still has its stop).
fn after_close(order_state: OrderState, vol: Option<&str>) -> Ledger {
    let mut l = ledger();
    let magic = encode(OrderTicket(10), LinkKind::Market).unwrap();
    let mut o = order(30, OrderType::Sell, magic, order_state, "0", "");
    o.time_setup_msc = 300;
    l.apply_order(&o).unwrap();
    if let Some(vol) = vol {
        l.apply_deal(&deal(300, 30, Side::Sell, vol, "1.2"))
            .unwrap();
    }
    l
}

#[test]
fn a_timed_out_close_is_resent_only_when_it_certainly_did_not_fill() {
    let l = ledger();
    let plan = plan_close(
        &l.active(PositionId(10)).unwrap(),
        None,
        LinkKind::Market,
        "",
        None,
    )
    .unwrap();
    let timed_out = || {
        let mut ex = Execution::new(plan.clone());
        ex.next_request(0);
        ex.on_result(Retcode::DONE, false); // the stop is cancelled
        ex.next_request(1);
        ex.on_tick(1 + 30_000);
        ex
    };
    // The first close filled after all: done, and no second (reversing) close.
    let mut ex = timed_out();
    ex.confirm(&after_close(OrderState::Filled, Some("2")));
    assert_eq!(ex.status, Status::Done);
    // Its order is in history as filled but the deal is not in yet: wait.
    let mut ex = timed_out();
    ex.confirm(&after_close(OrderState::Filled, None));
    assert!(matches!(ex.status, Status::Unconfirmed { .. }));
    // Still working on the server: wait.
    let mut ex = timed_out();
    ex.confirm(&after_close(OrderState::Placed, None));
    assert!(matches!(ex.status, Status::Unconfirmed { .. }));
    // Half filled: the plan stops, to be planned again from what is left.
    let mut ex = timed_out();
    ex.confirm(&after_close(OrderState::Filled, Some("1")));
    assert!(matches!(ex.status, Status::Failed { step: 1, .. }));
    // An answer of "timeout" or "no connection" is just as uncertain.
    let mut ex = Execution::new(plan.clone());
    ex.next_request(0);
    ex.on_result(Retcode::DONE, false);
    ex.next_request(1);
    ex.on_result(Retcode::CONNECTION, false);
    assert!(matches!(ex.status, Status::Unconfirmed { .. }));
    ex.confirm(&l);
    assert_eq!(
        ex.status,
        Status::Send {
            step: 1,
            attempt: 1
        }
    );
}

#[test]
fn stop_orders_can_expire_with_their_symbol() {
    let l = ledger();
    let pos = l.active(PositionId(10)).unwrap();
    let plan = plan_close(&pos, Some(v("0.5")), LinkKind::Market, "", None).unwrap();
    let plan = actions::with_stop_expiry(plan, Some(1_000));
    match &plan.steps[2].request {
        BrokerRequest::PlaceStop { expiry, .. } => assert_eq!(
            *expiry,
            actions::StopExpiry::Specified {
                expiration_msc: 1_000 + 86_400_000
            }
        ),
        other => panic!("{other:?}"),
    }
    let json = serde_json::to_value(&plan.steps[2].request).unwrap();
    assert_eq!(json["expiry"]["type_time"], "specified");
    let gtc = plan_close(&pos, Some(v("0.5")), LinkKind::Market, "", None).unwrap();
    let gtc = actions::with_stop_expiry(gtc, None);
    assert!(matches!(
        &gtc.steps[2].request,
        BrokerRequest::PlaceStop {
            expiry: actions::StopExpiry::Gtc,
            ..
        }
    ));
}

#[test]
fn closes_on_hedging_accounts_name_the_position() {
    let mut h = History::default();
    h.account.margin_mode = hedge_domain::AccountMarginMode::RetailHedging;
    for (t, side) in [(10, Side::Buy), (20, Side::Sell)] {
        let ty = OrderType::market(side);
        h.orders
            .push(order(t, ty, Magic(0), OrderState::Filled, "0", ""));
        let mut dl = deal(t * 10, t, side, "1", "1.1");
        dl.position_id = PositionId(t);
        h.deals.push(dl);
    }
    let l = Ledger::replay(&h).unwrap();
    for id in [10, 20] {
        let plan = plan_close(
            &l.active(PositionId(id)).unwrap(),
            Some(v("0.5")),
            LinkKind::Market,
            "",
            None,
        )
        .unwrap();
        match &plan.steps[0].request {
            BrokerRequest::Market { position, .. } => assert_eq!(*position, Some(PositionId(id))),
            other => panic!("{other:?}"),
        }
        let json = serde_json::to_value(&plan.steps[0].request).unwrap();
        assert_eq!(json["position"], id);
    }
    // Netting accounts have one position per symbol: no ticket to name.
    let netting = ledger();
    let plan = plan_close(
        &netting.active(PositionId(20)).unwrap(),
        None,
        LinkKind::Market,
        "",
        None,
    )
    .unwrap();
    let json = serde_json::to_value(&plan.steps[0].request).unwrap();
    assert!(json.get("position").is_none());
}
