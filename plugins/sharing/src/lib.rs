//! Sharing: each image is shared with exactly the principals its tags and rules ask
//! for, plus an allow list; every other launch permission is revoked one principal at a
//! time, and a public image is made private unless the policy allows public images.

mod config;

use amiwarden_sdk::ImageState;
use amiwarden_sdk::prelude::*;
use config::Config;
use std::collections::BTreeMap;

/// The sharing policy.
#[derive(Default)]
pub struct Sharing {
    config: Option<Config>,
}

/// Without launch permissions (the policy gave the plugin `needs = []`), only what
/// DescribeImages shows is judged: a public image is made private unless public images
/// are allowed or desired. Shares with accounts are neither added nor revoked.
fn public_only(config: &Config, image: &Image) -> Vec<Proposal> {
    if !image.public || config.allow_public {
        return Vec::new();
    }
    let reason = "the image is public and the policy does not allow public images (launch permissions not read: \
                  account shares are left as they are)";
    vec![Proposal::new(&image.id, Action::Unshare(Principal::Public), reason.to_string())]
}

/// Principals an image should be shared with, by text, with why.
type Desired = BTreeMap<String, (Principal, Vec<String>)>;

impl Policy for Sharing {
    fn info() -> PluginInfo {
        PluginInfo::new("sharing", env!("CARGO_PKG_VERSION"))
            .proposes([ActionKind::Share, ActionKind::Unshare])
            .needs([InventoryNeed::LaunchPermissions])
    }

    fn configure(&mut self, config: &str) -> Result<(), PolicyError> {
        self.config = Some(Config::parse(config)?);
        Ok(())
    }

    fn propose(&self, event: &ImageEvent) -> Result<Vec<Proposal>, PolicyError> {
        let config = self.config.as_ref().ok_or_else(|| PolicyError::Failed("sharing is not configured".into()))?;
        let image = &event.image;
        if matches!(event.kind, EventKind::Deregistered) || image.state != ImageState::Available {
            return Ok(Vec::new());
        }
        let Some(permissions) = &image.launch_permissions else {
            return Ok(report(config, image, public_only(config, image)));
        };
        let mut current: BTreeMap<String, Principal> =
            permissions.iter().map(|p| (p.as_str().to_string(), p.clone())).collect();
        if image.public {
            current.entry("public".into()).or_insert(Principal::Public);
        }
        let desired = desired(config, image);
        let mut proposals = Vec::new();
        for (text, (principal, why)) in &desired {
            if !current.contains_key(text) {
                let reason = format!("{text} is desired by {}", why.join("; "));
                proposals.push(Proposal::new(&image.id, Action::Share(principal.clone()), reason));
            }
        }
        for (text, principal) in &current {
            if desired.contains_key(text) {
                continue;
            }
            let reason = match principal {
                Principal::Public if config.allow_public => continue,
                Principal::Public => "the image is public and the policy does not allow public images".to_string(),
                _ if config.allowed.contains(text) => continue,
                _ => format!("{text} is neither desired for this image nor on the allow list"),
            };
            proposals.push(Proposal::new(&image.id, Action::Unshare(principal.clone()), reason));
        }
        Ok(report(config, image, proposals))
    }
}

/// The proposals, or with `report_only` none: each is logged instead.
fn report(config: &Config, image: &Image, proposals: Vec<Proposal>) -> Vec<Proposal> {
    if !config.report_only {
        return proposals;
    }
    for proposal in &proposals {
        let (verb, principal) = match &proposal.action {
            Action::Share(p) => ("share", p.as_str()),
            Action::Unshare(p) => ("unshare", p.as_str()),
            _ => continue,
        };
        let message = format!("report only: would {verb} {} with {principal}: {}", image.id, proposal.reason);
        log(LogLevel::Info, &message);
    }
    Vec::new()
}

/// What the share tag and the rules ask for `image`.
fn desired(config: &Config, image: &Image) -> Desired {
    let mut desired = Desired::new();
    let mut add = |principal: &Principal, why: String| {
        let entry = desired.entry(principal.as_str().to_string()).or_insert_with(|| (principal.clone(), Vec::new()));
        if !entry.1.contains(&why) {
            entry.1.push(why);
        }
    };
    if let Some(key) = &config.share_tag
        && let Some(value) = image.tag(key)
    {
        for group in value.split(|c: char| c == ',' || c.is_whitespace()).filter(|g| !g.is_empty()) {
            match config.groups.get(group) {
                Some(members) => members.iter().for_each(|p| add(p, format!("tag {key}={value} (group {group})"))),
                None => log(
                    LogLevel::Warn,
                    &format!("{}: tag {key}={value} names unknown group `{group}`; it shares with no one", image.id),
                ),
            }
        }
    }
    for rule in config.rules.iter().filter(|r| r.selects(image)) {
        for (principal, group) in &rule.principals {
            let why = match group {
                Some(group) => format!("{} (group {group})", rule.label),
                None => rule.label.clone(),
            };
            add(principal, why);
        }
    }
    desired
}

export_policy!(Sharing);

#[cfg(test)]
mod tests;
