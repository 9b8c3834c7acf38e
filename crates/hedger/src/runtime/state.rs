//! The hedger's bookkeeping between reactions, apart from the I/O around it.
//!
//! Everything here is decided from what the runtime read (the account's deals and transactions, the
//! center's records, the outbox): which executions are recorded, which reductions wait for their
//! deals, which operator commands ran or were answered, and which symbols wait for a plan fetched
//! after their records. The runtime asks it and carries out the answers.

use crate::account_view::fill_from_deal;
use crate::netting_hedges::HedgeLedger;
use crate::planner::{Fill, HedgeBook, HeldPosition};
use crate::records::executed_record;
use crate::tag::{command_of, PlanItemId};
use hedge_agent_runtime::netting::NettingError;
use hedge_agent_runtime::valuation::Commissions;
use hedge_center_api::model::{CommandId, HedgeExecuted};
use hedge_domain::{DealTicket, Login, Price, SymbolMap, Volume};
use hedge_protocol::{DealRecord, Tx};
use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// How long a holding waits for the transactions of the deals that changed it.
const DUE_HOLDING_WAIT: Duration = Duration::from_secs(3);

/// A holding to record once the account's state has the deals that changed it.
#[derive(Clone, Debug)]
pub(super) struct DueHolding {
    /// Account symbol.
    pub(super) symbol: String,
    pub(super) deals: BTreeSet<DealTicket>,
    pub(super) since: Instant,
}

/// Whether a holding changed by some deals can be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HoldingReadiness {
    /// The account's state has every deal.
    Ready,
    /// The deals' transactions never came (lost with a link): the state is as current as it will
    /// get; the periodic comparison corrects whatever this misses.
    GaveUpWaiting,
    /// Queued until the deals arrive.
    Waiting,
}

/// The most recent deals whose transactions reached the terminal's state.
#[derive(Default)]
struct SeenDeals {
    set: BTreeSet<DealTicket>,
    order: VecDeque<DealTicket>,
}

impl SeenDeals {
    /// Far more than the deals of any batch still waiting for its transactions.
    const CAPACITY: usize = 4096;

    fn insert(&mut self, deal: DealTicket) {
        if self.set.insert(deal) {
            self.order.push_back(deal);
            if self.order.len() > Self::CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn contains(&self, deal: DealTicket) -> bool {
        self.set.contains(&deal)
    }
}

/// What the hedger knows between reactions.
#[derive(Default)]
pub(super) struct HedgerState {
    /// The fills seen so far, what the center recorded and what is in flight.
    pub(super) book: HedgeBook,
    pub(super) netting: bool,
    /// Netting accounts: the hedges as bi-directional positions (`None` on hedging accounts, or
    /// while the history does not replay).
    pub(super) ledger: Option<HedgeLedger>,
    /// The ledger lost track of a live record: rebuild before acting again.
    pub(super) ledger_stale: bool,
    /// Plan items whose execution is recorded (in the center or queued in the outbox).
    recorded_items: BTreeSet<PlanItemId>,
    /// Operator commands whose orders are on the account (their comment names them).
    commands_on_account: BTreeSet<CommandId>,
    /// Operator commands whose result is recorded (in the center or queued in the outbox).
    commands_answered: BTreeSet<CommandId>,
    /// Holdings to record once the account's state has the deals that changed them.
    holding_due: Vec<DueHolding>,
    /// Deals whose transaction has been applied to the terminal's state, newest last (bounded):
    /// a reply arrives before its deal's `tx`, and a holding captured in between would still show
    /// the volume the reduction took back.
    seen_deals: SeenDeals,
    /// Corrections sent since start: center records that had drifted from the account.
    pub(super) corrections: u64,
    /// Mirror mode held back a symbol while its trades were being recorded.
    pub(super) deferred: bool,
    /// The plan fetch after the records failed: the held-back symbols wait for a timed retry
    /// rather than for the next acknowledgement.
    pub(super) deferred_fetch_failed: bool,
    /// Commission per open position, from the deals seen, for the marks in the status.
    pub(super) commissions: Commissions,
    /// Canonical symbols traded (opened or reduced) since the held plan was fetched. A plan that
    /// arrives from the event stream may have been computed before their records were stored (its
    /// fetch can finish after the outbox has sent the last record) and ask for the same volume
    /// again, so mirror mode acts on them again only with a plan fetched once no record is left to
    /// send.
    traded_since_plan: BTreeSet<String>,
}

impl HedgerState {
    /// A rebuild starts over from what the account, the center and the outbox say.
    pub(super) fn start_rebuild(&mut self, netting: bool) {
        self.netting = netting;
        self.ledger_stale = false;
    }

    /// On a netting account seen through the ledger, the hedges one position each; `None` where the
    /// terminal's positions are what the hedger holds.
    pub(super) fn ledger_hedges(&self) -> Option<Vec<HeldPosition>> {
        match (self.netting, &self.ledger) {
            (true, Some(ledger)) => Some(ledger.hedges()),
            _ => None,
        }
    }

    /// A netting account not seen through the ledger: one net position per symbol holds every
    /// hedge of that symbol.
    pub(super) fn shared_net(&self) -> bool {
        self.netting && self.ledger.is_none()
    }

    /// A deal of the account (from the history or a transaction).
    pub(super) fn take_deal(&mut self, deal: &DealRecord) {
        self.commissions.record(deal);
        if let Some(fill) = fill_from_deal(deal) {
            self.book.add_fill(fill);
        }
        if let Some(id) = command_of(&deal.comment) {
            self.commands_on_account.insert(id);
        }
    }

    /// A transaction applied to the terminal's state. A record that does not fit the ledger drops
    /// it and marks it stale: without a ledger that fits, reductions would go to the wrong hedge.
    pub(super) fn take_tx(&mut self, tx: &Tx) -> Result<(), NettingError> {
        if let Some(deal) = &tx.deal_record {
            self.seen_deals.insert(deal.ticket);
            self.take_deal(deal);
        }
        if let Some(ledger) = &mut self.ledger {
            if let Err(e) = ledger.apply(tx) {
                self.ledger = None;
                self.ledger_stale = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// An execution the center holds (or the outbox will deliver): its fills need no record.
    pub(super) fn recorded_elsewhere(
        &mut self,
        item: PlanItemId,
        volume: Volume,
        deal: DealTicket,
    ) {
        self.book.set_recorded(item, volume, [deal]);
        for f in self.book.fills(item).to_vec() {
            self.book.mark_recorded(f.deal);
        }
        self.recorded_items.insert(item);
    }

    /// Plan items executed on the account whose execution has no record yet.
    pub(super) fn unrecorded_items(&self) -> BTreeSet<PlanItemId> {
        self.book
            .unrecorded()
            .iter()
            .filter(|f| !f.closing && !self.recorded_items.contains(&f.item))
            .map(|f| f.item)
            .collect()
    }

    /// Account symbols with a reduction the center has not been told of.
    pub(super) fn unrecorded_reductions(&self) -> BTreeSet<String> {
        self.book
            .unrecorded()
            .iter()
            .filter(|f| f.closing)
            .map(|f| f.symbol.clone())
            .collect()
    }

    /// Every fill seen counts as recorded (the rebuild has just recorded what was missing).
    pub(super) fn all_fills_recorded(&mut self) {
        for f in self.book.all_fills().map(|f| f.deal).collect::<Vec<_>>() {
            self.book.mark_recorded(f);
        }
    }

    /// The fills that opened an item's hedge (its reductions are recorded as holdings).
    fn opening_fills(&self, item: PlanItemId) -> impl Iterator<Item = &Fill> {
        self.book.fills(item).iter().filter(|f| !f.closing)
    }

    /// The record of an executed item, unless it has one already.
    pub(super) fn execution_record(
        &self,
        login: Login,
        item: PlanItemId,
        symbols: &SymbolMap,
        latency: Option<Duration>,
        requested: Option<Price>,
    ) -> Option<HedgeExecuted> {
        if self.recorded_items.contains(&item) {
            return None;
        }
        let fills: Vec<Fill> = self.opening_fills(item).cloned().collect();
        let mut record = executed_record(
            login,
            item,
            &fills,
            symbols,
            latency.map(|d| d.as_micros() as u64),
            requested,
        )?;
        if self.netting {
            // The hedge's position is the ledger's: the one its opening order started.
            record.position_id = hedge_domain::PositionId(record.order.0);
        }
        Some(record)
    }

    /// The record of an executed item is queued.
    pub(super) fn execution_recorded(&mut self, item: PlanItemId) {
        let deals: Vec<DealTicket> = self.opening_fills(item).map(|f| f.deal).collect();
        for deal in deals {
            self.book.mark_recorded(deal);
        }
        self.recorded_items.insert(item);
    }

    /// Whether the account's state (on a netting account seen through the ledger, the ledger) has
    /// taken a deal.
    fn deal_reached(&self, deal: DealTicket) -> bool {
        match (&self.ledger, self.netting) {
            (Some(l), true) => l.knows_deal(deal),
            _ => self.seen_deals.contains(deal),
        }
    }

    /// Whether the holding of `symbol`, changed by `deals` at `since` (`waited` ago), can be
    /// recorded now; if not, it is queued until they arrive.
    pub(super) fn await_deals(
        &mut self,
        symbol: &str,
        deals: BTreeSet<DealTicket>,
        since: Instant,
        waited: Duration,
    ) -> HoldingReadiness {
        if deals.iter().all(|d| self.deal_reached(*d)) {
            return HoldingReadiness::Ready;
        }
        if waited >= DUE_HOLDING_WAIT {
            return HoldingReadiness::GaveUpWaiting;
        }
        self.holding_due.push(DueHolding {
            symbol: symbol.to_owned(),
            deals,
            since,
        });
        HoldingReadiness::Waiting
    }

    pub(super) fn has_due_holdings(&self) -> bool {
        !self.holding_due.is_empty()
    }

    pub(super) fn take_due_holdings(&mut self) -> Vec<DueHolding> {
        std::mem::take(&mut self.holding_due)
    }

    /// The canonical symbols of the holdings waiting for their deals.
    pub(super) fn due_symbols(&self, symbols: &SymbolMap) -> BTreeSet<String> {
        self.holding_due
            .iter()
            .map(|d| {
                symbols
                    .to_canonical(&d.symbol)
                    .unwrap_or_else(|| d.symbol.clone())
            })
            .collect()
    }

    pub(super) fn command_on_account(&self, id: CommandId) -> bool {
        self.commands_on_account.contains(&id)
    }

    pub(super) fn command_carried_out(&mut self, id: CommandId) {
        self.commands_on_account.insert(id);
    }

    pub(super) fn command_answered(&self, id: CommandId) -> bool {
        self.commands_answered.contains(&id)
    }

    pub(super) fn answer_queued(&mut self, id: CommandId) {
        self.commands_answered.insert(id);
    }

    /// Mirror mode traded a canonical symbol: it waits for a plan fetched after its records.
    pub(super) fn traded(&mut self, canonical: &str) {
        self.traded_since_plan.insert(canonical.to_owned());
        self.deferred = true;
    }

    /// The symbols mirror mode holds back: those whose records are on their way (`recording`) and
    /// those traded since the held plan.
    pub(super) fn held_back(&mut self, mut recording: BTreeSet<String>) -> BTreeSet<String> {
        recording.extend(self.traded_since_plan.iter().cloned());
        if !recording.is_empty() {
            self.deferred = true;
        }
        recording
    }

    /// A plan fetched once every record was stored is held: nothing waits any more.
    pub(super) fn plan_after_records(&mut self) {
        self.deferred = false;
        self.traded_since_plan.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::{command_comment, HedgeTag};
    use hedge_domain::{DealEntry, DealType, Magic, PositionId, TradeTransactionType};
    use rust_decimal::Decimal;

    fn lots(v: i64) -> Volume {
        Volume(Decimal::new(v, 2))
    }

    fn deal(ticket: u64, entry: DealEntry, magic: Magic, comment: &str) -> DealRecord {
        DealRecord {
            position_id: PositionId(ticket),
            magic,
            comment: comment.to_owned(),
            ..DealRecord::trade(
                DealTicket(ticket),
                "EURUSD",
                DealType::Sell,
                entry,
                lots(10),
                Price(Decimal::new(110_000, 5)),
            )
        }
    }

    fn hedge_deal(ticket: u64, item: u64, entry: DealEntry) -> DealRecord {
        let tag = HedgeTag::new(PlanItemId(item)).unwrap();
        deal(ticket, entry, tag.magic, &tag.comment)
    }

    fn tx(d: DealRecord) -> Tx {
        let mut tx = Tx::new(d.time, TradeTransactionType::DealAdd);
        tx.deal_record = Some(d);
        tx
    }

    #[test]
    fn a_hedge_deal_is_unrecorded_until_the_center_holds_it() {
        let mut s = HedgerState::default();
        s.take_deal(&hedge_deal(1, 7, DealEntry::In));
        s.take_deal(&hedge_deal(2, 8, DealEntry::Out));
        assert_eq!(
            s.unrecorded_items().into_iter().collect::<Vec<_>>(),
            [PlanItemId(7)]
        );
        assert_eq!(
            s.unrecorded_reductions().into_iter().collect::<Vec<_>>(),
            ["EURUSD"]
        );
        s.recorded_elsewhere(PlanItemId(7), lots(10), DealTicket(1));
        assert!(s.unrecorded_items().is_empty());
        assert!(s
            .execution_record(Login(5), PlanItemId(7), &SymbolMap::identity(), None, None)
            .is_none());
        s.all_fills_recorded();
        assert!(s.unrecorded_reductions().is_empty());
    }

    #[test]
    fn an_execution_is_recorded_once() {
        let mut s = HedgerState::default();
        s.take_deal(&hedge_deal(1, 7, DealEntry::In));
        let record = s
            .execution_record(Login(5), PlanItemId(7), &SymbolMap::identity(), None, None)
            .expect("a record");
        assert_eq!(record.plan_item_id, PlanItemId(7));
        s.execution_recorded(PlanItemId(7));
        assert!(s.unrecorded_items().is_empty());
        assert!(s
            .execution_record(Login(5), PlanItemId(7), &SymbolMap::identity(), None, None)
            .is_none());
    }

    #[test]
    fn a_command_comment_on_the_account_marks_the_command_carried_out() {
        let mut s = HedgerState::default();
        s.take_tx(&tx(deal(
            3,
            DealEntry::Out,
            Magic(0),
            &command_comment(CommandId(12)),
        )))
        .unwrap();
        assert!(s.command_on_account(CommandId(12)));
        assert!(!s.command_answered(CommandId(12)));
        s.answer_queued(CommandId(12));
        assert!(s.command_answered(CommandId(12)));
    }

    #[test]
    fn a_holding_waits_for_its_deals_then_gives_up() {
        let mut s = HedgerState::default();
        let now = Instant::now();
        let deals = BTreeSet::from([DealTicket(4)]);
        assert_eq!(
            s.await_deals("EURUSD.m", deals.clone(), now, Duration::ZERO),
            HoldingReadiness::Waiting
        );
        let map = SymbolMap::from_affix(".m");
        assert_eq!(s.due_symbols(&map), BTreeSet::from(["EURUSD".to_owned()]));
        let due = s.take_due_holdings();
        assert_eq!(due.len(), 1);
        assert!(!s.has_due_holdings());
        assert_eq!(
            s.await_deals("EURUSD.m", deals.clone(), now, Duration::from_secs(3)),
            HoldingReadiness::GaveUpWaiting
        );
        s.take_tx(&tx(hedge_deal(4, 1, DealEntry::Out))).unwrap();
        assert_eq!(
            s.await_deals("EURUSD.m", deals, now, Duration::ZERO),
            HoldingReadiness::Ready
        );
        assert!(!s.has_due_holdings());
    }

    #[test]
    fn seen_deals_forget_the_oldest_beyond_capacity() {
        let mut seen = SeenDeals::default();
        for n in 0..=SeenDeals::CAPACITY as u64 {
            seen.insert(DealTicket(n));
        }
        assert!(!seen.contains(DealTicket(0)));
        assert!(seen.contains(DealTicket(1)));
        assert!(seen.contains(DealTicket(SeenDeals::CAPACITY as u64)));
    }

    #[test]
    fn a_traded_symbol_waits_for_a_plan_fetched_after_its_records() {
        let mut s = HedgerState::default();
        assert!(s.held_back(BTreeSet::new()).is_empty());
        assert!(!s.deferred);
        s.traded("EURUSD");
        assert!(s.deferred);
        s.deferred = false;
        let held = s.held_back(BTreeSet::from(["GBPUSD".to_owned()]));
        assert_eq!(held.len(), 2);
        assert!(s.deferred);
        s.plan_after_records();
        assert!(!s.deferred);
        assert!(s.held_back(BTreeSet::new()).is_empty());
    }
}
