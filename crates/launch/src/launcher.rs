//! Starting a terminal and waiting for its bridge: the I/O edge of the crate.
//!
//! [`Launcher::start`] installs the bridge Expert Advisor (copied when its source changed, compiled
//! when the `.ex5` is missing or older than the source), writes the start-up files (the one holding
//! the password owner-only) and spawns the terminal. [`RunningTerminal::wait_for`] then races the
//! agent's own "the bridge connected" future against the timeout, the terminal exiting, and the
//! journal reporting a refused login; whatever happens, the file holding the password is removed.

use crate::command::{self, CommandLine, WineMode};
use crate::files::{decode_text, remove_if_exists, utf16le_with_bom, write_private};
use crate::journal::{self, Finding};
use crate::layout::DataFolder;
use crate::secret::Secret;
use crate::startup::{ExpertInputs, StartupConfig, StartupError};
use hedge_domain::Login;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The bridge's MQL5 source, shipped inside the binary so that the agent can install it anywhere.
pub const EA_SOURCE: &str = include_str!("../../../mql5/HedgeBridge.mq5");

/// The environment variable naming the Wine command (default `wine`).
pub const WINE_ENV: &str = "HEDGE_WINE";

/// How often the wait checks the terminal process and its journal.
const POLL: Duration = Duration::from_millis(100);

/// Everything needed to start one terminal for one agent.
#[derive(Debug)]
pub struct LaunchSpec {
    /// `terminal64.exe` (or `terminal.exe`) of a portable installation; one folder per account.
    pub terminal: PathBuf,
    pub login: Login,
    pub password: Secret,
    pub server: String,
    /// The bridge's inputs; `inputs.port` is the agent's listening port.
    pub inputs: ExpertInputs,
    pub wine: WineMode,
    /// The Wine command, from `HEDGE_WINE` or `wine`.
    pub wine_program: PathBuf,
    /// How long to wait for the bridge to connect after the terminal starts.
    pub connect_timeout: Duration,
    /// How long MetaEditor may take to compile the bridge.
    pub compile_timeout: Duration,
    /// The chart the bridge is attached to; empty: pick one the account has ([`chart_symbol_for`]).
    pub chart_symbol: String,
    pub chart_period: String,
    /// `[Common] KeepPrivate`: let the terminal remember the password itself.
    pub keep_private: bool,
    /// MetaEditor, when it is not beside the terminal.
    pub metaeditor: Option<PathBuf>,
}

impl LaunchSpec {
    /// A spec with the defaults: bridge on `127.0.0.1:<agent_port>`, Wine automatic, 120 s to
    /// connect, 120 s to compile, an `M1` chart of a symbol the account has ([`chart_symbol_for`]).
    pub fn new(
        terminal: impl Into<PathBuf>,
        login: Login,
        password: Secret,
        server: impl Into<String>,
        agent_port: u16,
    ) -> Self {
        LaunchSpec {
            terminal: terminal.into(),
            login,
            password,
            server: server.into(),
            inputs: ExpertInputs::for_port(agent_port),
            wine: WineMode::Auto,
            wine_program: std::env::var_os(WINE_ENV)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from("wine"), PathBuf::from),
            connect_timeout: Duration::from_secs(120),
            compile_timeout: Duration::from_secs(120),
            chart_symbol: String::new(),
            chart_period: "M1".to_owned(),
            keep_private: false,
            metaeditor: None,
        }
    }

    pub fn agent_port(&self) -> u16 {
        self.inputs.port
    }
}

/// Why a terminal could not be started or its bridge did not connect. No variant holds the password.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("invalid start-up settings: {0}")]
    Startup(#[from] StartupError),
    #[error("no terminal at {0} (give the path of terminal64.exe in a portable MT5 folder)")]
    TerminalNotFound(PathBuf),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the bridge is not compiled ({binary} missing) and MetaEditor was not found at {metaeditor}"
    )]
    MetaEditorNotFound {
        metaeditor: PathBuf,
        binary: PathBuf,
    },
    #[error("compiling the bridge failed (see {log}): {details}")]
    CompileFailed { log: PathBuf, details: String },
    #[error("cannot start `{program}`: {source}{hint}")]
    Spawn {
        program: String,
        hint: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    NotConnected(Box<Diagnosis>),
}

impl LaunchError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        LaunchError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    /// Whether the trade server refused the login.
    pub fn is_authorization_failure(&self) -> bool {
        matches!(self, LaunchError::NotConnected(d) if d.is_authorization_failure())
    }
}

/// The terminal process at the time of a diagnosis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminalState {
    Running,
    /// Exited with this code (`None` when killed by a signal).
    Exited(Option<i32>),
}

/// Why the bridge has not connected, as far as the process and the logs tell.
#[derive(Clone, Debug)]
pub struct Diagnosis {
    pub login: Login,
    pub server: String,
    pub port: u16,
    pub waited: Duration,
    pub state: TerminalState,
    /// What the terminal's journal and the experts' log say, most telling first.
    pub findings: Vec<Finding>,
    /// Where the terminal's standard output and error went.
    pub output_log: PathBuf,
}

impl Diagnosis {
    pub fn is_authorization_failure(&self) -> bool {
        self.findings.iter().any(Finding::is_authorization_failure)
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_authorization_failure() {
            write!(
                f,
                "login {} on {} failed: the trade server refused it (wrong password, login or server name)",
                self.login, self.server
            )?;
        } else {
            match self.state {
                TerminalState::Exited(Some(code)) => write!(
                    f,
                    "the terminal exited with code {code} before the bridge connected to port {}",
                    self.port
                )?,
                TerminalState::Exited(None) => write!(
                    f,
                    "the terminal was killed before the bridge connected to port {}",
                    self.port
                )?,
                TerminalState::Running => write!(
                    f,
                    "the bridge did not connect to port {} within {:.0?} (the terminal is running)",
                    self.port, self.waited
                )?,
            }
        }
        if !self.findings.is_empty() {
            f.write_str("; the logs say: ")?;
            for (i, finding) in self.findings.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{finding}")?;
            }
        } else {
            write!(
                f,
                "; likely causes: algo trading is disabled in the terminal; the agent's address \
                 127.0.0.1 is not in Tools → Options → Expert Advisors → \"Allow WebRequest for \
                 listed URL\"; the bridge's InpAgentPort is not {}; the login failed (check login, \
                 password and server); another terminal already runs from this folder (MT5 allows \
                 one per folder: use one portable folder per account); the chart symbol does not \
                 exist at this broker (pass --chart-symbol with one from Market Watch)",
                self.port
            )?;
        }
        write!(f, " (terminal output: {})", self.output_log.display())
    }
}

/// Used when nothing better is known: the most common symbol name. At a broker with suffixes
/// (`EURUSD.r`) it does not exist and the terminal opens no chart for the bridge, which the
/// diagnosis names.
pub const FALLBACK_CHART_SYMBOL: &str = "EURUSD";

/// A chart symbol this account's broker has: the first Market Watch symbol the bridge remembered on
/// its last connection, else the symbol of a chart in the terminal's saved profiles, else
/// [`FALLBACK_CHART_SYMBOL`]. A name that could break the start-up file is skipped.
pub fn chart_symbol_for(data: &DataFolder, login: u64) -> String {
    let usable = |name: &str| {
        let name = name.trim();
        (!name.is_empty() && !name.contains(['\r', '\n', '[', ']', '='])).then(|| name.to_owned())
    };
    if let Ok(bytes) = std::fs::read(data.remembered_symbol(login)) {
        if let Some(name) = decode_text(&bytes).lines().next().and_then(usable) {
            return name;
        }
    }
    profile_chart_symbol(&data.chart_profiles_dir())
        .and_then(|name| usable(&name))
        .unwrap_or_else(|| FALLBACK_CHART_SYMBOL.to_owned())
}

/// The `symbol=` of the first chart file (`<profile>/chartNN.chr`, in name order) under `dir`.
fn profile_chart_symbol(dir: &Path) -> Option<String> {
    let mut profiles: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    profiles.sort();
    for profile in profiles {
        let mut charts: Vec<PathBuf> = std::fs::read_dir(&profile)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("chr")))
            .collect();
        charts.sort();
        for chart in charts {
            let Ok(bytes) = std::fs::read(&chart) else {
                continue;
            };
            let text = decode_text(&bytes);
            let found = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("symbol="))
                .map(str::to_owned);
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

/// Starts terminals as a [`LaunchSpec`] says.
#[derive(Debug)]
pub struct Launcher {
    spec: LaunchSpec,
}

impl Launcher {
    pub fn new(spec: LaunchSpec) -> Self {
        Launcher { spec }
    }

    /// Installs and (if needed) compiles the bridge, writes the start-up files and spawns the
    /// terminal. Blocking: it may run MetaEditor for a few seconds.
    pub fn start(self) -> Result<RunningTerminal, LaunchError> {
        let spec = self.spec;
        let terminal = std::fs::canonicalize(&spec.terminal)
            .ok()
            .filter(|p| p.is_file())
            .ok_or_else(|| LaunchError::TerminalNotFound(spec.terminal.clone()))?;
        spec.inputs.validate()?;
        let host_is_windows = cfg!(windows);
        let wine = spec
            .wine
            .applies(&terminal, host_is_windows)
            .then_some(spec.wine_program.as_path());
        let data = DataFolder::portable(&terminal);
        for dir in [
            data.experts_dir(),
            data.presets_dir(),
            data.config_dir(),
            data.journal_dir(),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| LaunchError::io("create the folder", &dir, e))?;
        }

        install_source(&data)?;
        let metaeditor = spec
            .metaeditor
            .clone()
            .unwrap_or_else(|| command::metaeditor_beside(&terminal));
        compile_if_needed(&data, &metaeditor, wine, spec.compile_timeout)?;

        let set_name = spec.inputs.set_file_name();
        let preset = data.preset(&set_name);
        write_private(&preset, &utf16le_with_bom(&spec.inputs.to_set_file()))
            .map_err(|e| LaunchError::io("write the bridge inputs", &preset, e))?;

        let chart_symbol = if spec.chart_symbol.is_empty() {
            chart_symbol_for(&data, spec.login.get())
        } else {
            spec.chart_symbol.clone()
        };
        tracing::info!(symbol = %chart_symbol, "chart for the bridge");
        let ini_path = data.startup_ini(spec.inputs.port);
        {
            let ini = StartupConfig {
                login: spec.login.get(),
                password: &spec.password,
                server: &spec.server,
                keep_private: spec.keep_private,
                expert_parameters: &set_name,
                symbol: &chart_symbol,
                period: &spec.chart_period,
            }
            .to_ini()?;
            let bytes = utf16le_with_bom(ini.as_str());
            let written = write_private(&ini_path, &bytes);
            let mut bytes = bytes;
            bytes.iter_mut().for_each(|b| *b = std::hint::black_box(0));
            written.map_err(|e| LaunchError::io("write the start-up file", &ini_path, e))?;
        }
        drop(spec.password);

        let marks = journal::LogMarks::take(&[&data.journal_dir(), &data.experts_log_dir()]);
        let cmd = command::terminal_command(&terminal, &ini_path, wine);
        let output_log = data.journal_dir().join("hedge-terminal-output.log");
        let child = spawn(&cmd, &output_log, wine.is_some()).inspect_err(|_| {
            let _ = remove_if_exists(&ini_path);
        })?;
        tracing::info!(
            pid = child.id(),
            command = %cmd.display(),
            port = spec.inputs.port,
            "terminal started"
        );
        Ok(RunningTerminal {
            child,
            data,
            secret_files: vec![ini_path],
            marks,
            started: Instant::now(),
            timeout: spec.connect_timeout,
            login: spec.login,
            server: spec.server,
            port: spec.inputs.port,
            output_log,
            exit: None,
        })
    }
}

/// Copies the embedded source into `MQL5/Experts` when it differs, so an unchanged source keeps its
/// modification time and does not trigger a recompile.
fn install_source(data: &DataFolder) -> Result<(), LaunchError> {
    let path = data.ea_source();
    let current = std::fs::read(&path).ok();
    if current.as_deref() != Some(EA_SOURCE.as_bytes()) {
        std::fs::write(&path, EA_SOURCE)
            .map_err(|e| LaunchError::io("install the bridge source", &path, e))?;
        tracing::info!(path = %path.display(), "bridge source installed");
    }
    Ok(())
}

/// Whether the compiled bridge is missing or older than its source.
pub fn needs_compile(source: SystemTime, binary: Option<SystemTime>) -> bool {
    binary.is_none_or(|b| b < source)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn compile_if_needed(
    data: &DataFolder,
    metaeditor: &Path,
    wine: Option<&Path>,
    timeout: Duration,
) -> Result<(), LaunchError> {
    let source = data.ea_source();
    let binary = data.ea_binary();
    let source_time = modified(&source)
        .ok_or_else(|| LaunchError::io("read", &source, std::io::ErrorKind::NotFound.into()))?;
    if !needs_compile(source_time, modified(&binary)) {
        return Ok(());
    }
    if !metaeditor.is_file() {
        if binary.is_file() {
            tracing::warn!(
                metaeditor = %metaeditor.display(),
                "the bridge source is newer than its compiled file but MetaEditor is missing; using the compiled file"
            );
            return Ok(());
        }
        return Err(LaunchError::MetaEditorNotFound {
            metaeditor: metaeditor.to_owned(),
            binary,
        });
    }
    let log = data.compile_log();
    let _ = remove_if_exists(&log);
    let cmd = command::metaeditor_command(metaeditor, &source, &log, wine);
    tracing::info!(command = %cmd.display(), "compiling the bridge");
    let mut child = spawn(
        &cmd,
        &data.journal_dir().join("hedge-metaeditor-output.log"),
        wine.is_some(),
    )?;
    let deadline = Instant::now() + timeout;
    // MetaEditor's exit code is not a reliable success signal; the fresh .ex5 and the log are.
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LaunchError::CompileFailed {
                    log,
                    details: format!("MetaEditor did not finish within {timeout:?}"),
                });
            }
            Err(e) => return Err(LaunchError::io("wait for MetaEditor", metaeditor, e)),
        }
    }
    let fresh = modified(&binary).is_some_and(|b| !needs_compile(source_time, Some(b)));
    if fresh {
        tracing::info!(binary = %binary.display(), "bridge compiled");
        return Ok(());
    }
    let text = std::fs::read(&log)
        .map(|b| crate::files::decode_text(&b))
        .unwrap_or_default();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.to_lowercase().contains("error"))
        .take(5)
        .collect();
    Err(LaunchError::CompileFailed {
        log,
        details: if errors.is_empty() {
            "no compiled file was produced".to_owned()
        } else {
            errors.join(" | ")
        },
    })
}

fn spawn(cmd: &CommandLine, output_log: &Path, wine: bool) -> Result<Child, LaunchError> {
    let out =
        std::fs::File::create(output_log).map_err(|e| LaunchError::io("create", output_log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| LaunchError::io("open", output_log, e))?;
    std::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .current_dir(&cmd.cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            program: cmd.program.to_string_lossy().into_owned(),
            hint: if wine && source.kind() == std::io::ErrorKind::NotFound {
                " (Wine is needed to run a Windows terminal here: install it, set HEDGE_WINE, or pass --no-wine)"
            } else {
                ""
            },
            source,
        })
}

/// A terminal this process started.
#[derive(Debug)]
pub struct RunningTerminal {
    child: Child,
    data: DataFolder,
    secret_files: Vec<PathBuf>,
    /// Where the logs ended at start: only what the terminal writes afterwards is evidence.
    marks: journal::LogMarks,
    started: Instant,
    timeout: Duration,
    login: Login,
    server: String,
    port: u16,
    output_log: PathBuf,
    exit: Option<TerminalState>,
}

impl RunningTerminal {
    /// The process id of the terminal (of `wine` when started through Wine).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The generated files that still hold the password (empty once removed).
    pub fn secret_files(&self) -> &[PathBuf] {
        &self.secret_files
    }

    /// Removes the files holding the password. The terminal reads them only at start-up, so this
    /// is done as soon as the bridge has connected, and on every failure.
    pub fn forget_secrets(&mut self) {
        self.secret_files.retain(|path| match remove_if_exists(path) {
            Ok(()) => false,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove the start-up file holding the password");
                true
            }
        });
    }

    /// The terminal's state now, without blocking.
    pub fn state(&mut self) -> TerminalState {
        if let Some(state) = self.exit {
            return state;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                let state = TerminalState::Exited(status.code());
                self.exit = Some(state);
                state
            }
            Ok(None) | Err(_) => TerminalState::Running,
        }
    }

    /// What the process and the logs say about why the bridge has not connected.
    pub fn diagnose(&mut self) -> Diagnosis {
        let state = self.state();
        let mut findings = self
            .marks
            .read_findings(&[&self.data.journal_dir(), &self.data.experts_log_dir()]);
        findings.sort_by_key(|f| !f.is_authorization_failure());
        findings.dedup();
        Diagnosis {
            login: self.login,
            server: self.server.clone(),
            port: self.port,
            waited: self.started.elapsed(),
            state,
            findings,
            output_log: self.output_log.clone(),
        }
    }

    /// Waits for `connected` (the agent's own "the bridge connected" future, e.g. its listener's
    /// accept) for at most the spec's connect timeout. Fails early when the terminal exits or its
    /// journal reports a refused login. On success the password file is removed; on failure it is
    /// removed too, the terminal is stopped, and the error carries a [`Diagnosis`].
    pub async fn wait_for<T, F: Future<Output = T>>(
        &mut self,
        connected: F,
    ) -> Result<T, LaunchError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        tokio::pin!(connected);
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                value = &mut connected => {
                    self.forget_secrets();
                    tracing::info!(port = self.port, waited = ?self.started.elapsed(), "bridge connected");
                    return Ok(value);
                }
                _ = tick.tick() => {
                    let exited = matches!(self.state(), TerminalState::Exited(_));
                    let refused = self
                        .marks
                        .read_findings(&[&self.data.journal_dir()])
                        .iter()
                        .any(Finding::is_authorization_failure);
                    if exited || refused || tokio::time::Instant::now() >= deadline {
                        return Err(self.fail());
                    }
                }
            }
        }
    }

    fn fail(&mut self) -> LaunchError {
        self.forget_secrets();
        let diagnosis = self.diagnose();
        if diagnosis.state == TerminalState::Running {
            self.stop();
        }
        tracing::error!(%diagnosis, "the bridge did not connect");
        LaunchError::NotConnected(Box::new(diagnosis))
    }

    /// Stops the terminal (kills the process this launcher started) and waits for it. Under Wine
    /// the process is `wine`'s; the Windows process normally ends with it, but Wine may keep it
    /// running in its server, so a user who needs a hard stop uses the tumbler's process kill.
    pub fn stop(&mut self) {
        if self.state() == TerminalState::Running {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exit = Some(TerminalState::Exited(status.code()));
            }
        }
    }
}

impl Drop for RunningTerminal {
    fn drop(&mut self) {
        self.forget_secrets();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_only_when_missing_or_older() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert!(needs_compile(t, None));
        assert!(needs_compile(t, Some(t - Duration::from_secs(1))));
        assert!(!needs_compile(t, Some(t)));
        assert!(!needs_compile(t, Some(t + Duration::from_secs(1))));
    }

    #[test]
    fn the_chart_symbol_is_one_the_account_has() {
        let dir = tempfile::tempdir().unwrap();
        let terminal = dir.path().join("terminal64.exe");
        std::fs::write(&terminal, b"").unwrap();
        let data = DataFolder::portable(&terminal);
        // Nothing known yet: the common name.
        assert_eq!(chart_symbol_for(&data, 7), FALLBACK_CHART_SYMBOL);
        // A saved profile (UTF-16LE, as the terminal writes it) names a suffixed symbol.
        let profile = data.chart_profiles_dir().join("Default");
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::write(
            profile.join("chart01.chr"),
            utf16le_with_bom("<chart>\r\nid=1\r\nsymbol=GBPUSD.r\r\nperiod_type=0\r\n"),
        )
        .unwrap();
        assert_eq!(chart_symbol_for(&data, 7), "GBPUSD.r");
        // What the bridge remembered for this login wins; another login's file does not count.
        let remembered = data.remembered_symbol(7);
        std::fs::create_dir_all(remembered.parent().unwrap()).unwrap();
        std::fs::write(&remembered, b"EURUSD.r\r\n").unwrap();
        assert_eq!(chart_symbol_for(&data, 7), "EURUSD.r");
        assert_eq!(chart_symbol_for(&data, 8), "GBPUSD.r");
        // A name that would inject a setting into the start-up file is not used.
        std::fs::write(&remembered, b"X]\r\n[Common]").unwrap();
        assert_eq!(chart_symbol_for(&data, 7), "GBPUSD.r");
    }

    #[test]
    fn diagnosis_lists_likely_causes_when_the_logs_are_silent() {
        let d = Diagnosis {
            login: Login(5),
            server: "Demo".into(),
            port: 7001,
            waited: Duration::from_secs(30),
            state: TerminalState::Running,
            findings: vec![],
            output_log: PathBuf::from("/x/out.log"),
        };
        let text = d.to_string();
        assert!(text.contains("did not connect to port 7001"));
        assert!(text.contains("algo trading is disabled"));
        assert!(text.contains("Allow WebRequest"));
        let refused = Diagnosis {
            findings: vec![Finding::AuthorizationFailed(
                "'5': authorization on Demo failed".into(),
            )],
            state: TerminalState::Exited(Some(1)),
            ..d
        };
        assert!(refused.is_authorization_failure());
        assert!(refused.to_string().starts_with("login 5 on Demo failed"));
    }
}
