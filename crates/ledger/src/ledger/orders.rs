//! Finding an order row by ticket.

use super::{Ledger, OrderRow};

/// How many of the newest orders a lookup searches on their own first: a few pages, enough for the
/// orders a live deal or update refers to.
const RECENT_ORDERS: usize = 1024;

/// Where `ticket` is (or would go) in `rows`, sorted by ticket: exactly what `binary_search` answers.
/// Tickets grow with time and a live record almost always concerns a recent order, so the newest
/// rows, which stay in cache, are searched alone when the ticket is among them; a search over a
/// million rows otherwise misses the cache at nearly every step.
pub(super) fn index_of(rows: &[OrderRow], ticket: u64) -> Result<usize, usize> {
    let tail = rows.len().saturating_sub(RECENT_ORDERS);
    let (from, part) = match rows.get(tail) {
        Some(first) if first.ticket <= ticket => (tail, &rows[tail..]),
        _ => (0, &rows[..tail]),
    };
    part.binary_search_by_key(&ticket, |r| r.ticket)
        .map(|i| from + i)
        .map_err(|i| from + i)
}

impl Ledger {
    pub(crate) fn order(&self, ticket: u64) -> Option<&OrderRow> {
        index_of(&self.orders, ticket).ok().map(|i| &self.orders[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedge_domain::{OrderState, OrderType};

    fn row(ticket: u64) -> OrderRow {
        OrderRow {
            ticket,
            magic: 0,
            price: 0,
            vol_initial: 0,
            time_setup: 0,
            time_done: 0,
            comment: 0,
            symbol: 0,
            otype: OrderType::Buy,
            state: OrderState::Filled,
        }
    }

    #[test]
    fn answers_as_a_binary_search_of_all_rows() {
        // Every other ticket, so both found and missing tickets fall in the old and recent parts.
        for len in [
            0,
            1,
            5,
            RECENT_ORDERS - 1,
            RECENT_ORDERS,
            RECENT_ORDERS + 1,
            3 * RECENT_ORDERS,
        ] {
            let rows: Vec<OrderRow> = (0..len as u64).map(|i| row(10 + 2 * i)).collect();
            for ticket in 0..(14 + 2 * len as u64) {
                assert_eq!(
                    index_of(&rows, ticket),
                    rows.binary_search_by_key(&ticket, |r| r.ticket),
                    "{len} rows, ticket {ticket}"
                );
            }
        }
    }
}
