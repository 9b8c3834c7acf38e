//! Operator settings kept one row per key (an account's override, a scope's allocation): the row
//! each is read from and written to has the same shape, a value stamped with who set it, why,
//! when, and the event that records it.

use super::*;

/// Where one setting is kept: its table, the key columns that pick its row (with their values)
/// and the column of its value.
pub(super) struct SettingRow {
    pub(super) table: &'static str,
    pub(super) keys: Vec<(&'static str, Val)>,
    pub(super) value: &'static str,
}

/// Who set a setting, why, when, and the event recording it.
pub(super) struct SettingStamp<'a> {
    pub(super) actor: &'a str,
    pub(super) reason: &'a str,
    pub(super) since_ms: i64,
    pub(super) event_id: u64,
}

impl SettingRow {
    fn key_values(&self) -> Vec<Val> {
        self.keys.iter().map(|(_, v)| v.clone()).collect()
    }

    fn matching(&self) -> String {
        self.keys
            .iter()
            .map(|(name, _)| format!("{name} = ?"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The stored value, `None` when the setting is not set.
    pub(super) fn stored(&self, c: &mut dyn Conn) -> Result<Option<String>, StoreError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            self.value,
            self.table,
            self.matching()
        );
        c.query_one(&sql, &self.key_values())?
            .map(|r| r.text(Single::value).map(str::to_owned))
            .transpose()
    }

    /// Stores `value` (with the `extra` columns a new row also carries), or deletes the row when
    /// `value` is `None`.
    pub(super) fn write(
        &self,
        c: &mut dyn Conn,
        value: Option<&str>,
        extra: Vec<(&'static str, Val)>,
        stamp: &SettingStamp<'_>,
    ) -> Result<(), StoreError> {
        let Some(value) = value else {
            let sql = format!("DELETE FROM {} WHERE {}", self.table, self.matching());
            c.execute(&sql, &self.key_values())?;
            return Ok(());
        };
        let mut columns: Vec<(&str, Val)> = self.keys.clone();
        columns.extend(extra);
        columns.extend([
            (self.value, Val::text(value)),
            ("actor", Val::text(stamp.actor)),
            ("reason", Val::text(stamp.reason)),
            ("since_ms", Val::Int(stamp.since_ms)),
            ("event_id", Val::Int(stamp.event_id as i64)),
        ]);
        let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        let keys: Vec<&str> = self.keys.iter().map(|(n, _)| *n).collect();
        let updated: Vec<String> = [self.value, "actor", "reason", "since_ms", "event_id"]
            .iter()
            .map(|n| format!("{n} = excluded.{n}"))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
            self.table,
            names.join(", "),
            vec!["?"; names.len()].join(", "),
            keys.join(", "),
            updated.join(", ")
        );
        let values: Vec<Val> = columns.into_iter().map(|(_, v)| v).collect();
        c.execute(&sql, &values)?;
        Ok(())
    }
}

/// An action's event reason: what it did, then the operator's own words when there are any.
pub(super) fn with_operator_reason(what: String, reason: &str) -> String {
    if reason.is_empty() {
        what
    } else {
        format!("{what}: {reason}")
    }
}
