//! The `hedge` binary's answers to a wrong command line: the exact first line of stderr, the exit
//! code, and no `./hedge-state` left in the working folder by a start that was refused.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

/// A terminal path that cannot be started (no `.exe`, so no Wine either).
const TERMINAL: &str = "/nonexistent/mt5/terminal64";

/// Runs `hedge args...` in `dir` with no center or password taken from the test's environment.
fn hedge(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hedge"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("HEDGE_CENTER")
        .env_remove("HEDGE_CENTER_TOKEN")
        .env_remove("HEDGE_PASSWORD")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hedge")
}

fn first_stderr_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Runs a start that must be refused and checks its first stderr line, exit code and that it
/// left no state behind.
fn refused(args: &[&str], env: &[(&str, &str)], line: &str, code: i32) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = hedge(dir.path(), args, env);
    assert_eq!(
        first_stderr_line(&out),
        line,
        "hedge {args:?}; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "hedge {args:?}");
    assert!(
        !dir.path().join("hedge-state").exists(),
        "hedge {args:?} left ./hedge-state behind"
    );
}

#[test]
fn a_login_that_is_not_a_number_is_named() {
    refused(
        &[
            "client", TERMINAL, "abc", "pw", "Srv", ".r", "FOK", "EURUSD",
        ],
        &[],
        "error: login 'abc' is not a number",
        1,
    );
    refused(
        &["hedger", TERMINAL, "abc", "pw", "Srv", ".r", "BOGUS"],
        &[],
        "error: login 'abc' is not a number",
        1,
    );
}

#[test]
fn an_unknown_exec_mode_lists_the_modes() {
    refused(
        &[
            "client", TERMINAL, "1001", "pw", "Srv", ".r", "BOGUS", "EURUSD",
        ],
        &[],
        "error: exec_mode 'BOGUS' must be one of FOK, IOC, RETURN, auto",
        1,
    );
    refused(
        &["tumbler", "--terminal-port", "1", "--login", "1", "--prefix", "-", "--exec-mode", "x"],
        &[],
        "error: invalid value 'x' for '--exec-mode <MODE>': 'x' must be one of FOK, IOC, RETURN, auto",
        2,
    );
}

#[test]
fn a_short_legacy_form_says_what_it_needs() {
    refused(
        &["client", TERMINAL, "1001", "pw"],
        &[],
        "error: invalid arguments: the legacy form is <path> <login> <password> <server> \
         <prefix> <exec_mode> [<symbols>...], got 3 of its 6 values",
        1,
    );
}

#[test]
fn the_legacy_form_alone_says_where_the_center_comes_from() {
    // A terminal that exists, so the start gets as far as the center.
    let mt5 = tempfile::tempdir().expect("temp dir");
    let terminal = mt5.path().join("terminal64");
    std::fs::write(&terminal, "").expect("write terminal");
    refused(
        &["client", terminal.to_str().expect("utf-8 path"), "1001", "-", "Srv", ".r", "FOK"],
        &[("HEDGE_PASSWORD", "pw")],
        "error: nowhere to report to: give --center URL (or set HEDGE_CENTER, or `center = \"URL\"` \
         in ./hedge.toml or the --config file; the token from HEDGE_CENTER_TOKEN or \
         --center-token-file) and/or --legacy-center URL",
        1,
    );
}

fn no_terminal() -> String {
    format!(
        "error: no terminal at {TERMINAL} (give the path of terminal64.exe in a portable MT5 folder)"
    )
}

#[test]
fn the_center_from_the_environment_or_the_working_folder_is_used() {
    // With the center known, the start goes on to the terminal, which does not exist: that error
    // (not the center's) proves the center was found, and no state is created for a failed start.
    let env = [
        ("HEDGE_PASSWORD", "pw"),
        ("HEDGE_CENTER", "http://127.0.0.1:9"),
    ];
    let args = ["client", TERMINAL, "1001", "-", "Srv", ".r", "FOK"];
    let dir = tempfile::tempdir().expect("temp dir");
    let out = hedge(dir.path(), &args, &env);
    assert_eq!(first_stderr_line(&out), no_terminal());
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("hedge-state").exists());

    std::fs::write(
        dir.path().join("hedge.toml"),
        "center = \"http://127.0.0.1:9\"\n",
    )
    .expect("write hedge.toml");
    let out = hedge(dir.path(), &args, &env[..1]);
    assert_eq!(first_stderr_line(&out), no_terminal());
    assert!(!dir.path().join("hedge-state").exists());

    // Every agent checks the terminal's path before it creates its state.
    for role in ["tumbler", "hedger"] {
        refused(
            &[role, TERMINAL, "1001", "-", "Srv", "-", "FOK"],
            &env,
            &no_terminal(),
            1,
        );
    }
}

#[test]
fn a_busy_terminal_port_leaves_no_state() {
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port().to_string();
    for role in ["client", "tumbler", "hedger"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = hedge(
            dir.path(),
            &[
                role,
                "--terminal-port",
                &port,
                "--login",
                "1001",
                "--prefix",
                "-ECN",
                "--exec-mode",
                "auto",
                "--center",
                "http://127.0.0.1:9",
            ],
            &[],
        );
        let line = first_stderr_line(&out);
        assert!(
            line.starts_with(&format!(
                "error: cannot listen for the terminal on 127.0.0.1:{port}"
            )),
            "{role}: {line}"
        );
        assert_eq!(out.status.code(), Some(1), "{role}");
        assert!(!dir.path().join("hedge-state").exists(), "{role}");
    }
}

#[test]
fn a_suffix_may_start_with_a_hyphen() {
    // The suffix is taken; the unknown symbol is what stops the simulator.
    refused(
        &["sim", "--suffix", "-ECN", "--symbols", "DOGEUSD"],
        &[],
        "error: unknown symbol \"DOGEUSD\"; available: EURUSD, GBPUSD, USDJPY, XAUUSD",
        1,
    );
}

fn help(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = hedge(dir.path(), args, &[]);
    assert_eq!(out.status.code(), Some(0), "hedge {args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn help_shows_the_defaults() {
    let hedger = help(&["hedger", "--help"]);
    for default in [
        "[default: trigger]",
        "[default: 5]",
        "[default: 20]",
        "[default: 3]",
        "[default: ./hedge-state]",
        "[default: 127.0.0.1]",
        "[env: HEDGE_CENTER=]",
        "[env: HEDGE_CENTER_TOKEN]",
    ] {
        assert!(hedger.contains(default), "hedger --help lacks {default}");
    }
    let center = help(&["center", "--help"]);
    assert!(center.contains("The dashboard is served at /"), "{center}");
    assert!(center.contains("HEDGE_CENTER_TOKENS="), "{center}");
    let exclude = help(&["ledger", "exclude", "--help"]);
    for line in [
        "add     Hide positions of an account from the ledger",
        "remove  Show hidden positions again",
        "list    Print the exclusions file's entries",
    ] {
        assert!(exclude.contains(line), "{exclude}");
    }
}
