//! The hedge tag: how a hedge order names the plan item it executes.
//!
//! A crash between sending an order and recording it must not lead to a second order, so everything
//! the hedger sends is marked with the plan item id in three places the terminal keeps: the magic
//! number (survives on positions, orders and deals, and brokers never rewrite it), the comment
//! (`hedge:<id>`, readable in the terminal; some brokers truncate or replace comments, hence the
//! magic too), and the command id (the terminal executes a command id at most once, so a resend after
//! a reconnect is answered from its memory instead of trading again).

use hedge_domain::{CmdId, Magic, OrderTicket};
use hedge_ledger::{CodecError, LinkKind};

use hedge_center_api::model::CommandId;
/// The id of one item of the center's hedge plan: the center's own type, so the id the hedger
/// tags an order with is the one the plan and the hedge records carry.
pub use hedge_center_api::model::PlanItemId;

/// Hedge magics are `MAGIC_BASE + item id`. The base keeps them apart from other experts' magics and
/// the whole range below 2^53, so that a terminal or a JSON reader working in doubles keeps it exact.
pub const MAGIC_BASE: u64 = 7_000_000_000_000;
/// Item ids at or above this do not fit the magic range.
pub const MAX_ITEM_ID: u64 = 1_000_000_000_000;

/// The comment prefix of a hedge order.
pub const COMMENT_PREFIX: &str = "hedge:";

/// Why an item id cannot be carried by an order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("plan item id {0} is too large to be encoded in a magic number (limit {MAX_ITEM_ID})")]
pub struct ItemIdTooLarge(pub u64);

/// What a hedge order carries to name its plan item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HedgeTag {
    pub item: PlanItemId,
    pub magic: Magic,
    pub comment: String,
}

impl HedgeTag {
    pub fn new(item: PlanItemId) -> Result<Self, ItemIdTooLarge> {
        if item.0 >= MAX_ITEM_ID {
            return Err(ItemIdTooLarge(item.0));
        }
        Ok(HedgeTag {
            item,
            magic: Magic(MAGIC_BASE + item.0),
            comment: format!("{COMMENT_PREFIX}{}", item.0),
        })
    }

    /// The command id of one order for this item. `leg` counts the fills of the item already on the
    /// account when the order was planned, so the same decision made again after a restart yields the
    /// same id (and the terminal answers it from its memory); `attempt` counts retries with a fresh
    /// price, which must be new commands.
    pub fn cmd_id(&self, leg: u32, attempt: u32) -> CmdId {
        CmdId(format!("hedge-{}-{leg}-{attempt}", self.item.0))
    }
}

/// The plan item a magic number belongs to, if it is a hedge magic.
pub fn item_from_magic(magic: Magic) -> Option<PlanItemId> {
    let m = magic.0;
    if (MAGIC_BASE..MAGIC_BASE + MAX_ITEM_ID).contains(&m) {
        Some(PlanItemId(m - MAGIC_BASE))
    } else {
        None
    }
}

/// The plan item named by a comment `hedge:<id>` (trailing text a broker appends is ignored).
pub fn item_from_comment(comment: &str) -> Option<PlanItemId> {
    let rest = comment.trim().strip_prefix(COMMENT_PREFIX)?;
    let digits: &str = {
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        &rest[..end]
    };
    if digits.is_empty() {
        return None;
    }
    digits
        .parse::<u64>()
        .ok()
        .filter(|id| *id < MAX_ITEM_ID)
        .map(PlanItemId)
}

/// The plan item of a record carrying a magic and a comment: the magic first (brokers keep it), the
/// comment when the magic was lost (a manual copy, a terminal that does not keep it).
pub fn item_of(magic: Magic, comment: &str) -> Option<PlanItemId> {
    item_from_magic(magic).or_else(|| item_from_comment(comment))
}

/// The comment of an order carrying out operator command `id`: how a restart sees on the account
/// that the command already ran.
pub fn command_comment(id: CommandId) -> String {
    format!("{COMMAND_PREFIX}{id}")
}

pub const COMMAND_PREFIX: &str = "cmd:";

/// The operator command an order's comment names, if any.
pub fn command_of(comment: &str) -> Option<CommandId> {
    let rest = comment.trim().strip_prefix(COMMAND_PREFIX)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The magic of an order that reduces or closes the hedge opened by `opening` (the ledger's market
/// link). Tickets beyond the link format's range are refused rather than encoded wrongly.
pub fn close_link(opening: OrderTicket) -> Result<Magic, CodecError> {
    hedge_ledger::encode(opening, LinkKind::Market)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_through_magic_and_comment() {
        let tag = HedgeTag::new(PlanItemId(42)).unwrap();
        assert_eq!(tag.comment, "hedge:42");
        assert_eq!(item_from_magic(tag.magic), Some(PlanItemId(42)));
        assert_eq!(item_from_comment(&tag.comment), Some(PlanItemId(42)));
        assert_eq!(item_from_comment("hedge:42 [sl]"), Some(PlanItemId(42)));
        assert_eq!(item_of(Magic(0), "hedge:7"), Some(PlanItemId(7)));
        assert_eq!(item_of(Magic(1234), "manual"), None);
        assert_eq!(item_from_comment("hedge:"), None);
        assert_eq!(item_from_comment("hedge:x"), None);
        assert_eq!(item_from_comment("hedge:99999999999999999999999"), None);
        assert!(HedgeTag::new(PlanItemId(MAX_ITEM_ID)).is_err());
    }

    #[test]
    fn command_ids_are_stable_and_distinct_per_leg_and_attempt() {
        let tag = HedgeTag::new(PlanItemId(5)).unwrap();
        assert_eq!(tag.cmd_id(0, 0), tag.cmd_id(0, 0));
        assert_ne!(tag.cmd_id(0, 0), tag.cmd_id(0, 1));
        assert_ne!(tag.cmd_id(0, 0), tag.cmd_id(1, 0));
        assert_eq!(tag.cmd_id(2, 3).as_str(), "hedge-5-2-3");
    }

    proptest::proptest! {
        #[test]
        fn every_item_id_in_range_round_trips(id in 0u64..MAX_ITEM_ID) {
            let tag = HedgeTag::new(PlanItemId(id)).unwrap();
            proptest::prop_assert_eq!(item_from_magic(tag.magic), Some(PlanItemId(id)));
            proptest::prop_assert_eq!(item_from_comment(&tag.comment), Some(PlanItemId(id)));
            proptest::prop_assert!(tag.magic.0 < (1u64 << 53));
        }
    }
}
