//! Translation between canonical symbol names (`EURUSD`) and one account's names.
//!
//! Brokers decorate symbols: a suffix (`EURUSD.r`, `EURUSD-ECN`), a prefix (`mEURUSD`), or an unrelated
//! name (`GOLD` for `XAUUSD`). The center thinks in canonical names only; each account carries a map.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SymbolMapError {
    #[error("symbol map entry {0:?} is not of the form ACCOUNT_NAME=CANONICAL_NAME")]
    BadEntry(String),
    #[error("symbol name must not be empty")]
    Empty,
    #[error("canonical symbol {canonical} is mapped twice ({first} and {second})")]
    Duplicate {
        canonical: String,
        first: String,
        second: String,
    },
}

/// One account's naming rule. Explicit entries win over the prefix/suffix rule, in both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolMap {
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub suffix: String,
    /// Account name → canonical name (`GOLD` → `XAUUSD`).
    #[serde(default)]
    pub explicit: BTreeMap<String, String>,
}

impl SymbolMap {
    /// The identity map: account names are canonical names.
    pub fn identity() -> Self {
        Self::default()
    }

    /// From the agents' `<prefix>` argument: `*` marks where the canonical name goes (`m*` is a
    /// prefix, `*.r` a suffix, `m*.r` both); without `*` the text is a suffix, the common case
    /// (`.r`, `-ECN`, `micro`). An empty text, `-` or `none` means no decoration.
    pub fn from_affix(affix: &str) -> Self {
        let affix = affix.trim();
        if affix.is_empty() || affix == "-" || affix.eq_ignore_ascii_case("none") {
            return Self::identity();
        }
        match affix.split_once('*') {
            Some((prefix, suffix)) => SymbolMap {
                prefix: prefix.to_owned(),
                suffix: suffix.to_owned(),
                explicit: BTreeMap::new(),
            },
            None => SymbolMap {
                suffix: affix.to_owned(),
                ..Self::default()
            },
        }
    }

    /// Adds explicit entries written as `ACCOUNT=CANONICAL`, separated by commas or whitespace
    /// (`GOLD=XAUUSD, SILVER=XAGUSD`).
    pub fn with_explicit(mut self, entries: &str) -> Result<Self, SymbolMapError> {
        for entry in entries
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let (account, canonical) = entry
                .split_once('=')
                .ok_or_else(|| SymbolMapError::BadEntry(entry.to_owned()))?;
            let (account, canonical) = (account.trim(), canonical.trim());
            if account.is_empty() || canonical.is_empty() {
                return Err(SymbolMapError::BadEntry(entry.to_owned()));
            }
            if let Some((first, _)) = self.explicit.iter().find(|(_, c)| c.as_str() == canonical) {
                if first != account {
                    return Err(SymbolMapError::Duplicate {
                        canonical: canonical.to_owned(),
                        first: first.clone(),
                        second: account.to_owned(),
                    });
                }
            }
            self.explicit
                .insert(account.to_owned(), canonical.to_owned());
        }
        Ok(self)
    }

    /// The account's name for a canonical symbol.
    pub fn to_account(&self, canonical: &str) -> String {
        if let Some((account, _)) = self.explicit.iter().find(|(_, c)| c.as_str() == canonical) {
            return account.clone();
        }
        let mut name =
            String::with_capacity(self.prefix.len() + canonical.len() + self.suffix.len());
        name.push_str(&self.prefix);
        name.push_str(canonical);
        name.push_str(&self.suffix);
        name
    }

    /// The canonical name of an account symbol, or `None` if the name does not follow this account's
    /// rule (a symbol the map does not cover).
    pub fn to_canonical(&self, account: &str) -> Option<String> {
        if account.is_empty() {
            return None;
        }
        if let Some(canonical) = self.explicit.get(account) {
            return Some(canonical.clone());
        }
        let core = account
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        if core.is_empty() {
            None
        } else {
            Some(core.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_prefix_and_explicit_names() {
        let suffix = SymbolMap::from_affix(".r");
        assert_eq!(suffix.to_account("EURUSD"), "EURUSD.r");
        assert_eq!(suffix.to_canonical("EURUSD.r").as_deref(), Some("EURUSD"));
        assert_eq!(suffix.to_canonical("EURUSD"), None);

        let prefix = SymbolMap::from_affix("m*");
        assert_eq!(prefix.to_account("EURUSD"), "mEURUSD");
        assert_eq!(prefix.to_canonical("mEURUSD").as_deref(), Some("EURUSD"));

        let map = SymbolMap::from_affix("*.pro")
            .with_explicit("GOLD=XAUUSD")
            .unwrap();
        assert_eq!(map.to_account("XAUUSD"), "GOLD");
        assert_eq!(map.to_canonical("GOLD").as_deref(), Some("XAUUSD"));
        assert_eq!(map.to_account("GBPUSD"), "GBPUSD.pro");
        assert_eq!(map.to_canonical("GBPUSD.pro").as_deref(), Some("GBPUSD"));

        let id = SymbolMap::from_affix("");
        assert_eq!(id.to_account("EURUSD"), "EURUSD");
        assert_eq!(id.to_canonical("EURUSD").as_deref(), Some("EURUSD"));
        assert_eq!(id.to_canonical(""), None);
    }

    #[test]
    fn bad_explicit_entries_are_errors() {
        assert!(SymbolMap::identity().with_explicit("GOLD").is_err());
        assert!(SymbolMap::identity().with_explicit("=XAUUSD").is_err());
        assert!(SymbolMap::identity()
            .with_explicit("GOLD=XAUUSD,XAU=XAUUSD")
            .is_err());
        assert!(SymbolMap::identity()
            .with_explicit("GOLD=XAUUSD SILVER=XAGUSD")
            .is_ok());
    }

    proptest::proptest! {
        #[test]
        fn decoration_round_trips(canonical in "[A-Z]{6}", prefix in "[a-z]{0,2}", suffix in "(\\.[a-z]{1,3})?") {
            let map = SymbolMap { prefix, suffix, explicit: BTreeMap::new() };
            let account = map.to_account(&canonical);
            proptest::prop_assert_eq!(map.to_canonical(&account), Some(canonical));
        }
    }
}
