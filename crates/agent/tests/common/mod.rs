//! Test harness: agents run in their own runtime on their own thread, so stopping one drops every
//! task and socket it had, as a process exit would; the simulator and the center run on the test's
//! runtime, over real loopback sockets.

#![allow(dead_code)]

use clap::Parser;
use hedge_center::auth::{parse_env_tokens, Tokens};
use hedge_center::server::{CenterConfig, CenterHandle, CenterServer};
use hedge_center_api::client::CenterClient;
use hedge_center_api::model::{PositionDetail, PositionEventKind};
use hedge_domain::{AccountMarginMode, Login, PositionId};
use hedge_sim::{AccountConfig, SimConfig, SimTerminal};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

pub const LOGIN: Login = Login(1000);
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";
pub const CLIENT_TOKEN: &str = "client-token-for-tests";
pub const TUMBLER_TOKEN: &str = "tumbler-token-for-tests";

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An agent running on its own thread and runtime.
pub struct AgentThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl AgentThread {
    pub fn spawn<F, Fut>(f: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + 'static,
    {
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let result = rt.block_on(async move {
                tokio::select! {
                    r = f() => r.map_err(|e| format!("{e:#}")),
                    _ = stop_rx => Ok(()),
                }
            });
            // Every task is dropped, as on a crash, but the thread ends only once they are gone:
            // a restarted agent must find the terminal port and its state free, as it would after
            // a real crash (the OS frees them with the process).
            rt.shutdown_timeout(std::time::Duration::from_secs(10));
            result
        });
        AgentThread {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the agent abruptly (every task dropped, as on a crash) and waits for the thread.
    pub fn kill(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the agent to end by itself.
    pub fn join(mut self) -> Result<(), String> {
        self.thread
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or(Ok(()))
    }
}

impl Drop for AgentThread {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

#[derive(Parser)]
struct ClientCli {
    #[command(flatten)]
    args: hedge_agent::client::ClientArgs,
}

#[derive(Parser)]
struct TumblerCli {
    #[command(flatten)]
    args: hedge_agent::tumbler::TumblerArgs,
}

pub fn client_args(argv: &[String]) -> hedge_agent::client::ClientArgs {
    let mut full = vec!["client".to_owned()];
    full.extend_from_slice(argv);
    ClientCli::try_parse_from(full).unwrap().args
}

pub fn tumbler_args(argv: &[String]) -> hedge_agent::tumbler::TumblerArgs {
    let mut full = vec!["tumbler".to_owned()];
    full.extend_from_slice(argv);
    TumblerCli::try_parse_from(full).unwrap().args
}

/// `hedge client --terminal-port PORT --login 1000 --prefix - --exec-mode auto --center URL ...`.
pub fn start_client(port: u16, center_url: &str, state_dir: &Path) -> AgentThread {
    start_client_with(port, center_url, state_dir, &[])
}

/// [`start_client`] with extra arguments.
pub fn start_client_with(
    port: u16,
    center_url: &str,
    state_dir: &Path,
    extra: &[&str],
) -> AgentThread {
    let mut argv: Vec<String> = [
        "--terminal-port",
        &port.to_string(),
        "--login",
        &LOGIN.to_string(),
        "--prefix",
        "-",
        "--exec-mode",
        "auto",
        "--center",
        center_url,
        "--center-token",
        CLIENT_TOKEN,
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--status-interval",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(extra.iter().map(|s| s.to_string()));
    let args = client_args(&argv);
    AgentThread::spawn(move || hedge_agent::client::run(args))
}

pub fn tokens() -> Tokens {
    Tokens::new(
        parse_env_tokens(&format!(
            "admin={ADMIN_TOKEN},client:{LOGIN}={CLIENT_TOKEN},tumbler:{LOGIN}={TUMBLER_TOKEN}"
        ))
        .unwrap(),
    )
}

pub async fn start_center(dir: &Path, port: u16, legacy: bool) -> CenterHandle {
    let mut config = CenterConfig::sqlite(dir.join("center.db"), tokens());
    config.listen = SocketAddr::from(([127, 0, 0, 1], port));
    config.legacy = legacy;
    CenterServer::start(config).await.unwrap()
}

pub fn admin(url: &str) -> CenterClient {
    CenterClient::new(url, Some(ADMIN_TOKEN.to_owned())).unwrap()
}

/// A center, a client agent and its simulated terminal, connected: how most client tests begin.
pub struct Rig {
    pub api: CenterClient,
    pub sim: SimTerminal,
    agent: AgentThread,
    center: CenterHandle,
    _dir: tempfile::TempDir,
}

impl Rig {
    pub async fn start(mode: AccountMarginMode) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let center = start_center(dir.path(), 0, false).await;
        let api = admin(&center.url());
        let port = free_port();
        let agent = start_client(port, &center.url(), &dir.path().join("state"));
        let sim = start_sim(port, mode);
        assert!(sim.wait_connected(Duration::from_secs(10)).await);
        Rig {
            api,
            sim,
            agent,
            center,
            _dir: dir,
        }
    }

    pub async fn stop(self) {
        self.agent.kill();
        self.sim.stop().await;
        self.center.shutdown().await;
    }
}

pub fn start_sim(port: u16, mode: AccountMarginMode) -> SimTerminal {
    let account = AccountConfig {
        login: LOGIN,
        mode,
        ..AccountConfig::default()
    };
    let mut config = SimConfig::new(format!("127.0.0.1:{port}"), account);
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(300);
    config.heartbeat_interval = Duration::from_secs(1);
    SimTerminal::spawn(config)
}

/// Polls `check` until it returns `Some` or the time runs out.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The kinds of a position's history at the center, once it has exactly `n` entries.
pub async fn history_of(
    center: &CenterClient,
    id: PositionId,
    expected: &[PositionEventKind],
) -> PositionDetail {
    let detail = eventually(
        &format!("history of position {id} to be {expected:?}"),
        Duration::from_secs(20),
        || async {
            let d = center.position(LOGIN, id).await.ok()?;
            (d.history.len() >= expected.len()).then_some(d)
        },
    )
    .await;
    let kinds: Vec<PositionEventKind> = detail.history.iter().map(|h| h.kind).collect();
    assert_eq!(kinds, expected, "history of position {id}");
    detail
}
