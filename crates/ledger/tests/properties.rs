//! Invariants over generated histories.

use hedge_domain::{PositionId, Side, Volume};
use hedge_ledger::generator::{generate, GenConfig, Generator};
use hedge_ledger::{History, HistoryLine, Ledger, PairingMode};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

fn account_net(h: &hedge_ledger::History) -> BTreeMap<String, Decimal> {
    let mut m = BTreeMap::new();
    for d in &h.deals {
        if let Some(side) = d.deal_type.side() {
            *m.entry(d.symbol.clone()).or_insert(Decimal::ZERO) +=
                d.volume.0 * Decimal::from(side.sign());
        }
    }
    m.retain(|_, v| !v.is_zero());
    m
}

fn ledger_net(l: &Ledger) -> BTreeMap<String, Decimal> {
    let mut m: BTreeMap<String, Decimal> =
        l.net_volumes().into_iter().map(|(s, v)| (s, v.0)).collect();
    m.retain(|_, v| !v.is_zero());
    m
}

/// Cases per property: modest by default so the suite stays fast in CI; `PROPTEST_CASES=N` runs
/// more.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A history from the first `n` stream lines, as a restart would read it: each order in its
/// latest state.
fn history_of(lines: &[HistoryLine]) -> History {
    let mut h = History::default();
    let mut at: std::collections::HashMap<u64, usize> = Default::default();
    for line in lines {
        match line {
            HistoryLine::Account(a) => h.account = a.clone(),
            HistoryLine::Order(o) => match at.get(&o.ticket.get()) {
                Some(&i) => h.orders[i] = o.clone(),
                None => {
                    at.insert(o.ticket.get(), h.orders.len());
                    h.orders.push(o.clone());
                }
            },
            HistoryLine::Deal(d) => h.deals.push(d.clone()),
        }
    }
    h
}

/// Everything a ledger shows, field by field, in a comparable form.
fn view(l: &mut Ledger) -> Vec<String> {
    let mut out = Vec::new();
    for p in l.active_positions() {
        out.push(format!(
            "active {} {} {:?} {} {} {} {} {:?} {:?} {:?} {} {} {:?}",
            p.id(),
            p.symbol(),
            p.side(),
            p.volume(),
            p.entry_price(),
            p.entry_time_msc(),
            p.entry_magic().get(),
            p.stop_loss_order(),
            p.stop_loss(),
            p.stop_loss_comment(),
            p.commission(),
            p.swap(),
            p.deals().collect::<Vec<_>>(),
        ));
    }
    let mut rows: Vec<String> = l
        .history_positions()
        .map(|h| {
            format!(
                "history {} {} {} {:?} {} {} {} {:?} {:?} {:?} {:?} {} {} {:?} {:?}",
                h.id(),
                h.exit_order(),
                h.symbol(),
                h.side(),
                h.volume(),
                h.entry_price(),
                h.exit_price(),
                h.stop_loss_order(),
                h.stop_loss(),
                h.take_profit(),
                h.close_kind(),
                h.commission(),
                h.swap(),
                h.entry_deals().collect::<Vec<_>>(),
                h.exit_deals().collect::<Vec<_>>(),
            )
        })
        .collect();
    rows.sort();
    out.extend(rows);
    out.push(format!("hidden {:?}", l.hidden()));
    out.push(format!("net {:?}", l.net_volumes()));
    out.push(format!("last prices {:?}", l.last_prices()));
    out.push(format!("warnings {:?}", l.warnings()));
    let mut orphans = l.take_orphan_stops();
    orphans.sort();
    out.push(format!("orphan stops {orphans:?}"));
    out
}

/// Exclusions drawn from the history's opening orders: some hidden from their opening, some from
/// a deal time in the middle of the history.
fn exclusions_for(h: &History, pick: u64) -> Vec<(PositionId, Option<i64>)> {
    if pick == 0 {
        return Vec::new();
    }
    let mid = h.deals.get(h.deals.len() / 2).map(|d| d.time_msc);
    h.orders
        .iter()
        .filter(|o| o.order_type.is_market() && o.magic.get() < (1 << 63))
        .filter(|o| o.ticket.get().wrapping_mul(pick) % 5 == 0)
        .map(|o| {
            let from = if o.ticket.get() % 2 == 0 { None } else { mid };
            (PositionId(o.ticket.get()), from)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(12)))]

    /// A2: a restart gives what the live ledger had. For any generated history and any split
    /// point, replaying the part before it and feeding the rest live equals replaying it all,
    /// field by field, exclusions and stop orders included.
    #[test]
    fn replay_of_a_prefix_then_live_equals_a_full_replay(
        seed in any::<u64>(),
        deals in 1u64..500,
        symbols in 1usize..=4,
        splits in proptest::collection::vec(0.0f64..=1.0, 1..4),
        pick in 0u64..4,
    ) {
        let lines: Vec<HistoryLine> = Generator::new(GenConfig { deals, seed, symbols }).collect();
        let all = history_of(&lines);
        let ex = exclusions_for(&all, pick);
        let mut full = Ledger::replay_excluding(&all, PairingMode::Links, &ex, |_| {}).unwrap();
        let want = view(&mut full);
        for f in splits {
            let k = ((lines.len() as f64) * f) as usize;
            let mut l = Ledger::replay_excluding(&history_of(&lines[..k]), PairingMode::Links, &ex, |_| {})
                .unwrap();
            l.track_events();
            for line in &lines[k..] {
                match line {
                    HistoryLine::Order(o) => l.apply_order(o).unwrap(),
                    HistoryLine::Deal(d) => l.apply_deal(d).unwrap(),
                    HistoryLine::Account(_) => {}
                }
            }
            let got = view(&mut l);
            for (a, b) in want.iter().zip(&got) {
                prop_assert_eq!(a, b, "split after {} of {} lines", k, lines.len());
            }
            prop_assert_eq!(want.len(), got.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn net_volume_per_symbol_equals_the_account_net_position(seed in any::<u64>(), deals in 1u64..400, symbols in 1usize..4) {
        let h = generate(GenConfig { deals, seed, symbols });
        let l = Ledger::replay(&h).unwrap();
        prop_assert_eq!(ledger_net(&l), account_net(&h));
        // Every active position has positive volume, and history rows balance entry and exit volume.
        for p in l.active_positions() {
            prop_assert!(p.volume() > Volume::ZERO);
        }
        for hp in l.history_positions() {
            let exit: Volume = hp.exit_deals().map(|d| d.volume).sum();
            prop_assert_eq!(hp.volume(), exit);
        }
    }

    #[test]
    fn live_stream_equals_full_replay(seed in any::<u64>(), deals in 1u64..300) {
        let cfg = GenConfig { deals, seed, symbols: 2 };
        let h = generate(cfg.clone());
        let full = Ledger::replay(&h).unwrap();
        let mut live = Ledger::new(Default::default());
        live.track_events();
        for line in Generator::new(cfg) {
            match line {
                HistoryLine::Order(o) => live.apply_order(&o).unwrap(),
                HistoryLine::Deal(d) => live.apply_deal(&d).unwrap(),
                HistoryLine::Account(_) => {}
            }
        }
        prop_assert_eq!(ledger_net(&live), ledger_net(&full));
        let a: Vec<_> = full.active_positions().iter().map(|p| (p.id(), p.volume(), p.side())).collect();
        let b: Vec<_> = live.active_positions().iter().map(|p| (p.id(), p.volume(), p.side())).collect();
        prop_assert_eq!(a, b);
        prop_assert_eq!(full.history_count(), live.history_count());
        // Events are numbered 1, 2, 3, ... per position.
        let mut last: std::collections::HashMap<u64, u32> = Default::default();
        for e in live.drain_events() {
            let prev = last.insert(e.position.get(), e.seq).unwrap_or(0);
            prop_assert_eq!(e.seq, prev + 1);
        }
        let _ = Side::Buy;
    }
}
