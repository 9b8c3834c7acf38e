//! The legacy center's book of net volumes per symbol.

use super::*;

/// What a legacy write did: stored now, or answered again under its `Idempotency-Key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyOutcome {
    Stored(u64),
    Replayed,
}

/// Stores a position in the legacy center's form. With `key`, the write is kept under it in the same table
/// and transaction as the agents' keys (prefixed, so the two never meet): the same position sent
/// again under the key, even after a restart, is answered without a second write, and another
/// position under it is a conflict.
pub fn legacy_report(
    c: &mut dyn Conn,
    actor: &str,
    symbol: &str,
    side: Side,
    volume: Volume,
    key: Option<&str>,
    now: i64,
) -> Result<LegacyOutcome, WriteError> {
    let keyed = key.map(|k| {
        (
            format!("legacy:{k}"),
            format!("{symbol}:{}:{}", side.code(), volume.normalize()),
        )
    });
    if let Some((key, payload)) = &keyed {
        if first_answer(c, REQUEST_ANSWER, key, payload, "legacy position")?.is_some() {
            return Ok(LegacyOutcome::Replayed);
        }
    }
    let signed = lots(volume, "volume")?.signed(side);
    check_total(
        c,
        "SELECT net_units FROM legacy_book WHERE symbol = ?",
        &[Val::text(symbol)],
        signed,
        "volume",
        &format!("the net volume of {symbol}"),
    )?;
    let reason = format!("legacy new_position {side} {} {symbol}", volume.normalize());
    let event_id = insert_event(
        c,
        NewEvent {
            time_ms: now,
            kind: EventKind::LegacyPosition,
            login: None,
            symbol: Some(symbol),
            actor,
            reason: &reason,
            data: serde_json::json!({"symbol": symbol, "side": side.code(), "volume": volume})
                .to_string(),
        },
    )?;
    c.send(
        "INSERT INTO legacy_book (symbol, first_seen, net_units) VALUES (?, ?, ?)
         ON CONFLICT (symbol) DO UPDATE SET net_units = legacy_book.net_units + excluded.net_units",
        &[
            Val::text(symbol),
            Val::Int(event_id as i64),
            Val::Int(signed.units()),
        ],
    )?;
    if let Some((key, payload)) = keyed {
        remember_answer(c, &key, payload, "stored", event_id)?;
    }
    Ok(LegacyOutcome::Stored(event_id))
}

columns! {
    /// A symbol's net volume in the legacy center's book.
    pub(super) LegacyCol { symbol, net_units }
}

pub fn legacy_book(c: &mut dyn Conn) -> Result<Vec<(String, i64)>, StoreError> {
    c.query(
        &format!(
            "SELECT {} FROM legacy_book WHERE net_units <> 0 ORDER BY first_seen",
            LegacyCol::LIST
        ),
        &[],
    )?
    .iter()
    .map(|r| {
        Ok((
            r.text(LegacyCol::symbol)?.to_owned(),
            r.int(LegacyCol::net_units)?,
        ))
    })
    .collect()
}
