//! A typed HTTP client for the center's `/v1` API, used by the agents.
//!
//! Errors say what the caller should do: [`ClientError::is_retryable`] is true when the center could
//! not be reached or failed on its side (connection refused, timeout, 5xx), so an agent keeps the
//! report in its outbox and tries again; a 4xx is a permanent refusal of that request.

use crate::model::*;
use futures::Stream;
use hedge_domain::Login;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The center could not be reached, timed out, or answered 5xx. Retry later.
    #[error("center unavailable: {0}")]
    Unavailable(String),
    /// The center refused the request (4xx). Retrying the same request will not help.
    #[error("center rejected the request ({status}): {message}")]
    Rejected {
        status: u16,
        /// The `error` class of the body (`invalid`, `conflict`, `forbidden`, ...).
        error: String,
        message: String,
        field: Option<String>,
    },
    /// The center answered 2xx with a body this client does not understand (version mismatch).
    #[error("unexpected answer from the center: {0}")]
    Protocol(String),
    /// The base URL or a request could not be built.
    #[error("bad client configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// Whether the same request may succeed later (keep it in the outbox).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClientError::Unavailable(_))
    }

    /// The HTTP status of a rejection.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The answer to a position report: the acknowledgement and whether it is the replay of an earlier
/// report with the same idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportOutcome {
    pub ack: ReportAck,
    pub replayed: bool,
}

/// The answer to an operator action and whether it is the replay of an earlier request with the
/// same idempotency key.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionOutcome {
    pub ack: ActionAck,
    pub replayed: bool,
}

/// A fresh idempotency key for one operator action (128 random bits, hex).
pub fn new_action_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A client of one center, cheap to clone (connections are pooled and kept alive).
#[derive(Clone)]
pub struct CenterClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for CenterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of debug output.
        f.debug_struct("CenterClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl CenterClient {
    /// `base` is the center's root URL (`http://127.0.0.1:8080`); `token` the agent's bearer token.
    pub fn new(base: impl Into<String>, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_timeout(base, token, Duration::from_secs(10))
    }

    pub fn with_timeout(
        base: impl Into<String>,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let mut base = base.into();
        while base.ends_with('/') {
            base.pop();
        }
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(ClientError::Config(format!(
                "center URL must start with http:// or https://, got {base:?}"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            // One kept-alive connection serves every request: the agents' status heartbeat (every
            // 5 s by default) keeps it in use, so a report finds it open and pays no connection
            // set-up. The center closes a connection idle for its header timeout (10 s by
            // default); a pooled connection kept that long could be picked just as the center
            // closes it, so the pool lets it go a little earlier.
            .pool_idle_timeout(Duration::from_secs(8))
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(CenterClient { http, base, token })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = self
            .auth(req)
            .send()
            .await
            .map_err(|e| ClientError::Unavailable(describe(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let code = status.as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        let parsed: Option<ApiError> = serde_json::from_slice(&body).ok();
        if status.is_server_error() {
            let message = parsed
                .map(|e| e.message)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(ClientError::Unavailable(format!("{code}: {message}")));
        }
        Err(match parsed {
            Some(e) => ClientError::Rejected {
                status: code,
                error: e.error,
                message: e.message,
                field: e.field,
            },
            None => ClientError::Rejected {
                status: code,
                error: String::new(),
                message: String::from_utf8_lossy(&body).into_owned(),
                field: None,
            },
        })
    }

    async fn json<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
        let body = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Unavailable(describe(&e)))?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self.send(self.http.get(self.url(path))).await?;
        Self::json(resp).await
    }

    async fn get_query<T: DeserializeOwned, Q: Serialize>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        let resp = self
            .send(self.http.get(self.url(path)).query(query))
            .await?;
        Self::json(resp).await
    }

    async fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let resp = self.send(self.http.post(self.url(path)).json(body)).await?;
        Self::json(resp).await
    }

    /// `PUT /v1/accounts/{login}`: registers or updates the agent's account.
    pub async fn register_account(
        &self,
        registration: &AccountRegistration,
    ) -> Result<Account, ClientError> {
        let path = format!("/v1/accounts/{}", registration.login);
        let resp = self
            .send(self.http.put(self.url(&path)).json(registration))
            .await?;
        Self::json(resp).await
    }

    /// `POST /v1/accounts/{login}/status`: heartbeat with the agent's status.
    pub async fn heartbeat(
        &self,
        login: Login,
        status: &AccountStatus,
    ) -> Result<Account, ClientError> {
        self.post(&format!("/v1/accounts/{login}/status"), status)
            .await
    }

    /// `GET /v1/accounts`.
    pub async fn accounts(&self) -> Result<Vec<Account>, ClientError> {
        self.get("/v1/accounts").await
    }

    /// `GET /v1/accounts/{login}`.
    pub async fn account(&self, login: Login) -> Result<Account, ClientError> {
        self.get(&format!("/v1/accounts/{login}")).await
    }

    /// `POST /v1/positions/events`: reports one position change. Safe to repeat with the same
    /// idempotency key (the first answer comes back, `replayed` set).
    pub async fn report_position(
        &self,
        report: &PositionReport,
    ) -> Result<ReportOutcome, ClientError> {
        let resp = self
            .send(
                self.http
                    .post(self.url("/v1/positions/events"))
                    .json(report),
            )
            .await?;
        let replayed = is_replay(&resp);
        let ack = Self::json(resp).await?;
        Ok(ReportOutcome { ack, replayed })
    }

    /// `GET /v1/positions`.
    pub async fn positions(&self, filter: &PositionFilter) -> Result<Page<Position>, ClientError> {
        self.get_query("/v1/positions", filter).await
    }

    /// `GET /v1/positions/{login}/{position_id}`: a position with its volume history.
    pub async fn position(
        &self,
        login: Login,
        position_id: hedge_domain::PositionId,
    ) -> Result<PositionDetail, ClientError> {
        self.get(&format!("/v1/positions/{login}/{position_id}"))
            .await
    }

    /// `GET /v1/plan/{hedge_login}`: the orders that cover the unhedged exposure on that account.
    pub async fn plan(&self, hedge_login: Login) -> Result<HedgePlan, ClientError> {
        self.get(&format!("/v1/plan/{hedge_login}")).await
    }

    /// `POST /v1/hedges`: records an executed plan item (idempotent by plan item id).
    pub async fn hedge_executed(&self, hedge: &HedgeExecuted) -> Result<Hedge, ClientError> {
        self.post("/v1/hedges", hedge).await
    }

    /// `POST /v1/hedges/failed`: records a failed plan item with its retcode.
    pub async fn hedge_failed(&self, failure: &HedgeFailed) -> Result<Hedge, ClientError> {
        self.post("/v1/hedges/failed", failure).await
    }

    /// `POST /v1/hedges/{id}/reduce`: the hedge's remaining volume after a (partial) close.
    pub async fn hedge_reduced(
        &self,
        hedge_id: HedgeId,
        reduce: &HedgeReduce,
    ) -> Result<Hedge, ClientError> {
        self.post(&format!("/v1/hedges/{hedge_id}/reduce"), reduce)
            .await
    }

    /// `GET /v1/hedges`.
    pub async fn hedges(&self, query: &PageQuery) -> Result<Page<Hedge>, ClientError> {
        self.get_query("/v1/hedges", query).await
    }

    /// `GET /v1/events`.
    pub async fn events(&self, query: &PageQuery) -> Result<Page<Event>, ClientError> {
        self.get_query("/v1/events", query).await
    }

    /// `POST /v1/tumbler/firings`: records a tumbler firing (idempotent by its key).
    pub async fn tumbler_fired(&self, firing: &TumblerFiring) -> Result<FiringAck, ClientError> {
        self.post("/v1/tumbler/firings", firing).await
    }

    /// `POST /v1/actions`: pause/resume, close/retry a hedge, overrides (admin token). `key` is the
    /// action's idempotency key: a fresh one per action ([`new_action_key`]), the same one when
    /// resending it after a lost answer, so the center acts once (the first answer comes back,
    /// `replayed` set).
    pub async fn action(
        &self,
        key: &str,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ClientError> {
        let resp = self
            .send(
                self.http
                    .post(self.url("/v1/actions"))
                    .header(crate::IDEMPOTENCY_KEY, key)
                    .json(action),
            )
            .await?;
        let replayed = is_replay(&resp);
        let ack = Self::json(resp).await?;
        Ok(ActionOutcome { ack, replayed })
    }

    /// `GET /v1/commands`: one page of operator commands.
    pub async fn commands(&self, query: &CommandQuery) -> Result<Page<Command>, ClientError> {
        self.get_query("/v1/commands", query).await
    }

    /// Every pending command for hedge account `login`, oldest first.
    pub async fn pending_commands(&self, login: Login) -> Result<Vec<Command>, ClientError> {
        let mut query = CommandQuery {
            login: Some(login),
            status: Some(CommandStatus::Pending),
            after: None,
            limit: Some(1000),
        };
        let mut out = Vec::new();
        loop {
            let page = self.commands(&query).await?;
            out.extend(page.items);
            match page.next_after {
                Some(next) => query.after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// `GET /v1/commands/{id}`.
    pub async fn command(&self, id: CommandId) -> Result<Command, ClientError> {
        self.get(&format!("/v1/commands/{id}")).await
    }

    /// `POST /v1/commands/{id}/result`: what the hedger did. Safe to repeat with the same result.
    pub async fn command_result(
        &self,
        id: CommandId,
        result: &CommandResult,
    ) -> Result<Command, ClientError> {
        self.post(&format!("/v1/commands/{id}/result"), result)
            .await
    }

    /// `GET /v1/pauses`.
    pub async fn pauses(&self) -> Result<Vec<Pause>, ClientError> {
        self.get("/v1/pauses").await
    }

    /// `GET /v1/allocations`.
    pub async fn allocations(&self) -> Result<Vec<Allocation>, ClientError> {
        self.get("/v1/allocations").await
    }

    /// `GET /readyz`: whether the center and its store answer.
    pub async fn ready(&self) -> Result<Health, ClientError> {
        self.get("/readyz").await
    }

    /// Subscribes to `/v1/events/stream` from after event `after` (`None`: only new events). The
    /// subscription reconnects by itself with `Last-Event-ID` when the connection drops, so every
    /// event is delivered once, in order. A refusal (bad token) ends the stream with the error.
    pub fn subscribe(&self, after: Option<EventId>) -> EventSubscription {
        self.subscribe_with(after, None)
    }

    /// [`CenterClient::subscribe`], with the plan of `hedge_login` ahead of each live event that
    /// can move it ([`EventSubscription::next_item`] yields both; a center that sends no plans
    /// yields events only).
    pub fn subscribe_with_plan(
        &self,
        after: Option<EventId>,
        hedge_login: Login,
    ) -> EventSubscription {
        self.subscribe_with(after, Some(hedge_login))
    }

    fn subscribe_with(&self, after: Option<EventId>, plan: Option<Login>) -> EventSubscription {
        let (tx, rx) = mpsc::channel(1024);
        let client = self.clone();
        let task = tokio::spawn(async move { client.stream_loop(after, plan, tx).await });
        EventSubscription { rx, task }
    }

    async fn stream_loop(
        &self,
        mut after: Option<EventId>,
        plan: Option<Login>,
        tx: mpsc::Sender<Result<StreamItem, ClientError>>,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            // The stream has no overall timeout; heartbeats keep it alive.
            let mut req = self.http.get(self.url("/v1/events/stream"));
            req = req.timeout(Duration::from_secs(24 * 3600));
            if let Some(id) = after {
                req = req.header("Last-Event-ID", id.to_string());
            } else {
                req = req.query(&[("after", "now")]);
            }
            if let Some(login) = plan {
                req = req.query(&[("plan", login.get())]);
            }
            match self.send(req).await {
                Ok(resp) => {
                    backoff = Duration::from_millis(100);
                    let mut parser = SseParser::default();
                    let mut body = resp;
                    while let Ok(Some(chunk)) = body.chunk().await {
                        for frame in parser.push(&chunk) {
                            let Some(data) = frame.data else { continue };
                            let item = if frame.event.as_deref() == Some(crate::PLAN_FRAME_EVENT) {
                                serde_json::from_str::<HedgePlan>(&data).map(StreamItem::Plan)
                            } else {
                                serde_json::from_str::<Event>(&data).map(StreamItem::Event)
                            };
                            match item {
                                Ok(item) => {
                                    if let StreamItem::Event(event) = &item {
                                        after = Some(event.id);
                                    }
                                    if tx.send(Ok(item)).await.is_err() {
                                        return;
                                    }
                                }
                                Err(e) => {
                                    let _ =
                                        tx.send(Err(ClientError::Protocol(e.to_string()))).await;
                                    return;
                                }
                            }
                        }
                    }
                }
                Err(e) if !e.is_retryable() => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "event stream unavailable, retrying");
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// Whether the center answered with a stored first answer (`Idempotent-Replay: true`).
fn is_replay(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get(crate::IDEMPOTENT_REPLAY)
        .is_some_and(|v| v.as_bytes() == b"true")
}

/// What a subscription delivers.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamItem {
    Event(Event),
    /// The subscribed hedge account's plan, sent ahead of the events that can move it; its
    /// `as_of_event_id` says which events it reflects.
    Plan(HedgePlan),
}

/// A live subscription to the center's events. Dropping it ends the background connection.
pub struct EventSubscription {
    rx: mpsc::Receiver<Result<StreamItem, ClientError>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventSubscription {
    /// The next event (plans skipped); `None` only after a permanent error was delivered.
    pub async fn next(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            match self.rx.recv().await? {
                Ok(StreamItem::Plan(_)) => continue,
                Ok(StreamItem::Event(e)) => return Some(Ok(e)),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The next event or plan; `None` only after a permanent error was delivered.
    pub async fn next_item(&mut self) -> Option<Result<StreamItem, ClientError>> {
        self.rx.recv().await
    }

    /// The next event or plan already received, if any.
    pub fn try_next_item(&mut self) -> Option<Result<StreamItem, ClientError>> {
        self.rx.try_recv().ok()
    }
}

impl Drop for EventSubscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for EventSubscription {
    type Item = Result<Event, ClientError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(StreamItem::Plan(_)))) => continue,
                Poll::Ready(Some(Ok(StreamItem::Event(e)))) => Poll::Ready(Some(Ok(e))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

/// One server-sent event frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseFrame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
}

/// Incremental `text/event-stream` parser: feed it chunks as they arrive, get complete frames.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    frame: SseFrame,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseFrame> {
        self.buf.extend_from_slice(chunk);
        let mut frames = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                let frame = std::mem::take(&mut self.frame);
                if frame.data.is_some() || frame.id.is_some() || frame.event.is_some() {
                    frames.push(frame);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "id" => self.frame.id = Some(value.to_owned()),
                "event" => self.frame.event = Some(value.to_owned()),
                "data" => match &mut self.frame.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.frame.data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
        frames
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b": hb\n\nid: 3\nevent: x\nda").is_empty());
        let frames = p.push(b"ta: {\"a\":1}\r\n\nid: 4\ndata: a\ndata: b\n\n");
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].id.as_deref(), Some("3"));
        assert_eq!(frames[0].event.as_deref(), Some("x"));
        assert_eq!(frames[0].data.as_deref(), Some("{\"a\":1}"));
        assert_eq!(frames[1].data.as_deref(), Some("a\nb"));
    }

    #[test]
    fn bad_base_url_is_a_config_error() {
        assert!(matches!(
            CenterClient::new("127.0.0.1:1", None),
            Err(ClientError::Config(_))
        ));
    }
}
