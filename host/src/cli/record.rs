//! Run records (`--record DIR`): what a run planned and did, one directory per run, for
//! audits and dashboards, as Cloud Custodian keeps resources.json and metadata.json per
//! run. A run writes `DIR/STARTED-COMMAND-PLAN_ID/` with `plan.json` (the plan, as
//! `--out` writes it), `report.json` (apply: how each action ended) and `metadata.json`
//! (command, version and git sha, policy, backend, times, totals, outcome counts, API calls by
//! operation, exit code). Written whatever the exit, once a plan exists.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::apply::Report;
use crate::backend::Backend;
use crate::model::Timestamp;
use crate::plan::{Plan, Source};

/// A run being recorded.
pub(super) struct Recorder {
    dir: PathBuf,
    command: &'static str,
    started: Timestamp,
    clock: Instant,
}

impl Recorder {
    /// Starts recording a run of `command` under `dir`, if one was asked for.
    pub fn start(dir: Option<&Path>, command: &'static str) -> Option<Recorder> {
        Some(Recorder { dir: dir?.to_path_buf(), command, started: Timestamp::now(), clock: Instant::now() })
    }

    /// Writes the record of a run that planned `plan` (and, for apply, ended as `report`)
    /// and exits with `exit`; returns its directory.
    pub fn write(
        &self,
        policy: &Path,
        plan: &Plan,
        report: Option<&Report>,
        backend: &dyn Backend,
        exit: i32,
    ) -> anyhow::Result<PathBuf> {
        let stamp: String = self.started.to_string().chars().filter(|c| *c != '-' && *c != ':').collect();
        let name = format!("{stamp}-{}-{}", self.command, crate::apply::plan_id(plan));
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
        crate::files::write_atomically(&dir.join("plan.json"), pretty(&serde_json::to_value(plan)?)?.as_bytes())?;
        if let Some(report) = report {
            crate::files::write_atomically(
                &dir.join("report.json"),
                pretty(&serde_json::to_value(report)?)?.as_bytes(),
            )?;
        }
        let source = match &plan.source {
            Source::Scheduled => json!({ "kind": "scheduled" }),
            Source::Shard { account } => json!({ "kind": "shard", "account": account }),
            Source::Event { origin, .. } => json!({ "kind": "event", "origin": origin }),
        };
        let calls: serde_json::Map<String, serde_json::Value> =
            backend.call_counts().into_iter().map(|(op, n)| (op, json!(n))).collect();
        let metadata = json!({
            "command": self.command,
            "version": env!("CARGO_PKG_VERSION"),
            "git_sha": env!("AMIWARDEN_GIT_SHA"),
            "policy": policy.display().to_string(),
            "policy_fingerprint": plan.policy_fingerprint,
            "backend": backend.name(),
            "source": source,
            "evaluation_time": plan.evaluation_time,
            "started": self.started,
            "ended": Timestamp::now(),
            "duration_seconds": (self.clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            "exit_code": exit,
            "stopped": plan.stopped,
            "totals": plan.totals,
            "outcomes": report.map(|r| json!({
                "done": r.done.len(),
                "skipped": r.skipped.len(),
                "failed": r.failed.len(),
                "resumed": r.resumed,
            })),
            "api_calls": calls,
        });
        crate::files::write_atomically(&dir.join("metadata.json"), pretty(&metadata)?.as_bytes())?;
        Ok(dir)
    }
}
