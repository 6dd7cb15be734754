//! Runs the plugins: propose on every event and review of the priced candidates, in
//! parallel on every core, with results independent of scheduling.

use std::collections::BTreeSet;
use std::sync::Arc;

use rayon::prelude::*;

use crate::config::{PluginEntry, Policy};
use crate::inventory::Inventory;
use crate::model::{
    Action, ActionKind, EventKind, Image, ImageEvent, ImageState, InventoryNeed, Proposal, Timestamp, Verdict,
};
use crate::plugin::{Plugin, PluginError, PluginFailure, PluginSpec, Runtime, Stage, wit};

/// A loaded plugin with what the policy file grants it.
pub struct LoadedPlugin {
    pub plugin: Plugin,
    pub grants: BTreeSet<ActionKind>,
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.plugin.name
    }
}

/// A proposal with the plugin that made it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Proposed {
    pub plugin: String,
    pub proposal: Proposal,
}

/// Everything the propose stage produced.
#[derive(Debug, Default)]
pub struct Proposals {
    pub proposed: Vec<Proposed>,
    pub failures: Vec<PluginError>,
}

/// Resolves a plugin entry's bytes: a built-in or a file next to the policy.
pub fn plugin_bytes(policy: &Policy, entry: &PluginEntry) -> anyhow::Result<Vec<u8>> {
    if let Some(name) = entry.source.strip_prefix("builtin:") {
        return crate::builtin::get(name).map(<[u8]>::to_vec).ok_or_else(|| {
            anyhow::anyhow!(
                "plugin `{}`: no built-in plugin named `{name}` (built-ins: {})",
                entry.name,
                crate::builtin::NAMES.join(", ")
            )
        });
    }
    let path = policy.plugin_path(entry);
    std::fs::read(&path).map_err(|e| anyhow::anyhow!("plugin `{}`: cannot read {}: {e}", entry.name, path.display()))
}

/// Loads every enabled plugin of the policy; the first failure stops the run.
pub fn load_plugins(runtime: &Runtime, policy: &Policy) -> anyhow::Result<Vec<LoadedPlugin>> {
    let entries: Vec<&PluginEntry> = policy.plugins.iter().filter(|p| p.enabled).collect();
    if entries.is_empty() {
        return Err(crate::run::InputError(
            "the policy has no enabled [[plugin]] table: nothing would decide anything (a truncated file?)".into(),
        )
        .into());
    }
    entries
        .par_iter()
        .map(|entry| {
            let bytes = plugin_bytes(policy, entry)?;
            let spec = PluginSpec {
                name: entry.name.clone(),
                origin: entry.source.clone(),
                sha256: entry.sha256.clone(),
                limits: entry.limits.clone(),
                data_dir: entry.data_dir.as_ref().map(|d| policy.base_dir.join(d)),
                config: entry.config_json(),
            };
            let plugin = runtime.load(&bytes, spec)?;
            Ok(LoadedPlugin { plugin, grants: entry.grants.clone() })
        })
        .collect()
}

/// The inventory data the plugins need, united.
pub fn needs(plugins: &[LoadedPlugin]) -> BTreeSet<InventoryNeed> {
    plugins.iter().flat_map(|p| p.plugin.info.needs.iter().copied()).collect()
}

/// A scheduled event for every image.
pub fn scheduled_events(inventory: &Inventory, now: Timestamp) -> Vec<ImageEvent> {
    inventory
        .images()
        .iter()
        .map(|image| ImageEvent {
            kind: EventKind::Scheduled,
            image: image.clone(),
            evaluation_time: now,
            raw: String::new(),
        })
        .collect()
}

/// An event about an image that is gone: the last known image or a minimal stand-in.
pub fn gone_image(known: Option<&Image>, account: &str, region: &str, image_id: &str) -> Image {
    let mut image = known.cloned().unwrap_or_else(|| Image {
        id: image_id.to_string(),
        account: account.to_string(),
        region: region.to_string(),
        name: String::new(),
        description: String::new(),
        creation_time: Timestamp(0),
        state: ImageState::Deregistered,
        architecture: crate::model::Architecture::X86_64,
        platform: Default::default(),
        root_device_type: Default::default(),
        launch_permissions: None,
        tags: Default::default(),
        block_devices: Vec::new(),
        deprecation_time: None,
        source_image_id: None,
        source_region: None,
        usage: Default::default(),
        monthly_cost: 0,
    });
    image.state = ImageState::Deregistered;
    image
}

/// Checks what the host can only check with the policy and inventory in hand: every
/// proposal names an image of the inventory (a proposal for an image outside the scope
/// or unknown is malformed, never silently dropped) and copy targets are in scope.
fn check_scope(policy: &Policy, inventory: &Inventory, proposals: &[Proposal]) -> Result<(), String> {
    for p in proposals {
        if inventory.get(&p.image_id).is_none() {
            return Err(format!(
                "proposed {} for {}, which is not in the inventory (outside the policy's scope, or unknown)",
                p.action.kind(),
                p.image_id
            ));
        }
        if let Action::CopyToRegion(c) = &p.action
            && !policy.scope.regions.contains(&c.region)
        {
            return Err(format!(
                "copy target {} is outside the policy's scope ({})",
                c.region,
                policy.scope.regions.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(())
}

/// Runs `propose` of every plugin on every event. Work is split into fixed batches
/// (per plugin, `limits.batch` events each) so results do not depend on scheduling.
pub fn propose(
    policy: &Policy,
    plugins: &[LoadedPlugin],
    inventory: &Arc<Inventory>,
    events: &[ImageEvent],
    now: Timestamp,
    progress: &(dyn Fn(u64) + Sync),
) -> Proposals {
    let wit_events: Vec<wit::ImageEvent> = events.par_iter().map(wit::ImageEvent::from).collect();
    let tasks: Vec<(usize, usize)> = plugins
        .iter()
        .enumerate()
        .flat_map(|(p, lp)| (0..wit_events.len()).step_by(lp.plugin.limits.batch.max(1)).map(move |start| (p, start)))
        .collect();
    let results: Vec<Proposals> = tasks
        .par_iter()
        .map(|&(p, start)| {
            let lp = &plugins[p];
            let end = (start + lp.plugin.limits.batch.max(1)).min(wit_events.len());
            let mut out = Proposals::default();
            let mut session = None;
            for event in &wit_events[start..end] {
                if session.is_none() {
                    match lp.plugin.session(Arc::clone(inventory), now) {
                        Ok(s) => session = Some(s),
                        Err(mut e) => {
                            e.image = Some(event.image.id.clone());
                            out.failures.push(e);
                            continue;
                        }
                    }
                }
                let Some(s) = session.as_mut() else { continue };
                match s.propose(event).and_then(|ps| {
                    check_scope(policy, inventory, &ps).map(|()| ps).map_err(|m| PluginError {
                        plugin: lp.name().to_string(),
                        stage: Stage::Propose,
                        image: Some(event.image.id.clone()),
                        failure: PluginFailure::Malformed(m),
                    })
                }) {
                    Ok(ps) => out
                        .proposed
                        .extend(ps.into_iter().map(|proposal| Proposed { plugin: lp.name().to_string(), proposal })),
                    Err(e) => {
                        // A trap can leave the instance unusable: the next event gets a fresh one.
                        if !matches!(e.failure, PluginFailure::Malformed(_) | PluginFailure::Policy(..)) {
                            session = None;
                        }
                        out.failures.push(e);
                    }
                }
            }
            progress((end - start) as u64);
            out
        })
        .collect();
    let mut all = Proposals::default();
    for r in results {
        all.proposed.extend(r.proposed);
        all.failures.extend(r.failures);
    }
    all.proposed.sort();
    all.proposed.dedup();
    all.failures.sort_by(|a, b| (&a.plugin, &a.image, a.stage).cmp(&(&b.plugin, &b.image, b.stage)));
    all
}

/// Runs `review` of every plugin on the priced candidates; returns verdicts by plugin.
pub fn review(
    plugins: &[LoadedPlugin],
    inventory: &Arc<Inventory>,
    plan: &wit::PricedPlan,
    now: Timestamp,
) -> (Vec<(String, Verdict)>, Vec<PluginError>) {
    let results: Vec<Result<Vec<Verdict>, PluginError>> = plugins
        .par_iter()
        .map(|lp| lp.plugin.session(Arc::clone(inventory), now).and_then(|mut s| s.review(plan)))
        .collect();
    let mut verdicts = Vec::new();
    let mut failures = Vec::new();
    let ids: BTreeSet<&str> = plan.actions.iter().map(|a| a.id.as_str()).collect();
    for (lp, result) in plugins.iter().zip(results) {
        let result = result.and_then(|vs| match vs.iter().find(|v| !ids.contains(v.action_id.as_str())) {
            // A verdict on an action the plan does not have is malformed, not ignored.
            Some(v) => Err(PluginError {
                plugin: lp.name().to_string(),
                stage: Stage::Review,
                image: None,
                failure: PluginFailure::Malformed(format!(
                    "a verdict on `{}`, which is not an action of the plan",
                    v.action_id
                )),
            }),
            None => Ok(vs),
        });
        match result {
            Ok(vs) => verdicts.extend(vs.into_iter().map(|v| (lp.name().to_string(), v))),
            Err(mut e) => {
                e.stage = Stage::Review;
                failures.push(e);
            }
        }
    }
    (verdicts, failures)
}
