//! The hedge plan as the center serves it: the `GET /v1/plan/{login}` body, and the same plan sent
//! on a hedger's event stream (`?plan=<login>`) ahead of each event that can move it.
//!
//! A plan on the stream spares the hedger a round trip per event: the center computes the plan
//! anyway, and the hedger takes it as it would take a fetched one. The frame is `event: plan` with
//! the plan as `data` and no `id`, so it does not move the stream's resume point; its
//! `as_of_event_id` says which events it reflects. Every stream of one hedge account gets the
//! frame computed once for the event it goes ahead of ([`PlanFrames`]): a hedger and a dashboard
//! following the same account, or a hedger reconnecting while its old stream still drains, cost
//! one plan per event, not one per stream. Entry points: [`render`], [`PlanFrames::frame`].

use crate::metrics::Metrics;
use crate::plan;
use crate::plan::PlanInputs;
use crate::store::{Store, StoreError};
use bytes::Bytes;
use hedge_center_api::PLAN_FRAME_EVENT;
use hedge_domain::Login;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// The plan of `hedge_login` from `inputs` as the JSON body of `GET /v1/plan/{login}`; records its
/// size in `metrics`.
pub fn render(
    inputs: &PlanInputs,
    hedge_login: Login,
    metrics: &Metrics,
) -> Result<Bytes, StoreError> {
    let plan = plan::compute(inputs, hedge_login);
    metrics.plans_computed_total.fetch_add(1, Ordering::Relaxed);
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

/// The plan frame of each hedge account as of the newest event a stream asked it for, shared by
/// every stream of that account.
#[derive(Default)]
pub struct PlanFrames {
    latest: Mutex<HashMap<Login, Arc<SharedFrame>>>,
}

/// One account's frame as of the event `at`, computed by the first stream that asks for it while
/// the others wait for it.
struct SharedFrame {
    at: u64,
    frame: OnceCell<Option<Bytes>>,
}

impl PlanFrames {
    /// The plan of `hedge_login` as one SSE frame, at least as new as the committed event
    /// `at_event`; `None` when it cannot be read now (the hedger then fetches it, as it would
    /// without the frame). A frame already computed for that event or a later one is reused: it
    /// was read after that event was committed, so it reflects it.
    pub async fn frame(
        &self,
        store: &Store,
        metrics: &Metrics,
        hedge_login: Login,
        at_event: u64,
    ) -> Option<Bytes> {
        let shared = {
            let mut latest = self.latest.lock();
            match latest.get(&hedge_login) {
                Some(shared) if shared.at >= at_event => shared.clone(),
                _ => {
                    let shared = Arc::new(SharedFrame {
                        at: at_event,
                        frame: OnceCell::new(),
                    });
                    latest.insert(hedge_login, shared.clone());
                    shared
                }
            }
        };
        shared
            .frame
            .get_or_init(|| {
                // The event is committed: the head is at least this event, whatever order the
                // writer's notifications arrive in, so no plan cached before it is taken.
                store.observe_head(at_event);
                frame(store, metrics, hedge_login)
            })
            .await
            .clone()
    }
}

/// The current plan of `hedge_login` as one SSE frame; `None` when it cannot be read now.
async fn frame(store: &Store, metrics: &Metrics, hedge_login: Login) -> Option<Bytes> {
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
