//! Operator overrides of an account's symbol map and hedge ratio.

use super::*;

pub(super) fn validate_symbol_map(map: &SymbolMap) -> Result<(), Refusal> {
    for (field, text) in [
        ("symbol_map.prefix", &map.prefix),
        ("symbol_map.suffix", &map.suffix),
    ] {
        if text.len() > 32 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Refusal::invalid(
                field,
                format!("{field} must be at most 32 characters without spaces"),
            ));
        }
    }
    if map.explicit.len() > 10_000 {
        return Err(Refusal::invalid(
            "symbol_map.explicit",
            "too many explicit entries",
        ));
    }
    let mut canonical = std::collections::BTreeMap::new();
    for (account, name) in &map.explicit {
        check_symbol(account, "symbol_map.explicit")?;
        check_symbol(name, "symbol_map.explicit")?;
        if let Some(first) = canonical.insert(name.as_str(), account.as_str()) {
            return Err(Refusal::invalid(
                "symbol_map.explicit",
                format!("canonical symbol {name} is mapped twice ({first} and {account})"),
            ));
        }
    }
    Ok(())
}

/// Sets (`value` = Some) or clears an override of account `a.login`.
pub(super) fn set_override(
    c: &mut dyn Conn,
    actor: &str,
    a: &ActionRequest,
    field: OverrideField,
    value: Option<String>,
    now: i64,
) -> Result<ActionAck, WriteError> {
    let login = a
        .login
        .ok_or_else(|| Refusal::invalid("login", format!("{} needs login", a.action.as_str())))?;
    let Some(before) = account(c, login)? else {
        return Err(Refusal::NotFound(format!("account {login} is not registered")).into());
    };
    if field == OverrideField::HedgeRatio
        && value.is_some()
        && before.registration.role != AccountRole::Client
    {
        return Err(Refusal::Conflict(format!(
            "account {login} is a {} account; a hedge ratio applies to client accounts",
            before.registration.role.as_str()
        ))
        .into());
    }
    let row = SettingRow {
        table: "account_overrides",
        keys: vec![
            ("login", Val::Int(login.0 as i64)),
            ("field", Val::text(field.as_str())),
        ],
        value: "value",
    };
    if row.stored(c)? == value {
        return Ok(ActionAck {
            event_id: EventId(0),
            changed: false,
            pauses: pauses(c)?,
            command: None,
            account: Some(before),
            allocations: None,
        });
    }
    let name = field.as_str().replace('_', " ");
    let what = match &value {
        Some(v) => format!("{actor} overrode the {name} of account {login} with {v}"),
        None => format!("{actor} removed the {name} override of account {login}"),
    };
    let reason = with_operator_reason(what, &a.reason);
    let event_id = next_event_id(c)?;
    let stamp = SettingStamp {
        actor,
        reason: &a.reason,
        since_ms: now,
        event_id,
    };
    row.write(c, value.as_deref(), Vec::new(), &stamp)?;
    let after =
        account(c, login)?.ok_or_else(|| StoreError::Corrupt("account vanished".to_owned()))?;
    write_event(
        c,
        event_id,
        NewEvent {
            time_ms: now,
            kind: if value.is_some() {
                EventKind::OverrideSet
            } else {
                EventKind::OverrideCleared
            },
            login: Some(login),
            symbol: None,
            actor,
            reason: &reason,
            data: json(&after)?,
        },
    )?;
    Ok(ActionAck {
        event_id: EventId(event_id),
        changed: true,
        pauses: pauses(c)?,
        command: None,
        account: Some(after),
        allocations: None,
    })
}
