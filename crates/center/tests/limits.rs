//! Timeouts and the connection cap, with raw sockets and short limits.

mod common;

use common::*;
use hedge_center::limits::ConnLimits;
use hedge_center::{CenterConfig, CenterHandle, CenterServer};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limits: ConnLimits) -> (CenterHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = CenterConfig::sqlite(dir.path().join("center.db"), tokens());
    config.sse_heartbeat = Duration::from_millis(200);
    config.limits = limits;
    (CenterServer::start(config).await.unwrap(), dir)
}

fn short() -> ConnLimits {
    ConnLimits {
        header_read_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(1500),
        ..ConnLimits::default()
    }
}

/// Reads until the peer closes; `None` if it is still open after `within`.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn a_silent_socket_is_closed_after_the_header_timeout() {
    let (center, _dir) = start(short()).await;
    let mut s = TcpStream::connect(center.addr).await.unwrap();
    let start = Instant::now();
    assert!(read_to_close(&mut s, Duration::from_secs(5))
        .await
        .is_some());
    assert!(start.elapsed() >= Duration::from_millis(400));
    center.shutdown().await;
}

#[tokio::test]
async fn partial_headers_are_closed_after_the_header_timeout() {
    let (center, _dir) = start(short()).await;
    let mut s = TcpStream::connect(center.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut s, Duration::from_secs(5))
        .await
        .is_some());
    center.shutdown().await;
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_a_timeout_and_closes() {
    let (center, _dir) = start(short()).await;
    let mut s = TcpStream::connect(center.addr).await.unwrap();
    let head = format!(
        "POST /v1/positions/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {CLIENT_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"login\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(5))
        .await
        .expect("the connection stays open");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    center.shutdown().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let mut limits = short();
    // The header timeout is the longer one here: the idle timeout is what closes.
    limits.header_read_timeout = Duration::from_secs(30);
    limits.idle_timeout = Duration::from_millis(500);
    let (center, _dir) = start(limits).await;
    let mut s = TcpStream::connect(center.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(5))
        .await
        .expect("closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    center.shutdown().await;
}

#[tokio::test]
async fn an_event_stream_outlives_the_idle_timeout_on_its_heartbeat() {
    let (center, _dir) = start(short()).await;
    let mut s = TcpStream::connect(center.addr).await.unwrap();
    let head = format!(
        "GET /v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {VIEWER_TOKEN}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // Three idle timeouts long, reading all the while.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(4500);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(1000), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!("the stream was closed"),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no heartbeat for a second"),
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains(": heartbeat"), "{text}");
    center.shutdown().await;
}

#[tokio::test]
async fn silent_sockets_past_the_cap_do_not_starve_health_checks() {
    let mut limits = short();
    limits.max_connections = Some(4);
    let (center, _dir) = start(limits).await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(center.addr).await.unwrap());
    }
    let start = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        reqwest::get(format!("{}/healthz", center.url())),
    )
    .await
    .expect("healthz answered")
    .unwrap();
    assert_eq!(resp.status(), 200);
    // Five waves of four silent sockets, each closed by the header timeout.
    assert!(start.elapsed() < Duration::from_secs(8));
    drop(silent);
    center.shutdown().await;
}

async fn status_of(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_foreign_host_name_is_refused() {
    let mut limits = short();
    limits.allowed_hosts = hedge_center::hosts::AllowedHosts::new(["center.example".to_owned()]);
    let (center, _dir) = start(limits).await;
    let ask = |target: &str, host: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    let absolute = ask("http://other.example/healthz", "other.example");
    assert!(status_of(center.addr, &absolute).await.contains(" 421 "));
    let rebound = ask("/healthz", "attacker.example:8080");
    assert!(status_of(center.addr, &rebound).await.contains(" 421 "));
    for host in ["127.0.0.1", "localhost:8080", "center.example"] {
        let ok = ask("/healthz", host);
        assert!(
            status_of(center.addr, &ok).await.contains(" 200 "),
            "{host}"
        );
    }
    center.shutdown().await;
}
