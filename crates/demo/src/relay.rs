//! One terminal, two agents: the client agent and the tumbler both watch the copier's client
//! account, as two copies of the bridge EA on two charts of the same terminal would. The simulated
//! terminal connects here; every byte it sends goes to both agents, and only the client agent's
//! commands go back (the tumbler never sends any). The tumbler's leg may end (it exits after
//! firing) without disturbing the client's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running relay; dropping it does not stop it, [`Relay::stop`] does.
pub struct Relay {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on a free loopback port for the terminal, and relays each connection to `client`
    /// (both ways) and `tumbler` (terminal to agent only).
    pub async fn start(client: SocketAddr, tumbler: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut first = true;
            loop {
                let Ok((terminal, _)) = listener.accept().await else {
                    return;
                };
                // The first time the tumbler may still be starting: give it a moment. Later, a
                // tumbler that is gone (it exits after firing) is not waited for.
                let patience = if first {
                    Duration::from_secs(5)
                } else {
                    Duration::ZERO
                };
                first = false;
                // One connection at a time, as a terminal has: the next waits for this one to end.
                if let Err(e) = relay(terminal, client, tumbler, patience).await {
                    tracing::debug!(error = %e, "relay connection ended");
                }
            }
        });
        Ok(Relay { addr, task })
    }

    /// Where the terminal connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

/// How long a terminal connection waits for the client agent to listen.
const CLIENT_PATIENCE: Duration = Duration::from_secs(5);

/// Connects to `addr`, retrying until `deadline` (at least once).
async fn connect(addr: SocketAddr, deadline: Instant) -> Option<TcpStream> {
    loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Some(stream);
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(_) => return None,
        }
    }
}

async fn relay(
    terminal: TcpStream,
    client: SocketAddr,
    tumbler: SocketAddr,
    patience: Duration,
) -> std::io::Result<()> {
    terminal.set_nodelay(true)?;
    // The client agent is started just before the terminal and may not listen yet; without it
    // the connection is pointless, so it is waited for (the terminal would only reconnect later).
    let client = connect(client, Instant::now() + CLIENT_PATIENCE)
        .await
        .ok_or_else(|| std::io::Error::other("the client agent does not accept connections"))?;
    let mut tumbler = connect(tumbler, Instant::now() + patience).await;
    let (mut term_read, mut term_write) = terminal.into_split();
    let (mut client_read, mut client_write) = client.into_split();
    let back = async move {
        let copied = tokio::io::copy(&mut client_read, &mut term_write).await;
        let _ = term_write.shutdown().await;
        copied.map(drop)
    };
    let forth = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = term_read.read(&mut buf).await?;
            if n == 0 {
                let _ = client_write.shutdown().await;
                return Ok::<(), std::io::Error>(());
            }
            client_write.write_all(&buf[..n]).await?;
            if let Some(t) = tumbler.as_mut() {
                if t.write_all(&buf[..n]).await.is_err() {
                    // The tumbler exited after firing; the client's link goes on.
                    tumbler = None;
                }
            }
        }
    };
    // Either direction ending ends the connection; the terminal reconnects and both agents resync.
    tokio::select! {
        r = back => r,
        r = forth => r,
    }
}
