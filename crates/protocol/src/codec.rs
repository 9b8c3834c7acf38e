//! Framing and (de)serialization: one JSON object per `\n`-terminated line.
//!
//! The size limit is enforced on the raw bytes before any parsing, so an oversized or endless line costs
//! no more memory than the limit; it is skipped up to its `\n` and reported once. A line that fails to
//! decode is classified (not JSON, no `type`, unknown `type`, bad field) so the peer gets a precise
//! error and the connection survives.

use crate::message::{
    AgentMsg, ErrorCode, TerminalMsg, Validate, AGENT_TYPES, PROTOCOL_VERSION, TERMINAL_TYPES,
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

impl Probe {
    fn read(line: &[u8]) -> Result<Probe, String> {
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(mut map)) => Ok(Probe {
                kind: map.remove("type"),
                cmd_id: map.remove("cmd_id"),
            }),
            Ok(other) => Err(format!("not a JSON object: {}", json_kind(&other))),
            Err(e) => Err(e.to_string()),
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
    match serde_json::from_slice::<T>(line) {
        Ok(msg) => {
            msg.validate().map_err(|message| {
                let mut e = ProtocolError::new(ErrorCode::BadMessage, message);
                e.cmd_id = probe_cmd_id(line);
                e
            })?;
            Ok(msg)
        }
        Err(err) => Err(classify(line, known, err)),
    }
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

fn direct<T: DeserializeOwned>(line: &[u8], wrap: fn(T) -> TerminalMsg) -> Option<TerminalMsg> {
    serde_json::from_slice::<T>(line).ok().map(wrap)
}

/// Decodes a line a terminal sent.
pub fn decode_terminal(line: &[u8]) -> Result<TerminalMsg, ProtocolError> {
    use crate::message::{Heartbeat, Reply, Tx};
    // Payload structs ignore the `type` key; a duplicate or odd line falls through to the general
    // path, which also produces the precise error.
    let fast = match leading_type(line) {
        Some(b"tx") => direct::<Tx>(line, TerminalMsg::Tx),
        Some(b"reply") => direct::<Reply>(line, TerminalMsg::Reply),
        Some(b"heartbeat") => direct::<Heartbeat>(line, TerminalMsg::Heartbeat),
        _ => None,
    };
    match fast {
        Some(msg) => {
            msg.validate().map_err(|message| {
                let mut e = ProtocolError::new(ErrorCode::BadMessage, message);
                e.cmd_id = probe_cmd_id(line);
                e
            })?;
            Ok(msg)
        }
        None => decode(line, TERMINAL_TYPES),
    }
}

/// Decodes a line an agent sent.
pub fn decode_agent(line: &[u8]) -> Result<AgentMsg, ProtocolError> {
    decode(line, AGENT_TYPES)
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
