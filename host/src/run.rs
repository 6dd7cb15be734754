//! One planning run end to end: collect the inventory, price it, turn the source into
//! events, propose, merge, review and finish the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::backend::Backend;
use crate::config::Policy;
use crate::cost::Pricing;
use crate::engine::{self, LoadedPlugin};
use crate::event::{Parsed, SourceEvent};
use crate::inventory::Inventory;
use crate::model::{Action, ActionKind, EventKind, Image, ImageEvent, ImageState, InventoryNeed, Timestamp};
use crate::plan::Plan;
use crate::resolve::{self, GuardrailStop};

/// Bad input from outside (policy, event, plan or state file, plugin): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

pub use crate::plan::Source;

/// The result of a planning run.
pub struct Outcome {
    pub plan: Plan,
    pub stop: Option<GuardrailStop>,
    pub notes: Vec<String>,
    pub inventory: Arc<Inventory>,
}

/// Collects and prices the inventory.
pub fn collect(policy: &Policy, backend: &dyn Backend, needs: &BTreeSet<InventoryNeed>) -> anyhow::Result<Inventory> {
    let images = backend.collect(&policy.scope, needs)?;
    Inventory::new(price_images(policy, images)).map_err(|e| InputError(format!("{}: {e}", backend.name())).into())
}

/// Fills each image's monthly cost; a snapshot shared by several images is split evenly.
pub fn price_images(policy: &Policy, mut images: Vec<Image>) -> Vec<Image> {
    let pricing = Pricing::new(&policy.pricing);
    let mut users: std::collections::BTreeMap<(String, String, String), i64> = Default::default();
    for image in &images {
        for snap in image.snapshot_ids() {
            *users.entry((image.account.clone(), image.region.clone(), snap.to_string())).or_default() += 1;
        }
    }
    for image in &mut images {
        image.monthly_cost = image
            .block_devices
            .iter()
            .map(|d| {
                let n = d
                    .snapshot_id
                    .as_ref()
                    .and_then(|s| users.get(&(image.account.clone(), image.region.clone(), s.clone())))
                    .copied()
                    .unwrap_or(1)
                    .max(1);
                pricing.snapshot_monthly(&image.region, d) / n
            })
            .sum();
    }
    images
}

/// The events a source turns into, with notes on what was ignored.
pub fn events(
    policy: &Policy,
    inventory: &Inventory,
    source: &Source,
    now: Timestamp,
) -> Result<(Vec<ImageEvent>, Vec<String>), InputError> {
    match source {
        Source::Scheduled => Ok((engine::scheduled_events(inventory, now), Vec::new())),
        Source::Event { text, origin } => {
            let parsed = crate::event::parse(text).map_err(|e| InputError(format!("event {origin}: {e}")))?;
            let mut notes = Vec::new();
            let mut out = Vec::new();
            match parsed {
                Parsed::Ignored(note) => notes.push(format!("event {origin}: {note}")),
                Parsed::Events(list) => {
                    for e in list {
                        match event_image(policy, inventory, &e) {
                            Ok((kind, image, note)) => {
                                notes.extend(note.map(|n| format!("event {origin}: {n}")));
                                out.push(ImageEvent { kind, image, evaluation_time: now, raw: text.clone() })
                            }
                            Err(note) => notes.push(format!("event {origin}: {note}")),
                        }
                    }
                }
            }
            Ok((out, notes))
        }
    }
}

/// The image an event is about, as the inventory shows it now: the event is a hint to
/// look, EC2 is the truth. An event that disagrees with the inventory (an image said to
/// be deregistered or disabled that EC2 still lists otherwise) is noted and the image is
/// judged as a scheduled run would judge it.
fn event_image(
    policy: &Policy,
    inventory: &Inventory,
    e: &SourceEvent,
) -> Result<(EventKind, Image, Option<String>), String> {
    if !policy.scope.accounts.contains(&e.account) || !policy.scope.regions.contains(&e.region) {
        return Err(format!("{} in {}/{} is outside the policy's scope; ignored", e.image_id, e.account, e.region));
    }
    let known = inventory.get(&e.image_id).filter(|i| i.account == e.account && i.region == e.region);
    match (&e.kind, known) {
        (EventKind::Deregistered, None) => {
            Ok((EventKind::Deregistered, engine::gone_image(None, &e.account, &e.region, &e.image_id), None))
        }
        (EventKind::Deregistered, Some(image)) => Ok((
            EventKind::Scheduled,
            image.clone(),
            Some(format!("it says {} was deregistered, but EC2 still lists it; judged as EC2 shows it", e.image_id)),
        )),
        (EventKind::Disabled, Some(image)) if image.state != ImageState::Disabled => Ok((
            EventKind::Scheduled,
            image.clone(),
            Some(format!("it says {} was disabled, but EC2 shows it enabled; judged as EC2 shows it", e.image_id)),
        )),
        (kind, Some(image)) => Ok((kind.clone(), image.clone(), None)),
        (_, None) => {
            Err(format!("{} is not in {}/{} (gone since the event?); ignored", e.image_id, e.account, e.region))
        }
    }
}

/// The fingerprint of a policy as it runs: its settings (scope, guardrails, pricing,
/// plugins with their grants, config and limits) and the sha256 of every enabled
/// plugin's bytes. A saved plan or a journal is only applied under the same fingerprint.
pub fn policy_fingerprint(policy: &Policy, plugins: &[LoadedPlugin]) -> String {
    let mut hasher = Sha256::new();
    // Plugin order does not change a plan, so it does not change the fingerprint.
    let mut canonical = policy.clone();
    canonical.plugins.sort_by(|a, b| a.name.cmp(&b.name));
    hasher.update(serde_json::to_vec(&canonical).unwrap_or_default());
    let mut shas: Vec<(&str, &str)> = plugins.iter().map(|p| (p.name(), p.plugin.sha256.as_str())).collect();
    shas.sort();
    for (name, sha) in shas {
        hasher.update(format!("\n{name}={sha}").as_bytes());
    }
    format!("pol-{}", &hex::encode(hasher.finalize())[..32])
}

/// Plans one run.
pub fn plan(
    policy: &Policy,
    plugins: &[LoadedPlugin],
    backend: &dyn Backend,
    source: &Source,
    now: Timestamp,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<Outcome> {
    let needs = engine::needs(plugins);
    let inventory = Arc::new(collect(policy, backend, &needs)?);
    plan_on(policy, plugins, inventory, source, now, progress)
}

/// Plans one run on an inventory already collected.
pub fn plan_on(
    policy: &Policy,
    plugins: &[LoadedPlugin],
    inventory: Arc<Inventory>,
    source: &Source,
    now: Timestamp,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<Outcome> {
    let (events, notes) = events(policy, &inventory, source, now)?;
    let total = (events.len() * plugins.len()) as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let tick = |n: u64| {
        let d = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        progress(d, total);
    };
    let proposals = engine::propose(policy, plugins, &inventory, &events, now, &tick);
    let pricing = Pricing::new(&policy.pricing);
    let mut merged = resolve::merge(policy, &inventory, &pricing, &proposals.proposed, &proposals.failures, now);
    resolve::order_candidates(&mut merged.candidates);
    let priced = resolve::priced_plan(&inventory, &merged.candidates, now);
    let (verdicts, review_failures) = engine::review(plugins, &inventory, &priced, now);
    let mut errors = proposals.failures;
    errors.extend(review_failures);
    let (mut plan, stop) = resolve::finish(policy, &inventory, &pricing, merged, &verdicts, errors, now);
    plan.inventory_needs = engine::needs(plugins);
    plan.source = source.clone();
    plan.policy_fingerprint = policy_fingerprint(policy, plugins);
    Ok(Outcome { plan, stop, notes, inventory })
}

/// Asks the plugins again about `image_ids` (as a scheduled run would, on the inventory
/// of now) and returns the ones a granted plugin retains or fails on, with why: right
/// before an apply, whatever the plan came from, `retain` and fail-closed still win.
pub fn retained(
    policy: &Policy,
    plugins: &[LoadedPlugin],
    inventory: &Arc<Inventory>,
    image_ids: &BTreeSet<String>,
    now: Timestamp,
) -> BTreeMap<String, String> {
    let events: Vec<ImageEvent> = image_ids
        .iter()
        .filter_map(|id| inventory.get(id))
        .map(|image| ImageEvent {
            kind: EventKind::Scheduled,
            image: image.clone(),
            evaluation_time: now,
            raw: String::new(),
        })
        .collect();
    let proposals = engine::propose(policy, plugins, inventory, &events, now, &|_| {});
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
