//! The contract of the hedge center's HTTP API: every request and response body of `/v1`
//! ([`model`]), the header names both sides agree on, and the typed [`client::CenterClient`] with
//! its resumable event-stream reader.
//!
//! Agents depend on this crate alone, so building one does not build the center's server, its
//! stores or its dashboard.

pub mod client;
pub mod model;
#[cfg(feature = "openapi")]
pub mod openapi;

pub use client::{CenterClient, ClientError};

/// The header that makes an operator action idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The header that tells an idempotent write's caller whether the answer is the stored one of an
/// earlier request (`true`) or new (`false`).
pub const IDEMPOTENT_REPLAY: &str = "idempotent-replay";

/// The SSE event name of a hedge plan on an event stream opened with `?plan=<hedge login>`.
pub const PLAN_FRAME_EVENT: &str = "plan";
