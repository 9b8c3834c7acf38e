//! Command-line options an agent subcommand flattens in to start its own terminal
//! (`hedge client <path> <login> <password> <server> --port 7001 ...`).

use crate::command::WineMode;
use crate::launcher::LaunchSpec;
use crate::secret::{PasswordError, Secret};
use hedge_domain::Login;
use std::path::PathBuf;
use std::time::Duration;

/// Options for starting a terminal; the positional `<path> <login> <password> <server>` belong to the
/// agent's own arguments and are passed to [`LaunchOptions::spec`].
#[derive(clap::Args, Clone, Debug)]
pub struct LaunchOptions {
    /// Run the terminal through Wine (automatic when not on Windows and the path ends in .exe).
    #[arg(long, conflicts_with = "no_wine")]
    pub wine: bool,
    /// Never run the terminal through Wine, even for a .exe.
    #[arg(long)]
    pub no_wine: bool,
    /// Seconds to wait for the bridge Expert Advisor to connect after the terminal starts.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub launch_timeout: u64,
    /// The chart symbol the bridge is attached to (any symbol the broker offers). Default: the
    /// first Market Watch symbol the bridge saw last time, else a chart of the terminal's saved
    /// profiles, else EURUSD.
    #[arg(long, value_name = "SYMBOL", default_value = "")]
    pub chart_symbol: String,
    /// MetaEditor's path, when it is not beside the terminal.
    #[arg(long, value_name = "PATH")]
    pub metaeditor: Option<PathBuf>,
}

/// Why the launch arguments are unusable.
#[derive(Debug, thiserror::Error)]
pub enum LaunchArgsError {
    #[error("the login {0:?} is not an account number")]
    Login(String),
    #[error("password: {0}")]
    Password(#[from] PasswordError),
}

impl Default for LaunchOptions {
    /// The same values as the command line's defaults.
    fn default() -> Self {
        LaunchOptions {
            wine: false,
            no_wine: false,
            launch_timeout: 120,
            chart_symbol: String::new(),
            metaeditor: None,
        }
    }
}

impl LaunchOptions {
    pub fn wine_mode(&self) -> WineMode {
        if self.wine {
            WineMode::Always
        } else if self.no_wine {
            WineMode::Never
        } else {
            WineMode::Auto
        }
    }

    /// The spec for the terminal at `path`. `password` may be the password, `env:NAME`, `file:PATH`
    /// or `-` (see [`Secret::from_arg`]).
    pub fn spec(
        &self,
        path: impl Into<PathBuf>,
        login: &str,
        password: &str,
        server: &str,
        agent_port: u16,
    ) -> Result<LaunchSpec, LaunchArgsError> {
        let login: Login = login
            .parse()
            .map_err(|_| LaunchArgsError::Login(login.to_owned()))?;
        let password = Secret::from_arg(password)?;
        let mut spec = LaunchSpec::new(path, login, password, server, agent_port);
        self.apply(&mut spec);
        Ok(spec)
    }

    /// Carries these options into a spec built elsewhere (the agents build theirs from their own
    /// arguments).
    pub fn apply(&self, spec: &mut LaunchSpec) {
        spec.wine = self.wine_mode();
        spec.connect_timeout = Duration::from_secs(self.launch_timeout.max(1));
        if !self.chart_symbol.is_empty() {
            spec.chart_symbol = self.chart_symbol.clone();
        }
        spec.metaeditor = self.metaeditor.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        path: PathBuf,
        login: String,
        password: String,
        server: String,
        #[command(flatten)]
        launch: LaunchOptions,
    }

    #[test]
    fn options_build_a_spec() {
        let cmd = Cmd::parse_from([
            "x",
            "/mt5/terminal64.exe",
            "5012345",
            "pw",
            "Demo",
            "--no-wine",
            "--launch-timeout",
            "9",
        ]);
        let spec = cmd
            .launch
            .spec(&cmd.path, &cmd.login, &cmd.password, &cmd.server, 7001)
            .unwrap();
        assert_eq!(spec.wine, WineMode::Never);
        assert_eq!(spec.connect_timeout, Duration::from_secs(9));
        assert_eq!(spec.agent_port(), 7001);
        assert_eq!(spec.login, Login(5012345));
        assert!(!format!("{spec:?}").contains("pw\""));
        assert!(matches!(
            cmd.launch.spec(&cmd.path, "abc", "pw", "Demo", 1),
            Err(LaunchArgsError::Login(_))
        ));
        assert!(Cmd::try_parse_from(["x", "p", "1", "pw", "s", "--wine", "--no-wine"]).is_err());
    }
}
