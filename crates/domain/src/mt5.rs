//! MT5 enumerations with their real numeric values.
//!
//! Each enum serializes as its MT5 integer, so a value read with `HistoryDealGetInteger` in the
//! terminal travels unchanged through the protocol and the store. [`UnknownCode`] is the error for a
//! number MT5 does not define (a newer terminal, or bad input), never a panic.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A number that is not a value of the named MT5 enumeration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} is not a valid {enumeration}")]
pub struct UnknownCode {
    pub enumeration: &'static str,
    pub code: i64,
}

macro_rules! mt5_enum {
    ($(#[$meta:meta])* $name:ident, $mt5:literal { $($(#[$vmeta:meta])* $variant:ident = $code:literal => $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// MT5's numeric value.
            pub const fn code(self) -> u8 {
                self as u8
            }

            pub fn from_code(code: i64) -> Result<Self, UnknownCode> {
                match code {
                    $($code => Ok($name::$variant),)+
                    _ => Err(UnknownCode { enumeration: $mt5, code }),
                }
            }

            /// MT5's constant name, e.g. `DEAL_ENTRY_INOUT`.
            pub const fn mt5_name(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.mt5_name())
            }
        }

        impl TryFrom<i64> for $name {
            type Error = UnknownCode;
            fn try_from(code: i64) -> Result<Self, UnknownCode> {
                Self::from_code(code)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_u8(self.code())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let code = i64::deserialize(deserializer)?;
                Self::from_code(code).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// An enumeration MT5 keeps extending (new deal types and reasons appear with new builds). A code
/// this build does not know is kept as `Other(code)` instead of failing, so that one new value never
/// makes a whole `tx` or history page unreadable; it serializes back to the same number.
macro_rules! mt5_open_enum {
    ($(#[$meta:meta])* $name:ident, $mt5:literal, $unknown:literal { $($(#[$vmeta:meta])* $variant:ident = $code:literal => $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+,
            /// A code MT5 defines but this build does not know yet.
            Other(u8),
        }

        impl $name {
            /// The known values (without `Other`).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// MT5's numeric value.
            pub const fn code(self) -> u8 {
                match self {
                    $($name::$variant => $code,)+
                    $name::Other(code) => code,
                }
            }

            /// Known codes give their variant, other codes that fit MT5's small enumerations give
            /// `Other`; only a negative or huge number is an error.
            pub fn from_code(code: i64) -> Result<Self, UnknownCode> {
                match code {
                    $($code => Ok($name::$variant),)+
                    _ => u8::try_from(code)
                        .map($name::Other)
                        .map_err(|_| UnknownCode { enumeration: $mt5, code }),
                }
            }

            /// Whether this build knows the value.
            pub const fn is_known(self) -> bool {
                !matches!(self, $name::Other(_))
            }

            /// MT5's constant name, e.g. `DEAL_TYPE_BUY`; `Other` gives the enumeration's
            /// `..._UNKNOWN`.
            pub const fn mt5_name(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                    $name::Other(_) => $unknown,
                }
            }

            /// The enumeration's MT5 name, for messages about unknown codes.
            pub const fn enumeration() -> &'static str {
                $mt5
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $name::Other(code) => write!(f, "{}({code})", $mt5),
                    known => f.write_str(known.mt5_name()),
                }
            }
        }

        impl TryFrom<i64> for $name {
            type Error = UnknownCode;
            fn try_from(code: i64) -> Result<Self, UnknownCode> {
                Self::from_code(code)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_u8(self.code())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let code = i64::deserialize(deserializer)?;
                Self::from_code(code).map_err(serde::de::Error::custom)
            }
        }
    };
}

mt5_enum!(
    /// `ENUM_DEAL_ENTRY`: how a deal changed its position.
    DealEntry, "DEAL_ENTRY" {
        In = 0 => "DEAL_ENTRY_IN",
        Out = 1 => "DEAL_ENTRY_OUT",
        /// A reversal on a netting account: closes the position and opens the opposite one.
        InOut = 2 => "DEAL_ENTRY_INOUT",
        OutBy = 3 => "DEAL_ENTRY_OUT_BY",
    }
);

mt5_open_enum!(
    /// `ENUM_DEAL_TYPE`.
    DealType, "DEAL_TYPE", "DEAL_TYPE_UNKNOWN" {
        Buy = 0 => "DEAL_TYPE_BUY",
        Sell = 1 => "DEAL_TYPE_SELL",
        Balance = 2 => "DEAL_TYPE_BALANCE",
        Credit = 3 => "DEAL_TYPE_CREDIT",
        Charge = 4 => "DEAL_TYPE_CHARGE",
        Correction = 5 => "DEAL_TYPE_CORRECTION",
        Bonus = 6 => "DEAL_TYPE_BONUS",
        Commission = 7 => "DEAL_TYPE_COMMISSION",
        CommissionDaily = 8 => "DEAL_TYPE_COMMISSION_DAILY",
        CommissionMonthly = 9 => "DEAL_TYPE_COMMISSION_MONTHLY",
        CommissionAgentDaily = 10 => "DEAL_TYPE_COMMISSION_AGENT_DAILY",
        CommissionAgentMonthly = 11 => "DEAL_TYPE_COMMISSION_AGENT_MONTHLY",
        Interest = 12 => "DEAL_TYPE_INTEREST",
        BuyCanceled = 13 => "DEAL_TYPE_BUY_CANCELED",
        SellCanceled = 14 => "DEAL_TYPE_SELL_CANCELED",
        Dividend = 15 => "DEAL_DIVIDEND",
        DividendFranked = 16 => "DEAL_DIVIDEND_FRANKED",
        Tax = 17 => "DEAL_TAX",
    }
);

impl DealType {
    /// Whether the deal is a trade (buy or sell) rather than a balance operation. Only trades move
    /// positions: a balance or credit deal never opens one, whatever its entry says.
    pub const fn is_trade(self) -> bool {
        matches!(self, DealType::Buy | DealType::Sell)
    }

    pub const fn side(self) -> Option<crate::Side> {
        match self {
            DealType::Buy => Some(crate::Side::Buy),
            DealType::Sell => Some(crate::Side::Sell),
            _ => None,
        }
    }
}

mt5_open_enum!(
    /// `ENUM_DEAL_REASON`: what caused a deal.
    DealReason, "DEAL_REASON", "DEAL_REASON_UNKNOWN" {
        Client = 0 => "DEAL_REASON_CLIENT",
        Mobile = 1 => "DEAL_REASON_MOBILE",
        Web = 2 => "DEAL_REASON_WEB",
        Expert = 3 => "DEAL_REASON_EXPERT",
        Sl = 4 => "DEAL_REASON_SL",
        Tp = 5 => "DEAL_REASON_TP",
        So = 6 => "DEAL_REASON_SO",
        Rollover = 7 => "DEAL_REASON_ROLLOVER",
        Vmargin = 8 => "DEAL_REASON_VMARGIN",
        Split = 9 => "DEAL_REASON_SPLIT",
        CorporateAction = 10 => "DEAL_REASON_CORPORATE_ACTION",
    }
);

mt5_enum!(
    /// `ENUM_ORDER_TYPE`.
    OrderType, "ORDER_TYPE" {
        Buy = 0 => "ORDER_TYPE_BUY",
        Sell = 1 => "ORDER_TYPE_SELL",
        BuyLimit = 2 => "ORDER_TYPE_BUY_LIMIT",
        SellLimit = 3 => "ORDER_TYPE_SELL_LIMIT",
        BuyStop = 4 => "ORDER_TYPE_BUY_STOP",
        SellStop = 5 => "ORDER_TYPE_SELL_STOP",
        BuyStopLimit = 6 => "ORDER_TYPE_BUY_STOP_LIMIT",
        SellStopLimit = 7 => "ORDER_TYPE_SELL_STOP_LIMIT",
        CloseBy = 8 => "ORDER_TYPE_CLOSE_BY",
    }
);

impl OrderType {
    /// The side the order trades, `None` for close-by.
    pub const fn side(self) -> Option<crate::Side> {
        match self {
            OrderType::Buy | OrderType::BuyLimit | OrderType::BuyStop | OrderType::BuyStopLimit => {
                Some(crate::Side::Buy)
            }
            OrderType::Sell
            | OrderType::SellLimit
            | OrderType::SellStop
            | OrderType::SellStopLimit => Some(crate::Side::Sell),
            OrderType::CloseBy => None,
        }
    }

    /// The market order type for a side.
    pub const fn market(side: crate::Side) -> Self {
        match side {
            crate::Side::Buy => OrderType::Buy,
            crate::Side::Sell => OrderType::Sell,
        }
    }

    pub const fn is_market(self) -> bool {
        matches!(self, OrderType::Buy | OrderType::Sell)
    }

    pub const fn is_pending(self) -> bool {
        !self.is_market() && !matches!(self, OrderType::CloseBy)
    }
}

mt5_enum!(
    /// `ENUM_ORDER_STATE`.
    OrderState, "ORDER_STATE" {
        Started = 0 => "ORDER_STATE_STARTED",
        Placed = 1 => "ORDER_STATE_PLACED",
        Canceled = 2 => "ORDER_STATE_CANCELED",
        Partial = 3 => "ORDER_STATE_PARTIAL",
        Filled = 4 => "ORDER_STATE_FILLED",
        Rejected = 5 => "ORDER_STATE_REJECTED",
        Expired = 6 => "ORDER_STATE_EXPIRED",
        RequestAdd = 7 => "ORDER_STATE_REQUEST_ADD",
        RequestModify = 8 => "ORDER_STATE_REQUEST_MODIFY",
        RequestCancel = 9 => "ORDER_STATE_REQUEST_CANCEL",
    }
);

mt5_enum!(
    /// `ENUM_ORDER_TYPE_FILLING`.
    OrderFilling, "ORDER_FILLING" {
        /// Fill or kill: all of it at once or nothing.
        Fok = 0 => "ORDER_FILLING_FOK",
        /// Immediate or cancel: what can be filled now, the rest is cancelled.
        Ioc = 1 => "ORDER_FILLING_IOC",
        /// The unfilled rest stays as a working order.
        Return = 2 => "ORDER_FILLING_RETURN",
        /// Book or cancel (limit orders only).
        Boc = 3 => "ORDER_FILLING_BOC",
    }
);

impl std::str::FromStr for OrderFilling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "FOK" | "ORDER_FILLING_FOK" => Ok(OrderFilling::Fok),
            "IOC" | "ORDER_FILLING_IOC" => Ok(OrderFilling::Ioc),
            "RETURN" | "ORDER_FILLING_RETURN" => Ok(OrderFilling::Return),
            "BOC" | "ORDER_FILLING_BOC" => Ok(OrderFilling::Boc),
            other => Err(format!(
                "not a filling mode: {other:?} (FOK, IOC, RETURN or BOC)"
            )),
        }
    }
}

mt5_enum!(
    /// `ENUM_ORDER_TYPE_TIME`.
    OrderTime, "ORDER_TIME" {
        Gtc = 0 => "ORDER_TIME_GTC",
        Day = 1 => "ORDER_TIME_DAY",
        Specified = 2 => "ORDER_TIME_SPECIFIED",
        SpecifiedDay = 3 => "ORDER_TIME_SPECIFIED_DAY",
    }
);

mt5_enum!(
    /// `ENUM_TRADE_REQUEST_ACTIONS`.
    TradeAction, "TRADE_ACTION" {
        Deal = 1 => "TRADE_ACTION_DEAL",
        Pending = 5 => "TRADE_ACTION_PENDING",
        Sltp = 6 => "TRADE_ACTION_SLTP",
        Modify = 7 => "TRADE_ACTION_MODIFY",
        Remove = 8 => "TRADE_ACTION_REMOVE",
        CloseBy = 10 => "TRADE_ACTION_CLOSE_BY",
    }
);

mt5_enum!(
    /// `ENUM_POSITION_TYPE`.
    PositionType, "POSITION_TYPE" {
        Buy = 0 => "POSITION_TYPE_BUY",
        Sell = 1 => "POSITION_TYPE_SELL",
    }
);

impl PositionType {
    pub const fn side(self) -> crate::Side {
        match self {
            PositionType::Buy => crate::Side::Buy,
            PositionType::Sell => crate::Side::Sell,
        }
    }
}

impl From<crate::Side> for PositionType {
    fn from(side: crate::Side) -> Self {
        match side {
            crate::Side::Buy => PositionType::Buy,
            crate::Side::Sell => PositionType::Sell,
        }
    }
}

mt5_enum!(
    /// `ENUM_ACCOUNT_MARGIN_MODE`: the OMS type of an account.
    AccountMarginMode, "ACCOUNT_MARGIN_MODE" {
        /// One position per symbol; opposite deals reduce or reverse it.
        RetailNetting = 0 => "ACCOUNT_MARGIN_MODE_RETAIL_NETTING",
        Exchange = 1 => "ACCOUNT_MARGIN_MODE_EXCHANGE",
        /// Each market order opens its own position; closes name the position.
        RetailHedging = 2 => "ACCOUNT_MARGIN_MODE_RETAIL_HEDGING",
    }
);

impl AccountMarginMode {
    /// Netting and exchange accounts hold one position per symbol.
    pub const fn is_netting(self) -> bool {
        !matches!(self, AccountMarginMode::RetailHedging)
    }
}

impl std::str::FromStr for AccountMarginMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "netting" | "0" => Ok(AccountMarginMode::RetailNetting),
            "exchange" | "1" => Ok(AccountMarginMode::Exchange),
            "hedging" | "2" => Ok(AccountMarginMode::RetailHedging),
            other => Err(format!(
                "not a margin mode: {other:?} (netting, exchange or hedging)"
            )),
        }
    }
}

mt5_enum!(
    /// `ENUM_SYMBOL_TRADE_MODE`.
    SymbolTradeMode, "SYMBOL_TRADE_MODE" {
        Disabled = 0 => "SYMBOL_TRADE_MODE_DISABLED",
        LongOnly = 1 => "SYMBOL_TRADE_MODE_LONGONLY",
        ShortOnly = 2 => "SYMBOL_TRADE_MODE_SHORTONLY",
        CloseOnly = 3 => "SYMBOL_TRADE_MODE_CLOSEONLY",
        Full = 4 => "SYMBOL_TRADE_MODE_FULL",
    }
);

mt5_enum!(
    /// `ENUM_TRADE_TRANSACTION_TYPE`, as `OnTradeTransaction` reports it.
    TradeTransactionType, "TRADE_TRANSACTION" {
        OrderAdd = 0 => "TRADE_TRANSACTION_ORDER_ADD",
        OrderUpdate = 1 => "TRADE_TRANSACTION_ORDER_UPDATE",
        OrderDelete = 2 => "TRADE_TRANSACTION_ORDER_DELETE",
        HistoryAdd = 3 => "TRADE_TRANSACTION_HISTORY_ADD",
        HistoryUpdate = 4 => "TRADE_TRANSACTION_HISTORY_UPDATE",
        HistoryDelete = 5 => "TRADE_TRANSACTION_HISTORY_DELETE",
        DealAdd = 6 => "TRADE_TRANSACTION_DEAL_ADD",
        DealUpdate = 7 => "TRADE_TRANSACTION_DEAL_UPDATE",
        DealDelete = 8 => "TRADE_TRANSACTION_DEAL_DELETE",
        Position = 9 => "TRADE_TRANSACTION_POSITION",
        Request = 10 => "TRADE_TRANSACTION_REQUEST",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_values_match_mt5() {
        assert_eq!(DealEntry::InOut.code(), 2);
        assert_eq!(DealEntry::OutBy.code(), 3);
        assert_eq!(DealType::Credit.code(), 3);
        assert_eq!(OrderType::CloseBy.code(), 8);
        assert_eq!(OrderFilling::Boc.code(), 3);
        assert_eq!(TradeAction::Pending.code(), 5);
        assert_eq!(TradeAction::CloseBy.code(), 10);
        assert_eq!(AccountMarginMode::RetailHedging.code(), 2);
        assert_eq!(DealReason::Sl.code(), 4);
        assert_eq!(TradeTransactionType::DealAdd.code(), 6);
    }

    #[test]
    fn every_variant_round_trips_through_its_code_and_json() {
        for v in DealType::ALL {
            assert_eq!(DealType::from_code(v.code() as i64).unwrap(), *v);
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(serde_json::from_str::<DealType>(&json).unwrap(), *v);
        }
        for v in TradeAction::ALL {
            assert_eq!(TradeAction::from_code(v.code() as i64).unwrap(), *v);
        }
    }

    #[test]
    fn unknown_codes_are_errors() {
        assert_eq!(
            TradeAction::from_code(2).unwrap_err().to_string(),
            "2 is not a valid TRADE_ACTION"
        );
        assert!(serde_json::from_str::<DealEntry>("4").is_err());
        assert!(serde_json::from_str::<DealEntry>("-1").is_err());
    }

    #[test]
    fn new_deal_types_and_reasons_keep_their_code() {
        let t: DealType = serde_json::from_str("42").unwrap();
        assert_eq!(t, DealType::Other(42));
        assert!(!t.is_known() && !t.is_trade() && t.side().is_none());
        assert_eq!(serde_json::to_string(&t).unwrap(), "42");
        assert_eq!(t.to_string(), "DEAL_TYPE(42)");
        let r = DealReason::from_code(11).unwrap();
        assert_eq!((r, r.code()), (DealReason::Other(11), 11));
        assert_eq!(DealReason::from_code(4).unwrap(), DealReason::Sl);
        assert!(DealReason::from_code(-1).is_err());
        assert!(serde_json::from_str::<DealType>("1000").is_err());
    }

    #[test]
    fn only_trades_have_a_side() {
        assert_eq!(DealType::Sell.side(), Some(crate::Side::Sell));
        assert_eq!(DealType::Balance.side(), None);
        assert!(!DealType::Credit.is_trade());
        assert_eq!(OrderType::SellStop.side(), Some(crate::Side::Sell));
        assert!(OrderType::BuyLimit.is_pending());
        assert!(!OrderType::CloseBy.is_pending());
    }
}
