//! Passwords and tokens. A [`Secret`] prints as `***` through `Debug` and `Display`, so it cannot leak
//! through a log line, an error message or a panic by accident; the value is reachable only through
//! [`Secret::expose`], which makes every legitimate use visible in review.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where a secret came from. Only [`SecretSource::CommandLine`] is visible to other local users (`ps`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    CommandLine,
    Env(String),
    File(PathBuf),
    ConfigFile(PathBuf),
}

impl SecretSource {
    /// Whether other users of the machine can read the value from the process list.
    pub fn visible_in_process_list(&self) -> bool {
        matches!(self, SecretSource::CommandLine)
    }
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

/// A password or token. Redacted in `Debug`/`Display`; the memory is overwritten on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Call only where the value is handed to its consumer (a launcher, an HTTP
    /// header), never to format a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads the secret from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, SecretError> {
        let value = std::env::var(var).map_err(|_| SecretError::MissingEnv(var.to_owned()))?;
        let secret = Secret(value);
        if secret.is_empty() {
            return Err(SecretError::Empty(SecretSource::Env(var.to_owned())));
        }
        Ok(secret)
    }

    /// Reads the secret from a file: its first line, without the line ending (files written by
    /// `echo` end with a newline that is not part of the password).
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
            path: path.to_owned(),
            source,
        })?;
        let first = text.lines().next().unwrap_or("").to_owned();
        let mut text = text;
        wipe(&mut text);
        if first.is_empty() {
            return Err(SecretError::Empty(SecretSource::File(path.to_owned())));
        }
        Ok(Secret(first))
    }
}

fn wipe(text: &mut String) {
    let mut bytes = std::mem::take(text).into_bytes();
    for b in bytes.iter_mut() {
        // Volatile so the compiler cannot drop the stores as dead before the buffer is freed.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
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
        let s = Secret::from_file(f.path()).unwrap();
        assert_eq!(s.expose(), "p@ss word");

        let empty = tempfile::NamedTempFile::new().unwrap();
        let err = Secret::from_file(empty.path()).unwrap_err();
        assert!(matches!(err, SecretError::Empty(_)));
        let err = Secret::from_file(Path::new("/nonexistent/secret")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/secret"));
    }

    #[test]
    fn missing_env_is_a_clear_error() {
        let err = Secret::from_env("HEDGE_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
        assert!(err.to_string().contains("HEDGE_TEST_SURELY_UNSET_VARIABLE"));
    }
}
