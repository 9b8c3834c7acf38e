//! Invariants over generated histories.

use hedge_domain::{Side, Volume};
use hedge_ledger::generator::{generate, GenConfig, Generator};
use hedge_ledger::{HistoryLine, Ledger};
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

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
