//! Run records (`--record DIR`): what a run planned and did, one directory per run, for
//! audits and dashboards, as Cloud Custodian keeps resources.json and metadata.json per
//! run. A run writes `DIR/STARTED-COMMAND-PLAN_ID/` with `plan.json` (the plan, as
//! `--out` writes it), `report.json` and `journal.jsonl` (apply: how each action ended,
//! and this run's journal lines) and `metadata.json` (command, version and git sha,
//! policy, backend, times, each stage's and each plugin's seconds, totals, actions by
//! operation and by account/region, outcome counts, API calls by operation, exit code).
//! Written whatever the exit, once a plan exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::apply::Report;
use crate::backend::Backend;
use crate::model::Timestamp;
use crate::plan::{Plan, Source, Totals};

/// A run record's `metadata.json`: written by `Recorder::write`, read by `amiwarden report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Metadata {
    /// `plan` or `apply`.
    pub command: String,
    pub version: String,
    pub git_sha: String,
    /// The policy file, as the command line named it.
    pub policy: String,
    pub policy_fingerprint: String,
    /// The backend's name (`sim STATE`, `aws`, …).
    pub backend: String,
    pub source: RecordedSource,
    pub evaluation_time: Timestamp,
    pub started: Timestamp,
    /// The start in milliseconds since the Unix epoch: orders the runs of one second
    /// (0 in a record written before it was added).
    #[serde(default)]
    pub started_millis: i64,
    pub ended: Timestamp,
    pub duration_seconds: f64,
    pub exit_code: i32,
    /// Why a guardrail stopped the plan (null when it did not).
    pub stopped: Option<String>,
    /// The plan's totals.
    pub totals: Totals,
    /// How the apply's actions ended (null for a plan).
    pub outcomes: Option<Outcomes>,
    /// API calls by operation.
    pub api_calls: BTreeMap<String, u64>,
    /// Each stage's wall seconds, in order (inventory, propose, merge, review, finish for
    /// a plan made by this run; apply for an apply).
    #[serde(default)]
    pub stages: Vec<crate::run::StageSeconds>,
    /// Each plugin's seconds proposing (summed over its batches) and reviewing.
    #[serde(default)]
    pub plugins: BTreeMap<String, crate::run::PluginSeconds>,
    /// The plan's actions by operation (`deregister`, `delete-snapshots`, …).
    #[serde(default)]
    pub actions_by_operation: BTreeMap<String, usize>,
    /// The plan's actions by `ACCOUNT/REGION`.
    #[serde(default)]
    pub actions_by_location: BTreeMap<String, usize>,
}

/// What a recorded run evaluated: the plan's `Source` without an event's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub(super) enum RecordedSource {
    Scheduled,
    Shard { account: String },
    Event { origin: String },
}

impl From<&Source> for RecordedSource {
    fn from(source: &Source) -> RecordedSource {
        match source {
            Source::Scheduled => RecordedSource::Scheduled,
            Source::Shard { account } => RecordedSource::Shard { account: account.clone() },
            Source::Event { origin, .. } => RecordedSource::Event { origin: origin.clone() },
        }
    }
}

/// How many of an apply's actions ended each way (`resumed`: ended by an earlier run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Outcomes {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
    pub resumed: usize,
}

/// A run being recorded.
pub(super) struct Recorder {
    dir: PathBuf,
    command: &'static str,
    started: Timestamp,
    started_millis: i64,
    clock: Instant,
    /// Where the run's time went, as the run reports it.
    timings: std::cell::RefCell<crate::run::Timings>,
    /// An apply's journal and the key of its lines, copied into the record.
    journal: std::cell::RefCell<Option<(PathBuf, String)>>,
}

impl Recorder {
    /// Starts recording a run of `command` under `dir`, if one was asked for.
    pub fn start(dir: Option<&Path>, command: &'static str) -> Option<Recorder> {
        let dir = dir?.to_path_buf();
        let now = time::OffsetDateTime::now_utc();
        let started_millis = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        Some(Recorder {
            dir,
            command,
            started: Timestamp(now.unix_timestamp()),
            started_millis,
            clock: Instant::now(),
            timings: Default::default(),
            journal: Default::default(),
        })
    }

    /// Adds what planning measured (stages, plugins) to the record.
    pub fn timings(&self, timings: &crate::run::Timings) {
        let mut mine = self.timings.borrow_mut();
        mine.stages.extend(timings.stages.iter().cloned());
        mine.plugins.extend(timings.plugins.iter().map(|(k, v)| (k.clone(), *v)));
    }

    /// Adds one stage's wall seconds to the record.
    pub fn stage(&self, stage: &str, seconds: f64) {
        let seconds = crate::run::millis(seconds);
        self.timings.borrow_mut().stages.push(crate::run::StageSeconds { stage: stage.to_string(), seconds });
    }

    /// Copies the lines of run `key` of the journal at `path` into the record.
    pub fn journal(&self, path: &Path, key: &str) {
        *self.journal.borrow_mut() = Some((path.to_path_buf(), key.to_string()));
    }

    /// Writes the record of a run that planned `plan` (its id `plan_id`; and, for apply,
    /// ended as `report`) and exits with `exit`; returns its directory.
    pub fn write(
        &self,
        policy: &Path,
        plan: &Plan,
        plan_id: &str,
        report: Option<&Report>,
        backend: &dyn Backend,
        exit: i32,
    ) -> anyhow::Result<PathBuf> {
        let name = format!("{}-{}-{plan_id}", stamp(self.started), self.command);
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| anyhow::anyhow!("cannot create the run record directory {}: {e}", self.dir.display()))?;
        // The same plan run twice in one second gets a second directory, not the first's.
        let mut dir = self.dir.join(&name);
        let mut n = 1;
        loop {
            match std::fs::create_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => {
                    n += 1;
                    dir = self.dir.join(format!("{name}-{n}"));
                }
                Err(e) => anyhow::bail!("cannot create the run record {}: {e}", dir.display()),
            }
        }
        let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).map(|t| t + "\n");
        // Streamed, as `--out` writes it: a 184,000-action plan's text and its JSON value
        // held whole took the run's peak memory from ~0.4 to ~0.9 GiB.
        crate::files::write_atomically_with(&dir.join("plan.json"), |file| {
            serde_json::to_writer_pretty(&mut *file, plan)?;
            file.write_all(b"\n")
        })?;
        if let Some(report) = report {
            crate::files::write_atomically(
                &dir.join("report.json"),
                pretty(&serde_json::to_value(report)?)?.as_bytes(),
            )?;
        }
        if let Some((journal, key)) = self.journal.borrow().as_ref() {
            // This run's lines only (a journal keeps every run of its backend).
            let text = std::fs::read_to_string(journal).unwrap_or_default();
            let mine: String = text
                .lines()
                // Only lines naming the key are parsed: other runs' plan lines hold whole
                // plans (~150 MB at 184,000 actions).
                .filter(|l| l.contains(key.as_str()))
                .filter(|l| serde_json::from_str::<crate::apply::JournalEntry>(l).is_ok_and(|e| e.plan_id == *key))
                .map(|l| format!("{l}\n"))
                .collect();
            crate::files::write_atomically(&dir.join("journal.jsonl"), mine.as_bytes())?;
        }
        let mut by_operation: BTreeMap<String, usize> = BTreeMap::new();
        let mut by_location: BTreeMap<String, usize> = BTreeMap::new();
        for a in &plan.actions {
            *by_operation.entry(a.op.kind().to_string()).or_default() += 1;
            *by_location.entry(a.location.to_string()).or_default() += 1;
        }
        let timings = self.timings.borrow().clone();
        let metadata = Metadata {
            command: self.command.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_sha: env!("AMIWARDEN_GIT_SHA").to_string(),
            policy: policy.display().to_string(),
            policy_fingerprint: plan.policy_fingerprint.clone(),
            backend: backend.name(),
            source: RecordedSource::from(&plan.source),
            evaluation_time: plan.evaluation_time,
            started: self.started,
            started_millis: self.started_millis,
            ended: Timestamp::now(),
            duration_seconds: crate::run::millis(self.clock.elapsed().as_secs_f64()),
            exit_code: exit,
            stopped: plan.stopped.clone(),
            totals: plan.totals.clone(),
            outcomes: report.map(|r| Outcomes {
                done: r.done.len(),
                skipped: r.skipped.len(),
                failed: r.failed.len(),
                resumed: r.resumed,
            }),
            api_calls: backend.call_counts().into_iter().collect(),
            stages: timings.stages,
            plugins: timings.plugins,
            actions_by_operation: by_operation,
            actions_by_location: by_location,
        };
        let metadata = serde_json::to_value(&metadata)?;
        crate::files::write_atomically(&dir.join("metadata.json"), pretty(&metadata)?.as_bytes())?;
        Ok(dir)
    }
}

/// How a run directory's name begins: its start time, RFC 3339 without `-` and `:`
/// (`20261124T093000Z`), so that names sort oldest first.
fn stamp(started: Timestamp) -> String {
    started.to_string().chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// The start time a run directory's name begins with (`stamp`), if it does.
pub(super) fn started_from_name(name: &str) -> Option<Timestamp> {
    let s = name.get(..16)?;
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        s.get(..4)?,
        s.get(4..6)?,
        s.get(6..8)?,
        s.get(9..11)?,
        s.get(11..13)?,
        s.get(13..15)?
    );
    (s.as_bytes()[8] == b'T' && s.ends_with('Z')).then(|| rfc3339.parse().ok()).flatten()
}

/// The metadata of the run recorded in `dir`.
pub(super) fn read_metadata(dir: &Path) -> anyhow::Result<Metadata> {
    let path = dir.join("metadata.json");
    let bytes = crate::files::read_input(&path, crate::files::Input::RunRecord)?;
    serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_directorys_name_gives_back_its_start_time() {
        let started: Timestamp = "2026-11-24T09:30:05Z".parse().unwrap();
        assert_eq!(stamp(started), "20261124T093005Z");
        for (name, expected) in [
            ("20261124T093005Z-apply-plan-0123abcd", Some(started)),
            ("20261124T093005Z-plan-plan-0123abcd-2", Some(started)),
            ("20261124T093005Z", Some(started)),
            ("20261124X093005Z-plan", None),
            ("20261324T093005Z-plan", None),
            ("notes", None),
            ("", None),
        ] {
            assert_eq!(started_from_name(name), expected, "{name}");
        }
    }
}
