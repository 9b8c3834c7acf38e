//! The final table as a trader reads it: per instrument, one line per account with its own
//! symbol, its lots and what a lot is there, and the quantity in ounces or currency units; then
//! the clients' total, each hedge account's share against its allocation, and what is uncovered.
//! In JSON mode, one `row` entry per instrument instead.

use crate::exposure::{quantity, ExposureRow, Leg};
use crate::timeline::Timeline;
use rust_decimal::Decimal;
use serde_json::json;

/// A lot count as traders write it, with at least two decimals (`0.10`, `1.50`, `0.005`).
pub(super) fn lot_count(volume: Decimal) -> String {
    let mut v = volume.normalize();
    if v.scale() < 2 {
        v.rescale(2);
    }
    v.to_string()
}

/// `buy 0.21`, `sell 1.50`, `flat`: a signed lot count.
fn lots(signed: Decimal) -> String {
    if signed.is_zero() {
        return "flat".into();
    }
    let side = if signed > Decimal::ZERO {
        "buy"
    } else {
        "sell"
    };
    format!("{side} {}", lot_count(signed.abs()))
}

fn percent(share: Decimal) -> String {
    format!(
        "{}%",
        (share * Decimal::ONE_HUNDRED).round_dp(1).normalize()
    )
}

fn leg_line(leg: &Leg, unit: &str) -> String {
    let lot_size = leg.contract_size.map_or_else(
        || "no size".to_owned(),
        |c| format!("{} {unit}", quantity(c).trim_start_matches('+')),
    );
    let base = leg
        .base
        .map_or_else(|| "?".to_owned(), |b| format!("{} {unit}", quantity(b)));
    let share = match (leg.share, leg.weight) {
        (Some(s), Some(w)) => format!("{} (allocated {})", percent(s), percent(w)),
        (None, Some(w)) => format!("- (allocated {})", percent(w)),
        _ => String::new(),
    };
    format!(
        "  {:<15} {:<11} {:>10}  {:>12} {:>16}  {}",
        leg.account,
        leg.account_symbol,
        lots(leg.lots.0),
        lot_size,
        base,
        share
    )
    .trim_end()
    .to_owned()
}

/// Prints the table (see the module's description).
pub(super) fn print(t: &Timeline, rows: &[ExposureRow]) {
    t.plain("");
    t.plain("Net exposure per instrument. Lots are each broker's own; quantity = lots x lot size,");
    t.plain("in ounces for gold and in the base currency for currency pairs.");
    for r in rows {
        let unit = r.unit.as_str();
        t.plain("");
        t.plain(format!(
            "{:<17} {:<11} {:>10}  {:>12} {:>16}  {}",
            r.symbol, "symbol", "lots", "lot size", "quantity", "share of the clients"
        ));
        for leg in &r.clients {
            t.plain(leg_line(leg, unit));
        }
        t.plain(format!(
            "  {:<52} {:>16}",
            "clients",
            format!("{} {unit}", quantity(r.client_base))
        ));
        let mut sizes: Vec<Decimal> = r.clients.iter().filter_map(|l| l.contract_size).collect();
        sizes.sort();
        sizes.dedup();
        if sizes.len() > 1 {
            let summed: Decimal = r.clients.iter().map(|l| l.lots.0.abs()).sum();
            let sizes: Vec<String> = sizes
                .iter()
                .map(|s| format!("{} {unit}", quantity(*s).trim_start_matches('+')))
                .collect();
            t.plain(format!(
                "  (a lot is {} at these brokers: the clients' {} lots are not added up, their quantity is)",
                sizes.join(" or "),
                lot_count(summed)
            ));
        }
        for leg in &r.hedges {
            t.plain(leg_line(leg, unit));
        }
        t.plain(format!(
            "  {:<52} {:>16}  {}",
            "uncovered",
            format!("{} {unit}", quantity(r.uncovered)),
            match &r.problem {
                None if r.uncovered.is_zero() => "ok".to_owned(),
                None => "ok: less than a volume step, the plans say why:".to_owned(),
                Some(p) => format!("MISMATCH: {p}"),
            }
        ));
        for why in &r.explained_by {
            t.plain(format!("  plan residual: {why}"));
        }
        if t.is_json() {
            t.emit(
                "row",
                format!(
                    "{} clients {} {unit}, hedges {} {unit}",
                    r.symbol,
                    quantity(r.client_base),
                    quantity(r.hedge_base)
                ),
                serde_json::to_value(r).unwrap_or(json!({})),
            );
        }
    }
    t.plain("");
}
