//! The client agents, the tumbler on client A and the copier stand-in it kills; client A's terminal
//! reaches both of its agents through the [`Relay`].

use super::{free_port, CLIENT_A, CLIENT_B};
use crate::relay::Relay;
use crate::timeline::Timeline;
use anyhow::Context;
use hedge_agent_runtime::{AgentArgs, ExecMode, Secret};
use hedge_domain::Login;
use serde_json::json;
use std::path::{Path, PathBuf};

fn agent_args(
    port: u16,
    login: Login,
    affix: &str,
    center: &str,
    token: &str,
    state: &Path,
) -> AgentArgs {
    AgentArgs {
        terminal_port: Some(port),
        login: Some(login.get()),
        prefix: Some(affix.to_owned()),
        exec_mode: Some(ExecMode::Auto),
        center: Some(center.to_owned()),
        center_token: Some(Secret::new(token)),
        state_dir: Some(state.to_owned()),
        // Heartbeats carry the account block and the marks the dashboard shows.
        status_interval: Some(2),
        ..AgentArgs::default()
    }
}

/// The copier stand-in: a harmless long-running program started under the name `javaw.exe`, so the
/// tumbler's kill is a real kill of a real process: a copy of `sleep` on Unix, of the system's
/// `PING.EXE` on Windows (pinging the loopback for ten minutes). `None` where that cannot be done.
pub(super) struct Copier {
    child: tokio::process::Child,
    pid: u32,
    pid_file: PathBuf,
}

/// A program that runs for ten minutes doing nothing harmful, and its arguments.
#[cfg(unix)]
fn long_runner() -> Option<(PathBuf, Vec<&'static str>)> {
    let sleep = ["/bin/sleep", "/usr/bin/sleep"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
    Some((sleep, vec!["600"]))
}

#[cfg(windows)]
fn long_runner() -> Option<(PathBuf, Vec<&'static str>)> {
    let root = std::env::var_os("SystemRoot")?;
    let ping = PathBuf::from(root).join("System32").join("PING.EXE");
    ping.exists()
        .then(|| (ping, vec!["-n", "600", "127.0.0.1"]))
}

/// Starts a program that was written a moment ago. Another thread of this process may fork
/// while the copy's write handle is still open; its child holds that handle until it execs, and
/// until then the kernel refuses to run the file ("text file busy"). That lasts microseconds, so
/// a few short retries get past it.
fn spawn_fresh_executable(exe: &Path, args: &[&str]) -> Option<tokio::process::Child> {
    for _ in 0..50 {
        match tokio::process::Command::new(exe)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => return Some(child),
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the copier stand-in did not start");
                return None;
            }
        }
    }
    tracing::warn!("the copier stand-in stayed busy for a second; running the tumbler dry");
    None
}

fn start_copier(dir: &Path) -> Option<Copier> {
    let (program, args) = long_runner()?;
    let exe = dir.join("javaw.exe");
    // A hard link writes no executable, so no other thread's fork can hold it open for writing;
    // across file systems it falls back to a copy.
    if std::fs::hard_link(&program, &exe).is_err() {
        std::fs::copy(&program, &exe).ok()?;
    }
    let child = spawn_fresh_executable(&exe, &args)?;
    // A pid of 0 names no process (a launcher that handed the program on): nothing to kill.
    let pid = child.id().filter(|pid| *pid != 0)?;
    let pid_file = dir.join("copier.pid");
    std::fs::write(&pid_file, format!("{pid}\n")).ok()?;
    Some(Copier {
        child,
        pid,
        pid_file,
    })
}

/// The agents as tasks, and where their terminals connect.
pub(super) struct Agents {
    pub tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Client A's terminal connects here; the relay streams it to the client agent and the tumbler.
    pub relay: Relay,
    pub port_b: u16,
    pub copier: Option<Copier>,
}

/// Starts the copier stand-in, both client agents and the tumbler.
pub(super) async fn start(
    base: &Path,
    url: &str,
    tokens: &super::center::AgentTokens,
    t: &Timeline,
) -> anyhow::Result<Agents> {
    let copier = start_copier(base);
    let mut tasks = Vec::new();
    let port_a = free_port()?;
    let port_b = free_port()?;
    let port_w = free_port()?;
    for (port, login, affix, token, dir) in [
        (port_a, CLIENT_A, ".r", &tokens.client_a, "a"),
        (port_b, CLIENT_B, "m*", &tokens.client_b, "b"),
    ] {
        tasks.push(tokio::spawn(hedge_agent::client::run(
            hedge_agent::client::ClientArgs {
                agent: agent_args(port, login, affix, url, token, &base.join(dir)),
                legacy_center: None,
                hedge_ratio: None,
                hedge_login: None,
            },
        )));
    }
    let (kill_names, pid_files, dry_run) = match &copier {
        Some(c) => (Vec::new(), vec![c.pid_file.clone()], false),
        None => (vec!["javaw.exe".to_owned()], Vec::new(), true),
    };
    tasks.push(tokio::spawn(hedge_agent::tumbler::run(
        hedge_agent::tumbler::TumblerArgs {
            agent: agent_args(
                port_w,
                CLIENT_A,
                ".r",
                url,
                &tokens.tumbler,
                &base.join("w"),
            ),
            kill: kill_names,
            pid_files,
            symbols: Vec::new(),
            magics: Vec::new(),
            rearm: false,
            dry_run,
            // Client A's own agent registers the account.
            no_register: true,
        },
    )));
    // Client A's terminal streams to both its client agent and the tumbler.
    let relay = Relay::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], port_a)),
        std::net::SocketAddr::from(([127, 0, 0, 1], port_w)),
    )
    .await
    .context("starting the relay for client A's terminal")?;
    match &copier {
        Some(c) => t.emit(
            "copier",
            format!("copier stand-in running as javaw.exe, pid {}", c.pid),
            json!({ "pid": c.pid }),
        ),
        None => t.emit(
            "copier",
            "no `sleep` to stand in for the copier here: the tumbler runs dry",
            json!({}),
        ),
    }
    Ok(Agents {
        tasks,
        relay,
        port_b,
        copier,
    })
}

impl Agents {
    /// Why the agents that already stopped stopped (an agent runs until the demo ends).
    pub(super) async fn failures(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for task in self.tasks.iter_mut().filter(|t| t.is_finished()) {
            match task.await {
                Ok(Ok(())) => out.push("an agent stopped".to_owned()),
                Ok(Err(e)) => out.push(format!("an agent stopped: {e:#}")),
                Err(e) => out.push(format!("an agent task failed: {e}")),
            }
        }
        out
    }
}

/// Waits for the tumbler to kill the copier; true when it did (or there was none to kill).
pub(super) async fn copier_killed(copier: Option<Copier>, t: &Timeline) -> bool {
    let killed_at = std::time::Instant::now();
    let Some(mut c) = copier else {
        return true;
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), c.child.wait()).await {
        Ok(Ok(status)) => {
            t.emit(
                "tumbler",
                format!(
                    "tumbler killed the copier (javaw.exe, pid {}) {:.1} ms after the open; {status}",
                    c.pid,
                    killed_at.elapsed().as_secs_f64() * 1000.0
                ),
                json!({ "pid": c.pid }),
            );
            true
        }
        _ => {
            let _ = c.child.start_kill();
            t.emit(
                "tumbler",
                "the copier was not killed within 10 s",
                json!({}),
            );
            false
        }
    }
}
