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
    // The event's id is the first-seen order of a new symbol, so it is taken before the book is
    // written; the event itself follows, once the book took the volume.
    let event_id = next_event_id(c)?;
    if !add_to_book(c, symbol, event_id, signed)? {
        // Refused by the bound: read the total only now, to say why.
        check_total(
            c,
            "SELECT net_units FROM legacy_book WHERE symbol = ?",
            &[Val::text(symbol)],
            signed,
            "volume",
            &format!("the net volume of {symbol}"),
        )?;
        return Err(StoreError::Internal(format!(
            "the bounded update of the net volume of {symbol} changed no row"
        ))
        .into());
    }
    write_event(
        c,
        event_id,
        NewEvent {
            time_ms: now,
            kind: EventKind::LegacyPosition,
            login: None,
            symbol: Some(symbol),
            actor,
            reason: &format!("legacy new_position {side} {} {symbol}", volume.normalize()),
            data: json(&LegacyData {
                side: side.code(),
                symbol,
                volume,
            })?,
        },
    )?;
    if let Some((key, payload)) = keyed {
        remember_answer(c, &key, payload, "stored", event_id)?;
    }
    Ok(LegacyOutcome::Stored(event_id))
}

/// A legacy write's event data; fields in the order a JSON object of them is written.
#[derive(serde::Serialize)]
struct LegacyData<'a> {
    side: u8,
    symbol: &'a str,
    volume: Volume,
}

/// Adds `signed` to `symbol`'s net volume in one statement, a new symbol first seen at
/// `event_id`. The update is bounded in the statement itself, so no read comes first: it happens
/// only when the total stays within what [`total_within`] allows (an `i64` whose magnitude is an
/// `i64` too). Returns false, having changed nothing, when it would not.
fn add_to_book(
    c: &mut dyn Conn,
    symbol: &str,
    event_id: u64,
    signed: Exposure,
) -> Result<bool, StoreError> {
    let delta = i128::from(signed.units());
    // The totals the current one may be for `current + delta` to stay in (MIN, MAX].
    let low = (i128::from(i64::MIN) + 1 - delta).max(i128::from(i64::MIN));
    let high = (i128::from(i64::MAX) - delta).min(i128::from(i64::MAX));
    let bound = |v: i128| Val::Int(v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64);
    let written = c.execute(
        "INSERT INTO legacy_book (symbol, first_seen, net_units) VALUES (?, ?, ?)
         ON CONFLICT (symbol) DO UPDATE SET net_units = legacy_book.net_units + excluded.net_units
         WHERE legacy_book.net_units BETWEEN ? AND ?",
        &[
            Val::text(symbol),
            Val::Int(event_id as i64),
            Val::Int(signed.units()),
            bound(low),
            bound(high),
        ],
    )?;
    Ok(written == 1)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{sqlite, Synchronous};

    fn book_total(c: &mut dyn Conn, symbol: &str) -> Option<i64> {
        c.query_one(
            "SELECT net_units FROM legacy_book WHERE symbol = ?",
            &[Val::text(symbol)],
        )
        .unwrap()
        .map(|r| r.int(0usize).unwrap())
    }

    /// The bound in the statement lets a total reach `i64::MAX` and `-i64::MAX` and no further,
    /// as the read-then-check it replaces did, and a refused addition changes nothing.
    #[test]
    fn the_book_total_is_bounded_in_the_statement() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _) = sqlite::open(&dir.path().join("t.db"), 0, Synchronous::Normal).unwrap();
        let c = c.as_mut();
        migrate(c).unwrap();
        let lots = |units: i64| Exposure::from_units(units);
        assert!(add_to_book(c, "EURUSD", 1, lots(i64::MAX - 5)).unwrap());
        assert!(!add_to_book(c, "EURUSD", 2, lots(6)).unwrap());
        assert_eq!(book_total(c, "EURUSD"), Some(i64::MAX - 5));
        assert!(add_to_book(c, "EURUSD", 3, lots(5)).unwrap());
        assert_eq!(book_total(c, "EURUSD"), Some(i64::MAX));
        assert!(!add_to_book(c, "EURUSD", 4, lots(1)).unwrap());
        // Down from the top in one step, then to the lowest total whose magnitude has an i64.
        assert!(add_to_book(c, "EURUSD", 5, lots(-i64::MAX)).unwrap());
        assert!(add_to_book(c, "EURUSD", 6, lots(-i64::MAX)).unwrap());
        assert_eq!(book_total(c, "EURUSD"), Some(-i64::MAX));
        assert!(!add_to_book(c, "EURUSD", 7, lots(-1)).unwrap());
        assert_eq!(book_total(c, "EURUSD"), Some(-i64::MAX));
        // A new symbol is inserted whatever the bound, first seen at its event.
        assert!(add_to_book(c, "GBPUSD", 8, lots(-3)).unwrap());
        assert_eq!(book_total(c, "GBPUSD"), Some(-3));
        assert_eq!(legacy_book(c).unwrap()[1], ("GBPUSD".to_owned(), -3));
    }

    /// The event data is the object the legacy write always stored, byte for byte.
    #[test]
    fn the_event_data_keeps_its_form() {
        let volume = Volume(Decimal::new(125, 3));
        let data = json(&LegacyData {
            side: Side::Sell.code(),
            symbol: "EURUSD",
            volume,
        })
        .unwrap();
        let before =
            serde_json::json!({"symbol": "EURUSD", "side": Side::Sell.code(), "volume": volume})
                .to_string();
        assert_eq!(data, before);
    }
}
