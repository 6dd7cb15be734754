//! Undo: reverses what a run removed, from its journal. A deleted snapshot and a
//! deregistered image come back from the Recycle Bin (snapshots first: EC2 restores an
//! image only once its snapshots are back), a disabled image is enabled, and each image
//! is shared again with whom the journal recorded it was shared with right before the
//! call (a restored or re-enabled image comes back without its shares); an unshare is
//! reversed by sharing again. Shares, copies, tags and deprecations added by a run are
//! not removed: undo gives back what a run took away.
//!
//! Undo is idempotent: each step reads first (an image already back is skipped), and
//! what it reversed is journaled under the run (`journal::undo_id`), so a second undo of
//! the same run does nothing. Re-shares obey the policy's guardrails as they are now.

use std::collections::BTreeSet;

use std::collections::BTreeMap;
use std::path::Path;

use super::journal::{Binding, JournalEntry, Phase, append, open_append, read_entries};
use crate::backend::{ActionOutcome, Backend, Restore};
use crate::config::Policy;
use crate::error::InputError;
use crate::model::Principal;
use crate::plan::Plan;
use crate::plan::{Op, PlannedAction};
use crate::resolve::guardrails::share_forbidden;

/// One finished run of a journal, as `undo` reads it: the plan, its binding, how each
/// action ended, the shares recorded before its disables and deregistrations, and the
/// actions an earlier undo already reversed.
#[derive(Debug)]
pub struct Run {
    pub run_id: String,
    pub plan: Plan,
    pub binding: Binding,
    pub ended: BTreeMap<String, (Phase, String)>,
    /// Actions whose call was made (a `start` line was written before it).
    pub started: BTreeSet<String>,
    pub shares: BTreeMap<String, BTreeSet<Principal>>,
    pub undone: BTreeSet<String>,
}

/// The journal key under which `undo` records what it reversed of run `run_id`.
pub fn undo_id(run_id: &str) -> String {
    format!("{run_id}-undo")
}

/// Reads run `run_id` of a journal (the last run recorded when `None`; a prefix of a run
/// id picks the one run it starts).
pub fn read_run(path: &Path, run_id: Option<&str>) -> anyhow::Result<Run> {
    let entries = read_entries(path)?;
    if entries.is_empty() {
        return Err(InputError(format!("journal {} has no runs", path.display())).into());
    }
    let plans: Vec<&(usize, JournalEntry)> = entries.iter().filter(|(_, e)| e.phase == Phase::Plan).collect();
    let chosen: Vec<&&(usize, JournalEntry)> = match run_id {
        Some(id) => plans.iter().filter(|(_, e)| e.plan_id.starts_with(id)).collect(),
        None => plans.last().into_iter().collect(),
    };
    let (line, entry) = match chosen.as_slice() {
        [one] => **one,
        [] => {
            let known: Vec<&str> = plans.iter().map(|(_, e)| e.plan_id.as_str()).collect();
            return Err(InputError(format!(
                "journal {} has no run {} (runs there: {})",
                path.display(),
                run_id.unwrap_or("?"),
                known.join(", ")
            ))
            .into());
        }
        _ => {
            return Err(InputError(format!(
                "journal {}: `{}` names several runs",
                path.display(),
                run_id.unwrap_or("")
            ))
            .into());
        }
    };
    let plan: Plan = serde_json::from_str(&entry.detail).map_err(|e| {
        InputError(format!("journal {} line {line}: the plan recorded there cannot be read ({e})", path.display()))
    })?;
    let binding = entry.binding.clone().ok_or_else(|| {
        InputError(format!("journal {} line {line}: the plan has no record of its backend", path.display()))
    })?;
    let id = entry.plan_id.clone();
    if !super::journal::is_key_of(&id, &super::plan_id(&plan)) {
        return Err(InputError(format!(
            "journal {} line {line}: the plan recorded there does not match its id {id} (edited?); it is not undone",
            path.display()
        ))
        .into());
    }
    let undo = undo_id(&id);
    let mut run = Run {
        run_id: id.clone(),
        plan,
        binding,
        ended: BTreeMap::new(),
        started: BTreeSet::new(),
        shares: BTreeMap::new(),
        undone: BTreeSet::new(),
    };
    for (_, e) in entries.into_iter() {
        if e.plan_id == id && e.phase.is_final() {
            run.ended.insert(e.action_id, (e.phase, e.detail));
        } else if e.plan_id == id && e.phase == Phase::Start {
            if let Some(shares) = e.shares {
                run.shares.insert(e.action_id.clone(), shares);
            }
            run.started.insert(e.action_id);
        } else if e.plan_id == undo && e.phase == Phase::Done {
            run.undone.insert(e.action_id);
        }
    }
    Ok(run)
}

/// Appends what `undo` did to the journal, under `undo_id(run)`: `(action id, phase,
/// detail)`. Other runs' lines are never touched, and a resumed apply never reads these.
pub fn record_undo(path: &Path, run_id: &str, outcomes: &[(String, Phase, String)]) -> anyhow::Result<()> {
    let mut file = open_append(path)?;
    let entries: Vec<JournalEntry> = outcomes
        .iter()
        .map(|(action_id, phase, detail)| JournalEntry {
            plan_id: undo_id(run_id),
            action_id: action_id.clone(),
            phase: *phase,
            detail: detail.clone(),
            binding: None,
            shares: None,
        })
        .collect();
    append(&mut file, path, &entries)
}

/// One call of an undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Restore(Restore),
    Share(Principal),
}

/// One call of an undo, with the action of the run it reverses.
#[derive(Debug, Clone)]
pub struct UndoStep {
    pub action: PlannedAction,
    pub step: Step,
}

impl UndoStep {
    /// What the step does, for tables and logs.
    pub fn verb(&self) -> String {
        match &self.step {
            Step::Restore(r) => r.verb(),
            Step::Share(p) => format!("share {} with {p}", self.action.image_id),
        }
    }
}

/// What an undo of a run will do, and what it leaves and why.
#[derive(Debug, Default)]
pub struct UndoPlan {
    pub steps: Vec<UndoStep>,
    /// Actions of the run that are not undone, with why.
    pub left: Vec<(PlannedAction, String)>,
}

/// The order steps run in: snapshots, images, enables, then shares.
fn rank(step: &Step) -> u8 {
    match step {
        Step::Restore(Restore::Snapshot { .. }) => 0,
        Step::Restore(Restore::Image { .. }) => 1,
        Step::Restore(Restore::Enable { .. }) => 2,
        Step::Share(_) => 3,
    }
}

/// Plans the undo of `run`: every action it did, or those of `only` (a deregistration
/// brings its image's snapshot deletions with it, since the image needs them back).
pub fn plan_undo(policy: &Policy, run: &Run, only: &BTreeSet<String>) -> Result<UndoPlan, InputError> {
    // Done, or called and then found gone: a deregistration or deletion whose answer was
    // lost, retried by the SDK into EC2's NotFound (or re-checked after a crash), made the
    // change all the same.
    let done = |a: &PlannedAction| match run.ended.get(&a.id) {
        Some((Phase::Done, _)) => true,
        Some((Phase::Skipped, detail)) => {
            matches!(a.op, Op::Deregister | Op::DeleteSnapshot { .. })
                && detail.ends_with(super::GONE)
                && run.started.contains(&a.id)
        }
        _ => false,
    };
    for id in only {
        match run.plan.actions.iter().find(|a| &a.id == id) {
            None => return Err(InputError(format!("--action {id}: run {} has no such action", run.run_id))),
            Some(a) if !done(a) => {
                let how = run.ended.get(id).map(|(p, d)| format!("{}: {d}", format!("{p:?}").to_lowercase()));
                return Err(InputError(format!(
                    "--action {id}: it did not happen in run {} ({}), there is nothing to undo",
                    run.run_id,
                    how.unwrap_or_else(|| "never reached".into())
                )));
            }
            Some(_) => {}
        }
    }
    let chosen_images: BTreeSet<&str> = run
        .plan
        .actions
        .iter()
        .filter(|a| only.contains(&a.id) && a.op == Op::Deregister)
        .map(|a| a.image_id.as_str())
        .collect();
    let wanted = |a: &PlannedAction| {
        only.is_empty()
            || only.contains(&a.id)
            || (matches!(a.op, Op::DeleteSnapshot { .. }) && chosen_images.contains(a.image_id.as_str()))
    };
    let mut plan = UndoPlan::default();
    for action in run.plan.actions.iter().filter(|a| done(a) && wanted(a)) {
        if run.undone.contains(&action.id) {
            plan.left.push((action.clone(), "already undone".into()));
            continue;
        }
        let image_id = action.image_id.clone();
        let mut push = |step| plan.steps.push(UndoStep { action: action.clone(), step });
        let mut shares: Vec<&Principal> = Vec::new();
        let reshare = match &action.op {
            Op::DeleteSnapshot { snapshot_id } => {
                push(Step::Restore(Restore::Snapshot { snapshot_id: snapshot_id.clone() }));
                continue;
            }
            Op::Deregister => {
                push(Step::Restore(Restore::Image { image_id }));
                true
            }
            Op::Disable => {
                push(Step::Restore(Restore::Enable { image_id }));
                true
            }
            Op::Unshare { principal } => {
                shares.push(principal);
                false
            }
            _ => {
                if !only.is_empty() {
                    return Err(InputError(format!(
                        "--action {}: {} adds rather than removes; undo gives back what a run removed",
                        action.id,
                        action.op.verb()
                    )));
                }
                continue;
            }
        };
        match run.shares.get(&action.id) {
            Some(recorded) if reshare => shares.extend(recorded),
            None if reshare => plan.left.push((
                action.clone(),
                "its shares were not recorded (the run did not read launch permissions): not shared again".into(),
            )),
            _ => {}
        }
        for principal in shares {
            match share_forbidden(policy, principal) {
                Some(why) => plan.left.push((action.clone(), format!("not shared again: {why}"))),
                None => push(Step::Share(principal.clone())),
            }
        }
    }
    plan.steps.sort_by_key(|s| rank(&s.step));
    Ok(plan)
}

/// Runs the steps in order; an image whose restore failed is not shared again. Returns
/// each step's outcome and, per action of the run, how its undo ended (for the journal).
pub fn run_undo(
    backend: &dyn Backend,
    plan: &UndoPlan,
    progress: &dyn Fn(&UndoStep, &ActionOutcome),
) -> (Vec<ActionOutcome>, Vec<(String, Phase, String)>) {
    let mut outcomes = Vec::with_capacity(plan.steps.len());
    let mut failed_images: BTreeSet<&str> = BTreeSet::new();
    for step in &plan.steps {
        let outcome = match &step.step {
            Step::Restore(what) => backend.restore(&step.action.location, what),
            Step::Share(_) if failed_images.contains(step.action.image_id.as_str()) => {
                ActionOutcome::Skipped { reason: format!("{} was not restored", step.action.image_id) }
            }
            Step::Share(principal) => {
                let op = Op::Share { principal: principal.clone() };
                let share = PlannedAction {
                    id: PlannedAction::id_for(
                        &step.action.location.account,
                        &step.action.location.region,
                        &step.action.image_id,
                        &op,
                    ),
                    op,
                    ..step.action.clone()
                };
                backend.execute(&share)
            }
        };
        if matches!((&step.step, &outcome), (Step::Restore(_), ActionOutcome::Failed { .. })) {
            failed_images.insert(step.action.image_id.as_str());
        }
        progress(step, &outcome);
        outcomes.push(outcome);
    }
    // An action is undone when every step of it is (done, or not needed).
    let mut ended: Vec<(String, Phase, String)> = Vec::new();
    for (step, outcome) in plan.steps.iter().zip(&outcomes) {
        let (phase, detail) = match outcome {
            ActionOutcome::Done { detail } | ActionOutcome::Skipped { reason: detail } => (Phase::Done, detail),
            ActionOutcome::Failed { error } => (Phase::Failed, error),
        };
        match ended.iter_mut().find(|(id, _, _)| *id == step.action.id) {
            Some(entry) => {
                if entry.1 == Phase::Done && phase == Phase::Failed {
                    entry.1 = Phase::Failed;
                }
                entry.2 = format!("{}; {detail}", entry.2);
            }
            None => ended.push((step.action.id.clone(), phase, detail.clone())),
        }
    }
    (outcomes, ended)
}
