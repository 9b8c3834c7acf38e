//! The center's API types, shared by the server and [`crate::client::CenterClient`].
//!
//! Every request and response body of `/v1` is one of these types, serialized with serde as JSON.
//! Volumes, prices and ratios are JSON numbers read and written exactly (see `hedge_domain::num`);
//! sides are `"buy"`/`"sell"`; enums are `snake_case` strings; times are Unix milliseconds.

use hedge_domain::{
    AccountMarginMode, AccountName, DealTicket, Login, Magic, Money, OrderTicket, PositionId,
    Price, Retcode, Side, SymbolMap, SymbolSpec, Volume,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A decimal that travels as a JSON number (a ratio), read and written exactly like a [`Volume`].
pub mod decimal_number {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        hedge_domain::num::serialize_decimal(*value, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        Volume::deserialize(deserializer).map(|v| v.0)
    }
}

/// An optional [`decimal_number`]: absent or `null` is `None`; a number or a decimal string is read
/// exactly.
pub mod opt_decimal_number {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<Decimal>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => hedge_domain::num::serialize_decimal(*v, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Decimal>, D::Error> {
        Ok(Option::<Volume>::deserialize(deserializer)?.map(|v| v.0))
    }
}

fn one() -> Decimal {
    Decimal::ONE
}

fn is_false(value: &bool) -> bool {
    !*value
}

mod account;
mod action;
mod allocation;
mod event;
mod hedge;
mod ids;
mod plan;
mod position;

pub use account::*;
pub use action::*;
pub use allocation::*;
pub use event::*;
pub use hedge::*;
pub use ids::*;
pub use plan::*;
pub use position::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_defaults_and_ratio_as_number() {
        let reg: AccountRegistration =
            serde_json::from_str(r#"{"login":7,"role":"client","margin_mode":2}"#).unwrap();
        assert_eq!(reg.hedge_ratio, Decimal::ONE);
        assert_eq!(reg.margin_mode, AccountMarginMode::RetailHedging);
        let json = serde_json::to_value(&reg).unwrap();
        assert_eq!(json["hedge_ratio"], serde_json::json!(1));
        let half: AccountRegistration = serde_json::from_str(
            r#"{"login":7,"role":"client","margin_mode":0,"hedge_ratio":0.5}"#,
        )
        .unwrap();
        assert_eq!(half.hedge_ratio, Decimal::new(5, 1));
    }

    #[test]
    fn event_kinds_round_trip_through_text() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn pause_scope() {
        let p = Pause {
            login: None,
            symbol: Some("EURUSD".into()),
            actor: "ops".into(),
            reason: String::new(),
            since_ms: 0,
            event_id: EventId(1),
        };
        assert!(p.covers(Login(1), "EURUSD"));
        assert!(!p.covers(Login(1), "GBPUSD"));
    }
}
