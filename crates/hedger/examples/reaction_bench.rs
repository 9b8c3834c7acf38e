#![allow(dead_code)]
//! Reaction benchmark of the hedger over real sockets (center and simulated terminal in process).
//!
//! `cargo run --release -p hedge-hedger --example reaction_bench [-- RUNS]`
//! (`HEDGE_BENCH_BACK_TO_BACK=1`: mirror runs do not wait for the plan to settle between runs)
//!
//! - trigger mode: the own position's closing deal arrives at the hedger → every hedge order of the
//!   plan (held in memory) answered by the terminal (an upper bound of "written to the socket");
//! - mirror mode: a client open reported to the center → the hedge order written and answered,
//!   through the center's event stream and plan over loopback, with each stage's share (report
//!   durable, event received, plan item held, order written, reply); every run is timed or counted
//!   as missed;
//! - mirror mode with the client agent in the loop: a position opened on the simulated client
//!   terminal → the in-process client agent (`hedge client`) reports it → the center → the hedger's
//!   hedge order written and answered on its own simulated terminal; every run is timed or counted
//!   as missed. This variant runs last: the client agent installs the agents' log subscriber
//!   (stderr, `RUST_LOG`, default `info`) as it does in production;
//! - resident memory of this process (center, simulator and hedger together: an upper bound).

include!("../tests/support/world.rs");

use hedge_hedger::probe::Stage;

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report(name: &str, mut v: Vec<u64>) {
    v.sort_unstable();
    println!(
        "{name}: runs {} p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
        v.len(),
        percentile(&v, 0.5) as f64 / 1000.0,
        percentile(&v, 0.99) as f64 / 1000.0,
        v.last().copied().unwrap_or(0) as f64 / 1000.0
    );
}

fn rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    trigger_mode(runs).await;
    mirror_mode(runs).await;
    mirror_through_client_agent(runs).await;
}

/// Trigger mode: two symbols in the plan, one trigger per run.
async fn trigger_mode(runs: usize) {
    let mut w = World::start(Setup::default()).await;
    let mut rx = w.events.subscribe();
    let mut trigger_us = Vec::new();
    for i in 0..runs {
        let eur = lots(1 + (i as i64 % 5));
        let xau = lots(1 + (i as i64 % 3));
        w.client(
            10_000 + i as u64 * 2,
            PositionEventKind::Open,
            Side::Buy,
            eur,
        )
        .await;
        w.client_symbol(
            10_001 + i as u64 * 2,
            "XAUUSD",
            PositionEventKind::Open,
            Side::Sell,
            xau,
        )
        .await;
        if !(w.plan_volume("EURUSD", eur).await && w.plan_volume("XAUUSD", xau).await) {
            eprintln!("plan did not follow at run {i}");
            continue;
        }
        while rx.try_recv().is_ok() {}
        w.fire_trigger();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                Ok(Ok(HedgerEvent::Batch {
                    elapsed_us, orders, ..
                })) => {
                    if orders == 2 {
                        trigger_us.push(elapsed_us);
                    }
                    break;
                }
                _ => continue,
            }
        }
        // Let the records reach the center so the next plan is only the new exposure.
        let outbox = w.outbox.clone();
        wait_for(Duration::from_secs(5), || {
            outbox.pending().unwrap_or(1) == 0
        })
        .await;
        let plan = w.plan.clone();
        wait_for(Duration::from_secs(5), || {
            plan.get().is_some_and(|p| p.items.is_empty())
        })
        .await;
    }
    report(
        "trigger -> all hedge orders answered (2 orders)",
        trigger_us,
    );
    w.shutdown().await;
}

/// Mirror mode: a client open through the center to the hedge order, stage by stage. The keys
/// are the center's event ids: the open's event id is also the id of the plan item it produces.
async fn mirror_mode(runs: usize) {
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        ..Setup::default()
    })
    .await;
    let probe = w.probe.clone();
    let mut stages: Vec<(&str, Vec<u64>)> = [
        "report POST -> durable (answered)",
        "durable -> event received by the hedger",
        "event received -> plan item held",
        "plan item held -> order written",
        "order written -> terminal reply",
        "client open reported -> hedge order written",
        "client open reported -> hedge order answered",
    ]
    .into_iter()
    .map(|name| (name, Vec::new()))
    .collect();
    let mut missed = 0usize;
    // HEDGE_BENCH_BACK_TO_BACK=1: the next open follows as soon as the previous hedge is recorded,
    // while the hedger may still be taking the plan that record produced.
    let back_to_back = std::env::var("HEDGE_BENCH_BACK_TO_BACK").is_ok_and(|v| v == "1");
    // Run 0 warms the connections up (the follower may still be on its first plan fetch when its
    // event arrives) and is not timed; every other run is timed or counted as missed.
    for i in 0..=runs {
        probe.clear();
        let started = Instant::now();
        let event = w
            .client(
                50_000 + i as u64,
                PositionEventKind::Open,
                Side::Buy,
                lots(1),
            )
            .await;
        let durable = Instant::now();
        let answered = {
            let probe = probe.clone();
            wait_for(Duration::from_secs(5), move || {
                probe.first(Stage::OrderAnswered, event.get()).is_some()
            })
            .await
        };
        let marks = (
            probe.first(Stage::EventReceived, event.get()),
            probe.first(Stage::PlanHeld, event.get()),
            probe.first(Stage::OrderWritten, event.get()),
            probe.first(Stage::OrderAnswered, event.get()),
        );
        match (i, answered, marks) {
            (0, ..) => {}
            (_, true, (Some(received), Some(held), Some(written), Some(reply))) => {
                let us = |a: Instant, b: Instant| b.saturating_duration_since(a).as_micros() as u64;
                let spans = [
                    us(started, durable),
                    us(durable, received),
                    us(received, held),
                    us(held, written),
                    us(written, reply),
                    us(started, written),
                    us(started, reply),
                ];
                for ((_, v), span) in stages.iter_mut().zip(spans) {
                    v.push(span);
                }
            }
            (_, _, m) => {
                missed += 1;
                eprintln!("run {i}: event {event} not carried through within 5 s: {m:?}");
            }
        }
        // The next run starts from a quiet state: the hedge recorded and the plan empty again.
        settle(&w, !back_to_back).await;
    }
    println!(
        "mirror mode, {runs} timed runs (after one warm-up), {missed} not carried through within 5 s:"
    );
    print_stages(stages, "center + simulator + hedger");
    w.shutdown().await;
}

/// Waits until the hedger's records are sent and, with `plan_empty`, the plan is empty again.
async fn settle(w: &World, plan_empty: bool) {
    let outbox = w.outbox.clone();
    wait_for(Duration::from_secs(5), || {
        outbox.pending().unwrap_or(1) == 0
    })
    .await;
    if plan_empty {
        let plan = w.plan.clone();
        wait_for(Duration::from_secs(5), || {
            plan.get().is_some_and(|p| p.items.is_empty())
        })
        .await;
    }
}

/// Prints each stage's figures, then the resident memory of the process (`what` it holds).
fn print_stages(stages: Vec<(&str, Vec<u64>)>, what: &str) {
    for (name, v) in stages {
        report(&format!("  {name}"), v);
    }
    if let Some(kb) = rss_kb() {
        println!(
            "resident memory of the whole process ({what}): {:.1} MB",
            kb as f64 / 1024.0
        );
    }
}

/// Outcome of one run of the client-agent variant.
enum AgentRun {
    /// Open on the client terminal, then the hedger's marks for the plan item it produced.
    Timed {
        started: Instant,
        received: Option<Instant>,
        held: Option<Instant>,
        written: Instant,
        answered: Instant,
    },
    Missed(String),
}

/// One client open on the terminal, carried through the client agent, the center and the hedger.
async fn agent_run(
    w: &World,
    client: &SimTerminal,
    rx: &mut broadcast::Receiver<HedgerEvent>,
) -> AgentRun {
    let probe = w.probe.clone();
    probe.clear();
    while rx.try_recv().is_ok() {}
    let started = Instant::now();
    let opened = client.open("EURUSD", Side::Buy, lots(1), Magic(0), "bench");
    if !opened.retcode.is_done() {
        return AgentRun::Missed(format!("client open refused: {opened:?}"));
    }
    // The hedger is otherwise idle, so the first order it finishes is this open's hedge; its plan
    // item id is the center's event id of the open, the key of the probe's marks.
    let deadline = started + Duration::from_secs(5);
    let item = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(HedgerEvent::Order(o))) => break o.item,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                return AgentRun::Missed("hedger events closed".into())
            }
            Err(_) => {
                return AgentRun::Missed(format!(
                    "position {} not hedged within 5 s",
                    opened.position
                ))
            }
        }
    };
    // Outside the timed span: check the order was this open's hedge.
    let open_event = w
        .admin
        .position(CLIENT, opened.position)
        .await
        .ok()
        .and_then(|d| {
            d.history
                .iter()
                .find(|h| h.kind == PositionEventKind::Open)
                .map(|h| h.event_id)
        });
    if open_event != Some(EventId(item)) {
        return AgentRun::Missed(format!(
            "hedge order for item {item}, the open of position {} is event {open_event:?}",
            opened.position
        ));
    }
    match (
        probe.first(Stage::OrderWritten, item),
        probe.first(Stage::OrderAnswered, item),
    ) {
        (Some(written), Some(answered)) => AgentRun::Timed {
            started,
            received: probe.first(Stage::EventReceived, item),
            held: probe.first(Stage::PlanHeld, item),
            written,
            answered,
        },
        marks => AgentRun::Missed(format!("item {item} without order marks: {marks:?}")),
    }
}

/// Mirror mode with the real client agent between the client terminal and the center.
async fn mirror_through_client_agent(runs: usize) {
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        ..Setup::default()
    })
    .await;
    let client = w.start_client_agent().await;
    let mut rx = w.events.subscribe();
    let mut stages: Vec<(&str, Vec<u64>)> = [
        "terminal open -> event received by the hedger (client agent, report, center)",
        "event received -> plan item held",
        "plan item held -> order written",
        "order written -> terminal reply",
        "client open on the terminal -> hedge order written",
        "client open on the terminal -> hedge order answered",
    ]
    .into_iter()
    .map(|name| (name, Vec::new()))
    .collect();
    let mut missed = 0usize;
    // Run 0 warms the connections up and is not timed; every other run is timed or missed.
    for i in 0..=runs {
        let run = agent_run(&w, &client, &mut rx).await;
        match (i, run) {
            (0, _) => {}
            (
                _,
                AgentRun::Timed {
                    started,
                    received,
                    held,
                    written,
                    answered,
                },
            ) => {
                let us = |a: Instant, b: Instant| b.saturating_duration_since(a).as_micros() as u64;
                let spans = [
                    received.map(|r| us(started, r)),
                    received.zip(held).map(|(r, h)| us(r, h)),
                    held.map(|h| us(h, written)),
                    Some(us(written, answered)),
                    Some(us(started, written)),
                    Some(us(started, answered)),
                ];
                // The end-to-end spans count every timed run; a stage whose mark is missing (a plan
                // taken from a fetch rather than the event) only leaves that stage short.
                for ((_, v), span) in stages.iter_mut().zip(spans) {
                    v.extend(span);
                }
            }
            (_, AgentRun::Missed(why)) => {
                missed += 1;
                eprintln!("client-agent run {i}: {why}");
            }
        }
        // The next run starts from a quiet state: the hedge recorded and the plan empty again.
        settle(&w, true).await;
    }
    println!(
        "mirror mode through the client agent, {runs} timed runs (after one warm-up), {missed} missed:"
    );
    print_stages(stages, "center + two simulators + client agent + hedger");
    w.shutdown().await;
}
