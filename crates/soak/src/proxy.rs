//! The agents' way to the center during a soak: a loopback HTTP proxy that misbehaves as a real
//! center can, at seeded rates.
//!
//! - a write refused before it reaches the store (`503`, as a full disk answers);
//! - a slow answer (a delay before the request goes on);
//! - an answer lost after the center committed (the agent sees `503` and must resend, and the
//!   center must recognise the resend).
//!
//! Reads and the event stream pass through untouched apart from delays; faults stop when
//! [`Proxy::calm`] is called, so the system can settle.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// Fault rates of the proxy, each a probability per request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProxyFaults {
    /// Writes refused with `503` without reaching the center.
    pub refuse_rate: f64,
    /// Requests delayed by 100–1,500 ms.
    pub slow_rate: f64,
    /// Writes whose answer is replaced by `503` after the center answered.
    pub lost_answer_rate: f64,
}

impl Default for ProxyFaults {
    fn default() -> Self {
        ProxyFaults {
            refuse_rate: 0.03,
            slow_rate: 0.02,
            lost_answer_rate: 0.02,
        }
    }
}

/// What the proxy did, for the soak's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProxyCounts {
    pub requests: u64,
    pub refused: u64,
    pub slowed: u64,
    pub answers_lost: u64,
    pub center_unreachable: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    refused: AtomicU64,
    slowed: AtomicU64,
    answers_lost: AtomicU64,
    center_unreachable: AtomicU64,
}

struct Inner {
    upstream: SocketAddr,
    faults: ProxyFaults,
    rng: Mutex<ChaCha8Rng>,
    calm: AtomicBool,
    counters: Counters,
    client: Client<HttpConnector, BoxBody<Bytes, hyper::Error>>,
}

/// A running proxy.
pub struct Proxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(
        upstream: SocketAddr,
        faults: ProxyFaults,
        seed: u64,
    ) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            upstream,
            faults,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_9a11)),
            calm: AtomicBool::new(false),
            counters: Counters::default(),
            client: Client::builder(TokioExecutor::new()).build(nodelay_connector()),
        });
        let served = inner.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let inner = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let inner = inner.clone();
                        async move { Ok::<_, hyper::Error>(handle(inner, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Proxy { addr, inner, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// No more faults from now on.
    pub fn calm(&self) {
        self.inner.calm.store(true, Ordering::SeqCst);
    }

    pub fn counts(&self) -> ProxyCounts {
        let c = &self.inner.counters;
        ProxyCounts {
            requests: c.requests.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            slowed: c.slowed.load(Ordering::Relaxed),
            answers_lost: c.answers_lost.load(Ordering::Relaxed),
            center_unreachable: c.center_unreachable.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fault drawn for one request.
enum Fault {
    None,
    Refuse,
    Slow(Duration),
    LoseAnswer,
}

/// The connector to the center: no Nagle delay on the forwarded requests, as the agents' own
/// connections have none.
fn nodelay_connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector
}

fn draw(inner: &Inner, write: bool) -> Fault {
    if inner.calm.load(Ordering::SeqCst) {
        return Fault::None;
    }
    let mut rng = inner.rng.lock().unwrap_or_else(|e| e.into_inner());
    let f = &inner.faults;
    if write && rng.gen_bool(f.refuse_rate.clamp(0.0, 1.0)) {
        Fault::Refuse
    } else if write && rng.gen_bool(f.lost_answer_rate.clamp(0.0, 1.0)) {
        Fault::LoseAnswer
    } else if rng.gen_bool(f.slow_rate.clamp(0.0, 1.0)) {
        Fault::Slow(Duration::from_millis(rng.gen_range(100..1_500)))
    } else {
        Fault::None
    }
}

fn unavailable(message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": "unavailable", "message": message }).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(inner: Arc<Inner>, req: Request<Incoming>) -> Response<ProxyBody> {
    let c = &inner.counters;
    c.requests.fetch_add(1, Ordering::Relaxed);
    let write = req.method() != Method::GET && req.method() != Method::HEAD;
    let fault = draw(&inner, write);
    match fault {
        Fault::Refuse => {
            c.refused.fetch_add(1, Ordering::Relaxed);
            return unavailable("write refused: the store is full");
        }
        Fault::Slow(delay) => {
            c.slowed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
        }
        Fault::None | Fault::LoseAnswer => {}
    }
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    parts.uri = match format!("http://{}{path}", inner.upstream).parse() {
        Ok(u) => u,
        Err(_) => return unavailable("bad request path"),
    };
    let upstream = Request::from_parts(parts, body.boxed());
    match inner.client.request(upstream).await {
        Ok(resp) => {
            if matches!(fault, Fault::LoseAnswer) {
                // The center has committed; drain its answer so the connection stays usable,
                // then tell the agent nothing came back.
                let _ = resp.into_body().collect().await;
                c.answers_lost.fetch_add(1, Ordering::Relaxed);
                return unavailable("answer lost on the way back");
            }
            resp.map(|b| b.boxed())
        }
        Err(_) => {
            c.center_unreachable.fetch_add(1, Ordering::Relaxed);
            unavailable("center unreachable")
        }
    }
}
