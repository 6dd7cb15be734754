//! The smallest useful plugin: retains images tagged `keep=true`.

use amiwarden_sdk::prelude::*;

/// Retains images tagged `keep=true`.
#[derive(Default)]
pub struct KeepTagged;

impl Policy for KeepTagged {
    fn info() -> PluginInfo {
        PluginInfo::new("keep-tagged", env!("CARGO_PKG_VERSION")).proposes([ActionKind::Retain])
    }

    fn propose(&self, event: &ImageEvent) -> Result<Vec<Proposal>, PolicyError> {
        Ok(match event.image.tag("keep") {
            Some("true") => vec![Proposal::new(&event.image.id, Action::Retain, "tagged keep=true")],
            _ => Vec::new(),
        })
    }

    /// Never called: `info` does not say `.reviews()`. If the host called it anyway, every
    /// action would be vetoed (a test checks none is).
    fn review(&self, plan: &PricedPlan) -> Result<Vec<Verdict>, PolicyError> {
        Ok(plan.actions.iter().map(|a| Verdict::veto(&a.id, "keep-tagged does not review")).collect())
    }
}

export_policy!(KeepTagged);
