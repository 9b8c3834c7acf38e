//! The hedger's outbox items on their way to the center, and the center's hedge lists.

use crate::records::{reduce_targets, HoldingSnapshot};
use hedge_agent_runtime::center::{from_client_error, parse_item, CenterDelivery};
use hedge_agent_runtime::outbox::{Delivery, DeliveryError, OutboxItem, OutboxKind};
use hedge_center_api::client::{CenterClient, ClientError};
use hedge_center_api::model::{
    CommandId, CommandResult, Hedge, HedgeExecuted, HedgeFailed, HedgeReduce, PageQuery,
};
use hedge_domain::Login;
use serde::Serialize;

/// Delivers the hedger's outbox items to the center.
#[derive(Clone)]
pub struct HedgeDelivery {
    pub center: CenterClient,
    pub login: Login,
}

/// The result of an operator command, waiting in the outbox for the center.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CommandAnswer {
    pub id: CommandId,
    pub result: CommandResult,
}

/// The outcome of a center call, as the outbox counts it.
fn sent<T>(r: Result<T, ClientError>) -> Result<(), DeliveryError> {
    r.map(drop).map_err(from_client_error)
}

/// Every hedge of an account the center holds (all pages).
pub async fn all_hedges(
    center: &CenterClient,
    login: Login,
    symbol: Option<String>,
) -> Result<Vec<Hedge>, ClientError> {
    hedges_where(center, login, symbol, None).await
}

/// The hedges of an account the center holds open (all pages).
pub async fn open_hedges(center: &CenterClient, login: Login) -> Result<Vec<Hedge>, ClientError> {
    hedges_where(center, login, None, Some(true)).await
}

async fn hedges_where(
    center: &CenterClient,
    login: Login,
    symbol: Option<String>,
    open: Option<bool>,
) -> Result<Vec<Hedge>, ClientError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = center
            .hedges(&PageQuery {
                login: Some(login),
                symbol: symbol.clone(),
                after,
                limit: Some(1000),
                open,
            })
            .await?;
        out.extend(page.items);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}

impl Delivery for HedgeDelivery {
    async fn deliver(&self, item: &OutboxItem) -> Result<(), DeliveryError> {
        match OutboxKind::parse(&item.kind) {
            Some(OutboxKind::HedgeExecuted) => sent(
                self.center
                    .hedge_executed(&parse_item::<HedgeExecuted>(item)?)
                    .await,
            ),
            Some(OutboxKind::HedgeFailed) => sent(
                self.center
                    .hedge_failed(&parse_item::<HedgeFailed>(item)?)
                    .await,
            ),
            Some(OutboxKind::HedgeHolding) => {
                let holding: HoldingSnapshot = parse_item(item)?;
                let hedges = all_hedges(&self.center, self.login, Some(holding.symbol.clone()))
                    .await
                    .map_err(from_client_error)?;
                let reason = match &holding.correction {
                    Some(found) => format!("correction: {found}"),
                    None => "reduced on the hedge account".to_owned(),
                };
                for (id, remaining) in reduce_targets(&hedges, &holding) {
                    sent(
                        self.center
                            .hedge_reduced(
                                id,
                                &HedgeReduce {
                                    remaining,
                                    deal: None,
                                    price: None,
                                    time_ms: holding.time_ms,
                                    reason: reason.clone(),
                                },
                            )
                            .await,
                    )?;
                }
                Ok(())
            }
            Some(OutboxKind::CommandResult) => {
                let answer: CommandAnswer = parse_item(item)?;
                sent(self.center.command_result(answer.id, &answer.result).await)
            }
            // Registration is the agents' own item: delivered exactly as they deliver it.
            Some(OutboxKind::Register) => {
                CenterDelivery {
                    center: Some(self.center.clone()),
                    legacy: None,
                }
                .deliver(item)
                .await
            }
            _ => Err(DeliveryError::Rejected(format!(
                "unknown outbox item kind {:?}",
                item.kind
            ))),
        }
    }
}
