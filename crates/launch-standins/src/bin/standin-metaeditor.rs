//! A stand-in for `metaeditor64.exe /portable /compile:<mq5> /log:<file>`, used by the tests to
//! exercise the compile path without MetaTrader: it checks the command line and the source, writes
//! the `.ex5` beside the source and a UTF-16LE log as MetaEditor does, and counts its runs in
//! `metaeditor-runs.txt` beside itself. `metaeditor=fail` in `standin.conf` makes it report a
//! compile error and produce nothing.

use hedge_launch::command::host_path_from_wine;
use hedge_launch::files::utf16le_with_bom;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let here = match std::env::current_exe() {
        Ok(p) => p.parent().map(PathBuf::from).unwrap_or_default(),
        Err(e) => {
            eprintln!("standin-metaeditor: cannot find itself: {e}");
            return ExitCode::from(2);
        }
    };
    let fail = std::fs::read_to_string(here.join("standin.conf"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.trim() == "metaeditor=fail");
    let value = |key: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(key))
            .map(host_path_from_wine)
    };
    let (Some(source), Some(log)) = (value("/compile:"), value("/log:")) else {
        eprintln!("standin-metaeditor: expected /compile:<file> and /log:<file>, got {args:?}");
        return ExitCode::from(2);
    };
    if !args.iter().any(|a| a == "/portable") {
        eprintln!("standin-metaeditor: /portable missing");
        return ExitCode::from(2);
    }
    let runs = here.join("metaeditor-runs.txt");
    let count = std::fs::read_to_string(&runs)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let _ = std::fs::write(&runs, format!("{}\n", count + 1));

    let text = match std::fs::read_to_string(&source) {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::write(
                &log,
                utf16le_with_bom(&format!(
                    "{}: error: cannot open ({e})\r\nResult: 1 errors, 0 warnings\r\n",
                    source.display()
                )),
            );
            return ExitCode::from(1);
        }
    };
    let looks_like_the_bridge = text.contains("OnTradeTransaction") && text.contains("#property");
    if fail || !looks_like_the_bridge {
        let _ = std::fs::write(
            &log,
            utf16le_with_bom(&format!(
                "{}(1,1) : error 149: unexpected token\r\nResult: 1 errors, 0 warnings\r\n",
                source.display()
            )),
        );
        return ExitCode::from(1);
    }
    let binary = source.with_extension("ex5");
    if let Err(e) = std::fs::write(
        &binary,
        format!("EX5 stand-in compiled from {} bytes\n", text.len()),
    ) {
        eprintln!("standin-metaeditor: cannot write {}: {e}", binary.display());
        return ExitCode::from(1);
    }
    let _ = std::fs::write(
        &log,
        utf16le_with_bom(&format!(
            "{}: information: compiling\r\nResult: 0 errors, 0 warnings\r\n",
            source.display()
        )),
    );
    ExitCode::SUCCESS
}
