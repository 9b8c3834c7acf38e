//! `docs/manual-session.md`, run: its `sh` blocks in order in one shell, in an empty folder, on
//! free ports, with the built `hedge` first on the `PATH` (blocks marked `sh background` run in
//! the background, as the page tells a reader to give them a terminal of their own). The hedge
//! account must end opposite to the client, as the center's API shows.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DOC: &str = include_str!("../docs/manual-session.md");

/// The page's `sh` blocks in order: (runs in the background, text).
fn blocks(doc: &str) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let mut current: Option<(bool, String)> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) if info.trim() == "sh" || info.trim() == "sh background" => {
                current = Some((info.trim() == "sh background", String::new()));
            }
            (Some(_), Some(_)) => out.extend(current.take()),
            (Some((_, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

/// The whole session as one shell script: background blocks get a log file each.
fn script(blocks: &[(bool, String)]) -> String {
    let mut s = String::from("set -e\n");
    for (i, (background, text)) in blocks.iter().enumerate() {
        if *background {
            s.push_str(&format!("(\n{text}) > background-{i}.log 2>&1 &\n"));
        } else {
            s.push_str(text);
        }
    }
    s
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Stops every process the session started (they share the shell's process group).
struct Session {
    group: u32,
    dir: tempfile::TempDir,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.group)])
            .status();
    }
}

impl Session {
    fn logs(&self) -> String {
        let mut all = String::new();
        let mut entries: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for path in entries
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
        {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            all.push_str(&format!("--- {}\n", path.display()));
            for line in tail.iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }
}

fn get(center_port: u16, path: &str) -> Option<Value> {
    let out = Command::new("curl")
        .args(["-sf", "-H", "Authorization: Bearer try-admin-token-0001"])
        .arg(format!("http://127.0.0.1:{center_port}{path}"))
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Net signed volume per canonical symbol of `items`, from `volume_field`.
fn net(items: &Value, volume_field: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for item in items["items"].as_array().into_iter().flatten() {
        let volume: f64 = item[volume_field]
            .as_str()
            .map(|v| v.parse().unwrap_or(0.0))
            .or_else(|| item[volume_field].as_f64())
            .unwrap_or(0.0);
        let sign = if item["side"] == "sell" { -1.0 } else { 1.0 };
        let symbol = item["symbol"].as_str().unwrap_or_default().to_owned();
        *out.entry(symbol).or_insert(0.0) += sign * volume;
    }
    out.retain(|_, v: &mut f64| v.abs() > 1e-9);
    out
}

#[test]
fn the_manual_session_ends_with_the_hedge_opposite_to_the_client() {
    assert!(
        Command::new("curl")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "the page's commands use curl: install it (apt-get install -y curl)"
    );
    let blocks = blocks(DOC);
    assert!(blocks.len() >= 7, "the page lost its commands: {blocks:?}");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_hedge"))
        .parent()
        .expect("binary folder")
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let center_port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let shell = {
        use std::os::unix::process::CommandExt;
        Command::new("sh")
            .arg("-c")
            .arg(script(&blocks))
            .current_dir(dir.path())
            .env("PATH", path)
            .env("CENTER_PORT", center_port.to_string())
            .env("CLIENT_PORT", free_port().to_string())
            .env("HEDGE_PORT", free_port().to_string())
            .env_remove("HEDGE_CENTER_TOKEN")
            .env_remove("HEDGE_CENTER")
            .env_remove("RUST_LOG")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sh")
    };
    let session = Session {
        group: shell.id(),
        dir,
    };
    let out = shell.wait_with_output().expect("the page's commands");
    assert!(
        out.status.success(),
        "a command of the page failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        session.logs()
    );

    let expected = BTreeMap::from([("EURUSD".to_owned(), 0.2), ("XAUUSD".to_owned(), -0.1)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut clients, mut hedges) = (BTreeMap::new(), BTreeMap::new());
    while Instant::now() < deadline {
        if let (Some(p), Some(h)) = (
            get(center_port, "/v1/positions?login=1001"),
            get(center_port, "/v1/hedges?open=true"),
        ) {
            clients = net(&p, "volume");
            hedges = net(&h, "open_volume");
            let opposite: BTreeMap<String, f64> =
                clients.iter().map(|(s, v)| (s.clone(), -v)).collect();
            if clients == expected && hedges == opposite {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("clients {clients:?}, hedges {hedges:?}\n{}", session.logs());
}
