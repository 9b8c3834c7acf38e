//! Status heartbeats and the marks of open positions they carry.

use super::*;

pub fn heartbeat(
    c: &mut dyn Conn,
    actor: &str,
    login: Login,
    status: &AccountStatus,
    now: i64,
) -> Result<Account, WriteError> {
    let Some(existing) = account(c, login)? else {
        return Err(Refusal::NotFound(format!("account {login} is not registered")).into());
    };
    validate_status(status)?;
    // Marks live in their own table (latest per position), not in the stored status.
    let changed_marks = store_marks(c, login, &status.marks, now)?;
    let kept = AccountStatus {
        marks: Vec::new(),
        ..status.clone()
    };
    c.execute(
        "UPDATE accounts SET status = ?, last_seen_ms = ? WHERE login = ?",
        &[
            Val::Text(json(&kept)?),
            Val::Int(now),
            Val::Int(login.0 as i64),
        ],
    )?;
    let stored = account(c, login)?
        .ok_or_else(|| StoreError::Corrupt("account vanished after update".into()))?;
    if existing.status.as_ref() != Some(&kept) || !changed_marks.is_empty() {
        let reason = format!(
            "account {login} status: {}, outbox {}",
            if status.connected {
                "connected"
            } else {
                "disconnected"
            },
            status.outbox_pending
        );
        let mut data = serde_json::to_value(&stored).map_err(db)?;
        if !changed_marks.is_empty() {
            // The marks that moved, so the dashboard updates its position rows from the event
            // alone without the event carrying every position of a large account.
            if let Some(obj) = data.as_object_mut() {
                obj.insert(
                    "marks".into(),
                    serde_json::to_value(&changed_marks).map_err(db)?,
                );
            }
        }
        insert_event(
            c,
            NewEvent {
                time_ms: now,
                kind: EventKind::AccountStatus,
                login: Some(login),
                symbol: None,
                actor,
                reason: &reason,
                data: data.to_string(),
            },
        )?;
    }
    Ok(stored)
}

pub(super) fn validate_status(status: &AccountStatus) -> Result<(), Refusal> {
    if status.breakers.len() > 10_000
        || status.pretrade_refusals.len() > 10_000
        || status
            .pretrade_refusals
            .iter()
            .any(|r| r.reason.len() > 2048 || r.symbol.len() > 256 || r.account_symbol.len() > 256)
        || status.message.as_ref().is_some_and(|m| m.len() > 2048)
        || status
            .dead_letter_reason
            .as_ref()
            .is_some_and(|m| m.len() > 2048)
    {
        return Err(Refusal::invalid("breakers", "status too large"));
    }
    if status.marks.len() > 100_000 {
        return Err(Refusal::invalid("marks", "too many marks"));
    }
    let mut seen = std::collections::HashSet::with_capacity(status.marks.len());
    for m in &status.marks {
        if m.position_id.0 == 0 || m.position_id.0 > i64::MAX as u64 {
            return Err(Refusal::invalid(
                "marks.position_id",
                "position_id must be a positive ticket",
            ));
        }
        if !seen.insert(m.position_id) {
            return Err(Refusal::invalid(
                "marks.position_id",
                format!("position {} is marked twice", m.position_id),
            ));
        }
        if m.price_current.0.is_sign_negative() && !m.price_current.0.is_zero() {
            return Err(Refusal::invalid(
                "marks.price_current",
                "price_current must not be negative",
            ));
        }
    }
    if let Some(a) = &status.account {
        if a.currency.len() > 16 {
            return Err(Refusal::invalid("account.currency", "currency is too long"));
        }
    }
    if let Some(r) = &status.reconciliation {
        if r.detail.len() > 8192 {
            return Err(Refusal::invalid(
                "reconciliation.detail",
                "reconciliation detail is too long",
            ));
        }
    }
    Ok(())
}

pub(super) fn money_text(m: Money) -> Val {
    Val::Text(m.0.normalize().to_string())
}

pub(super) fn parse_money(t: Option<&str>) -> Result<Option<Money>, StoreError> {
    Ok(parse_price(t)?.map(|p| Money(p.0)))
}

/// Makes `marks` the account's marks (nothing when the status carries none): changed ones are
/// written, those of positions no longer listed removed, unchanged ones left alone so a large
/// account costs the writer only what moved. Returns the marks that changed.
pub(super) fn store_marks(
    c: &mut dyn Conn,
    login: Login,
    marks: &[PositionMark],
    now: i64,
) -> Result<Vec<PositionMark>, StoreError> {
    if marks.is_empty() {
        return Ok(Vec::new());
    }
    let existing: std::collections::HashMap<u64, PositionMark> = marks_of(c, login)?
        .into_iter()
        .map(|m| (m.position_id.0, m))
        .collect();
    let wanted: std::collections::HashSet<u64> = marks.iter().map(|m| m.position_id.0).collect();
    // One statement each for the gone and the changed marks (rows one by one on SQLite): an
    // account with thousands of open positions is then not thousands of round trips.
    let gone: Vec<Vec<Val>> = existing
        .keys()
        .filter(|id| !wanted.contains(id))
        .map(|id| vec![Val::Int(login.0 as i64), Val::Int(*id as i64)])
        .collect();
    delete_rows(
        c,
        "position_marks",
        &[("login", Ty::Int), ("position_id", Ty::Int)],
        &gone,
    )?;
    let mut changed = Vec::new();
    let mut rows = Vec::new();
    for m in marks {
        if existing.get(&m.position_id.0) == Some(m) {
            continue;
        }
        rows.push(vec![
            Val::Int(login.0 as i64),
            Val::Int(m.position_id.0 as i64),
            Val::Text(m.price_current.0.normalize().to_string()),
            money_text(m.swap),
            money_text(m.profit),
            money_text(m.commission),
            Val::Int(now),
        ]);
        changed.push(m.clone());
    }
    // Position ids are distinct (`validate_status`), as one upsert of many rows needs.
    insert_rows(
        c,
        "position_marks",
        &[
            ("login", Ty::Int),
            ("position_id", Ty::Int),
            ("price_current", Ty::Text),
            ("swap", Ty::Text),
            ("profit", Ty::Text),
            ("commission", Ty::Text),
            ("updated_ms", Ty::Int),
        ],
        &rows,
        "ON CONFLICT (login, position_id) DO UPDATE SET price_current = excluded.price_current, swap = excluded.swap,
           profit = excluded.profit, commission = excluded.commission, updated_ms = excluded.updated_ms",
    )?;
    Ok(changed)
}

columns! {
    /// The latest mark of a position.
    pub(super) MarkCol { position_id, price_current, swap, profit, commission }
}

/// The mark in `r` whose columns start at `at`; `None` where the mark is absent (a left join).
pub(super) fn mark_from_row(r: &Row, at: usize) -> Result<Option<PositionMark>, StoreError> {
    let Some(price) = parse_price(r.opt_text(MarkCol::price_current.after(at))?)? else {
        return Ok(None);
    };
    Ok(Some(PositionMark {
        position_id: PositionId(r.u64(MarkCol::position_id.after(at))?),
        price_current: price,
        swap: parse_money(r.opt_text(MarkCol::swap.after(at))?)?.unwrap_or_default(),
        profit: parse_money(r.opt_text(MarkCol::profit.after(at))?)?.unwrap_or_default(),
        commission: parse_money(r.opt_text(MarkCol::commission.after(at))?)?.unwrap_or_default(),
    }))
}

pub(super) fn marks_of(c: &mut dyn Conn, login: Login) -> Result<Vec<PositionMark>, StoreError> {
    c.query(
        &format!(
            "SELECT {} FROM position_marks WHERE login = ?",
            MarkCol::LIST
        ),
        &[Val::Int(login.0 as i64)],
    )?
    .iter()
    .filter_map(|r| mark_from_row(r, 0).transpose())
    .collect()
}

/// Puts a mark on an open position (closed positions show none: the mark is of the last open state).
pub(super) fn apply_mark(p: &mut Position, mark: Option<PositionMark>) {
    if p.status == PositionStatus::Closed {
        return;
    }
    if let Some(m) = mark {
        p.price_current = Some(m.price_current);
        p.swap = Some(m.swap);
        p.profit = Some(m.profit);
        p.commission = Some(m.commission);
    }
}
