//! The files a terminal reads at start-up, built as text with no I/O: MT5's `/config:` ini (account,
//! Expert Advisor settings, the chart to attach the bridge to) and the `.set` file holding the bridge's
//! inputs.

use crate::secret::Secret;
use std::fmt::Write as _;

/// The bridge Expert Advisor's name, relative to `MQL5\Experts` (what `[StartUp] Expert=` names).
pub const EXPERT_NAME: &str = "HedgeBridge";

/// Verbosity of the bridge's own log (`InpLogLevel`): 0 errors, 1 info, 2 debug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpertLogLevel {
    Error = 0,
    Info = 1,
    Debug = 2,
}

/// The bridge Expert Advisor's inputs, written to its `.set` file. The names are the `input`
/// variables of `mql5/HedgeBridge.mq5`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpertInputs {
    /// Where the agent listens (`InpAgentHost`).
    pub host: String,
    /// The agent's port (`InpAgentPort`).
    pub port: u16,
    /// Seconds between heartbeats (`InpHeartbeatSec`).
    pub heartbeat_secs: u32,
    /// Seconds between periodic full snapshots (`InpSnapshotSec`).
    pub snapshot_secs: u32,
    /// Milliseconds between polls for commands (`InpPollMs`).
    pub poll_ms: u32,
    pub log_level: ExpertLogLevel,
}

impl ExpertInputs {
    pub fn for_port(port: u16) -> Self {
        ExpertInputs {
            host: "127.0.0.1".to_owned(),
            port,
            heartbeat_secs: 5,
            snapshot_secs: 60,
            poll_ms: 1,
            log_level: ExpertLogLevel::Info,
        }
    }

    /// The `.set` text: one `name=value` line per input, CRLF as the terminal writes them.
    pub fn to_set_file(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "InpAgentHost={}\r\nInpAgentPort={}\r\nInpHeartbeatSec={}\r\nInpSnapshotSec={}\r\nInpPollMs={}\r\nInpLogLevel={}\r\n",
            self.host,
            self.port,
            self.heartbeat_secs,
            self.snapshot_secs,
            self.poll_ms,
            self.log_level as u8
        );
        out
    }

    /// The `.set` file name for these inputs; the port is in it so that several terminals prepared
    /// from one template never read each other's inputs.
    pub fn set_file_name(&self) -> String {
        format!("{EXPERT_NAME}-{}.set", self.port)
    }
}

/// Why start-up settings cannot be written safely.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("the login must be a positive account number")]
    BadLogin,
    #[error("the {0} must not be empty")]
    Empty(&'static str),
    /// An ini value cannot carry a line break or NUL: it would end the value and let the rest be read
    /// as other settings.
    #[error("the {0} contains a line break or NUL, which a start-up file cannot hold")]
    LineBreak(&'static str),
    #[error("the agent host {0:?} contains characters a .set file cannot hold")]
    BadHost(String),
}

/// Everything the `/config:` ini says.
#[derive(Debug)]
pub struct StartupConfig<'a> {
    pub login: u64,
    pub password: &'a Secret,
    pub server: &'a str,
    /// `[Common] KeepPrivate`: whether the terminal stores the password in its own account database.
    /// Off by default, so the password lives on disk only for the seconds the ini exists.
    pub keep_private: bool,
    /// The `.set` file name (in `MQL5\Presets`) with the bridge's inputs.
    pub expert_parameters: &'a str,
    /// The chart the bridge is attached to; any symbol the broker offers works.
    pub symbol: &'a str,
    /// The chart period, e.g. `M1`.
    pub period: &'a str,
}

/// Text that contains a password: redacted `Debug`, wiped on drop.
pub struct SecretText(String);

impl SecretText {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

impl Drop for SecretText {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        for b in bytes.iter_mut() {
            *b = std::hint::black_box(0);
        }
    }
}

fn check_value(value: &str, what: &'static str) -> Result<(), StartupError> {
    if value.is_empty() {
        return Err(StartupError::Empty(what));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(StartupError::LineBreak(what));
    }
    Ok(())
}

impl StartupConfig<'_> {
    pub fn validate(&self) -> Result<(), StartupError> {
        if self.login == 0 {
            return Err(StartupError::BadLogin);
        }
        check_value(self.password.expose(), "password")?;
        check_value(self.server, "server")?;
        check_value(self.expert_parameters, "expert parameters file")?;
        check_value(self.symbol, "chart symbol")?;
        check_value(self.period, "chart period")?;
        Ok(())
    }

    /// The ini text, in MT5's documented `/config:` sections. Algo trading is enabled, DLL imports
    /// are not (the bridge needs none), and the terminal is told not to disable experts when the
    /// account or profile changes.
    pub fn to_ini(&self) -> Result<SecretText, StartupError> {
        self.validate()?;
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            "[Common]\r\nLogin={}\r\nPassword={}\r\nServer={}\r\nKeepPrivate={}\r\nNewsEnable=0\r\n\r\n\
             [Experts]\r\nAllowLiveTrading=1\r\nAllowDllImport=0\r\nEnabled=1\r\nAccount=0\r\nProfile=0\r\n\r\n\
             [StartUp]\r\nExpert={EXPERT_NAME}\r\nExpertParameters={}\r\nSymbol={}\r\nPeriod={}\r\n",
            self.login,
            self.password.expose(),
            self.server,
            u8::from(self.keep_private),
            self.expert_parameters,
            self.symbol,
            self.period,
        );
        Ok(SecretText(out))
    }
}

impl ExpertInputs {
    pub fn validate(&self) -> Result<(), StartupError> {
        if self.host.is_empty()
            || !self
                .host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
        {
            return Err(StartupError::BadHost(self.host.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(password: &Secret) -> StartupConfig<'_> {
        StartupConfig {
            login: 5012345,
            password,
            server: "MetaQuotes-Demo",
            keep_private: false,
            expert_parameters: "HedgeBridge-7001.set",
            symbol: "EURUSD",
            period: "M1",
        }
    }

    #[test]
    fn ini_has_every_documented_section() {
        let pw = Secret::new("pa;ss=word");
        let ini = config(&pw).to_ini().unwrap();
        let text = ini.as_str();
        for line in [
            "[Common]",
            "Login=5012345",
            "Password=pa;ss=word",
            "Server=MetaQuotes-Demo",
            "KeepPrivate=0",
            "NewsEnable=0",
            "[Experts]",
            "AllowLiveTrading=1",
            "AllowDllImport=0",
            "Enabled=1",
            "Account=0",
            "Profile=0",
            "[StartUp]",
            "Expert=HedgeBridge",
            "ExpertParameters=HedgeBridge-7001.set",
            "Symbol=EURUSD",
            "Period=M1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?}");
        }
        assert_eq!(format!("{ini:?}"), "SecretText(<redacted>)");
    }

    #[test]
    fn values_that_would_inject_settings_are_refused() {
        let pw = Secret::new("x\r\nAllowDllImport=1");
        assert_eq!(
            config(&pw).to_ini().unwrap_err(),
            StartupError::LineBreak("password")
        );
        let pw = Secret::new("ok");
        let mut c = config(&pw);
        c.server = "";
        assert_eq!(c.to_ini().unwrap_err(), StartupError::Empty("server"));
        c.server = "s";
        c.login = 0;
        assert_eq!(c.to_ini().unwrap_err(), StartupError::BadLogin);
    }

    #[test]
    fn set_file_carries_the_agent_port() {
        let inputs = ExpertInputs::for_port(7001);
        let text = inputs.to_set_file();
        assert!(text.contains("InpAgentPort=7001\r\n"));
        assert!(text.contains("InpAgentHost=127.0.0.1\r\n"));
        assert!(text.contains("InpPollMs=1\r\n"));
        assert_eq!(inputs.set_file_name(), "HedgeBridge-7001.set");
        assert!(inputs.validate().is_ok());
        let bad = ExpertInputs {
            host: "a\nb".into(),
            ..inputs
        };
        assert!(bad.validate().is_err());
    }
}
