//! Passwords and tokens, held so that they cannot leak by accident.
//!
//! A [`Secret`] prints as `***` through `Debug` and `Display`, so it cannot reach a log line, an
//! error message or a panic, and its bytes are overwritten when it is dropped. The only way to read
//! it is [`Secret::expose`], which makes every legitimate use visible in review: the launcher calls
//! it once, to write the private start-up file the terminal reads; the agents, to put a token in an
//! HTTP header.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

/// An account password or an API token.
pub struct Secret(Vec<u8>);

/// Why a password argument could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("the environment variable {0} named for the password is not set or not UTF-8")]
    MissingEnv(String),
    #[error("cannot read the password from {source_name}: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
    },
    #[error("the password read from {0} is not UTF-8")]
    NotUtf8(String),
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into().into_bytes())
    }

    /// Reads the secret from the environment variable `name`.
    pub fn from_env(name: &str) -> Result<Self, PasswordError> {
        let value = std::env::var(name).map_err(|_| PasswordError::MissingEnv(name.to_owned()))?;
        Secret::non_empty(value)
    }

    /// Reads the secret from the first line of a file, without its line ending (files written by
    /// `echo` end with a newline that is not part of the password).
    pub fn from_file(path: &Path) -> Result<Self, PasswordError> {
        let name = path.display().to_string();
        let text = std::fs::read(path).map_err(|error| PasswordError::Read {
            source_name: name.clone(),
            error,
        })?;
        Secret::non_empty(first_line(text, &name)?)
    }

    fn non_empty(value: String) -> Result<Self, PasswordError> {
        if value.is_empty() {
            return Err(PasswordError::Empty);
        }
        Ok(Secret::new(value))
    }

    /// Resolves a password given on the command line without putting it in `ps` output: `env:NAME`
    /// reads the environment variable `NAME`, `file:PATH` reads the first line of a file, `-` reads the
    /// first line of standard input; anything else is the password itself (visible to other local
    /// users for as long as the process runs, which is why the other forms exist).
    pub fn from_arg(arg: &str) -> Result<Self, PasswordError> {
        let password = if let Some(name) = arg.strip_prefix("env:") {
            return Secret::from_env(name);
        } else if let Some(path) = arg.strip_prefix("file:") {
            return Secret::from_file(Path::new(path));
        } else if arg == "-" {
            let mut text = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut text)
                .map_err(|error| PasswordError::Read {
                    source_name: "standard input".to_owned(),
                    error,
                })?;
            first_line(text, "standard input")?
        } else {
            arg.to_owned()
        };
        Secret::non_empty(password)
    }

    /// The secret itself. Call it only where the value is handed to its consumer (the terminal's
    /// start-up file, an HTTP header), never to format a message.
    pub fn expose(&self) -> &str {
        // Built from a `String` and never mutated except by `Drop`, so always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn first_line(mut text: Vec<u8>, source_name: &str) -> Result<String, PasswordError> {
    let end = text
        .iter()
        .position(|b| *b == b'\n' || *b == b'\r')
        .unwrap_or(text.len());
    let line = String::from_utf8(text[..end].to_vec())
        .map_err(|_| PasswordError::NotUtf8(source_name.to_owned()));
    wipe(&mut text);
    line
}

fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // black_box keeps the overwrite from being optimised away as a dead store.
        *b = std::hint::black_box(0);
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl Clone for Secret {
    fn clone(&self) -> Self {
        Secret(self.0.clone())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Secret {}

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

/// The value itself (command-line parsing); the other forms are [`Secret::from_arg`]'s.
impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let p = Secret::new("s3cret\"pw");
        assert_eq!(format!("{p:?}"), "Secret(***)");
        assert_eq!(format!("{p}"), "***");
        assert!(!format!("{:?}", Some(p.clone())).contains("s3cret"));
        assert_eq!(p.expose(), "s3cret\"pw");
        assert_eq!(p, Secret::new("s3cret\"pw"));
    }

    #[test]
    fn dropping_wipes_the_bytes() {
        let mut bytes = b"hunter2".to_vec();
        wipe(&mut bytes);
        assert_eq!(bytes, vec![0; 7]);
    }

    #[test]
    fn arguments_resolve_from_env_and_file() {
        std::env::set_var("HEDGE_LAUNCH_TEST_PW", "from-env");
        assert_eq!(
            Secret::from_arg("env:HEDGE_LAUNCH_TEST_PW")
                .unwrap()
                .expose(),
            "from-env"
        );
        assert!(matches!(
            Secret::from_arg("env:HEDGE_LAUNCH_TEST_PW_MISSING"),
            Err(PasswordError::MissingEnv(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "from-file\r\nignored").unwrap();
        let arg = format!("file:{}", path.display());
        assert_eq!(Secret::from_arg(&arg).unwrap().expose(), "from-file");
        assert_eq!(Secret::from_arg("literal").unwrap().expose(), "literal");
        assert!(matches!(Secret::from_arg(""), Err(PasswordError::Empty)));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\nsecond").unwrap();
        assert!(matches!(
            Secret::from_file(&empty),
            Err(PasswordError::Empty)
        ));
        let err = Secret::from_file(Path::new("/nonexistent/secret")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/secret"), "{err}");
    }
}
