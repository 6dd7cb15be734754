//! The simulated state as the engine sees it: a `SimImage` as a domain `Image`, with what
//! the run asked for (usage, snapshot details, launch permissions) and nothing else.

use std::collections::{BTreeSet, HashMap};

use super::{SOURCE_IMAGE_TAG, SOURCE_REGION_TAG, SimImage, SimRegion, SimSnapshot};
use crate::model::recycle::{BinResource, RetentionRule, retention_days};
use crate::model::{BlockDevice, Image, InventoryNeed, Principal, Usage};

/// A region's images and snapshots by id, and its instances and launch templates by the image they use:
/// built once per read of the region, so a read costs time linear in the region.
pub(super) struct RegionIndex<'a> {
    /// Image id → image.
    pub images: HashMap<&'a str, &'a SimImage>,
    snapshots: HashMap<&'a str, &'a SimSnapshot>,
    /// Image id → instances not terminated.
    instances: HashMap<&'a str, u32>,
    /// Image id → the ids of the templates referencing it, in the region's order.
    templates: HashMap<&'a str, Vec<&'a str>>,
    /// The region's Recycle Bin retention rules.
    rules: &'a [RetentionRule],
}

impl<'a> RegionIndex<'a> {
    pub fn new(region: &'a SimRegion) -> RegionIndex<'a> {
        let snapshots = region.snapshots.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut instances: HashMap<&str, u32> = HashMap::new();
        for i in region.instances.iter().filter(|i| i.state != "terminated") {
            *instances.entry(i.image_id.as_str()).or_default() += 1;
        }
        let mut templates: HashMap<&str, Vec<&str>> = HashMap::new();
        for t in &region.launch_templates {
            for image in &t.image_ids {
                let ids = templates.entry(image.as_str()).or_default();
                if ids.last() != Some(&t.id.as_str()) && !ids.contains(&t.id.as_str()) {
                    ids.push(t.id.as_str());
                }
            }
        }
        let images = region.images.iter().map(|i| (i.id.as_str(), i)).collect();
        RegionIndex { images, snapshots, instances, templates, rules: &region.recycle_bin_rules }
    }
}

/// The domain view of a simulated image of the region `index` was built from, made of
/// the image itself: a plan's read-once state moves its images' text into the inventory
/// (at 1,000,000 images a copy of every string was ~1 GiB beside the state).
pub(super) fn to_image(
    account: &str,
    region_name: &str,
    index: &RegionIndex<'_>,
    image: SimImage,
    needs: &BTreeSet<InventoryNeed>,
) -> Image {
    let want = |need| needs.contains(&need);
    let snapshot = |id: &str| index.snapshots.get(id).copied().filter(|_| want(InventoryNeed::Snapshots));
    let bin =
        |resource, tags| want(InventoryNeed::RecycleBin).then(|| retention_days(index.rules, resource, tags)).flatten();
    let block_devices = image
        .block_devices
        .into_iter()
        .map(|d| {
            let snap = d.snapshot_id.as_deref().and_then(snapshot);
            BlockDevice {
                device_name: d.device_name,
                snapshot_id: d.snapshot_id,
                size_gib: snap.map(|s| s.size_gib).unwrap_or(d.size_gib),
                full_size_bytes: snap.and_then(|s| s.full_size_bytes),
                storage_tier: snap.map(|s| s.storage_tier).unwrap_or_default(),
                recycle_bin_days: snap.and_then(|s| bin(BinResource::Snapshot, &s.tags)),
            }
        })
        .collect();
    // Unread usage is blank, as on EC2 when usage is not asked for.
    let usage = want(InventoryNeed::Usage);
    let instances = if usage { index.instances.get(image.id.as_str()).copied().unwrap_or(0) } else { 0 };
    let launch_templates = match index.templates.get(image.id.as_str()) {
        Some(ids) if usage => ids.iter().map(|id| id.to_string()).collect(),
        _ => Vec::new(),
    };
    let public = image.launch_permissions.contains(&Principal::Public);
    let recycle_bin_days = bin(BinResource::Image, &image.tags);
    let source_image_id = image.source_image_id.or_else(|| image.tags.get(SOURCE_IMAGE_TAG).cloned());
    let source_region = image.source_region.or_else(|| image.tags.get(SOURCE_REGION_TAG).cloned());
    Image {
        id: image.id,
        account: account.to_string(),
        region: region_name.to_string(),
        name: image.name,
        description: image.description,
        creation_time: image.creation_time,
        state: image.state,
        architecture: image.architecture,
        platform: image.platform,
        root_device_type: image.root_device_type,
        public,
        launch_permissions: want(InventoryNeed::LaunchPermissions).then_some(image.launch_permissions),
        tags: image.tags,
        block_devices,
        deprecation_time: image.deprecation_time,
        source_image_id,
        source_region,
        deregistration_protection: image.deregistration_protection.filter(|p| p != "disabled"),
        recycle_bin_days,
        usage: Usage { instances, launch_templates, references: Vec::new(), last_launched: image.last_launched_time },
        monthly_cost: 0,
    }
}
