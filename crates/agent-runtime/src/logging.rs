//! Structured logging for the agents: `tracing` to stderr, as text or one JSON object per line,
//! filtered by `RUST_LOG` (default `info`).

use crate::args::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. A second call (tests, an embedding program that already set
/// one up) leaves the first in place.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
