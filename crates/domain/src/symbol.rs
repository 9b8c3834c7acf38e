//! Symbol specifications and the rounding rules that follow from them.

use crate::mt5::{OrderFilling, SymbolTradeMode, TradeAction};
use crate::num::{Price, Volume};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// The filling modes a symbol accepts. MT5 reports FOK and IOC as flags in `SYMBOL_FILLING_MODE`
/// (1 and 2, BOC 4); RETURN is allowed for every execution mode except market execution, so the
/// terminal side reports it explicitly here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FillingModes {
    #[serde(default)]
    pub fok: bool,
    #[serde(default)]
    pub ioc: bool,
    #[serde(default, rename = "return")]
    pub ret: bool,
    #[serde(default)]
    pub boc: bool,
}

impl FillingModes {
    pub const ALL: FillingModes = FillingModes {
        fok: true,
        ioc: true,
        ret: true,
        boc: false,
    };

    pub const fn allows(self, mode: OrderFilling) -> bool {
        match mode {
            OrderFilling::Fok => self.fok,
            OrderFilling::Ioc => self.ioc,
            OrderFilling::Return => self.ret,
            OrderFilling::Boc => self.boc,
        }
    }

    /// The mode to use for a market order when the caller leaves the choice to the symbol: FOK, then
    /// IOC, then RETURN (a market order should not leave a working remainder behind unless it must).
    pub const fn preferred(self) -> Option<OrderFilling> {
        if self.fok {
            Some(OrderFilling::Fok)
        } else if self.ioc {
            Some(OrderFilling::Ioc)
        } else if self.ret {
            Some(OrderFilling::Return)
        } else {
            None
        }
    }

    /// For a market order: `requested` if the symbol allows it, else the preferred allowed mode.
    /// This is what prevents retcode 10030 (invalid filling). Pending orders go through
    /// [`FillingModes::choose_for`].
    pub const fn choose(self, requested: Option<OrderFilling>) -> Option<OrderFilling> {
        match requested {
            Some(mode) if self.allows(mode) => Some(mode),
            _ => self.preferred(),
        }
    }

    /// The mode for a request of `action`, as the EA's `ChooseFilling()` decides it. A pending order
    /// uses RETURN whatever the execution mode (BOC when asked for and allowed), because MT5 takes
    /// RETURN for every pending order; a market order follows [`FillingModes::choose`]. `None` means
    /// no mode is valid (a market-execution symbol offering neither FOK nor IOC): sending anyway
    /// would be answered with 10030, so the caller refuses with an explanation instead. Actions
    /// that do not fill (SL/TP, modify, remove, close-by) ignore the mode.
    pub const fn choose_for(
        self,
        action: TradeAction,
        requested: Option<OrderFilling>,
    ) -> Option<OrderFilling> {
        match action {
            TradeAction::Pending => match requested {
                Some(OrderFilling::Boc) if self.boc => Some(OrderFilling::Boc),
                _ => Some(OrderFilling::Return),
            },
            TradeAction::Deal => self.choose(requested),
            _ => match self.choose(requested) {
                Some(mode) => Some(mode),
                None => Some(OrderFilling::Return),
            },
        }
    }

    /// From MT5's `SYMBOL_FILLING_MODE` flags plus whether RETURN is allowed.
    pub const fn from_mt5_flags(flags: u32, return_allowed: bool) -> Self {
        FillingModes {
            fok: flags & 1 != 0,
            ioc: flags & 2 != 0,
            boc: flags & 4 != 0,
            ret: return_allowed,
        }
    }
}

/// How to bring a volume onto the step grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Toward zero: never trade more than asked (closing, reducing).
    Down,
    /// To the nearest step, halves away from zero (covering an exposure as closely as possible).
    Nearest,
    /// Away from zero.
    Up,
}

/// Why a volume cannot be traded on a symbol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    #[error("volume must be positive, got {0}")]
    NotPositive(Volume),
    #[error("volume {volume} is below the symbol's minimum {min}")]
    BelowMin { volume: Volume, min: Volume },
    #[error("symbol {symbol} has an invalid volume step {step}")]
    BadStep { symbol: String, step: Volume },
}

/// Everything about a symbol that trading and risk arithmetic need (`SymbolInfo*` in MQL5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolSpec {
    /// The broker's name for the symbol (`EURUSD.r`).
    pub name: String,
    /// Decimal places of the price (`SYMBOL_DIGITS`).
    pub digits: u32,
    /// One point (`SYMBOL_POINT`), `10^-digits`.
    pub point: Price,
    /// The smallest price change (`SYMBOL_TRADE_TICK_SIZE`).
    pub tick_size: Price,
    /// Value of one tick for one lot in the account currency (`SYMBOL_TRADE_TICK_VALUE`).
    pub tick_value: crate::Money,
    /// Units of the base asset per lot (`SYMBOL_TRADE_CONTRACT_SIZE`).
    pub contract_size: Decimal,
    pub volume_min: Volume,
    pub volume_step: Volume,
    pub volume_max: Volume,
    pub filling: FillingModes,
    /// Minimum distance of stops from the price, in points (`SYMBOL_TRADE_STOPS_LEVEL`).
    #[serde(default)]
    pub stops_level: u32,
    pub trade_mode: SymbolTradeMode,
    /// Margin required per lot in the account currency, as a simple fixed figure; the simulator uses it
    /// for its margin check. Real terminals report `SYMBOL_MARGIN_INITIAL` or leave it 0.
    #[serde(default)]
    pub margin_per_lot: crate::Money,
}

impl SymbolSpec {
    /// A typical forex pair: 5 digits, 100,000 units a lot, 0.01 to 100 lots in steps of 0.01, every
    /// filling mode. Handy for tests and the simulator's defaults.
    pub fn forex(name: impl Into<String>, digits: u32) -> Self {
        let point = Price(Decimal::new(1, digits));
        SymbolSpec {
            name: name.into(),
            digits,
            point,
            tick_size: point,
            tick_value: crate::Money(Decimal::ONE),
            contract_size: Decimal::from(100_000),
            volume_min: Volume(Decimal::new(1, 2)),
            volume_step: Volume(Decimal::new(1, 2)),
            volume_max: Volume(Decimal::from(100)),
            filling: FillingModes::ALL,
            stops_level: 0,
            trade_mode: SymbolTradeMode::Full,
            margin_per_lot: crate::Money(Decimal::from(1_000)),
        }
    }

    /// `volume` on this symbol's step grid, clamped to its maximum. Errors when the result is zero or
    /// below the minimum: the caller decides whether that means "nothing to do" or "trade the minimum".
    pub fn normalize_volume(
        &self,
        volume: Volume,
        rounding: Rounding,
    ) -> Result<Volume, VolumeError> {
        if !volume.is_positive() {
            return Err(VolumeError::NotPositive(volume));
        }
        let stepped = round_to_step(volume, self.volume_step, rounding).ok_or_else(|| {
            VolumeError::BadStep {
                symbol: self.name.clone(),
                step: self.volume_step,
            }
        })?;
        let clamped = clamp_volume(stepped, Volume::ZERO, self.volume_max);
        if clamped.is_zero() || clamped < self.volume_min {
            return Err(VolumeError::BelowMin {
                volume: clamped,
                min: self.volume_min,
            });
        }
        Ok(clamped)
    }

    /// A price rounded to the symbol's tick size (or its digits when the tick size is unset).
    pub fn normalize_price(&self, price: Price) -> Price {
        let tick = if self.tick_size.is_positive() {
            self.tick_size
        } else {
            self.point
        };
        if !tick.is_positive() {
            return Price(price.0.round_dp(self.digits));
        }
        let ticks =
            (price.0 / tick.0).round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
        Price((ticks * tick.0).round_dp(self.digits).normalize())
    }

    /// Whether opening on `side` is allowed by the symbol's trade mode.
    pub fn allows_open(&self, side: crate::Side) -> bool {
        match self.trade_mode {
            SymbolTradeMode::Full => true,
            SymbolTradeMode::LongOnly => side == crate::Side::Buy,
            SymbolTradeMode::ShortOnly => side == crate::Side::Sell,
            SymbolTradeMode::CloseOnly | SymbolTradeMode::Disabled => false,
        }
    }
}

/// `volume` rounded to a multiple of `step`. `None` when the step is not positive.
pub fn round_to_step(volume: Volume, step: Volume, rounding: Rounding) -> Option<Volume> {
    if !step.is_positive() {
        return None;
    }
    let strategy = match rounding {
        Rounding::Down => RoundingStrategy::ToZero,
        Rounding::Nearest => RoundingStrategy::MidpointAwayFromZero,
        Rounding::Up => RoundingStrategy::AwayFromZero,
    };
    let steps = (volume.0 / step.0).round_dp_with_strategy(0, strategy);
    Some(Volume((steps * step.0).normalize()))
}

/// `volume` limited to `[min, max]`.
pub fn clamp_volume(volume: Volume, min: Volume, max: Volume) -> Volume {
    volume.max(min).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn v(d: Decimal) -> Volume {
        Volume(d)
    }

    #[test]
    fn rounding_to_step() {
        let step = v(dec!(0.01));
        assert_eq!(
            round_to_step(v(dec!(0.126)), step, Rounding::Down),
            Some(v(dec!(0.12)))
        );
        assert_eq!(
            round_to_step(v(dec!(0.125)), step, Rounding::Nearest),
            Some(v(dec!(0.13)))
        );
        assert_eq!(
            round_to_step(v(dec!(0.121)), step, Rounding::Up),
            Some(v(dec!(0.13)))
        );
        assert_eq!(
            round_to_step(v(dec!(0.3)), v(dec!(0.1)), Rounding::Down),
            Some(v(dec!(0.3)))
        );
        assert_eq!(
            round_to_step(v(dec!(7)), v(dec!(5)), Rounding::Down),
            Some(v(dec!(5)))
        );
        assert_eq!(
            round_to_step(v(dec!(1)), Volume::ZERO, Rounding::Down),
            None
        );
    }

    #[test]
    fn clamping() {
        assert_eq!(
            clamp_volume(v(dec!(0.001)), v(dec!(0.01)), v(dec!(100))),
            v(dec!(0.01))
        );
        assert_eq!(
            clamp_volume(v(dec!(500)), v(dec!(0.01)), v(dec!(100))),
            v(dec!(100))
        );
        assert_eq!(
            clamp_volume(v(dec!(3)), v(dec!(0.01)), v(dec!(100))),
            v(dec!(3))
        );
    }

    #[test]
    fn normalize_volume_against_a_spec() {
        let mut spec = SymbolSpec::forex("EURUSD", 5);
        spec.volume_min = v(dec!(0.1));
        spec.volume_step = v(dec!(0.1));
        spec.volume_max = v(dec!(5));
        assert_eq!(
            spec.normalize_volume(v(dec!(0.26)), Rounding::Nearest),
            Ok(v(dec!(0.3)))
        );
        assert_eq!(
            spec.normalize_volume(v(dec!(0.26)), Rounding::Down),
            Ok(v(dec!(0.2)))
        );
        assert_eq!(
            spec.normalize_volume(v(dec!(12)), Rounding::Down),
            Ok(v(dec!(5)))
        );
        assert!(matches!(
            spec.normalize_volume(v(dec!(0.04)), Rounding::Nearest),
            Err(VolumeError::BelowMin { .. })
        ));
        assert!(matches!(
            spec.normalize_volume(v(dec!(-1)), Rounding::Nearest),
            Err(VolumeError::NotPositive(_))
        ));
        spec.volume_step = Volume::ZERO;
        assert!(matches!(
            spec.normalize_volume(v(dec!(1)), Rounding::Nearest),
            Err(VolumeError::BadStep { .. })
        ));
    }

    #[test]
    fn prices_round_to_tick_size() {
        let mut spec = SymbolSpec::forex("XAUUSD", 2);
        assert_eq!(
            spec.normalize_price(Price(dec!(1923.456))),
            Price(dec!(1923.46))
        );
        spec.tick_size = Price(dec!(0.05));
        assert_eq!(
            spec.normalize_price(Price(dec!(1923.46))),
            Price(dec!(1923.45))
        );
        assert_eq!(
            spec.normalize_price(Price(dec!(1923.48))),
            Price(dec!(1923.5))
        );
    }

    #[test]
    fn filling_choice_avoids_invalid_fill() {
        let ioc_only = FillingModes {
            ioc: true,
            ..FillingModes::default()
        };
        assert_eq!(
            ioc_only.choose(Some(OrderFilling::Fok)),
            Some(OrderFilling::Ioc)
        );
        assert_eq!(ioc_only.choose(None), Some(OrderFilling::Ioc));
        assert_eq!(
            FillingModes::ALL.choose(Some(OrderFilling::Return)),
            Some(OrderFilling::Return)
        );
        assert_eq!(FillingModes::default().choose(None), None);
        assert_eq!(
            FillingModes::from_mt5_flags(3, false),
            FillingModes {
                fok: true,
                ioc: true,
                ..Default::default()
            }
        );
    }

    #[test]
    fn pending_orders_fill_with_return_whatever_the_execution_mode() {
        // Market execution with FOK only: RETURN is not offered for market orders, yet a pending
        // order must use it.
        let fok_market = FillingModes::from_mt5_flags(1, false);
        assert_eq!(
            fok_market.choose_for(TradeAction::Pending, None),
            Some(OrderFilling::Return)
        );
        assert_eq!(
            fok_market.choose_for(TradeAction::Pending, Some(OrderFilling::Fok)),
            Some(OrderFilling::Return)
        );
        assert_eq!(
            fok_market.choose_for(TradeAction::Deal, None),
            Some(OrderFilling::Fok)
        );
        let with_boc = FillingModes::from_mt5_flags(4, true);
        assert_eq!(
            with_boc.choose_for(TradeAction::Pending, Some(OrderFilling::Boc)),
            Some(OrderFilling::Boc)
        );
        // Market execution offering neither FOK nor IOC: no valid mode for a market order, and
        // RETURN must not be sent in its place.
        let none = FillingModes::from_mt5_flags(0, false);
        assert_eq!(none.choose_for(TradeAction::Deal, None), None);
        assert_eq!(
            none.choose_for(TradeAction::Deal, Some(OrderFilling::Return)),
            None
        );
        assert_eq!(
            none.choose_for(TradeAction::Pending, None),
            Some(OrderFilling::Return)
        );
    }

    #[test]
    fn trade_mode_limits_opening() {
        let mut spec = SymbolSpec::forex("EURUSD", 5);
        spec.trade_mode = SymbolTradeMode::LongOnly;
        assert!(spec.allows_open(crate::Side::Buy));
        assert!(!spec.allows_open(crate::Side::Sell));
    }

    proptest::proptest! {
        #[test]
        fn rounded_volume_is_on_the_grid_and_within_half_a_step(units in 1i64..10_000_000, step_units in 1i64..1000) {
            let volume = v(Decimal::new(units, 3));
            let step = v(Decimal::new(step_units, 2));
            let r = round_to_step(volume, step, Rounding::Nearest).unwrap();
            proptest::prop_assert!((r.0 % step.0).is_zero());
            proptest::prop_assert!((r.0 - volume.0).abs() * Decimal::TWO <= step.0);
            let d = round_to_step(volume, step, Rounding::Down).unwrap();
            proptest::prop_assert!(d <= volume && volume.0 - d.0 < step.0);
        }
    }
}
