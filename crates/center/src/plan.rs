//! The hedge plan: net unhedged client exposure per canonical symbol, and the orders that cover
//! it on the hedge accounts. Pure arithmetic over what the store loads; no I/O.
//!
//! Entry points: [`compute`] (one hedge account's plan) and [`compute_all`] (every hedge
//! account's, from the same inputs).
//!
//! **Notional.** A lot is not the same quantity at every broker, so exposure is summed in the
//! canonical symbol's base quantity: each client's net lots times its own symbol's contract size
//! (`SymbolSpec::contract_size`, as its agent registered it), times the client's ratio. A hedge
//! account's part is converted to its lots with its own symbol's contract size. A contract size
//! that is missing, zero or out of range, or a symbol name that several of the account's symbols
//! could be, makes that exposure a residual with the reason; nothing is guessed. Division by a
//! contract size is exact for the sizes brokers use (powers of ten and their multiples); any
//! other is carried to 28 significant digits before the grid rounding.
//!
//! **Allocation.** Each client's symbol goes to hedge accounts by weight (they sum to 1): the
//! most specific operator allocation (client and symbol, then client), else the client's
//! registered hedge account, else a symbol-wide or global allocation, else the only hedge
//! account. With several hedge accounts and none of these, the exposure is not hedged: a
//! `no_allocation` client residual. No client exposure is counted in two plans beyond its
//! weights (the parts sum to the whole).
//!
//! **Orders.** For hedge account H and symbol S: `exposure` = H's part in H's lots, `hedged` =
//! H's open hedge volume (buys positive), `unhedged = exposure + hedged`. The covering order is
//! on the side opposite to `unhedged`; when the uncovered part points the same way as the
//! existing hedges (clients shrank), the order reduces those hedges and never goes past them, so
//! a reversal is reduce first, then open. A pause (close-only) on H, on a covered client or on S
//! keeps only reducing orders. Each account may trade nothing, or `|unhedged|` rounded down or up
//! to its step and one step beyond each (clamped to its maximum, never below its minimum); an
//! account whose hedges match its part exactly may trade its minimum either way; and the account
//! with the finest grid (in base quantity) is also offered what complements each combination of
//! the others. Across the hedge accounts of S the choice leaves the smallest total uncovered base
//! quantity, then the smallest uncovered part per account, then the least volume traded. A plan
//! is traded only when it beats trading nothing on the first two, so filled plans settle: each
//! round leaves strictly less, and a plan as close as the grids allow asks for nothing more.
//! What an account does not cover is its residual.
//!
//! **Pre-trade refusals.** What a hedge account's pre-trade checks refused of an opening order (as
//! its latest status lists them) is a `pretrade_refused` residual beside that order, which stays:
//! the hedger checks it again at each reaction and sends it once the condition clears.
//!
//! The steps, each its own function: `gather_client_parts` (client exposure per canonical symbol
//! and hedge account, in base quantity, by weight), `add_hedges`, `account_choice` (the hedge
//! account's name, contract size, reductions and pauses, and the volumes its grid allows),
//! `choose` (the joint rounding), `place_orders` and `add_refusals`.

use hedge_center_api::model::{
    AccountRegistration, Allocation, EventId, HedgePlan, Pause, PlanAction, PlanItem, PlanItemId,
    PlanResidual, PretradeRefusal, ResidualReason, SpecLookup,
};
use hedge_domain::fixed::Exposure;
use hedge_domain::{Login, Rounding, Side, SymbolSpec, Volume, VolumeError};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Net open volume of one client account on one symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientExposure {
    pub login: Login,
    pub symbol: String,
    pub net: Exposure,
    /// Event id of the last change of this client's positions on this symbol.
    pub last_event_id: EventId,
}

/// What the plan needs to know about a client account.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConfig {
    pub login: Login,
    pub ratio: Decimal,
    /// The hedge account the client registered with; `None` = as the allocations say.
    pub hedge_login: Option<Login>,
    /// The client's registration with the operator's overrides (its symbol map and specs);
    /// `None` for an account that reported positions before registering.
    pub registration: Option<AccountRegistration>,
}

/// Net open hedge volume of a hedge account on one symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HedgeCover {
    pub hedge_login: Login,
    pub symbol: String,
    pub net: Exposure,
    pub last_event_id: EventId,
}

/// Everything the plans of the hedge accounts depend on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanInputs {
    /// Every hedge account, with the operator's overrides applied.
    pub accounts: Vec<AccountRegistration>,
    pub clients: Vec<ClientConfig>,
    pub exposures: Vec<ClientExposure>,
    pub hedges: Vec<HedgeCover>,
    pub pauses: Vec<Pause>,
    pub allocations: Vec<Allocation>,
    /// Each hedge account's pre-trade refusals, as its latest status lists them.
    pub refusals: BTreeMap<Login, Vec<PretradeRefusal>>,
    pub as_of_event_id: EventId,
}

/// The largest contract size the plan accepts; anything above is a corrupt or hostile spec, and
/// the bound keeps every product of the plan far inside a `Decimal`.
const MAX_CONTRACT_SIZE: i64 = 1_000_000_000;

/// More combinations than this on one symbol are rounded each account on its own (the joint
/// choice tries every combination; two accounts have at most 25).
const MAX_JOINT_COMBINATIONS: usize = 4_096;

fn usable_contract_size(spec: &SymbolSpec) -> Option<Decimal> {
    let cs = spec.contract_size;
    (cs.is_sign_positive() && !cs.is_zero() && cs <= Decimal::from(MAX_CONTRACT_SIZE)).then_some(cs)
}

/// The hedge accounts covering `symbol` of `client`, with their weights.
fn weights_for(
    inputs: &PlanInputs,
    client: &ClientConfig,
    symbol: &str,
) -> Result<Vec<(Login, Decimal)>, ResidualReason> {
    let of = |a: &Allocation| {
        a.weights
            .iter()
            .map(|w| (w.hedge_login, w.weight))
            .collect()
    };
    if let Some(a) = Allocation::most_specific(&inputs.allocations, client.login, symbol, 2) {
        return Ok(of(a));
    }
    if let Some(h) = client.hedge_login {
        return Ok(vec![(h, Decimal::ONE)]);
    }
    if let Some(a) = Allocation::most_specific(&inputs.allocations, client.login, symbol, 0) {
        return Ok(of(a));
    }
    match inputs.accounts.as_slice() {
        [only] => Ok(vec![(only.login, Decimal::ONE)]),
        _ => Err(ResidualReason::NoAllocation),
    }
}

/// One hedge account's part of one symbol.
#[derive(Default)]
struct Part {
    /// Base quantity of the clients' exposure (signed).
    base: Decimal,
    client_lots: Decimal,
    /// Client lots times ratio and weight: shown when the hedge lots cannot be computed.
    ratio_lots: Decimal,
    hedged: Decimal,
    last_event_id: EventId,
    client_paused: bool,
}

/// One hedge account's possible orders for one symbol.
struct Choice<'a> {
    login: Login,
    part: &'a Part,
    spec: &'a SymbolSpec,
    /// Close-only: it may only take hedges back.
    paused: bool,
    account_symbol: String,
    contract_size: Decimal,
    exposure: Decimal,
    unhedged: Decimal,
    /// Signed order volumes (buys positive) it may send, `0` (nothing) first.
    candidates: Vec<Decimal>,
    /// Why nothing, when the account alone would send nothing; `None` when its hedges already
    /// match its part exactly (it is a choice only to take up another account's rounding).
    idle_reason: Option<ResidualReason>,
}

impl Choice<'_> {
    /// Signed uncovered base quantity after sending `order`.
    fn left(&self, order: Decimal) -> Decimal {
        (self.unhedged + order) * self.contract_size
    }

    /// The candidate it would send alone: nearest, then the smaller.
    fn own_best(&self) -> Decimal {
        *self
            .candidates
            .iter()
            .min_by_key(|v| (self.left(**v).abs(), v.abs()))
            .unwrap_or(&Decimal::ZERO)
    }

    /// Whether `order` takes back some of the account's hedges rather than adding to them.
    fn reduces(&self, order: Decimal) -> bool {
        let hedged = self.part.hedged;
        !hedged.is_zero()
            && !order.is_zero()
            && hedged.is_sign_negative() != order.is_sign_negative()
    }

    /// Whether the account may send `order`: a volume its symbol accepts as it is; a reduction
    /// never past the hedges (a reversal is reduce first, then open); under a pause, only
    /// reductions.
    fn allows(&self, order: Decimal) -> bool {
        if order.is_zero() {
            return true;
        }
        let volume = Volume(order.abs());
        if self.spec.normalize_volume(volume, Rounding::Down) != Ok(volume) {
            return false;
        }
        if self.reduces(order) {
            order.abs() <= self.part.hedged.abs()
        } else {
            !self.paused
        }
    }

    /// Adds `order` to the candidates when the account may send it and it is not yet listed.
    fn offer(&mut self, order: Decimal) {
        if self.allows(order) && !self.candidates.contains(&order) {
            self.candidates.push(order);
        }
    }

    /// Base quantity of one volume step on this account.
    fn step_quantity(&self) -> Decimal {
        self.spec.volume_step.0 * self.contract_size
    }
}

fn signum(d: Decimal) -> Decimal {
    if d.is_zero() {
        Decimal::ZERO
    } else if d.is_sign_negative() {
        Decimal::NEGATIVE_ONE
    } else {
        Decimal::ONE
    }
}

fn vol(d: Decimal) -> Volume {
    Volume(d.normalize())
}

/// Picks one candidate per account (see the module doc); returns an index per account.
fn choose(choices: &[Choice]) -> Vec<usize> {
    let best_alone = |c: &Choice| {
        let v = c.own_best();
        c.candidates.iter().position(|x| *x == v).unwrap_or(0)
    };
    let combinations = choices.iter().try_fold(1usize, |n, c| {
        n.checked_mul(c.candidates.len())
            .filter(|n| *n <= MAX_JOINT_COMBINATIONS)
    });
    if combinations.is_none() {
        return choices.iter().map(best_alone).collect();
    }
    let lens: Vec<usize> = choices.iter().map(|c| c.candidates.len()).collect();
    let mut best: Option<((Decimal, Decimal, Decimal), Vec<usize>)> = None;
    each_combination(&lens, |pick| {
        let mut total = Decimal::ZERO;
        let mut parts = Decimal::ZERO;
        let mut traded = Decimal::ZERO;
        for (c, &k) in choices.iter().zip(pick) {
            let v = c.candidates[k];
            let left = c.left(v);
            total += left;
            parts += left.abs();
            traded += v.abs() * c.contract_size;
        }
        let key = (total.abs(), parts, traded);
        if best.as_ref().is_none_or(|(b, _)| key < *b) {
            best = Some((key, pick.to_vec()));
        }
    });
    best.map(|(_, p)| p).unwrap_or_default()
}

/// Calls `visit` with every combination of one index below each of `lens`, odometer style.
fn each_combination(lens: &[usize], mut visit: impl FnMut(&[usize])) {
    if lens.contains(&0) {
        return;
    }
    let mut pick = vec![0usize; lens.len()];
    loop {
        visit(&pick);
        let mut i = 0;
        loop {
            if i == lens.len() {
                return;
            }
            pick[i] += 1;
            if pick[i] < lens[i] {
                break;
            }
            pick[i] = 0;
            i += 1;
        }
    }
}

/// Offers the account with the finest grid (in base quantity) the orders that complement each
/// combination of the others' candidates, rounded down and up to its grid: with them the joint
/// choice finds the total as close as the grids allow, even when that takes the finest account
/// several steps from its own share.
fn offer_complements(choices: &mut [Choice]) {
    if choices.len() < 2 {
        return;
    }
    let Some(finest) = (0..choices.len())
        .filter(|&i| choices[i].step_quantity().is_sign_positive())
        .min_by_key(|&i| choices[i].step_quantity())
    else {
        return;
    };
    let lens: Vec<usize> = choices
        .iter()
        .enumerate()
        .map(|(i, c)| if i == finest { 1 } else { c.candidates.len() })
        .collect();
    if lens.iter().product::<usize>() > MAX_JOINT_COMBINATIONS / 4 {
        return;
    }
    let mut wanted = Vec::new();
    each_combination(&lens, |pick| {
        let others: Decimal = choices
            .iter()
            .zip(pick)
            .enumerate()
            .filter(|(i, _)| *i != finest)
            .map(|(_, (c, &k))| c.left(c.candidates[k]))
            .sum();
        let f = &choices[finest];
        wanted.push(-others / f.contract_size - f.unhedged);
    });
    let f = &mut choices[finest];
    for order in wanted {
        let side = signum(order);
        for rounding in [Rounding::Down, Rounding::Up] {
            match f.spec.normalize_volume(Volume(order.abs()), rounding) {
                Ok(v) => f.offer(v.0 * side),
                Err(VolumeError::BelowMin { .. }) if rounding == Rounding::Up => {
                    f.offer(f.spec.volume_min.0 * side)
                }
                Err(_) => {}
            }
        }
    }
}

/// Every hedge account's plan, keyed by its login.
pub fn compute_all(inputs: &PlanInputs) -> BTreeMap<Login, HedgePlan> {
    let known: BTreeMap<Login, &AccountRegistration> =
        inputs.accounts.iter().map(|a| (a.login, a)).collect();
    let (mut parts, mut client_residuals) = gather_client_parts(inputs, &known);
    add_hedges(inputs, &known, &mut parts);
    let mut plans = empty_plans(inputs, &known);
    for (symbol, accounts) in by_symbol(&parts) {
        let mut choices = Vec::new();
        for (login, part) in accounts {
            let (Some(account), Some(plan)) = (known.get(&login), plans.get_mut(&login)) else {
                continue;
            };
            match account_choice(inputs, account, symbol, part) {
                AccountPart::Choice(choice) => choices.push(choice),
                AccountPart::Covered => {}
                AccountPart::Unconvertible(residual) => plan.residuals.push(residual),
            }
        }
        offer_complements(&mut choices);
        let picks = choose(&choices);
        place_orders(symbol, &choices, &picks, &mut plans);
    }
    for (login, plan) in &mut plans {
        add_refusals(plan, inputs.refusals.get(login).map_or(&[], Vec::as_slice));
    }
    client_residuals.sort_by(|a, b| {
        (&a.symbol, a.client_login, a.reason).cmp(&(&b.symbol, b.client_login, b.reason))
    });
    for plan in plans.values_mut() {
        plan.client_residuals = client_residuals.clone();
    }
    plans
}

/// Every hedge account with an empty plan.
fn empty_plans(
    inputs: &PlanInputs,
    known: &BTreeMap<Login, &AccountRegistration>,
) -> BTreeMap<Login, HedgePlan> {
    known
        .keys()
        .map(|&login| (login, empty_plan(inputs, login)))
        .collect()
}

fn empty_plan(inputs: &PlanInputs, hedge_login: Login) -> HedgePlan {
    HedgePlan {
        hedge_login,
        as_of_event_id: inputs.as_of_event_id,
        items: Vec::new(),
        residuals: Vec::new(),
        client_residuals: Vec::new(),
    }
}

/// Parts keyed by canonical symbol and hedge account.
type Parts<'a> = BTreeMap<(&'a str, Login), Part>;

/// Each client exposure in base quantity, split by its weights into the hedge accounts' parts;
/// what cannot be counted (no allocation, an unknown hedge account, a client symbol without a
/// usable contract size or with an ambiguous name) becomes a client residual instead.
fn gather_client_parts<'a>(
    inputs: &'a PlanInputs,
    known: &BTreeMap<Login, &AccountRegistration>,
) -> (Parts<'a>, Vec<PlanResidual>) {
    let clients: BTreeMap<Login, &ClientConfig> =
        inputs.clients.iter().map(|c| (c.login, c)).collect();
    let mut parts = Parts::new();
    let mut client_residuals = Vec::new();
    for e in &inputs.exposures {
        let Some(client) = clients.get(&e.login) else {
            continue;
        };
        // A hedge account's own positions are hedges, never client exposure.
        if known.contains_key(&e.login) || e.net.volume().0.is_zero() {
            continue;
        }
        let residual = ClientResidual::new(client, e);
        let weights = match weights_for(inputs, client, &e.symbol) {
            Ok(w) => w,
            Err(reason) => {
                client_residuals.push(residual.whole(reason, vec![]));
                continue;
            }
        };
        let contract_size = match client_contract_size(client, &e.symbol) {
            Ok(cs) => cs,
            Err((reason, candidates)) => {
                client_residuals.push(residual.whole(reason, candidates));
                continue;
            }
        };
        // Within a Decimal: lots < 10^11, contract size <= 10^9, ratio <= 1000.
        let base = residual.lots * contract_size * client.ratio;
        let client_paused = inputs
            .pauses
            .iter()
            .any(|p| p.login.is_some() && p.covers(e.login, &e.symbol));
        for (hedge_login, weight) in weights {
            if !known.contains_key(&hedge_login) {
                client_residuals.push(residual.share(
                    ResidualReason::HedgeAccountUnknown,
                    weight,
                    base,
                ));
                continue;
            }
            let part = parts.entry((e.symbol.as_str(), hedge_login)).or_default();
            part.base += base * weight;
            part.client_lots += residual.lots * weight;
            part.ratio_lots += residual.ratio_lots * weight;
            part.last_event_id = part.last_event_id.max(e.last_event_id);
            part.client_paused |= client_paused;
        }
    }
    (parts, client_residuals)
}

/// The contract size of a client's symbol, or why it has none the plan can use.
fn client_contract_size(
    client: &ClientConfig,
    symbol: &str,
) -> Result<Decimal, (ResidualReason, Vec<String>)> {
    let missing = (ResidualReason::ContractSizeMissing, vec![]);
    match client.registration.as_ref().map(|r| r.lookup_spec(symbol)) {
        Some(SpecLookup::Found(spec)) => usable_contract_size(spec).ok_or(missing),
        Some(SpecLookup::Ambiguous(candidates)) => {
            Err((ResidualReason::AmbiguousSymbol, candidates))
        }
        Some(SpecLookup::Missing(_)) | None => Err(missing),
    }
}

/// One client exposure, ready to be listed as a client residual (whole or a weighted share).
struct ClientResidual<'a> {
    client: &'a ClientConfig,
    exposure: &'a ClientExposure,
    lots: Decimal,
    ratio_lots: Decimal,
}

impl<'a> ClientResidual<'a> {
    fn new(client: &'a ClientConfig, exposure: &'a ClientExposure) -> Self {
        let lots = exposure.net.volume().0;
        ClientResidual {
            client,
            exposure,
            lots,
            ratio_lots: lots * client.ratio,
        }
    }

    fn build(
        &self,
        reason: ResidualReason,
        share: Decimal,
        base: Option<Decimal>,
        candidates: Vec<String>,
    ) -> PlanResidual {
        // Only a residual needs the client's name for the symbol: looking it up matches the
        // canonical name against every symbol the client registered.
        let account_symbol = self.client.registration.as_ref().map_or_else(
            || self.exposure.symbol.clone(),
            |r| r.account_name(&self.exposure.symbol),
        );
        PlanResidual {
            symbol: self.exposure.symbol.clone(),
            account_symbol,
            exposure: vol(self.ratio_lots * share),
            hedged: Volume::ZERO,
            unhedged: vol(self.ratio_lots * share),
            reason,
            client_login: Some(self.exposure.login),
            client_lots: vol(self.lots * share),
            base_quantity: base.map(|b| vol(b * share)),
            hedge_lots: Volume::ZERO,
            candidates,
            detail: None,
        }
    }

    /// The whole exposure, whose base quantity is unknown.
    fn whole(&self, reason: ResidualReason, candidates: Vec<String>) -> PlanResidual {
        self.build(reason, Decimal::ONE, None, candidates)
    }

    /// The share `weight` of the exposure, whose base quantity is `base`.
    fn share(&self, reason: ResidualReason, weight: Decimal, base: Decimal) -> PlanResidual {
        self.build(reason, weight, Some(base), vec![])
    }
}

/// Adds each hedge account's open hedges to its parts.
fn add_hedges<'a>(
    inputs: &'a PlanInputs,
    known: &BTreeMap<Login, &AccountRegistration>,
    parts: &mut Parts<'a>,
) {
    for h in &inputs.hedges {
        if !known.contains_key(&h.hedge_login) {
            continue;
        }
        let part = parts.entry((h.symbol.as_str(), h.hedge_login)).or_default();
        part.hedged += h.net.volume().0;
        part.last_event_id = part.last_event_id.max(h.last_event_id);
    }
}

/// The parts grouped by canonical symbol (the rounding across accounts is per symbol).
fn by_symbol<'p, 'a>(parts: &'p Parts<'a>) -> BTreeMap<&'a str, Vec<(Login, &'p Part)>> {
    let mut grouped: BTreeMap<&str, Vec<(Login, &Part)>> = BTreeMap::new();
    for ((symbol, login), part) in parts {
        grouped.entry(symbol).or_default().push((*login, part));
    }
    grouped
}

/// A part the hedge account cannot convert to its lots, as a residual in the clients' lots.
fn unconvertible(
    symbol: &str,
    account_symbol: &str,
    part: &Part,
    reason: ResidualReason,
    candidates: Vec<String>,
) -> PlanResidual {
    PlanResidual {
        symbol: symbol.to_owned(),
        account_symbol: account_symbol.to_owned(),
        exposure: vol(part.ratio_lots),
        hedged: vol(part.hedged),
        unhedged: vol(part.ratio_lots + part.hedged),
        reason,
        client_login: None,
        client_lots: vol(part.client_lots),
        base_quantity: Some(vol(part.base)),
        hedge_lots: vol(part.hedged),
        candidates,
        detail: None,
    }
}

/// What a hedge account makes of its part of one symbol.
enum AccountPart<'p> {
    /// Nothing to do: the hedges match the clients.
    Covered,
    Choice(Choice<'p>),
    /// Its symbol cannot be converted to its lots.
    Unconvertible(PlanResidual),
}

/// What `account` may send for its part of `symbol`.
fn account_choice<'p>(
    inputs: &PlanInputs,
    account: &'p AccountRegistration,
    symbol: &str,
    part: &'p Part,
) -> AccountPart<'p> {
    if part.base.is_zero() && part.hedged.is_zero() {
        return AccountPart::Covered;
    }
    let account_symbol = account.account_name(symbol);
    let residual = |reason, candidates| {
        AccountPart::Unconvertible(unconvertible(
            symbol,
            &account_symbol,
            part,
            reason,
            candidates,
        ))
    };
    let spec = match account.lookup_spec(symbol) {
        SpecLookup::Found(spec) => spec,
        SpecLookup::Missing(_) => return residual(ResidualReason::NoSymbolSpec, vec![]),
        SpecLookup::Ambiguous(candidates) => {
            return residual(ResidualReason::AmbiguousSymbol, candidates)
        }
    };
    let Some(contract_size) = usable_contract_size(spec) else {
        return residual(ResidualReason::ContractSizeMissing, vec![]);
    };
    let exposure = part.base / contract_size;
    let unhedged = exposure + part.hedged;
    let paused = part.client_paused
        || inputs
            .pauses
            .iter()
            .any(|p| p.covers(account.login, symbol));
    let (offers, idle_reason) = if unhedged.is_zero() {
        (exact_candidates(spec), None)
    } else {
        let (offers, reason) = grid_candidates(spec, unhedged, part.hedged);
        (offers, Some(reason))
    };
    let mut choice = Choice {
        login: account.login,
        part,
        spec,
        paused,
        account_symbol,
        contract_size,
        exposure,
        unhedged,
        candidates: vec![Decimal::ZERO],
        idle_reason,
    };
    for order in offers {
        choice.offer(order);
    }
    if paused && choice.candidates.len() == 1 && choice.idle_reason.is_some() {
        choice.idle_reason = Some(ResidualReason::Paused);
    }
    AccountPart::Choice(choice)
}

/// The signed orders an account may send for `unhedged` on its grid: `|unhedged|`
/// rounded down and up and one step beyond each (so that, jointly, one account can take up
/// what another's coarser grid leaves), on the side that covers it; with the reason for sending
/// nothing when no rounding gives a volume.
fn grid_candidates(
    spec: &SymbolSpec,
    unhedged: Decimal,
    hedged: Decimal,
) -> (Vec<Decimal>, ResidualReason) {
    let side = -signum(unhedged);
    // Covering on the side that takes hedges back goes no further than the hedges.
    let takes_back = !hedged.is_zero() && signum(hedged) != side;
    let wanted = if takes_back {
        unhedged.abs().min(hedged.abs())
    } else {
        unhedged.abs()
    };
    let step = spec.volume_step.0;
    let mut offers = Vec::new();
    let mut idle_reason = ResidualReason::BelowMin;
    for (rounding, beyond) in [(Rounding::Down, -step), (Rounding::Up, step)] {
        match spec.normalize_volume(Volume(wanted), rounding) {
            Ok(v) => offers.extend([v.0 * side, (v.0 + beyond) * side]),
            Err(VolumeError::BadStep { .. }) => idle_reason = ResidualReason::BadSymbolSpec,
            // Below the minimum: the minimum itself is the one step beyond.
            Err(_) if rounding == Rounding::Up => offers.push(spec.volume_min.0 * side),
            Err(_) => {}
        }
    }
    (offers, idle_reason)
}

/// The orders of an account whose hedges match its part exactly: the smallest volume either
/// way, to take up what another account's grid leaves on the symbol.
fn exact_candidates(spec: &SymbolSpec) -> Vec<Decimal> {
    vec![spec.volume_min.0, -spec.volume_min.0]
}

/// Puts each account's picked volume for `symbol` in its plan: an order, or a residual when it
/// sends nothing.
fn place_orders(
    symbol: &str,
    choices: &[Choice],
    picks: &[usize],
    plans: &mut BTreeMap<Login, HedgePlan>,
) {
    // Whether the grids of several accounts were combined: then an account left idle could
    // have traded, and is idle because the others cover its part.
    let combined = choices
        .iter()
        .zip(picks)
        .any(|(c, k)| c.candidates[*k] != c.own_best());
    for (c, &k) in choices.iter().zip(picks) {
        let signed = c.candidates[k];
        let Some(plan) = plans.get_mut(&c.login) else {
            continue;
        };
        if !signed.is_zero() {
            plan.items.push(order(symbol, c, signed));
            continue;
        }
        // An account whose hedges match its part exactly leaves nothing to explain.
        let Some(idle_reason) = c.idle_reason else {
            continue;
        };
        let reason = if c.candidates.len() > 1 && (combined || !c.own_best().is_zero()) {
            ResidualReason::AllocationRounding
        } else {
            idle_reason
        };
        plan.residuals.push(idle_residual(symbol, c, reason));
    }
}

/// An account that sends nothing for its part.
fn idle_residual(symbol: &str, c: &Choice, reason: ResidualReason) -> PlanResidual {
    PlanResidual {
        symbol: symbol.to_owned(),
        account_symbol: c.account_symbol.clone(),
        exposure: vol(c.exposure),
        hedged: vol(c.part.hedged),
        unhedged: vol(c.unhedged),
        reason,
        client_login: None,
        client_lots: vol(c.part.client_lots),
        base_quantity: Some(vol(c.part.base)),
        hedge_lots: vol(c.part.hedged),
        candidates: vec![],
        detail: None,
    }
}

/// Lists what the hedge account's pre-trade checks refused of the plan's opening orders as
/// residuals, beside the orders: the orders stay, so the hedger checks them again each time and
/// sends them once the condition clears. A refusal of an order the plan no longer asks for (another
/// symbol or side, a reduction now) is stale and left out; one of more than the order now asks is
/// cut to the order.
fn add_refusals(plan: &mut HedgePlan, refusals: &[PretradeRefusal]) {
    for refusal in refusals {
        let Some(item) = plan.items.iter().find(|i| {
            i.symbol == refusal.symbol && i.side == refusal.side && i.action == PlanAction::Open
        }) else {
            continue;
        };
        let refused = refusal.volume.0.min(item.volume.0);
        if refused.is_sign_negative() || refused.is_zero() {
            continue;
        }
        let sent = (item.volume.0 - refused) * Decimal::from(item.side.sign());
        let residual = PlanResidual {
            symbol: item.symbol.clone(),
            account_symbol: item.account_symbol.clone(),
            exposure: item.exposure,
            hedged: item.hedged,
            unhedged: vol(item.unhedged.0 + sent),
            reason: ResidualReason::PretradeRefused,
            client_login: None,
            client_lots: item.client_lots,
            base_quantity: Some(item.base_quantity),
            hedge_lots: item.hedged,
            candidates: vec![],
            detail: Some(refusal.reason.clone()),
        };
        plan.residuals.push(residual);
    }
}

/// The order `signed_order` (buys positive) that covers (part of) an account's uncovered part.
fn order(symbol: &str, c: &Choice, signed_order: Decimal) -> PlanItem {
    let side = if signed_order.is_sign_positive() {
        Side::Buy
    } else {
        Side::Sell
    };
    let volume = signed_order.abs();
    PlanItem {
        id: PlanItemId(c.part.last_event_id.get()),
        symbol: symbol.to_owned(),
        account_symbol: c.account_symbol.clone(),
        side,
        volume: vol(volume),
        action: if c.reduces(signed_order) {
            PlanAction::Reduce
        } else {
            PlanAction::Open
        },
        exposure: vol(c.exposure),
        hedged: vol(c.part.hedged),
        unhedged: vol(c.unhedged),
        residual: vol(c.unhedged + signed_order),
        client_lots: vol(c.part.client_lots),
        base_quantity: vol(c.part.base),
        hedge_lots: vol(c.part.hedged + signed_order),
    }
}

/// The plan of hedge account `hedge_login` (empty when it is not among the inputs' accounts).
pub fn compute(inputs: &PlanInputs, hedge_login: Login) -> HedgePlan {
    compute_all(inputs)
        .remove(&hedge_login)
        .unwrap_or_else(|| empty_plan(inputs, hedge_login))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedge_center_api::model::{AccountRole, AllocationWeight};
    use hedge_domain::{AccountMarginMode, SymbolMap};
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    const H: Login = Login(900);
    const H2: Login = Login(901);

    fn spec(name: &str, contract_size: Decimal, step: Decimal) -> SymbolSpec {
        let mut s = SymbolSpec::forex(name, 5);
        s.contract_size = contract_size;
        s.volume_min = Volume(step);
        s.volume_step = Volume(step);
        s
    }

    fn account(
        login: Login,
        role: AccountRole,
        map: SymbolMap,
        specs: Vec<SymbolSpec>,
    ) -> AccountRegistration {
        AccountRegistration {
            login,
            role,
            server: String::new(),
            company: String::new(),
            margin_mode: AccountMarginMode::RetailHedging,
            symbol_map: map,
            hedge_ratio: Decimal::ONE,
            hedge_login: None,
            symbols: specs,
            currency: "USD".into(),
        }
    }

    fn forex_specs(suffix: &str) -> Vec<SymbolSpec> {
        ["EURUSD", "GBPUSD", "USDJPY"]
            .iter()
            .map(|s| SymbolSpec::forex(format!("{s}{suffix}"), 5))
            .collect()
    }

    fn client(
        login: u64,
        ratio: Decimal,
        hedge_login: Option<Login>,
        specs: Vec<SymbolSpec>,
    ) -> ClientConfig {
        ClientConfig {
            login: Login(login),
            ratio,
            hedge_login,
            registration: Some(account(
                Login(login),
                AccountRole::Client,
                SymbolMap::identity(),
                specs,
            )),
        }
    }

    fn net(d: Decimal) -> Exposure {
        Exposure::from_volume(Volume(d)).unwrap()
    }

    fn exposure(login: u64, symbol: &str, lots: Decimal, id: u64) -> ClientExposure {
        ClientExposure {
            login: Login(login),
            symbol: symbol.into(),
            net: net(lots),
            last_event_id: EventId(id),
        }
    }

    fn cover(hedge_login: Login, symbol: &str, lots: Decimal, id: u64) -> HedgeCover {
        HedgeCover {
            hedge_login,
            symbol: symbol.into(),
            net: net(lots),
            last_event_id: EventId(id),
        }
    }

    fn allocation(
        client: Option<u64>,
        symbol: Option<&str>,
        weights: &[(Login, Decimal)],
        event_id: u64,
    ) -> Allocation {
        Allocation {
            client_login: client.map(Login),
            symbol: symbol.map(str::to_owned),
            weights: weights
                .iter()
                .map(|(h, w)| AllocationWeight {
                    hedge_login: *h,
                    weight: *w,
                })
                .collect(),
            actor: "ops".into(),
            reason: String::new(),
            since_ms: 0,
            event_id: EventId(event_id),
        }
    }

    fn inputs(
        exposures: &[(u64, &str, Decimal, u64)],
        hedges: &[(&str, Decimal, u64)],
    ) -> PlanInputs {
        PlanInputs {
            accounts: vec![account(
                H,
                AccountRole::Hedge,
                SymbolMap::from_affix(".h"),
                vec![
                    SymbolSpec::forex("EURUSD.h", 5),
                    SymbolSpec::forex("GBPUSD.h", 5),
                ],
            )],
            clients: vec![
                client(1, Decimal::ONE, None, forex_specs("")),
                client(2, dec!(0.5), None, forex_specs("")),
                client(3, Decimal::ONE, Some(Login(777)), forex_specs("")),
            ],
            exposures: exposures
                .iter()
                .map(|(l, s, v, id)| exposure(*l, s, *v, *id))
                .collect(),
            hedges: hedges
                .iter()
                .map(|(s, v, id)| cover(H, s, *v, *id))
                .collect(),
            pauses: vec![],
            allocations: vec![],
            refusals: BTreeMap::new(),
            as_of_event_id: EventId(99),
        }
    }

    fn item<'a>(plan: &'a HedgePlan, symbol: &str) -> &'a PlanItem {
        plan.items
            .iter()
            .find(|i| i.symbol == symbol)
            .unwrap_or_else(|| panic!("no item for {symbol}: {plan:?}"))
    }

    #[test]
    fn mixed_sides_ratio_and_naming() {
        // client 1: +0.3 -0.1 net +0.2; client 2 (ratio 0.5): -0.5 => -0.25; client 3 is
        // registered with another hedge account, which is not registered.
        let plan = compute(
            &inputs(
                &[
                    (1, "EURUSD", dec!(0.2), 5),
                    (2, "EURUSD", dec!(-0.5), 7),
                    (3, "EURUSD", dec!(4), 8),
                ],
                &[],
            ),
            H,
        );
        assert_eq!(plan.items.len(), 1);
        let item = &plan.items[0];
        assert_eq!(item.exposure, Volume(dec!(-0.05)));
        assert_eq!(item.side, Side::Buy);
        assert_eq!(item.volume, Volume(dec!(0.05)));
        assert_eq!(item.account_symbol, "EURUSD.h");
        assert_eq!(item.id, PlanItemId(7));
        assert_eq!(item.residual, Volume::ZERO);
        assert_eq!(item.client_lots, Volume(dec!(-0.3)));
        assert_eq!(item.base_quantity, Volume(dec!(-5000)));
        assert_eq!(item.hedge_lots, Volume(dec!(0.05)));
        let unknown = &plan.client_residuals[0];
        assert_eq!(
            (unknown.client_login, unknown.reason, unknown.client_lots),
            (
                Some(Login(3)),
                ResidualReason::HedgeAccountUnknown,
                Volume(dec!(4))
            )
        );
    }

    #[test]
    fn rounding_clamping_and_residuals() {
        let plan = compute(
            &inputs(
                &[
                    (1, "EURUSD", dec!(0.126), 3),
                    (1, "GBPUSD", dec!(250), 4),
                    (1, "USDJPY", dec!(1), 6),
                    (2, "EURUSD", dec!(0.002), 9),
                ],
                &[],
            ),
            H,
        );
        let eur = item(&plan, "EURUSD");
        assert_eq!(eur.volume, Volume(dec!(0.13)));
        assert_eq!(eur.side, Side::Sell);
        assert_eq!(eur.residual, Volume(dec!(-0.003)));
        let gbp = item(&plan, "GBPUSD");
        assert_eq!(gbp.volume, Volume(dec!(100)));
        assert_eq!(gbp.residual, Volume(dec!(150)));
        assert_eq!(plan.residuals.len(), 1);
        assert_eq!(plan.residuals[0].reason, ResidualReason::NoSymbolSpec);
        let tiny = compute(&inputs(&[(1, "EURUSD", dec!(0.004), 3)], &[]), H);
        assert!(tiny.items.is_empty());
        assert_eq!(tiny.residuals[0].reason, ResidualReason::BelowMin);
        assert_eq!(tiny.residuals[0].unhedged, Volume(dec!(0.004)));
        // exactly half a step: nothing more is traded, so a covered plan stays covered
        let half = compute(&inputs(&[(1, "EURUSD", dec!(0.105), 3)], &[]), H);
        assert_eq!(item(&half, "EURUSD").volume, Volume(dec!(0.1)));
        let after = compute(
            &inputs(
                &[(1, "EURUSD", dec!(0.105), 3)],
                &[("EURUSD", dec!(-0.1), 4)],
            ),
            H,
        );
        assert!(after.items.is_empty());
        assert_eq!(after.residuals[0].reason, ResidualReason::BelowMin);
    }

    #[test]
    fn hedges_shrink_the_plan_and_reduce_when_clients_shrink() {
        let covered = compute(
            &inputs(&[(1, "EURUSD", dec!(0.3), 3)], &[("EURUSD", dec!(-0.3), 4)]),
            H,
        );
        assert!(covered.items.is_empty() && covered.residuals.is_empty());
        let shrunk = compute(
            &inputs(&[(1, "EURUSD", dec!(0.1), 5)], &[("EURUSD", dec!(-0.3), 4)]),
            H,
        );
        let item = &shrunk.items[0];
        assert_eq!(
            (item.side, item.volume, item.action),
            (Side::Buy, Volume(dec!(0.2)), PlanAction::Reduce)
        );
        assert_eq!(item.id, PlanItemId(5));
        assert_eq!(item.hedge_lots, Volume(dec!(-0.1)));
        // clients reversed: first take back the whole hedge, the rest comes after
        let flipped = compute(
            &inputs(
                &[(1, "EURUSD", dec!(-0.2), 6)],
                &[("EURUSD", dec!(-0.3), 4)],
            ),
            H,
        );
        let item = &flipped.items[0];
        assert_eq!(
            (item.side, item.volume, item.action),
            (Side::Buy, Volume(dec!(0.3)), PlanAction::Reduce)
        );
        assert_eq!(item.residual, Volume(dec!(-0.2)));
    }

    #[test]
    fn pauses_keep_only_reductions() {
        let pause = |login: u64, symbol: Option<&str>| Pause {
            login: Some(Login(login)),
            symbol: symbol.map(str::to_owned),
            actor: "ops".into(),
            reason: String::new(),
            since_ms: 0,
            event_id: EventId(1),
        };
        let mut i = inputs(&[(1, "EURUSD", dec!(0.3), 3)], &[]);
        i.pauses.push(pause(900, None));
        let plan = compute(&i, H);
        assert!(plan.items.is_empty());
        assert_eq!(plan.residuals[0].reason, ResidualReason::Paused);
        let mut i = inputs(&[(1, "EURUSD", dec!(0.1), 3)], &[("EURUSD", dec!(-0.3), 2)]);
        i.pauses.push(pause(1, Some("EURUSD")));
        let plan = compute(&i, H);
        assert_eq!(plan.items[0].action, PlanAction::Reduce);
    }

    /// Gold at three brokers: `GOLD` of 100 oz, `XAUUSD.r` of 10 oz, `XAUUSD` of 1 oz.
    fn gold_world(hedge: SymbolSpec) -> PlanInputs {
        let gold = |name: &str, cs: Decimal, step: Decimal| vec![spec(name, cs, step)];
        PlanInputs {
            accounts: vec![account(
                H,
                AccountRole::Hedge,
                SymbolMap::identity(),
                vec![hedge],
            )],
            clients: vec![
                client(1, Decimal::ONE, None, gold("GOLD", dec!(100), dec!(0.01))),
                client(2, Decimal::ONE, None, gold("XAUUSD.r", dec!(10), dec!(0.1))),
                client(3, Decimal::ONE, None, gold("XAUUSD", dec!(1), dec!(1))),
            ],
            exposures: vec![
                exposure(1, "XAUUSD", dec!(1), 10),
                exposure(2, "XAUUSD", dec!(3), 11),
                exposure(3, "XAUUSD", dec!(-5), 12),
            ],
            hedges: vec![],
            pauses: vec![],
            allocations: vec![],
            refusals: BTreeMap::new(),
            as_of_event_id: EventId(20),
        }
    }

    #[test]
    fn contract_sizes_differ_and_the_hedge_is_opposite_in_base_quantity() {
        // 100 + 30 - 5 = 125 oz
        let plan = compute(&gold_world(spec("XAUUSDm", dec!(10), dec!(0.1))), H);
        let gold = item(&plan, "XAUUSD");
        assert_eq!(gold.account_symbol, "XAUUSDm");
        assert_eq!(gold.client_lots, Volume(dec!(-1)));
        assert_eq!(gold.base_quantity, Volume(dec!(125)));
        assert_eq!(gold.exposure, Volume(dec!(12.5)));
        assert_eq!((gold.side, gold.volume), (Side::Sell, Volume(dec!(12.5))));
        assert_eq!(gold.hedge_lots, Volume(dec!(-12.5)));
        assert_eq!(gold.residual, Volume::ZERO);
        // 100 oz lots in steps of 0.1: 1.25 lots is between 1.2 and 1.3; the smaller is as close
        let plan = compute(&gold_world(spec("GOLD", dec!(100), dec!(0.1))), H);
        let gold = item(&plan, "XAUUSD");
        assert_eq!(
            (gold.volume, gold.residual),
            (Volume(dec!(1.2)), Volume(dec!(0.05)))
        );
        assert!((gold.volume.0 % dec!(0.1)).is_zero());
    }

    #[test]
    fn a_missing_contract_size_or_an_ambiguous_name_is_a_residual_never_a_guess() {
        let mut w = gold_world(spec("XAUUSD", dec!(1), dec!(1)));
        w.clients[1].registration.as_mut().unwrap().symbols[0].contract_size = Decimal::ZERO;
        w.clients.push(ClientConfig {
            login: Login(4),
            ratio: Decimal::ONE,
            hedge_login: None,
            registration: None,
        });
        w.exposures.push(exposure(4, "XAUUSD", dec!(2), 13));
        // client 3 has two names that could be gold
        w.clients[2]
            .registration
            .as_mut()
            .unwrap()
            .symbols
            .push(spec("GOLD", dec!(100), dec!(0.01)));
        w.clients[2].registration.as_mut().unwrap().symbol_map = SymbolMap::from_affix("m");
        let plan = compute(&w, H);
        // only client 1's 100 oz are counted
        let gold = item(&plan, "XAUUSD");
        assert_eq!(gold.base_quantity, Volume(dec!(100)));
        let reasons: Vec<_> = plan
            .client_residuals
            .iter()
            .map(|r| (r.client_login.unwrap().0, r.reason, r.candidates.clone()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (2, ResidualReason::ContractSizeMissing, vec![]),
                (
                    3,
                    ResidualReason::AmbiguousSymbol,
                    vec!["GOLD".into(), "XAUUSD".into()]
                ),
                (4, ResidualReason::ContractSizeMissing, vec![]),
            ]
        );
        // the hedge side: a zero contract size, then two names
        let mut w = gold_world(spec("XAUUSD", Decimal::ZERO, dec!(1)));
        let plan = compute(&w, H);
        assert!(plan.items.is_empty());
        assert_eq!(
            plan.residuals[0].reason,
            ResidualReason::ContractSizeMissing
        );
        w.accounts[0].symbols = vec![
            spec("GOLD", dec!(100), dec!(0.01)),
            spec("XAUUSD.pro", dec!(1), dec!(1)),
        ];
        let plan = compute(&w, H);
        assert_eq!(plan.residuals[0].reason, ResidualReason::AmbiguousSymbol);
        assert_eq!(
            plan.residuals[0].candidates,
            vec!["GOLD".to_owned(), "XAUUSD.pro".to_owned()]
        );
        // the operator's explicit map settles it
        w.accounts[0].symbol_map = SymbolMap::identity().with_explicit("GOLD=XAUUSD").unwrap();
        let plan = compute(&w, H);
        assert_eq!(item(&plan, "XAUUSD").volume, Volume(dec!(1.25)));
    }

    /// One client holding 10 lots of 100 oz; hedge accounts `H` (100 oz, step 0.01) and `H2`
    /// (10 oz, step 0.1).
    fn two_hedges() -> PlanInputs {
        PlanInputs {
            accounts: vec![
                account(
                    H,
                    AccountRole::Hedge,
                    SymbolMap::identity(),
                    vec![spec("XAUUSD", dec!(100), dec!(0.01))],
                ),
                account(
                    H2,
                    AccountRole::Hedge,
                    SymbolMap::identity(),
                    vec![spec("GOLD", dec!(10), dec!(0.1))],
                ),
            ],
            clients: vec![client(
                1,
                Decimal::ONE,
                None,
                vec![spec("XAUUSD.r", dec!(100), dec!(0.01))],
            )],
            exposures: vec![exposure(1, "XAUUSD", dec!(10), 5)],
            hedges: vec![],
            pauses: vec![],
            allocations: vec![],
            refusals: BTreeMap::new(),
            as_of_event_id: EventId(9),
        }
    }

    #[test]
    fn several_hedge_accounts_need_an_allocation() {
        let plans = compute_all(&two_hedges());
        for plan in plans.values() {
            assert!(plan.items.is_empty() && plan.residuals.is_empty());
            assert_eq!(plan.client_residuals.len(), 1);
            assert_eq!(
                plan.client_residuals[0].reason,
                ResidualReason::NoAllocation
            );
            assert_eq!(plan.client_residuals[0].client_lots, Volume(dec!(10)));
        }
        // one hedge account: it covers everyone
        let mut one = two_hedges();
        one.accounts.pop();
        let plan = compute(&one, H);
        assert_eq!(item(&plan, "XAUUSD").volume, Volume(dec!(10)));
        assert!(plan.client_residuals.is_empty());
    }

    #[test]
    fn sixty_forty_in_base_quantity_and_a_move_reduces_one_and_adds_on_the_other() {
        let mut w = two_hedges();
        w.allocations = vec![allocation(
            None,
            None,
            &[(H, dec!(0.6)), (H2, dec!(0.4))],
            7,
        )];
        let plans = compute_all(&w);
        let a = item(&plans[&H], "XAUUSD");
        let b = item(&plans[&H2], "XAUUSD");
        assert_eq!(
            (a.base_quantity, a.volume, a.side),
            (Volume(dec!(600)), Volume(dec!(6)), Side::Sell)
        );
        assert_eq!(
            (b.base_quantity, b.volume, b.account_symbol.as_str()),
            (Volume(dec!(400)), Volume(dec!(40)), "GOLD")
        );
        assert_eq!(
            (a.client_lots, b.client_lots),
            (Volume(dec!(6)), Volume(dec!(4)))
        );
        // hedged at 60/40, then moved to 40/60
        w.hedges = vec![
            cover(H, "XAUUSD", dec!(-6), 11),
            cover(H2, "XAUUSD", dec!(-40), 12),
        ];
        assert!(compute_all(&w)
            .values()
            .all(|p| p.items.is_empty() && p.residuals.is_empty()));
        w.allocations = vec![allocation(
            None,
            None,
            &[(H, dec!(0.4)), (H2, dec!(0.6))],
            13,
        )];
        let plans = compute_all(&w);
        let a = item(&plans[&H], "XAUUSD");
        let b = item(&plans[&H2], "XAUUSD");
        assert_eq!(
            (a.side, a.volume, a.action),
            (Side::Buy, Volume(dec!(2)), PlanAction::Reduce)
        );
        assert_eq!(
            (b.side, b.volume, b.action),
            (Side::Sell, Volume(dec!(20)), PlanAction::Open)
        );
        assert_eq!(
            (a.hedge_lots, b.hedge_lots),
            (Volume(dec!(-4)), Volume(dec!(-60)))
        );
    }

    #[test]
    fn the_most_specific_allocation_wins() {
        let mut w = two_hedges();
        w.clients.push(client(
            2,
            Decimal::ONE,
            Some(H2),
            vec![spec("XAUUSD", dec!(100), dec!(0.01))],
        ));
        w.exposures.push(exposure(2, "XAUUSD", dec!(1), 6));
        w.allocations = vec![allocation(None, None, &[(H, Decimal::ONE)], 7)];
        // client 1 follows the global allocation, client 2 its registered hedge account
        let plans = compute_all(&w);
        assert_eq!(item(&plans[&H], "XAUUSD").base_quantity, Volume(dec!(1000)));
        assert_eq!(item(&plans[&H2], "XAUUSD").base_quantity, Volume(dec!(100)));
        // a client allocation beats the registered account
        w.allocations
            .push(allocation(Some(2), None, &[(H, Decimal::ONE)], 8));
        let plans = compute_all(&w);
        assert_eq!(item(&plans[&H], "XAUUSD").base_quantity, Volume(dec!(1100)));
        assert!(plans[&H2].items.is_empty());
        // and a client-and-symbol allocation beats that
        w.allocations.push(allocation(
            Some(2),
            Some("XAUUSD"),
            &[(H2, Decimal::ONE)],
            9,
        ));
        assert_eq!(
            item(&compute(&w, H2), "XAUUSD").base_quantity,
            Volume(dec!(100))
        );
    }

    #[test]
    fn parts_are_rounded_so_the_total_is_as_close_as_the_grids_allow() {
        // 1 unit split 50/50 on two accounts that trade whole units: one of them covers it all.
        let mut w = two_hedges();
        for a in &mut w.accounts {
            a.symbols = vec![spec(&a.symbols[0].name.clone(), Decimal::ONE, Decimal::ONE)];
        }
        w.clients[0].registration.as_mut().unwrap().symbols[0].contract_size = Decimal::ONE;
        w.exposures = vec![exposure(1, "XAUUSD", dec!(1), 5)];
        w.allocations = vec![allocation(
            None,
            None,
            &[(H, dec!(0.5)), (H2, dec!(0.5))],
            7,
        )];
        let plans = compute_all(&w);
        assert_eq!(item(&plans[&H], "XAUUSD").volume, Volume(Decimal::ONE));
        assert_eq!(item(&plans[&H], "XAUUSD").residual, Volume(dec!(-0.5)));
        let left = &plans[&H2].residuals[0];
        assert_eq!(
            (left.reason, left.unhedged),
            (ResidualReason::AllocationRounding, Volume(dec!(0.5)))
        );
        // once it is covered, nothing moves
        w.hedges = vec![cover(H, "XAUUSD", dec!(-1), 8)];
        assert!(compute_all(&w).values().all(|p| p.items.is_empty()));
    }

    /// Two hedge accounts on gold, 60/40: one on a 1 oz grid (100 oz lots), one on a 0.1 oz grid
    /// (10 oz lots), with the clients short `client_lots` of 100 oz and the hedges as given.
    fn fine_and_coarse(client_lots: Decimal, held: Decimal, held2: Decimal) -> PlanInputs {
        let mut w = two_hedges();
        w.accounts[1].symbols = vec![spec("GOLD", dec!(10), dec!(0.01))];
        w.exposures = vec![exposure(1, "XAUUSD", client_lots, 5)];
        w.allocations = vec![allocation(
            None,
            None,
            &[(H, dec!(0.6)), (H2, dec!(0.4))],
            7,
        )];
        w.hedges = vec![cover(H, "XAUUSD", held, 8), cover(H2, "XAUUSD", held2, 8)];
        w
    }

    /// The hedges in ounces after every plan item of `plans` is filled.
    fn ounces_after(w: &mut PlanInputs, plans: &BTreeMap<Login, HedgePlan>) -> Decimal {
        for login in [H, H2] {
            for i in &plans[&login].items {
                let c = w
                    .hedges
                    .iter_mut()
                    .find(|c| c.hedge_login == login)
                    .unwrap();
                let lots = c.net.volume().0 + i.volume.0 * Decimal::from(i.side.sign());
                c.net = net(lots);
            }
        }
        w.hedges
            .iter()
            .map(|c| {
                c.net.volume().0
                    * if c.hedge_login == H {
                        dec!(100)
                    } else {
                        dec!(10)
                    }
            })
            .sum()
    }

    #[test]
    fn an_account_at_its_exact_share_takes_up_what_the_coarser_grid_leaves() {
        // Clients short 32 oz: 19.2 / 12.8. The coarse account holds 19 (it cannot hold 19.2),
        // the fine one exactly 12.8: the fine one takes the 0.2 oz.
        let mut w = fine_and_coarse(dec!(-0.32), dec!(0.19), dec!(1.28));
        let plans = compute_all(&w);
        assert!(plans[&H].items.is_empty(), "{:?}", plans[&H]);
        let fine = item(&plans[&H2], "XAUUSD");
        assert_eq!((fine.side, fine.volume), (Side::Buy, Volume(dec!(0.02))));
        assert_eq!(ounces_after(&mut w, &plans), dec!(32));
        assert!(compute_all(&w).values().all(|p| p.items.is_empty()));
    }

    #[test]
    fn the_finest_grid_moves_several_steps_when_that_makes_the_total_exact() {
        // Clients short 36 oz: 21.6 / 14.4. Held 21 and 15.2 (0.2 oz too much in all); each
        // account rounding its own part leaves the 0.2 oz over-hedged.
        let mut w = fine_and_coarse(dec!(-0.36), dec!(0.21), dec!(1.52));
        let plans = compute_all(&w);
        assert_eq!(ounces_after(&mut w, &plans), dec!(36), "{plans:?}");
        assert!(compute_all(&w).values().all(|p| p.items.is_empty()));
        // each account within one step of the coarser grid (1 oz) of its share
        let share = |login: Login, cs: Decimal| {
            w.hedges
                .iter()
                .find(|c| c.hedge_login == login)
                .map(|c| c.net.volume().0 * cs)
                .unwrap()
        };
        assert!((share(H, dec!(100)) - dec!(21.6)).abs() < Decimal::ONE);
        assert!((share(H2, dec!(10)) - dec!(14.4)).abs() < Decimal::ONE);
    }

    fn refusal(symbol: &str, side: Side, volume: Decimal, reason: &str) -> PretradeRefusal {
        PretradeRefusal {
            symbol: symbol.into(),
            account_symbol: format!("{symbol}.h"),
            side,
            volume: Volume(volume),
            reason: reason.into(),
            since_ms: 1,
        }
    }

    #[test]
    fn a_pretrade_refusal_is_a_residual_beside_the_order_it_refuses() {
        // Clients long 5 EURUSD, 0.4 GBPUSD; the hedge account holds 1 short EURUSD.
        let mut w = inputs(
            &[(1, "EURUSD", dec!(5), 5), (1, "GBPUSD", dec!(0.4), 6)],
            &[("EURUSD", dec!(-1), 7)],
        );
        let without = compute(&w, H);
        let margin = "refused by pre-trade check: margin level 85% below minimum 100%";
        w.refusals.insert(
            H,
            vec![
                refusal("EURUSD", Side::Sell, dec!(2.5), margin),
                // stale: the plan now buys nothing of GBPUSD, it sells
                refusal("GBPUSD", Side::Buy, dec!(0.4), "max exposure"),
                // stale: no order for this symbol at all
                refusal("USDJPY", Side::Sell, dec!(1), "max order size"),
            ],
        );
        let plan = compute(&w, H);
        // the orders stay as they were: the hedger checks them again and sends once it may
        assert_eq!(plan.items, without.items);
        assert_eq!(plan.residuals.len(), 1, "{:?}", plan.residuals);
        let r = &plan.residuals[0];
        let eur = item(&plan, "EURUSD");
        assert_eq!(
            (r.symbol.as_str(), r.account_symbol.as_str(), r.reason),
            ("EURUSD", "EURUSD.h", ResidualReason::PretradeRefused)
        );
        assert_eq!(r.detail.as_deref(), Some(margin));
        // 4 to sell, 1.5 of it may go: 2.5 stay uncovered while refused
        assert_eq!(
            (eur.volume, r.unhedged),
            (Volume(dec!(4)), Volume(dec!(2.5)))
        );
        assert_eq!(
            (r.exposure, r.hedged, r.hedge_lots),
            (eur.exposure, eur.hedged, eur.hedged)
        );
        assert_eq!(r.base_quantity, Some(eur.base_quantity));
        // a refusal of more than the order now asks for is cut to the order
        w.refusals
            .insert(H, vec![refusal("EURUSD", Side::Sell, dec!(9), margin)]);
        assert_eq!(compute(&w, H).residuals[0].unhedged, Volume(dec!(4)));
        // once the hedge is sent the plan has no order and the refusal is stale
        w.hedges = vec![
            cover(H, "EURUSD", dec!(-5), 8),
            cover(H, "GBPUSD", dec!(-0.4), 9),
        ];
        assert!(compute(&w, H).residuals.is_empty());
        // a refusal never touches another hedge account's plan
        w.refusals = BTreeMap::from([(H2, vec![refusal("EURUSD", Side::Sell, dec!(1), margin)])]);
        w.hedges.clear();
        assert!(compute(&w, H).residuals.is_empty());
    }

    fn grid_steps() -> impl Strategy<Value = Decimal> {
        prop_oneof![Just(dec!(0.01)), Just(dec!(0.1)), Just(Decimal::ONE)]
    }

    fn contract_sizes() -> impl Strategy<Value = Decimal> {
        prop_oneof![Just(Decimal::ONE), Just(dec!(10)), Just(dec!(100))]
    }

    proptest! {
        #[test]
        fn item_is_on_grid_within_limits_and_reduces_the_gap(
            nets in proptest::collection::vec((-50_000i64..50_000, 1u64..1000), 1..6),
            hedge in -50_000i64..50_000,
        ) {
            let exposures: Vec<ClientExposure> = nets.iter().enumerate().map(|(k, (n, id))| ClientExposure {
                login: Login(1 + (k as u64 % 2)),
                symbol: "EURUSD".into(),
                net: Exposure::from_units(n * 1_000_000),
                last_event_id: EventId(*id),
            }).collect();
            let mut i = inputs(&[], &[("EURUSD", Decimal::new(hedge, 2), 1)]);
            i.exposures = exposures;
            let plan = compute(&i, H);
            for item in &plan.items {
                let step = dec!(0.01);
                prop_assert!((item.volume.0 % step).is_zero());
                prop_assert!(item.volume.0 >= dec!(0.01) && item.volume.0 <= dec!(100));
                prop_assert!(item.residual.0.abs() < item.unhedged.0.abs());
                prop_assert_eq!(item.side == Side::Sell, item.unhedged.is_positive());
                if item.action == PlanAction::Reduce {
                    prop_assert!(item.volume.0 <= item.hedged.0.abs());
                }
            }
            prop_assert!(plan.items.len() + plan.residuals.len() <= 1);
        }

        #[test]
        fn refusals_leave_the_orders_and_explain_at_most_each_order(
            nets in proptest::collection::vec((0usize..2, -50_000i64..50_000), 1..6),
            held in proptest::collection::vec(-3_000i64..3_000, 2),
            // the hedger refuses volumes on the hedge symbol's grid (0.01 here)
            refused in proptest::collection::vec((0usize..3, any::<bool>(), 1i64..2_000), 0..4),
        ) {
            let symbols = ["EURUSD", "GBPUSD", "USDJPY"];
            let exposures: Vec<_> = nets.iter().enumerate()
                .map(|(k, (s, n))| (1 + k as u64 % 2, symbols[*s], Decimal::new(*n, 3), 1 + k as u64))
                .collect();
            let hedges: Vec<_> = held.iter().enumerate()
                .map(|(k, h)| (symbols[k], Decimal::new(*h, 2), 50 + k as u64))
                .collect();
            let mut w = inputs(&exposures, &hedges);
            let without = compute(&w, H);
            w.refusals.insert(H, refused.iter().map(|(s, sell, v)| {
                let side = if *sell { Side::Sell } else { Side::Buy };
                refusal(symbols[*s], side, Decimal::new(*v, 2), "refused")
            }).collect());
            let plan = compute(&w, H);
            prop_assert_eq!(&plan.items, &without.items);
            let (others, refusals): (Vec<_>, Vec<_>) = plan.residuals.iter()
                .partition(|r| r.reason != ResidualReason::PretradeRefused);
            prop_assert_eq!(others.len(), without.residuals.len());
            for r in refusals {
                let i = item(&plan, &r.symbol);
                prop_assert_eq!(i.action, PlanAction::Open);
                prop_assert!(w.refusals[&H].iter().any(|x| x.symbol == r.symbol && x.side == i.side));
                // between what stays once the whole order is sent and what is uncovered now,
                // on the same side
                prop_assert!(r.unhedged.0.abs() <= i.unhedged.0.abs());
                prop_assert!(r.unhedged.0.abs() >= i.residual.0.abs());
                prop_assert_eq!(r.unhedged.is_positive(), i.unhedged.is_positive());
                prop_assert_eq!(r.detail.as_deref(), Some("refused"));
            }
        }

        #[test]
        fn filled_plans_settle_and_never_move_the_total_away(
            client_cents in -5_000i64..5_000,
            held in -300i64..300,
            held2 in -3_000i64..3_000,
        ) {
            let mut w = fine_and_coarse(
                Decimal::new(client_cents, 2),
                Decimal::new(held, 2),
                Decimal::new(held2, 2),
            );
            let target = -Decimal::new(client_cents, 2) * dec!(100);
            let nothing = BTreeMap::from([(H, empty_plan(&w, H)), (H2, empty_plan(&w, H2))]);
            let mut gap = (ounces_after(&mut w, &nothing) - target).abs();
            let mut rounds = 0;
            loop {
                let plans = compute_all(&w);
                if plans.values().all(|p| p.items.is_empty()) {
                    break;
                }
                rounds += 1;
                prop_assert!(rounds <= 3, "still trading after {} rounds: {:?}", rounds, plans);
                let next = (ounces_after(&mut w, &plans) - target).abs();
                prop_assert!(next <= gap, "the gap grew from {} to {}", gap, next);
                gap = next;
            }
            // a 0.1 oz grid on one account: the total is exact once settled
            prop_assert_eq!(gap, Decimal::ZERO);
        }

        #[test]
        fn parts_and_residual_make_the_target_and_nothing_is_counted_twice(
            clients in proptest::collection::vec((-40_000i64..40_000, contract_sizes(), 0usize..4), 1..6),
            hedge_specs in proptest::collection::vec((contract_sizes(), grid_steps(), -300i64..300), 2..4),
            split in 1u32..100,
        ) {
            let hedge_logins: Vec<Login> = (0..hedge_specs.len()).map(|k| Login(900 + k as u64)).collect();
            let mut w = PlanInputs {
                accounts: hedge_specs.iter().zip(&hedge_logins).map(|((cs, step, _), login)| {
                    let mut s = spec("XAUUSD", *cs, *step);
                    s.volume_max = Volume(Decimal::from(1_000_000_000));
                    account(*login, AccountRole::Hedge, SymbolMap::identity(), vec![s])
                }).collect(),
                clients: vec![],
                exposures: vec![],
                hedges: hedge_specs.iter().zip(&hedge_logins).enumerate().map(|(k, ((_, _, held), login))| {
                    cover(*login, "XAUUSD", Decimal::new(*held, 1), 1 + k as u64)
                }).collect(),
                pauses: vec![],
                allocations: vec![],
                refusals: BTreeMap::new(),
                as_of_event_id: EventId(99),
            };
            let first = Decimal::new(split as i64, 2);
            // scopes: 0 global 60/40-like split, 1 everything on the first, 2 on the second, 3 none
            // (falls back to the global allocation)
            w.allocations.push(allocation(None, None, &[(hedge_logins[0], first), (hedge_logins[1], Decimal::ONE - first)], 50));
            let mut target = Decimal::ZERO;
            let mut lots_total = Decimal::ZERO;
            for (k, (net, cs, scope)) in clients.iter().enumerate() {
                let login = 1 + k as u64;
                w.clients.push(client(login, Decimal::ONE, None, vec![spec("XAUUSD.r", *cs, dec!(0.01))]));
                let lots = Decimal::new(*net, 2);
                w.exposures.push(exposure(login, "XAUUSD", lots, 10 + k as u64));
                match scope {
                    1 => w.allocations.push(allocation(Some(login), None, &[(hedge_logins[0], Decimal::ONE)], 60)),
                    2 => w.allocations.push(allocation(Some(login), Some("XAUUSD"), &[(hedge_logins[1], Decimal::ONE)], 61)),
                    _ => {}
                }
                target += lots * cs;
                lots_total += lots;
            }
            let plans = compute_all(&w);
            let mut covered = Decimal::ZERO;
            let mut counted_lots = Decimal::ZERO;
            let mut left = Decimal::ZERO;
            let mut left_alone = Decimal::ZERO;
            for ((cs, step, held), login) in hedge_specs.iter().zip(&hedge_logins) {
                let plan = &plans[login];
                prop_assert!(plan.client_residuals.is_empty());
                prop_assert!(plan.items.len() + plan.residuals.len() <= 1);
                for item in &plan.items {
                    prop_assert!((item.volume.0 % step).is_zero());
                    prop_assert_eq!(item.residual.0, item.exposure.0 + item.hedge_lots.0);
                    covered += (item.residual.0 - item.hedge_lots.0) * cs;
                    counted_lots += item.client_lots.0;
                    left += item.residual.0 * cs;
                }
                for r in &plan.residuals {
                    prop_assert_eq!(r.hedge_lots.0, r.hedged.0);
                    covered += (r.unhedged.0 - r.hedge_lots.0) * cs;
                    counted_lots += r.client_lots.0;
                    left += r.unhedged.0 * cs;
                }
                // what this account would leave on its own: the nearest allowed volume (the
                // smaller on a tie), never past its hedges when it reduces
                let (unhedged, hedged) = plan.items.first().map(|i| (i.unhedged.0, i.hedged.0))
                    .or_else(|| plan.residuals.first().map(|r| (r.unhedged.0, r.hedged.0)))
                    .unwrap_or_default();
                prop_assert_eq!(hedged, Decimal::new(*held, 1));
                let reduces = !hedged.is_zero() && hedged.is_sign_negative() == unhedged.is_sign_negative();
                let wanted = if reduces { unhedged.abs().min(hedged.abs()) } else { unhedged.abs() };
                let down = (wanted / step).floor() * step;
                let up = (wanted / step).ceil() * step;
                let best = [Decimal::ZERO, down, up]
                    .into_iter()
                    .filter(|v| !reduces || *v <= hedged.abs())
                    .min_by_key(|v| ((unhedged.abs() - v).abs(), *v))
                    .unwrap_or_default();
                left_alone += (unhedged.abs() - best) * signum(unhedged) * cs;
            }
            // sum of the parts (the hedge positions, as base quantity) plus the residual is the target
            prop_assert_eq!(covered, target);
            // every client lot counted exactly once over the hedge accounts
            prop_assert_eq!(counted_lots, lots_total);
            // the joint rounding leaves no more than rounding each account alone would
            prop_assert!(left.abs() <= left_alone.abs(), "left {} alone {}", left, left_alone);
        }
    }
}
