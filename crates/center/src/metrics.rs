//! Prometheus metrics, written by hand in the text exposition format.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// route → status → histogram, for one method.
type RouteHistograms = BTreeMap<String, BTreeMap<u16, Histogram>>;

/// The center's metrics.
#[derive(Default)]
pub struct Metrics {
    /// method → route → status; nested so that recording a known route allocates nothing.
    latency: Mutex<BTreeMap<String, RouteHistograms>>,
    /// Events the event stream has seen (all instances).
    pub events_total: AtomicU64,
    /// Position reports stored (replays not counted).
    pub reports_total: AtomicU64,
    pub reports_replayed_total: AtomicU64,
    /// Items of the last plan computed.
    pub plan_items: AtomicU64,
    pub plan_residuals: AtomicU64,
    /// Plans computed (a plan answer or a stream's plan frame that was not already at hand).
    pub plans_computed_total: AtomicU64,
    pub sse_subscribers: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut map = self.latency.lock();
        if !map.contains_key(method) {
            map.insert(method.to_owned(), BTreeMap::new());
        }
        let Some(routes) = map.get_mut(method) else {
            return;
        };
        if !routes.contains_key(route) {
            routes.insert(route.to_owned(), BTreeMap::new());
        }
        let Some(statuses) = routes.get_mut(route) else {
            return;
        };
        let h = statuses.entry(status).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP hedge_center_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE hedge_center_request_duration_seconds histogram\n");
        let snapshot = self.latency.lock().clone();
        let flat = snapshot.iter().flat_map(|(method, routes)| {
            routes.iter().flat_map(move |(route, statuses)| {
                statuses
                    .iter()
                    .map(move |(status, h)| (method, route, status, h))
            })
        });
        for (method, route, status, h) in flat {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "hedge_center_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "hedge_center_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "hedge_center_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "hedge_center_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        let counters = [
            (
                "hedge_center_events_total",
                "counter",
                "Events broadcast to the event streams (rate = events/s; on PostgreSQL only while a stream is open).",
                &self.events_total,
            ),
            (
                "hedge_center_reports_total",
                "counter",
                "Position reports stored.",
                &self.reports_total,
            ),
            (
                "hedge_center_reports_replayed_total",
                "counter",
                "Position reports answered from the idempotency record.",
                &self.reports_replayed_total,
            ),
            (
                "hedge_center_plan_items",
                "gauge",
                "Items of the last hedge plan computed.",
                &self.plan_items,
            ),
            (
                "hedge_center_plan_residuals",
                "gauge",
                "Residuals of the last hedge plan computed.",
                &self.plan_residuals,
            ),
            (
                "hedge_center_plans_computed_total",
                "counter",
                "Hedge plans computed (answers and stream plan frames not already at hand).",
                &self.plans_computed_total,
            ),
            (
                "hedge_center_sse_subscribers",
                "gauge",
                "Open event-stream subscriptions.",
                &self.sse_subscribers,
            ),
        ];
        for (name, kind, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}
