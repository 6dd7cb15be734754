//! Resolve: merges the plugins' proposals per image into priced candidates, applying
//! conflict rules and guardrails; then applies the review's verdicts and the blast-radius
//! limit and expands the survivors into the ordered plan. Pure and deterministic.

use std::collections::{BTreeMap, BTreeSet};

pub mod guardrails;

use crate::config::Policy;
use crate::cost::Pricing;
use crate::engine::Proposed;
use crate::inventory::Inventory;
use crate::model::{Action, ActionKind, CopyRequest, Image, Micros, Principal, Timestamp, Verdict};
use crate::plan::{Op, Plan, PlannedAction, Refusal, RefusalKind, SCHEMA_VERSION, Totals, sort_actions};
use crate::plugin::{PluginError, wit};

/// A merged action on one image, priced, before review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub image_id: String,
    pub account: String,
    pub region: String,
    pub action: Action,
    pub plugins: BTreeSet<String>,
    pub reasons: Vec<String>,
    pub monthly_cost_delta: Micros,
    pub one_time_cost: Micros,
    /// The snapshots a deregistration deletes, with their monthly cost.
    pub snapshots: Vec<(String, Micros)>,
}

impl Candidate {
    /// Disable and deregister: the actions the blast-radius limit counts.
    pub fn is_destructive(&self) -> bool {
        matches!(self.action, Action::Disable | Action::Deregister { .. })
    }
}

/// The candidates and what was refused while merging.
#[derive(Debug, Default)]
pub struct Candidates {
    pub candidates: Vec<Candidate>,
    pub refused: Vec<Refusal>,
}

struct Group<'a> {
    image: &'a Image,
    proposals: Vec<&'a Proposed>,
}

fn refusal(image: &Image, action: &Action, plugins: BTreeSet<String>, kind: RefusalKind, reason: String) -> Refusal {
    Refusal {
        image_id: image.id.clone(),
        account: image.account.clone(),
        region: image.region.clone(),
        action: action.clone(),
        plugins,
        kind,
        reason,
    }
}

fn who(ps: &[&Proposed]) -> BTreeSet<String> {
    ps.iter().map(|p| p.plugin.clone()).collect()
}

fn reasons(ps: &[&Proposed]) -> Vec<String> {
    ps.iter().map(|p| format!("{}: {}", p.plugin, p.proposal.reason)).collect()
}

/// Why an image counts as in use, if it does.
pub fn in_use_reason(image: &Image, policy: &Policy, now: Timestamp) -> Option<String> {
    let u = &image.usage;
    if u.instances > 0 {
        return Some(format!("in use by {} instance(s)", u.instances));
    }
    if let Some(lt) = u.launch_templates.first() {
        return Some(format!("referenced by launch template {lt}"));
    }
    let days = i64::from(policy.guardrails.in_use_days);
    match u.last_launched {
        Some(t) if days > 0 && t >= now.plus_days(-days) => Some(format!("launched {t}, within {days} days")),
        _ => None,
    }
}

/// Merges proposals into candidates with conflict rules and guardrails.
pub fn merge(
    policy: &Policy,
    inventory: &Inventory,
    pricing: &Pricing,
    proposed: &[Proposed],
    failures: &[PluginError],
    now: Timestamp,
) -> Candidates {
    let grants: BTreeMap<&str, &BTreeSet<ActionKind>> =
        policy.plugins.iter().map(|p| (p.name.as_str(), &p.grants)).collect();
    let mut out = Candidates::default();
    let mut groups: BTreeMap<(&str, &str, &str), Group<'_>> = BTreeMap::new();
    for p in proposed {
        let Some(image) = inventory.get(&p.proposal.image_id) else {
            // An image gone (deregistered) or outside the scope: nothing to act on.
            continue;
        };
        let kind = p.proposal.action.kind();
        let granted = grants.get(p.plugin.as_str()).is_some_and(|g| g.contains(&kind));
        let needs_snapshot_grant = matches!(p.proposal.action, Action::Deregister { delete_snapshots: true });
        let snapshot_granted = grants.get(p.plugin.as_str()).is_some_and(|g| g.contains(&ActionKind::DeleteSnapshots));
        if !granted || (needs_snapshot_grant && !snapshot_granted) {
            let missing = if granted { ActionKind::DeleteSnapshots } else { kind };
            out.refused.push(refusal(
                image,
                &p.proposal.action,
                BTreeSet::from([p.plugin.clone()]),
                RefusalKind::NotGranted,
                format!("the policy does not grant `{}` the `{missing}` action", p.plugin),
            ));
            continue;
        }
        groups
            .entry((image.account.as_str(), image.region.as_str(), image.id.as_str()))
            .or_insert_with(|| Group { image, proposals: Vec::new() })
            .proposals
            .push(p);
    }
    let failed: BTreeMap<&str, Vec<&str>> = failures.iter().fold(BTreeMap::new(), |mut m, f| {
        if let Some(img) = &f.image {
            m.entry(img.as_str()).or_insert_with(Vec::new).push(f.plugin.as_str());
        }
        m
    });
    for group in groups.values() {
        merge_image(policy, inventory, pricing, group, failed.get(group.image.id.as_str()), now, &mut out);
    }
    out.refused.sort();
    out
}

fn by_action<'a>(group: &Group<'a>, pick: impl Fn(&Action) -> bool) -> Vec<&'a Proposed> {
    group.proposals.iter().copied().filter(|p| pick(&p.proposal.action)).collect()
}

#[expect(clippy::too_many_lines, reason = "one rule per action kind, read top to bottom")]
fn merge_image(
    policy: &Policy,
    inventory: &Inventory,
    pricing: &Pricing,
    group: &Group<'_>,
    failed_plugins: Option<&Vec<&str>>,
    now: Timestamp,
    out: &mut Candidates,
) {
    let image = group.image;
    let mut accepted: Vec<(Action, Vec<&Proposed>)> = Vec::new();

    // Sharing: per principal, an unshare beats a share (the more private outcome).
    let mut principals: BTreeSet<&Principal> = BTreeSet::new();
    for p in &group.proposals {
        if let Action::Share(pr) | Action::Unshare(pr) = &p.proposal.action {
            principals.insert(pr);
        }
    }
    let current = image.launch_permissions.clone().unwrap_or_default();
    for pr in principals {
        let unshares = by_action(group, |a| a == &Action::Unshare(pr.clone()));
        let shares = by_action(group, |a| a == &Action::Share(pr.clone()));
        if !unshares.is_empty() {
            if !shares.is_empty() {
                out.refused.push(refusal(
                    image,
                    &Action::Share(pr.clone()),
                    who(&shares),
                    RefusalKind::Conflict,
                    format!(
                        "{} unshares {pr}: the more private outcome wins",
                        who(&unshares).into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if image.launch_permissions.is_none() || current.contains(pr) {
                accepted.push((Action::Unshare(pr.clone()), unshares));
            }
        } else if !current.contains(pr) {
            match guardrails::share_forbidden(policy, pr) {
                Some(why) => out.refused.push(refusal(
                    image,
                    &Action::Share(pr.clone()),
                    who(&shares),
                    RefusalKind::Guardrail,
                    why,
                )),
                None => accepted.push((Action::Share(pr.clone()), shares)),
            }
        }
    }

    // Copies: one per target region; identical requests merge, different ones conflict.
    let mut copies: BTreeMap<&str, Vec<&Proposed>> = BTreeMap::new();
    for p in &group.proposals {
        if let Action::CopyToRegion(c) = &p.proposal.action {
            copies.entry(c.region.as_str()).or_default().push(p);
        }
    }
    for (region, ps) in copies {
        let requests: BTreeSet<&CopyRequest> = ps
            .iter()
            .filter_map(|p| match &p.proposal.action {
                Action::CopyToRegion(c) => Some(c),
                _ => None,
            })
            .collect();
        let first = requests.iter().next().map(|c| Action::CopyToRegion((*c).clone())).unwrap_or(Action::Retain);
        let replica_exists = inventory
            .query(&crate::inventory::Query {
                source_image_id: Some(image.id.clone()),
                region: Some(region.to_string()),
                ..Default::default()
            })
            .is_ok_and(|found| !found.is_empty());
        if replica_exists {
            continue;
        }
        if requests.len() > 1 {
            out.refused.push(refusal(
                image,
                &first,
                who(&ps),
                RefusalKind::Conflict,
                format!("plugins ask for different copies to {region} (encryption, key, tags or name differ)"),
            ));
        } else if let Some(why) = guardrails::copy_forbidden(policy, &image.region, region) {
            out.refused.push(refusal(image, &first, who(&ps), RefusalKind::Guardrail, why));
        } else {
            accepted.push((first, ps));
        }
    }

    // Tags: merged; a key with two values, or both set and removed, is a conflict. Keys
    // reserved to the host or AWS are refused: a plugin that could write the host's
    // replica tags could make the next run retire a live image as an orphan replica.
    let tag_ps = by_action(group, |a| matches!(a, Action::Tag(_)));
    let untag_ps = by_action(group, |a| matches!(a, Action::Untag(_)));
    let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for p in &tag_ps {
        if let Action::Tag(tags) = &p.proposal.action {
            if let Some(why) = guardrails::tags_forbidden(tags.keys()) {
                let reserved = tags.iter().filter(|(k, _)| crate::model::is_reserved_tag(k));
                let action = Action::Tag(reserved.map(|(k, v)| (k.clone(), v.clone())).collect());
                out.refused.push(refusal(image, &action, who(&[*p]), RefusalKind::Guardrail, why));
            }
            for (k, v) in tags.iter().filter(|(k, _)| !crate::model::is_reserved_tag(k)) {
                values.entry(k).or_default().insert(v);
            }
        }
    }
    let mut removals: BTreeSet<&str> = BTreeSet::new();
    for p in &untag_ps {
        if let Action::Untag(keys) = &p.proposal.action {
            if let Some(why) = guardrails::tags_forbidden(keys) {
                let action = Action::Untag(keys.iter().filter(|k| crate::model::is_reserved_tag(k)).cloned().collect());
                out.refused.push(refusal(image, &action, who(&[*p]), RefusalKind::Guardrail, why));
            }
            removals.extend(keys.iter().filter(|k| !crate::model::is_reserved_tag(k)).map(String::as_str));
        }
    }
    let mut tags = BTreeMap::new();
    let mut untags = BTreeSet::new();
    for (k, vs) in &values {
        if vs.len() > 1 || removals.contains(k) {
            let action = Action::Tag(BTreeMap::from([(
                k.to_string(),
                vs.iter().next().copied().unwrap_or_default().to_string(),
            )]));
            out.refused.push(refusal(
                image,
                &action,
                who(&tag_ps),
                RefusalKind::Conflict,
                format!("plugins disagree on tag `{k}`; none is applied"),
            ));
        } else if let Some(v) = vs.iter().next()
            && image.tags.get(*k).map(String::as_str) != Some(*v)
        {
            tags.insert(k.to_string(), v.to_string());
        }
    }
    for k in removals {
        if !values.contains_key(k) && image.tags.contains_key(k) {
            untags.insert(k.to_string());
        }
    }
    let new_keys = tags.keys().filter(|k| !image.tags.contains_key(*k)).count();
    let total = (image.tags.len() + new_keys).saturating_sub(untags.len());
    if !tags.is_empty() && total > crate::model::MAX_TAGS {
        out.refused.push(refusal(
            image,
            &Action::Tag(std::mem::take(&mut tags)),
            who(&tag_ps),
            RefusalKind::Guardrail,
            format!("the image would have {total} tags; EC2 allows {}", crate::model::MAX_TAGS),
        ));
    }
    if !tags.is_empty() {
        let ps: Vec<&Proposed> = tag_ps
            .iter()
            .copied()
            .filter(|p| matches!(&p.proposal.action, Action::Tag(t) if t.keys().any(|k| tags.contains_key(k))))
            .collect();
        accepted.push((Action::Tag(tags), ps));
    }
    if !untags.is_empty() {
        accepted.push((Action::Untag(untags), untag_ps));
    }

    // Lifecycle: retain beats deprecate, disable and deregister; in-use images are never
    // disabled or deregistered; a plugin failure on the image blocks destructive actions.
    let retainers = by_action(group, |a| *a == Action::Retain);
    let in_use = if policy.guardrails.protect_in_use { in_use_reason(image, policy, now) } else { None };
    let deprecations = by_action(group, |a| matches!(a, Action::DeprecateAt(_)));
    let disables = by_action(group, |a| *a == Action::Disable);
    let deregisters = by_action(group, |a| matches!(a, Action::Deregister { .. }));
    let mut lifecycle: Vec<(Action, Vec<&Proposed>)> = Vec::new();
    if let Some(at) = deprecations
        .iter()
        .filter_map(|p| match p.proposal.action {
            Action::DeprecateAt(t) => Some(t),
            _ => None,
        })
        .min()
    {
        // EC2 takes only future times, rounded to the minute: a time in the past means
        // "now"; an image already deprecated by then (within an hour) needs nothing.
        let effective = deprecation_time(at, now);
        if image.deprecation_time.is_none_or(|current| current.0 > effective.0.saturating_add(3600)) {
            lifecycle.push((Action::DeprecateAt(effective), deprecations.clone()));
        }
    }
    if !deregisters.is_empty() {
        let delete = deregisters.iter().all(|p| p.proposal.action == Action::Deregister { delete_snapshots: true });
        lifecycle.push((Action::Deregister { delete_snapshots: delete }, deregisters.clone()));
    } else if !disables.is_empty() && image.state != crate::model::ImageState::Disabled {
        lifecycle.push((Action::Disable, disables.clone()));
    }
    for (action, ps) in lifecycle {
        let destructive = matches!(action, Action::Disable | Action::Deregister { .. });
        if !retainers.is_empty() {
            let why = retainers
                .iter()
                .map(|r| format!("{} ({})", r.plugin, r.proposal.reason))
                .collect::<Vec<_>>()
                .join("; ");
            out.refused.push(refusal(image, &action, who(&ps), RefusalKind::Retained, format!("retained by {why}")));
        } else if let (true, Some(why)) = (destructive, &in_use) {
            out.refused.push(refusal(image, &action, who(&ps), RefusalKind::Guardrail, format!("image is {why}")));
        } else if let (true, Some(failed)) = (destructive, failed_plugins) {
            out.refused.push(refusal(
                image,
                &action,
                who(&ps),
                RefusalKind::PluginFailed,
                format!("plugin(s) {} failed on this image; destructive actions on it are blocked", failed.join(", ")),
            ));
        } else {
            accepted.push((action, ps));
        }
    }

    // A copy of an image this plan retires would only need retiring in turn.
    if accepted.iter().any(|(a, _)| matches!(a, Action::DeprecateAt(_) | Action::Disable | Action::Deregister { .. })) {
        accepted.retain(|(a, ps)| {
            if matches!(a, Action::CopyToRegion(_)) {
                out.refused.push(refusal(
                    image,
                    a,
                    who(ps),
                    RefusalKind::Conflict,
                    "this plan retires the image (deprecate, disable or deregister); it is not copied".into(),
                ));
                false
            } else {
                true
            }
        });
    }
    for (action, ps) in accepted {
        out.candidates.push(price(inventory, pricing, image, action, &ps));
    }
}

/// The deprecation time EC2 will accept for a request: not before `now`, rounded up to
/// the next whole minute.
pub fn deprecation_time(at: Timestamp, now: Timestamp) -> Timestamp {
    let t = at.0.max(now.0.saturating_add(1));
    Timestamp(t.saturating_add(59).div_euclid(60).saturating_mul(60))
}

/// Prices one merged action on an image.
pub fn price(inventory: &Inventory, pricing: &Pricing, image: &Image, action: Action, ps: &[&Proposed]) -> Candidate {
    let mut monthly = 0;
    let mut one_time = 0;
    let mut snapshots = Vec::new();
    match &action {
        Action::CopyToRegion(c) => {
            monthly = pricing.copy_monthly(&c.region, &image.block_devices);
            one_time = pricing.copy_transfer(&image.region, &image.block_devices);
        }
        Action::Deregister { delete_snapshots: true } => {
            for dev in &image.block_devices {
                let Some(snap) = &dev.snapshot_id else { continue };
                if inventory.snapshot_users(snap).all(|user| user == image.id) {
                    let cost = pricing.snapshot_monthly(&image.region, dev);
                    monthly -= cost;
                    snapshots.push((snap.clone(), -cost));
                }
            }
        }
        _ => {}
    }
    let seed = format!(
        "{}/{}/{}/{}",
        image.account,
        image.region,
        image.id,
        serde_json::to_string(&action).unwrap_or_default()
    );
    Candidate {
        id: crate::plan::stable_id("cand", &seed),
        image_id: image.id.clone(),
        account: image.account.clone(),
        region: image.region.clone(),
        action,
        plugins: who(ps),
        reasons: reasons(ps),
        monthly_cost_delta: monthly,
        one_time_cost: one_time,
        snapshots,
    }
}

/// The candidates as the WIT `priced-plan` plugins review, with the ledger.
pub fn priced_plan(inventory: &Inventory, candidates: &[Candidate], now: Timestamp) -> wit::PricedPlan {
    let mut ledger: BTreeMap<(String, String), (Micros, Micros, Micros)> = BTreeMap::new();
    for image in inventory.images() {
        let e = ledger.entry((image.account.clone(), image.region.clone())).or_default();
        e.0 += image.monthly_cost;
        e.1 += image.monthly_cost;
    }
    for c in candidates {
        let target = match &c.action {
            Action::CopyToRegion(req) => req.region.clone(),
            _ => c.region.clone(),
        };
        let e = ledger.entry((c.account.clone(), target)).or_default();
        e.1 += c.monthly_cost_delta;
        e.2 += c.one_time_cost;
    }
    wit::PricedPlan {
        actions: candidates
            .iter()
            .map(|c| wit::PricedAction {
                id: c.id.clone(),
                image_id: c.image_id.clone(),
                account: c.account.clone(),
                region: c.region.clone(),
                action: (&c.action).into(),
                plugins: c.plugins.iter().cloned().collect(),
                reasons: c.reasons.clone(),
                monthly_cost_delta: c.monthly_cost_delta,
                one_time_cost: c.one_time_cost,
            })
            .collect(),
        ledger: ledger
            .into_iter()
            .map(|((account, region), (before, after, one_time))| wit::LedgerEntry {
                account,
                region,
                monthly_before: before,
                monthly_after: after,
                one_time,
            })
            .collect(),
        evaluation_time: now.0,
    }
}

/// Orders candidates as the plan will: by phase of their first op, then location and image.
pub fn order_candidates(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| {
        (phase(&a.action), &a.account, &a.region, &a.image_id, &a.action).cmp(&(
            phase(&b.action),
            &b.account,
            &b.region,
            &b.image_id,
            &b.action,
        ))
    });
}

fn phase(action: &Action) -> u8 {
    match action {
        Action::Tag(_) | Action::Untag(_) => 0,
        Action::Unshare(_) => 1,
        Action::Share(_) => 2,
        Action::CopyToRegion(_) => 3,
        Action::DeprecateAt(_) => 4,
        Action::Disable => 5,
        Action::Deregister { .. } => 6,
        Action::Retain => 9,
    }
}

/// Why a run stopped before touching anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GuardrailStop(pub String);

/// Applies verdicts and review failures, checks the blast radius and builds the plan.
/// Returns the plan and, when the blast-radius limit is exceeded, why the run must stop.
pub fn finish(
    policy: &Policy,
    inventory: &Inventory,
    pricing: &Pricing,
    mut merged: Candidates,
    verdicts: &[(String, Verdict)],
    mut errors: Vec<PluginError>,
    now: Timestamp,
) -> (Plan, Option<GuardrailStop>) {
    let mut vetoes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut vetoers: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (plugin, v) in verdicts {
        if let Some(reason) = &v.veto {
            vetoes.entry(v.action_id.as_str()).or_default().push(format!("{plugin}: {reason}"));
            vetoers.entry(v.action_id.as_str()).or_default().insert(plugin.clone());
        }
    }
    let review_failed: Vec<&str> =
        errors.iter().filter(|e| e.stage == crate::plugin::Stage::Review).map(|e| e.plugin.as_str()).collect();
    let mut kept = Vec::new();
    for mut c in merged.candidates {
        let image = inventory.get(&c.image_id);
        // Revoking access the guardrails forbid (public when it is not allowed, a
        // principal off the allow list) is not vetoable: a veto cannot keep it.
        if let Action::Unshare(principal) = &c.action
            && let Some(why) = guardrails::share_forbidden(policy, principal)
            && let Some(reasons) = vetoes.remove(c.id.as_str())
        {
            c.reasons.push(format!(
                "host: veto ignored ({}): {why}, so this revocation cannot be vetoed",
                reasons.join("; ")
            ));
        }
        let refuse = |kind, reason| Refusal {
            image_id: c.image_id.clone(),
            account: c.account.clone(),
            region: c.region.clone(),
            action: c.action.clone(),
            plugins: c.plugins.clone(),
            kind,
            reason,
        };
        if let Some(reasons) = vetoes.get(c.id.as_str()) {
            let mut r = refuse(RefusalKind::Vetoed, reasons.join("; "));
            r.plugins = vetoers.get(c.id.as_str()).cloned().unwrap_or_default();
            merged.refused.push(r);
        } else if c.is_destructive() && !review_failed.is_empty() {
            merged.refused.push(refuse(
                RefusalKind::PluginFailed,
                format!("plugin(s) {} failed in review; destructive actions are blocked", review_failed.join(", ")),
            ));
        } else if image.is_none() {
            merged.refused.push(refuse(RefusalKind::Guardrail, "image is not in the inventory".into()));
        } else {
            kept.push(c);
        }
    }
    share_out_snapshots(inventory, pricing, &mut kept);
    let mut actions = Vec::new();
    for c in &kept {
        let Some(image) = inventory.get(&c.image_id) else { continue };
        expand(c, image, &mut actions);
    }
    sort_actions(&mut actions);
    let destructive = actions.iter().filter(|a| a.op.is_destructive()).count();
    let destroyed: BTreeSet<&str> =
        actions.iter().filter(|a| a.op.is_destructive()).map(|a| a.image_id.as_str()).collect();
    let in_scope = inventory.images().len();
    let stop = guardrails::blast_radius(policy, destructive, destroyed.len(), in_scope).map(GuardrailStop);
    merged.refused.sort();
    errors.sort_by(|a, b| (&a.plugin, &a.image, a.stage).cmp(&(&b.plugin, &b.image, b.stage)));
    let monthly_before: Micros = inventory.images().iter().map(|i| i.monthly_cost).sum();
    let delta: Micros = actions.iter().map(|a| a.monthly_cost_delta).sum();
    let touched: BTreeSet<&str> = actions.iter().map(|a| a.image_id.as_str()).collect();
    let totals = Totals {
        images_in_scope: in_scope,
        images_touched: touched.len(),
        actions: actions.len(),
        destructive: actions.iter().filter(|a| a.op.is_destructive()).count(),
        refused: merged.refused.len(),
        plugin_errors: errors.len(),
        monthly_cost_before: monthly_before,
        monthly_cost_after: monthly_before + delta,
        one_time_cost: actions.iter().map(|a| a.one_time_cost).sum(),
    };
    let plan = Plan {
        schema_version: SCHEMA_VERSION,
        evaluation_time: now,
        source: crate::plan::Source::Scheduled,
        inventory_fingerprint: crate::plan::fingerprint(inventory.images()),
        policy_fingerprint: String::new(),
        stopped: stop.as_ref().map(|s| s.0.clone()),
        inventory_needs: BTreeSet::new(),
        actions,
        refused: merged.refused,
        errors,
        totals,
    };
    (plan, stop)
}

/// A snapshot shared only by images this plan deregisters with their snapshots is
/// deleted once, after the last of them (by image id); otherwise it would be orphaned.
fn share_out_snapshots(inventory: &Inventory, pricing: &Pricing, kept: &mut [Candidate]) {
    let deleting: BTreeSet<String> = kept
        .iter()
        .filter(|c| c.action == Action::Deregister { delete_snapshots: true })
        .map(|c| c.image_id.clone())
        .collect();
    for c in kept.iter_mut().filter(|c| c.action == Action::Deregister { delete_snapshots: true }) {
        let Some(image) = inventory.get(&c.image_id) else { continue };
        for dev in &image.block_devices {
            let Some(snap) = &dev.snapshot_id else { continue };
            if c.snapshots.iter().any(|(s, _)| s == snap) {
                continue;
            }
            let users: Vec<&str> = inventory.snapshot_users(snap).collect();
            if users.iter().all(|u| deleting.contains(*u)) && users.iter().max() == Some(&c.image_id.as_str()) {
                let cost = pricing.snapshot_monthly(&image.region, dev);
                c.snapshots.push((snap.clone(), -cost));
                c.monthly_cost_delta -= cost;
                c.reasons.push(format!("host: {snap} is shared only with images this plan deregisters; deleted once"));
            }
        }
    }
}

fn expand(c: &Candidate, image: &Image, out: &mut Vec<PlannedAction>) {
    let mut push = |op: Op, monthly: Micros, one_time: Micros| {
        out.push(PlannedAction {
            id: PlannedAction::id_for(&c.account, &c.region, &c.image_id, &op),
            account: c.account.clone(),
            region: c.region.clone(),
            image_id: c.image_id.clone(),
            image_name: image.name.clone(),
            op,
            plugins: c.plugins.clone(),
            reasons: c.reasons.clone(),
            monthly_cost_delta: monthly,
            one_time_cost: one_time,
        });
    };
    match &c.action {
        Action::Share(p) => push(Op::Share { principal: p.clone() }, 0, 0),
        Action::Unshare(p) => push(Op::Unshare { principal: p.clone() }, 0, 0),
        Action::CopyToRegion(r) => push(Op::Copy { request: r.clone() }, c.monthly_cost_delta, c.one_time_cost),
        Action::DeprecateAt(t) => push(Op::Deprecate { at: *t }, 0, 0),
        Action::Disable => push(Op::Disable, 0, 0),
        Action::Deregister { .. } => {
            push(Op::Deregister, 0, 0);
            for (snap, cost) in &c.snapshots {
                push(Op::DeleteSnapshot { snapshot_id: snap.clone() }, *cost, 0);
            }
        }
        Action::Tag(tags) => push(Op::Tag { tags: tags.clone() }, 0, 0),
        Action::Untag(keys) => push(Op::Untag { keys: keys.clone() }, 0, 0),
        Action::Retain => {}
    }
}
