//! The load generator's HTTP/1.1 client: prepared requests written to keep-alive connections,
//! answers read by their length or chunks.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A keep-alive HTTP/1.1 connection with as little client work as possible: the request is
/// written as prepared bytes and the answer read by its `content-length` (or chunks). A full
/// client library on the same two cores would take CPU time from the server being measured, as
/// wrk-style generators avoid.
pub struct Sender {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

pub async fn connect(addr: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = stream.set_nodelay(true);
    Sender {
        stream,
        buf: Vec::with_capacity(8192),
    }
}

/// Why a request got no usable answer. Each is counted as an error and the connection opened
/// again: at this load every one of them is worth trying again.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("a malformed answer: {0}")]
    Malformed(String),
    #[error("{status}: {body}")]
    Status { status: u16, body: String },
}

/// Sends one request and reads its answer: the body of a 2xx, else an error naming the status.
pub async fn send(sender: &mut Sender, req: Vec<u8>) -> Result<Vec<u8>, SendError> {
    sender.stream.write_all(&req).await?;
    let head_end = loop {
        if let Some(i) = find(&sender.buf, b"\r\n\r\n") {
            break i + 4;
        }
        read_more(sender).await?;
    };
    let head = std::str::from_utf8(&sender.buf[..head_end])
        .map_err(|e| SendError::Malformed(e.to_string()))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| SendError::Malformed(format!("no status in {head:?}")))?;
    let header = |name: &str| {
        head.split("\r\n").find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let body = if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| SendError::Malformed(format!("content-length {len}")))?;
        while sender.buf.len() < head_end + len {
            read_more(sender).await?;
        }
        let body = sender.buf[head_end..head_end + len].to_vec();
        sender.buf.drain(..head_end + len);
        body
    } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        sender.buf.drain(..head_end);
        read_chunked(sender).await?
    } else {
        return Err(SendError::Malformed(format!(
            "an answer without a length: {head:?}"
        )));
    };
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(SendError::Status {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

async fn read_chunked(sender: &mut Sender) -> Result<Vec<u8>, SendError> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(&sender.buf, b"\r\n") {
                break i;
            }
            read_more(sender).await?;
        };
        let size = std::str::from_utf8(&sender.buf[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .ok_or_else(|| SendError::Malformed("a bad chunk size".into()))?;
        // The chunk, then its CRLF (after the last, empty chunk: the final CRLF).
        let need = line_end + 2 + size + 2;
        while sender.buf.len() < need {
            read_more(sender).await?;
        }
        body.extend_from_slice(&sender.buf[line_end + 2..line_end + 2 + size]);
        sender.buf.drain(..need);
        if size == 0 {
            return Ok(body);
        }
    }
}

async fn read_more(sender: &mut Sender) -> Result<(), SendError> {
    let mut chunk = [0u8; 8192];
    let n = sender.stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(SendError::Closed);
    }
    sender.buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
