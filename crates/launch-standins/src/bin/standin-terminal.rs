//! A stand-in for `terminal64.exe /portable /config:<ini>`, so that the whole launch path runs in CI
//! without MetaTrader. Installed by the tests as `terminal64.exe` in a temporary folder, it checks
//! what a real terminal would need (portable mode, the start-up file and its owner-only permissions,
//! the account, algo trading settings, the compiled bridge, the `.set` inputs with the agent's port),
//! writes a UTF-16LE journal in `logs/` like the terminal's, and then behaves as `standin.conf`
//! beside it says:
//!
//! - `password=<p>`: the account's password; any other is refused with the terminal's journal line
//!   `authorization on <server> failed (Invalid account)`, and the process keeps running
//!   unauthorised, as MT5 does.
//! - `mode=connect` (default): the simulator connects to the agent's port, as the bridge would.
//! - `mode=never`: logs in but nothing ever connects.
//! - `mode=socket-refused`: the bridge's log reports `SocketConnect` error 4014 (address not allowed).
//! - `mode=exit`: exits with code 3 right after start.
//!
//! A failed check exits with code 2 and says why in the journal. What it saw (never the password)
//! goes to `standin-report.txt`.

use anyhow::{anyhow, bail, Context};
use hedge_launch::command::host_path_from_wine;
use hedge_launch::files::{decode_text, utf16le_with_bom};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

struct Journal {
    path: PathBuf,
}

impl Journal {
    fn new(dir: &Path, name_date: &str) -> Journal {
        let _ = std::fs::create_dir_all(dir);
        Journal {
            path: dir.join(format!("{name_date}.log")),
        }
    }

    fn line(&self, source: &str, text: &str) {
        let fresh = !self.path.exists();
        let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        else {
            return;
        };
        let mut bytes = utf16le_with_bom(&format!("LG\t0\t{}\t{source}\t{text}\r\n", clock()));
        if !fresh {
            bytes.drain(..2);
        }
        let _ = f.write_all(&bytes);
    }
}

/// `YYYYMMDD` and `HH:MM:SS` in UTC, from the Unix clock (the civil-from-days algorithm).
fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}")
}

fn clock() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let s = secs % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `[Section] key=value` lines into `section.key` → value.
fn parse_ini(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            out.insert(format!("{section}.{}", k.trim()), v.to_owned());
        }
    }
    out
}

struct Checked {
    login: u64,
    server: String,
    password: String,
    host: String,
    port: u16,
}

fn check(args: &[String], here: &Path) -> anyhow::Result<Checked> {
    if !args.iter().any(|a| a == "/portable") {
        bail!("not started with /portable");
    }
    let config = args
        .iter()
        .find_map(|a| a.strip_prefix("/config:"))
        .map(host_path_from_wine)
        .context("no /config:<file> argument")?;
    let cwd = std::env::current_dir()?;
    if std::fs::canonicalize(&cwd).ok() != std::fs::canonicalize(here).ok() {
        bail!("started in {} instead of its own folder", cwd.display());
    }
    let meta =
        std::fs::metadata(&config).with_context(|| format!("config {}", config.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode != 0o600 {
            bail!("config file has mode {mode:o}, expected 600");
        }
    }
    let _ = meta;
    let bytes = std::fs::read(&config)?;
    if !bytes.starts_with(&[0xFF, 0xFE]) {
        bail!("config file is not UTF-16LE with a BOM");
    }
    let ini = parse_ini(&decode_text(&bytes));
    let get = |k: &str| {
        ini.get(k)
            .cloned()
            .with_context(|| format!("config lacks {k}"))
    };
    for (k, want) in [
        ("Experts.AllowLiveTrading", "1"),
        ("Experts.Enabled", "1"),
        ("Experts.AllowDllImport", "0"),
        ("StartUp.Expert", "HedgeBridge"),
    ] {
        let got = get(k)?;
        if got != want {
            bail!("{k}={got}, expected {want}");
        }
    }
    let login: u64 = get("Common.Login")?
        .parse()
        .map_err(|_| anyhow!("Login is not a number"))?;
    let server = get("Common.Server")?;
    let password = get("Common.Password")?;
    get("StartUp.Symbol")?;
    get("StartUp.Period")?;
    let experts = here.join("MQL5").join("Experts");
    if !experts.join("HedgeBridge.ex5").is_file() {
        bail!("MQL5/Experts/HedgeBridge.ex5 is missing");
    }
    let set_path = here
        .join("MQL5")
        .join("Presets")
        .join(get("StartUp.ExpertParameters")?);
    let set = parse_ini(&decode_text(
        &std::fs::read(&set_path).with_context(|| set_path.display().to_string())?,
    ));
    let port: u16 = set
        .get(".InpAgentPort")
        .and_then(|p| p.parse().ok())
        .context("the .set file has no valid InpAgentPort")?;
    let host = set
        .get(".InpAgentHost")
        .cloned()
        .context("the .set file has no InpAgentHost")?;
    Ok(Checked {
        login,
        server,
        password,
        host,
        port,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let here = match std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
    {
        Some(h) => h,
        None => return ExitCode::from(2),
    };
    let conf_path = here.join("standin.conf");
    // A test that fails before stopping this process removes its folder; leave with it.
    let watched = conf_path.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if !watched.exists() {
            std::process::exit(0);
        }
    });
    let conf = parse_ini(&std::fs::read_to_string(&conf_path).unwrap_or_default());
    let mode = conf
        .get(".mode")
        .map_or("connect", String::as_str)
        .to_owned();
    let date = today();
    let journal = Journal::new(&here.join("logs"), &date);
    let experts_log = Journal::new(&here.join("MQL5").join("Logs"), &date);
    journal.line("Terminal", "stand-in terminal started in portable mode");

    let checked = match check(&args, &here) {
        Ok(c) => c,
        Err(why) => {
            journal.line(
                "Terminal",
                &format!("stand-in configuration error: {why:#}"),
            );
            eprintln!("standin-terminal: {why:#}");
            return ExitCode::from(2);
        }
    };
    let password_ok = conf.get(".password") == Some(&checked.password);
    let _ = std::fs::write(
        here.join("standin-report.txt"),
        format!(
            "argv={}\nlogin={}\nserver={}\nhost={}\nport={}\npassword_ok={password_ok}\n",
            args.join(" "),
            checked.login,
            checked.server,
            checked.host,
            checked.port
        ),
    );
    drop(conf);
    if mode == "exit" {
        journal.line("Terminal", "stand-in exiting with code 3");
        return ExitCode::from(3);
    }
    if !password_ok {
        journal.line(
            "Network",
            &format!(
                "'{}': authorization on {} failed (Invalid account)",
                checked.login, checked.server
            ),
        );
        park();
    }
    journal.line(
        "Network",
        &format!("'{}': authorized on {}", checked.login, checked.server),
    );
    match mode.as_str() {
        "never" => park(),
        "socket-refused" => {
            experts_log.line(
                "HedgeBridge (EURUSD,M1)",
                &format!(
                    "HedgeBridge: SocketConnect to {}:{} failed, error 4014",
                    checked.host, checked.port
                ),
            );
            park()
        }
        _ => match standin_bridge::run(&checked.host, checked.port, checked.login, &checked.server)
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                experts_log.line(
                    "HedgeBridge (EURUSD,M1)",
                    &format!("stand-in bridge failed: {e:#}"),
                );
                ExitCode::from(4)
            }
        },
    }
}

/// Stays alive like a terminal that nobody closes; the test stops it (or removes its folder).
fn park() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

mod standin_bridge {
    use anyhow::Context;
    use hedge_domain::Login;
    use hedge_sim::{AccountConfig, SimConfig, SimTerminal};

    /// Runs the simulator as this terminal's bridge: it connects to the agent at `host:port` exactly
    /// as the Expert Advisor would, logged in as `login` on `server`, until the process is stopped.
    pub fn run(host: &str, port: u16, login: u64, server: &str) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a runtime")?;
        let config = SimConfig::new(
            format!("{host}:{port}"),
            AccountConfig {
                login: Login(login),
                server: server.to_owned(),
                ..AccountConfig::default()
            },
        );
        runtime.block_on(async move {
            let _terminal = SimTerminal::spawn(config);
            std::future::pending::<()>().await;
        });
        Ok(())
    }
}
