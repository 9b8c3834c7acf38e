//! The demo's center: SQLite in the run's folder, one token per agent and one for the demo's own
//! view, the dashboard's token in an owner-only file, and the event log printed as it grows.

use super::{CLIENT_A, CLIENT_B, HEDGE_1, HEDGE_2};
use crate::timeline::Timeline;
use anyhow::Context;
use hedge_center::auth::{Role, TokenEntry, Tokens};
use hedge_center::server::{CenterConfig, CenterHandle, CenterServer};
use hedge_center_api::client::CenterClient;
use hedge_center_api::model::{Event, EventKind};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The secrets of the agents' tokens.
pub(super) struct AgentTokens {
    pub client_a: String,
    pub client_b: String,
    /// One per hedge account: its login and its hedger's secret.
    pub hedgers: Vec<(hedge_domain::Login, String)>,
    pub tumbler: String,
}

/// The running center and what the demo holds of it.
pub(super) struct DemoCenter {
    pub center: CenterHandle,
    pub url: String,
    pub token_file: PathBuf,
    /// The demo's own (admin) view.
    pub view: CenterClient,
    pub tokens: AgentTokens,
    printer: tokio::task::JoinHandle<()>,
}

fn token(name: &str, role: Role, secrets: &mut Vec<TokenEntry>) -> anyhow::Result<String> {
    let secret = Tokens::generate_secret();
    secrets.push(TokenEntry::new(name, role, secret.clone()).map_err(anyhow::Error::msg)?);
    Ok(secret)
}

/// Starts the center in `base` and prints its events from the first on.
pub(super) async fn start(base: &Path, t: &Timeline) -> anyhow::Result<DemoCenter> {
    let mut entries = Vec::new();
    let admin = token("demo", Role::Admin, &mut entries)?;
    let tokens = AgentTokens {
        client_a: token("client-a", Role::Client(CLIENT_A), &mut entries)?,
        client_b: token("client-b", Role::Client(CLIENT_B), &mut entries)?,
        hedgers: vec![
            (
                HEDGE_1,
                token("hedger-2001", Role::Hedge(HEDGE_1), &mut entries)?,
            ),
            (
                HEDGE_2,
                token("hedger-2002", Role::Hedge(HEDGE_2), &mut entries)?,
            ),
        ],
        // The tumbler watches client A, the account the copier trades into.
        tumbler: token("tumbler", Role::Tumbler(CLIENT_A), &mut entries)?,
    };
    let center = CenterServer::start(CenterConfig::sqlite(
        base.join("center.db"),
        Tokens::new(entries),
    ))
    .await
    .context("starting the center")?;
    let url = center.url();
    // The dashboard needs a token to sign in; it goes to an owner-only file, never to the output.
    let token_file = base.join("dashboard.token");
    write_private(&token_file, &admin).context("writing the dashboard token file")?;
    t.emit(
        "center",
        format!(
            "center listening on {url} (SQLite in {}); dashboard at {url}/, sign in with the token in {}",
            base.display(),
            token_file.display()
        ),
        json!({ "url": url, "dashboard": format!("{url}/"), "token_file": token_file }),
    );
    let view = CenterClient::new(url.clone(), Some(admin))?;
    let mut events = view.subscribe(Some(hedge_center_api::model::EventId(0)));
    let printer = {
        let t = t.clone();
        tokio::spawn(async move {
            while let Some(Ok(e)) = events.next().await {
                if matches!(e.kind, EventKind::AccountStatus) {
                    continue;
                }
                t.emit(
                    "report",
                    describe_event(&e),
                    json!({ "event_id": e.id, "event_kind": e.kind }),
                );
            }
        })
    };
    Ok(DemoCenter {
        center,
        url,
        token_file,
        view,
        tokens,
        printer,
    })
}

impl DemoCenter {
    pub(super) async fn shutdown(self) {
        self.printer.abort();
        self.center.shutdown().await;
    }
}

fn describe_event(e: &Event) -> String {
    let d = &e.data;
    let num = |k: &str| d.get(k).map(|v| v.to_string()).unwrap_or_default();
    let text = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    match e.kind {
        // The volume reported is what remains open: say so where it is not the trade's own.
        EventKind::PositionIncreased | EventKind::PositionReduced => format!(
            "center <- report {} account {} position {} {} {}, now {} lots",
            e.kind.as_str(),
            e.login.map(|l| l.to_string()).unwrap_or_default(),
            num("position_id"),
            text("symbol"),
            text("side"),
            num("volume")
        ),
        EventKind::PositionOpened | EventKind::PositionClosed | EventKind::PositionReversed => {
            format!(
                "center <- report {} account {} position {} {} {} {} lots",
                e.kind.as_str(),
                e.login.map(|l| l.to_string()).unwrap_or_default(),
                num("position_id"),
                text("symbol"),
                text("side"),
                num("volume")
            )
        }
        EventKind::HedgeExecuted => format!(
            "center <- hedge recorded: account {} item {} {} {} {} lots at {}",
            e.login.map(|l| l.to_string()).unwrap_or_default(),
            num("plan_item_id"),
            text("symbol"),
            text("side"),
            num("volume"),
            num("price")
        ),
        EventKind::AllocationSet | EventKind::AllocationCleared => {
            format!("center <- {}", e.reason)
        }
        EventKind::AccountRegistered => format!(
            "center <- account {} registered ({})",
            e.login.map(|l| l.to_string()).unwrap_or_default(),
            text("role")
        ),
        _ => format!(
            "center <- {} {} {}",
            e.kind.as_str(),
            e.symbol.clone().unwrap_or_default(),
            e.reason
        ),
    }
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
