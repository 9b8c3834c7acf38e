//! The `hedge ledger` command end to end on files.

use clap::Parser;
use hedge_ledger::cli::{run, LedgerArgs};

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    args: LedgerArgs,
}

fn ledger(args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["hedge-ledger"];
    full.extend_from_slice(args);
    run(Cmd::try_parse_from(full)?.args)
}

#[test]
fn generate_replay_csv_exclude_and_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    ledger(&[
        "generate",
        "--deals",
        "300",
        "--seed",
        "5",
        "-o",
        &p("h.jsonl"),
    ])
    .unwrap();
    ledger(&["replay", &p("h.jsonl"), "--csv", &p("out")]).unwrap();
    let active = std::fs::read_to_string(p("out/Active.csv")).unwrap();
    assert!(active.starts_with("CollapsePos.;Magic;Symbol;Entry ID;"));
    let history = std::fs::read_to_string(p("out/History.csv")).unwrap();
    assert!(history.lines().count() > 10);
    ledger(&["replay", &p("h.jsonl"), "--csv", &p("xl"), "--excel"]).unwrap();
    assert_eq!(
        &std::fs::read(p("xl/Active.csv")).unwrap()[..2],
        &[0xFF, 0xFE]
    );

    // Reconcile against the wrong broker position fails; --apply needs an exclusions file.
    std::fs::write(p("net.json"), r#"{"EURUSD": 1000}"#).unwrap();
    assert!(ledger(&["reconcile", &p("h.jsonl"), "--broker", &p("net.json")]).is_err());
    // hide-flat refuses while the broker is not flat, then hides everything once it is.
    assert!(ledger(&[
        "hide-flat",
        &p("h.jsonl"),
        "--broker",
        &p("net.json"),
        "--file",
        &p("ex.txt")
    ])
    .is_err());
    std::fs::write(p("flat.json"), r#"{"EURUSD": 0}"#).unwrap();
    let r = ledger(&[
        "hide-flat",
        &p("h.jsonl"),
        "--broker",
        &p("flat.json"),
        "--file",
        &p("ex.txt"),
    ]);
    match r {
        Ok(()) => {
            let ex = std::fs::read_to_string(p("ex.txt")).unwrap();
            assert!(ex.lines().count() > 1);
        }
        // Generated histories may leave stop orders on active positions: that refusal is the rule.
        Err(e) => assert!(e.to_string().contains("stop-loss"), "{e}"),
    }

    ledger(&["exclude", "--file", &p("ex2.txt"), "add", "0", "5", "6"]).unwrap();
    ledger(&["exclude", "--file", &p("ex2.txt"), "remove", "0", "6"]).unwrap();
    assert_eq!(
        std::fs::read_to_string(p("ex2.txt"))
            .unwrap()
            .lines()
            .nth(1),
        Some("0 5")
    );

    std::fs::write(
        p("ExcludeOrders.xml"),
        "<Orders-Exclude>\r\n\t<Order AccountID=\"0\" ID=\"9\"/>\r\n\t<Order AccountID=\"1\" ID=\"8\"/>\r\n</Orders-Exclude>",
    )
    .unwrap();
    ledger(&[
        "import-excludes",
        &p("ExcludeOrders.xml"),
        "--file",
        &p("ex2.txt"),
        "--login",
        "0",
    ])
    .unwrap();
    let ex = std::fs::read_to_string(p("ex2.txt")).unwrap();
    assert!(ex.contains("0 9") && !ex.contains("1 8"));

    // Bad input: a malformed history is an error, not a panic.
    std::fs::write(p("bad.jsonl"), "{\"kind\":\"deal\"}\n").unwrap();
    let err = ledger(&["replay", &p("bad.jsonl")]).unwrap_err();
    assert!(format!("{err:#}").contains("line 1"));
}

/// `<repo>/../shared` when it exists; CI (CI=true) must have it.
fn shared_dir() -> Option<std::path::PathBuf> {
    let shared = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if shared.is_dir() {
        return Some(shared);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {} is missing",
        shared.display()
    );
    None
}

#[test]
fn replays_the_real_report_samples() {
    let Some(shared) = shared_dir() else {
        return;
    };
    for name in [
        "ReportHistory-hedging-small.xlsx",
        "ReportHistory-hedging-native.xlsx",
    ] {
        let path = shared.join("samples/mt5-reports").join(name);
        assert!(path.exists(), "sample missing: {}", path.display());
        ledger(&["replay", path.to_str().unwrap(), "--json"]).unwrap();
    }
}

#[test]
fn a_report_that_differs_from_its_replay_exits_with_code_3() {
    use hedge_ledger::report::writer::{write_html, WriteOptions};
    let dir = tempfile::tempdir().unwrap();
    let mut h = hedge_ledger::generator::generate(hedge_ledger::generator::GenConfig {
        deals: 60,
        seed: 9,
        symbols: 2,
    });
    h.account.login = hedge_domain::Login(7);
    let good = dir.path().join("good.html");
    std::fs::write(&good, write_html(&h, &WriteOptions::default())).unwrap();
    ledger(&["replay", good.to_str().unwrap()]).unwrap();
    // Drop the last trade deal: the report's own open positions no longer follow from its deals.
    let last = h
        .deals
        .iter()
        .rposition(|d| d.deal_type.side().is_some())
        .unwrap();
    let bytes = write_html(&h, &WriteOptions::default());
    let text = String::from_utf16_lossy(
        &bytes[2..]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect::<Vec<_>>(),
    );
    let ticket = h.deals[last].ticket.get().to_string();
    let start = text.find(&format!("<td>{ticket}</td>")).unwrap();
    let row_start = text[..start].rfind("<tr").unwrap();
    let row_end = start + text[start..].find("</tr>").unwrap() + 5;
    let cut = format!("{}{}", &text[..row_start], &text[row_end..]);
    let bad = dir.path().join("bad.html");
    std::fs::write(&bad, cut.as_bytes()).unwrap();
    let err = ledger(&["replay", bad.to_str().unwrap()]).unwrap_err();
    assert_eq!(hedge_ledger::cli::exit_code(&err), 3, "{err:#}");
    let err = ledger(&["replay", dir.path().join("missing.xlsx").to_str().unwrap()]).unwrap_err();
    assert_eq!(hedge_ledger::cli::exit_code(&err), 1);
}

#[test]
fn the_active_report_takes_quotes_or_the_last_deal_prices() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    std::fs::write(
        p("h.jsonl"),
        "{\"kind\":\"order\",\"ticket\":1,\"symbol\":\"EURUSD\",\"type\":0,\"state\":4}\n\
         {\"kind\":\"deal\",\"ticket\":11,\"order\":1,\"symbol\":\"EURUSD\",\"type\":0,\"volume\":1,\"price\":1.10003,\"time_msc\":1}\n\
         {\"kind\":\"order\",\"ticket\":2,\"symbol\":\"USDJPY\",\"type\":1,\"state\":4}\n\
         {\"kind\":\"deal\",\"ticket\":12,\"order\":2,\"symbol\":\"USDJPY\",\"type\":1,\"volume\":1,\"price\":150.123,\"time_msc\":2}\n",
    )
    .unwrap();
    std::fs::write(p("q.json"), "{\"EURUSD\": [1.10512, 1.10514]}").unwrap();
    let cols = "EntryID,CurrentPrice";
    ledger(&[
        "replay",
        &p("h.jsonl"),
        "--csv",
        &p("out"),
        "--active-columns",
        cols,
        "--quotes",
        &p("q.json"),
        "--last-prices",
    ])
    .unwrap();
    let active = std::fs::read_to_string(p("out/Active.csv")).unwrap();
    assert_eq!(active, "EntryID;CurrentPrice\n1;1.10512\n2;150.123\n");
}

/// JSON lines of one market order and its deal on EURUSD at `t` seconds (netting account, login 0).
fn trade(ticket: u64, sell: bool, magic: u64, volume: &str, t: i64) -> String {
    let (ty, ms) = (sell as u8, t * 1000);
    format!(
        "{{\"kind\":\"order\",\"ticket\":{ticket},\"symbol\":\"EURUSD\",\"type\":{ty},\"state\":4,\"magic\":{magic},\"volume_initial\":{volume},\"time_setup_msc\":{ms},\"time_done_msc\":{ms}}}\n\
         {{\"kind\":\"deal\",\"ticket\":{},\"order\":{ticket},\"symbol\":\"EURUSD\",\"type\":{ty},\"entry\":{},\"volume\":{volume},\"price\":1.1,\"time_msc\":{ms}}}\n",
        ticket + 100,
        sell as u8,
    )
}

fn close_link(id: u64) -> u64 {
    hedge_ledger::codec::encode_raw(id, hedge_ledger::LinkKind::Market)
}

/// (active entry ids, history rows) of a replay with these exclusions, read from its CSV tables.
fn replayed(
    history: &str,
    exclusions: &str,
    dir: &std::path::Path,
    name: &str,
) -> (Vec<String>, usize) {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    std::fs::write(p(&format!("{name}.jsonl")), history).unwrap();
    let out = p(name);
    ledger(&[
        "replay",
        &p(&format!("{name}.jsonl")),
        "--exclusions",
        exclusions,
        "--csv",
        &out,
        "--active-columns",
        "EntryID",
        "--history-columns",
        "EntryID,ExitID",
    ])
    .unwrap();
    let active = std::fs::read_to_string(dir.join(name).join("Active.csv")).unwrap();
    let history = std::fs::read_to_string(dir.join(name).join("History.csv")).unwrap();
    (
        active.lines().skip(1).map(str::to_owned).collect(),
        history.lines().skip(1).count(),
    )
}

#[test]
fn an_order_linked_to_an_excluded_position_opens_its_own_through_the_cli_as_live() {
    let dir = tempfile::tempdir().unwrap();
    let ex = dir.path().join("ex.txt");
    std::fs::write(&ex, "0 1\n").unwrap();
    // Position 1 is excluded from its opening; order 2 links to it.
    let h = trade(1, false, 0, "1", 1) + &trade(2, true, close_link(1), "1", 2);
    let (active, rows) = replayed(&h, ex.to_str().unwrap(), dir.path(), "a");
    assert_eq!((active, rows), (vec!["2".to_owned()], 0));
}

#[test]
fn hide_flat_records_the_last_deal_time_so_later_links_open_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    // Buy 2, close 1 of it by link, sell 1 unlinked: the broker is flat with two positions open.
    let before = trade(1, false, 0, "2", 1)
        + &trade(2, true, close_link(1), "1", 2)
        + &trade(3, true, 0, "1", 3);
    std::fs::write(p("h.jsonl"), &before).unwrap();
    std::fs::write(p("flat.json"), r#"{"EURUSD": 0}"#).unwrap();
    let args = [
        "hide-flat",
        &p("h.jsonl"),
        "--broker",
        &p("flat.json"),
        "--file",
        &p("ex.txt"),
    ];
    ledger(&args).unwrap();
    let text = std::fs::read_to_string(p("ex.txt")).unwrap();
    assert!(
        text.contains("\n0 1 3000\n") && text.ends_with("\n0 3 3000\n"),
        "{text}"
    );
    // Later an order links to hidden position 1: it opens its own, and the partial close made
    // before the exclusion stays in the history.
    let after = before + &trade(4, true, close_link(1), "1", 4);
    let (active, rows) = replayed(&after, &p("ex.txt"), dir.path(), "b");
    assert_eq!((active, rows), (vec!["4".to_owned()], 1));
}

#[test]
fn reconcile_apply_records_the_last_deal_time() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    // The ledger keeps 1 lot of position 1; the broker already has EURUSD flat.
    let before = trade(1, false, 0, "2", 1) + &trade(2, true, close_link(1), "1", 2);
    std::fs::write(p("h.jsonl"), &before).unwrap();
    std::fs::write(p("flat.json"), r#"{"EURUSD": 0}"#).unwrap();
    ledger(&[
        "reconcile",
        &p("h.jsonl"),
        "--broker",
        &p("flat.json"),
        "--apply",
        "--exclusions",
        &p("ex.txt"),
    ])
    .unwrap();
    let text = std::fs::read_to_string(p("ex.txt")).unwrap();
    assert!(text.ends_with("\n0 1 2000\n"), "{text}");
    let after = before + &trade(3, true, close_link(1), "1", 3);
    let (active, rows) = replayed(&after, &p("ex.txt"), dir.path(), "c");
    assert_eq!((active, rows), (vec!["3".to_owned()], 1));
}

#[test]
fn import_excludes_reads_utf16_without_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let xml = "<Orders-Exclude>\r\n\t<Order AccountID=\"7\" ID=\"100\"/>\r\n</Orders-Exclude>";
    let le: Vec<u8> = xml.encode_utf16().flat_map(u16::to_le_bytes).collect();
    std::fs::write(p("ExcludeOrders.xml"), le).unwrap();
    ledger(&[
        "import-excludes",
        &p("ExcludeOrders.xml"),
        "--file",
        &p("ex.txt"),
    ])
    .unwrap();
    let text = std::fs::read_to_string(p("ex.txt")).unwrap();
    assert!(text.ends_with("\n7 100\n"), "{text}");
}
