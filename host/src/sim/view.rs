//! The simulated state as the engine sees it: a `SimImage` as a domain `Image`, with what
//! the run asked for (usage, snapshot details, launch permissions) and nothing else.

use std::collections::BTreeSet;

use super::{SOURCE_IMAGE_TAG, SOURCE_REGION_TAG, SimImage, SimRegion};
use crate::model::{BlockDevice, Image, InventoryNeed, Principal, Usage};

/// The domain view of a simulated image.
pub(super) fn to_image(
    account: &str,
    region_name: &str,
    region: &SimRegion,
    image: &SimImage,
    needs: &BTreeSet<InventoryNeed>,
) -> Image {
    let want = |need| needs.contains(&need);
    let snapshot = |id: &str| region.snapshots.iter().find(|s| s.id == id).filter(|_| want(InventoryNeed::Snapshots));
    let block_devices = image
        .block_devices
        .iter()
        .map(|d| {
            let snap = d.snapshot_id.as_deref().and_then(snapshot);
            BlockDevice {
                device_name: d.device_name.clone(),
                snapshot_id: d.snapshot_id.clone(),
                size_gib: snap.map(|s| s.size_gib).unwrap_or(d.size_gib),
                full_size_bytes: snap.and_then(|s| s.full_size_bytes),
                storage_tier: snap.map(|s| s.storage_tier).unwrap_or_default(),
            }
        })
        .collect();
    // Unread usage is blank, as on EC2 when usage is not asked for.
    let instances = region
        .instances
        .iter()
        .filter(|i| want(InventoryNeed::Usage) && i.image_id == image.id && i.state != "terminated")
        .count() as u32;
    let launch_templates = region
        .launch_templates
        .iter()
        .filter(|t| want(InventoryNeed::Usage) && t.image_ids.contains(&image.id))
        .map(|t| t.id.clone())
        .collect();
    Image {
        id: image.id.clone(),
        account: account.to_string(),
        region: region_name.to_string(),
        name: image.name.clone(),
        description: image.description.clone(),
        creation_time: image.creation_time,
        state: image.state,
        architecture: image.architecture,
        platform: image.platform,
        root_device_type: image.root_device_type,
        public: image.launch_permissions.contains(&Principal::Public),
        launch_permissions: want(InventoryNeed::LaunchPermissions).then(|| image.launch_permissions.clone()),
        tags: image.tags.clone(),
        block_devices,
        deprecation_time: image.deprecation_time,
        source_image_id: image.source_image_id.clone().or_else(|| image.tags.get(SOURCE_IMAGE_TAG).cloned()),
        source_region: image.source_region.clone().or_else(|| image.tags.get(SOURCE_REGION_TAG).cloned()),
        usage: Usage { instances, launch_templates, last_launched: image.last_launched_time },
        monthly_cost: 0,
    }
}
