//! Lifecycle rules: `retain` beats deprecate, disable and deregister; an image in use is
//! never disabled or deregistered; a plugin failure on the image blocks destructive
//! actions; deprecation times are ones EC2 accepts.

use super::{Accepted, Candidates, Group, by_action, refusal};
use crate::config::Policy;
use crate::model::{Action, Image, ImageState, Proposed, Timestamp};
use crate::plan::RefusalKind;

/// Why an image counts as in use, if it does: instances, launch templates, or a launch
/// within `guardrails.in_use_days`.
pub fn in_use_reason(image: &Image, policy: &Policy, now: Timestamp) -> Option<String> {
    let u = &image.usage;
    if u.instances > 0 {
        return Some(format!("in use by {} instance(s)", u.instances));
    }
    if let Some(lt) = u.launch_templates.first() {
        return Some(format!("referenced by launch template {lt}"));
    }
    if let Some(arn) = u.references.first() {
        return Some(format!("referenced by {arn}"));
    }
    let days = i64::from(policy.guardrails.in_use_days);
    match u.last_launched {
        Some(t) if days > 0 && t >= now.plus_days(-days) => Some(format!("launched {t}, within {days} days")),
        _ => None,
    }
}

/// The deprecation time EC2 will accept for a request: not before `now`, rounded up to
/// the next whole minute.
pub fn deprecation_time(at: Timestamp, now: Timestamp) -> Timestamp {
    let t = at.0.max(now.0.saturating_add(1));
    Timestamp(t.saturating_add(59).div_euclid(60).saturating_mul(60))
}

/// The retain, deprecate, disable and deregister proposals of one image.
pub(super) fn resolve<'a>(
    policy: &Policy,
    group: &Group<'a>,
    failed_plugins: Option<&Vec<&str>>,
    now: Timestamp,
    out: &mut Candidates,
    accepted: &mut Accepted<'a>,
) {
    let image = group.image;
    let retainers = by_action(group, |a| *a == Action::Retain);
    let in_use = if policy.guardrails.protect_in_use { in_use_reason(image, policy, now) } else { None };
    let deprecations = by_action(group, |a| matches!(a, Action::DeprecateAt(_)));
    let disables = by_action(group, |a| *a == Action::Disable);
    let deregisters = by_action(group, |a| matches!(a, Action::Deregister { .. }));
    // Tag and untag proposals that change the image's tags (the same tags are no change).
    let retags = by_action(group, |a| match a {
        Action::Tag(tags) => tags.iter().any(|(k, v)| image.tags.get(k) != Some(v)),
        Action::Untag(keys) => keys.iter().any(|k| image.tags.get(k).is_some()),
        _ => false,
    });
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
    } else if !disables.is_empty() && image.state != ImageState::Disabled {
        lifecycle.push((Action::Disable, disables.clone()));
    }
    for (action, ps) in lifecycle {
        let destructive = action.kind().is_destructive();
        if !retainers.is_empty() {
            let why = super::per_plugin(&retainers)
                .into_iter()
                .map(|(plugin, reason)| format!("{plugin} ({reason})"))
                .collect::<Vec<_>>()
                .join("; ");
            out.refused.push(refusal(
                image,
                &action,
                out.who(&ps),
                RefusalKind::Retained,
                format!("retained by {why}"),
            ));
        } else if let (Action::Deregister { .. }, Some(how)) = (&action, &image.deregistration_protection) {
            out.refused.push(refusal(
                image,
                &action,
                out.who(&ps),
                RefusalKind::Guardrail,
                format!("EC2's deregistration protection is on ({how}); turn it off first to deregister"),
            ));
        } else if let (Action::Deregister { .. }, Some(why)) =
            (&action, super::guardrails::unrecoverable(policy, "image", image.recycle_bin_days))
        {
            out.refused.push(refusal(image, &action, out.who(&ps), RefusalKind::Guardrail, why));
        } else if let (Action::Deregister { .. }, false, Some(why)) =
            (&action, retags.is_empty(), super::guardrails::retagged_cover(policy))
        {
            out.refused.push(refusal(image, &action, out.who(&ps), RefusalKind::Guardrail, why));
        } else if let (true, Some(why)) = (destructive, &in_use) {
            out.refused.push(refusal(image, &action, out.who(&ps), RefusalKind::Guardrail, format!("image is {why}")));
        } else if let (true, Some(failed)) = (destructive, failed_plugins) {
            out.refused.push(refusal(
                image,
                &action,
                out.who(&ps),
                RefusalKind::PluginFailed,
                format!("plugin(s) {} failed on this image; destructive actions on it are blocked", failed.join(", ")),
            ));
        } else {
            accepted.push((action, ps));
        }
    }
}
