//! A temporary portable "terminal folder" holding the stand-in terminal and MetaEditor.

#![allow(dead_code)]

use hedge_domain::Login;
use hedge_launch::{LaunchSpec, Secret, WineMode};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const LOGIN: u64 = 5_012_345;
pub const SERVER: &str = "Stand-In-Demo";
pub const PASSWORD: &str = "Corr3ct \"horse\" bätterie;=";

pub struct TerminalFolder {
    pub dir: tempfile::TempDir,
}

/// Links (or, across file systems, copies) a test program into the folder under a Windows name. A
/// hard link avoids writing an executable while other test threads fork, which can make `exec`
/// fail with "text file busy".
fn install(from: &str, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).expect("copy the stand-in");
    }
}

impl TerminalFolder {
    pub fn new(conf: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mt5-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir");
        install(
            env!("CARGO_BIN_EXE_standin-terminal"),
            &dir.path().join("terminal64.exe"),
        );
        install(
            env!("CARGO_BIN_EXE_standin-metaeditor"),
            &dir.path().join("metaeditor64.exe"),
        );
        // Stands in for `wine`: runs the Windows program directly, so the Wine path (the `Z:` paths
        // included) is exercised end to end.
        let wine = dir.path().join("wine-passthrough");
        std::fs::write(&wine, "#!/bin/sh\nexec \"$@\"\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&wine, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(dir.path().join("standin.conf"), conf).unwrap();
        TerminalFolder { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn terminal(&self) -> PathBuf {
        self.path().join("terminal64.exe")
    }

    pub fn spec(&self, password: &str, port: u16, timeout: Duration) -> LaunchSpec {
        let mut spec = LaunchSpec::new(
            self.terminal(),
            Login(LOGIN),
            Secret::new(password),
            SERVER,
            port,
        );
        spec.wine = WineMode::Auto;
        spec.wine_program = self.path().join("wine-passthrough");
        spec.connect_timeout = timeout;
        spec.compile_timeout = Duration::from_secs(30);
        spec
    }

    pub fn metaeditor_runs(&self) -> u32 {
        std::fs::read_to_string(self.path().join("metaeditor-runs.txt"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn report(&self) -> String {
        std::fs::read_to_string(self.path().join("standin-report.txt")).unwrap_or_default()
    }

    pub fn startup_ini(&self, port: u16) -> PathBuf {
        self.path()
            .join("Config")
            .join(format!("hedge-start-{port}.ini"))
    }
}

/// A free local port and a listener already bound to it.
pub async fn listener() -> (tokio::net::TcpListener, u16) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}
