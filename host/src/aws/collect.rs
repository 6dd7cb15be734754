//! The inventory of one location: images, their snapshots, usage and (when asked) launch permissions, in few calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::Context;
use aws_sdk_ec2::types::{Filter, ImageAttributeName};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::calls::{Ec2, next_page};
use super::convert::{self, SnapshotInfo};
use super::errors::ApiError;
use super::usage;
use crate::model::recycle::{BinResource, retention_days};
use crate::model::{Image, ImageState, InventoryNeed, Principal};

/// Snapshot ids per DescribeSnapshots call.
const SNAPSHOT_BATCH: usize = 200;
/// Items per page when listing every snapshot or instance (EC2's largest page).
pub const LIST_PAGE: i32 = 1000;
/// DescribeImageAttribute calls in flight per location (the token bucket paces them).
const PERMISSION_CONCURRENCY: usize = 16;

/// Every image the account owns in the location, completed with what `needs` asks for.
pub async fn location(ec2: Ec2, needs: BTreeSet<InventoryNeed>) -> anyhow::Result<Vec<Image>> {
    let described = describe_images(&ec2, None, Vec::new())
        .await
        .with_context(|| format!("describe images in {}", ec2.location))?;
    let mut images = Vec::new();
    for raw in &described {
        match convert::image(&ec2.location, raw) {
            Ok(image) if image.state != ImageState::Deregistered => images.push(image),
            Ok(_) => {}
            Err(e) => tracing::warn!(location = %ec2.location, "skipping an image: {e}"),
        }
    }
    complete(&ec2, &mut images, &needs).await?;
    Ok(images)
}

/// DescribeImages (Owners=self, deprecated and disabled included), every page.
/// With `ids`, only those images; `filters` narrow the search further.
pub async fn describe_images(
    ec2: &Ec2,
    ids: Option<Vec<String>>,
    filters: Vec<Filter>,
) -> Result<Vec<aws_sdk_ec2::types::Image>, ApiError> {
    let mut images = Vec::new();
    let mut token: Option<String> = None;
    let mut seen = BTreeSet::new();
    loop {
        let request = ec2
            .client
            .describe_images()
            .owners("self")
            .include_deprecated(true)
            .include_disabled(true)
            .set_image_ids(ids.clone())
            .set_filters(if filters.is_empty() { None } else { Some(filters.clone()) })
            .set_next_token(token.take());
        let page = ec2.call("DescribeImages", request.send()).await?;
        images.extend(page.images().iter().cloned());
        token = next_page("DescribeImages", page.next_token(), &mut seen)?;
        if token.is_none() {
            break;
        }
    }
    Ok(images)
}

/// Fills what `needs` asks for (snapshot details, usage, launch permissions) into
/// `images`, fetching them concurrently; what is not asked for is not read. When launch
/// permissions are asked for, an image whose read found it gone (deregistered since it
/// was described) is dropped: it is not in the inventory any more, and an image kept
/// with its permissions unread would look as if nobody knew whom it is shared with.
pub async fn complete(ec2: &Ec2, images: &mut Vec<Image>, needs: &BTreeSet<InventoryNeed>) -> anyhow::Result<()> {
    let ids: Vec<String> = images.iter().map(|i| i.id.clone()).collect();
    let snapshot_ids: Vec<String> =
        images.iter().flat_map(|i| i.snapshot_ids()).map(str::to_string).collect::<BTreeSet<_>>().into_iter().collect();
    let want = |need| needs.contains(&need);
    let (snapshots, references, permissions, rules) = tokio::try_join!(
        async {
            if want(InventoryNeed::Snapshots) {
                snapshots(ec2, &snapshot_ids).await.with_context(|| format!("describe snapshots in {}", ec2.location))
            } else {
                Ok(BTreeMap::new())
            }
        },
        async { if want(InventoryNeed::Usage) { usage::references(ec2, &ids).await } else { Ok(BTreeMap::new()) } },
        async {
            if want(InventoryNeed::LaunchPermissions) {
                launch_permissions(ec2, &ids).await.with_context(|| format!("launch permissions in {}", ec2.location))
            } else {
                Ok(BTreeMap::new())
            }
        },
        async {
            if want(InventoryNeed::RecycleBin) {
                super::recycle::rules(ec2).await.with_context(|| format!("Recycle Bin rules in {}", ec2.location))
            } else {
                Ok(Vec::new())
            }
        },
    )?;
    let bin = |resource, tags: &crate::model::Tags| {
        want(InventoryNeed::RecycleBin).then(|| retention_days(&rules, resource, tags)).flatten()
    };
    for image in images.iter_mut() {
        for device in &mut image.block_devices {
            if let Some(info) = device.snapshot_id.as_ref().and_then(|s| snapshots.get(s)) {
                convert::apply_snapshot(device, info);
                device.recycle_bin_days = bin(BinResource::Snapshot, &info.tags);
            }
        }
        image.recycle_bin_days = bin(BinResource::Image, &image.tags);
        if let Some(r) = references.get(&image.id) {
            image.usage.instances = r.instances;
            image.usage.launch_templates = r.launch_templates.iter().cloned().collect();
            image.usage.references = r.others.iter().cloned().collect();
        }
        if want(InventoryNeed::LaunchPermissions) {
            image.launch_permissions = permissions.get(&image.id).cloned();
        }
    }
    if want(InventoryNeed::LaunchPermissions) {
        images.retain(|i| i.launch_permissions.is_some());
    }
    Ok(())
}

/// The snapshots `ids` (those this account owns), in as few calls as the estate allows:
/// a few ids are asked by id (200 a call); many are listed with the account's snapshots
/// (1,000 a page) as long as that takes no more pages than asking by id would take calls,
/// and whatever the listing did not cover is then asked by id.
pub async fn snapshots(ec2: &Ec2, ids: &[String]) -> Result<BTreeMap<String, SnapshotInfo>, ApiError> {
    let mut found = BTreeMap::new();
    let by_id_calls = ids.len().div_ceil(SNAPSHOT_BATCH);
    if by_id_calls > 1 {
        let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        let complete = list_owned_snapshots(ec2, by_id_calls, |s| {
            if let Some(id) = s.snapshot_id().filter(|id| wanted.contains(id)) {
                found.insert(id.to_string(), SnapshotInfo::from(s));
            }
        })
        .await?;
        if complete {
            return Ok(found);
        }
    }
    let missing: Vec<String> = ids.iter().filter(|id| !found.contains_key(*id)).cloned().collect();
    found.extend(snapshots_by_id(ec2, &missing).await?);
    Ok(found)
}

/// DescribeSnapshots (OwnerIds=self), at most `max_pages` pages of 1,000; `true` when
/// the listing ended within them.
async fn list_owned_snapshots(
    ec2: &Ec2,
    max_pages: usize,
    mut each: impl FnMut(&aws_sdk_ec2::types::Snapshot),
) -> Result<bool, ApiError> {
    let mut token: Option<String> = None;
    let mut seen = BTreeSet::new();
    for _ in 0..max_pages {
        let request =
            ec2.client.describe_snapshots().owner_ids("self").max_results(LIST_PAGE).set_next_token(token.take());
        let page = ec2.call("DescribeSnapshots", request.send()).await?;
        page.snapshots().iter().for_each(&mut each);
        token = next_page("DescribeSnapshots", page.next_token(), &mut seen)?;
        if token.is_none() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// DescribeSnapshots by id, in batches. EC2 fails a whole batch when one snapshot is
/// gone; that batch is then asked one snapshot at a time and the missing ones skipped.
async fn snapshots_by_id(ec2: &Ec2, ids: &[String]) -> Result<BTreeMap<String, SnapshotInfo>, ApiError> {
    let mut found = BTreeMap::new();
    for batch in ids.chunks(SNAPSHOT_BATCH) {
        let request = ec2.client.describe_snapshots().set_snapshot_ids(Some(batch.to_vec()));
        match ec2.call("DescribeSnapshots", request.send()).await {
            Ok(out) => record(&mut found, out.snapshots()),
            Err(e) if e.is_not_found() => {
                for id in batch {
                    match ec2.call("DescribeSnapshots", ec2.client.describe_snapshots().snapshot_ids(id).send()).await {
                        Ok(out) => record(&mut found, out.snapshots()),
                        Err(e) if e.is_not_found() => {
                            tracing::warn!(location = %ec2.location, "snapshot {id} is gone: {e}")
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

fn record(found: &mut BTreeMap<String, SnapshotInfo>, snapshots: &[aws_sdk_ec2::types::Snapshot]) {
    for s in snapshots {
        if let Some(id) = s.snapshot_id() {
            found.insert(id.to_string(), SnapshotInfo::from(s));
        }
    }
}

/// DescribeImageAttribute(launchPermission), one call per image, concurrently under
/// the rate limiter. An image deregistered meanwhile is left out: EC2 answers NotFound
/// for it; moto answers a bare HTTP 500 (its lookup of the image fails), so a failed read
/// is followed by a DescribeImages of the image, and an image gone by then is left out
/// too. Any other failure fails the read.
pub async fn launch_permissions(ec2: &Ec2, ids: &[String]) -> Result<BTreeMap<String, BTreeSet<Principal>>, ApiError> {
    let limit = Arc::new(Semaphore::new(PERMISSION_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for id in ids {
        let (ec2, id, limit) = (ec2.clone(), id.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let request =
                ec2.client.describe_image_attribute().image_id(&id).attribute(ImageAttributeName::LaunchPermission);
            let out = ec2.call("DescribeImageAttribute", request.send()).await;
            (id, out)
        });
    }
    let mut found = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        // A task that did not finish (it panicked) leaves an image unread: that is a
        // failed read, not a gone image.
        let (id, out) = joined.map_err(|e| ApiError::unfinished("DescribeImageAttribute", &e))?;
        match out {
            Ok(out) => {
                let principals = out.launch_permissions().iter().filter_map(convert::principal).collect();
                found.insert(id, principals);
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => match describe_images(ec2, Some(vec![id.clone()]), Vec::new()).await {
                Ok(now) if now.iter().all(|i| i.state() == Some(&aws_sdk_ec2::types::ImageState::Deregistered)) => {}
                Err(again) if again.is_not_found() => {}
                _ => return Err(e),
            },
        }
    }
    Ok(found)
}
