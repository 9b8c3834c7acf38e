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
        // A hard link, not a copy: writing an executable while other test threads fork can make
        // its `exec` fail with "text file busy".
        if std::fs::hard_link(sleep, &target).is_err() {
            std::fs::copy(sleep, &target).unwrap();
        }
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

/// Starts `hedge tumbler` on its own thread, watching the terminal at `port`, with `extra` flags.
fn spawn_tumbler(port: u16, extra: &[&str]) -> AgentThread {
    let args = tumbler_args(&tumbler_argv(port, extra));
    AgentThread::spawn(move || hedge_agent::tumbler::run(args))
}

/// The simulated terminal at `port`, once the tumbler is connected and has taken its snapshot.
async fn armed_terminal(port: u16) -> hedge_sim::SimTerminal {
    let sim = start_sim(port, AccountMarginMode::RetailHedging);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    sim
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
    // A position open before the tumbler is armed is not new. The terminal has it before the
    // tumbler listens, so it is in the first snapshot (opened after the connection, it would be
    // a new position).
    let sim = start_sim(port, AccountMarginMode::RetailHedging);
    sim.open(
        "EURUSD",
        Side::Buy,
        Volume(Decimal::new(1, 1)),
        Magic(0),
        "old",
    );
    let agent = spawn_tumbler(
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
    // Recorded at the center as a `tumbler_fired` event naming what was killed.
    let api = admin(&center.url());
    let reason = first_firing(&api).await.reason;
    for child in [&java, &terminal] {
        assert!(reason.contains(&format!(":{}", child.id())), "{reason}");
    }
    assert!(
        reason.contains(&format!("javaw.exe:{}", java.id())),
        "{reason}"
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
    let agent = spawn_tumbler(
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
    );
    let sim = armed_terminal(port).await;
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

/// The first `tumbler_fired` event the center recorded for `LOGIN`, waited for.
async fn first_firing(
    api: &hedge_center_api::client::CenterClient,
) -> hedge_center_api::model::Event {
    eventually("the firing's event", Duration::from_secs(10), || async {
        let page = api
            .events(&hedge_center_api::model::PageQuery {
                login: Some(LOGIN),
                limit: Some(500),
                ..Default::default()
            })
            .await
            .ok()?;
        page.items
            .into_iter()
            .find(|e| e.kind == hedge_center_api::model::EventKind::TumblerFired)
    })
    .await
}

/// Every firing the center recorded for `LOGIN`: the position of each `tumbler_fired` event that
/// was not a dry run, in order.
async fn reported_positions(api: &hedge_center_api::client::CenterClient) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = api
            .events(&hedge_center_api::model::PageQuery {
                login: Some(LOGIN),
                after,
                limit: Some(500),
                ..Default::default()
            })
            .await
            .unwrap();
        for e in &page.items {
            if e.kind == hedge_center_api::model::EventKind::TumblerFired
                && e.data["dry_run"] == serde_json::Value::Bool(false)
            {
                out.push(e.data["position_id"].to_string());
            }
        }
        match page.next_after {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_tumbler_fires_only_on_positions_it_has_not_seen_and_reports_each_once() {
    let logs = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let center = start_center(dir.path(), 0, false).await;
    let api = admin(&center.url());
    let port = free_port();
    let state = dir.path().join("state");
    let start = || {
        spawn_tumbler(
            port,
            &[
                "--kill",
                "restart-copier.exe",
                "--rearm",
                "--center",
                &center.url(),
                "--center-token",
                TUMBLER_TOKEN,
                "--state-dir",
                state.to_str().unwrap(),
            ],
        )
    };
    let lot = Volume(Decimal::new(1, 1));
    let mut copier = start_named(dir.path(), "restart-copier.exe");
    // Tickets of their own, so the log lines of this test are told apart from the others'. The
    // terminal starts before the tumbler listens, so the "old" position is already in the snapshot
    // the tumbler first sees: opened once the terminal is connected, it would be a new one.
    let sim = {
        let account = hedge_sim::AccountConfig {
            login: LOGIN,
            mode: AccountMarginMode::RetailHedging,
            first_ticket: 7_700_000,
            ..hedge_sim::AccountConfig::default()
        };
        let mut config = hedge_sim::SimConfig::new(format!("127.0.0.1:{port}"), account);
        config.reconnect_min = Duration::from_millis(50);
        config.reconnect_max = Duration::from_millis(300);
        hedge_sim::SimTerminal::spawn(config)
    };
    let old = sim.open("EURUSD", Side::Buy, lot, Magic(0), "old");
    let agent = start();
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = sim.open("EURUSD", Side::Sell, lot, Magic(0), "first");
    assert!(
        exited_within(&mut copier, Duration::from_secs(5)),
        "first signal"
    );
    // The report is with the center before the restart.
    eventually("first report", Duration::from_secs(10), || async {
        let r = reported_positions(&api).await;
        r.contains(&first.position.to_string()).then_some(())
    })
    .await;

    // Restart mid-scenario: the positions already there (the old one and the one it fired on) are
    // not new, so the copier started again survives the reconnection.
    agent.kill();
    let mut copier = start_named(dir.path(), "restart-copier.exe");
    let agent = start();
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    eventually(
        "the restarted tumbler to register",
        Duration::from_secs(10),
        || async {
            let a = api.account(LOGIN).await.ok()?;
            (a.last_seen_ms > 0).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        copier.try_wait().unwrap().is_none(),
        "a restart fired on a position seen before it"
    );
    // The next new position is not missed.
    let second = sim.open("GBPUSD", Side::Buy, lot, Magic(0), "second");
    assert!(
        exited_within(&mut copier, Duration::from_secs(5)),
        "second signal"
    );

    // A position that opens while the tumbler is down is new when it comes back.
    agent.kill();
    let mut copier = start_named(dir.path(), "restart-copier.exe");
    let third = sim.open("XAUUSD", Side::Sell, lot, Magic(0), "while down");
    let agent = start();
    assert!(
        exited_within(&mut copier, Duration::from_secs(10)),
        "missed the position that opened while the tumbler was down"
    );

    let expected: Vec<String> = [&first, &second, &third]
        .iter()
        .map(|r| r.position.to_string())
        .collect();
    let reported = eventually("three reports", Duration::from_secs(10), || async {
        let r = reported_positions(&api).await;
        (r.len() >= 3).then_some(r)
    })
    .await;
    // Give a duplicate the time to show up before concluding there is none.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reported_again = reported_positions(&api).await;
    assert_eq!(reported, expected);
    assert_eq!(reported_again, expected, "a firing was reported twice");
    let text = String::from_utf8_lossy(&logs.0.lock()).into_owned();
    for id in [
        old.position,
        first.position,
        second.position,
        third.position,
    ] {
        let firings = text
            .lines()
            .filter(|l| l.contains("tumbler fired") && l.contains(&format!("position={id} ")))
            .count();
        let want = usize::from(id != old.position);
        assert_eq!(firings, want, "firings on position {id}");
    }

    agent.kill();
    sim.stop().await;
    center.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tumbler_on_a_client_account_leaves_the_clients_registration_alone() {
    let dir = tempfile::tempdir().unwrap();
    let center = start_center(dir.path(), 0, false).await;
    let api = admin(&center.url());
    // The copier's client account, registered by its client agent.
    let client = hedge_center_api::model::AccountRegistration {
        login: LOGIN,
        role: hedge_center_api::model::AccountRole::Client,
        server: "HedgeSim".into(),
        company: String::new(),
        margin_mode: AccountMarginMode::RetailHedging,
        symbol_map: hedge_domain::SymbolMap::identity(),
        hedge_ratio: Decimal::ONE,
        hedge_login: None,
        symbols: Vec::new(),
        currency: "USD".into(),
    };
    api.register_account(&client).await.unwrap();
    // The client agent's status of the account, which a firing must leave alone.
    let client_status = hedge_center_api::model::AccountStatus {
        connected: true,
        message: Some("client agent: 0 positions".into()),
        ..Default::default()
    };
    api.heartbeat(LOGIN, &client_status).await.unwrap();
    let port = free_port();
    let agent = spawn_tumbler(
        port,
        &[
            "--dry-run",
            "--kill",
            "registration-copier.exe",
            "--center",
            &center.url(),
            "--center-token",
            TUMBLER_TOKEN,
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ],
    );
    let sim = armed_terminal(port).await;
    let opened = sim.open(
        "EURUSD",
        Side::Buy,
        Volume(Decimal::new(1, 1)),
        Magic(0),
        "signal",
    );
    // The firing is reported after the registration in the outbox's order, so once it is at the
    // center the registration has been dealt with.
    let firing = first_firing(&api).await;
    assert_eq!(firing.actor, format!("tumbler-{LOGIN}"));
    assert!(
        firing
            .reason
            .starts_with(&format!("tumbler dry run: position #{}", opened.position)),
        "{}",
        firing.reason
    );
    assert_eq!(firing.data["dry_run"], serde_json::Value::Bool(true));
    let account = api.account(LOGIN).await.unwrap();
    assert_eq!(
        account.status.and_then(|s| s.message),
        client_status.message,
        "the firing replaced the client's status message"
    );
    assert_eq!(
        account.registration, client,
        "the tumbler re-registered the client's account"
    );
    let _ = tokio::task::spawn_blocking(move || agent.join()).await;
    sim.stop().await;
    center.shutdown().await;
}
