//! Operator commands for the hedger: issued by actions, listed and answered by the hedger.

use super::*;

columns! {
    /// An operator command.
    pub(super) CommandCol {
        id, hedge_login, kind, hedge_id, symbol, account_symbol, plan_item_id, volume_units, status,
        actor, reason, result_retcode, result_message, created_ms, updated_ms,
    }
}

pub(super) fn command_from_row(r: &Row) -> Result<Command, StoreError> {
    Ok(Command {
        id: CommandId(r.u64(CommandCol::id)?),
        hedge_login: Login(r.u64(CommandCol::hedge_login)?),
        kind: CommandKind::parse(r.text(CommandCol::kind)?)
            .ok_or_else(|| StoreError::Corrupt("bad command kind".into()))?,
        hedge_id: HedgeId(r.u64(CommandCol::hedge_id)?),
        symbol: r.text(CommandCol::symbol)?.to_owned(),
        account_symbol: r.text(CommandCol::account_symbol)?.to_owned(),
        plan_item: r
            .opt_int(CommandCol::plan_item_id)?
            .map(|v| PlanItemId(v as u64)),
        volume: size_column(r.int(CommandCol::volume_units)?)?,
        status: CommandStatus::parse(r.text(CommandCol::status)?)
            .ok_or_else(|| StoreError::Corrupt("bad command status".into()))?,
        actor: r.text(CommandCol::actor)?.to_owned(),
        reason: r.text(CommandCol::reason)?.to_owned(),
        result_retcode: r
            .opt_int(CommandCol::result_retcode)?
            .map(|v| Retcode(v as u32)),
        result_message: r.opt_text(CommandCol::result_message)?.map(str::to_owned),
        created_ms: r.int(CommandCol::created_ms)?,
        updated_ms: r.int(CommandCol::updated_ms)?,
    })
}

pub fn command_by_id(c: &mut dyn Conn, id: CommandId) -> Result<Option<Command>, StoreError> {
    row_by_id(c, "commands", CommandCol::LIST, id.get(), command_from_row)
}

pub fn commands(c: &mut dyn Conn, q: &CommandQuery) -> Result<Page<Command>, StoreError> {
    let mut sql = format!("SELECT {} FROM commands WHERE id > ?", CommandCol::LIST);
    let mut params = vec![Val::Int(q.after.unwrap_or(0).min(i64::MAX as u64) as i64)];
    if let Some(login) = q.login {
        sql.push_str(" AND hedge_login = ?");
        params.push(Val::Int(login.0.min(i64::MAX as u64) as i64));
    }
    if let Some(status) = q.status {
        sql.push_str(" AND status = ?");
        params.push(Val::text(status.as_str()));
    }
    let limit = clamp_limit(q.limit);
    sql.push_str(" ORDER BY id LIMIT ?");
    params.push(Val::Int(limit + 1));
    let rows = c.query(&sql, &params)?;
    page(rows, limit, CommandCol::id, command_from_row)
}

/// Refuses a command the hedge's state makes meaningless: closing a closed or failed hedge, retrying
/// one that did not fail.
fn check_command_fits(kind: CommandKind, hedge: &Hedge) -> Result<(), Refusal> {
    let hedge_id = hedge.id;
    match (kind, hedge.status) {
        (CommandKind::CloseHedge, HedgeStatus::Closed) => Err(Refusal::Conflict(format!(
            "hedge {hedge_id} is already closed"
        ))),
        (CommandKind::CloseHedge, HedgeStatus::Failed) => Err(Refusal::Conflict(format!(
            "hedge {hedge_id} failed, nothing of it is open to close (retry it instead)"
        ))),
        (CommandKind::RetryHedge, status) if status != HedgeStatus::Failed => {
            Err(Refusal::Conflict(format!(
                "hedge {hedge_id} is {}, only a failed hedge can be retried",
                status.as_str()
            )))
        }
        _ => Ok(()),
    }
}

/// The pending command of `kind` for hedge `hedge_id`, if one is waiting.
fn pending_command(
    c: &mut dyn Conn,
    hedge_id: HedgeId,
    kind: CommandKind,
) -> Result<Option<Command>, StoreError> {
    let sql = format!(
        "SELECT {} FROM commands WHERE hedge_id = ? AND kind = ? AND status = 'pending' ORDER BY id LIMIT 1",
        CommandCol::LIST
    );
    c.query_one(
        &sql,
        &[Val::Int(hedge_id.get() as i64), Val::text(kind.as_str())],
    )?
    .map(|row| command_from_row(&row))
    .transpose()
}

/// Stores a new pending command of `kind` for `hedge`, of `volume`, and reads it back.
fn insert_command(
    c: &mut dyn Conn,
    actor: &str,
    reason: &str,
    hedge: &Hedge,
    kind: CommandKind,
    volume: Volume,
    now: i64,
) -> Result<Command, WriteError> {
    let row = c
        .query_one(
            &format!(
                "INSERT INTO commands ({}) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, NULL, NULL, ?, ?) RETURNING id",
                CommandCol::LIST.trim_start_matches("id, ")
            ),
            &[
                Val::Int(hedge.hedge_login.0 as i64),
                Val::text(kind.as_str()),
                Val::Int(hedge.id.get() as i64),
                Val::text(&hedge.symbol),
                Val::text(&hedge.account_symbol),
                Val::Int(to_i64(hedge.plan_item_id.get(), "plan_item_id")?),
                Val::Int(lots(volume, "volume")?.units()),
                Val::text(actor),
                Val::text(reason),
                Val::Int(now),
                Val::Int(now),
            ],
        )?
        .ok_or_else(|| StoreError::Corrupt("command insert returned no id".into()))?;
    Ok(command_by_id(c, CommandId(row.u64(Single::value)?))?
        .ok_or_else(|| StoreError::Corrupt("command vanished".into()))?)
}

pub(super) fn issue_command(
    c: &mut dyn Conn,
    actor: &str,
    a: &ActionRequest,
    now: i64,
) -> Result<ActionAck, WriteError> {
    let kind = match a.action {
        ActionKind::CloseHedge => CommandKind::CloseHedge,
        _ => CommandKind::RetryHedge,
    };
    let hedge_id = a.hedge_id.ok_or_else(|| {
        Refusal::invalid("hedge_id", format!("{} needs hedge_id", a.action.as_str()))
    })?;
    let Some(hedge) = hedge_by_id(c, hedge_id)? else {
        return Err(Refusal::NotFound(format!("hedge {hedge_id} does not exist")).into());
    };
    check_command_fits(kind, &hedge)?;
    // A second click while the first command is still pending gets that command back, so the
    // hedger never receives the same order twice.
    if let Some(command) = pending_command(c, hedge_id, kind)? {
        return Ok(ActionAck {
            event_id: EventId(0),
            changed: false,
            pauses: pauses(c)?,
            command: Some(command),
            account: None,
            allocations: None,
        });
    }
    let volume = match kind {
        CommandKind::CloseHedge => hedge.open_volume,
        CommandKind::RetryHedge => hedge.volume,
    };
    let command = insert_command(c, actor, &a.reason, &hedge, kind, volume, now)?;
    let asked = format!(
        "{actor} asked to {} hedge {hedge_id} ({} {} {} on {}), command {}",
        match kind {
            CommandKind::CloseHedge => "close",
            CommandKind::RetryHedge => "retry",
        },
        hedge.side,
        volume.normalize(),
        hedge.symbol,
        hedge.hedge_login,
        command.id
    );
    let reason = with_operator_reason(asked, &a.reason);
    let event_id = insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: EventKind::CommandIssued,
            login: Some(hedge.hedge_login),
            symbol: Some(&hedge.symbol),
            actor,
            reason: &reason,
            data: json(&command)?,
        },
    )?;
    if kind == CommandKind::CloseHedge {
        // Close-only on that symbol, or mirror mode would open the hedge again right away.
        let why = format!("close of hedge {hedge_id} (command {})", command.id);
        set_pause(
            c,
            actor,
            true,
            Some(hedge.hedge_login),
            Some(&hedge.symbol),
            &why,
            now,
        )?;
    }
    Ok(ActionAck {
        event_id: EventId(event_id),
        changed: true,
        pauses: pauses(c)?,
        command: Some(command),
        account: None,
        allocations: None,
    })
}

/// Records what the hedger did with a command; returns the command and whether this is a repeat of
/// the result already stored.
pub fn command_result(
    c: &mut dyn Conn,
    actor: &str,
    id: CommandId,
    r: &CommandResult,
    now: i64,
) -> Result<(Command, bool), WriteError> {
    if r.status == CommandStatus::Pending {
        return Err(Refusal::invalid("status", "a result is done or failed").into());
    }
    if r.message.as_ref().is_some_and(|m| m.len() > 2048) {
        return Err(Refusal::invalid("message", "message is too long").into());
    }
    let Some(command) = command_by_id(c, id)? else {
        return Err(Refusal::NotFound(format!("command {id} does not exist")).into());
    };
    if command.status != CommandStatus::Pending {
        if command.status == r.status
            && command.result_retcode == r.retcode
            && command.result_message == r.message
        {
            return Ok((command, true));
        }
        return Err(Refusal::Conflict(format!(
            "command {id} already has the result {}",
            command.status.as_str()
        ))
        .into());
    }
    c.execute(
        "UPDATE commands SET status = ?, result_retcode = ?, result_message = ?, updated_ms = ? WHERE id = ?",
        &[
            Val::text(r.status.as_str()),
            Val::opt_int(r.retcode.map(|v| i64::from(v.0))),
            Val::opt_text(r.message.clone()),
            Val::Int(now),
            Val::Int(id.get() as i64),
        ],
    )?;
    let stored =
        command_by_id(c, id)?.ok_or_else(|| StoreError::Corrupt("command vanished".into()))?;
    let reason = format!(
        "command {id} ({} hedge {}) {}{}{}",
        command.kind.as_str().replace('_', " "),
        command.hedge_id,
        r.status.as_str(),
        r.retcode
            .map_or(String::new(), |v| format!(", retcode {}", v.0)),
        r.message
            .as_deref()
            .filter(|m| !m.is_empty())
            .map_or(String::new(), |m| format!(": {m}"))
    );
    insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: if r.status == CommandStatus::Done {
                EventKind::CommandDone
            } else {
                EventKind::CommandFailed
            },
            login: Some(command.hedge_login),
            symbol: Some(&command.symbol),
            actor,
            reason: &reason,
            data: json(&stored)?,
        },
    )?;
    Ok((stored, false))
}
