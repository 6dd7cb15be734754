//! `amiwarden test`: runs a plugin (or a whole policy) against case directories holding
//! an inventory, an optional event, a config and the expected proposals and vetoes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;

use crate::config::{Guardrails, Policy, PricingOverrides, Scope};
use crate::cost::Pricing;
use crate::model::Proposed;
use crate::model::{Action, Timestamp};
use crate::plugin::{self, Plugin};
use crate::plugin::{Limits, PluginSpec, Runtime};
use crate::resolve;
use crate::run::{self, Source};
use crate::sim::{SimBackend, SimState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    description: String,
    now: Timestamp,
    #[serde(default)]
    config: serde_json::Value,
    /// The inventory data the plugin is given, as a policy entry's `needs` narrows it.
    needs: Option<BTreeSet<crate::model::InventoryNeed>>,
    #[serde(default)]
    candidates: Vec<Expectation>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    image_id: String,
    action: Action,
    #[serde(default)]
    reason_contains: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    #[serde(default)]
    proposals: Vec<Expectation>,
    #[serde(default)]
    vetoes: Vec<Expectation>,
}

/// The result of one case.
#[derive(Debug)]
pub struct CaseResult {
    pub name: String,
    pub description: String,
    /// Empty when the case passed; else one line per difference.
    pub differences: Vec<String>,
}

/// What is under test.
pub enum Subject<'a> {
    /// One plugin's bytes, with every action kind granted.
    Plugin { bytes: &'a [u8], origin: String },
    /// A whole policy file.
    Policy(&'a Policy),
}

/// The case directories under `dir`, sorted.
pub fn case_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read cases directory {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("case.json").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        anyhow::bail!("{} holds no case directories (each needs a case.json)", dir.display());
    }
    Ok(dirs)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = crate::files::read_text(path, crate::files::Input::Plugin)?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Runs one case directory.
pub fn run_case(runtime: &Runtime, subject: &Subject<'_>, dir: &Path) -> anyhow::Result<CaseResult> {
    let case: CaseFile = read_json(&dir.join("case.json"))?;
    let expected: Expected = read_json(&dir.join("expected.json"))?;
    let state = SimState::load(&dir.join("inventory.json"))?;
    let event_path = dir.join("event.json");
    let source = if event_path.is_file() {
        let text = crate::files::read_text(&event_path, crate::files::Input::Event)?;
        Source::Event { text, origin: event_path.display().to_string() }
    } else {
        Source::Scheduled
    };
    let scope_policy = |guardrails: Guardrails| Policy {
        scope: Scope {
            accounts: state.accounts.keys().cloned().collect(),
            // A plugin under test may copy anywhere: the scope is every region it could name.
            regions: state
                .accounts
                .values()
                .flat_map(|a| a.regions.keys().cloned())
                .chain(crate::cost::known_regions().map(str::to_string))
                .collect(),
            organization: false,
        },
        guardrails,
        pricing: PricingOverrides::default(),
        aws: Default::default(),
        plugins: Vec::new(),
        base_dir: PathBuf::new(),
    };
    let (policy, plugins): (Policy, Vec<Plugin>) = match subject {
        Subject::Plugin { bytes, origin } => {
            let spec = PluginSpec {
                name: "under-test".into(),
                origin: origin.clone(),
                sha256: None,
                limits: Limits::default(),
                data_dir: None,
                config: case.config.to_string(),
            };
            let mut plugin = runtime.load(bytes, spec)?;
            if let Some(needs) = &case.needs {
                plugin::narrow_needs(&mut plugin, needs)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("case.json").display()))?;
            }
            (scope_policy(Guardrails::default()), vec![plugin])
        }
        Subject::Policy(p) => {
            let mut policy = (*p).clone();
            policy.scope = scope_policy(Guardrails::default()).scope;
            let plugins = plugin::load_plugins(runtime, &policy)?;
            (policy, plugins)
        }
    };
    let backend = SimBackend::in_memory(state, case.now);
    let needs = plugin::needs(&policy, &plugins);
    let inventory = run::collect(&policy, &backend, &needs)?;
    let (events, _notes) =
        crate::event::events(&policy, &inventory, &source, case.now).map_err(|e| anyhow::anyhow!("{e}"))?;
    let inventory = Arc::new(inventory);
    let proposals = plugin::propose(&policy, &plugins, &inventory, &events, case.now, &|_| ());
    let mut differences: Vec<String> = proposals.failures.iter().map(|e| format!("plugin error: {e}")).collect();
    let got: Vec<(String, Action, String)> = proposals
        .proposed
        .iter()
        .map(|p| (p.proposal.image_id.clone(), p.proposal.action.clone(), p.proposal.reason.clone()))
        .collect();
    compare("proposal", &got, &expected.proposals, &mut differences);

    // Review: the plugin's own proposals plus the case's candidates, priced and ordered.
    let pricing = Pricing::new(&policy.pricing);
    let mut reviewed: Vec<Proposed> = proposals.proposed.clone();
    reviewed.extend(case.candidates.iter().map(|c| Proposed {
        plugin: "case".into(),
        proposal: crate::model::Proposal {
            image_id: c.image_id.clone(),
            action: c.action.clone(),
            reason: "candidate".into(),
        },
    }));
    let mut candidates = Vec::new();
    let names = crate::plan::PluginSets::default();
    let mut seen = BTreeSet::new();
    for p in &reviewed {
        if p.proposal.action == Action::Retain || !seen.insert((p.proposal.image_id.clone(), p.proposal.action.clone()))
        {
            continue;
        }
        if let Some(image) = inventory.get(&p.proposal.image_id) {
            candidates.push(resolve::candidate(&inventory, &pricing, image, p.proposal.action.clone(), &[p], &names));
        }
    }
    resolve::order_candidates(&mut candidates);
    let priced = resolve::priced_plan(&inventory, &candidates, case.now);
    let plugin::Reviewed { verdicts, failures, .. } = plugin::review(&plugins, &inventory, &priced, case.now);
    differences.extend(failures.iter().map(|e| format!("plugin error: {e}")));
    let by_id: BTreeMap<&str, &resolve::Candidate> = candidates.iter().map(|c| (c.id.as_str(), c)).collect();
    let vetoes: Vec<(String, Action, String)> = verdicts
        .iter()
        .filter_map(|(_, v)| {
            let reason = v.veto.clone()?;
            let c = by_id.get(v.action_id.as_str())?;
            Some((c.image_id.clone(), c.action.clone(), reason))
        })
        .collect();
    compare("veto", &vetoes, &expected.vetoes, &mut differences);
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(CaseResult { name, description: case.description, differences })
}

fn show(image: &str, action: &Action) -> String {
    format!("{image} {}", serde_json::to_string(action).unwrap_or_default())
}

fn compare(what: &str, got: &[(String, Action, String)], expected: &[Expectation], diffs: &mut Vec<String>) {
    let got_set: BTreeMap<(String, Action), &str> =
        got.iter().map(|(i, a, r)| ((i.clone(), a.clone()), r.as_str())).collect();
    let want_set: BTreeSet<(String, Action)> =
        expected.iter().map(|e| (e.image_id.clone(), e.action.clone())).collect();
    for e in expected {
        match got_set.get(&(e.image_id.clone(), e.action.clone())) {
            None => diffs.push(format!("- missing {what}:    {}", show(&e.image_id, &e.action))),
            Some(reason) => {
                if let Some(needle) = &e.reason_contains
                    && !reason.contains(needle.as_str())
                {
                    diffs.push(format!(
                        "~ {what} {}: reason {reason:?} does not contain {needle:?}",
                        show(&e.image_id, &e.action)
                    ));
                }
            }
        }
    }
    for ((image, action), reason) in &got_set {
        if !want_set.contains(&(image.clone(), action.clone())) {
            diffs.push(format!("+ unexpected {what}: {} ({reason})", show(image, action)));
        }
    }
}
