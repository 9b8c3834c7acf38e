//! The launch path end to end with the stand-in terminal and MetaEditor: files, permissions, the
//! compile-when-needed rule, and each way a start can fail.

mod common;

use common::{listener, TerminalFolder, PASSWORD};
use hedge_launch::{Finding, LaunchError, Launcher, TerminalState};
use std::time::{Duration, Instant, SystemTime};

fn conf(mode: &str) -> String {
    format!("password={PASSWORD}\nmode={mode}\n")
}

#[tokio::test]
async fn wrong_password_fails_fast_and_clearly_without_the_password() {
    let folder = TerminalFolder::new(&conf("never"));
    let (listener, port) = listener().await;
    let wrong = "Wr0ng-s3cret-pw";
    let mut running = Launcher::new(folder.spec(wrong, port, Duration::from_secs(30)))
        .start()
        .unwrap();
    let began = Instant::now();
    let err = running.wait_for(listener.accept()).await.unwrap_err();
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "the journal should end the wait early"
    );
    assert!(err.is_authorization_failure(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("login 5012345 on Stand-In-Demo failed"),
        "{text}"
    );
    assert!(
        text.contains("authorization on Stand-In-Demo failed"),
        "{text}"
    );
    assert!(!text.contains(wrong) && !format!("{err:?}").contains(wrong));
    assert!(
        !folder.startup_ini(port).exists(),
        "the password file must be gone"
    );
    assert!(running.secret_files().is_empty());
    assert!(folder.report().contains("password_ok=false"));
    assert!(!folder.report().contains(wrong));
    // The unauthorised terminal was stopped.
    assert!(matches!(running.state(), TerminalState::Exited(_)));
}

#[tokio::test]
async fn a_terminal_that_never_connects_times_out_with_likely_causes() {
    let folder = TerminalFolder::new(&conf("never"));
    let (listener, port) = listener().await;
    let mut running = Launcher::new(folder.spec(PASSWORD, port, Duration::from_secs(3)))
        .start()
        .unwrap();
    let err = running.wait_for(listener.accept()).await.unwrap_err();
    let LaunchError::NotConnected(d) = &err else {
        panic!("unexpected {err}");
    };
    assert_eq!(d.port, port);
    assert!(d.findings.is_empty(), "{:?}", d.findings);
    let text = err.to_string();
    assert!(
        text.contains(&format!("did not connect to port {port}")),
        "{text}"
    );
    assert!(text.contains("algo trading is disabled"), "{text}");
    assert!(text.contains("Allow WebRequest for listed URL"), "{text}");
    assert!(text.contains("login failed"), "{text}");
    assert!(!folder.startup_ini(port).exists());
    assert!(folder.report().contains("password_ok=true"));
    assert!(matches!(running.state(), TerminalState::Exited(_)));
}

#[tokio::test]
async fn a_refused_socket_is_named_from_the_bridge_log() {
    let folder = TerminalFolder::new(&conf("socket-refused"));
    let (listener, port) = listener().await;
    let mut running = Launcher::new(folder.spec(PASSWORD, port, Duration::from_secs(3)))
        .start()
        .unwrap();
    let err = running.wait_for(listener.accept()).await.unwrap_err();
    let LaunchError::NotConnected(d) = &err else {
        panic!("unexpected {err}");
    };
    assert!(
        d.findings
            .iter()
            .any(|f| matches!(f, Finding::SocketNotAllowed(_))),
        "{:?}",
        d.findings
    );
    assert!(err.to_string().contains("error 4014"), "{err}");
}

#[tokio::test]
async fn a_terminal_that_exits_is_reported_with_its_code() {
    let folder = TerminalFolder::new(&conf("exit"));
    let (listener, port) = listener().await;
    let mut running = Launcher::new(folder.spec(PASSWORD, port, Duration::from_secs(30)))
        .start()
        .unwrap();
    let began = Instant::now();
    let err = running.wait_for(listener.accept()).await.unwrap_err();
    assert!(began.elapsed() < Duration::from_secs(10));
    let text = err.to_string();
    assert!(text.contains("exited with code 3"), "{text}");
    assert!(!folder.startup_ini(port).exists());
}

#[tokio::test]
async fn start_writes_private_files_and_passes_no_password_on_the_command_line() {
    let folder = TerminalFolder::new(&conf("never"));
    let (_listener, port) = listener().await;
    let mut running = Launcher::new(folder.spec(PASSWORD, port, Duration::from_secs(30)))
        .start()
        .unwrap();
    let ini = folder.startup_ini(port);
    assert_eq!(
        running.secret_files(),
        std::slice::from_ref(&std::fs::canonicalize(&ini).unwrap())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ini).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let text = hedge_launch::files::decode_text(&std::fs::read(&ini).unwrap());
    assert!(text.contains(&format!("Password={PASSWORD}\r\n")));
    // Wait until the stand-in has checked everything (it writes its report after the checks).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !folder.report().contains("password_ok") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = folder.report();
    assert!(report.contains("password_ok=true"), "{report}");
    assert!(report.contains(&format!("port={port}")), "{report}");
    assert!(report.contains("argv=/portable /config:Z:\\"), "{report}");
    assert!(!report.contains("Corr3ct"));
    let set = folder
        .path()
        .join("MQL5/Presets")
        .join(format!("HedgeBridge-{port}.set"));
    let set_text = hedge_launch::files::decode_text(&std::fs::read(set).unwrap());
    assert!(set_text.contains(&format!("InpAgentPort={port}\r\n")));
    assert_eq!(
        std::fs::read_to_string(folder.path().join("MQL5/Experts/HedgeBridge.mq5")).unwrap(),
        hedge_launch::EA_SOURCE
    );
    assert!(folder.path().join("MQL5/Experts/HedgeBridge.ex5").is_file());
    running.forget_secrets();
    assert!(!ini.exists());
    running.stop();
}

#[tokio::test]
async fn the_bridge_is_compiled_only_when_missing_or_older() {
    let folder = TerminalFolder::new(&conf("exit"));
    let (_l, port) = listener().await;
    let start = |folder: &TerminalFolder| {
        let mut r = Launcher::new(folder.spec(PASSWORD, port, Duration::from_secs(5)))
            .start()
            .unwrap();
        r.stop();
    };
    start(&folder);
    assert_eq!(folder.metaeditor_runs(), 1);
    start(&folder);
    assert_eq!(
        folder.metaeditor_runs(),
        1,
        "an up-to-date .ex5 is not rebuilt"
    );

    // A newer source (as after an upgrade) is recompiled.
    let source = folder.path().join("MQL5/Experts/HedgeBridge.mq5");
    let binary = folder.path().join("MQL5/Experts/HedgeBridge.ex5");
    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&binary)
        .unwrap()
        .set_modified(old)
        .unwrap();
    start(&folder);
    assert_eq!(folder.metaeditor_runs(), 2);

    // A missing .ex5 is compiled again; a changed source is replaced by the shipped one.
    std::fs::remove_file(&binary).unwrap();
    std::fs::write(&source, "// edited").unwrap();
    start(&folder);
    assert_eq!(folder.metaeditor_runs(), 3);
    assert_eq!(
        std::fs::read_to_string(&source).unwrap(),
        hedge_launch::EA_SOURCE
    );
}

#[tokio::test]
async fn a_failed_compile_is_reported_with_the_log_and_starts_nothing() {
    let folder = TerminalFolder::new(&format!("{}metaeditor=fail\n", conf("never")));
    let (_l, port) = listener().await;
    let err = Launcher::new(folder.spec(PASSWORD, port, Duration::from_secs(5)))
        .start()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LaunchError::CompileFailed { .. }), "{text}");
    assert!(text.contains("error 149"), "{text}");
    assert!(!folder.startup_ini(port).exists());
    assert!(
        folder.report().is_empty(),
        "the terminal must not have started"
    );
}

#[tokio::test]
async fn a_missing_terminal_is_a_clear_error() {
    let folder = TerminalFolder::new(&conf("never"));
    let mut spec = folder.spec(PASSWORD, 1, Duration::from_secs(1));
    spec.terminal = folder.path().join("nope").join("terminal64.exe");
    let err = Launcher::new(spec).start().unwrap_err();
    assert!(matches!(err, LaunchError::TerminalNotFound(_)), "{err}");
}

#[tokio::test]
async fn the_terminal_starts_and_its_bridge_connects_to_the_agent() {
    let folder = TerminalFolder::new(&conf("connect"));
    let listener = hedge_protocol::TerminalListener::bind("127.0.0.1:0")
        .await
        .unwrap();
    let port = listener.local_addr().port();
    let mut running = Launcher::new(folder.spec(PASSWORD, port, Duration::from_secs(30)))
        .start()
        .unwrap();
    let ini = folder.startup_ini(port);
    assert!(
        ini.exists(),
        "the start-up file exists until the bridge connects"
    );
    let terminal = listener.start();
    running
        .wait_for(terminal.ready())
        .await
        .expect("the bridge connects")
        .expect("the handshake completes");
    assert!(
        !ini.exists(),
        "the password file is removed once the bridge connected"
    );
    assert!(running.secret_files().is_empty());
    let hello = terminal.hello().expect("hello");
    assert_eq!(hello.login, hedge_domain::Login(common::LOGIN));
    assert_eq!(hello.server, common::SERVER);
    assert!(!terminal.symbols().is_empty());
    assert_eq!(folder.metaeditor_runs(), 1);

    // The link carries commands: a round trip through the stand-in's bridge.
    let reply = terminal
        .ping(hedge_domain::CmdId::from("launch-ping-1"))
        .await
        .expect("ping");
    assert!(reply.is_done(), "{reply:?}");
    assert_eq!(running.state(), TerminalState::Running);
    terminal.shutdown().await;
    running.stop();
    assert!(matches!(running.state(), TerminalState::Exited(_)));
}

#[tokio::test]
async fn an_earlier_failure_in_the_same_journal_does_not_fail_the_next_start() {
    let folder = TerminalFolder::new(&conf("connect"));
    // First start with a wrong password: the day's journal now holds a refused login.
    let (listener, port) = listener().await;
    let mut refused = Launcher::new(folder.spec("wrong", port, Duration::from_secs(30)))
        .start()
        .unwrap();
    let err = refused.wait_for(listener.accept()).await.unwrap_err();
    assert!(err.is_authorization_failure(), "{err}");
    drop(listener);

    // The same day, the right password: the old journal line must not be taken for this start's.
    let listener = hedge_protocol::TerminalListener::bind("127.0.0.1:0")
        .await
        .unwrap();
    let port = listener.local_addr().port();
    let mut running = Launcher::new(folder.spec(PASSWORD, port, Duration::from_secs(30)))
        .start()
        .unwrap();
    let terminal = listener.start();
    running
        .wait_for(terminal.ready())
        .await
        .expect("the bridge connects")
        .expect("the handshake completes");
    terminal.shutdown().await;
    running.stop();
}
