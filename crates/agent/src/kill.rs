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

/// The legacy agent's targets: the MT5 terminal (32 and 64 bit) and the Java copier.
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
    pub result: Result<(), KillError>,
}

/// Why a process was not killed. The tumbler fires once per position and reports each failure;
/// trying again is for the next firing (a process that was gone is no failure of the next one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KillError {
    #[error("cannot read pid file {path}: {reason}")]
    PidFileUnreadable { path: PathBuf, reason: String },
    #[error("pid file {0} does not hold a process id")]
    PidFileInvalid(PathBuf),
    /// The agent itself, its parent, pid 0 or a pid the system cannot signal.
    #[error("refusing to kill pid {pid}: {why}")]
    Refused { pid: u32, why: &'static str },
    /// The system refused (no such process, no permission), with its reason.
    #[error("cannot kill pid {pid}: {reason}")]
    System { pid: u32, reason: String },
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
    /// The parent's pid as found at start (see [`Killer::protected`]).
    parent: Option<u32>,
    cache: Mutex<Vec<(u32, String)>>,
}

impl Killer {
    pub fn new(names: Vec<String>, pid_files: Vec<PathBuf>, dry_run: bool) -> Self {
        Killer {
            names,
            pid_files,
            dry_run,
            parent: parent_pid(),
            cache: Mutex::new(Vec::new()),
        }
    }

    /// The pids never to kill: the agent's own and its parent's while that parent lives. Checked
    /// every time rather than settled at start: a parent that has exited leaves its pid free, and
    /// the process that gets it next may be one the tumbler must kill.
    fn protected(&self) -> HashSet<u32> {
        let mut protected = HashSet::from([std::process::id()]);
        protected.extend(live_parent(self.parent));
        protected
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
        self.find_except(&self.protected())
    }

    fn find_except(&self, protected: &HashSet<u32>) -> Vec<(u32, String)> {
        if self.names.is_empty() {
            return Vec::new();
        }
        list_processes()
            .into_iter()
            .filter(|p| !protected.contains(&p.pid))
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
        let protected = self.protected();
        let cached = self.cache.lock().clone();
        for (pid, name) in cached {
            // The pid may have been reused since the scan: only kill it if it still matches.
            let still =
                !protected.contains(&pid) && process_info(pid).is_some_and(|p| matches(&p, &name));
            if still && seen.insert(pid) {
                done.push(self.kill_one(pid, name, &mut first));
            }
        }
        for path in &self.pid_files {
            match read_pid_file(path) {
                Ok(pid) if protected.contains(&pid) => done.push(Killed {
                    target: path.display().to_string(),
                    pid,
                    result: Err(KillError::Refused {
                        pid,
                        why: "the agent itself or its parent",
                    }),
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
        for (pid, name) in self.find_except(&protected) {
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
pub fn read_pid_file(path: &Path) -> Result<u32, KillError> {
    let text = std::fs::read_to_string(path).map_err(|e| KillError::PidFileUnreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    match text.trim().parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(KillError::PidFileInvalid(path.to_owned())),
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

/// The parent now, given the one found at start. A Unix process is re-parented when its parent
/// exits, so asking again is exact and cheap.
#[cfg(unix)]
fn live_parent(_at_start: Option<u32>) -> Option<u32> {
    parent_pid()
}

/// The parent now, given the one found at start: Windows does not re-parent, so the pid found at
/// start is still the parent only if the process holding it now was created before this one (a
/// creation-time query, cheaper than another process snapshot on the way to a kill).
#[cfg(windows)]
fn live_parent(at_start: Option<u32>) -> Option<u32> {
    let parent = at_start?;
    (win::created(parent)? <= win::created(std::process::id())?).then_some(parent)
}

/// The parent's pid as the process list records it; [`live_parent`] says whether it still is.
#[cfg(windows)]
fn parent_pid() -> Option<u32> {
    let own = std::process::id();
    win::snapshot()
        .into_iter()
        .find(|(info, _)| info.pid == own)
        .map(|(_, parent)| parent)
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

/// Windows: the process list from a ToolHelp snapshot and the kill by `TerminateProcess`, both
/// in-process. Starting `tasklist` or `taskkill` instead costs a process creation each (tens of
/// milliseconds on Windows), which is longer than the whole reaction budget of the tumbler.
#[cfg(windows)]
mod win {
    use super::{KillError, ProcessInfo};
    use windows_sys::Win32::Foundation::{
        CloseHandle, GetLastError, FILETIME, INVALID_HANDLE_VALUE,
    };
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W,
        TH32CS_SNAPPROCESS,
    };
    use windows_sys::Win32::System::Threading::{
        GetProcessTimes, OpenProcess, TerminateProcess, PROCESS_QUERY_LIMITED_INFORMATION,
        PROCESS_TERMINATE,
    };

    /// When `pid` was created (100 ns units since 1601), or `None` if it cannot be read.
    pub fn created(pid: u32) -> Option<u64> {
        // SAFETY: OpenProcess only reads its arguments; a null handle is checked below.
        let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if handle.is_null() {
            return None;
        }
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
        // SAFETY: `handle` is open with query rights; the four out-pointers are valid FILETIMEs.
        let ok =
            unsafe { GetProcessTimes(handle, &mut created, &mut exited, &mut kernel, &mut user) }
                != 0;
        // SAFETY: `handle` is open and closed exactly once.
        unsafe { CloseHandle(handle) };
        ok.then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
    }

    /// Every process with its parent's pid; empty if the snapshot cannot be taken.
    pub fn snapshot() -> Vec<(ProcessInfo, u32)> {
        // SAFETY: a process snapshot has no preconditions; the handle is checked and closed below.
        let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
        if snap == INVALID_HANDLE_VALUE {
            return Vec::new();
        }
        let mut out = Vec::new();
        // SAFETY: PROCESSENTRY32W is plain data; all zeroes is a valid value, and dwSize is set
        // as the API requires before the first call.
        let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
        entry.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
        // SAFETY: `snap` is a live snapshot handle and `entry` a correctly sized, writable entry.
        let mut more = unsafe { Process32FirstW(snap, &mut entry) } != 0;
        while more {
            let len = entry
                .szExeFile
                .iter()
                .position(|c| *c == 0)
                .unwrap_or(entry.szExeFile.len());
            let name = String::from_utf16_lossy(&entry.szExeFile[..len]);
            if !name.is_empty() {
                out.push((
                    ProcessInfo {
                        pid: entry.th32ProcessID,
                        program: Some(name.clone()),
                        name,
                    },
                    entry.th32ParentProcessID,
                ));
            }
            // SAFETY: as for Process32FirstW.
            more = unsafe { Process32NextW(snap, &mut entry) } != 0;
        }
        // SAFETY: `snap` is a handle this function opened and has not closed.
        unsafe { CloseHandle(snap) };
        out
    }

    pub fn terminate(pid: u32) -> Result<(), KillError> {
        // SAFETY: OpenProcess only reads its arguments; a null handle is checked below.
        let handle = unsafe { OpenProcess(PROCESS_TERMINATE, 0, pid) };
        if handle.is_null() {
            // SAFETY: reads the calling thread's last error; no preconditions.
            let code = unsafe { GetLastError() };
            return Err(KillError::System {
                pid,
                reason: format!("cannot open the process (error {code})"),
            });
        }
        // SAFETY: `handle` was opened above with PROCESS_TERMINATE; exit code 1 marks a forced end.
        let ok = unsafe { TerminateProcess(handle, 1) } != 0;
        // SAFETY: as above, read before CloseHandle can change it.
        let code = unsafe { GetLastError() };
        // SAFETY: `handle` is open and closed exactly once.
        unsafe { CloseHandle(handle) };
        if ok {
            Ok(())
        } else {
            Err(KillError::System {
                pid,
                reason: format!("cannot terminate the process (error {code})"),
            })
        }
    }
}

#[cfg(windows)]
pub fn list_processes() -> Vec<ProcessInfo> {
    win::snapshot().into_iter().map(|(info, _)| info).collect()
}

#[cfg(windows)]
pub fn process_info(pid: u32) -> Option<ProcessInfo> {
    list_processes().into_iter().find(|p| p.pid == pid)
}

/// Kills `pid` at once (SIGKILL; `TerminateProcess` on Windows).
#[cfg(unix)]
pub fn kill_pid(pid: u32) -> Result<(), KillError> {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return Err(KillError::Refused {
            pid,
            why: "out of range",
        });
    };
    if raw <= 0 {
        return Err(KillError::Refused {
            pid,
            why: "not a single process",
        });
    }
    // SAFETY: kill(2) with a positive pid signals exactly that process; no memory is involved.
    let rc = unsafe { libc::kill(raw, libc::SIGKILL) };
    if rc == 0 {
        Ok(())
    } else {
        Err(KillError::System {
            pid,
            reason: std::io::Error::last_os_error().to_string(),
        })
    }
}

#[cfg(windows)]
pub fn kill_pid(pid: u32) -> Result<(), KillError> {
    if pid == 0 {
        return Err(KillError::Refused {
            pid,
            why: "not a single process",
        });
    }
    win::terminate(pid)
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

    #[test]
    fn never_kills_itself_or_its_parent() {
        let me = process_info(std::process::id()).unwrap();
        // A Unix process always has a live parent. A Windows process may have none: its parent
        // has exited, or, under Wine, the first process has pid 0 as its parent.
        let parent = live_parent(parent_pid());
        #[cfg(unix)]
        assert!(parent.is_some(), "the parent's pid is known");
        let killer = Killer::new(vec![me.name.clone()], Vec::new(), false);
        assert!(killer
            .find()
            .iter()
            .all(|(pid, _)| *pid != std::process::id() && Some(*pid) != parent));
    }

    /// A child that would live for half a minute, and the name the scan knows it by.
    fn long_lived_child() -> (std::process::Child, &'static str) {
        #[cfg(unix)]
        let (child, name) = (
            std::process::Command::new("sleep").arg("30").spawn(),
            "sleep",
        );
        #[cfg(windows)]
        let (child, name) = (
            std::process::Command::new("ping")
                .args(["-n", "30", "127.0.0.1"])
                .stdout(std::process::Stdio::null())
                .spawn(),
            "ping.exe",
        );
        (child.expect("start the child"), name)
    }

    #[test]
    fn a_running_child_is_listed_by_name_and_killed_at_once() {
        let (mut child, name) = long_lived_child();
        let pid = child.id();
        let seen = list_processes()
            .into_iter()
            .find(|p| p.pid == pid)
            .expect("the child is in the process list");
        assert!(matches(&seen, name), "{seen:?} should match {name}");
        let killer = Killer::new(vec![name.to_owned()], Vec::new(), false);
        assert!(killer.find().iter().any(|(p, _)| *p == pid));
        let started = Instant::now();
        kill_pid(pid).expect("kill the child");
        let status = child.wait().expect("reap the child");
        assert!(!status.success(), "a killed child does not exit cleanly");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the child ran on until it ended by itself"
        );
        assert!(process_info(pid).is_none(), "the reaped child is gone");
    }
}
