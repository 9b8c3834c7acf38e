//! Framing and (de)serialization: one JSON object per `\n`-terminated line.
//!
//! The size limit is enforced on the raw bytes before any parsing, so an oversized or endless line costs
//! no more memory than the limit; it is skipped up to its `\n` and reported once. A line that fails to
//! decode is classified (not JSON, no `type`, unknown `type`, bad field) so the peer gets a precise
//! error and the connection survives.

use crate::message::{
    AgentMsg, ErrorCode, InvalidMessage, TerminalMsg, Validate, AGENT_TYPES, PROTOCOL_VERSION,
    TERMINAL_TYPES,
};
use hedge_domain::CmdId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::ops::Range;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Default maximum line length in bytes, terminator excluded (1 MiB).
pub const MAX_LINE: usize = 1 << 20;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A line that could not be accepted, with what to tell the peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
    /// The `cmd_id` of the offending line, when it had a readable one.
    pub cmd_id: Option<CmdId>,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
            cmd_id: None,
        }
    }

    /// The `error` message to send back.
    pub fn to_msg(&self) -> crate::message::ErrorMsg {
        crate::message::ErrorMsg {
            seq: 0,
            code: self.code,
            message: self.message.clone(),
            cmd_id: self.cmd_id.clone(),
        }
    }
}

/// Splits a byte stream into lines, enforcing the size limit.
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Start of the first unconsumed line.
    start: usize,
    /// Everything before this index (from `start`) is known to hold no `\n`.
    scanned: usize,
    max_line: usize,
    /// Inside an oversized line that was already reported: drop bytes up to the next `\n`.
    discarding: bool,
}

impl LineBuffer {
    pub fn new(max_line: usize) -> Self {
        LineBuffer {
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            scanned: 0,
            max_line,
            discarding: false,
        }
    }

    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Appends received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that are not yet a complete line.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete line (without `\n` or a trailing `\r`), an error for an oversized one, or
    /// `None` when more bytes are needed. Blank lines are skipped.
    pub fn next_line(&mut self) -> Option<Result<&[u8], ProtocolError>> {
        match self.next_range()? {
            Ok(range) => Some(Ok(&self.buf[range])),
            Err(e) => Some(Err(e)),
        }
    }

    fn next_range(&mut self) -> Option<Result<Range<usize>, ProtocolError>> {
        loop {
            if self.start == self.buf.len() {
                self.buf.clear();
                self.start = 0;
                self.scanned = 0;
            }
            let from = self.scanned.max(self.start);
            match memchr::memchr(b'\n', &self.buf[from..]) {
                Some(offset) => {
                    let end = from + offset;
                    let begin = self.start;
                    self.start = end + 1;
                    self.scanned = self.start;
                    if self.discarding {
                        self.discarding = false;
                        continue;
                    }
                    let mut stop = end;
                    if stop > begin && self.buf[stop - 1] == b'\r' {
                        stop -= 1;
                    }
                    if stop - begin > self.max_line {
                        return Some(Err(too_long(self.max_line)));
                    }
                    if self.buf[begin..stop].iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Some(Ok(begin..stop));
                }
                None => {
                    self.scanned = self.buf.len();
                    // +1: a line of exactly the limit may still be waiting for its `\r`.
                    if self.buf.len() - self.start > self.max_line + 1 {
                        self.buf.clear();
                        self.start = 0;
                        self.scanned = 0;
                        if !self.discarding {
                            self.discarding = true;
                            return Some(Err(too_long(self.max_line)));
                        }
                        return None;
                    }
                    if self.start > 0 {
                        self.buf.drain(..self.start);
                        self.scanned -= self.start;
                        self.start = 0;
                    }
                    return None;
                }
            }
        }
    }
}

fn too_long(limit: usize) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::LineTooLong,
        format!("line longer than {limit} bytes; skipped"),
    )
}

/// Reads lines from an async byte stream.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    lines: LineBuffer,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max_line: usize) -> Self {
        LineReader {
            inner,
            lines: LineBuffer::new(max_line),
        }
    }

    /// The next line; `Ok(None)` at end of stream. A partial last line at end of stream is dropped.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Result<&[u8], ProtocolError>>> {
        loop {
            match self.lines.next_range() {
                Some(Ok(range)) => return Ok(Some(Ok(&self.lines.buf[range]))),
                Some(Err(e)) => return Ok(Some(Err(e))),
                None => {}
            }
            self.lines.buf.reserve(READ_CHUNK);
            let n = self.inner.read_buf(&mut self.lines.buf).await?;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// The envelope fields of a line that failed to decode; only objects qualify.
struct Probe {
    kind: Option<serde_json::Value>,
    cmd_id: Option<serde_json::Value>,
}

/// Why a line has no envelope to read.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("not a JSON object: {0}")]
    NotAnObject(&'static str),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

impl Probe {
    fn read(line: &[u8]) -> Result<Probe, ProbeError> {
        match serde_json::from_slice::<serde_json::Value>(line)? {
            serde_json::Value::Object(mut map) => Ok(Probe {
                kind: map.remove("type"),
                cmd_id: map.remove("cmd_id"),
            }),
            other => Err(ProbeError::NotAnObject(json_kind(&other))),
        }
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn decode<T: DeserializeOwned + Validate>(line: &[u8], known: &[&str]) -> Result<T, ProtocolError> {
    match parse::<T>(line) {
        Ok(msg) => validated(msg, line),
        Err(err) => Err(classify(line, known, err)),
    }
}

/// `line` parsed as a `T`, with the same result as `serde_json::from_slice`. A UTF-8 line is read
/// as text: the whole line is then checked once instead of every key and string on its own, which
/// costs more than the check itself on lines of many short keys.
fn parse<T: DeserializeOwned>(line: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(line) {
        Ok(text) => serde_json::from_str(text),
        // Not UTF-8: let the byte parser report where.
        Err(_) => serde_json::from_slice(line),
    }
}

/// `msg` if it passes [`Validate`], else the `bad_message` error for `line`.
#[inline]
fn validated<T: Validate>(msg: T, line: &[u8]) -> Result<T, ProtocolError> {
    match msg.validate() {
        Ok(()) => Ok(msg),
        Err(invalid) => Err(bad_message(invalid, line)),
    }
}

/// The error for a well-formed line with values that cannot be right. Kept out of line: the decoders
/// are called for every line and almost never get here.
#[cold]
#[inline(never)]
fn bad_message(invalid: InvalidMessage, line: &[u8]) -> ProtocolError {
    let mut e = ProtocolError::new(ErrorCode::BadMessage, invalid.to_string());
    e.cmd_id = probe_cmd_id(line);
    e
}

fn probe_cmd_id(line: &[u8]) -> Option<CmdId> {
    Probe::read(line)
        .ok()
        .and_then(|p| p.cmd_id)
        .and_then(|v| v.as_str().map(CmdId::from))
}

/// Why a line failed to decode. Runs only on the error path, so it may parse the line again.
fn classify(line: &[u8], known: &[&str], err: serde_json::Error) -> ProtocolError {
    let probe = match Probe::read(line) {
        Ok(p) => p,
        Err(e) => {
            let what = if std::str::from_utf8(line).is_err() {
                "line is not UTF-8".to_owned()
            } else {
                format!("invalid JSON: {e}")
            };
            return ProtocolError::new(ErrorCode::BadJson, what);
        }
    };
    let cmd_id = probe
        .cmd_id
        .as_ref()
        .and_then(|v| v.as_str())
        .map(CmdId::from);
    let mut e = match probe.kind.as_ref().and_then(|v| v.as_str()) {
        None => ProtocolError::new(ErrorCode::MissingType, "message has no string \"type\""),
        Some(kind) if !known.contains(&kind) => ProtocolError::new(
            ErrorCode::UnknownType,
            format!("unknown message type {kind:?}"),
        ),
        Some(kind) => ProtocolError::new(
            ErrorCode::BadMessage,
            format!("bad {kind:?} message: {err}"),
        ),
    };
    e.cmd_id = cmd_id;
    e
}

/// The `type` of a line that starts exactly with `{"type":"…"`, as every line this crate writes does.
/// With it the payload struct is parsed directly, skipping serde's buffering of tagged enums (about
/// twice as fast); any other layout takes the general path.
fn leading_type(line: &[u8]) -> Option<&[u8]> {
    const PREFIX: &[u8] = b"{\"type\":\"";
    let rest = line.strip_prefix(PREFIX)?;
    let end = memchr::memchr(b'"', rest)?;
    Some(&rest[..end])
}

/// A payload read straight from `text` and validated before it is wrapped, so the large message
/// is moved as little as possible; `None` when it does not parse this way.
fn direct<T: DeserializeOwned + Validate>(
    text: &str,
    line: &[u8],
    wrap: fn(T) -> TerminalMsg,
) -> Option<Result<TerminalMsg, ProtocolError>> {
    let msg = serde_json::from_str::<T>(text).ok()?;
    Some(match msg.validate() {
        Ok(()) => Ok(wrap(msg)),
        Err(invalid) => Err(bad_message(invalid, line)),
    })
}

/// Decodes a line a terminal sent.
pub fn decode_terminal(line: &[u8]) -> Result<TerminalMsg, ProtocolError> {
    use crate::message::{Heartbeat, Reply, Tx};
    // Payload structs ignore the `type` key; a duplicate or odd line (or one that is not UTF-8)
    // falls through to the general path, which also produces the precise error.
    let fast = leading_type(line)
        .zip(std::str::from_utf8(line).ok())
        .and_then(|(kind, text)| match kind {
            b"tx" => direct::<Tx>(text, line, TerminalMsg::Tx),
            b"reply" => direct::<Reply>(text, line, TerminalMsg::Reply),
            b"heartbeat" => direct::<Heartbeat>(text, line, TerminalMsg::Heartbeat),
            _ => None,
        });
    match fast {
        Some(result) => result,
        None => decode(line, TERMINAL_TYPES),
    }
}

/// Decodes a line an agent sent.
pub fn decode_agent(line: &[u8]) -> Result<AgentMsg, ProtocolError> {
    // A command whose fields all parse as the flat command reads is accepted from it; anything else
    // (an `error`, an unknown op, a field the flat form cannot take, a line that is not UTF-8) goes
    // the general way, which decides and classifies exactly as before.
    let flat = std::str::from_utf8(line)
        .ok()
        .and_then(crate::command::FlatCmd::parse);
    match flat {
        Some(cmd) => validated(cmd, line).map(AgentMsg::Cmd),
        None => decode(line, AGENT_TYPES),
    }
}

/// Whether a peer's major version is supported.
pub fn check_version(v: u32) -> Result<(), ProtocolError> {
    if v == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ProtocolError::new(
            ErrorCode::UnsupportedVersion,
            format!("protocol version {v} is not supported (this side speaks {PROTOCOL_VERSION})"),
        ))
    }
}

/// Why a message could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {len} bytes exceeds the line limit of {limit} bytes")]
    TooLong { len: usize, limit: usize },
    #[error("message could not be serialized: {0}")]
    Json(#[from] serde_json::Error),
}

/// Appends `msg` as one line (JSON + `\n`) to `out`. On error `out` is left as it was.
pub fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_limited(msg, out, MAX_LINE)
}

/// [`encode`] with an explicit line limit.
pub fn encode_limited<T: Serialize>(
    msg: &T,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), EncodeError> {
    let before = out.len();
    if let Err(e) = serde_json::to_writer(&mut *out, msg) {
        out.truncate(before);
        return Err(e.into());
    }
    let len = out.len() - before;
    if len > limit {
        out.truncate(before);
        return Err(EncodeError::TooLong { len, limit });
    }
    out.push(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::FlatCmd;
    use crate::message::{Cmd, Filling, HistoryRange, Op, TradeRequest};
    use hedge_domain::{
        Magic, OrderFilling, OrderTime, OrderType, PositionId, Price, TradeAction, Volume,
    };
    use proptest::prelude::*;
    use proptest::strategy::{BoxedStrategy, ValueTree};
    use rust_decimal_macros::dec;

    /// What the general serde path alone makes of a line: the reference the flat path must match.
    fn general(line: &[u8]) -> Result<AgentMsg, ProtocolError> {
        decode::<AgentMsg>(line, AGENT_TYPES)
    }

    fn commands() -> Vec<AgentMsg> {
        let mut request = TradeRequest::market("EURUSD", OrderType::Sell, Volume(dec!(0.3)));
        request.magic = Magic(99);
        request.deviation = 20;
        request.sl = Price(dec!(1.1));
        request.comment = "hedge \"p-1\" \u{e9}".into();
        request.position = PositionId(31);
        request.is_async = true;
        let mut pending = request.clone();
        pending.action = TradeAction::Pending;
        pending.order_type = OrderType::BuyStopLimit;
        pending.price = Price(dec!(1.08312));
        pending.type_filling = Filling::Mode(OrderFilling::Return);
        pending.type_time = OrderTime::Specified;
        pending.expiration = 1_800_000_000_000;
        pending.position_by = PositionId(32);
        let ops = vec![
            Op::OrderSend(request.clone()),
            Op::OrderSend(pending),
            Op::OrderCheck(request),
            Op::History(HistoryRange {
                from: 0,
                to: 1_800_000_000_000,
                page_size: Some(100),
                cursor: Some("x".into()),
            }),
            Op::History(HistoryRange {
                from: 5,
                to: 5,
                page_size: None,
                cursor: None,
            }),
            Op::Snapshot,
            Op::SymbolInfo {
                symbol: "XAUUSD".into(),
            },
            Op::Ping,
        ];
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| {
                AgentMsg::Cmd(Cmd {
                    cmd_id: CmdId::new(format!("c-{i}")),
                    op,
                })
            })
            .collect()
    }

    #[test]
    fn every_encoded_command_takes_the_flat_path() {
        for msg in commands() {
            let mut line = Vec::new();
            encode(&msg, &mut line).unwrap();
            let AgentMsg::Cmd(cmd) = &msg else {
                unreachable!("only commands are listed")
            };
            let text = std::str::from_utf8(&line).unwrap();
            assert_eq!(FlatCmd::parse(text).as_ref(), Some(cmd));
            assert_eq!(decode_agent(&line).unwrap(), msg);
            assert_eq!(general(&line).unwrap(), msg);
        }
    }

    #[test]
    fn flat_and_general_paths_agree_on_unusual_and_bad_lines() {
        let lines: &[&str] = &[
            // Key order, escapes, unknown keys, defaults.
            r#"{"op":"order_send","action":1,"symbol":"EURUSD","volume":0.3,"cmd_id":"a","type":"cmd"}"#,
            r#"{"type":"c\u006dd","cmd_id":"a","op":"order\u005fsend","action":1,"volume":"0.1"}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","action":1,"volume":1,"future":[1,{"x":2}]}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","action":6,"position":3,"sl":1.1}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","action":1,"volume":1,"type_filling":"AUTO"}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","action":1,"volume":1,"type_filling":"ioc"}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","action":1,"volume":1,"type_filling":2}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"ping","volume":"junk","from":"x"}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"history","from":1,"to":2,"action":"junk"}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"history","from":1,"to":2,"page_size":null,"cursor":null}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"symbol_info","symbol":"EURUSD","volume":-1}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"snapshot"}"#,
            // Nulls where the general path wants a value.
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","action":1,"volume":1,"symbol":null}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","action":null,"volume":1}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","action":1,"volume":null}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"symbol_info","symbol":null}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"history","from":null,"to":2}"#,
            r#"{"type":"cmd","cmd_id":null,"op":"ping"}"#,
            // Duplicate keys.
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","action":1,"volume":1,"volume":2}"#,
            r#"{"type":"cmd","cmd_id":"a","cmd_id":"b","op":"ping"}"#,
            r#"{"type":"cmd","type":"cmd","cmd_id":"a","op":"ping"}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"ping","op":"snapshot"}"#,
            // Refused by validation, with the cmd_id named.
            r#"{"type":"cmd","cmd_id":"n","op":"order_send","action":1,"volume":-0.1}"#,
            r#"{"type":"cmd","cmd_id":"n","op":"order_send","action":1,"volume":0}"#,
            r#"{"type":"cmd","cmd_id":"n","op":"order_check","action":5,"volume":1,"price":-1}"#,
            r#"{"type":"cmd","cmd_id":"n","op":"order_send","action":8,"order":5,"volume":-1}"#,
            r#"{"type":"cmd","cmd_id":"n","op":"history","from":10,"to":2}"#,
            r#"{"type":"cmd","cmd_id":"","op":"ping"}"#,
            // Missing or wrong fields, types and ops.
            r#"{"type":"cmd","op":"ping"}"#,
            r#"{"type":"cmd","cmd_id":"a"}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"teleport"}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","volume":1}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","action":3,"volume":1}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","action":1,"volume":1,"order_type":99}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","action":1,"volume":"abc"}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"order_send","action":1,"volume":1,"deviation":-1}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"symbol_info"}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"history","from":1}"#,
            r#"{"type":"cmd","cmd_id":7,"op":"ping"}"#,
            r#"{"type":"error","code":"bad_json","message":"m"}"#,
            r#"{"type":"error","code":"bad_json"}"#,
            r#"{"type":"tx","cmd_id":"a","time":1,"tx_type":6}"#,
            r#"{"type":5,"cmd_id":"a","op":"ping"}"#,
            r#"{"cmd_id":"a","op":"ping"}"#,
            r#"{"type":"cmd","cmd_id":"a","op":"ping"} x"#,
            r#"{"type":"cmd","cmd_id":"a","op":"ping""#,
            r#"["type","cmd"]"#,
            "",
        ];
        for line in lines {
            assert_eq!(
                decode_agent(line.as_bytes()),
                general(line.as_bytes()),
                "{line}"
            );
        }
        let e = decode_agent(lines[22].as_bytes()).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadMessage);
        assert_eq!(e.cmd_id, Some(CmdId::from("n")));
        assert!(decode_agent(&[0xff, b'{', b'}']).is_err());
        assert_eq!(decode_agent(&[0xff]), general(&[0xff]));
    }

    const KEYS: &[&str] = &[
        "type",
        "cmd_id",
        "op",
        "action",
        "magic",
        "order",
        "symbol",
        "volume",
        "price",
        "stoplimit",
        "sl",
        "tp",
        "deviation",
        "order_type",
        "type_filling",
        "type_time",
        "expiration",
        "comment",
        "position",
        "position_by",
        "async",
        "from",
        "to",
        "page_size",
        "cursor",
        "code",
        "message",
        "extra",
    ];

    /// JSON text for `key`: mostly a value that key takes somewhere, sometimes anything.
    fn value_for(key: &str) -> BoxedStrategy<String> {
        let good: &[&str] = match key {
            "type" => &["\"cmd\"", "\"cmd\"", "\"cmd\"", "\"error\""],
            "cmd_id" => &["\"c-1\"", "\"k\\u0031\"", "\"\""],
            "op" => &[
                "\"order_send\"",
                "\"order_send\"",
                "\"order_check\"",
                "\"history\"",
                "\"snapshot\"",
                "\"symbol_info\"",
                "\"ping\"",
                "\"teleport\"",
            ],
            "action" => &["1", "1", "5", "6", "7", "8", "10", "0", "2"],
            "volume" | "price" | "stoplimit" | "sl" | "tp" => {
                &["0", "0.3", "1", "1.08312", "-0.1", "\"0.5\"", "1e-3"]
            }
            "order_type" => &["0", "1", "2", "5", "6", "7", "8", "9", "10"],
            "type_filling" => &["0", "1", "2", "3", "4", "\"auto\"", "\"AUTO\"", "\"fok\""],
            "type_time" => &["0", "1", "2", "3", "4"],
            "symbol" | "comment" | "cursor" | "message" => &["\"EURUSD\"", "\"\"", "\"a\\\"b\""],
            "from" | "to" | "expiration" => &["0", "100", "1800000000000", "-5"],
            "page_size" => &["10", "0", "null"],
            "deviation" | "magic" | "order" | "position" | "position_by" => &["0", "77", "20"],
            "async" => &["true", "false"],
            "code" => &["\"bad_json\"", "\"whatever\""],
            _ => &["1", "{\"a\":[1,2]}"],
        };
        let junk: &[&str] = &[
            "null",
            "true",
            "-1",
            "1.5",
            "\"x\"",
            "[]",
            "{}",
            "18446744073709551616",
        ];
        let good: Vec<String> = good.iter().map(|s| s.to_string()).collect();
        let junk: Vec<String> = junk.iter().map(|s| s.to_string()).collect();
        prop_oneof![
            24 => proptest::sample::select(good),
            1 => proptest::sample::select(junk),
        ]
        .boxed()
    }

    /// A JSON object over [`KEYS`] in any order, now and then with a key twice.
    fn command_like_line() -> impl Strategy<Value = String> {
        let fields: Vec<_> = KEYS
            .iter()
            .map(|&key| {
                let weight = match key {
                    "type" | "cmd_id" | "op" | "action" | "volume" => 0.95,
                    "from" | "to" | "symbol" => 0.6,
                    _ => 0.25,
                };
                proptest::option::weighted(weight, value_for(key).prop_map(move |v| (key, v)))
            })
            .collect();
        let twice = proptest::option::weighted(
            0.1,
            proptest::sample::select(KEYS)
                .prop_flat_map(|k| value_for(k).prop_map(move |v| (k, v))),
        );
        (fields, twice)
            .prop_map(|(fields, twice)| {
                let mut fields: Vec<_> = fields.into_iter().flatten().collect();
                fields.extend(twice);
                fields
            })
            .prop_shuffle()
            .prop_map(|fields| {
                let body: Vec<String> = fields
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            })
    }

    /// The comparison below says little unless its lines often take the flat path and often fail.
    #[test]
    fn generated_lines_reach_both_outcomes() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = command_like_line();
        let (mut flat, mut refused, mut accepted_elsewhere) = (0, 0, 0);
        for _ in 0..1000 {
            let line = strategy.new_tree(&mut runner).unwrap().current();
            let fast = FlatCmd::parse(&line).is_some();
            match (fast, decode_agent(line.as_bytes()).is_ok()) {
                (true, _) => flat += 1,
                (false, false) => refused += 1,
                (false, true) => accepted_elsewhere += 1,
            }
        }
        eprintln!("flat {flat}, refused {refused}, general only {accepted_elsewhere}");
        assert!(flat >= 100, "only {flat} of 1000 lines took the flat path");
        assert!(refused >= 100, "only {refused} of 1000 lines were refused");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn flat_and_general_paths_agree(line in command_like_line()) {
            prop_assert_eq!(decode_agent(line.as_bytes()), general(line.as_bytes()), "{}", line);
        }
    }

    #[test]
    fn lines_are_split_across_and_within_reads() {
        let mut b = LineBuffer::new(100);
        b.extend(b"{\"a\":1}\n{\"b\"");
        assert_eq!(b.next_line().unwrap().unwrap(), b"{\"a\":1}");
        assert!(b.next_line().is_none());
        b.extend(b":2}\r\n\n  \n{\"c\":3}\n");
        assert_eq!(b.next_line().unwrap().unwrap(), b"{\"b\":2}");
        assert_eq!(b.next_line().unwrap().unwrap(), b"{\"c\":3}");
        assert!(b.next_line().is_none());
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn an_endless_line_is_reported_once_and_skipped() {
        let mut b = LineBuffer::new(10);
        b.extend(&[b'x'; 8]);
        assert!(b.next_line().is_none());
        b.extend(&[b'x'; 8]);
        let e = b.next_line().unwrap().unwrap_err();
        assert_eq!(e.code, ErrorCode::LineTooLong);
        b.extend(&[b'x'; 30]);
        assert!(b.next_line().is_none());
        b.extend(b"xx\n{}\n");
        assert_eq!(b.next_line().unwrap().unwrap(), b"{}");
        assert!(b.next_line().is_none());
    }
}
