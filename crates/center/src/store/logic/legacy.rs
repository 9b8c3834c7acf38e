//! The prototype center's book of net volumes per symbol.

use super::*;

pub fn legacy_report(
    c: &mut dyn Conn,
    actor: &str,
    symbol: &str,
    side: Side,
    volume: Volume,
    now: i64,
) -> Result<u64, WriteError> {
    let units = volume_units(volume, "volume")?;
    let signed = units * i64::from(side.sign());
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
            Val::Int(signed),
        ],
    )?;
    Ok(event_id)
}

columns! {
    /// A symbol's net volume in the prototype's book.
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
