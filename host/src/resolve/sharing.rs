//! Sharing rules: per principal, an unshare beats a share (the more private outcome
//! wins); a share the guardrails forbid is refused; nothing is done that is already so.

use std::collections::BTreeSet;

use super::{Accepted, Candidates, Group, by_action, guardrails, refusal};
use crate::config::Policy;
use crate::model::{Action, Principal};
use crate::plan::RefusalKind;

/// The share and unshare proposals of one image.
pub(super) fn resolve<'a>(policy: &Policy, group: &Group<'a>, out: &mut Candidates, accepted: &mut Accepted<'a>) {
    let image = group.image;
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
                    out.who(&shares),
                    RefusalKind::Conflict,
                    format!(
                        "{} unshares {pr}: the more private outcome wins",
                        unshares
                            .iter()
                            .map(|p| p.plugin.as_str())
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect::<Vec<_>>()
                            .join(", ")
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
                    out.who(&shares),
                    RefusalKind::Guardrail,
                    why,
                )),
                None => accepted.push((Action::Share(pr.clone()), shares)),
            }
        }
    }
}
