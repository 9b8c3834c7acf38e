//! The agent-side `Terminal` against a scripted terminal over real TCP.

use hedge_domain::{
    AccountMarginMode, CmdId, DealTicket, Login, Money, OrderTicket, OrderType, PositionId,
    PositionType, Price, Retcode, SymbolSpec, TradeTransactionType, Volume,
};
use hedge_protocol::*;
use rust_decimal_macros::dec;
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A minimal terminal: handshake, then answers commands from a ring so resends get the first reply.
struct FakeTerminal {
    reader: LineReader<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    seq: u64,
}

impl FakeTerminal {
    async fn connect(
        addr: std::net::SocketAddr,
        login: u64,
        positions: Vec<PositionRecord>,
    ) -> Self {
        let pages = vec![vec![symbol_info("EURUSD")]];
        Self::connect_as(addr, hello(login, PROTOCOL_VERSION), pages, positions).await
    }

    /// A handshake with the given hello and the symbol list split into `pages` messages.
    async fn connect_as(
        addr: std::net::SocketAddr,
        hello: Hello,
        pages: Vec<Vec<SymbolInfo>>,
        positions: Vec<PositionRecord>,
    ) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (r, w) = stream.into_split();
        let mut t = FakeTerminal {
            reader: LineReader::new(BufReader::new(r), MAX_LINE),
            writer: w,
            seq: 0,
        };
        let login = hello.login.get();
        t.send(TerminalMsg::Hello(hello)).await;
        for symbols in pages {
            t.send(TerminalMsg::Symbols(Symbols { seq: 0, symbols }))
                .await;
        }
        t.send(TerminalMsg::Snapshot(snapshot(login, positions)))
            .await;
        t
    }

    /// The agent's next line must be an error with `code`, and then the connection must close.
    async fn refused_with(mut self, code: ErrorCode) -> ErrorMsg {
        let e = match self.next().await {
            AgentMsg::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(e.code, code, "{e:?}");
        let end = tokio::time::timeout(Duration::from_secs(5), self.reader.next_line())
            .await
            .expect("the agent closes the connection");
        assert!(matches!(end, Ok(None)), "connection must be closed");
        e
    }

    async fn send(&mut self, mut msg: TerminalMsg) {
        self.seq += 1;
        msg.set_seq(self.seq);
        let mut out = Vec::new();
        encode(&msg, &mut out).unwrap();
        self.writer.write_all(&out).await.unwrap();
    }

    async fn raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    async fn next(&mut self) -> AgentMsg {
        let line = tokio::time::timeout(Duration::from_secs(5), self.reader.next_line())
            .await
            .expect("agent sent nothing")
            .unwrap()
            .expect("agent closed")
            .unwrap();
        decode_agent(line).unwrap()
    }

    async fn next_cmd(&mut self) -> Cmd {
        match self.next().await {
            AgentMsg::Cmd(c) => c,
            other => panic!("expected a command, got {other:?}"),
        }
    }
}

fn symbol_info(name: &str) -> SymbolInfo {
    SymbolInfo {
        spec: SymbolSpec::forex(name, 5),
        bid: None,
        ask: None,
        time: 0,
    }
}

fn hello_from(login: u64, instance: &str) -> Hello {
    Hello {
        instance: instance.into(),
        ..hello(login, PROTOCOL_VERSION)
    }
}

fn hello(login: u64, v: u32) -> Hello {
    Hello {
        seq: 0,
        v,
        login: Login(login),
        server: "Sim-Demo".into(),
        company: "Sim".into(),
        currency: "USD".into(),
        margin_mode: AccountMarginMode::RetailHedging,
        build: 1,
        ea_version: "test".into(),
        leverage: 100,
        trade_allowed: true,
        time: 0,
        trade_expert: true,
        account_trade_allowed: true,
        instance: String::new(),
    }
}

fn position(id: u64, volume: Volume) -> PositionRecord {
    PositionRecord {
        ticket: id,
        identifier: PositionId(id),
        symbol: "EURUSD".into(),
        position_type: PositionType::Buy,
        volume,
        price_open: Price(dec!(1.1)),
        price_current: Price(dec!(1.1)),
        sl: Price::ZERO,
        tp: Price::ZERO,
        swap: Money::ZERO,
        profit: Money::ZERO,
        magic: Default::default(),
        comment: String::new(),
        time: 1,
        time_update: 1,
        reason: 0,
    }
}

fn snapshot(login: u64, positions: Vec<PositionRecord>) -> Snapshot {
    Snapshot {
        seq: 0,
        time: 10,
        cmd_id: None,
        account: AccountInfo {
            login: Login(login),
            currency: "USD".into(),
            margin_mode: AccountMarginMode::RetailHedging,
            leverage: 100,
            balance: Money(dec!(1000)),
            credit: Money::ZERO,
            equity: Money(dec!(1000)),
            profit: Money::ZERO,
            margin: Money::ZERO,
            margin_free: Money(dec!(1000)),
        },
        positions,
        orders: vec![],
    }
}

fn done(cmd_id: &CmdId, order: u64) -> Reply {
    let mut r = Reply::new(cmd_id.clone(), Retcode::DONE, "done");
    r.order = OrderTicket(order);
    r.deal = DealTicket(order + 1000);
    r.position = PositionId(order);
    r.volume = Volume(dec!(0.1));
    r
}

async fn started() -> (Terminal, std::net::SocketAddr) {
    let listener = TerminalListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    assert_ne!(addr.port(), 0);
    (listener.start(), addr)
}

#[tokio::test]
async fn handshake_state_commands_and_events() {
    let (terminal, addr) = started().await;
    let mut events = terminal.subscribe();
    let mut fake = FakeTerminal::connect(addr, 7, vec![position(11, Volume(dec!(0.5)))]).await;
    assert!(terminal.wait_ready(Duration::from_secs(5)).await);
    match events.recv().await.unwrap() {
        TerminalEvent::Connected { resync, hello, .. } => {
            assert!(!resync);
            assert_eq!(hello.login, Login(7));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(terminal.positions().len(), 1);
    assert!(terminal.symbol("EURUSD").is_some());
    assert_eq!(terminal.account().unwrap().balance, Money(dec!(1000)));

    let t2 = terminal.clone();
    let call = tokio::spawn(async move {
        t2.order_send(
            CmdId::from("open-1"),
            TradeRequest::market("EURUSD", OrderType::Buy, Volume(dec!(0.1))),
        )
        .await
    });
    let cmd = fake.next_cmd().await;
    assert_eq!(cmd.cmd_id, CmdId::from("open-1"));
    // A transaction pushed before the reply updates the state and reaches subscribers.
    let mut tx = Tx::new(20, TradeTransactionType::DealAdd);
    tx.position_record = Some(position(12, Volume(dec!(0.1))));
    fake.send(TerminalMsg::Tx(tx)).await;
    fake.send(TerminalMsg::Reply(done(&cmd.cmd_id, 12))).await;
    let reply = call.await.unwrap().unwrap();
    assert_eq!(reply.order, OrderTicket(12));
    assert!(reply.is_done());
    loop {
        if let TerminalEvent::Tx(tx) = events.recv().await.unwrap() {
            assert_eq!(
                tx.position_record.as_ref().unwrap().identifier,
                PositionId(12)
            );
            break;
        }
    }
    assert_eq!(terminal.positions().len(), 2);

    // A closing position record removes the position.
    let mut tx = Tx::new(21, TradeTransactionType::Position);
    tx.position_record = Some(position(11, Volume::ZERO));
    fake.send(TerminalMsg::Tx(tx)).await;
    fake.send(TerminalMsg::Heartbeat(Heartbeat { seq: 0, time: 30 }))
        .await;
    loop {
        if let TerminalEvent::Heartbeat { time } = events.recv().await.unwrap() {
            assert_eq!(time, 30);
            break;
        }
    }
    let ids: Vec<_> = terminal.positions().iter().map(|p| p.identifier).collect();
    assert_eq!(ids, vec![PositionId(12)]);
    terminal.shutdown().await;
}

#[tokio::test]
async fn bad_lines_get_an_error_and_the_connection_survives() {
    let (terminal, addr) = started().await;
    let mut fake = FakeTerminal::connect(addr, 7, vec![]).await;
    assert!(terminal.wait_ready(Duration::from_secs(5)).await);
    fake.raw(b"this is not json\n").await;
    match fake.next().await {
        AgentMsg::Error(e) => assert_eq!(e.code, ErrorCode::BadJson),
        other => panic!("unexpected {other:?}"),
    }
    fake.raw(b"{\"type\":\"gossip\"}\r\n").await;
    match fake.next().await {
        AgentMsg::Error(e) => assert_eq!(e.code, ErrorCode::UnknownType),
        other => panic!("unexpected {other:?}"),
    }
    let mut long = vec![b'x'; MAX_LINE + 10];
    long.push(b'\n');
    fake.raw(&long).await;
    match fake.next().await {
        AgentMsg::Error(e) => assert_eq!(e.code, ErrorCode::LineTooLong),
        other => panic!("unexpected {other:?}"),
    }
    // Still connected: a ping round trip works.
    let t2 = terminal.clone();
    let call = tokio::spawn(async move { t2.ping(CmdId::from("p1")).await });
    let cmd = fake.next_cmd().await;
    assert_eq!(cmd.op, Op::Ping);
    fake.send(TerminalMsg::Reply(Reply::new(
        cmd.cmd_id,
        Retcode::DONE,
        "pong",
    )))
    .await;
    assert_eq!(call.await.unwrap().unwrap().comment, "pong");
    assert!(terminal.is_connected());
    terminal.shutdown().await;
}

#[tokio::test]
async fn unsupported_version_is_refused_and_closed() {
    let (terminal, addr) = started().await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut out = Vec::new();
    encode(
        &TerminalMsg::Hello(hello(7, PROTOCOL_VERSION + 1)),
        &mut out,
    )
    .unwrap();
    w.write_all(&out).await.unwrap();
    let mut reader = LineReader::new(r, MAX_LINE);
    let line = reader.next_line().await.unwrap().unwrap().unwrap();
    match decode_agent(line).unwrap() {
        AgentMsg::Error(e) => assert_eq!(e.code, ErrorCode::UnsupportedVersion),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        reader.next_line().await.unwrap().is_none(),
        "connection must be closed"
    );
    assert!(!terminal.is_connected());
    terminal.shutdown().await;
}

#[tokio::test]
async fn wrong_login_is_refused() {
    let config = TerminalConfig {
        expected_login: Some(Login(1)),
        ..TerminalConfig::default()
    };
    let listener = TerminalListener::bind_with("127.0.0.1:0", config)
        .await
        .unwrap();
    let addr = listener.local_addr();
    let terminal = listener.start();
    let mut fake = FakeTerminal::connect(addr, 2, vec![]).await;
    match fake.next().await {
        AgentMsg::Error(e) => assert_eq!(e.code, ErrorCode::LoginMismatch),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!terminal.wait_ready(Duration::from_millis(200)).await);
    terminal.shutdown().await;
}

#[tokio::test]
async fn a_command_is_resent_with_the_same_id_after_reconnect() {
    let (terminal, addr) = started().await;
    let mut events = terminal.subscribe();
    let mut fake = FakeTerminal::connect(addr, 7, vec![]).await;
    assert!(terminal.wait_ready(Duration::from_secs(5)).await);

    let t2 = terminal.clone();
    let call = tokio::spawn(async move {
        t2.order_send(
            CmdId::from("hedge-1"),
            TradeRequest::market("EURUSD", OrderType::Sell, Volume(dec!(0.1))),
        )
        .await
    });
    let first = fake.next_cmd().await;
    // The terminal executes it, then the link drops before the reply is written.
    let mut executed: HashMap<CmdId, Reply> = HashMap::new();
    executed.insert(first.cmd_id.clone(), done(&first.cmd_id, 55));
    drop(fake);

    // It comes back with the position the command opened.
    let mut fake = FakeTerminal::connect(addr, 7, vec![position(55, Volume(dec!(0.1)))]).await;
    let resent = fake.next_cmd().await;
    assert_eq!(resent.cmd_id, first.cmd_id);
    assert_eq!(resent.op, first.op);
    // At most once: answered from the ring, not executed again.
    let stored = executed.get(&resent.cmd_id).unwrap().clone();
    fake.send(TerminalMsg::Reply(stored)).await;
    let reply = call.await.unwrap().unwrap();
    assert_eq!(reply.order, OrderTicket(55));

    let mut saw_down = false;
    loop {
        match events.recv().await.unwrap() {
            TerminalEvent::Disconnected { .. } => saw_down = true,
            TerminalEvent::Connected {
                resync: true,
                snapshot,
                generation,
                ..
            } => {
                assert!(saw_down);
                assert_eq!(generation, 2);
                assert_eq!(snapshot.positions.len(), 1);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(terminal.positions()[0].identifier, PositionId(55));
    terminal.shutdown().await;
}

#[tokio::test]
async fn timeout_then_late_reply_is_an_event() {
    let config = TerminalConfig {
        reply_timeout: Duration::from_millis(100),
        ..TerminalConfig::default()
    };
    let listener = TerminalListener::bind_with("127.0.0.1:0", config)
        .await
        .unwrap();
    let addr = listener.local_addr();
    let terminal = listener.start();
    let mut events = terminal.subscribe();
    let mut fake = FakeTerminal::connect(addr, 7, vec![]).await;
    assert!(terminal.wait_ready(Duration::from_secs(5)).await);
    let result = terminal.ping(CmdId::from("slow")).await;
    assert!(matches!(result, Err(TerminalError::Timeout { .. })));
    let cmd = fake.next_cmd().await;
    fake.send(TerminalMsg::Reply(Reply::new(
        cmd.cmd_id,
        Retcode::DONE,
        "late",
    )))
    .await;
    loop {
        if let TerminalEvent::LateReply(r) = events.recv().await.unwrap() {
            assert_eq!(r.comment, "late");
            break;
        }
    }
    terminal.shutdown().await;
}

#[tokio::test]
async fn history_pages_are_collected_and_a_refused_command_fails() {
    let (terminal, addr) = started().await;
    let mut fake = FakeTerminal::connect(addr, 7, vec![]).await;
    assert!(terminal.wait_ready(Duration::from_secs(5)).await);
    let t2 = terminal.clone();
    let call = tokio::spawn(async move {
        t2.history(
            CmdId::from("h"),
            HistoryRange {
                from: 0,
                to: 100,
                page_size: Some(1),
                cursor: None,
            },
        )
        .await
    });
    let cmd = fake.next_cmd().await;
    for page in 0..3u32 {
        fake.send(TerminalMsg::History(HistoryPage {
            seq: 0,
            cmd_id: cmd.cmd_id.clone(),
            page,
            orders: vec![],
            deals: vec![],
            cursor: Some(format!("c{page}")),
            last: page == 2,
        }))
        .await;
    }
    fake.send(TerminalMsg::Reply(Reply::new(
        cmd.cmd_id,
        Retcode::DONE,
        "3 pages",
    )))
    .await;
    let history = call.await.unwrap().unwrap();
    assert_eq!(history.cursor.as_deref(), Some("c2"));

    let t2 = terminal.clone();
    let call = tokio::spawn(async move { t2.ping(CmdId::from("bad")).await });
    let cmd = fake.next_cmd().await;
    fake.send(TerminalMsg::Error(ErrorMsg {
        seq: 0,
        code: ErrorCode::BadMessage,
        message: "nope".into(),
        cmd_id: Some(cmd.cmd_id),
    }))
    .await;
    assert!(matches!(
        call.await.unwrap(),
        Err(TerminalError::Refused(_))
    ));
    terminal.shutdown().await;
}

#[tokio::test]
async fn a_terminal_not_logged_in_is_refused_as_not_ready_not_as_another_account() {
    let config = TerminalConfig {
        expected_login: Some(Login(7)),
        ..TerminalConfig::default()
    };
    let listener = TerminalListener::bind_with("127.0.0.1:0", config)
        .await
        .unwrap();
    let addr = listener.local_addr();
    let terminal = listener.start();
    let fake = FakeTerminal::connect(addr, 0, vec![]).await;
    let e = fake.refused_with(ErrorCode::NotReady).await;
    assert!(e.message.contains("not logged in"), "{}", e.message);
    assert!(!terminal.is_connected() && terminal.account().is_none());
    // Once logged in, the same terminal is accepted.
    let _fake = FakeTerminal::connect(addr, 7, vec![]).await;
    assert!(terminal.wait_ready(Duration::from_secs(5)).await);
    assert_eq!(terminal.hello().unwrap().login, Login(7));
    terminal.shutdown().await;
}

#[tokio::test]
async fn a_second_instance_for_the_account_is_refused_and_the_first_kept() {
    let (terminal, addr) = started().await;
    let pages = || vec![vec![symbol_info("EURUSD")]];
    let mut first = FakeTerminal::connect_as(addr, hello_from(7, "chart-1"), pages(), vec![]).await;
    assert!(terminal.wait_ready(Duration::from_secs(5)).await);

    let second = FakeTerminal::connect_as(addr, hello_from(7, "chart-2"), pages(), vec![]).await;
    let e = second.refused_with(ErrorCode::Duplicate).await;
    assert!(e.message.contains("chart-1"), "{}", e.message);
    assert_eq!(terminal.state().generation, 1);
    assert_eq!(terminal.hello().unwrap().instance, "chart-1");

    // The first connection still carries commands.
    let t2 = terminal.clone();
    let call = tokio::spawn(async move { t2.ping(CmdId::from("p-1")).await });
    let cmd = first.next_cmd().await;
    assert_eq!(cmd.cmd_id.as_str(), "p-1");
    first
        .send(TerminalMsg::Reply(Reply::new(
            cmd.cmd_id,
            Retcode::DONE,
            "pong",
        )))
        .await;
    assert_eq!(call.await.unwrap().unwrap().retcode, Retcode::DONE);

    // The same instance reconnecting is the normal case: it replaces its older connection.
    let _again = FakeTerminal::connect_as(addr, hello_from(7, "chart-1"), pages(), vec![]).await;
    let mut waited = 0;
    while terminal.state().generation != 2 && waited < 50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(terminal.state().generation, 2);
    drop(first);
    terminal.shutdown().await;
}

#[tokio::test]
async fn a_symbol_list_in_several_messages_is_kept_whole() {
    let (terminal, addr) = started().await;
    let pages = vec![
        vec![symbol_info("EURUSD"), symbol_info("GBPUSD")],
        vec![symbol_info("USDJPY")],
        vec![symbol_info("XAUUSD")],
    ];
    let _fake = FakeTerminal::connect_as(addr, hello(7, PROTOCOL_VERSION), pages, vec![]).await;
    assert!(terminal.wait_ready(Duration::from_secs(5)).await);
    let names: Vec<String> = terminal
        .symbols()
        .into_iter()
        .map(|s| s.spec.name)
        .collect();
    assert_eq!(names, ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"]);
    terminal.shutdown().await;
}
