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
use hedge_domain::{Resolution, SymbolMap};
use hedge_protocol::{SymbolInfo, Terminal, TerminalConfig, TerminalEvent, TerminalListener};
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

/// The account's `symbols` read through `map`: the canonical names found by the common aliases and
/// decorations too (`XAUUSD` is `GOLD` here), the operator's explicit entries winning. A canonical
/// name that several of the account's symbols could be is logged; it stays unhedged until the map
/// names one.
pub fn resolve_symbol_names(map: &SymbolMap, symbols: &[SymbolInfo]) -> Resolution {
    let resolution = map.resolve(symbols.iter().map(|s| s.spec.name.as_str()));
    for a in &resolution.ambiguous {
        tracing::warn!(
            canonical = %a.canonical,
            candidates = ?a.candidates,
            "several of the account's symbols could be this symbol; it is not hedged until the symbol map names one (ACCOUNT=CANONICAL)"
        );
    }
    resolution
}

/// How long an agent waits for its terminal port to come free before it gives up.
const PORT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);

/// Binds the terminal port, waiting while it is in use by something that is not listening. After
/// a restart the port can be held for a moment that way: a terminal that kept reconnecting while
/// the agent was down can end up connected to itself (a local port the kernel picked equal to the
/// agent's), or another program's outgoing connection can have the port as its own end. Both go
/// away. A listener on the port (a second agent) does not: that is an error at once.
async fn bind_patiently(
    addr: SocketAddr,
    config: TerminalConfig,
) -> Result<TerminalListener, SessionError> {
    let deadline = tokio::time::Instant::now() + PORT_PATIENCE;
    let mut warned = false;
    loop {
        match TerminalListener::bind_with(addr, config.clone()).await {
            Ok(listener) => return Ok(listener),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline
                    && !someone_listens(addr).await =>
            {
                if !warned {
                    tracing::warn!(%addr, "the terminal port is in use; waiting for it to come free");
                    warned = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(source) => return Err(SessionError::Bind { addr, source }),
        }
    }
}

/// Whether a program accepts connections on `addr` (a connection to itself does not count).
async fn someone_listens(addr: SocketAddr) -> bool {
    let probe = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        tokio::net::TcpStream::connect(addr),
    )
    .await;
    match probe {
        Ok(Ok(stream)) => !hedge_protocol::connected_to_itself(&stream),
        // Refused: nobody listens. A probe that hangs means a listener too busy to answer.
        Ok(Err(_)) => false,
        Err(_) => true,
    }
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
        let listener = bind_patiently(spec.listen, config).await?;
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
        let listener = bind_patiently(addr, config).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_held_by_a_listener_is_an_error_at_once() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let started = std::time::Instant::now();
        let refused = bind_patiently(addr, TerminalConfig::default()).await;
        assert!(matches!(refused, Err(SessionError::Bind { .. })));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_terminal_port_is_bound_once_it_comes_free() {
        // Held by a socket that is bound but neither listens nor connects.
        let held = tokio::net::TcpSocket::new_v4().unwrap();
        held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = held.local_addr().unwrap();
        let freed = std::time::Instant::now();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(500));
            drop(held);
        });
        let listener = bind_patiently(addr, TerminalConfig::default())
            .await
            .expect("bound after the port came free");
        assert_eq!(listener.local_addr(), addr);
        assert!(freed.elapsed() >= std::time::Duration::from_millis(400));
        release.join().unwrap();
    }
}
