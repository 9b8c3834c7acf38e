//! The final check, in base quantity: per canonical symbol, what every client holds (in its own
//! broker's lots and in ounces or currency units), what each hedge account holds, and whether the
//! hedge accounts together are opposite the clients and split as allocated.
//!
//! Lots are not comparable across brokers (a lot of gold is 100 oz at one, 10 oz at another), so
//! every leg is converted with its own account's contract size before anything is summed. What
//! the grids cannot reach must be less than one volume step of the coarsest hedge account and
//! explained, to the ounce, by rounding residuals of the hedge plans.

use hedge_domain::{Login, Side, Volume};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

/// Quantities are JSON numbers on the wire, as everywhere in the project.
fn number<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    hedge_domain::num::serialize_decimal(*v, s)
}

fn opt_number<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => hedge_domain::num::serialize_decimal(*d, s),
        None => s.serialize_none(),
    }
}

/// One open position, under its canonical symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    pub symbol: String,
    pub side: Side,
    pub volume: Volume,
}

/// What a lot is on one account: its name for the symbol, the base quantity a lot holds and the
/// volume step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LotSpec {
    pub account_symbol: String,
    pub contract_size: Decimal,
    pub volume_step: Volume,
}

/// Whose positions a book holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookRole {
    Client,
    /// A hedge account and its allocated share of the clients' exposure (0..=1).
    Hedge {
        weight: Decimal,
    },
}

/// One account as the table reads it.
#[derive(Clone, Debug)]
pub struct Book {
    pub name: String,
    pub login: Login,
    pub role: BookRole,
    /// Canonical symbol → the account's lot.
    pub specs: BTreeMap<String, LotSpec>,
    pub holdings: Vec<Holding>,
}

/// A plan residual: what a hedge account's plan leaves unhedged on a symbol, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub login: Login,
    pub symbol: String,
    pub text: String,
    /// Signed base quantity left unhedged (clients' part plus the hedges, as `uncovered`), when
    /// the account's contract size converts it.
    #[serde(serialize_with = "opt_number")]
    pub base: Option<Decimal>,
    /// Left by rounding to the grids (below the step or minimum, or rounding across the hedge
    /// accounts), not by a pause, a missing spec or a client nobody covers.
    pub rounding: bool,
}

/// One account's net position on a symbol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Leg {
    pub account: String,
    pub login: Login,
    pub account_symbol: String,
    /// Signed (buys positive), in this account's lots.
    pub lots: Volume,
    /// Base quantity of one lot here; `None` when the account has no spec for the symbol.
    #[serde(serialize_with = "opt_number")]
    pub contract_size: Option<Decimal>,
    /// Signed `lots × contract_size`.
    #[serde(serialize_with = "opt_number")]
    pub base: Option<Decimal>,
    /// Hedge accounts: the allocated share.
    #[serde(serialize_with = "opt_number")]
    pub weight: Option<Decimal>,
    /// Hedge accounts: the part of the clients' exposure this account covers (`-base / clients`).
    #[serde(serialize_with = "opt_number")]
    pub share: Option<Decimal>,
}

/// One symbol of the final table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExposureRow {
    pub symbol: String,
    /// What the base quantity counts: `oz`, or the base currency (`EUR`).
    pub unit: String,
    pub clients: Vec<Leg>,
    pub hedges: Vec<Leg>,
    /// Signed base quantity over every client.
    #[serde(serialize_with = "number")]
    pub client_base: Decimal,
    /// Signed base quantity over every hedge account.
    #[serde(serialize_with = "number")]
    pub hedge_base: Decimal,
    /// `client_base + hedge_base`: zero when the hedges cover the clients exactly.
    #[serde(serialize_with = "number")]
    pub uncovered: Decimal,
    /// Plan residuals on this symbol, as the center explains them.
    pub explained_by: Vec<String>,
    pub ok: bool,
    /// Why the row does not hold, in words.
    pub problem: Option<String>,
}

/// The unit of a canonical symbol's base quantity, for people: ounces for metals, the base
/// currency for a currency pair, units otherwise.
pub fn unit_of(symbol: &str) -> String {
    if symbol.starts_with("XAU") || symbol.starts_with("XAG") {
        return "oz".into();
    }
    if symbol.len() == 6 && symbol.bytes().all(|b| b.is_ascii_uppercase()) {
        return symbol[..3].to_owned();
    }
    "units".into()
}

fn signed(h: &Holding) -> Decimal {
    match h.side {
        Side::Buy => h.volume.0,
        Side::Sell => -h.volume.0,
    }
}

fn leg(book: &Book, symbol: &str, clients_base: Option<Decimal>) -> Leg {
    let lots: Decimal = book
        .holdings
        .iter()
        .filter(|h| h.symbol == symbol)
        .map(signed)
        .sum();
    let spec = book.specs.get(symbol);
    let contract_size = spec
        .map(|s| s.contract_size)
        .filter(|c| c.is_sign_positive() && !c.is_zero());
    let base = contract_size.map(|c| lots * c);
    let weight = match book.role {
        BookRole::Hedge { weight } => Some(weight.normalize()),
        BookRole::Client => None,
    };
    let share = match (weight, base, clients_base) {
        (Some(_), Some(b), Some(c)) if !c.is_zero() => Some((-b / c).round_dp(4).normalize()),
        _ => None,
    };
    Leg {
        account: book.name.clone(),
        login: book.login,
        account_symbol: spec.map_or_else(|| symbol.to_owned(), |s| s.account_symbol.clone()),
        lots: Volume(lots).normalize(),
        contract_size: contract_size.map(|c| c.normalize()),
        base: base.map(|b| b.normalize()),
        weight,
        share,
    }
}

/// One volume step of `book` on `symbol`, in base quantity.
fn grid(book: &Book, symbol: &str) -> Option<Decimal> {
    book.specs
        .get(symbol)
        .map(|s| s.volume_step.0 * s.contract_size)
        .filter(|g| g.is_sign_positive() && !g.is_zero())
}

/// The table over every symbol any account holds. A row holds when the hedge accounts together
/// are opposite the clients in base quantity, exactly or but for less than one volume step of the
/// coarsest hedge account that the plans' rounding residuals add up to, and each hedge account is
/// at its allocated share within that step (the parts are rounded together).
pub fn table(books: &[Book], residuals: &[Explanation]) -> Vec<ExposureRow> {
    let mut symbols: Vec<&String> = books
        .iter()
        .flat_map(|b| b.holdings.iter().map(|h| &h.symbol))
        .collect();
    symbols.sort();
    symbols.dedup();
    symbols
        .into_iter()
        .map(|s| row(books, s, residuals))
        .collect()
}

fn row(books: &[Book], symbol: &str, residuals: &[Explanation]) -> ExposureRow {
    let is_hedge = |b: &&Book| matches!(b.role, BookRole::Hedge { .. });
    let clients: Vec<Leg> = books
        .iter()
        .filter(|b| !is_hedge(b))
        .map(|b| leg(b, symbol, None))
        .filter(|l| !l.lots.is_zero())
        .collect();
    let client_base: Option<Decimal> = clients.iter().map(|l| l.base).sum();
    let hedges: Vec<Leg> = books
        .iter()
        .filter(is_hedge)
        .map(|b| leg(b, symbol, client_base))
        .collect();
    let hedge_base: Option<Decimal> = hedges.iter().map(|l| l.base).sum();
    let on_symbol: Vec<&Explanation> = residuals.iter().filter(|r| r.symbol == symbol).collect();
    let explained_by: Vec<String> = on_symbol.iter().map(|r| r.text.clone()).collect();
    // What the grids leave, when every residual is a rounding one that converts.
    let grid_leftover: Option<Decimal> = on_symbol
        .iter()
        .map(|r| r.base.filter(|_| r.rounding))
        .sum();
    let grids: Vec<Decimal> = books
        .iter()
        .filter(is_hedge)
        .filter_map(|b| grid(b, symbol))
        .collect();
    let coarsest = grids.iter().copied().max().unwrap_or(Decimal::ZERO);
    let unit = unit_of(symbol);
    let (client_base, hedge_base) = match (client_base, hedge_base) {
        (Some(c), Some(h)) => (c, h),
        _ => {
            return ExposureRow {
                symbol: symbol.to_owned(),
                unit,
                clients,
                hedges,
                client_base: Decimal::ZERO,
                hedge_base: Decimal::ZERO,
                uncovered: Decimal::ZERO,
                explained_by,
                ok: false,
                problem: Some("an account has no contract size for it".into()),
            }
        }
    };
    let uncovered = client_base + hedge_base;
    let mut problem = None;
    if !uncovered.is_zero() && (uncovered.abs() >= coarsest || grid_leftover != Some(uncovered)) {
        problem = Some(format!(
            "{} {unit} uncovered{}",
            uncovered.normalize(),
            match grid_leftover {
                _ if uncovered.abs() >= coarsest => ", a volume step or more".to_owned(),
                _ if on_symbol.is_empty() => " and no plan residual explains it".to_owned(),
                Some(left) => format!(
                    ", the plans' rounding residuals account for {} {unit}",
                    left.normalize()
                ),
                None => ": not a rounding residual (see the plan)".to_owned(),
            }
        ));
    } else {
        for h in &hedges {
            let (Some(weight), Some(base)) = (h.weight, h.base) else {
                continue;
            };
            let off = base + weight * client_base;
            if off.abs() > coarsest {
                problem = Some(format!(
                    "{} holds {} {unit}, its {}% share is {} {unit}",
                    h.account,
                    base.normalize(),
                    (weight * Decimal::ONE_HUNDRED).normalize(),
                    (-weight * client_base).normalize()
                ));
                break;
            }
        }
    }
    ExposureRow {
        symbol: symbol.to_owned(),
        unit,
        clients,
        hedges,
        client_base: client_base.normalize(),
        hedge_base: hedge_base.normalize(),
        uncovered: uncovered.normalize(),
        explained_by,
        ok: problem.is_none(),
        problem,
    }
}

/// Whether every row holds and there is something to hedge at all.
pub fn holds(rows: &[ExposureRow]) -> bool {
    !rows.is_empty() && rows.iter().all(|r| r.ok)
}

/// A signed quantity with thousands separators (`+18,000`, `-35`, `0.5`).
pub fn quantity(q: Decimal) -> String {
    let q = q.normalize();
    let sign = if q.is_sign_negative() && !q.is_zero() {
        "-"
    } else if q.is_zero() {
        ""
    } else {
        "+"
    };
    let text = q.abs().to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn spec(name: &str, contract: Decimal) -> LotSpec {
        LotSpec {
            account_symbol: name.into(),
            contract_size: contract,
            volume_step: Volume(dec!(0.01)),
        }
    }

    fn h(symbol: &str, side: Side, v: Decimal) -> Holding {
        Holding {
            symbol: symbol.into(),
            side,
            volume: Volume(v),
        }
    }

    fn book(login: u64, role: BookRole, gold: LotSpec, holdings: Vec<Holding>) -> Book {
        Book {
            name: format!("account {login}"),
            login: Login(login),
            role,
            specs: [("XAUUSD".to_owned(), gold)].into(),
            holdings,
        }
    }

    /// Clients short 15 oz (1.5 lots of 10 oz) and 20 oz (0.2 lots of 100 oz); hedges of 100 oz
    /// and 10 oz lots with 60/40 weights.
    fn books(hedge_a: Decimal, hedge_b: Decimal) -> Vec<Book> {
        let hedge = |w: Decimal| BookRole::Hedge { weight: w };
        vec![
            book(
                1,
                BookRole::Client,
                spec("XAUUSD.r", dec!(10)),
                vec![h("XAUUSD", Side::Sell, dec!(1.5))],
            ),
            book(
                2,
                BookRole::Client,
                spec("GOLD", dec!(100)),
                vec![h("XAUUSD", Side::Sell, dec!(0.2))],
            ),
            book(
                3,
                hedge(dec!(0.6)),
                spec("XAUUSD-ECN", dec!(100)),
                vec![h("XAUUSD", Side::Buy, hedge_a)],
            ),
            book(
                4,
                hedge(dec!(0.4)),
                spec("XAUUSD.pro", dec!(10)),
                vec![h("XAUUSD", Side::Buy, hedge_b)],
            ),
        ]
    }

    #[test]
    fn hedges_opposite_in_ounces_and_split_as_allocated_hold() {
        let rows = table(&books(dec!(0.21), dec!(1.4)), &[]);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert!(holds(&rows), "{r:?}");
        assert_eq!(r.unit, "oz");
        assert_eq!(r.client_base, dec!(-35));
        assert_eq!(r.hedge_base, dec!(35));
        assert_eq!(r.clients[0].base, Some(dec!(-15)));
        assert_eq!(r.clients[1].base, Some(dec!(-20)));
        assert_eq!(r.hedges[0].share, Some(dec!(0.6)));
        assert_eq!(r.hedges[1].share, Some(dec!(0.4)));
    }

    #[test]
    fn equal_lots_are_not_equal_ounces() {
        // 1.7 lots against the clients' 1.7 lots would be 170 oz against 35.
        let rows = table(&books(dec!(1.02), dec!(0.68)), &[]);
        assert!(!holds(&rows));
        assert!(rows[0].problem.as_deref().unwrap().contains("uncovered"));
    }

    #[test]
    fn a_wrong_split_or_an_unexplained_residual_fails() {
        // Right total, 80/20 instead of 60/40.
        let rows = table(&books(dec!(0.28), dec!(0.7)), &[]);
        assert!(!holds(&rows));
        assert!(rows[0].problem.as_deref().unwrap().contains("share"));
        // 0.5 oz short and no plan residual says why.
        let short = table(&books(dec!(0.21), dec!(1.35)), &[]);
        assert!(!holds(&short));
        // Short by less than a step of the 100 oz account, and its plan says so: holds.
        let mut b = books(dec!(0.21), dec!(1.4));
        b[0].holdings.push(h("XAUUSD", Side::Sell, dec!(0.02)));
        assert!(!holds(&table(&b, &[])));
        let why = |base: Decimal, rounding: bool| Explanation {
            login: Login(3),
            symbol: "XAUUSD".into(),
            text: "below_min".into(),
            base: Some(base),
            rounding,
        };
        let rows = table(&b, &[why(dec!(-0.2), true)]);
        assert!(holds(&rows), "{rows:?}");
        assert_eq!(rows[0].uncovered, dec!(-0.2));
        // A residual that does not add up, or is not a rounding one, explains nothing.
        assert!(!holds(&table(&b, &[why(dec!(-0.1), true)])));
        assert!(!holds(&table(&b, &[why(dec!(-0.2), false)])));
        // A whole step of the 100 oz account off is not rounding, whatever the plans say.
        let mut b = books(dec!(0.21), dec!(1.4));
        b[0].holdings.push(h("XAUUSD", Side::Sell, dec!(0.1)));
        assert!(!holds(&table(&b, &[why(dec!(-1), true)])));
    }

    #[test]
    fn clients_that_cancel_out_need_no_hedge() {
        let mut b = books(dec!(0), dec!(0));
        b[1].holdings = vec![h("XAUUSD", Side::Buy, dec!(0.15))];
        let rows = table(&b, &[]);
        assert!(holds(&rows), "{rows:?}");
        assert_eq!(rows[0].client_base, dec!(0));
        // Hedges left over when the clients are flat are uncovered.
        let mut b = books(dec!(0.01), dec!(0));
        b[1].holdings = vec![h("XAUUSD", Side::Buy, dec!(0.15))];
        assert!(!holds(&table(&b, &[])));
    }

    #[test]
    fn no_contract_size_is_a_failure_not_a_guess() {
        let mut b = books(dec!(0.21), dec!(1.4));
        b[1].specs.clear();
        let rows = table(&b, &[]);
        assert!(!holds(&rows));
        assert_eq!(rows[0].clients[1].base, None);
        assert!(!holds(&table(&[], &[])));
    }

    #[test]
    fn quantities_read_like_a_trader_writes_them() {
        assert_eq!(quantity(dec!(-18000)), "-18,000");
        assert_eq!(quantity(dec!(1234567.50)), "+1,234,567.5");
        assert_eq!(quantity(dec!(35)), "+35");
        assert_eq!(quantity(dec!(0)), "0");
        assert_eq!(unit_of("XAUUSD"), "oz");
        assert_eq!(unit_of("EURUSD"), "EUR");
        assert_eq!(unit_of("US30"), "units");
    }
}
