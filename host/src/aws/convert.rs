//! Conversions between aws-sdk-ec2 types and the domain model, at the edge only.

use aws_sdk_ec2::types as ec2;

use crate::backend::{SOURCE_IMAGE_TAG, SOURCE_REGION_TAG};
use crate::model::{
    Architecture, BlockDevice, Image, ImageState, Location, Platform, Principal, RootDeviceType, StorageTier, Tags,
    Timestamp, Usage,
};

/// What DescribeSnapshots tells about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub size_gib: u32,
    pub full_size_bytes: Option<u64>,
    pub storage_tier: StorageTier,
    /// Its tags (which Recycle Bin rules match).
    pub tags: Tags,
}

impl From<&ec2::Snapshot> for SnapshotInfo {
    fn from(s: &ec2::Snapshot) -> SnapshotInfo {
        SnapshotInfo {
            size_gib: s.volume_size().and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
            full_size_bytes: s.full_snapshot_size_in_bytes().and_then(|v| u64::try_from(v).ok()),
            storage_tier: match s.storage_tier() {
                Some(ec2::StorageTier::Archive) => StorageTier::Archive,
                _ => StorageTier::Standard,
            },
            tags: s
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
                .collect(),
        }
    }
}

/// Converts one described image; usage comes later, launch permissions are unknown.
/// An error names what could not be understood.
pub fn image(location: &Location, img: &ec2::Image) -> Result<Image, String> {
    let id = img.image_id().ok_or("an image without an id")?.to_string();
    let architecture = match img.architecture() {
        Some(ec2::ArchitectureValues::I386) => Architecture::I386,
        Some(ec2::ArchitectureValues::X8664) | None => Architecture::X86_64,
        Some(ec2::ArchitectureValues::Arm64) => Architecture::Arm64,
        Some(ec2::ArchitectureValues::X8664Mac) => Architecture::X86_64Mac,
        Some(ec2::ArchitectureValues::Arm64Mac) => Architecture::Arm64Mac,
        Some(other) => return Err(format!("image {id}: unknown architecture `{}`", other.as_str())),
    };
    let state = match img.state() {
        Some(ec2::ImageState::Available) => ImageState::Available,
        Some(ec2::ImageState::Pending | ec2::ImageState::Transient) | None => ImageState::Pending,
        Some(ec2::ImageState::Disabled) => ImageState::Disabled,
        Some(ec2::ImageState::Deregistered) => ImageState::Deregistered,
        Some(_) => ImageState::Failed,
    };
    let tags: Tags = img
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
        .collect();
    let creation_time = parse_time(img.creation_date()).ok_or_else(|| format!("image {id}: no creation date"))?;
    let block_devices = img
        .block_device_mappings()
        .iter()
        .filter_map(|m| {
            let ebs = m.ebs()?;
            Some(BlockDevice {
                device_name: m.device_name().unwrap_or_default().to_string(),
                snapshot_id: ebs.snapshot_id().map(str::to_string),
                size_gib: ebs.volume_size().and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
                full_size_bytes: None,
                storage_tier: StorageTier::Standard,
                recycle_bin_days: None,
            })
        })
        .collect();
    // EC2 records a copy's source; an emulator may not, so fall back to the host's tags.
    let source_image_id = img.source_image_id().map(str::to_string).or_else(|| tags.get(SOURCE_IMAGE_TAG).cloned());
    let source_region = img.source_image_region().map(str::to_string).or_else(|| tags.get(SOURCE_REGION_TAG).cloned());
    Ok(Image {
        account: img.owner_id().unwrap_or(&location.account).to_string(),
        region: location.region.clone(),
        name: img.name().unwrap_or_default().to_string(),
        description: img.description().unwrap_or_default().to_string(),
        creation_time,
        state,
        architecture,
        platform: if img.platform() == Some(&ec2::PlatformValues::Windows) {
            Platform::Windows
        } else {
            Platform::Linux
        },
        root_device_type: match img.root_device_type() {
            Some(ec2::DeviceType::InstanceStore) => RootDeviceType::InstanceStore,
            _ => RootDeviceType::Ebs,
        },
        public: img.public().unwrap_or(false),
        launch_permissions: None,
        tags,
        block_devices,
        deprecation_time: parse_time(img.deprecation_time()),
        source_image_id,
        source_region,
        deregistration_protection: img
            .deregistration_protection()
            .filter(|p| !p.is_empty() && *p != "disabled")
            .map(str::to_string),
        recycle_bin_days: None,
        usage: Usage { last_launched: parse_time(img.last_launched_time()), ..Usage::default() },
        monthly_cost: 0,
        id,
    })
}

/// Fills a block device with what its snapshot says.
pub fn apply_snapshot(device: &mut BlockDevice, info: &SnapshotInfo) {
    if device.size_gib == 0 {
        device.size_gib = info.size_gib;
    }
    device.full_size_bytes = info.full_size_bytes;
    device.storage_tier = info.storage_tier;
}

/// EC2's launch permission as a principal; `None` for a form we do not know.
pub fn principal(p: &ec2::LaunchPermission) -> Option<Principal> {
    if p.group() == Some(&ec2::PermissionGroup::All) {
        Some(Principal::Public)
    } else if let Some(user) = p.user_id() {
        Some(Principal::Account(user.to_string()))
    } else if let Some(org) = p.organization_arn() {
        Some(Principal::Organization(org.to_string()))
    } else {
        p.organizational_unit_arn().map(|ou| Principal::OrganizationalUnit(ou.to_string()))
    }
}

/// A principal as EC2's launch permission.
pub fn launch_permission(p: &Principal) -> ec2::LaunchPermission {
    let b = ec2::LaunchPermission::builder();
    match p {
        Principal::Public => b.group(ec2::PermissionGroup::All),
        Principal::Account(a) => b.user_id(a),
        Principal::Organization(o) => b.organization_arn(o),
        Principal::OrganizationalUnit(ou) => b.organizational_unit_arn(ou),
    }
    .build()
}

/// Parses EC2's RFC 3339 time text (with or without fractional seconds).
pub fn parse_time(text: Option<&str>) -> Option<Timestamp> {
    text.and_then(|t| t.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc() -> Location {
        Location { account: "123456789012".into(), region: "eu-west-1".into() }
    }

    fn tag(k: &str, v: &str) -> ec2::Tag {
        ec2::Tag::builder().key(k).value(v).build()
    }

    #[test]
    fn an_ec2_image_maps_to_the_domain_image() {
        let img = ec2::Image::builder()
            .image_id("ami-0123456789abcdef0")
            .owner_id("123456789012")
            .name("golden-2026-11")
            .creation_date("2026-11-01T10:00:00.000Z")
            .deprecation_time("2027-01-01T00:00:00Z")
            .last_launched_time("2026-11-20T08:00:00Z")
            .state(ec2::ImageState::Available)
            .architecture(ec2::ArchitectureValues::Arm64)
            .platform(ec2::PlatformValues::Windows)
            .root_device_type(ec2::DeviceType::Ebs)
            .tags(tag("team", "platform"))
            .tags(tag(SOURCE_IMAGE_TAG, "ami-00000000000000001"))
            .tags(tag(SOURCE_REGION_TAG, "us-east-1"))
            .block_device_mappings(
                ec2::BlockDeviceMapping::builder()
                    .device_name("/dev/xvda")
                    .ebs(ec2::EbsBlockDevice::builder().snapshot_id("snap-1").volume_size(8).build())
                    .build(),
            )
            .block_device_mappings(
                ec2::BlockDeviceMapping::builder().device_name("/dev/sdb").virtual_name("ephemeral0").build(),
            )
            .build();
        let image = image(&loc(), &img).expect("a valid image");
        assert_eq!(image.id, "ami-0123456789abcdef0");
        assert_eq!(image.region, "eu-west-1");
        assert_eq!(image.creation_time.to_string(), "2026-11-01T10:00:00Z");
        assert_eq!(image.deprecation_time.map(|t| t.to_string()).as_deref(), Some("2027-01-01T00:00:00Z"));
        assert_eq!(image.usage.last_launched.map(|t| t.to_string()).as_deref(), Some("2026-11-20T08:00:00Z"));
        assert_eq!(
            (image.state, image.architecture, image.platform),
            (ImageState::Available, Architecture::Arm64, Platform::Windows)
        );
        assert_eq!(image.tags.get("team").map(String::as_str), Some("platform"));
        assert_eq!(image.block_devices.len(), 1, "an instance-store mapping has no snapshot");
        assert_eq!(image.block_devices[0].snapshot_id.as_deref(), Some("snap-1"));
        assert_eq!(image.source_image_id.as_deref(), Some("ami-00000000000000001"), "taken from the host's tag");
        assert_eq!(image.source_region.as_deref(), Some("us-east-1"));
        assert_eq!(image.launch_permissions, None);
    }

    #[test]
    fn deregistration_protection_is_read_as_on_unless_ec2_says_disabled() {
        let with = |p: Option<&str>| {
            let img = ec2::Image::builder()
                .image_id("ami-12345678")
                .creation_date("2026-11-01T10:00:00Z")
                .set_deregistration_protection(p.map(str::to_string))
                .build();
            image(&loc(), &img).expect("a valid image").deregistration_protection
        };
        assert_eq!(with(Some("enabled-with-cooldown")).as_deref(), Some("enabled-with-cooldown"));
        assert_eq!(with(Some("enabled-without-cooldown")).as_deref(), Some("enabled-without-cooldown"));
        assert_eq!(with(Some("disabled")), None);
        assert_eq!(with(None), None);
    }

    #[test]
    fn the_source_ec2_records_beats_the_hosts_tag() {
        let img = ec2::Image::builder()
            .image_id("ami-12345678")
            .creation_date("2026-11-01T10:00:00Z")
            .source_image_id("ami-aaaaaaaa")
            .source_image_region("us-west-2")
            .tags(tag(SOURCE_IMAGE_TAG, "ami-bbbbbbbb"))
            .build();
        let image = image(&loc(), &img).expect("a valid image");
        assert_eq!(image.source_image_id.as_deref(), Some("ami-aaaaaaaa"));
        assert_eq!(image.source_region.as_deref(), Some("us-west-2"));
        assert_eq!(image.account, "123456789012", "the location's account when EC2 omits the owner");
    }

    #[test]
    fn launch_permissions_round_trip_through_principals() {
        let principals = [
            Principal::Public,
            Principal::Account("210987654321".into()),
            Principal::Organization("arn:aws:organizations::123456789012:organization/o-abc123".into()),
            Principal::OrganizationalUnit("arn:aws:organizations::123456789012:ou/o-abc123/ou-ab12-cdef34".into()),
        ];
        for p in principals {
            assert_eq!(principal(&launch_permission(&p)), Some(p.clone()), "{p}");
        }
    }

    #[test]
    fn snapshot_details_fill_the_block_device() {
        let snap = ec2::Snapshot::builder()
            .snapshot_id("snap-1")
            .volume_size(30)
            .full_snapshot_size_in_bytes(1_234_567)
            .storage_tier(ec2::StorageTier::Archive)
            .build();
        let mut device = BlockDevice {
            device_name: "/dev/xvda".into(),
            snapshot_id: Some("snap-1".into()),
            size_gib: 0,
            full_size_bytes: None,
            storage_tier: StorageTier::Standard,
            recycle_bin_days: None,
        };
        apply_snapshot(&mut device, &SnapshotInfo::from(&snap));
        assert_eq!(
            (device.size_gib, device.full_size_bytes, device.storage_tier),
            (30, Some(1_234_567), StorageTier::Archive)
        );
    }
}
