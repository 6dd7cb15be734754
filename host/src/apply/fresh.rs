//! What the apply re-reads from EC2 right before destructive calls: images (state, usage,
//! and launch permissions where the plan read them) and the users of snapshots, each in
//! batches over the next actions of one location, so a re-check costs a few calls per
//! batch instead of per action. A read is used once, and only while it is young.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::backend::Backend;
use crate::model::Image;
use crate::plan::{Op, PlannedAction};

/// Images (or snapshots) one re-read covers: the `image-id` and snapshot-id filters take
/// this many values in one call.
pub const RECHECK_BATCH: usize = 100;

/// Reads made ahead of their actions, keyed by image id and snapshot id, each with the
/// instant it stops being usable.
#[derive(Debug, Default)]
pub struct Fresh {
    images: BTreeMap<String, (Instant, Option<Image>)>,
    snapshots: BTreeMap<String, (Instant, Vec<String>)>,
}

use crate::backend::recheck_expiry as expiry;

fn young(expires: Instant) -> bool {
    Instant::now() <= expires
}

/// The image a disable or deregistration acts on.
fn destroyed_image(action: &PlannedAction) -> Option<&str> {
    matches!(action.op, Op::Disable | Op::Deregister).then_some(action.image_id.as_str())
}

/// The snapshot a snapshot deletion deletes.
fn deleted_snapshot(action: &PlannedAction) -> Option<&str> {
    match &action.op {
        Op::DeleteSnapshot { snapshot_id } => Some(snapshot_id),
        _ => None,
    }
}

/// What one re-read covers: `first` and the keys (image or snapshot ids, by `key`) of the
/// next `upcoming` actions in `action`'s location that still have to run and hold no
/// young read (`held`), up to `RECHECK_BATCH`.
fn batch(
    action: &PlannedAction,
    first: &str,
    upcoming: &[PlannedAction],
    key: fn(&PlannedAction) -> Option<&str>,
    held: impl Fn(&str) -> bool,
    pending: &dyn Fn(&PlannedAction) -> bool,
) -> Vec<String> {
    let mut ids = vec![first.to_string()];
    for next in upcoming {
        if ids.len() >= RECHECK_BATCH {
            break;
        }
        if next.location != action.location {
            continue;
        }
        if let Some(id) = key(next)
            && !ids.iter().any(|known| known == id)
            && !held(id)
            && pending(next)
        {
            ids.push(id.to_string());
        }
    }
    ids
}

impl Fresh {
    /// The image of `action` as EC2 has it now (`None`: gone). Read together with the
    /// images of the next `upcoming` disables and deregistrations in its location that
    /// `pending` says still have to run; launch permissions are read only when
    /// `permissions` says one of the batch's images had them read for the plan (the
    /// re-check then compares them).
    pub fn image(
        &mut self,
        backend: &dyn Backend,
        action: &PlannedAction,
        upcoming: &[PlannedAction],
        pending: &dyn Fn(&PlannedAction) -> bool,
        permissions: &dyn Fn(&str) -> bool,
    ) -> anyhow::Result<Option<Image>> {
        if let Some((read, image)) = self.images.remove(&action.image_id)
            && young(read)
        {
            return Ok(image);
        }
        let ids = batch(
            action,
            &action.image_id,
            upcoming,
            destroyed_image,
            |id| self.images.get(id).is_some_and(|(r, _)| young(*r)),
            pending,
        );
        let with_permissions = ids.iter().any(|id| permissions(id));
        let started = Instant::now();
        let read = backend.refresh_many(&action.location, &ids, with_permissions)?;
        let expires = expiry(started);
        for (id, image) in read {
            self.images.insert(id, (expires, image));
        }
        Ok(self.images.remove(&action.image_id).and_then(|(_, image)| image))
    }

    /// The images still using the snapshot `action` deletes, read together with the
    /// snapshots of the next `upcoming` deletions in its location.
    pub fn snapshot_users(
        &mut self,
        backend: &dyn Backend,
        action: &PlannedAction,
        snapshot_id: &str,
        upcoming: &[PlannedAction],
        pending: &dyn Fn(&PlannedAction) -> bool,
    ) -> anyhow::Result<Vec<String>> {
        if let Some((read, users)) = self.snapshots.remove(snapshot_id)
            && young(read)
        {
            return Ok(users);
        }
        let ids = batch(
            action,
            snapshot_id,
            upcoming,
            deleted_snapshot,
            |id| self.snapshots.get(id).is_some_and(|(r, _)| young(*r)),
            pending,
        );
        let started = Instant::now();
        let mut users = backend.snapshot_users(&action.location, &ids)?;
        let expires = expiry(started);
        for id in ids {
            let found = users.remove(&id).unwrap_or_default();
            self.snapshots.insert(id, (expires, found));
        }
        Ok(self.snapshots.remove(snapshot_id).map(|(_, users)| users).unwrap_or_default())
    }
}
