//! Command lines for the terminal and MetaEditor, as MT5 documents them, with the `wine` prefix when
//! the Windows executables run on Linux. Pure: nothing here starts a process.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Whether to run the terminal through Wine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WineMode {
    /// Through Wine when not on Windows and the executable's name ends in `.exe`.
    #[default]
    Auto,
    Always,
    Never,
}

impl WineMode {
    /// Whether a given executable runs through Wine on this kind of host.
    pub fn applies(self, executable: &Path, host_is_windows: bool) -> bool {
        match self {
            WineMode::Always => true,
            WineMode::Never => false,
            WineMode::Auto => {
                !host_is_windows
                    && executable
                        .extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("exe"))
            }
        }
    }
}

/// A program and its arguments, ready to spawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The directory to start in: the terminal's own folder, as a portable installation expects.
    pub cwd: PathBuf,
}

impl CommandLine {
    /// The command as one line for logs (it never holds a password: that is in the config file).
    pub fn display(&self) -> String {
        let mut out = self.program.to_string_lossy().into_owned();
        for a in &self.args {
            out.push(' ');
            out.push_str(&a.to_string_lossy());
        }
        out
    }
}

/// How a path is written for the program that reads it: unchanged for a native program, and as the
/// `Z:` drive Wine maps to `/` for a Windows program under Wine.
pub fn program_path(path: &Path, wine: bool) -> String {
    let text = path.to_string_lossy();
    if wine && text.starts_with('/') {
        format!("Z:{}", text.replace('/', "\\"))
    } else {
        text.into_owned()
    }
}

/// Reverses [`program_path`] for a path a Windows program under Wine was given.
pub fn host_path_from_wine(text: &str) -> PathBuf {
    match text.strip_prefix("Z:").or_else(|| text.strip_prefix("z:")) {
        Some(rest) => PathBuf::from(rest.replace('\\', "/")),
        None => PathBuf::from(text),
    }
}

fn with_wine(
    wine: Option<&Path>,
    executable: &Path,
    args: Vec<OsString>,
    cwd: &Path,
) -> CommandLine {
    match wine {
        Some(wine) => {
            let mut all = Vec::with_capacity(args.len() + 1);
            all.push(executable.as_os_str().to_owned());
            all.extend(args);
            CommandLine {
                program: wine.as_os_str().to_owned(),
                args: all,
                cwd: cwd.to_owned(),
            }
        }
        None => CommandLine {
            program: executable.as_os_str().to_owned(),
            args,
            cwd: cwd.to_owned(),
        },
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `terminal64.exe /portable /config:<ini>`, optionally through `wine`.
pub fn terminal_command(terminal: &Path, config: &Path, wine: Option<&Path>) -> CommandLine {
    let args = vec![
        OsString::from("/portable"),
        OsString::from(format!("/config:{}", program_path(config, wine.is_some()))),
    ];
    with_wine(wine, terminal, args, &parent_dir(terminal))
}

/// `metaeditor64.exe /portable /compile:<mq5> /log:<file>`, optionally through `wine`.
pub fn metaeditor_command(
    metaeditor: &Path,
    source: &Path,
    log: &Path,
    wine: Option<&Path>,
) -> CommandLine {
    let w = wine.is_some();
    let args = vec![
        OsString::from("/portable"),
        OsString::from(format!("/compile:{}", program_path(source, w))),
        OsString::from(format!("/log:{}", program_path(log, w))),
    ];
    with_wine(wine, metaeditor, args, &parent_dir(metaeditor))
}

/// MetaEditor lives next to the terminal: `metaeditor64.exe` beside `terminal64.exe`,
/// `metaeditor.exe` beside a 32-bit `terminal.exe`.
pub fn metaeditor_beside(terminal: &Path) -> PathBuf {
    let name = terminal
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let editor = if name.starts_with("terminal64") || !name.starts_with("terminal") {
        "metaeditor64.exe"
    } else {
        "metaeditor.exe"
    };
    parent_dir(terminal).join(editor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wine_is_automatic_for_exe_off_windows() {
        let exe = Path::new("/opt/mt5/terminal64.exe");
        assert!(WineMode::Auto.applies(exe, false));
        assert!(!WineMode::Auto.applies(exe, true));
        assert!(!WineMode::Auto.applies(Path::new("/opt/mt5/terminal"), false));
        assert!(WineMode::Always.applies(Path::new("/opt/mt5/terminal"), false));
        assert!(!WineMode::Never.applies(exe, false));
    }

    #[test]
    fn terminal_command_is_portable_with_config() {
        let cmd = terminal_command(
            Path::new("/opt/mt5/terminal64.exe"),
            Path::new("/opt/mt5/Config/hedge-7001.ini"),
            Some(Path::new("wine")),
        );
        assert_eq!(cmd.program, "wine");
        assert_eq!(
            cmd.args,
            vec![
                OsString::from("/opt/mt5/terminal64.exe"),
                OsString::from("/portable"),
                OsString::from("/config:Z:\\opt\\mt5\\Config\\hedge-7001.ini"),
            ]
        );
        assert_eq!(cmd.cwd, PathBuf::from("/opt/mt5"));
        let native = terminal_command(
            Path::new("/opt/mt5/terminal64.exe"),
            Path::new("/opt/mt5/Config/hedge-7001.ini"),
            None,
        );
        assert_eq!(native.program, "/opt/mt5/terminal64.exe");
        assert_eq!(native.args[1], "/config:/opt/mt5/Config/hedge-7001.ini");
    }

    #[test]
    fn metaeditor_command_compiles_with_a_log() {
        let cmd = metaeditor_command(
            Path::new("/opt/mt5/metaeditor64.exe"),
            Path::new("/opt/mt5/MQL5/Experts/HedgeBridge.mq5"),
            Path::new("/opt/mt5/MQL5/Experts/HedgeBridge.compile.log"),
            None,
        );
        assert_eq!(cmd.args[0], "/portable");
        assert_eq!(
            cmd.args[1],
            "/compile:/opt/mt5/MQL5/Experts/HedgeBridge.mq5"
        );
        assert_eq!(
            cmd.args[2],
            "/log:/opt/mt5/MQL5/Experts/HedgeBridge.compile.log"
        );
    }

    #[test]
    fn wine_paths_round_trip() {
        let p = Path::new("/tmp/a b/c.ini");
        assert_eq!(host_path_from_wine(&program_path(p, true)), p);
        assert_eq!(program_path(p, false), "/tmp/a b/c.ini");
    }

    #[test]
    fn metaeditor_matches_the_terminal_bitness() {
        assert_eq!(
            metaeditor_beside(Path::new("/m/terminal64.exe")),
            PathBuf::from("/m/metaeditor64.exe")
        );
        assert_eq!(
            metaeditor_beside(Path::new("/m/terminal.exe")),
            PathBuf::from("/m/metaeditor.exe")
        );
    }
}
