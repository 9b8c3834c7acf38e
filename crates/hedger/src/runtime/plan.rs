//! The plan held in memory and the task that keeps it current from the center's event stream.

use super::HedgerEvent;
use crate::probe::{Probe, Stage};
use hedge_center_api::client::{CenterClient, StreamItem};
use hedge_center_api::model::{EventId, EventKind, HedgePlan};
use hedge_domain::Login;
use parking_lot::RwLock;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// The plan as last fetched, shared between the follower task and the runtime.
#[derive(Default)]
pub struct PlanHolder {
    plan: RwLock<Option<HedgePlan>>,
    pub(super) version: watch::Sender<u64>,
    /// Bumped when the stream announces an operator command for this account.
    pub(super) commands: watch::Sender<u64>,
    probe: Option<Arc<Probe>>,
}

impl PlanHolder {
    /// A holder whose follower and runtime record their stages in `probe` (benchmarks).
    pub fn with_probe(probe: Arc<Probe>) -> Self {
        PlanHolder {
            probe: Some(probe),
            ..PlanHolder::default()
        }
    }

    fn command_issued(&self) {
        self.commands.send_modify(|v| *v += 1);
    }

    pub(super) fn mark(&self, stage: Stage, key: u64, at: Instant) {
        if let Some(p) = &self.probe {
            p.record(stage, key, at);
        }
    }
    pub fn get(&self) -> Option<HedgePlan> {
        self.plan.read().clone()
    }

    pub(super) fn items(&self) -> Vec<hedge_center_api::model::PlanItem> {
        self.plan
            .read()
            .as_ref()
            .map(|p| p.items.clone())
            .unwrap_or_default()
    }

    fn as_of(&self) -> Option<EventId> {
        self.plan.read().as_ref().map(|p| p.as_of_event_id)
    }

    /// Replaces the plan; true when its items changed.
    pub(super) fn set(&self, plan: HedgePlan) -> bool {
        let mut held = self.plan.write();
        let changed = held.as_ref().map(|p| &p.items) != Some(&plan.items);
        let newer = held
            .as_ref()
            .is_none_or(|p| plan.as_of_event_id >= p.as_of_event_id);
        if newer {
            *held = Some(plan);
        }
        drop(held);
        if changed && newer {
            if self.probe.is_some() {
                let now = Instant::now();
                for item in self.items() {
                    self.mark(Stage::PlanHeld, item.id.get(), now);
                }
            }
            self.version.send_modify(|v| *v += 1);
        }
        changed && newer
    }
}

/// Keeps `holder` current: the plan is fetched, then taken from the event stream, which carries it
/// ahead of each event that can move it; it is fetched again only when an event that can move it
/// arrived with no plan at least as new (a resumed stream replays events without plans, a burst
/// gets one plan, an older center sends none; several queued events cause one fetch), and every
/// `refresh` in case the stream missed something across a reconnect. The subscription resumes
/// from the plan's last event id.
pub async fn follow_plan(
    center: CenterClient,
    login: Login,
    holder: Arc<PlanHolder>,
    refresh: Duration,
    events: Option<broadcast::Sender<HedgerEvent>>,
) {
    let fetch = |holder: Arc<PlanHolder>| {
        let center = center.clone();
        let events = events.clone();
        async move {
            match center.plan(login).await {
                Ok(plan) => {
                    take(&holder, plan, events.as_ref());
                    true
                }
                Err(e) => {
                    tracing::debug!(error = %e, "plan not available");
                    false
                }
            }
        }
    };
    while !fetch(holder.clone()).await {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        let mut sub = center.subscribe_with_plan(holder.as_of(), login);
        let mut tick = tokio::time::interval(refresh);
        tick.tick().await;
        loop {
            tokio::select! {
                item = sub.next_item() => match item {
                    Some(Ok(first)) => {
                        let mut seen = SeenOnStream::default();
                        seen.take(first, login, &holder, events.as_ref());
                        // Take everything already queued, then fetch once if still needed.
                        while let Some(Ok(more)) = sub.try_next_item() {
                            seen.take(more, login, &holder, events.as_ref());
                        }
                        if seen.commands {
                            holder.command_issued();
                        }
                        if let Some(id) = seen.newest {
                            if holder.as_of().is_none_or(|as_of| id > as_of) {
                                fetch(holder.clone()).await;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "event stream refused; resubscribing");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                    None => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                },
                _ = tick.tick() => {
                    fetch(holder.clone()).await;
                }
            }
        }
    }
}

/// Holds `plan` if it is newer; logs and announces it when its items changed.
fn take(holder: &PlanHolder, plan: HedgePlan, events: Option<&broadcast::Sender<HedgerEvent>>) {
    let (items, as_of) = (plan.items.len(), plan.as_of_event_id);
    let announce = events.map(|tx| (tx, plan.clone()));
    if holder.set(plan) {
        tracing::info!(items, as_of = %as_of, "hedge plan updated");
        if let Some((tx, plan)) = announce {
            let _ = tx.send(HedgerEvent::Plan { plan });
        }
    }
}

/// What a run of stream items asked for.
#[derive(Default)]
struct SeenOnStream {
    /// The newest event that can move the plan.
    newest: Option<EventId>,
    /// An operator command for this account was announced.
    commands: bool,
}

impl SeenOnStream {
    fn take(
        &mut self,
        item: StreamItem,
        login: Login,
        holder: &PlanHolder,
        events: Option<&broadcast::Sender<HedgerEvent>>,
    ) {
        match item {
            StreamItem::Plan(plan) => {
                // The stream told of the events up to the plan's, ahead of their own frames.
                holder.mark(
                    Stage::EventReceived,
                    plan.as_of_event_id.get(),
                    Instant::now(),
                );
                take(holder, plan, events)
            }
            StreamItem::Event(e) => {
                holder.mark(Stage::EventReceived, e.id.get(), Instant::now());
                if e.kind == EventKind::CommandIssued && e.login.is_none_or(|l| l == login) {
                    self.commands = true;
                }
                if e.kind.moves_plan() {
                    self.newest = Some(e.id);
                }
            }
        }
    }
}
