//! Re-syncing the center from the terminal: when a report was dead-lettered, at start-up with dead
//! letters kept, or when the heartbeat saw a difference, the center's positions of the account are
//! compared with the tracker's ([`crate::resync::plan`]) and corrective reports are queued, each
//! position at most once a minute; dead letters go once the books agree.

use super::heartbeat::books_of;
use super::{ClientAgent, ClientAgentError};
use crate::resync::{self, Held};
use crate::tracker::PositionEvent;
use hedge_agent_runtime::outbox::OutboxKind;
use hedge_center_api::model::PositionReport;
use hedge_domain::PositionId;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// How often one position may be corrected: a report the center keeps refusing must not loop.
const RESYNC_EVERY: Duration = Duration::from_secs(60);

/// How soon a re-sync that could not read the center's books is tried again.
const RESYNC_RETRY: Duration = Duration::from_secs(5);

/// The state of re-syncing the center from the terminal ([`crate::resync`]).
#[derive(Debug, Default)]
pub(super) struct CenterResync {
    /// A comparison is wanted (a dead letter, a difference seen by the heartbeat, start-up with
    /// dead letters, corrections waiting to be verified); it runs once nothing is pending.
    pub(super) due: bool,
    /// When each position was last corrected.
    pub(super) attempts: HashMap<PositionId, tokio::time::Instant>,
    /// When to compare again (a correction held back by [`RESYNC_EVERY`], an unreadable center).
    pub(super) retry_at: Option<tokio::time::Instant>,
    /// Raised by the heartbeat when the center's positions differ from the terminal's.
    pub(super) on_difference: Arc<tokio::sync::Notify>,
}

impl ClientAgent {
    /// The canonical symbol a position on account symbol `symbol` is reported under; `None` when
    /// it is not watched (never reported).
    fn reported_symbol(&self, symbol: &str) -> Option<String> {
        let canonical = self.names.canonical_of(symbol);
        self.settings.watches(&canonical).then_some(canonical)
    }

    /// When a comparison is due and can be trusted, reads the center's positions of the account
    /// and queues the reports that bring them to the tracker's (the terminal's) state; clears the
    /// dead letters of positions on which the books agree.
    pub(super) async fn resync_center(&mut self) -> Result<(), ClientAgentError> {
        if !self.resync.due {
            return Ok(());
        }
        let Some(center) = self.center.clone() else {
            self.resync.due = false;
            return Ok(());
        };
        // The tracker follows the terminal only while it is connected (on a netting account, once
        // the ledger replayed); reports still queued are not in the center's books yet. Whatever
        // ends the wait (the handshake, the next acknowledgement) comes back here.
        if !self.terminal.is_connected()
            || (self.ledger_mode && self.book.is_none())
            || self.outbox.pending()? > 0
        {
            return Ok(());
        }
        self.resync.due = false;
        let held: Vec<Held> = self
            .tracker
            .positions()
            .filter_map(|s| {
                Some(Held {
                    symbol: self.reported_symbol(&s.symbol)?,
                    state: s.clone(),
                })
            })
            .collect();
        let login = self.settings.login;
        let ids: Vec<PositionId> = held.iter().map(|h| h.state.id).collect();
        let books = match books_of(&center, login, &ids).await {
            Ok(books) => books,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the center's positions to compare them with the terminal's; trying again");
                self.resync.due = true;
                self.resync.retry_at = Some(tokio::time::Instant::now() + RESYNC_RETRY);
                return Ok(());
            }
        };
        let books: Vec<_> = books
            .into_iter()
            .filter(|p| self.settings.watches(&p.symbol))
            .collect();
        let time = self
            .terminal
            .with_state(|s| s.last_time)
            .max(self.last_seen.unwrap_or(0));
        let plan = resync::plan(login, &held, &books, time);
        for (id, why) in &plan.stuck {
            tracing::warn!(position = %id, %why, "the center's position differs from the terminal's and no report can correct it");
        }
        let events = self.admit_corrections(plan.corrections);
        if !events.is_empty() {
            self.commit(events, time)?;
            // Compared again once they are delivered: agreement then clears the dead letters.
            self.resync.due = true;
        }
        self.clear_agreed_dead_letters(&plan.differing)
    }

    /// The corrections not held back by [`RESYNC_EVERY`], logged, with the tracker's sequences
    /// moved past them; a held-back one sets when to compare again.
    fn admit_corrections(&mut self, corrections: Vec<resync::Correction>) -> Vec<PositionEvent> {
        let now = tokio::time::Instant::now();
        self.resync
            .attempts
            .retain(|_, t| now.duration_since(*t) < RESYNC_EVERY);
        self.resync.retry_at = None;
        let mut events = Vec::new();
        for c in corrections {
            if let Some(last) = self.resync.attempts.get(&c.position) {
                let at = *last + RESYNC_EVERY;
                self.resync.retry_at = Some(self.resync.retry_at.map_or(at, |r| r.min(at)));
                tracing::debug!(position = %c.position, differed = %c.what, "corrected less than a minute ago; waiting");
                continue;
            }
            let reports: Vec<String> = c.events.iter().map(PositionEvent::describe).collect();
            tracing::warn!(
                position = %c.position,
                differed = %c.what,
                reports = %reports.join(", "),
                "the center's position differs from the terminal's; re-syncing it"
            );
            self.resync.attempts.insert(c.position, now);
            if let Some(seq) = c.tracker_seq {
                self.tracker.advance_seq(c.position, seq);
            }
            events.extend(c.events);
        }
        events
    }

    /// Removes the dead letters of position reports whose position the center now holds as the
    /// terminal does (not in `differing`): the red state goes only when the books agree.
    fn clear_agreed_dead_letters(
        &self,
        differing: &BTreeSet<PositionId>,
    ) -> Result<(), ClientAgentError> {
        let login = self.settings.login;
        let keys: Vec<String> = self
            .outbox
            .dead_letters()?
            .into_iter()
            .filter(|d| OutboxKind::parse(&d.kind) == Some(OutboxKind::PositionEvent))
            .filter(|d| {
                serde_json::from_str::<PositionReport>(&d.body)
                    .is_ok_and(|r| r.login == login && !differing.contains(&r.position_id))
            })
            .map(|d| d.key)
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let removed = self.outbox.remove_dead_letters(&keys)?;
        tracing::info!(
            removed,
            keys = %keys.join(", "),
            "the center holds the terminal's positions again; refused reports cleared"
        );
        Ok(())
    }
}
