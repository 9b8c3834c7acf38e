//! The simulated symbols: specification, current quote and per-quote liquidity.

use hedge_domain::{FillingModes, Money, Price, SymbolSpec, Volume};
use hedge_protocol::{SymbolInfo, TimeMs};
use rust_decimal::Decimal;

/// A symbol as the simulated server holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimSymbol {
    pub spec: SymbolSpec,
    pub bid: Price,
    pub ask: Price,
    pub quote_time: TimeMs,
    /// Volume the market offers per quote; `None` is unlimited. Orders beyond it fill partially.
    pub liquidity: Option<Volume>,
    /// What is left of `liquidity` until the next quote.
    pub liquidity_left: Option<Volume>,
    /// Spread in points for generated quotes.
    pub spread_points: u32,
}

impl SimSymbol {
    pub fn new(spec: SymbolSpec, bid: Price, spread_points: u32) -> Self {
        let ask = Price(bid.0 + spec.point.0 * Decimal::from(spread_points));
        SimSymbol {
            spec,
            bid,
            ask,
            quote_time: 0,
            liquidity: None,
            liquidity_left: None,
            spread_points,
        }
    }

    pub fn with_liquidity(mut self, liquidity: Option<Volume>) -> Self {
        self.liquidity = liquidity;
        self.liquidity_left = liquidity;
        self
    }

    pub fn with_filling(mut self, filling: FillingModes) -> Self {
        self.spec.filling = filling;
        self
    }

    /// The same symbol at a broker whose lot holds `contract_size` units of the base asset (gold
    /// of 10 oz a lot instead of 100): tick value and margin are per lot, so they scale with it,
    /// and a lot here is worth what `contract_size / old` lots are at the other broker.
    pub fn with_contract_size(mut self, contract_size: Decimal) -> Self {
        let old = self.spec.contract_size;
        if old.is_sign_positive() && !old.is_zero() && contract_size.is_sign_positive() {
            let factor = contract_size / old;
            self.spec.tick_value = Money(self.spec.tick_value.0 * factor);
            self.spec.margin_per_lot = Money(self.spec.margin_per_lot.0 * factor);
        }
        self.spec.contract_size = contract_size;
        self
    }

    pub fn info(&self) -> SymbolInfo {
        SymbolInfo {
            spec: self.spec.clone(),
            bid: Some(self.bid),
            ask: Some(self.ask),
            time: self.quote_time,
        }
    }
}

fn d(mantissa: i64, scale: u32) -> Decimal {
    Decimal::new(mantissa, scale)
}

/// The default symbol set named by an account's naming rule (`EURUSD.r`, `mEURUSD`...).
pub fn default_symbols_for(map: &hedge_domain::SymbolMap) -> Vec<SimSymbol> {
    default_symbols("")
        .into_iter()
        .map(|mut s| {
            s.spec.name = map.to_account(&s.spec.name);
            s
        })
        .collect()
}

/// The default symbol set with realistic specifications, names decorated with `suffix` (e.g. `.r`).
/// Tick values are in USD for a USD account.
pub fn default_symbols(suffix: &str) -> Vec<SimSymbol> {
    let named = |base: &str| format!("{base}{suffix}");
    let mut eurusd = SymbolSpec::forex(named("EURUSD"), 5);
    eurusd.margin_per_lot = Money(d(1_100, 0));
    let mut gbpusd = SymbolSpec::forex(named("GBPUSD"), 5);
    gbpusd.margin_per_lot = Money(d(1_270, 0));
    let mut usdjpy = SymbolSpec::forex(named("USDJPY"), 3);
    // One point (0.001 JPY) on 100,000 USD is 100 JPY, about 0.67 USD.
    usdjpy.tick_value = Money(d(67, 2));
    usdjpy.margin_per_lot = Money(d(1_000, 0));
    let mut xauusd = SymbolSpec::forex(named("XAUUSD"), 2);
    xauusd.contract_size = Decimal::from(100);
    xauusd.volume_max = Volume(d(50, 0));
    xauusd.margin_per_lot = Money(d(2_000, 0));
    xauusd.stops_level = 10;
    vec![
        SimSymbol::new(eurusd, Price(d(108_312, 5)), 12),
        SimSymbol::new(gbpusd, Price(d(126_755, 5)), 15),
        SimSymbol::new(usdjpy, Price(d(149_512, 3)), 14),
        SimSymbol::new(xauusd, Price(d(192_345, 2)), 25),
    ]
}

/// Why a symbol name has no one account symbol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SymbolNameError {
    #[error("unknown symbol {wanted:?}; the account has {known}")]
    Unknown { wanted: String, known: String },
    #[error("symbol {wanted:?} is ambiguous: {candidates}; give the account's name")]
    Ambiguous { wanted: String, candidates: String },
}

/// The account's name for `wanted`: the name itself when the account has it, otherwise the one
/// account symbol that decorates it (`EURUSD` → `EURUSD.r`, `mEURUSD`), so scripts and control lines
/// can use the canonical names a trader thinks in.
pub fn account_name<'a>(
    names: impl IntoIterator<Item = &'a str>,
    wanted: &str,
) -> Result<String, SymbolNameError> {
    let names: Vec<&str> = names.into_iter().collect();
    if names.contains(&wanted) {
        return Ok(wanted.to_owned());
    }
    let decorated: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.len() > wanted.len() && (n.starts_with(wanted) || n.ends_with(wanted)))
        .collect();
    match decorated.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(SymbolNameError::Unknown {
            wanted: wanted.to_owned(),
            known: names.join(", "),
        }),
        many => Err(SymbolNameError::Ambiguous {
            wanted: wanted.to_owned(),
            candidates: many.join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_find_the_decorated_symbol() {
        let names = ["EURUSD.r", "XAUUSD.r", "mGBPUSD"];
        assert_eq!(account_name(names, "EURUSD").unwrap(), "EURUSD.r");
        assert_eq!(account_name(names, "EURUSD.r").unwrap(), "EURUSD.r");
        assert_eq!(account_name(names, "GBPUSD").unwrap(), "mGBPUSD");
        assert_eq!(
            account_name(names, "USDJPY").unwrap_err().to_string(),
            "unknown symbol \"USDJPY\"; the account has EURUSD.r, XAUUSD.r, mGBPUSD"
        );
        let err = account_name(["EURUSD.r", "EURUSD.pro"], "EURUSD")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ambiguous"), "{err}");
    }
}
