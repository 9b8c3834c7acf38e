//! Reading what the terminal and the bridge wrote about a failed start: the terminal's journal
//! (`logs/YYYYMMDD.log`) and the experts' log (`MQL5/Logs/YYYYMMDD.log`), both UTF-16LE.

use crate::files::decode_text;
use std::fmt;
use std::path::Path;
use std::time::SystemTime;

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

/// The findings in every `*.log` file of `dirs` modified at or after `since` (log files are named
/// by the terminal's local date, so the modification time is the reliable filter).
pub fn read_findings(dirs: &[&Path], since: SystemTime) -> Vec<Finding> {
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("log")))
            .filter(|p| {
                std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m >= since)
            })
            .collect();
        files.sort();
        for file in files {
            if let Ok(bytes) = std::fs::read(&file) {
                found.extend(scan(&decode_text(&bytes)));
            }
        }
    }
    found
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
    fn reads_utf16_logs_modified_since_start() {
        let dir = tempfile::tempdir().unwrap();
        let start = SystemTime::now() - std::time::Duration::from_secs(2);
        std::fs::write(
            dir.path().join("20260101.log"),
            crate::files::utf16le_with_bom("x\t'1': authorization on S failed\r\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "authorization failed").unwrap();
        let found = read_findings(&[dir.path()], start);
        assert_eq!(found.len(), 1);
        assert!(found[0].is_authorization_failure());
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        assert!(read_findings(&[dir.path()], later).is_empty());
    }
}
