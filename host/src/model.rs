//! Domain types shared by every part of the host: images, principals, events, actions.
//!
//! These are independent of the generated plugin bindings (converted in `plugin::bindings`)
//! and of the AWS SDK (converted in `aws`). Their serde form is the JSON of sim state
//! files, plan files and test cases.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod text;
mod time;
pub use time::{DAY, Timestamp};

/// Money in millionths of a US dollar.
pub type Micros = i64;

/// An image's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageState {
    Pending,
    Available,
    Failed,
    Disabled,
    Deregistered,
}

/// An image's CPU architecture, spelled as EC2 spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Architecture {
    #[serde(rename = "i386")]
    I386,
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
    #[serde(rename = "x86_64_mac")]
    X86_64Mac,
    #[serde(rename = "arm64_mac")]
    Arm64Mac,
}

/// An image's operating system family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    #[default]
    Linux,
    Windows,
}

/// Where an image's root device lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RootDeviceType {
    #[default]
    Ebs,
    InstanceStore,
}

/// A snapshot's storage tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StorageTier {
    #[default]
    Standard,
    Archive,
}

/// Someone an image is shared with. Written as text: a 12-digit account id, an
/// organization or OU ARN, or `public`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Principal {
    Account(String),
    Organization(String),
    OrganizationalUnit(String),
    Public,
}

impl Principal {
    /// The text form: the account id, the ARN, or `public`.
    pub fn as_str(&self) -> &str {
        match self {
            Principal::Account(s) | Principal::Organization(s) | Principal::OrganizationalUnit(s) => s,
            Principal::Public => "public",
        }
    }
}

impl FromStr for Principal {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "public" || s == "all" {
            Ok(Principal::Public)
        } else if is_account_id(s) {
            Ok(Principal::Account(s.to_string()))
        } else if s.starts_with("arn:aws") && s.contains(":organization/o-") {
            Ok(Principal::Organization(s.to_string()))
        } else if s.starts_with("arn:aws") && s.contains(":ou/o-") {
            Ok(Principal::OrganizationalUnit(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not a principal: expected a 12-digit account id, an organization or OU ARN, or `public`"
            ))
        }
    }
}

impl TryFrom<String> for Principal {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Principal> for String {
    fn from(p: Principal) -> String {
        p.as_str().to_string()
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `s` is a 12-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` looks like an AMI id: `ami-` and 8 or 17 lowercase hex digits.
pub fn is_image_id(s: &str) -> bool {
    s.strip_prefix("ami-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Whether `s` has the shape of an AWS region name (`eu-west-1`, `us-gov-east-1`).
pub fn is_region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// EC2's limits on an image's tags: at most 50, keys of 1 to 128 characters, values of
/// at most 256.
pub const MAX_TAGS: usize = 50;
/// The longest tag key EC2 takes, in characters.
pub const MAX_TAG_KEY: usize = 128;
/// The longest tag value EC2 takes, in characters.
pub const MAX_TAG_VALUE: usize = 256;

/// Tag key prefixes no plugin may write or remove: `amiwarden:` belongs to the host
/// (it recognises its replicas by them) and `aws:` to AWS.
pub const RESERVED_TAG_PREFIXES: [&str; 2] = ["amiwarden:", "aws:"];

/// Whether a tag key is reserved to the host or to AWS (case-insensitive, as AWS is).
pub fn is_reserved_tag(key: &str) -> bool {
    RESERVED_TAG_PREFIXES
        .iter()
        .any(|prefix| key.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix)))
}

/// How far ahead EC2 accepts a deprecation time: 10 years (3,650 days, to stay inside
/// EC2's limit whatever leap days fall in between).
pub const MAX_DEPRECATE_AHEAD: i64 = 3650 * DAY;

/// One block device of an image with what is known of its snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    pub device_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    pub size_gib: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_size_bytes: Option<u64>,
    #[serde(default)]
    pub storage_tier: StorageTier,
}

/// What still uses an image.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub instances: u32,
    pub launch_templates: Vec<String>,
    pub last_launched: Option<Timestamp>,
}

impl Usage {
    /// Whether instances or launch templates reference the image now.
    pub fn in_use(&self) -> bool {
        self.instances > 0 || !self.launch_templates.is_empty()
    }
}

/// An image as the inventory sees it, with usage and cost filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub account: String,
    pub region: String,
    pub name: String,
    pub description: String,
    pub creation_time: Timestamp,
    pub state: ImageState,
    pub architecture: Architecture,
    pub platform: Platform,
    pub root_device_type: RootDeviceType,
    /// `None` when the backend did not fetch launch permissions.
    pub launch_permissions: Option<BTreeSet<Principal>>,
    pub tags: BTreeMap<String, String>,
    pub block_devices: Vec<BlockDevice>,
    pub deprecation_time: Option<Timestamp>,
    pub source_image_id: Option<String>,
    pub source_region: Option<String>,
    pub usage: Usage,
    pub monthly_cost: Micros,
}

impl Image {
    /// Whether anyone may launch it.
    pub fn is_public(&self) -> bool {
        self.launch_permissions.as_ref().is_some_and(|p| p.contains(&Principal::Public))
    }

    /// The ids of the snapshots behind it.
    pub fn snapshot_ids(&self) -> impl Iterator<Item = &str> {
        self.block_devices.iter().filter_map(|b| b.snapshot_id.as_deref())
    }

    /// The account and region it lives in.
    pub fn location(&self) -> Location {
        Location { account: self.account.clone(), region: self.region.clone() }
    }
}

/// An account and region: the unit of inventory, rate limits and ledgers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Location {
    pub account: String,
    pub region: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}

/// How a copy to another region is made.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CopyRequest {
    pub region: String,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub copy_tags: bool,
    #[serde(default)]
    pub name: Option<String>,
}

/// A change a plugin proposes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Share(Principal),
    Unshare(Principal),
    CopyToRegion(CopyRequest),
    DeprecateAt(Timestamp),
    Disable,
    Deregister { delete_snapshots: bool },
    Tag(BTreeMap<String, String>),
    Untag(BTreeSet<String>),
    Retain,
}

impl Action {
    /// The kind a policy file grants.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Share(_) => ActionKind::Share,
            Action::Unshare(_) => ActionKind::Unshare,
            Action::CopyToRegion(_) => ActionKind::Copy,
            Action::DeprecateAt(_) => ActionKind::Deprecate,
            Action::Disable => ActionKind::Disable,
            Action::Deregister { .. } => ActionKind::Deregister,
            Action::Tag(_) => ActionKind::Tag,
            Action::Untag(_) => ActionKind::Untag,
            Action::Retain => ActionKind::Retain,
        }
    }
}

/// The kinds of action a policy file grants to a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    Share,
    Unshare,
    Copy,
    Deprecate,
    Disable,
    Deregister,
    DeleteSnapshots,
    Tag,
    Untag,
    Retain,
}

impl ActionKind {
    /// Every kind, in declaration order.
    pub const ALL: [ActionKind; 10] = [
        ActionKind::Share,
        ActionKind::Unshare,
        ActionKind::Copy,
        ActionKind::Deprecate,
        ActionKind::Disable,
        ActionKind::Deregister,
        ActionKind::DeleteSnapshots,
        ActionKind::Tag,
        ActionKind::Untag,
        ActionKind::Retain,
    ];
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string));
        f.write_str(text.as_deref().unwrap_or("?"))
    }
}

/// Inventory data a plugin needs beyond image basics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InventoryNeed {
    LaunchPermissions,
    Usage,
    Snapshots,
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub actions: BTreeSet<ActionKind>,
    pub needs: BTreeSet<InventoryNeed>,
}

/// A plugin's proposal about one image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Proposal {
    pub image_id: String,
    pub action: Action,
    pub reason: String,
}

/// A plugin's decision on one candidate action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub action_id: String,
    /// `None` approves; `Some(reason)` vetoes.
    pub veto: Option<String>,
}

/// What happened to an image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Scheduled,
    Created,
    Registered,
    Copied,
    Shared(Vec<Principal>),
    Unshared(Vec<Principal>),
    Deprecated,
    Disabled,
    Deregistered,
    TagsChanged,
}

/// One event about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEvent {
    pub kind: EventKind,
    pub image: Image,
    pub evaluation_time: Timestamp,
    /// The raw source event as JSON text; empty for a scheduled review.
    pub raw: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_parse_from_their_text_form() {
        let cases = [
            ("123456789012", Some(Principal::Account("123456789012".into()))),
            ("12345678901", None),
            ("public", Some(Principal::Public)),
            (
                "arn:aws:organizations::123456789012:organization/o-abc123",
                Some(Principal::Organization("arn:aws:organizations::123456789012:organization/o-abc123".into())),
            ),
            (
                "arn:aws:organizations::123456789012:ou/o-abc123/ou-ab12-cdef34",
                Some(Principal::OrganizationalUnit(
                    "arn:aws:organizations::123456789012:ou/o-abc123/ou-ab12-cdef34".into(),
                )),
            ),
            ("bob", None),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Principal>().ok(), want, "{text}");
        }
    }

    #[test]
    fn reserved_tag_prefixes_are_recognised_in_any_case() {
        let rows = [
            ("amiwarden:source-image-id", true),
            ("AMIWARDEN:Source-Region", true),
            ("aws:cloudformation:stack-name", true),
            ("AWS:x", true),
            ("amiwarden", false),
            ("awsome", false),
            ("team", false),
            ("", false),
        ];
        for (key, reserved) in rows {
            assert_eq!(is_reserved_tag(key), reserved, "{key}");
        }
    }

    #[test]
    fn region_names_are_recognised_by_shape() {
        for ok in ["us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-4"] {
            assert!(is_region_name(ok), "{ok}");
        }
        for bad in ["us-east", "us-east1", "moon-1", "US-EAST-1", "eu--1", ""] {
            assert!(!is_region_name(bad), "{bad}");
        }
    }

    #[test]
    fn image_ids_have_the_ec2_form() {
        assert!(is_image_id("ami-0123456789abcdef0"));
        assert!(is_image_id("ami-12345678"));
        assert!(!is_image_id("ami-XYZ"));
        assert!(!is_image_id("snap-0123456789abcdef0"));
    }

    #[test]
    fn actions_have_a_readable_json_form() {
        let action = Action::Deregister { delete_snapshots: true };
        assert_eq!(serde_json::to_string(&action).unwrap(), r#"{"deregister":{"delete_snapshots":true}}"#);
        assert_eq!(serde_json::to_string(&Action::Retain).unwrap(), r#""retain""#);
        let share: Action = serde_json::from_str(r#"{"share":"public"}"#).unwrap();
        assert_eq!(share, Action::Share(Principal::Public));
    }
}
