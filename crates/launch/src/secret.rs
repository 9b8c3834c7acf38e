//! The account password, held so that it cannot leak by accident.
//!
//! It has no `Display`, its `Debug` is redacted, and its bytes are overwritten when it is dropped. The
//! only way to read it is [`Password::expose`], which the launcher calls once, to write the private
//! start-up file the terminal reads.

use std::fmt;
use std::io::Read;

/// An MT5 account password.
pub struct Password(Vec<u8>);

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

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Password(value.into().into_bytes())
    }

    /// Resolves a password given on the command line without putting it in `ps` output: `env:NAME`
    /// reads the environment variable `NAME`, `file:PATH` reads the first line of a file, `-` reads the
    /// first line of standard input; anything else is the password itself (visible to other local
    /// users for as long as the process runs, which is why the other forms exist).
    pub fn from_arg(arg: &str) -> Result<Self, PasswordError> {
        let password = if let Some(name) = arg.strip_prefix("env:") {
            std::env::var(name).map_err(|_| PasswordError::MissingEnv(name.to_owned()))?
        } else if let Some(path) = arg.strip_prefix("file:") {
            let text = std::fs::read(path).map_err(|error| PasswordError::Read {
                source_name: path.to_owned(),
                error,
            })?;
            first_line(text, path)?
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
        if password.is_empty() {
            return Err(PasswordError::Empty);
        }
        Ok(Password::new(password))
    }

    /// The password itself. Call it only to hand the password to the terminal.
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

impl Drop for Password {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl Clone for Password {
    fn clone(&self) -> Self {
        Password(self.0.clone())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let p = Password::new("s3cret\"pw");
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        assert_eq!(p.expose(), "s3cret\"pw");
    }

    #[test]
    fn arguments_resolve_from_env_and_file() {
        std::env::set_var("HEDGE_LAUNCH_TEST_PW", "from-env");
        assert_eq!(
            Password::from_arg("env:HEDGE_LAUNCH_TEST_PW")
                .unwrap()
                .expose(),
            "from-env"
        );
        assert!(matches!(
            Password::from_arg("env:HEDGE_LAUNCH_TEST_PW_MISSING"),
            Err(PasswordError::MissingEnv(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "from-file\r\nignored").unwrap();
        let arg = format!("file:{}", path.display());
        assert_eq!(Password::from_arg(&arg).unwrap().expose(), "from-file");
        assert_eq!(Password::from_arg("literal").unwrap().expose(), "literal");
        assert!(matches!(Password::from_arg(""), Err(PasswordError::Empty)));
    }
}
