//! Codec throughput: messages per second decoded (framing + parse + validation) and encoded, on one
//! core, for the messages that dominate a live link (tx with its records, reply, heartbeat).
//! Run: `cargo bench -p hedge-protocol --bench codec`.

use hedge_domain::{
    CmdId, DealEntry, DealReason, DealTicket, DealType, Magic, Money, OrderTicket, OrderType,
    PositionId, PositionType, Price, Retcode, TradeTransactionType, Volume,
};
use hedge_protocol::*;
use rust_decimal_macros::dec;
use std::hint::black_box;
use std::time::Instant;

fn sample() -> Vec<TerminalMsg> {
    let mut tx = Tx::new(1_700_000_000_124, TradeTransactionType::DealAdd);
    tx.deal = DealTicket(5001);
    tx.order = OrderTicket(7001);
    tx.symbol = "EURUSD".into();
    tx.deal_type = Some(DealType::Sell);
    tx.order_type = Some(OrderType::Sell);
    tx.price = Price(dec!(1.08312));
    tx.volume = Volume(dec!(0.3));
    tx.position = PositionId(7001);
    tx.deal_record = Some(DealRecord {
        ticket: DealTicket(5001),
        order: OrderTicket(7001),
        position_id: PositionId(7001),
        time: 1_700_000_000_123,
        deal_type: DealType::Sell,
        entry: DealEntry::In,
        reason: DealReason::Expert,
        magic: Magic(77),
        volume: Volume(dec!(0.3)),
        price: Price(dec!(1.08312)),
        commission: Money(dec!(-2.1)),
        swap: Money::ZERO,
        profit: Money::ZERO,
        fee: Money::ZERO,
        symbol: "EURUSD".into(),
        comment: "hedge p-17".into(),
        external_id: String::new(),
    });
    tx.position_record = Some(PositionRecord {
        ticket: 7001,
        identifier: PositionId(7001),
        symbol: "EURUSD".into(),
        position_type: PositionType::Sell,
        volume: Volume(dec!(0.3)),
        price_open: Price(dec!(1.08312)),
        price_current: Price(dec!(1.08312)),
        sl: Price::ZERO,
        tp: Price::ZERO,
        swap: Money::ZERO,
        profit: Money::ZERO,
        magic: Magic(77),
        comment: "hedge p-17".into(),
        time: 1_700_000_000_123,
        time_update: 1_700_000_000_123,
        reason: 3,
    });
    let mut small_tx = Tx::new(1_700_000_000_125, TradeTransactionType::Request);
    small_tx.order = OrderTicket(7001);
    small_tx.symbol = "EURUSD".into();
    let mut reply = Reply::new(
        CmdId::from("hedge-p17-1"),
        Retcode::DONE,
        "Request executed",
    );
    reply.deal = DealTicket(5001);
    reply.order = OrderTicket(7001);
    reply.position = PositionId(7001);
    reply.volume = Volume(dec!(0.3));
    reply.price = Price(dec!(1.08312));
    reply.bid = Price(dec!(1.08312));
    reply.ask = Price(dec!(1.08315));
    reply.time = 1_700_000_000_124;
    let hb = TerminalMsg::Heartbeat(Heartbeat {
        seq: 0,
        time: 1_700_000_000_200,
    });
    vec![
        TerminalMsg::Tx(tx),
        TerminalMsg::Tx(small_tx),
        TerminalMsg::Reply(reply),
        hb,
    ]
}

fn main() {
    let kinds = sample();
    let total: usize = 400_000;
    let mut msgs = Vec::with_capacity(total);
    for i in 0..total {
        let mut m = kinds[i % kinds.len()].clone();
        m.set_seq(i as u64 + 1);
        msgs.push(m);
    }

    // Encode into one buffer, reused, as a connection writer does.
    let mut out = Vec::with_capacity(64 << 20);
    let start = Instant::now();
    for m in &msgs {
        encode(m, &mut out).expect("encode");
    }
    let enc = start.elapsed();
    let bytes = out.len();

    // Decode: framing over 64 KiB reads, then parse and validate each line.
    let start = Instant::now();
    let mut buf = LineBuffer::new(MAX_LINE);
    let mut n = 0usize;
    for chunk in out.chunks(64 * 1024) {
        buf.extend(chunk);
        while let Some(line) = buf.next_line() {
            let msg = decode_terminal(line.expect("frame")).expect("decode");
            black_box(&msg);
            n += 1;
        }
    }
    let dec = start.elapsed();
    assert_eq!(n, total);

    let cmd = AgentMsg::Cmd(Cmd {
        cmd_id: CmdId::from("hedge-p17-1"),
        op: Op::OrderSend(TradeRequest::market(
            "EURUSD",
            OrderType::Sell,
            Volume(dec!(0.3)),
        )),
    });
    let cmds = 200_000;
    let mut cout = Vec::with_capacity(cmds * 400);
    let start = Instant::now();
    for _ in 0..cmds {
        encode(&cmd, &mut cout).expect("encode");
    }
    let cenc = start.elapsed();
    let start = Instant::now();
    for line in cout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        black_box(decode_agent(line).expect("decode"));
    }
    let cdec = start.elapsed();

    let rate = |count: usize, d: std::time::Duration| count as f64 / d.as_secs_f64();
    println!(
        "terminal messages (tx/reply/heartbeat mix, avg {} B/line):",
        bytes / total
    );
    println!("  encode: {:>10.0} msgs/s", rate(total, enc));
    println!(
        "  decode: {:>10.0} msgs/s (framing + parse + validation)",
        rate(total, dec)
    );
    println!("agent commands (order_send, {} B/line):", cout.len() / cmds);
    println!("  encode: {:>10.0} msgs/s", rate(cmds, cenc));
    println!("  decode: {:>10.0} msgs/s", rate(cmds, cdec));
}
