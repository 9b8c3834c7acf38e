//! The agents' TOML configuration file. Every command-line setting has a key here; the command line
//! wins over the file, the file over the defaults. Role-specific settings live in their own table
//! (`[client]`, `[tumbler]`, `[hedger]`), read by each role with [`ConfigFile::section`]. The `hedge`
//! binary's agents read `./hedge.toml` when no `--config` is given; the center's URL and token may
//! also come from `HEDGE_CENTER` and `HEDGE_CENTER_TOKEN`.
//!
//! ```toml
//! login = 1001
//! server = "Broker-Demo"
//! path = 'C:\MT5\terminal64.exe'
//! password_file = "/run/secrets/mt5"
//! prefix = ".r"
//! exec_mode = "auto"
//! symbols = ["EURUSD", "XAUUSD"]
//! symbol_map = "GOLD=XAUUSD"
//! terminal_port = 5001
//! center = "http://127.0.0.1:8080"
//! center_token_file = "/run/secrets/center"
//! state_dir = "/var/lib/hedge"
//! log_format = "json"
//! status_interval_secs = 5
//!
//! [tumbler]
//! kill = ["javaw.exe"]
//! ```

use crate::secret::Secret;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Largest config file accepted; anything bigger is a mistake (a log file given by accident).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ConfigSyntaxError,
    },
    #[error("section [{section}] of config file {path} is not valid: {message}")]
    Section {
        path: PathBuf,
        section: String,
        message: String,
    },
}

/// Config text that is not a valid config: where, and what is wrong, with no value quoted (the
/// file may hold a password). Fixing the file is the only remedy; reading it again fails alike.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ConfigSyntaxError {
    /// 1-based, when the parser could tell.
    pub line: Option<usize>,
    pub message: String,
}

/// The settings shared by every agent, as read from the file. All optional: the command line may
/// supply them instead.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub path: Option<PathBuf>,
    pub login: Option<u64>,
    #[serde(default, deserialize_with = "crate::secret::deserialize_opt")]
    pub password: Option<Secret>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub server: Option<String>,
    pub prefix: Option<String>,
    pub exec_mode: Option<String>,
    #[serde(default)]
    pub symbols: Vec<String>,
    /// Explicit `ACCOUNT=CANONICAL` entries on top of the prefix/suffix.
    pub symbol_map: Option<String>,
    pub terminal_port: Option<u16>,
    pub listen: Option<String>,
    pub center: Option<String>,
    pub center_token_env: Option<String>,
    pub center_token_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub log_format: Option<String>,
    pub status_interval_secs: Option<u64>,
    pub client: Option<toml::Table>,
    pub tumbler: Option<toml::Table>,
    pub hedger: Option<toml::Table>,
    /// Where the file was read from, for messages.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl ConfigFile {
    /// Reads and parses a config file. Unknown keys are errors, so a typo does not silently fall
    /// back to a default.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses config text; the error message never quotes values (the file may hold a password).
    pub fn parse(text: &str) -> Result<Self, ConfigSyntaxError> {
        toml::from_str::<ConfigFile>(text).map_err(|e| ConfigSyntaxError {
            line: e
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1)),
            message: redact_values(e.message()),
        })
    }

    /// A role's own table (`client`, `tumbler`, `hedger`) as that role's type; the default when the
    /// table is absent.
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, ConfigError> {
        let table = match name {
            "client" => self.client.as_ref(),
            "tumbler" => self.tumbler.as_ref(),
            "hedger" => self.hedger.as_ref(),
            _ => None,
        };
        match table {
            None => Ok(T::default()),
            Some(table) => T::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
                ConfigError::Section {
                    path: self.source.clone().unwrap_or_default(),
                    section: name.to_owned(),
                    message: e.message().to_owned(),
                }
            }),
        }
    }
}

/// serde quotes the offending value in backticks for type and value errors; a password must not end up
/// in an error message, so those quotes are blanked (field names in "unknown field" stay).
fn redact_values(message: &str) -> String {
    if !(message.starts_with("invalid type") || message.starts_with("invalid value")) {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '`' {
            if inside {
                out.push_str("…`");
            } else {
                out.push('`');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file_parses() {
        let text = r#"
            login = 1001
            server = "Broker-Demo"
            prefix = ".r"
            exec_mode = "auto"
            symbols = ["EURUSD"]
            terminal_port = 5001
            password = "secret-value"
            [tumbler]
            kill = ["javaw.exe"]
        "#;
        let c = ConfigFile::parse(text).unwrap();
        assert_eq!(c.login, Some(1001));
        assert_eq!(c.symbols, vec!["EURUSD"]);
        assert_eq!(
            c.password.as_ref().map(|p| p.expose()),
            Some("secret-value")
        );

        #[derive(Deserialize, Default)]
        struct T {
            kill: Vec<String>,
        }
        let t: T = c.section("tumbler").unwrap();
        assert_eq!(t.kill, vec!["javaw.exe"]);
        let h: T = c.section("hedger").unwrap();
        assert!(h.kill.is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors_without_values() {
        let err = ConfigFile::parse("logn = 5").unwrap_err();
        assert!(err.message.contains("logn"), "{err}");
        assert_eq!(err.line, Some(1));
        assert!(err.to_string().starts_with("line 1: "), "{err}");
        let err = ConfigFile::parse("password = 12345678")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("12345678"), "{err}");
    }
}
