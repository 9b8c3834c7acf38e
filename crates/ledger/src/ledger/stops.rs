//! Stop-loss orders: adoption of pending stops, cancellations, and the history S/L.

use super::{Ledger, PositionChange};
use crate::codec;
use crate::record::LedgerOrder;
use hedge_domain::{OrderTicket, OrderType, PositionId};

/// A stop-loss order in the ledger's sense: a BUY_STOP or SELL_STOP carrying a stop-loss link. A
/// limit order with the same link is an exchange close acting as a market order, briefly pending
/// (B§12 item 24), and never a stop.
pub(crate) fn is_stop_loss_order(o: &LedgerOrder) -> bool {
    matches!(o.order_type, OrderType::BuyStop | OrderType::SellStop)
        && codec::decode(o.magic).is_some_and(|l| l.is_stop_loss())
}

impl Ledger {
    /// A cancelled or expired stop order: drop it from its active position (remembered as the
    /// position's last stop), or show it as the SL of the closed position it protected (unless that
    /// one was closed by an executed stop).
    pub(crate) fn attach_cancelled(&mut self, o: &LedgerOrder) {
        if !is_stop_loss_order(o) {
            return;
        }
        let Some(link) = codec::decode(o.magic) else {
            return;
        };
        let target = link.ticket.get();
        let t = o.ticket.get();
        if let Some(p) = self.active.get_mut(&target) {
            p.last_cancelled_sl = Some(t);
            if p.stop == Some(t) {
                p.stop = None;
                self.emit(target, || PositionChange::StopLossChanged {
                    order: None,
                    price: None,
                });
            }
            return;
        }
        if let Some(p) = self.hidden_pos.get_mut(&target) {
            p.last_cancelled_sl = Some(t);
            if p.stop == Some(t) {
                p.stop = None;
            }
            return;
        }
        let hi = self.find_history(target);
        if let Some(h) = hi.and_then(|i| self.history.get_mut(i as usize)) {
            if h.sl_order == 0 || h.sl_order != h.exit_order {
                h.sl_order = t;
            }
        }
    }

    /// A pending stop-loss order linked to an active position becomes (or replaces) its stop.
    pub(crate) fn adopt_pending(&mut self, o: &LedgerOrder) {
        if !is_stop_loss_order(o) {
            return;
        }
        let Some(link) = codec::decode(o.magic) else {
            return;
        };
        let target = link.ticket.get();
        let t = o.ticket.get();
        let Some(p) = self.active.get(&target) else {
            return;
        };
        if p.stop == Some(t) {
            return;
        }
        let symbol_ok = o.symbol.is_empty() || self.symbols.get(p.symbol) == o.symbol;
        let side_ok = o.order_type.side() == Some(p.side.opposite());
        if !symbol_ok || !side_ok {
            self.warnings.push(super::Warning::StopNotAdopted {
                order: o.ticket,
                position: PositionId(target),
            });
            self.orphan_stops.push(o.ticket);
            return;
        }
        if let Some(old) = p.stop {
            self.orphan_stops.push(OrderTicket(old));
        }
        if let Some(p) = self.active.get_mut(&target) {
            p.stop = Some(t);
        }
        self.emit(target, || PositionChange::StopLossChanged {
            order: Some(o.ticket),
            price: Some(o.price_open),
        });
    }

    /// Takes the stop orders that no longer protect anything (superseded, duplicate, or left behind
    /// by a close) and are still working on the server, so they should be cancelled there.
    pub fn take_orphan_stops(&mut self) -> Vec<OrderTicket> {
        let mut out: Vec<OrderTicket> = std::mem::take(&mut self.orphan_stops)
            .into_iter()
            .filter(|t| {
                self.order(t.get())
                    .is_none_or(|o| super::order_state_is_pending(o.state))
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        out.retain(|t| seen.insert(*t));
        out
    }
}
