//! The simulator against the agent-side `Terminal` over real TCP.

use hedge_domain::{
    AccountMarginMode, CmdId, DealReason, Login, Magic, OrderType, Price, Retcode, Side, Volume,
};
use hedge_protocol::{
    decode_terminal, encode, AgentMsg, Cmd, ErrorCode, HistoryRange, LineReader, Op, TerminalEvent,
    TerminalListener, TerminalMsg, TradeRequest, MAX_LINE,
};
use hedge_sim::{AccountConfig, SimConfig, SimTerminal};
use rust_decimal_macros::dec;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn config(addr: std::net::SocketAddr, mode: AccountMarginMode) -> SimConfig {
    let mut c = SimConfig::new(
        addr.to_string(),
        AccountConfig {
            login: Login(4242),
            mode,
            ..AccountConfig::default()
        },
    );
    c.reconnect_min = Duration::from_millis(20);
    c.heartbeat_interval = Duration::from_millis(200);
    c
}

async fn next_tx_with_deal(
    events: &mut tokio::sync::broadcast::Receiver<TerminalEvent>,
) -> hedge_protocol::DealRecord {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("no event")
            .expect("events closed");
        if let TerminalEvent::Tx(tx) = ev {
            if let Some(d) = &tx.deal_record {
                return d.clone();
            }
        }
    }
}

#[tokio::test]
async fn commands_round_trip_and_a_resent_id_is_not_executed_twice() {
    let listener = TerminalListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    let terminal = listener.start();
    let mut events = terminal.subscribe();
    let sim = SimTerminal::spawn(config(addr, AccountMarginMode::RetailHedging));
    assert!(terminal.wait_ready(Duration::from_secs(5)).await);
    let hello = terminal.hello().unwrap();
    assert_eq!(hello.login, Login(4242));
    assert_eq!(hello.margin_mode, AccountMarginMode::RetailHedging);
    assert_eq!(terminal.symbols().len(), 4);

    let mut request = TradeRequest::market("EURUSD", OrderType::Buy, Volume(dec!(0.1)));
    request.magic = Magic(9);
    let first = terminal
        .order_send(CmdId::from("open-1"), request.clone())
        .await
        .unwrap();
    assert_eq!(first.retcode, Retcode::DONE);
    assert_eq!(first.position.0, first.order.0);
    let deal = next_tx_with_deal(&mut events).await;
    assert_eq!(deal.position_id, first.position);
    assert_eq!(deal.reason, DealReason::Expert);
    assert_eq!(terminal.positions().len(), 1);

    // Resending the same id (e.g. after a timeout) returns the first reply; nothing trades again.
    let again = terminal
        .order_send(CmdId::from("open-1"), request)
        .await
        .unwrap();
    assert_eq!(again.order, first.order);
    assert_eq!(again.deal, first.deal);
    assert_eq!(sim.commands_executed(), 1);
    assert_eq!(sim.positions().len(), 1);

    // A trade made on the terminal by hand reaches the agent as a transaction.
    let manual = sim.open("GBPUSD", Side::Sell, Volume(dec!(0.2)), Magic(0), "by hand");
    assert_eq!(manual.retcode, Retcode::DONE);
    let deal = next_tx_with_deal(&mut events).await;
    assert_eq!(deal.reason, DealReason::Client);
    assert_eq!(deal.symbol, "GBPUSD");

    // History pages.
    let history = terminal
        .history(
            CmdId::from("hist-1"),
            HistoryRange {
                from: 0,
                to: i64::MAX,
                page_size: Some(1),
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(history.reply.retcode, Retcode::DONE);
    // Deposit + two trades; two filled market orders.
    assert_eq!(history.deals.len(), 3);
    assert_eq!(history.orders.len(), 2);
    assert_eq!(history.reply.history.as_ref().unwrap().pages, 5);

    let info = terminal
        .send(
            CmdId::from("info-1"),
            Op::SymbolInfo {
                symbol: "XAUUSD".into(),
            },
        )
        .await
        .unwrap();
    assert!(info.symbol.is_some());
    terminal.shutdown().await;
    sim.stop().await;
}

#[tokio::test]
async fn reconnect_resyncs_and_stop_loss_reaches_the_agent() {
    let listener = TerminalListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    let terminal = listener.start();
    let mut events = terminal.subscribe();
    let sim = SimTerminal::spawn(config(addr, AccountMarginMode::RetailNetting));
    assert!(terminal.wait_ready(Duration::from_secs(5)).await);

    // A position opened while the link is down shows up in the resync snapshot.
    sim.disconnect();
    let opened = sim.open("EURUSD", Side::Buy, Volume(dec!(0.3)), Magic(1), "");
    assert_eq!(opened.retcode, Retcode::DONE);
    let mut down = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            TerminalEvent::Disconnected { .. } => down = true,
            TerminalEvent::Connected {
                resync: true,
                snapshot,
                ..
            } => {
                assert!(down);
                assert_eq!(snapshot.positions.len(), 1);
                assert_eq!(snapshot.positions[0].identifier, opened.position);
                break;
            }
            _ => {}
        }
    }

    // Netting reversal over the wire keeps the position id.
    let mut sell = TradeRequest::market("EURUSD", OrderType::Sell, Volume(dec!(0.5)));
    sell.sl = Price(dec!(1.2));
    let reply = terminal
        .order_send(CmdId::from("rev-1"), sell)
        .await
        .unwrap();
    assert_eq!(reply.position, opened.position);
    let deal = next_tx_with_deal(&mut events).await;
    assert_eq!(deal.entry, hedge_domain::DealEntry::InOut);

    // The stop loss fires on a quote and the agent learns of it.
    sim.set_quote("EURUSD", Price(dec!(1.2)), Price(dec!(1.2002)));
    let deal = next_tx_with_deal(&mut events).await;
    assert_eq!(deal.reason, DealReason::Sl);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(terminal.positions().is_empty());
    terminal.shutdown().await;
    sim.stop().await;
}

async fn next(reader: &mut LineReader<tokio::net::tcp::OwnedReadHalf>) -> TerminalMsg {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(5), reader.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .unwrap();
        let msg = decode_terminal(line).unwrap();
        if !matches!(msg, TerminalMsg::Heartbeat(_)) {
            return msg;
        }
    }
}

#[tokio::test]
async fn a_bad_command_line_gets_an_error_and_the_link_survives() {
    let agent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = agent.local_addr().unwrap();
    let sim = SimTerminal::spawn(config(addr, AccountMarginMode::RetailHedging));
    let (stream, _) = agent.accept().await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut reader = LineReader::new(r, MAX_LINE);
    assert!(matches!(next(&mut reader).await, TerminalMsg::Hello(h) if h.seq == 1));
    assert!(matches!(next(&mut reader).await, TerminalMsg::Symbols(_)));
    assert!(matches!(next(&mut reader).await, TerminalMsg::Snapshot(_)));
    w.write_all(b"{\"type\":\"cmd\",\"cmd_id\":\"bad\",\"op\":\"order_send\",\"action\":1,\"symbol\":\"EURUSD\",\"volume\":-1}\n")
        .await
        .unwrap();
    match next(&mut reader).await {
        TerminalMsg::Error(e) => {
            assert_eq!(e.code, ErrorCode::BadMessage);
            assert_eq!(e.cmd_id, Some(CmdId::from("bad")));
        }
        other => panic!("unexpected {other:?}"),
    }
    w.write_all(b"garbage\r\n").await.unwrap();
    assert!(
        matches!(next(&mut reader).await, TerminalMsg::Error(e) if e.code == ErrorCode::BadJson)
    );
    let mut line = Vec::new();
    encode(
        &AgentMsg::Cmd(Cmd {
            cmd_id: CmdId::from("p"),
            op: Op::Ping,
        }),
        &mut line,
    )
    .unwrap();
    w.write_all(&line).await.unwrap();
    assert!(
        matches!(next(&mut reader).await, TerminalMsg::Reply(r) if r.cmd_id == CmdId::from("p"))
    );
    assert!(sim.positions().is_empty(), "nothing executed");
    sim.stop().await;
}

#[tokio::test]
async fn injected_disconnect_and_tick_replay() {
    let listener = TerminalListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    let terminal = listener.start();
    let mut events = terminal.subscribe();
    let mut c = config(addr, AccountMarginMode::RetailHedging);
    c.account.faults.disconnect_after = Some(5);
    let ticks = hedge_sim::parse_ticks(
        "time,bid,ask\n1704189600000,1.10000,1.10012\n1704189600010,1.10100,1.10112\n1704189600020,1.10200,1.10212\n",
        "EURUSD",
    )
    .unwrap();
    c.feed = hedge_sim::FeedConfig::Replay { ticks, speed: 1.0 };
    let sim = SimTerminal::spawn(c);
    assert!(terminal.wait_ready(Duration::from_secs(5)).await);
    let mut buy = TradeRequest::market("EURUSD", OrderType::Buy, Volume(dec!(0.1)));
    buy.tp = Price(dec!(1.105));
    let open = terminal.order_send(CmdId::from("o"), buy).await.unwrap();
    assert_eq!(open.retcode, Retcode::DONE);
    // Hello, symbols, snapshot, reply, first tx: the fifth message ends the connection once.
    let mut saw_resync = false;
    while !saw_resync {
        if let TerminalEvent::Connected { resync: true, .. } =
            tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .unwrap()
                .unwrap()
        {
            saw_resync = true;
        }
    }
    assert_eq!(terminal.positions().len(), 1);
    // The replayed quotes moved the clock to the file's time and the price up.
    sim.with_account(|a| {
        assert!(a.now() >= 1_704_189_600_000);
    });
    sim.set_quote("EURUSD", Price(dec!(1.106)), Price(dec!(1.10612)));
    let deal = next_tx_with_deal(&mut events).await;
    assert_eq!(deal.reason, DealReason::Tp);
    terminal.shutdown().await;
    sim.stop().await;
}

/// Deals and pings carry the terminal's clock, so a test can say exactly when a trade happened.
#[tokio::test]
async fn deals_carry_the_terminals_clock() {
    const T0: i64 = 1_700_000_000_000;
    let listener = TerminalListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    let terminal = listener.start();
    let mut events = terminal.subscribe();
    let clock = std::sync::Arc::new(hedge_domain::ManualClock::new(T0));
    let mut c = config(addr, AccountMarginMode::RetailHedging);
    c.clock = clock.clone();
    let sim = SimTerminal::spawn(c);
    assert!(terminal.wait_ready(Duration::from_secs(5)).await);
    clock.advance(1_500);
    let request = TradeRequest::market("EURUSD", OrderType::Buy, Volume(dec!(0.1)));
    let reply = terminal
        .order_send(CmdId::from("timed-1"), request)
        .await
        .unwrap();
    assert_eq!(reply.retcode, Retcode::DONE);
    let deal = next_tx_with_deal(&mut events).await;
    assert_eq!(deal.time, T0 + 1_500);
    sim.stop().await;
}
