//! One planning run end to end: collect the inventory, price it, turn the source into
//! events, propose, merge, review and finish the plan.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::backend::Backend;
use crate::config::Policy;
use crate::cost::Pricing;
use crate::engine::{self, LoadedPlugin};
use crate::event::{Parsed, SourceEvent};
use crate::inventory::Inventory;
use crate::model::{EventKind, Image, ImageEvent, InventoryNeed, Timestamp};
use crate::plan::Plan;
use crate::resolve::{self, GuardrailStop};

/// Bad input from outside (policy, event, plan or state file, plugin): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// What a run evaluates.
#[derive(Debug, Clone)]
pub enum Source {
    /// Every image in scope.
    Scheduled,
    /// One EventBridge event; `origin` names its file.
    Event { text: String, origin: String },
}

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
    Ok(Inventory::new(price_images(policy, images)))
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
                            Ok(image) => {
                                out.push(ImageEvent { kind: e.kind, image, evaluation_time: now, raw: text.clone() })
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

fn event_image(policy: &Policy, inventory: &Inventory, e: &SourceEvent) -> Result<Image, String> {
    if !policy.scope.accounts.contains(&e.account) || !policy.scope.regions.contains(&e.region) {
        return Err(format!("{} in {}/{} is outside the policy's scope; ignored", e.image_id, e.account, e.region));
    }
    let known = inventory.get(&e.image_id);
    match (&e.kind, known) {
        (EventKind::Deregistered, known) => Ok(engine::gone_image(known, &e.account, &e.region, &e.image_id)),
        (_, Some(image)) => Ok(image.clone()),
        (_, None) => {
            Err(format!("{} is not in {}/{} (gone since the event?); ignored", e.image_id, e.account, e.region))
        }
    }
}

/// The inventory without the images the events say are deregistered: EC2 has
/// forgotten them even if a lagging read still lists them.
pub fn without_gone(inventory: Inventory, events: &[ImageEvent]) -> Inventory {
    let gone: BTreeSet<&str> =
        events.iter().filter(|e| e.kind == EventKind::Deregistered).map(|e| e.image.id.as_str()).collect();
    if gone.is_empty() || !inventory.images().iter().any(|i| gone.contains(i.id.as_str())) {
        return inventory;
    }
    Inventory::new(inventory.images().iter().filter(|i| !gone.contains(i.id.as_str())).cloned().collect())
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
    let inventory = match Arc::try_unwrap(inventory) {
        Ok(inv) => Arc::new(without_gone(inv, &events)),
        Err(shared) => shared,
    };
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
    Ok(Outcome { plan, stop, notes, inventory })
}
