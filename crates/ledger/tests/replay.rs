//! Replay rules of the specification (Part A and B §3-4), each on a small hand-built history.

use hedge_domain::{
    AccountMarginMode, DealEntry, DealTicket, DealType, Magic, Money, OrderState, OrderTicket,
    OrderType, PositionId, Price, Side, Volume,
};
use hedge_ledger::{
    encode, CloseKind, History, Ledger, LedgerAccount, LedgerDeal, LedgerOrder, LinkKind,
    PairingMode, PositionChange, Warning,
};
use rust_decimal::Decimal;
use std::str::FromStr;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn link(ticket: u64, kind: LinkKind) -> Magic {
    encode(OrderTicket(ticket), kind).unwrap()
}

struct H {
    h: History,
    next_deal: u64,
    time: i64,
}

impl H {
    fn new() -> Self {
        H {
            h: History::default(),
            next_deal: 1000,
            time: 1_000,
        }
    }

    fn order(&mut self, ticket: u64, sym: &str, ty: OrderType, magic: Magic, state: OrderState) {
        self.order_at(ticket, sym, ty, magic, state, "0", "");
    }

    #[allow(clippy::too_many_arguments)]
    fn order_at(
        &mut self,
        ticket: u64,
        sym: &str,
        ty: OrderType,
        magic: Magic,
        state: OrderState,
        price: &str,
        comment: &str,
    ) {
        self.time += 1;
        self.h.orders.push(LedgerOrder {
            ticket: OrderTicket(ticket),
            symbol: sym.into(),
            order_type: ty,
            state,
            magic,
            volume_initial: Volume(d("1")),
            volume_current: Volume::ZERO,
            price_open: Price(d(price)),
            time_setup_msc: self.time,
            time_done_msc: self.time,
            position_id: PositionId(0),
            comment: comment.into(),
        });
    }

    /// A market order with one deal per volume given.
    fn trade(&mut self, ticket: u64, sym: &str, side: Side, magic: Magic, fills: &[(&str, &str)]) {
        self.order(
            ticket,
            sym,
            OrderType::market(side),
            magic,
            OrderState::Filled,
        );
        for (vol, price) in fills {
            self.deal(ticket, sym, side, vol, price, "0", "0");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn deal(
        &mut self,
        order: u64,
        sym: &str,
        side: Side,
        vol: &str,
        price: &str,
        comm: &str,
        swap: &str,
    ) -> u64 {
        self.time += 1;
        self.next_deal += 1;
        self.h.deals.push(LedgerDeal {
            ticket: DealTicket(self.next_deal),
            order: OrderTicket(order),
            symbol: sym.into(),
            deal_type: if side == Side::Buy {
                DealType::Buy
            } else {
                DealType::Sell
            },
            entry: DealEntry::In,
            magic: Magic(0),
            position_id: PositionId(0),
            volume: Volume(d(vol)),
            price: Price(d(price)),
            commission: Money(d(comm)),
            swap: Money(d(swap)),
            profit: Money::ZERO,
            time_msc: self.time,
            comment: String::new(),
        });
        self.next_deal
    }

    fn replay(&self) -> Ledger {
        Ledger::replay(&self.h).unwrap()
    }
}

#[test]
fn fifo_split_takes_oldest_entry_deals_first() {
    // B §4: opening deals 3@1.10 and 2@1.11, closing 4 lots: history gets 3@1.10 + 1@1.11.
    let mut h = H::new();
    h.trade(
        10,
        "EURUSD",
        Side::Buy,
        Magic(0),
        &[("3", "1.10"), ("2", "1.11")],
    );
    h.trade(
        11,
        "EURUSD",
        Side::Sell,
        link(10, LinkKind::Market),
        &[("4", "1.12")],
    );
    let l = h.replay();
    let hist: Vec<_> = l.history_positions().collect();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].id(), PositionId(10));
    assert_eq!(hist[0].exit_order(), OrderTicket(11));
    assert_eq!(hist[0].volume(), Volume(d("4")));
    assert_eq!(hist[0].entry_price(), Price(d("1.1025")));
    assert_eq!(hist[0].exit_price(), Price(d("1.12")));
    let active = l.active_positions();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].id(), PositionId(10));
    assert_eq!(active[0].volume(), Volume(d("1")));
    assert_eq!(active[0].entry_price(), Price(d("1.11")));
    assert_eq!(l.net_volume("EURUSD"), Volume(d("1")));
}

#[test]
fn table_15_excess_becomes_opposite_position_and_merges_by_id() {
    // Opening order has one deal of 4; the closing order has deals of 5 and 1, linked.
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Buy, Magic(0), &[("4", "1.2")]);
    h.trade(
        2,
        "EURUSD",
        Side::Sell,
        link(1, LinkKind::Market),
        &[("5", "1.3"), ("1", "1.31")],
    );
    let l = h.replay();
    assert_eq!(l.history_count(), 1);
    let hp = l.history_positions().next().unwrap();
    assert_eq!(hp.volume(), Volume(d("4")));
    let active = l.active_positions();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].id(), PositionId(2));
    assert_eq!(active[0].side(), Side::Sell);
    assert_eq!(active[0].volume(), Volume(d("2")));
    assert!(active[0].is_unmanaged());
    assert_eq!(l.net_volume("EURUSD"), Volume(d("-2")));
}

#[test]
fn first_reference_wins() {
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Buy, Magic(0), &[("1", "1.2")]);
    h.trade(
        2,
        "EURUSD",
        Side::Sell,
        link(1, LinkKind::Market),
        &[("1", "1.3")],
    );
    // A second close of the same position finds nothing active: it opens its own position.
    h.trade(
        3,
        "EURUSD",
        Side::Sell,
        link(1, LinkKind::Market),
        &[("1", "1.25")],
    );
    let l = h.replay();
    assert_eq!(l.history_count(), 1);
    let a = l.active_positions();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].id(), PositionId(3));
    assert_eq!(a[0].side(), Side::Sell);
    assert!(a[0].is_unmanaged());
    assert_eq!(l.closed_position_count(), 1);
}

#[test]
fn same_direction_link_opens_its_own_position_and_multi_deal_merges_by_id() {
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Buy, Magic(0), &[("1", "1.2")]);
    h.trade(
        2,
        "EURUSD",
        Side::Buy,
        link(1, LinkKind::Market),
        &[("1", "1.3"), ("0.5", "1.31")],
    );
    let l = h.replay();
    let a = l.active_positions();
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].id(), PositionId(2));
    assert_eq!(a[1].volume(), Volume(d("1.5")));
    assert_eq!(a[0].volume(), Volume(d("1")));
}

#[test]
fn partial_closes_give_several_history_rows_and_a_multi_deal_close_one() {
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Sell, Magic(0), &[("3", "1.2")]);
    h.trade(
        2,
        "EURUSD",
        Side::Buy,
        link(1, LinkKind::Market),
        &[("1", "1.1")],
    );
    h.trade(
        3,
        "EURUSD",
        Side::Buy,
        link(1, LinkKind::Market),
        &[("0.5", "1.1"), ("1.5", "1.0")],
    );
    let l = h.replay();
    let hist: Vec<_> = l.history_positions().collect();
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[1].exit_order(), OrderTicket(3));
    assert_eq!(hist[1].volume(), Volume(d("2")));
    assert_eq!(hist[1].exit_price(), Price(d("1.025")));
    assert_eq!(hist[1].exit_deals().count(), 2);
    assert_eq!(l.active_count(), 0);
    assert_eq!(l.closed_position_count(), 1);
}

#[test]
fn link_to_other_symbol_does_not_close() {
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Buy, Magic(0), &[("1", "1.2")]);
    h.trade(
        2,
        "GBPUSD",
        Side::Sell,
        link(1, LinkKind::Market),
        &[("1", "1.3")],
    );
    let l = h.replay();
    assert_eq!(l.active_count(), 2);
    assert_eq!(l.history_count(), 0);
    assert!(matches!(l.warnings()[0], Warning::SymbolMismatch { .. }));
    assert_eq!(l.net_volume("GBPUSD"), Volume(d("-1")));
}

#[test]
fn order_symbol_falls_back_to_the_deal_and_missing_order_uses_deal_magic() {
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Buy, Magic(0), &[("1", "1.2")]);
    // No order record for 2: the deal's magic is used for the link.
    let dl = h.deal(2, "EURUSD", Side::Sell, "1", "1.3", "0", "0");
    h.h.deals.last_mut().unwrap().magic = link(1, LinkKind::Market);
    let l = h.replay();
    assert_eq!(l.history_count(), 1, "deal {dl}");
    assert_eq!(l.active_count(), 0);
}

#[test]
fn commission_and_swap_split_proportionally() {
    let mut h = H::new();
    h.order(1, "EURUSD", OrderType::Buy, Magic(0), OrderState::Filled);
    h.deal(1, "EURUSD", Side::Buy, "4", "1.2", "-4", "-2");
    h.order(
        2,
        "EURUSD",
        OrderType::Sell,
        link(1, LinkKind::Market),
        OrderState::Filled,
    );
    h.deal(2, "EURUSD", Side::Sell, "1", "1.3", "-1", "-0.5");
    let l = h.replay();
    let hp = l.history_positions().next().unwrap();
    assert_eq!(hp.commission(), Money(d("-2")));
    assert_eq!(hp.swap(), Money(d("-1")));
    let a = &l.active_positions()[0];
    assert_eq!(a.commission(), Money(d("-3")));
    assert_eq!(a.swap(), Money(d("-1.5")));
}

#[test]
fn non_trade_and_rollover_deals_never_open_positions() {
    let mut h = H::new();
    h.deal(0, "EURUSD", Side::Buy, "1", "1.2", "0", "-3");
    h.h.deals.last_mut().unwrap().comment = "rollover".into();
    h.deal(0, "", Side::Buy, "0", "0", "0", "0");
    h.h.deals.last_mut().unwrap().deal_type = DealType::Balance;
    h.deal(7, "", Side::Buy, "0", "0", "0", "0");
    h.h.deals.last_mut().unwrap().deal_type = DealType::Credit;
    let l = h.replay();
    assert_eq!(l.active_count(), 0);
    assert_eq!(l.stats().skipped_deals, 3);
}

#[test]
fn stop_loss_orders_adopt_replace_and_show_in_history() {
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Buy, Magic(0), &[("1", "1.2")]);
    h.trade(2, "EURUSD", Side::Buy, Magic(0), &[("1", "1.2")]);
    // Position 1: an old SL cancelled, then an SL that executes.
    h.order_at(
        5,
        "EURUSD",
        OrderType::SellStop,
        link(1, LinkKind::StopLoss),
        OrderState::Canceled,
        "1.1",
        "",
    );
    h.order_at(
        6,
        "EURUSD",
        OrderType::SellStop,
        link(1, LinkKind::StopLoss),
        OrderState::Filled,
        "1.15",
        "",
    );
    h.deal(6, "EURUSD", Side::Sell, "1", "1.15", "0", "0");
    // Position 2: two pending SLs; the later one wins and the other is reported as an orphan.
    h.order_at(
        7,
        "EURUSD",
        OrderType::SellStop,
        link(2, LinkKind::StopLoss),
        OrderState::Placed,
        "1.1",
        "",
    );
    h.order_at(
        8,
        "EURUSD",
        OrderType::SellStop,
        link(2, LinkKind::StopLoss),
        OrderState::Placed,
        "1.11",
        "sl comment",
    );
    let mut l = h.replay();
    let hp = l.history_positions().next().unwrap();
    assert_eq!(hp.close_kind(), CloseKind::StopLoss);
    assert_eq!(hp.stop_loss_order(), Some(OrderTicket(6)));
    assert_eq!(hp.stop_loss(), Some(Price(d("1.15"))));
    let a = l.active(PositionId(2)).unwrap();
    assert_eq!(a.stop_loss_order(), Some(OrderTicket(8)));
    assert_eq!(a.stop_loss(), Some(Price(d("1.11"))));
    assert_eq!(a.stop_loss_comment(), Some("sl comment"));
    assert_eq!(l.take_orphan_stops(), vec![OrderTicket(7)]);
}

#[test]
fn cancelled_stop_becomes_history_sl_when_not_executed() {
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Sell, Magic(0), &[("1", "1.2")]);
    h.trade(
        2,
        "EURUSD",
        Side::Buy,
        link(1, LinkKind::TakeProfit),
        &[("1", "1.1")],
    );
    h.order_at(
        3,
        "EURUSD",
        OrderType::BuyStop,
        link(1, LinkKind::StopLoss),
        OrderState::Canceled,
        "1.3",
        "",
    );
    let l = h.replay();
    let hp = l.history_positions().next().unwrap();
    assert_eq!(hp.close_kind(), CloseKind::TakeProfit);
    assert_eq!(hp.take_profit(), Some(Price(d("1.1"))));
    assert_eq!(hp.stop_loss(), Some(Price(d("1.3"))));
}

#[test]
fn live_updates_match_replay_and_emit_ordered_events() {
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Buy, Magic(0), &[("2", "1.2")]);
    h.trade(
        2,
        "EURUSD",
        Side::Sell,
        link(1, LinkKind::Market),
        &[("0.5", "1.3")],
    );
    h.order_at(
        3,
        "EURUSD",
        OrderType::SellStop,
        link(1, LinkKind::StopLoss),
        OrderState::Placed,
        "1.1",
        "",
    );
    h.trade(
        4,
        "EURUSD",
        Side::Sell,
        link(1, LinkKind::Market),
        &[("1.5", "1.3")],
    );
    let full = h.replay();

    let mut live = Ledger::new(LedgerAccount::default());
    live.track_events();
    let mut orders = h.h.orders.clone();
    orders.sort_by_key(|o| o.time_setup_msc);
    // Feed in time order: each order right before its deals.
    let mut deals = h.h.deals.clone();
    deals.sort_by_key(|x| x.time_msc);
    for o in &orders {
        let mut o2 = o.clone();
        if o.ticket == OrderTicket(3) {
            live.apply_order(&o2).unwrap();
            continue;
        }
        o2.state = OrderState::Filled;
        live.apply_order(&o2).unwrap();
        for dl in deals.iter().filter(|x| x.order == o.ticket) {
            live.apply_deal(dl).unwrap();
            // Idempotent: the same deal twice changes nothing.
            live.apply_deal(dl).unwrap();
        }
    }
    assert_eq!(live.history_count(), full.history_count());
    assert_eq!(live.active_count(), full.active_count());
    let ev = live.drain_events();
    let kinds: Vec<_> = ev.iter().map(|e| (e.position.get(), e.seq)).collect();
    assert_eq!(kinds, vec![(1, 1), (1, 2), (1, 3), (1, 4)]);
    assert!(matches!(ev[1].kind, PositionChange::PartiallyClosed { .. }));
    assert!(matches!(ev[2].kind, PositionChange::StopLossChanged { .. }));
    assert!(matches!(ev[3].kind, PositionChange::Closed { .. }));
    // The stop left behind by the close is to be cancelled.
    assert_eq!(live.take_orphan_stops(), vec![OrderTicket(3)]);
}

#[test]
fn hedging_account_gives_the_same_view_from_position_ids() {
    let mut h = H::new();
    h.h.account.margin_mode = AccountMarginMode::RetailHedging;
    h.trade(1, "XAUUSD", Side::Buy, Magic(0), &[("0.05", "4053.41")]);
    h.trade(2, "XAUUSD", Side::Buy, Magic(0), &[("0.05", "4052.94")]);
    h.trade(3, "XAUUSD", Side::Sell, Magic(0), &[("0.02", "4058.35")]);
    h.trade(4, "XAUUSD", Side::Sell, Magic(0), &[("0.05", "4054.3")]);
    for dl in &mut h.h.deals {
        let (pid, entry) = match dl.order.get() {
            1 => (1, DealEntry::In),
            2 => (2, DealEntry::In),
            3 => (2, DealEntry::Out),
            _ => (1, DealEntry::Out),
        };
        dl.position_id = PositionId(pid);
        dl.entry = entry;
    }
    let l = h.replay();
    assert_eq!(l.mode(), PairingMode::Native);
    assert_eq!(l.history_count(), 2);
    let a = l.active_positions();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].id(), PositionId(2));
    assert_eq!(a[0].volume(), Volume(d("0.03")));
}

#[test]
fn fifo_mode_handles_in_out_reversals() {
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Buy, Magic(0), &[("1", "1.2")]);
    h.trade(2, "EURUSD", Side::Buy, Magic(0), &[("1", "1.21")]);
    h.trade(3, "EURUSD", Side::Sell, Magic(0), &[("3", "1.22")]);
    h.h.deals[2].entry = DealEntry::InOut;
    let l = Ledger::replay_with(&h.h, PairingMode::Fifo, |_| {}).unwrap();
    assert_eq!(l.history_count(), 2);
    let a = l.active_positions();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].id(), PositionId(3));
    assert_eq!(a[0].side(), Side::Sell);
    assert_eq!(a[0].volume(), Volume(d("1")));
}

#[test]
fn bad_input_is_an_error() {
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Buy, Magic(0), &[("-1", "1.2")]);
    assert!(Ledger::replay(&h.h).is_err());
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Buy, Magic(0), &[("0.123456789", "1.2")]);
    assert!(Ledger::replay(&h.h).is_err());
}

#[test]
fn exclusions_hide_active_positions_after_pairing() {
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Buy, Magic(0), &[("1", "1.2")]);
    h.trade(2, "EURUSD", Side::Buy, Magic(0), &[("1", "1.2")]);
    let mut l = h.replay();
    let n = l.hide(&[1u64].into_iter().collect());
    assert_eq!(n, 1);
    assert_eq!(l.active_count(), 1);
    assert_eq!(l.hidden(), &[PositionId(1)]);
    let mut h = H::new();
    h.trade(1, "SI-12.24", Side::Buy, Magic(0), &[("1", "30")]);
    h.trade(2, "EURUSD", Side::Buy, Magic(0), &[("1", "1.2")]);
    let mut l = h.replay();
    assert_eq!(
        l.hide_expired_symbols(&["SI-12.24".to_owned()].into_iter().collect()),
        1
    );
    assert_eq!(l.net_volume("SI-12.24"), Volume::ZERO);
    assert_eq!(l.active_count(), 1);
}

/// Feeds a history live, in time order, each order record right before its deals.
fn feed_live(l: &mut Ledger, h: &History) {
    let mut lines: Vec<(i64, u8, usize)> = Vec::new();
    for (i, o) in h.orders.iter().enumerate() {
        let t = if o.is_cancelled() {
            o.time_done_msc
        } else {
            o.time_setup_msc
        };
        lines.push((t, 0, i));
    }
    for (i, dl) in h.deals.iter().enumerate() {
        lines.push((dl.time_msc, 1, i));
    }
    lines.sort();
    for (_, kind, i) in lines {
        if kind == 0 {
            l.apply_order(&h.orders[i]).unwrap();
        } else {
            l.apply_deal(&h.deals[i]).unwrap();
        }
    }
}

fn sl_rows(l: &Ledger) -> Vec<(u64, u64, Option<Price>)> {
    let mut v: Vec<_> = l
        .history_positions()
        .map(|h| (h.id().get(), h.exit_order().get(), h.stop_loss()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_cancelled_stop_then_two_closes_read_the_same_live_and_after_a_restart() {
    let mut h = H::new();
    h.trade(10, "EURUSD", Side::Buy, Magic(0), &[("1", "1.1")]);
    h.order_at(
        11,
        "EURUSD",
        OrderType::SellStop,
        link(10, LinkKind::StopLoss),
        OrderState::Canceled,
        "1.09",
        "",
    );
    // Placed, then cancelled a little later.
    h.h.orders.last_mut().unwrap().time_done_msc += 1;
    h.time += 1;
    h.trade(
        12,
        "EURUSD",
        Side::Sell,
        link(10, LinkKind::Market),
        &[("0.5", "1.11")],
    );
    h.trade(
        13,
        "EURUSD",
        Side::Sell,
        link(10, LinkKind::Market),
        &[("0.5", "1.12")],
    );
    let full = h.replay();
    let mut live = Ledger::new(LedgerAccount::default());
    live.track_events();
    feed_live(&mut live, &h.h);
    assert_eq!(sl_rows(&full), sl_rows(&live));
    // The stop the position had before each exit.
    assert_eq!(
        sl_rows(&full),
        vec![
            (10, 12, Some(Price(d("1.09")))),
            (10, 13, Some(Price(d("1.09"))))
        ]
    );
}

/// Four positions that existed before the ledger took over (excluded), then a new long and an
/// order linking to an excluded position.
fn preexisting() -> (H, Vec<(PositionId, Option<i64>)>) {
    let mut h = H::new();
    h.trade(1200, "EURUSD", Side::Buy, Magic(0), &[("1", "1.10")]);
    h.trade(1201, "EURUSD", Side::Sell, Magic(0), &[("1", "1.11")]);
    h.trade(1210, "GBPUSD", Side::Sell, Magic(0), &[("2", "1.25")]);
    h.trade(1211, "GBPUSD", Side::Buy, Magic(0), &[("2", "1.24")]);
    let ex = [1200, 1201, 1210, 1211]
        .into_iter()
        .map(|id| (PositionId(id), None))
        .collect();
    (h, ex)
}

#[test]
fn an_order_linked_to_an_excluded_position_opens_its_own_live_and_after_a_restart() {
    let (mut h, ex) = preexisting();
    let before = h.h.clone();
    h.trade(1202, "EURUSD", Side::Buy, Magic(0), &[("0.5", "1.12")]);
    h.trade(
        1203,
        "EURUSD",
        Side::Sell,
        link(1200, LinkKind::Market),
        &[("1", "1.13")],
    );
    // Broker: +1 -1 +0.5 -1 on EURUSD.
    let broker = Volume(d("-0.5"));
    let mut live = Ledger::replay_excluding(&before, PairingMode::Links, &ex, |_| {}).unwrap();
    live.track_events();
    for o in &h.h.orders[4..] {
        live.apply_order(o).unwrap();
        for dl in h.h.deals.iter().filter(|x| x.order == o.ticket) {
            live.apply_deal(dl).unwrap();
        }
    }
    let restart = Ledger::replay_excluding(&h.h, PairingMode::Links, &ex, |_| {}).unwrap();
    assert_eq!(live.net_volume("EURUSD"), broker);
    assert_eq!(restart.net_volume("EURUSD"), broker);
    assert_eq!(restart.hidden(), live.hidden());
    assert!(restart.active(PositionId(1203)).is_some());
    assert_eq!(restart.history_count(), 0);
}

#[test]
fn an_exclusion_from_a_time_keeps_the_pairing_before_it() {
    let mut h = H::new();
    h.trade(1, "EURUSD", Side::Buy, Magic(0), &[("2", "1.10")]);
    h.trade(
        2,
        "EURUSD",
        Side::Sell,
        link(1, LinkKind::Market),
        &[("1", "1.11")],
    );
    h.trade(3, "EURUSD", Side::Sell, Magic(0), &[("1", "1.12")]);
    let hidden_at = h.time;
    h.trade(
        4,
        "EURUSD",
        Side::Sell,
        link(1, LinkKind::Market),
        &[("1", "1.13")],
    );
    let ex = vec![
        (PositionId(1), Some(hidden_at)),
        (PositionId(3), Some(hidden_at)),
    ];
    let l = Ledger::replay_excluding(&h.h, PairingMode::Links, &ex, |_| {}).unwrap();
    // The partial close before the exclusion stands; the close after it is a position of its own.
    assert_eq!(l.history_count(), 1);
    assert_eq!(l.net_volume("EURUSD"), Volume(d("-1")));
    assert_eq!(l.hidden(), &[PositionId(1), PositionId(3)]);
}

#[test]
fn interleaved_fills_of_two_exit_orders_give_one_row_per_exit() {
    let mut h = H::new();
    h.trade(60, "EURUSD", Side::Buy, Magic(0), &[("3", "1.10")]);
    let m = link(60, LinkKind::Market);
    h.order(61, "EURUSD", OrderType::SellLimit, m, OrderState::Filled);
    h.order(62, "EURUSD", OrderType::SellLimit, m, OrderState::Filled);
    h.deal(61, "EURUSD", Side::Sell, "0.5", "1.11", "0", "0");
    h.deal(62, "EURUSD", Side::Sell, "0.5", "1.12", "0", "0");
    h.deal(61, "EURUSD", Side::Sell, "0.5", "1.11", "0", "0");
    let l = h.replay();
    let mut rows: Vec<_> = l
        .history_positions()
        .map(|r| (r.id().get(), r.exit_order().get(), r.volume()))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![(60, 61, Volume(d("1"))), (60, 62, Volume(d("0.5")))]
    );
    assert_eq!(l.active(PositionId(60)).unwrap().volume(), Volume(d("1.5")));
}

#[test]
fn a_pending_limit_with_a_stop_loss_link_is_not_the_stop() {
    let mut h = H::new();
    h.trade(10, "EURUSD", Side::Buy, Magic(0), &[("1", "1.1")]);
    let m = link(10, LinkKind::StopLoss);
    h.order_at(
        11,
        "EURUSD",
        OrderType::SellStop,
        m,
        OrderState::Placed,
        "1.09",
        "",
    );
    h.order_at(
        15,
        "EURUSD",
        OrderType::SellLimit,
        m,
        OrderState::Placed,
        "1.0997",
        "",
    );
    let mut l = h.replay();
    let p = l.active(PositionId(10)).unwrap();
    assert_eq!(p.stop_loss_order(), Some(OrderTicket(11)));
    assert_eq!(p.stop_loss(), Some(Price(d("1.09"))));
    assert!(l.take_orphan_stops().is_empty());
}

#[test]
fn a_stop_loss_close_keeps_its_sl_on_hedging_as_on_netting() {
    let build = |mode: AccountMarginMode| {
        let mut h = H::new();
        h.h.account.margin_mode = mode;
        h.trade(1, "EURUSD", Side::Buy, Magic(0), &[("1", "1.1000")]);
        h.order_at(
            5,
            "EURUSD",
            OrderType::SellStop,
            link(1, LinkKind::StopLoss),
            OrderState::Filled,
            "1.0950",
            "",
        );
        h.deal(5, "EURUSD", Side::Sell, "1", "1.0950", "0", "0");
        for dl in &mut h.h.deals {
            dl.position_id = PositionId(1);
            dl.entry = if dl.order.get() == 1 {
                DealEntry::In
            } else {
                DealEntry::Out
            };
        }
        h.replay()
    };
    for mode in [
        AccountMarginMode::RetailNetting,
        AccountMarginMode::RetailHedging,
    ] {
        let l = build(mode);
        let r = l.history_positions().next().unwrap();
        assert_eq!(r.close_kind(), CloseKind::StopLoss, "{mode:?}");
        assert_eq!(r.stop_loss(), Some(Price(d("1.095"))), "{mode:?}");
    }
}
