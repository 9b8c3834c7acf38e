//! Conformance of a terminal side to `docs/protocol.md`, run against the simulator over real TCP.
//!
//! The tests play the agent at the byte level, so they can send what a well-behaved agent never
//! would (split lines, several lines per write, `\r\n`, oversized and garbage lines), and they check
//! every line the terminal sends by decoding it with `hedge_protocol` and following `seq`. The bridge
//! Expert Advisor (`mql5/HedgeBridge.mq5`) implements the same document; `mql5/README.md` maps each
//! of its functions to the test here that covers the same behaviour.

use hedge_domain::{FillingModes, Money, OrderFilling, Retcode, TradeTransactionType, Volume};
use hedge_protocol::{decode_terminal, ErrorCode, Reply, TerminalMsg, Tx};
use hedge_sim::{default_symbols, AccountConfig, SimConfig, SimTerminal};
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);

/// The agent's end of one connection, reading and checking every message the terminal sends.
struct Agent {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    last_seq: u64,
}

impl Agent {
    async fn accept(listener: &TcpListener) -> Agent {
        let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("the terminal connects")
            .expect("accept");
        stream.set_nodelay(true).unwrap();
        let (read, writer) = stream.into_split();
        Agent {
            reader: BufReader::new(read),
            writer,
            last_seq: 0,
        }
    }

    /// The next message; it must decode under the protocol and carry the next `seq`.
    async fn recv(&mut self) -> TerminalMsg {
        let mut line = Vec::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_until(b'\n', &mut line))
            .await
            .expect("a message within the wait")
            .expect("read");
        assert!(n > 0, "the terminal closed the connection");
        assert_eq!(line.pop(), Some(b'\n'), "every line ends with \\n");
        assert!(line.len() <= hedge_protocol::MAX_LINE);
        let msg = decode_terminal(&line).unwrap_or_else(|e| {
            panic!(
                "terminal sent a line that does not conform ({e}): {}",
                String::from_utf8_lossy(&line)
            )
        });
        assert_eq!(
            msg.seq(),
            self.last_seq + 1,
            "seq must increase by one per message"
        );
        self.last_seq = msg.seq();
        msg
    }

    /// Messages up to and including the first that `want` accepts.
    async fn until(&mut self, want: impl Fn(&TerminalMsg) -> bool) -> Vec<TerminalMsg> {
        let mut seen = Vec::new();
        loop {
            let msg = self.recv().await;
            let done = want(&msg);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }

    /// The reply to `cmd_id`, and everything that came before it.
    async fn reply(&mut self, cmd_id: &str) -> (Reply, Vec<TerminalMsg>) {
        let mut seen = self
            .until(|m| matches!(m, TerminalMsg::Reply(r) if r.cmd_id.as_str() == cmd_id))
            .await;
        let Some(TerminalMsg::Reply(reply)) = seen.pop() else {
            unreachable!()
        };
        (reply, seen)
    }

    /// The error answering a bad line, and everything before it.
    async fn error(&mut self) -> hedge_protocol::ErrorMsg {
        let mut seen = self.until(|m| matches!(m, TerminalMsg::Error(_))).await;
        let Some(TerminalMsg::Error(e)) = seen.pop() else {
            unreachable!()
        };
        e
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
        self.writer.flush().await.expect("flush");
    }

    async fn send(&mut self, msg: &Value) {
        let mut line = serde_json::to_vec(msg).unwrap();
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    async fn ping(&mut self, cmd_id: &str) -> Reply {
        self.send(&json!({"type":"cmd","cmd_id":cmd_id,"op":"ping"}))
            .await;
        self.reply(cmd_id).await.0
    }
}

fn config(port: u16) -> SimConfig {
    let mut c = SimConfig::new(
        format!("127.0.0.1:{port}"),
        AccountConfig {
            login: hedge_domain::Login(5_012_345),
            ..AccountConfig::default()
        },
    );
    c.reconnect_min = Duration::from_millis(20);
    c.reconnect_max = Duration::from_millis(200);
    c
}

/// A simulator connected to a raw agent, past its handshake.
async fn connected(adjust: impl FnOnce(&mut SimConfig)) -> (Agent, SimTerminal, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = config(listener.local_addr().unwrap().port());
    adjust(&mut c);
    let sim = SimTerminal::spawn(c);
    let mut agent = Agent::accept(&listener).await;
    for _ in 0..3 {
        agent.recv().await;
    }
    (agent, sim, listener)
}

fn market(cmd_id: &str, volume: f64, order_type: u8, comment: &str) -> Value {
    json!({
        "type": "cmd", "cmd_id": cmd_id, "op": "order_send",
        "action": 1, "symbol": "EURUSD", "volume": volume, "price": 0, "deviation": 20,
        "order_type": order_type, "type_filling": "auto", "type_time": 0,
        "comment": comment, "magic": 77
    })
}

fn deal_adds(msgs: &[TerminalMsg]) -> Vec<&Tx> {
    msgs.iter()
        .filter_map(|m| match m {
            TerminalMsg::Tx(tx) if tx.tx_type == TradeTransactionType::DealAdd => Some(tx),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn handshake_is_hello_symbols_snapshot() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = SimTerminal::spawn(config(listener.local_addr().unwrap().port()));
    let mut agent = Agent::accept(&listener).await;
    let TerminalMsg::Hello(hello) = agent.recv().await else {
        panic!("the first message must be hello");
    };
    assert_eq!(hello.seq, 1);
    assert_eq!(hello.v, hedge_protocol::PROTOCOL_VERSION);
    assert_eq!(hello.login.get(), 5_012_345);
    assert!(!hello.server.is_empty() && !hello.currency.is_empty());
    let TerminalMsg::Symbols(symbols) = agent.recv().await else {
        panic!("the second message must be symbols");
    };
    let eurusd = symbols
        .symbols
        .iter()
        .find(|s| s.spec.name == "EURUSD")
        .expect("EURUSD offered");
    assert!(eurusd.spec.volume_step.is_positive() && eurusd.bid.is_some());
    let TerminalMsg::Snapshot(snapshot) = agent.recv().await else {
        panic!("the third message must be snapshot");
    };
    assert_eq!(snapshot.account.login, hello.login);
    assert!(snapshot.cmd_id.is_none());
    sim.stop().await;
}

#[tokio::test]
async fn order_send_pushes_tx_and_replies_with_tickets() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    // A comment with quotes, a backslash and non-ASCII text must survive the JSON round trip.
    let comment = "hedge \"p-1\" \\ ü€";
    agent.send(&market("open-1", 0.1, 0, comment)).await;
    let (reply, before) = agent.reply("open-1").await;
    assert_eq!(reply.retcode, Retcode::DONE, "{reply:?}");
    assert!(reply.order.get() > 0 && reply.deal.get() > 0 && reply.position.get() > 0);
    assert_eq!(reply.volume, Volume::from_f64(0.1).unwrap());
    assert!(reply.price.is_positive());
    // The deal's tx may come before or after the reply; collect until it is seen.
    let mut txs: Vec<Tx> = deal_adds(&before).into_iter().cloned().collect();
    if txs.is_empty() {
        let after = agent
            .until(
                |m| matches!(m, TerminalMsg::Tx(t) if t.tx_type == TradeTransactionType::DealAdd),
            )
            .await;
        txs = deal_adds(&after).into_iter().cloned().collect();
    }
    let tx = &txs[0];
    assert_eq!(tx.deal, reply.deal);
    let deal = tx.deal_record.as_ref().expect("deal_record on DEAL_ADD");
    assert_eq!(deal.comment, comment);
    assert_eq!(deal.position_id, reply.position);
    let position = tx
        .position_record
        .as_ref()
        .expect("position_record on DEAL_ADD");
    assert_eq!(position.volume, Volume::from_f64(0.1).unwrap());
    sim.stop().await;
}

#[tokio::test]
async fn a_resent_cmd_id_gets_the_first_reply_and_trades_once() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    let cmd = market("once-1", 0.2, 1, "once");
    agent.send(&cmd).await;
    let (first, _) = agent.reply("once-1").await;
    assert_eq!(first.retcode, Retcode::DONE);

    // Resent alone, then twice in one write: always the first reply, never a second trade.
    agent.send(&cmd).await;
    let (second, _) = agent.reply("once-1").await;
    let mut two = serde_json::to_vec(&cmd).unwrap();
    two.push(b'\n');
    two.extend_from_slice(&two.clone());
    agent.send_raw(&two).await;
    let (third, between) = agent.reply("once-1").await;
    let (fourth, after) = agent.reply("once-1").await;
    for again in [&second, &third, &fourth] {
        let mut same = (*again).clone();
        same.seq = first.seq;
        assert_eq!(same, first, "a resend gets the stored reply");
        assert!(again.seq > first.seq, "with a new seq");
    }
    let ping = agent.ping("once-ping").await;
    assert!(ping.is_done());
    assert!(deal_adds(&between).is_empty() && deal_adds(&after).is_empty());
    assert_eq!(sim.commands_executed(), 1);
    assert_eq!(sim.positions().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn async_order_send_replies_with_placed() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    let mut cmd = market("async-1", 0.1, 0, "async");
    cmd["async"] = json!(true);
    agent.send(&cmd).await;
    let (reply, _) = agent.reply("async-1").await;
    assert_eq!(reply.retcode, Retcode::PLACED, "{reply:?}");
    // The outcome follows as transactions, the request one naming the command.
    let seen = agent
        .until(|m| matches!(m, TerminalMsg::Tx(t) if t.tx_type == TradeTransactionType::Request))
        .await;
    let Some(TerminalMsg::Tx(request)) = seen.last() else {
        unreachable!()
    };
    assert_eq!(request.cmd_id.as_ref().map(|c| c.as_str()), Some("async-1"));
    assert_eq!(sim.positions().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn auto_filling_uses_an_allowed_mode() {
    let ioc_only = FillingModes {
        fok: false,
        ioc: true,
        ret: false,
        boc: false,
    };
    let (mut agent, sim, _l) = connected(|c| {
        c.symbols = default_symbols("")
            .into_iter()
            .map(|s| {
                if s.spec.name == "EURUSD" {
                    s.with_filling(ioc_only)
                } else {
                    s
                }
            })
            .collect();
    })
    .await;
    let mut fok = market("fill-fok", 0.1, 0, "");
    fok["type_filling"] = json!(OrderFilling::Fok.code());
    agent.send(&fok).await;
    let (refused, _) = agent.reply("fill-fok").await;
    assert_eq!(refused.retcode, Retcode::INVALID_FILL, "{refused:?}");

    agent.send(&market("fill-auto", 0.1, 0, "")).await;
    let (done, _) = agent.reply("fill-auto").await;
    assert_eq!(done.retcode, Retcode::DONE, "{done:?}");
    let order = sim
        .with_account(|a| {
            a.history_orders()
                .iter()
                .find(|o| o.ticket == done.order)
                .cloned()
        })
        .expect("the order is in history");
    assert_eq!(order.type_filling, OrderFilling::Ioc);
    sim.stop().await;
}

#[tokio::test]
async fn order_check_answers_with_margins() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    // Balance 10,000 and EURUSD at 1,100 margin a lot (docs/simulator.md): 0.1 lot takes 110.
    let mut cmd = market("check-1", 0.1, 0, "");
    cmd["op"] = json!("order_check");
    agent.send(&cmd).await;
    let (reply, _) = agent.reply("check-1").await;
    // MT5's OrderCheck answers 0 for a request that would pass; the terminal relays it as 10009.
    assert_eq!(reply.retcode, Retcode::DONE, "{reply:?}");
    assert_eq!(reply.comment, "Done");
    let check = reply.check.expect("check");
    assert_eq!(check.balance, Money(dec!(10000)));
    assert_eq!(check.equity, Money(dec!(10000)));
    assert_eq!(check.profit, Money::ZERO);
    assert_eq!(check.margin, Money(dec!(110)));
    assert_eq!(check.margin_free, Money(dec!(9890)));
    assert_eq!(check.margin_level, Money(dec!(9090.91)));
    assert!(sim.positions().is_empty(), "order_check never trades");

    // Too large: 10019 with the figures the order would leave, and still nothing traded.
    let mut cmd = market("check-2", 10.0, 0, "");
    cmd["op"] = json!("order_check");
    agent.send(&cmd).await;
    let (reply, _) = agent.reply("check-2").await;
    assert_eq!(reply.retcode, Retcode::NO_MONEY, "{reply:?}");
    let check = reply.check.expect("check");
    assert_eq!(check.margin, Money(dec!(11000)));
    assert_eq!(check.margin_free, Money(dec!(-1000)));

    // Read-only: the same cmd_id is checked again, not answered from the ring of trades.
    agent.send(&market("open-1", 0.5, 0, "")).await;
    let (open, _) = agent.reply("open-1").await;
    assert_eq!(open.retcode, Retcode::DONE);
    agent.send(&cmd).await;
    let (again, _) = agent.reply("check-2").await;
    assert_eq!(again.check.expect("check").margin, Money(dec!(11550)));
    assert_eq!(
        sim.commands_executed(),
        1,
        "checks are not trading commands"
    );

    // An invalid request: the same retcode order_send would give.
    let mut cmd = market("check-3", 0.001, 0, "");
    cmd["op"] = json!("order_check");
    agent.send(&cmd).await;
    let (reply, _) = agent.reply("check-3").await;
    assert_eq!(reply.retcode, Retcode::INVALID_VOLUME, "{reply:?}");
    assert_eq!(sim.positions().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn history_comes_in_pages_then_a_reply() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    for i in 0..3 {
        let id = format!("h-open-{i}");
        agent.send(&market(&id, 0.1, 0, "h")).await;
        agent.reply(&id).await;
    }
    let cmd = json!({"type":"cmd","cmd_id":"hist-1","op":"history","from":0,"to":i64::MAX / 2,"page_size":2});
    agent.send(&cmd).await;
    let (reply, before) = agent.reply("hist-1").await;
    let pages: Vec<_> = before
        .iter()
        .filter_map(|m| match m {
            TerminalMsg::History(p) if p.cmd_id.as_str() == "hist-1" => Some(p.clone()),
            _ => None,
        })
        .collect();
    let summary = reply.history.expect("history totals");
    assert_eq!(summary.pages as usize, pages.len());
    assert!(
        pages.len() >= 3,
        "3 orders and at least 3 deals in pages of 2"
    );
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p.page as usize, i);
        assert!(p.orders.len() + p.deals.len() <= 2);
        assert_eq!(p.last, i + 1 == pages.len());
    }
    let orders: usize = pages.iter().map(|p| p.orders.len()).sum();
    let deals: usize = pages.iter().map(|p| p.deals.len()).sum();
    assert_eq!(
        (orders, deals),
        (summary.orders as usize, summary.deals as usize)
    );
    assert_eq!(orders, 3);
    // Orders first (by time done, then ticket), then deals (by time, then ticket).
    let all_orders: Vec<_> = pages.iter().flat_map(|p| &p.orders).collect();
    let all_deals: Vec<_> = pages.iter().flat_map(|p| &p.deals).collect();
    assert!(all_orders
        .windows(2)
        .all(|w| (w[0].time_done, w[0].ticket) <= (w[1].time_done, w[1].ticket)));
    assert!(all_deals
        .windows(2)
        .all(|w| (w[0].time, w[0].ticket) <= (w[1].time, w[1].ticket)));
    let first_deal_page = pages.iter().position(|p| !p.deals.is_empty());
    let last_order_page = pages.iter().rposition(|p| !p.orders.is_empty());
    assert!(first_deal_page >= last_order_page, "no order after a deal");
    let trades = pages
        .iter()
        .flat_map(|p| &p.deals)
        .filter(|d| d.deal_type.is_trade())
        .count();
    assert_eq!(trades, 3, "3 trade deals (besides the opening balance)");

    // The cursor of the first page continues after it.
    let mut next = cmd.clone();
    next["cmd_id"] = json!("hist-2");
    next["cursor"] = json!(pages[0].cursor.clone().expect("cursor"));
    agent.send(&next).await;
    let (rest, _) = agent.reply("hist-2").await;
    let rest = rest.history.expect("totals");
    assert_eq!(
        rest.orders as usize + rest.deals as usize,
        orders + deals - 2
    );

    // An empty range is one empty last page.
    agent
        .send(&json!({"type":"cmd","cmd_id":"hist-3","op":"history","from":1,"to":2}))
        .await;
    let (empty, before) = agent.reply("hist-3").await;
    assert_eq!(empty.history.expect("totals").pages, 1);
    assert!(before.iter().any(|m| matches!(m, TerminalMsg::History(p)
        if p.cmd_id.as_str() == "hist-3" && p.last && p.orders.is_empty() && p.deals.is_empty())));
    sim.stop().await;
}

#[tokio::test]
async fn snapshot_command_sends_a_snapshot_with_its_cmd_id() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    agent.send(&market("snap-open", 0.1, 0, "")).await;
    agent.reply("snap-open").await;
    agent
        .send(&json!({"type":"cmd","cmd_id":"snap-1","op":"snapshot"}))
        .await;
    let (reply, before) = agent.reply("snap-1").await;
    assert_eq!(reply.retcode, Retcode::DONE);
    let snapshot = before
        .iter()
        .find_map(|m| match m {
            TerminalMsg::Snapshot(s) if s.cmd_id.as_ref().map(|c| c.as_str()) == Some("snap-1") => {
                Some(s)
            }
            _ => None,
        })
        .expect("a snapshot carrying the cmd_id before the reply");
    assert_eq!(snapshot.positions.len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn symbol_info_answers_with_the_spec() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    agent
        .send(&json!({"type":"cmd","cmd_id":"si-1","op":"symbol_info","symbol":"EURUSD"}))
        .await;
    let (reply, _) = agent.reply("si-1").await;
    assert_eq!(reply.retcode, Retcode::DONE);
    assert_eq!(reply.symbol.expect("symbol").spec.name, "EURUSD");
    agent
        .send(&json!({"type":"cmd","cmd_id":"si-2","op":"symbol_info","symbol":"NOPE"}))
        .await;
    let (unknown, _) = agent.reply("si-2").await;
    assert_eq!(unknown.retcode, Retcode::INVALID);
    assert!(unknown.symbol.is_none());
    sim.stop().await;
}

#[tokio::test]
async fn ping_is_answered() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    let reply = agent.ping("ping-1").await;
    assert_eq!(reply.retcode, Retcode::DONE);
    assert!(reply.time > 0);
    sim.stop().await;
}

#[tokio::test]
async fn bad_lines_get_errors_and_the_connection_survives() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    let cases: [(&[u8], ErrorCode, Option<&str>); 7] = [
        (b"this is not json\n", ErrorCode::BadJson, None),
        (b"[1,2,3]\n", ErrorCode::BadJson, None),
        (b"{\"op\":\"ping\"}\n", ErrorCode::MissingType, None),
        (b"{\"type\":\"teleport\"}\n", ErrorCode::UnknownType, None),
        (
            b"{\"type\":\"cmd\",\"cmd_id\":\"bad-op\",\"op\":\"warp\"}\n",
            ErrorCode::BadMessage,
            Some("bad-op"),
        ),
        (
            b"{\"type\":\"cmd\",\"cmd_id\":\"neg\",\"op\":\"order_send\",\"action\":1,\"symbol\":\"EURUSD\",\"volume\":-1}\n",
            ErrorCode::BadMessage,
            Some("neg"),
        ),
        (
            b"{\"type\":\"cmd\",\"cmd_id\":\"enum\",\"op\":\"order_send\",\"action\":2,\"symbol\":\"EURUSD\",\"volume\":1}\n",
            ErrorCode::BadMessage,
            Some("enum"),
        ),
    ];
    for (line, code, cmd_id) in cases {
        agent.send_raw(line).await;
        let e = agent.error().await;
        assert_eq!(e.code, code, "for {}", String::from_utf8_lossy(line));
        assert_eq!(e.cmd_id.as_ref().map(|c| c.as_str()), cmd_id);
    }
    // Blank lines are ignored; the connection is still up and nothing was executed.
    agent.send_raw(b"\n   \r\n").await;
    assert!(agent.ping("after-bad").await.is_done());
    assert_eq!(sim.commands_executed(), 0);
    assert!(sim.positions().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn an_oversized_line_is_skipped_and_reported() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    let mut huge = b"{\"type\":\"cmd\",\"cmd_id\":\"huge\",\"op\":\"ping\",\"pad\":\"".to_vec();
    huge.resize(hedge_protocol::MAX_LINE + 100, b'x');
    huge.extend_from_slice(b"\"}\n");
    // Written in pieces, as a real socket delivers it.
    for chunk in huge.chunks(64 * 1024) {
        agent.send_raw(chunk).await;
    }
    let e = agent.error().await;
    assert_eq!(e.code, ErrorCode::LineTooLong);
    let ping = agent.ping("after-huge").await;
    assert!(ping.is_done());
    sim.stop().await;
}

#[tokio::test]
async fn partial_lines_and_several_lines_per_write_are_framed() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    // One command split into single bytes, across a multi-byte UTF-8 character.
    let id = "split-ü€-1";
    let line = format!("{{\"type\":\"cmd\",\"cmd_id\":\"{id}\",\"op\":\"ping\"}}\n");
    for b in line.as_bytes() {
        agent.send_raw(&[*b]).await;
    }
    let (reply, _) = agent.reply(id).await;
    assert_eq!(reply.cmd_id.as_str(), id, "the UTF-8 id survives the split");

    // Three commands in one write, one ended by \r\n, followed by the start of a fourth.
    agent
        .send_raw(
            b"{\"type\":\"cmd\",\"cmd_id\":\"m-1\",\"op\":\"ping\"}\r\n\
              {\"type\":\"cmd\",\"cmd_id\":\"m-2\",\"op\":\"ping\"}\n\
              {\"type\":\"cmd\",\"cmd_id\":\"m-3\",\"op\":\"symbol_info\",\"symbol\":\"EURUSD\"}\n\
              {\"type\":\"cmd\",\"cmd_",
        )
        .await;
    for id in ["m-1", "m-2", "m-3"] {
        assert!(agent.reply(id).await.0.is_done(), "{id}");
    }
    agent.send_raw(b"id\":\"m-4\",\"op\":\"ping\"}\n").await;
    assert!(agent.reply("m-4").await.0.is_done());
    sim.stop().await;
}

#[tokio::test]
async fn heartbeats_arrive_when_idle() {
    let (mut agent, sim, _l) =
        connected(|c| c.heartbeat_interval = Duration::from_millis(100)).await;
    let seen = agent
        .until(|m| matches!(m, TerminalMsg::Heartbeat(_)))
        .await;
    let Some(TerminalMsg::Heartbeat(h)) = seen.last() else {
        unreachable!()
    };
    assert!(h.time > 0);
    sim.stop().await;
}

#[tokio::test]
async fn an_agent_error_is_accepted() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    agent
        .send(&json!({"type":"error","code":"bad_json","message":"could not read your line"}))
        .await;
    agent
        .send(&json!({"type":"cmd","cmd_id":"after-agent-error","op":"ping"}))
        .await;
    let (reply, before) = agent.reply("after-agent-error").await;
    assert!(reply.is_done());
    assert!(
        !before.iter().any(|m| matches!(m, TerminalMsg::Error(_))),
        "an agent's error is not answered with another error"
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_reconnect_starts_with_a_new_handshake() {
    let (mut agent, sim, listener) = connected(|_| {}).await;
    let cmd = market("before-drop", 0.1, 0, "");
    agent.send(&cmd).await;
    let (first, _) = agent.reply("before-drop").await;
    drop(agent);

    // The terminal reconnects by itself and starts over with hello (seq 1), symbols, snapshot.
    let mut again = Agent::accept(&listener).await;
    assert!(matches!(again.recv().await, TerminalMsg::Hello(h) if h.seq == 1));
    assert!(matches!(again.recv().await, TerminalMsg::Symbols(_)));
    let TerminalMsg::Snapshot(s) = again.recv().await else {
        panic!("snapshot expected");
    };
    assert_eq!(s.positions.len(), 1);
    // The ring survives the reconnection: the resend after it does not trade again.
    again.send(&cmd).await;
    let (resent, _) = again.reply("before-drop").await;
    assert_eq!(resent.deal, first.deal);
    assert_eq!(sim.commands_executed(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn the_agent_client_trades_through_the_simulator() {
    let listener = hedge_protocol::TerminalListener::bind("127.0.0.1:0")
        .await
        .unwrap();
    let sim = SimTerminal::spawn(config(listener.local_addr().port()));
    let terminal = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("handshake in time")
        .expect("handshake");
    let reply = terminal
        .order_send(
            hedge_domain::CmdId::from("client-1"),
            hedge_protocol::TradeRequest::market(
                "EURUSD",
                hedge_domain::OrderType::Buy,
                Volume::from_f64(0.1).unwrap(),
            ),
        )
        .await
        .expect("reply");
    assert!(reply.is_done(), "{reply:?}");
    terminal.shutdown().await;
    sim.stop().await;
}

#[tokio::test]
async fn closing_names_the_position_on_hedging_accounts() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    agent.send(&market("c-open-1", 0.3, 0, "")).await;
    let (first, _) = agent.reply("c-open-1").await;
    agent.send(&market("c-open-2", 0.1, 0, "")).await;
    let (second, _) = agent.reply("c-open-2").await;
    assert_ne!(
        first.position, second.position,
        "hedging: one position per order"
    );

    // A partial close of the first position, then the rest, each naming it.
    let mut close = market("c-close-1", 0.1, 1, "");
    close["position"] = json!(first.position.get());
    agent.send(&close).await;
    let (partial, before) = agent.reply("c-close-1").await;
    assert_eq!(partial.retcode, Retcode::DONE, "{partial:?}");
    assert_eq!(partial.position, first.position);
    let mut rest = market("c-close-2", 0.2, 1, "");
    rest["position"] = json!(first.position.get());
    agent.send(&rest).await;
    let (_, mut seen) = agent.reply("c-close-2").await;
    seen.extend(before);
    let closes = |m: &TerminalMsg| {
        matches!(m, TerminalMsg::Tx(t)
            if t.tx_type == TradeTransactionType::DealAdd
                && t.position_record.as_ref().is_some_and(|p| p.volume.is_zero()))
    };
    if !seen.iter().any(closes) {
        seen.extend(agent.until(closes).await);
    }
    let closed = deal_adds(&seen)
        .into_iter()
        .filter_map(|t| t.position_record.as_ref())
        .find(|p| p.identifier == first.position && p.volume.is_zero());
    assert!(closed.is_some(), "the closing tx reports volume 0");
    let open: Vec<_> = sim.positions().into_iter().map(|p| p.identifier).collect();
    assert_eq!(
        open,
        vec![second.position],
        "only the other position is left"
    );
    sim.stop().await;
}

#[tokio::test]
async fn pending_orders_are_pushed_with_their_records() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    agent
        .send(&json!({"type":"cmd","cmd_id":"snap-p","op":"symbol_info","symbol":"EURUSD"}))
        .await;
    let (info, _) = agent.reply("snap-p").await;
    let bid = info.bid.to_f64();
    let limit = json!({
        "type":"cmd","cmd_id":"pend-1","op":"order_send","action":5,"symbol":"EURUSD",
        "volume":0.1,"price":((bid * 0.9) * 100_000.0).round() / 100_000.0,"order_type":2,
        "type_filling":2,"type_time":0
    });
    agent.send(&limit).await;
    let (placed, mut seen) = agent.reply("pend-1").await;
    assert!(placed.is_done(), "{placed:?}");
    assert!(placed.order.get() > 0);
    let is_add = |m: &TerminalMsg| matches!(m, TerminalMsg::Tx(t) if t.tx_type == TradeTransactionType::OrderAdd);
    if !seen.iter().any(is_add) {
        seen.extend(agent.until(is_add).await);
    }
    let add = seen
        .iter()
        .find_map(|m| match m {
            TerminalMsg::Tx(t) if t.tx_type == TradeTransactionType::OrderAdd => Some(t),
            _ => None,
        })
        .expect("ORDER_ADD");
    let record = add.order_record.as_ref().expect("order_record");
    assert_eq!(record.ticket, placed.order);
    assert_eq!(sim.orders().len(), 1);

    let remove = json!({"type":"cmd","cmd_id":"pend-del","op":"order_send","action":8,"order":placed.order.get()});
    agent.send(&remove).await;
    let (removed, mut seen) = agent.reply("pend-del").await;
    assert!(removed.is_done(), "{removed:?}");
    if !seen
        .iter()
        .any(|m| matches!(m, TerminalMsg::Tx(t) if t.tx_type == TradeTransactionType::OrderDelete))
    {
        seen = agent
            .until(|m| matches!(m, TerminalMsg::Tx(t) if t.tx_type == TradeTransactionType::OrderDelete))
            .await;
    }
    assert!(!seen.is_empty());
    assert!(sim.orders().is_empty());
    sim.stop().await;
}

/// No second connection attempt arrives within `within`.
async fn no_new_connection(listener: &TcpListener, within: Duration) -> bool {
    tokio::time::timeout(within, listener.accept())
        .await
        .is_err()
}

#[tokio::test]
async fn a_quiet_link_after_the_handshake_stays_up() {
    // The agent sends nothing for a while after the handshake. A terminal that took "no data yet"
    // for a broken link (MQL5's SocketRead returns -1 on an empty buffer, and SocketIsReadable may
    // say 1 speculatively) would reconnect here; the link must stay, with seq running on.
    let (mut agent, sim, listener) = connected(|c| {
        c.heartbeat_interval = Duration::from_millis(200);
    })
    .await;
    assert!(no_new_connection(&listener, Duration::from_millis(1500)).await);
    let reply = agent.ping("after-quiet").await;
    assert_eq!(reply.retcode, Retcode::DONE);
    assert!(agent.last_seq > 3, "heartbeats kept the same connection");
    sim.stop().await;
}

#[tokio::test]
async fn a_terminal_connects_only_once_logged_in() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = config(listener.local_addr().unwrap().port());
    c.start_logged_out = true;
    let sim = SimTerminal::spawn(c);
    // While the account is not logged in (ACCOUNT_LOGIN 0), nothing connects: a hello with login 0
    // would be refused by the agent and retried in a loop.
    assert!(no_new_connection(&listener, Duration::from_millis(700)).await);
    sim.log_in();
    let mut agent = Agent::accept(&listener).await;
    let TerminalMsg::Hello(hello) = agent.recv().await else {
        panic!("hello first");
    };
    assert_eq!(hello.login.get(), 5_012_345);
    assert!(hello.trade_expert && hello.account_trade_allowed);
    assert!(!hello.instance.is_empty());
    agent.recv().await;
    let TerminalMsg::Snapshot(snapshot) = agent.recv().await else {
        panic!("snapshot third");
    };
    assert_eq!(snapshot.account.login, hello.login);
    // Back from a trade server outage, the terminal sends a fresh snapshot by itself.
    sim.trade_server_reconnected();
    let seen = agent
        .until(|m| matches!(m, TerminalMsg::Snapshot(s) if s.cmd_id.is_none()))
        .await;
    assert!(matches!(seen.last(), Some(TerminalMsg::Snapshot(_))));
    sim.stop().await;
}

#[tokio::test]
async fn trading_by_experts_disabled_is_reported_and_refused_with_the_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = config(listener.local_addr().unwrap().port());
    c.account.trade_expert = false;
    let sim = SimTerminal::spawn(c);
    let mut agent = Agent::accept(&listener).await;
    let TerminalMsg::Hello(hello) = agent.recv().await else {
        panic!("hello first");
    };
    assert!(!hello.trade_expert, "ACCOUNT_TRADE_EXPERT is reported");
    agent.recv().await;
    agent.recv().await;
    agent.send(&market("no-experts", 0.1, 0, "")).await;
    let (refused, _) = agent.reply("no-experts").await;
    assert_eq!(refused.retcode, Retcode::SERVER_DISABLES_AT, "{refused:?}");
    assert!(
        refused.comment.contains("ACCOUNT_TRADE_EXPERT"),
        "{refused:?}"
    );
    assert!(sim.positions().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn pending_orders_fill_with_return_and_market_orders_never_send_an_invalid_mode() {
    // Market execution with FOK only: RETURN is not offered, neither is IOC.
    let fok_only = FillingModes {
        fok: true,
        ioc: false,
        ret: false,
        boc: false,
    };
    let nothing = FillingModes::default();
    let (mut agent, sim, _l) = connected(|c| {
        c.symbols = default_symbols("")
            .into_iter()
            .map(|s| match s.spec.name.as_str() {
                "EURUSD" => s.with_filling(fok_only),
                "GBPUSD" => s.with_filling(nothing),
                _ => s,
            })
            .collect();
    })
    .await;
    agent
        .send(&json!({"type":"cmd","cmd_id":"q","op":"symbol_info","symbol":"EURUSD"}))
        .await;
    let bid = agent.reply("q").await.0.bid.to_f64();
    let limit = json!({
        "type":"cmd","cmd_id":"pend-auto","op":"order_send","action":5,"symbol":"EURUSD",
        "volume":0.1,"price":((bid * 0.9) * 100_000.0).round() / 100_000.0,"order_type":2,
        "type_filling":"auto","type_time":0
    });
    agent.send(&limit).await;
    let (placed, _) = agent.reply("pend-auto").await;
    assert_eq!(placed.retcode, Retcode::PLACED, "{placed:?}");
    let order = sim.orders().into_iter().next().expect("the order works");
    assert_eq!(order.type_filling, OrderFilling::Return);

    // No FOK, no IOC, market execution: refused before anything is sent, with the reason.
    let mut gbp = market("no-mode", 0.1, 0, "");
    gbp["symbol"] = json!("GBPUSD");
    agent.send(&gbp).await;
    let (refused, _) = agent.reply("no-mode").await;
    assert_eq!(refused.retcode, Retcode::INVALID_FILL, "{refused:?}");
    assert!(
        refused.comment.contains("neither FOK nor IOC"),
        "{refused:?}"
    );
    assert!(sim.positions().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn a_position_whose_ticket_changed_is_still_closed_by_its_identifier() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    agent.send(&market("t-open", 0.2, 0, "")).await;
    let (opened, _) = agent.reply("t-open").await;
    assert_eq!(opened.retcode, Retcode::DONE, "{opened:?}");
    let identifier = opened.position;

    // The server re-opens the position (swap rollover): new ticket, same identifier.
    let ticket = sim.reticket(identifier).expect("the position is open");
    assert_ne!(ticket, identifier.get());
    let seen = agent
        .until(|m| matches!(m, TerminalMsg::Tx(t) if t.tx_type == TradeTransactionType::Position))
        .await;
    let Some(TerminalMsg::Tx(tx)) = seen.last() else {
        unreachable!()
    };
    let record = tx.position_record.as_ref().expect("position_record");
    assert_eq!((record.ticket, record.identifier), (ticket, identifier));

    // The agent names the position by its identifier, as the protocol says.
    let mut close = market("t-close", 0.2, 1, "");
    close["position"] = json!(identifier.get());
    agent.send(&close).await;
    let (closed, _) = agent.reply("t-close").await;
    assert_eq!(closed.retcode, Retcode::DONE, "{closed:?}");
    assert_eq!(
        closed.position, identifier,
        "the reply names the identifier"
    );
    assert!(sim.positions().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn a_long_comment_is_cut_to_what_mt5_keeps_and_the_request_names_its_command() {
    let (mut agent, sim, _l) = connected(|_| {}).await;
    let long = "hedge plan-item-0123456789-abcdefghij-extra";
    agent.send(&market("long-comment", 0.1, 0, long)).await;
    let (reply, mut seen) = agent.reply("long-comment").await;
    assert_eq!(reply.retcode, Retcode::DONE, "{reply:?}");
    let is_request = |m: &TerminalMsg| matches!(m, TerminalMsg::Tx(t) if t.tx_type == TradeTransactionType::Request);
    if !seen.iter().any(is_request) {
        seen.extend(agent.until(is_request).await);
    }
    let request = seen
        .iter()
        .find_map(|m| match m {
            TerminalMsg::Tx(t) if t.tx_type == TradeTransactionType::Request => Some(t),
            _ => None,
        })
        .expect("REQUEST transaction");
    assert_eq!(
        request.cmd_id.as_ref().map(|c| c.as_str()),
        Some("long-comment"),
        "a synchronous send names its command too"
    );
    let position = sim.positions().into_iter().next().expect("opened");
    assert_eq!(position.comment, long.chars().take(31).collect::<String>());
    sim.stop().await;
}

#[tokio::test]
async fn a_symbol_list_too_long_for_one_line_comes_in_several_messages() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = config(listener.local_addr().unwrap().port());
    let template = default_symbols("")
        .into_iter()
        .find(|s| s.spec.name == "EURUSD")
        .unwrap();
    // Thousands of Market Watch symbols: far more than 1 MiB of specifications.
    c.symbols = (0..6000)
        .map(|i| {
            let mut s = template.clone();
            s.spec.name = format!("EXOTIC{i:05}.broker-suffix");
            s
        })
        .collect();
    let sim = SimTerminal::spawn(c);
    let mut agent = Agent::accept(&listener).await;
    assert!(matches!(agent.recv().await, TerminalMsg::Hello(_)));
    // Agent::recv checks every line against the limit.
    let mut names = Vec::new();
    let mut messages = 0;
    let snapshot = loop {
        match agent.recv().await {
            TerminalMsg::Symbols(s) => {
                messages += 1;
                names.extend(s.symbols.into_iter().map(|i| i.spec.name));
            }
            TerminalMsg::Snapshot(s) => break s,
            other => panic!("symbols or snapshot expected, got {other:?}"),
        }
    };
    assert!(messages > 1, "split into several lines");
    assert_eq!(names.len(), 6000);
    assert_eq!(names[5999], "EXOTIC05999.broker-suffix");
    assert!(snapshot.cmd_id.is_none());
    drop(agent);

    // The agent's own client takes the whole list.
    let terminal = hedge_protocol::TerminalListener::bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut c2 = config(terminal.local_addr().port());
    c2.symbols = (0..6000)
        .map(|i| {
            let mut s = template.clone();
            s.spec.name = format!("EXOTIC{i:05}.broker-suffix");
            s
        })
        .collect();
    sim.stop().await;
    let sim = SimTerminal::spawn(c2);
    let terminal = tokio::time::timeout(WAIT, terminal.accept())
        .await
        .expect("handshake in time")
        .expect("handshake");
    assert_eq!(terminal.symbols().len(), 6000);
    terminal.shutdown().await;
    sim.stop().await;
}

#[tokio::test]
async fn history_pages_stay_under_the_line_limit() {
    let (mut agent, sim, _l) = connected(|c| c.max_page = 100_000).await;
    // Thousands of orders and deals with long non-ASCII comments: far more than one line holds,
    // even though the agent allows a page of every record.
    let comment: String = "€".repeat(31);
    sim.with_account(|a| {
        let lot = Volume::from_f64(0.01).unwrap();
        for _ in 0..1000 {
            let mut open =
                hedge_protocol::TradeRequest::market("EURUSD", hedge_domain::OrderType::Buy, lot);
            open.comment = comment.clone();
            let opened = a.send(&open, hedge_domain::DealReason::Client).reply;
            assert!(opened.is_done(), "{opened:?}");
            let mut close = hedge_protocol::TradeRequest::close(
                "EURUSD",
                opened.position,
                hedge_domain::OrderType::Sell,
                lot,
            );
            close.comment = comment.clone();
            let closed = a.send(&close, hedge_domain::DealReason::Client).reply;
            assert!(closed.is_done(), "{closed:?}");
        }
    });
    agent
        .send(&json!({"type":"cmd","cmd_id":"hist","op":"history","from":0,"to":i64::MAX / 4,"page_size":100_000}))
        .await;
    // Agent::recv checks every line against the limit.
    let (reply, seen) = agent.reply("hist").await;
    let pages: Vec<_> = seen
        .iter()
        .filter_map(|m| match m {
            TerminalMsg::History(p) => Some(p),
            _ => None,
        })
        .collect();
    assert!(pages.len() > 1, "split into several pages");
    let records: usize = pages.iter().map(|p| p.orders.len() + p.deals.len()).sum();
    let (orders, deals) = sim.with_account(|a| (a.history_orders().len(), a.deals().len()));
    assert!(orders >= 2000 && deals >= 2000);
    assert_eq!(records, orders + deals);
    let totals = reply.history.expect("totals");
    assert_eq!(
        (totals.orders as usize, totals.deals as usize),
        (orders, deals)
    );
    sim.stop().await;
}
