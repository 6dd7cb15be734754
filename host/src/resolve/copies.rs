//! Copy rules: one copy per target region (identical requests merge, different ones
//! conflict), none where a replica exists, only to allowed regions, and none of an image
//! the same plan retires.

use std::collections::{BTreeMap, BTreeSet};

use super::{Accepted, Candidates, Group, guardrails, refusal};
use crate::config::Policy;
use crate::inventory::{Inventory, Query};
use crate::model::{Action, CopyRequest, Proposed};
use crate::plan::RefusalKind;

/// The copy proposals of one image.
pub(super) fn resolve<'a>(
    policy: &Policy,
    inventory: &Inventory,
    group: &Group<'a>,
    out: &mut Candidates,
    accepted: &mut Accepted<'a>,
) {
    let image = group.image;
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
                Action::CopyToRegion(c) => Some(&**c),
                _ => None,
            })
            .collect();
        let request = requests.iter().next().copied();
        let first = request.map(|c| Action::CopyToRegion(Box::new(c.clone()))).unwrap_or(Action::Retain);
        let replica_exists = inventory
            .query(&Query {
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
                out.who(&ps),
                RefusalKind::Conflict,
                format!("plugins ask for different copies to {region} (encryption, key, tags or name differ)"),
            ));
        } else if let Some(why) =
            request.and_then(|request| guardrails::copy_forbidden(policy, &image.account, &image.region, request))
        {
            out.refused.push(refusal(image, &first, out.who(&ps), RefusalKind::Guardrail, why));
        } else {
            accepted.push((first, ps));
        }
    }
}

/// A copy of an image this plan retires (deprecates, disables, deregisters) would only
/// need retiring in turn: it is refused, so plans converge in one apply.
pub(super) fn drop_copies_of_retired(group: &Group<'_>, out: &mut Candidates, accepted: &mut Accepted<'_>) {
    let image = group.image;
    if accepted.iter().any(|(a, _)| matches!(a, Action::DeprecateAt(_) | Action::Disable | Action::Deregister { .. })) {
        accepted.retain(|(a, ps)| {
            if matches!(a, Action::CopyToRegion(_)) {
                out.refused.push(refusal(
                    image,
                    a,
                    out.who(ps),
                    RefusalKind::Conflict,
                    "this plan retires the image (deprecate, disable or deregister); it is not copied".into(),
                ));
                false
            } else {
                true
            }
        });
    }
}
