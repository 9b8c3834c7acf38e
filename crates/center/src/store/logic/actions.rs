//! Operator actions under their idempotency keys, and pauses.

use super::*;

columns! {
    /// A pause.
    pub(super) PauseCol { login, symbol, actor, reason, since_ms, event_id }
}

pub fn pauses(c: &mut dyn Conn) -> Result<Vec<Pause>, StoreError> {
    c.query(
        &format!("SELECT {} FROM pauses ORDER BY event_id", PauseCol::LIST),
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(Pause {
            login: r.opt_int(PauseCol::login)?.map(|l| Login(l as u64)),
            symbol: r.opt_text(PauseCol::symbol)?.map(str::to_owned),
            actor: r.text(PauseCol::actor)?.to_owned(),
            reason: r.text(PauseCol::reason)?.to_owned(),
            since_ms: r.int(PauseCol::since_ms)?,
            event_id: EventId(r.u64(PauseCol::event_id)?),
        })
    })
    .collect()
}

/// Checks an operator action's idempotency key: 1 to [`positions::MAX_KEY_LEN`] visible ASCII
/// characters (it travels in a header).
pub(super) fn check_action_key(key: &str) -> Result<(), Refusal> {
    if key.is_empty() {
        return Err(Refusal::invalid(
            "Idempotency-Key",
            "Idempotency-Key must not be empty",
        ));
    }
    if key.len() > positions::MAX_KEY_LEN {
        return Err(Refusal::invalid(
            "Idempotency-Key",
            format!(
                "Idempotency-Key is longer than {} characters",
                positions::MAX_KEY_LEN
            ),
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Refusal::invalid(
            "Idempotency-Key",
            "Idempotency-Key must be visible ASCII characters without spaces",
        ));
    }
    Ok(())
}

/// An operator action under its idempotency key: the first request with a key acts and stores its
/// answer with the key in the same transaction; the same key with the same action returns that
/// answer (`true`: a replay) and changes nothing, even when the command it created has finished
/// since; the same key with another action is refused. A refused action stores nothing, so its
/// key may be sent again.
pub fn keyed_action(
    c: &mut dyn Conn,
    actor: &str,
    key: &str,
    a: &ActionRequest,
    now: i64,
) -> Result<(ActionAck, bool), WriteError> {
    check_action_key(key)?;
    let payload = json(a)?;
    if let Some(answer) = first_answer(c, ACTION_ANSWER, key, &payload, "action")? {
        let ack = serde_json::from_str(&answer).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        return Ok((ack, true));
    }
    let ack = action(c, actor, a, now)?;
    c.execute(
        "INSERT INTO action_keys (key, actor, payload, response, event_id, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
        &[
            Val::text(key),
            Val::text(actor),
            Val::Text(payload),
            Val::Text(json(&ack)?),
            Val::Int(ack.event_id.get() as i64),
            Val::Int(now),
        ],
    )?;
    Ok((ack, false))
}

pub(super) fn action(
    c: &mut dyn Conn,
    actor: &str,
    a: &ActionRequest,
    now: i64,
) -> Result<ActionAck, WriteError> {
    if a.reason.len() > 1024 {
        return Err(Refusal::invalid("reason", "reason is too long").into());
    }
    if a.login.is_some_and(|l| l.0 > i64::MAX as u64) {
        return Err(Refusal::invalid("login", "login is out of range").into());
    }
    if let Some(symbol) = &a.symbol {
        check_symbol(symbol, "symbol")?;
    }
    check_fields_used(a)?;
    match a.action {
        ActionKind::Pause | ActionKind::Resume => {
            let pause = a.action == ActionKind::Pause;
            let (event_id, changed) = set_pause(
                c,
                actor,
                pause,
                a.login,
                a.symbol.as_deref(),
                &a.reason,
                now,
            )?;
            Ok(ActionAck {
                event_id: EventId(event_id),
                changed,
                pauses: pauses(c)?,
                command: None,
                account: None,
                allocations: None,
            })
        }
        ActionKind::CloseHedge | ActionKind::RetryHedge => issue_command(c, actor, a, now),
        ActionKind::SetSymbolMap => {
            let map = a
                .symbol_map
                .as_ref()
                .ok_or_else(|| Refusal::invalid("symbol_map", "set_symbol_map needs symbol_map"))?;
            validate_symbol_map(map)?;
            set_override(c, actor, a, OverrideField::SymbolMap, Some(json(map)?), now)
        }
        ActionKind::SetHedgeRatio => {
            let ratio = a.hedge_ratio.ok_or_else(|| {
                Refusal::invalid("hedge_ratio", "set_hedge_ratio needs hedge_ratio")
            })?;
            if ratio.is_sign_negative() || ratio.is_zero() || ratio > Decimal::from(1000) {
                return Err(Refusal::invalid(
                    "hedge_ratio",
                    "hedge_ratio must be positive and at most 1000",
                )
                .into());
            }
            let text = ratio.normalize().to_string();
            set_override(c, actor, a, OverrideField::HedgeRatio, Some(text), now)
        }
        ActionKind::ClearOverride => {
            let field = a
                .field
                .ok_or_else(|| Refusal::invalid("field", "clear_override needs field"))?;
            set_override(c, actor, a, field, None, now)
        }
        ActionKind::SetAllocation => {
            let weights = a
                .weights
                .as_deref()
                .ok_or_else(|| Refusal::invalid("weights", "set_allocation needs weights"))?;
            set_allocation(c, actor, a, Some(weights), now)
        }
        ActionKind::ClearAllocation => set_allocation(c, actor, a, None, now),
    }
}

/// Refuses a field the action does not use rather than ignoring it: the operator meant something.
fn check_fields_used(a: &ActionRequest) -> Result<(), Refusal> {
    let (login, symbol, hedge, map, ratio, field) = match a.action {
        ActionKind::Pause | ActionKind::Resume => (true, true, false, false, false, false),
        ActionKind::CloseHedge | ActionKind::RetryHedge => {
            (false, false, true, false, false, false)
        }
        ActionKind::SetSymbolMap => (true, false, false, true, false, false),
        ActionKind::SetHedgeRatio => (true, false, false, false, true, false),
        ActionKind::ClearOverride => (true, false, false, false, false, true),
        ActionKind::SetAllocation | ActionKind::ClearAllocation => {
            (true, true, false, false, false, false)
        }
    };
    let unused = |name: &str, present: bool| -> Result<(), Refusal> {
        if present {
            Err(Refusal::invalid(
                name,
                format!("{name} is not used by {}", a.action.as_str()),
            ))
        } else {
            Ok(())
        }
    };
    unused(
        "weights",
        a.action != ActionKind::SetAllocation && a.weights.is_some(),
    )?;
    unused("login", !login && a.login.is_some())?;
    unused("symbol", !symbol && a.symbol.is_some())?;
    unused("hedge_id", !hedge && a.hedge_id.is_some())?;
    unused("symbol_map", !map && a.symbol_map.is_some())?;
    unused("hedge_ratio", !ratio && a.hedge_ratio.is_some())?;
    unused("field", !field && a.field.is_some())
}

/// Pauses (close-only) or resumes a scope; returns the event id (0 when nothing changed) and
/// whether anything changed.
pub(super) fn set_pause(
    c: &mut dyn Conn,
    actor: &str,
    pause: bool,
    login: Option<Login>,
    symbol: Option<&str>,
    why: &str,
    now: i64,
) -> Result<(u64, bool), WriteError> {
    let scope = format!(
        "{}/{}",
        login.map_or("*".to_owned(), |l| l.to_string()),
        symbol.unwrap_or("*")
    );
    let exists = c
        .query_one(
            "SELECT event_id FROM pauses WHERE scope = ?",
            &[Val::text(&scope)],
        )?
        .is_some();
    let changed = if pause { !exists } else { exists };
    if !changed {
        return Ok((0, false));
    }
    let what = format!(
        "{}{}",
        login.map_or("all accounts".to_owned(), |l| format!("account {l}")),
        symbol.map_or(String::new(), |s| format!(", {s}"))
    );
    let reason = if pause {
        format!("{actor} paused hedging (close-only) for {what}")
    } else {
        format!("{actor} resumed hedging for {what}")
    } + &if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    };
    let mut data = ActionRequest::new(if pause {
        ActionKind::Pause
    } else {
        ActionKind::Resume
    });
    data.login = login;
    data.symbol = symbol.map(str::to_owned);
    data.reason = why.to_owned();
    let event_id = insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: if pause {
                EventKind::Paused
            } else {
                EventKind::Resumed
            },
            login,
            symbol,
            actor,
            reason: &reason,
            data: json(&data)?,
        },
    )?;
    if pause {
        c.execute(
            "INSERT INTO pauses (scope, login, symbol, actor, reason, since_ms, event_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            &[
                Val::text(&scope),
                Val::opt_int(login.map(|l| l.0 as i64)),
                Val::opt_text(symbol.map(str::to_owned)),
                Val::text(actor),
                Val::text(why),
                Val::Int(now),
                Val::Int(event_id as i64),
            ],
        )?;
    } else {
        c.execute("DELETE FROM pauses WHERE scope = ?", &[Val::text(&scope)])?;
    }
    Ok((event_id, true))
}
