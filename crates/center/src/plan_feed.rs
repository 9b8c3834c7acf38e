//! The hedge plan as the center serves it: the `GET /v1/plan/{login}` body, and the same plan sent
//! on a hedger's event stream (`?plan=<login>`) ahead of each event that can move it.
//!
//! A plan on the stream spares the hedger a round trip per event: the center computes the plan
//! anyway (once per event head, [`crate::store::Store::plan_answer`]), and the hedger takes it as it
//! would take a fetched one. The frame is `event: plan` with the plan as `data` and no `id`, so it
//! does not move the stream's resume point; its `as_of_event_id` says which events it reflects.
//! Entry points: [`render`], [`frame`].

use crate::metrics::Metrics;
use crate::plan;
use crate::plan::PlanInputs;
use crate::store::{Store, StoreError};
use bytes::Bytes;
use hedge_center_api::PLAN_FRAME_EVENT;
use hedge_domain::Login;
use std::sync::atomic::Ordering;

/// The plan of `hedge_login` from `inputs` as the JSON body of `GET /v1/plan/{login}`; records its
/// size in `metrics`.
pub fn render(
    inputs: &PlanInputs,
    hedge_login: Login,
    metrics: &Metrics,
) -> Result<Bytes, StoreError> {
    let plan = plan::compute(inputs, hedge_login);
    metrics
        .plan_items
        .store(plan.items.len() as u64, Ordering::Relaxed);
    metrics
        .plan_residuals
        .store(plan.residuals.len() as u64, Ordering::Relaxed);
    serde_json::to_vec(&plan)
        .map(Into::into)
        .map_err(|e| StoreError::Internal(format!("plan not serializable: {e}")))
}

/// The current plan of `hedge_login` as one SSE frame; `None` when it cannot be read now (the
/// hedger then fetches it, as it would without the frame).
pub async fn frame(store: &Store, metrics: &Metrics, hedge_login: Login) -> Option<Bytes> {
    match store
        .plan_answer(hedge_login, |inputs| render(inputs, hedge_login, metrics))
        .await
    {
        Ok(Ok(body)) => {
            let mut out = Vec::with_capacity(body.len() + 24);
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(PLAN_FRAME_EVENT.as_bytes());
            out.extend_from_slice(b"\ndata: ");
            // Compact JSON: one line, as a `data` field must be.
            out.extend_from_slice(&body);
            out.extend_from_slice(b"\n\n");
            Some(out.into())
        }
        Ok(Err(refusal)) => {
            tracing::debug!(%refusal, login = %hedge_login, "no plan for the event stream");
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, login = %hedge_login, "no plan for the event stream");
            None
        }
    }
}
