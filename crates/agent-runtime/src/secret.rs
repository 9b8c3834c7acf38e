//! Passwords and tokens on the agents' command line and in their config file: where each came from,
//! so that one given on the command line draws the `ps` warning. The value itself is a
//! [`Secret`] (from `hedge-launch`, which hands the password to the terminal): redacted when
//! printed, wiped when dropped, readable only through [`Secret::expose`].

use hedge_launch::PasswordError;
pub use hedge_launch::Secret;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a secret came from. Only [`SecretSource::CommandLine`] is visible to other local users (`ps`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    CommandLine,
    Env(String),
    File(PathBuf),
    ConfigFile(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::CommandLine => f.write_str("the command line"),
            SecretSource::Env(var) => write!(f, "environment variable {var}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::ConfigFile(path) => write!(f, "config file {}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set or not valid UTF-8")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret from {0} is empty")]
    Empty(SecretSource),
}

/// Reads a secret from an environment variable.
pub fn from_env(var: &str) -> Result<Secret, SecretError> {
    Secret::from_env(var).map_err(|e| from_launch(e, SecretSource::Env(var.to_owned())))
}

/// Reads a secret from the first line of a file.
pub fn from_file(path: &Path) -> Result<Secret, SecretError> {
    Secret::from_file(path).map_err(|e| from_launch(e, SecretSource::File(path.to_owned())))
}

fn from_launch(e: PasswordError, source: SecretSource) -> SecretError {
    match e {
        PasswordError::MissingEnv(var) => SecretError::MissingEnv(var),
        PasswordError::Empty => SecretError::Empty(source),
        PasswordError::Read { error, .. } => SecretError::File {
            path: source_path(&source),
            source: error,
        },
        PasswordError::NotUtf8(_) => SecretError::File {
            path: source_path(&source),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
        },
    }
}

fn source_path(source: &SecretSource) -> PathBuf {
    match source {
        SecretSource::File(p) | SecretSource::ConfigFile(p) => p.clone(),
        other => PathBuf::from(other.to_string()),
    }
}

/// `password = "..."` in the config file.
pub fn deserialize_opt<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Secret>, D::Error> {
    use serde::Deserialize;
    Ok(Option::<String>::deserialize(deserializer)?.map(Secret::new))
}

/// The warning printed when a secret was given as a command-line argument.
pub fn process_list_warning(what: &str) -> String {
    format!(
        "the {what} was given on the command line, where other local users can read it with `ps`; \
         prefer --password-env VAR, --password-file FILE or the config file"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let wrapped = Some(s.clone());
        assert!(!format!("{wrapped:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_secret_is_its_first_line() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "p@ss word").unwrap();
        writeln!(f, "ignored").unwrap();
        let s = from_file(f.path()).unwrap();
        assert_eq!(s.expose(), "p@ss word");

        let empty = tempfile::NamedTempFile::new().unwrap();
        let err = from_file(empty.path()).unwrap_err();
        assert!(matches!(err, SecretError::Empty(_)));
        let err = from_file(Path::new("/nonexistent/secret")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/secret"));
    }

    #[test]
    fn missing_env_is_a_clear_error() {
        let err = from_env("HEDGE_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
        assert!(err.to_string().contains("HEDGE_TEST_SURELY_UNSET_VARIABLE"));
    }
}
