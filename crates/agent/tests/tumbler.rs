//! End-to-end: `hedge tumbler` against the simulated terminal kills real processes that this test
//! started under the configured names, and logs their pids; `--dry-run` kills nothing.

mod common;

use common::*;
use hedge_domain::{AccountMarginMode, Magic, Side, Volume};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Captures every log line of this test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        std::io::stderr().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn capture_logs() -> Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let _ = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_env_filter("info")
            .try_init();
        logs
    })
    .clone()
}

/// Starts `sleep 300` under the name `name` (a copy of the sleep binary).
fn start_named(dir: &Path, name: &str) -> Child {
    let target = dir.join(name);
    if !target.exists() {
        let sleep = ["/bin/sleep", "/usr/bin/sleep"]
            .iter()
            .find(|p| Path::new(p).exists())
            .expect("a sleep binary");
        std::fs::copy(sleep, &target).unwrap();
    }
    Command::new(&target).arg("300").spawn().unwrap()
}

fn exited_within(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn tumbler_argv(port: u16, extra: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "--terminal-port",
        &port.to_string(),
        "--login",
        &LOGIN.to_string(),
        "--prefix",
        "-",
        "--exec-mode",
        "auto",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbler_kills_the_named_processes_on_the_first_new_position() {
    let logs = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let center = start_center(dir.path(), 0, false).await;
    let mut java = start_named(dir.path(), "javaw.exe");
    let mut terminal = start_named(dir.path(), "terminal64.exe");
    let mut bystander = start_named(dir.path(), "bystander.exe");
    let port = free_port();
    let state = dir.path().join("state");
    let args = tumbler_args(&tumbler_argv(
        port,
        &[
            "--kill",
            "javaw.exe",
            "--kill",
            "terminal64.exe",
            "--center",
            &center.url(),
            "--center-token",
            TUMBLER_TOKEN,
            "--state-dir",
            state.to_str().unwrap(),
        ],
    ));
    let agent = AgentThread::spawn(move || hedge_agent::tumbler::run(args));
    let sim = start_sim(port, AccountMarginMode::RetailHedging);
    // A position open before the tumbler is armed is not new.
    sim.open(
        "EURUSD",
        Side::Buy,
        Volume(Decimal::new(1, 1)),
        Magic(0),
        "old",
    );
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        java.try_wait().unwrap().is_none(),
        "fired on an old position"
    );

    sim.open(
        "EURUSD",
        Side::Sell,
        Volume(Decimal::new(1, 1)),
        Magic(0),
        "signal",
    );
    assert!(
        exited_within(&mut java, Duration::from_secs(5)),
        "javaw.exe survived"
    );
    assert!(
        exited_within(&mut terminal, Duration::from_secs(5)),
        "terminal64.exe survived"
    );
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "killed an unrelated process"
    );
    let result = tokio::task::spawn_blocking(move || agent.join())
        .await
        .unwrap();
    assert_eq!(result, Ok(()), "the tumbler exits after firing");

    let text = String::from_utf8_lossy(&logs.0.lock()).into_owned();
    for (name, child) in [("javaw.exe", &java), ("terminal64.exe", &terminal)] {
        let line = format!("target_name={name} pid={}", child.id());
        assert!(text.contains(&line), "log lacks {line:?}");
    }
    // Reported to the center (the account's status message names what was killed).
    let api = admin(&center.url());
    let account = eventually("tumbler report", Duration::from_secs(10), || async {
        let a = api.account(LOGIN).await.ok()?;
        a.status
            .as_ref()?
            .message
            .as_ref()?
            .contains("javaw.exe")
            .then_some(a)
    })
    .await;
    let message = account.status.unwrap().message.unwrap();
    assert!(
        message.contains(&format!("javaw.exe:{}", java.id())),
        "{message}"
    );

    bystander.kill().unwrap();
    let _ = bystander.wait();
    sim.stop().await;
    center.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_kills_nothing_and_rearm_keeps_watching() {
    let logs = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut copier = start_named(dir.path(), "dry-copier.exe");
    let port = free_port();
    let args = tumbler_args(&tumbler_argv(
        port,
        &[
            "--kill",
            "dry-copier.exe",
            "--dry-run",
            "--rearm",
            "--magic",
            "77",
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ],
    ));
    let agent = AgentThread::spawn(move || hedge_agent::tumbler::run(args));
    let sim = start_sim(port, AccountMarginMode::RetailHedging);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Magic 5 does not pass the filter; magic 77 does, twice (re-armed).
    sim.open(
        "EURUSD",
        Side::Buy,
        Volume(Decimal::new(1, 1)),
        Magic(5),
        "other",
    );
    let first = sim.open(
        "EURUSD",
        Side::Buy,
        Volume(Decimal::new(1, 1)),
        Magic(77),
        "a",
    );
    let second = sim.open(
        "GBPUSD",
        Side::Sell,
        Volume(Decimal::new(1, 1)),
        Magic(77),
        "b",
    );
    let pid_line = format!("target_name=dry-copier.exe pid={}", copier.id());
    eventually("two dry-run firings", Duration::from_secs(10), || {
        let text = String::from_utf8_lossy(&logs.0.lock()).into_owned();
        let hits = text
            .lines()
            .filter(|l| l.contains("would kill") && l.contains(&pid_line))
            .count();
        async move { (hits >= 2).then_some(()) }
    })
    .await;
    let text = String::from_utf8_lossy(&logs.0.lock()).into_owned();
    assert!(text.contains(&format!("position={}", first.position)));
    assert!(text.contains(&format!("position={}", second.position)));
    assert!(
        copier.try_wait().unwrap().is_none(),
        "dry run killed the process"
    );
    assert!(!agent.is_finished(), "re-armed tumbler must keep running");

    agent.kill();
    copier.kill().unwrap();
    let _ = copier.wait();
    sim.stop().await;
}
