//! Net reconciliation: the ledger's net volume per symbol against the broker's net positions.
//!
//! Every difference is reported, exactly (no epsilon). For a mismatched symbol the ledger can propose
//! the fix the original documented: flatten the broker's net position on that symbol with one market
//! order, then exclude every active ledger position on it (including the one the correcting order
//! opens), after which both sides read zero. Nothing is sent or excluded unless the caller does it.

use crate::actions::BrokerRequest;
use crate::ledger::Ledger;
use hedge_domain::{Magic, PositionId, Side, Volume};
use std::collections::BTreeMap;

/// A symbol whose ledger net differs from the broker's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NetMismatch {
    pub symbol: String,
    /// Signed (long positive) net of the ledger's visible active positions.
    pub ledger: Volume,
    /// Signed net position on the broker (0 when it has none).
    pub broker: Volume,
}

/// Compares the ledger with the broker's signed net positions per symbol.
pub fn reconcile(ledger: &Ledger, broker: &[(String, Volume)]) -> Vec<NetMismatch> {
    let mut table: BTreeMap<String, (Volume, Volume)> = BTreeMap::new();
    for (s, v) in ledger.net_volumes() {
        table.entry(s).or_default().0 += v;
    }
    for (s, v) in broker {
        table.entry(s.clone()).or_default().1 += *v;
    }
    table
        .into_iter()
        .filter(|(_, (l, b))| l.0.normalize() != b.0.normalize())
        .map(|(symbol, (ledger, broker))| NetMismatch {
            symbol,
            ledger: ledger.normalize(),
            broker: broker.normalize(),
        })
        .collect()
}

/// The proposed fix for one symbol.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Correction {
    pub symbol: String,
    /// The market order flattening the broker's net position, if it is not flat already.
    pub order: Option<BrokerRequest>,
    /// Active ledger positions to exclude now; after the order fills, the position it opens (id =
    /// its ticket) must be excluded too.
    pub exclude: Vec<PositionId>,
}

/// Proposes the correction for a mismatched symbol.
pub fn propose_correction(ledger: &Ledger, m: &NetMismatch) -> Correction {
    let order = (!m.broker.is_zero()).then(|| BrokerRequest::Market {
        symbol: m.symbol.clone(),
        side: if m.broker.is_positive() {
            Side::Sell
        } else {
            Side::Buy
        },
        volume: m.broker.abs(),
        magic: Magic(0),
        position: None,
        comment: "reconcile".into(),
    });
    let exclude = ledger
        .active_positions()
        .iter()
        .filter(|p| p.symbol() == m.symbol)
        .map(|p| p.id())
        .collect();
    Correction {
        symbol: m.symbol.clone(),
        order,
        exclude,
    }
}

/// Why "hide everything" cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HideError {
    #[error("the broker still has net positions: {0:?}; flatten them first")]
    NotFlat(Vec<String>),
    #[error("there is no active position to hide")]
    NothingToHide,
}

/// "Hide everything while the net position is flat": when the broker has no net position at all,
/// every active ledger position is part of a hedged, flat book and can be excluded. Returns the ids
/// to exclude (the caller records them and deletes their stop orders first).
pub fn hide_flat(
    ledger: &Ledger,
    broker: &[(String, Volume)],
) -> Result<Vec<PositionId>, HideError> {
    let open: Vec<String> = broker
        .iter()
        .filter(|(_, v)| !v.is_zero())
        .map(|(s, _)| s.clone())
        .collect();
    if !open.is_empty() {
        return Err(HideError::NotFlat(open));
    }
    let ids: Vec<PositionId> = ledger.active_positions().iter().map(|p| p.id()).collect();
    if ids.is_empty() {
        return Err(HideError::NothingToHide);
    }
    Ok(ids)
}
