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
