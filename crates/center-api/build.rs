//! With the `openapi` feature: tells the OpenAPI derives of the model how the domain's types travel
//! in JSON. `hedge-domain` knows nothing of OpenAPI, so each of its types is aliased here to the
//! JSON it is written as (ids as integers, exact decimals as numbers) or to its stand-in schema in
//! `src/openapi.rs`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "openapi")]
    {
        let mut config = utoipa_config::Config::new();
        for id in [
            "Login",
            "PositionId",
            "Magic",
            "OrderTicket",
            "DealTicket",
            "EventId",
            "HedgeId",
            "PlanItemId",
            "CommandId",
        ] {
            config = config.alias_for(id, "u64");
        }
        for exact in ["Volume", "Price", "Money"] {
            config = config.alias_for(exact, "Decimal");
        }
        config
            .alias_for("Retcode", "u32")
            .alias_for("Side", "crate::openapi::SideSchema")
            .alias_for("SymbolMap", "crate::openapi::SymbolMapSchema")
            .alias_for("SymbolSpec", "crate::openapi::SymbolSpecSchema")
            .alias_for("AccountMarginMode", "crate::openapi::MarginModeSchema")
            .write_to_file();
    }
}
