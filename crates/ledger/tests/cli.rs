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

#[test]
fn replays_the_real_report_sample() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/samples/mt5-reports/ReportHistory-hedging-small.xlsx");
    assert!(path.exists(), "sample missing: {}", path.display());
    ledger(&["replay", path.to_str().unwrap(), "--json"]).unwrap();
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
