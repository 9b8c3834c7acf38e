//! The `hedge` binary starting a terminal from the legacy `<path> <login> <password> <server>`
//! arguments, against the stand-in terminal built by `hedge-launch-standins`: a refused login and a terminal
//! that never connects both end with a clear message and a non-zero exit, and the password appears
//! nowhere in the output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const LOGIN: &str = "5012345";
const SERVER: &str = "Stand-In-Demo";
const PASSWORD: &str = "Corr3ct-h0rse-pw";

/// A stand-in program (`standin-terminal`, `standin-metaeditor`), built beside `hedge` by
/// `cargo test --workspace`.
fn standin(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_hedge"))
        .parent()
        .expect("the binary's folder")
        .to_owned();
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p hedge-launch-standins --bins` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// A portable terminal folder holding the stand-ins as `terminal64.exe` and `metaeditor64.exe`, configured with the account's
/// real password and a behaviour (`never`: log in but never start the bridge).
fn terminal_folder(mode: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mt5-cli-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    install(
        &standin("standin-terminal"),
        &dir.path().join("terminal64.exe"),
    );
    install(
        &standin("standin-metaeditor"),
        &dir.path().join("metaeditor64.exe"),
    );
    std::fs::write(
        dir.path().join("standin.conf"),
        format!("password={PASSWORD}\nmode={mode}\n"),
    )
    .unwrap();
    dir
}

/// Links the program into place (a copy only across file systems): writing an executable while
/// another test thread forks can make its `exec` fail with "text file busy".
fn install(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).expect("install a stand-in");
    }
}

fn run_client(folder: &Path, password: &str, timeout_secs: u64) -> (Output, Duration) {
    let state = folder.join("agent-state");
    let began = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_hedge"))
        .arg("client")
        .arg(folder.join("terminal64.exe"))
        .args([LOGIN, "-", SERVER, "-", "auto", "EURUSD"])
        .args(["--no-wine", "--launch-timeout", &timeout_secs.to_string()])
        .args(["--center", "http://127.0.0.1:9"])
        .arg("--state-dir")
        .arg(&state)
        .args(["--password-env", "HEDGE_TEST_TERMINAL_PASSWORD"])
        .env("HEDGE_TEST_TERMINAL_PASSWORD", password)
        .env("RUST_LOG", "info")
        .output()
        .expect("run hedge client");
    (output, began.elapsed())
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_wrong_password_is_reported_clearly_and_exits_non_zero() {
    let folder = terminal_folder("never");
    let wrong = "Wr0ng-s3cret-pw";
    let (output, took) = run_client(folder.path(), wrong, 60);
    let all = text(&output);
    assert!(!output.status.success(), "must fail: {all}");
    assert!(
        took < Duration::from_secs(30),
        "the refused login must end the wait early, took {took:?}"
    );
    assert!(all.contains("failed"), "{all}");
    assert!(all.to_lowercase().contains("authoriz"), "{all}");
    assert!(!all.contains(wrong), "the password leaked: {all}");
    // The start-up file holding the password is gone.
    let leftovers: Vec<_> = std::fs::read_dir(folder.path().join("Config"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        leftovers
            .iter()
            .all(|p| p.extension().is_none_or(|e| e != "ini")),
        "start-up files left behind: {leftovers:?}"
    );
}

#[test]
fn a_terminal_that_never_connects_times_out_with_likely_causes() {
    let folder = terminal_folder("never");
    let (output, _) = run_client(folder.path(), PASSWORD, 3);
    let all = text(&output);
    assert!(!output.status.success(), "must fail: {all}");
    assert!(
        all.contains("did not connect") || all.contains("likely"),
        "{all}"
    );
    assert!(!all.contains(PASSWORD), "the password leaked: {all}");
}
