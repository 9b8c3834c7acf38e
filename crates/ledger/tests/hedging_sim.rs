//! Plans for a hedging account, sent as they are to the simulated MT5 hedging account: closes and
//! stop-losses act on the positions they name and never open one.

use hedge_domain::{
    AccountMarginMode, Magic, OrderType, PositionId, Price, Retcode, RetcodeClass, Side,
    TradeAction, Volume,
};
use hedge_ledger::actions::{
    plan_close, plan_delete_stop_loss, plan_modify_stop_loss, plan_open, plan_set_stop_loss,
    ActionPlan, BrokerRequest,
};
use hedge_ledger::{History, Ledger, LedgerDeal, LedgerOrder, LinkKind};
use hedge_protocol::TradeRequest;
use hedge_sim::{default_symbols, Account, AccountConfig};
use rust_decimal::Decimal;
use std::str::FromStr;

const T0: i64 = 1_700_000_000_000;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// The trade request the terminal sends for a plan step.
fn to_request(r: &BrokerRequest) -> TradeRequest {
    let base =
        |symbol: &str, ty: OrderType, volume: Volume| TradeRequest::market(symbol, ty, volume);
    match r {
        BrokerRequest::Market {
            symbol,
            side,
            volume,
            magic,
            comment,
            position,
        } => TradeRequest {
            magic: *magic,
            comment: comment.clone(),
            position: position.unwrap_or(PositionId(0)),
            ..base(symbol, OrderType::market(*side), *volume)
        },
        BrokerRequest::PlaceStop {
            symbol,
            order_type,
            volume,
            price,
            magic,
            comment,
            ..
        } => TradeRequest {
            action: TradeAction::Pending,
            price: *price,
            magic: *magic,
            comment: comment.clone(),
            ..base(symbol, *order_type, *volume)
        },
        BrokerRequest::PositionStop {
            symbol,
            position,
            sl,
        } => TradeRequest {
            action: TradeAction::Sltp,
            position: *position,
            sl: *sl,
            ..base(symbol, OrderType::Buy, Volume::ZERO)
        },
        BrokerRequest::ModifyStop { order, price } => TradeRequest {
            action: TradeAction::Modify,
            order: *order,
            price: *price,
            ..base("", OrderType::Buy, Volume::ZERO)
        },
        BrokerRequest::CancelOrder { order } => TradeRequest {
            action: TradeAction::Remove,
            order: *order,
            ..base("", OrderType::Buy, Volume::ZERO)
        },
        BrokerRequest::LimitAsMarket { .. } => unreachable!("no exchange symbols here"),
    }
}

/// The sim's history as the ledger reads it (field by field, as from the terminal protocol).
fn history(sim: &Account) -> History {
    let (mut orders, deals) = sim.history(0, i64::MAX);
    orders.extend(sim.orders());
    let mut h = History::default();
    h.account.login = sim.config().login;
    h.account.margin_mode = AccountMarginMode::RetailHedging;
    h.orders = orders
        .into_iter()
        .map(|o| LedgerOrder {
            ticket: o.ticket,
            symbol: o.symbol,
            order_type: o.order_type,
            state: o.state,
            magic: o.magic,
            volume_initial: o.volume_initial,
            volume_current: o.volume_current,
            price_open: o.price_open,
            time_setup_msc: o.time_setup,
            time_done_msc: o.time_done,
            position_id: o.position_id,
            comment: o.comment,
        })
        .collect();
    h.deals = deals
        .into_iter()
        .map(|x| LedgerDeal {
            ticket: x.ticket,
            order: x.order,
            symbol: x.symbol,
            deal_type: x.deal_type,
            entry: x.entry,
            magic: x.magic,
            position_id: x.position_id,
            volume: x.volume,
            price: x.price,
            commission: x.commission,
            swap: x.swap,
            profit: x.profit,
            time_msc: x.time,
            comment: x.comment,
        })
        .collect();
    h
}

struct World {
    sim: Account,
    now: i64,
}

impl World {
    fn quote(&mut self, bid: &str) {
        self.now += 1000;
        let bid = Price(d(bid));
        let ask = Price(bid.0 + d("0.00012"));
        self.sim.quote("EURUSD", bid, ask, self.now);
    }

    fn send(&mut self, request: &BrokerRequest) -> PositionId {
        self.now += 1000;
        self.sim.set_time(self.now);
        let reply = self
            .sim
            .send(&to_request(request), hedge_domain::DealReason::Expert)
            .reply;
        assert_eq!(
            reply.retcode.class(),
            RetcodeClass::Done,
            "{request:?}: {reply:?}"
        );
        reply.position
    }

    /// Sends every step of a plan in order; none may be a pending stop order.
    fn run(&mut self, plan: &ActionPlan) {
        for s in &plan.steps {
            assert!(
                !matches!(s.request, BrokerRequest::PlaceStop { .. }),
                "a stop order on a hedging account opens a position: {plan:?}"
            );
            self.send(&s.request);
        }
    }

    fn ledger(&self) -> Ledger {
        Ledger::replay(&history(&self.sim)).unwrap()
    }

    fn open_ids(&self) -> Vec<(u64, Volume, Price)> {
        self.sim
            .open_positions()
            .map(|p| (p.id.get(), p.volume, p.sl))
            .collect()
    }
}

#[test]
fn hedging_plans_close_the_positions_they_name_and_open_none() {
    let mut w = World {
        sim: Account::new(AccountConfig::default(), default_symbols(""), T0),
        now: T0,
    };
    w.quote("1.10000");
    let open = |side| plan_open("EURUSD", side, Volume(d("1")), Magic(7), "", None).unwrap();
    let a = w.send(&open(Side::Buy));
    let b = w.send(&open(Side::Buy));
    let c = w.send(&open(Side::Sell));
    assert_eq!(w.ledger().active_positions().len(), 3);

    // Stop-losses on both longs, set on the positions themselves.
    let l = w.ledger();
    let bid = Some(Price(d("1.1")));
    let sl_a = plan_set_stop_loss(&l.active(a).unwrap(), Price(d("1.09")), bid, "a").unwrap();
    assert!(matches!(
        sl_a.steps[..],
        [ref s] if matches!(s.request, BrokerRequest::PositionStop { position, .. } if position == a)
    ));
    w.run(&sl_a);
    w.run(&plan_set_stop_loss(&l.active(b).unwrap(), Price(d("1.095")), bid, "b").unwrap());

    // Part of one long and the whole short close; the remainder keeps its stop.
    let l = w.ledger();
    let part = Some(Volume(d("0.4")));
    w.run(&plan_close(&l.active(b).unwrap(), part, LinkKind::Market, "", None).unwrap());
    w.run(&plan_close(&l.active(c).unwrap(), None, LinkKind::Market, "", None).unwrap());
    let sl = |s: &str| Price(d(s));
    assert_eq!(
        w.open_ids(),
        vec![
            (a.get(), Volume(d("1")), sl("1.09")),
            (b.get(), Volume(d("0.6")), sl("1.095"))
        ]
    );

    // The price falls through the second long's stop: that position closes, nothing opens.
    w.quote("1.09400");
    assert_eq!(w.open_ids(), vec![(a.get(), Volume(d("1")), sl("1.09"))]);

    // The first long's stop moves up, is removed and set again, then fires.
    let l = w.ledger();
    let bid = Some(Price(d("1.094")));
    w.run(&plan_modify_stop_loss(&l.active(a).unwrap(), sl("1.092"), bid).unwrap());
    w.run(&plan_delete_stop_loss(&l.active(a).unwrap()).unwrap());
    assert_eq!(w.open_ids(), vec![(a.get(), Volume(d("1")), Price::ZERO)]);
    w.run(&plan_set_stop_loss(&l.active(a).unwrap(), sl("1.092"), bid, "").unwrap());
    w.quote("1.09100");
    assert!(w.open_ids().is_empty());

    // Only the three opening orders opened positions; every deal belongs to one of them.
    let h = history(&w.sim);
    let opened: Vec<u64> = h
        .deals
        .iter()
        .filter(|x| x.deal_type.side().is_some() && x.entry == hedge_domain::DealEntry::In)
        .map(|x| x.position_id.get())
        .collect();
    assert_eq!(opened, vec![a.get(), b.get(), c.get()]);
    let l = w.ledger();
    assert!(l.active_positions().is_empty());
    assert_eq!(l.net_volume("EURUSD"), Volume::ZERO);
    assert_eq!(l.closed_position_count(), 3);
    // A resent stop that the first attempt already set counts as done.
    let mut run = hedge_ledger::actions::Execution::new(sl_a.clone());
    run.next_request(0);
    run.on_result(Retcode::NO_CHANGES, false);
    assert!(
        matches!(run.status, hedge_ledger::actions::Status::Done),
        "{:?}",
        run.status
    );
}
