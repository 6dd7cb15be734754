//! Apply: executes a plan in its safe order through a backend, re-reading each image
//! before a destructive call, with a JSON-lines journal written before and after every
//! call so an interrupted run resumes without losing or repeating an action.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, Outcome};
use crate::config::Policy;
use crate::inventory::Inventory;
use crate::model::{Location, Timestamp};
use crate::plan::{Op, Plan, PlannedAction};

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The plan the action belongs to.
    pub plan_id: String,
    pub action_id: String,
    /// `start` before the call; `done`, `skipped` or `failed` after it.
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The id of a plan: sha256 of its actions.
pub fn plan_id(plan: &Plan) -> String {
    let bytes = serde_json::to_vec(&plan.actions).unwrap_or_default();
    format!("plan-{}", &hex::encode(Sha256::digest(bytes))[..20])
}

/// An append-only journal file.
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
    finished: BTreeMap<String, String>,
    /// Whether any line of this plan is there, even a lone `start`: a run of it began.
    seen: bool,
}

impl Journal {
    /// Opens (or creates) a journal and reads which actions of `plan_id` already finished.
    pub fn open(path: &Path, plan_id: &str) -> anyhow::Result<Journal> {
        let mut finished = BTreeMap::new();
        let mut seen = false;
        if path.exists() {
            let file = std::fs::File::open(path).with_context(|| format!("cannot read journal {}", path.display()))?;
            for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<JournalEntry>(&line) {
                    Ok(e) if e.plan_id == plan_id => {
                        seen = true;
                        if e.phase == "done" || e.phase == "skipped" {
                            finished.insert(e.action_id, e.phase);
                        }
                    }
                    Ok(_) => {}
                    // A torn last line from a crash mid-write: the action counts as unfinished.
                    Err(err) => tracing::warn!("journal {} line {}: unreadable, ignored: {err}", path.display(), n + 1),
                }
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .with_context(|| format!("cannot open journal {}", path.display()))?;
        // End a torn last line, so our first entry does not land on it and become unreadable.
        if ends_torn(&mut file)? {
            file.write_all(b"\n").with_context(|| format!("cannot write journal {}", path.display()))?;
        }
        Ok(Journal { path: path.to_path_buf(), file, finished, seen })
    }

    /// Whether an action finished in an earlier run of the same plan.
    pub fn finished(&self, action_id: &str) -> Option<&str> {
        self.finished.get(action_id).map(String::as_str)
    }

    /// Whether a run of this plan began before (a resumed run). A lone `start` counts:
    /// a crash after the first call but before its `done` line has already changed the
    /// inventory the plan was computed on.
    pub fn is_resume(&self) -> bool {
        self.seen
    }

    /// Appends one entry and syncs it to disk.
    pub fn record(&mut self, entry: &JournalEntry) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(entry)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .with_context(|| format!("cannot write journal {}", self.path.display()))?;
        self.file.sync_data().with_context(|| format!("cannot sync journal {}", self.path.display()))?;
        Ok(())
    }
}

/// The last plan recorded in a journal whose actions did not all finish, if any: an
/// interrupted apply, which `apply` resumes before planning anything new (a fresh plan
/// could not see, say, the snapshots of images already deregistered).
pub fn unfinished_plan(path: &Path) -> anyhow::Result<Option<Plan>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read journal {}", path.display()))?;
    let mut last: Option<Plan> = None;
    let mut finished: BTreeSet<(String, String)> = BTreeSet::new();
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<JournalEntry>(line) else { continue };
        match e.phase.as_str() {
            "plan" => last = serde_json::from_str(&e.detail).ok(),
            "done" | "skipped" => {
                finished.insert((e.plan_id, e.action_id));
            }
            _ => {}
        }
    }
    Ok(last.filter(|plan| {
        let id = plan_id(plan);
        plan.actions.iter().any(|a| !finished.contains(&(id.clone(), a.id.clone())))
    }))
}

/// How many images one re-read covers before disables and deregistrations.
pub const RECHECK_BATCH: usize = 20;

/// Before the disable or deregistration at `index`, re-reads its image together with
/// those of the next unfinished ones in the same account and region, in one batch: the
/// re-read then costs a few calls per batch instead of per action, so the Describe*
/// bucket does not pace a large apply. An image read this way is at most one batch old.
fn prefetch(
    backend: &dyn Backend,
    plan: &Plan,
    index: usize,
    journal: &Journal,
    fresh: &mut BTreeMap<String, Option<crate::model::Image>>,
) -> anyhow::Result<()> {
    let action = &plan.actions[index];
    if !matches!(action.op, Op::Disable | Op::Deregister) || fresh.contains_key(&action.image_id) {
        return Ok(());
    }
    let ids: Vec<String> = plan.actions[index..]
        .iter()
        .filter(|a| matches!(a.op, Op::Disable | Op::Deregister))
        .filter(|a| a.account == action.account && a.region == action.region)
        .filter(|a| journal.finished(&a.id).is_none())
        .map(|a| a.image_id.clone())
        .take(RECHECK_BATCH)
        .collect();
    let location = Location { account: action.account.clone(), region: action.region.clone() };
    fresh.extend(backend.refresh_many(&location, &ids)?);
    Ok(())
}

/// Whether a file is non-empty and does not end with a newline.
fn ends_torn(file: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::End(-1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// What happened to each action.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub done: Vec<(String, String)>,
    pub skipped: Vec<(String, String)>,
    pub failed: Vec<(String, String)>,
    pub resumed: usize,
}

/// Why a destructive action must not run now, if so: the image changed since the plan.
fn recheck(
    policy: &Policy,
    backend: &dyn Backend,
    planned: &Inventory,
    plan: &Plan,
    action: &PlannedAction,
    now: Timestamp,
    fresh: &mut BTreeMap<String, Option<crate::model::Image>>,
) -> anyhow::Result<Option<String>> {
    let location = Location { account: action.account.clone(), region: action.region.clone() };
    if let Op::DeleteSnapshot { snapshot_id } = &action.op {
        if backend.snapshot_in_use(&location, snapshot_id, &action.image_id)? {
            return Ok(Some(format!("{snapshot_id} is used by another image")));
        }
        return Ok(None);
    }
    let current = match fresh.remove(&action.image_id) {
        Some(read) => read,
        None => backend.refresh(&location, &action.image_id)?,
    };
    let Some(current) = current else {
        return Ok(Some(format!("{} no longer exists", action.image_id)));
    };
    if policy.guardrails.protect_in_use
        && let Some(why) = crate::resolve::in_use_reason(&current, policy, now)
    {
        return Ok(Some(format!("image is now {why}")));
    }
    if let (Some(before), Some(after)) =
        (planned.get(&action.image_id).and_then(|i| i.launch_permissions.as_ref()), current.launch_permissions.as_ref())
    {
        // The plan's own shares of this image are expected, not news.
        let mut expected = before.clone();
        for a in plan.actions.iter().filter(|a| a.image_id == action.image_id) {
            if let Op::Share { principal } = &a.op {
                expected.insert(principal.clone());
            }
        }
        let new: BTreeSet<_> = after.difference(&expected).collect();
        if !new.is_empty() {
            let list: Vec<String> = new.iter().map(|p| p.to_string()).collect();
            return Ok(Some(format!("image was shared with {} since the plan", list.join(", "))));
        }
    }
    Ok(None)
}

/// Executes `plan` in order. Every call is journaled before and after; actions the
/// journal shows finished are not repeated.
pub fn apply(
    policy: &Policy,
    backend: &dyn Backend,
    planned: &Inventory,
    plan: &Plan,
    journal: &mut Journal,
    now: Timestamp,
    progress: &dyn Fn(&PlannedAction, &Outcome),
) -> anyhow::Result<Report> {
    let id = plan_id(plan);
    if !journal.is_resume() {
        // The whole plan first, so an interrupted run can be resumed without a plan file.
        let detail = serde_json::to_string(plan)?;
        journal.record(&JournalEntry {
            plan_id: id.clone(),
            action_id: String::new(),
            phase: "plan".into(),
            detail,
        })?;
    }
    let mut report = Report::default();
    let mut deregistered_failed: BTreeSet<&str> = BTreeSet::new();
    let mut fresh: BTreeMap<String, Option<crate::model::Image>> = BTreeMap::new();
    for (index, action) in plan.actions.iter().enumerate() {
        if journal.finished(&action.id).is_some() {
            report.resumed += 1;
            continue;
        }
        let outcome = if matches!(action.op, Op::DeleteSnapshot { .. })
            && deregistered_failed.contains(action.image_id.as_str())
        {
            Outcome::Skipped { reason: format!("deregistering {} did not succeed", action.image_id) }
        } else if action.op.is_destructive()
            && let Some(why) = {
                prefetch(backend, plan, index, journal, &mut fresh)?;
                recheck(policy, backend, planned, plan, action, now, &mut fresh)?
            }
        {
            Outcome::Skipped { reason: why }
        } else {
            journal.record(&JournalEntry {
                plan_id: id.clone(),
                action_id: action.id.clone(),
                phase: "start".into(),
                detail: String::new(),
            })?;
            let outcome = backend.execute(action);
            backend.commit()?;
            outcome
        };
        if matches!(action.op, Op::Deregister) && !matches!(outcome, Outcome::Done { .. }) {
            deregistered_failed.insert(action.image_id.as_str());
        }
        let (phase, detail) = match &outcome {
            Outcome::Done { detail } => ("done", detail.clone()),
            Outcome::Skipped { reason } => ("skipped", reason.clone()),
            Outcome::Failed { error } => ("failed", error.clone()),
        };
        journal.record(&JournalEntry {
            plan_id: id.clone(),
            action_id: action.id.clone(),
            phase: phase.into(),
            detail: detail.clone(),
        })?;
        progress(action, &outcome);
        let entry = (action.id.clone(), detail);
        match phase {
            "done" => report.done.push(entry),
            "skipped" => report.skipped.push(entry),
            _ => report.failed.push(entry),
        }
    }
    Ok(report)
}
