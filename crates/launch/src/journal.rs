//! Reading what the terminal and the bridge wrote about a failed start: the terminal's journal
//! (`logs/YYYYMMDD.log`) and the experts' log (`MQL5/Logs/YYYYMMDD.log`), both UTF-16LE.

use crate::files::decode_text;
use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Something in the logs that explains why the bridge did not connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The trade server refused the login (wrong password, login or server).
    AuthorizationFailed(String),
    /// The terminal could not reach the trade server.
    NoConnection(String),
    /// Algo trading is off, so the bridge does not run.
    AlgoTradingDisabled(String),
    /// `SocketConnect` was refused because the agent's address is not in the allowed list
    /// (MQL5 error 4014), as the bridge reports it.
    SocketNotAllowed(String),
    /// The bridge could not be loaded or started.
    ExpertNotLoaded(String),
}

impl Finding {
    pub fn line(&self) -> &str {
        match self {
            Finding::AuthorizationFailed(l)
            | Finding::NoConnection(l)
            | Finding::AlgoTradingDisabled(l)
            | Finding::SocketNotAllowed(l)
            | Finding::ExpertNotLoaded(l) => l,
        }
    }

    pub fn is_authorization_failure(&self) -> bool {
        matches!(self, Finding::AuthorizationFailed(_))
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Finding::AuthorizationFailed(_) => {
                "the trade server refused the login: check the login, password and server name"
            }
            Finding::NoConnection(_) => {
                "the terminal cannot reach the trade server: check the server name and the network"
            }
            Finding::AlgoTradingDisabled(_) => {
                "algo trading is disabled in the terminal: enable the Algo Trading button"
            }
            Finding::SocketNotAllowed(_) => {
                "the agent's address is not allowed: add it under Tools → Options → Expert Advisors → \
                 \"Allow WebRequest for listed URL\""
            }
            Finding::ExpertNotLoaded(_) => "the bridge Expert Advisor could not be loaded",
        };
        write!(f, "{what} (log: {})", self.line().trim())
    }
}

/// The findings in one log's text, in the order they were written.
pub fn scan(text: &str) -> Vec<Finding> {
    let mut found = Vec::new();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        let lower = line.to_lowercase();
        let finding = if lower.contains("authorization") && lower.contains("failed")
            || lower.contains("invalid account")
        {
            Finding::AuthorizationFailed(line.to_owned())
        } else if lower.contains("no connection to") {
            Finding::NoConnection(line.to_owned())
        } else if lower.contains("automated trading") && lower.contains("disabled")
            || lower.contains("algo trading") && lower.contains("disabled")
        {
            Finding::AlgoTradingDisabled(line.to_owned())
        } else if lower.contains("hedgebridge") && lower.contains("4014") {
            Finding::SocketNotAllowed(line.to_owned())
        } else if lower.contains("hedgebridge")
            && (lower.contains("cannot load") || lower.contains("cannot open"))
        {
            Finding::ExpertNotLoaded(line.to_owned())
        } else {
            continue;
        };
        found.push(finding);
    }
    found
}

/// Where each log file ended when the terminal was started. The terminal appends to one journal file
/// per day, so an earlier failed start the same day must not be read as this one's: only what was
/// written after the marks counts.
#[derive(Clone, Debug, Default)]
pub struct LogMarks {
    ends: HashMap<PathBuf, u64>,
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("log")))
        .collect();
    files.sort();
    files
}

impl LogMarks {
    /// Marks the current end of every `*.log` file in `dirs`.
    pub fn take(dirs: &[&Path]) -> Self {
        let mut ends = HashMap::new();
        for dir in dirs {
            for file in log_files(dir) {
                if let Ok(meta) = std::fs::metadata(&file) {
                    ends.insert(file, meta.len());
                }
            }
        }
        LogMarks { ends }
    }

    /// The findings in what was written to the `*.log` files of `dirs` since the marks (all of a
    /// file that is new, or that shrank and so was replaced).
    pub fn read_findings(&self, dirs: &[&Path]) -> Vec<Finding> {
        let mut found = Vec::new();
        for dir in dirs {
            for file in log_files(dir) {
                let mark = self.ends.get(&file).copied().unwrap_or(0);
                if let Some(text) = read_from(&file, mark) {
                    found.extend(scan(&text));
                }
            }
        }
        found
    }
}

/// The text of `file` from byte `mark` on, decoded in the file's own encoding (from its start).
fn read_from(file: &Path, mark: u64) -> Option<String> {
    let mut f = std::fs::File::open(file).ok()?;
    let len = f.metadata().ok()?.len();
    let mark = if mark > len { 0 } else { mark };
    if mark == len {
        return None;
    }
    let mut head = [0u8; 2];
    let head_len = f.read(&mut head).ok()?;
    let utf16 = head_len == 2 && head == [0xFF, 0xFE];
    // A UTF-16 file grows by whole code units; keep the offset on one.
    let start = if utf16 { mark.max(2) & !1 } else { mark };
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    if utf16 {
        let mut with_bom = vec![0xFF, 0xFE];
        with_bom.extend_from_slice(&tail);
        Some(decode_text(&with_bom))
    } else if start == 0 {
        Some(decode_text(&tail))
    } else {
        Some(String::from_utf8_lossy(&tail).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_terminal_journal_lines() {
        let text = "CS\t0\t10:00:01.123\tNetwork\t'5012345': authorization on MetaQuotes-Demo failed (Invalid account)\r\n\
                    CS\t0\t10:00:02.000\tNetwork\t'5012345': no connection to Broker-Live\r\n\
                    CS\t0\t10:00:03.000\tExperts\tautomated trading is disabled because the account has been changed\r\n\
                    CS\t0\t10:00:04.000\tExperts\tHedgeBridge (EURUSD,M1)\tSocketConnect to 127.0.0.1:7001 failed, error 4014\r\n\
                    CS\t0\t10:00:05.000\tTerminal\tnothing to see\r\n";
        let found = scan(text);
        assert_eq!(found.len(), 4);
        assert!(found[0].is_authorization_failure());
        assert!(matches!(found[1], Finding::NoConnection(_)));
        assert!(matches!(found[2], Finding::AlgoTradingDisabled(_)));
        assert!(matches!(found[3], Finding::SocketNotAllowed(_)));
        assert!(found[3].to_string().contains("Allow WebRequest"));
    }

    #[test]
    fn only_lines_written_after_the_marks_count() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("20260101.log");
        // An earlier failed start the same day.
        std::fs::write(
            &journal,
            crate::files::utf16le_with_bom("x\t'1': authorization on S failed\r\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "authorization failed").unwrap();
        let marks = LogMarks::take(&[dir.path()]);
        assert!(marks.read_findings(&[dir.path()]).is_empty());

        let append = |text: &str| {
            use std::io::Write;
            let bytes = crate::files::utf16le_with_bom(text);
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&journal)
                .unwrap();
            f.write_all(&bytes[2..]).unwrap();
        };
        append("x\t'1': authorized on S\r\n");
        assert!(marks.read_findings(&[dir.path()]).is_empty());
        append("x\t'1': authorization on S failed (Invalid account)\r\n");
        let found = marks.read_findings(&[dir.path()]);
        assert_eq!(found.len(), 1);
        assert!(found[0].is_authorization_failure());

        // A file that appears after the marks is read whole.
        std::fs::write(
            dir.path().join("20260102.log"),
            "HedgeBridge: SocketConnect failed, error 4014\n",
        )
        .unwrap();
        assert_eq!(marks.read_findings(&[dir.path()]).len(), 2);
    }
}
