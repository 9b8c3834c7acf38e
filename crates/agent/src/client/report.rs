//! From tracker events to the outbox: each event becomes the center's report (and, with a
//! prototype-style center, a legacy open), written together with the tracker's new state in one
//! transaction, so a restart neither loses nor repeats a report.

use super::{ClientAgent, ClientAgentError, KEY_LAST_SEEN, NS_META, NS_POSITION};
use crate::tracker::{PositionChange, PositionEvent};
use hedge_agent_runtime::center::LegacyOpen;
use hedge_agent_runtime::observed::TimeMs;
use hedge_agent_runtime::outbox::{NewItem, OutboxKind, StateWrite};
use hedge_center_api::model::{ExitDeal, PositionEventKind, PositionReport};
use hedge_domain::{PositionId, Price};

impl ClientAgent {
    /// Queues the reports of `events` and persists the tracker's new state, in one transaction.
    pub(super) fn commit(
        &mut self,
        events: Vec<PositionEvent>,
        time: TimeMs,
    ) -> Result<(), ClientAgentError> {
        let event_time = events.iter().map(|e| e.time).max().unwrap_or(time);
        let seen = self.last_seen.unwrap_or(0).max(time).max(event_time);
        if events.is_empty() && self.last_seen == Some(seen) {
            return Ok(());
        }
        let mut items = Vec::new();
        let mut writes = Vec::new();
        let mut touched: Vec<PositionId> = Vec::new();
        let mut reported = Vec::new();
        for e in &events {
            if !touched.contains(&e.position) {
                touched.push(e.position);
            }
            // The configured rule, then the common aliases and decorations (`GOLD.r` is
            // XAUUSD) as matched against the terminal's symbol list.
            let canonical = self.names.canonical_of(&e.symbol);
            if canonical == e.symbol
                && self.settings.symbol_map.to_canonical(&e.symbol).is_none()
                && self.settings.symbols.is_empty()
            {
                tracing::warn!(symbol = %e.symbol, "symbol does not match the prefix; reported under its account name");
            }
            if !self.settings.watches(&canonical) {
                tracing::debug!(event = %e.describe(), "not a watched symbol; not reported");
                continue;
            }
            reported.push(e);
            self.status.event(e.describe());
            if self.options.center {
                items.push(
                    NewItem::json(e.key(), OutboxKind::PositionEvent, &report(e, &canonical))
                        .map_err(|err| ClientAgentError::State {
                            what: "report".into(),
                            message: err.to_string(),
                        })?,
                );
            }
            // A correction is for the `/v1` center's books; the prototype center had the open.
            if self.options.legacy && e.kind == PositionChange::Open && !e.resync {
                items.push(
                    NewItem::json(
                        format!("{}:legacy", e.key()),
                        OutboxKind::LegacyOpen,
                        &LegacyOpen::new(canonical.clone(), e.volume, e.side),
                    )
                    .map_err(|err| ClientAgentError::State {
                        what: "legacy report".into(),
                        message: err.to_string(),
                    })?,
                );
            }
        }
        for id in touched {
            let key = id.to_string();
            match self.tracker.get(id) {
                Some(state) => writes.push(StateWrite::Put {
                    ns: NS_POSITION.into(),
                    key,
                    value: serde_json::to_string(state).map_err(|err| ClientAgentError::State {
                        what: "position".into(),
                        message: err.to_string(),
                    })?,
                }),
                None => writes.push(StateWrite::Delete {
                    ns: NS_POSITION.into(),
                    key,
                }),
            }
        }
        writes.push(StateWrite::Put {
            ns: NS_META.into(),
            key: KEY_LAST_SEEN.into(),
            value: seen.to_string(),
        });
        self.outbox.commit(&items, &writes)?;
        self.last_seen = Some(seen);
        // Logged once committed: the reports are on their way by now, not held up by the log.
        for e in reported {
            tracing::info!(
                key = %e.key(),
                kind = e.kind.as_str(),
                position = %e.position,
                symbol = %e.symbol,
                side = %e.side,
                volume = %e.volume,
                delta = %e.delta,
                reversal = e.reversal,
                "position event"
            );
        }
        Ok(())
    }
}

fn non_zero(p: Price) -> Option<Price> {
    (!p.is_zero()).then_some(p)
}

/// The exit deal a partial close or close carries to the center: only a deal that closed exactly
/// the volume this event removes. A close found in the history after several deals (the last one
/// is known), or a netting deal that also opened the other side, realized money that is not this
/// event's alone; the center then shows the position's figures as unknown rather than wrong.
fn exit_deal(e: &PositionEvent) -> Option<ExitDeal> {
    if !matches!(e.kind, PositionChange::PartialClose | PositionChange::Close) {
        return None;
    }
    let close = e.close.as_ref()?;
    let money = close.money.as_ref()?;
    if money.volume != e.delta {
        return None;
    }
    Some(ExitDeal {
        price: close.price.filter(|p| p.is_positive())?,
        profit: money.profit,
        commission: money.commission,
        swap: money.swap,
        fee: money.fee,
    })
}

/// The center's report for one event.
pub fn report(e: &PositionEvent, canonical: &str) -> PositionReport {
    let kind = match e.kind {
        PositionChange::Open => PositionEventKind::Open,
        PositionChange::Increase => PositionEventKind::Increase,
        PositionChange::PartialClose => PositionEventKind::PartialClose,
        PositionChange::Close => PositionEventKind::Close,
        PositionChange::Modify => PositionEventKind::Modify,
    };
    let price = match (&e.kind, &e.close) {
        (PositionChange::Close, Some(c)) => c.price.or(Some(e.price_open)),
        _ => Some(e.price_open),
    };
    // Opens, increases and modifications carry the position's own comment (its entry comment); a
    // reduction or close carries its deal's (the exit comment). What the agent only inferred is
    // said after it.
    let own = match e.kind {
        PositionChange::PartialClose | PositionChange::Close => {
            e.close.as_ref().map_or("", |c| c.comment.as_str())
        }
        PositionChange::Open | PositionChange::Increase | PositionChange::Modify => {
            e.comment.as_str()
        }
    };
    let mut notes: Vec<&str> = Vec::new();
    if !own.is_empty() {
        notes.push(own);
    }
    if e.reversal {
        notes.push("reversal");
    }
    if e.resync {
        notes.push("re-synced from the terminal");
    }
    if e.close.as_ref().is_some_and(|c| !c.confirmed) {
        notes.push("closed while the agent was away; no closing deal found");
    }
    let comment = notes.join("; ");
    PositionReport {
        exit: exit_deal(e),
        kind,
        login: e.login,
        position_id: e.position,
        symbol: canonical.to_owned(),
        account_symbol: e.symbol.clone(),
        side: e.side,
        volume: e.volume,
        price: price.and_then(non_zero),
        sl: non_zero(e.sl),
        tp: non_zero(e.tp),
        time_ms: e.time,
        magic: e.magic,
        comment,
        seq: u64::from(e.seq),
        idempotency_key: e.key(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::history::tests::deal;
    use hedge_agent_runtime::observed::CloseDetail;
    use hedge_domain::{DealEntry, DealType, Magic, Volume};
    use rust_decimal::Decimal;

    #[test]
    fn reports_carry_the_entry_comment_then_the_closing_deals() {
        let mut tracker = crate::tracker::Tracker::new(hedge_domain::Login(7));
        let mut seen = hedge_agent_runtime::observed::Observed {
            id: PositionId(10),
            symbol: "EURUSD".into(),
            side: hedge_domain::Side::Buy,
            volume: Volume(Decimal::new(10, 2)),
            price_open: Price(Decimal::new(11000, 4)),
            sl: Price::ZERO,
            tp: Price::ZERO,
            magic: Magic(0),
            comment: "signal #42".into(),
            time: 100,
            time_update: 100,
        };
        let opened = tracker.observe(&seen, None);
        assert_eq!(report(&opened[0], "EURUSD").comment, "signal #42");

        let mut closing = deal(2, 10, DealEntry::Out, DealType::Sell, 10, 200);
        closing.comment = "[sl 1.09000]".into();
        seen.volume = Volume::ZERO;
        seen.time_update = 200;
        let closed = tracker.observe(&seen, Some(CloseDetail::from_deal(&closing)));
        let r = report(&closed[0], "EURUSD");
        assert_eq!(r.kind, PositionEventKind::Close);
        assert_eq!(r.comment, "[sl 1.09000]");

        // A close only inferred from a snapshot says so, and has no deal comment to give.
        seen.id = PositionId(11);
        seen.volume = Volume(Decimal::new(10, 2));
        tracker.observe(&seen, None);
        let gone = tracker.reconcile(&[], &std::collections::HashMap::new(), 300);
        assert_eq!(
            report(&gone[0], "EURUSD").comment,
            "closed while the agent was away; no closing deal found"
        );
    }

    #[test]
    fn a_close_carries_its_deal_only_when_the_deal_closed_exactly_its_volume() {
        let mut tracker = crate::tracker::Tracker::new(hedge_domain::Login(7));
        let mut seen = hedge_agent_runtime::observed::Observed {
            id: PositionId(10),
            symbol: "EURUSD".into(),
            side: hedge_domain::Side::Buy,
            volume: Volume(Decimal::new(30, 2)),
            price_open: Price(Decimal::new(11000, 4)),
            sl: Price::ZERO,
            tp: Price::ZERO,
            magic: Magic(0),
            comment: String::new(),
            time: 100,
            time_update: 100,
        };
        let opened = tracker.observe(&seen, None);
        assert_eq!(report(&opened[0], "EURUSD").exit, None);

        let mut part = deal(2, 10, DealEntry::Out, DealType::Sell, 10, 200);
        part.profit = hedge_domain::Money(Decimal::new(512, 2));
        part.commission = hedge_domain::Money(Decimal::new(-35, 2));
        part.swap = hedge_domain::Money(Decimal::new(-1, 2));
        part.fee = hedge_domain::Money(Decimal::new(-2, 2));
        seen.volume = Volume(Decimal::new(20, 2));
        seen.time_update = 200;
        let reduced = tracker.observe(&seen, Some(CloseDetail::from_deal(&part)));
        let r = report(&reduced[0], "EURUSD");
        assert_eq!(
            r.exit,
            Some(ExitDeal {
                price: part.price,
                profit: part.profit,
                commission: part.commission,
                swap: part.swap,
                fee: part.fee,
            })
        );

        // The history's last exit deal of a position closed in two parts while away: 0.05 of
        // the 0.2 this close removes. Its money is not the close's.
        let last = deal(4, 10, DealEntry::Out, DealType::Sell, 5, 400);
        let mut closes = std::collections::HashMap::new();
        closes.insert(PositionId(10), CloseDetail::from_deal(&last));
        let gone = tracker.reconcile(&[], &closes, 500);
        assert_eq!(gone[0].kind, PositionChange::Close);
        let r = report(&gone[0], "EURUSD");
        assert_eq!(r.price, Some(last.price));
        assert_eq!(r.exit, None);

        // Inferred from a snapshot: no deal at all.
        seen.id = PositionId(11);
        tracker.observe(&seen, None);
        let gone = tracker.reconcile(&[], &std::collections::HashMap::new(), 600);
        assert_eq!(report(&gone[0], "EURUSD").exit, None);
    }
}
