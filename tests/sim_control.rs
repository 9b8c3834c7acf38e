//! Trading by hand into a running `hedge sim` through its control port: each line is answered,
//! canonical symbol names reach the account's decorated ones, a bad line changes nothing, and the
//! agent connected to the simulator sees the trades.

use hedge_protocol::TerminalListener;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the simulator when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => return stream,
            Err(e) if Instant::now() > deadline => panic!("control port {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Sends one control line and returns its answer.
fn send(stream: &mut BufReader<TcpStream>, line: &str) -> String {
    writeln!(stream.get_mut(), "{line}").expect("write control line");
    let mut answer = String::new();
    stream.read_line(&mut answer).expect("read answer");
    answer.trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_typed_into_the_simulator_reach_the_agent() {
    let agent = TerminalListener::bind("127.0.0.1:0").await.expect("bind");
    let agent_addr = agent.local_addr();
    let terminal = agent.start();
    let control_port = free_port();
    let _sim = Running(
        Command::new(env!("CARGO_BIN_EXE_hedge"))
            .args(["sim", "--login", "77", "--suffix", ".r", "--tick-ms", "0"])
            .args(["--connect", &agent_addr.to_string()])
            .args(["--control", &format!("127.0.0.1:{control_port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hedge sim"),
    );
    assert!(terminal.wait_ready(Duration::from_secs(20)).await);

    let mut control = tokio::task::spawn_blocking(move || BufReader::new(connect(control_port)))
        .await
        .expect("connect");
    let (mut control, answers) = tokio::task::spawn_blocking(move || {
        let answers: Vec<String> = [
            "open EURUSD buy 0.1",
            "fly EURUSD",
            "open DOGEUSD buy 1",
            "partial #1 0.04",
            "close #2",
            "quote EURUSD 1.2",
            "positions",
        ]
        .iter()
        .map(|line| send(&mut control, line))
        .collect();
        (control, answers)
    })
    .await
    .expect("control session");
    assert!(
        answers[0].starts_with("ok: retcode 10009"),
        "{}",
        answers[0]
    );
    let position: u64 = answers[0]
        .split_whitespace()
        .skip_while(|w| *w != "position")
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no position in {:?}", answers[0]));
    assert_eq!(
        answers[1],
        "error: unknown action \"fly\"; `help` lists the commands"
    );
    assert_eq!(
        answers[2],
        "error: unknown symbol \"DOGEUSD\"; the account has EURUSD.r, GBPUSD.r, USDJPY.r, XAUUSD.r"
    );
    assert!(
        answers[3].starts_with("ok: retcode 10009"),
        "{}",
        answers[3]
    );
    assert_eq!(
        answers[4],
        "error: no position was opened under that #N here"
    );
    assert_eq!(answers[5], "ok");
    assert!(
        answers[6].starts_with(&format!("ok: {position} buy 0.06 EURUSD.r at ")),
        "{}",
        answers[6]
    );

    // The agent's view follows the account: one EURUSD.r position of 0.06 lots.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let positions = terminal.positions();
        if let [p] = positions.as_slice() {
            if p.symbol == "EURUSD.r" && p.volume.to_string() == "0.06" {
                assert_eq!(p.identifier.0, position);
                break;
            }
        }
        assert!(Instant::now() < deadline, "agent sees {positions:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed =
        tokio::task::spawn_blocking(move || send(&mut control, &format!("close {position}")))
            .await
            .expect("close");
    assert!(closed.starts_with("ok: retcode 10009"), "{closed}");
}
