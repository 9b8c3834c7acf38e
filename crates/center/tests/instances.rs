//! Several center instances on one PostgreSQL schema: started at the same moment on a new schema,
//! writing side by side (the same report to two at once stored once, plans identical, every event
//! streamed by every instance in order), and `kill -9` of one under load losing nothing it
//! acknowledged while the other keeps serving.

mod common;

use common::*;
use hedge_center::store::{Store, StoreLocation};
use hedge_center_api::model::*;
use hedge_center_api::CenterClient;
use hedge_domain::Side;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn fresh_schema(tag: &str) -> (String, StoreLocation) {
    let schema = format!("hedge_{tag}_{:016x}", rand::random::<u64>());
    let location = StoreLocation::Postgres {
        url: pg_conninfo(),
        schema: Some(schema.clone()),
    };
    (schema, location)
}

/// Three stores opened at the same moment on a schema that does not exist yet, eight times: every
/// one opens, and the migrations are recorded once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_starts_on_a_fresh_schema_never_fail() {
    for trial in 0..8 {
        let (schema, location) = fresh_schema("start");
        let barrier = Arc::new(tokio::sync::Barrier::new(3));
        let starts: Vec<_> = (0..3)
            .map(|_| {
                let (location, barrier) = (location.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    Store::open(&location).await
                })
            })
            .collect();
        let mut stores = Vec::new();
        for (i, start) in starts.into_iter().enumerate() {
            match start.await.unwrap() {
                Ok(store) => stores.push(store),
                Err(e) => panic!(
                    "trial {trial}: instance {i} failed to start on a fresh schema: {e} \
                     (PostgreSQL is required: 127.0.0.1:5432, database `test`, or HEDGE_TEST_PG)"
                ),
            }
        }
        // Every instance writes and reads the one schema.
        for (i, store) in stores.iter().enumerate() {
            let report = open(CLIENT, i as u64 + 1, "EURUSD", Side::Buy, "0.1");
            store
                .report("test".into(), report, 1)
                .await
                .unwrap_or_else(|e| panic!("trial {trial}: instance {i}: {e}"));
        }
        let stored = stores[0]
            .positions(PositionFilter::default())
            .await
            .unwrap();
        assert_eq!(stored.items.len(), 3, "trial {trial}");
        let (client, conn) = tokio_postgres::connect(&pg_conninfo(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let versions = client
            .query(
                &format!(
                    "SELECT version, count(*) FROM {schema}.schema_migrations GROUP BY version"
                ),
                &[],
            )
            .await
            .unwrap();
        assert!(versions.len() >= 6, "trial {trial}: {versions:?}");
        assert!(versions.iter().all(|r| r.get::<_, i64>(1) == 1));
        for store in &stores {
            store.close();
        }
        drop(stores);
        drop_schema(&pg_conninfo(), &schema).await;
    }
}

fn client_of(url: &str, token: &str) -> CenterClient {
    CenterClient::new(url, Some(token.to_owned())).unwrap()
}

/// Every event of the log, in id order.
async fn event_log(viewer: &CenterClient) -> Vec<EventId> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = viewer
            .events(&PageQuery {
                after,
                limit: Some(1000),
                ..PageQuery::default()
            })
            .await
            .unwrap();
        ids.extend(page.items.iter().map(|e| e.id));
        match page.next_after {
            Some(a) => after = Some(a),
            None => return ids,
        }
    }
}

/// The plan's net exposure per symbol, items and residuals.
fn exposures(plan: &HedgePlan) -> BTreeMap<String, Decimal> {
    plan.items
        .iter()
        .map(|i| (i.symbol.clone(), i.exposure.0))
        .chain(
            plan.residuals
                .iter()
                .map(|r| (r.symbol.clone(), r.exposure.0)),
        )
        .filter(|(_, v)| !v.is_zero())
        .collect()
}

/// Two instances on one schema under concurrent load: the same report sent to both at once is
/// stored once (one answer is the replay of the other, the same acknowledgement); reports of
/// different positions go to either instance, each position opened on one and increased and
/// closed on the other; afterwards both plans are the same and hold exactly the acknowledged
/// volumes, and a subscriber of each instance got every event of the log, in order, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_store_once_agree_and_stream_every_event() {
    let a = Env::start(Backend::Postgres).await;
    a.register_defaults().await;
    let b = start_at(a.location.clone()).await;
    let b_url = b.url();
    let (b_client, b_viewer, b_hedge) = (
        client_of(&b_url, CLIENT_TOKEN),
        client_of(&b_url, VIEWER_TOKEN),
        client_of(&b_url, HEDGE_TOKEN),
    );
    let mut sub_a = a.viewer.subscribe(Some(EventId(0)));
    let mut sub_b = b_viewer.subscribe(Some(EventId(0)));
    let symbols = ["EURUSD", "GBPUSD"];

    // The same report to both instances at once.
    let mut pairs = Vec::new();
    for i in 0..60u64 {
        let (x, y) = (a.client.clone(), b_client.clone());
        let r = open(
            CLIENT,
            10_000 + i,
            symbols[(i % 2) as usize],
            Side::Buy,
            "0.01",
        );
        pairs.push(tokio::spawn(async move {
            let (p, q) = tokio::join!(x.report_position(&r), y.report_position(&r));
            (p.unwrap(), q.unwrap())
        }));
    }
    // Independent positions, each opened through one instance and changed through the other.
    let mut workers = Vec::new();
    for w in 0..6u64 {
        let (first, second) = if w % 2 == 0 {
            (a.client.clone(), b_client.clone())
        } else {
            (b_client.clone(), a.client.clone())
        };
        workers.push(tokio::spawn(async move {
            // Net buys per symbol this worker left open, in hundredths of a lot.
            let mut net: BTreeMap<String, i64> = BTreeMap::new();
            for k in 0..25u64 {
                let id = 20_000 + w * 1_000 + k;
                let symbol = if k % 3 == 0 { "GBPUSD" } else { "EURUSD" };
                let side = if k % 4 == 0 { Side::Sell } else { Side::Buy };
                let sign = if side == Side::Sell { -1 } else { 1 };
                first
                    .report_position(&open(CLIENT, id, symbol, side, "0.03"))
                    .await
                    .unwrap();
                second
                    .report_position(&report(
                        CLIENT,
                        PositionEventKind::Increase,
                        id,
                        symbol,
                        side,
                        "0.05",
                        2,
                    ))
                    .await
                    .unwrap();
                if k % 5 == 0 {
                    first
                        .report_position(&report(
                            CLIENT,
                            PositionEventKind::Close,
                            id,
                            symbol,
                            side,
                            "0",
                            3,
                        ))
                        .await
                        .unwrap();
                } else {
                    *net.entry(symbol.to_owned()).or_default() += sign * 5;
                }
            }
            net
        }));
    }
    let mut expected: BTreeMap<String, Decimal> = BTreeMap::new();
    for p in pairs {
        let (x, y) = p.await.unwrap();
        assert_eq!(x.ack, y.ack, "both instances give the one answer");
        assert!(x.replayed != y.replayed, "exactly one of the two stored it");
    }
    for i in 0..60u64 {
        *expected
            .entry(symbols[(i % 2) as usize].to_owned())
            .or_default() += Decimal::new(1, 2);
    }
    for w in workers {
        for (symbol, hundredths) in w.await.unwrap() {
            *expected.entry(symbol).or_default() += Decimal::new(hundredths, 2);
        }
    }
    expected.retain(|_, v| !v.is_zero());

    // Both plans are the same and hold what was acknowledged.
    let (plan_a, plan_b) = (
        a.hedge.plan(HEDGE).await.unwrap(),
        b_hedge.plan(HEDGE).await.unwrap(),
    );
    assert_eq!(
        serde_json::to_value(&plan_a).unwrap(),
        serde_json::to_value(&plan_b).unwrap()
    );
    assert_eq!(exposures(&plan_a), expected);

    // Each subscriber got the whole log, in order.
    let log = event_log(&a.viewer).await;
    assert_eq!(log, event_log(&b_viewer).await);
    assert!(log.windows(2).all(|w| w[0] < w[1]));
    // registrations + 60 pairs stored once + 6 workers × (25 opens, 25 increases, 5 closes)
    assert_eq!(log.len(), 2 + 60 + 6 * 55);
    for (name, sub) in [("a", &mut sub_a), ("b", &mut sub_b)] {
        let mut seen = Vec::new();
        while seen.len() < log.len() {
            let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "instance {name}'s stream stopped after {} events",
                        seen.len()
                    )
                })
                .expect("stream ended")
                .expect("stream failed");
            seen.push(e.id);
        }
        assert_eq!(seen, log, "instance {name} streamed the log in order");
    }
    b.shutdown().await;
    a.finish().await;
}

/// The schema of a PostgreSQL location.
fn schema_of(location: &StoreLocation) -> String {
    match location {
        StoreLocation::Postgres {
            schema: Some(schema),
            ..
        } => schema.clone(),
        other => panic!("not a PostgreSQL schema: {other:?}"),
    }
}

/// Waits until some session is blocked behind session `pid`.
async fn wait_until_blocked_by(watcher: &tokio_postgres::Client, pid: i32) {
    for _ in 0..500 {
        let blocked: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if blocked > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no session ever waited for session {pid}");
}

/// Two instances; a report batch on the first has drawn its event id and cannot commit yet (its
/// idempotency row waits for another transaction holding the same key), while a report on the
/// second draws a higher id and commits. Neither the log nor either instance's stream passes the
/// lower id in flight: the higher event is held back. When the first batch commits, both arrive,
/// in id order, on both streams and in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_wait_for_a_lower_event_id_committed_later() {
    let a = Env::start(Backend::Postgres).await;
    a.register_defaults().await;
    let b = start_at(a.location.clone()).await;
    let b_url = b.url();
    let (b_client, b_viewer) = (
        client_of(&b_url, CLIENT_TOKEN),
        client_of(&b_url, VIEWER_TOKEN),
    );
    let schema = schema_of(&a.location);
    let before = *event_log(&a.viewer).await.last().expect("registrations");
    let mut sub_a = a.viewer.subscribe(Some(before));
    let mut sub_b = b_viewer.subscribe(Some(before));

    let (holder, conn) = tokio_postgres::connect(&pg_conninfo(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL is required: 127.0.0.1:5432, database `test`, or HEDGE_TEST_PG");
    tokio::spawn(conn);
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let slow = open(CLIENT, 1, "EURUSD", Side::Buy, "0.1");
    holder
        .batch_execute(&format!(
            "BEGIN; INSERT INTO {schema}.idempotency (key, payload, response, event_id) \
             VALUES ('{}', 'held', 'held', 0)",
            slow.idempotency_key
        ))
        .await
        .unwrap();
    let a_client = a.client.clone();
    let slow_report = tokio::spawn(async move { a_client.report_position(&slow).await });
    wait_until_blocked_by(&holder, holder_pid).await;

    let fast = tokio::time::timeout(
        Duration::from_secs(10),
        b_client.report_position(&open(CLIENT, 2, "GBPUSD", Side::Sell, "0.2")),
    )
    .await
    .expect("a report on another instance waited for the one in flight")
    .unwrap();
    assert!(!fast.replayed);
    let fast_id = fast.ack.event_id;

    // The higher id is committed, the lower one is not: nobody reads past the lower one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = a
        .viewer
        .events(&PageQuery {
            after: Some(before.get()),
            ..PageQuery::default()
        })
        .await
        .unwrap();
    assert!(page.items.is_empty(), "read past an id in flight: {page:?}");
    assert_eq!(*event_log(&b_viewer).await.last().unwrap(), before);
    for (name, sub) in [("a", &mut sub_a), ("b", &mut sub_b)] {
        if let Ok(e) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            panic!("instance {name} streamed past an id in flight: {e:?}");
        }
    }

    // The holder gives way: the first batch commits, and both events come, lower id first.
    holder.batch_execute("ROLLBACK").await.unwrap();
    let slow = tokio::time::timeout(Duration::from_secs(10), slow_report)
        .await
        .expect("the held report never finished")
        .unwrap()
        .unwrap();
    assert!(!slow.replayed);
    let slow_id = slow.ack.event_id;
    assert!(
        slow_id < fast_id,
        "{slow_id:?} was drawn before {fast_id:?}"
    );
    let log = event_log(&a.viewer).await;
    assert_eq!(log[log.len() - 2..], [slow_id, fast_id]);
    for (name, sub) in [("a", &mut sub_a), ("b", &mut sub_b)] {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let e = tokio::time::timeout(Duration::from_secs(5), sub.next())
                .await
                .unwrap_or_else(|_| panic!("instance {name} streamed {seen:?} and stopped"))
                .expect("stream ended")
                .expect("stream failed");
            seen.push(e.id);
        }
        assert_eq!(seen, [slow_id, fast_id], "instance {name}'s stream");
    }
    b.shutdown().await;
    a.finish().await;
}

fn spawn_center(schema: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hedge-center"))
        .arg("--db")
        .arg(pg_conninfo())
        .arg("--pg-schema")
        .arg(schema)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env(
            "HEDGE_CENTER_TOKENS",
            format!("client:1001={CLIENT_TOKEN},viewer={VIEWER_TOKEN}"),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hedge-center");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| {
            panic!(
                "no address in {line:?}: PostgreSQL is required (127.0.0.1:5432, database `test`)"
            )
        })
        .to_owned();
    (child, url)
}

/// Two center processes on one schema, reports sent to both; one is killed with SIGKILL under
/// load. The other keeps acknowledging, and every report either acknowledged is stored with its
/// first answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_instance_loses_nothing_acknowledged() {
    let (schema, _) = fresh_schema("kill");
    let (mut victim, victim_url) = spawn_center(&schema);
    let (mut survivor, survivor_url) = spawn_center(&schema);
    let acked = Arc::new(parking_lot::Mutex::new(Vec::<(u64, ReportAck, bool)>::new()));
    let start = std::time::Instant::now();
    let kill_at = Duration::from_millis(1500);
    let mut workers = Vec::new();
    for w in 0..16u64 {
        let to_victim = w % 2 == 0;
        let url = if to_victim {
            &victim_url
        } else {
            &survivor_url
        };
        let client =
            CenterClient::with_timeout(url, Some(CLIENT_TOKEN.into()), Duration::from_secs(2))
                .unwrap();
        let acked = acked.clone();
        workers.push(tokio::spawn(async move {
            // The survivor's workers go on for a second after the kill.
            for i in 0.. {
                if start.elapsed() > kill_at + Duration::from_secs(1) {
                    return;
                }
                let id = w * 1_000_000 + i;
                match client
                    .report_position(&open(CLIENT, id, "EURUSD", Side::Buy, "0.01"))
                    .await
                {
                    Ok(outcome) => acked
                        .lock()
                        .push((id, outcome.ack, start.elapsed() > kill_at)),
                    Err(_) if to_victim => return,
                    Err(e) => panic!("the surviving instance failed: {e}"),
                }
            }
        }));
    }
    tokio::time::sleep(kill_at).await;
    victim.kill().unwrap();
    victim.wait().unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().clone();
    let served_after = acked.iter().filter(|(_, _, after)| *after).count();
    assert!(
        acked.len() > 100,
        "too few reports acknowledged: {}",
        acked.len()
    );
    assert!(
        served_after > 0,
        "the surviving instance served nothing after the kill"
    );
    eprintln!(
        "{} reports acknowledged, {served_after} of them after kill -9 of the other instance",
        acked.len()
    );

    let viewer = CenterClient::new(&survivor_url, Some(VIEWER_TOKEN.into())).unwrap();
    let client = CenterClient::new(&survivor_url, Some(CLIENT_TOKEN.into())).unwrap();
    let mut stored = HashSet::new();
    let mut after = None;
    loop {
        let page = viewer
            .positions(&PositionFilter {
                after,
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .unwrap();
        stored.extend(page.items.iter().map(|p| p.position_id.0));
        match page.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    let missing: Vec<_> = acked
        .iter()
        .filter(|(id, _, _)| !stored.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged reports lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    for (id, ack, _) in acked.iter().step_by((acked.len() / 50).max(1)) {
        let again = client
            .report_position(&open(CLIENT, *id, "EURUSD", Side::Buy, "0.01"))
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(&again.ack, ack);
    }
    survivor.kill().unwrap();
    survivor.wait().unwrap();
    drop_schema(&pg_conninfo(), &schema).await;
}
