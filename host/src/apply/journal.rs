//! The apply journal: JSON lines written (and synced) before and after every call, so an
//! interrupted apply resumes without losing or repeating an action. A plan in a journal
//! is bound to the backend and the policy it was applied with, and resumes only there.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::model::Principal;
use crate::plan::Plan;

/// Where an action (or the plan) stands in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The whole plan, recorded before the first call.
    Plan,
    /// Written before the call.
    Start,
    /// The call made the change.
    Done,
    /// Nothing was done: not needed, or no longer safe.
    Skipped,
    /// The call failed after the SDK's retries. Final: a later run does not retry it.
    Failed,
}

impl Phase {
    /// Whether the action is over (done, skipped or failed): a resumed run leaves it alone.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Done | Phase::Skipped | Phase::Failed)
    }
}

/// What a plan in a journal is bound to: it resumes only with the same of both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The backend's identity, e.g. `sim:/abs/path/state.json`.
    pub backend: String,
    /// The policy's fingerprint (settings and plugin bytes).
    pub policy: String,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The plan the action belongs to.
    pub plan_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action_id: String,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// On the `plan` line: the backend and policy the plan is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    /// On the `start` line of a disable or deregistration: whom the image was shared with
    /// right before the call (what `undo` shares it with again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<BTreeSet<Principal>>,
}

/// The id of a plan: sha256 of its actions.
pub fn plan_id(plan: &Plan) -> String {
    crate::model::id::stable_id_of_json("plan", &plan.actions, 20)
}

/// Whether `key`, a journal key, is one of the plan whose id is `plan_id`: its own id (a
/// saved plan's run) or a fresh run of it (`run_id`). A plan line whose plan hashes to
/// another id was edited.
pub fn is_key_of(key: &str, plan_id: &str) -> bool {
    key.strip_prefix(plan_id).is_some_and(|rest| rest.is_empty() || rest.starts_with("-run"))
}

/// The journal key of a fresh run of `plan`: its id and when the run started. A plan
/// computed again after an earlier run of the same actions ended (some failed, say) is a
/// new run, not a finished one; a saved plan file keeps its plain id, so applying the
/// same file twice does nothing the second time.
pub fn run_id(plan_id: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{plan_id}-run{nanos:x}")
}

/// The default journal of a backend: beside a sim state file, else in the user's state
/// directory, one per backend identity (never the working directory).
pub fn default_path(backend_identity: &str, state_file: Option<&Path>) -> PathBuf {
    if let Some(state) = state_file {
        return state.with_extension("journal.jsonl");
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("amiwarden")
        .join(format!("{}.jsonl", crate::model::id::stable_id("journal", backend_identity.as_bytes(), 16)))
}

/// An append-only journal file, opened for one plan.
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
    plan_id: String,
    binding: Binding,
    finished: BTreeMap<String, (Phase, String)>,
    /// Whether any line of this plan is there, even a lone `start`: a run of it began.
    seen: bool,
}

pub(super) fn read_entries(path: &Path) -> anyhow::Result<Vec<(usize, JournalEntry)>> {
    let mut out = Vec::new();
    if !path.exists() {
        return Ok(out);
    }
    let text = crate::files::read_text(path, crate::files::Input::Plan)
        .with_context(|| format!("journal {}", path.display()))?;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<JournalEntry>(line) {
            Ok(e) => out.push((n + 1, e)),
            // A torn last line from a crash mid-write: the action counts as unfinished.
            Err(err) => tracing::warn!("journal {} line {}: unreadable, ignored: {err}", path.display(), n + 1),
        }
    }
    Ok(out)
}

impl Journal {
    /// Opens (or creates) a journal for `plan_id` and reads which of its actions already
    /// finished. A journal that holds this plan under another backend or policy is
    /// refused: its actions were meant for another place.
    pub fn open(path: &Path, plan_id: &str, binding: Binding) -> anyhow::Result<Journal> {
        let mut finished = BTreeMap::new();
        let mut seen = false;
        let mut bound = false;
        for (n, e) in read_entries(path)? {
            if e.plan_id != plan_id {
                continue;
            }
            seen = true;
            if e.phase == Phase::Plan {
                check_binding(path, n, e.binding.as_ref(), &binding)?;
                bound = true;
            } else if e.phase.is_final() {
                finished.insert(e.action_id, (e.phase, e.detail));
            }
        }
        if seen && !bound {
            // Every run records its plan before its first call: lines without it were not
            // written by an apply, and nothing binds them to a backend or policy.
            return Err(InputError(format!(
                "journal {} has lines of {plan_id} but not the plan line written before them (edited or cut?): \
                 it is not resumed (move the journal away to plan afresh)",
                path.display()
            ))
            .into());
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = open_append(path)?;
        Ok(Journal { path: path.to_path_buf(), file, plan_id: plan_id.to_string(), binding, finished, seen })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key of this run's lines in the journal.
    pub fn run_key(&self) -> &str {
        &self.plan_id
    }

    /// How an action ended in an earlier run of the same plan, if it did.
    pub fn finished(&self, action_id: &str) -> Option<(Phase, &str)> {
        self.finished.get(action_id).map(|(phase, detail)| (*phase, detail.as_str()))
    }

    /// Whether a run of this plan began before (a resumed run). A lone `start` counts:
    /// a crash after the first call but before its `done` line has already changed the
    /// inventory the plan was computed on.
    pub fn is_resume(&self) -> bool {
        self.seen
    }

    /// Records the whole plan with its binding (once, before the first call), so an
    /// interrupted run can be resumed without a plan file, and only where it belongs.
    pub fn record_plan(&mut self, plan: &Plan) -> anyhow::Result<()> {
        if self.seen {
            return Ok(());
        }
        let entry = JournalEntry {
            plan_id: self.plan_id.clone(),
            action_id: String::new(),
            phase: Phase::Plan,
            detail: serde_json::to_string(plan)?,
            binding: Some(self.binding.clone()),
            shares: None,
        };
        self.write(&entry)?;
        self.seen = true;
        Ok(())
    }

    /// Records a phase of one action and syncs it to disk.
    pub fn record(&mut self, action_id: &str, phase: Phase, detail: &str) -> anyhow::Result<()> {
        self.record_start(action_id, phase, detail, None)
    }

    /// `record`, with the image's shares before a disable or deregistration.
    pub fn record_start(
        &mut self,
        action_id: &str,
        phase: Phase,
        detail: &str,
        shares: Option<BTreeSet<Principal>>,
    ) -> anyhow::Result<()> {
        let entry = JournalEntry {
            plan_id: self.plan_id.clone(),
            action_id: action_id.to_string(),
            phase,
            detail: detail.to_string(),
            binding: None,
            shares,
        };
        self.write(&entry)
    }

    fn write(&mut self, entry: &JournalEntry) -> anyhow::Result<()> {
        append(&mut self.file, &self.path, std::slice::from_ref(entry))
    }
}

/// Opens (or creates) a journal to append to. A torn last line is ended first, so the
/// next entry does not land on it and become unreadable.
pub(super) fn open_append(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .with_context(|| format!("cannot open journal {}", path.display()))?;
    if ends_torn(&mut file)? {
        file.write_all(b"\n").with_context(|| format!("cannot write journal {}", path.display()))?;
    }
    Ok(file)
}

/// Appends `entries` to an open journal and syncs them.
pub(super) fn append(file: &mut std::fs::File, path: &Path, entries: &[JournalEntry]) -> anyhow::Result<()> {
    let mut text = String::new();
    for entry in entries {
        text.push_str(&serde_json::to_string(entry)?);
        text.push('\n');
    }
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write journal {}", path.display()))?;
    file.sync_data().with_context(|| format!("cannot sync journal {}", path.display()))?;
    Ok(())
}

fn check_binding(path: &Path, line: usize, recorded: Option<&Binding>, now: &Binding) -> Result<(), InputError> {
    match recorded {
        Some(b) if b == now => Ok(()),
        Some(b) => Err(InputError(format!(
            "journal {} line {line} holds this plan for {} under policy {}, but this run is {} under policy {}: \
             it is not resumed here (finish it with the backend and policy it was started with, or move the journal away)",
            path.display(),
            b.backend,
            b.policy,
            now.backend,
            now.policy
        ))),
        None => Err(InputError(format!(
            "journal {} line {line} holds a plan with no record of its backend and policy (an older amiwarden?): \
             it is not resumed (move the journal away to plan afresh)",
            path.display()
        ))),
    }
}

/// An interrupted apply found in a journal.
#[derive(Debug)]
pub struct Unfinished {
    pub plan: Plan,
    /// Its id (`plan_id`).
    pub plan_id: String,
    /// Its key in the journal.
    pub run_id: String,
    /// Actions of it that failed (final), with their errors.
    pub failed: Vec<(String, String)>,
}

/// The last plan recorded in a journal, if some of its actions have no final line: an
/// interrupted apply, which `apply` resumes before planning anything new (a fresh plan
/// could not see, say, the snapshots of images already deregistered). Failed actions
/// are final: a plan whose actions all ended, some failed, is not resumed.
pub fn unfinished_plan(path: &Path) -> anyhow::Result<Option<Unfinished>> {
    let entries = read_entries(path)?;
    let Some((line, last)) = entries.iter().rev().find(|(_, e)| e.phase == Phase::Plan) else { return Ok(None) };
    let plan: Plan = serde_json::from_str(&last.detail).map_err(|e| {
        InputError(format!(
            "journal {} line {line}: the plan recorded there cannot be read ({e}); move the journal away to plan afresh",
            path.display()
        ))
    })?;
    let id = last.plan_id.clone();
    let own = plan_id(&plan);
    if !is_key_of(&id, &own) {
        return Err(InputError(format!(
            "journal {} line {line}: the plan recorded there does not match its id {} (edited?); move the journal away",
            path.display(),
            last.plan_id
        ))
        .into());
    }
    let mut ended: BTreeMap<&str, (Phase, &str)> = BTreeMap::new();
    for (_, e) in entries.iter().filter(|(_, e)| e.plan_id == id && e.phase.is_final()) {
        ended.insert(e.action_id.as_str(), (e.phase, e.detail.as_str()));
    }
    if plan.actions.iter().all(|a| ended.contains_key(a.id.as_str())) {
        return Ok(None);
    }
    let failed = plan
        .actions
        .iter()
        .filter_map(|a| match ended.get(a.id.as_str()) {
            Some((Phase::Failed, detail)) => Some((a.id.clone(), detail.to_string())),
            _ => None,
        })
        .collect();
    Ok(Some(Unfinished { plan, plan_id: own, run_id: id, failed }))
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
