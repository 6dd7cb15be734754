//! `explain`: what the engine knows about one image and what a run decides for it — its
//! facts, the host's guardrails that bind it, every plugin's proposals for it (a `retain`
//! says why the image is kept), and the plan's actions, refusals and plugin errors on it.

use std::sync::Arc;

use serde::Serialize;

use crate::config::Policy;
use crate::model::{Action, Image, Timestamp};
use crate::plan::{PlannedAction, Refusal};
use crate::plugin::Plugin;
use crate::run::Planned;

/// One image explained.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub image: Image,
    pub age_days: i64,
    /// The host's guardrails that bind it, in words.
    pub guardrails: Vec<String>,
    /// What each plugin proposes for it, and why.
    pub proposals: Vec<ProposalLine>,
    /// Plugins that failed on it (destructive actions on it are then blocked).
    pub plugin_errors: Vec<String>,
    /// What the plan does to it.
    pub actions: Vec<PlannedAction>,
    /// What the plan refused for it, and why.
    pub refused: Vec<Refusal>,
}

/// One plugin's proposal.
#[derive(Debug, Serialize)]
pub struct ProposalLine {
    pub plugin: String,
    pub action: Action,
    pub reason: String,
}

/// Explains `image_id` in the run `planned` made; its plugins are asked again about it
/// alone (as a scheduled run asks about each image) to show every proposal, including
/// the `retain`s that leave no trace in a plan.
pub fn explain(
    policy: &Policy,
    plugins: &[Plugin],
    planned: &Planned,
    image_id: &str,
    now: Timestamp,
) -> Result<Explanation, String> {
    let inventory: &Arc<crate::inventory::Inventory> = &planned.inventory;
    let Some(image) = inventory.get(image_id) else {
        return Err(format!(
            "{image_id} is not in the inventory of the policy's scope ({} in {})",
            policy.scope.accounts.iter().cloned().collect::<Vec<_>>().join(", "),
            policy.scope.regions.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    };
    let event = crate::event::Events::Listed(vec![crate::event::scheduled_event(image, now)]);
    let asked = crate::plugin::propose(policy, plugins, inventory, &event, now, &|_| {});
    let proposals = asked
        .proposed
        .into_iter()
        .filter(|p| p.proposal.image_id == image_id)
        .map(|p| ProposalLine { plugin: p.plugin, action: p.proposal.action, reason: p.proposal.reason })
        .collect();
    let mut plugin_errors: Vec<String> =
        asked.failures.iter().filter(|f| f.image.as_deref() == Some(image_id)).map(|f| f.to_string()).collect();
    for e in planned.plan.errors.iter().filter(|e| e.image.as_deref() == Some(image_id)) {
        let text = e.to_string();
        if !plugin_errors.contains(&text) {
            plugin_errors.push(text);
        }
    }
    Ok(Explanation {
        image: image.clone(),
        age_days: (now.0 - image.creation_time.0).div_euclid(86_400),
        guardrails: guardrails(policy, image, now),
        proposals,
        plugin_errors,
        actions: planned.plan.actions.iter().filter(|a| a.image_id == image_id).cloned().collect(),
        refused: planned.plan.refused.iter().filter(|r| r.image_id == image_id).cloned().collect(),
    })
}

/// The host's guardrails that bind this image now.
fn guardrails(policy: &Policy, image: &Image, now: Timestamp) -> Vec<String> {
    let g = &policy.guardrails;
    let mut out = Vec::new();
    if let Some(why) = crate::resolve::in_use_reason(image, policy, now) {
        out.push(match g.protect_in_use {
            true => format!("{why}: never disabled or deregistered (guardrails.protect_in_use)"),
            false => format!("{why}, but guardrails.protect_in_use is off: it may be disabled or deregistered"),
        });
    }
    if let Some(how) = &image.deregistration_protection {
        out.push(format!("EC2's deregistration protection is on ({how}): never deregistered"));
    }
    if image.is_public() && !g.allow_public {
        out.push("public, and guardrails.allow_public is off: no plugin can make an image public".into());
    }
    out
}
