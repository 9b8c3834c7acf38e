//! Hedges: what the hedger opened, failed, reduced or closed, and the exposure they cover.

use super::*;

columns! {
    /// A hedge.
    pub(super) HedgeCol {
        id, plan_item_id, hedge_login, symbol, account_symbol, side, volume_units, open_units,
        order_ticket, deal_ticket, position_id, price, latency_us, slippage, status, retcode, message,
        created_ms, updated_ms, event_id,
    }
}

pub(super) fn hedge_from_row(r: &Row) -> Result<Hedge, StoreError> {
    Ok(Hedge {
        id: HedgeId(r.u64(HedgeCol::id)?),
        plan_item_id: PlanItemId(r.u64(HedgeCol::plan_item_id)?),
        hedge_login: Login(r.u64(HedgeCol::hedge_login)?),
        symbol: r.text(HedgeCol::symbol)?.to_owned(),
        account_symbol: r.text(HedgeCol::account_symbol)?.to_owned(),
        side: parse_side(r.text(HedgeCol::side)?)?,
        volume: size_column(r.int(HedgeCol::volume_units)?)?,
        open_volume: size_column(r.int(HedgeCol::open_units)?)?,
        order: OrderTicket(r.u64(HedgeCol::order_ticket)?),
        deal: DealTicket(r.u64(HedgeCol::deal_ticket)?),
        position_id: PositionId(r.u64(HedgeCol::position_id)?),
        price: parse_price(r.opt_text(HedgeCol::price)?)?,
        latency_us: r.opt_int(HedgeCol::latency_us)?.map(|v| v as u64),
        slippage: parse_price(r.opt_text(HedgeCol::slippage)?)?,
        status: HedgeStatus::parse(r.text(HedgeCol::status)?)
            .ok_or_else(|| StoreError::Corrupt("bad hedge status".into()))?,
        retcode: r.opt_int(HedgeCol::retcode)?.map(|v| Retcode(v as u32)),
        message: r.text(HedgeCol::message)?.to_owned(),
        created_ms: r.int(HedgeCol::created_ms)?,
        updated_ms: r.int(HedgeCol::updated_ms)?,
        event_id: EventId(r.u64(HedgeCol::event_id)?),
        mark: None,
    })
}

/// Puts on each open hedge the hedge account's latest mark of the hedge's position.
pub(super) fn mark_hedges(c: &mut dyn Conn, hedges: &mut [Hedge]) -> Result<(), StoreError> {
    let open = |h: &Hedge| matches!(h.status, HedgeStatus::Open | HedgeStatus::PartiallyClosed);
    let logins: std::collections::BTreeSet<Login> = hedges
        .iter()
        .filter(|h| open(h))
        .map(|h| h.hedge_login)
        .collect();
    for login in logins {
        let marks: std::collections::HashMap<PositionId, PositionMark> = marks_of(c, login)?
            .into_iter()
            .map(|m| (m.position_id, m))
            .collect();
        for h in hedges
            .iter_mut()
            .filter(|h| h.hedge_login == login && open(h))
        {
            h.mark = marks.get(&h.position_id).cloned();
        }
    }
    Ok(())
}

/// The row of `table` with that id, read by `from_row`. An id beyond SQL's integer range names no
/// row, rather than wrapping to a negative one that might.
pub(super) fn row_by_id<T>(
    c: &mut dyn Conn,
    table: &str,
    cols: &str,
    id: u64,
    from_row: fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let Ok(id) = i64::try_from(id) else {
        return Ok(None);
    };
    let sql = format!("SELECT {cols} FROM {table} WHERE id = ?");
    c.query_one(&sql, &[Val::Int(id)])?
        .map(|r| from_row(&r))
        .transpose()
}

pub fn hedge_by_id(c: &mut dyn Conn, id: HedgeId) -> Result<Option<Hedge>, StoreError> {
    row_by_id(c, "hedges", HedgeCol::LIST, id.get(), hedge_from_row)
}

pub(super) fn hedge_account(
    c: &mut dyn Conn,
    login: Login,
) -> Result<AccountRegistration, WriteError> {
    match account(c, login)? {
        Some(a) if a.registration.role == AccountRole::Hedge => Ok(a.effective()),
        Some(_) => Err(Refusal::Conflict(format!("account {login} is not a hedge account")).into()),
        None => Err(Refusal::NotFound(format!("hedge account {login} is not registered")).into()),
    }
}

pub(super) struct HedgeRow<'a> {
    plan_item_id: PlanItemId,
    hedge_login: Login,
    symbol: &'a str,
    account_symbol: String,
    side: Side,
    volume: Lots,
    open: Lots,
    order: OrderTicket,
    deal: DealTicket,
    position_id: PositionId,
    price: Option<Price>,
    latency_us: Option<u64>,
    slippage: Option<Price>,
    status: HedgeStatus,
    retcode: Option<Retcode>,
    message: &'a str,
    now: i64,
    event_id: u64,
}

pub(super) fn insert_hedge(c: &mut dyn Conn, h: HedgeRow<'_>) -> Result<u64, WriteError> {
    let row = c
        .query_one(
            &format!(
                "INSERT INTO hedges ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                HedgeCol::LIST.trim_start_matches("id, ")
            ),
            &[
                Val::Int(to_i64(h.plan_item_id.get(), "plan_item_id")?),
                Val::Int(h.hedge_login.0 as i64),
                Val::text(h.symbol),
                Val::Text(h.account_symbol),
                Val::text(h.side.as_str()),
                Val::Int(h.volume.units()),
                Val::Int(h.open.units()),
                Val::Int(to_i64(h.order.0, "order")?),
                Val::Int(to_i64(h.deal.0, "deal")?),
                Val::Int(to_i64(h.position_id.0, "position_id")?),
                price_text(h.price),
                Val::opt_int(h.latency_us.map(|v| v.min(i64::MAX as u64) as i64)),
                price_text(h.slippage),
                Val::text(h.status.as_str()),
                Val::opt_int(h.retcode.map(|r| i64::from(r.0))),
                Val::text(h.message),
                Val::Int(h.now),
                Val::Int(h.now),
                Val::Int(h.event_id as i64),
            ],
        )?
        .ok_or_else(|| StoreError::Corrupt("hedge insert returned no id".into()))?;
    Ok(row.u64(Single::value)?)
}

pub(super) fn add_hedge_exposure(
    c: &mut dyn Conn,
    hedge_login: Login,
    symbol: &str,
    delta: Exposure,
    event_id: u64,
) -> Result<(), WriteError> {
    check_total(
        c,
        "SELECT net_units FROM hedge_exposures WHERE hedge_login = ? AND symbol = ?",
        &[Val::Int(hedge_login.0 as i64), Val::text(symbol)],
        delta,
        "volume",
        &format!("the net volume of hedge account {hedge_login} in {symbol}"),
    )?;
    c.execute(
        "INSERT INTO hedge_exposures (hedge_login, symbol, net_units, last_event_id) VALUES (?, ?, ?, ?)
         ON CONFLICT (hedge_login, symbol) DO UPDATE SET net_units = hedge_exposures.net_units + excluded.net_units,
           last_event_id = excluded.last_event_id",
        &[Val::Int(hedge_login.0 as i64), Val::text(symbol), Val::Int(delta.units()), Val::Int(event_id as i64)],
    )?;
    Ok(())
}

pub fn hedge_executed(
    c: &mut dyn Conn,
    actor: &str,
    h: &HedgeExecuted,
    now: i64,
) -> Result<(Hedge, bool), WriteError> {
    check_symbol(&h.symbol, "symbol")?;
    let size = lots(h.volume, "volume")?;
    if size.is_zero() {
        return Err(Refusal::invalid("volume", "volume must be positive").into());
    }
    to_i64(h.plan_item_id.get(), "plan_item_id")?;
    if h.hedge_login.0 > i64::MAX as u64 {
        return Err(Refusal::invalid("hedge_login", "hedge_login is out of range").into());
    }
    let sql = format!(
        "SELECT {} FROM hedges WHERE hedge_login = ? AND plan_item_id = ? AND status <> 'failed'",
        HedgeCol::LIST
    );
    if let Some(row) = c.query_one(
        &sql,
        &[
            Val::Int(h.hedge_login.0 as i64),
            Val::Int(h.plan_item_id.get() as i64),
        ],
    )? {
        let existing = hedge_from_row(&row)?;
        if existing.symbol != h.symbol || existing.side != h.side {
            return Err(Refusal::Conflict(format!(
                "plan item {} was already executed as {} {} {}",
                h.plan_item_id, existing.side, existing.volume, existing.symbol
            ))
            .into());
        }
        return Ok((existing, true));
    }
    let account = hedge_account(c, h.hedge_login)?;
    let reason = format!(
        "hedge {} {} {} executed on {} for plan item {}",
        h.side, h.volume, h.symbol, h.hedge_login, h.plan_item_id
    );
    let event_id = next_event_id(c)?;
    let id = insert_hedge(
        c,
        HedgeRow {
            plan_item_id: h.plan_item_id,
            hedge_login: h.hedge_login,
            symbol: &h.symbol,
            account_symbol: account.account_name(&h.symbol),
            side: h.side,
            volume: size,
            open: size,
            order: h.order,
            deal: h.deal,
            position_id: h.position_id,
            price: h.price,
            latency_us: h.latency_us,
            slippage: h.slippage,
            status: HedgeStatus::Open,
            retcode: None,
            message: "",
            now,
            event_id,
        },
    )?;
    add_hedge_exposure(c, h.hedge_login, &h.symbol, size.signed(h.side), event_id)?;
    let hedge =
        hedge_by_id(c, HedgeId(id))?.ok_or_else(|| StoreError::Corrupt("hedge vanished".into()))?;
    write_event(
        c,
        event_id,
        NewEvent {
            time_ms: now,
            kind: EventKind::HedgeExecuted,
            login: Some(h.hedge_login),
            symbol: Some(&h.symbol),
            actor,
            reason: &reason,
            data: json(&hedge)?,
        },
    )?;
    Ok((hedge, false))
}

pub fn hedge_failed(
    c: &mut dyn Conn,
    actor: &str,
    f: &HedgeFailed,
    now: i64,
) -> Result<Hedge, WriteError> {
    check_symbol(&f.symbol, "symbol")?;
    let size = lots(f.volume, "volume")?;
    to_i64(f.plan_item_id.get(), "plan_item_id")?;
    if f.message.len() > 2048 {
        return Err(Refusal::invalid("message", "message is too long").into());
    }
    let account = hedge_account(c, f.hedge_login)?;
    let reason = format!(
        "hedge {} {} {} failed on {} for plan item {}: retcode {} {}",
        f.side, f.volume, f.symbol, f.hedge_login, f.plan_item_id, f.retcode.0, f.message
    );
    let event_id = next_event_id(c)?;
    let id = insert_hedge(
        c,
        HedgeRow {
            plan_item_id: f.plan_item_id,
            hedge_login: f.hedge_login,
            symbol: &f.symbol,
            account_symbol: account.account_name(&f.symbol),
            side: f.side,
            volume: size,
            open: Lots::ZERO,
            order: OrderTicket(0),
            deal: DealTicket(0),
            position_id: PositionId(0),
            price: None,
            latency_us: None,
            slippage: None,
            status: HedgeStatus::Failed,
            retcode: Some(f.retcode),
            message: &f.message,
            now,
            event_id,
        },
    )?;
    let hedge =
        hedge_by_id(c, HedgeId(id))?.ok_or_else(|| StoreError::Corrupt("hedge vanished".into()))?;
    write_event(
        c,
        event_id,
        NewEvent {
            time_ms: now,
            kind: EventKind::HedgeFailed,
            login: Some(f.hedge_login),
            symbol: Some(&f.symbol),
            actor,
            reason: &reason,
            data: json(&hedge)?,
        },
    )?;
    Ok(hedge)
}

pub fn hedge_reduce(
    c: &mut dyn Conn,
    actor: &str,
    id: HedgeId,
    r: &HedgeReduce,
    now: i64,
) -> Result<Hedge, WriteError> {
    let remaining = lots(r.remaining, "remaining")?;
    let Some(hedge) = hedge_by_id(c, id)? else {
        return Err(Refusal::NotFound(format!("hedge {id} does not exist")).into());
    };
    if hedge.status == HedgeStatus::Failed {
        return Err(
            Refusal::Conflict(format!("hedge {id} failed; there is nothing to reduce")).into(),
        );
    }
    let open = lots(hedge.open_volume, "open_volume")?;
    if remaining == open {
        return Ok(hedge);
    }
    if remaining > open {
        return Err(Refusal::Conflict(format!(
            "hedge {id} has {} open; remaining {} would increase it",
            hedge.open_volume, r.remaining
        ))
        .into());
    }
    let status = if remaining.is_zero() {
        HedgeStatus::Closed
    } else {
        HedgeStatus::PartiallyClosed
    };
    let kind = if remaining.is_zero() {
        EventKind::HedgeClosed
    } else {
        EventKind::HedgeReduced
    };
    let reason = format!(
        "hedge {id} ({} {}) reduced from {} to {}{}",
        hedge.side,
        hedge.symbol,
        hedge.open_volume,
        r.remaining.normalize(),
        if r.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", r.reason)
        }
    );
    let event_id = next_event_id(c)?;
    c.execute(
        "UPDATE hedges SET open_units = ?, status = ?, updated_ms = ?, event_id = ? WHERE id = ?",
        &[
            Val::Int(remaining.units()),
            Val::text(status.as_str()),
            Val::Int(now),
            Val::Int(event_id as i64),
            Val::Int(id.get() as i64),
        ],
    )?;
    // `remaining < open` here, so the difference is a size; taking it back moves the net against
    // the hedge's side.
    let taken = open.checked_sub(remaining).unwrap_or_default();
    let delta = taken.signed(hedge.side.opposite());
    add_hedge_exposure(c, hedge.hedge_login, &hedge.symbol, delta, event_id)?;
    let stored = hedge_by_id(c, id)?.ok_or_else(|| StoreError::Corrupt("hedge vanished".into()))?;
    write_event(
        c,
        event_id,
        NewEvent {
            time_ms: now,
            kind,
            login: Some(hedge.hedge_login),
            symbol: Some(&hedge.symbol),
            actor,
            reason: &reason,
            data: json(&stored)?,
        },
    )?;
    Ok(stored)
}

pub fn hedges(c: &mut dyn Conn, q: &PageQuery) -> Result<Page<Hedge>, StoreError> {
    let mut sql = format!("SELECT {} FROM hedges WHERE id > ?", HedgeCol::LIST);
    let mut params = vec![Val::Int(q.after.unwrap_or(0).min(i64::MAX as u64) as i64)];
    if let Some(login) = q.login {
        sql.push_str(" AND hedge_login = ?");
        params.push(Val::Int(login.0.min(i64::MAX as u64) as i64));
    }
    if let Some(symbol) = &q.symbol {
        sql.push_str(" AND symbol = ?");
        params.push(Val::text(symbol));
    }
    if q.open == Some(true) {
        sql.push_str(" AND status IN ('open', 'partially_closed')");
    }
    let limit = clamp_limit(q.limit);
    sql.push_str(" ORDER BY id LIMIT ?");
    params.push(Val::Int(limit + 1));
    let rows = c.query(&sql, &params)?;
    let mut hedges = page(rows, limit, HedgeCol::id, hedge_from_row)?;
    mark_hedges(c, &mut hedges.items)?;
    Ok(hedges)
}
