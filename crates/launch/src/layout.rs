//! Where things are in a portable terminal's data folder. With `/portable` the data folder is the
//! terminal's own folder, so every path here is relative to the directory holding `terminal64.exe`.

use crate::startup::EXPERT_NAME;
use std::path::{Path, PathBuf};

/// A portable terminal's data folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFolder {
    root: PathBuf,
}

impl DataFolder {
    /// The data folder of the terminal at `terminal` started with `/portable`.
    pub fn portable(terminal: &Path) -> Self {
        let root = terminal
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        DataFolder { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `MQL5/Experts`, where `[StartUp] Expert=` names are looked up.
    pub fn experts_dir(&self) -> PathBuf {
        self.root.join("MQL5").join("Experts")
    }

    /// `MQL5/Presets`, where `[StartUp] ExpertParameters=` files are looked up.
    pub fn presets_dir(&self) -> PathBuf {
        self.root.join("MQL5").join("Presets")
    }

    /// `logs`: the terminal's journal, one UTF-16LE file per day.
    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// `MQL5/Logs`: what Expert Advisors print, one file per day.
    pub fn experts_log_dir(&self) -> PathBuf {
        self.root.join("MQL5").join("Logs")
    }

    /// `Config`, where the generated start-up file is written.
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("Config")
    }

    pub fn ea_source(&self) -> PathBuf {
        self.experts_dir().join(format!("{EXPERT_NAME}.mq5"))
    }

    pub fn ea_binary(&self) -> PathBuf {
        self.experts_dir().join(format!("{EXPERT_NAME}.ex5"))
    }

    pub fn compile_log(&self) -> PathBuf {
        self.experts_dir()
            .join(format!("{EXPERT_NAME}.compile.log"))
    }

    /// The start-up file for the agent on `port`. It holds the password, so it exists only while
    /// the terminal starts.
    pub fn startup_ini(&self, port: u16) -> PathBuf {
        self.config_dir().join(format!("hedge-start-{port}.ini"))
    }

    pub fn preset(&self, set_file_name: &str) -> PathBuf {
        self.presets_dir().join(set_file_name)
    }

    /// `MQL5/Files/HedgeBridge-<login>.symbol`: the first Market Watch symbol, written by the bridge
    /// on every connection, so the next start opens its chart on a symbol this broker has.
    pub fn remembered_symbol(&self, login: u64) -> PathBuf {
        self.root
            .join("MQL5")
            .join("Files")
            .join(format!("{EXPERT_NAME}-{login}.symbol"))
    }

    /// `MQL5/Profiles/Charts`: the terminal's saved chart profiles (`<profile>/chartNN.chr`).
    pub fn chart_profiles_dir(&self) -> PathBuf {
        self.root.join("MQL5").join("Profiles").join("Charts")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_layout_is_under_the_terminal_folder() {
        let d = DataFolder::portable(Path::new("/opt/mt5/terminal64.exe"));
        assert_eq!(d.root(), Path::new("/opt/mt5"));
        assert_eq!(
            d.ea_source(),
            PathBuf::from("/opt/mt5/MQL5/Experts/HedgeBridge.mq5")
        );
        assert_eq!(
            d.ea_binary(),
            PathBuf::from("/opt/mt5/MQL5/Experts/HedgeBridge.ex5")
        );
        assert_eq!(
            d.preset("HedgeBridge-7001.set"),
            PathBuf::from("/opt/mt5/MQL5/Presets/HedgeBridge-7001.set")
        );
        assert_eq!(
            d.startup_ini(7001),
            PathBuf::from("/opt/mt5/Config/hedge-start-7001.ini")
        );
        assert_eq!(d.journal_dir(), PathBuf::from("/opt/mt5/logs"));
        assert_eq!(d.experts_log_dir(), PathBuf::from("/opt/mt5/MQL5/Logs"));
        assert_eq!(
            DataFolder::portable(Path::new("terminal64.exe")).root(),
            Path::new(".")
        );
    }
}
