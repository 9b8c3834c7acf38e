#![recursion_limit = "512"]
//! The decision center of hedge: it stores every client position that must be hedged, every hedge
//! and every decision, and tells the hedger what to do.
//!
//! Agents talk to it over JSON/HTTP under `/v1` ([`client::CenterClient`] is the typed client, the
//! request and response types are in [`model`]). Reports are idempotent and acknowledged only once
//! durable. The hedge plan ([`plan`], pure arithmetic) nets the client exposure per canonical symbol
//! in base quantity (each broker's contract size), shares it among the hedge accounts by the
//! operator's allocation, and turns each part into covering orders in that account's naming,
//! step and limits. Every stored
//! change is appended to an event log and streamed as server-sent events, resumable by id. The store
//! is SQLite (embedded default, one writer thread with group commit) or PostgreSQL (several center
//! instances on one database, LISTEN/NOTIFY between them): [`store::Store`] runs every rule over one
//! connection trait, [`store::Conn`], which each backend implements.

pub mod api;
pub mod auth;
pub mod cli;
pub mod events;
pub mod hosts;
pub mod legacy;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod plan;
pub mod plan_feed;
pub mod positions;
pub mod server;
pub mod store;

// The API contract lives in `hedge-center-api`; re-exported so `hedge_center_api::model::…` and
// `hedge_center_api::client::…` keep naming the same items.
pub use hedge_center_api::{client, model, CenterClient, ClientError};
pub use hedge_center_api::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAY};
pub use server::{CenterConfig, CenterHandle, CenterServer};
