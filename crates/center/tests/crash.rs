//! `kill -9` of the center under load: after a restart on the same SQLite file every acknowledged
//! report is there, and re-sending it gets the very same answer.

mod common;

use common::*;
use hedge_center_api::model::{PositionFilter, ReportAck};
use hedge_center_api::CenterClient;
use hedge_domain::Side;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn spawn_center(db: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hedge-center"))
        .arg("--db")
        .arg(db)
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
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_report() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let (mut child, url) = spawn_center(&db);
    let client =
        CenterClient::with_timeout(&url, Some(CLIENT_TOKEN.into()), Duration::from_secs(2))
            .unwrap();
    let acked = Arc::new(parking_lot::Mutex::new(Vec::<(u64, ReportAck)>::new()));
    let mut workers = Vec::new();
    for w in 0..16u64 {
        let client = client.clone();
        let acked = acked.clone();
        workers.push(tokio::spawn(async move {
            for i in 0..100_000u64 {
                let id = w * 1_000_000 + i;
                match client
                    .report_position(&open(CLIENT, id, "EURUSD", Side::Buy, "0.01"))
                    .await
                {
                    Ok(outcome) => acked.lock().push((id, outcome.ack)),
                    Err(_) => return,
                }
            }
        }));
    }
    // let the load run, then kill the process without warning
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().clone();
    assert!(
        acked.len() > 100,
        "too few reports before the kill: {}",
        acked.len()
    );
    eprintln!("{} reports acknowledged before kill -9", acked.len());

    let (mut child, url) = spawn_center(&db);
    let viewer = CenterClient::new(&url, Some(VIEWER_TOKEN.into())).unwrap();
    let client = CenterClient::new(&url, Some(CLIENT_TOKEN.into())).unwrap();
    let mut stored = std::collections::HashSet::new();
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
        .filter(|(id, _)| !stored.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged reports lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // the idempotency record survived too: the first answer comes back
    for (id, ack) in acked.iter().step_by((acked.len() / 50).max(1)) {
        let again = client
            .report_position(&open(CLIENT, *id, "EURUSD", Side::Buy, "0.01"))
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(&again.ack, ack);
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
