//! Typed identifiers. MT5 uses bare `ulong`s for logins, orders, deals and positions; mixing them up is
//! the classic bug of MT5 tooling, so each gets its own type here.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! ticket_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim().parse().map(Self)
            }
        }
    };
}

ticket_id!(
    /// An MT5 account number (`ACCOUNT_LOGIN`).
    Login
);
ticket_id!(
    /// An order ticket (`ORDER_TICKET`, `DEAL_ORDER`).
    OrderTicket
);
ticket_id!(
    /// A deal ticket (`DEAL_TICKET`).
    DealTicket
);
ticket_id!(
    /// A position identifier (`POSITION_IDENTIFIER`, `DEAL_POSITION_ID`). On MT5 it equals the ticket
    /// of the order that opened the position.
    PositionId
);
ticket_id!(
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
