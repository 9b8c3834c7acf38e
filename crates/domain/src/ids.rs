//! Typed identifiers. MT5 uses bare `ulong`s for logins, orders, deals and positions; mixing them up is
//! the classic bug of MT5 tooling, so each gets its own type here.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares a `u64` id newtype: `Copy`, ordered, hashed, written and read as the bare number
/// (`#[serde(transparent)]`, so the wire keeps the `u64`), displayed and parsed as it. Used here for
/// MT5's ids and by `hedge-center-api` for the center's; the calling crate needs `serde`.
#[macro_export]
macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            pub const fn new(value: u64) -> Self {
                Self(value)
            }
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::std::convert::From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ::std::num::ParseIntError;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                s.trim().parse().map(Self)
            }
        }
    };
}

typed_id!(
    /// An MT5 account number (`ACCOUNT_LOGIN`).
    Login
);
typed_id!(
    /// An order ticket (`ORDER_TICKET`, `DEAL_ORDER`).
    OrderTicket
);
typed_id!(
    /// A deal ticket (`DEAL_TICKET`).
    DealTicket
);
typed_id!(
    /// A position identifier (`POSITION_IDENTIFIER`, `DEAL_POSITION_ID`). On MT5 it equals the ticket
    /// of the order that opened the position.
    PositionId
);
typed_id!(
    /// An Expert Advisor magic number (`ORDER_MAGIC`, `DEAL_MAGIC`).
    Magic
);

/// The unique id of one command sent from an agent to a terminal. The terminal executes a given id at
/// most once, so an id must be derived from what the command is for (a plan item, a ledger action),
/// never from a counter that restarts with the process.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CmdId(pub String);

impl CmdId {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CmdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for CmdId {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<String> for CmdId {
    fn from(value: String) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_bare_numbers() {
        assert_eq!(serde_json::to_string(&DealTicket(42)).unwrap(), "42");
        let p: PositionId = serde_json::from_str("7").unwrap();
        assert_eq!(p, PositionId(7));
        assert_eq!(
            serde_json::to_string(&CmdId::from("h-1")).unwrap(),
            "\"h-1\""
        );
        assert_eq!(" 12 ".parse::<Login>().unwrap(), Login(12));
    }
}
