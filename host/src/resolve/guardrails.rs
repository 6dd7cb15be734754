//! The host's guardrails over planned actions: the checks no plugin, plan file or
//! journal can get around. `apply` runs them on every plan before its first call,
//! whatever the plan came from (computed now, a saved file, a resumed journal, an event).

use std::collections::BTreeSet;

use crate::config::Policy;
use crate::inventory::Inventory;
use crate::model::{self, ActionKind, Principal, Timestamp};
use crate::plan::{Op, PlannedAction};

/// The action kind a policy must grant for an op.
pub fn grant_for(op: &Op) -> ActionKind {
    match op {
        Op::Tag { .. } => ActionKind::Tag,
        Op::Untag { .. } => ActionKind::Untag,
        Op::Unshare { .. } => ActionKind::Unshare,
        Op::Share { .. } => ActionKind::Share,
        Op::Copy { .. } => ActionKind::Copy,
        Op::Deprecate { .. } => ActionKind::Deprecate,
        Op::Disable => ActionKind::Disable,
        Op::Deregister => ActionKind::Deregister,
        Op::DeleteSnapshot { .. } => ActionKind::DeleteSnapshots,
    }
}

/// Why a share with `principal` is forbidden, if it is.
pub fn share_forbidden(policy: &Policy, principal: &Principal) -> Option<String> {
    if *principal == Principal::Public && !policy.guardrails.allow_public {
        Some("guardrails.allow_public is false: images are never made public".into())
    } else if !policy.share_allowed(principal) {
        Some(format!("{principal} is not on guardrails.allowed_principals"))
    } else {
        None
    }
}

/// Why a copy of an image in `from` to `to` is forbidden, if it is.
pub fn copy_forbidden(policy: &Policy, from: &str, to: &str) -> Option<String> {
    if from == to {
        Some("a copy into its own region".into())
    } else if !policy.copy_regions().contains(to) {
        Some(format!("{to} is not on guardrails.copy_regions"))
    } else if !policy.scope.regions.contains(to) {
        Some(format!("{to} is outside the policy's scope"))
    } else {
        None
    }
}

/// Why a plugin may not write or remove these tag keys, if so.
pub fn tags_forbidden<'a>(keys: impl IntoIterator<Item = &'a String>) -> Option<String> {
    let reserved: Vec<&str> = keys.into_iter().filter(|k| model::is_reserved_tag(k)).map(String::as_str).collect();
    (!reserved.is_empty()).then(|| {
        format!("tag key(s) {} are reserved (the `amiwarden:` prefix to the host, `aws:` to AWS)", reserved.join(", "))
    })
}

/// The blast-radius limit: why a plan with these destructive ops must stop, if it must.
/// `destroyed` is the images those ops touch, `in_scope` the images the run looked at.
pub fn blast_radius(policy: &Policy, destructive: usize, destroyed: usize, in_scope: usize) -> Option<String> {
    let g = &policy.guardrails;
    let percent = if in_scope == 0 { 0.0 } else { destroyed as f64 * 100.0 / in_scope as f64 };
    if destructive > g.max_destructive {
        Some(format!(
            "the plan has {destructive} destructive actions, over guardrails.max_destructive = {}; nothing was changed",
            g.max_destructive
        ))
    } else if percent > g.max_destructive_percent {
        Some(format!(
            "the plan's destructive actions touch {destroyed} of {in_scope} images ({percent:.1}%), over guardrails.max_destructive_percent = {}; nothing was changed",
            g.max_destructive_percent
        ))
    } else {
        None
    }
}

/// One planned action the guardrails refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The action, or empty for a rule over the whole plan (the blast radius).
    pub action_id: String,
    pub reason: String,
}

/// Checks every action of a plan against the policy and the current inventory: scope,
/// grants, share allow list, public access, copy targets, reserved tags and EC2's tag
/// limits, deprecation horizon, snapshots that belong to their image, and the blast
/// radius of the whole plan (an interrupted plan counts the images it already removed).
/// Live state (in use, shared since) is re-read by `apply` right before each
/// destructive call; plugins' `retain` is re-asked by the caller.
pub fn check_planned(
    policy: &Policy,
    inventory: &Inventory,
    actions: &[PlannedAction],
    now: Timestamp,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let deregistered: BTreeSet<(&str, &str, &str)> = actions
        .iter()
        .filter(|a| a.op == Op::Deregister)
        .map(|a| (a.account.as_str(), a.region.as_str(), a.image_id.as_str()))
        .collect();
    for a in actions {
        let mut refuse = |reason: String| out.push(Violation { action_id: a.id.clone(), reason });
        if !policy.scope.accounts.contains(&a.account) || !policy.scope.regions.contains(&a.region) {
            refuse(format!("{}/{} is outside the policy's scope", a.account, a.region));
            continue;
        }
        if a.plugins.is_empty() {
            refuse("no plugin proposed it".into());
        }
        let kind = grant_for(&a.op);
        for plugin in &a.plugins {
            let granted = policy.plugins.iter().any(|p| p.enabled && &p.name == plugin && p.grants.contains(&kind));
            if !granted {
                refuse(format!("the policy does not grant `{plugin}` the `{kind}` action"));
            }
        }
        let image = inventory.get(&a.image_id).filter(|i| i.account == a.account && i.region == a.region);
        match &a.op {
            Op::Share { principal } => refuse_if(&mut refuse, share_forbidden(policy, principal)),
            Op::Copy { request } => refuse_if(&mut refuse, copy_forbidden(policy, &a.region, &request.region)),
            Op::Tag { tags } => {
                refuse_if(&mut refuse, tags_forbidden(tags.keys()));
                if tags.len() > model::MAX_TAGS
                    || tags.iter().any(|(k, v)| {
                        k.is_empty()
                            || k.chars().count() > model::MAX_TAG_KEY
                            || v.chars().count() > model::MAX_TAG_VALUE
                    })
                {
                    refuse("the tags break EC2's limits (50 per image, keys 1-128, values 0-256 characters)".into());
                }
                if tags.iter().any(|(k, v)| model::text::unsafe_char(k).or(model::text::unsafe_char(v)).is_some()) {
                    refuse("a tag holds a control character".into());
                }
            }
            Op::Untag { keys } => refuse_if(&mut refuse, tags_forbidden(keys)),
            Op::Deprecate { at } if at.0 > now.0.saturating_add(model::MAX_DEPRECATE_AHEAD) => {
                refuse(format!("deprecation at {at} is more than 10 years ahead (EC2's limit)"));
            }
            Op::DeleteSnapshot { snapshot_id } => {
                if !deregistered.contains(&(a.account.as_str(), a.region.as_str(), a.image_id.as_str())) {
                    refuse(format!("{snapshot_id} is deleted without deregistering {} in the same plan", a.image_id));
                }
                if let Some(image) = image
                    && !image.snapshot_ids().any(|s| s == snapshot_id)
                {
                    refuse(format!("{snapshot_id} is not a snapshot of {}", a.image_id));
                }
            }
            _ => {}
        }
    }
    let destructive: Vec<&PlannedAction> = actions.iter().filter(|a| a.op.is_destructive()).collect();
    let destroyed: BTreeSet<&str> = destructive.iter().map(|a| a.image_id.as_str()).collect();
    let gone = destroyed.iter().filter(|id| inventory.get(id).is_none()).count();
    if let Some(reason) = blast_radius(policy, destructive.len(), destroyed.len(), inventory.images().len() + gone) {
        out.push(Violation { action_id: String::new(), reason });
    }
    out
}

fn refuse_if(refuse: &mut impl FnMut(String), why: Option<String>) {
    if let Some(why) = why {
        refuse(why);
    }
}
