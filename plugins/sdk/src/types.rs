//! Convenience methods on the generated contract types.

use crate::{
    Action, ActionKind, Image, ImageQuery, ImageSummary, InventoryNeed, PluginInfo, Principal, Proposal, Verdict,
};
use crate::{Architecture, Decision, ImageState, Platform, RootDeviceType, Tag, Timestamp, Usage};

/// The tag the host writes on a copy it makes: the id of the source image.
pub const SOURCE_IMAGE_TAG: &str = "amiwarden:source-image-id";

/// The tag the host writes on a copy it makes: the region of the source image.
pub const SOURCE_REGION_TAG: &str = "amiwarden:source-region";

impl PluginInfo {
    /// A plugin-info with no actions, no needs, not reviewing.
    pub fn new(name: &str, version: &str) -> Self {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            actions: Vec::new(),
            needs: Vec::new(),
            reviews: false,
        }
    }

    /// Says the plugin reviews the priced plan: the host calls `Policy::review` only on
    /// plugins whose info says so.
    pub fn reviews(mut self) -> Self {
        self.reviews = true;
        self
    }

    /// The action kinds the plugin may propose.
    pub fn proposes(mut self, kinds: impl IntoIterator<Item = ActionKind>) -> Self {
        self.actions.extend(kinds);
        self
    }

    /// The inventory data the plugin needs.
    pub fn needs(mut self, needs: impl IntoIterator<Item = InventoryNeed>) -> Self {
        self.needs.extend(needs);
        self
    }
}

impl Proposal {
    /// A proposal for `image_id` with its reason.
    pub fn new(image_id: &str, action: Action, reason: impl Into<String>) -> Self {
        Proposal { image_id: image_id.into(), action, reason: reason.into() }
    }
}

impl Verdict {
    /// Approves the action with this id.
    pub fn approve(action_id: &str) -> Self {
        Verdict { action_id: action_id.into(), decision: Decision::Approve }
    }

    /// Vetoes the action with this id, with the reason.
    pub fn veto(action_id: &str, reason: impl Into<String>) -> Self {
        Verdict { action_id: action_id.into(), decision: Decision::Veto(reason.into()) }
    }
}

impl Image {
    /// An available, unused, untagged x86-64 Linux EBS image with no block devices:
    /// a starting point for tests and examples, completed by setting fields.
    pub fn new(id: &str, account: &str, region: &str, name: &str, creation_time: Timestamp) -> Self {
        Image {
            id: id.into(),
            account: account.into(),
            region: region.into(),
            name: name.into(),
            description: String::new(),
            creation_time,
            state: ImageState::Available,
            architecture: Architecture::X8664,
            platform: Platform::Linux,
            root_device_type: RootDeviceType::Ebs,
            public: false,
            launch_permissions: None,
            tags: Vec::new(),
            block_devices: Vec::new(),
            deprecation_time: None,
            source_image_id: None,
            source_region: None,
            usage: Usage { instances: 0, launch_templates: Vec::new(), last_launched: None },
            monthly_cost: 0,
        }
    }

    /// Sets tag `key` to `value`, keeping tags sorted by key.
    pub fn set_tag(&mut self, key: &str, value: &str) {
        self.tags.retain(|t| t.key != key);
        self.tags.push(Tag::new(key, value));
        self.tags.sort_by(|a, b| a.key.cmp(&b.key));
    }

    /// The value of tag `key`, if present.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }

    /// Whether anything uses the image now (instances or launch templates).
    pub fn in_use(&self) -> bool {
        self.usage.instances > 0 || !self.usage.launch_templates.is_empty()
    }

    /// Total provisioned snapshot size in GiB.
    pub fn size_gib(&self) -> u64 {
        self.block_devices.iter().filter(|b| b.snapshot_id.is_some()).map(|b| u64::from(b.size_gib)).sum()
    }

    /// Whether the image is a copy of another image.
    pub fn is_copy(&self) -> bool {
        self.source_image_id.is_some()
    }

    /// The image this one was copied from: EC2's `source_image_id`, else the
    /// `amiwarden:source-image-id` tag the host writes on the copies it makes.
    pub fn copied_from(&self) -> Option<&str> {
        self.source_image_id.as_deref().or_else(|| self.tag(SOURCE_IMAGE_TAG)).filter(|s| !s.is_empty())
    }

    /// The region this image was copied from: EC2's `source_region`, else the
    /// `amiwarden:source-region` tag.
    pub fn copied_from_region(&self) -> Option<&str> {
        self.source_region.as_deref().or_else(|| self.tag(SOURCE_REGION_TAG)).filter(|s| !s.is_empty())
    }

    /// Why the image counts as in use at `now`, or `None`: instances, launch templates, or
    /// a launch at most `window` seconds ago (a launch time in the future counts too).
    pub fn in_use_reason(&self, now: Timestamp, window: Timestamp) -> Option<String> {
        let usage = &self.usage;
        if usage.instances > 0 {
            let plural = if usage.instances == 1 { "" } else { "s" };
            return Some(format!("in use by {} instance{plural}", usage.instances));
        }
        if !usage.launch_templates.is_empty() {
            let plural = if usage.launch_templates.len() == 1 { "" } else { "s" };
            return Some(format!("referenced by launch template{plural} {}", usage.launch_templates.join(", ")));
        }
        let last = usage.last_launched?;
        (now - last <= window).then(|| {
            let days = (now - last).max(0) / crate::DAY;
            format!("last launched {days} days ago, within the {}-day in-use window", window / crate::DAY)
        })
    }
}

impl Tag {
    /// A tag from key and value.
    pub fn new(key: &str, value: &str) -> Self {
        Tag { key: key.into(), value: value.into() }
    }
}

impl Action {
    /// The kind a policy file grants for this action.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Share(_) => ActionKind::Share,
            Action::Unshare(_) => ActionKind::Unshare,
            Action::CopyToRegion(_) => ActionKind::Copy,
            Action::DeprecateAt(_) => ActionKind::Deprecate,
            Action::Disable => ActionKind::Disable,
            Action::Deregister(_) => ActionKind::Deregister,
            Action::Tag(_) => ActionKind::Tag,
            Action::Untag(_) => ActionKind::Untag,
            Action::Retain => ActionKind::Retain,
        }
    }
}

impl Principal {
    /// The principal as text: the account id, the ARN, or `public`.
    pub fn as_str(&self) -> &str {
        match self {
            Principal::Account(s) | Principal::Organization(s) | Principal::OrganizationalUnit(s) => s,
            Principal::Public => "public",
        }
    }
}

impl From<&Image> for ImageSummary {
    /// The summary the host returns for `image` (a copy's source from EC2's field, else
    /// the host's tag).
    fn from(image: &Image) -> Self {
        ImageSummary {
            id: image.id.clone(),
            account: image.account.clone(),
            region: image.region.clone(),
            name: image.name.clone(),
            creation_time: image.creation_time,
            state: image.state,
            deprecation_time: image.deprecation_time,
            source_image_id: image.copied_from().map(str::to_string),
            source_region: image.copied_from_region().map(str::to_string),
            monthly_cost: image.monthly_cost,
        }
    }
}

impl ImageQuery {
    /// Every image of one account and region.
    pub fn location(account: &str, region: &str) -> ImageQuery {
        ImageQuery {
            account: Some(account.to_string()),
            region: Some(region.to_string()),
            tag_key: None,
            tag_value: None,
            name_prefix: None,
            source_image_id: None,
        }
    }
}

impl ImageSummary {
    /// The image this one was copied from, if it is a copy.
    pub fn copied_from(&self) -> Option<&str> {
        self.source_image_id.as_deref().filter(|s| !s.is_empty())
    }
}
