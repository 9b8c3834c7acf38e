//! The hedge plan as the center serves it: the `GET /v1/plan/{login}` body, and the same plan sent
//! on a hedger's event stream (`?plan=<login>`) ahead of each event that can move it.
//!
//! A plan on the stream spares the hedger a round trip per event: the center computes the plan
//! anyway, and the hedger takes it as it would take a fetched one. The frame is `event: plan` with
//! the plan as `data` and no `id`, so it does not move the stream's resume point; its
//! `as_of_event_id` says which events it reflects. Every stream of one hedge account gets the
//! frame computed once for the event it goes ahead of ([`PlanFrames`]): a hedger and a dashboard
//! following the same account, or a hedger reconnecting while its old stream still drains, cost
//! one plan per event, not one per stream; and the plans of all hedge accounts are computed
//! together once per event, not once per account. Entry points: [`render`], [`PlanFrames::frame`].

use crate::metrics::Metrics;
use crate::plan;
use crate::plan::PlanInputs;
use crate::store::{Store, StoreError};
use bytes::Bytes;
use hedge_center_api::model::HedgePlan;
use hedge_center_api::PLAN_FRAME_EVENT;
use hedge_domain::Login;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
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
    record(&plan, metrics);
    serde_json::to_vec(&plan)
        .map(Into::into)
        .map_err(|e| StoreError::Internal(format!("plan not serializable: {e}")))
}

/// The plan frame of each hedge account as of the newest event a stream asked it for, shared by
/// every stream of that account, and every hedge account's plan as of that event, shared by the
/// frames of all accounts: the plans depend on each other (allocations, rounding across
/// accounts), so they are computed together ([`plan::compute_all`]) once per event, not once per
/// account.
#[derive(Default)]
pub struct PlanFrames {
    latest: Mutex<HashMap<Login, Arc<SharedFrame>>>,
    all: Mutex<Option<Arc<AllPlans>>>,
}

/// One account's frame as of the event `at`, computed by the first stream that asks for it while
/// the others wait for it.
struct SharedFrame {
    at: u64,
    frame: OnceCell<Option<Bytes>>,
}

/// Every hedge account's plan as of the event `at`, computed by the first frame that needs it
/// while the others wait for it, from `inputs` when the writer read them right after the commit
/// ([`PlanFrames::prefill`]), else from a read of its own; `None` inside when the inputs could not
/// be read.
struct AllPlans {
    at: u64,
    inputs: Option<Arc<PlanInputs>>,
    plans: OnceCell<Option<Arc<BTreeMap<Login, HedgePlan>>>>,
}

impl PlanFrames {
    /// Takes the plan inputs the writer read right after a commit, for the frames of that
    /// commit's events (and any older one) to be computed from, with no read of their own.
    pub fn prefill(&self, inputs: Arc<PlanInputs>) {
        let at = inputs.as_of_event_id.get();
        let mut all = self.all.lock();
        if all.as_ref().is_none_or(|a| a.at < at) {
            *all = Some(Arc::new(AllPlans {
                at,
                inputs: Some(inputs),
                plans: OnceCell::new(),
            }));
        }
    }

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
            .get_or_init(|| async {
                let plans = self
                    .all_plans(store, metrics, hedge_login, at_event)
                    .await?;
                // Not a hedge account when the plans were read: the hedger fetches, and is
                // told why.
                let plan = plans.get(&hedge_login)?;
                record(plan, metrics);
                frame(plan, hedge_login)
            })
            .await
            .clone()
    }

    /// Every hedge account's plan, read after the committed event `at_event` (by the first frame
    /// that asks for it; the inputs are the same whichever hedge account reads them).
    async fn all_plans(
        &self,
        store: &Store,
        metrics: &Metrics,
        hedge_login: Login,
        at_event: u64,
    ) -> Option<Arc<BTreeMap<Login, HedgePlan>>> {
        let shared = {
            let mut all = self.all.lock();
            match all.as_ref() {
                Some(shared) if shared.at >= at_event => shared.clone(),
                _ => {
                    let shared = Arc::new(AllPlans {
                        at: at_event,
                        inputs: None,
                        plans: OnceCell::new(),
                    });
                    *all = Some(shared.clone());
                    shared
                }
            }
        };
        let plans = shared
            .plans
            .get_or_init(|| async {
                let inputs = match &shared.inputs {
                    Some(inputs) => inputs.clone(),
                    None => read_inputs(store, hedge_login, at_event).await?,
                };
                metrics.plans_computed_total.fetch_add(1, Ordering::Relaxed);
                Some(Arc::new(plan::compute_all(&inputs)))
            })
            .await
            .clone();
        if plans.is_none() {
            // Read for an account that is not a hedge account (or the read failed): the next
            // account that asks reads again rather than going without.
            let mut all = self.all.lock();
            if all.as_ref().is_some_and(|a| Arc::ptr_eq(a, &shared)) {
                *all = None;
            }
        }
        plans
    }
}

/// Every hedge account's plan inputs, read after the committed event `at_event` for a frame of
/// `hedge_login`; `None` when it is not a hedge account or the read failed.
async fn read_inputs(store: &Store, hedge_login: Login, at_event: u64) -> Option<Arc<PlanInputs>> {
    // The event is committed: the head is at least this event, whatever order the writer's
    // notifications arrive in.
    store.observe_head(at_event);
    match store.plan_inputs(hedge_login).await {
        Ok(Ok(inputs)) => Some(Arc::new(inputs)),
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

/// Records the size of a plan about to be served in `metrics`.
fn record(plan: &HedgePlan, metrics: &Metrics) {
    metrics
        .plan_items
        .store(plan.items.len() as u64, Ordering::Relaxed);
    metrics
        .plan_residuals
        .store(plan.residuals.len() as u64, Ordering::Relaxed);
}

/// `plan` as one SSE frame; `None` when it cannot be serialized.
fn frame(plan: &HedgePlan, hedge_login: Login) -> Option<Bytes> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(PLAN_FRAME_EVENT.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Compact JSON: one line, as a `data` field must be.
    if let Err(e) = serde_json::to_writer(&mut out, plan) {
        tracing::debug!(error = %e, login = %hedge_login, "plan not serializable");
        return None;
    }
    out.extend_from_slice(b"\n\n");
    Some(out.into())
}
