//! The center's own ids, one type each, so a hedge id is never taken for a plan item's or an
//! event's. On the wire each is the bare number it wraps.

use hedge_domain::typed_id;

typed_id!(
    /// An event-log entry (`GET /v1/events`, the SSE `id:`); strictly increasing, never reused.
    EventId
);
typed_id!(
    /// A hedge the center recorded (`/v1/hedges/{id}`).
    HedgeId
);
typed_id!(
    /// An item of a hedge account's plan; stable while its symbol's exposure and hedges do not
    /// change. Hedge orders carry it (magic, comment, command id) to find after a crash what was
    /// done.
    PlanItemId
);
typed_id!(
    /// An operator command for a hedger (`/v1/commands/{id}`).
    CommandId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_travel_as_bare_numbers() {
        assert_eq!(serde_json::to_string(&HedgeId(7)).unwrap(), "7");
        let id: EventId = serde_json::from_str("42").unwrap();
        assert_eq!(id, EventId(42));
        assert_eq!("13".parse::<PlanItemId>().unwrap(), PlanItemId(13));
        assert_eq!(CommandId(5).to_string(), "5");
    }
}
