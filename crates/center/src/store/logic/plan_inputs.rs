//! What the hedge plans are computed from, read in one snapshot.

use super::*;

columns! {
    /// A client account's net exposure in one symbol.
    pub(super) ExposureCol { login, symbol, net_units, last_event_id }
}

columns! {
    /// A hedge account's net cover in one symbol.
    pub(super) HedgeExposureCol { hedge_login, symbol, net_units, last_event_id }
}

/// The inputs of every hedge account's plan (the plan of one depends on the others through the
/// allocations and the rounding across accounts); refused when `hedge_login` is unknown or not a
/// hedge account.
pub fn plan_inputs(
    c: &mut dyn Conn,
    hedge_login: Login,
) -> Result<Result<PlanInputs, Refusal>, StoreError> {
    let Some(hedge) = account(c, hedge_login)? else {
        return Ok(Err(Refusal::NotFound(format!(
            "hedge account {hedge_login} is not registered"
        ))));
    };
    if hedge.registration.role != AccountRole::Hedge {
        return Ok(Err(Refusal::Conflict(format!(
            "account {hedge_login} is registered as {}, not as a hedge account",
            hedge.registration.role.as_str()
        ))));
    }
    all_plan_inputs(c).map(Ok)
}

/// The inputs of every hedge account's plan, whichever account asks.
pub fn all_plan_inputs(c: &mut dyn Conn) -> Result<PlanInputs, StoreError> {
    // No newer than the event horizon on PostgreSQL: every event up to it is in this snapshot.
    let as_of_event_id = max_event_id(c)?;
    let all = accounts(c)?;
    let registered: std::collections::BTreeMap<u64, AccountRegistration> = all
        .iter()
        .map(|a| (a.registration.login.0, a.effective()))
        .collect();
    // What each hedge account's pre-trade checks refuse now: a change of them is a status
    // change, stored with an event, so a plan computed at an unchanged head still holds.
    let refusals = all
        .into_iter()
        .filter(|a| a.registration.role == AccountRole::Hedge)
        .filter_map(|a| {
            let refused = a.status?.pretrade_refusals;
            (!refused.is_empty()).then_some((a.registration.login, refused))
        })
        .collect();
    let mut exposures = Vec::new();
    let mut clients = std::collections::BTreeMap::<u64, ClientConfig>::new();
    let sql = match c.dialect() {
        Dialect::Sqlite => format!("SELECT {} FROM exposures", ExposureCol::LIST),
        // A total is the sum of its shards (see `shard_pg_exposures`).
        Dialect::Postgres => "SELECT login, symbol, SUM(net_units)::bigint, MAX(last_event_id)
           FROM exposures GROUP BY login, symbol ORDER BY login, symbol"
            .to_owned(),
    };
    for r in c.query(&sql, &[])? {
        let login = r.u64(ExposureCol::login)?;
        let reg = registered.get(&login);
        if reg.is_some_and(|reg| reg.role != AccountRole::Client) {
            continue;
        }
        // Once per client, not per symbol: a registration carries every symbol's spec.
        clients.entry(login).or_insert_with(|| match reg {
            Some(reg) => ClientConfig {
                login: Login(login),
                ratio: reg.hedge_ratio,
                hedge_login: reg.hedge_login,
                registration: Some(reg.clone()),
            },
            // An account that reported before registering: its contract sizes are unknown, so
            // the plan lists it as a residual until it registers.
            None => ClientConfig {
                login: Login(login),
                ratio: Decimal::ONE,
                hedge_login: None,
                registration: None,
            },
        });
        exposures.push(ClientExposure {
            login: Login(login),
            symbol: r.text(ExposureCol::symbol)?.to_owned(),
            net: Exposure::from_units(r.int(ExposureCol::net_units)?),
            last_event_id: EventId(r.u64(ExposureCol::last_event_id)?),
        });
    }
    let hedges = c
        .query(
            &format!("SELECT {} FROM hedge_exposures", HedgeExposureCol::LIST),
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(HedgeCover {
                hedge_login: Login(r.u64(HedgeExposureCol::hedge_login)?),
                symbol: r.text(HedgeExposureCol::symbol)?.to_owned(),
                net: Exposure::from_units(r.int(HedgeExposureCol::net_units)?),
                last_event_id: EventId(r.u64(HedgeExposureCol::last_event_id)?),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(PlanInputs {
        accounts: registered
            .into_values()
            .filter(|r| r.role == AccountRole::Hedge)
            .collect(),
        clients: clients.into_values().collect(),
        exposures,
        hedges,
        pauses: pauses(c)?,
        allocations: allocations(c)?,
        refusals,
        as_of_event_id: EventId(as_of_event_id),
    })
}
