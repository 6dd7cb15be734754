//! The service's upkeep: waiting after failures, and removing what it no longer needs.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Service;

/// How many days an event's journal and plan, and the ledger's lines, are kept: SQS keeps
/// a message 14 days at most, so no piece of an older run can still come.
const KEPT_DAYS: u16 = 14;
/// `KEPT_DAYS` as a duration.
const EVENT_KEPT: Duration = Duration::from_secs(KEPT_DAYS as u64 * 86_400);
/// How often old event files are looked for.
pub(super) const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The pause after the `failures`-th failure in a row of the loop: 1, 2, 4, ... up to 60 s.
pub(super) fn retry_pause(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

impl Service<'_> {
    /// Sleeps `pause`, waking early when `stop` is set.
    pub(super) fn sleep_unless_stopped(&self, pause: Duration) {
        let until = Instant::now() + pause;
        while !self.stop.load(Ordering::Relaxed) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
        }
    }

    /// Removes event journals and plans older than SQS's longest retention (`KEPT_DAYS`): no
    /// message can be delivered again after that, so nothing would resume from them, and
    /// a busy queue would otherwise fill the disk with them.
    pub(super) fn prune_events(&self) {
        let dir = self.settings.state_dir.join("events");
        let removed = remove_files_older_than(&dir, EVENT_KEPT);
        if let Err(e) =
            super::ledger::Ledger::in_dir(&self.settings.state_dir).prune((self.clock)(), i64::from(KEPT_DAYS))
        {
            tracing::warn!("pruning the ledger of destructive actions: {e:#}");
        }
        if removed > 0 {
            tracing::info!(
                "removed {removed} event journal and plan file(s) older than {KEPT_DAYS} days from {}",
                dir.display()
            );
        }
    }

    /// Keeps the newest `keep_runs` run directories.
    pub(super) fn prune_runs(&self) {
        let runs = self.settings.state_dir.join("runs");
        let Ok(entries) = std::fs::read_dir(&runs) else { return };
        let mut dirs: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        let excess = dirs.len().saturating_sub(self.settings.keep_runs.max(1));
        for dir in &dirs[..excess] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Removes the files of `dir` last modified more than `age` ago; returns how many.
fn remove_files_older_than(dir: &Path, age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a > age));
        if old && entry.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_wait_longer_each_time_up_to_a_minute() {
        let pauses: Vec<u64> = (1..=9).map(|n| retry_pause(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_pause(u32::MAX).as_secs(), 60);
    }

    #[test]
    fn only_files_older_than_the_age_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(15 * 86_400);
        for (name, modified) in [("old.jsonl", Some(old)), ("old.plan.json", Some(old)), ("new.jsonl", None)] {
            let file = std::fs::File::create(dir.path().join(name)).unwrap();
            if let Some(t) = modified {
                file.set_modified(t).unwrap();
            }
        }
        std::fs::create_dir(dir.path().join("a-directory")).unwrap();
        assert_eq!(remove_files_older_than(dir.path(), EVENT_KEPT), 2);
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        left.sort();
        assert_eq!(left, ["a-directory", "new.jsonl"]);
        assert_eq!(remove_files_older_than(&dir.path().join("absent"), EVENT_KEPT), 0);
    }
}
