//! The generated host bindings of the WIT world and conversions to and from domain types.
//!
//! Everything from `bindgen!` stays in this module: the rest of the host speaks
//! `crate::model`. Plugin output is untrusted; `proposal_from_wit` validates it.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{self, Timestamp};

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit",
    // Queries are charged to the calling plugin's host-work budget and trap past it.
    imports: {
        "amiwarden:policy/host.query-images": trappable,
        "amiwarden:policy/host.get-image": trappable,
        "amiwarden:policy/host.query-summaries": trappable,
        "amiwarden:policy/host.get-summary": trappable,
        "amiwarden:policy/host.rank-by-age": trappable,
    },
});

pub use self::amiwarden::policy::host::{Host, ImageQuery, ImageSummary, LogLevel, Rank};
pub use self::amiwarden::policy::types as wit;

/// The WIT package version this host implements; a plugin must export exactly it.
pub const WIT_VERSION: &str = "0.2.0";

/// The export a compatible plugin carries.
pub const PLUGIN_EXPORT: &str = "amiwarden:policy/plugin";

impl From<&model::Principal> for wit::Principal {
    fn from(p: &model::Principal) -> Self {
        match p {
            model::Principal::Account(s) => wit::Principal::Account(s.clone()),
            model::Principal::Organization(s) => wit::Principal::Organization(s.clone()),
            model::Principal::OrganizationalUnit(s) => wit::Principal::OrganizationalUnit(s.clone()),
            model::Principal::Public => wit::Principal::Public,
        }
    }
}

/// Validates a principal coming from a plugin.
fn principal_from_wit(p: wit::Principal) -> Result<model::Principal, String> {
    let parsed: model::Principal = match &p {
        wit::Principal::Public => return Ok(model::Principal::Public),
        wit::Principal::Account(s) | wit::Principal::Organization(s) | wit::Principal::OrganizationalUnit(s) => {
            s.parse()?
        }
    };
    let same_kind = matches!(
        (&p, &parsed),
        (wit::Principal::Account(_), model::Principal::Account(_))
            | (wit::Principal::Organization(_), model::Principal::Organization(_))
            | (wit::Principal::OrganizationalUnit(_), model::Principal::OrganizationalUnit(_))
    );
    if same_kind { Ok(parsed) } else { Err(format!("`{parsed}` is not a valid principal of the kind given")) }
}

impl From<&model::Image> for wit::Image {
    fn from(i: &model::Image) -> Self {
        wit::Image {
            id: i.id.clone(),
            account: i.account.clone(),
            region: i.region.clone(),
            name: i.name.clone(),
            description: i.description.clone(),
            creation_time: i.creation_time.0,
            state: i.state.into(),
            architecture: match i.architecture {
                model::Architecture::I386 => wit::Architecture::I386,
                model::Architecture::X86_64 => wit::Architecture::X8664,
                model::Architecture::Arm64 => wit::Architecture::Arm64,
                model::Architecture::X86_64Mac => wit::Architecture::X8664Mac,
                model::Architecture::Arm64Mac => wit::Architecture::Arm64Mac,
            },
            platform: match i.platform {
                model::Platform::Linux => wit::Platform::Linux,
                model::Platform::Windows => wit::Platform::Windows,
            },
            root_device_type: match i.root_device_type {
                model::RootDeviceType::Ebs => wit::RootDeviceType::Ebs,
                model::RootDeviceType::InstanceStore => wit::RootDeviceType::InstanceStore,
            },
            public: i.is_public(),
            launch_permissions: i.launch_permissions.as_ref().map(|ps| ps.iter().map(Into::into).collect()),
            tags: i.tags.iter().map(|(k, v)| wit::Tag { key: k.clone(), value: v.clone() }).collect(),
            block_devices: i
                .block_devices
                .iter()
                .map(|b| wit::BlockDevice {
                    device_name: b.device_name.clone(),
                    snapshot_id: b.snapshot_id.clone(),
                    size_gib: b.size_gib,
                    full_size_bytes: b.full_size_bytes,
                    storage_tier: match b.storage_tier {
                        model::StorageTier::Standard => wit::StorageTier::Standard,
                        model::StorageTier::Archive => wit::StorageTier::Archive,
                    },
                })
                .collect(),
            deprecation_time: i.deprecation_time.map(|t| t.0),
            source_image_id: i.source_image_id.clone(),
            source_region: i.source_region.clone(),
            usage: wit::Usage {
                instances: i.usage.instances,
                launch_templates: i.usage.launch_templates.clone(),
                last_launched: i.usage.last_launched.map(|t| t.0),
            },
            monthly_cost: i.monthly_cost,
        }
    }
}

impl From<model::ImageState> for wit::ImageState {
    fn from(state: model::ImageState) -> Self {
        match state {
            model::ImageState::Pending => wit::ImageState::Pending,
            model::ImageState::Available => wit::ImageState::Available,
            model::ImageState::Failed => wit::ImageState::Failed,
            model::ImageState::Disabled => wit::ImageState::Disabled,
            model::ImageState::Deregistered => wit::ImageState::Deregistered,
        }
    }
}

impl From<&model::Image> for ImageSummary {
    fn from(i: &model::Image) -> Self {
        ImageSummary {
            id: i.id.clone(),
            account: i.account.clone(),
            region: i.region.clone(),
            name: i.name.clone(),
            creation_time: i.creation_time.0,
            state: i.state.into(),
            deprecation_time: i.deprecation_time.map(|t| t.0),
            // Both backends already fill these from the host's tags when EC2 gives none.
            source_image_id: i.source_image_id.clone(),
            source_region: i.source_region.clone(),
            monthly_cost: i.monthly_cost,
        }
    }
}

impl From<&model::EventKind> for wit::EventKind {
    fn from(k: &model::EventKind) -> Self {
        let principals = |ps: &Vec<model::Principal>| ps.iter().map(Into::into).collect();
        match k {
            model::EventKind::Scheduled => wit::EventKind::Scheduled,
            model::EventKind::Created => wit::EventKind::Created,
            model::EventKind::Registered => wit::EventKind::Registered,
            model::EventKind::Copied => wit::EventKind::Copied,
            model::EventKind::Shared(ps) => wit::EventKind::Shared(principals(ps)),
            model::EventKind::Unshared(ps) => wit::EventKind::Unshared(principals(ps)),
            model::EventKind::Deprecated => wit::EventKind::Deprecated,
            model::EventKind::Disabled => wit::EventKind::Disabled,
            model::EventKind::Deregistered => wit::EventKind::Deregistered,
            model::EventKind::TagsChanged => wit::EventKind::TagsChanged,
        }
    }
}

impl From<&model::ImageEvent> for wit::ImageEvent {
    fn from(e: &model::ImageEvent) -> Self {
        wit::ImageEvent {
            kind: (&e.kind).into(),
            image: (&e.image).into(),
            evaluation_time: e.evaluation_time.0,
            raw: e.raw.to_string(),
        }
    }
}

impl From<&model::Action> for wit::Action {
    fn from(a: &model::Action) -> Self {
        match a {
            model::Action::Share(p) => wit::Action::Share(p.into()),
            model::Action::Unshare(p) => wit::Action::Unshare(p.into()),
            model::Action::CopyToRegion(c) => wit::Action::CopyToRegion(wit::CopyRequest {
                region: c.region.clone(),
                encrypted: c.encrypted,
                kms_key_id: c.kms_key_id.clone(),
                copy_tags: c.copy_tags,
                name: c.name.clone(),
            }),
            model::Action::DeprecateAt(t) => wit::Action::DeprecateAt(t.0),
            model::Action::Disable => wit::Action::Disable,
            model::Action::Deregister { delete_snapshots } => wit::Action::Deregister(*delete_snapshots),
            model::Action::Tag(tags) => {
                wit::Action::Tag(tags.iter().map(|(k, v)| wit::Tag { key: k.clone(), value: v.clone() }).collect())
            }
            model::Action::Untag(keys) => wit::Action::Untag(keys.iter().cloned().collect()),
            model::Action::Retain => wit::Action::Retain,
        }
    }
}

pub fn action_kind_from_wit(k: wit::ActionKind) -> model::ActionKind {
    match k {
        wit::ActionKind::Share => model::ActionKind::Share,
        wit::ActionKind::Unshare => model::ActionKind::Unshare,
        wit::ActionKind::Copy => model::ActionKind::Copy,
        wit::ActionKind::Deprecate => model::ActionKind::Deprecate,
        wit::ActionKind::Disable => model::ActionKind::Disable,
        wit::ActionKind::Deregister => model::ActionKind::Deregister,
        wit::ActionKind::DeleteSnapshots => model::ActionKind::DeleteSnapshots,
        wit::ActionKind::Tag => model::ActionKind::Tag,
        wit::ActionKind::Untag => model::ActionKind::Untag,
        wit::ActionKind::Retain => model::ActionKind::Retain,
    }
}

/// The longest name or version a plugin-info may give, in bytes.
pub const MAX_INFO_TEXT: usize = 128;

impl TryFrom<wit::PluginInfo> for model::PluginInfo {
    type Error = String;

    /// A plugin's description; a name or version over `MAX_INFO_TEXT` bytes or with
    /// control characters is malformed.
    fn try_from(i: wit::PluginInfo) -> Result<Self, String> {
        for (field, value) in [("plugin-info name", &i.name), ("plugin-info version", &i.version)] {
            if value.len() > MAX_INFO_TEXT {
                return Err(format!("{field} is {} bytes, over the limit of {MAX_INFO_TEXT}", value.len()));
            }
        }
        Ok(model::PluginInfo {
            name: text("plugin-info name", i.name)?,
            version: text("plugin-info version", i.version)?,
            actions: i.actions.into_iter().map(action_kind_from_wit).collect(),
            needs: i
                .needs
                .into_iter()
                .map(|n| match n {
                    wit::InventoryNeed::LaunchPermissions => model::InventoryNeed::LaunchPermissions,
                    wit::InventoryNeed::Usage => model::InventoryNeed::Usage,
                    wit::InventoryNeed::Snapshots => model::InventoryNeed::Snapshots,
                })
                .collect(),
            reviews: i.reviews,
        })
    }
}

/// The longest reason, name or key id a plugin may return, in bytes.
pub const MAX_TEXT: usize = 4096;

/// Checks text a plugin returned: bounded, and free of characters that could rewrite a
/// terminal (escape sequences, bidi overrides).
fn text(field: &str, s: String) -> Result<String, String> {
    if s.len() > MAX_TEXT {
        return Err(format!("{field} is {} bytes, over the limit of {MAX_TEXT}", s.len()));
    }
    if let Some(c) = model::text::unsafe_char(&s) {
        return Err(format!("{field} holds the control character U+{:04X}: `{}`", u32::from(c), truncate(&s)));
    }
    Ok(s)
}

/// Checks a tag key (and value) against EC2's limits; reserved prefixes are refused
/// later, as guardrail refusals the plan shows.
fn tag_key(key: String) -> Result<String, String> {
    let key = text("tag key", key)?;
    if key.is_empty() || key.chars().count() > model::MAX_TAG_KEY {
        return Err(format!(
            "tag key `{}` breaks EC2's limits (1 to {} characters)",
            truncate(&key),
            model::MAX_TAG_KEY
        ));
    }
    Ok(key)
}

/// Converts and validates a proposal a plugin returned while evaluating at `now`.
pub fn proposal_from_wit(p: wit::Proposal, now: Timestamp) -> Result<model::Proposal, String> {
    if !model::is_image_id(&p.image_id) {
        return Err(format!("proposal names `{}`, which is not an AMI id", truncate(&p.image_id)));
    }
    let action = match p.action {
        wit::Action::Share(pr) => model::Action::Share(principal_from_wit(pr)?),
        wit::Action::Unshare(pr) => model::Action::Unshare(principal_from_wit(pr)?),
        wit::Action::CopyToRegion(c) => {
            if !model::is_region_name(&c.region) {
                return Err(format!("copy target `{}` is not a region name", truncate(&c.region)));
            }
            if c.kms_key_id.is_some() && !c.encrypted {
                return Err("copy names a KMS key but is not encrypted".into());
            }
            model::Action::CopyToRegion(Box::new(model::CopyRequest {
                region: c.region,
                encrypted: c.encrypted,
                kms_key_id: c.kms_key_id.map(|k| text("kms key id", k)).transpose()?,
                copy_tags: c.copy_tags,
                name: c.name.map(|n| text("copy name", n)).transpose()?,
            }))
        }
        wit::Action::DeprecateAt(t) => {
            // EC2 takes at most 10 years ahead; a time in the past means "now" (resolve
            // clamps it), so only the far future is malformed.
            let latest = now.0.saturating_add(model::MAX_DEPRECATE_AHEAD);
            if t > latest {
                return Err(format!(
                    "deprecate-at {} is more than 10 years after the evaluation time {now} (EC2's limit)",
                    Timestamp(t)
                ));
            }
            model::Action::DeprecateAt(Timestamp(t))
        }
        wit::Action::Disable => model::Action::Disable,
        wit::Action::Deregister(delete_snapshots) => model::Action::Deregister { delete_snapshots },
        wit::Action::Tag(tags) => {
            if tags.len() > model::MAX_TAGS {
                return Err(format!("a tag action with {} tags; EC2 allows {} per image", tags.len(), model::MAX_TAGS));
            }
            let mut map = BTreeMap::new();
            for t in tags {
                let key = tag_key(t.key)?;
                let value = text("tag value", t.value)?;
                if value.chars().count() > model::MAX_TAG_VALUE {
                    return Err(format!(
                        "tag `{}` has a value over EC2's limit of {} characters",
                        truncate(&key),
                        model::MAX_TAG_VALUE
                    ));
                }
                map.insert(key, value);
            }
            model::Action::Tag(map)
        }
        wit::Action::Untag(keys) => {
            if keys.len() > model::MAX_TAGS {
                return Err(format!(
                    "an untag action with {} keys; EC2 allows {} per image",
                    keys.len(),
                    model::MAX_TAGS
                ));
            }
            let keys: BTreeSet<String> = keys.into_iter().map(tag_key).collect::<Result<_, _>>()?;
            model::Action::Untag(keys)
        }
        wit::Action::Retain => model::Action::Retain,
    };
    Ok(model::Proposal { image_id: p.image_id, action, reason: text("reason", p.reason)? })
}

/// Converts a verdict a plugin returned.
pub fn verdict_from_wit(v: wit::Verdict) -> Result<model::Verdict, String> {
    let veto = match v.decision {
        wit::Decision::Approve => None,
        wit::Decision::Veto(reason) => Some(text("veto reason", reason)?),
    };
    Ok(model::Verdict { action_id: text("action id", v.action_id)?, veto })
}

/// The message of a policy error: cut to `MAX_TEXT` bytes, control characters escaped.
pub fn policy_error_message(e: wit::PolicyError) -> (super::PolicyErrorKind, String) {
    use super::PolicyErrorKind as K;
    let (kind, message) = match e {
        wit::PolicyError::InvalidConfig(m) => (K::InvalidConfig, m),
        wit::PolicyError::InvalidEvent(m) => (K::InvalidEvent, m),
        wit::PolicyError::Failed(m) => (K::Failed, m),
    };
    let mut end = message.len().min(MAX_TEXT);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < message.len() { "…" } else { "" };
    (kind, format!("{}{cut}", model::text::escape(&message[..end])))
}

/// Plugin text quoted in an error: at most 64 bytes, control characters escaped.
fn truncate(s: &str) -> String {
    if s.len() <= 64 {
        model::text::escape(s).into_owned()
    } else {
        let mut end = 64;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", model::text::escape(&s[..end]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eleven_digit_account_in_a_share_is_refused() {
        let p = wit::Proposal {
            image_id: "ami-0123456789abcdef0".into(),
            action: wit::Action::Share(wit::Principal::Account("12345678901".into())),
            reason: "r".into(),
        };
        let err = proposal_from_wit(p, Timestamp(0)).unwrap_err();
        assert!(err.contains("12345678901"), "{err}");
    }

    #[test]
    fn an_arn_passed_as_an_account_is_refused() {
        let p = wit::Proposal {
            image_id: "ami-0123456789abcdef0".into(),
            action: wit::Action::Share(wit::Principal::Account(
                "arn:aws:organizations::123456789012:organization/o-abc".into(),
            )),
            reason: "r".into(),
        };
        assert!(proposal_from_wit(p, Timestamp(0)).is_err());
    }
}

#[cfg(test)]
mod edge {
    use super::*;

    fn proposal(action: wit::Action, reason: &str) -> wit::Proposal {
        wit::Proposal { image_id: "ami-0123456789abcdef0".into(), action, reason: reason.into() }
    }

    const NOW: Timestamp = Timestamp(1_795_000_000);

    #[test]
    fn a_deprecation_more_than_ten_years_ahead_is_malformed_and_the_past_is_accepted() {
        let rows = [
            (i64::MAX, false),
            (NOW.0 + model::MAX_DEPRECATE_AHEAD + 1, false),
            (NOW.0 + model::MAX_DEPRECATE_AHEAD, true),
            (NOW.0, true),
            (0, true),
            (i64::MIN, true),
        ];
        for (at, ok) in rows {
            let result = proposal_from_wit(proposal(wit::Action::DeprecateAt(at), "age"), NOW);
            assert_eq!(result.is_ok(), ok, "deprecate-at {at}: {result:?}");
        }
    }

    #[test]
    fn control_characters_in_plugin_text_are_malformed() {
        let tag = |k: &str, v: &str| wit::Action::Tag(vec![wit::Tag { key: k.into(), value: v.into() }]);
        let rows = [
            (proposal(wit::Action::Retain, "kept\u{1b}[1A\u{1b}[2K"), false),
            (proposal(wit::Action::Retain, "rtl \u{202e}override"), false),
            (proposal(tag("team", "a\u{9b}b"), "r"), false),
            (proposal(tag("te\u{7}am", "a"), "r"), false),
            (proposal(wit::Action::Retain, "a reason\nwith two lines"), true),
            (proposal(tag("team", "platform"), "r"), true),
        ];
        for (p, ok) in rows {
            let shown = format!("{p:?}");
            assert_eq!(proposal_from_wit(p, NOW).is_ok(), ok, "{shown}");
        }
    }

    #[test]
    fn a_tag_action_over_ec2_limits_is_malformed() {
        let many: Vec<wit::Tag> =
            (0..=model::MAX_TAGS).map(|i| wit::Tag { key: format!("k{i}"), value: "v".into() }).collect();
        assert!(proposal_from_wit(proposal(wit::Action::Tag(many), "r"), NOW).is_err());
        let long_key = wit::Action::Tag(vec![wit::Tag { key: "k".repeat(129), value: String::new() }]);
        assert!(proposal_from_wit(proposal(long_key, "r"), NOW).is_err());
        let long_value = wit::Action::Tag(vec![wit::Tag { key: "k".into(), value: "v".repeat(257) }]);
        assert!(proposal_from_wit(proposal(long_value, "r"), NOW).is_err());
        let keys = wit::Action::Untag((0..=model::MAX_TAGS).map(|i| format!("k{i}")).collect());
        assert!(proposal_from_wit(proposal(keys, "r"), NOW).is_err());
    }
}

#[cfg(test)]
mod info_tests {
    use super::{MAX_INFO_TEXT, model, wit};

    fn info(name: &str, version: &str) -> Result<model::PluginInfo, String> {
        let raw = wit::PluginInfo {
            name: name.into(),
            version: version.into(),
            actions: Vec::new(),
            needs: Vec::new(),
            reviews: false,
        };
        model::PluginInfo::try_from(raw)
    }

    #[test]
    fn a_plugin_info_is_short_plain_text() {
        assert_eq!(info("sharing", "1.2.3").unwrap().name, "sharing");
        assert!(info(&"n".repeat(MAX_INFO_TEXT), "1").is_ok());
        let huge = info(&"n".repeat(10 << 20), "1").unwrap_err();
        assert!(huge.contains("plugin-info name is 10485760 bytes, over the limit of 128"), "{huge}");
        assert!(info("x", &"v".repeat(MAX_INFO_TEXT + 1)).unwrap_err().contains("plugin-info version"));
        assert!(info("x\u{1b}[2J", "1").unwrap_err().contains("control character"));
    }
}
