//! The command line every agent shares, compatible with the legacy agent's
//! `<path> <login> <password> <server> <prefix> <exec_mode> [<symbols>...]`, plus flags for the rest.
//!
//! Two forms are accepted:
//! - the legacy one: `hedge client C:\MT5\terminal64.exe 1001 secret Broker-Demo .r FOK EURUSD`
//!   (the password may be `-` to take it from `--password-env`/`--password-file`/`HEDGE_PASSWORD`);
//! - flags only, for a terminal (or the simulator) that is already running and connects on a port:
//!   `hedge client --terminal-port 5001 --login 1001 --prefix .r --exec-mode auto EURUSD`, where every
//!   positional argument is a symbol.
//!
//! The positional list is told apart by its shape: six or more values whose first looks like a
//! terminal's path, whose second is a number or whose sixth is an execution mode are the legacy
//! form, and a bad login or execution mode there is an error of its own; anything else is a list of
//! symbols. [`AgentArgs::resolve`] merges the command line with the `--config` file into
//! [`AgentSettings`].

use crate::config::{ConfigError, ConfigFile};
use crate::secret::{self, process_list_warning, Secret, SecretError, SecretSource};
use hedge_domain::{Login, OrderFilling, SymbolMap, SymbolMapError, SymbolSpec};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Environment variable consulted for the terminal password when no other source is given.
pub const PASSWORD_ENV: &str = "HEDGE_PASSWORD";
/// Environment variable consulted for the center's bearer token.
pub const CENTER_TOKEN_ENV: &str = "HEDGE_CENTER_TOKEN";
/// Environment variable consulted for the center's URL.
pub const CENTER_ENV: &str = "HEDGE_CENTER";
/// The config file the `hedge` binary's agents read from the working folder when `--config` is
/// not given, so the legacy positional form alone can find the center. Only the binary does
/// (see [`AgentArgs::with_working_folder_config`]): agents run inside `hedge demo` must not pick up
/// a real account's settings from wherever the demo was started.
pub const DEFAULT_CONFIG: &str = "hedge.toml";

/// What an execution mode must be, for messages.
const EXEC_MODES: &str = "must be one of FOK, IOC, RETURN, auto";

/// How orders are filled: a fixed MT5 filling mode, or `auto` (the symbol's allowed mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ExecMode {
    #[default]
    Auto,
    Fixed(OrderFilling),
}

impl ExecMode {
    /// The filling mode to use for `spec`: the fixed one when the symbol allows it, otherwise the
    /// symbol's preferred allowed mode (a disallowed mode is what produces retcode 10030).
    /// BOC applies to limit orders only, so a market order configured with it also gets the
    /// symbol's preferred mode.
    pub fn filling_for(self, spec: &SymbolSpec) -> Option<OrderFilling> {
        match self {
            ExecMode::Auto | ExecMode::Fixed(OrderFilling::Boc) => spec.filling.preferred(),
            ExecMode::Fixed(mode) => spec.filling.choose(Some(mode)),
        }
    }

    /// The fixed mode, if one was configured.
    pub fn fixed(self) -> Option<OrderFilling> {
        match self {
            ExecMode::Auto => None,
            ExecMode::Fixed(mode) => Some(mode),
        }
    }
}

impl FromStr for ExecMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(ExecMode::Auto);
        }
        s.parse::<OrderFilling>()
            .map(ExecMode::Fixed)
            .map_err(|_| format!("'{s}' {EXEC_MODES}"))
    }
}

impl fmt::Display for ExecMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecMode::Auto => f.write_str("auto"),
            ExecMode::Fixed(OrderFilling::Fok) => f.write_str("FOK"),
            ExecMode::Fixed(OrderFilling::Ioc) => f.write_str("IOC"),
            ExecMode::Fixed(OrderFilling::Return) => f.write_str("RETURN"),
            ExecMode::Fixed(OrderFilling::Boc) => f.write_str("BOC"),
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" | "pretty" | "plain" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("not a log format: {other:?} (text or json)")),
        }
    }
}

/// The arguments shared by `hedge client`, `hedge hedger` and `hedge tumbler`. Flatten it into a
/// role's own `clap::Args` struct with `#[command(flatten)]`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AgentArgs {
    /// `<path> <login> <password> <server> <prefix> <exec_mode> [<symbols>...]` (the legacy
    /// form), or only `[<symbols>...]` when --terminal-port, --login, --prefix, --exec-mode are given.
    #[arg(value_name = "ARGS")]
    pub positional: Vec<String>,

    /// Wait for an already running terminal (or `hedge sim`) connecting to this port instead of
    /// starting the terminal at <path>.
    #[arg(long, value_name = "PORT")]
    pub terminal_port: Option<u16>,

    /// Address to listen on for the terminal's connection (the port is --terminal-port's, or any
    /// free one handed to a terminal started from <path>) [default: 127.0.0.1].
    #[arg(long, value_name = "IP")]
    pub listen: Option<IpAddr>,

    /// How to start the terminal at <path> (Wine, timeout, chart, MetaEditor).
    #[command(flatten)]
    pub launch: hedge_launch::cli::LaunchOptions,

    /// Account number (instead of the positional <login>).
    #[arg(long)]
    pub login: Option<u64>,

    /// Trade server name (instead of the positional <server>).
    #[arg(long)]
    pub server: Option<String>,

    /// Terminal executable (instead of the positional <path>).
    #[arg(long, value_name = "FILE")]
    pub path: Option<PathBuf>,

    /// Symbol suffix (`.r`, `-ECN`), or `prefix*suffix` (`m*`, `*.pro`); `-` for none.
    #[arg(long, allow_hyphen_values = true)]
    pub prefix: Option<String>,

    /// FOK, IOC, RETURN, or auto (the symbol's allowed filling mode).
    #[arg(long, value_name = "MODE")]
    pub exec_mode: Option<ExecMode>,

    /// Explicit symbol names, `ACCOUNT=CANONICAL,...` (e.g. `GOLD=XAUUSD`).
    #[arg(long, value_name = "MAP")]
    pub symbol_map: Option<String>,

    /// Read the terminal password from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,

    /// Read the terminal password from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// TOML config file with any of these settings (the command line wins) [default: ./hedge.toml
    /// when it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Base URL of the decision center (`http://127.0.0.1:8080`).
    #[arg(long, env = CENTER_ENV, value_name = "URL")]
    pub center: Option<String>,

    /// Bearer token for the center. Prefer HEDGE_CENTER_TOKEN or --center-token-file: a value
    /// given here is visible in `ps`.
    #[arg(long, env = CENTER_TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    pub center_token: Option<Secret>,

    /// Read the center's bearer token from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub center_token_file: Option<PathBuf>,

    /// Directory for the durable state (outbox and last reported positions) [default:
    /// ./hedge-state].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Log format: text or json [default: text].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Seconds between status lines and heartbeats to the center [default: 5].
    #[arg(long, value_name = "SECS")]
    pub status_interval: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("missing {0}: give it positionally, as a flag or in the config file")]
    Missing(&'static str),
    #[error("invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },
    #[error("{what} '{value}' {problem}")]
    Value {
        what: &'static str,
        value: String,
        problem: &'static str,
    },
    #[error(
        "no terminal: give <path> (with <password> and <server>) to start one, or --terminal-port \
         PORT to wait for a running terminal or `hedge sim`"
    )]
    NoTerminal,
    #[error("no terminal at {} (give the path of terminal64.exe in a portable MT5 folder)", .0.display())]
    NoTerminalAt(PathBuf),
    #[error(transparent)]
    SymbolMap(#[from] SymbolMapError),
}

/// Where the terminal comes from.
#[derive(Clone, Debug)]
pub enum TerminalSource {
    /// A terminal (or the simulator) is already running and connects to `listen`.
    Port { listen: SocketAddr },
    /// Start the terminal at `path`, logged into `login`/`server`; it connects to `listen` (port 0:
    /// any free port, handed to the terminal).
    Launch(LaunchSettings),
}

/// The terminal to start, as the agent's command line and config file give it; the session builds
/// `hedge_launch`'s full `LaunchSpec` (bridge files, ports, timeouts) from it.
#[derive(Clone, Debug)]
pub struct LaunchSettings {
    pub path: PathBuf,
    pub login: Login,
    pub password: Secret,
    pub server: String,
    pub listen: SocketAddr,
    /// Wine, connect timeout, chart symbol, MetaEditor path.
    pub options: hedge_launch::cli::LaunchOptions,
}

/// The decision center to report to.
#[derive(Clone, Debug)]
pub struct CenterSettings {
    pub url: String,
    pub token: Option<Secret>,
}

/// Everything an agent needs, resolved from the command line, the config file and the defaults.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub login: Login,
    pub terminal: TerminalSource,
    pub server: Option<String>,
    /// The prefix/suffix as given (`.r`), for registration.
    pub prefix: String,
    pub symbol_map: SymbolMap,
    pub exec_mode: ExecMode,
    /// Canonical symbols to watch; empty means all.
    pub symbols: Vec<String>,
    pub center: Option<CenterSettings>,
    pub state_dir: PathBuf,
    pub log_format: LogFormat,
    pub status_interval: Duration,
    /// The config file, for role sections.
    pub config: ConfigFile,
    /// Warnings to log once logging is up (a password visible in `ps`).
    pub warnings: Vec<String>,
}

impl AgentSettings {
    /// The state database of `role` for this account (`<state_dir>/<role>-<login>.db`).
    pub fn state_path(&self, role: &str) -> PathBuf {
        self.state_dir.join(format!("{role}-{}.db", self.login))
    }

    /// What opening the state of `role` is about to create, so that a start failing right after
    /// (its terminal port taken, its terminal not starting) can take it away again.
    pub fn new_state(&self, role: &str) -> NewState {
        let db = self.state_path(role);
        NewState {
            dir: (!self.state_dir.exists()).then(|| self.state_dir.clone()),
            db: (!db.exists()).then_some(db),
        }
    }

    /// Whether `canonical` is one of the watched symbols (all are when none were given).
    pub fn watches(&self, canonical: &str) -> bool {
        self.symbols.is_empty() || self.symbols.iter().any(|s| s == canonical)
    }

    /// Logs the warnings collected while resolving.
    pub fn log_warnings(&self) {
        for w in &self.warnings {
            tracing::warn!("{w}");
        }
    }
}

/// The state directory and database a start created (see [`AgentSettings::new_state`]).
#[derive(Debug)]
pub struct NewState {
    dir: Option<PathBuf>,
    db: Option<PathBuf>,
}

impl NewState {
    /// Removes what the failed start created: the database with SQLite's side files, and the
    /// directory when it is empty then (never anything that was there before).
    pub fn undo(self) {
        if let Some(db) = &self.db {
            for side in ["", "-wal", "-shm", "-journal"] {
                let mut path = db.clone().into_os_string();
                path.push(side);
                let _ = std::fs::remove_file(path);
            }
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The legacy form's positional fields, when the positional list has that shape.
struct LegacyForm<'a> {
    path: &'a str,
    login: Login,
    password: &'a str,
    server: &'a str,
    prefix: &'a str,
    exec_mode: ExecMode,
    symbols: &'a [String],
}

/// Whether `value` reads as a terminal's path rather than a symbol: symbol names have no path
/// separator and do not end in `.exe`.
fn looks_like_path(value: &str) -> bool {
    value.contains(['/', '\\']) || value.to_ascii_lowercase().ends_with(".exe")
}

/// The legacy form's fields when the positional list has that shape, `None` when it is a list of
/// symbols. A list with the shape but a bad login or execution mode is an error naming that value:
/// taking it as symbols would only say, much later, that the login is missing.
fn legacy_form(positional: &[String]) -> Result<Option<LegacyForm<'_>>, ArgsError> {
    let Some(first) = positional.first() else {
        return Ok(None);
    };
    let login = positional.get(1).map(|v| v.trim().parse::<Login>());
    let exec_mode = positional.get(5).map(|v| v.parse::<ExecMode>());
    let path_like = looks_like_path(first);
    if positional.len() < 6 {
        return match path_like {
            true => Err(ArgsError::Invalid {
                what: "arguments",
                message: format!(
                    "the legacy form is <path> <login> <password> <server> <prefix> \
                     <exec_mode> [<symbols>...], got {} of its 6 values",
                    positional.len()
                ),
            }),
            false => Ok(None),
        };
    }
    if !(path_like || matches!(login, Some(Ok(_))) || matches!(exec_mode, Some(Ok(_)))) {
        return Ok(None);
    }
    let login = match login {
        Some(Ok(login)) => login,
        _ => {
            return Err(ArgsError::Value {
                what: "login",
                value: positional[1].clone(),
                problem: "is not a number",
            })
        }
    };
    let exec_mode = match exec_mode {
        Some(Ok(mode)) => mode,
        _ => {
            return Err(ArgsError::Value {
                what: "exec_mode",
                value: positional[5].clone(),
                problem: EXEC_MODES,
            })
        }
    };
    Ok(Some(LegacyForm {
        path: &positional[0],
        login,
        password: &positional[2],
        server: &positional[3],
        prefix: &positional[4],
        exec_mode,
        symbols: &positional[6..],
    }))
}

fn non_empty(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

fn validate_symbol(symbol: &str) -> Result<String, ArgsError> {
    let s = symbol.trim();
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_graphic() && c != '=' && c != ',');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ArgsError::Invalid {
            what: "symbol",
            message: format!("{symbol:?} is not a symbol name"),
        })
    }
}

impl AgentArgs {
    /// Merges the command line with the config file (command line first) and the defaults.
    pub fn resolve(&self) -> Result<AgentSettings, ArgsError> {
        let config = match &self.config {
            Some(path) => ConfigFile::load(path)?,
            None => ConfigFile::default(),
        };
        let settings = self.resolve_with(config)?;
        // Checked as the launcher checks it, but before any agent creates its state: a wrong path
        // is the commonest failed start, and it must leave nothing behind.
        if let TerminalSource::Launch(spec) = &settings.terminal {
            if !std::fs::canonicalize(&spec.path).is_ok_and(|p| p.is_file()) {
                return Err(ArgsError::NoTerminalAt(spec.path.clone()));
            }
        }
        Ok(settings)
    }

    /// `./hedge.toml` as the config file when none was given and it exists.
    pub fn with_working_folder_config(mut self) -> Self {
        let default = std::path::Path::new(DEFAULT_CONFIG);
        if self.config.is_none() && default.is_file() {
            self.config = Some(default.to_owned());
        }
        self
    }

    /// As [`AgentArgs::resolve`], with an already loaded config file.
    pub fn resolve_with(&self, config: ConfigFile) -> Result<AgentSettings, ArgsError> {
        let mut warnings = Vec::new();
        let legacy = legacy_form(&self.positional)?;
        let legacy = legacy.as_ref();
        let login = self.login_from(legacy, &config)?;
        let prefix = self
            .prefix
            .clone()
            .or(legacy.map(|p| p.prefix.to_owned()))
            .or(config.prefix.clone())
            .ok_or(ArgsError::Missing("<prefix>"))?;
        let exec_mode = self.exec_mode_from(legacy, &config)?;
        let mut symbol_map = SymbolMap::from_affix(&prefix);
        if let Some(explicit) = self.symbol_map.as_ref().or(config.symbol_map.as_ref()) {
            symbol_map = symbol_map.with_explicit(explicit)?;
        }
        let positional_symbols: &[String] = match legacy {
            Some(p) => p.symbols,
            None => &self.positional,
        };
        let symbols = if positional_symbols.is_empty() {
            config.symbols.clone()
        } else {
            positional_symbols.to_vec()
        }
        .iter()
        .map(|s| validate_symbol(s))
        .collect::<Result<Vec<_>, _>>()?;
        let server = self
            .server
            .clone()
            .or(legacy.and_then(|p| non_empty(p.server).map(str::to_owned)))
            .or(config.server.clone());
        let terminal = self.terminal_source(legacy, &config, login, &server, &mut warnings)?;
        let center = self.center_settings(&config, &mut warnings)?;
        let state_dir = self
            .state_dir
            .clone()
            .or(config.state_dir.clone())
            .unwrap_or_else(|| PathBuf::from("hedge-state"));
        let log_format = match (self.log_format, &config.log_format) {
            (Some(f), _) => f,
            (None, Some(text)) => text.parse().map_err(|message| ArgsError::Invalid {
                what: "log_format",
                message,
            })?,
            (None, None) => LogFormat::Text,
        };
        let secs = self
            .status_interval
            .or(config.status_interval_secs)
            .unwrap_or(5)
            .clamp(1, 3600);

        Ok(AgentSettings {
            login,
            terminal,
            server,
            prefix,
            symbol_map,
            exec_mode,
            symbols,
            center,
            state_dir,
            log_format,
            status_interval: Duration::from_secs(secs),
            config,
            warnings,
        })
    }

    /// The account number: `--login`, the legacy form's, or the config file's; never 0.
    fn login_from(
        &self,
        legacy: Option<&LegacyForm<'_>>,
        config: &ConfigFile,
    ) -> Result<Login, ArgsError> {
        let login = self
            .login
            .map(Login)
            .or(legacy.map(|p| p.login))
            .or(config.login.map(Login))
            .ok_or(ArgsError::Missing("<login>"))?;
        if login.get() == 0 {
            return Err(ArgsError::Invalid {
                what: "login",
                message: "0 is not an account number".into(),
            });
        }
        Ok(login)
    }

    fn exec_mode_from(
        &self,
        legacy: Option<&LegacyForm<'_>>,
        config: &ConfigFile,
    ) -> Result<ExecMode, ArgsError> {
        match (self.exec_mode, legacy, &config.exec_mode) {
            (Some(m), _, _) => Ok(m),
            (None, Some(p), _) => Ok(p.exec_mode),
            (None, None, Some(text)) => {
                text.parse::<ExecMode>()
                    .map_err(|message| ArgsError::Invalid {
                        what: "exec_mode",
                        message,
                    })
            }
            (None, None, None) => Err(ArgsError::Missing("<exec_mode>")),
        }
    }

    /// Where the terminal comes from: one connecting to `--terminal-port`, or one to start from
    /// its path (which needs the password and the server).
    fn terminal_source(
        &self,
        legacy: Option<&LegacyForm<'_>>,
        config: &ConfigFile,
        login: Login,
        server: &Option<String>,
        warnings: &mut Vec<String>,
    ) -> Result<TerminalSource, ArgsError> {
        let path = self
            .path
            .clone()
            .or(legacy.and_then(|p| non_empty(p.path).map(PathBuf::from)))
            .or(config.path.clone());
        let listen_ip = match (self.listen, &config.listen) {
            (Some(ip), _) => ip,
            (None, Some(text)) => text.parse::<IpAddr>().map_err(|e| ArgsError::Invalid {
                what: "listen",
                message: format!("{text:?}: {e}"),
            })?,
            (None, None) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let port = self.terminal_port.or(config.terminal_port);
        let terminal = match (port, path) {
            (Some(port), _) => TerminalSource::Port {
                listen: SocketAddr::new(listen_ip, port),
            },
            (None, Some(path)) => {
                let password = self.password(legacy, config, warnings)?;
                let server = server.clone().ok_or(ArgsError::Missing("<server>"))?;
                TerminalSource::Launch(LaunchSettings {
                    path,
                    login,
                    password,
                    server,
                    listen: SocketAddr::new(listen_ip, 0),
                    options: self.launch.clone(),
                })
            }
            (None, None) => return Err(ArgsError::NoTerminal),
        };
        // A password typed on the command line is visible even when it is not needed (--terminal-port).
        if let (TerminalSource::Port { .. }, Some(p)) = (&terminal, legacy) {
            if p.password != "-" && !p.password.is_empty() {
                warnings.push(process_list_warning("terminal password"));
            }
        }
        Ok(terminal)
    }

    /// The center to report to, if any: its URL (http or https) and bearer token.
    fn center_settings(
        &self,
        config: &ConfigFile,
        warnings: &mut Vec<String>,
    ) -> Result<Option<CenterSettings>, ArgsError> {
        let center = match self.center.clone().or(config.center.clone()) {
            None => None,
            Some(url) => {
                let url = url.trim().trim_end_matches('/').to_owned();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ArgsError::Invalid {
                        what: "center URL",
                        message: format!("{url:?} does not start with http:// or https://"),
                    });
                }
                let token = self.center_token(config)?;
                Some(CenterSettings { url, token })
            }
        };
        if self.center_token.is_some() && std::env::var_os(CENTER_TOKEN_ENV).is_none() {
            warnings.push(process_list_warning("center token"));
        }
        Ok(center)
    }

    fn password(
        &self,
        legacy: Option<&LegacyForm<'_>>,
        config: &ConfigFile,
        warnings: &mut Vec<String>,
    ) -> Result<Secret, ArgsError> {
        if let Some(var) = &self.password_env {
            return Ok(secret::from_env(var)?);
        }
        if let Some(path) = &self.password_file {
            return Ok(secret::from_file(path)?);
        }
        if let Some(p) = legacy {
            if p.password != "-" && !p.password.is_empty() {
                warnings.push(process_list_warning("terminal password"));
                return Ok(Secret::new(p.password));
            }
        }
        if let Some(var) = &config.password_env {
            return Ok(secret::from_env(var)?);
        }
        if let Some(path) = &config.password_file {
            return Ok(secret::from_file(path)?);
        }
        if let Some(secret) = &config.password {
            if secret.is_empty() {
                return Err(SecretError::Empty(SecretSource::ConfigFile(
                    config.source.clone().unwrap_or_default(),
                ))
                .into());
            }
            return Ok(secret.clone());
        }
        if std::env::var_os(PASSWORD_ENV).is_some() {
            return Ok(secret::from_env(PASSWORD_ENV)?);
        }
        Err(ArgsError::Missing(
            "<password> (or --password-env, --password-file, HEDGE_PASSWORD)",
        ))
    }

    fn center_token(&self, config: &ConfigFile) -> Result<Option<Secret>, ArgsError> {
        if let Some(token) = &self.center_token {
            return Ok(Some(token.clone()));
        }
        if let Some(path) = self
            .center_token_file
            .as_ref()
            .or(config.center_token_file.as_ref())
        {
            return Ok(Some(secret::from_file(path)?));
        }
        if let Some(var) = &config.center_token_env {
            return Ok(Some(secret::from_env(var)?));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn filling_never_picks_a_mode_the_symbol_refuses() {
        let mut spec = SymbolSpec::forex("EURUSD", 5);
        spec.filling = hedge_domain::FillingModes {
            ioc: true,
            ..hedge_domain::FillingModes::default()
        };
        for mode in [
            ExecMode::Auto,
            ExecMode::Fixed(OrderFilling::Fok),
            ExecMode::Fixed(OrderFilling::Return),
            ExecMode::Fixed(OrderFilling::Boc),
        ] {
            assert_eq!(mode.filling_for(&spec), Some(OrderFilling::Ioc), "{mode}");
        }
        spec.filling = hedge_domain::FillingModes::ALL;
        assert_eq!(
            ExecMode::Fixed(OrderFilling::Return).filling_for(&spec),
            Some(OrderFilling::Return)
        );
        assert_eq!(ExecMode::Auto.filling_for(&spec), Some(OrderFilling::Fok));
        assert_eq!(
            ExecMode::Fixed(OrderFilling::Boc).filling_for(&spec),
            Some(OrderFilling::Fok)
        );
        assert_eq!(
            "ioc".parse::<ExecMode>(),
            Ok(ExecMode::Fixed(OrderFilling::Ioc))
        );
        assert_eq!("AUTO".parse::<ExecMode>(), Ok(ExecMode::Auto));
        assert!("market".parse::<ExecMode>().is_err());
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: AgentArgs,
    }

    fn parse(argv: &[&str]) -> AgentArgs {
        let mut full = vec!["agent"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap().args
    }

    #[test]
    fn legacy_form_is_understood() {
        let a = parse(&[
            "C:/MT5/terminal64.exe",
            "1001",
            "pw",
            "Broker-Demo",
            ".r",
            "FOK",
            "EURUSD",
            "XAUUSD",
        ]);
        let s = a.resolve_with(ConfigFile::default()).unwrap();
        assert_eq!(s.login, Login(1001));
        assert_eq!(s.exec_mode, ExecMode::Fixed(OrderFilling::Fok));
        assert_eq!(s.symbols, vec!["EURUSD", "XAUUSD"]);
        assert_eq!(s.symbol_map.to_account("EURUSD"), "EURUSD.r");
        match &s.terminal {
            TerminalSource::Launch(l) => {
                assert_eq!(l.password.expose(), "pw");
                assert_eq!(l.server, "Broker-Demo");
                assert_eq!(l.listen.port(), 0);
            }
            other => panic!("expected launch, got {other:?}"),
        }
        assert_eq!(s.warnings.len(), 1);
        assert!(!s.warnings[0].contains("pw "));
        assert!(!format!("{s:?}").contains("\"pw\""));
    }

    #[test]
    fn flag_form_with_terminal_port() {
        let a = parse(&[
            "--terminal-port",
            "5001",
            "--login",
            "1001",
            "--prefix",
            ".r",
            "--exec-mode",
            "auto",
            "EURUSD",
        ]);
        let s = a.resolve_with(ConfigFile::default()).unwrap();
        assert_eq!(s.exec_mode, ExecMode::Auto);
        assert_eq!(s.symbols, vec!["EURUSD"]);
        assert!(s.warnings.is_empty());
        match s.terminal {
            TerminalSource::Port { listen } => assert_eq!(listen.to_string(), "127.0.0.1:5001"),
            other => panic!("expected port, got {other:?}"),
        }
        assert_eq!(
            s.state_path("client"),
            PathBuf::from("hedge-state/client-1001.db")
        );
    }

    #[test]
    fn legacy_form_with_terminal_port_ignores_path() {
        let a = parse(&["--terminal-port", "5002", "x", "7", "-", "srv", "-", "ioc"]);
        let s = a.resolve_with(ConfigFile::default()).unwrap();
        assert_eq!(s.login, Login(7));
        assert!(s.symbols.is_empty());
        assert!(matches!(s.terminal, TerminalSource::Port { .. }));
        assert!(s.warnings.is_empty(), "password '-' is not a password");
    }

    #[test]
    fn config_fills_the_gaps_and_cli_wins() {
        let config = ConfigFile::parse(
            r#"
            login = 5
            prefix = "m*"
            exec_mode = "return"
            terminal_port = 6000
            symbols = ["GBPUSD"]
            center = "http://127.0.0.1:9/"
            "#,
        )
        .unwrap();
        let s = parse(&["--login", "9"]).resolve_with(config).unwrap();
        assert_eq!(s.login, Login(9));
        assert_eq!(s.symbol_map.to_account("GBPUSD"), "mGBPUSD");
        assert_eq!(s.symbols, vec!["GBPUSD"]);
        assert_eq!(s.center.unwrap().url, "http://127.0.0.1:9");
    }

    #[test]
    fn missing_and_bad_values_are_clear_errors() {
        let err = parse(&["--terminal-port", "1"]).resolve_with(ConfigFile::default());
        assert!(matches!(err, Err(ArgsError::Missing("<login>"))));
        let err = parse(&["--login", "1", "--prefix", "-", "--exec-mode", "fok"])
            .resolve_with(ConfigFile::default());
        assert!(matches!(err, Err(ArgsError::NoTerminal)));
        let err = parse(&[
            "--terminal-port",
            "1",
            "--login",
            "1",
            "--prefix",
            "-",
            "--exec-mode",
            "fok",
            "--center",
            "ftp://x",
        ])
        .resolve_with(ConfigFile::default());
        assert!(matches!(err, Err(ArgsError::Invalid { .. })));
        let mut full = vec!["agent"];
        full.extend_from_slice(&["--exec-mode", "fast"]);
        assert!(Cli::try_parse_from(full).is_err());
    }

    #[test]
    fn a_legacy_form_with_a_bad_login_or_mode_names_the_value() {
        let err = |argv: &[&str]| {
            parse(argv)
                .resolve_with(ConfigFile::default())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&[
                "C:/MT5/terminal64.exe",
                "abc",
                "pw",
                "Srv",
                ".r",
                "FOK",
                "EURUSD"
            ]),
            "login 'abc' is not a number"
        );
        assert_eq!(
            err(&["x", "1001", "pw", "Srv", ".r", "BOGUS"]),
            "exec_mode 'BOGUS' must be one of FOK, IOC, RETURN, auto"
        );
        // A path alone is enough to tell the form, even with both values wrong.
        assert_eq!(
            err(&["/opt/mt5/terminal64", "abc", "pw", "Srv", ".r", "BOGUS"]),
            "login 'abc' is not a number"
        );
        assert!(err(&["C:\\MT5\\terminal64.exe", "1001"]).contains("got 2 of its 6 values"));
        // Six symbols are still six symbols.
        let s = parse(&[
            "--terminal-port",
            "1",
            "--login",
            "7",
            "--prefix",
            "-ECN",
            "--exec-mode",
            "auto",
            "EURUSD",
            "GBPUSD",
            "USDJPY",
            "XAUUSD",
            "EURJPY",
            "GBPJPY",
        ])
        .resolve_with(ConfigFile::default())
        .unwrap();
        assert_eq!(s.symbols.len(), 6);
        assert_eq!(s.symbol_map.to_account("EURUSD"), "EURUSD-ECN");
    }

    #[test]
    fn undoing_a_failed_start_removes_only_what_it_created() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let settings = |state: &std::path::Path| {
            parse(&["--terminal-port", "1", "--login", "7", "--prefix", "-"])
                .resolve_with(ConfigFile::parse("exec_mode = \"auto\"").unwrap())
                .map(|mut s| {
                    s.state_dir = state.to_owned();
                    s
                })
                .unwrap()
        };
        let s = settings(&state);
        let created = s.new_state("client");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(s.state_path("client"), "db").unwrap();
        std::fs::write(state.join("client-7.db-wal"), "wal").unwrap();
        created.undo();
        assert!(!state.exists(), "a directory the start made goes");

        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("hedger-7.db"), "kept").unwrap();
        let created = s.new_state("client");
        std::fs::write(s.state_path("client"), "db").unwrap();
        created.undo();
        assert!(!s.state_path("client").exists());
        assert!(state.join("hedger-7.db").exists(), "what was there stays");

        std::fs::write(s.state_path("client"), "earlier").unwrap();
        s.new_state("client").undo();
        assert!(s.state_path("client").exists(), "an earlier database stays");
    }

    #[test]
    fn password_from_file_is_not_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let a = parse(&[
            "--password-file",
            file.to_str().unwrap(),
            "C:/t.exe",
            "1001",
            "-",
            "Srv",
            ".r",
            "RETURN",
        ]);
        let s = a.resolve_with(ConfigFile::default()).unwrap();
        assert!(s.warnings.is_empty());
        match s.terminal {
            TerminalSource::Launch(l) => assert_eq!(l.password.expose(), "s3cret"),
            other => panic!("expected launch, got {other:?}"),
        }
    }

    #[test]
    fn exec_mode_picks_an_allowed_filling() {
        let mut spec = SymbolSpec::forex("EURUSD", 5);
        spec.filling = hedge_domain::FillingModes {
            ioc: true,
            ..Default::default()
        };
        assert_eq!(ExecMode::Auto.filling_for(&spec), Some(OrderFilling::Ioc));
        assert_eq!(
            ExecMode::Fixed(OrderFilling::Fok).filling_for(&spec),
            Some(OrderFilling::Ioc)
        );
        assert_eq!(
            "return".parse::<ExecMode>(),
            Ok(ExecMode::Fixed(OrderFilling::Return))
        );
    }
}
