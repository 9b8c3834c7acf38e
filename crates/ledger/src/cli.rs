//! `hedge ledger ...`: replay an account history (ours or an MT5 report), audit it, reconcile it with
//! the broker's net positions, manage exclusions, generate synthetic histories.

use crate::exclusions::Exclusions;
use crate::export::{self, Columns, CsvEncoding, ReportContext};
use crate::generator::{GenConfig, Generator};
use crate::ledger::{Ledger, PairingMode};
use crate::reconcile;
use crate::record::History;
use crate::report::{self, format_time, ImportedReport};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use hedge_domain::{Login, PositionId, Price, SymbolSpec, Volume};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(
    about = "Bi-directional positions of an MT5 account: replay, audit, reconcile, exclusions"
)]
pub struct LedgerArgs {
    #[command(subcommand)]
    pub command: LedgerCommand,
}

#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// Replay a history (JSON lines, or an MT5 report .xlsx/.html) and print its positions.
    Replay(ReplayArgs),
    /// Compare the ledger's net volume per symbol with the broker's net positions.
    Reconcile(ReconcileArgs),
    /// Add, remove or list exclusions.
    Exclude(ExcludeArgs),
    /// Import HedgeTerminal's ExcludeOrders.xml into an exclusions file.
    ImportExcludes(ImportExcludesArgs),
    /// Hide every active position while the broker's net position is flat.
    HideFlat(HideFlatArgs),
    /// Write a synthetic netting history (JSON lines).
    Generate(GenerateArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    Links,
    Native,
    Fifo,
}

#[derive(Args, Debug)]
pub struct SourceArgs {
    /// History file: JSON lines (see docs/ledger.md) or an MT5 "Trade History Report" (.xlsx, .html).
    pub history: PathBuf,
    /// Exclusions file (`<login> <position id> [<from ms>]` per line).
    #[arg(long)]
    pub exclusions: Option<PathBuf>,
    /// Account login for exclusions (default: the history's).
    #[arg(long)]
    pub login: Option<u64>,
    /// Override the pairing mode (default: links for netting, native for hedging, fifo for netting
    /// reports).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write Active.csv and History.csv into this directory.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// CSV in the original's Excel format (UTF-16LE, CRLF, trailing `;`).
    #[arg(long)]
    pub excel: bool,
    /// Active table columns: `Id[=Name],...` (default: the original's).
    #[arg(long)]
    pub active_columns: Option<String>,
    /// History table columns: `Id[=Name],...`.
    #[arg(long)]
    pub history_columns: Option<String>,
    /// Take both tables' columns from HedgeTerminal's Settings.xml.
    #[arg(long, conflicts_with_all = ["active_columns", "history_columns"])]
    pub settings: Option<PathBuf>,
    /// Symbol specifications (JSON array of SymbolSpec) for digits and profit.
    #[arg(long)]
    pub symbols: Option<PathBuf>,
    /// Current prices for the active report: JSON object `{"EURUSD": [bid, ask], ...}`.
    #[arg(long)]
    pub quotes: Option<PathBuf>,
    /// Use each symbol's last deal price as its current price (for symbols --quotes does not
    /// cover).
    #[arg(long)]
    pub last_prices: bool,
}

#[derive(Args, Debug)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Broker net positions: JSON object `{"EURUSD": -0.3, ...}` (signed, long positive).
    #[arg(long)]
    pub broker: PathBuf,
    /// Print the correcting order and exclusions for each mismatch.
    #[arg(long)]
    pub propose: bool,
    /// Record the proposed exclusions in the --exclusions file for symbols the broker already has
    /// flat (where no correcting order is needed).
    #[arg(long)]
    pub apply: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ExcludeArgs {
    /// Exclusions file to edit (created if missing).
    #[arg(long)]
    pub file: PathBuf,
    #[command(subcommand)]
    pub action: ExcludeAction,
}

#[derive(Subcommand, Debug)]
pub enum ExcludeAction {
    /// Hide positions of an account from the ledger, from their opening on (the deals stay in
    /// the history; reconcile checks the account's net position without them).
    Add {
        /// The account's login.
        login: u64,
        /// Position ids (the opening order's ticket), one or more.
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// Show hidden positions again: the next replay counts them.
    Remove {
        /// The account's login.
        login: u64,
        /// Position ids to include again, one or more.
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// Print the exclusions file's entries, `<login> <position id>` per line.
    List,
}

#[derive(Args, Debug)]
pub struct ImportExcludesArgs {
    /// HedgeTerminal's ExcludeOrders.xml.
    pub xml: PathBuf,
    /// Exclusions file to merge into (created if missing).
    #[arg(long)]
    pub file: PathBuf,
    /// Only this account's entries.
    #[arg(long)]
    pub login: Option<u64>,
}

#[derive(Args, Debug)]
pub struct HideFlatArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Broker net positions (JSON object, symbol → signed volume); must be all flat.
    #[arg(long)]
    pub broker: PathBuf,
    /// Exclusions file to append to.
    #[arg(long)]
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[arg(long, default_value_t = 10_000)]
    pub deals: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 3)]
    pub symbols: usize,
    /// Output file (default: stdout).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

pub fn run(args: LedgerArgs) -> Result<()> {
    match args.command {
        LedgerCommand::Replay(a) => replay(a),
        LedgerCommand::Reconcile(a) => reconcile_cmd(a),
        LedgerCommand::Exclude(a) => exclude(a),
        LedgerCommand::ImportExcludes(a) => import_excludes(a),
        LedgerCommand::HideFlat(a) => hide_flat(a),
        LedgerCommand::Generate(a) => generate(a),
    }
}

struct Loaded {
    ledger: Ledger,
    report: Option<ImportedReport>,
    login: Login,
    /// The time of the history's last deal: exclusions added now hide from there, so a replay
    /// keeps every pairing made before them.
    last_deal_msc: Option<i64>,
    /// Each deal's booked profit and volume, by ticket: the realized profit of closed positions
    /// when no symbol specifications are given.
    deal_profits: HashMap<u64, (Decimal, Decimal)>,
}

impl Loaded {
    /// Records an exclusion of `id` as of the end of this history.
    fn exclude_now(&self, ex: &mut Exclusions, id: PositionId) -> bool {
        match self.last_deal_msc {
            Some(t) => ex.add_from(self.login, id, t),
            None => ex.add(self.login, id),
        }
    }
}

fn is_report(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("xlsx" | "html" | "htm")
    )
}

fn load(src: &SourceArgs) -> Result<Loaded> {
    let (history, mode, report) = if is_report(&src.history) {
        let r = report::import_path(&src.history)
            .with_context(|| format!("importing {}", src.history.display()))?;
        (r.history.clone(), r.mode, Some(r))
    } else {
        let f = std::fs::File::open(&src.history)
            .with_context(|| format!("opening {}", src.history.display()))?;
        let h = History::read_jsonl(BufReader::new(f))
            .with_context(|| format!("reading {}", src.history.display()))?;
        let mode = PairingMode::for_account(h.account.margin_mode);
        (h, mode, None)
    };
    let mode = match src.mode {
        Some(ModeArg::Links) => PairingMode::Links,
        Some(ModeArg::Native) => PairingMode::Native,
        Some(ModeArg::Fifo) => PairingMode::Fifo,
        None => mode,
    };
    let total = history.deals.len() as u64;
    let bar = (std::io::stderr().is_terminal() && total >= 200_000).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("replay {bar:40} {pos}/{len} deals ({eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let login = Login(src.login.unwrap_or(history.account.login.get()));
    // Exclusions take part in the replay, as they do live: an order linking to a hidden position
    // opens its own, where hiding after the replay would have let it close the hidden one.
    let exclusions = match &src.exclusions {
        Some(path) => read_exclusions(path)?.for_replay(login),
        None => Vec::new(),
    };
    let ledger = Ledger::replay_excluding(&history, mode, &exclusions, |n| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if !exclusions.is_empty() {
        tracing::info!(hidden = ledger.hidden().len(), "exclusions applied");
    }
    let last_deal_msc = history.deals.iter().map(|d| d.time_msc).max();
    let deal_profits = history
        .deals
        .iter()
        .map(|d| (d.ticket.0, (d.profit.0, d.volume.0)))
        .collect();
    for w in ledger.warnings() {
        tracing::warn!(?w, "replay");
    }
    Ok(Loaded {
        ledger,
        report,
        login,
        last_deal_msc,
        deal_profits,
    })
}

/// The broker's booked profit of each closed position, keyed like the history rows (id, exit
/// order): its exit deals' profit, shared by volume when one deal closed several positions.
fn booked_profits(loaded: &Loaded) -> HashMap<(PositionId, u64), Decimal> {
    let mut out: HashMap<(PositionId, u64), Decimal> = HashMap::new();
    for h in loaded.ledger.history_positions() {
        let profit: Decimal = h
            .exit_deals()
            .filter_map(|f| {
                let (profit, volume) = loaded.deal_profits.get(&f.ticket.0)?;
                (!volume.is_zero()).then(|| profit * f.volume.0 / volume)
            })
            .sum();
        *out.entry((h.id(), h.exit_order().0)).or_default() += profit;
    }
    out
}

fn read_exclusions(path: &Path) -> Result<Exclusions> {
    match std::fs::read_to_string(path) {
        Ok(text) => Exclusions::parse(&text).with_context(|| format!("in {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Exclusions::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_exclusions(path: &Path, ex: &Exclusions) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, ex.to_text()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

fn read_broker(path: &Path) -> Result<Vec<(String, Volume)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let map: BTreeMap<String, Volume> = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected {{\"SYMBOL\": signed volume}}", path.display()))?;
    Ok(map.into_iter().collect())
}

fn read_specs(path: &Option<PathBuf>) -> Result<std::collections::HashMap<String, SymbolSpec>> {
    let Some(path) = path else {
        return Ok(Default::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let specs: Vec<SymbolSpec> = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected a JSON array of symbol specs", path.display()))?;
    Ok(specs.into_iter().map(|s| (s.name.clone(), s)).collect())
}

/// Bid and ask per symbol from a quotes file, then (when asked) the history's last deal prices
/// for the symbols the file does not name.
fn read_quotes(
    path: &Option<PathBuf>,
    last: Option<&Ledger>,
) -> Result<std::collections::HashMap<String, (Price, Price)>> {
    let mut prices = std::collections::HashMap::new();
    if let Some(path) = path {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let quotes: BTreeMap<String, (Price, Price)> = serde_json::from_str(&text)
            .with_context(|| format!("{}: expected {{\"SYMBOL\": [bid, ask]}}", path.display()))?;
        prices.extend(quotes);
    }
    if let Some(l) = last {
        for (symbol, p) in l.last_prices() {
            prices.entry(symbol).or_insert((p, p));
        }
    }
    Ok(prices)
}

fn replay(a: ReplayArgs) -> Result<()> {
    let loaded = load(&a.source)?;
    let l = &loaded.ledger;
    let ctx = ReportContext {
        login: loaded.login.get(),
        specs: read_specs(&a.symbols)?,
        prices: read_quotes(&a.quotes, a.last_prices.then_some(l))?,
        ..Default::default()
    };
    let mismatches = loaded
        .report
        .as_ref()
        .map(|r| r.verify(l))
        .unwrap_or_default();
    if let Some(dir) = &a.csv {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let enc = if a.excel {
            CsvEncoding::Utf16Excel
        } else {
            CsvEncoding::Utf8
        };
        let (ac, hc) = match &a.settings {
            Some(path) => {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                Columns::from_settings_xml(&decode_text(&bytes))?
            }
            None => (
                match &a.active_columns {
                    Some(s) => Columns::parse(s, false)?,
                    None => Columns::default_active(),
                },
                match &a.history_columns {
                    Some(s) => Columns::parse(s, true)?,
                    None => Columns::default_history(),
                },
            ),
        };
        std::fs::write(
            dir.join("Active.csv"),
            export::active_csv(l, &ctx, &ac, enc),
        )?;
        std::fs::write(
            dir.join("History.csv"),
            export::history_csv(l, &ctx, &hc, enc),
        )?;
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    if a.json {
        let doc = serde_json::json!({
            "mode": l.mode(),
            "stats": l.stats(),
            "active": export::active_rows(l, &ctx),
            "history": export::history_rows(l, &ctx),
            "net": l.net_volumes().into_iter().collect::<BTreeMap<_, _>>(),
            "hidden": l.hidden(),
            "warnings": l.warnings(),
            "report_check": loaded.report.as_ref().map(|_| &mismatches),
        });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else if a.csv.is_none() {
        print_tables(&mut out, l, &ctx, &booked_profits(&loaded))?;
    }
    if let Some(r) = &loaded.report {
        if !a.json {
            writeln!(
                out,
                "report check: {} open positions, {} closed positions expected: {}",
                r.open_positions.len(),
                r.closed_positions
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                if mismatches.is_empty() {
                    "OK".to_owned()
                } else {
                    format!("{} MISMATCHES", mismatches.len())
                }
            )?;
            if !mismatches.is_empty() {
                writeln!(out, "differences (report / replay):")?;
            }
            for m in &mismatches {
                writeln!(out, "  {}: {} / {}", m.what, m.expected, m.actual)?;
            }
        }
    }
    out.flush()?;
    if !mismatches.is_empty() {
        return Err(ReportDiffers(mismatches.len()).into());
    }
    Ok(())
}

/// Exit code of `hedge ledger replay` when the replay and the report's own summary differ.
pub const EXIT_REPORT_DIFFERS: u8 = 3;

/// The replay was printed, with its differences from the report's own summary.
#[derive(Debug, thiserror::Error)]
#[error("the replay differs from the report's own summary in {0} place(s) (listed above)")]
pub struct ReportDiffers(pub usize);

/// The process exit code for an error of a `hedge ledger` command: 3 when a replay differs from
/// its report, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<ReportDiffers>().is_some() {
        EXIT_REPORT_DIFFERS
    } else {
        1
    }
}

/// What the user can do about an error, when there is something.
pub fn hint(err: &anyhow::Error) -> Option<&'static str> {
    err.chain().find_map(|e| match e.downcast_ref::<report::ReportError>()? {
        report::ReportError::Xlsx(_) | report::ReportError::Format(_) => Some(
            "export the report again from the terminal (History tab, right click, Report, Open XML or HTML)",
        ),
        report::ReportError::NoDeals => {
            Some("the file must be an MT5 \"Trade History Report\" with its Deals table")
        }
        _ => None,
    })
}

/// Money as tables show it: cents, rounded half away from zero as MT5 does.
fn cents(d: Decimal) -> String {
    format!(
        "{:.2}",
        d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
    )
}

/// A price as tables show it: an average of several fills has more digits than anyone reads.
fn readable(p: Price) -> Price {
    Price(p.0.round_dp(8).normalize())
}

fn print_tables(
    out: &mut impl Write,
    l: &Ledger,
    ctx: &ReportContext,
    booked: &HashMap<(PositionId, u64), Decimal>,
) -> Result<()> {
    print_active(out, l, ctx)?;
    print_history(out, l, ctx, booked)?;
    let net: Vec<(String, Volume)> = l
        .net_volumes()
        .into_iter()
        .filter(|(_, v)| !v.0.is_zero())
        .collect();
    if net.is_empty() {
        writeln!(out, "Net volume per symbol: all flat")?;
    } else {
        writeln!(out, "Net volume per symbol:")?;
        for (s, v) in net {
            writeln!(out, "  {s}: {v}")?;
        }
    }
    let st = l.stats();
    writeln!(
        out,
        "{} trade deals, {} other deals skipped, {} orders; {} positions closed, {} hidden, {} warnings",
        st.trade_deals,
        st.skipped_deals,
        st.orders,
        l.closed_position_count(),
        l.hidden().len(),
        l.warnings().len()
    )?;
    Ok(())
}

fn print_active(out: &mut impl Write, l: &Ledger, ctx: &ReportContext) -> Result<()> {
    let active = export::active_rows(l, ctx);
    writeln!(out, "Active positions ({}):", active.len())?;
    writeln!(
        out,
        "{:>12} {:<10} {:<4} {:>10} {:>12} {:>12} {:<19} {:>10} magic",
        "id", "symbol", "side", "volume", "entry", "sl", "entry time", "profit"
    )?;
    for r in &active {
        writeln!(
            out,
            "{:>12} {:<10} {:<4} {:>10} {:>12} {:>12} {:<19} {:>10} {}",
            r.id,
            r.symbol,
            r.side,
            r.volume,
            readable(r.entry_price),
            r.stop_loss.map(|p| p.to_string()).unwrap_or_default(),
            format_time(r.entry_time_msc),
            r.profit.map(|p| cents(p.0)).unwrap_or_else(|| "-".into()),
            export::magic_label(r.magic)
        )?;
    }
    if active.iter().any(|r| r.profit.is_none()) {
        writeln!(
            out,
            "  (floating profit needs --symbols FILE and --quotes FILE or --last-prices)"
        )?;
    }
    Ok(())
}

fn print_history(
    out: &mut impl Write,
    l: &Ledger,
    ctx: &ReportContext,
    booked: &HashMap<(PositionId, u64), Decimal>,
) -> Result<()> {
    let hist = export::history_rows(l, ctx);
    writeln!(out, "History positions ({}):", hist.len())?;
    writeln!(
        out,
        "{:>12} {:>12} {:<10} {:<4} {:>10} {:>12} {:>12} {:<19} {:>10} {:>8} {:>10}",
        "id",
        "exit order",
        "symbol",
        "side",
        "volume",
        "entry",
        "exit",
        "exit time",
        "commission",
        "swap",
        "profit"
    )?;
    let (mut profit, mut commission, mut swap) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for r in &hist {
        // Computed from the symbol's specification when given, else as the broker booked it.
        let p = r.profit.map(|p| p.0).unwrap_or_else(|| {
            booked
                .get(&(r.id, r.exit_order))
                .copied()
                .unwrap_or_default()
        });
        profit += p;
        commission += r.commission.0;
        swap += r.swap.0;
        writeln!(
            out,
            "{:>12} {:>12} {:<10} {:<4} {:>10} {:>12} {:>12} {:<19} {:>10} {:>8} {:>10}",
            r.id,
            r.exit_order,
            r.symbol,
            r.side,
            r.volume,
            readable(r.entry_price),
            readable(r.exit_price),
            format_time(r.exit_time_msc),
            r.commission,
            r.swap,
            cents(p)
        )?;
    }
    if !hist.is_empty() {
        writeln!(
            out,
            "  closed: profit {}, commission {}, swap {}; P/L {}",
            cents(profit),
            cents(commission),
            cents(swap),
            cents(profit + commission + swap)
        )?;
    }
    Ok(())
}

fn reconcile_cmd(a: ReconcileArgs) -> Result<()> {
    let loaded = load(&a.source)?;
    let broker = read_broker(&a.broker)?;
    let mismatches = reconcile::reconcile(&loaded.ledger, &broker);
    let corrections: Vec<_> = mismatches
        .iter()
        .map(|m| reconcile::propose_correction(&loaded.ledger, m))
        .collect();
    if a.json {
        let doc = serde_json::json!({
            "mismatches": mismatches,
            "corrections": if a.propose { Some(&corrections) } else { None },
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if mismatches.is_empty() {
        println!("net positions equal on every symbol");
    } else {
        let mut out = std::io::stdout().lock();
        for (m, c) in mismatches.iter().zip(&corrections) {
            writeln!(out, "{}: ledger {} broker {}", m.symbol, m.ledger, m.broker)?;
            if a.propose {
                print_correction(&mut out, c)?;
            }
        }
    }
    if a.apply {
        let file = a
            .source
            .exclusions
            .as_ref()
            .context("--apply needs --exclusions FILE")?;
        let mut ex = read_exclusions(file)?;
        let mut added = 0;
        for c in corrections.iter().filter(|c| c.order.is_none()) {
            for id in &c.exclude {
                added += loaded.exclude_now(&mut ex, *id) as usize;
            }
        }
        write_exclusions(file, &ex)?;
        println!("{added} exclusions recorded in {}", file.display());
        let pending: Vec<&str> = corrections
            .iter()
            .filter(|c| c.order.is_some())
            .map(|c| c.symbol.as_str())
            .collect();
        if !pending.is_empty() {
            println!(
                "not applied (the broker is not flat; send the correcting order first): {pending:?}"
            );
        }
    }
    if !mismatches.is_empty() && !a.apply {
        bail!("{} symbol(s) differ", mismatches.len());
    }
    Ok(())
}

/// The steps of a correction: the order (or why none is needed), then what to exclude; the
/// position the order opens exists only when there is an order.
fn print_correction(out: &mut impl Write, c: &reconcile::Correction) -> Result<()> {
    let ids = c
        .exclude
        .iter()
        .map(|p| p.get().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match (&c.order, ids.is_empty()) {
        (Some(o), _) => {
            writeln!(out, "  1. send {}", serde_json::to_string(o)?)?;
            match ids.is_empty() {
                true => writeln!(
                    out,
                    "  2. once it fills, exclude the position the order opens"
                )?,
                false => writeln!(
                    out,
                    "  2. exclude positions {ids} and, once it fills, the position the order opens"
                )?,
            }
        }
        (None, false) => {
            writeln!(out, "  1. no order needed: the broker is flat")?;
            writeln!(out, "  2. exclude positions {ids}")?;
        }
        (None, true) => writeln!(
            out,
            "  nothing to do: the broker is flat and so is the ledger"
        )?,
    }
    Ok(())
}

fn exclude(a: ExcludeArgs) -> Result<()> {
    let mut ex = read_exclusions(&a.file)?;
    match a.action {
        ExcludeAction::Add { login, ids } => {
            for id in ids {
                ex.add(Login(login), PositionId(id));
            }
            write_exclusions(&a.file, &ex)?;
        }
        ExcludeAction::Remove { login, ids } => {
            for id in ids {
                ex.remove(Login(login), PositionId(id));
            }
            write_exclusions(&a.file, &ex)?;
        }
        ExcludeAction::List => {
            for (l, id) in ex.iter() {
                println!("{l} {id}");
            }
        }
    }
    Ok(())
}

fn import_excludes(a: ImportExcludesArgs) -> Result<()> {
    let bytes = std::fs::read(&a.xml).with_context(|| format!("reading {}", a.xml.display()))?;
    // MT5 saves it as UTF-16, with or without a byte-order mark; the bytes tell which.
    let imported = Exclusions::import_exclude_orders_bytes(&bytes)
        .with_context(|| format!("importing {}", a.xml.display()))?;
    let mut filtered = Exclusions::new();
    for (l, id) in imported.iter() {
        if a.login.is_none_or(|want| want == l.get()) {
            filtered.add(l, id);
        }
    }
    let mut ex = read_exclusions(&a.file)?;
    let added = ex.merge(&filtered);
    write_exclusions(&a.file, &ex)?;
    println!(
        "{} exclusions read, {added} new, {} in {}",
        filtered.len(),
        ex.len(),
        a.file.display()
    );
    Ok(())
}

/// MQL writes text files as UTF-16LE with a BOM; others are UTF-8.
fn decode_text(bytes: &[u8]) -> String {
    if bytes.starts_with(&[0xFF, 0xFE]) {
        let body = &bytes[2..bytes.len() - (bytes.len() - 2) % 2];
        encoding_rs::UTF_16LE
            .decode_without_bom_handling(body)
            .0
            .into_owned()
    } else {
        encoding_rs::UTF_8.decode(bytes).0.into_owned()
    }
}

fn hide_flat(a: HideFlatArgs) -> Result<()> {
    let loaded = load(&a.source)?;
    let broker = read_broker(&a.broker)?;
    let ids = reconcile::hide_flat(&loaded.ledger, &broker)?;
    let with_stops: Vec<u64> = ids
        .iter()
        .filter_map(|id| loaded.ledger.active(*id))
        .filter(|p| p.stop_loss_order().is_some())
        .map(|p| p.id().get())
        .collect();
    if !with_stops.is_empty() {
        bail!("positions {with_stops:?} still have stop-loss orders; delete them first");
    }
    let mut ex = read_exclusions(&a.file)?;
    for id in &ids {
        loaded.exclude_now(&mut ex, *id);
    }
    write_exclusions(&a.file, &ex)?;
    println!(
        "{} positions hidden (recorded in {})",
        ids.len(),
        a.file.display()
    );
    Ok(())
}

fn generate(a: GenerateArgs) -> Result<()> {
    let cfg = GenConfig {
        deals: a.deals,
        seed: a.seed,
        symbols: a.symbols,
    };
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    for line in Generator::new(cfg) {
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A netting account that bought 0.1 EURUSD and sold it again for a booked profit of 20.
    const FLAT: &str = r#"{"kind":"account","login":7,"margin_mode":2,"currency":"USD"}
{"kind":"order","ticket":11,"symbol":"EURUSD","type":0,"state":4,"magic":0,"volume_initial":0.1,"volume_current":0,"price_open":0,"time_setup_msc":1700000000000,"time_done_msc":1700000000000,"position_id":11,"comment":""}
{"kind":"deal","ticket":21,"order":11,"symbol":"EURUSD","type":0,"entry":0,"magic":0,"position_id":11,"volume":0.1,"price":1.1,"commission":-0.5,"swap":0,"profit":0,"time_msc":1700000000001,"comment":""}
{"kind":"order","ticket":12,"symbol":"EURUSD","type":1,"state":4,"magic":0,"volume_initial":0.1,"volume_current":0,"price_open":0,"time_setup_msc":1700000060000,"time_done_msc":1700000060000,"position_id":11,"comment":""}
{"kind":"deal","ticket":22,"order":12,"symbol":"EURUSD","type":1,"entry":1,"magic":0,"position_id":11,"volume":0.1,"price":1.102,"commission":-0.5,"swap":-0.1,"profit":20,"time_msc":1700000060001,"comment":""}
"#;

    fn loaded(text: &str) -> (tempfile::TempDir, Loaded) {
        let dir = tempfile::tempdir().unwrap();
        let history = dir.path().join("h.jsonl");
        std::fs::write(&history, text).unwrap();
        let loaded = load(&SourceArgs {
            history,
            exclusions: None,
            login: None,
            mode: None,
        })
        .unwrap();
        (dir, loaded)
    }

    #[test]
    fn a_flat_account_says_so_and_shows_its_realized_profit() {
        let (_dir, loaded) = loaded(FLAT);
        let mut out = Vec::new();
        print_tables(
            &mut out,
            &loaded.ledger,
            &ReportContext::default(),
            &booked_profits(&loaded),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[3].ends_with(" profit"), "{text}");
        assert!(lines[4].ends_with(" 20.00"), "{text}");
        assert!(lines.contains(&"  closed: profit 20.00, commission -1.00, swap -0.10; P/L 18.90"));
        assert!(lines.contains(&"Net volume per symbol: all flat"), "{text}");
    }

    #[test]
    fn a_correction_mentions_the_order_s_position_only_when_there_is_an_order() {
        let (_dir, loaded) = loaded(FLAT);
        let broker = vec![("EURUSD".to_owned(), Volume("0.1".parse().unwrap()))];
        let mismatches = reconcile::reconcile(&loaded.ledger, &broker);
        let correction = reconcile::propose_correction(&loaded.ledger, &mismatches[0]);
        let mut out = Vec::new();
        print_correction(&mut out, &correction).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("  1. send {"), "{text}");
        assert!(text.ends_with("  2. once it fills, exclude the position the order opens\n"));

        let open = FLAT.lines().take(3).collect::<Vec<_>>().join("\n");
        let (_dir, loaded) = self::loaded(&open);
        let mismatches = reconcile::reconcile(&loaded.ledger, &[]);
        let correction = reconcile::propose_correction(&loaded.ledger, &mismatches[0]);
        let mut out = Vec::new();
        print_correction(&mut out, &correction).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "  1. no order needed: the broker is flat\n  2. exclude positions 11\n"
        );
    }
}
