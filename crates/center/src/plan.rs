//! The hedge plan: net unhedged client exposure per canonical symbol, and the order that covers it
//! on one hedge account. Pure arithmetic over what the store loads; no I/O.
//!
//! For hedge account H and symbol S:
//! `exposure = Σ (open client volume, buys positive) × client ratio` over the clients H covers,
//! `hedged = Σ open hedge volume on H (buys positive)`, `unhedged = exposure + hedged`. The covering
//! order is on the side opposite to `unhedged`, its volume `|unhedged|` rounded to H's volume step
//! (nearest) and clamped to H's maximum; below H's minimum there is no order, only a residual.
//! When the uncovered part points the same way as the existing hedges (clients shrank), the order
//! reduces those hedges and never goes past them, so a reversal is done as reduce first, then open.
//! A pause (close-only) on H, on a covered client or on S keeps only reducing orders.

use crate::positions::units_volume;
use hedge_center_api::model::{
    AccountRegistration, HedgePlan, Pause, PlanAction, PlanItem, PlanResidual, ResidualReason,
};
use hedge_domain::{Login, Rounding, Side, Volume, VolumeError};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Net open volume of one client account on one symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientExposure {
    pub login: Login,
    pub symbol: String,
    /// Signed, units of 10^-8 lot.
    pub net_units: i64,
    /// Event id of the last change of this client's positions on this symbol.
    pub last_event_id: u64,
}

/// What the plan needs to know about a client account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    pub login: Login,
    pub ratio: Decimal,
    /// The hedge account covering this client; `None` = every hedge account.
    pub hedge_login: Option<Login>,
}

/// Net open hedge volume of the hedge account on one symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HedgeCover {
    pub symbol: String,
    pub net_units: i64,
    pub last_event_id: u64,
}

/// Everything the plan of one hedge account depends on.
#[derive(Clone, Debug)]
pub struct PlanInputs {
    pub hedge: AccountRegistration,
    pub clients: Vec<ClientConfig>,
    pub exposures: Vec<ClientExposure>,
    pub hedges: Vec<HedgeCover>,
    pub pauses: Vec<Pause>,
    pub as_of_event_id: u64,
}

#[derive(Default)]
struct SymbolState {
    exposure: Decimal,
    hedged: Decimal,
    last_event_id: u64,
    client_paused: bool,
}

/// Computes the plan. Items and residuals are sorted by canonical symbol.
pub fn compute(inputs: &PlanInputs) -> HedgePlan {
    let hedge_login = inputs.hedge.login;
    let covered: BTreeMap<Login, &ClientConfig> = inputs
        .clients
        .iter()
        .filter(|c| c.hedge_login.is_none_or(|h| h == hedge_login) && c.login != hedge_login)
        .map(|c| (c.login, c))
        .collect();
    let mut symbols: BTreeMap<&str, SymbolState> = BTreeMap::new();
    for e in &inputs.exposures {
        let Some(client) = covered.get(&e.login) else {
            continue;
        };
        let state = symbols.entry(e.symbol.as_str()).or_default();
        // Cannot overflow: every stored total is within i64 units (the store refuses more) and a
        // ratio is at most 1000, so even millions of clients stay far inside a Decimal.
        state.exposure += units_volume(e.net_units).0 * client.ratio;
        state.last_event_id = state.last_event_id.max(e.last_event_id);
        if inputs
            .pauses
            .iter()
            .any(|p| p.login.is_some() && p.covers(e.login, &e.symbol))
        {
            state.client_paused = true;
        }
    }
    for h in &inputs.hedges {
        let state = symbols.entry(h.symbol.as_str()).or_default();
        state.hedged += units_volume(h.net_units).0;
        state.last_event_id = state.last_event_id.max(h.last_event_id);
    }

    let mut items = Vec::new();
    let mut residuals = Vec::new();
    for (symbol, state) in symbols {
        let unhedged = state.exposure + state.hedged;
        if unhedged.is_zero() {
            continue;
        }
        let account_symbol = inputs.hedge.symbol_map.to_account(symbol);
        let residual = |reason| PlanResidual {
            symbol: symbol.to_owned(),
            account_symbol: account_symbol.clone(),
            exposure: Volume(state.exposure.normalize()),
            hedged: Volume(state.hedged.normalize()),
            unhedged: Volume(unhedged.normalize()),
            reason,
        };
        // Same sign as the hedges: the hedges are larger than needed, so the order takes them back.
        let reduces = !state.hedged.is_zero()
            && state.hedged.is_sign_negative() == unhedged.is_sign_negative();
        let paused =
            state.client_paused || inputs.pauses.iter().any(|p| p.covers(hedge_login, symbol));
        if paused && !reduces {
            residuals.push(residual(ResidualReason::Paused));
            continue;
        }
        let Some(spec) = inputs.hedge.spec_for(symbol) else {
            residuals.push(residual(ResidualReason::NoSymbolSpec));
            continue;
        };
        let wanted = if reduces {
            unhedged.abs().min(state.hedged.abs())
        } else {
            unhedged.abs()
        };
        let mut volume = match spec.normalize_volume(Volume(wanted), Rounding::Nearest) {
            Ok(v) => v,
            Err(VolumeError::BadStep { .. }) => {
                residuals.push(residual(ResidualReason::BadSymbolSpec));
                continue;
            }
            Err(_) => {
                residuals.push(residual(ResidualReason::BelowMin));
                continue;
            }
        };
        if reduces && volume.0 > state.hedged.abs() {
            // Nearest rounding may overshoot the hedge; never take back more than is open.
            match spec.normalize_volume(Volume(wanted), Rounding::Down) {
                Ok(v) => volume = v,
                Err(_) => {
                    residuals.push(residual(ResidualReason::BelowMin));
                    continue;
                }
            }
        }
        let side = if unhedged.is_sign_positive() {
            Side::Sell
        } else {
            Side::Buy
        };
        let signed_order = volume.0 * Decimal::from(side.sign());
        items.push(PlanItem {
            id: state.last_event_id,
            symbol: symbol.to_owned(),
            account_symbol,
            side,
            volume: volume.normalize(),
            action: if reduces {
                PlanAction::Reduce
            } else {
                PlanAction::Open
            },
            exposure: Volume(state.exposure.normalize()),
            hedged: Volume(state.hedged.normalize()),
            unhedged: Volume(unhedged.normalize()),
            residual: Volume((unhedged + signed_order).normalize()),
        });
    }
    HedgePlan {
        hedge_login,
        as_of_event_id: inputs.as_of_event_id,
        items,
        residuals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedge_center_api::model::AccountRole;
    use hedge_domain::{AccountMarginMode, SymbolMap, SymbolSpec};
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn hedge_account(map: SymbolMap, specs: Vec<SymbolSpec>) -> AccountRegistration {
        AccountRegistration {
            login: Login(900),
            role: AccountRole::Hedge,
            server: String::new(),
            company: String::new(),
            margin_mode: AccountMarginMode::RetailHedging,
            symbol_map: map,
            hedge_ratio: Decimal::ONE,
            hedge_login: None,
            symbols: specs,
            currency: "USD".into(),
        }
    }

    fn units(d: Decimal) -> i64 {
        crate::positions::volume_units(Volume(d.abs()), "v").unwrap()
            * if d.is_sign_negative() { -1 } else { 1 }
    }

    fn inputs(
        exposures: &[(u64, &str, Decimal, u64)],
        hedges: &[(&str, Decimal, u64)],
    ) -> PlanInputs {
        PlanInputs {
            hedge: hedge_account(
                SymbolMap::from_affix(".h"),
                vec![
                    SymbolSpec::forex("EURUSD.h", 5),
                    SymbolSpec::forex("GBPUSD.h", 5),
                ],
            ),
            clients: vec![
                ClientConfig {
                    login: Login(1),
                    ratio: Decimal::ONE,
                    hedge_login: None,
                },
                ClientConfig {
                    login: Login(2),
                    ratio: dec!(0.5),
                    hedge_login: None,
                },
                ClientConfig {
                    login: Login(3),
                    ratio: Decimal::ONE,
                    hedge_login: Some(Login(901)),
                },
            ],
            exposures: exposures
                .iter()
                .map(|(l, s, v, id)| ClientExposure {
                    login: Login(*l),
                    symbol: (*s).into(),
                    net_units: units(*v),
                    last_event_id: *id,
                })
                .collect(),
            hedges: hedges
                .iter()
                .map(|(s, v, id)| HedgeCover {
                    symbol: (*s).into(),
                    net_units: units(*v),
                    last_event_id: *id,
                })
                .collect(),
            pauses: vec![],
            as_of_event_id: 99,
        }
    }

    #[test]
    fn mixed_sides_ratio_and_naming() {
        // client 1: +0.3 -0.1 net +0.2; client 2 (ratio 0.5): -0.5 => -0.25; client 3 covered elsewhere.
        let plan = compute(&inputs(
            &[
                (1, "EURUSD", dec!(0.2), 5),
                (2, "EURUSD", dec!(-0.5), 7),
                (3, "EURUSD", dec!(4), 8),
            ],
            &[],
        ));
        assert_eq!(plan.items.len(), 1);
        let item = &plan.items[0];
        assert_eq!(item.exposure, Volume(dec!(-0.05)));
        assert_eq!(item.side, Side::Buy);
        assert_eq!(item.volume, Volume(dec!(0.05)));
        assert_eq!(item.account_symbol, "EURUSD.h");
        assert_eq!(item.id, 7);
        assert_eq!(item.residual, Volume::ZERO);
    }

    #[test]
    fn rounding_clamping_and_residuals() {
        let plan = compute(&inputs(
            &[
                (1, "EURUSD", dec!(0.126), 3),
                (1, "GBPUSD", dec!(250), 4),
                (1, "USDJPY", dec!(1), 6),
                (2, "EURUSD", dec!(0.002), 9),
            ],
            &[],
        ));
        let eur = plan.items.iter().find(|i| i.symbol == "EURUSD").unwrap();
        assert_eq!(eur.volume, Volume(dec!(0.13)));
        assert_eq!(eur.side, Side::Sell);
        assert_eq!(eur.residual, Volume(dec!(-0.003)));
        let gbp = plan.items.iter().find(|i| i.symbol == "GBPUSD").unwrap();
        assert_eq!(gbp.volume, Volume(dec!(100)));
        assert_eq!(gbp.residual, Volume(dec!(150)));
        assert_eq!(plan.residuals.len(), 1);
        assert_eq!(plan.residuals[0].reason, ResidualReason::NoSymbolSpec);
        let tiny = compute(&inputs(&[(1, "EURUSD", dec!(0.004), 3)], &[]));
        assert!(tiny.items.is_empty());
        assert_eq!(tiny.residuals[0].reason, ResidualReason::BelowMin);
        assert_eq!(tiny.residuals[0].unhedged, Volume(dec!(0.004)));
    }

    #[test]
    fn hedges_shrink_the_plan_and_reduce_when_clients_shrink() {
        let covered = compute(&inputs(
            &[(1, "EURUSD", dec!(0.3), 3)],
            &[("EURUSD", dec!(-0.3), 4)],
        ));
        assert!(covered.items.is_empty() && covered.residuals.is_empty());
        let shrunk = compute(&inputs(
            &[(1, "EURUSD", dec!(0.1), 5)],
            &[("EURUSD", dec!(-0.3), 4)],
        ));
        let item = &shrunk.items[0];
        assert_eq!(
            (item.side, item.volume, item.action),
            (Side::Buy, Volume(dec!(0.2)), PlanAction::Reduce)
        );
        assert_eq!(item.id, 5);
        // clients reversed: first take back the whole hedge, the rest comes after
        let flipped = compute(&inputs(
            &[(1, "EURUSD", dec!(-0.2), 6)],
            &[("EURUSD", dec!(-0.3), 4)],
        ));
        let item = &flipped.items[0];
        assert_eq!(
            (item.side, item.volume, item.action),
            (Side::Buy, Volume(dec!(0.3)), PlanAction::Reduce)
        );
        assert_eq!(item.residual, Volume(dec!(-0.2)));
    }

    #[test]
    fn pauses_keep_only_reductions() {
        let mut i = inputs(&[(1, "EURUSD", dec!(0.3), 3)], &[]);
        i.pauses.push(Pause {
            login: Some(Login(900)),
            symbol: None,
            actor: "ops".into(),
            reason: String::new(),
            since_ms: 0,
            event_id: 1,
        });
        let plan = compute(&i);
        assert!(plan.items.is_empty());
        assert_eq!(plan.residuals[0].reason, ResidualReason::Paused);
        let mut i = inputs(&[(1, "EURUSD", dec!(0.1), 3)], &[("EURUSD", dec!(-0.3), 2)]);
        i.pauses.push(Pause {
            login: Some(Login(1)),
            symbol: Some("EURUSD".into()),
            actor: "ops".into(),
            reason: String::new(),
            since_ms: 0,
            event_id: 1,
        });
        let plan = compute(&i);
        assert_eq!(plan.items[0].action, PlanAction::Reduce);
    }

    proptest! {
        #[test]
        fn item_is_on_grid_within_limits_and_reduces_the_gap(
            nets in proptest::collection::vec((-50_000i64..50_000, 1u64..1000), 1..6),
            hedge in -50_000i64..50_000,
        ) {
            let exposures: Vec<ClientExposure> = nets.iter().enumerate().map(|(k, (n, id))| ClientExposure {
                login: Login(1 + (k as u64 % 2)),
                symbol: "EURUSD".into(),
                net_units: n * 1_000_000,
                last_event_id: *id,
            }).collect();
            let mut i = inputs(&[], &[("EURUSD", Decimal::new(hedge, 2), 1)]);
            i.exposures = exposures;
            let plan = compute(&i);
            for item in &plan.items {
                let step = dec!(0.01);
                prop_assert!((item.volume.0 % step).is_zero());
                prop_assert!(item.volume.0 >= dec!(0.01) && item.volume.0 <= dec!(100));
                prop_assert!(item.residual.0.abs() < item.unhedged.0.abs());
                prop_assert_eq!(item.side == Side::Sell, item.unhedged.is_positive());
                if item.action == PlanAction::Reduce {
                    prop_assert!(item.volume.0 <= item.hedged.0.abs());
                }
            }
            prop_assert!(plan.items.len() + plan.residuals.len() <= 1);
        }
    }
}
