//! Price feeds: a seeded random walk, or ticks replayed from a CSV file.
//!
//! Tick files: `time,bid,ask` with time in milliseconds since the epoch or ISO 8601 UTC
//! (`2024-01-02T10:00:00.250Z`, also with a space or MT5's dots), or HistData's
//! `YYYYMMDD HHMMSSmmm,bid,ask,volume`. A header line is skipped.

use crate::symbols::SimSymbol;
use hedge_domain::Price;
use hedge_protocol::TimeMs;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;

/// One quote.
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    pub symbol: String,
    pub time: TimeMs,
    pub bid: Price,
    pub ask: Price,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("tick file line {line}: {message}")]
pub struct FeedError {
    pub line: usize,
    pub message: String,
}

struct Walker {
    symbol: String,
    bid: Decimal,
    point: Decimal,
    spread: Decimal,
}

/// Bid/ask of each symbol moving by a few points per step, reproducible from the seed.
pub struct RandomWalk {
    rng: ChaCha8Rng,
    walkers: Vec<Walker>,
    /// Largest move per step, in points.
    pub max_step_points: i64,
}

impl RandomWalk {
    pub fn new(seed: u64, symbols: &[SimSymbol]) -> Self {
        RandomWalk {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_f00d),
            walkers: symbols
                .iter()
                .map(|s| Walker {
                    symbol: s.spec.name.clone(),
                    bid: s.bid.0,
                    point: s.spec.point.0,
                    spread: s.spec.point.0 * Decimal::from(s.spread_points),
                })
                .collect(),
            max_step_points: 5,
        }
    }

    /// The next quote of every symbol, at `time`.
    pub fn step(&mut self, time: TimeMs) -> Vec<Tick> {
        let max = self.max_step_points.max(1);
        let mut out = Vec::with_capacity(self.walkers.len());
        for w in &mut self.walkers {
            let points = self.rng.gen_range(-max..=max);
            let next = w.bid + w.point * Decimal::from(points);
            // Never at or below zero: bounce instead.
            if next > w.point * Decimal::from(10) {
                w.bid = next;
            }
            out.push(Tick {
                symbol: w.symbol.clone(),
                time,
                bid: Price(w.bid),
                ask: Price(w.bid + w.spread),
            });
        }
        out
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn to_ms(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, ms: i64) -> Option<TimeMs> {
    let valid = (1..=12).contains(&mo)
        && (1..=31).contains(&d)
        && (0..24).contains(&h)
        && (0..60).contains(&mi)
        && (0..61).contains(&s)
        && (0..1000).contains(&ms);
    valid.then(|| (((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + s) * 1000 + ms)
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.fff][Z]`, also with `.` as the date separator.
pub fn parse_iso_ms(text: &str) -> Option<TimeMs> {
    let t = text.trim().trim_end_matches('Z');
    let (date, time) = t.split_once(['T', ' '])?;
    let mut dp = date.split(['-', '.']);
    let (y, mo, d) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, b),
        None => (time, ""),
    };
    let mut tp = hms.split(':');
    let (h, mi, s) = (num(tp.next()?)?, num(tp.next()?)?, num(tp.next()?)?);
    let ms = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(3).collect();
        let v = num(&digits)?;
        v * 10i64.pow(3 - digits.len() as u32)
    };
    to_ms(y, mo, d, h, mi, s, ms)
}

/// HistData's `YYYYMMDD HHMMSSmmm`.
fn parse_histdata_ms(text: &str) -> Option<TimeMs> {
    let (date, time) = text.trim().split_once(' ')?;
    if date.len() != 8 || time.len() != 9 {
        return None;
    }
    to_ms(
        num(&date[0..4])?,
        num(&date[4..6])?,
        num(&date[6..8])?,
        num(&time[0..2])?,
        num(&time[2..4])?,
        num(&time[4..6])?,
        num(&time[6..9])?,
    )
}

fn parse_time(text: &str) -> Option<TimeMs> {
    let t = text.trim();
    num(t)
        .or_else(|| parse_histdata_ms(t))
        .or_else(|| parse_iso_ms(t))
}

/// Parses a tick file for `symbol`. Ticks must not go back in time.
pub fn parse_ticks(text: &str, symbol: &str) -> Result<Vec<Tick>, FeedError> {
    let mut ticks: Vec<Tick> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| FeedError {
            line: i + 1,
            message,
        };
        let fields: Vec<&str> = line.split([',', ';', '\t']).map(str::trim).collect();
        if fields.len() < 3 {
            return Err(err(format!("expected time,bid,ask; got {line:?}")));
        }
        let Some(time) = parse_time(fields[0]) else {
            if ticks.is_empty() && i == 0 {
                continue; // header
            }
            return Err(err(format!("unreadable time {:?}", fields[0])));
        };
        let price = |s: &str| -> Result<Price, FeedError> {
            s.parse::<Price>()
                .ok()
                .filter(|p| p.is_positive())
                .ok_or_else(|| err(format!("bad price {s:?}")))
        };
        let (bid, ask) = (price(fields[1])?, price(fields[2])?);
        if ask < bid {
            return Err(err(format!("ask {ask} below bid {bid}")));
        }
        if let Some(last) = ticks.last() {
            if time < last.time {
                return Err(err("time goes backwards".into()));
            }
        }
        ticks.push(Tick {
            symbol: symbol.to_owned(),
            time,
            bid,
            ask,
        });
    }
    Ok(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_time_formats() {
        assert_eq!(parse_iso_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_iso_ms("2024-01-02 10:00:00.250"),
            Some(1_704_189_600_250)
        );
        assert_eq!(parse_iso_ms("2024.01.02 10:00:00"), Some(1_704_189_600_000));
        assert_eq!(
            parse_histdata_ms("20240102 100000250"),
            Some(1_704_189_600_250)
        );
        assert_eq!(parse_iso_ms("2024-13-02T10:00:00"), None);
        let text = "time,bid,ask\n1704189600250,1.1,1.1002\n2024-01-02T10:00:01Z,1.1001,1.1003\n20240102 100002000,1.1002,1.1004,0\n";
        let ticks = parse_ticks(text, "EURUSD").unwrap();
        assert_eq!(ticks.len(), 3);
        assert_eq!(ticks[1].time, 1_704_189_601_000);
        assert_eq!(ticks[2].time, 1_704_189_602_000);
        assert_eq!(ticks[2].ask, "1.1004".parse().unwrap());
    }

    #[test]
    fn bad_tick_files_name_the_line() {
        let e = parse_ticks("1,1.1,1.2\nx,1,1\n", "E").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse_ticks("1,1.2,1.1\n", "E").is_err());
        assert!(parse_ticks("5,1.1,1.2\n4,1.1,1.2\n", "E").is_err());
        assert!(parse_ticks("1,-1,1.2\n", "E").is_err());
    }

    #[test]
    fn the_walk_is_reproducible() {
        let symbols = crate::symbols::default_symbols("");
        let mut a = RandomWalk::new(9, &symbols);
        let mut b = RandomWalk::new(9, &symbols);
        for t in 0..100 {
            assert_eq!(a.step(t), b.step(t));
        }
    }
}
