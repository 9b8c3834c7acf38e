//! The HTTP edge: axum handlers for `/v1`, health, metrics and the OpenAPI document. Handlers
//! authenticate, check permissions, decode, call the store or the plan, and encode; no rules here.

use crate::auth::{ReadScope, Role, Tokens};
use crate::events::Hub;
use crate::metrics::Metrics;
use crate::plan_feed;
use crate::positions::Refusal;
use crate::store::{Store, StoreError, WriteError};
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use hedge_center_api::model::*;
use hedge_center_api::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAY};
use hedge_domain::SharedClock;
use hedge_domain::{Login, PositionId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Largest accepted request body of `/v1`.
pub const MAX_BODY: usize = 1 << 20;

/// Largest accepted status heartbeat: it carries a mark per open position (10,000 marks are about
/// 1.4 MB of JSON).
pub const MAX_STATUS_BODY: usize = 8 << 20;

/// Shared by every handler.
pub struct AppState {
    pub store: Store,
    pub hub: Arc<Hub>,
    pub tokens: Tokens,
    pub metrics: Arc<Metrics>,
    pub legacy: bool,
    /// `/metrics` and `/openapi.json` without a token.
    pub public_metrics: bool,
    pub clock: SharedClock,
}

/// An error answer: status plus [`ApiError`] body.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub body: ApiError,
}

impl Failure {
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        Failure {
            status,
            body: ApiError {
                error: error.into(),
                message: message.into(),
                field: None,
            },
        }
    }

    pub fn invalid(field: Option<&str>, message: impl Into<String>) -> Self {
        Failure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ApiError {
                error: "invalid".into(),
                message: message.into(),
                field: field.map(str::to_owned),
            },
        }
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Invalid { field, message } => Failure::invalid(field.as_deref(), message),
            Refusal::Conflict(m) => Failure::new(StatusCode::CONFLICT, "conflict", m),
            Refusal::NotFound(m) => Failure::not_found(m),
        }
    }
}

impl From<WriteError> for Failure {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Refused(r) => r.into(),
            WriteError::Store(StoreError::Corrupt(m)) => {
                tracing::error!(error = %m, "stored data is inconsistent");
                Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "stored data is inconsistent",
                )
            }
            // Worth sending again: the database was unreachable or busy, nothing was stored.
            WriteError::Store(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "store unavailable");
                Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                )
            }
            // The database refused the statement itself: the same request fails the same way.
            WriteError::Store(e) => {
                tracing::error!(error = %e, "the database refused a statement");
                Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the database refused the request's statement",
                )
            }
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        WriteError::Store(e).into()
    }
}

type ApiResult<T> = Result<T, Failure>;

/// JSON answer with status.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json_body(status, body),
        Err(e) => Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            .into_response(),
    }
}

/// An answer whose body is JSON already (rendered before, or kept by the store).
pub(crate) fn json_body(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut resp = (status, body.into()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The authenticated caller.
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// What this token may read. A hedge token's reach follows the registry, read now.
    async fn scope(&self, s: &AppState) -> ApiResult<ReadScope> {
        Ok(match self.role {
            Role::Hedge(_) => ReadScope::of(
                self.role,
                &s.store.accounts().await?,
                &s.store.allocations().await?,
            ),
            role => ReadScope::of(role, &[], &[]),
        })
    }

    fn may_not_read(&self, what: impl std::fmt::Display) -> Failure {
        Failure::forbidden(format!("token {} may not read {what}", self.name))
    }

    /// Refuses (403) unless this token may act for hedge account `login`; `what` names the act.
    fn require_hedge(&self, login: Login, what: &str) -> Result<(), Failure> {
        if self.role.may_hedge_for(login) {
            Ok(())
        } else {
            Err(Failure::forbidden(format!(
                "token {} may not {what} of account {login}",
                self.name
            )))
        }
    }
}

/// An answer the store keeps as JSON text for replays, sent as it was stored.
fn stored_answer(status: StatusCode, json_text: String, replayed: bool) -> Response {
    let mut resp = json_body(status, json_text);
    mark_replay(&mut resp, replayed);
    resp
}

/// Tells an idempotent write's caller whether the answer is the stored one of an earlier request.
fn mark_replay(resp: &mut Response, replayed: bool) {
    resp.headers_mut().insert(
        IDEMPOTENT_REPLAY,
        HeaderValue::from_static(if replayed { "true" } else { "false" }),
    );
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = |m: &str| Failure::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing bearer token"))?;
        let presented = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .ok_or_else(|| unauthorized("authorization must be a bearer token"))?;
        let entry = state
            .tokens
            .authenticate(presented)
            .ok_or_else(|| unauthorized("unknown token"))?;
        Ok(Caller {
            name: entry.name.clone(),
            role: entry.role,
        })
    }
}

/// Decodes a JSON body; every problem is a 422 naming the field when serde can tell.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    if body.is_empty() {
        return Err(Failure::invalid(
            Some("body"),
            "request body must be a JSON object",
        ));
    }
    crate::positions::check_exact_numbers(body)?;
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        let field = text
            .split_once("field `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(f, _)| f.to_owned());
        Failure::invalid(
            field.as_deref().or(Some("body")),
            format!("invalid request body: {text}"),
        )
    })
}

/// How much of an oversized body is still read (and dropped) before the refusal is answered.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads a body of at most `limit` bytes; `None` if it is longer (or cannot be read). A longer body
/// is read on to its end, up to [`DRAIN_LIMIT`], and dropped: answering while the client is still
/// sending would close the connection with unread data, and the client would then see a reset
/// instead of the refusal.
pub async fn read_limited(body: Body, limit: usize) -> Option<Bytes> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.ok()?;
        seen = seen.saturating_add(chunk.len());
        if seen > DRAIN_LIMIT.max(limit) {
            return None;
        }
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        }
    }
    (seen <= limit).then(|| Bytes::from(kept))
}

async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    read_limited(body, limit).await.ok_or_else(|| {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body exceeds {limit} bytes"),
        )
    })
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(t)| t)
        .map_err(|e| Failure::invalid(Some("query"), e.body_text()))
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> ApiResult<T> {
    p.map(|Path(t)| t)
        .map_err(|e| Failure::invalid(Some("path"), e.body_text()))
}

/// Records latency per route.
pub async fn observe(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    // Both are cheap clones (a shared string, a method constant), not fresh allocations.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let resp = next.run(req).await;
    metrics.observe(
        method.as_str(),
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

pub fn router(state: Arc<AppState>) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .route("/v1/accounts", get(list_accounts))
        .route(
            "/v1/accounts/{login}",
            put(register_account).get(get_account),
        )
        .route("/v1/accounts/{login}/status", post(heartbeat))
        .route("/v1/tumbler/firings", post(tumbler_fired))
        .route("/v1/positions", get(list_positions))
        .route("/v1/positions/events", post(report_position))
        .route("/v1/positions/{login}/{position_id}", get(get_position))
        .route("/v1/plan/{hedge_login}", get(get_plan))
        .route("/v1/hedges", post(hedge_executed).get(list_hedges))
        .route("/v1/hedges/failed", post(hedge_failed))
        .route("/v1/hedges/{id}", get(get_hedge))
        .route("/v1/hedges/{id}/reduce", post(hedge_reduce))
        .route("/v1/events", get(list_events))
        .route("/v1/events/stream", get(event_stream))
        .route("/v1/actions", post(post_action))
        .route("/v1/pauses", get(list_pauses))
        .route("/v1/allocations", get(list_allocations))
        .route("/v1/commands", get(list_commands))
        .route("/v1/commands/{id}", get(get_command))
        .route("/v1/commands/{id}/result", post(command_result))
        .merge(hedge_dashboard::router())
        .fallback(|| async { Failure::not_found("no such endpoint") })
        .route_layer(axum::middleware::from_fn_with_state(metrics, observe))
        .with_state(state)
}

async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    json(
        StatusCode::OK,
        &Health {
            status: "ok".into(),
            store: s.store.kind().into(),
            legacy: s.legacy,
        },
    )
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    match s.store.ping().await {
        Ok(()) => json(
            StatusCode::OK,
            &Health {
                status: "ready".into(),
                store: s.store.kind().into(),
                legacy: s.legacy,
            },
        ),
        Err(e) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &Health {
                status: format!("store unavailable: {e}"),
                store: s.store.kind().into(),
                legacy: s.legacy,
            },
        ),
    }
}

/// `/metrics` and `/openapi.json` name every route and count the traffic: any valid token, unless
/// the center was started with `--public-metrics`.
fn require_token(s: &AppState, caller: Result<Caller, Failure>) -> ApiResult<()> {
    match caller {
        Err(e) if !s.public_metrics => Err(e),
        _ => Ok(()),
    }
}

async fn metrics_text(
    State(s): State<Arc<AppState>>,
    caller: Result<Caller, Failure>,
) -> ApiResult<Response> {
    require_token(&s, caller)?;
    let mut resp = s.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

async fn openapi(
    State(s): State<Arc<AppState>>,
    caller: Result<Caller, Failure>,
) -> ApiResult<Response> {
    require_token(&s, caller)?;
    let doc = crate::openapi::document().map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the OpenAPI document does not serialize: {e}"),
        )
    })?;
    Ok(json(StatusCode::OK, &doc))
}

async fn list_accounts(State(s): State<Arc<AppState>>, c: Caller) -> ApiResult<Response> {
    let mut accounts = s.store.accounts().await?;
    let allocations = match c.role {
        Role::Hedge(_) => s.store.allocations().await?,
        _ => Vec::new(),
    };
    let scope = ReadScope::of(c.role, &accounts, &allocations);
    accounts.retain(|a| scope.sees_account(a.registration.login));
    Ok(json(StatusCode::OK, &accounts))
}

async fn get_account(
    State(s): State<Arc<AppState>>,
    c: Caller,
    login: Result<Path<u64>, PathRejection>,
) -> ApiResult<Response> {
    let login = Login(path(login)?);
    if !c.scope(&s).await?.sees_account(login) {
        return Err(c.may_not_read(format_args!("account {login}")));
    }
    match s.store.account(login).await? {
        Some(a) => Ok(json(StatusCode::OK, &a)),
        None => Err(Failure::not_found(format!(
            "account {login} is not registered"
        ))),
    }
}

async fn register_account(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    login: Result<Path<u64>, PathRejection>,
    body: Body,
) -> ApiResult<Response> {
    let login = Login(path(login)?);
    let reg: AccountRegistration = decode(&read_body(body, MAX_BODY).await?)?;
    if reg.login != login {
        return Err(Failure::invalid(
            Some("login"),
            "login in the body differs from the path",
        ));
    }
    if !caller.role.may_act_for(login) {
        return Err(Failure::forbidden(format!(
            "token {} may not register account {login}",
            caller.name
        )));
    }
    let role_matches = match caller.role {
        Role::Client(_) => reg.role == AccountRole::Client,
        Role::Hedge(_) => reg.role == AccountRole::Hedge,
        Role::Tumbler(_) => reg.role == AccountRole::Tumbler,
        _ => true,
    };
    if !role_matches {
        return Err(Failure::forbidden(format!(
            "token {} may not register its account as {}",
            caller.name,
            reg.role.as_str()
        )));
    }
    let account = s
        .store
        .register_account(caller.name, reg, s.clock.now_ms())
        .await?;
    Ok(json(StatusCode::OK, &account))
}

async fn tumbler_fired(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    body: Body,
) -> ApiResult<Response> {
    let firing: TumblerFiring = decode(&read_body(body, MAX_BODY).await?)?;
    if !caller.role.may_fire_for(firing.login) {
        return Err(Failure::forbidden(format!(
            "token {} may not record tumbler firings of account {}",
            caller.name, firing.login
        )));
    }
    let (ack, replayed) = s
        .store
        .tumbler_fired(caller.name, firing, s.clock.now_ms())
        .await?;
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(stored_answer(status, ack, replayed))
}

async fn heartbeat(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    login: Result<Path<u64>, PathRejection>,
    body: Body,
) -> ApiResult<Response> {
    let login = Login(path(login)?);
    let status: AccountStatus = decode(&read_body(body, MAX_STATUS_BODY).await?)?;
    if !caller.role.may_act_for(login) {
        return Err(Failure::forbidden(format!(
            "token {} may not report status of account {login}",
            caller.name
        )));
    }
    Ok(json(
        StatusCode::OK,
        &s.store
            .heartbeat(caller.name, login, status, s.clock.now_ms())
            .await?,
    ))
}

async fn report_position(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    body: Body,
) -> ApiResult<Response> {
    let report: PositionReport = decode(&read_body(body, MAX_BODY).await?)?;
    if !caller.role.may_report_for(report.login) {
        return Err(Failure::forbidden(format!(
            "token {} may not report positions of account {}",
            caller.name, report.login
        )));
    }
    let (ack, replayed) = s
        .store
        .report(caller.name, report, s.clock.now_ms())
        .await?;
    if replayed {
        s.metrics
            .reports_replayed_total
            .fetch_add(1, Ordering::Relaxed);
    } else {
        s.metrics.reports_total.fetch_add(1, Ordering::Relaxed);
    }
    Ok(stored_answer(StatusCode::OK, ack, replayed))
}

/// A page of `T` with what `scope` may not see left out. The cursor is the unfiltered page's, so
/// paging on still reaches every visible item (a page may hold fewer than its limit).
fn visible<T>(mut page: Page<T>, sees: impl Fn(&T) -> bool) -> Page<T> {
    page.items.retain(|item| sees(item));
    page
}

async fn list_positions(
    State(s): State<Arc<AppState>>,
    c: Caller,
    q: Result<Query<PositionFilter>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let scope = c.scope(&s).await?;
    if let Some(login) = q.login.filter(|l| !scope.sees_account(*l)) {
        return Err(c.may_not_read(format_args!("the positions of account {login}")));
    }
    let page = s.store.positions(q).await?;
    Ok(json(
        StatusCode::OK,
        &visible(page, |p| scope.sees_account(p.login)),
    ))
}

async fn get_position(
    State(s): State<Arc<AppState>>,
    c: Caller,
    p: Result<Path<(u64, u64)>, PathRejection>,
) -> ApiResult<Response> {
    let (login, id) = path(p)?;
    if !c.scope(&s).await?.sees_account(Login(login)) {
        return Err(c.may_not_read(format_args!("the positions of account {login}")));
    }
    match s.store.position(Login(login), PositionId(id)).await? {
        Some(d) => Ok(json(StatusCode::OK, &d)),
        None => Err(Failure::not_found(format!(
            "position {id} of account {login} is unknown"
        ))),
    }
}

async fn get_plan(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    login: Result<Path<u64>, PathRejection>,
) -> ApiResult<Response> {
    let login = Login(path(login)?);
    caller.require_hedge(login, "read the plan")?;
    let metrics = &s.metrics;
    let body = s
        .store
        .plan_answer(login, |inputs| plan_feed::render(inputs, login, metrics))
        .await??;
    Ok(json_body(StatusCode::OK, body))
}

async fn hedge_executed(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    body: Body,
) -> ApiResult<Response> {
    let h: HedgeExecuted = decode(&read_body(body, MAX_BODY).await?)?;
    caller.require_hedge(h.hedge_login, "record hedges")?;
    let (hedge, replayed) = s
        .store
        .hedge_executed(caller.name, h, s.clock.now_ms())
        .await?;
    let mut resp = json(
        if replayed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        &hedge,
    );
    mark_replay(&mut resp, replayed);
    Ok(resp)
}

async fn hedge_failed(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    body: Body,
) -> ApiResult<Response> {
    let f: HedgeFailed = decode(&read_body(body, MAX_BODY).await?)?;
    caller.require_hedge(f.hedge_login, "record hedges")?;
    Ok(json(
        StatusCode::CREATED,
        &s.store
            .hedge_failed(caller.name, f, s.clock.now_ms())
            .await?,
    ))
}

async fn get_hedge(
    State(s): State<Arc<AppState>>,
    c: Caller,
    id: Result<Path<HedgeId>, PathRejection>,
) -> ApiResult<Response> {
    let id = path(id)?;
    match s.store.hedge(id).await? {
        Some(h) if c.scope(&s).await?.sees_hedges_of(h.hedge_login) => Ok(json(StatusCode::OK, &h)),
        Some(h) => Err(c.may_not_read(format_args!("the hedges of account {}", h.hedge_login))),
        None => Err(Failure::not_found(format!("hedge {id} does not exist"))),
    }
}

async fn hedge_reduce(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    id: Result<Path<HedgeId>, PathRejection>,
    body: Body,
) -> ApiResult<Response> {
    let id = path(id)?;
    let r: HedgeReduce = decode(&read_body(body, MAX_BODY).await?)?;
    let Some(existing) = s.store.hedge(id).await? else {
        return Err(Failure::not_found(format!("hedge {id} does not exist")));
    };
    caller.require_hedge(existing.hedge_login, "change hedges")?;
    Ok(json(
        StatusCode::OK,
        &s.store
            .hedge_reduce(caller.name, id, r, s.clock.now_ms())
            .await?,
    ))
}

async fn list_hedges(
    State(s): State<Arc<AppState>>,
    c: Caller,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let scope = c.scope(&s).await?;
    if let ReadScope::Account(_) = scope {
        return Err(c.may_not_read("hedges"));
    }
    if let Some(login) = q.login.filter(|l| !scope.sees_hedges_of(*l)) {
        return Err(c.may_not_read(format_args!("the hedges of account {login}")));
    }
    let page = s.store.hedges(q).await?;
    Ok(json(
        StatusCode::OK,
        &visible(page, |h| scope.sees_hedges_of(h.hedge_login)),
    ))
}

async fn list_events(
    State(s): State<Arc<AppState>>,
    c: Caller,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let scope = c.scope(&s).await?;
    if let Some(login) = q.login.filter(|l| !scope.sees_account(*l)) {
        return Err(c.may_not_read(format_args!("the events of account {login}")));
    }
    let page = s.store.events(q).await?;
    Ok(json(
        StatusCode::OK,
        &visible(page, |e| scope.sees_event(e)),
    ))
}

#[derive(serde::Deserialize)]
struct StreamQuery {
    after: Option<String>,
    /// A hedge account whose plan goes ahead of each event that can move it.
    plan: Option<u64>,
}

async fn event_stream(
    State(s): State<Arc<AppState>>,
    c: Caller,
    headers: HeaderMap,
    q: Result<Query<StreamQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let header_id = headers
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
    let after = match header_id.or(q.after) {
        None => 0,
        Some(text) if text == "now" => s.store.last_event_id().await?,
        Some(text) => text.parse::<u64>().map_err(|_| {
            Failure::invalid(
                Some("Last-Event-ID"),
                "Last-Event-ID/after must be an event id or `now`",
            )
        })?,
    };
    let plan = q.plan.map(Login);
    if let Some(login) = plan {
        c.require_hedge(login, "read the plan")?;
    }
    let scope = c.scope(&s).await?;
    let rx = s.hub.stream(&c.name, after, scope, plan).map_err(|e| {
        Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            e.to_string(),
        )
    })?;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

async fn post_action(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let action: ActionRequest = decode(&read_body(body, MAX_BODY).await?)?;
    if !caller.role.is_admin() {
        return Err(Failure::forbidden(format!(
            "token {} may not perform operator actions",
            caller.name
        )));
    }
    // Required: without a key a resent close or retry could not be told from a new one.
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => {
            return Err(Failure::invalid(
                Some("Idempotency-Key"),
                "operator actions need an Idempotency-Key header (a fresh value per action, the same value when resending it)",
            ))
        }
        Some(v) => v.to_str().map_err(|_| {
            Failure::invalid(
                Some("Idempotency-Key"),
                "Idempotency-Key must be visible ASCII characters without spaces",
            )
        })?,
    };
    let (ack, replayed) = s
        .store
        .action(caller.name, key.to_owned(), action, s.clock.now_ms())
        .await?;
    let mut resp = json(StatusCode::OK, &ack);
    mark_replay(&mut resp, replayed);
    Ok(resp)
}

async fn list_pauses(State(s): State<Arc<AppState>>, _c: Caller) -> ApiResult<Response> {
    Ok(json(StatusCode::OK, &s.store.pauses().await?))
}

async fn list_allocations(State(s): State<Arc<AppState>>, _c: Caller) -> ApiResult<Response> {
    Ok(json(StatusCode::OK, &s.store.allocations().await?))
}

/// Who may read the commands of hedge account `login`: operators, the dashboard's viewer, and that
/// account's hedger.
fn may_read_commands(role: Role, login: Login) -> bool {
    role.is_admin() || role == Role::Viewer || role.may_hedge_for(login)
}

async fn list_commands(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    q: Result<Query<CommandQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let mut q = query(q)?;
    match (q.login, caller.role) {
        (None, Role::Hedge(own)) => q.login = Some(own),
        (None, Role::Admin | Role::Viewer) => {}
        (None, _) => {
            return Err(Failure::forbidden(format!(
                "token {} may not read commands",
                caller.name
            )))
        }
        (Some(login), role) if !may_read_commands(role, login) => {
            return Err(Failure::forbidden(format!(
                "token {} may not read the commands of account {login}",
                caller.name
            )))
        }
        _ => {}
    }
    Ok(json(StatusCode::OK, &s.store.commands(q).await?))
}

async fn get_command(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    id: Result<Path<CommandId>, PathRejection>,
) -> ApiResult<Response> {
    let id = path(id)?;
    match s.store.command(id).await? {
        Some(c) if may_read_commands(caller.role, c.hedge_login) => Ok(json(StatusCode::OK, &c)),
        Some(c) => Err(Failure::forbidden(format!(
            "token {} may not read the commands of account {}",
            caller.name, c.hedge_login
        ))),
        None => Err(Failure::not_found(format!("command {id} does not exist"))),
    }
}

async fn command_result(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    id: Result<Path<CommandId>, PathRejection>,
    body: Body,
) -> ApiResult<Response> {
    let id = path(id)?;
    let result: CommandResult = decode(&read_body(body, MAX_BODY).await?)?;
    let Some(existing) = s.store.command(id).await? else {
        return Err(Failure::not_found(format!("command {id} does not exist")));
    };
    caller.require_hedge(existing.hedge_login, "report command results")?;
    let (command, replayed) = s
        .store
        .command_result(caller.name, id, result, s.clock.now_ms())
        .await?;
    let mut resp = json(StatusCode::OK, &command);
    mark_replay(&mut resp, replayed);
    Ok(resp)
}
