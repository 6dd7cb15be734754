//! The host's guardrails over planned actions: the checks no plugin, plan file or
//! journal can get around. `apply` runs them on every plan before its first call,
//! whatever the plan came from (computed now, a saved file, a resumed journal, an event).

use std::collections::BTreeSet;

use crate::config::Policy;
use crate::inventory::Inventory;
use crate::model::{self, ActionKind, CopyRequest, Principal, Timestamp};
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
pub fn copy_forbidden(policy: &Policy, account: &str, from: &str, request: &CopyRequest) -> Option<String> {
    let to = request.region.as_str();
    if from == to {
        Some("a copy into its own region".into())
    } else if !policy.copy_regions().contains(to) {
        Some(format!("{to} is not on guardrails.copy_regions"))
    } else if !policy.scope.regions.contains(to) {
        Some(format!("{to} is outside the policy's scope"))
    } else {
        foreign_key(account, request.kms_key_id.as_deref())
    }
}

/// Why a copy may not be encrypted with `key`, if so: a key ARN of another account. The
/// copy's snapshots would be readable only while that account's key policy allows it: its
/// owner could take the copy away (or hold it), and a plugin's choice should not hand
/// them that. A key id or alias names a key of the copying account.
fn foreign_key(account: &str, key: Option<&str>) -> Option<String> {
    let arn = key?.strip_prefix("arn:")?;
    // arn:PARTITION:kms:REGION:ACCOUNT:key/ID (or alias/NAME)
    let owner = arn.split(':').nth(3).unwrap_or_default();
    (owner != account)
        .then(|| format!("its KMS key {} is not a key of the image's account {account}", key.unwrap_or_default()))
}

/// Why a plugin may not write or remove these tag keys, if so.
pub fn tags_forbidden<'a>(keys: impl IntoIterator<Item = &'a String>) -> Option<String> {
    let reserved: Vec<&str> = keys.into_iter().filter(|k| model::is_reserved_tag(k)).map(String::as_str).collect();
    (!reserved.is_empty()).then(|| {
        format!("tag key(s) {} are reserved (the `amiwarden:` prefix to the host, `aws:` to AWS)", reserved.join(", "))
    })
}

/// Why deleting something the Recycle Bin keeps `kept` days (`None`: no rule keeps it)
/// is forbidden by `guardrails.recycle_bin_days`, if it is. `what` names it: "image",
/// "snapshot snap-…".
pub fn unrecoverable(policy: &Policy, what: &str, kept: Option<u32>) -> Option<String> {
    let required = policy.guardrails.recycle_bin_days;
    match kept {
        _ if required == 0 => None,
        Some(days) if days >= required => None,
        Some(days) => Some(format!(
            "the Recycle Bin would keep the {what} {days} day(s), under guardrails.recycle_bin_days = {required}; \
             lengthen its retention rule to deregister or delete it"
        )),
        None => Some(format!(
            "no Recycle Bin retention rule would keep the {what} (guardrails.recycle_bin_days = {required}); \
             add one for it to be deregistered or deleted (docs/aws.md)"
        )),
    }
}

/// Why an image whose tags the same plan changes must not be deregistered by it, if
/// `guardrails.recycle_bin_days` asks for the Recycle Bin's cover: the bin matches its
/// rules on the tags an image has when it is deregistered, the plan's tag and untag
/// calls run before its deregistrations, and the cover was judged on the tags before
/// (an untag of the key a rule matches would leave the image uncovered, for good). A
/// later run, which sees the new tags, deregisters it.
pub fn retagged_cover(policy: &Policy) -> Option<String> {
    let required = policy.guardrails.recycle_bin_days;
    (required > 0).then(|| {
        format!(
            "its tags change in this plan, and the Recycle Bin's rules match the tags it has when deregistered \
             (guardrails.recycle_bin_days = {required}): a later run deregisters it, once the new tags are set"
        )
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
    let images_with = |matches: fn(&Op) -> bool| -> BTreeSet<(&str, &str, &str)> {
        actions
            .iter()
            .filter(|a| matches(&a.op))
            .map(|a| (a.location.account.as_str(), a.location.region.as_str(), a.image_id.as_str()))
            .collect()
    };
    let deregistered = images_with(|op| *op == Op::Deregister);
    let retagged = images_with(|op| matches!(op, Op::Tag { .. } | Op::Untag { .. }));
    for a in actions {
        let mut refuse = |reason: String| out.push(Violation { action_id: a.id.clone(), reason });
        if !policy.scope.accounts.contains(&a.location.account) || !policy.scope.regions.contains(&a.location.region) {
            refuse(format!("{} is outside the policy's scope", a.location));
            continue;
        }
        if a.id != PlannedAction::id_for(&a.location.account, &a.location.region, &a.image_id, &a.op) {
            // Ids double as EC2 client tokens: a forged one could alias another action.
            refuse(format!("its id is not the id of {} on {}", a.op.verb(), a.image_id));
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
        let image =
            inventory.get(&a.image_id).filter(|i| i.account == a.location.account && i.region == a.location.region);
        match &a.op {
            Op::Share { principal } => refuse_if(&mut refuse, share_forbidden(policy, principal)),
            Op::Copy { request } => {
                refuse_if(&mut refuse, copy_forbidden(policy, &a.location.account, &a.location.region, request));
            }
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
                if !deregistered.contains(&(
                    a.location.account.as_str(),
                    a.location.region.as_str(),
                    a.image_id.as_str(),
                )) {
                    refuse(format!("{snapshot_id} is deleted without deregistering {} in the same plan", a.image_id));
                }
                if let Some(image) = image
                    && !image.snapshot_ids().any(|s| s == snapshot_id)
                {
                    refuse(format!("{snapshot_id} is not a snapshot of {}", a.image_id));
                }
                // An image already deregistered by this plan (a resumed run) is gone with
                // its snapshots' tags: their cover was checked when the run began.
                if let Some(device) =
                    image.and_then(|i| i.block_devices.iter().find(|d| d.snapshot_id.as_ref() == Some(snapshot_id)))
                {
                    refuse_if(
                        &mut refuse,
                        unrecoverable(policy, &format!("snapshot {snapshot_id}"), device.recycle_bin_days),
                    );
                }
            }
            Op::Deregister => {
                if let Some(how) = image.and_then(|i| i.deregistration_protection.as_ref()) {
                    refuse(format!("EC2's deregistration protection is on for {} ({how})", a.image_id));
                }
                if let Some(image) = image {
                    refuse_if(&mut refuse, unrecoverable(policy, "image", image.recycle_bin_days));
                }
                let image_key = (a.location.account.as_str(), a.location.region.as_str(), a.image_id.as_str());
                if retagged.contains(&image_key) {
                    refuse_if(&mut refuse, retagged_cover(policy));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Architecture, BlockDevice, CopyRequest, Image, ImageState, Usage};

    fn policy(extra: &str) -> Policy {
        Policy::parse(&format!(
            r#"
[scope]
accounts = ["111111111111"]
regions = ["us-east-1", "eu-west-1", "us-west-2"]
[guardrails]
copy_regions = ["eu-west-1"]
max_destructive = 3
max_destructive_percent = 50.0
{extra}
[[plugin]]
name = "p"
source = "builtin:retention"
grants = ["share", "unshare", "copy", "deprecate", "disable", "deregister", "delete-snapshots", "tag", "untag"]
[[plugin]]
name = "tagger"
source = "builtin:retention"
grants = ["tag"]
"#
        ))
        .unwrap()
    }

    fn image(n: u8) -> Image {
        Image {
            id: format!("ami-0{n:016x}"),
            account: "111111111111".into(),
            region: "us-east-1".into(),
            name: format!("img-{n}"),
            description: String::new(),
            creation_time: Timestamp(0),
            state: ImageState::Available,
            architecture: Architecture::X86_64,
            platform: Default::default(),
            root_device_type: Default::default(),
            public: false,
            launch_permissions: Some(Default::default()),
            tags: Default::default(),
            block_devices: vec![BlockDevice {
                device_name: "/dev/xvda".into(),
                snapshot_id: Some(format!("snap-0{n:016x}")),
                size_gib: 8,
                full_size_bytes: None,
                storage_tier: Default::default(),
                recycle_bin_days: None,
            }],
            deprecation_time: None,
            source_image_id: None,
            source_region: None,
            deregistration_protection: None,
            recycle_bin_days: None,
            usage: Usage::default(),
            monthly_cost: 0,
        }
    }

    fn planned(account: &str, n: u8, op: Op, plugin: &str) -> PlannedAction {
        let image_id = format!("ami-0{n:016x}");
        PlannedAction {
            id: PlannedAction::id_for(account, "us-east-1", &image_id, &op),
            location: crate::model::Location { account: account.into(), region: "us-east-1".into() }.into(),
            image_id,
            image_name: String::new(),
            op,
            plugins: [plugin.to_string()].into(),
            reasons: Default::default(),
            monthly_cost_delta: 0,
            one_time_cost: 0,
        }
    }

    const NOW: Timestamp = Timestamp(1_795_000_000);

    fn verdict(policy: &Policy, actions: &[PlannedAction]) -> Option<String> {
        let inventory = Inventory::new((1..=8).map(image).collect()).unwrap();
        let v = check_planned(policy, &inventory, actions, NOW);
        (!v.is_empty()).then(|| v.into_iter().map(|v| v.reason).collect::<Vec<_>>().join("; "))
    }

    #[test]
    fn every_planned_action_meets_the_guardrails_whatever_made_the_plan() {
        let p = policy("");
        let keyed = |region: &str, key: Option<&str>| Op::Copy {
            request: Box::new(CopyRequest {
                region: region.into(),
                encrypted: key.is_some(),
                kms_key_id: key.map(str::to_string),
                copy_tags: false,
                name: None,
            }),
        };
        let copy = |region: &str| keyed(region, None);
        let tag = |k: &str, v: &str| Op::Tag { tags: [(k.to_string(), v.to_string())].into() };
        let acct = "111111111111";
        let rows: Vec<(&str, PlannedAction, Option<&str>)> = vec![
            ("a share in scope", planned(acct, 1, Op::Share { principal: Principal::Account(acct.into()) }, "p"), None),
            (
                "public",
                planned(acct, 1, Op::Share { principal: Principal::Public }, "p"),
                Some("allow_public is false"),
            ),
            (
                "off the allow list",
                planned(acct, 1, Op::Share { principal: Principal::Account("444444444444".into()) }, "p"),
                Some("not on guardrails.allowed_principals"),
            ),
            ("revoking public", planned(acct, 1, Op::Unshare { principal: Principal::Public }, "p"), None),
            ("a copy to a copy region", planned(acct, 1, copy("eu-west-1"), "p"), None),
            ("a copy elsewhere", planned(acct, 1, copy("us-west-2"), "p"), Some("not on guardrails.copy_regions")),
            ("a copy home", planned(acct, 1, copy("us-east-1"), "p"), Some("its own region")),
            ("a copy with an alias", planned(acct, 1, keyed("eu-west-1", Some("alias/replicas")), "p"), None),
            (
                "a copy with a key of the image's account",
                planned(acct, 1, keyed("eu-west-1", Some("arn:aws:kms:eu-west-1:111111111111:key/k")), "p"),
                None,
            ),
            (
                "a copy with another account's key",
                planned(acct, 1, keyed("eu-west-1", Some("arn:aws:kms:eu-west-1:999999999999:key/k")), "p"),
                Some("is not a key of the image's account 111111111111"),
            ),
            ("another account", planned("333333333333", 1, Op::Deregister, "p"), Some("outside the policy's scope")),
            ("a kind not granted", planned(acct, 1, Op::Deregister, "tagger"), Some("does not grant `tagger`")),
            ("a plugin not in the policy", planned(acct, 1, tag("a", "b"), "ghost"), Some("does not grant `ghost`")),
            ("a plain tag", planned(acct, 1, tag("team", "x"), "tagger"), None),
            ("the host's tag", planned(acct, 1, tag("amiwarden:source-image-id", "x"), "p"), Some("reserved")),
            (
                "an aws: untag",
                planned(acct, 1, Op::Untag { keys: ["aws:x".to_string()].into() }, "p"),
                Some("reserved"),
            ),
            ("an escape in a tag", planned(acct, 1, tag("team", "\u{1b}[2J"), "p"), Some("control character")),
            (
                "a deprecation 11 years ahead",
                planned(acct, 1, Op::Deprecate { at: Timestamp(NOW.0 + 11 * 365 * 86_400) }, "p"),
                Some("10 years"),
            ),
            (
                "a deprecation next year",
                planned(acct, 1, Op::Deprecate { at: Timestamp(NOW.0 + 365 * 86_400) }, "p"),
                None,
            ),
            (
                "a snapshot deleted without its deregistration",
                planned(acct, 1, Op::DeleteSnapshot { snapshot_id: format!("snap-0{:016x}", 1) }, "p"),
                Some("without deregistering"),
            ),
        ];
        for (name, action, want) in rows {
            let got = verdict(&p, std::slice::from_ref(&action));
            match want {
                None => assert_eq!(got, None, "{name}"),
                Some(needle) => assert!(got.as_deref().is_some_and(|g| g.contains(needle)), "{name}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_forged_action_id_or_someone_elses_snapshot_is_refused() {
        let p = policy("");
        let mut forged = planned("111111111111", 1, Op::Deregister, "p");
        forged.id = planned("111111111111", 2, Op::Deregister, "p").id;
        assert!(verdict(&p, &[forged]).is_some_and(|v| v.contains("its id is not")));
        let foreign = vec![
            planned("111111111111", 1, Op::Deregister, "p"),
            planned("111111111111", 1, Op::DeleteSnapshot { snapshot_id: format!("snap-0{:016x}", 2) }, "p"),
        ];
        assert!(verdict(&p, &foreign).is_some_and(|v| v.contains("is not a snapshot of")));
    }

    #[test]
    fn a_plan_that_retags_an_image_it_deregisters_is_refused_when_the_bin_must_cover_it() {
        let covered = |n: u8| {
            let mut i = image(n);
            i.recycle_bin_days = Some(7);
            i.block_devices[0].recycle_bin_days = Some(7);
            i
        };
        let inventory = Inventory::new((1..=8).map(covered).collect()).unwrap();
        let acct = "111111111111";
        let untag = |n: u8| planned(acct, n, Op::Untag { keys: ["rbin".to_string()].into() }, "p");
        let dereg = planned(acct, 1, Op::Deregister, "p");
        let reasons = |policy: &Policy, actions: &[PlannedAction]| -> Vec<String> {
            check_planned(policy, &inventory, actions, NOW).into_iter().map(|v| v.reason).collect()
        };
        let bin = policy("recycle_bin_days = 7");
        assert_eq!(reasons(&bin, std::slice::from_ref(&dereg)), Vec::<String>::new());
        assert_eq!(reasons(&bin, &[untag(2), dereg.clone()]), Vec::<String>::new(), "another image's tags");
        let refused = reasons(&bin, &[untag(1), dereg.clone()]);
        assert!(refused.len() == 1 && refused[0].contains("its tags change in this plan"), "{refused:?}");
        assert_eq!(reasons(&policy(""), &[untag(1), dereg]), Vec::<String>::new(), "no cover asked for");
    }

    #[test]
    fn the_blast_radius_holds_at_each_limit_and_stops_just_over_it() {
        let p = policy("");
        // max_destructive = 3; max_destructive_percent = 50 of the 8 images.
        let dereg = |n: u8| planned("111111111111", n, Op::Deregister, "p");
        assert_eq!(verdict(&p, &[dereg(1), dereg(2), dereg(3)]), None, "3 is at max_destructive");
        let over = verdict(&p, &[dereg(1), dereg(2), dereg(3), dereg(4)]);
        assert!(over.as_deref().is_some_and(|v| v.contains("max_destructive = 3")), "{over:?}");
        assert_eq!(blast_radius(&p, 3, 4, 8), None, "4 of 8 images is 50%: at the limit");
        let percent = blast_radius(&p, 3, 5, 8);
        assert!(percent.as_deref().is_some_and(|s| s.contains("max_destructive_percent")), "{percent:?}");
        assert_eq!(blast_radius(&p, 0, 0, 0), None);
    }
}
