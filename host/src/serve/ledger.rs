//! What the service's runs destroyed, run by run. The service splits a run into pieces
//! (a scheduled run into a shard per account, a message into its events, an event into
//! its accounts), each enforced on its own; `guardrails.max_destructive` is a limit per
//! run, so the destructive actions done by a run's pieces are recorded here and counted
//! before the next piece applies anything.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

/// One destructive action done for a run.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    run: String,
    action: String,
    at: Timestamp,
}

/// `destroyed.jsonl` in the service's state directory: a line per destructive action done.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    /// The ledger of the service whose state lives in `state_dir`.
    pub fn in_dir(state_dir: &Path) -> Ledger {
        Ledger { path: state_dir.join("destroyed.jsonl") }
    }

    /// The destructive actions recorded done for `run`, each counted once (a resumed
    /// piece records none twice, but a line may be written again after a crash).
    pub fn count(&self, run: &str) -> usize {
        let Ok(text) = std::fs::read_to_string(&self.path) else { return 0 };
        let lines = text.lines().filter(|l| l.contains(run)).filter_map(|l| serde_json::from_str::<Line>(l).ok());
        lines.filter(|l| l.run == run).map(|l| l.action).collect::<BTreeSet<_>>().len()
    }

    /// Records that `action` of `run` was done, in one appended write (whole, whatever
    /// other workers append at the same time).
    pub fn record(&self, run: &str, action: &str, at: Timestamp) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(&Line { run: run.into(), action: action.into(), at })?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        file.write_all(line.as_bytes())?;
        Ok(())
    }

    /// Drops the lines recorded more than `days` before `now` (no piece of so old a run
    /// can still come: SQS keeps a message 14 days at most).
    pub fn prune(&self, now: Timestamp, days: i64) -> anyhow::Result<()> {
        let Ok(text) = std::fs::read_to_string(&self.path) else { return Ok(()) };
        let oldest = now.plus_days(-days);
        let kept: String = text
            .lines()
            .filter(|l| serde_json::from_str::<Line>(l).is_ok_and(|line| line.at >= oldest))
            .map(|l| format!("{l}\n"))
            .collect();
        if kept.len() < text.len() {
            crate::files::write_atomically(&self.path, kept.as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_counts_each_action_once_and_old_lines_go() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::in_dir(dir.path());
        let (then, now) = (Timestamp(1_000_000), Timestamp(1_000_000 + 20 * 86_400));
        assert_eq!(ledger.count("message m"), 0, "no ledger yet");
        for (run, action, at) in [("message m", "a", then), ("message m", "b", now), ("message m", "a", now)] {
            ledger.record(run, action, at).unwrap();
        }
        ledger.record("message m2", "c", now).unwrap();
        assert_eq!((ledger.count("message m"), ledger.count("message m2"), ledger.count("message")), (2, 1, 0));
        ledger.prune(now, 14).unwrap();
        assert_eq!(ledger.count("message m"), 2, "b, and a again at `now`");
        ledger.prune(now.plus_days(15), 14).unwrap();
        assert_eq!(ledger.count("message m"), 0);
    }
}
