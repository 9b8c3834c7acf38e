//! Killing processes by name or pid file, at once, on Linux, other Unixes and Windows.
//!
//! Speed matters (the tumbler must beat the copier's next action), so a [`Killer`] keeps the pids of
//! matching processes from a background scan; when fired it kills those first (after re-checking
//! that each pid still runs a matching program, since pids are reused), then scans once more for any
//! started since. The agent's own process and its parent are never killed.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The prototype's targets: the MT5 terminal (32 and 64 bit) and the Java copier.
pub const DEFAULT_NAMES: &[&str] = &["terminal.exe", "terminal64.exe", "javaw.exe"];

/// Linux keeps only this many bytes of a process name in `comm`.
const COMM_LEN: usize = 15;

/// One process that was killed (or would have been, in a dry run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Killed {
    /// The configured name it matched, or the pid file it came from.
    pub target: String,
    pub pid: u32,
    /// `Err` with the reason when the kill failed.
    pub result: Result<(), String>,
}

impl Killed {
    pub fn label(&self) -> String {
        format!("{}:{}", self.target, self.pid)
    }
}

/// A running process as the scan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// Short name (`comm` on Linux, image name on Windows).
    pub name: String,
    /// Base name of the program path, when known (full name beyond `comm`'s 15 bytes; Wine paths).
    pub program: Option<String>,
}

/// Whether a process matches a configured name. Case-insensitive (Windows names), by short name
/// (allowing Linux's truncation) or by the base name of its program path.
pub fn matches(process: &ProcessInfo, name: &str) -> bool {
    if process.name.eq_ignore_ascii_case(name) {
        return true;
    }
    if name.len() > COMM_LEN
        && process.name.len() == COMM_LEN
        && name.is_char_boundary(COMM_LEN)
        && name[..COMM_LEN].eq_ignore_ascii_case(&process.name)
    {
        return true;
    }
    process
        .program
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case(name))
}

/// The last component of a path written with `/` or `\` (a Wine process shows a Windows path).
pub fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Kills the configured processes.
pub struct Killer {
    names: Vec<String>,
    pid_files: Vec<PathBuf>,
    dry_run: bool,
    protected: HashSet<u32>,
    cache: Mutex<Vec<(u32, String)>>,
}

impl Killer {
    pub fn new(names: Vec<String>, pid_files: Vec<PathBuf>, dry_run: bool) -> Self {
        let mut protected = HashSet::new();
        protected.insert(std::process::id());
        if let Some(parent) = parent_pid() {
            protected.insert(parent);
        }
        Killer {
            names,
            pid_files,
            dry_run,
            protected,
            cache: Mutex::new(Vec::new()),
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn pid_files(&self) -> &[PathBuf] {
        &self.pid_files
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Rescans the process list and remembers the matching pids.
    pub fn refresh(&self) {
        let found = self.find();
        *self.cache.lock() = found;
    }

    /// Matching processes now: `(pid, configured name)`.
    pub fn find(&self) -> Vec<(u32, String)> {
        if self.names.is_empty() {
            return Vec::new();
        }
        list_processes()
            .into_iter()
            .filter(|p| !self.protected.contains(&p.pid))
            .filter_map(|p| {
                self.names
                    .iter()
                    .find(|n| matches(&p, n))
                    .map(|n| (p.pid, n.clone()))
            })
            .collect()
    }

    /// Kills every configured process now (in a dry run, only lists them). Returns what was done
    /// and when the first kill was issued.
    pub fn fire(&self) -> (Vec<Killed>, Option<Instant>) {
        let mut done: Vec<Killed> = Vec::new();
        let mut first = None;
        let mut seen = HashSet::new();
        let cached = self.cache.lock().clone();
        for (pid, name) in cached {
            // The pid may have been reused since the scan: only kill it if it still matches.
            let still = process_info(pid).is_some_and(|p| matches(&p, &name));
            if still && seen.insert(pid) {
                done.push(self.kill_one(pid, name, &mut first));
            }
        }
        for path in &self.pid_files {
            match read_pid_file(path) {
                Ok(pid) if self.protected.contains(&pid) => done.push(Killed {
                    target: path.display().to_string(),
                    pid,
                    result: Err("refusing to kill the agent itself or its parent".into()),
                }),
                Ok(pid) => {
                    if seen.insert(pid) {
                        done.push(self.kill_one(pid, path.display().to_string(), &mut first));
                    }
                }
                Err(e) => done.push(Killed {
                    target: path.display().to_string(),
                    pid: 0,
                    result: Err(e),
                }),
            }
        }
        for (pid, name) in self.find() {
            if seen.insert(pid) {
                done.push(self.kill_one(pid, name, &mut first));
            }
        }
        self.cache.lock().clear();
        (done, first)
    }

    fn kill_one(&self, pid: u32, target: String, first: &mut Option<Instant>) -> Killed {
        let result = if self.dry_run {
            Ok(())
        } else {
            let r = kill_pid(pid);
            first.get_or_insert_with(Instant::now);
            r
        };
        Killed {
            target,
            pid,
            result,
        }
    }
}

/// Reads a pid file: one decimal pid, surrounding whitespace ignored.
pub fn read_pid_file(path: &Path) -> Result<u32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read pid file {}: {e}", path.display()))?;
    let text = text.trim();
    match text.parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(format!(
            "pid file {} does not hold a process id",
            path.display()
        )),
    }
}

#[cfg(target_os = "linux")]
fn parent_pid() -> Option<u32> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(all(unix, not(target_os = "linux")))]
fn parent_pid() -> Option<u32> {
    // SAFETY: getppid has no preconditions and cannot fail.
    let ppid = unsafe { libc::getppid() };
    u32::try_from(ppid).ok()
}

#[cfg(windows)]
fn parent_pid() -> Option<u32> {
    None
}

/// One process's name and program, or `None` if it is gone (or a zombie awaiting its parent).
#[cfg(target_os = "linux")]
pub fn process_info(pid: u32) -> Option<ProcessInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 3 (after the parenthesised name) is the state; Z and X are dead already.
    let (head, tail) = stat.rsplit_once(')')?;
    if matches!(tail.split_whitespace().next(), Some("Z") | Some("X")) {
        return None;
    }
    let name = head.split_once('(')?.1.to_owned();
    let program = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|raw| {
            let argv0 = raw.split(|b| *b == 0).next()?;
            let argv0 = String::from_utf8_lossy(argv0);
            let base = base_name(&argv0);
            (!base.is_empty()).then(|| base.to_owned())
        });
    Some(ProcessInfo { pid, name, program })
}

#[cfg(target_os = "linux")]
pub fn list_processes() -> Vec<ProcessInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(process_info)
        .collect()
}

#[cfg(all(unix, not(target_os = "linux")))]
pub fn list_processes() -> Vec<ProcessInfo> {
    let Ok(out) = std::process::Command::new("ps")
        .args(["-axo", "pid=,comm="])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let (pid, comm) = line.split_once(char::is_whitespace)?;
            let comm = comm.trim();
            Some(ProcessInfo {
                pid: pid.parse().ok()?,
                name: base_name(comm).to_owned(),
                program: Some(base_name(comm).to_owned()),
            })
        })
        .collect()
}

#[cfg(all(unix, not(target_os = "linux")))]
pub fn process_info(pid: u32) -> Option<ProcessInfo> {
    list_processes().into_iter().find(|p| p.pid == pid)
}

#[cfg(windows)]
pub fn list_processes() -> Vec<ProcessInfo> {
    let Ok(out) = std::process::Command::new("tasklist")
        .args(["/FO", "CSV", "/NH"])
        .output()
    else {
        return Vec::new();
    };
    parse_tasklist(&String::from_utf8_lossy(&out.stdout))
}

/// The processes in `tasklist /FO CSV /NH` output: `"image","pid","session","#","memory"` per line.
/// Every field is quoted and the memory field holds commas of its own (`"123,456 K"`), so fields
/// are split on `","`. Built on every platform so that its tests run everywhere.
#[cfg_attr(not(windows), allow(dead_code))]
fn parse_tasklist(out: &str) -> Vec<ProcessInfo> {
    out.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split("\",\"");
            let name = fields.next()?.trim_start_matches('"').to_owned();
            let pid = fields.next()?.trim_matches('"').parse().ok()?;
            (!name.is_empty()).then(|| ProcessInfo {
                pid,
                program: Some(name.clone()),
                name,
            })
        })
        .collect()
}

#[cfg(windows)]
pub fn process_info(pid: u32) -> Option<ProcessInfo> {
    list_processes().into_iter().find(|p| p.pid == pid)
}

/// Kills `pid` at once (SIGKILL; `taskkill /F` on Windows).
#[cfg(unix)]
pub fn kill_pid(pid: u32) -> Result<(), String> {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return Err(format!("pid {pid} out of range"));
    };
    if raw <= 0 {
        return Err(format!("refusing to signal pid {pid}"));
    }
    // SAFETY: kill(2) with a positive pid signals exactly that process; no memory is involved.
    let rc = unsafe { libc::kill(raw, libc::SIGKILL) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

#[cfg(windows)]
pub fn kill_pid(pid: u32) -> Result<(), String> {
    let out = std::process::Command::new("taskkill")
        .args(["/F", "/PID", &pid.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, program: Option<&str>) -> ProcessInfo {
        ProcessInfo {
            pid: 1,
            name: name.into(),
            program: program.map(str::to_owned),
        }
    }

    #[test]
    fn names_match_case_insensitively_and_through_truncation() {
        assert!(matches(&p("javaw.exe", None), "javaw.exe"));
        assert!(matches(&p("JAVAW.EXE", None), "javaw.exe"));
        assert!(matches(
            &p("wine-preloader", Some("terminal64.exe")),
            "terminal64.exe"
        ));
        assert!(matches(
            &p("a-very-long-pro", None),
            "a-very-long-program.exe"
        ));
        assert!(!matches(&p("terminal64.exe", None), "terminal.exe"));
        assert!(!matches(&p("java", Some("java")), "javaw.exe"));
        assert_eq!(
            base_name(r"C:\Program Files\MT5\terminal64.exe"),
            "terminal64.exe"
        );
        assert_eq!(base_name("/usr/bin/java"), "java");
    }

    #[test]
    fn tasklist_output_is_read_with_commas_inside_fields() {
        let out = "\r\n\"System Idle Process\",\"0\",\"Services\",\"0\",\"8 K\"\r\n\
                   \"terminal64.exe\",\"4812\",\"Console\",\"1\",\"412,336 K\"\r\n\
                   \"javaw.exe\",\"77\",\"Console\",\"1\",\"1,204,112 K\"\r\n\
                   INFO: garbage line\r\n";
        let found = parse_tasklist(out);
        let pairs: Vec<(u32, &str)> = found.iter().map(|p| (p.pid, p.name.as_str())).collect();
        assert_eq!(
            pairs,
            [
                (0, "System Idle Process"),
                (4812, "terminal64.exe"),
                (77, "javaw.exe")
            ]
        );
        assert!(found.iter().any(|p| matches(p, "JAVAW.EXE")));
    }

    #[test]
    fn pid_files_must_hold_a_pid() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.pid");
        std::fs::write(&good, " 1234\n").unwrap();
        assert_eq!(read_pid_file(&good), Ok(1234));
        let bad = dir.path().join("bad.pid");
        std::fs::write(&bad, "abc").unwrap();
        assert!(read_pid_file(&bad).is_err());
        assert!(read_pid_file(&dir.path().join("missing")).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn never_kills_itself() {
        let me = process_info(std::process::id()).unwrap();
        let killer = Killer::new(vec![me.name.clone()], Vec::new(), false);
        assert!(killer
            .find()
            .iter()
            .all(|(pid, _)| *pid != std::process::id()));
    }
}
