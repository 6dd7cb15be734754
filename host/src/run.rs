//! One planning run end to end: collect the inventory, price it, turn the source into
//! events, propose, merge, review and finish the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::backend::Backend;
use crate::config::Policy;
use crate::cost::Pricing;
use crate::error::{GuardrailStop, InputError};
use crate::event::events;
use crate::inventory::Inventory;
use crate::model::{Action, ActionKind, InventoryNeed, Timestamp};
use crate::plan::Plan;
use crate::plugin::{self, Plugin};
use crate::resolve;

pub use crate::plan::Source;

/// The result of a planning run.
pub struct Planned {
    pub plan: Plan,
    pub stop: Option<GuardrailStop>,
    pub notes: Vec<String>,
    pub inventory: Arc<Inventory>,
    pub timings: Timings,
}

/// Where a run's time went, for its record (`--record`): each stage's wall seconds in
/// order, and each plugin's seconds proposing and reviewing.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timings {
    pub stages: Vec<StageSeconds>,
    pub plugins: BTreeMap<String, PluginSeconds>,
}

/// One stage's wall seconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageSeconds {
    pub stage: String,
    pub seconds: f64,
}

/// One plugin's seconds in a run (propose summed over its batches, on every thread).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PluginSeconds {
    pub propose: f64,
    pub review: f64,
}

impl Timings {
    /// Runs `f` as the stage `name`, recording its wall time.
    pub fn stage<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let started = std::time::Instant::now();
        let out = f();
        self.stages.push(StageSeconds { stage: name.to_string(), seconds: millis(started.elapsed().as_secs_f64()) });
        out
    }
}

/// Seconds rounded to the millisecond.
pub fn millis(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// Seconds rounded to the microsecond: a plugin's seconds in a small run, a few calls on
/// pooled stores (~10 µs each), often round to 0 ms, as if it had not been called.
pub fn to_microsecond(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e6
}

/// Collects and prices the inventory of the policy's whole scope.
pub fn collect(policy: &Policy, backend: &dyn Backend, needs: &BTreeSet<InventoryNeed>) -> anyhow::Result<Inventory> {
    collect_scope(policy, &policy.scope, backend, needs)
}

/// Collects and prices the inventory of `scope` (a part of the policy's).
pub fn collect_scope(
    policy: &Policy,
    scope: &crate::config::Scope,
    backend: &dyn Backend,
    needs: &BTreeSet<InventoryNeed>,
) -> anyhow::Result<Inventory> {
    let started = std::time::Instant::now();
    let images = backend.collect(scope, needs)?;
    tracing::info!(
        "inventory: {} image(s) in {} account(s) and {} region(s) of {}, read in {:.2} s",
        images.len(),
        scope.accounts.len(),
        scope.regions.len(),
        backend.name(),
        started.elapsed().as_secs_f64()
    );
    Inventory::new(Pricing::new(&policy.pricing).price_images(images))
        .map_err(|e| InputError(format!("{}: {e}", backend.name())).into())
}

/// The fingerprint of a policy as it runs: its settings (scope, guardrails, pricing,
/// plugins with their grants, config and limits) and the sha256 of every enabled
/// plugin's bytes. A saved plan or a journal is only applied under the same fingerprint.
pub fn policy_fingerprint(policy: &Policy, plugins: &[Plugin]) -> String {
    let mut hasher = Sha256::new();
    // Plugin order does not change a plan, so it does not change the fingerprint.
    let mut canonical = policy.clone();
    canonical.plugins.sort_by(|a, b| a.name.cmp(&b.name));
    hasher.update(serde_json::to_vec(&canonical).unwrap_or_default());
    let mut shas: Vec<(&str, &str)> = plugins.iter().map(|p| (&*p.name, p.sha256.as_str())).collect();
    shas.sort();
    for (name, sha) in shas {
        hasher.update(format!("\n{name}={sha}").as_bytes());
    }
    crate::model::id::stable_id("pol", &hasher.finalize(), 32)
}

/// Plans one run.
pub fn plan(
    policy: &Policy,
    plugins: &[Plugin],
    backend: &dyn Backend,
    source: &Source,
    now: Timestamp,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<Planned> {
    let needs = plugin::needs(policy, plugins);
    let scope = crate::event::collection_scope(policy, source);
    let mut timings = Timings::default();
    let inventory = Arc::new(timings.stage("inventory", || collect_scope(policy, &scope, backend, &needs))?);
    let mut planned = plan_on(policy, plugins, inventory, source, now, progress)?;
    timings.stages.append(&mut planned.timings.stages);
    planned.timings.stages = timings.stages;
    Ok(planned)
}

/// Plans one run on an inventory already collected.
pub fn plan_on(
    policy: &Policy,
    plugins: &[Plugin],
    inventory: Arc<Inventory>,
    source: &Source,
    now: Timestamp,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<Planned> {
    let mut timings = Timings::default();
    let (events, notes) = events(policy, &inventory, source, now)?;
    let total = (events.len(&inventory) * plugins.len()) as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let tick = |n: u64| {
        let d = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        progress(d, total);
    };
    // The inventory's fingerprint (the plan records it) is hashed beside the plugins' work.
    let ((), mut proposals) = rayon::join(
        || {
            inventory.fingerprint();
        },
        || timings.stage("propose", || plugin::propose(policy, plugins, &inventory, &events, now, &tick)),
    );
    let pricing = Pricing::new(&policy.pricing);
    let merged = timings.stage("merge", || {
        let proposed = std::mem::take(&mut proposals.proposed);
        let mut merged = resolve::merge(policy, &inventory, &pricing, proposed, &proposals.failures, now);
        resolve::order_candidates(&mut merged.candidates);
        merged
    });
    let priced = resolve::priced_plan(&inventory, &merged.candidates, now);
    let reviewed = timings.stage("review", || plugin::review(plugins, &inventory, &priced, now));
    for (plugin, seconds) in &proposals.seconds {
        timings.plugins.entry(plugin.clone()).or_default().propose = to_microsecond(*seconds);
    }
    for (plugin, seconds) in &reviewed.seconds {
        timings.plugins.entry(plugin.clone()).or_default().review = to_microsecond(*seconds);
    }
    let mut errors = proposals.failures;
    errors.extend(reviewed.failures);
    let verdicts = reviewed.verdicts;
    let (mut plan, stop) =
        timings.stage("finish", || resolve::finish(policy, &inventory, &pricing, merged, &verdicts, errors, now));
    plan.inventory_needs = plugin::needs(policy, plugins);
    plan.source = source.clone();
    plan.policy_fingerprint = policy_fingerprint(policy, plugins);
    Ok(Planned { plan, stop, notes, inventory, timings })
}

/// Asks the plugins again about `image_ids` (as a scheduled run would, on the inventory
/// of now) and returns the ones a granted plugin retains or fails on, with why: right
/// before an apply, whatever the plan came from, `retain` and fail-closed still win.
pub fn retained(
    policy: &Policy,
    plugins: &[Plugin],
    inventory: &Arc<Inventory>,
    image_ids: &BTreeSet<String>,
    now: Timestamp,
) -> BTreeMap<String, String> {
    let events = crate::event::Events::Listed(
        image_ids
            .iter()
            .filter_map(|id| inventory.get(id))
            .map(|image| crate::event::scheduled_event(image, now))
            .collect(),
    );
    let proposals = plugin::propose(policy, plugins, inventory, &events, now, &|_| {});
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for p in &proposals.proposed {
        let granted = policy.plugins.iter().any(|e| e.name == p.plugin && e.grants.contains(&ActionKind::Retain));
        if p.proposal.action == Action::Retain && granted && image_ids.contains(&p.proposal.image_id) {
            out.entry(p.proposal.image_id.clone())
                .or_insert_with(|| format!("retained by {} ({})", p.plugin, p.proposal.reason));
        }
    }
    for f in &proposals.failures {
        if let Some(image) = f.image.as_ref().filter(|i| image_ids.contains(*i)) {
            out.entry(image.clone()).or_insert_with(|| format!("{f}; destructive actions on it are blocked"));
        }
    }
    out
}
