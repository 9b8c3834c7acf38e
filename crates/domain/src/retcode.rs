//! Trade server return codes (`MqlTradeResult::retcode`) and what an agent should do about each.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a retcode means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetcodeClass {
    /// The request was carried out (fully, partially, or placed as an order).
    Done,
    /// A transient refusal: the same request with a fresh price may succeed.
    Retryable,
    /// Repeating the request as it is cannot succeed.
    Fatal,
}

/// A trade server return code. Kept as a number so codes newer than this list survive the round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Retcode(pub u32);

macro_rules! retcodes {
    ($($name:ident = $code:literal, $class:ident, $text:literal;)+) => {
        impl Retcode {
            $(pub const $name: Retcode = Retcode($code);)+

            /// Every code MT5 documents.
            pub const KNOWN: &'static [Retcode] = &[$(Retcode::$name),+];

            /// MT5's constant name without the `TRADE_RETCODE_` prefix, if the code is known.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($code => Some(stringify!($name)),)+
                    _ => None,
                }
            }

            /// MT5's description of the code.
            pub const fn description(self) -> &'static str {
                match self.0 {
                    $($code => $text,)+
                    _ => "unknown return code",
                }
            }

            /// Unknown codes are fatal: retrying something not understood could double a trade.
            pub const fn class(self) -> RetcodeClass {
                match self.0 {
                    $($code => RetcodeClass::$class,)+
                    _ => RetcodeClass::Fatal,
                }
            }
        }
    };
}

retcodes! {
    REQUOTE = 10004, Retryable, "Requote";
    REJECT = 10006, Fatal, "Request rejected";
    CANCEL = 10007, Fatal, "Request canceled by trader";
    PLACED = 10008, Done, "Order placed";
    DONE = 10009, Done, "Request completed";
    DONE_PARTIAL = 10010, Done, "Only part of the request was completed";
    ERROR = 10011, Fatal, "Request processing error";
    TIMEOUT = 10012, Retryable, "Request canceled by timeout";
    INVALID = 10013, Fatal, "Invalid request";
    INVALID_VOLUME = 10014, Fatal, "Invalid volume in the request";
    INVALID_PRICE = 10015, Fatal, "Invalid price in the request";
    INVALID_STOPS = 10016, Fatal, "Invalid stops in the request";
    TRADE_DISABLED = 10017, Fatal, "Trade is disabled";
    MARKET_CLOSED = 10018, Fatal, "Market is closed";
    NO_MONEY = 10019, Fatal, "There is not enough money to complete the request";
    PRICE_CHANGED = 10020, Retryable, "Prices changed";
    PRICE_OFF = 10021, Retryable, "There are no quotes to process the request";
    INVALID_EXPIRATION = 10022, Fatal, "Invalid order expiration date in the request";
    ORDER_CHANGED = 10023, Fatal, "Order state changed";
    TOO_MANY_REQUESTS = 10024, Retryable, "Too frequent requests";
    NO_CHANGES = 10025, Fatal, "No changes in request";
    SERVER_DISABLES_AT = 10026, Fatal, "Autotrading disabled by server";
    CLIENT_DISABLES_AT = 10027, Fatal, "Autotrading disabled by client terminal";
    LOCKED = 10028, Fatal, "Request locked for processing";
    FROZEN = 10029, Fatal, "Order or position frozen";
    INVALID_FILL = 10030, Fatal, "Invalid order filling type";
    CONNECTION = 10031, Retryable, "No connection with the trade server";
    ONLY_REAL = 10032, Fatal, "Operation is allowed only for live accounts";
    LIMIT_ORDERS = 10033, Fatal, "The number of pending orders has reached the limit";
    LIMIT_VOLUME = 10034, Fatal, "The volume of orders and positions for the symbol has reached the limit";
    INVALID_ORDER = 10035, Fatal, "Incorrect or prohibited order type";
    POSITION_CLOSED = 10036, Fatal, "Position with the specified POSITION_IDENTIFIER has already been closed";
    INVALID_CLOSE_VOLUME = 10038, Fatal, "A close volume exceeds the current position volume";
    CLOSE_ORDER_EXIST = 10039, Fatal, "A close order already exists for a specified position";
    LIMIT_POSITIONS = 10040, Fatal, "The number of open positions has reached the limit";
    REJECT_CANCEL = 10041, Fatal, "The pending order activation request is rejected, the order is canceled";
    LONG_ONLY = 10042, Fatal, "Only long positions are allowed";
    SHORT_ONLY = 10043, Fatal, "Only short positions are allowed";
    CLOSE_ONLY = 10044, Fatal, "Only position closing is allowed";
    FIFO_CLOSE = 10045, Fatal, "Position closing is allowed only by FIFO rule";
    HEDGE_PROHIBITED = 10046, Fatal, "Opposite positions on a single symbol are disabled";
}

impl Retcode {
    pub const fn code(self) -> u32 {
        self.0
    }
    pub const fn is_done(self) -> bool {
        matches!(self.class(), RetcodeClass::Done)
    }
    pub const fn is_retryable(self) -> bool {
        matches!(self.class(), RetcodeClass::Retryable)
    }
}

impl fmt::Display for Retcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_matches_the_issue() {
        for code in [10004, 10012, 10020, 10021, 10024, 10031] {
            assert_eq!(Retcode(code).class(), RetcodeClass::Retryable, "{code}");
        }
        for code in [10008, 10009, 10010] {
            assert_eq!(Retcode(code).class(), RetcodeClass::Done, "{code}");
        }
        assert_eq!(Retcode::INVALID_FILL.class(), RetcodeClass::Fatal);
        assert_eq!(Retcode::NO_MONEY.class(), RetcodeClass::Fatal);
        assert_eq!(Retcode(99999).class(), RetcodeClass::Fatal);
        assert_eq!(Retcode(10037).name(), None);
    }

    #[test]
    fn the_documented_range_is_covered() {
        let known: Vec<u32> = Retcode::KNOWN.iter().map(|r| r.0).collect();
        for code in 10004..=10045 {
            // 10005 and 10037 are not assigned by MT5.
            if code == 10005 || code == 10037 {
                continue;
            }
            assert!(known.contains(&code), "{code} missing");
        }
        assert_eq!(Retcode::INVALID_FILL.to_string(), "10030 (INVALID_FILL)");
    }
}
