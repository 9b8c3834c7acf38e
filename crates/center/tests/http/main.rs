//! The center over real HTTP, every test run on SQLite and on PostgreSQL; one module per resource.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod actions;
mod allocations;
mod commands;
mod events;
mod hedges;
mod legacy;
mod plan;
mod positions;
mod scope;
mod service;
mod status;
mod totals;
