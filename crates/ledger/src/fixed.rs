//! Compact exact storage for volumes, prices and money inside the ledger.
//!
//! Positions hold millions of deal fragments, so each quantity is kept as an `i64` count of 10^-8
//! units instead of a 16-byte decimal. The conversion is exact or refused: a value with more than 8
//! decimals, or beyond ±92 billion, is an input error, never a silent rounding.

use rust_decimal::Decimal;

/// Decimal places of every stored quantity.
pub const SCALE_DP: u32 = 8;
/// One whole unit (one lot, one price unit, one unit of money).
pub const ONE: i64 = 100_000_000;

/// `value` as 10^-8 units, if exact and in range.
pub fn to_units(value: Decimal) -> Option<i64> {
    let scale = value.scale();
    let mantissa = value.mantissa();
    if scale <= SCALE_DP {
        let m = mantissa.checked_mul(10i128.pow(SCALE_DP - scale))?;
        return i64::try_from(m).ok();
    }
    let div = 10i128.checked_pow(scale - SCALE_DP)?;
    if mantissa % div == 0 {
        return i64::try_from(mantissa / div).ok();
    }
    // More than 8 significant decimals.
    None
}

/// How many decimals `units` needs (0..=8): trailing zeros of the 10^-8 count say what is not needed.
pub fn decimals(units: i64) -> u8 {
    let mut dp = SCALE_DP as u8;
    let mut u = units;
    while dp > 0 && u % 10 == 0 {
        u /= 10;
        dp -= 1;
    }
    dp
}

/// 10^-8 units back to a normalized decimal.
pub fn from_units(units: i64) -> Decimal {
    Decimal::new(units, SCALE_DP).normalize()
}

/// `total × part ÷ whole`, rounded half away from zero; used to split commission and swap between
/// fragments of a deal. `whole` must be non-zero.
pub fn prorate(total: i64, part: i64, whole: i64) -> i64 {
    if whole == 0 {
        return 0;
    }
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
    (q + adj) as i64
}

/// Σ(price·volume) ÷ Σvolume as a decimal, or zero for no volume.
pub fn weighted_average(sum_pv: i128, sum_v: i64) -> Decimal {
    if sum_v == 0 {
        return Decimal::ZERO;
    }
    // sum_pv carries 16 decimals, sum_v 8: the quotient carries 8.
    let num = Decimal::try_from_i128_with_scale(sum_pv, 16);
    let den = Decimal::new(sum_v, 8);
    match num {
        Ok(n) => (n / den).normalize(),
        Err(_) => {
            // Out of the decimal's 96-bit range: fall back to integer division at 10^-8.
            Decimal::new((sum_pv / sum_v as i128) as i64, 8).normalize()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn exact_conversion_or_refusal() {
        assert_eq!(to_units(dec!(0.1)), Some(10_000_000));
        assert_eq!(to_units(dec!(-30.12)), Some(-3_012_000_000));
        assert_eq!(to_units(dec!(1.123456789)), None);
        assert_eq!(to_units(dec!(1e15)), None);
        assert_eq!(from_units(10_000_000), dec!(0.1));
    }

    #[test]
    fn proration_rounds_half_away_from_zero() {
        assert_eq!(prorate(-10, 1, 3), -3);
        assert_eq!(prorate(10, 1, 4), 3);
        assert_eq!(prorate(-10, 1, 4), -3);
        assert_eq!(prorate(7, 0, 4), 0);
    }

    #[test]
    fn averages() {
        // 3 @ 1.10 + 1 @ 1.11 = 1.1025
        let pv = 110_000_000i128 * 300_000_000 + 111_000_000i128 * 100_000_000;
        assert_eq!(weighted_average(pv, 400_000_000), dec!(1.1025));
    }
}
