//! Tag rules: tags merge; a key with two values, or both set and removed, is a
//! conflict; keys reserved to the host or AWS are refused; EC2's 50-tag limit holds.

use std::collections::{BTreeMap, BTreeSet};

use super::{Accepted, Candidates, Group, by_action, guardrails, refusal};
use crate::model::{Action, Proposed};
use crate::plan::RefusalKind;

/// The tag and untag proposals of one image.
pub(super) fn resolve<'a>(group: &Group<'a>, out: &mut Candidates, accepted: &mut Accepted<'a>) {
    let image = group.image;
    // Reserved keys: a plugin that could write the host's replica tags could make the
    // next run retire a live image as an orphan replica.
    let tag_ps = by_action(group, |a| matches!(a, Action::Tag(_)));
    let untag_ps = by_action(group, |a| matches!(a, Action::Untag(_)));
    let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for p in &tag_ps {
        if let Action::Tag(tags) = &p.proposal.action {
            if let Some(why) = guardrails::tags_forbidden(tags.keys()) {
                let reserved = tags.iter().filter(|(k, _)| crate::model::is_reserved_tag(k));
                let action = Action::Tag(reserved.map(|(k, v)| (k.clone(), v.clone())).collect());
                out.refused.push(refusal(image, &action, out.who(&[*p]), RefusalKind::Guardrail, why));
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
                out.refused.push(refusal(image, &action, out.who(&[*p]), RefusalKind::Guardrail, why));
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
                out.who(&tag_ps),
                RefusalKind::Conflict,
                format!("plugins disagree on tag `{k}`; none is applied"),
            ));
        } else if let Some(v) = vs.iter().next()
            && image.tags.get(k).map(String::as_str) != Some(*v)
        {
            tags.insert(k.to_string(), v.to_string());
        }
    }
    for k in removals {
        if !values.contains_key(k) && image.tags.contains_key(k) {
            untags.insert(k.to_string());
        }
    }
    let new_keys = tags.keys().filter(|k| !image.tags.contains_key(k)).count();
    let total = (image.tags.len() + new_keys).saturating_sub(untags.len());
    if !tags.is_empty() && total > crate::model::MAX_TAGS {
        out.refused.push(refusal(
            image,
            &Action::Tag(std::mem::take(&mut tags)),
            out.who(&tag_ps),
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
}
