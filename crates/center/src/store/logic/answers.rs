//! Idempotent answers: the first answer under a key, given again to the same request, and tumbler
//! firings, stored once per key.

use super::*;

/// The answers under the keys of the agents' requests (reports, tumbler firings).
pub(super) const REQUEST_ANSWER: &str = "idempotency";
/// The answers under the keys of the operators' actions.
pub(super) const ACTION_ANSWER: &str = "action_keys";

columns! {
    /// A stored answer and the request it answered.
    pub(super) AnswerCol { payload, response }
}

/// The answer stored under `key` in `table` ([`REQUEST_ANSWER`] or [`ACTION_ANSWER`]), if
/// the key was used before: the same `payload` gets it again, another payload is a conflict
/// (`what` names the kind of request in the refusal).
pub(super) fn first_answer(
    c: &mut dyn Conn,
    table: &str,
    key: &str,
    payload: &str,
    what: &str,
) -> Result<Option<String>, WriteError> {
    let Some(row) = c.query_one(
        &format!("SELECT {} FROM {table} WHERE key = ?", AnswerCol::LIST),
        &[Val::text(key)],
    )?
    else {
        return Ok(None);
    };
    if row.text(AnswerCol::payload)? != payload {
        return Err(Refusal::Conflict(format!(
            "idempotency key {key:?} was already used for a different {what}"
        ))
        .into());
    }
    Ok(Some(row.text(AnswerCol::response)?.to_owned()))
}

/// Keeps `response` under `key`, in the same transaction as the change it answers.
pub(super) fn remember_answer(
    c: &mut dyn Conn,
    key: &str,
    payload: String,
    response: &str,
    event_id: u64,
) -> Result<(), StoreError> {
    c.send(
        "INSERT INTO idempotency (key, payload, response, event_id) VALUES (?, ?, ?, ?)",
        &[
            Val::text(key),
            Val::Text(payload),
            Val::text(response),
            Val::Int(event_id as i64),
        ],
    )
}

/// Records a tumbler firing as an event, once per idempotency key.
pub fn tumbler_fired(
    c: &mut dyn Conn,
    actor: &str,
    firing: &TumblerFiring,
    now: i64,
) -> Result<(String, bool), WriteError> {
    validate_firing(firing)?;
    let payload = json(firing)?;
    if let Some(answer) = first_answer(
        c,
        REQUEST_ANSWER,
        firing.idempotency_key.as_str(),
        &payload,
        "request",
    )? {
        return Ok((answer, true));
    }
    let event_id = insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: EventKind::TumblerFired,
            login: Some(firing.login),
            symbol: Some(&firing.symbol),
            actor,
            reason: &firing.describe(),
            data: payload.clone(),
        },
    )?;
    let response = json(&FiringAck {
        event_id: EventId(event_id),
        idempotency_key: firing.idempotency_key.clone(),
    })?;
    remember_answer(
        c,
        firing.idempotency_key.as_str(),
        payload,
        &response,
        event_id,
    )?;
    Ok((response, false))
}

/// A firing's fields within what the store and the dashboard can hold.
pub(super) fn validate_firing(f: &TumblerFiring) -> Result<(), Refusal> {
    /// More than any terminal and copier set runs; bounds the event's size.
    const MAX_KILLED: usize = 64;
    check_symbol(&f.symbol, "symbol")?;
    positions::check_position_ref(f.login, f.position_id)?;
    if !f.volume.is_positive() {
        return Err(Refusal::invalid("volume", "volume must be positive"));
    }
    if f.time_ms < 0 {
        return Err(Refusal::invalid("time_ms", "time_ms must not be negative"));
    }
    positions::check_key(f.idempotency_key.as_str())?;
    if f.killed.len() > MAX_KILLED
        || f.killed
            .iter()
            .any(|k| k.len() > positions::MAX_COMMENT_LEN)
    {
        return Err(Refusal::invalid(
            "killed",
            "killed lists too many processes or too long a name",
        ));
    }
    Ok(())
}
