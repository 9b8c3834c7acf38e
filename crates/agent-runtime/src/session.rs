//! Attaching an agent to its terminal.
//!
//! With `--terminal-port` the agent listens on that port (loopback by default) and waits for the
//! terminal's Expert Advisor, or `hedge sim`, to connect; the link survives reconnections (each one
//! starts with a fresh snapshot, see `hedge_protocol::TerminalEvent::Connected`). Given `<path>`, the
//! agent binds its port first, starts the terminal there through `hedge_launch` (portable mode, the
//! bridge attached with that port) and waits for the bridge, failing with the launcher's diagnosis
//! (refused login, terminal exited, or a timeout with the likely causes).

use crate::args::{AgentSettings, TerminalSource};
use crate::status::StatusBoard;
use hedge_protocol::{Terminal, TerminalConfig, TerminalEvent, TerminalListener};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    // The cause is the source, not part of the message: `{:#}` prints the chain once.
    #[error("cannot listen for the terminal on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the terminal at {path}")]
    Launch {
        path: PathBuf,
        #[source]
        source: hedge_launch::LaunchError,
    },
}

/// An agent's link to its terminal, with the status board kept current from it.
pub struct Session {
    pub terminal: Terminal,
    pub status: StatusBoard,
    watcher: tokio::task::JoinHandle<()>,
    launched: Option<hedge_launch::RunningTerminal>,
}

impl Session {
    /// Listens for the terminal as `settings` say (the terminal need not be connected yet; see
    /// [`Terminal::ready`]). `role` names the agent in logs and status lines.
    pub async fn attach(
        settings: &AgentSettings,
        role: &'static str,
    ) -> Result<Self, SessionError> {
        let config = TerminalConfig {
            expected_login: Some(settings.login),
            ..TerminalConfig::default()
        };
        let status = StatusBoard::new(role, settings.login);
        let spec = match &settings.terminal {
            TerminalSource::Port { listen } => return Self::listen(*listen, config, status).await,
            TerminalSource::Launch(spec) => spec,
        };
        // Bind first: the bridge is told the real port (the listen port may be 0).
        let listener = TerminalListener::bind_with(spec.listen, config)
            .await
            .map_err(|source| SessionError::Bind {
                addr: spec.listen,
                source,
            })?;
        let mut launch = hedge_launch::LaunchSpec::new(
            spec.path.clone(),
            spec.login,
            spec.password.clone(),
            spec.server.clone(),
            listener.local_addr().port(),
        );
        spec.options.apply(&mut launch);
        let launch_error = |source| SessionError::Launch {
            path: spec.path.clone(),
            source,
        };
        let mut running =
            tokio::task::spawn_blocking(move || hedge_launch::Launcher::new(launch).start())
                .await
                .map_err(|e| {
                    launch_error(hedge_launch::LaunchError::Io {
                        action: "start",
                        path: spec.path.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })
                })?
                .map_err(launch_error)?;
        let terminal = listener.start();
        if let Err(e) = running.wait_for(terminal.ready()).await {
            terminal.shutdown().await;
            return Err(launch_error(e));
        }
        let watcher = tokio::spawn(watch_link(terminal.clone(), status.clone()));
        Ok(Session {
            terminal,
            status,
            watcher,
            launched: Some(running),
        })
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
            launched: None,
        })
    }

    /// The address the agent listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.terminal.local_addr()
    }

    /// The pid of the terminal this session started, if it started one.
    pub fn launched_pid(&self) -> Option<u32> {
        self.launched.as_ref().map(|r| r.pid())
    }

    /// Closes the link, and stops the terminal if this session started it.
    pub async fn shutdown(mut self) {
        self.watcher.abort();
        self.terminal.shutdown().await;
        if let Some(mut running) = self.launched.take() {
            running.stop();
        }
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
