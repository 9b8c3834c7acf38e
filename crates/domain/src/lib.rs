//! The MT5 domain model shared by every hedge crate, with no I/O.
//!
//! Everything that crosses a crate boundary is typed here: account logins and MT5 tickets are distinct
//! id types so a deal ticket can never be passed where a position id is expected; volumes, prices and
//! money are exact decimals (`rust_decimal`) so sums never drift; MT5's enumerations carry their real
//! numeric values so they travel unchanged between the terminal, the protocol and the store; symbol
//! specifications know how to round a volume to the broker's step and a price to its digits; and a
//! [`SymbolMap`] translates between canonical names (`EURUSD`) and each broker's (`EURUSD.r`, `GOLD`).
//! [`fixed`] is the one exact 10^-8 integer form ([`Lots`] never negative, [`Exposure`] signed) and
//! [`Clock`] the one way to ask the time, so tests can fix it.

pub mod clock;
pub mod fixed;
pub mod ids;
pub mod json;
pub mod mt5;
pub mod num;
pub mod retcode;
pub mod side;
pub mod symbol;
pub mod symbol_map;
pub mod text;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use fixed::{Exposure, FixedError, Lots};
pub use ids::{CmdId, DealTicket, Login, Magic, OrderTicket, PositionId};
pub use mt5::{
    AccountMarginMode, DealEntry, DealReason, DealType, OrderFilling, OrderState, OrderTime,
    OrderType, PositionType, SymbolTradeMode, TradeAction, TradeTransactionType, UnknownCode,
};
pub use num::{Money, Price, Volume};
pub use retcode::{Retcode, RetcodeClass};
pub use side::Side;
pub use symbol::{FillingModes, Rounding, SymbolSpec, VolumeError};
pub use symbol_map::{AccountName, Ambiguity, Resolution, SymbolMap, SymbolMapError};
