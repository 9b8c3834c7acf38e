//! The final check: per canonical symbol, the clients' net position against the hedge account's.

use hedge_domain::{Side, Volume};
use serde::Serialize;
use std::collections::BTreeMap;

/// One open position, under its canonical symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    pub symbol: String,
    pub side: Side,
    pub volume: Volume,
}

/// One line of the final table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExposureRow {
    pub symbol: String,
    /// Signed: buys minus sells over every client account.
    pub client_net: Volume,
    /// Signed, on the hedge account.
    pub hedge_net: Volume,
    /// `client_net + hedge_net`: zero when the hedge covers the clients exactly.
    pub uncovered: Volume,
    /// `-hedge_net / client_net`, when the clients hold something.
    pub ratio: Option<String>,
    pub ok: bool,
}

fn net(holdings: &[Holding]) -> BTreeMap<String, Volume> {
    let mut out: BTreeMap<String, Volume> = BTreeMap::new();
    for h in holdings {
        let signed = match h.side {
            Side::Buy => h.volume,
            Side::Sell => -h.volume,
        };
        *out.entry(h.symbol.clone()).or_insert(Volume::ZERO) += signed;
    }
    out
}

/// The table over every symbol either side holds. A row is ok when the hedge is exactly opposite.
pub fn table(clients: &[Holding], hedge: &[Holding]) -> Vec<ExposureRow> {
    let c = net(clients);
    let h = net(hedge);
    let mut symbols: Vec<&String> = c.keys().chain(h.keys()).collect();
    symbols.sort();
    symbols.dedup();
    symbols
        .into_iter()
        .map(|s| {
            let client_net = c.get(s).copied().unwrap_or(Volume::ZERO);
            let hedge_net = h.get(s).copied().unwrap_or(Volume::ZERO);
            let uncovered = client_net + hedge_net;
            let ratio = (!client_net.is_zero()).then(|| {
                (-hedge_net.0 / client_net.0)
                    .round_dp(4)
                    .normalize()
                    .to_string()
            });
            ExposureRow {
                symbol: s.clone(),
                client_net: client_net.normalize(),
                hedge_net: hedge_net.normalize(),
                uncovered: uncovered.normalize(),
                ratio,
                ok: uncovered.is_zero(),
            }
        })
        .collect()
}

/// Whether every row holds and there is something to hedge at all.
pub fn holds(rows: &[ExposureRow]) -> bool {
    !rows.is_empty() && rows.iter().all(|r| r.ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn h(symbol: &str, side: Side, v: rust_decimal::Decimal) -> Holding {
        Holding {
            symbol: symbol.into(),
            side,
            volume: Volume(v),
        }
    }

    #[test]
    fn an_exact_opposite_hedge_holds() {
        let clients = [
            h("EURUSD", Side::Buy, dec!(0.1)),
            h("EURUSD", Side::Buy, dec!(0.2)),
            h("XAUUSD", Side::Sell, dec!(0.05)),
            h("XAUUSD", Side::Sell, dec!(0.03)),
        ];
        let hedge = [
            h("EURUSD", Side::Sell, dec!(0.3)),
            h("XAUUSD", Side::Buy, dec!(0.08)),
        ];
        let rows = table(&clients, &hedge);
        assert_eq!(rows.len(), 2);
        assert!(holds(&rows));
        assert_eq!(rows[0].client_net, Volume(dec!(0.3)));
        assert_eq!(rows[0].hedge_net, Volume(dec!(-0.3)));
        assert_eq!(rows[0].ratio.as_deref(), Some("1"));
    }

    #[test]
    fn a_missing_or_same_side_hedge_fails() {
        let clients = [h("EURUSD", Side::Buy, dec!(0.1))];
        assert!(!holds(&table(&clients, &[])));
        assert!(!holds(&table(
            &clients,
            &[h("EURUSD", Side::Buy, dec!(0.1))]
        )));
        assert!(!holds(&table(&[], &[])));
        let rows = table(&[], &[h("GBPUSD", Side::Sell, dec!(0.1))]);
        assert!(!rows[0].ok);
        assert_eq!(rows[0].ratio, None);
    }
}
