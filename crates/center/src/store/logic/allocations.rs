//! Allocations of client exposure to hedge accounts (operator actions and what the plan reads).

use super::*;

columns! {
    /// An allocation.
    pub(super) AllocationCol { client_login, symbol, weights, actor, reason, since_ms, event_id }
}

/// Most weights one allocation may name.
const MAX_WEIGHTS: usize = 64;

pub fn allocations(c: &mut dyn Conn) -> Result<Vec<Allocation>, StoreError> {
    c.query(
        &format!(
            "SELECT {} FROM allocations ORDER BY event_id",
            AllocationCol::LIST
        ),
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(Allocation {
            client_login: r
                .opt_int(AllocationCol::client_login)?
                .map(|l| Login(l as u64)),
            symbol: r.opt_text(AllocationCol::symbol)?.map(str::to_owned),
            weights: serde_json::from_str(r.text(AllocationCol::weights)?)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            actor: r.text(AllocationCol::actor)?.to_owned(),
            reason: r.text(AllocationCol::reason)?.to_owned(),
            since_ms: r.int(AllocationCol::since_ms)?,
            event_id: EventId(r.u64(AllocationCol::event_id)?),
        })
    })
    .collect()
}

/// Checks the weights of `set_allocation`: hedge accounts that are registered as such, each
/// once, each share in (0, 1], summing to exactly 1.
fn check_weights(c: &mut dyn Conn, weights: &[AllocationWeight]) -> Result<(), WriteError> {
    if weights.is_empty() {
        return Err(
            Refusal::invalid("weights", "weights must name at least one hedge account").into(),
        );
    }
    if weights.len() > MAX_WEIGHTS {
        return Err(Refusal::invalid(
            "weights",
            format!("weights may name at most {MAX_WEIGHTS} hedge accounts"),
        )
        .into());
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut sum = Decimal::ZERO;
    for w in weights {
        if !seen.insert(w.hedge_login) {
            return Err(Refusal::invalid(
                "weights",
                format!("hedge account {} is named twice", w.hedge_login),
            )
            .into());
        }
        if w.weight.is_sign_negative() || w.weight.is_zero() || w.weight > Decimal::ONE {
            return Err(Refusal::invalid(
                "weights",
                format!(
                    "the weight of hedge account {} must be above 0 and at most 1, got {}",
                    w.hedge_login,
                    w.weight.normalize()
                ),
            )
            .into());
        }
        sum += w.weight;
        match account(c, w.hedge_login)? {
            None => {
                return Err(Refusal::NotFound(format!(
                    "hedge account {} is not registered",
                    w.hedge_login
                ))
                .into())
            }
            Some(a) if a.registration.role != AccountRole::Hedge => {
                return Err(Refusal::Conflict(format!(
                    "account {} is registered as {}, not as a hedge account",
                    w.hedge_login,
                    a.registration.role.as_str()
                ))
                .into())
            }
            Some(_) => {}
        }
    }
    if sum != Decimal::ONE {
        return Err(Refusal::invalid(
            "weights",
            format!(
                "weights must sum to exactly 1, they sum to {}",
                sum.normalize()
            ),
        )
        .into());
    }
    Ok(())
}

/// Refuses an allocation of an account that is not a registered client account.
fn check_client(c: &mut dyn Conn, login: Login) -> Result<(), WriteError> {
    match account(c, login)? {
        None => Err(Refusal::NotFound(format!("client account {login} is not registered")).into()),
        Some(acc) if acc.registration.role != AccountRole::Client => {
            Err(Refusal::Conflict(format!(
                "account {login} is a {} account; allocations are of client accounts",
                acc.registration.role.as_str()
            ))
            .into())
        }
        Some(_) => Ok(()),
    }
}

/// The event reason of setting or clearing the allocation of `a`'s scope.
fn allocation_reason(
    actor: &str,
    a: &ActionRequest,
    weights: Option<&[AllocationWeight]>,
) -> String {
    let what = format!(
        "{}{}",
        a.login
            .map_or("every client".to_owned(), |l| format!("client {l}")),
        a.symbol
            .as_deref()
            .map_or(String::new(), |s| format!(", {s}"))
    );
    let done = match weights {
        Some(w) => format!(
            "{actor} allocated {what} to {}",
            w.iter()
                .map(|w| format!("{} ({})", w.hedge_login, w.weight.normalize()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => format!("{actor} removed the allocation of {what}"),
    };
    with_operator_reason(done, &a.reason)
}

/// Sets (`weights` Some) or clears the allocation of the scope `a.login`/`a.symbol`. Its event
/// names no account, so every hedger sees it (the accounts it moves exposure between change
/// their plans together).
pub(super) fn set_allocation(
    c: &mut dyn Conn,
    actor: &str,
    a: &ActionRequest,
    weights: Option<&[AllocationWeight]>,
    now: i64,
) -> Result<ActionAck, WriteError> {
    if let Some(login) = a.login {
        check_client(c, login)?;
    }
    if let Some(w) = weights {
        check_weights(c, w)?;
    }
    let scope = format!(
        "{}/{}",
        a.login.map_or("*".to_owned(), |l| l.to_string()),
        a.symbol.as_deref().unwrap_or("*")
    );
    let row = SettingRow {
        table: "allocations",
        keys: vec![("scope", Val::text(&scope))],
        value: "weights",
    };
    let current = row.stored(c)?;
    let text = weights.map(|w| json(&w)).transpose()?;
    let unchanged = match (&current, weights) {
        (None, None) => true,
        (Some(stored), Some(w)) => {
            serde_json::from_str::<Vec<AllocationWeight>>(stored)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?
                .as_slice()
                == w
        }
        _ => false,
    };
    if unchanged {
        return Ok(ActionAck {
            event_id: EventId(0),
            changed: false,
            pauses: pauses(c)?,
            command: None,
            account: None,
            allocations: Some(allocations(c)?),
        });
    }
    let reason = allocation_reason(actor, a, weights);
    let event_id = next_event_id(c)?;
    let stamp = SettingStamp {
        actor,
        reason: &a.reason,
        since_ms: now,
        event_id,
    };
    let scope_columns = vec![
        ("client_login", Val::opt_int(a.login.map(|l| l.0 as i64))),
        ("symbol", Val::opt_text(a.symbol.clone())),
    ];
    row.write(c, text.as_deref(), scope_columns, &stamp)?;
    write_event(
        c,
        event_id,
        NewEvent {
            time_ms: now,
            kind: if weights.is_some() {
                EventKind::AllocationSet
            } else {
                EventKind::AllocationCleared
            },
            login: None,
            symbol: a.symbol.as_deref(),
            actor,
            reason: &reason,
            data: json(a)?,
        },
    )?;
    Ok(ActionAck {
        event_id: EventId(event_id),
        changed: true,
        pauses: pauses(c)?,
        command: None,
        account: None,
        allocations: Some(allocations(c)?),
    })
}
