//! The legacy center's two endpoints, byte-compatible, so its Python scripts keep working:
//! `GET /new_position/` with a JSON body `{"symbol","volume","side"}` and `GET /all_positions/`
//! answering a JSON *string* that holds an object keyed by symbol in first-seen order.
//!
//! Unlike the legacy center, the book is durable, volumes are netted per symbol (buys minus sells), a
//! symbol netted to zero is left out, volumes are exact decimals always written with a decimal
//! point, and bad input is a 422 naming the field, with nothing stored.

use crate::api::{json_body, AppState, Failure};
use crate::positions::{check_exact_numbers, check_key, check_symbol, lots};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hedge_domain::fixed::Exposure;
use hedge_domain::num::decimal_from_f64;
use hedge_domain::{Side, Volume};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Largest accepted `new_position` body.
pub const MAX_LEGACY_BODY: usize = 16 * 1024;

/// The secret the legacy endpoints require when set; never printed.
#[derive(Clone)]
pub struct LegacyToken(Vec<u8>);

impl LegacyToken {
    pub fn new(secret: &str) -> Result<Self, crate::auth::TokenError> {
        crate::auth::TokenEntry::new("legacy", crate::auth::Role::Viewer, secret)?;
        Ok(LegacyToken(secret.as_bytes().to_vec()))
    }
}

impl std::fmt::Debug for LegacyToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LegacyToken(..)")
    }
}

/// The legacy endpoints' own state: the center's and the optional token.
pub struct LegacyState {
    app: Arc<AppState>,
    token: Option<Vec<u8>>,
}

/// The legacy router. With `token`, every request must present it, as a bearer token or, for
/// scripts that can only change the URL, as `?token=`.
pub fn router(app: Arc<AppState>, token: Option<LegacyToken>) -> Router {
    let state = Arc::new(LegacyState {
        app,
        token: token.map(|t| t.0),
    });
    let routes = Router::new()
        .route("/new_position/", get(new_position))
        .route("/new_position", get(new_position))
        .route("/all_positions/", get(all_positions))
        .route("/all_positions", get(all_positions));
    // Without a token the check would pass every request: the layer is left out rather than
    // run on each one.
    let routes = if state.token.is_some() {
        routes.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
    } else {
        routes
    };
    routes.with_state(state)
}

/// The token a legacy request presents, from `Authorization: Bearer` or the `token` parameter.
fn presented_token(req: &Request) -> Option<&[u8]> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        return value.as_bytes().strip_prefix(b"Bearer ");
    }
    req.uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(str::as_bytes)
}

async fn require_token(State(s): State<Arc<LegacyState>>, req: Request, next: Next) -> Response {
    let Some(expected) = &s.token else {
        return next.run(req).await;
    };
    let ok = presented_token(&req).is_some_and(|t| bool::from(t.ct_eq(expected)));
    if !ok {
        return Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the legacy endpoints need the legacy token (Authorization: Bearer, or ?token=)",
        )
        .into_response();
    }
    next.run(req).await
}

/// A validated `new_position` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPosition {
    pub symbol: String,
    pub volume: Volume,
    pub side: Side,
}

/// The body as sent; derived so that a key given twice is refused, as `/v1` does (a generic JSON
/// object would keep the last value).
#[derive(Deserialize)]
struct RawNewPosition {
    symbol: Option<serde_json::Value>,
    volume: Option<serde_json::Value>,
    side: Option<serde_json::Value>,
}

fn decode_body(body: &[u8]) -> Result<RawNewPosition, Failure> {
    check_exact_numbers(body).map_err(|r| {
        let mut f = Failure::from(r);
        f.body.field = Some("volume".into());
        f
    })?;
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        match text
            .strip_prefix("duplicate field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((field, _)) => Failure::invalid(
                Some(field),
                format!("{field} appears more than once in the body"),
            ),
            None => Failure::invalid(Some("body"), "body must be a JSON object"),
        }
    })
}

/// The decimal a JSON number was written as: an integer as it is, a float at its shortest
/// round-trip form (the text `Number` would print, without printing it).
fn number_decimal(n: &serde_json::Number) -> Option<Decimal> {
    if let Some(u) = n.as_u64() {
        return Some(Decimal::from(u));
    }
    if let Some(i) = n.as_i64() {
        return Some(Decimal::from(i));
    }
    n.as_f64().and_then(decimal_from_f64)
}

/// Parses and checks a `new_position` body.
pub fn parse_new_position(body: &[u8]) -> Result<NewPosition, Failure> {
    let raw = decode_body(body)?;
    let symbol = match raw.symbol {
        None => return Err(Failure::invalid(Some("symbol"), "symbol is required")),
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(Failure::invalid(Some("symbol"), "symbol must be a string")),
    };
    check_symbol(&symbol, "symbol").map_err(Failure::from)?;
    let bad_volume = || Failure::invalid(Some("volume"), "volume must be a positive number");
    let volume = match raw.volume {
        None => return Err(Failure::invalid(Some("volume"), "volume is required")),
        Some(serde_json::Value::Number(n)) => number_decimal(&n)
            .map(|d| Volume(d.normalize()))
            .ok_or_else(bad_volume)?,
        Some(_) => return Err(bad_volume()),
    };
    if !volume.is_positive() {
        return Err(bad_volume());
    }
    if lots(volume, "volume").map_err(Failure::from)?.is_zero() {
        return Err(bad_volume());
    }
    let side = match raw.side {
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

/// The optional `Idempotency-Key` of a legacy write.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Failure> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| {
        Failure::invalid(
            Some("Idempotency-Key"),
            "Idempotency-Key must be visible ASCII characters without spaces",
        )
    })?;
    check_key(key).map_err(|r| {
        let mut f = Failure::from(r);
        f.body.field = Some("Idempotency-Key".into());
        f
    })?;
    Ok(Some(key.to_owned()))
}

fn success(replayed: bool) -> Response {
    let mut resp = json_body(StatusCode::OK, br#"{"message":"success"}"#.as_slice());
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replay", HeaderValue::from_static("true"));
    }
    resp
}

async fn new_position(
    State(s): State<Arc<LegacyState>>,
    req: Request,
) -> Result<Response, Failure> {
    // The request taken whole: the `HeaderMap` extractor would copy every header.
    let (parts, body) = req.into_parts();
    let key = idempotency_key(&parts.headers)?;
    let bytes = crate::api::read_limited(body, MAX_LEGACY_BODY)
        .await
        .ok_or_else(|| {
            Failure::invalid(
                Some("body"),
                format!("body exceeds {MAX_LEGACY_BODY} bytes"),
            )
        })?;
    let p = parse_new_position(&bytes)?;
    // The key is kept by the store with the write, so a resend is recognised after a restart too.
    let outcome = s
        .app
        .store
        .legacy_report(
            "legacy".into(),
            p.symbol,
            p.side,
            p.volume,
            key,
            s.app.clock.now_ms(),
        )
        .await?;
    Ok(success(matches!(
        outcome,
        crate::store::logic::LegacyOutcome::Replayed
    )))
}

/// `{"EURUSD":{"volume":0.3,"side":0}}` from the netted book.
pub fn render_book(book: &[(String, i64)]) -> String {
    let mut out = String::from("{");
    for (i, (symbol, net)) in book.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(symbol).unwrap_or_else(|_| "\"\"".into()));
        let net = Exposure::from_units(*net);
        // The store refuses totals whose size has no i64, so `size` is always there.
        let volume = net.size().unwrap_or_default().volume();
        let mut text = volume.to_string();
        if !text.contains('.') {
            text.push_str(".0");
        }
        let side = net.side().unwrap_or(Side::Sell).code();
        out.push_str(&format!(":{{\"volume\":{text},\"side\":{side}}}"));
    }
    out.push('}');
    out
}

async fn all_positions(State(s): State<Arc<LegacyState>>) -> Result<Response, Failure> {
    let body = s
        .app
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
    use axum::body::Body;

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

    /// A number is read as the decimal its printed form gives, integers and floats alike.
    #[test]
    fn numbers_read_as_printed() {
        for text in [
            "0.01",
            "0.1",
            "1e-7",
            "1.5E3",
            "5",
            "-3",
            "0",
            "1000000000",
            "18446744073709551615",
            "-9223372036854775808",
            "1.08345",
            "92000000000.12345678",
            "123456789012345.6",
        ] {
            let n: serde_json::Number = serde_json::from_str(text).unwrap();
            assert_eq!(
                number_decimal(&n),
                hedge_domain::num::parse_decimal(&n.to_string()),
                "{text}"
            );
        }
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let err = parse_new_position(br#"{"symbol":"EURUSD","volume":0.1,"volume":5,"side":0}"#)
            .unwrap_err();
        assert_eq!(err.body.field.as_deref(), Some("volume"));
        assert!(
            err.body.message.contains("more than once"),
            "{}",
            err.body.message
        );
    }

    #[test]
    fn a_volume_with_more_digits_than_a_double_is_refused() {
        let err =
            parse_new_position(br#"{"symbol":"EURUSD","volume":0.10000000000000000001,"side":0}"#)
                .unwrap_err();
        assert_eq!(err.body.field.as_deref(), Some("volume"));
        assert!(
            err.body.message.contains("cannot be read exactly"),
            "{}",
            err.body.message
        );
    }

    #[test]
    fn invisible_characters_in_a_symbol_are_refused() {
        for body in [
            r#"{"symbol":"EUR\u200bUSD","volume":0.1,"side":0}"#,
            r#"{"symbol":"EUR\u202eDSU","volume":0.1,"side":0}"#,
        ] {
            let err = parse_new_position(body.as_bytes()).unwrap_err();
            assert_eq!(err.body.field.as_deref(), Some("symbol"), "{body}");
        }
        assert!(parse_new_position(br##"{"symbol":"#AAPL.m","volume":0.1,"side":0}"##).is_ok());
    }

    #[test]
    fn the_token_is_taken_from_the_header_or_the_query() {
        let req = |uri: &str, auth: Option<&str>| {
            let mut b = axum::http::Request::builder().uri(uri);
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            b.body(Body::empty()).unwrap()
        };
        let r = req("/all_positions/?x=1&token=abc", None);
        assert_eq!(presented_token(&r), Some(b"abc".as_slice()));
        let r = req("/all_positions/", Some("Bearer xyz"));
        assert_eq!(presented_token(&r), Some(b"xyz".as_slice()));
        let r = req("/all_positions/", Some("Basic xyz"));
        assert_eq!(presented_token(&r), None);
        assert_eq!(presented_token(&req("/all_positions/", None)), None);
    }
}
