//! Hedging across brokers, end to end over real sockets: an in-process center, two client agents
//! and two hedgers, each on a simulated terminal of its own whose gold is named and sized
//! differently (`GOLD` of 100 oz, `XAUUSD.r` of 10 oz on the clients; `XAUUSD.pro` of 1 oz and
//! `GOLD` of 100 oz on the hedge accounts). Nobody configures a symbol map: the agents find gold by
//! its common names. The hedge accounts end opposite the clients in ounces, split as allocated.

use hedge_agent_runtime::outbox::{Backoff, Outbox};
use hedge_agent_runtime::ExecMode;
use hedge_center::auth::{Role, TokenEntry, Tokens};
use hedge_center::server::{CenterConfig, CenterHandle, CenterServer};
use hedge_center_api::client::{new_action_key, CenterClient};
use hedge_center_api::model::{ActionKind, ActionRequest, AllocationWeight};
use hedge_domain::{AccountMarginMode, Login, Magic, Side, SymbolMap, Volume};
use hedge_hedger::runtime::{follow_plan, HedgeDelivery, Hedger, HedgerOptions, Mode, PlanHolder};
use hedge_protocol::{TerminalConfig, TerminalListener};
use hedge_sim::{default_symbols, AccountConfig, SimConfig, SimSymbol, SimTerminal};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const HEDGE_A: Login = Login(2001);
const HEDGE_B: Login = Login(2002);
const CLIENT_1: Login = Login(1001);
const CLIENT_2: Login = Login(1002);

/// The simulator's default symbols with its gold renamed and resized.
fn symbols(gold: &str, contract_size: Decimal, step: Decimal) -> Vec<SimSymbol> {
    let mut all = default_symbols("");
    for s in &mut all {
        if s.spec.name == "XAUUSD" {
            s.spec.name = gold.to_owned();
            s.spec.contract_size = contract_size;
            s.spec.volume_min = Volume(step);
            s.spec.volume_step = Volume(step);
            s.spec.volume_max = Volume(Decimal::from(10_000));
            s.spec.margin_per_lot = hedge_domain::Money(Decimal::ONE);
        }
    }
    all
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

fn sim(login: Login, port: u16, symbols: Vec<SimSymbol>) -> Arc<SimTerminal> {
    let mut config = SimConfig::new(
        format!("127.0.0.1:{port}"),
        AccountConfig {
            login,
            mode: AccountMarginMode::RetailHedging,
            balance: hedge_domain::Money(Decimal::from(100_000_000)),
            ..AccountConfig::default()
        },
    );
    config.symbols = symbols;
    config.reconnect_max = Duration::from_millis(200);
    Arc::new(SimTerminal::spawn(config))
}

/// A hedger in mirror mode (it follows every plan change) and its terminal.
async fn start_hedger(
    center: &CenterHandle,
    secret: &str,
    login: Login,
    dir: &Path,
    gold: Vec<SimSymbol>,
) -> (Arc<SimTerminal>, Vec<JoinHandle<()>>) {
    let client = CenterClient::new(center.url(), Some(secret.to_owned())).unwrap();
    let port = free_port();
    let listener = TerminalListener::bind_with(
        format!("127.0.0.1:{port}")
            .parse::<std::net::SocketAddr>()
            .unwrap(),
        TerminalConfig {
            expected_login: Some(login),
            ..TerminalConfig::default()
        },
    )
    .await
    .unwrap();
    let terminal = listener.start();
    let outbox = Outbox::open(&dir.join(format!("hedger-{login}.db"))).unwrap();
    let delivery = HedgeDelivery {
        center: client.clone(),
        login,
    };
    let sender_outbox = outbox.clone();
    let sender = tokio::spawn(async move {
        let _ = sender_outbox
            .run_sender(
                delivery,
                Backoff {
                    initial: Duration::from_millis(20),
                    max: Duration::from_millis(200),
                },
            )
            .await;
    });
    let plan = Arc::new(PlanHolder::default());
    let follower = tokio::spawn(follow_plan(
        client.clone(),
        login,
        plan.clone(),
        Duration::from_secs(1),
        None,
    ));
    let mut opts = HedgerOptions::new(login, Mode::Mirror);
    opts.symbol_map = SymbolMap::identity();
    opts.orders.retry.base_delay = Duration::from_millis(1);
    let hedger = Hedger::new(terminal.clone(), Some(client), outbox, opts, plan, None);
    let run = tokio::spawn(async move {
        let _ = hedger.run().await;
        terminal.shutdown().await;
    });
    let sim = sim(login, port, gold);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    (sim, vec![sender, follower, run])
}

/// A client agent (no symbol map configured) and its terminal.
async fn start_client(
    center: &CenterHandle,
    secret: &str,
    login: Login,
    dir: &Path,
    gold: Vec<SimSymbol>,
) -> (Arc<SimTerminal>, JoinHandle<()>) {
    let port = free_port();
    let args = hedge_agent::client::ClientArgs {
        agent: hedge_agent_runtime::AgentArgs {
            terminal_port: Some(port),
            login: Some(login.get()),
            prefix: Some("-".into()),
            exec_mode: Some(ExecMode::Auto),
            center: Some(center.url()),
            center_token: Some(hedge_agent_runtime::Secret::new(secret)),
            state_dir: Some(dir.join(format!("client-{login}"))),
            ..hedge_agent_runtime::AgentArgs::default()
        },
        legacy_center: None,
        hedge_ratio: None,
        hedge_login: None,
    };
    let task = tokio::spawn(async move {
        if let Err(e) = hedge_agent::client::run(args).await {
            eprintln!("client agent stopped: {e:#}");
        }
    });
    let sim = sim(login, port, gold);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    (sim, task)
}

/// Signed open volume of `symbol` on a terminal.
fn net(sim: &SimTerminal, symbol: &str) -> Decimal {
    sim.positions()
        .iter()
        .filter(|p| p.symbol == symbol)
        .map(|p| match p.position_type.side() {
            Side::Buy => p.volume.0,
            Side::Sell => -p.volume.0,
        })
        .sum()
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(f(), "{what}");
}

fn allocate(a: Decimal, b: Decimal) -> ActionRequest {
    ActionRequest {
        weights: Some(vec![
            AllocationWeight {
                hedge_login: HEDGE_A,
                weight: a,
            },
            AllocationWeight {
                hedge_login: HEDGE_B,
                weight: b,
            },
        ]),
        ..ActionRequest::new(ActionKind::SetAllocation)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hedge_accounts_with_other_contract_sizes_end_at_their_weights_in_ounces() {
    let dir = tempfile::tempdir().unwrap();
    let secret = |_: &str| Tokens::generate_secret();
    let (admin_s, a_s, b_s, c1_s, c2_s) = (
        secret("admin"),
        secret("a"),
        secret("b"),
        secret("c1"),
        secret("c2"),
    );
    let tokens = Tokens::new(vec![
        TokenEntry::new("ops", Role::Admin, admin_s.clone()).unwrap(),
        TokenEntry::new("hedger-a", Role::Hedge(HEDGE_A), a_s.clone()).unwrap(),
        TokenEntry::new("hedger-b", Role::Hedge(HEDGE_B), b_s.clone()).unwrap(),
        TokenEntry::new("client-1", Role::Client(CLIENT_1), c1_s.clone()).unwrap(),
        TokenEntry::new("client-2", Role::Client(CLIENT_2), c2_s.clone()).unwrap(),
    ]);
    let center = CenterServer::start(CenterConfig::sqlite(dir.path().join("c.db"), tokens))
        .await
        .unwrap();
    let admin = CenterClient::new(center.url(), Some(admin_s)).unwrap();

    // Hedge account A: gold is XAUUSD.pro, 1 oz a lot, whole lots; B: GOLD, 100 oz, 0.01 lots.
    let (sim_a, mut tasks) = start_hedger(
        &center,
        &a_s,
        HEDGE_A,
        dir.path(),
        symbols("XAUUSD.pro", dec!(1), dec!(1)),
    )
    .await;
    let (sim_b, more) = start_hedger(
        &center,
        &b_s,
        HEDGE_B,
        dir.path(),
        symbols("GOLD", dec!(100), dec!(0.01)),
    )
    .await;
    tasks.extend(more);
    let registered = |logins: &[Login]| {
        let admin = admin.clone();
        let logins = logins.to_vec();
        async move {
            for _ in 0..1000 {
                let accounts = admin.accounts().await.unwrap_or_default();
                if logins.iter().all(|l| {
                    accounts
                        .iter()
                        .any(|a| a.registration.login == *l && !a.registration.symbols.is_empty())
                }) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    assert!(
        registered(&[HEDGE_A, HEDGE_B]).await,
        "hedge accounts registered"
    );
    admin
        .action(&new_action_key(), &allocate(dec!(0.6), dec!(0.4)))
        .await
        .unwrap();

    // Client 1's gold is GOLD of 100 oz, client 2's XAUUSD.r of 10 oz.
    let (sim_1, agent_1) = start_client(
        &center,
        &c1_s,
        CLIENT_1,
        dir.path(),
        symbols("GOLD", dec!(100), dec!(0.01)),
    )
    .await;
    let (sim_2, agent_2) = start_client(
        &center,
        &c2_s,
        CLIENT_2,
        dir.path(),
        symbols("XAUUSD.r", dec!(10), dec!(0.1)),
    )
    .await;
    assert!(
        registered(&[CLIENT_1, CLIENT_2]).await,
        "clients registered"
    );
    // +150 oz and -20 oz: the clients are long 130 oz.
    assert!(sim_1
        .open("GOLD", Side::Buy, Volume(dec!(1.5)), Magic(1), "")
        .is_done());
    assert!(sim_2
        .open("XAUUSD.r", Side::Sell, Volume(dec!(2)), Magic(1), "")
        .is_done());

    // 60% = 78 oz = 78 lots of 1 oz on A; 40% = 52 oz = 0.52 lots of 100 oz on B.
    eventually("hedges at 60/40", || {
        net(&sim_a, "XAUUSD.pro") == dec!(-78) && net(&sim_b, "GOLD") == dec!(-0.52)
    })
    .await;
    let ounces = |a: Decimal, b: Decimal| (a * dec!(1), b * dec!(100));
    let (a, b) = ounces(net(&sim_a, "XAUUSD.pro"), net(&sim_b, "GOLD"));
    assert_eq!(a + b, -(dec!(1.5) * dec!(100) - dec!(2) * dec!(10)));
    assert_eq!(a / (a + b), dec!(0.6));
    // Nothing left to do or explain once the hedges are recorded.
    for login in [HEDGE_A, HEDGE_B] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let plan = admin.plan(login).await.unwrap();
            let settled = plan.items.is_empty()
                && plan.residuals.is_empty()
                && plan.client_residuals.is_empty();
            if settled {
                break;
            }
            assert!(Instant::now() < deadline, "{plan:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The operator moves the allocation: A reduces, B adds.
    admin
        .action(&new_action_key(), &allocate(dec!(0.4), dec!(0.6)))
        .await
        .unwrap();
    eventually("hedges at 40/60", || {
        net(&sim_a, "XAUUSD.pro") == dec!(-52) && net(&sim_b, "GOLD") == dec!(-0.78)
    })
    .await;
    let (a, b) = ounces(net(&sim_a, "XAUUSD.pro"), net(&sim_b, "GOLD"));
    assert_eq!((a, b), (dec!(-52), dec!(-78)));

    // One more ounce: 40% is 52.4 oz, which A's whole ounces cannot hold, 60% is 78.6 oz, 0.786
    // lots of B's. Rounded together, B takes the ounce (0.79 lots) and the total is exact; what
    // each part keeps is a residual of its plan, and they cancel out.
    assert!(sim_2
        .open("XAUUSD.r", Side::Buy, Volume(dec!(0.1)), Magic(1), "")
        .is_done());
    eventually("the extra ounce on B", || {
        net(&sim_a, "XAUUSD.pro") == dec!(-52) && net(&sim_b, "GOLD") == dec!(-0.79)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (pa, pb) = (
            admin.plan(HEDGE_A).await.unwrap(),
            admin.plan(HEDGE_B).await.unwrap(),
        );
        if pa.items.is_empty()
            && pb.items.is_empty()
            && pa.residuals.len() == 1
            && pb.residuals.len() == 1
        {
            let (ra, rb) = (&pa.residuals[0], &pb.residuals[0]);
            assert_eq!((ra.unhedged.0, rb.unhedged.0), (dec!(0.4), dec!(-0.004)));
            assert_eq!(
                ra.unhedged.0 * dec!(1) + rb.unhedged.0 * dec!(100),
                Decimal::ZERO
            );
            assert_eq!(
                (ra.base_quantity, rb.base_quantity),
                (Some(Volume(dec!(52.4))), Some(Volume(dec!(78.6))))
            );
            break;
        }
        assert!(Instant::now() < deadline, "{pa:?} {pb:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for t in tasks.into_iter().chain([agent_1, agent_2]) {
        t.abort();
        let _ = t.await;
    }
    for s in [sim_a, sim_b, sim_1, sim_2] {
        s.stop().await;
    }
    center.shutdown().await;
}
