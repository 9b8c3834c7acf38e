//! Exact 10^-8 fixed point: the compact integer form of volumes, prices and money.
//!
//! Where quantities are stored by the million (the ledger's deal fragments) or summed by a database
//! (the center's exposure columns), an `i64` count of 10^-8 units replaces the 16-byte decimal.
//!
//! Entry points: [`to_units`] and [`from_units`] for any quantity (signed); [`Lots`], a volume that is
//! never negative (an order's or a position's size); [`Exposure`], a signed net volume (buys
//! positive, sells negative); [`prorate`] and [`weighted_average`] for the ledger's splits and
//! averages; [`decimals`] for display.
//!
//! Invariants: a conversion from a decimal is exact or refused with its reason ([`FixedError`]),
//! never rounded; a [`Lots`] is never below zero, whatever it was built from; arithmetic on either
//! type is checked (an overflow or a negative size is `None`, never a panic or a wrap), so a sum of
//! units is exactly the sum of the decimals they stand for.

use crate::num::Volume;
use crate::side::Side;
use rust_decimal::Decimal;
use std::fmt;

/// Decimal places of every stored quantity.
pub const SCALE_DP: u32 = 8;
/// One whole unit (one lot, one price unit, one unit of money) in 10^-8 units.
pub const ONE: i64 = 100_000_000;

/// Why a decimal has no exact 10^-8 form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FixedError {
    /// A size (a [`Lots`]) below zero.
    #[error("must not be negative")]
    Negative,
    /// More than [`SCALE_DP`] significant decimal places.
    #[error("has more than {SCALE_DP} decimal places")]
    TooPrecise,
    /// Beyond ±92 billion whole units (`i64` of 10^-8).
    #[error("is out of range")]
    OutOfRange,
}

/// `value` as a signed count of 10^-8 units, if exact and in range.
#[inline]
pub fn to_units(value: Decimal) -> Result<i64, FixedError> {
    let scale = value.scale();
    let mantissa = value.mantissa();
    if scale <= SCALE_DP {
        // A mantissa outside `i64` cannot fit once scaled up either, so the product is checked in
        // `i64`: the same answer as in `i128`, without the wide multiply.
        let m = i64::try_from(mantissa).map_err(|_| FixedError::OutOfRange)?;
        return m
            .checked_mul(POW10[(SCALE_DP - scale) as usize])
            .ok_or(FixedError::OutOfRange);
    }
    to_units_finer(mantissa, scale)
}

/// [`to_units`] for a decimal written with more than [`SCALE_DP`] places: exact only when the extra
/// places are zeros.
fn to_units_finer(mantissa: i128, scale: u32) -> Result<i64, FixedError> {
    // `scale` is at most 28, so the divisor fits an i128.
    let div = 10i128.pow(scale - SCALE_DP);
    if mantissa % div != 0 {
        return Err(FixedError::TooPrecise);
    }
    i64::try_from(mantissa / div).map_err(|_| FixedError::OutOfRange)
}

/// 10^0 ..= 10^8: the factors between a decimal's scale and [`SCALE_DP`].
const POW10: [i64; SCALE_DP as usize + 1] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// 10^-8 units back to a normalized decimal (`10_000_000` → `0.1`).
#[inline]
pub fn from_units(units: i64) -> Decimal {
    // The trailing zeros are stripped on the integer, which is what `Decimal::normalize` would do
    // on the 96-bit mantissa, only cheaper.
    let dp = decimals(units);
    Decimal::new(units / POW10[(SCALE_DP - dp as u32) as usize], dp as u32)
}

/// How many decimals `units` needs (0..=8): trailing zeros of the 10^-8 count say what is not needed.
#[inline]
pub fn decimals(units: i64) -> u8 {
    let mut dp = SCALE_DP as u8;
    let mut u = units;
    while dp > 0 && u % 10 == 0 {
        u /= 10;
        dp -= 1;
    }
    dp
}

/// `total × part ÷ whole`, rounded half away from zero; splits commission and swap between the
/// fragments of a deal. Zero when `whole` is zero; saturates at the `i64` range, which a share of a
/// total (`|part| ≤ |whole|`) never reaches.
#[inline]
pub fn prorate(total: i64, part: i64, whole: i64) -> i64 {
    if whole == 0 {
        return 0;
    }
    // Fragments are far below the i64 range, so the product nearly always fits: divide in i64 and
    // leave the 128-bit division to the rest.
    if let Some(num) = total.checked_mul(part) {
        if let (Some(q), Some(r)) = (num.checked_div(whole), num.checked_rem(whole)) {
            let (r, w) = (r.unsigned_abs(), whole.unsigned_abs());
            // 2·|r| ≥ |w| without the doubling overflowing (|r| < |w|).
            let adj = if r >= w - r {
                if (num < 0) != (whole < 0) {
                    -1
                } else {
                    1
                }
            } else {
                0
            };
            // |q| ≤ i64::MAX / 2 whenever a remainder is possible (|whole| ≥ 2), so no overflow.
            return q + adj;
        }
    }
    prorate_wide(total, part, whole)
}

/// [`prorate`] in i128, for products beyond the i64 range.
fn prorate_wide(total: i64, part: i64, whole: i64) -> i64 {
    let num = total as i128 * part as i128;
    let w = whole as i128;
    let q = num / w;
    let r = num % w;
    let adj = if 2 * r.abs() >= w.abs() {
        if (num < 0) != (w < 0) {
            -1
        } else {
            1
        }
    } else {
        0
    };
    (q + adj).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Σ(price·volume) ÷ Σvolume as a decimal, or zero for no volume. `sum_pv` carries 16 decimals
/// (units × units), `sum_v` 8.
pub fn weighted_average(sum_pv: i128, sum_v: i64) -> Decimal {
    if sum_v == 0 {
        return Decimal::ZERO;
    }
    let num = Decimal::try_from_i128_with_scale(sum_pv, 16);
    let den = Decimal::new(sum_v, 8);
    match num.ok().and_then(|n| n.checked_div(den)) {
        Some(avg) => avg.normalize(),
        // Beyond the decimal's 96 bits: integer division at 10^-8 is still exact to the unit.
        None => {
            let q = sum_pv
                .checked_div(sum_v as i128)
                .unwrap_or(i128::MAX)
                .clamp(i64::MIN as i128, i64::MAX as i128);
            Decimal::new(q as i64, SCALE_DP).normalize()
        }
    }
}

/// A volume that is never negative, as a count of 10^-8 lot: the size of an order, a position or a
/// hedge. Built only through checked constructors, so the invariant holds for every value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lots(i64);

impl Lots {
    pub const ZERO: Lots = Lots(0);

    /// From a count of 10^-8 lot; `None` below zero.
    #[inline]
    pub const fn from_units(units: i64) -> Option<Lots> {
        if units < 0 {
            None
        } else {
            Some(Lots(units))
        }
    }

    /// The exact fixed-point form of a decimal volume: refused when negative, finer than 10^-8 or
    /// out of range.
    #[inline]
    pub fn from_volume(volume: Volume) -> Result<Lots, FixedError> {
        if volume.is_negative() {
            return Err(FixedError::Negative);
        }
        to_units(volume.0).map(Lots)
    }

    #[inline]
    pub const fn units(self) -> i64 {
        self.0
    }

    #[inline]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The decimal volume, normalized (`0.1`, not `0.10000000`).
    #[inline]
    pub fn volume(self) -> Volume {
        Volume(from_units(self.0))
    }

    #[inline]
    pub fn checked_add(self, other: Lots) -> Option<Lots> {
        self.0.checked_add(other.0).map(Lots)
    }

    /// `None` when `other` is larger: a size never goes below zero.
    #[inline]
    pub fn checked_sub(self, other: Lots) -> Option<Lots> {
        self.0.checked_sub(other.0).and_then(Lots::from_units)
    }

    /// This size as a contribution to a net position: positive for a buy, negative for a sell.
    #[inline]
    pub const fn signed(self, side: Side) -> Exposure {
        // A non-negative i64 always has a negation.
        match side {
            Side::Buy => Exposure(self.0),
            Side::Sell => Exposure(-self.0),
        }
    }

    /// The exact sum, or `None` on overflow.
    pub fn checked_sum(items: impl IntoIterator<Item = Lots>) -> Option<Lots> {
        items
            .into_iter()
            .try_fold(Lots::ZERO, |acc, l| acc.checked_add(l))
    }
}

impl fmt::Display for Lots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&from_units(self.0), f)
    }
}

/// A signed net volume (buys positive, sells negative) as a count of 10^-8 lot: a client's net
/// exposure on a symbol, the hedges' net, or the change one report makes to either.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Exposure(i64);

impl Exposure {
    pub const ZERO: Exposure = Exposure(0);

    #[inline]
    pub const fn from_units(units: i64) -> Exposure {
        Exposure(units)
    }

    /// The exact fixed-point form of a signed decimal volume.
    #[inline]
    pub fn from_volume(volume: Volume) -> Result<Exposure, FixedError> {
        to_units(volume.0).map(Exposure)
    }

    #[inline]
    pub const fn units(self) -> i64 {
        self.0
    }

    #[inline]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The side that holds the exposure, `None` when flat.
    #[inline]
    pub const fn side(self) -> Option<Side> {
        if self.0 > 0 {
            Some(Side::Buy)
        } else if self.0 < 0 {
            Some(Side::Sell)
        } else {
            None
        }
    }

    /// The size without its side; `None` only for `i64::MIN` units, which has no positive twin.
    #[inline]
    pub const fn size(self) -> Option<Lots> {
        match self.0.checked_abs() {
            Some(u) => Some(Lots(u)),
            None => None,
        }
    }

    /// The signed decimal volume, normalized.
    #[inline]
    pub fn volume(self) -> Volume {
        Volume(from_units(self.0))
    }

    #[inline]
    pub fn checked_add(self, other: Exposure) -> Option<Exposure> {
        self.0.checked_add(other.0).map(Exposure)
    }

    #[inline]
    pub fn checked_sub(self, other: Exposure) -> Option<Exposure> {
        self.0.checked_sub(other.0).map(Exposure)
    }

    #[inline]
    pub fn checked_neg(self) -> Option<Exposure> {
        self.0.checked_neg().map(Exposure)
    }

    /// The exact sum, or `None` on overflow.
    pub fn checked_sum(items: impl IntoIterator<Item = Exposure>) -> Option<Exposure> {
        items
            .into_iter()
            .try_fold(Exposure::ZERO, |acc, e| acc.checked_add(e))
    }
}

impl fmt::Display for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&from_units(self.0), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    #[test]
    fn exact_conversion_or_refusal() {
        assert_eq!(to_units(dec!(0.1)), Ok(10_000_000));
        assert_eq!(to_units(dec!(-30.12)), Ok(-3_012_000_000));
        assert_eq!(to_units(dec!(1.100000000)), Ok(110_000_000));
        assert_eq!(to_units(dec!(1.123456789)), Err(FixedError::TooPrecise));
        assert_eq!(to_units(dec!(1e15)), Err(FixedError::OutOfRange));
        assert_eq!(from_units(10_000_000), dec!(0.1));
        assert_eq!(from_units(-123_456_789).to_string(), "-1.23456789");
    }

    #[test]
    fn a_size_is_never_negative() {
        assert_eq!(
            Lots::from_volume(Volume(dec!(-0.1))),
            Err(FixedError::Negative)
        );
        assert_eq!(Lots::from_volume(Volume(dec!(-0))), Ok(Lots::ZERO));
        assert_eq!(Lots::from_units(-1), None);
        let small = Lots::from_units(1).unwrap();
        assert_eq!(Lots::ZERO.checked_sub(small), None);
        assert_eq!(small.checked_sub(small), Some(Lots::ZERO));
    }

    #[test]
    fn sides_and_sizes() {
        let l = Lots::from_volume(Volume(dec!(0.3))).unwrap();
        assert_eq!(l.signed(Side::Sell).units(), -30_000_000);
        assert_eq!(l.signed(Side::Sell).side(), Some(Side::Sell));
        assert_eq!(l.signed(Side::Sell).size(), Some(l));
        assert_eq!(Exposure::ZERO.side(), None);
        assert_eq!(Exposure::from_units(i64::MIN).size(), None);
        assert_eq!(l.to_string(), "0.3");
        assert_eq!(l.signed(Side::Sell).volume(), Volume(dec!(-0.3)));
    }

    #[test]
    fn proration_rounds_half_away_from_zero() {
        assert_eq!(prorate(-10, 1, 3), -3);
        assert_eq!(prorate(10, 1, 4), 3);
        assert_eq!(prorate(-10, 1, 4), -3);
        assert_eq!(prorate(7, 0, 4), 0);
        assert_eq!(prorate(7, 1, 0), 0);
        assert_eq!(prorate(5, 1, 2), 3);
        assert_eq!(prorate(-5, 1, 2), -3);
        assert_eq!(prorate(5, -1, 2), -3);
        assert_eq!(prorate(5, 1, -2), -3);
        assert_eq!(prorate(i64::MIN, 1, -1), i64::MAX);
        assert_eq!(prorate(i64::MAX, i64::MAX, i64::MAX), i64::MAX);
    }

    #[test]
    fn averages() {
        // 3 @ 1.10 + 1 @ 1.11 = 1.1025
        let pv = 110_000_000i128 * 300_000_000 + 111_000_000i128 * 100_000_000;
        assert_eq!(weighted_average(pv, 400_000_000), dec!(1.1025));
        assert_eq!(weighted_average(0, 0), Decimal::ZERO);
    }

    proptest! {
        #[test]
        fn units_round_trip(units in any::<i64>()) {
            prop_assert_eq!(to_units(from_units(units)), Ok(units));
        }

        #[test]
        fn from_units_is_the_normalized_decimal(units in any::<i64>()) {
            let d = from_units(units);
            let reference = Decimal::new(units, SCALE_DP).normalize();
            prop_assert_eq!(d, reference);
            // The same written form, not only the same value.
            prop_assert_eq!(d.scale(), reference.scale());
            prop_assert_eq!(d.to_string(), reference.to_string());
        }

        #[test]
        fn to_units_agrees_with_wide_arithmetic(mantissa in any::<i64>(), hi in any::<i32>(), scale in 0u32..=28) {
            // Mantissas beyond i64 too, up to the decimal's 96 bits.
            let wide = ((hi as i128) << 64) | (mantissa as u64 as i128);
            let wide = wide.clamp(-(1i128 << 95), (1i128 << 95) - 1);
            let d = Decimal::try_from_i128_with_scale(wide, scale).unwrap();
            let expected = if scale <= SCALE_DP {
                d.mantissa()
                    .checked_mul(10i128.pow(SCALE_DP - scale))
                    .and_then(|m| i64::try_from(m).ok())
                    .ok_or(FixedError::OutOfRange)
            } else {
                let div = 10i128.pow(scale - SCALE_DP);
                if d.mantissa() % div != 0 {
                    Err(FixedError::TooPrecise)
                } else {
                    i64::try_from(d.mantissa() / div).map_err(|_| FixedError::OutOfRange)
                }
            };
            prop_assert_eq!(to_units(d), expected);
        }

        #[test]
        fn prorate_agrees_with_wide_arithmetic(total in any::<i64>(), part in any::<i64>(), whole in any::<i64>()) {
            prop_assert_eq!(prorate(total, part, whole), prorate_wide(total, part, whole));
            // Small values, where the i64 path is taken and remainders are common.
            let (t, p, w) = (total % 1_000_000, part % 1_000, whole % 1_000);
            if w != 0 {
                prop_assert_eq!(prorate(t, p, w), prorate_wide(t, p, w));
            }
        }

        #[test]
        fn decimals_round_trip(mantissa in any::<i64>(), scale in 0u32..=8) {
            let d = Decimal::new(mantissa, scale);
            let units = to_units(d);
            match units {
                Ok(u) => prop_assert_eq!(from_units(u), d.normalize()),
                Err(e) => prop_assert_eq!(e, FixedError::OutOfRange),
            }
        }

        #[test]
        fn finer_than_the_scale_is_refused(mantissa in 1i64..1_000_000_000, extra in 1u32..10) {
            // Last digit non-zero: exactly `8 + extra` significant decimals.
            let m = mantissa * 10 + 7;
            prop_assert_eq!(
                to_units(Decimal::new(m, SCALE_DP + extra)),
                Err(FixedError::TooPrecise)
            );
        }

        #[test]
        fn lots_round_trip_through_volume(units in 0i64..=i64::MAX) {
            let l = Lots::from_units(units).unwrap();
            prop_assert_eq!(Lots::from_volume(l.volume()), Ok(l));
            prop_assert!(l.signed(Side::Sell).units() <= 0);
            prop_assert_eq!(l.signed(Side::Buy).size(), Some(l));
        }

        #[test]
        fn checked_arithmetic_never_panics(a in any::<i64>(), b in any::<i64>()) {
            let (ea, eb) = (Exposure::from_units(a), Exposure::from_units(b));
            prop_assert_eq!(ea.checked_add(eb).map(Exposure::units), a.checked_add(b));
            prop_assert_eq!(ea.checked_sub(eb).map(Exposure::units), a.checked_sub(b));
            prop_assert_eq!(ea.checked_neg().map(Exposure::units), a.checked_neg());
            let _ = ea.size();
            let (la, lb) = (Lots::from_units(a), Lots::from_units(b));
            if let (Some(la), Some(lb)) = (la, lb) {
                prop_assert_eq!(la.checked_add(lb).map(Lots::units), a.checked_add(b));
                let diff = la.checked_sub(lb);
                prop_assert_eq!(diff.is_some(), a >= b);
            }
            let _ = prorate(a, b, a ^ b);
            let _ = weighted_average(a as i128 * b as i128, b);
        }

        #[test]
        fn sums_are_exact(
            items in proptest::collection::vec((0i64..1_000_000_000_000, any::<bool>()), 0..50)
        ) {
            let decimal: Decimal = items
                .iter()
                .map(|&(u, buy)| if buy { from_units(u) } else { -from_units(u) })
                .sum();
            let net = Exposure::checked_sum(items.iter().map(|&(u, buy)| {
                let side = if buy { Side::Buy } else { Side::Sell };
                Lots::from_units(u).unwrap().signed(side)
            }))
            .unwrap();
            prop_assert_eq!(net.volume().0, decimal.normalize());
            let gross = Lots::checked_sum(items.iter().map(|&(u, _)| Lots::from_units(u).unwrap()))
                .unwrap();
            let gross_decimal: Decimal = items.iter().map(|&(u, _)| from_units(u)).sum();
            prop_assert_eq!(gross.volume().0, gross_decimal.normalize());
        }

        #[test]
        fn overflowing_sums_are_refused(n in 2usize..10) {
            let big = Lots::from_units(i64::MAX / 2 + 1).unwrap();
            prop_assert_eq!(Lots::checked_sum(std::iter::repeat_n(big, n)), None);
        }
    }
}
