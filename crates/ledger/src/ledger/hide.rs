//! Exclusions: positions kept out of view, as part of the replay rather than after it, so that a
//! restart pairs exactly as the live ledger did.

use super::{ActivePos, Frag, Ledger};
use hedge_domain::{PositionId, Side};
use std::collections::{HashSet, VecDeque};

impl Ledger {
    /// Excludes position `id`: from its opening (`from_msc = None`), or once every deal at or before
    /// `from_msc` has been integrated. An already reached exclusion hides the position at once.
    pub fn exclude(&mut self, id: PositionId, from_msc: Option<i64>) {
        let id = id.get();
        self.excluded.insert(id, from_msc);
        match from_msc {
            Some(t) if t > self.last_key.0 => {
                let at = self.exclusion_queue.partition_point(|&(q, _)| q > t);
                self.exclusion_queue.insert(at, (t, id));
            }
            _ => self.hide_now(id),
        }
    }

    /// Whether a position opening at `time` is already excluded.
    pub(crate) fn excluded_at(&self, id: u64, time: i64) -> bool {
        match self.excluded.get(&id) {
            Some(None) => true,
            Some(Some(t)) => *t < time,
            None => false,
        }
    }

    /// Hides the timed exclusions the replay has reached: before a deal at `time` those strictly
    /// earlier, after it those at or before it.
    pub(crate) fn hide_reached(&mut self, time: i64, after: bool) {
        while let Some(&(t, id)) = self.exclusion_queue.last() {
            if t > time || (t == time && !after) {
                break;
            }
            self.exclusion_queue.pop();
            self.hide_now(id);
        }
    }

    fn hide_now(&mut self, id: u64) {
        let Some(p) = self.active.remove(&id) else {
            return;
        };
        if let Some(q) = self.fifo.get_mut(&p.symbol) {
            q.retain(|&x| x != id);
        }
        self.hidden_pos.insert(id, p);
        let pid = PositionId(id);
        if let Err(at) = self.hidden.binary_search(&pid) {
            self.hidden.insert(at, pid);
        }
    }

    /// A position that opens already excluded goes straight out of view.
    pub(crate) fn hide_new(
        &mut self,
        id: u64,
        entry_order: u64,
        magic: u64,
        symbol: u32,
        side: Side,
        frag: Frag,
    ) {
        let p = ActivePos {
            id,
            entry_order,
            entry_magic: magic,
            symbol,
            side,
            deals: VecDeque::from([frag]),
            stop: None,
            last_cancelled_sl: None,
            rows: Vec::new(),
            seq: 0,
        };
        self.hidden_pos.insert(id, p);
        let pid = PositionId(id);
        if let Err(at) = self.hidden.binary_search(&pid) {
            self.hidden.insert(at, pid);
        }
    }

    /// A deal that belongs to a hidden position (its opening order's later fills; on hedging
    /// accounts any deal naming its position id) changes only the hidden position: what the broker
    /// nets against it stays out of view with it. Volume beyond it opens a visible position.
    pub(crate) fn absorb_hidden(
        &mut self,
        id: u64,
        order: u64,
        magic: u64,
        side: Side,
        mut frag: Frag,
    ) {
        let Some(p) = self.hidden_pos.get_mut(&id) else {
            return;
        };
        if p.side == side {
            p.deals.push_back(frag);
            return;
        }
        while frag.vol > 0 {
            let Some(front) = p.deals.front_mut() else {
                break;
            };
            let v = front.vol.min(frag.vol);
            front.take(v);
            frag.take(v);
            if front.vol == 0 {
                p.deals.pop_front();
            }
        }
        let symbol = p.symbol;
        if p.deals.is_empty() {
            self.hidden_pos.remove(&id);
        }
        // The excess is the closing order's own position, never the hidden id again.
        if frag.vol > 0 && order != id {
            self.open_or_continue(order, magic, symbol, side, frag);
        }
    }

    /// Hides the active positions whose ids are listed, as of now: pairing up to here stands, and a
    /// later order linking to a hidden position opens a position of its own. For a result that a
    /// restart reproduces, record the exclusions and pass them to [`Ledger::replay_excluding`].
    pub fn hide(&mut self, ids: &HashSet<u64>) -> usize {
        let before = self.active.len();
        let now = self.last_key.0;
        let mut ids: Vec<u64> = ids.iter().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.excluded.insert(id, Some(now));
            self.hide_now(id);
        }
        before - self.active.len()
    }

    /// Hides the active positions on symbols that have expired (futures past their expiration), as the
    /// original did at startup. Returns how many were hidden.
    pub fn hide_expired_symbols(&mut self, expired: &HashSet<String>) -> usize {
        let syms: HashSet<u32> = expired
            .iter()
            .filter_map(|s| self.symbols.lookup(s))
            .collect();
        let ids: HashSet<u64> = self
            .active
            .values()
            .filter(|p| syms.contains(&p.symbol))
            .map(|p| p.id)
            .collect();
        self.hide(&ids)
    }

    /// Ids hidden by exclusions, ascending.
    pub fn hidden(&self) -> &[PositionId] {
        &self.hidden
    }
}
