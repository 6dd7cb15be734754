//! Resolve: merges the plugins' proposals per image into priced candidates by the
//! conflict rules and guardrails (one room per rule family), then `finish` applies the
//! review's verdicts and the blast-radius limit and expands the survivors into the
//! ordered plan. Pure and deterministic: no plugin, backend or clock in here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod copies;
mod finish;
pub mod guardrails;
mod lifecycle;
mod sharing;
mod tags;
#[cfg(test)]
mod tests;

pub use finish::finish;
pub use lifecycle::{deprecation_time, in_use_reason};

use rayon::prelude::*;

use crate::config::Policy;
use crate::cost::{LedgerEntry, Pricing};
use crate::inventory::Inventory;
use crate::model::{Action, ActionKind, Image, Location, Micros, PluginError, Proposal, Proposed, Timestamp};
use crate::plan::{Kept, PluginSets, Plugins, Refusal, RefusalKind, Shared};

/// A merged action on one image, priced, before review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub image_id: String,
    /// The image's account and region, held once per location (`Inventory::location`).
    pub location: Shared<Location>,
    pub action: Action,
    pub plugins: Plugins,
    pub reasons: Vec<String>,
    pub monthly_cost_delta: Micros,
    pub one_time_cost: Micros,
    /// The snapshots a deregistration deletes, with their monthly cost.
    pub snapshots: Vec<(String, Micros)>,
}

impl Candidate {
    /// Disable and deregister: the candidates a plugin failure blocks.
    pub fn is_destructive(&self) -> bool {
        self.action.kind().is_destructive()
    }
}

/// The candidates and what was refused while merging.
#[derive(Debug, Default)]
pub struct Candidates {
    pub candidates: Vec<Candidate>,
    pub refused: Vec<Refusal>,
    /// The images plugins retain.
    pub kept: Vec<Kept>,
    /// The sets of plugin names handed out so far (shared by the threads of a merge):
    /// equal sets are one allocation.
    pub names: Arc<PluginSets>,
}

impl Candidates {
    /// The plugins of `ps`, as a shared set.
    fn who(&self, ps: &[&Proposed]) -> Plugins {
        who(&self.names, ps)
    }
}

/// The plugins of `ps`, as the set `names` holds.
fn who(names: &PluginSets, ps: &[&Proposed]) -> Plugins {
    names.get(ps.iter().map(|p| p.plugin.clone()).collect())
}

/// What plugins review: the candidates in plan order, priced, with the ledger per
/// account and region. The plugin runtime lowers it into the contract's `priced-plan`.
#[derive(Debug)]
pub struct PricedPlan<'a> {
    pub candidates: &'a [Candidate],
    pub ledger: Vec<LedgerEntry>,
    pub evaluation_time: Timestamp,
}

/// The proposals about one image.
struct Group<'a> {
    image: &'a Image,
    proposals: Vec<&'a Proposed>,
}

/// Merged actions accepted so far for one image, with the proposals behind each.
type Accepted<'a> = Vec<(Action, Vec<&'a Proposed>)>;

fn refusal(image: &Image, action: &Action, plugins: Plugins, kind: RefusalKind, reason: String) -> Refusal {
    Refusal {
        image_id: image.id.clone(),
        account: image.account.clone(),
        region: image.region.clone(),
        image_name: image.name.clone(),
        action: action.clone(),
        plugins,
        kind,
        reason,
    }
}

/// `plugin: reason` per plugin, in proposal order. A plugin that proposed the same thing
/// many times (from many events) is named once, with its first reason and how many more
/// it gave: a plugin proposing on every image from every event would otherwise make each
/// candidate carry one reason per event, quadratic in the inventory.
fn reasons(ps: &[&Proposed]) -> Vec<String> {
    per_plugin(ps).into_iter().map(|(plugin, reason)| format!("{plugin}: {reason}")).collect()
}

/// Each plugin of `ps` once, in order, with its first reason and a count of the others.
fn per_plugin<'a>(ps: &[&'a Proposed]) -> Vec<(&'a str, String)> {
    let mut out: Vec<(&str, &str, usize)> = Vec::new();
    for p in ps {
        match out.iter_mut().find(|(plugin, _, _)| *plugin == p.plugin) {
            Some((_, _, more)) => *more += 1,
            None => out.push((&p.plugin, &p.proposal.reason, 0)),
        }
    }
    out.into_iter()
        .map(|(plugin, reason, more)| match more {
            0 => (plugin, reason.to_string()),
            n => (plugin, format!("{reason} (and {n} more reason(s) from {plugin})")),
        })
        .collect()
}

fn by_action<'a>(group: &Group<'a>, pick: impl Fn(&Action) -> bool) -> Vec<&'a Proposed> {
    group.proposals.iter().copied().filter(|p| pick(&p.proposal.action)).collect()
}

/// Merges proposals into candidates with conflict rules and guardrails. It consumes
/// them: an image's proposals are emptied once merged, so their strings are freed while
/// the candidates are built beside them (the merge is a large plan's memory peak).
pub fn merge(
    policy: &Policy,
    inventory: &Inventory,
    pricing: &Pricing,
    mut proposed: Vec<Proposed>,
    failures: &[PluginError],
    now: Timestamp,
) -> Candidates {
    let grants: BTreeMap<&str, &BTreeSet<ActionKind>> =
        policy.plugins.iter().map(|p| (p.name.as_str(), &p.grants)).collect();
    let failed: BTreeMap<&str, Vec<&str>> = failures.iter().fold(BTreeMap::new(), |mut m, f| {
        if let Some(img) = &f.image {
            m.entry(img.as_str()).or_insert_with(Vec::new).push(f.plugin.as_str());
        }
        m
    });
    // By image, then in the proposals' own order (plugin, action, reason): each image's
    // proposals are one run, in the order its rules take them. Every field is compared,
    // so the order does not depend on the input's.
    proposed.par_sort_unstable_by(|a, b| {
        (&a.proposal.image_id, &a.plugin, &a.proposal).cmp(&(&b.proposal.image_id, &b.plugin, &b.proposal))
    });
    let names = Arc::<PluginSets>::default();
    // Each image is merged on its own, so images merge in parallel; the parts come back
    // in image-id order, and what is sorted below is sorted whatever the thread count.
    let parts: Vec<Candidates> = proposed
        .par_chunk_by_mut(|a, b| a.proposal.image_id == b.proposal.image_id)
        .fold(
            || Candidates { names: names.clone(), ..Candidates::default() },
            |mut part, run| {
                if let Some(group) = group(&grants, inventory, run, &mut part) {
                    let failed_plugins = failed.get(group.image.id.as_str());
                    merge_image(policy, inventory, pricing, &group, failed_plugins, now, &mut part);
                }
                // Merged: emptied, so its strings go now (the vector itself goes when
                // the merge returns).
                for p in run.iter_mut() {
                    p.plugin = String::new();
                    p.proposal = Proposal { image_id: String::new(), action: Action::Retain, reason: String::new() };
                }
                part
            },
        )
        .collect();
    let mut out = Candidates { names, ..Candidates::default() };
    // Sized once: concatenated by doubling, the candidates' vector was half slack.
    out.candidates.reserve_exact(parts.iter().map(|p| p.candidates.len()).sum());
    out.refused.reserve_exact(parts.iter().map(|p| p.refused.len()).sum());
    out.kept.reserve_exact(parts.iter().map(|p| p.kept.len()).sum());
    for part in parts {
        out.candidates.extend(part.candidates);
        out.refused.extend(part.refused);
        out.kept.extend(part.kept);
    }
    out.refused.par_sort();
    out.kept.par_sort();
    out
}

/// One image's proposals as the rules take them: those the policy grants. A proposal it
/// does not grant is refused here; an image gone (deregistered) or outside the scope has
/// nothing to act on.
fn group<'a>(
    grants: &BTreeMap<&str, &BTreeSet<ActionKind>>,
    inventory: &'a Inventory,
    run: &'a [Proposed],
    out: &mut Candidates,
) -> Option<Group<'a>> {
    let image = inventory.get(&run.first()?.proposal.image_id)?;
    let mut proposals = Vec::with_capacity(run.len());
    for p in run {
        let kind = p.proposal.action.kind();
        let granted = grants.get(p.plugin.as_str()).is_some_and(|g| g.contains(&kind));
        let needs_snapshot_grant = matches!(p.proposal.action, Action::Deregister { delete_snapshots: true });
        let snapshot_granted = grants.get(p.plugin.as_str()).is_some_and(|g| g.contains(&ActionKind::DeleteSnapshots));
        if !granted || (needs_snapshot_grant && !snapshot_granted) {
            let missing = if granted { ActionKind::DeleteSnapshots } else { kind };
            out.refused.push(refusal(
                image,
                &p.proposal.action,
                out.who(&[p]),
                RefusalKind::NotGranted,
                format!("the policy does not grant `{}` the `{missing}` action", p.plugin),
            ));
        } else {
            proposals.push(p);
        }
    }
    (!proposals.is_empty()).then_some(Group { image, proposals })
}

/// Every rule family on one image, then pricing of what was accepted.
fn merge_image(
    policy: &Policy,
    inventory: &Inventory,
    pricing: &Pricing,
    group: &Group<'_>,
    failed_plugins: Option<&Vec<&str>>,
    now: Timestamp,
    out: &mut Candidates,
) {
    let mut accepted: Accepted<'_> = Vec::new();
    let retainers = by_action(group, |a| *a == Action::Retain);
    if !retainers.is_empty() {
        let image = group.image;
        out.kept.push(Kept {
            image_id: image.id.clone(),
            account: image.account.clone(),
            region: image.region.clone(),
            image_name: image.name.clone(),
            plugins: out.who(&retainers),
            reasons: reasons(&retainers),
        });
    }
    sharing::resolve(policy, group, out, &mut accepted);
    copies::resolve(policy, inventory, group, out, &mut accepted);
    tags::resolve(group, out, &mut accepted);
    lifecycle::resolve(policy, group, failed_plugins, now, out, &mut accepted);
    copies::drop_copies_of_retired(group, out, &mut accepted);
    for (action, ps) in accepted {
        out.candidates.push(candidate(inventory, pricing, group.image, action, &ps, &out.names));
    }
}

/// One merged action on an image as a priced candidate.
pub fn candidate(
    inventory: &Inventory,
    pricing: &Pricing,
    image: &Image,
    action: Action,
    ps: &[&Proposed],
    names: &PluginSets,
) -> Candidate {
    let cost = pricing.action_cost(inventory, image, &action);
    let seed = format!(
        "{}/{}/{}/{}",
        image.account,
        image.region,
        image.id,
        serde_json::to_string(&action).unwrap_or_default()
    );
    Candidate {
        id: crate::model::id::stable_id("cand", seed.as_bytes(), 20),
        image_id: image.id.clone(),
        location: inventory.location(image),
        action,
        plugins: who(names, ps),
        reasons: reasons(ps),
        monthly_cost_delta: cost.monthly,
        one_time_cost: cost.one_time,
        snapshots: cost.snapshots,
    }
}

/// The candidates as plugins review them, with the ledger.
pub fn priced_plan<'a>(inventory: &Inventory, candidates: &'a [Candidate], now: Timestamp) -> PricedPlan<'a> {
    let changes = candidates.iter().map(|c| {
        let target = match &c.action {
            Action::CopyToRegion(req) => req.region.as_str(),
            _ => c.location.region.as_str(),
        };
        (c.location.account.as_str(), target, c.monthly_cost_delta, c.one_time_cost)
    });
    PricedPlan {
        candidates,
        ledger: crate::cost::ledger(inventory.monthly_by_location(), changes),
        evaluation_time: now,
    }
}

/// Orders candidates as the plan will: by phase of their first op, then location and image.
/// Every field breaks a tie, so candidates that compare equal are the same candidate and
/// the order depends on neither the input's order nor the thread count; so the sort may
/// be unstable, and in place (a stable sort copies every candidate into a buffer beside
/// them).
pub fn order_candidates(candidates: &mut [Candidate]) {
    candidates.par_sort_unstable_by(|a, b| {
        (a.action.kind().phase(), &a.location, &a.image_id, &a.action)
            .cmp(&(b.action.kind().phase(), &b.location, &b.image_id, &b.action))
            .then_with(|| {
                (&a.plugins, &a.reasons, a.monthly_cost_delta, a.one_time_cost, &a.snapshots, &a.id).cmp(&(
                    &b.plugins,
                    &b.reasons,
                    b.monthly_cost_delta,
                    b.one_time_cost,
                    &b.snapshots,
                    &b.id,
                ))
            })
    });
}
