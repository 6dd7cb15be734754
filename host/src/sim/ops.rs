//! What each call does to the simulated state, as EC2 would: a copy gets a new id (from
//! its action id, so a replayed copy is the same copy) and records its source; a
//! deregistered image is gone but its snapshots stay; a snapshot still used by an image
//! cannot be deleted; DisableImage drops every share; image block public access refuses
//! public shares; deregistration protection refuses DeregisterImage.

use std::collections::{BTreeMap, BTreeSet};

use super::{SimImage, SimSnapshot, SimState};
use crate::backend::{ACTION_TAG, ActionOutcome, copy_description, copy_name, copy_tags};
use crate::model::id::stable_id;
use crate::model::{ImageState, Principal, Timestamp};
use crate::plan::{Op, PlannedAction};

/// Executes `action` on `state` at `now`.
pub(super) fn execute(state: &mut SimState, action: &PlannedAction, now: Timestamp) -> ActionOutcome {
    let Some(region) = state.accounts.get_mut(&action.account).and_then(|a| a.regions.get_mut(&action.region)) else {
        return ActionOutcome::Failed { error: format!("no such account/region {}/{}", action.account, action.region) };
    };
    if let Op::DeleteSnapshot { snapshot_id } = &action.op {
        if let Some(user) =
            region.images.iter().find(|i| i.block_devices.iter().any(|d| d.snapshot_id.as_ref() == Some(snapshot_id)))
        {
            return ActionOutcome::Skipped { reason: format!("{snapshot_id} is still used by {}", user.id) };
        }
        let before = region.snapshots.len();
        region.snapshots.retain(|s| &s.id != snapshot_id);
        return if region.snapshots.len() < before {
            ActionOutcome::Done { detail: format!("deleted {snapshot_id}") }
        } else {
            ActionOutcome::Skipped { reason: format!("{snapshot_id} no longer exists") }
        };
    }
    let block_public = region.block_public_access;
    let Some(pos) = region.images.iter().position(|i| i.id == action.image_id) else {
        return ActionOutcome::Skipped { reason: format!("{} no longer exists", action.image_id) };
    };
    let image = &mut region.images[pos];
    match &action.op {
        Op::Tag { tags } => {
            image.tags.extend(tags.clone());
            ActionOutcome::Done { detail: format!("tagged {}", action.image_id) }
        }
        Op::Untag { keys } => {
            image.tags.retain(|k, _| !keys.contains(k));
            ActionOutcome::Done { detail: format!("untagged {}", action.image_id) }
        }
        Op::Share { principal } => {
            if *principal == Principal::Public && block_public {
                return ActionOutcome::Failed { error: "image block public access is on in this region".into() };
            }
            image.launch_permissions.insert(principal.clone());
            ActionOutcome::Done { detail: format!("shared with {principal}") }
        }
        Op::Unshare { principal } => {
            image.launch_permissions.remove(principal);
            ActionOutcome::Done { detail: format!("unshared from {principal}") }
        }
        Op::Deprecate { at } => {
            image.deprecation_time = Some(*at);
            ActionOutcome::Done { detail: format!("deprecates at {at}") }
        }
        Op::Disable => {
            image.state = ImageState::Disabled;
            image.launch_permissions.clear();
            ActionOutcome::Done { detail: "disabled".into() }
        }
        Op::Deregister => {
            if let Some(how) = image.deregistration_protection.as_ref().filter(|p| *p != "disabled") {
                return ActionOutcome::Failed {
                    error: format!("deregistration protection is on for {} ({how})", action.image_id),
                };
            }
            region.images.remove(pos);
            ActionOutcome::Done { detail: format!("deregistered {}", action.image_id) }
        }
        Op::Copy { request } => {
            let source = image.clone();
            let source_snapshots = region.snapshots.clone();
            copy(state, action, &source, &source_snapshots, request, now)
        }
        Op::DeleteSnapshot { .. } => ActionOutcome::Skipped { reason: "handled above".into() },
    }
}

fn copy(
    state: &mut SimState,
    action: &PlannedAction,
    source: &SimImage,
    source_snapshots: &[SimSnapshot],
    request: &crate::model::CopyRequest,
    now: Timestamp,
) -> ActionOutcome {
    let Some(account) = state.accounts.get_mut(&action.account) else {
        return ActionOutcome::Failed { error: format!("no such account {}", action.account) };
    };
    let target = account.regions.entry(request.region.clone()).or_default();
    if let Some(existing) = target.images.iter().find(|i| i.tags.get(ACTION_TAG) == Some(&action.id)) {
        return ActionOutcome::Done { detail: format!("copy {} exists already (same client token)", existing.id) };
    }
    let new_id = stable_id("ami", action.id.as_bytes(), 17);
    let mut devices = Vec::new();
    for dev in &source.block_devices {
        let mut dev = dev.clone();
        if let Some(snap_id) = &dev.snapshot_id {
            let new_snap = stable_id("snap", format!("{}/{}", action.id, dev.device_name).as_bytes(), 17);
            let original = source_snapshots.iter().find(|s| &s.id == snap_id);
            let at = target.snapshots.iter().position(|s| s.id > new_snap).unwrap_or(target.snapshots.len());
            target.snapshots.insert(
                at,
                SimSnapshot {
                    id: new_snap.clone(),
                    size_gib: original.map(|s| s.size_gib).unwrap_or(dev.size_gib),
                    full_size_bytes: original.and_then(|s| s.full_size_bytes),
                    storage_tier: Default::default(),
                    encrypted: request.encrypted || original.is_some_and(|s| s.encrypted),
                    kms_key_id: request.kms_key_id.clone(),
                    tags: BTreeMap::new(),
                },
            );
            dev.snapshot_id = Some(new_snap);
        }
        devices.push(dev);
    }
    let tags = copy_tags(action, request, source.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // Before the first image with a greater id: the file ends the same whatever order
    // concurrent copies ran in.
    let at = target.images.iter().position(|i| i.id > new_id).unwrap_or(target.images.len());
    target.images.insert(
        at,
        SimImage {
            id: new_id.clone(),
            name: copy_name(action, request),
            description: copy_description(action),
            creation_time: now,
            state: ImageState::Available,
            architecture: source.architecture,
            platform: source.platform,
            root_device_type: source.root_device_type,
            launch_permissions: BTreeSet::new(),
            tags,
            block_devices: devices,
            deprecation_time: None,
            source_image_id: Some(source.id.clone()),
            source_region: Some(action.region.clone()),
            last_launched_time: None,
            deregistration_protection: None,
        },
    );
    ActionOutcome::Done { detail: format!("copied to {new_id} in {}", request.region) }
}
