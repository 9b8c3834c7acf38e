//! The event stream: every stored change, in id order, to any number of subscribers, resumable.
//!
//! One tailer task per instance broadcasts each event once, in id order: on SQLite the writer hands
//! it the events of each commit ([`Store::follow_commits`]), so a committed event reaches the
//! streams without another read of the log; otherwise, and whenever the head shows events it was
//! not handed (PostgreSQL notifications from other instances, a slow poll as a safety net), it
//! reads them from the log; on PostgreSQL only while a stream is subscribed (each read is a round
//! trip for the horizon, one for the page and the commit, once per commit of every instance). A
//! subscriber first subscribes to the broadcast, then replays the log from its `Last-Event-ID`,
//! then continues live, skipping what the replay already sent: no gap and no duplicate, whatever
//! the timing. A hedger's stream may also carry its plan ahead of the live
//! events that can move it (`?plan=`, [`crate::plan_feed`]).

use crate::auth::ReadScope;
use crate::metrics::Metrics;
use crate::plan_feed::PlanFrames;
use crate::store::{Committed, Store};
use bytes::Bytes;
use hedge_center_api::model::{Event, EventKind, PageQuery};
use hedge_domain::Login;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch, Semaphore};

/// Open streams one token may hold: a dashboard or two and a hedger, with room for reconnects.
pub const MAX_STREAMS_PER_TOKEN: usize = 8;

/// Replays reading the log at once; the others wait their turn, page by page, so that many
/// streams opened from the start of the log cannot take every core and store connection.
const REPLAY_READERS: usize = 4;

/// How long a stream waits for a dormant tailer to read the log's head before it replays anyway.
const TAIL_WAKE_WAIT: Duration = Duration::from_secs(2);

/// Events read per replay page.
const REPLAY_PAGE: u32 = 100;

/// Frames buffered per stream. With [`REPLAY_PAGE`] this bounds what a subscriber that stopped
/// reading costs: the replay waits for it instead of reading on.
const STREAM_BUFFER: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("token {token} already has {MAX_STREAMS_PER_TOKEN} event streams open; close one first")]
pub struct TooManyStreams {
    pub token: String,
}

pub struct Hub {
    tx: broadcast::Sender<Arc<Event>>,
    store: Store,
    metrics: Arc<Metrics>,
    heartbeat: Duration,
    /// Open streams per token name. While there is one, the writer hands each commit's events to
    /// the tailer ([`Store::streams_open`]).
    open: Mutex<HashMap<String, usize>>,
    replay_readers: Semaphore,
    /// The plan frames of the `?plan=` streams, computed once per event for all of them.
    plan_frames: PlanFrames,
    /// Open `?plan=` streams: while there is one, the store reads the plan inputs after each
    /// commit that can move a plan ([`Store::plans_on_commit`]).
    plan_streams: Mutex<usize>,
    /// Whether the tailer reads the log (see [`Hub::subscribe_live`]); held while a stream
    /// subscribes and while the tailer finds nobody subscribed, so neither misses the other.
    tail_lock: Mutex<()>,
    /// The tailer reads the log; `false` while it is dormant (nobody subscribed: on PostgreSQL a
    /// read per commit of every instance, for nobody).
    tail_awake: watch::Sender<bool>,
    /// Wakes a dormant tailer for a stream that subscribed.
    tail_wake: tokio::sync::Notify,
}

/// One open stream of a token; counted until dropped.
struct StreamSlot {
    hub: Arc<Hub>,
    token: String,
    /// It sends plans.
    plan: bool,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if self.plan {
            let mut plan_streams = self.hub.plan_streams.lock();
            *plan_streams -= 1;
            if *plan_streams == 0 {
                self.hub.store.plans_on_commit(false);
            }
        }
        let mut open = self.hub.open.lock();
        if let Some(n) = open.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.token);
                if open.is_empty() {
                    self.hub.store.streams_open(false);
                }
            }
        }
    }
}

impl Hub {
    /// Starts the tailer. It stops when `shutdown` turns true.
    pub async fn start(
        store: Store,
        metrics: Arc<Metrics>,
        heartbeat: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Hub>, crate::store::WriteError> {
        let (tx, _) = broadcast::channel(4096);
        let hub = Arc::new(Hub {
            tx: tx.clone(),
            store: store.clone(),
            metrics,
            heartbeat,
            open: Mutex::new(HashMap::new()),
            replay_readers: Semaphore::new(REPLAY_READERS),
            plan_frames: PlanFrames::default(),
            plan_streams: Mutex::new(0),
            tail_lock: Mutex::new(()),
            tail_awake: watch::Sender::new(true),
            tail_wake: tokio::sync::Notify::new(),
        });
        let mut last = store.last_event_id().await?;
        let mut committed = store.follow_commits();
        let tailer = hub.clone();
        tokio::spawn(async move {
            let mut head = tailer.store.head();
            let mut poll = tokio::time::interval(Duration::from_millis(1000));
            loop {
                tokio::select! {
                    // First: the writer hands a commit's events over before it moves the head, so
                    // a head that moved finds them here and needs no read.
                    biased;
                    commit = next_commit(&mut committed) => {
                        match commit {
                            Some(commit) => {
                                // Ahead of the events: the streams that send plans find them.
                                if let Some(inputs) = commit.plan_inputs {
                                    tailer.plan_frames.prefill(inputs);
                                }
                                // Commits made while no stream was open were not handed over:
                                // those come from the log first, with this one's.
                                if commit.events.first().is_none_or(|e| e.id.get() <= last + 1) {
                                    tailer.broadcast(&mut last, commit.events);
                                    continue;
                                }
                            }
                            None => {
                                committed = None;
                                continue;
                            }
                        }
                    }
                    changed = head.changed() => if changed.is_err() { return },
                    _ = poll.tick() => {
                        if let Ok(id) = tailer.store.last_event_id().await {
                            tailer.store.observe_head(id);
                        }
                    }
                    () = tailer.tail_wake.notified() => {}
                    _ = shutdown.changed() => return,
                }
                // Without the writer's hand-over (PostgreSQL), every event is a read of the log:
                // while no stream is subscribed, none is made.
                if committed.is_none() && !tailer.awake(&mut last).await {
                    head.borrow_and_update();
                    continue;
                }
                while *head.borrow_and_update() > last {
                    let page = match tailer
                        .store
                        .events(PageQuery {
                            after: Some(last),
                            limit: Some(1000),
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "event tailer cannot read the log");
                            break;
                        }
                    };
                    if page.items.is_empty() {
                        break;
                    }
                    tailer.broadcast(&mut last, page.items);
                }
            }
        });
        Ok(hub)
    }

    /// Whether the tailer is to read the log now (PostgreSQL). Nobody subscribed: it goes dormant
    /// and reads nothing. A stream subscribed since: first `last` moves to the log's head as read
    /// now (every event at or below it committed, `Store::last_event_id`), and only then are the
    /// waiting streams let through to their replay ([`Hub::subscribe_live`]), which reads from
    /// their own position to a head at least as new: the events the dormant tailer skipped are
    /// all in their replays, and every event after `last` comes live.
    async fn awake(&self, last: &mut u64) -> bool {
        {
            let _held = self.tail_lock.lock();
            if self.tx.receiver_count() == 0 {
                self.tail_awake
                    .send_if_modified(|awake| std::mem::replace(awake, false));
                return false;
            }
        }
        if *self.tail_awake.borrow() {
            return true;
        }
        match self.store.last_event_id().await {
            Ok(head) => {
                *last = (*last).max(head);
                self.tail_awake.send_replace(true);
                true
            }
            Err(e) => {
                // The streams wait a while, then replay without it (see `subscribe_live`); the
                // next wake-up (at the latest the poll, a second later) tries again.
                tracing::warn!(error = %e, "event tailer cannot read the log's head");
                false
            }
        }
    }

    /// Subscribes a stream to the live events, then waits for a dormant tailer to be reading the
    /// log again ([`Hub::awake`]) before the stream replays: its replay then reaches at least the
    /// point the tailer's broadcast starts from.
    async fn subscribe_live(&self) -> broadcast::Receiver<Arc<Event>> {
        let (live, mut awake) = {
            let _held = self.tail_lock.lock();
            (self.tx.subscribe(), self.tail_awake.subscribe())
        };
        if !*awake.borrow_and_update() {
            self.tail_wake.notify_one();
            // A tailer that cannot read the head lets the stream go after a while: should its
            // head come later than the replay's end, the events between reach the stream with the
            // first live event after them (a gap before a live event is replayed from the log).
            let _ = tokio::time::timeout(TAIL_WAKE_WAIT, awake.wait_for(|a| *a)).await;
        }
        live
    }

    /// Broadcasts the events of `events` after `last`, in order, and moves `last` on.
    fn broadcast(&self, last: &mut u64, events: Vec<Event>) {
        for event in events {
            if event.id.get() > *last {
                *last = event.id.get();
                self.metrics.events_total.fetch_add(1, Ordering::Relaxed);
                let _ = self.tx.send(Arc::new(event));
            }
        }
    }

    /// A `text/event-stream` body of the events after `after`, then live, for the token named
    /// `token`, only those `scope` may read, unless it already holds [`MAX_STREAMS_PER_TOKEN`] streams.
    /// With `plan`, that hedge account's plan goes ahead of each live event that can move it
    /// (see [`crate::plan_feed`]).
    pub fn stream(
        self: &Arc<Self>,
        token: &str,
        after: u64,
        scope: ReadScope,
        plan: Option<Login>,
    ) -> Result<mpsc::Receiver<Bytes>, TooManyStreams> {
        let slot = {
            let mut open = self.open.lock();
            let n = open.entry(token.to_owned()).or_insert(0);
            if *n >= MAX_STREAMS_PER_TOKEN {
                return Err(TooManyStreams {
                    token: token.to_owned(),
                });
            }
            *n += 1;
            if *n == 1 && open.len() == 1 {
                self.store.streams_open(true);
            }
            if plan.is_some() {
                let mut plan_streams = self.plan_streams.lock();
                *plan_streams += 1;
                if *plan_streams == 1 {
                    self.store.plans_on_commit(true);
                }
            }
            StreamSlot {
                hub: self.clone(),
                token: token.to_owned(),
                plan: plan.is_some(),
            }
        };
        let (out, rx) = mpsc::channel::<Bytes>(STREAM_BUFFER);
        let hub = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            hub.metrics.sse_subscribers.fetch_add(1, Ordering::Relaxed);
            let _ = hub.serve(after, scope, plan, out).await;
            hub.metrics.sse_subscribers.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(rx)
    }

    async fn replay(
        &self,
        last: &mut u64,
        scope: &mut ReadScope,
        out: &mpsc::Sender<Bytes>,
    ) -> Result<(), ()> {
        loop {
            let page = {
                let _reader = self.replay_readers.acquire().await.map_err(|_| ())?;
                self.store
                    .events(PageQuery {
                        after: Some(*last),
                        limit: Some(REPLAY_PAGE),
                        ..Default::default()
                    })
                    .await
                    .map_err(|_| ())?
            };
            for event in &page.items {
                *last = event.id.get();
                self.send_visible(event, scope, out).await?;
            }
            if page.next_after.is_none() {
                return Ok(());
            }
        }
    }

    /// Sends `event` if `scope` may read it; `last` moves on either way (the caller's), so an
    /// event left out is not mistaken for a gap.
    async fn send_visible(
        &self,
        event: &Event,
        scope: &mut ReadScope,
        out: &mpsc::Sender<Bytes>,
    ) -> Result<(), ()> {
        if self.visible(event, scope).await? {
            out.send(frame(event)).await.map_err(|_| ())?;
        }
        Ok(())
    }

    /// Whether `scope` may read `event`. A registration or an allocation can change which clients
    /// a hedge token covers, so its scope is re-read from the registry first.
    async fn visible(&self, event: &Event, scope: &mut ReadScope) -> Result<bool, ()> {
        let moves_coverage = matches!(
            event.kind,
            EventKind::AccountRegistered | EventKind::AllocationSet | EventKind::AllocationCleared
        );
        if scope.follows_registry() && moves_coverage {
            let accounts = self.store.accounts().await.map_err(|_| ())?;
            let allocations = self.store.allocations().await.map_err(|_| ())?;
            scope.refresh(&accounts, &allocations);
        }
        Ok(scope.sees_event(event))
    }

    async fn serve(
        &self,
        after: u64,
        mut scope: ReadScope,
        plan: Option<Login>,
        out: mpsc::Sender<Bytes>,
    ) -> Result<(), ()> {
        let mut feed = plan.map(|login| PlanFeed { login, owed: false });
        let mut live = self.subscribe_live().await;
        let mut last = after;
        out.send(Bytes::from_static(b": connected\n\n"))
            .await
            .map_err(|_| ())?;
        self.replay(&mut last, &mut scope, &out).await?;
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) => {
                        if event.id.get() > last {
                            if event.id.get() > last + 1 {
                                // Something between was not broadcast to us: read it from the log.
                                self.replay(&mut last, &mut scope, &out).await?;
                            }
                            if event.id.get() > last {
                                last = event.id.get();
                                match &mut feed {
                                    Some(feed) => {
                                        let queued = !live.is_empty();
                                        self.send_live_with_plan(&event, &mut scope, feed, queued, &out)
                                            .await?;
                                    }
                                    None => self.send_visible(&event, &mut scope, &out).await?,
                                }
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => self.replay(&mut last, &mut scope, &out).await?,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                _ = heartbeat.tick() => {
                    out.send(Bytes::from_static(b": heartbeat\n\n")).await.map_err(|_| ())?;
                }
                _ = out.closed() => return Ok(()),
            }
        }
    }
}

/// The plan a stream sends ahead of the events that can move it.
struct PlanFeed {
    login: Login,
    /// An event that can move the plan was sent (or is about to be) with no plan after it yet.
    owed: bool,
}

impl Hub {
    /// Like [`Hub::send_visible`], with the plan of `feed` first when the event can move it (or an
    /// earlier one did) and no other event is `queued` behind it: a burst gets one plan, ahead of
    /// its last event, so the hedger never acts on a plan older than the events it has seen.
    async fn send_live_with_plan(
        &self,
        event: &Event,
        scope: &mut ReadScope,
        feed: &mut PlanFeed,
        queued: bool,
        out: &mpsc::Sender<Bytes>,
    ) -> Result<(), ()> {
        let visible = self.visible(event, scope).await?;
        feed.owed |= visible && event.kind.moves_plan();
        if feed.owed && !queued {
            feed.owed = false;
            if let Some(plan) = self
                .plan_frames
                .frame(&self.store, &self.metrics, feed.login, event.id.get())
                .await
            {
                out.send(plan).await.map_err(|_| ())?;
            }
        }
        if visible {
            out.send(frame(event)).await.map_err(|_| ())?;
        }
        Ok(())
    }
}

/// The next commit's events from the writer; never, when it does not hand them over.
async fn next_commit(
    committed: &mut Option<mpsc::UnboundedReceiver<Committed>>,
) -> Option<Committed> {
    match committed {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One SSE frame: `id`, `event` (the kind) and `data` (the event as one line of JSON).
pub fn frame(event: &Event) -> Bytes {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.id,
        event.kind.as_str(),
        data
    ))
}
