//! Apply: executes a plan in its safe order through a backend. Before the first call the
//! host's guardrails are checked on the whole plan, whatever it came from; each image is
//! re-read before a destructive call; a JSON-lines journal is written before and after
//! every call so an interrupted run resumes without losing or repeating an action.

mod journal;
mod lock;
pub mod saved;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use journal::{Binding, Journal, JournalEntry, Phase, Unfinished, default_path, plan_id, run_id, unfinished_plan};
pub use lock::Lock;

use crate::backend::{ActionOutcome, Backend};
use crate::config::Policy;
use crate::error::GuardrailStop;
use crate::inventory::Inventory;
use crate::model::{Image, Location, Timestamp};
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

/// How many images one re-read covers before disables and deregistrations.
pub const RECHECK_BATCH: usize = 20;

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
                "  {} {} {} in {}/{}: {}",
                a.id,
                a.op.verb(),
                a.image_id,
                a.account,
                a.region,
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

/// Before the disable or deregistration at `index`, re-reads its image together with
/// those of the next unfinished ones in the same account and region, in one batch: the
/// re-read then costs a few calls per batch instead of per action, so the Describe*
/// bucket does not pace a large apply. An image read this way is at most one batch old.
fn prefetch(
    backend: &dyn Backend,
    plan: &Plan,
    index: usize,
    journal: &Journal,
    fresh: &mut BTreeMap<String, Option<Image>>,
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

/// Why a destructive action must not run now, if so.
enum Hold {
    /// The image is already gone: a deregistration needs nothing, and its snapshots may go.
    Gone,
    /// It is no longer safe: skipped, and the image's snapshot deletions with it.
    Unsafe(String),
}

/// Re-checks a destructive action against EC2 as it is now.
fn recheck(
    checks: &Checks<'_>,
    backend: &dyn Backend,
    plan: &Plan,
    action: &PlannedAction,
    fresh: &mut BTreeMap<String, Option<Image>>,
) -> anyhow::Result<Option<Hold>> {
    let location = Location { account: action.account.clone(), region: action.region.clone() };
    if let Op::DeleteSnapshot { snapshot_id } = &action.op {
        // Any image at all: by now the plan has deregistered the images it deletes the
        // snapshot for, so a user left (the image itself, if its deregistration did not
        // happen, or another image) means the snapshot stays.
        if backend.snapshot_in_use(&location, snapshot_id)? {
            return Ok(Some(Hold::Unsafe(format!("{snapshot_id} is still used by an image"))));
        }
        return Ok(None);
    }
    if let Some(why) = checks.retained.get(&action.image_id) {
        return Ok(Some(Hold::Unsafe(why.clone())));
    }
    let current = match fresh.remove(&action.image_id) {
        Some(read) => read,
        None => backend.refresh_many(&location, std::slice::from_ref(&action.image_id))?.pop().and_then(|(_, i)| i),
    };
    let Some(current) = current else {
        return Ok(Some(Hold::Gone));
    };
    let policy = checks.policy;
    if policy.guardrails.protect_in_use
        && let Some(why) = crate::resolve::in_use_reason(&current, policy, checks.now)
    {
        return Ok(Some(Hold::Unsafe(format!("image is now {why}"))));
    }
    if let (Some(before), Some(after)) = (
        checks.planned.get(&action.image_id).and_then(|i| i.launch_permissions.as_ref()),
        current.launch_permissions.as_ref(),
    ) {
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
            return Ok(Some(Hold::Unsafe(format!("image was shared with {} since the plan", list.join(", ")))));
        }
    }
    Ok(None)
}

/// Executes `plan` in order after checking it (see `check`). Every call is journaled
/// before and after; actions the journal shows ended (done, skipped or failed) are not
/// repeated.
pub fn apply(
    checks: &Checks<'_>,
    backend: &dyn Backend,
    plan: &Plan,
    journal: &mut Journal,
    progress: &dyn Fn(&PlannedAction, &ActionOutcome),
) -> anyhow::Result<Report> {
    check(checks, plan)?;
    journal.record_plan(plan)?;
    let mut report = Report::default();
    // Images whose disable or deregistration did not happen for a reason other than the
    // image being gone: their snapshot deletions are skipped.
    let mut held: BTreeSet<&str> = BTreeSet::new();
    for action in &plan.actions {
        if action.op == Op::Deregister
            && let Some((phase, detail)) = journal.finished(&action.id)
            && (phase == Phase::Failed || (phase == Phase::Skipped && !detail.ends_with(GONE)))
        {
            held.insert(action.image_id.as_str());
        }
    }
    let mut fresh: BTreeMap<String, Option<Image>> = BTreeMap::new();
    for (index, action) in plan.actions.iter().enumerate() {
        if journal.finished(&action.id).is_some() {
            report.resumed += 1;
            continue;
        }
        let hold = if matches!(action.op, Op::DeleteSnapshot { .. }) && held.contains(action.image_id.as_str()) {
            Some(Hold::Unsafe(format!("deregistering {} did not happen", action.image_id)))
        } else if action.op.is_destructive() {
            prefetch(backend, plan, index, journal, &mut fresh)?;
            recheck(checks, backend, plan, action, &mut fresh)?
        } else {
            None
        };
        let outcome = match hold {
            Some(Hold::Gone) => ActionOutcome::Skipped { reason: format!("{}{GONE}", action.image_id) },
            Some(Hold::Unsafe(why)) => ActionOutcome::Skipped { reason: why },
            None => {
                journal.record(&action.id, Phase::Start, "")?;
                let outcome = backend.execute(action);
                backend.commit()?;
                outcome
            }
        };
        let (phase, detail) = match &outcome {
            ActionOutcome::Done { detail } => (Phase::Done, detail.clone()),
            ActionOutcome::Skipped { reason } => (Phase::Skipped, reason.clone()),
            ActionOutcome::Failed { error } => (Phase::Failed, error.clone()),
        };
        if matches!(action.op, Op::Disable | Op::Deregister)
            && (phase == Phase::Failed || (phase == Phase::Skipped && !detail.ends_with(GONE)))
        {
            held.insert(action.image_id.as_str());
        }
        journal.record(&action.id, phase, &detail)?;
        progress(action, &outcome);
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
