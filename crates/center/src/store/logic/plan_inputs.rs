//! What the hedge plan is computed from, read in one snapshot.

use super::*;

columns! {
    /// A client account's hedging settings.
    pub(super) ClientCol { login, role, hedge_ratio, hedge_login }
}

columns! {
    /// A client account's net exposure in one symbol.
    pub(super) ExposureCol { login, symbol, net_units, last_event_id }
}

columns! {
    /// A hedge account's net cover in one symbol.
    pub(super) HedgeExposureCol { symbol, net_units, last_event_id }
}

/// The inputs of `hedge_login`'s plan; refused when that account is unknown or not a hedge account.
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
    let as_of_event_id = max_event_id(c)?;
    let overrides = load_overrides(c, None)?;
    let mut configs = std::collections::BTreeMap::new();
    for r in c.query(&format!("SELECT {} FROM accounts", ClientCol::LIST), &[])? {
        let login = r.u64(ClientCol::login)?;
        let registered = Decimal::from_str(r.text(ClientCol::hedge_ratio)?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let ratio = overrides
            .get(&login)
            .and_then(|o| o.hedge_ratio)
            .unwrap_or(registered);
        configs.insert(
            login,
            (
                r.text(ClientCol::role)?.to_owned(),
                ratio,
                r.opt_int(ClientCol::hedge_login)?.map(|l| Login(l as u64)),
            ),
        );
    }
    let mut exposures = Vec::new();
    let mut clients = Vec::new();
    for r in c.query(&format!("SELECT {} FROM exposures", ExposureCol::LIST), &[])? {
        let login = r.u64(ExposureCol::login)?;
        match configs.get(&login) {
            Some((role, ratio, hedge)) if role == "client" => clients.push(ClientConfig {
                login: Login(login),
                ratio: *ratio,
                hedge_login: *hedge,
            }),
            // Reports from an account not (yet) registered count 1:1 on every hedge account.
            None => clients.push(ClientConfig {
                login: Login(login),
                ratio: Decimal::ONE,
                hedge_login: None,
            }),
            Some(_) => continue,
        }
        exposures.push(ClientExposure {
            login: Login(login),
            symbol: r.text(ExposureCol::symbol)?.to_owned(),
            net_units: r.int(ExposureCol::net_units)?,
            last_event_id: r.u64(ExposureCol::last_event_id)?,
        });
    }
    clients.sort_by_key(|c| c.login);
    clients.dedup_by_key(|c| c.login);
    let hedges = c
        .query(
            &format!(
                "SELECT {} FROM hedge_exposures WHERE hedge_login = ?",
                HedgeExposureCol::LIST
            ),
            &[Val::Int(hedge_login.0 as i64)],
        )?
        .iter()
        .map(|r| {
            Ok(HedgeCover {
                symbol: r.text(HedgeExposureCol::symbol)?.to_owned(),
                net_units: r.int(HedgeExposureCol::net_units)?,
                last_event_id: r.u64(HedgeExposureCol::last_event_id)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Ok(PlanInputs {
        hedge: hedge.effective(),
        clients,
        exposures,
        hedges,
        pauses: pauses(c)?,
        as_of_event_id,
    }))
}
