//! What each call does to the simulated state, as EC2 would: a copy gets a new id (from
//! its action id, so a replayed copy is the same copy) and records its source; a
//! deregistered image is gone but its snapshots stay; a snapshot still used by an image
//! cannot be deleted; DisableImage drops every share; image block public access refuses
//! public shares; deregistration protection refuses DeregisterImage; a deregistered
//! image or deleted snapshot a Recycle Bin rule covers goes to the bin, restorable (as
//! the image alone, without its shares) until its retention ends.

use std::collections::BTreeSet;

use super::{Binned, SimImage, SimRegion, SimSnapshot, SimState};
use crate::backend::{ACTION_TAG, ActionOutcome, Restore, copy_description, copy_name, copy_tags};
use crate::model::id::stable_id;
use crate::model::recycle::{BinResource, retention_days};
use crate::model::{ImageState, Principal, Timestamp};
use crate::plan::{Op, PlannedAction};

/// Executes `action` on `state` at `now`.
pub(super) fn execute(state: &mut SimState, action: &PlannedAction, now: Timestamp) -> ActionOutcome {
    let Some(region) =
        state.accounts.get_mut(&action.location.account).and_then(|a| a.regions.get_mut(&action.location.region))
    else {
        return ActionOutcome::Failed { error: format!("no such account/region {}", action.location) };
    };
    if let Op::DeleteSnapshot { snapshot_id } = &action.op {
        if let Some(user) =
            region.images.iter().find(|i| i.block_devices.iter().any(|d| d.snapshot_id.as_ref() == Some(snapshot_id)))
        {
            return ActionOutcome::Skipped { reason: format!("{snapshot_id} is still used by {}", user.id) };
        }
        let Some(pos) = region.snapshots.iter().position(|s| &s.id == snapshot_id) else {
            return ActionOutcome::Skipped { reason: format!("{snapshot_id} no longer exists") };
        };
        let snapshot = region.snapshots.remove(pos);
        let days = retention_days(&region.recycle_bin_rules, BinResource::Snapshot, &snapshot.tags);
        let kept = bin(&mut region.recycle_bin.snapshots, snapshot, days, now);
        return ActionOutcome::Done { detail: format!("deleted {snapshot_id}{kept}") };
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
            let image = region.images.remove(pos);
            let days = retention_days(&region.recycle_bin_rules, BinResource::Image, &image.tags);
            let kept = bin(&mut region.recycle_bin.images, image, days, now);
            ActionOutcome::Done { detail: format!("deregistered {}{kept}", action.image_id) }
        }
        Op::Copy { request } => {
            let source = image.clone();
            let source_snapshots = region.snapshots.clone();
            copy(state, action, &source, &source_snapshots, request, now)
        }
        Op::DeleteSnapshot { .. } => ActionOutcome::Skipped { reason: "handled above".into() },
    }
}

/// Puts a deleted resource in the Recycle Bin when a rule keeps it `days`; says so.
fn bin<T>(bin: &mut Vec<Binned<T>>, resource: T, days: Option<u32>, now: Timestamp) -> String {
    let Some(days) = days else { return String::new() };
    bin.push(Binned { resource, deleted: now, until: now.plus_days(i64::from(days)) });
    format!(" (in the Recycle Bin for {days} days)")
}

/// Takes what `undo` restores out of `region`'s Recycle Bin, if it is there and its time
/// has not run out at `now`.
fn unbin<T>(bin: &mut Vec<Binned<T>>, is: impl Fn(&T) -> bool, what: &str, now: Timestamp) -> Result<T, String> {
    let Some(pos) = bin.iter().position(|b| is(&b.resource)) else {
        return Err(format!("{what} is not in the Recycle Bin"));
    };
    if bin[pos].until.0 < now.0 {
        return Err(format!("{what} left the Recycle Bin at {} (its retention ended); it is gone", bin[pos].until));
    }
    Ok(bin.remove(pos).resource)
}

/// Reverses one change in `region` at `now`, as EC2's Restore*FromRecycleBin and
/// EnableImage do: an image comes back without its shares, and only once its snapshots
/// are back.
pub(super) fn restore(region: &mut SimRegion, what: &Restore, now: Timestamp) -> ActionOutcome {
    let outcome = match what {
        Restore::Snapshot { snapshot_id } => {
            if region.snapshots.iter().any(|s| &s.id == snapshot_id) {
                return ActionOutcome::Skipped { reason: format!("{snapshot_id} exists (already restored)") };
            }
            unbin(&mut region.recycle_bin.snapshots, |s| &s.id == snapshot_id, snapshot_id, now).map(|snapshot| {
                let at = region.snapshots.iter().position(|s| s.id > snapshot.id).unwrap_or(region.snapshots.len());
                region.snapshots.insert(at, snapshot);
                format!("restored {snapshot_id}")
            })
        }
        Restore::Image { image_id } => {
            if region.images.iter().any(|i| &i.id == image_id) {
                return ActionOutcome::Skipped { reason: format!("{image_id} exists (already restored)") };
            }
            let missing = region.recycle_bin.images.iter().find(|b| &b.resource.id == image_id).and_then(|b| {
                b.resource
                    .block_devices
                    .iter()
                    .filter_map(|d| d.snapshot_id.as_ref())
                    .find(|snap| !region.snapshots.iter().any(|s| &s.id == *snap))
            });
            match missing {
                Some(snap) => Err(format!("its snapshot {snap} is not available (restore it first)")),
                None => unbin(&mut region.recycle_bin.images, |i| &i.id == image_id, image_id, now).map(|mut image| {
                    image.launch_permissions.clear();
                    image.state = ImageState::Available;
                    let at = region.images.iter().position(|i| i.id > image.id).unwrap_or(region.images.len());
                    region.images.insert(at, image);
                    format!("restored {image_id}")
                }),
            }
        }
        Restore::Enable { image_id } => match region.images.iter_mut().find(|i| &i.id == image_id) {
            None => Err(format!("{image_id} no longer exists")),
            Some(image) if image.state == ImageState::Disabled => {
                image.state = ImageState::Available;
                Ok(format!("enabled {image_id}"))
            }
            Some(_) => return ActionOutcome::Skipped { reason: format!("{image_id} is not disabled") },
        },
    };
    match outcome {
        Ok(detail) => ActionOutcome::Done { detail },
        Err(error) => ActionOutcome::Failed { error },
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
    let Some(account) = state.accounts.get_mut(&action.location.account) else {
        return ActionOutcome::Failed { error: format!("no such account {}", action.location.account) };
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
                    tags: Default::default(),
                },
            );
            dev.snapshot_id = Some(new_snap);
        }
        devices.push(dev);
    }
    let tags = copy_tags(action, request, source.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))).into();
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
            source_region: Some(action.location.region.clone()),
            last_launched_time: None,
            deregistration_protection: None,
        },
    );
    ActionOutcome::Done { detail: format!("copied to {new_id} in {}", request.region) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> SimRegion {
        let state: SimState = serde_json::from_value(serde_json::json!({"version": 1, "accounts": {"111111111111": {"regions": {"us-east-1": {
            "images": [{"id": "ami-0aaaaaaaaaaaaaaa1", "name": "a", "creation_time": "2026-01-01T00:00:00Z",
                        "launch_permissions": ["222222222222"],
                        "block_devices": [{"device_name": "/dev/xvda", "snapshot_id": "snap-1", "size_gib": 8}]}],
            "snapshots": [{"id": "snap-1", "size_gib": 8}],
            "recycle_bin_rules": [{"id": "r", "resource": "image", "retention_days": 2}, {"id": "s", "resource": "snapshot", "retention_days": 10}]
        }}}}}))
        .unwrap();
        state.accounts["111111111111"].regions["us-east-1"].clone()
    }

    fn remove(region: &mut SimRegion, op: Op, now: Timestamp) -> ActionOutcome {
        let mut state = SimState { version: 1, ..SimState::default() };
        state.accounts.entry("111111111111".into()).or_default().regions.insert("us-east-1".into(), region.clone());
        let action = PlannedAction {
            id: "act-1".into(),
            location: crate::model::Location { account: "111111111111".into(), region: "us-east-1".into() }.into(),
            image_id: "ami-0aaaaaaaaaaaaaaa1".into(),
            image_name: "a".into(),
            op,
            plugins: Default::default(),
            reasons: Default::default(),
            monthly_cost_delta: 0,
            one_time_cost: 0,
        };
        let outcome = execute(&mut state, &action, now);
        *region = state.accounts["111111111111"].regions["us-east-1"].clone();
        outcome
    }

    #[test]
    fn the_bin_keeps_what_a_rule_covers_and_gives_it_back_snapshots_first_within_its_time() {
        let now = Timestamp(1_795_000_000);
        let image = Restore::Image { image_id: "ami-0aaaaaaaaaaaaaaa1".into() };
        let snapshot = Restore::Snapshot { snapshot_id: "snap-1".into() };
        let mut r = region();
        assert!(
            matches!(remove(&mut r, Op::Deregister, now), ActionOutcome::Done { detail } if detail.ends_with("(in the Recycle Bin for 2 days)"))
        );
        let snap = Op::DeleteSnapshot { snapshot_id: "snap-1".into() };
        assert!(matches!(remove(&mut r, snap, now), ActionOutcome::Done { .. }));
        assert!(r.images.is_empty() && r.snapshots.is_empty());
        assert_eq!((r.recycle_bin.images.len(), r.recycle_bin.snapshots.len()), (1, 1));

        // The image needs its snapshot back first.
        let out = restore(&mut r, &image, now);
        assert!(
            matches!(&out, ActionOutcome::Failed { error } if error.contains("snap-1 is not available (restore it first)")),
            "{out:?}"
        );
        // Past the image's 2 days (the snapshot's 10 still run): the image is gone for good.
        let later = now.plus_days(3);
        assert!(matches!(restore(&mut r, &snapshot, later), ActionOutcome::Done { .. }));
        let out = restore(&mut r, &image, later);
        assert!(matches!(&out, ActionOutcome::Failed { error } if error.contains("retention ended")), "{out:?}");

        // Within its time it comes back available and unshared; twice is not needed.
        let mut r = region();
        remove(&mut r, Op::Deregister, now);
        assert!(matches!(restore(&mut r, &image, now.plus_days(1)), ActionOutcome::Done { .. }));
        assert!(r.images[0].launch_permissions.is_empty() && r.recycle_bin.images.is_empty());
        assert!(matches!(restore(&mut r, &image, now), ActionOutcome::Skipped { .. }));
        assert!(matches!(restore(&mut r, &snapshot, now), ActionOutcome::Skipped { .. }), "snap-1 never left");

        // Without a rule, deregistration is final.
        let mut r = region();
        r.recycle_bin_rules.clear();
        assert!(
            matches!(remove(&mut r, Op::Deregister, now), ActionOutcome::Done { detail } if !detail.contains("Recycle Bin"))
        );
        assert!(
            matches!(restore(&mut r, &image, now), ActionOutcome::Failed { error } if error.contains("not in the Recycle Bin"))
        );
    }
}
