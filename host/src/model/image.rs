//! Images as the host sees them: state, platform, block devices with their snapshots,
//! what still uses them, and where they live.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Micros, Principal, Timestamp};

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
    /// How many days the Recycle Bin would keep the snapshot after its deletion (the
    /// longest retention rule covering it); `None` when no rule does or the rules were
    /// not read (`InventoryNeed::RecycleBin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recycle_bin_days: Option<u32>,
}

/// What still uses an image.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub instances: u32,
    pub launch_templates: Vec<String>,
    /// Other resources that refer to the image, by ARN: SSM parameters and Image
    /// Builder recipes (EC2's DescribeImageReferences). Not in the plugin contract: the
    /// host's in-use guardrail reads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    pub last_launched: Option<Timestamp>,
}

impl Usage {
    /// Whether instances, launch templates or other resources reference the image now.
    pub fn in_use(&self) -> bool {
        self.instances > 0 || !self.launch_templates.is_empty() || !self.references.is_empty()
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
    /// Whether anyone may launch it, as DescribeImages says (known without reading
    /// launch permissions).
    #[serde(default)]
    pub public: bool,
    /// `None` when the backend did not fetch launch permissions.
    pub launch_permissions: Option<BTreeSet<Principal>>,
    pub tags: super::Tags,
    pub block_devices: Vec<BlockDevice>,
    pub deprecation_time: Option<Timestamp>,
    pub source_image_id: Option<String>,
    pub source_region: Option<String>,
    /// EC2's deregistration protection when it is on (`enabled-without-cooldown`,
    /// `enabled-with-cooldown`); `None` when off. A protected image is never deregistered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistration_protection: Option<String>,
    /// How many days the Recycle Bin would keep the image after its deregistration (the
    /// longest retention rule covering it); `None` when no rule does or the rules were
    /// not read (`InventoryNeed::RecycleBin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recycle_bin_days: Option<u32>,
    pub usage: Usage,
    pub monthly_cost: Micros,
}

impl Image {
    /// Whether anyone may launch it.
    pub fn is_public(&self) -> bool {
        self.public || self.launch_permissions.as_ref().is_some_and(|p| p.contains(&Principal::Public))
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Location {
    pub account: String,
    pub region: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}
