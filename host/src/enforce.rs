//! One enforcement, shared by `amiwarden apply` and the service: under the journal's
//! and the state's locks, the plan to apply — the one an interrupted apply left in the
//! journal, a saved file, or one computed now — checked the same way on every path,
//! then applied.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::apply::{self, Binding, Checks, Journal, Lock, Report};
use crate::backend::{ActionOutcome, Backend};
use crate::config::Policy;
use crate::error::GuardrailStop;
use crate::inventory::Inventory;
use crate::model::Timestamp;
use crate::plan::{Op, Plan, PlannedAction, Source};
use crate::plugin::Plugin;

/// The locks an apply holds from start to end: its journal, and the sim state it
/// changes (AWS keeps its own state). Released on drop or when the process ends.
#[derive(Debug)]
pub struct Locks {
    _journal: Lock,
    _state: Option<Lock>,
}

/// The lock file of a journal or state file: beside it, with `.lock` added.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

/// Takes the locks, waiting up to `wait` for another holder, or fails naming the holder
/// (`Busy`). The CLI waits not at all: a second apply is refused at once.
pub fn lock(backend: &dyn Backend, journal: &Path, wait: std::time::Duration) -> anyhow::Result<Locks> {
    let journal = Lock::acquire_within(&lock_path(journal), "journal", wait)?;
    let state = match backend.state_file() {
        Some(state) => Some(Lock::acquire_within(&lock_path(state), &backend.name(), wait)?),
        None => None,
    };
    // Under the lock, the state is read afresh: another process may have changed it.
    backend.reload()?;
    Ok(Locks { _journal: journal, _state: state })
}

/// Where the plan comes from when the journal holds no interrupted one.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// Plan `source` now.
    Fresh(&'a Source),
    /// A plan file: applied only if it is what the policy plans now (`apply::saved`).
    Saved(&'a Path),
}

/// A plan ready to apply: checked, with what it was checked against.
pub struct Prepared {
    pub plan: Plan,
    /// The plan's id (`apply::plan_id`), computed once: it hashes every action.
    pub plan_id: String,
    pub inventory: Arc<Inventory>,
    pub journal: Journal,
    /// Images plugins retain (or fail on) now: no destructive action touches them.
    pub retained: BTreeMap<String, String>,
    /// Set when the plan is an interrupted one resumed from the journal: the actions
    /// that failed in that run (final, not retried).
    pub resumed: Option<Vec<(String, String)>>,
    /// Notes from planning (ignored or contradicted events).
    pub notes: Vec<String>,
    /// Why a guardrail stopped a fresh plan: it is shown, never applied.
    pub stop: Option<GuardrailStop>,
    /// Where planning's time went (empty for a saved or resumed plan).
    pub timings: crate::run::Timings,
}

/// Finds or makes the plan and checks it: the guardrails on the whole plan and the
/// plugins' `retain` on what it would destroy, as of `now`. Call under `lock`.
pub fn prepare(
    policy: &Policy,
    plugins: &[Plugin],
    backend: &dyn Backend,
    journal_path: &Path,
    origin: Origin<'_>,
    now: Timestamp,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<Prepared> {
    let binding = Binding { backend: backend.identity(), policy: crate::run::policy_fingerprint(policy, plugins) };
    let collect = |source: &Source| -> anyhow::Result<Arc<Inventory>> {
        let scope = crate::event::collection_scope(policy, source);
        Ok(Arc::new(crate::run::collect_scope(policy, &scope, backend, &crate::plugin::needs(policy, plugins))?))
    };
    let unfinished = match origin {
        Origin::Fresh(_) => apply::unfinished_plan(journal_path)?,
        Origin::Saved(_) => None,
    };
    let mut unplanned = BTreeMap::new();
    let (plan, plan_id, inventory, journal, resumed, notes, stop, timings) = match (origin, unfinished) {
        (Origin::Saved(path), _) => {
            let plan = apply::saved::read(path)?;
            let plan_id = apply::plan_id(&plan);
            let journal = Journal::open(journal_path, &plan_id, binding)?;
            let (inventory, resumed) = if journal.is_resume() {
                // Resumed, it is not checked against a fresh plan as a first apply is:
                // what that plan no longer holds is held as for a journal's own plan.
                let inventory = collect(&plan.source)?;
                unplanned = no_longer_planned(policy, plugins, &inventory, &plan, &journal, now)?;
                (inventory, Some(Vec::new()))
            } else {
                (apply::saved::check(policy, plugins, backend, &plan, path, now)?, None)
            };
            (plan, plan_id, inventory, journal, resumed, Vec::new(), None, Default::default())
        }
        (Origin::Fresh(_), Some(unfinished)) => {
            let journal = Journal::open(journal_path, &unfinished.run_id, binding)?;
            let inventory = collect(&unfinished.plan.source)?;
            unplanned = no_longer_planned(policy, plugins, &inventory, &unfinished.plan, &journal, now)?;
            let resumed = Some(unfinished.failed);
            (unfinished.plan, unfinished.plan_id, inventory, journal, resumed, Vec::new(), None, Default::default())
        }
        (Origin::Fresh(source), None) => {
            let planned = crate::run::plan(policy, plugins, backend, source, now, progress)?;
            let plan_id = apply::plan_id(&planned.plan);
            let journal = Journal::open(journal_path, &apply::run_id(&plan_id), binding)?;
            (planned.plan, plan_id, planned.inventory, journal, None, planned.notes, planned.stop, planned.timings)
        }
    };
    let destroyed = apply::destroyed_images(&plan, &journal);
    let mut retained = crate::run::retained(policy, plugins, &inventory, &destroyed, now);
    for (image, why) in unplanned {
        retained.entry(image).or_insert(why);
    }
    let prepared = Prepared { plan, plan_id, inventory, journal, retained, resumed, notes, stop, timings };
    if prepared.stop.is_none() {
        apply::check(&prepared.checks(policy, now), &prepared.plan)?;
    }
    Ok(prepared)
}

/// The images of `plan` (an interrupted one, resumed: a journal's or a saved file's)
/// whose pending disable or deregistration the policy would not plan on `inventory`
/// (read now), with why. The plan
/// was made before the interruption, and what made an image expendable may have changed
/// since: a newer image of its family gone (so it is among the newest kept now), a
/// reviewer that vetoes it now, a guardrail it meets now. The resumed run holds those, as
/// a saved plan is refused unless planned again the same (`apply::saved`). Images gone
/// from the inventory are left to the apply's re-read (gone: skipped, their snapshots
/// deleted).
fn no_longer_planned(
    policy: &Policy,
    plugins: &[Plugin],
    inventory: &Arc<Inventory>,
    plan: &Plan,
    journal: &Journal,
    now: Timestamp,
) -> anyhow::Result<BTreeMap<String, String>> {
    let key = |a: &PlannedAction| (a.location.to_string(), a.image_id.clone(), a.op.clone());
    let pending: Vec<&PlannedAction> = plan
        .actions
        .iter()
        .filter(|a| matches!(a.op, Op::Disable | Op::Deregister) && journal.finished(&a.id).is_none())
        .filter(|a| inventory.get(&a.image_id).is_some())
        .collect();
    if pending.is_empty() {
        return Ok(BTreeMap::new());
    }
    let again = crate::run::plan_on(policy, plugins, Arc::clone(inventory), &plan.source, now, &|_, _| {})?;
    let planned: BTreeSet<_> = again.plan.actions.iter().map(key).collect();
    let mut out = BTreeMap::new();
    for a in pending.into_iter().filter(|a| !planned.contains(&key(a))) {
        let refused = again.plan.refused.iter().find(|r| r.image_id == a.image_id && r.action.kind().is_destructive());
        let refused = refused.map(|r| r.reason.clone());
        let kept = again.plan.kept.iter().find(|k| k.image_id == a.image_id).map(|k| k.reasons.join("; "));
        let why = refused.or(kept).unwrap_or_else(|| "no plugin proposes it any more".into());
        out.entry(a.image_id.clone()).or_insert_with(|| {
            format!("the policy no longer plans to {} it on the inventory of now ({why})", a.op.verb())
        });
    }
    Ok(out)
}

impl Prepared {
    /// What the apply checks against.
    pub fn checks<'a>(&'a self, policy: &'a Policy, now: Timestamp) -> Checks<'a> {
        Checks { policy, planned: &self.inventory, retained: self.retained.clone(), now }
    }

    /// Applies the plan (checked once more), journaling every call.
    pub fn execute(
        &mut self,
        policy: &Policy,
        backend: &dyn Backend,
        now: Timestamp,
        progress: &(dyn Fn(&PlannedAction, &ActionOutcome) + Sync),
    ) -> anyhow::Result<Report> {
        if let Some(stop) = &self.stop {
            return Err(stop.clone().into());
        }
        let checks = Checks { policy, planned: &self.inventory, retained: self.retained.clone(), now };
        apply::apply(&checks, backend, &self.plan, &mut self.journal, progress)
    }
}
