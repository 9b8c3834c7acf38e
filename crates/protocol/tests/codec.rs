//! Round trips of every message and every bad-input case of the codec.

use hedge_domain::{
    AccountMarginMode, CmdId, DealEntry, DealReason, DealTicket, DealType, Login, Magic, Money,
    OrderFilling, OrderState, OrderTicket, OrderTime, OrderType, PositionId, PositionType, Price,
    Retcode, SymbolSpec, TradeAction, TradeTransactionType, Volume,
};
use hedge_protocol::*;
use rust_decimal_macros::dec;

fn deal() -> DealRecord {
    DealRecord {
        ticket: DealTicket(5001),
        order: OrderTicket(7001),
        position_id: PositionId(7001),
        time: 1_700_000_000_123,
        deal_type: DealType::Sell,
        entry: DealEntry::InOut,
        reason: DealReason::Expert,
        magic: Magic(77),
        volume: Volume(dec!(0.3)),
        price: Price(dec!(1.08312)),
        commission: Money(dec!(-2.1)),
        swap: Money(dec!(0)),
        profit: Money(dec!(12.5)),
        fee: Money(dec!(-0.05)),
        symbol: "EURUSD.r".into(),
        comment: "h:plan-9 \"quoted\" \n newline".into(),
        external_id: String::new(),
    }
}

fn order() -> OrderRecord {
    OrderRecord {
        ticket: OrderTicket(7002),
        symbol: "XAUUSD".into(),
        order_type: OrderType::BuyLimit,
        state: OrderState::Placed,
        time_setup: 1_700_000_000_000,
        time_done: 0,
        type_filling: OrderFilling::Return,
        type_time: OrderTime::Specified,
        expiration: 1_700_000_100_000,
        volume_initial: Volume(dec!(1)),
        volume_current: Volume(dec!(0.4)),
        price_open: Price(dec!(1923.45)),
        price_current: Price(dec!(1925.1)),
        price_stoplimit: Price::ZERO,
        sl: Price(dec!(1900)),
        tp: Price(dec!(1950)),
        magic: Magic(3),
        position_id: PositionId(0),
        position_by_id: PositionId(0),
        reason: 3,
        comment: "limit".into(),
    }
}

fn position() -> PositionRecord {
    PositionRecord {
        ticket: 7001,
        identifier: PositionId(7001),
        symbol: "EURUSD.r".into(),
        position_type: PositionType::Sell,
        volume: Volume(dec!(0.2)),
        price_open: Price(dec!(1.08312)),
        price_current: Price(dec!(1.08301)),
        sl: Price::ZERO,
        tp: Price(dec!(1.07)),
        swap: Money::ZERO,
        profit: Money(dec!(2.2)),
        magic: Magic(77),
        comment: String::new(),
        time: 1_700_000_000_123,
        time_update: 1_700_000_000_456,
        reason: 3,
    }
}

fn account() -> AccountInfo {
    AccountInfo {
        login: Login(123456),
        currency: "USD".into(),
        margin_mode: AccountMarginMode::RetailNetting,
        leverage: 100,
        balance: Money(dec!(10000)),
        credit: Money::ZERO,
        equity: Money(dec!(10012.34)),
        profit: Money(dec!(12.34)),
        margin: Money(dec!(200)),
        margin_free: Money(dec!(9812.34)),
    }
}

fn tx() -> Tx {
    let mut tx = Tx::new(1_700_000_000_124, TradeTransactionType::DealAdd);
    tx.seq = 42;
    tx.deal = DealTicket(5001);
    tx.order = OrderTicket(7001);
    tx.symbol = "EURUSD.r".into();
    tx.deal_type = Some(DealType::Sell);
    tx.order_type = Some(OrderType::Sell);
    tx.price = Price(dec!(1.08312));
    tx.volume = Volume(dec!(0.3));
    tx.position = PositionId(7001);
    tx.deal_record = Some(deal());
    tx.position_record = Some(position());
    tx
}

fn reply() -> Reply {
    let mut r = Reply::new(CmdId::from("hedge-17"), Retcode::DONE, "Request executed");
    r.seq = 43;
    r.deal = DealTicket(5001);
    r.order = OrderTicket(7001);
    r.position = PositionId(7001);
    r.volume = Volume(dec!(0.3));
    r.price = Price(dec!(1.08312));
    r.bid = Price(dec!(1.08312));
    r.ask = Price(dec!(1.08315));
    r.request_id = 9;
    r.time = 1_700_000_000_124;
    r
}

fn symbol() -> SymbolInfo {
    SymbolInfo {
        spec: SymbolSpec::forex("EURUSD.r", 5),
        bid: Some(Price(dec!(1.08312))),
        ask: Some(Price(dec!(1.08315))),
        time: 1_700_000_000_000,
    }
}

fn all_terminal_messages() -> Vec<TerminalMsg> {
    let mut with_check = reply();
    with_check.check = Some(CheckResult {
        balance: Money(dec!(10000)),
        equity: Money(dec!(10000)),
        profit: Money::ZERO,
        margin: Money(dec!(300)),
        margin_free: Money(dec!(9700)),
        margin_level: Money(dec!(3333.33)),
    });
    with_check.symbol = Some(symbol());
    with_check.history = Some(HistorySummary {
        pages: 2,
        orders: 3,
        deals: 4,
        cursor: Some("d:5001".into()),
    });
    vec![
        TerminalMsg::Hello(Hello {
            seq: 1,
            v: PROTOCOL_VERSION,
            login: Login(123456),
            server: "Broker-Demo".into(),
            company: "Broker Ltd".into(),
            currency: "USD".into(),
            margin_mode: AccountMarginMode::RetailHedging,
            build: 4755,
            ea_version: "1.0.0".into(),
            leverage: 500,
            trade_allowed: true,
            time: 1_700_000_000_000,
            trade_expert: false,
            account_trade_allowed: true,
            instance: "1a2b".into(),
        }),
        TerminalMsg::Symbols(Symbols {
            seq: 2,
            symbols: vec![symbol()],
        }),
        TerminalMsg::Snapshot(Snapshot {
            seq: 3,
            time: 1_700_000_000_000,
            cmd_id: Some(CmdId::from("snap-1")),
            account: account(),
            positions: vec![position()],
            orders: vec![order()],
        }),
        TerminalMsg::History(HistoryPage {
            seq: 4,
            cmd_id: CmdId::from("hist-1"),
            page: 0,
            orders: vec![order()],
            deals: vec![deal()],
            cursor: Some("o:7002;d:5001".into()),
            last: false,
        }),
        TerminalMsg::Tx(tx()),
        TerminalMsg::Reply(reply()),
        TerminalMsg::Reply(with_check),
        TerminalMsg::Heartbeat(Heartbeat {
            seq: 7,
            time: 1_700_000_000_999,
        }),
        TerminalMsg::Error(ErrorMsg {
            seq: 8,
            code: ErrorCode::UnknownType,
            message: "unknown message type \"x\"".into(),
            cmd_id: Some(CmdId::from("c")),
        }),
    ]
}

fn round_trip_terminal(msg: &TerminalMsg) -> TerminalMsg {
    let mut out = Vec::new();
    encode(msg, &mut out).unwrap();
    assert_eq!(out.last(), Some(&b'\n'));
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
    decode_terminal(&out[..out.len() - 1]).unwrap()
}

#[test]
fn every_terminal_message_round_trips() {
    for msg in all_terminal_messages() {
        assert_eq!(round_trip_terminal(&msg), msg);
    }
}

#[test]
fn every_command_round_trips() {
    let mut request = TradeRequest::market("EURUSD", OrderType::Sell, Volume(dec!(0.25)));
    request.magic = Magic(99);
    request.deviation = 20;
    request.sl = Price(dec!(1.1));
    request.comment = "hedge p-1".into();
    request.position = PositionId(31);
    request.is_async = true;
    let mut pending = request.clone();
    pending.action = TradeAction::Pending;
    pending.order_type = OrderType::BuyStopLimit;
    pending.price = Price(dec!(1.2));
    pending.stoplimit = Price(dec!(1.19));
    pending.type_filling = Filling::Mode(OrderFilling::Return);
    pending.type_time = OrderTime::Specified;
    pending.expiration = 1_800_000_000_000;
    pending.position_by = PositionId(32);
    let ops = vec![
        Op::OrderSend(request.clone()),
        Op::OrderSend(pending),
        Op::OrderCheck(request),
        Op::History(HistoryRange {
            from: 0,
            to: 1_800_000_000_000,
            page_size: Some(100),
            cursor: Some("x".into()),
        }),
        Op::Snapshot,
        Op::SymbolInfo {
            symbol: "XAUUSD".into(),
        },
        Op::Ping,
    ];
    for (i, op) in ops.into_iter().enumerate() {
        let msg = AgentMsg::Cmd(Cmd {
            cmd_id: CmdId::new(format!("c-{i}")),
            op,
        });
        let mut out = Vec::new();
        encode(&msg, &mut out).unwrap();
        assert_eq!(decode_agent(&out).unwrap(), msg);
    }
}

#[test]
fn wire_shape_is_the_documented_one() {
    let msg = AgentMsg::Cmd(Cmd {
        cmd_id: CmdId::from("a1"),
        op: Op::OrderSend(TradeRequest::market(
            "EURUSD",
            OrderType::Buy,
            Volume(dec!(0.1)),
        )),
    });
    let v: serde_json::Value = serde_json::to_value(&msg).unwrap();
    assert_eq!(v["type"], "cmd");
    assert_eq!(v["cmd_id"], "a1");
    assert_eq!(v["op"], "order_send");
    assert_eq!(v["action"], 1);
    assert_eq!(v["order_type"], 0);
    assert_eq!(v["type_filling"], "auto");
    assert_eq!(v["volume"], 0.1);
    assert_eq!(v["async"], false);

    let line = br#"{"type":"cmd","cmd_id":"x","op":"order_send","action":1,"symbol":"EURUSD","volume":0.1,"order_type":1,"type_filling":1}"#;
    match decode_agent(line).unwrap() {
        AgentMsg::Cmd(Cmd {
            op: Op::OrderSend(r),
            ..
        }) => {
            assert_eq!(r.type_filling, Filling::Mode(OrderFilling::Ioc));
            assert_eq!(r.order_type, OrderType::Sell);
            assert_eq!(r.volume, Volume(dec!(0.1)));
            assert_eq!(r.type_time, OrderTime::Gtc);
        }
        other => panic!("unexpected {other:?}"),
    }
    let tx: serde_json::Value = serde_json::to_value(TerminalMsg::Tx(tx())).unwrap();
    assert_eq!(tx["type"], "tx");
    assert_eq!(tx["tx_type"], 6);
    assert_eq!(tx["deal_record"]["type"], 1);
    assert_eq!(tx["deal_record"]["entry"], 2);
}

fn err(line: &[u8]) -> ProtocolError {
    decode_terminal(line).unwrap_err()
}

#[test]
fn invalid_json_is_bad_json() {
    assert_eq!(err(b"{\"type\":\"tx\",").code, ErrorCode::BadJson);
    assert_eq!(err(b"not json").code, ErrorCode::BadJson);
    assert_eq!(err(b"[1,2]").code, ErrorCode::BadJson);
    assert_eq!(err(b"\xff\xfe").code, ErrorCode::BadJson);
}

#[test]
fn unknown_or_missing_type() {
    let e = err(br#"{"type":"quote","seq":1}"#);
    assert_eq!(e.code, ErrorCode::UnknownType);
    assert!(e.message.contains("quote"));
    assert_eq!(err(br#"{"seq":1}"#).code, ErrorCode::MissingType);
    assert_eq!(err(br#"{"type":5}"#).code, ErrorCode::MissingType);
    // A terminal-only type sent by an agent is unknown to the terminal.
    assert_eq!(
        decode_agent(br#"{"type":"tx","time":1,"tx_type":6}"#)
            .unwrap_err()
            .code,
        ErrorCode::UnknownType
    );
}

#[test]
fn missing_field_is_bad_message() {
    let e = err(br#"{"type":"heartbeat","seq":3}"#);
    assert_eq!(e.code, ErrorCode::BadMessage);
    assert!(e.message.contains("time"), "{}", e.message);
    let e = decode_agent(br#"{"type":"cmd","op":"ping"}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadMessage);
}

#[test]
fn invalid_enum_code_is_bad_message() {
    let e = err(br#"{"type":"tx","seq":1,"time":1,"tx_type":99}"#);
    assert_eq!(e.code, ErrorCode::BadMessage);
    assert!(e.message.contains("99"), "{}", e.message);
    let e = decode_agent(
        br#"{"type":"cmd","cmd_id":"k","op":"order_send","action":2,"symbol":"EURUSD","volume":1}"#,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadMessage);
    assert_eq!(e.cmd_id, Some(CmdId::from("k")));
    let e = decode_agent(
        br#"{"type":"cmd","cmd_id":"k","op":"order_send","action":1,"symbol":"EURUSD","volume":1,"type_filling":7}"#,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadMessage);
    let e = decode_agent(br#"{"type":"cmd","cmd_id":"k","op":"teleport"}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadMessage);
}

#[test]
fn a_new_deal_type_or_reason_keeps_the_line_and_the_code() {
    let mut t = tx();
    let mut line = Vec::new();
    encode(&TerminalMsg::Tx(t.clone()), &mut line).unwrap();
    let text = String::from_utf8(line).unwrap();
    // A newer terminal: deal type 18 and reason 11 are not in this build's tables.
    let newer = text
        .replacen("\"type\":1,\"entry\"", "\"type\":18,\"entry\"", 1)
        .replacen("\"reason\":3,\"magic\"", "\"reason\":11,\"magic\"", 1);
    assert_ne!(newer, text, "the test must change the deal's codes");
    let TerminalMsg::Tx(got) = decode_terminal(newer.trim_end().as_bytes()).unwrap() else {
        panic!("not a tx");
    };
    let deal = got.deal_record.as_ref().unwrap();
    assert_eq!(deal.deal_type, DealType::Other(18));
    assert_eq!(deal.reason, DealReason::Other(11));
    // The rest of the line is read as usual and the codes travel on unchanged.
    let d = t.deal_record.as_mut().unwrap();
    d.deal_type = DealType::Other(18);
    d.reason = DealReason::Other(11);
    assert_eq!(got, t);
    let mut again = Vec::new();
    encode(&TerminalMsg::Tx(got), &mut again).unwrap();
    assert_eq!(String::from_utf8(again).unwrap(), newer);
}

#[test]
fn negative_volume_is_bad_message_and_names_the_command() {
    let e = decode_agent(
        br#"{"type":"cmd","cmd_id":"neg","op":"order_send","action":1,"symbol":"EURUSD","volume":-0.1}"#,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadMessage);
    assert_eq!(e.cmd_id, Some(CmdId::from("neg")));
    assert!(e.message.contains("negative"), "{}", e.message);
    let e = decode_agent(
        br#"{"type":"cmd","cmd_id":"zero","op":"order_send","action":1,"symbol":"EURUSD","volume":0}"#,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadMessage);
    let mut t = tx();
    t.deal_record.as_mut().unwrap().volume = Volume(dec!(-1));
    let mut line = Vec::new();
    encode(&TerminalMsg::Tx(t), &mut line).unwrap();
    assert_eq!(
        decode_terminal(&line).unwrap_err().code,
        ErrorCode::BadMessage
    );
}

#[test]
fn invalid_values_are_reported_in_full_by_every_path() {
    // The direct tx and reply paths, the general path (snapshot) and the flat command path.
    let mut t = tx();
    t.position_record.as_mut().unwrap().volume = Volume(dec!(-0.50));
    let mut r = reply();
    r.volume = Volume(dec!(-2));
    let mut s = match all_terminal_messages()
        .into_iter()
        .find(|m| matches!(m, TerminalMsg::Snapshot(_)))
    {
        Some(TerminalMsg::Snapshot(s)) => s,
        _ => panic!("the message list has a snapshot"),
    };
    s.orders[0].volume_current = Volume(dec!(-0.1));
    let cases = [
        (
            TerminalMsg::Tx(t),
            "position volume must not be negative, got -0.5",
        ),
        (TerminalMsg::Reply(r), "volume must not be negative, got -2"),
        (
            TerminalMsg::Snapshot(s),
            "order volume_current must not be negative, got -0.1",
        ),
    ];
    for (msg, text) in cases {
        let mut line = Vec::new();
        encode(&msg, &mut line).unwrap();
        let e = decode_terminal(line.trim_ascii_end()).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadMessage);
        assert_eq!(e.message, text);
    }
    let e = decode_agent(
        br#"{"type":"cmd","cmd_id":"sl","op":"order_send","action":1,"symbol":"EURUSD","volume":1,"sl":-1.5}"#,
    )
    .unwrap_err();
    assert_eq!(e.message, "sl must not be negative, got -1.5");
    assert_eq!(e.cmd_id, Some(CmdId::from("sl")));
    let e =
        decode_agent(br#"{"type":"cmd","cmd_id":"h","op":"history","from":5,"to":4}"#).unwrap_err();
    assert_eq!(e.message, "history range ends (4) before it starts (5)");
}

#[test]
fn a_line_that_is_not_utf8_is_bad_json_on_every_path() {
    // Valid JSON around the bad bytes, so only the UTF-8 check can refuse it.
    let mut line = Vec::new();
    encode(&TerminalMsg::Tx(tx()), &mut line).unwrap();
    let at = line.windows(4).position(|w| w == b"plan").unwrap();
    line[at] = 0xff;
    let e = decode_terminal(line.trim_ascii_end()).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadJson);
    assert_eq!(e.message, "line is not UTF-8");
    let e = decode_agent(b"{\"type\":\"cmd\",\"cmd_id\":\"k\",\"op\":\"ping\",\"x\":\"\xff\"}")
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadJson);
}

#[test]
fn wrong_version_is_refused() {
    let line = br#"{"type":"hello","seq":1,"v":2,"login":1,"server":"s","company":"c","currency":"USD","margin_mode":0,"build":1}"#;
    let TerminalMsg::Hello(hello) = decode_terminal(line).unwrap() else {
        panic!("not a hello");
    };
    let e = check_version(hello.v).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnsupportedVersion);
    assert!(check_version(PROTOCOL_VERSION).is_ok());
}

#[test]
fn unknown_fields_are_ignored_for_forward_compatibility() {
    let line = br#"{"type":"heartbeat","seq":3,"time":5,"new_field":{"a":[1,2]}}"#;
    assert_eq!(
        decode_terminal(line).unwrap(),
        TerminalMsg::Heartbeat(Heartbeat { seq: 3, time: 5 })
    );
}

#[test]
fn framing_handles_partial_lines_several_lines_and_crlf() {
    let mut wire = Vec::new();
    let msgs = all_terminal_messages();
    for (i, m) in msgs.iter().enumerate() {
        encode(m, &mut wire).unwrap();
        if i % 2 == 0 {
            // Some lines with the Windows terminator an MQL5 program may write.
            let n = wire.len();
            wire[n - 1] = b'\r';
            wire.push(b'\n');
        }
    }
    for chunk in [1usize, 3, 17, 4096, wire.len()] {
        let mut buf = LineBuffer::new(MAX_LINE);
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend(piece);
            while let Some(line) = buf.next_line() {
                got.push(decode_terminal(line.unwrap()).unwrap());
            }
        }
        assert_eq!(got, msgs, "chunk size {chunk}");
    }
}

#[test]
fn an_oversized_line_is_refused_and_the_next_one_is_read() {
    let mut buf = LineBuffer::new(1024);
    let mut big = Vec::from(&b"{\"type\":\"heartbeat\",\"seq\":1,\"time\":1,\"pad\":\""[..]);
    big.extend(std::iter::repeat_n(b'a', 5000));
    big.extend_from_slice(b"\"}\n{\"type\":\"heartbeat\",\"seq\":2,\"time\":2}\n");
    // Whole line in one read.
    buf.extend(&big);
    assert_eq!(
        buf.next_line().unwrap().unwrap_err().code,
        ErrorCode::LineTooLong
    );
    let next = decode_terminal(buf.next_line().unwrap().unwrap()).unwrap();
    assert_eq!(next.seq(), 2);
    // Trickled in, so the limit is hit before the `\n` arrives.
    let mut buf = LineBuffer::new(1024);
    let mut errors = 0;
    let mut good = Vec::new();
    for piece in big.chunks(100) {
        buf.extend(piece);
        while let Some(line) = buf.next_line() {
            match line {
                Ok(l) => good.push(decode_terminal(l).unwrap().seq()),
                Err(e) => {
                    assert_eq!(e.code, ErrorCode::LineTooLong);
                    errors += 1;
                }
            }
        }
        assert!(buf.pending() <= 1024 + 100 + 1);
    }
    assert_eq!(errors, 1);
    assert_eq!(good, vec![2]);
}

#[test]
fn encode_refuses_a_message_over_the_limit() {
    let mut out = b"prefix".to_vec();
    let big = TerminalMsg::Snapshot(Snapshot {
        seq: 1,
        time: 1,
        cmd_id: None,
        account: account(),
        positions: vec![position(); 100],
        orders: vec![],
    });
    assert!(matches!(
        encode_limited(&big, &mut out, 1000),
        Err(EncodeError::TooLong { .. })
    ));
    assert_eq!(out, b"prefix");
}

proptest::proptest! {
    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let _ = decode_terminal(&bytes);
        let _ = decode_agent(&bytes);
        let mut buf = LineBuffer::new(64);
        buf.extend(&bytes);
        while let Some(line) = buf.next_line() {
            if let Ok(line) = line {
                let _ = decode_terminal(line);
            }
        }
    }

    #[test]
    fn prices_and_volumes_survive_the_wire_exactly(units in 1i64..100_000_000, scale in 0u32..6) {
        let mut r = reply();
        r.volume = Volume(rust_decimal::Decimal::new(units, scale.min(2)));
        r.price = Price(rust_decimal::Decimal::new(units, scale));
        let back = round_trip_terminal(&TerminalMsg::Reply(r.clone()));
        let TerminalMsg::Reply(back) = back else { panic!("not a reply") };
        proptest::prop_assert_eq!(back.volume.0.normalize(), r.volume.0.normalize());
        proptest::prop_assert_eq!(back.price.0.normalize(), r.price.0.normalize());
    }
}
