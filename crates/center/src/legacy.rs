//! The prototype's two endpoints, byte-compatible, so its Python scripts keep working:
//! `GET /new_position/` with a JSON body `{"symbol","volume","side"}` and `GET /all_positions/`
//! answering a JSON *string* that holds an object keyed by symbol in first-seen order.
//!
//! Unlike the prototype, the book is durable, volumes are netted per symbol (buys minus sells), a
//! symbol netted to zero is left out, volumes are exact decimals always written with a decimal
//! point, and bad input is a 422 naming the field, with nothing stored.

use crate::api::{json_body, AppState, Failure};
use crate::positions::{check_symbol, units_volume, volume_units};
use crate::store::logic::now_ms;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hedge_domain::num::parse_decimal;
use hedge_domain::{Side, Volume};
use std::sync::Arc;

/// Largest accepted `new_position` body.
pub const MAX_LEGACY_BODY: usize = 16 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/new_position/", get(new_position))
        .route("/new_position", get(new_position))
        .route("/all_positions/", get(all_positions))
        .route("/all_positions", get(all_positions))
        .with_state(state)
}

/// A validated `new_position` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPosition {
    pub symbol: String,
    pub volume: Volume,
    pub side: Side,
}

/// Parses and checks a `new_position` body.
pub fn parse_new_position(body: &[u8]) -> Result<NewPosition, Failure> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| Failure::invalid(Some("body"), "body must be a JSON object"))?;
    let object = value
        .as_object()
        .ok_or_else(|| Failure::invalid(Some("body"), "body must be a JSON object"))?;
    let symbol = match object.get("symbol") {
        None => return Err(Failure::invalid(Some("symbol"), "symbol is required")),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err(Failure::invalid(Some("symbol"), "symbol must be a string")),
    };
    check_symbol(&symbol, "symbol").map_err(Failure::from)?;
    let volume = match object.get("volume") {
        None => return Err(Failure::invalid(Some("volume"), "volume is required")),
        Some(serde_json::Value::Number(n)) => parse_decimal(&n.to_string())
            .map(|d| Volume(d.normalize()))
            .ok_or_else(|| Failure::invalid(Some("volume"), "volume must be a positive number"))?,
        Some(_) => {
            return Err(Failure::invalid(
                Some("volume"),
                "volume must be a positive number",
            ))
        }
    };
    if !volume.is_positive() {
        return Err(Failure::invalid(
            Some("volume"),
            "volume must be a positive number",
        ));
    }
    let units = volume_units(volume, "volume").map_err(Failure::from)?;
    if units == 0 {
        return Err(Failure::invalid(
            Some("volume"),
            "volume must be a positive number",
        ));
    }
    let side = match object.get("side") {
        None => return Err(Failure::invalid(Some("side"), "side is required")),
        Some(v) => v
            .as_u64()
            .and_then(|c| u8::try_from(c).ok())
            .and_then(Side::from_code)
            .ok_or_else(|| Failure::invalid(Some("side"), "side must be 0 (buy) or 1 (sell)"))?,
    };
    Ok(NewPosition {
        symbol,
        volume,
        side,
    })
}

async fn new_position(State(s): State<Arc<AppState>>, body: Body) -> Result<Response, Failure> {
    let bytes = crate::api::read_limited(body, MAX_LEGACY_BODY)
        .await
        .ok_or_else(|| {
            Failure::invalid(
                Some("body"),
                format!("body exceeds {MAX_LEGACY_BODY} bytes"),
            )
        })?;
    let p = parse_new_position(&bytes)?;
    s.store
        .legacy_report("legacy".into(), p.symbol, p.side, p.volume, now_ms())
        .await?;
    Ok(json_body(
        StatusCode::OK,
        br#"{"message":"success"}"#.as_slice(),
    ))
}

/// `{"EURUSD":{"volume":0.3,"side":0}}` from the netted book.
pub fn render_book(book: &[(String, i64)]) -> String {
    let mut out = String::from("{");
    for (i, (symbol, net)) in book.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(symbol).unwrap_or_else(|_| "\"\"".into()));
        let volume = units_volume(net.abs()).0.normalize();
        let mut text = volume.to_string();
        if !text.contains('.') {
            text.push_str(".0");
        }
        let side = if *net > 0 { 0 } else { 1 };
        out.push_str(&format!(":{{\"volume\":{text},\"side\":{side}}}"));
    }
    out.push('}');
    out
}

async fn all_positions(State(s): State<Arc<AppState>>) -> Result<Response, Failure> {
    let body = s
        .store
        .legacy_book_answer(|book| {
            let inner = render_book(book);
            serde_json::to_vec(&inner).unwrap_or_default().into()
        })
        .await?;
    Ok(json_body(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_rendering() {
        let book = vec![
            ("EURUSD".to_owned(), 30_000_000),
            ("GBPUSD".to_owned(), -100_000_000),
        ];
        assert_eq!(
            render_book(&book),
            r#"{"EURUSD":{"volume":0.3,"side":0},"GBPUSD":{"volume":1.0,"side":1}}"#
        );
        assert_eq!(render_book(&[]), "{}");
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let field = |b: &str| {
            parse_new_position(b.as_bytes())
                .unwrap_err()
                .body
                .field
                .unwrap()
        };
        assert_eq!(field("not json"), "body");
        assert_eq!(field("[1]"), "body");
        assert_eq!(field(r#"{"volume":0.1,"side":0}"#), "symbol");
        assert_eq!(field(r#"{"symbol":"","volume":0.1,"side":0}"#), "symbol");
        assert_eq!(
            field(r#"{"symbol":"EURUSD","volume":-0.1,"side":0}"#),
            "volume"
        );
        assert_eq!(
            field(r#"{"symbol":"EURUSD","volume":"0.1","side":0}"#),
            "volume"
        );
        assert_eq!(
            field(r#"{"symbol":"EURUSD","volume":0,"side":0}"#),
            "volume"
        );
        assert_eq!(
            field(r#"{"symbol":"EURUSD","volume":0.1,"side":2}"#),
            "side"
        );
        assert_eq!(field(r#"{"symbol":"EURUSD","volume":0.1}"#), "side");
        let ok = parse_new_position(br#"{"symbol":"EURUSD","volume":0.1,"side":1}"#).unwrap();
        assert_eq!(ok.side, Side::Sell);
    }
}
