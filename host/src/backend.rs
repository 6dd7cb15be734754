//! The seam between the engine and EC2: inventory in, action outcomes out.
//!
//! Two implementations sit behind it: `sim` (a JSON state file) and `aws` (aws-sdk-ec2).
//! The engine, planner and applier never know which one they talk to, so both answer
//! every op by one contract (checked on both by `tests/contract.rs`):
//!
//! | situation | outcome |
//! |---|---|
//! | the call made the change | `Done` |
//! | the image no longer exists (any op on it) | `Skipped`: "IMAGE no longer exists" |
//! | a snapshot to delete is still used by an image | `Skipped`: "SNAP is still used by IMAGE" (never deleted; checked by the call, unless the apply's batch read found it unused under `RECHECK_MAX_AGE` ago; EC2 refuses it too) |
//! | a snapshot to delete is already gone | `Skipped`: "SNAP no longer exists" |
//! | a share already present, an unshare of a principal not there | `Done` (EC2's launch permissions are a set) |
//! | a tag already set, an untag of a key not there | `Done` |
//! | a copy this action already made (same action id: client token, `amiwarden:action-id` tag) | `Done`, naming the existing copy; never a second copy |
//! | a deprecation when one is already set | `Done`: EC2 replaces the time |
//! | throttled, 5xx | retried by the SDK (standard mode); `Failed` once the attempts are spent |
//! | access denied, any other error | `Failed` with EC2's code and message |
//!
//! A copy is named by the request, else after its source (`copy_name`), and described
//! with its source and action (`copy_description`); with
//! `copy_tags` it carries the source's tags except keys reserved to AWS or the host, and
//! always the host's own `amiwarden:` tags (`copy_tags`). Emulator gaps (moto's DeleteTags
//! accepts any image id; DisableImage and EnableImageDeprecation are missing) are listed
//! in FACTS.md and `tests/moto.rs`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::Scope;
use crate::model::{CopyRequest, Image, InventoryNeed, Location};
use crate::plan::PlannedAction;

/// Tag the host writes on every copy it makes: the source image id.
pub const SOURCE_IMAGE_TAG: &str = "amiwarden:source-image-id";
/// Tag the host writes on every copy it makes: the source region.
pub const SOURCE_REGION_TAG: &str = "amiwarden:source-region";
/// Tag the host writes on every copy it makes: the plan action that made it.
pub const ACTION_TAG: &str = "amiwarden:action-id";

/// The oldest a re-read of EC2 may be when the destructive action it checks runs (see
/// `recheck_expiry` for an endpoint slower than that).
pub const RECHECK_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(15);

/// When a re-read that started at `started` (and has just ended) stops being usable:
/// `RECHECK_MAX_AGE` after it started, or twice the time it took when the endpoint is
/// that slow. A read slower than the age limit would otherwise be stale on arrival and
/// every action would read again (seen on a 5,000-image emulator: a full scan per
/// action); EC2's answer cannot be fresher than the call that fetched it.
pub fn recheck_expiry(started: std::time::Instant) -> std::time::Instant {
    started + RECHECK_MAX_AGE.max(started.elapsed().saturating_mul(2))
}

/// The name a copy gets: the request's, else its source's (as the plan recorded it),
/// else the source's id.
pub fn copy_name(action: &PlannedAction, request: &CopyRequest) -> String {
    request.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| {
        if action.image_name.is_empty() { action.image_id.clone() } else { action.image_name.clone() }
    })
}

/// The description of a copy the host makes: EC2 console's form, and the action id, by
/// which a copy not yet tagged (its tagging failed, or the answer to its CopyImage was
/// lost) is recognised instead of being made again.
pub fn copy_description(action: &PlannedAction) -> String {
    format!("[Copied {} from {}] amiwarden {}", action.image_id, action.location.region, action.id)
}

/// The tags a copy gets: with `copy_tags`, the source's tags but those reserved to AWS
/// (which cannot be set) or the host; always the host's own, which recognise the copy.
pub fn copy_tags<'a>(
    action: &PlannedAction,
    request: &CopyRequest,
    source_tags: impl Iterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = if request.copy_tags {
        source_tags.filter(|(k, _)| !crate::model::is_reserved_tag(k)).map(|(k, v)| (k.into(), v.into())).collect()
    } else {
        BTreeMap::new()
    };
    tags.insert(SOURCE_IMAGE_TAG.to_string(), action.image_id.clone());
    tags.insert(SOURCE_REGION_TAG.to_string(), action.location.region.clone());
    tags.insert(ACTION_TAG.to_string(), action.id.clone());
    tags
}

/// The result of executing one planned action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ActionOutcome {
    /// The change was made; `detail` says what (for example the new image id of a copy).
    Done { detail: String },
    /// Nothing was done because it was not needed or no longer safe.
    Skipped { reason: String },
    /// The call failed.
    Failed { error: String },
}

/// A change `amiwarden undo` reverses, in the form EC2 takes it (re-sharing is an
/// ordinary `Op::Share`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Restore {
    /// RestoreSnapshotFromRecycleBin.
    Snapshot { snapshot_id: String },
    /// RestoreImageFromRecycleBin (its snapshots must be restored first).
    Image { image_id: String },
    /// EnableImage: a disabled image made available again (without its shares).
    Enable { image_id: String },
}

impl Restore {
    /// A short verb for tables and messages.
    pub fn verb(&self) -> String {
        match self {
            Restore::Snapshot { snapshot_id } => format!("restore snapshot {snapshot_id}"),
            Restore::Image { image_id } => format!("restore {image_id}"),
            Restore::Enable { image_id } => format!("enable {image_id}"),
        }
    }
}

/// EC2 as the engine sees it.
pub trait Backend: Sync {
    /// A short description for messages, e.g. `sim:examples/sim/demo.json`.
    fn name(&self) -> String;

    /// What identifies the EC2 this backend changes, for binding a journal to it: the
    /// absolute state path of a sim, the endpoint, profile and accounts of AWS.
    fn identity(&self) -> String {
        self.name()
    }

    /// The state file a sim keeps (its journal and lock live beside it by default).
    fn state_file(&self) -> Option<&std::path::Path> {
        None
    }

    /// Every image in scope with its snapshots, usage and (if needed) launch permissions.
    /// Costs are left at zero; the engine prices images.
    fn collect(&self, scope: &Scope, needs: &BTreeSet<InventoryNeed>) -> anyhow::Result<Vec<Image>>;

    /// Re-reads images of one location, with usage (and launch permissions when
    /// `permissions`), right before destructive calls; every id gets an entry, `None` when
    /// the image no longer exists. (One image is `refresh_many(location, &[id], ..)`.)
    fn refresh_many(
        &self,
        location: &Location,
        image_ids: &[String],
        permissions: bool,
    ) -> anyhow::Result<Vec<(String, Option<Image>)>>;

    /// The images (not deregistered) in `location` that use each of `snapshot_ids`;
    /// snapshots no image uses are absent. One read for the whole batch.
    fn snapshot_users(
        &self,
        location: &Location,
        snapshot_ids: &[String],
    ) -> anyhow::Result<BTreeMap<String, Vec<String>>>;

    /// How many images an apply works on at once inside a phase (1: one call at a time).
    fn concurrency(&self) -> usize {
        1
    }

    /// Executes one action. Must be idempotent for the same `action.id`: a copy with the
    /// same id returns the earlier copy instead of making a second one.
    fn execute(&self, action: &PlannedAction) -> ActionOutcome;

    /// Reverses one change of an earlier apply in `location` (`amiwarden undo`): restores
    /// a deregistered image or deleted snapshot from the Recycle Bin, or enables a
    /// disabled image. `Done` when made, `Skipped` when nothing needed it (already back),
    /// `Failed` with EC2's reason (not in the Recycle Bin, its time ran out, ...).
    fn restore(&self, location: &Location, what: &Restore) -> ActionOutcome;

    /// Reads the state afresh where the backend keeps a copy of it (the sim, whose file
    /// another process may have changed); called under the state's lock. A no-op on AWS.
    fn reload(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Makes executed changes durable before they are journaled as done (the sim appends
    /// them to its apply log); a no-op on AWS.
    fn commit(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Ends an apply: the sim writes its state file whole; a no-op on AWS.
    fn finish(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Checks each action's call with EC2's DryRun flag (permissions only; nothing
    /// changes): `(action id, allowed or why not)`. `None` where the backend has no IAM.
    fn preflight(&self, _actions: &[PlannedAction]) -> Option<Vec<(String, Result<(), String>)>> {
        None
    }

    /// API calls made so far, by operation name, for the end-of-run report.
    fn call_counts(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{RECHECK_MAX_AGE, recheck_expiry};

    #[test]
    fn a_re_read_is_usable_for_the_age_limit_or_twice_as_long_as_it_took() {
        let quick = Instant::now() - Duration::from_secs(1);
        assert_eq!(recheck_expiry(quick), quick + RECHECK_MAX_AGE);
        let slow = Instant::now() - Duration::from_secs(20);
        let expires = recheck_expiry(slow);
        assert!(expires >= slow + Duration::from_secs(40), "a 20 s read stays usable for 20 s after it ends");
        assert!(expires <= slow + Duration::from_secs(42));
    }
}
