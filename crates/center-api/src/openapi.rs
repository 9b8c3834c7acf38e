//! The OpenAPI schemas of the API's types (feature `openapi`), for the center's `/openapi.json`.
//!
//! Every model type derives its schema, so the document follows the types. The domain's types
//! travel as plain JSON and are aliased in `build.rs`; those with a shape of their own (a side, a
//! symbol's spec and name map, the margin mode) get the stand-in schemas below, written from their
//! serde form in `hedge-domain`. [`ApiSchemas`] lists every schema the document carries.

use crate::model::*;
use std::borrow::Cow;
use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;
use utoipa::{OpenApi, PartialSchema, ToSchema};

fn typed(t: Type, description: &str) -> ObjectBuilder {
    let b = ObjectBuilder::new().schema_type(t);
    if description.is_empty() {
        b
    } else {
        b.description(Some(description))
    }
}

fn decimal(description: &str) -> ObjectBuilder {
    typed(Type::Number, description).format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
}

/// `"buy"` or `"sell"` (`hedge_domain::Side`).
pub struct SideSchema;

impl PartialSchema for SideSchema {
    fn schema() -> RefOr<Schema> {
        typed(Type::String, "")
            .enum_values(Some(["buy", "sell"]))
            .into()
    }
}

/// `ENUM_ACCOUNT_MARGIN_MODE` by its code (`hedge_domain::AccountMarginMode`).
pub struct MarginModeSchema;

impl PartialSchema for MarginModeSchema {
    fn schema() -> RefOr<Schema> {
        typed(Type::Integer, "0 netting, 1 exchange, 2 hedging.")
            .enum_values(Some([0, 1, 2]))
            .into()
    }
}

/// An account's symbol naming (`hedge_domain::SymbolMap`).
pub struct SymbolMapSchema;

impl PartialSchema for SymbolMapSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .property("prefix", typed(Type::String, ""))
            .property("suffix", typed(Type::String, ""))
            .property(
                "explicit",
                typed(Type::Object, "Account name -> canonical name.").additional_properties(Some(
                    AdditionalProperties::RefOr(typed(Type::String, "").into()),
                )),
            )
            .into()
    }
}

/// What trading arithmetic needs of a symbol (`hedge_domain::SymbolSpec`).
pub struct SymbolSpecSchema;

impl PartialSchema for SymbolSpecSchema {
    fn schema() -> RefOr<Schema> {
        let flag = || typed(Type::Boolean, "");
        let mut b = ObjectBuilder::new()
            .property(
                "name",
                typed(Type::String, "The account's name of the symbol."),
            )
            .property("digits", typed(Type::Integer, ""));
        for field in ["point", "tick_size", "tick_value", "contract_size"] {
            b = b.property(field, decimal(""));
        }
        for field in ["volume_min", "volume_step", "volume_max"] {
            b = b.property(field, decimal(""));
        }
        b = b
            .property(
                "filling",
                ObjectBuilder::new()
                    .property("fok", flag())
                    .property("ioc", flag())
                    .property("return", flag())
                    .property("boc", flag()),
            )
            .property("stops_level", typed(Type::Integer, ""))
            .property(
                "trade_mode",
                typed(Type::Integer, "SYMBOL_TRADE_MODE code."),
            )
            .property("margin_per_lot", decimal(""));
        for field in [
            "name",
            "digits",
            "point",
            "tick_size",
            "tick_value",
            "contract_size",
            "volume_min",
            "volume_step",
            "volume_max",
            "filling",
            "trade_mode",
        ] {
            b = b.required(field);
        }
        b.into()
    }
}

/// The stand-ins are named as the domain's types they describe.
macro_rules! named {
    ($($schema:ident => $name:literal),* $(,)?) => {
        $(impl ToSchema for $schema {
            fn name() -> Cow<'static, str> {
                $name.into()
            }
        })*
    };
}

named! {
    SideSchema => "Side",
    MarginModeSchema => "AccountMarginMode",
    SymbolMapSchema => "SymbolMap",
    SymbolSpecSchema => "SymbolSpec",
}

/// Every schema of the API, by name, as `components.schemas` of the center's document.
#[derive(OpenApi)]
#[openapi(components(schemas(
    ApiError,
    Health,
    SideSchema,
    MarginModeSchema,
    SymbolMapSchema,
    SymbolSpecSchema,
    AccountRole,
    AccountRegistration,
    BreakerState,
    AccountStatus,
    AccountMoney,
    PositionMark,
    Reconciliation,
    PretradeRefusal,
    AccountOverrides,
    OverrideField,
    Account,
    IdempotencyKey,
    PositionEventKind,
    PositionReport,
    ExitDeal,
    PositionStatus,
    ReportAck,
    TumblerFiring,
    FiringAck,
    Position,
    VolumeChange,
    PositionDetail,
    PlanAction,
    PlanItem,
    ResidualReason,
    PlanResidual,
    HedgePlan,
    HedgeExecuted,
    HedgeFailed,
    HedgeReduce,
    HedgeStatus,
    Hedge,
    ActionKind,
    ActionRequest,
    CommandKind,
    CommandStatus,
    Command,
    CommandResult,
    Pause,
    AllocationWeight,
    Allocation,
    ActionAck,
    EventKind,
    Event,
    Page<Position>,
    Page<Hedge>,
    Page<Event>,
    Page<Command>,
)))]
pub struct ApiSchemas;
