//! From recognized tables to the ledger's history records.

use super::hedging::{assign_positions, ClosedRow};
use super::locale::{self, parse_entry, parse_side, Role};
use super::sections::{sections, Kind, Section};
use super::text::{is_ticket, parse_number, parse_time};
use super::{ImportedReport, OpenPositionRow, ReportError, Row, Sheet};
use crate::ledger::PairingMode;
use crate::record::{History, LedgerAccount, LedgerDeal, LedgerOrder};
use hedge_domain::{
    AccountMarginMode, DealEntry, DealTicket, DealType, Login, Magic, Money, OrderState,
    OrderTicket, OrderType, PositionId, Price, Side, Volume,
};
use rust_decimal::Decimal;

pub(crate) fn parse_deal_type(s: &str) -> Option<DealType> {
    if let Some(side) = parse_side(s) {
        return Some(match side {
            Side::Buy => DealType::Buy,
            Side::Sell => DealType::Sell,
        });
    }
    let t = locale::normalize(s);
    Some(match t.as_str() {
        "balance" | "solde" | "баланс" | "saldo" | "bakiye" | "残高" | "结余" | "الرصيد" => {
            DealType::Balance
        }
        "credit" | "crédit" | "кредит" | "kredit" | "crédito" | "credito" => {
            DealType::Credit
        }
        "charge" => DealType::Charge,
        "correction" => DealType::Correction,
        "bonus" => DealType::Bonus,
        "commission" => DealType::Commission,
        "interest" => DealType::Interest,
        "dividend" => DealType::Dividend,
        "tax" => DealType::Tax,
        _ => return None,
    })
}

pub(crate) fn parse_order_type(s: &str) -> Option<OrderType> {
    let t = s.trim().to_lowercase().replace(['_', '-'], " ");
    let side = parse_side(&t);
    let rest: String = t.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
    Some(match (side, rest.as_str()) {
        (Some(Side::Buy), "") => OrderType::Buy,
        (Some(Side::Sell), "") => OrderType::Sell,
        (Some(Side::Buy), "limit") => OrderType::BuyLimit,
        (Some(Side::Sell), "limit") => OrderType::SellLimit,
        (Some(Side::Buy), "stop") => OrderType::BuyStop,
        (Some(Side::Sell), "stop") => OrderType::SellStop,
        (Some(Side::Buy), "stop limit") => OrderType::BuyStopLimit,
        (Some(Side::Sell), "stop limit") => OrderType::SellStopLimit,
        _ if t.starts_with("close by") => OrderType::CloseBy,
        _ => return None,
    })
}

fn parse_state(s: &str) -> OrderState {
    match locale::normalize(s).as_str() {
        "canceled" | "cancelled" | "annulé" | "отменен" | "отменён" | "storniert" | "cancelado"
        | "annullato" | "iptal" | "取消" | "キャンセル" => OrderState::Canceled,
        "expired" | "expiré" | "истек" | "abgelaufen" | "expirado" | "scaduto" => {
            OrderState::Expired
        }
        "rejected" | "rejeté" | "отклонен" | "abgelehnt" | "rechazado" | "rifiutato" => {
            OrderState::Rejected
        }
        "partial" | "partially filled" | "partiel" => OrderState::Partial,
        "started" => OrderState::Started,
        "placed" | "placé" | "размещен" => OrderState::Placed,
        _ => OrderState::Filled,
    }
}

fn row_err(section: &'static str, row: usize, message: String) -> ReportError {
    ReportError::Row {
        section,
        row,
        message,
    }
}

fn num(section: &'static str, row: usize, what: &str, text: &str) -> Result<Decimal, ReportError> {
    parse_number(text)
        .ok_or_else(|| row_err(section, row, format!("{what} {text:?} is not a number")))
}

fn ticket(text: &str) -> u64 {
    text.trim().parse().unwrap_or(0)
}

/// Login, currency and margin mode from the "Account:" line: `25858699 (USD, Server, demo, Hedge)`.
fn account_info(sheet: &Sheet) -> (LedgerAccount, Option<AccountMarginMode>) {
    let mut info = LedgerAccount::default();
    let mut mode = None;
    for row in sheet.iter().take(12) {
        for (_, t) in row {
            let Some((login, rest)) = t.split_once('(') else {
                continue;
            };
            if !is_ticket(login) {
                continue;
            }
            info.login = Login(ticket(login));
            let inner = rest.trim_end().trim_end_matches(')');
            let parts: Vec<&str> = inner.split([',', '，']).map(str::trim).collect();
            if let Some(cur) = parts.first() {
                info.currency = (*cur).to_owned();
            }
            for p in &parts {
                let pl = p.to_lowercase();
                let any = |words: &[&str]| words.iter().any(|w| pl.starts_with(w) || pl == *w);
                if any(locale::HEDGING_WORDS) {
                    mode = Some(AccountMarginMode::RetailHedging);
                } else if any(locale::NETTING_WORDS) {
                    mode = Some(AccountMarginMode::RetailNetting);
                } else if any(locale::EXCHANGE_WORDS) {
                    mode = Some(AccountMarginMode::Exchange);
                }
            }
        }
    }
    (info, mode)
}

fn orders(sec: &Section<'_>, out: &mut Vec<LedgerOrder>) -> Result<(), ReportError> {
    let working = sec.kind == Kind::WorkingOrders;
    for (rn, row) in &sec.rows {
        let t = sec.cell(row, Role::Order);
        if !is_ticket(t) {
            continue;
        }
        let Some(order_type) = parse_order_type(sec.cell(row, Role::Type)) else {
            continue;
        };
        let vol_text = sec.cell(row, Role::Volume);
        let (req, filled) = vol_text.split_once('/').unwrap_or((vol_text, vol_text));
        let req = num("orders", *rn, "volume", req)?;
        let filled = if working {
            Decimal::ZERO
        } else {
            num("orders", *rn, "volume", filled)?
        };
        let price_text = sec.cell(row, Role::Price);
        let price = if price_text.chars().any(|c| c.is_ascii_digit()) {
            num("orders", *rn, "price", price_text)?
        } else {
            Decimal::ZERO // "market"
        };
        let setup = parse_time(sec.cell(row, Role::OpenTime)).unwrap_or(0);
        let done = parse_time(sec.cell(row, Role::Time)).unwrap_or(setup);
        out.push(LedgerOrder {
            ticket: OrderTicket(ticket(t)),
            symbol: sec.cell(row, Role::Symbol).to_owned(),
            order_type,
            state: if working {
                OrderState::Placed
            } else {
                parse_state(sec.cell(row, Role::State))
            },
            magic: Magic(0),
            volume_initial: Volume(req),
            volume_current: Volume(req - filled),
            price_open: Price(price),
            time_setup_msc: setup,
            time_done_msc: if working { 0 } else { done },
            position_id: PositionId(0),
            comment: sec.cell(row, Role::Comment).to_owned(),
        });
    }
    Ok(())
}

fn deal(sec: &Section<'_>, rn: usize, row: &Row) -> Result<Option<LedgerDeal>, ReportError> {
    let t = sec.cell(row, Role::Deal);
    if !is_ticket(t) {
        return Ok(None); // the totals row
    }
    let n = |role: Role, what: &str| num("deals", rn, what, sec.cell(row, role));
    let deal_type = parse_deal_type(sec.cell(row, Role::Type)).unwrap_or(DealType::Correction);
    let entry = parse_entry(sec.cell(row, Role::Direction)).unwrap_or(DealEntry::In);
    let time = parse_time(sec.cell(row, Role::Time))
        .ok_or_else(|| row_err("deals", rn, "bad time".into()))?;
    let order_text = sec.cell(row, Role::Order);
    let order = if deal_type.is_trade() && is_ticket(order_text) {
        ticket(order_text)
    } else {
        0
    };
    let volume = n(Role::Volume, "volume")?;
    if volume.is_sign_negative() && !volume.is_zero() {
        return Err(row_err("deals", rn, format!("negative volume {volume}")));
    }
    Ok(Some(LedgerDeal {
        ticket: DealTicket(ticket(t)),
        order: OrderTicket(order),
        symbol: sec.cell(row, Role::Symbol).to_owned(),
        deal_type,
        entry,
        magic: Magic(0),
        position_id: PositionId(0),
        volume: Volume(volume),
        price: Price(n(Role::Price, "price")?),
        commission: Money(n(Role::Commission, "commission")? + n(Role::Fee, "fee")?),
        swap: Money(n(Role::Swap, "swap")?),
        profit: Money(n(Role::Profit, "profit")?),
        time_msc: time,
        comment: sec.cell(row, Role::Comment).to_owned(),
    }))
}

fn closed_positions(sec: &Section<'_>, out: &mut Vec<ClosedRow>) -> Result<(), ReportError> {
    for (rn, row) in &sec.rows {
        let pos = sec.cell(row, Role::Position);
        let Some(side) = parse_side(sec.cell(row, Role::Type)) else {
            continue;
        };
        if !is_ticket(pos) {
            continue;
        }
        let vol = num("positions", *rn, "volume", sec.cell(row, Role::Volume))?;
        out.push(ClosedRow {
            position: ticket(pos),
            symbol: sec.cell(row, Role::Symbol).to_owned(),
            side,
            volume: hedge_domain::fixed::to_units(vol).unwrap_or(0),
            close_time: parse_time(sec.cell(row, Role::CloseTime)).unwrap_or(i64::MAX),
            profit: num("positions", *rn, "profit", sec.cell(row, Role::Profit))?,
        });
    }
    Ok(())
}

fn open_positions(sec: &Section<'_>, out: &mut Vec<OpenPositionRow>) -> Result<(), ReportError> {
    for (rn, row) in &sec.rows {
        let pos = sec.cell(row, Role::Position);
        let Some(side) = parse_side(sec.cell(row, Role::Type)) else {
            continue;
        };
        if !is_ticket(pos) {
            continue;
        }
        out.push(OpenPositionRow {
            position: PositionId(ticket(pos)),
            symbol: sec.cell(row, Role::Symbol).to_owned(),
            side,
            volume: Volume(num(
                "open positions",
                *rn,
                "volume",
                sec.cell(row, Role::Volume),
            )?),
        });
    }
    Ok(())
}

/// Builds the history from a sheet already split into rows.
pub fn import_sheet(sheet: &Sheet) -> Result<ImportedReport, ReportError> {
    let secs = sections(sheet);
    tracing::debug!(
        sections = ?secs.iter().map(|s| (s.header_row, s.kind)).collect::<Vec<_>>(),
        "report sections"
    );
    if !secs.iter().any(|s| s.kind == Kind::Deals) {
        return Err(ReportError::NoDeals);
    }
    let (account, declared_mode) = account_info(sheet);
    let mut history = History {
        account,
        ..History::default()
    };
    let mut closed_rows = Vec::new();
    let mut open = Vec::new();
    let mut has_closed_table = false;
    for sec in &secs {
        match sec.kind {
            Kind::Orders | Kind::WorkingOrders => orders(sec, &mut history.orders)?,
            Kind::Deals => {
                history.deals.reserve(sec.rows.len());
                for (rn, row) in &sec.rows {
                    if let Some(d) = deal(sec, *rn, row)? {
                        history.deals.push(d);
                    }
                }
            }
            Kind::ClosedPositions => {
                has_closed_table = true;
                closed_positions(sec, &mut closed_rows)?;
            }
            Kind::OpenPositions => open_positions(sec, &mut open)?,
        }
    }
    history.account.margin_mode = declared_mode.unwrap_or_else(|| {
        // No mode word we know: a closed-positions table or two positions on one symbol mean
        // hedging; a reversal (`in/out`) means netting.
        let reversal = history.deals.iter().any(|d| d.entry == DealEntry::InOut);
        let mut symbols: Vec<&str> = open.iter().map(|p| p.symbol.as_str()).collect();
        symbols.sort_unstable();
        let doubled = symbols.windows(2).any(|w| w[0] == w[1]);
        if !reversal && (has_closed_table || doubled) {
            AccountMarginMode::RetailHedging
        } else {
            AccountMarginMode::RetailNetting
        }
    });
    let mode = if history.account.margin_mode.is_netting() {
        PairingMode::Fifo
    } else {
        assign_positions(&mut history, &closed_rows, &open);
        PairingMode::Native
    };
    Ok(ImportedReport {
        history,
        mode,
        open_positions: open,
        closed_positions: has_closed_table.then_some(closed_rows.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_types_and_sides() {
        assert_eq!(parse_order_type("buy limit"), Some(OrderType::BuyLimit));
        assert_eq!(
            parse_order_type("sell stop limit"),
            Some(OrderType::SellStopLimit)
        );
        assert_eq!(parse_order_type("sell"), Some(OrderType::Sell));
        assert_eq!(parse_deal_type("balance"), Some(DealType::Balance));
        assert_eq!(parse_entry("in/out"), Some(DealEntry::InOut));
        assert_eq!(parse_entry("out by"), Some(DealEntry::OutBy));
    }

    #[test]
    fn account_line_in_other_languages() {
        let sheet: Sheet = vec![vec![(3, "42 (EUR, Srv, demo, Хеджинг)".to_owned())]];
        let (info, mode) = account_info(&sheet);
        assert_eq!(info.login, Login(42));
        assert_eq!(info.currency, "EUR");
        assert_eq!(mode, Some(AccountMarginMode::RetailHedging));
    }
}
