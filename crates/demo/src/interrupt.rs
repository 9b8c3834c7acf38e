//! Ctrl-C and SIGTERM, handled alike: the live phase winds down (its last table printed) and the
//! temporary folder, with the dashboard token and the databases, is removed in both cases.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// A request to stop, shared by `hedge demo` and the scenario. Before the live phase the scenario
/// is simply dropped (dropping it removes its folder); during it, the live phase ends on its own.
#[derive(Clone, Debug)]
pub struct Interrupt {
    fired: watch::Receiver<bool>,
    live: Arc<AtomicBool>,
}

impl Interrupt {
    /// One that never fires (tests, embedding programs that stop the demo themselves).
    pub fn never() -> Self {
        // The sender is dropped at once: `fired()` treats a closed channel as never firing.
        let (_, fired) = watch::channel(false);
        Interrupt {
            fired,
            live: Arc::default(),
        }
    }

    /// Fires on Ctrl-C or (on Unix) SIGTERM. Needs a tokio runtime.
    pub fn on_signals() -> std::io::Result<Self> {
        let (tx, fired) = watch::channel(false);
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            #[cfg(unix)]
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(true);
            // The sender stays alive so the receivers see `true`, not a closed channel.
            std::future::pending::<()>().await;
        });
        Ok(Interrupt {
            fired,
            live: Arc::default(),
        })
    }

    /// Waits until a stop is requested.
    pub async fn fired(&self) {
        let mut rx = self.fired.clone();
        if rx.wait_for(|fired| *fired).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The scenario entered its live phase, which ends by itself when a stop is requested.
    pub fn enter_live(&self) {
        self.live.store(true, Ordering::SeqCst);
    }

    pub fn in_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }
}
