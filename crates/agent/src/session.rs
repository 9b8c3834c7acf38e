//! Attaching an agent to its terminal.
//!
//! With `--terminal-port` the agent listens on that port (loopback by default) and waits for the
//! terminal's Expert Advisor, or `hedge sim`, to connect; the link survives reconnections (each one
//! starts with a fresh snapshot, see `hedge_protocol::TerminalEvent::Connected`). Starting the
//! terminal at `<path>` needs the launcher, which this build does not include: that mode fails with
//! an error that says to start the terminal separately and use `--terminal-port`.

use crate::args::{AgentSettings, TerminalSource};
use crate::status::StatusBoard;
use hedge_protocol::{Terminal, TerminalConfig, TerminalEvent, TerminalListener};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot listen for the terminal on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "starting the terminal at {path} is not supported by this build; start the terminal (with \
         the hedge Expert Advisor) yourself and pass --terminal-port PORT"
    )]
    LaunchUnsupported { path: PathBuf },
}

/// An agent's link to its terminal, with the status board kept current from it.
pub struct Session {
    pub terminal: Terminal,
    pub status: StatusBoard,
    watcher: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Listens for the terminal as `settings` say (the terminal need not be connected yet; see
    /// [`Terminal::ready`]). `role` names the agent in logs and status lines.
    pub async fn attach(
        settings: &AgentSettings,
        role: &'static str,
    ) -> Result<Self, SessionError> {
        let listen = match &settings.terminal {
            TerminalSource::Port { listen } => *listen,
            TerminalSource::Launch(spec) => {
                return Err(SessionError::LaunchUnsupported {
                    path: spec.path.clone(),
                })
            }
        };
        let config = TerminalConfig {
            expected_login: Some(settings.login),
            ..TerminalConfig::default()
        };
        Self::listen(listen, config, StatusBoard::new(role, settings.login)).await
    }

    /// Listens on `addr` with an explicit configuration.
    pub async fn listen(
        addr: SocketAddr,
        config: TerminalConfig,
        status: StatusBoard,
    ) -> Result<Self, SessionError> {
        let listener = TerminalListener::bind_with(addr, config)
            .await
            .map_err(|source| SessionError::Bind { addr, source })?;
        let terminal = listener.start();
        let watcher = tokio::spawn(watch_link(terminal.clone(), status.clone()));
        Ok(Session {
            terminal,
            status,
            watcher,
        })
    }

    /// The address the agent listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.terminal.local_addr()
    }

    /// Closes the link.
    pub async fn shutdown(self) {
        self.watcher.abort();
        self.terminal.shutdown().await;
    }
}

/// Keeps the status board's connection flag in step with the link and logs connects/disconnects.
async fn watch_link(terminal: Terminal, status: StatusBoard) {
    let mut events = terminal.subscribe();
    if let Some(hello) = terminal.hello().filter(|_| terminal.is_connected()) {
        status.set_connected(true, hello.server.clone());
    }
    loop {
        match events.recv().await {
            Ok(TerminalEvent::Connected {
                hello,
                resync,
                generation,
                snapshot,
            }) => {
                tracing::info!(
                    login = %hello.login,
                    server = %hello.server,
                    company = %hello.company,
                    margin_mode = %hello.margin_mode,
                    build = hello.build,
                    ea_version = %hello.ea_version,
                    positions = snapshot.positions.len(),
                    generation,
                    resync,
                    "terminal connected"
                );
                status.set_connected(true, hello.server.clone());
            }
            Ok(TerminalEvent::Disconnected { reason, generation }) => {
                tracing::warn!(%reason, generation, "terminal disconnected; waiting for it to return");
                status.set_connected(false, String::new());
            }
            Ok(TerminalEvent::Gap { expected, got }) => {
                tracing::warn!(expected, got, "messages lost on the terminal link");
            }
            Ok(TerminalEvent::PeerError(e)) => {
                tracing::warn!(code = %e.code, message = %e.message, "terminal reported an error");
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(skipped = n, "status watcher lagged");
                status.set_connected(terminal.is_connected(), String::new());
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
}
