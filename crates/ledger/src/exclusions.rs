//! Exclusions: active positions the ledger keeps out of view (positions that existed before the
//! ledger took over an account, or that the user chose to hide).
//!
//! The project's own format is a text file, one exclusion per line: `<login> <position id>`, or
//! `<login> <position id> <from ms>` for a position hidden only once the history up to that time
//! is replayed (what `hide-flat` and `reconcile --apply` record, so that a replay pairs orders
//! before that time as they were paired when the position was hidden); blank lines and `#`
//! comments allowed. HedgeTerminal's `ExcludeOrders.xml`
//! (`<Orders-Exclude><Order AccountID=".." ID=".."/></Orders-Exclude>`) can be imported; it is parsed
//! as real XML, so reformatted files, comments and several elements per line all work.

use hedge_domain::{Login, PositionId};
use quick_xml::events::Event;
use std::collections::{BTreeMap, BTreeSet, HashSet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExclusionError {
    #[error("line {line}: expected `<login> <position id> [<from ms>]`, got {text:?}")]
    Line { line: usize, text: String },
    #[error("ExcludeOrders.xml: {0}")]
    Xml(String),
}

/// A set of (login, position id) exclusions, each hidden from its opening or from a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exclusions {
    entries: BTreeMap<(u64, u64), Option<i64>>,
}

impl Exclusions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the project's text format. Any malformed line rejects the whole file.
    pub fn parse(text: &str) -> Result<Self, ExclusionError> {
        let mut entries = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = |k: usize| fields.get(k).and_then(|f| f.parse::<u64>().ok());
            let parsed = match fields.len() {
                2 => number(0).zip(number(1)).map(|(l, id)| (l, id, None)),
                3 => match (number(0), number(1), fields[2].parse::<i64>().ok()) {
                    (Some(l), Some(id), Some(t)) => Some((l, id, Some(t))),
                    _ => None,
                },
                _ => None,
            };
            match parsed {
                Some((login, id, from)) if id > 0 => {
                    entries.insert((login, id), from);
                }
                _ => {
                    return Err(ExclusionError::Line {
                        line: i + 1,
                        text: raw.to_owned(),
                    })
                }
            }
        }
        Ok(Exclusions { entries })
    }

    /// The text form: a header comment and one sorted line per exclusion.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# hedge ledger exclusions: <login> <position id> [<from ms>]\n");
        for ((login, id), from) in &self.entries {
            match from {
                Some(t) => s.push_str(&format!("{login} {id} {t}\n")),
                None => s.push_str(&format!("{login} {id}\n")),
            }
        }
        s
    }

    /// Adds an exclusion from the position's opening; false if it was already there (an existing
    /// time is replaced: from the opening covers it).
    pub fn add(&mut self, login: Login, id: PositionId) -> bool {
        self.entries.insert((login.get(), id.get()), None).is_none()
    }

    /// Adds an exclusion that hides the position once every deal at or before `from_msc` is
    /// replayed; false if the position was already excluded (the earlier record stays).
    pub fn add_from(&mut self, login: Login, id: PositionId, from_msc: i64) -> bool {
        match self.entries.entry((login.get(), id.get())) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(Some(from_msc));
                true
            }
        }
    }

    pub fn remove(&mut self, login: Login, id: PositionId) -> bool {
        self.entries.remove(&(login.get(), id.get())).is_some()
    }

    pub fn contains(&self, login: Login, id: PositionId) -> bool {
        self.entries.contains_key(&(login.get(), id.get()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Login, PositionId)> + '_ {
        self.entries.keys().map(|&(l, i)| (Login(l), PositionId(i)))
    }

    /// The position ids excluded for one account.
    pub fn ids_for(&self, login: Login) -> HashSet<u64> {
        self.range(login).map(|(&(_, id), _)| id).collect()
    }

    /// One account's exclusions as [`crate::Ledger::replay_excluding`] takes them.
    pub fn for_replay(&self, login: Login) -> Vec<(PositionId, Option<i64>)> {
        self.range(login)
            .map(|(&(_, id), &from)| (PositionId(id), from))
            .collect()
    }

    fn range(&self, login: Login) -> impl Iterator<Item = (&(u64, u64), &Option<i64>)> + '_ {
        self.entries
            .range((login.get(), 0)..=(login.get(), u64::MAX))
    }

    /// Merges another set in (entries already here keep their time); returns how many were new.
    pub fn merge(&mut self, other: &Exclusions) -> usize {
        let before = self.entries.len();
        for (k, v) in &other.entries {
            self.entries.entry(*k).or_insert(*v);
        }
        self.entries.len() - before
    }

    /// Imports HedgeTerminal's `ExcludeOrders.xml`. Elements named `Order` with a numeric `AccountID`
    /// and an `ID` above zero are taken (of every account: filter with [`Exclusions::ids_for`]);
    /// other elements are ignored. Malformed XML is an error.
    pub fn import_exclude_orders_xml(xml: &str) -> Result<Self, ExclusionError> {
        // UTF-16 read as UTF-8 leaves a NUL beside every ASCII character; parsing that would find
        // no elements and import nothing without a word.
        if xml.contains('\0') {
            return Err(ExclusionError::Xml(
                "the file looks like UTF-16 without a byte-order mark; import its bytes \
                 (Exclusions::import_exclude_orders_bytes) or save it as UTF-8"
                    .into(),
            ));
        }
        let mut reader = quick_xml::Reader::from_str(xml);
        reader.config_mut().trim_text(true);
        let mut entries = BTreeSet::new();
        let mut depth = 0usize;
        let mut root_seen = false;
        loop {
            let event = reader
                .read_event()
                .map_err(|e| ExclusionError::Xml(e.to_string()))?;
            let (element, is_start) = match &event {
                Event::Start(e) => (Some(e.clone()), true),
                Event::Empty(e) => (Some(e.clone()), false),
                Event::End(_) => {
                    depth = depth.saturating_sub(1);
                    (None, false)
                }
                Event::Eof => break,
                _ => (None, false),
            };
            let Some(e) = element else { continue };
            if depth == 0 {
                if e.local_name().as_ref() != b"Orders-Exclude" {
                    return Err(ExclusionError::Xml(format!(
                        "the root element is <{}>, not <Orders-Exclude>",
                        String::from_utf8_lossy(e.local_name().as_ref())
                    )));
                }
                root_seen = true;
            }
            if e.local_name().as_ref() == b"Order" {
                let mut login = None;
                let mut id = None;
                for a in e.attributes() {
                    let a = a.map_err(|err| ExclusionError::Xml(err.to_string()))?;
                    let value = a
                        .unescape_value()
                        .map_err(|err| ExclusionError::Xml(err.to_string()))?;
                    match a.key.local_name().as_ref() {
                        b"AccountID" => login = value.trim().parse::<u64>().ok(),
                        b"ID" => id = value.trim().parse::<u64>().ok(),
                        _ => {}
                    }
                }
                if let (Some(l), Some(i)) = (login, id) {
                    if i > 0 {
                        entries.insert((l, i));
                    }
                }
            }
            if is_start {
                depth += 1;
            }
        }
        if !root_seen {
            return Err(ExclusionError::Xml("no elements".into()));
        }
        Ok(Exclusions {
            entries: entries.into_iter().map(|k| (k, None)).collect(),
        })
    }
}

impl Exclusions {
    /// Imports `ExcludeOrders.xml` from its bytes, in whatever encoding MT5 or an editor saved it:
    /// UTF-8 or UTF-16 (LE or BE), with or without a byte-order mark. Without a mark, UTF-16 is
    /// recognised by the NUL bytes beside the ASCII of the markup.
    pub fn import_exclude_orders_bytes(bytes: &[u8]) -> Result<Self, ExclusionError> {
        Self::import_exclude_orders_xml(&decode_xml_text(bytes)?)
    }
}

fn decode_xml_text(bytes: &[u8]) -> Result<String, ExclusionError> {
    let utf16 = |le: bool, body: &[u8]| {
        if !body.len().is_multiple_of(2) {
            return Err(ExclusionError::Xml(
                "UTF-16 text with an odd number of bytes".into(),
            ));
        }
        let units = body.chunks_exact(2).map(|c| {
            if le {
                u16::from_le_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|e| ExclusionError::Xml(format!("invalid UTF-16: {e}")))
    };
    match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(true, rest),
        [0xFE, 0xFF, rest @ ..] => utf16(false, rest),
        [0xEF, 0xBB, 0xBF, rest @ ..] => std::str::from_utf8(rest)
            .map(str::to_owned)
            .map_err(|e| ExclusionError::Xml(format!("invalid UTF-8: {e}"))),
        [a, 0, ..] if *a != 0 => utf16(true, bytes),
        [0, b, ..] if *b != 0 => utf16(false, bytes),
        _ => std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| ExclusionError::Xml(format!("invalid UTF-8: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_round_trip_and_errors() {
        let e = Exclusions::parse("# c\n7 100\n\n7 101 # note\n8 5\n").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e.ids_for(Login(7)), [100, 101].into_iter().collect());
        assert_eq!(Exclusions::parse(&e.to_text()).unwrap(), e);
        assert_eq!(
            Exclusions::parse("7 100\nseven 1\n"),
            Err(ExclusionError::Line {
                line: 2,
                text: "seven 1".into()
            })
        );
        assert!(Exclusions::parse("7 0").is_err());
        assert!(Exclusions::parse("7 1 x").is_err());
        assert!(Exclusions::parse("7 1 2 3").is_err());
        let timed = Exclusions::parse("7 1 1700000000000\n7 2\n").unwrap();
        assert_eq!(
            timed.for_replay(Login(7)),
            vec![
                (PositionId(1), Some(1_700_000_000_000)),
                (PositionId(2), None)
            ]
        );
        assert_eq!(Exclusions::parse(&timed.to_text()).unwrap(), timed);
        let mut e = timed.clone();
        assert!(!e.add_from(Login(7), PositionId(2), 5));
        assert!(e.add_from(Login(8), PositionId(2), 5));
        assert_eq!(e.for_replay(Login(8)), vec![(PositionId(2), Some(5))]);
    }

    #[test]
    fn imports_the_original_xml_in_any_layout() {
        let original = "<Orders-Exclude>\r\n\t<Order AccountID=\"7\" ID=\"100\"/>\r\n\t<Order AccountID=\"7\" ID=\"101\"></Order>\r\n\t<Order AccountID=\"9\" ID=\"5\"/>\r\n</Orders-Exclude>";
        let e = Exclusions::import_exclude_orders_xml(original).unwrap();
        assert_eq!(e.ids_for(Login(7)), [100, 101].into_iter().collect());
        assert_eq!(e.ids_for(Login(9)), [5].into_iter().collect());
        // One line, a comment, an XML declaration, junk elements and a zero id.
        let compact = "<?xml version=\"1.0\"?><Orders-Exclude><!-- hi --><Order AccountID=\"7\" ID=\"1\"/><Order AccountID=\"7\" ID=\"0\"/><Other ID=\"3\"/><Order ID=\"4\"/></Orders-Exclude>";
        let e = Exclusions::import_exclude_orders_xml(compact).unwrap();
        assert_eq!(e.len(), 1);
        assert!(Exclusions::import_exclude_orders_xml("<Orders-Exclude/>")
            .unwrap()
            .is_empty());
        assert!(Exclusions::import_exclude_orders_xml("<Orders-Exclude><Order").is_err());
        assert!(Exclusions::import_exclude_orders_xml("").is_err());
        assert!(Exclusions::import_exclude_orders_xml(
            "<Settings><Order AccountID=\"7\" ID=\"1\"/></Settings>"
        )
        .is_err());
    }

    #[test]
    fn utf16_without_a_mark_is_read_or_refused_never_silently_empty() {
        let xml = "<Orders-Exclude>\r\n\t<Order AccountID=\"7\" ID=\"100\"/>\r\n</Orders-Exclude>";
        let le: Vec<u8> = xml.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = xml.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let bom: Vec<u8> = [0xFF, 0xFE].into_iter().chain(le.iter().copied()).collect();
        for bytes in [&le, &be, &bom, &xml.as_bytes().to_vec()] {
            let e = Exclusions::import_exclude_orders_bytes(bytes).unwrap();
            assert_eq!(e.ids_for(Login(7)), [100].into_iter().collect());
        }
        // The same bytes taken as UTF-8 text (what a caller without the byte API has): refused.
        let as_utf8 = String::from_utf8(le).unwrap();
        let err = Exclusions::import_exclude_orders_xml(&as_utf8).unwrap_err();
        assert!(err.to_string().contains("UTF-16"), "{err}");
    }
}
