//! Client positions: reports, their transitions, pages and details.

use super::*;
use std::sync::LazyLock;

columns! {
    /// A stored position.
    pub(super) PositionCol {
        login, position_id, symbol, account_symbol, side, volume_units, max_units, price, sl, tp,
        magic, comment, status, opened_ms, updated_ms, last_seq, last_event_id, row_id, exit_comment,
        exit_units, exit_notional, exit_price, realized_profit, realized_commission, realized_swap,
        realized_fee,
    }
}

columns! {
    /// One change of a position's volume.
    pub(super) VolumeCol { event_id, kind, side, volume_units, time_ms }
}

pub(super) fn position_from_row(r: &Row) -> Result<Position, StoreError> {
    let mut p = bare_position_from_row(r)?;
    Realized::show(realized_from_row(r)?.as_ref(), &mut p);
    Ok(p)
}

/// The position's realized figures; `None` (unknown) where `exit_units` is NULL.
pub(super) fn realized_from_row(r: &Row) -> Result<Option<Realized>, StoreError> {
    let Some(units) = r.opt_int(PositionCol::exit_units)? else {
        return Ok(None);
    };
    let money = |col: PositionCol| -> Result<Money, StoreError> {
        parse_money(r.opt_text(col)?)?
            .ok_or_else(|| StoreError::Corrupt(format!("{col:?} is missing")))
    };
    Ok(Some(Realized {
        units,
        notional: money(PositionCol::exit_notional)?.0,
        price: parse_price(r.opt_text(PositionCol::exit_price)?)?,
        profit: money(PositionCol::realized_profit)?,
        commission: money(PositionCol::realized_commission)?,
        swap: money(PositionCol::realized_swap)?,
        fee: money(PositionCol::realized_fee)?,
    }))
}

fn bare_position_from_row(r: &Row) -> Result<Position, StoreError> {
    Ok(Position {
        login: Login(r.u64(PositionCol::login)?),
        position_id: PositionId(r.u64(PositionCol::position_id)?),
        symbol: r.text(PositionCol::symbol)?.to_owned(),
        account_symbol: r.text(PositionCol::account_symbol)?.to_owned(),
        side: parse_side(r.text(PositionCol::side)?)?,
        volume: size_column(r.int(PositionCol::volume_units)?)?,
        max_volume: size_column(r.int(PositionCol::max_units)?)?,
        price: parse_price(r.opt_text(PositionCol::price)?)?,
        sl: parse_price(r.opt_text(PositionCol::sl)?)?,
        tp: parse_price(r.opt_text(PositionCol::tp)?)?,
        magic: Magic(r.u64(PositionCol::magic)?),
        comment: r.text(PositionCol::comment)?.to_owned(),
        exit_comment: r.opt_text(PositionCol::exit_comment)?.map(str::to_owned),
        status: PositionStatus::parse(r.text(PositionCol::status)?)
            .ok_or_else(|| StoreError::Corrupt("bad position status".into()))?,
        opened_ms: r.int(PositionCol::opened_ms)?,
        updated_ms: r.int(PositionCol::updated_ms)?,
        last_seq: r.u64(PositionCol::last_seq)?,
        last_event_id: EventId(r.u64(PositionCol::last_event_id)?),
        price_current: None,
        swap: None,
        profit: None,
        commission: None,
        exit_price: None,
        realized_profit: None,
        realized_commission: None,
        realized_swap: None,
        realized_fee: None,
    })
}

/// The stored position and its realized figures (`None` inside: unknown).
pub(super) fn load_position(
    c: &mut dyn Conn,
    login: Login,
    id: PositionId,
) -> Result<Option<(Position, Option<Realized>)>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {} FROM positions WHERE login = ? AND position_id = ?",
            PositionCol::LIST
        )
    });
    c.query_one(&SQL, &[Val::Int(login.0 as i64), Val::Int(id.0 as i64)])?
        .map(|r| Ok((position_from_row(&r)?, realized_from_row(&r)?)))
        .transpose()
}

pub(super) fn clamp_limit(limit: Option<u32>) -> i64 {
    i64::from(limit.unwrap_or(100).clamp(1, 1000))
}

pub fn positions(c: &mut dyn Conn, f: &PositionFilter) -> Result<Page<Position>, StoreError> {
    let mut sql = format!(
        "SELECT {}, {}
         FROM positions p LEFT JOIN position_marks m ON m.login = p.login AND m.position_id = p.position_id
         WHERE p.row_id > ?",
        PositionCol::qualified("p"),
        MarkCol::qualified("m"),
    );
    let mut params = vec![Val::Int(f.after.unwrap_or(0).min(i64::MAX as u64) as i64)];
    if let Some(login) = f.login {
        sql.push_str(" AND p.login = ?");
        params.push(Val::Int(login.0.min(i64::MAX as u64) as i64));
    }
    if let Some(symbol) = &f.symbol {
        sql.push_str(" AND p.symbol = ?");
        params.push(Val::text(symbol));
    }
    if let Some(status) = f.status {
        sql.push_str(" AND p.status = ?");
        params.push(Val::text(status.as_str()));
    }
    let limit = clamp_limit(f.limit);
    sql.push_str(" ORDER BY p.row_id LIMIT ?");
    params.push(Val::Int(limit + 1));
    let rows = c.query(&sql, &params)?;
    page(rows, limit, PositionCol::row_id, |r| {
        let mut p = position_from_row(r)?;
        apply_mark(&mut p, mark_from_row(r, PositionCol::COUNT)?);
        Ok(p)
    })
}

pub(super) fn page<T>(
    rows: Vec<Row>,
    limit: i64,
    cursor_col: impl Into<usize> + Copy,
    map: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    let more = rows.len() as i64 > limit;
    let mut items = Vec::with_capacity(rows.len());
    let mut last = None;
    for r in rows.iter().take(limit as usize) {
        items.push(map(r)?);
        last = Some(r.u64(cursor_col)?);
    }
    Ok(Page {
        items,
        next_after: if more { last } else { None },
    })
}

pub fn position_detail(
    c: &mut dyn Conn,
    login: Login,
    id: PositionId,
) -> Result<Option<PositionDetail>, StoreError> {
    if login.0 > i64::MAX as u64 || id.0 > i64::MAX as u64 {
        return Ok(None);
    }
    let Some((mut position, _)) = load_position(c, login, id)? else {
        return Ok(None);
    };
    let mark = c
        .query_one(
            &format!(
                "SELECT {} FROM position_marks WHERE login = ? AND position_id = ?",
                MarkCol::LIST
            ),
            &[Val::Int(login.0 as i64), Val::Int(id.0 as i64)],
        )?
        .map(|r| mark_from_row(&r, 0))
        .transpose()?
        .flatten();
    apply_mark(&mut position, mark);
    let rows = c.query(
        &format!(
            "SELECT {} FROM position_volumes WHERE login = ? AND position_id = ? ORDER BY event_id",
            VolumeCol::LIST
        ),
        &[Val::Int(login.0 as i64), Val::Int(id.0 as i64)],
    )?;
    let history = rows
        .iter()
        .map(|r| {
            Ok(VolumeChange {
                event_id: EventId(r.u64(VolumeCol::event_id)?),
                kind: PositionEventKind::parse(r.text(VolumeCol::kind)?)
                    .ok_or_else(|| StoreError::Corrupt("bad event kind".into()))?,
                side: parse_side(r.text(VolumeCol::side)?)?,
                volume: size_column(r.int(VolumeCol::volume_units)?)?,
                time_ms: r.int(VolumeCol::time_ms)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(PositionDetail { position, history }))
}
