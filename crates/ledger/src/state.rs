//! The local state store: the few facts that live on this machine only (virtual take-profit levels,
//! exit comments of positions without a stop order, trailing distances, freezes), shared by every
//! instance running here.
//!
//! The state is one JSON file, replaced atomically (write to a temporary file, then rename). Every
//! read-modify-write happens under an OS lock on `state.lock` (`flock` on Unix, `LockFileEx` on
//! Windows): taking it is atomic, and the kernel drops it when its holder exits or crashes, so a
//! dead instance never blocks the others. Losing the file loses only take-profit levels and freezes: positions are
//! always rebuilt from the account history.

use crate::actions::TrailingStop;
use hedge_domain::{PositionId, Price};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a position stays frozen after a task starts, unless released earlier.
pub const FREEZE_TTL_MS: i64 = 180_000;

/// Local facts about one position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub take_profit: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trailing: Option<TrailingStop>,
    /// Frozen until this time (ms since the epoch), by `frozen_by`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_until_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_by: Option<String>,
}

/// Everything in the store, keyed by account login and position id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    #[serde(default)]
    pub accounts: BTreeMap<u64, BTreeMap<u64, PositionState>>,
}

impl LocalState {
    pub fn position(&self, login: u64, id: PositionId) -> Option<&PositionState> {
        self.accounts.get(&login)?.get(&id.get())
    }

    pub fn position_mut(&mut self, login: u64, id: PositionId) -> &mut PositionState {
        self.accounts
            .entry(login)
            .or_default()
            .entry(id.get())
            .or_default()
    }

    /// Whether the position is frozen at `now_ms` by someone other than `me`.
    pub fn is_frozen(&self, login: u64, id: PositionId, now_ms: i64, me: &str) -> bool {
        self.position(login, id).is_some_and(|p| {
            p.frozen_until_ms.is_some_and(|t| now_ms < t) && p.frozen_by.as_deref() != Some(me)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("the state store is locked by another instance (waited {0:?})")]
    Busy(Duration),
    #[error("position {0} is frozen by another task")]
    Frozen(PositionId),
}

/// The store in a directory: `state.json` and `state.lock`.
#[derive(Clone, Debug)]
pub struct LocalStore {
    dir: PathBuf,
    owner: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl LocalStore {
    /// A store in `dir` (created if missing); `owner` names this instance in locks and freezes.
    pub fn open(dir: impl Into<PathBuf>, owner: impl Into<String>) -> Result<Self, StoreError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(LocalStore {
            dir,
            owner: owner.into(),
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("state.lock")
    }

    /// Takes the store's lock if no other holder has it: an OS file lock on `state.lock`, so the
    /// kernel releases it when its holder dies and no stale lock can outlive a crash. `None` when
    /// someone else holds it.
    fn try_lock(&self) -> Result<Option<File>, StoreError> {
        let path = self.lock_path();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(io(&path)(e)),
        }
    }

    /// Reads the state without locking (a consistent snapshot thanks to the atomic rename).
    pub fn load(&self) -> Result<LocalState, StoreError> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LocalState::default()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn save(&self, state: &LocalState) -> Result<(), StoreError> {
        let path = self.state_path();
        let tmp = self.dir.join(format!(
            "state.json.tmp.{}.{}",
            std::process::id(),
            self.owner
        ));
        let body = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        {
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&body).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Runs `f` on the state under the lock, waiting up to `wait` for it, and saves the result. If `f`
    /// fails nothing is written.
    pub fn update<R, E>(
        &self,
        wait: Duration,
        f: impl FnOnce(&mut LocalState) -> Result<R, E>,
    ) -> Result<Result<R, E>, StoreError> {
        let start = std::time::Instant::now();
        let lock = loop {
            if let Some(lock) = self.try_lock()? {
                break lock;
            }
            if start.elapsed() >= wait {
                return Err(StoreError::Busy(wait));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let result = (|| {
            let mut state = self.load()?;
            let r = f(&mut state);
            if r.is_ok() {
                self.save(&state)?;
            }
            Ok(r)
        })();
        // Closing the file would release it too; unlocking first says so explicitly.
        let _ = lock.unlock();
        result
    }

    /// Freezes a position for a task: fails if another instance froze it and the freeze has not
    /// expired. The freeze lapses by itself after [`FREEZE_TTL_MS`].
    pub fn freeze(&self, login: u64, id: PositionId, now_ms: i64) -> Result<(), StoreError> {
        let owner = self.owner.clone();
        self.update(Duration::from_secs(2), |s| {
            if s.is_frozen(login, id, now_ms, &owner) {
                return Err(StoreError::Frozen(id));
            }
            let p = s.position_mut(login, id);
            p.frozen_until_ms = Some(now_ms + FREEZE_TTL_MS);
            p.frozen_by = Some(owner.clone());
            Ok(())
        })?
    }

    /// Releases this instance's freeze of a position.
    pub fn release(&self, login: u64, id: PositionId) -> Result<(), StoreError> {
        let owner = self.owner.clone();
        self.update(Duration::from_secs(2), |s| {
            let p = s.position_mut(login, id);
            if p.frozen_by.as_deref() == Some(owner.as_str()) {
                p.frozen_until_ms = None;
                p.frozen_by = None;
            }
            Ok::<(), StoreError>(())
        })?
    }

    /// Sets (or with `None` removes) a position's virtual take-profit.
    pub fn set_take_profit(
        &self,
        login: u64,
        id: PositionId,
        tp: Option<Price>,
    ) -> Result<(), StoreError> {
        self.update(Duration::from_secs(2), |s| {
            s.position_mut(login, id).take_profit = tp.filter(|p| !p.is_zero());
            Ok::<(), StoreError>(())
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn freeze_is_exclusive_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalStore::open(dir.path(), "a").unwrap();
        let b = LocalStore::open(dir.path(), "b").unwrap();
        let id = PositionId(7);
        a.freeze(1, id, 1_000).unwrap();
        assert!(matches!(b.freeze(1, id, 2_000), Err(StoreError::Frozen(_))));
        // Re-freezing by the owner is fine; after the TTL anyone may.
        a.freeze(1, id, 2_000).unwrap();
        b.freeze(1, id, 2_000 + FREEZE_TTL_MS).unwrap();
        b.release(1, id).unwrap();
        a.freeze(1, id, 2_001 + FREEZE_TTL_MS).unwrap();
    }

    #[test]
    fn take_profit_persists_and_a_dead_holders_lock_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalStore::open(dir.path(), "a").unwrap();
        a.set_take_profit(1, PositionId(3), Some(Price(Decimal::new(11, 1))))
            .unwrap();
        // A crashed holder leaves its lock file behind, but the kernel released its lock.
        std::fs::write(dir.path().join("state.lock"), b"left by a dead instance").unwrap();
        let b = LocalStore::open(dir.path(), "b").unwrap();
        let s = b.load().unwrap();
        assert_eq!(
            s.position(1, PositionId(3)).unwrap().take_profit,
            Some(Price(Decimal::new(11, 1)))
        );
        b.set_take_profit(1, PositionId(3), None).unwrap();
        assert_eq!(
            b.load()
                .unwrap()
                .position(1, PositionId(3))
                .unwrap()
                .take_profit,
            None
        );
        // A live holder makes others wait and give up, and changes nothing.
        let held = File::open(dir.path().join("state.lock")).unwrap();
        held.lock().unwrap();
        let r = b.update(Duration::from_millis(30), |s| {
            s.position_mut(1, PositionId(4)).exit_comment = Some("x".into());
            Ok::<(), StoreError>(())
        });
        assert!(matches!(r, Err(StoreError::Busy(_))));
        assert!(b.load().unwrap().position(1, PositionId(4)).is_none());
        held.unlock().unwrap();
        b.update(Duration::from_millis(30), |_| Ok::<(), StoreError>(()))
            .unwrap()
            .unwrap();
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let path = dir.path().to_owned();
                std::thread::spawn(move || {
                    let s = LocalStore::open(path, format!("w{t}")).unwrap();
                    for i in 0..20u64 {
                        s.update(Duration::from_secs(10), |st| {
                            st.position_mut(1, PositionId(t * 100 + i)).exit_comment =
                                Some("x".into());
                            Ok::<(), StoreError>(())
                        })
                        .unwrap()
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = LocalStore::open(dir.path(), "r").unwrap().load().unwrap();
        assert_eq!(s.accounts[&1].len(), 80);
    }
}
