//! The applier's EC2 calls: one planned action becomes one (or a few) EC2 calls and an outcome.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types::{Filter, LaunchPermissionModifications, Tag};

use super::calls::{Ec2, Gaps};
use super::collect::describe_images;
use super::convert;
use super::errors::{ApiError, ErrorKind};
use crate::backend::{ACTION_TAG, ActionOutcome, copy_description, copy_name, copy_tags};
use crate::model::{CopyRequest, Principal};
use crate::plan::{Op, PlannedAction};

/// Executes `action` with `ec2` (its location) and, for a copy, `destination`. A snapshot
/// deletion reads the snapshot's users first unless `checked` (the apply read them in
/// its batch moments ago).
pub async fn run(ec2: &Ec2, destination: Option<&Ec2>, action: &PlannedAction, checked: bool) -> ActionOutcome {
    let image = action.image_id.as_str();
    let result = match &action.op {
        Op::Tag { tags } => {
            let request = ec2.client.create_tags().resources(image).set_tags(Some(tag_list(tags)));
            gone_is_skipped(
                ec2.call("CreateTags", request.send()).await.map(|_| done(format!("tagged {image}"))),
                image,
            )
        }
        Op::Untag { keys } => {
            let tags = keys.iter().map(|k| Tag::builder().key(k).build()).collect();
            let request = ec2.client.delete_tags().resources(image).set_tags(Some(tags));
            gone_is_skipped(
                ec2.call("DeleteTags", request.send()).await.map(|_| done(format!("untagged {image}"))),
                image,
            )
        }
        Op::Share { principal } => gone_is_skipped(modify_permission(ec2, image, principal, true).await, image),
        Op::Unshare { principal } => gone_is_skipped(modify_permission(ec2, image, principal, false).await, image),
        Op::Copy { request } => match destination {
            Some(dest) => gone_is_skipped(copy(ec2, dest, action, request).await, image),
            None => {
                return ActionOutcome::Failed {
                    error: format!("no client for the copy's destination region {}", request.region),
                };
            }
        },
        Op::Deprecate { at } => {
            let request = ec2.client.enable_image_deprecation().image_id(image).deprecate_at(DateTime::from_secs(at.0));
            gone_is_skipped(
                ec2.call("EnableImageDeprecation", request.send())
                    .await
                    .map(|_| done(format!("{image} deprecated at {at}"))),
                image,
            )
        }
        Op::Disable => gone_is_skipped(
            ec2.call("DisableImage", ec2.client.disable_image().image_id(image).send())
                .await
                .map(|_| done(format!("disabled {image}"))),
            image,
        ),
        Op::Deregister => gone_is_skipped(
            ec2.call("DeregisterImage", ec2.client.deregister_image().image_id(image).send())
                .await
                .map(|_| done(format!("deregistered {image}"))),
            image,
        ),
        Op::DeleteSnapshot { snapshot_id } => delete_snapshot(ec2, snapshot_id, checked).await,
    };
    result.unwrap_or_else(|e| ActionOutcome::Failed { error: format!("{} in {}: {e}", action.id, ec2.location) })
}

fn done(detail: String) -> ActionOutcome {
    ActionOutcome::Done { detail }
}

/// An op on an image that is already gone needs nothing (the outcome contract).
fn gone_is_skipped(result: Result<ActionOutcome, ApiError>, image: &str) -> Result<ActionOutcome, ApiError> {
    match result {
        Err(e) if e.is_not_found() => Ok(ActionOutcome::Skipped { reason: format!("{image} no longer exists") }),
        other => other,
    }
}

fn tag_list(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

async fn modify_permission(
    ec2: &Ec2,
    image: &str,
    principal: &Principal,
    add: bool,
) -> Result<ActionOutcome, ApiError> {
    let permission = convert::launch_permission(principal);
    let change = if add {
        LaunchPermissionModifications::builder().add(permission)
    } else {
        LaunchPermissionModifications::builder().remove(permission)
    };
    let request = ec2.client.modify_image_attribute().image_id(image).launch_permission(change.build());
    ec2.call("ModifyImageAttribute", request.send()).await?;
    Ok(done(if add {
        format!("shared {image} with {principal}")
    } else {
        format!("unshared {image} from {principal}")
    }))
}

/// CopyImage in the destination region, made idempotent three times: the action id is
/// the client token (a copy that token made once and that is gone since is made afresh
/// under a token of its own); the copy's description names the action
/// (`copy_description`), so a copy is found again even before the host tagged it (an
/// emulator may ignore client tokens, and the tags follow CopyImage in a second call);
/// and a call whose answer was
/// lost is not sent again before the destination is searched (`copy_image`). The copy is
/// then tagged with its source and action, since an emulator records neither, and with
/// the source's tags when asked (an emulator ignores CopyImageTags).
async fn copy(
    source: &Ec2,
    dest: &Ec2,
    action: &PlannedAction,
    request: &CopyRequest,
) -> Result<ActionOutcome, ApiError> {
    let name = copy_name(action, request);
    let (mut new_id, mut fresh) = match find_copy(dest, action, &name).await? {
        Some((existing, true)) => {
            return Ok(done(format!("copy of {} already exists in {}: {existing}", action.image_id, request.region)));
        }
        // Made by an earlier attempt whose answer, or whose tagging, was lost: tag it now.
        Some((untagged, false)) => (untagged, false),
        None => match copy_image(dest, action, request, &name, &action.id).await? {
            Some(id) => (id, true),
            None => return Ok(no_image_id(action)),
        },
    };
    let mut source_tags = Vec::new();
    if request.copy_tags {
        for found in describe_images(source, Some(vec![action.image_id.clone()]), Vec::new()).await? {
            for tag in found.tags() {
                if let (Some(k), Some(v)) = (tag.key(), tag.value()) {
                    source_tags.push((k.to_string(), v.to_string()));
                }
            }
        }
    }
    let tags = copy_tags(action, request, source_tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    loop {
        let tagging = dest.client.create_tags().resources(&new_id).set_tags(Some(tag_list(&tags)));
        match dest.call("CreateTags", tagging.send()).await {
            Ok(_) => return Ok(done(format!("copied {} to {} as {new_id}", action.image_id, request.region))),
            // EC2 answers a client token it still remembers with the copy that token made
            // once, even when that copy has been deregistered since (a replica removed by
            // hand, then planned again): that one is gone, so a copy is made afresh, once,
            // under a token of its own.
            Err(e) if fresh && e.is_not_found() => {
                fresh = false;
                let token = crate::model::id::stable_id("copy", format!("{}/{new_id}", action.id).as_bytes(), 20);
                new_id = match copy_image(dest, action, request, &name, &token).await? {
                    Some(id) => id,
                    None => return Ok(no_image_id(action)),
                };
            }
            // Running the action again finds the copy by its description and tags it.
            Err(e) => {
                return Ok(ActionOutcome::Failed {
                    error: format!(
                        "copied {} to {new_id} in {} but could not tag it: {e}",
                        action.image_id, request.region
                    ),
                });
            }
        }
    }
}

fn no_image_id(action: &PlannedAction) -> ActionOutcome {
    ActionOutcome::Failed { error: format!("CopyImage of {} returned no image id", action.image_id) }
}

/// The copy this action already made in `dest`, and whether it is tagged with the action
/// id: one DescribeImages by the copy's name (the description cannot be filtered on
/// everywhere: moto lacks that filter).
async fn find_copy(dest: &Ec2, action: &PlannedAction, name: &str) -> Result<Option<(String, bool)>, ApiError> {
    use aws_sdk_ec2::types::ImageState;
    let by_name = Filter::builder().name("name").values(name).build();
    let description = copy_description(action);
    let found = describe_images(dest, None, vec![by_name]).await?;
    let mut untagged = None;
    for image in &found {
        let Some(id) = image.image_id() else { continue };
        if matches!(image.state(), Some(ImageState::Deregistered | ImageState::Failed | ImageState::Error)) {
            continue;
        }
        if image.tags().iter().any(|t| t.key() == Some(ACTION_TAG) && t.value() == Some(action.id.as_str())) {
            return Ok(Some((id.to_string(), true)));
        }
        if image.description() == Some(description.as_str()) && untagged.is_none() {
            untagged = Some(id.to_string());
        }
    }
    Ok(untagged.map(|id| (id, false)))
}

/// The CopyImage call itself, retried here instead of by the SDK, because a blind retry
/// can copy twice: when the answer to a CopyImage EC2 carried out is lost (connection
/// reset, timeout, 5xx), the SDK sends it again; EC2 then returns the same copy for the
/// same client token, but an endpoint that ignores client tokens (moto) makes a second
/// one. So after a call without a clear answer the destination is searched first
/// (`find_copy`), and only if no copy is there is the call sent again. A throttled call
/// (EC2 refused it) is simply sent again; one refused by EC2's limit of copies in
/// progress per destination waits for copies to finish (`copy_limit_wait`, up to
/// `COPY_LIMIT_WAITS` times) and is sent again. Attempts and backoff follow the client's retry
/// configuration; each attempt is paced and counted. Returns the copy's id (`None`: EC2
/// answered without one).
async fn copy_image(
    dest: &Ec2,
    action: &PlannedAction,
    request: &CopyRequest,
    name: &str,
    token: &str,
) -> Result<Option<String>, ApiError> {
    let retry = dest.client.config().retry_config().cloned().unwrap_or_else(RetryConfig::standard);
    let mut attempt = 1;
    let mut waits_for_the_limit = 0;
    loop {
        let call = dest
            .client
            .copy_image()
            .source_image_id(&action.image_id)
            .source_region(&action.location.region)
            .name(name)
            .description(copy_description(action))
            .encrypted(request.encrypted)
            .set_kms_key_id(request.kms_key_id.clone())
            .copy_image_tags(request.copy_tags)
            .client_token(token)
            .customize()
            .config_override(aws_sdk_ec2::config::Builder::default().retry_config(RetryConfig::disabled()));
        let error = match dest.call("CopyImage", call.send()).await {
            Ok(out) => return Ok(out.image_id().map(str::to_string)),
            Err(e) => e,
        };
        match error.kind {
            ErrorKind::Throttled => {}
            ErrorKind::LimitExceeded if waits_for_the_limit < COPY_LIMIT_WAITS => {
                // EC2 refused the call: nothing was copied. Copies in progress finish in
                // minutes; wait for one (not counted as an attempt) and send it again.
                waits_for_the_limit += 1;
                if waits_for_the_limit == 1 {
                    tracing::warn!(
                        "{}: {error}; waiting for copies in progress to {} to finish",
                        action.id,
                        request.region
                    );
                }
                tokio::time::sleep(copy_limit_wait(&retry, waits_for_the_limit)).await;
                continue;
            }
            ErrorKind::Transient => {
                if let Some((found, _)) = find_copy(dest, action, name).await? {
                    tracing::warn!(
                        "{}: {error}; the copy was made anyway ({found}), it is kept instead of copying again",
                        action.id
                    );
                    return Ok(Some(found));
                }
            }
            _ => return Err(error),
        }
        if attempt >= retry.max_attempts() {
            return Err(error);
        }
        tokio::time::sleep(backoff(&retry, attempt)).await;
        attempt += 1;
    }
}

/// How many times a copy waits for EC2's limit on copies in progress
/// (`ResourceLimitExceeded`) before it is reported failed: about half an hour with the
/// SDK's default backoff (`copy_limit_wait`).
const COPY_LIMIT_WAITS: u32 = 64;

/// The wait before sending a copy again after EC2's copy limit refused it the `n`th
/// time: doubling from the client's initial backoff to 32 times it, at most 30 s (with
/// the SDK's 1 s default: 1, 2, 4, 8, 16, then 30 s).
fn copy_limit_wait(retry: &RetryConfig, n: u32) -> std::time::Duration {
    let initial = retry.initial_backoff();
    let cap = initial.saturating_mul(32).min(std::time::Duration::from_secs(30));
    initial.saturating_mul(1 << (n - 1).min(5)).min(cap)
}

/// The wait before attempt `attempt + 1`: the SDK's standard backoff (exponential from
/// the initial backoff, capped, with full jitter).
fn backoff(retry: &RetryConfig, attempt: u32) -> std::time::Duration {
    use std::hash::BuildHasher;
    let jitter = (std::hash::RandomState::new().hash_one(attempt) % 1_000) as f64 / 1_000.0;
    let exponential = retry.initial_backoff().saturating_mul(1 << (attempt - 1).min(16));
    exponential.min(retry.max_backoff()).mul_f64(jitter)
}

async fn delete_snapshot(ec2: &Ec2, snapshot_id: &str, checked: bool) -> Result<ActionOutcome, ApiError> {
    if !checked {
        let ids = [snapshot_id.to_string()];
        if let Some(users) = snapshot_users(ec2, &ids).await?.remove(snapshot_id) {
            return Ok(ActionOutcome::Skipped {
                reason: format!("{snapshot_id} is still used by {}", users.join(", ")),
            });
        }
    }
    // EC2 itself refuses to delete a snapshot a registered image uses (InvalidSnapshot.InUse).
    match ec2.call("DeleteSnapshot", ec2.client.delete_snapshot().snapshot_id(snapshot_id).send()).await {
        Ok(_) => Ok(done(format!("deleted {snapshot_id}"))),
        Err(e) if e.is_not_found() => Ok(ActionOutcome::Skipped { reason: format!("{snapshot_id} no longer exists") }),
        Err(e) if e.kind == ErrorKind::InUse => {
            Ok(ActionOutcome::Skipped { reason: format!("{snapshot_id} is in use: {e}") })
        }
        Err(e) => Err(e),
    }
}

/// Values one `block-device-mapping.snapshot-id` filter takes.
const SNAPSHOT_FILTER_BATCH: usize = 200;

/// The images (owned, in this location, not deregistered) whose block devices use each
/// of `snapshot_ids` (unused ones absent): by the `block-device-mapping.snapshot-id`
/// filter, one call per 200 snapshots, or by one scan of every image where the endpoint
/// lacks that filter.
pub async fn snapshot_users(ec2: &Ec2, snapshot_ids: &[String]) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    if snapshot_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    if !Gaps::known(&ec2.gaps.no_snapshot_filter) {
        let mut found = BTreeMap::new();
        let mut filtered = true;
        for batch in snapshot_ids.chunks(SNAPSHOT_FILTER_BATCH) {
            let filter =
                Filter::builder().name("block-device-mapping.snapshot-id").set_values(Some(batch.to_vec())).build();
            match describe_images(ec2, None, vec![filter]).await {
                Ok(images) => found.extend(users_of(&images, batch)),
                Err(e) if e.kind == ErrorKind::NotImplemented => {
                    if Gaps::learn(&ec2.gaps.no_snapshot_filter) {
                        tracing::warn!(
                            "{e}; the block-device-mapping.snapshot-id filter is missing, scanning every image instead"
                        );
                    }
                    filtered = false;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if filtered {
            return Ok(found);
        }
    }
    Ok(users_of(&describe_images(ec2, None, Vec::new()).await?, snapshot_ids))
}

fn users_of(images: &[aws_sdk_ec2::types::Image], snapshot_ids: &[String]) -> BTreeMap<String, Vec<String>> {
    let wanted: BTreeSet<&str> = snapshot_ids.iter().map(String::as_str).collect();
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for image in images.iter().filter(|i| i.state() != Some(&aws_sdk_ec2::types::ImageState::Deregistered)) {
        let Some(id) = image.image_id() else { continue };
        for snapshot in image.block_device_mappings().iter().filter_map(|m| m.ebs().and_then(|e| e.snapshot_id())) {
            if wanted.contains(snapshot) {
                let entry = users.entry(snapshot.to_string()).or_default();
                if !entry.iter().any(|u| u == id) {
                    entry.push(id.to_string());
                }
            }
        }
    }
    users
}
