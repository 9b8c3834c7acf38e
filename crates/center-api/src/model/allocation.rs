//! Allocations: which hedge accounts cover a client's exposure, and in what shares.

use super::*;

/// One hedge account's share of an allocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AllocationWeight {
    pub hedge_login: Login,
    /// Between 0 (exclusive) and 1; the weights of an allocation sum to exactly 1.
    #[serde(with = "decimal_number")]
    pub weight: Decimal,
}

/// An operator's allocation (`GET /v1/allocations`, set and cleared with `POST /v1/actions`).
///
/// The scope is a client account, a canonical symbol, both, or neither (every client and
/// symbol). For one client's symbol the most specific allocation wins: client and symbol, then
/// the client, then the client's registered `hedge_login`, then the symbol, then every client;
/// with none of these the only hedge account covers it, and with several hedge accounts the
/// client is not hedged (a `no_allocation` residual).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Allocation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_login: Option<Login>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub weights: Vec<AllocationWeight>,
    /// Name of the token that set it.
    pub actor: String,
    pub reason: String,
    pub since_ms: i64,
    pub event_id: EventId,
}

impl Allocation {
    /// How specific the scope is (higher wins): 3 client and symbol, 2 client, 1 symbol, 0 all.
    pub fn specificity(&self) -> u8 {
        match (self.client_login.is_some(), self.symbol.is_some()) {
            (true, true) => 3,
            (true, false) => 2,
            (false, true) => 1,
            (false, false) => 0,
        }
    }

    /// Whether the scope includes `symbol` of client `client`.
    pub fn covers(&self, client: Login, symbol: &str) -> bool {
        self.client_login.is_none_or(|c| c == client)
            && self.symbol.as_deref().is_none_or(|s| s == symbol)
    }

    /// The most specific allocation covering `symbol` of `client` whose specificity is at least
    /// `min` (see [`Allocation::specificity`]).
    pub fn most_specific<'a>(
        allocations: &'a [Allocation],
        client: Login,
        symbol: &str,
        min: u8,
    ) -> Option<&'a Allocation> {
        allocations
            .iter()
            .filter(|a| a.specificity() >= min && a.covers(client, symbol))
            .max_by_key(|a| a.specificity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(client: Option<u64>, symbol: Option<&str>) -> Allocation {
        Allocation {
            client_login: client.map(Login),
            symbol: symbol.map(str::to_owned),
            weights: vec![],
            actor: "ops".into(),
            reason: String::new(),
            since_ms: 0,
            event_id: EventId(1),
        }
    }

    #[test]
    fn the_most_specific_scope_wins() {
        let all = [
            alloc(None, None),
            alloc(None, Some("XAUUSD")),
            alloc(Some(7), None),
            alloc(Some(7), Some("XAUUSD")),
        ];
        let pick =
            |c, s, min| Allocation::most_specific(&all, Login(c), s, min).map(|a| a.specificity());
        assert_eq!(pick(7, "XAUUSD", 0), Some(3));
        assert_eq!(pick(7, "EURUSD", 0), Some(2));
        assert_eq!(pick(8, "XAUUSD", 0), Some(1));
        assert_eq!(pick(8, "EURUSD", 0), Some(0));
        assert_eq!(pick(8, "EURUSD", 2), None);
    }
}
