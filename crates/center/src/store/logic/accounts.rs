//! Accounts: registration and the operator overrides they are read with.

use super::*;

columns! {
    /// An account as read (its overrides come from [`OverrideCol`] rows).
    pub(super) AccountCol { registration, status, registered_ms, last_seen_ms }
}

columns! {
    /// One operator override.
    pub(super) OverrideCol { login, field, value }
}

pub(super) fn account_from_row(r: &Row) -> Result<Account, StoreError> {
    let registration: AccountRegistration = serde_json::from_str(r.text(AccountCol::registration)?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let status = r
        .opt_text(AccountCol::status)?
        .map(serde_json::from_str::<AccountStatus>)
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Account {
        registration,
        status,
        registered_ms: r.int(AccountCol::registered_ms)?,
        last_seen_ms: r.int(AccountCol::last_seen_ms)?,
        overrides: AccountOverrides::default(),
    })
}

/// Operator overrides per login (all accounts, or one).
pub(super) fn load_overrides(
    c: &mut dyn Conn,
    login: Option<Login>,
) -> Result<std::collections::BTreeMap<u64, AccountOverrides>, StoreError> {
    let rows = match login {
        Some(l) => c.query(
            &format!(
                "SELECT {} FROM account_overrides WHERE login = ?",
                OverrideCol::LIST
            ),
            &[Val::Int(l.0 as i64)],
        )?,
        None => c.query(
            &format!("SELECT {} FROM account_overrides", OverrideCol::LIST),
            &[],
        )?,
    };
    let mut out = std::collections::BTreeMap::<u64, AccountOverrides>::new();
    for r in rows {
        let entry = out.entry(r.u64(OverrideCol::login)?).or_default();
        let value = r.text(OverrideCol::value)?;
        match OverrideField::parse(r.text(OverrideCol::field)?) {
            Some(OverrideField::SymbolMap) => {
                entry.symbol_map = Some(
                    serde_json::from_str(value).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                )
            }
            Some(OverrideField::HedgeRatio) => {
                entry.hedge_ratio =
                    Some(Decimal::from_str(value).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            }
            None => return Err(StoreError::Corrupt("bad override field".into())),
        }
    }
    Ok(out)
}

pub fn account(c: &mut dyn Conn, login: Login) -> Result<Option<Account>, StoreError> {
    if login.0 > i64::MAX as u64 {
        return Ok(None);
    }
    let sql = format!("SELECT {} FROM accounts WHERE login = ?", AccountCol::LIST);
    let Some(mut account) = c
        .query_one(&sql, &[Val::Int(login.0 as i64)])?
        .map(|r| account_from_row(&r))
        .transpose()?
    else {
        return Ok(None);
    };
    if let Some(o) = load_overrides(c, Some(login))?.remove(&login.0) {
        account.overrides = o;
    }
    Ok(Some(account))
}

pub fn accounts(c: &mut dyn Conn) -> Result<Vec<Account>, StoreError> {
    let sql = format!("SELECT {} FROM accounts ORDER BY login", AccountCol::LIST);
    let rows = c.query(&sql, &[])?;
    let mut overrides = load_overrides(c, None)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut account = account_from_row(r)?;
        if let Some(o) = overrides.remove(&account.registration.login.0) {
            account.overrides = o;
        }
        out.push(account);
    }
    Ok(out)
}

pub(super) fn validate_registration(reg: &AccountRegistration) -> Result<(), Refusal> {
    if reg.login.0 == 0 || reg.login.0 > i64::MAX as u64 {
        return Err(Refusal::invalid(
            "login",
            "login must be a positive account number",
        ));
    }
    if reg.hedge_ratio.is_sign_negative() || reg.hedge_ratio.is_zero() {
        return Err(Refusal::invalid(
            "hedge_ratio",
            "hedge_ratio must be positive",
        ));
    }
    if reg.hedge_ratio > Decimal::from(1000) {
        return Err(Refusal::invalid(
            "hedge_ratio",
            "hedge_ratio must be at most 1000",
        ));
    }
    if reg.symbols.len() > 10_000 {
        return Err(Refusal::invalid("symbols", "too many symbols"));
    }
    for spec in &reg.symbols {
        check_symbol(&spec.name, "symbols.name")?;
        if !spec.volume_step.is_positive() {
            return Err(Refusal::invalid(
                "symbols.volume_step",
                format!("volume_step of {} must be positive", spec.name),
            ));
        }
        if spec.volume_min.is_negative() || spec.volume_max < spec.volume_min {
            return Err(Refusal::invalid(
                "symbols.volume_max",
                format!("volume_min/volume_max of {} are inconsistent", spec.name),
            ));
        }
    }
    for field in [&reg.server, &reg.company, &reg.currency] {
        if field.len() > 256 {
            return Err(Refusal::invalid("server", "text field too long"));
        }
    }
    Ok(())
}

pub fn register_account(
    c: &mut dyn Conn,
    actor: &str,
    reg: &AccountRegistration,
    now: i64,
) -> Result<Account, WriteError> {
    validate_registration(reg)?;
    let login = reg.login.0 as i64;
    let text = json(reg)?;
    let existing = account(c, reg.login)?;
    if let Some(known) = existing
        .as_ref()
        .filter(|a| reg.role == AccountRole::Tumbler && a.registration.role != reg.role)
    {
        // A tumbler on a copier's client account only watches it: turning the account into a
        // tumbler account would take the client out of the hedge plan. Decided here, inside the
        // write, so that it holds whichever agent registers first.
        return Ok(known.clone());
    }
    let changed = existing.as_ref().is_none_or(|a| a.registration != *reg);
    let registered_ms = existing.as_ref().map_or(now, |a| a.registered_ms);
    c.execute(
        "INSERT INTO accounts (login, role, hedge_ratio, hedge_login, registration, status, registered_ms, last_seen_ms)
         VALUES (?, ?, ?, ?, ?, NULL, ?, ?)
         ON CONFLICT (login) DO UPDATE SET role = excluded.role, hedge_ratio = excluded.hedge_ratio,
           hedge_login = excluded.hedge_login, registration = excluded.registration, last_seen_ms = excluded.last_seen_ms",
        &[
            Val::Int(login),
            Val::text(reg.role.as_str()),
            Val::Text(reg.hedge_ratio.normalize().to_string()),
            Val::opt_int(reg.hedge_login.map(|l| l.0 as i64)),
            Val::Text(text),
            Val::Int(registered_ms),
            Val::Int(now),
        ],
    )?;
    let stored = account(c, reg.login)?
        .ok_or_else(|| StoreError::Corrupt("account vanished after upsert".into()))?;
    if changed {
        let reason = if existing.is_some() {
            format!(
                "account {} updated its registration ({})",
                reg.login,
                reg.role.as_str()
            )
        } else {
            format!("account {} registered as {}", reg.login, reg.role.as_str())
        };
        insert_event(
            c,
            NewEvent {
                time_ms: now,
                kind: EventKind::AccountRegistered,
                login: Some(reg.login),
                symbol: None,
                actor,
                reason: &reason,
                data: json(&stored)?,
            },
        )?;
    }
    Ok(stored)
}
