//! The policy's plugins as a set: loaded together, `propose` on every event and
//! `review` of the priced candidates, in parallel on every core, with results that do
//! not depend on scheduling.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use super::{Lowered, Plugin, PluginSpec, Runtime};
use crate::config::{PluginEntry, Policy};
use crate::error::InputError;
use crate::event::Events;
use crate::inventory::Inventory;
use crate::model::{Action, InventoryNeed, PluginError, PluginFailure, Proposal, Proposed, Stage, Timestamp, Verdict};
use crate::resolve::PricedPlan;

/// Everything the propose stage produced.
#[derive(Debug, Default)]
pub struct Proposals {
    pub proposed: Vec<Proposed>,
    pub failures: Vec<PluginError>,
    /// Seconds each plugin spent proposing, summed over its batches (on every thread).
    pub seconds: BTreeMap<String, f64>,
}

/// A plugin entry's bytes: a built-in or a file next to the policy.
fn plugin_bytes(policy: &Policy, entry: &PluginEntry) -> anyhow::Result<Vec<u8>> {
    if let Some(found) = crate::builtin::lookup(&entry.source) {
        return found.map(<[u8]>::to_vec).map_err(|e| InputError(format!("plugin `{}`: {e}", entry.name)).into());
    }
    let path = policy.plugin_path(entry);
    if std::path::Path::new(&entry.source).is_relative() {
        // A relative source stays in the policy's directory, whatever links it crosses.
        let inside = match (path.canonicalize(), policy.base_dir.join(".").canonicalize()) {
            (Ok(real), Ok(base)) => real.starts_with(&base),
            _ => true, // missing: read_input names the file
        };
        if !inside {
            return Err(InputError(format!(
                "plugin `{}`: source {} leads outside the policy's directory; give an absolute path if that is meant",
                entry.name,
                path.display()
            ))
            .into());
        }
    }
    crate::files::read_input(&path, crate::files::Input::Plugin)
        .map_err(|e| InputError(format!("plugin `{}`: {e:#}", entry.name)).into())
}

/// Gives `plugin` only `needs` of the inventory data it declares (the policy entry's
/// `needs`); asking for more than it declares is refused.
pub fn narrow_needs(plugin: &mut Plugin, needs: &BTreeSet<InventoryNeed>) -> Result<(), String> {
    let names = |set: &mut dyn Iterator<Item = &InventoryNeed>| {
        let list: Vec<String> =
            set.filter_map(|n| serde_json::to_value(n).ok()?.as_str().map(str::to_string)).collect();
        format!("[{}]", list.join(", "))
    };
    if !needs.is_subset(&plugin.info.needs) {
        return Err(format!(
            "`needs` may only narrow what the plugin declares, {}, not add {}",
            names(&mut plugin.info.needs.iter()),
            names(&mut needs.difference(&plugin.info.needs))
        ));
    }
    plugin.info.needs = needs.clone();
    Ok(())
}

/// Loads every enabled plugin of the policy; the first failure stops the run.
pub fn load_plugins(runtime: &Runtime, policy: &Policy) -> anyhow::Result<Vec<Plugin>> {
    let entries: Vec<&PluginEntry> = policy.plugins.iter().filter(|p| p.enabled).collect();
    if entries.is_empty() {
        return Err(InputError(
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
            let mut plugin = runtime.load(&bytes, spec)?;
            if let Some(needs) = &entry.needs {
                narrow_needs(&mut plugin, needs).map_err(|e| InputError(format!("plugin `{}`: {e}", entry.name)))?;
            }
            Ok(plugin)
        })
        .collect()
}

/// The inventory data a run reads: what the plugins need, united, and what the host
/// needs for the kinds the policy grants (`Policy::host_needs`).
pub fn needs(policy: &Policy, plugins: &[Plugin]) -> BTreeSet<InventoryNeed> {
    plugins.iter().flat_map(|p| p.info.needs.iter().copied()).chain(policy.host_needs()).collect()
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
/// (per plugin, `limits.batch` events each) so results do not depend on scheduling, and
/// the events are lowered a chunk at a time (a chunk: a whole number of every plugin's
/// batches), once for all plugins, so a run holds a few chunks of lowered events rather
/// than a copy of the whole inventory.
pub fn propose(
    policy: &Policy,
    plugins: &[Plugin],
    inventory: &Arc<Inventory>,
    events: &Events,
    now: Timestamp,
    progress: &(dyn Fn(u64) + Sync),
) -> Proposals {
    let total = events.len(inventory);
    // What each plugin's proposals hold so far, against its budget for the run.
    let spent: Vec<AtomicUsize> = plugins.iter().map(|_| AtomicUsize::new(0)).collect();
    let budgets: Vec<usize> = plugins.iter().map(|p| output_budget(p, total)).collect();
    let chunk = chunk_size(plugins);
    let starts: Vec<usize> = (0..total).step_by(chunk).collect();
    let results: Vec<Proposals> = starts
        .par_iter()
        .flat_map_iter(|&first| {
            let end = (first + chunk).min(total);
            let lowered = Lowered::range(events, inventory, first..end);
            // The plugins of one chunk run in parallel too: a live event is one chunk,
            // and its plugins would otherwise run one after the other on one core.
            let batches: Vec<(usize, &[_])> = plugins
                .iter()
                .enumerate()
                .flat_map(|(n, plugin)| lowered.chunks(plugin.limits.batch.max(1)).map(move |events| (n, events)))
                .collect();
            batches
                .into_par_iter()
                .map(|(n, events)| {
                    let budget = (&spent[n], budgets[n]);
                    let out = propose_batch(policy, &plugins[n], inventory, events, now, budget);
                    progress(events.len() as u64);
                    out
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut all = Proposals::default();
    all.proposed.reserve_exact(results.iter().map(|r| r.proposed.len()).sum());
    for r in results {
        all.proposed.extend(r.proposed);
        all.failures.extend(r.failures);
        for (plugin, seconds) in r.seconds {
            *all.seconds.entry(plugin).or_default() += seconds;
        }
    }
    // A plugin over its budget failed for the whole run: whether it went over does not
    // depend on which of its batches ran first (its output is the same, the sum only
    // grows), so neither does the plan.
    let over: BTreeSet<&str> = plugins
        .iter()
        .zip(&spent)
        .zip(&budgets)
        .filter(|((_, spent), budget)| spent.load(Ordering::Relaxed) > **budget)
        .map(|((plugin, _), _)| &*plugin.name)
        .collect();
    if !over.is_empty() {
        all.proposed.retain(|p| !over.contains(p.plugin.as_str()));
        for (plugin, budget) in plugins.iter().zip(&budgets).filter(|(p, _)| over.contains(&*p.name)) {
            all.failures.push(PluginError {
                plugin: plugin.name.to_string(),
                stage: Stage::Propose,
                image: None,
                failure: PluginFailure::Malformed(format!(
                    "its proposals in this run came to more than {} MiB, its budget ({} MiB, its memory limit, and {} \
                     KiB per event, for {total} events): every proposal of it is dropped and destructive actions are blocked",
                    budget >> 20,
                    plugin.limits.memory_mib,
                    OUTPUT_PER_EVENT >> 10
                )),
            });
        }
    }
    // Ordered by every field, so equal proposals are the same proposal: sorted in place.
    all.proposed.par_sort_unstable();
    all.proposed.dedup();
    all.failures.sort_by(|a, b| (&a.plugin, &a.image, a.stage).cmp(&(&b.plugin, &b.image, b.stage)));
    all
}

/// Events per chunk: the least common multiple of the plugins' batch sizes (so every
/// batch starts where it would without chunks), or the largest batch when that would
/// make chunks too large to be worth it.
fn chunk_size(plugins: &[Plugin]) -> usize {
    const MOST: usize = 4096;
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let batches = plugins.iter().map(|p| p.limits.batch.max(1));
    let lcm = batches.clone().try_fold(1usize, |acc, b| {
        let l = acc / gcd(acc, b) * b;
        (l <= MOST).then_some(l)
    });
    lcm.unwrap_or_else(|| batches.max().unwrap_or(1))
}

/// Bytes per event a plugin's proposals may hold in one run, beyond its memory limit.
pub const OUTPUT_PER_EVENT: usize = 2 << 10;

/// The most a plugin's proposals may hold in the host's memory over a run of `events`
/// events: its own memory limit, and `OUTPUT_PER_EVENT` per event. `max_proposals`
/// bounds one call; this bounds the run (1,000 proposals of 4 KiB reasons on every one
/// of 100,000 images would be ~400 GB).
fn output_budget(plugin: &Plugin, events: usize) -> usize {
    let memory = usize::try_from(plugin.limits.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    memory.saturating_add(events.saturating_mul(OUTPUT_PER_EVENT))
}

/// One plugin's `propose` on one batch of lowered events, in one session (a fresh one
/// after a trap, which can leave the instance unusable). `budget` is what the plugin's
/// proposals hold so far in the run (every batch adds to it) and the most they may: once
/// over it, the plugin is not called again in this run.
fn propose_batch(
    policy: &Policy,
    plugin: &Plugin,
    inventory: &Arc<Inventory>,
    events: &[Lowered],
    now: Timestamp,
    (spent, budget): (&AtomicUsize, usize),
) -> Proposals {
    let started = std::time::Instant::now();
    let mut out = Proposals::default();
    let mut session = None;
    for event in events {
        if spent.load(Ordering::Relaxed) > budget {
            break;
        }
        if session.is_none() {
            match plugin.session(Arc::clone(inventory), now) {
                Ok(s) => session = Some(s),
                Err(mut e) => {
                    e.image = Some(event.image_id().to_string());
                    out.failures.push(e);
                    continue;
                }
            }
        }
        let Some(s) = session.as_mut() else { continue };
        match s.propose_lowered(event).and_then(|ps| {
            check_scope(policy, inventory, &ps).map(|()| ps).map_err(|m| PluginError {
                plugin: plugin.name.to_string(),
                stage: Stage::Propose,
                image: Some(event.image_id().to_string()),
                failure: PluginFailure::Malformed(m),
            })
        }) {
            Ok(ps) => {
                spent.fetch_add(ps.iter().map(Proposal::held_bytes).sum(), Ordering::Relaxed);
                out.proposed
                    .extend(ps.into_iter().map(|proposal| Proposed { plugin: plugin.name.to_string(), proposal }));
            }
            Err(e) => {
                if !matches!(e.failure, PluginFailure::Malformed(_) | PluginFailure::Policy(..)) {
                    session = None;
                }
                out.failures.push(e);
            }
        }
    }
    out.seconds.insert(plugin.name.to_string(), started.elapsed().as_secs_f64());
    out
}

/// Runs `review` of every plugin that reviews (its plugin-info says so) on the priced
/// candidates, a part at a time; returns verdicts by plugin. The plan is lowered only
/// for plugins that review, and one part at a time.
pub fn review(plugins: &[Plugin], inventory: &Arc<Inventory>, plan: &PricedPlan<'_>, now: Timestamp) -> Reviewed {
    let plugins: Vec<&Plugin> = plugins.iter().filter(|p| p.info.reviews).collect();
    if plugins.is_empty() {
        return Reviewed::default();
    }
    let timed: Vec<(Result<Vec<Verdict>, PluginError>, f64)> = plugins
        .par_iter()
        .map(|plugin| {
            let started = std::time::Instant::now();
            let result = plugin.session(Arc::clone(inventory), now).and_then(|mut s| s.review(plan));
            (result, started.elapsed().as_secs_f64())
        })
        .collect();
    let seconds = plugins.iter().zip(&timed).map(|(p, (_, secs))| (p.name.to_string(), *secs)).collect();
    let results = timed.into_iter().map(|(result, _)| result);
    let mut verdicts = Vec::new();
    let mut failures = Vec::new();
    let ids: BTreeSet<&str> = plan.candidates.iter().map(|c| c.id.as_str()).collect();
    for (plugin, result) in plugins.iter().zip(results) {
        let result = result.and_then(|vs| match vs.iter().find(|v| !ids.contains(v.action_id.as_str())) {
            // A verdict on an action the plan does not have is malformed, not ignored.
            Some(v) => Err(PluginError {
                plugin: plugin.name.to_string(),
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
            Ok(vs) => verdicts.extend(vs.into_iter().map(|v| (plugin.name.to_string(), v))),
            Err(mut e) => {
                e.stage = Stage::Review;
                failures.push(e);
            }
        }
    }
    Reviewed { verdicts, failures, seconds }
}

/// Everything the review stage produced.
#[derive(Debug, Default)]
pub struct Reviewed {
    pub verdicts: Vec<(String, Verdict)>,
    pub failures: Vec<PluginError>,
    /// Seconds each plugin's review took.
    pub seconds: BTreeMap<String, f64>,
}

#[cfg(test)]
mod tests {
    use super::plugin_bytes;
    use crate::config::Policy;

    fn policy_in(dir: &std::path::Path, source: &str) -> Policy {
        let text = format!(
            "[scope]\naccounts = [\"111111111111\"]\nregions = [\"us-east-1\"]\n[[plugin]]\nname = \"mine\"\nsource = \"{source}\"\nsha256 = \"{}\"\n",
            "0".repeat(64)
        );
        let mut policy = Policy::parse(&text).unwrap();
        policy.base_dir = dir.to_path_buf();
        policy
    }

    fn refusal(dir: &std::path::Path, source: &str) -> String {
        let policy = policy_in(dir, source);
        let err = plugin_bytes(&policy, &policy.plugins[0]).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2, "{err}");
        err.to_string()
    }

    #[test]
    fn a_plugin_source_is_a_regular_file_inside_the_policy_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("policy");
        std::fs::create_dir_all(dir.join("plugins")).unwrap();
        std::fs::write(dir.join("plugins/mine.wasm"), b"\0asm").unwrap();
        std::fs::write(root.path().join("outside.wasm"), b"\0asm").unwrap();
        let policy = policy_in(&dir, "plugins/mine.wasm");
        assert_eq!(plugin_bytes(&policy, &policy.plugins[0]).unwrap(), b"\0asm");

        std::os::unix::fs::symlink(root.path().join("outside.wasm"), dir.join("plugins/link.wasm")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("plugins/zero.wasm")).unwrap();
        assert!(refusal(&dir, "plugins/link.wasm").contains("leads outside the policy's directory"));
        assert!(refusal(&dir, "../outside.wasm").contains("leads outside"));
        assert!(refusal(&dir, "plugins/zero.wasm").contains("leads outside"));
        assert!(refusal(&dir, "plugins").contains("not a regular file"));
        assert!(refusal(&dir, "plugins/missing.wasm").contains("plugin `mine`: plugin"));
        assert!(refusal(&dir, "/dev/zero").contains("/dev/zero: not a regular file"));
    }
}
