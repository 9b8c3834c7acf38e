//! The center's own accept loop: timeouts and a connection cap, so that silent or slow clients
//! cannot hold sockets (and file descriptors) forever and starve `/healthz` and the agents.
//!
//! * header-read timeout: hyper's; it runs from the moment a connection waits for a request head
//!   (a new connection, or a kept-alive one between requests) until the head is complete, so
//!   silent sockets and partial headers are closed;
//! * body timeout: the whole request body must arrive within it; a body that stalls (a
//!   `Content-Length` larger than what is sent) is answered 408 and the connection closed;
//! * idle timeout: no byte read or written for this long closes the connection. An event stream
//!   writes a heartbeat comment more often than that, so a reading subscriber stays connected
//!   however long it listens, while one that stopped reading is closed;
//! * connection cap: at most this many connections at once, below the open-file limit, so the
//!   store and the listener always keep descriptors; past it new connections wait in the
//!   kernel's backlog until one closes, and the saturation is logged once per episode.

use crate::hosts::AllowedHosts;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// Timeouts and the connection cap of the center's listeners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Time to receive a complete request head, counted from when the connection waits for one.
    pub header_read_timeout: Duration,
    /// Time to receive a whole request body, counted from its head.
    pub body_timeout: Duration,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout: Duration,
    /// At most this many connections at once over all listeners; `None` derives it from the
    /// open-file limit ([`connection_cap`]).
    pub max_connections: Option<usize>,
    /// Host names requests may use besides IP addresses and `localhost`.
    pub allowed_hosts: AllowedHosts,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: None,
            allowed_hosts: AllowedHosts::default(),
        }
    }
}

/// Descriptors kept back from connections: the store (SQLite files and read pool, or PostgreSQL
/// connections), the listeners, the log, and headroom for the runtime.
const FD_MARGIN: u64 = 64;

/// Never more connections than this, however high the open-file limit.
const MAX_CAP: u64 = 16_384;

/// The soft open-file limit of this process, when the platform tells.
#[cfg(unix)]
pub fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives for the whole call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
    (rc == 0).then_some(limit.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn open_file_limit() -> Option<u64> {
    None
}

/// The connection cap for an open-file limit: the limit less a margin for everything else (an
/// eighth of it plus [`FD_MARGIN`]), at least 8, at most [`MAX_CAP`].
pub fn connection_cap(open_files: Option<u64>) -> usize {
    let cap = match open_files {
        Some(n) => n.saturating_sub(FD_MARGIN + n / 8).clamp(8, MAX_CAP),
        None => 1024,
    };
    usize::try_from(cap).unwrap_or(1024)
}

/// The connection slots every listener of one center shares.
#[derive(Clone, Debug)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    total: u32,
}

impl Slots {
    pub fn new(limits: &ConnLimits) -> Self {
        let open_files = open_file_limit();
        let derived = connection_cap(open_files);
        let total = match limits.max_connections {
            Some(n) if n > derived => {
                tracing::warn!(
                    requested = n,
                    allowed = derived,
                    open_files = ?open_files,
                    "--max-connections is above what the open-file limit allows; using the lower value"
                );
                derived
            }
            Some(n) => n.max(1),
            None => derived,
        };
        let total = u32::try_from(total).unwrap_or(u32::MAX >> 3);
        tracing::info!(
            max_connections = total,
            open_files = ?open_files,
            "connection cap set"
        );
        Slots {
            semaphore: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    pub fn total(&self) -> u32 {
        self.total
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` turns true, then lets open
/// connections finish (closing idle ones at once) for a few seconds.
pub fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    slots: Slots,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        accept_loop(&listener, &app, &limits, &slots, shutdown.clone()).await;
        drop(listener);
        // Every connection gives its slot back when it ends, so this waits for all of them.
        let _ = slots.semaphore.acquire_many(slots.total).await;
    })
}

async fn accept_loop(
    listener: &TcpListener,
    app: &Router,
    limits: &ConnLimits,
    slots: &Slots,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut saturated = false;
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let permit = match slots.semaphore.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !saturated {
                    tracing::warn!(
                        max_connections = slots.total,
                        "connection limit reached: new connections wait until one closes \
                         (raise the open-file limit, or --max-connections)"
                    );
                }
                tokio::select! {
                    p = slots.semaphore.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    _ = stopped(&mut shutdown) => return,
                }
            }
        };
        saturated = slots.semaphore.available_permits() == 0;
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: the descriptor is freed by some other connection's end.
                    if last_accept_error.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                        tracing::error!(error = %e, "cannot accept a connection");
                        last_accept_error = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            app.clone(),
            limits.clone(),
            permit,
            shutdown.clone(),
        ));
    }
}

/// Resolves once shutdown is asked (the borrow `wait_for` returns must not live across awaits).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// How long open connections may still run after shutdown was asked.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: ConnLimits,
    _permit: OwnedSemaphorePermit,
    mut shutdown: watch::Receiver<bool>,
) {
    let io = ActivityIo::new(stream);
    let activity = io.activity.clone();
    let body_timeout = limits.body_timeout;
    let hosts = Arc::new(limits.allowed_hosts.clone());
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        handle(app.clone(), hosts.clone(), body_timeout, req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing_since: Option<Instant> = None;
    loop {
        let idle_deadline = activity.last() + limits.idle_timeout;
        let deadline = match closing_since {
            Some(t) => idle_deadline.min(t + SHUTDOWN_GRACE),
            None => idle_deadline,
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stopped(&mut shutdown), if closing_since.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing_since = Some(Instant::now());
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                if closing_since.is_some_and(|t| t.elapsed() >= SHUTDOWN_GRACE) {
                    return;
                }
                if activity.last().elapsed() >= limits.idle_timeout {
                    tracing::debug!("closing a connection idle for {:?}", limits.idle_timeout);
                    return;
                }
            }
        }
    }
}

/// One request: its body under the body timeout; a timed-out body is answered 408 and closes
/// the connection, whatever the handler made of the truncated body.
async fn handle(
    app: Router,
    hosts: Arc<AllowedHosts>,
    body_timeout: Duration,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if let Some(host) = hosts.refused(&req) {
        return Ok(error_response(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected",
            format!("this center does not answer to the host name {host:?} (see --allowed-host)"),
            false,
        ));
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let req = req.map(|b| {
        Body::new(TimedBody {
            inner: Body::new(b),
            deadline: Box::pin(tokio::time::sleep(body_timeout)),
            timed_out: timed_out.clone(),
        })
    });
    let resp = app.oneshot(req).await.unwrap_or_else(|e| match e {});
    if timed_out.load(Ordering::Relaxed) {
        return Ok(error_response(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request body did not arrive within {} s",
                body_timeout.as_secs_f64()
            ),
            true,
        ));
    }
    Ok(resp)
}

/// An answer in the API's error shape, from outside the router.
fn error_response(status: StatusCode, error: &str, message: String, close: bool) -> Response<Body> {
    let text = serde_json::json!({ "error": error, "message": message }).to_string();
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimeout;

/// A request body that fails once its deadline passes before its end.
struct TimedBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if std::future::Future::poll(self.deadline.as_mut(), cx).is_ready() {
            self.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// When a connection last moved a byte, read or written.
#[derive(Clone)]
struct Activity {
    start: Instant,
    /// Milliseconds since `start`.
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A TCP stream that records its activity for the idle timeout.
struct ActivityIo {
    inner: TcpStream,
    activity: Activity,
}

impl ActivityIo {
    fn new(inner: TcpStream) -> Self {
        ActivityIo {
            inner,
            activity: Activity {
                start: Instant::now(),
                last_ms: Arc::new(AtomicU64::new(0)),
            },
        }
    }
}

impl AsyncRead for ActivityIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_open_file_limit() {
        assert_eq!(connection_cap(Some(256)), 160);
        assert_eq!(connection_cap(Some(1024)), 832);
        assert_eq!(connection_cap(Some(10)), 8);
        assert_eq!(connection_cap(Some(u64::MAX)), MAX_CAP as usize);
        assert_eq!(connection_cap(None), 1024);
    }
}
