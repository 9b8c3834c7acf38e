//! Generated input for the center's request decoding, both APIs: nothing panics, and every
//! refusal names a field and says why. `PROPTEST_CASES` sets the number of cases (a few hundred
//! by default; see docs/security.md for the long run).

use hedge_center::api::decode;
use hedge_center::legacy::parse_new_position;
use hedge_center::model::PositionReport;
use hedge_center::positions::validate;
use proptest::prelude::*;

mod common;

/// A valid report as the agents send it, to mutate.
fn report_text() -> String {
    let report = common::open(common::CLIENT, 7, "EURUSD", hedge_domain::Side::Buy, "0.1");
    serde_json::to_string(&report).unwrap()
}

/// JSON fragments the decoders meet: numbers at and past a double's precision, strings with
/// invisible and control characters, wrong types, nesting.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0.1".to_owned()),
        Just("0.10000000000000000001".to_owned()),
        Just("1e400".to_owned()),
        Just("-0".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just(r#""EUR\u200bUSD""#.to_owned()),
        Just(r#""EUR\u202eDSU""#.to_owned()),
        Just(r#""\ud800""#.to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[A-Za-z0-9.#_ -]{0,12}".prop_map(|s| format!("{s:?}")),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("symbol"),
        Just("volume"),
        Just("side"),
        Just("login"),
        Just("position_id"),
        Just("seq"),
        Just("kind"),
        Just("comment"),
        Just("price"),
        Just("idempotency_key"),
        Just("x"),
    ]
    .prop_map(str::to_owned)
}

/// Objects of generated members, keys possibly repeated.
fn object() -> impl Strategy<Value = String> {
    proptest::collection::vec((key(), value()), 0..10).prop_map(|members| {
        let inner: Vec<String> = members
            .into_iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", inner.join(","))
    })
}

/// A valid report with a few bytes replaced, removed or inserted.
fn mutated_report() -> impl Strategy<Value = Vec<u8>> {
    let edit = (any::<prop::sample::Index>(), any::<u8>(), 0u8..3);
    proptest::collection::vec(edit, 1..6).prop_map(|edits| {
        let mut bytes = report_text().into_bytes();
        for (at, byte, how) in edits {
            let at = at.index(bytes.len());
            match how {
                0 => bytes[at] = byte,
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, byte),
            }
        }
        bytes
    })
}

fn check_legacy(body: &[u8]) -> Result<(), TestCaseError> {
    if let Err(f) = parse_new_position(body) {
        prop_assert!(f.body.field.is_some(), "no field: {:?}", f.body);
        prop_assert!(!f.body.message.is_empty());
        prop_assert_eq!(f.status.as_u16(), 422);
    }
    Ok(())
}

fn check_v1(body: &[u8]) -> Result<(), TestCaseError> {
    match decode::<PositionReport>(body) {
        Ok(report) => {
            if let Err(r) = validate(&report) {
                prop_assert!(!r.to_string().is_empty());
            }
        }
        Err(f) => {
            prop_assert!(f.body.field.is_some(), "no field: {:?}", f.body);
            prop_assert!(!f.body.message.is_empty());
            prop_assert_eq!(f.status.as_u16(), 422);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn legacy_bodies_of_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_legacy(&body)?;
    }

    #[test]
    fn legacy_bodies_of_generated_objects(body in object()) {
        check_legacy(body.as_bytes())?;
    }

    #[test]
    fn v1_reports_of_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_v1(&body)?;
    }

    #[test]
    fn v1_reports_of_generated_objects(body in object()) {
        check_v1(body.as_bytes())?;
    }

    #[test]
    fn v1_reports_mutated(body in mutated_report()) {
        check_v1(&body)?;
    }
}

#[test]
fn the_report_to_mutate_is_valid() {
    let report: PositionReport = decode(report_text().as_bytes()).unwrap();
    validate(&report).unwrap();
}
