//! Bi-directional positions of a netting account, for the client's tracker and the hedger.
//!
//! A netting terminal shows one net position per symbol; the center needs the positions the trader
//! actually opened. The book replays the account's history into a [`hedge_ledger::Ledger`] and keeps
//! it current from live deals, then hands the tracker the ledger's positions in the same shape as a
//! terminal position, so ids, sequence numbers, idempotency keys and restart handling stay the
//! tracker's. Pairing: link magics when the history carries any (orders placed through the ledger),
//! otherwise first-in-first-out per symbol, which is how a manual netting account's deals read.

use crate::observed::{CloseDetail, ClosedWhileAway, Observed, TimeMs};
use hedge_domain::{AccountMarginMode, DealTicket, Login, PositionId, Price, Volume};
use hedge_ledger::{ActivePosition, Ledger, LedgerAccount, LedgerError, PairingMode};
use hedge_protocol::{DealRecord, OrderRecord};
use std::collections::{BTreeSet, HashMap, HashSet};

#[derive(Debug, thiserror::Error)]
pub enum NettingError {
    #[error("the account's history does not replay: {0}")]
    Replay(#[from] LedgerError),
    /// A link magic in a book paired first-in-first-out: the history must be replayed with links.
    #[error("deal {deal} carries a link magic; the book pairs first-in-first-out")]
    LinkedDeal { deal: DealTicket },
}

/// The ledger of one netting account.
#[derive(Debug)]
pub struct NettingBook {
    ledger: Ledger,
    /// Deals already integrated (a live record of one of them is a repeat).
    known: HashSet<DealTicket>,
}

fn ledger_deal(d: &DealRecord) -> hedge_ledger::LedgerDeal {
    hedge_ledger::LedgerDeal {
        ticket: d.ticket,
        order: d.order,
        symbol: d.symbol.clone(),
        deal_type: d.deal_type,
        entry: d.entry,
        magic: d.magic,
        position_id: d.position_id,
        volume: d.volume,
        price: d.price,
        commission: d.commission,
        swap: d.swap,
        profit: d.profit,
        time_msc: d.time,
        comment: d.comment.clone(),
    }
}

fn ledger_order(o: &OrderRecord) -> hedge_ledger::LedgerOrder {
    hedge_ledger::LedgerOrder {
        ticket: o.ticket,
        symbol: o.symbol.clone(),
        order_type: o.order_type,
        state: o.state,
        magic: o.magic,
        volume_initial: o.volume_initial,
        volume_current: o.volume_current,
        price_open: o.price_open,
        time_setup_msc: o.time_setup,
        time_done_msc: o.time_done,
        position_id: o.position_id,
        comment: o.comment.clone(),
    }
}

fn observed(p: &ActivePosition<'_>, time_update: TimeMs) -> Observed {
    let first = p.deals().map(|d| d.time_msc).min().unwrap_or(0);
    Observed {
        id: p.id(),
        symbol: p.symbol().to_owned(),
        side: p.side(),
        volume: p.volume(),
        price_open: p.entry_price(),
        sl: p.stop_loss().unwrap_or(Price::ZERO),
        tp: Price::ZERO,
        magic: p.entry_magic(),
        comment: p.entry_comment().to_owned(),
        time: first,
        time_update,
    }
}

/// What one live deal did to the bi-directional positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touched {
    /// The position's state after the deal (volume 0 once closed).
    pub position: Observed,
    /// The deal that closed it, or that reduced it (the partial close carries the deal's comment).
    pub close: Option<CloseDetail>,
}

impl NettingBook {
    /// Replays the account's history (orders and deals, any order).
    pub fn replay(
        login: Login,
        margin_mode: AccountMarginMode,
        orders: &[OrderRecord],
        deals: &[DealRecord],
    ) -> Result<Self, NettingError> {
        let linked = deals.iter().any(|d| hedge_ledger::codec::is_link(d.magic))
            || orders.iter().any(|o| hedge_ledger::codec::is_link(o.magic));
        let mode = if linked {
            PairingMode::Links
        } else {
            PairingMode::Fifo
        };
        Self::replay_with(login, margin_mode, mode, orders, deals)
    }

    /// Replays with the pairing given rather than guessed: an account whose orders all go through
    /// the ledger (the hedger's) pairs by links from its first deal on.
    pub fn replay_with(
        login: Login,
        margin_mode: AccountMarginMode,
        mode: PairingMode,
        orders: &[OrderRecord],
        deals: &[DealRecord],
    ) -> Result<Self, NettingError> {
        let history = hedge_ledger::History {
            account: LedgerAccount {
                login,
                margin_mode,
                currency: String::new(),
            },
            orders: orders.iter().map(ledger_order).collect(),
            deals: deals.iter().map(ledger_deal).collect(),
        };
        let mut ledger = Ledger::replay_with(&history, mode, |_| {})?;
        ledger.track_events();
        Ok(NettingBook {
            ledger,
            known: deals.iter().map(|d| d.ticket).collect(),
        })
    }

    pub fn mode(&self) -> PairingMode {
        self.ledger.mode()
    }

    /// The open bi-directional positions, as full rows for reconciliation.
    pub fn rows(&self) -> Vec<Observed> {
        self.ledger
            .active_positions()
            .iter()
            .map(|p| observed(p, 0))
            .collect()
    }

    /// Net volume per symbol (buy positive), to compare with the terminal's own positions.
    pub fn net_volume(&self, symbol: &str) -> Volume {
        self.ledger.net_volume(symbol)
    }

    /// The symbols the open positions are on.
    pub fn symbols(&self) -> Vec<String> {
        let mut symbols: Vec<String> = self
            .ledger
            .active_positions()
            .iter()
            .map(|p| p.symbol().to_owned())
            .collect();
        symbols.sort();
        symbols.dedup();
        symbols
    }

    /// The latest marks of the open positions: commission and swap are each position's share of
    /// its deals (the ledger splits them by volume), profit is valued at `price(symbol, side)` (the
    /// price the position would close at). Positions without a price or a spec are left out.
    pub fn marks(
        &self,
        price: impl Fn(&str, hedge_domain::Side) -> Option<Price>,
        spec: impl Fn(&str) -> Option<hedge_domain::SymbolSpec>,
    ) -> Vec<hedge_center_api::model::PositionMark> {
        self.ledger
            .active_positions()
            .iter()
            .filter_map(|p| {
                let current = price(p.symbol(), p.side())?;
                let spec = spec(p.symbol())?;
                Some(hedge_center_api::model::PositionMark {
                    position_id: p.id(),
                    price_current: current,
                    swap: p.swap(),
                    profit: p.profit(&spec, current),
                    commission: p.commission(),
                })
            })
            .collect()
    }

    /// A live order change (keeps link magics and stop orders known to the ledger).
    pub fn apply_order(&mut self, o: &OrderRecord) -> Result<(), NettingError> {
        self.ledger.apply_order(&ledger_order(o))?;
        Ok(())
    }

    /// A live deal: the positions it opened, changed or closed. A deal already integrated yields
    /// nothing.
    pub fn apply_deal(&mut self, d: &DealRecord) -> Result<Vec<Touched>, NettingError> {
        if self.ledger.mode() == PairingMode::Fifo && hedge_ledger::codec::is_link(d.magic) {
            return Err(NettingError::LinkedDeal { deal: d.ticket });
        }
        if !self.known.insert(d.ticket) {
            return Ok(Vec::new());
        }
        self.ledger.apply_deal(&ledger_deal(d))?;
        let events = self.ledger.drain_events();
        let reduced: BTreeSet<PositionId> = events
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    hedge_ledger::ledger::PositionChange::PartiallyClosed { .. }
                )
            })
            .map(|e| e.position)
            .collect();
        let ids: BTreeSet<PositionId> = events.into_iter().map(|e| e.position).collect();
        let mut out = Vec::new();
        for id in ids {
            match self.ledger.active(id) {
                Some(p) => out.push(Touched {
                    position: observed(&p, d.time),
                    close: reduced.contains(&id).then(|| CloseDetail::from_deal(d)),
                }),
                None => out.push(Touched {
                    // The tracker closes by id from its own state; only the id and the deal count.
                    position: Observed {
                        id,
                        symbol: d.symbol.clone(),
                        side: d
                            .deal_type
                            .side()
                            .unwrap_or(hedge_domain::Side::Buy)
                            .opposite(),
                        volume: Volume::ZERO,
                        price_open: Price::ZERO,
                        sl: Price::ZERO,
                        tp: Price::ZERO,
                        magic: d.magic,
                        comment: String::new(),
                        time: d.time,
                        time_update: d.time,
                    },
                    close: Some(CloseDetail::from_deal(d)),
                }),
            }
        }
        Ok(out)
    }

    /// For positions the tracker still holds but the ledger closed: how each was closed; for
    /// positions still open, their latest closed part (what reduced them, for a reduction found by
    /// comparing positions). And the positions that opened after `since` and closed entirely,
    /// never reported.
    pub fn closes(
        &self,
        ids: &[PositionId],
        since: Option<TimeMs>,
        reported: impl Fn(PositionId) -> bool,
    ) -> (HashMap<PositionId, CloseDetail>, Vec<ClosedWhileAway>) {
        let wanted: HashSet<PositionId> = ids.iter().copied().collect();
        let mut closes = HashMap::new();
        let mut away = Vec::new();
        let mut seen = HashSet::new();
        // Latest first: a position closed in several parts keeps its final close, one still open
        // its latest closed part.
        let hist: Vec<_> = self.ledger.history_positions().collect();
        for h in hist.iter().rev() {
            let id = h.id();
            if !seen.insert(id) {
                continue;
            }
            let last = h.exit_deals().max_by_key(|f| (f.time_msc, f.ticket));
            let close = CloseDetail {
                time: h.exit_time_msc(),
                price: Some(last.map(|f| f.price).unwrap_or_else(|| h.exit_price())),
                deal: last.map(|f| f.ticket),
                confirmed: true,
                comment: h.exit_comment().to_owned(),
                // The ledger's piece of a deal is not what the deal reports: left unknown.
                money: None,
            };
            if self.ledger.active(id).is_some() || wanted.contains(&id) {
                closes.insert(id, close);
            } else if since.is_some_and(|s| h.entry_time_msc() > s) && !reported(id) {
                let volume = self
                    .ledger
                    .history_positions()
                    .filter(|x| x.id() == id)
                    .fold(Volume::ZERO, |a, x| a + x.volume());
                away.push(ClosedWhileAway {
                    position: Observed {
                        id,
                        symbol: h.symbol().to_owned(),
                        side: h.side(),
                        volume: Volume::ZERO,
                        price_open: h.entry_price(),
                        sl: Price::ZERO,
                        tp: Price::ZERO,
                        magic: h.entry_magic(),
                        comment: h.entry_comment().to_owned(),
                        time: h.entry_time_msc(),
                        time_update: close.time,
                    },
                    volume,
                    close,
                });
            }
        }
        away.sort_by_key(|w| (w.position.time, w.position.id));
        (closes, away)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedge_domain::{DealEntry, DealType, OrderTicket, Side};
    use rust_decimal::Decimal;

    fn deal(ticket: u64, order: u64, t: DealType, entry: DealEntry, vol: i64) -> DealRecord {
        DealRecord {
            order: OrderTicket(order),
            position_id: PositionId(1),
            time: 1_000 * ticket as i64,
            ..DealRecord::trade(
                DealTicket(ticket),
                "EURUSD",
                t,
                entry,
                Volume(Decimal::new(vol, 2)),
                Price(Decimal::new(110_000 + ticket as i64, 5)),
            )
        }
    }

    fn book(deals: &[DealRecord]) -> NettingBook {
        NettingBook::replay(Login(7), AccountMarginMode::RetailNetting, &[], deals).unwrap()
    }

    fn lots(v: i64) -> Volume {
        Volume(Decimal::new(v, 2))
    }

    #[test]
    fn same_direction_deals_are_separate_positions_and_exits_go_first_in_first_out() {
        let b = book(&[
            deal(1, 1, DealType::Buy, DealEntry::In, 10),
            deal(2, 2, DealType::Buy, DealEntry::In, 20),
            deal(3, 3, DealType::Sell, DealEntry::Out, 5),
        ]);
        assert_eq!(b.mode(), PairingMode::Fifo);
        let rows: Vec<(PositionId, Volume)> = b.rows().iter().map(|r| (r.id, r.volume)).collect();
        assert_eq!(
            rows,
            vec![(PositionId(1), lots(5)), (PositionId(2), lots(20))]
        );
        assert_eq!(b.net_volume("EURUSD"), lots(25));
    }

    #[test]
    fn a_live_reversal_closes_every_older_position_and_opens_the_rest_once() {
        let history = [
            deal(1, 1, DealType::Buy, DealEntry::In, 10),
            deal(2, 2, DealType::Buy, DealEntry::In, 20),
        ];
        let mut b = book(&history);
        // A repeat of a replayed deal changes nothing.
        assert!(b.apply_deal(&history[1]).unwrap().is_empty());
        let rev = deal(3, 3, DealType::Sell, DealEntry::InOut, 50);
        let t = b.apply_deal(&rev).unwrap();
        let got: Vec<(PositionId, Side, Volume, bool)> = t
            .iter()
            .map(|t| {
                (
                    t.position.id,
                    t.position.side,
                    t.position.volume,
                    t.close.is_some(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (PositionId(1), Side::Buy, Volume::ZERO, true),
                (PositionId(2), Side::Buy, Volume::ZERO, true),
                (PositionId(3), Side::Sell, lots(20), false),
            ]
        );
        assert_eq!(
            t[0].close.as_ref().and_then(|c| c.deal),
            Some(DealTicket(3))
        );
        assert!(b.apply_deal(&rev).unwrap().is_empty());
        assert_eq!(b.net_volume("EURUSD"), -lots(20));
    }

    #[test]
    fn a_link_magic_in_a_first_in_first_out_book_asks_for_a_replay_with_links() {
        let mut b = book(&[deal(1, 1, DealType::Buy, DealEntry::In, 10)]);
        let link = hedge_ledger::encode(OrderTicket(1), hedge_ledger::LinkKind::Market).unwrap();
        let mut d = deal(2, 2, DealType::Sell, DealEntry::Out, 10);
        d.magic = link;
        assert!(matches!(
            b.apply_deal(&d),
            Err(NettingError::LinkedDeal { .. })
        ));
        let linked = book(&[deal(1, 1, DealType::Buy, DealEntry::In, 10), d]);
        assert_eq!(linked.mode(), PairingMode::Links);
        assert!(linked.rows().is_empty());
    }

    #[test]
    fn closes_and_round_trips_come_from_the_ledger_history() {
        let b = book(&[
            deal(1, 1, DealType::Buy, DealEntry::In, 10),
            deal(2, 2, DealType::Sell, DealEntry::Out, 4),
            deal(3, 3, DealType::Sell, DealEntry::Out, 6),
            // Opened and closed after the last look, in two parts.
            deal(5, 5, DealType::Sell, DealEntry::In, 30),
            deal(6, 6, DealType::Buy, DealEntry::Out, 10),
            deal(7, 7, DealType::Buy, DealEntry::Out, 20),
            deal(8, 8, DealType::Buy, DealEntry::In, 10),
        ]);
        let (closes, away) = b.closes(&[PositionId(1)], Some(4_000), |_| false);
        assert_eq!(closes[&PositionId(1)].deal, Some(DealTicket(3)));
        assert_eq!(away.len(), 1);
        assert_eq!(away[0].position.id, PositionId(5));
        assert_eq!(away[0].position.side, Side::Sell);
        assert_eq!(away[0].volume, lots(30));
        assert_eq!(away[0].close.deal, Some(DealTicket(7)));
        let (_, none) = b.closes(&[], Some(4_000), |id| id == PositionId(5));
        assert!(none.is_empty());
    }
}
