//! The parts of a soak run: the `hedge` child processes (center and agents), the simulated
//! terminals in this process, and the accounts' layout.
//!
//! Each child writes its log to a file in the run's folder; a killed child is started again with
//! the same arguments and state folder, as a supervisor would after a crash.

use crate::proxy::{Proxy, ProxyFaults};
use crate::script::{AccountRef, Process};
use anyhow::Context;
use hedge_center_api::client::CenterClient;
use hedge_domain::{AccountMarginMode, Login, SymbolMap, Volume};
use hedge_sim::{default_symbols_for, AccountConfig, Faults, FeedConfig, SimConfig, SimTerminal};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A client account of the soak.
#[derive(Clone, Copy, Debug)]
pub struct ClientSpec {
    pub login: u64,
    pub mode: AccountMarginMode,
    /// Naming rule of the broker (`.r` suffix, `m*` prefix...).
    pub affix: &'static str,
    /// Index of the hedge account that covers it.
    pub hedge: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct HedgeSpec {
    pub login: u64,
    pub mode: AccountMarginMode,
    pub affix: &'static str,
}

/// Two hedging clients and a netting one on the first hedge account (a hedging one), a hedging
/// client on the second (a netting one): every combination of account kinds.
pub const CLIENTS: [ClientSpec; 3] = [
    ClientSpec {
        login: 71_001,
        mode: AccountMarginMode::RetailHedging,
        affix: ".r",
        hedge: 0,
    },
    ClientSpec {
        login: 71_002,
        mode: AccountMarginMode::RetailNetting,
        affix: "",
        hedge: 0,
    },
    ClientSpec {
        login: 71_003,
        mode: AccountMarginMode::RetailHedging,
        affix: "m*",
        hedge: 1,
    },
];

pub const HEDGES: [HedgeSpec; 2] = [
    HedgeSpec {
        login: 79_001,
        mode: AccountMarginMode::RetailHedging,
        affix: "-ECN",
    },
    HedgeSpec {
        login: 79_002,
        mode: AccountMarginMode::RetailNetting,
        affix: "",
    },
];

/// The account a copier trades into, watched by the tumbler (not hedged).
pub const COPIER: u64 = 71_009;

/// Faults of the simulated hedge terminals.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TerminalFaults {
    pub requote_rate: f64,
    pub reject_rate: f64,
    pub latency_ms: u64,
    /// Lots the market offers per quote on the first hedge account's XAUUSD: orders beyond it
    /// fill partially (IOC) or not at all (FOK).
    pub thin_liquidity: Option<Volume>,
}

struct Proc {
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

/// Everything running for one soak.
pub struct System {
    exe: PathBuf,
    dir: PathBuf,
    procs: BTreeMap<Process, Proc>,
    center_addr: std::net::SocketAddr,
    pub proxy: Proxy,
    /// Straight to the center (not through the proxy): the soak's own view.
    pub admin: CenterClient,
    pub clients: Vec<Arc<SimTerminal>>,
    pub hedges: Vec<Arc<SimTerminal>>,
    pub copier: Arc<SimTerminal>,
}

fn free_port() -> anyhow::Result<u16> {
    hedge_protocol::free_listen_port().context("no free loopback port")
}

fn secret(name: &str, seed: u64) -> String {
    // Tokens only guard this run's loopback center; unique per run and role is all they need.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("soak-{name}-{seed:x}-{nanos:x}-{}", std::process::id())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// The center's configuration for a soak run: an admin token for the soak itself and one token
/// per agent, each a fresh secret.
struct CenterConfig {
    text: String,
    admin_token: String,
    /// Agent tokens by their name (`client-71001`, `hedger-79001`, ...).
    agent_tokens: BTreeMap<String, String>,
}

impl CenterConfig {
    fn new(dir: &Path, center_addr: std::net::SocketAddr, seed: u64) -> CenterConfig {
        let admin_token = secret("admin", seed);
        let text = format!(
            "db = {:?}\nlisten = \"{center_addr}\"\n\n[[token]]\nname = \"soak\"\nrole = \"admin\"\ntoken = {admin_token:?}\n",
            dir.join("center.db").display().to_string()
        );
        let mut config = CenterConfig {
            text,
            admin_token,
            agent_tokens: BTreeMap::new(),
        };
        for c in &CLIENTS {
            config.add_token(format!("client-{}", c.login), "client", c.login, seed);
        }
        for h in &HEDGES {
            config.add_token(format!("hedger-{}", h.login), "hedge", h.login, seed);
        }
        config.add_token(format!("tumbler-{COPIER}"), "tumbler", COPIER, seed);
        config.add_token(format!("client-{COPIER}"), "client", COPIER, seed);
        config
    }

    fn add_token(&mut self, name: String, role: &str, login: u64, seed: u64) {
        let token = secret(&name, seed);
        self.text.push_str(&format!(
            "\n[[token]]\nname = {name:?}\nrole = {role:?}\nlogin = {login}\ntoken = {token:?}\n"
        ));
        self.agent_tokens.insert(name, token);
    }
}

/// One agent process to start: its command, account, naming rule and extra arguments.
struct AgentLaunch<'a> {
    process: Process,
    kind: &'a str,
    login: u64,
    affix: &'a str,
    token_name: String,
    extra: Vec<String>,
}

impl<'a> AgentLaunch<'a> {
    /// An agent whose token, state folder and log are named `{kind}-{login}`.
    fn new(
        process: Process,
        kind: &'a str,
        login: u64,
        affix: &'a str,
        extra: Vec<String>,
    ) -> AgentLaunch<'a> {
        AgentLaunch {
            process,
            kind,
            login,
            affix,
            token_name: format!("{kind}-{login}"),
            extra,
        }
    }
}

/// The loopback ports the agents listen on for their terminals.
struct AgentPorts {
    clients: Vec<u16>,
    hedges: Vec<u16>,
    tumbler: u16,
}

/// A simulated terminal's configuration for a soak account: its own seed and ticket range, a big
/// balance, a random-walk feed and quick reconnects.
fn sim_config(
    seed: u64,
    port: u16,
    login: u64,
    mode: AccountMarginMode,
    affix: &str,
    n: u64,
) -> SimConfig {
    let account = AccountConfig {
        login: Login(login),
        mode,
        seed: seed.wrapping_mul(31).wrapping_add(n),
        first_ticket: 1_000_000 * (n + 1),
        balance: hedge_domain::Money(Decimal::from(10_000_000)),
        ..AccountConfig::default()
    };
    let mut config = SimConfig::new(format!("127.0.0.1:{port}"), account);
    config.symbols = default_symbols_for(&SymbolMap::from_affix(affix));
    config.feed = FeedConfig::RandomWalk {
        interval: Duration::from_millis(200),
    };
    config.reconnect_max = Duration::from_millis(500);
    config.heartbeat_interval = Duration::from_secs(1);
    config
}

impl System {
    /// Starts the center, the proxy, every agent and every terminal, and waits until each
    /// terminal is connected to its agent.
    pub async fn start(
        exe: PathBuf,
        dir: &Path,
        seed: u64,
        proxy_faults: ProxyFaults,
        terminal_faults: &TerminalFaults,
    ) -> anyhow::Result<System> {
        let center_port = free_port()?;
        let center_addr = std::net::SocketAddr::from(([127, 0, 0, 1], center_port));
        let config = CenterConfig::new(dir, center_addr, seed);
        let config_path = dir.join("center.toml");
        write_private(&config_path, &config.text)?;

        let mut procs = BTreeMap::new();
        procs.insert(
            Process::Center,
            Proc {
                args: vec![
                    "center".into(),
                    "--config".into(),
                    config_path.display().to_string(),
                ],
                log: dir.join("center.log"),
                child: None,
                starts: 0,
            },
        );
        let mut system = System {
            exe,
            dir: dir.to_owned(),
            procs,
            center_addr,
            proxy: Proxy::start(center_addr, proxy_faults, seed).await?,
            admin: CenterClient::new(format!("http://{center_addr}"), Some(config.admin_token))?,
            clients: Vec::new(),
            hedges: Vec::new(),
            copier: Arc::new(SimTerminal::spawn(SimConfig::new(
                "127.0.0.1:9",
                AccountConfig::default(),
            ))),
        };
        system.copier.stop().await;
        system.start_process(Process::Center)?;
        system.wait_center().await?;
        let ports = system.start_agents(&config.agent_tokens)?;
        system.start_terminals(seed, &ports, terminal_faults);
        for t in system.terminals() {
            if !t.wait_connected(Duration::from_secs(30)).await {
                anyhow::bail!(
                    "a simulated terminal could not reach its agent; see the logs in {}",
                    system.dir.display()
                );
            }
        }
        Ok(system)
    }

    /// Starts a client agent per client account, a hedger per hedge account and the tumbler, all
    /// talking to the center through the proxy.
    fn start_agents(
        &mut self,
        agent_tokens: &BTreeMap<String, String>,
    ) -> anyhow::Result<AgentPorts> {
        let mut clients = Vec::new();
        for (i, c) in CLIENTS.iter().enumerate() {
            let hedge_login = vec!["--hedge-login".into(), HEDGES[c.hedge].login.to_string()];
            let launch =
                AgentLaunch::new(Process::Client(i), "client", c.login, c.affix, hedge_login);
            clients.push(self.start_agent(launch, agent_tokens)?);
        }
        let mut hedges = Vec::new();
        for (i, h) in HEDGES.iter().enumerate() {
            let mirror = ["--mode", "mirror", "--reconcile-interval", "1"];
            let extra = mirror.map(String::from).to_vec();
            let launch = AgentLaunch::new(Process::Hedger(i), "hedger", h.login, h.affix, extra);
            hedges.push(self.start_agent(launch, agent_tokens)?);
        }
        let watch_only = [
            "--kill",
            "javaw.exe",
            "--dry-run",
            "--rearm",
            "--no-register",
        ];
        let extra = watch_only.map(String::from).to_vec();
        let launch = AgentLaunch::new(Process::Tumbler, "tumbler", COPIER, "", extra);
        let tumbler = self.start_agent(launch, agent_tokens)?;
        Ok(AgentPorts {
            clients,
            hedges,
            tumbler,
        })
    }

    /// Writes the agent's token file, registers its process and starts it; returns the port it
    /// listens on for its terminal.
    fn start_agent(
        &mut self,
        launch: AgentLaunch<'_>,
        agent_tokens: &BTreeMap<String, String>,
    ) -> anyhow::Result<u16> {
        let port = free_port()?;
        let dir = self.dir.clone();
        let token_file = dir.join(format!("{}.token", launch.token_name));
        write_private(&token_file, &agent_tokens[&launch.token_name])?;
        let state = dir.join(&launch.token_name);
        let affix = if launch.affix.is_empty() {
            "-"
        } else {
            launch.affix
        };
        let mut args: Vec<String> = vec![
            launch.kind.into(),
            "--terminal-port".into(),
            port.to_string(),
            "--login".into(),
            launch.login.to_string(),
            format!("--prefix={affix}"),
            "--exec-mode".into(),
            "auto".into(),
            "--center".into(),
            self.proxy.url(),
            "--center-token-file".into(),
            token_file.display().to_string(),
            "--state-dir".into(),
            state.display().to_string(),
            "--status-interval".into(),
            "2".into(),
        ];
        args.extend(launch.extra);
        self.procs.insert(
            launch.process,
            Proc {
                args,
                log: dir.join(format!("{}.log", launch.token_name)),
                child: None,
                starts: 0,
            },
        );
        self.start_process(launch.process)?;
        Ok(port)
    }

    /// Spawns the simulated terminals: the clients', the hedge accounts' (with the run's faults,
    /// and thin gold liquidity on the first) and the copier's.
    fn start_terminals(&mut self, seed: u64, ports: &AgentPorts, faults: &TerminalFaults) {
        for (i, c) in CLIENTS.iter().enumerate() {
            let config = sim_config(seed, ports.clients[i], c.login, c.mode, c.affix, i as u64);
            self.clients.push(Arc::new(SimTerminal::spawn(config)));
        }
        for (i, h) in HEDGES.iter().enumerate() {
            let n = 10 + i as u64;
            let mut config = sim_config(seed, ports.hedges[i], h.login, h.mode, h.affix, n);
            config.account.faults = Faults {
                requote_rate: faults.requote_rate,
                reject_rate: faults.reject_rate,
                latency_ms: faults.latency_ms,
                disconnect_after: None,
            };
            if i == 0 {
                let gold = SymbolMap::from_affix(h.affix).to_account("XAUUSD");
                for s in config.symbols.iter_mut().filter(|s| s.spec.name == gold) {
                    s.liquidity = faults.thin_liquidity;
                    s.liquidity_left = faults.thin_liquidity;
                }
            }
            self.hedges.push(Arc::new(SimTerminal::spawn(config)));
        }
        self.copier = Arc::new(SimTerminal::spawn(sim_config(
            seed,
            ports.tumbler,
            COPIER,
            AccountMarginMode::RetailHedging,
            "",
            20,
        )));
    }

    fn terminals(&self) -> Vec<Arc<SimTerminal>> {
        let mut all: Vec<_> = self.clients.iter().chain(&self.hedges).cloned().collect();
        all.push(self.copier.clone());
        all
    }

    pub fn terminal(&self, account: AccountRef) -> Arc<SimTerminal> {
        match account {
            AccountRef::Client(i) => self.clients[i % self.clients.len()].clone(),
            AccountRef::Hedge(i) => self.hedges[i % self.hedges.len()].clone(),
            AccountRef::Copier => self.copier.clone(),
        }
    }

    async fn wait_center(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.admin.ready().await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "the center did not come up at {}; see {}",
                    self.center_addr,
                    self.dir.join("center.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn start_process(&mut self, process: Process) -> anyhow::Result<()> {
        let exe = self.exe.clone();
        let p = self
            .procs
            .get_mut(&process)
            .with_context(|| format!("no process {process:?}"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .with_context(|| format!("opening {}", p.log.display()))?;
        let child = Command::new(&exe)
            .args(&p.args)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env("RUST_LOG", "info")
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        p.child = Some(child);
        p.starts += 1;
        Ok(())
    }

    /// `kill -9` of a process (nothing it has not written survives).
    pub async fn kill(&mut self, process: Process) {
        if let Some(p) = self.procs.get_mut(&process) {
            if let Some(mut child) = p.child.take() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }

    /// Starts a killed process again; waits for the center to answer when it is the center.
    pub async fn restart(&mut self, process: Process) -> anyhow::Result<()> {
        if self.procs.get(&process).is_some_and(|p| p.child.is_some()) {
            return Ok(());
        }
        self.start_process(process)?;
        if process == Process::Center {
            self.wait_center().await?;
        }
        Ok(())
    }

    /// Processes that exited on their own (not killed by the soak): a crash is a finding.
    pub fn exited(&mut self) -> Vec<(Process, String)> {
        let mut out = Vec::new();
        for (process, p) in self.procs.iter_mut() {
            if let Some(child) = p.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    out.push((*process, status.to_string()));
                    p.child = None;
                }
            }
        }
        out
    }

    /// How many times each process was started.
    pub fn starts(&self) -> BTreeMap<String, u32> {
        self.procs
            .iter()
            .map(|(k, p)| (format!("{k:?}"), p.starts))
            .collect()
    }

    pub fn folder(&self) -> &Path {
        &self.dir
    }

    /// Stops every terminal and process.
    pub async fn shutdown(&mut self) {
        for t in self.terminals() {
            t.stop().await;
        }
        let all: Vec<Process> = self.procs.keys().copied().collect();
        for p in all {
            self.kill(p).await;
        }
    }
}
