//! Exclusive advisory locks (the OS's `flock`, through `std::fs::File::try_lock`) held
//! for a whole apply: one on the journal, one on the backend's state. A second apply is
//! refused at once, naming the holder. The OS drops a lock when its process dies, so a
//! crashed apply never leaves a stale lock behind; the lock file itself stays.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::error::Busy;

/// A held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct Lock {
    file: std::fs::File,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock at `path` (created if missing) for `what`, or fails at once with
    /// `Busy` naming the process that holds it.
    pub fn acquire(path: &Path, what: &str) -> anyhow::Result<Lock> {
        Lock::acquire_within(path, what, std::time::Duration::ZERO)
    }

    /// `acquire`, waiting up to `wait` for another holder to let go (a service worker
    /// queues behind another rather than bouncing its message).
    pub fn acquire_within(path: &Path, what: &str, wait: std::time::Duration) -> anyhow::Result<Lock> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match Lock::try_once(path, what) {
                Err(e) if e.downcast_ref::<Busy>().is_some() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn try_once(path: &Path, what: &str) -> anyhow::Result<Lock> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() { "another process" } else { holder };
                return Err(Busy(format!(
                    "{what} is locked by {holder} (lock file {}): another apply is running on it; \
                     wait for it to finish (a lock of a process that died is released by the system)",
                    path.display()
                ))
                .into());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        let holder = format!("amiwarden pid {} since {}", std::process::id(), crate::model::Timestamp::now());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()))
            .with_context(|| format!("cannot write lock file {}", path.display()))?;
        Ok(Lock { file, path: path.to_path_buf() })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_at_once_naming_the_first_and_may_take_it_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.lock");
        let first = Lock::acquire(&path, "sim state").unwrap();
        let err = Lock::acquire(&path, "sim state").unwrap_err();
        let busy = err.downcast_ref::<Busy>().expect("a Busy error");
        assert!(busy.0.contains(&format!("pid {}", std::process::id())), "{busy}");
        assert!(busy.0.contains("state.lock"), "{busy}");
        drop(first);
        Lock::acquire(&path, "sim state").unwrap();
    }
}
