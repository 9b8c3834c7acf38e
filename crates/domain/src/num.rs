//! Exact quantities: [`Volume`] (lots), [`Price`] and [`Money`] (account currency).
//!
//! Each wraps a [`Decimal`], so that adding 0.1 lot three times gives exactly 0.3 lot. On the wire they
//! are JSON numbers, because MT5 itself hands out `double`s: a number is read through its shortest
//! round-trip decimal form (the `0.1` that was written, not `0.1000000000000000055…`), and a value is
//! written the same way. That is exact for every value with up to 15 significant digits, which covers
//! every volume, price and amount MT5 can represent. Strings holding a decimal (`"0.1"`) are accepted
//! too, for callers that want to avoid binary floating point altogether.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, Neg, Sub, SubAssign};
use std::str::FromStr;

/// Parses a decimal written plainly (`0.1`, `-3`) or in scientific form (`1e-7`).
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str(text).ok()
    }
}

/// The decimal that a finite `f64` was written as: its shortest round-trip representation.
pub fn decimal_from_f64(value: f64) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    let mut buf = ryu::Buffer::new();
    parse_decimal(buf.format_finite(value)).map(|d| d.normalize())
}

macro_rules! quantity {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub Decimal);

        impl $name {
            pub const ZERO: Self = Self(Decimal::ZERO);

            pub const fn new(value: Decimal) -> Self {
                Self(value)
            }
            pub const fn get(self) -> Decimal {
                self.0
            }
            pub fn is_zero(self) -> bool {
                self.0.is_zero()
            }
            pub fn is_positive(self) -> bool {
                self.0.is_sign_positive() && !self.0.is_zero()
            }
            pub fn is_negative(self) -> bool {
                self.0.is_sign_negative() && !self.0.is_zero()
            }
            pub fn abs(self) -> Self {
                Self(self.0.abs())
            }
            pub fn min(self, other: Self) -> Self {
                if other < self { other } else { self }
            }
            pub fn max(self, other: Self) -> Self {
                if other > self { other } else { self }
            }
            /// Trailing zeros removed (`0.10` → `0.1`), for display and stable keys.
            pub fn normalize(self) -> Self {
                Self(self.0.normalize())
            }
            /// The nearest `f64`, for display or for an API that insists on floats. Never sum these.
            pub fn to_f64(self) -> f64 {
                self.0.to_f64().unwrap_or(f64::NAN)
            }
            /// From a float that was written as a decimal (`0.1`); `None` for NaN or infinity.
            pub fn from_f64(value: f64) -> Option<Self> {
                decimal_from_f64(value).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.normalize(), f)
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_decimal(s)
                    .map(Self)
                    .ok_or_else(|| format!("not a {}: {s:?}", $what))
            }
        }

        impl From<Decimal> for $name {
            fn from(value: Decimal) -> Self {
                Self(value)
            }
        }

        impl From<$name> for Decimal {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl Add for $name {
            type Output = Self;
            fn add(self, rhs: Self) -> Self {
                Self(self.0 + rhs.0)
            }
        }

        impl Sub for $name {
            type Output = Self;
            fn sub(self, rhs: Self) -> Self {
                Self(self.0 - rhs.0)
            }
        }

        impl AddAssign for $name {
            fn add_assign(&mut self, rhs: Self) {
                self.0 += rhs.0;
            }
        }

        impl SubAssign for $name {
            fn sub_assign(&mut self, rhs: Self) {
                self.0 -= rhs.0;
            }
        }

        impl Neg for $name {
            type Output = Self;
            fn neg(self) -> Self {
                Self(-self.0)
            }
        }

        impl Mul<Decimal> for $name {
            type Output = Self;
            fn mul(self, rhs: Decimal) -> Self {
                Self(self.0 * rhs)
            }
        }

        impl Sum for $name {
            fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
                Self(iter.map(|v| v.0).sum())
            }
        }

        impl<'a> Sum<&'a $name> for $name {
            fn sum<I: Iterator<Item = &'a Self>>(iter: I) -> Self {
                Self(iter.map(|v| v.0).sum())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serialize_decimal(self.0, serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any(DecimalVisitor($what)).map(Self)
            }
        }
    };
}

quantity!(
    /// A trade volume in lots.
    Volume,
    "volume"
);
quantity!(
    /// A price in the symbol's quote currency.
    Price,
    "price"
);
quantity!(
    /// An amount in the account's currency (commission, swap, profit, balance).
    Money,
    "amount"
);

/// Writes a decimal as a JSON number. Integers are written as integers, everything else through the
/// nearest `f64`, whose shortest form is the decimal itself (see the module documentation).
pub fn serialize_decimal<S: Serializer>(value: Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    let value = value.normalize();
    if value.scale() == 0 {
        if let Some(i) = value.to_i64() {
            return serializer.serialize_i64(i);
        }
    }
    serializer.serialize_f64(value.to_f64().unwrap_or(f64::NAN))
}

struct DecimalVisitor(&'static str);

impl Visitor<'_> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} as a number or a decimal string", self.0)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
        decimal_from_f64(v).ok_or_else(|| E::custom(format!("{} out of range: {v}", self.0)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
        parse_decimal(v).ok_or_else(|| E::custom(format!("not a {}: {v:?}", self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn floats_are_read_as_the_decimal_they_were_written_as() {
        let v: Volume = serde_json::from_str("0.1").unwrap();
        assert_eq!(v.0, dec!(0.1));
        let sum: Volume = [v, v, v].iter().sum();
        assert_eq!(sum.0, dec!(0.3));
        assert_eq!(serde_json::to_string(&sum).unwrap(), "0.3");
        let p: Price = serde_json::from_str("\"1.23456\"").unwrap();
        assert_eq!(p.0, dec!(1.23456));
        let tiny: Price = serde_json::from_str("1e-7").unwrap();
        assert_eq!(tiny.0, dec!(0.0000001));
        assert_eq!(serde_json::to_string(&Volume(dec!(2.00))).unwrap(), "2");
    }

    #[test]
    fn bad_numbers_are_errors() {
        assert!(serde_json::from_str::<Volume>("\"abc\"").is_err());
        assert!(serde_json::from_str::<Volume>("true").is_err());
        assert!("".parse::<Price>().is_err());
        assert!(Volume::from_f64(f64::NAN).is_none());
    }

    #[test]
    fn display_is_normalized() {
        assert_eq!(Volume(dec!(0.10)).to_string(), "0.1");
        assert_eq!(Money(dec!(-30.12)).to_string(), "-30.12");
    }

    proptest::proptest! {
        #[test]
        fn json_round_trip_is_exact(mantissa in -10_000_000_000i64..10_000_000_000i64, scale in 0u32..8) {
            let value = Price(Decimal::new(mantissa, scale));
            let text = serde_json::to_string(&value).unwrap();
            let back: Price = serde_json::from_str(&text).unwrap();
            proptest::prop_assert_eq!(back.0.normalize(), value.0.normalize());
        }
    }
}
