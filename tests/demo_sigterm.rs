//! `hedge demo` stopped by SIGTERM in its live phase cleans up as on Ctrl-C: the live phase ends,
//! the net table is printed once more, and its temporary folder (dashboard token, databases) is
//! gone.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the demo if the test stops before it does.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigterm_in_the_live_phase_removes_the_temporary_folder() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut demo = Running(
        Command::new(env!("CARGO_BIN_EXE_hedge"))
            .args(["demo", "--json", "--duration", "120"])
            .env("TMPDIR", tmp.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hedge demo"),
    );
    let stdout = demo.0.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut token_file = None;
    for line in lines.by_ref() {
        let line = line.expect("read stdout");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(file) = v["token_file"].as_str() {
            token_file = Some(std::path::PathBuf::from(file));
        }
        if v["kind"] == "live" && v.get("duration_s").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no live phase");
    }
    let token_file = token_file.expect("the token file is named");
    assert!(token_file.starts_with(tmp.path()) && token_file.exists());

    let status = Command::new("kill")
        .args(["-TERM", &demo.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let rest: Vec<serde_json::Value> = lines
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let exit = demo.0.wait().expect("demo exits");
    assert!(exit.success(), "{exit:?}: {rest:#?}");
    assert!(
        rest.iter().any(|v| v["kind"] == "row"),
        "no table after the live phase: {rest:#?}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("read temp dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
