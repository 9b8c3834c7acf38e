//! The per-account status line: every few seconds, one log line saying whether the terminal is
//! connected, what the last event was and how many reports wait in the outbox.

use crate::outbox::Outbox;
use crate::valuation::Valuation;
use hedge_domain::Login;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Inner {
    connected: bool,
    last_event: Option<(String, Instant)>,
    last_event_ms: Option<i64>,
    terminal: String,
    valuation: Option<Valuation>,
    /// Bumped on every new valuation, so a heartbeat can wait for a fresh one.
    valuation_seq: u64,
}

/// Shared, cheap-to-update status of one account. Clone it into every task that changes it.
#[derive(Clone, Debug)]
pub struct StatusBoard {
    login: Login,
    role: &'static str,
    inner: Arc<Mutex<Inner>>,
}

/// A copy of the status at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub login: Login,
    pub role: &'static str,
    pub connected: bool,
    pub terminal: String,
    pub last_event: Option<String>,
    pub last_event_age: Option<Duration>,
}

impl StatusBoard {
    pub fn new(role: &'static str, login: Login) -> Self {
        StatusBoard {
            login,
            role,
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    /// The terminal connected (`peer` describes it: server, build) or went away.
    pub fn set_connected(&self, connected: bool, peer: impl Into<String>) {
        let mut inner = self.inner.lock();
        inner.connected = connected;
        inner.terminal = peer.into();
    }

    /// Records the latest event (a short description such as `open 123 EURUSD buy 0.1`).
    pub fn event(&self, description: impl Into<String>) {
        let mut inner = self.inner.lock();
        inner.last_event = Some((description.into(), Instant::now()));
        inner.last_event_ms = Some(crate::clock::now_ms());
    }

    /// The latest account block, marks and reconciliation.
    pub fn set_valuation(&self, valuation: Valuation) {
        let mut inner = self.inner.lock();
        inner.valuation = Some(valuation);
        inner.valuation_seq += 1;
    }

    /// The latest valuation and its sequence number (0 before the first).
    pub fn valuation(&self) -> (Option<Valuation>, u64) {
        let inner = self.inner.lock();
        (inner.valuation.clone(), inner.valuation_seq)
    }

    /// Wall-clock time (ms since the epoch) of the latest event.
    pub fn last_event_ms(&self) -> Option<i64> {
        self.inner.lock().last_event_ms
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        let inner = self.inner.lock();
        StatusSnapshot {
            login: self.login,
            role: self.role,
            connected: inner.connected,
            terminal: inner.terminal.clone(),
            last_event: inner.last_event.as_ref().map(|(e, _)| e.clone()),
            last_event_age: inner.last_event.as_ref().map(|(_, t)| t.elapsed()),
        }
    }

    /// Logs one status line now.
    pub fn log_line(&self, outbox: Option<&Outbox>) {
        let s = self.snapshot();
        let pending = outbox.and_then(|o| o.pending().ok());
        let sender = outbox.map(|o| o.sender_status());
        let center_up = sender.as_ref().map(|st| st.receiver_up);
        // From the database: reports refused before a restart still count.
        let dead = outbox
            .and_then(|o| o.dead_letter_summary().ok())
            .map(|(n, _)| n);
        let last = match (&s.last_event, s.last_event_age) {
            (Some(e), Some(age)) => format!("{e} ({}s ago)", age.as_secs()),
            _ => "none".to_owned(),
        };
        tracing::info!(
            role = s.role,
            account = %s.login,
            connected = s.connected,
            terminal = %s.terminal,
            last_event = %last,
            pending_outbox = pending,
            center_up = center_up,
            dead_letters = dead,
            "status"
        );
    }

    /// Logs a status line every `interval` until the task is aborted.
    pub fn spawn(
        &self,
        outbox: Option<Arc<Outbox>>,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let board = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                board.log_line(outbox.as_deref());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_tracks_connection_and_last_event() {
        let b = StatusBoard::new("client", Login(7));
        assert!(!b.snapshot().connected);
        b.set_connected(true, "Demo-Server");
        b.event("open 1 EURUSD buy 0.1");
        let s = b.snapshot();
        assert!(s.connected);
        assert_eq!(s.terminal, "Demo-Server");
        assert_eq!(s.last_event.as_deref(), Some("open 1 EURUSD buy 0.1"));
        b.log_line(None);
    }
}
