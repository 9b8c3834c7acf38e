//! Translation between canonical symbol names (`EURUSD`) and one account's names.
//!
//! Brokers decorate symbols: a suffix (`EURUSD.r`, `EURUSD-ECN`), a prefix (`mEURUSD`), or an unrelated
//! name (`GOLD` for `XAUUSD`). The center thinks in canonical names only; each account carries a map.
//!
//! Entry points: [`SymbolMap::to_account`]/[`SymbolMap::to_canonical`] apply the configured rule
//! alone; [`SymbolMap::canonical_of`] also knows the common cross-broker names ([`ALIASES`]) and
//! decorations ([`SUFFIXES`], [`PREFIXES`]); [`SymbolMap::account_name_in`] finds a canonical
//! symbol among an account's own names and [`SymbolMap::resolve`] maps a whole symbol list.
//! Invariants: the operator's explicit entries always win; a canonical symbol that two of the
//! account's names could stand for is [`AccountName::Ambiguous`] with every candidate, never a
//! pick.

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

/// Names of one instrument at different brokers; the first is the canonical name.
pub const ALIASES: &[&[&str]] = &[
    &["XAUUSD", "GOLD"],
    &["XAGUSD", "SILVER"],
    &["US30", "DJ30", "WS30", "DJI"],
    &["NAS100", "USTEC", "NDX"],
    &["SPX500", "US500"],
    &["UK100", "FTSE100"],
    &["GER40", "DE40", "DAX40"],
    &["USOIL", "WTI", "XTIUSD"],
    &["BTCUSD", "BITCOIN"],
];

/// Decorations brokers append to a symbol's name, longest first so `.pro` is not read as `.`.
pub const SUFFIXES: &[&str] = &[".pro", ".r", "_i", ".", "m", "#"];

/// Decorations brokers put before a symbol's name.
pub const PREFIXES: &[&str] = &["#", ".", "m"];

/// The canonical name of a well-known instrument name (`Gold` → `XAUUSD`), case-insensitively.
pub fn alias_canonical(name: &str) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|group| group.iter().any(|a| a.eq_ignore_ascii_case(name)))
        .map(|group| group[0])
}

/// A name's core once one known prefix and/or suffix is taken off. Decorations are matched
/// case-sensitively and the core must be upper-case letters and digits: `IBM` keeps its `M`,
/// `EURUSDm` loses its `m`.
fn undecorated(name: &str) -> Option<&str> {
    let well_formed = |core: &str| {
        !core.is_empty()
            && core
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    };
    for with_suffix in
        std::iter::once(name).chain(SUFFIXES.iter().filter_map(|s| name.strip_suffix(s)))
    {
        let stripped = PREFIXES.iter().filter_map(|p| with_suffix.strip_prefix(p));
        for core in std::iter::once(with_suffix).chain(stripped) {
            if core != name && well_formed(core) {
                return Some(core);
            }
        }
    }
    None
}

/// Where a canonical symbol is among an account's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountName {
    /// The account's name for it.
    Name(String),
    /// Several of the account's names could be it; the operator's explicit map must say which.
    Ambiguous(Vec<String>),
}

/// A canonical symbol that several of an account's names stand for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ambiguity {
    pub canonical: String,
    pub candidates: Vec<String>,
}

/// An account's symbol list read through its map: every name that stands for exactly one
/// canonical symbol, and the canonical symbols more than one name could be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// The map with an explicit entry for every name that was found by alias or decoration.
    pub map: SymbolMap,
    pub ambiguous: Vec<Ambiguity>,
    /// Each ambiguous name and the canonical symbol it could be.
    contested: BTreeMap<String, String>,
}

impl Resolution {
    /// The canonical name an agent reports a position on account symbol `account` under, in
    /// agreement with [`SymbolMap::account_name_in`] over the same list: the name's canonical
    /// symbol when it is that symbol's name on the account; a name of an ambiguous symbol is
    /// reported under that symbol (the center, which has the list, shows it as ambiguous rather
    /// than converting it with another name's contract size); any other name under itself.
    pub fn canonical_of(&self, account: &str) -> String {
        if let Some(canonical) = self.contested.get(account) {
            return canonical.clone();
        }
        self.map
            .to_canonical(account)
            .unwrap_or_else(|| account.to_owned())
    }
}

impl SymbolMap {
    /// The canonical name of an account symbol, knowing the common aliases and decorations: the
    /// explicit entry; else the configured rule's name (or the name itself when the rule does not
    /// fit), as the canonical name of its alias group when it has one; else the name without a
    /// known decoration, again through the aliases. `None` only for an empty name.
    pub fn canonical_of(&self, account: &str) -> Option<String> {
        if account.is_empty() {
            return None;
        }
        if let Some(canonical) = self.explicit.get(account) {
            return Some(canonical.clone());
        }
        let ruled = self.to_canonical(account);
        let base = ruled.as_deref().unwrap_or(account);
        if let Some(alias) = alias_canonical(base) {
            return Some(alias.to_owned());
        }
        let decorated_by_rule =
            ruled.is_some() && (!self.prefix.is_empty() || !self.suffix.is_empty());
        if !decorated_by_rule {
            if let Some(core) = undecorated(base) {
                return Some(alias_canonical(core).unwrap_or(core).to_owned());
            }
        }
        Some(base.to_owned())
    }

    /// The account's name for `canonical` among its `names`: the explicit entry; else the
    /// configured rule's name when the account has it; else the one name that stands for it by
    /// alias or decoration ([`SymbolMap::canonical_of`]); several such names are ambiguous. With
    /// no match (or no names at all) the rule's name, as [`SymbolMap::to_account`] gives it.
    pub fn account_name_in<'a>(
        &self,
        canonical: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> AccountName {
        if let Some((account, _)) = self.explicit.iter().find(|(_, c)| c.as_str() == canonical) {
            return AccountName::Name(account.clone());
        }
        let ruled = self.to_account(canonical);
        let mut candidates = Vec::new();
        for name in names {
            if name == ruled {
                return AccountName::Name(ruled);
            }
            if self.canonical_of(name).as_deref() == Some(canonical) && !candidates.contains(&name)
            {
                candidates.push(name);
            }
        }
        match candidates.as_slice() {
            [] => AccountName::Name(ruled),
            [one] => AccountName::Name((*one).to_owned()),
            _ => {
                let mut all: Vec<String> = candidates.iter().map(|c| (*c).to_owned()).collect();
                all.sort();
                AccountName::Ambiguous(all)
            }
        }
    }

    /// Reads an account's whole symbol list through this map (see [`Resolution`]), in one pass
    /// over the names. Explicit entries are kept as they are; a name is added only when it is
    /// the account's name of its canonical symbol as [`SymbolMap::account_name_in`] finds it, so
    /// the result's [`SymbolMap::to_canonical`] and [`SymbolMap::to_account`] agree with it.
    pub fn resolve<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Resolution {
        let mut by_canonical: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for name in names {
            if let Some(canonical) = self.canonical_of(name) {
                let group = by_canonical.entry(canonical).or_default();
                if !group.contains(&name) {
                    group.push(name);
                }
            }
        }
        let mut resolution = Resolution {
            map: self.clone(),
            ..Resolution::default()
        };
        for (canonical, mut group) in by_canonical {
            if self.explicit.values().any(|c| *c == canonical) {
                continue;
            }
            let ruled = self.to_account(&canonical);
            let name = if group.contains(&ruled.as_str()) {
                ruled
            } else if let [one] = group.as_slice() {
                (*one).to_owned()
            } else {
                group.sort_unstable();
                for name in &group {
                    resolution
                        .contested
                        .insert((*name).to_owned(), canonical.clone());
                }
                resolution.ambiguous.push(Ambiguity {
                    canonical,
                    candidates: group.iter().map(|n| (*n).to_owned()).collect(),
                });
                continue;
            };
            if self.to_canonical(&name).as_deref() != Some(canonical.as_str())
                && !self.explicit.contains_key(&name)
            {
                resolution.map.explicit.insert(name, canonical);
            }
        }
        resolution
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

    #[test]
    fn aliases_and_decorations_find_the_canonical_name() {
        let id = SymbolMap::identity();
        assert_eq!(id.canonical_of("GOLD").as_deref(), Some("XAUUSD"));
        assert_eq!(id.canonical_of("Gold").as_deref(), Some("XAUUSD"));
        assert_eq!(id.canonical_of("XAUUSD.r").as_deref(), Some("XAUUSD"));
        assert_eq!(id.canonical_of("GOLD.pro").as_deref(), Some("XAUUSD"));
        assert_eq!(id.canonical_of("EURUSDm").as_deref(), Some("EURUSD"));
        assert_eq!(id.canonical_of("mEURUSD").as_deref(), Some("EURUSD"));
        assert_eq!(id.canonical_of("#US30").as_deref(), Some("US30"));
        assert_eq!(id.canonical_of("WS30_i").as_deref(), Some("US30"));
        assert_eq!(id.canonical_of("DE40.").as_deref(), Some("GER40"));
        assert_eq!(id.canonical_of("XTIUSD").as_deref(), Some("USOIL"));
        assert_eq!(id.canonical_of("Bitcoin").as_deref(), Some("BTCUSD"));
        // an upper-case M is part of the name, not a decoration
        assert_eq!(id.canonical_of("IBM").as_deref(), Some("IBM"));
        assert_eq!(id.canonical_of("").as_deref(), None);
        // the operator's map wins over the aliases
        let map = SymbolMap::identity()
            .with_explicit("GOLD=GOLDSPOT")
            .unwrap();
        assert_eq!(map.canonical_of("GOLD").as_deref(), Some("GOLDSPOT"));
        // a configured rule is applied first, then the aliases
        let rule = SymbolMap::from_affix(".x");
        assert_eq!(rule.canonical_of("GOLD.x").as_deref(), Some("XAUUSD"));
    }

    #[test]
    fn account_names_are_found_in_the_list_or_reported_ambiguous() {
        let id = SymbolMap::identity();
        assert_eq!(
            id.account_name_in("XAUUSD", ["EURUSD", "GOLD"]),
            AccountName::Name("GOLD".into())
        );
        assert_eq!(
            id.account_name_in("XAUUSD", ["XAUUSD.r", "EURUSD.r"]),
            AccountName::Name("XAUUSD.r".into())
        );
        assert_eq!(
            id.account_name_in("XAUUSD", ["GOLD", "XAUUSD.r"]),
            AccountName::Ambiguous(vec!["GOLD".into(), "XAUUSD.r".into()])
        );
        // the exact name under the configured rule wins over heuristic matches
        assert_eq!(
            id.account_name_in("XAUUSD", ["GOLD", "XAUUSD"]),
            AccountName::Name("XAUUSD".into())
        );
        // the operator's explicit entry settles an ambiguity
        let map = SymbolMap::identity().with_explicit("GOLD=XAUUSD").unwrap();
        assert_eq!(
            map.account_name_in("XAUUSD", ["GOLD", "XAUUSD.r"]),
            AccountName::Name("GOLD".into())
        );
        // nothing matches: the rule's name, as before
        assert_eq!(
            SymbolMap::from_affix(".h").account_name_in("USDJPY", ["EURUSD.h"]),
            AccountName::Name("USDJPY.h".into())
        );
    }

    #[test]
    fn resolve_maps_unique_names_and_lists_ambiguities() {
        let r = SymbolMap::identity().resolve(["GOLD", "EURUSD", "SILVER.r", "US30", "WS30"]);
        assert_eq!(r.map.to_canonical("GOLD").as_deref(), Some("XAUUSD"));
        assert_eq!(r.map.to_account("XAUUSD"), "GOLD");
        assert_eq!(r.map.to_account("XAGUSD"), "SILVER.r");
        assert_eq!(r.map.to_account("EURUSD"), "EURUSD");
        // US30 is the exact canonical name, so WS30 is not a second candidate
        assert_eq!(r.map.to_account("US30"), "US30");
        assert!(r.ambiguous.is_empty());
        let r = SymbolMap::identity().resolve(["GOLD", "XAUUSDm", "EURUSD"]);
        assert_eq!(
            r.ambiguous,
            vec![Ambiguity {
                canonical: "XAUUSD".into(),
                candidates: vec!["GOLD".into(), "XAUUSDm".into()]
            }]
        );
        assert!(!r.map.explicit.contains_key("GOLD"));
        // both are reported as XAUUSD, which the center then shows as ambiguous
        assert_eq!(r.canonical_of("GOLD"), "XAUUSD");
        assert_eq!(r.canonical_of("XAUUSDm"), "XAUUSD");
        assert_eq!(r.canonical_of("EURUSD"), "EURUSD");
        // a name that lost to the exact name is reported under itself, never converted with the
        // exact name's contract size
        let r = SymbolMap::identity().resolve(["GOLD", "XAUUSD"]);
        assert_eq!(r.canonical_of("XAUUSD"), "XAUUSD");
        assert_eq!(r.canonical_of("GOLD"), "GOLD");
        assert!(r.ambiguous.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn resolution_agrees_with_the_lookup_by_canonical_name(
            names in proptest::collection::btree_set(
                "(GOLD|XAUUSD|SILVER|US30|WS30|EURUSD|IBM)(|\\.r|m|\\.pro|#|_i)", 0..8),
        ) {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let r = SymbolMap::identity().resolve(names.iter().copied());
            for name in &names {
                let canonical = r.canonical_of(name);
                match SymbolMap::identity().account_name_in(&canonical, names.iter().copied()) {
                    // the name is the account's name of what it is reported as...
                    AccountName::Name(found) => {
                        proptest::prop_assert_eq!(&found, name);
                        proptest::prop_assert_eq!(r.map.to_account(&canonical), found);
                    }
                    // ...or one of the candidates of an ambiguous symbol
                    AccountName::Ambiguous(candidates) => {
                        proptest::prop_assert!(candidates.iter().any(|c| c == name));
                    }
                }
            }
        }
    }
}
