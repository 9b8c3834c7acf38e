//! The dashboard of the real `hedge demo` in headless Chromium: the test starts the binary with a
//! live phase, reads the dashboard address and the operator's token file from its first JSON line,
//! and runs `crates/dashboard/browser-tests/demo.mjs` (playwright-core). The script signs in,
//! checks that positions, the plan and hedges appear and update, pauses and resumes the hedge
//! account and closes a hedge through the UI, and waits for the hedger to carry the close out.
//! The test then checks the same through the API: the command is done, the hedge closed, and the
//! event log names who did each action. Screenshots go to `$HEDGE_ARTIFACTS` (default
//! `target/artifacts/dashboard/demo`).
//!
//! Needs `/usr/bin/chromium` (or `$CHROMIUM`), `node`, and `npm ci` in
//! `crates/dashboard/browser-tests`; without them the test fails and says how to install them.

use hedge_center_api::model::{
    CommandId, CommandStatus, EventKind, HedgeId, HedgeStatus, PageQuery,
};
use hedge_center_api::CenterClient;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Seconds the demo stays up after its scenario; the test stops it as soon as it is done.
const DEMO_SECONDS: &str = "150";

/// Kills the process when dropped, so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The demo's working directory (beside its token file): a killed demo cannot remove it itself.
struct DemoDir(Option<PathBuf>);

impl Drop for DemoDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn require_tools(scripts: &Path) -> PathBuf {
    let how = "install Chromium with `apt-get install -y chromium` and run `npm ci` in crates/dashboard/browser-tests";
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.exists(),
        "{} is missing: {how}",
        chromium.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is not installed: {how}"
    );
    assert!(
        scripts.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed in {}: {how}",
        scripts.display()
    );
    chromium
}

/// The last `n` of `lines`, one per line.
fn last_lines(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Lines of a child's output, read on a thread so the pipe never fills.
fn lines(reader: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn demo_dashboard_in_headless_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scripts = root.join("crates/dashboard/browser-tests");
    let chromium = require_tools(&scripts);
    let artifacts = std::env::var_os("HEDGE_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/artifacts/dashboard/demo"));
    std::fs::create_dir_all(&artifacts).expect("artifacts directory");
    let work = tempfile::tempdir().expect("temp dir");
    // Declared before the demo so that it is dropped after the demo was killed.
    let mut demo_dir = DemoDir(None);

    let mut demo = Command::new(env!("CARGO_BIN_EXE_hedge"))
        .args(["demo", "--json", "--duration", DEMO_SECONDS])
        .current_dir(work.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hedge demo starts");
    let out = lines(demo.stdout.take().expect("stdout"));
    let err = lines(demo.stderr.take().expect("stderr"));
    let mut demo = Running(demo);

    // The first line names the dashboard and the token file.
    let first = out
        .recv_timeout(Duration::from_secs(60))
        .expect("hedge demo prints its first line");
    let first: serde_json::Value = serde_json::from_str(&first)
        .unwrap_or_else(|e| panic!("the first line is not JSON ({e}): {first}"));
    let dashboard = first["dashboard"]
        .as_str()
        .unwrap_or_else(|| panic!("no dashboard in {first}"))
        .to_owned();
    let api_url = first["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no url in {first}"))
        .to_owned();
    let token_file = PathBuf::from(
        first["token_file"]
            .as_str()
            .unwrap_or_else(|| panic!("no token_file in {first}")),
    );
    demo_dir.0 = token_file
        .parent()
        .filter(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("hedge-demo-"))
        })
        .map(Path::to_path_buf);
    let token = std::fs::read_to_string(&token_file)
        .expect("the token file is readable")
        .trim()
        .to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file)
            .expect("token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the token file must be owner-only");
    }

    let mut browser = Command::new("node")
        .arg(scripts.join("demo.mjs"))
        .arg(&dashboard)
        .arg(&token_file)
        .current_dir(&root)
        .env("HEDGE_ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let browser_out = lines(browser.stdout.take().expect("stdout"));
    let browser_err = lines(browser.stderr.take().expect("stderr"));
    let mut browser = Running(browser);

    let started = Instant::now();
    let mut transcript = Vec::new();
    let mut result = None;
    // What the browser script said, kept for the failure message: a CI summary shows the panic
    // and little of what was printed before it.
    let mut browser_said = Vec::new();
    let status = loop {
        while let Ok(line) = browser_out.try_recv() {
            println!("{line}");
            if let Some(json) = line.strip_prefix("RESULT ") {
                result = Some(json.to_owned());
            }
            browser_said.push(line);
        }
        while let Ok(line) = browser_err.try_recv() {
            eprintln!("{line}");
            browser_said.push(line);
        }
        // Keep the demo's pipes drained; its timeline explains a failure.
        while let Ok(line) = out.try_recv() {
            transcript.push(line);
        }
        while let Ok(line) = err.try_recv() {
            transcript.push(line);
        }
        if let Some(s) = browser.0.try_wait().expect("browser status") {
            break s;
        }
        if let Some(s) = demo.0.try_wait().expect("demo status") {
            panic!(
                "hedge demo ended ({s}) before the browser was done:\n{}\nbrowser script:\n{}",
                last_lines(&transcript, 80),
                last_lines(&browser_said, 40)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(140),
            "the browser run takes too long; demo timeline:\n{}\nbrowser script:\n{}",
            last_lines(&transcript, 40),
            last_lines(&browser_said, 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(200));
    while let Ok(line) = browser_out.try_recv() {
        println!("{line}");
        if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(json.to_owned());
        }
        browser_said.push(line);
    }
    while let Ok(line) = browser_err.try_recv() {
        eprintln!("{line}");
        browser_said.push(line);
    }
    if !status.success() {
        while let Ok(line) = out.try_recv() {
            transcript.push(line);
        }
        let timeline = artifacts.join("demo-timeline.jsonl");
        let _ = std::fs::write(&timeline, transcript.join("\n"));
        eprintln!("the whole demo timeline: {}", timeline.display());
        // The browser's own words last: a CI summary keeps the end of the message.
        panic!(
            "the browser checks failed ({status}); demo timeline:\n{}\nbrowser script:\n{}",
            last_lines(&transcript, 40),
            last_lines(&browser_said, 40)
        );
    }
    let result: serde_json::Value =
        serde_json::from_str(&result.expect("the script reports what it did")).expect("JSON");
    let hedge_id = result["hedge_id"].as_u64().expect("hedge_id");
    let command_id = result["command_id"].as_u64().expect("command_id");

    // The same, seen through the API while the demo still runs.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let center = CenterClient::new(api_url, Some(token)).expect("client");
        // The demo's operator split the clients between its two hedge accounts, 60/40.
        let allocations = center.allocations().await.expect("allocations");
        let split: Vec<(u64, String)> = allocations
            .iter()
            .filter(|a| a.client_login.is_none() && a.symbol.is_none())
            .flat_map(|a| &a.weights)
            .map(|w| (w.hedge_login.get(), w.weight.normalize().to_string()))
            .collect();
        assert_eq!(
            split,
            vec![(2001, "0.6".to_owned()), (2002, "0.4".to_owned())],
            "{allocations:?}"
        );
        let command = center
            .command(CommandId(command_id))
            .await
            .expect("the command");
        assert_eq!(command.status, CommandStatus::Done, "{command:?}");
        assert_eq!(command.hedge_id, HedgeId(hedge_id));
        assert!(command.reason.contains("browser test close"));
        let mut after = None;
        let (mut hedge, mut events) = (None, Vec::new());
        loop {
            let page = center
                .hedges(&PageQuery {
                    after,
                    limit: Some(1000),
                    ..PageQuery::default()
                })
                .await
                .expect("hedges");
            hedge = hedge.or_else(|| page.items.into_iter().find(|h| h.id == HedgeId(hedge_id)));
            match page.next_after {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let hedge = hedge.expect("the closed hedge is listed");
        assert_eq!(hedge.status, HedgeStatus::Closed, "{hedge:?}");
        let mut after = None;
        loop {
            let page = center
                .events(&PageQuery {
                    after,
                    limit: Some(1000),
                    ..PageQuery::default()
                })
                .await
                .expect("events");
            events.extend(page.items);
            match page.next_after {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let issued = events
            .iter()
            .find(|e| e.kind == EventKind::CommandIssued && e.data["id"] == command_id)
            .expect("command_issued in the event log");
        let paused = events
            .iter()
            .find(|e| e.kind == EventKind::Paused && e.reason.contains("browser test pause"))
            .expect("the pause in the event log");
        assert!(!issued.actor.is_empty());
        assert_eq!(issued.actor, paused.actor, "both actions by the operator");
        assert!(events
            .iter()
            .any(|e| e.kind == EventKind::CommandDone && e.data["id"] == command_id));
    });
    drop(browser);
    drop(demo);
    drop(demo_dir);
}
