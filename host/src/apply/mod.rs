//! Apply: executes a plan in its safe order through a backend. Before the first call the
//! host's guardrails are checked on the whole plan, whatever it came from; each image is
//! re-read before a destructive call; a JSON-lines journal is written before and after
//! every call so an interrupted run resumes without losing or repeating an action.

mod fresh;
mod journal;
mod lock;
pub mod saved;
pub mod undo;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use fresh::Fresh;
pub use fresh::RECHECK_BATCH;
pub use journal::{Binding, Journal, JournalEntry, Phase, Unfinished, default_path, plan_id, run_id, unfinished_plan};
pub use lock::Lock;
pub use undo::{read_run, record_undo};

use crate::backend::{ActionOutcome, Backend};
use crate::config::Policy;
use crate::error::GuardrailStop;
use crate::inventory::Inventory;
use crate::model::{Principal, Timestamp};
use crate::plan::{Op, Plan, PlannedAction};
use crate::resolve::guardrails::check_planned;

/// What an apply checks against: the policy, the inventory read before it, the images
/// plugins retain (or fail on) right now, and the time.
pub struct Checks<'a> {
    pub policy: &'a Policy,
    pub planned: &'a Inventory,
    /// Image id → why no destructive action may touch it (from `run::retained`).
    pub retained: BTreeMap<String, String>,
    pub now: Timestamp,
}

/// What happened to each action.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub done: Vec<(String, String)>,
    pub skipped: Vec<(String, String)>,
    pub failed: Vec<(String, String)>,
    pub resumed: usize,
}

/// The images a plan's unfinished destructive actions touch: the ones whose `retain`
/// must be asked again before applying.
pub fn destroyed_images(plan: &Plan, journal: &Journal) -> BTreeSet<String> {
    plan.actions
        .iter()
        .filter(|a| matches!(a.op, Op::Disable | Op::Deregister) && journal.finished(&a.id).is_none())
        .map(|a| a.image_id.clone())
        .collect()
}

/// Refuses a plan the guardrails forbid, before any call: a plan stopped when it was
/// made, or one with an action the policy would refuse now (`GuardrailStop`, exit 3).
pub fn check(checks: &Checks<'_>, plan: &Plan) -> Result<(), GuardrailStop> {
    if let Some(why) = &plan.stopped {
        return Err(GuardrailStop(format!("the plan was stopped by a guardrail when it was made ({why})")));
    }
    let violations = check_planned(checks.policy, checks.planned, &plan.actions, checks.now);
    if violations.is_empty() {
        return Ok(());
    }
    let by_id: BTreeMap<&str, &PlannedAction> = plan.actions.iter().map(|a| (a.id.as_str(), a)).collect();
    let lines: Vec<String> = violations
        .iter()
        .map(|v| match by_id.get(v.action_id.as_str()) {
            Some(a) => format!(
                "  {} {} {} in {}: {}",
                a.id,
                a.op.verb(),
                a.image_id,
                a.location,
                crate::model::text::escape(&v.reason)
            ),
            None => format!("  {}", v.reason),
        })
        .collect();
    Err(GuardrailStop(format!(
        "the guardrails refuse {} action(s) of this plan; nothing was changed:\n{}",
        violations.len(),
        lines.join("\n")
    )))
}

/// Why a destructive action must not run now, if so.
enum Hold {
    /// The image is already gone: a deregistration needs nothing, and its snapshots may go.
    Gone,
    /// It is no longer safe: skipped, and the image's snapshot deletions with it.
    Unsafe(String),
}

/// One apply in progress, shared by its workers.
struct Run<'a, 'j> {
    checks: &'a Checks<'a>,
    backend: &'a dyn Backend,
    plan: &'a Plan,
    journal: Mutex<&'j mut Journal>,
    fresh: Mutex<Fresh>,
    /// Images whose disable or deregistration did not happen for a reason other than the
    /// image being gone: their snapshot deletions are skipped.
    held: Mutex<BTreeSet<String>>,
    /// How each action ended, by its index in the plan (`None`: resumed or not reached).
    ended: Mutex<Vec<Option<(Phase, String)>>>,
    resumed: AtomicUsize,
    progress: &'a (dyn Fn(&PlannedAction, &ActionOutcome) + Sync),
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether a disable or deregistration that ended this way leaves its snapshots held.
fn holds(phase: Phase, detail: &str) -> bool {
    phase == Phase::Failed || (phase == Phase::Skipped && !detail.ends_with(GONE))
}

impl Run<'_, '_> {
    fn pending(&self, action: &PlannedAction) -> bool {
        lock(&self.journal).finished(&action.id).is_none()
    }

    /// Re-checks the destructive action at `index` against EC2 as it is now: why it must
    /// not run (`Err`), or whom the image is shared with right now when that was read
    /// (the journal keeps it for `undo`).
    fn recheck(&self, index: usize) -> anyhow::Result<Result<Option<BTreeSet<Principal>>, Hold>> {
        let action = &self.plan.actions[index];
        let upcoming = &self.plan.actions[index + 1..];
        let pending = |a: &PlannedAction| self.pending(a);
        if let Op::DeleteSnapshot { snapshot_id } = &action.op {
            // Any image at all: by now the plan has deregistered the images it deletes the
            // snapshot for, so a user left (the image itself, if its deregistration did not
            // happen, or another image) means the snapshot stays.
            let users = lock(&self.fresh).snapshot_users(self.backend, action, snapshot_id, upcoming, &pending)?;
            if !users.is_empty() {
                return Ok(Err(Hold::Unsafe(format!("{snapshot_id} is still used by {}", users.join(", ")))));
            }
            return Ok(Ok(None));
        }
        let checks = self.checks;
        if let Some(why) = checks.retained.get(&action.image_id) {
            return Ok(Err(Hold::Unsafe(why.clone())));
        }
        let permissions = |id: &str| checks.planned.get(id).is_some_and(|i| i.launch_permissions.is_some());
        let current = lock(&self.fresh).image(self.backend, action, upcoming, &pending, &permissions)?;
        let Some(current) = current else {
            return Ok(Err(Hold::Gone));
        };
        let policy = checks.policy;
        if policy.guardrails.protect_in_use
            && let Some(why) = crate::resolve::in_use_reason(&current, policy, checks.now)
        {
            return Ok(Err(Hold::Unsafe(format!("image is now {why}"))));
        }
        if action.op == Op::Deregister
            && let Some(how) = &current.deregistration_protection
        {
            return Ok(Err(Hold::Unsafe(format!("EC2's deregistration protection is now on ({how})"))));
        }
        if let (Some(before), Some(after)) = (
            checks.planned.get(&action.image_id).and_then(|i| i.launch_permissions.as_ref()),
            current.launch_permissions.as_ref(),
        ) {
            // The plan's own shares of this image are expected, not news.
            let mut expected = before.clone();
            for a in self.plan.actions.iter().filter(|a| a.image_id == action.image_id) {
                if let Op::Share { principal } = &a.op {
                    expected.insert(principal.clone());
                }
            }
            let new: BTreeSet<_> = after.difference(&expected).collect();
            if !new.is_empty() {
                let list: Vec<String> = new.iter().map(|p| p.to_string()).collect();
                return Ok(Err(Hold::Unsafe(format!("image was shared with {} since the plan", list.join(", ")))));
            }
        }
        Ok(Ok(current.launch_permissions))
    }

    /// Runs the action at `index` unless the journal shows it ended: re-checked when
    /// destructive, journaled before and after its call.
    fn step(&self, index: usize) -> anyhow::Result<()> {
        let action = &self.plan.actions[index];
        if !self.pending(action) {
            self.resumed.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let checked = if matches!(action.op, Op::DeleteSnapshot { .. }) && lock(&self.held).contains(&action.image_id) {
            Err(Hold::Unsafe(format!("deregistering {} did not happen", action.image_id)))
        } else if action.op.is_destructive() {
            self.recheck(index)?
        } else {
            Ok(None)
        };
        let outcome = match checked {
            Err(Hold::Gone) => ActionOutcome::Skipped { reason: format!("{}{GONE}", action.image_id) },
            Err(Hold::Unsafe(why)) => ActionOutcome::Skipped { reason: why },
            Ok(shares) => {
                let shares = shares.filter(|_| matches!(action.op, Op::Disable | Op::Deregister));
                lock(&self.journal).record_start(&action.id, Phase::Start, "", shares)?;
                let outcome = self.backend.execute(action);
                self.backend.commit()?;
                outcome
            }
        };
        let (phase, detail) = match &outcome {
            ActionOutcome::Done { detail } => (Phase::Done, detail.clone()),
            ActionOutcome::Skipped { reason } => (Phase::Skipped, reason.clone()),
            ActionOutcome::Failed { error } => (Phase::Failed, error.clone()),
        };
        if matches!(action.op, Op::Disable | Op::Deregister) && holds(phase, &detail) {
            lock(&self.held).insert(action.image_id.clone());
        }
        lock(&self.journal).record(&action.id, phase, &detail)?;
        (self.progress)(action, &outcome);
        lock(&self.ended)[index] = Some((phase, detail));
        Ok(())
    }

    /// Runs the actions of one phase: each image's actions in plan order, different
    /// images on up to `workers` threads. The first error stops the phase once the calls
    /// in flight are journaled.
    fn phase(&self, range: Range<usize>, workers: usize) -> anyhow::Result<()> {
        let mut lanes: Vec<Range<usize>> = Vec::new();
        for index in range {
            match lanes.last_mut() {
                Some(lane) if self.plan.actions[lane.start].image_id == self.plan.actions[index].image_id => {
                    lane.end = index + 1;
                }
                _ => lanes.push(index..index + 1),
            }
        }
        let next = AtomicUsize::new(0);
        let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        let work = || {
            while lock(&failed).is_none() {
                let Some(lane) = lanes.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                for index in lane.clone() {
                    if let Err(e) = self.step(index) {
                        lock(&failed).get_or_insert(e);
                        return;
                    }
                }
            }
        };
        let threads = workers.clamp(1, lanes.len().max(1));
        if threads == 1 {
            work();
        } else {
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(work);
                }
            });
        }
        match failed.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Executes `plan` after checking it (see `check`), phase by phase in the plan's order
/// (unshares before deregistrations, snapshot deletions after every deregistration, copies
/// before their source retires), with up to `backend.concurrency()` images at once inside
/// a phase. Every call is journaled before and after; actions the journal shows ended
/// (done, skipped or failed) are not repeated.
pub fn apply(
    checks: &Checks<'_>,
    backend: &dyn Backend,
    plan: &Plan,
    journal: &mut Journal,
    progress: &(dyn Fn(&PlannedAction, &ActionOutcome) + Sync),
) -> anyhow::Result<Report> {
    check(checks, plan)?;
    journal.record_plan(plan)?;
    let mut held = BTreeSet::new();
    for action in &plan.actions {
        if action.op == Op::Deregister
            && let Some((phase, detail)) = journal.finished(&action.id)
            && holds(phase, detail)
        {
            held.insert(action.image_id.clone());
        }
    }
    let run = Run {
        checks,
        backend,
        plan,
        journal: Mutex::new(journal),
        fresh: Mutex::new(Fresh::default()),
        held: Mutex::new(held),
        ended: Mutex::new(vec![None; plan.actions.len()]),
        resumed: AtomicUsize::new(0),
        progress,
    };
    let workers = backend.concurrency();
    let phases = (|| {
        let mut start = 0;
        while start < plan.actions.len() {
            let phase = plan.actions[start].op.phase();
            let end = start + plan.actions[start..].iter().take_while(|a| a.op.phase() == phase).count();
            run.phase(start..end, workers)?;
            start = end;
        }
        anyhow::Ok(())
    })();
    // Whatever stopped the phases, what was done is journaled and logged: settle it.
    let finished = backend.finish();
    phases?;
    finished?;
    let mut report = Report { resumed: run.resumed.into_inner(), ..Report::default() };
    for (action, ended) in plan.actions.iter().zip(run.ended.into_inner().unwrap_or_else(|p| p.into_inner())) {
        let Some((phase, detail)) = ended else { continue };
        let entry = (action.id.clone(), detail);
        match phase {
            Phase::Done => report.done.push(entry),
            Phase::Skipped => report.skipped.push(entry),
            _ => report.failed.push(entry),
        }
    }
    Ok(report)
}

/// How a skipped action on an image that no longer exists ends its reason.
const GONE: &str = " no longer exists";

#[cfg(test)]
mod tests;
