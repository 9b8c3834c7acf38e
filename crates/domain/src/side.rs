//! The direction of a position or an order.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Buy or sell. Serialized as `"buy"`/`"sell"`; [`Side::code`] gives MT5's 0/1 (`POSITION_TYPE`,
/// and the legacy center's `side` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub const fn opposite(self) -> Self {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// +1 for a buy, -1 for a sell: the sign of this side's contribution to a net position.
    pub const fn sign(self) -> i32 {
        match self {
            Side::Buy => 1,
            Side::Sell => -1,
        }
    }

    /// MT5's numeric code (0 buy, 1 sell), as `POSITION_TYPE` and the legacy center's `side` use.
    pub const fn code(self) -> u8 {
        match self {
            Side::Buy => 0,
            Side::Sell => 1,
        }
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Side::Buy),
            1 => Some(Side::Sell),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "buy" | "0" | "long" => Ok(Side::Buy),
            "sell" | "1" | "short" => Ok(Side::Sell),
            other => Err(format!("not a side: {other:?} (expected buy or sell)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_opposites() {
        assert_eq!(Side::Buy.code(), 0);
        assert_eq!(Side::Sell.code(), 1);
        assert_eq!(Side::from_code(1), Some(Side::Sell));
        assert_eq!(Side::from_code(2), None);
        assert_eq!(Side::Buy.opposite(), Side::Sell);
        assert_eq!(Side::Sell.sign(), -1);
        assert_eq!("SELL".parse::<Side>().unwrap(), Side::Sell);
        assert!("up".parse::<Side>().is_err());
    }
}
