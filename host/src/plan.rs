//! The plan: an ordered, deterministic list of actions with their reasons and costs,
//! and what was refused and why. Its JSON form is a stable, documented schema.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Action, ActionKind, CopyRequest, Image, Location, Micros, PluginError, Principal, Timestamp};

/// The version of the plan file schema. 2 added the policy fingerprint, the source and
/// `stopped`; a plan of another version is refused.
pub const SCHEMA_VERSION: u32 = 2;

/// What a run evaluates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Source {
    /// Every image in scope.
    Scheduled,
    /// Every image of one account: a shard of a scheduled run.
    Shard { account: String },
    /// One EventBridge event: its text, and `origin` naming where it came from.
    Event { origin: String, text: String },
}

/// One change the applier makes, in the form EC2 takes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    Tag { tags: BTreeMap<String, String> },
    Untag { keys: BTreeSet<String> },
    Unshare { principal: Principal },
    Share { principal: Principal },
    Copy { request: Box<CopyRequest> },
    Deprecate { at: Timestamp },
    Disable,
    Deregister,
    DeleteSnapshot { snapshot_id: String },
}

impl Op {
    /// The action kind a policy must grant for it.
    pub fn kind(&self) -> ActionKind {
        match self {
            Op::Tag { .. } => ActionKind::Tag,
            Op::Untag { .. } => ActionKind::Untag,
            Op::Unshare { .. } => ActionKind::Unshare,
            Op::Share { .. } => ActionKind::Share,
            Op::Copy { .. } => ActionKind::Copy,
            Op::Deprecate { .. } => ActionKind::Deprecate,
            Op::Disable => ActionKind::Disable,
            Op::Deregister => ActionKind::Deregister,
            Op::DeleteSnapshot { .. } => ActionKind::DeleteSnapshots,
        }
    }

    /// Where the op falls in the safe apply order (`ActionKind::phase`).
    pub fn phase(&self) -> u8 {
        self.kind().phase()
    }

    /// Whether it cannot simply be undone (`ActionKind::is_destructive`).
    pub fn is_destructive(&self) -> bool {
        self.kind().is_destructive()
    }

    /// A short verb for tables.
    pub fn verb(&self) -> String {
        match self {
            Op::Tag { tags } => {
                format!("tag {}", tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
            }
            Op::Untag { keys } => format!("untag {}", keys.iter().cloned().collect::<Vec<_>>().join(",")),
            Op::Unshare { principal } => format!("unshare {principal}"),
            Op::Share { principal } => format!("share {principal}"),
            Op::Copy { request } => {
                format!("copy to {}{}", request.region, if request.encrypted { " (encrypted)" } else { "" })
            }
            Op::Deprecate { at } => format!("deprecate at {}", at.to_string().get(..10).unwrap_or_default()),
            Op::Disable => "disable".into(),
            Op::Deregister => "deregister".into(),
            Op::DeleteSnapshot { snapshot_id } => format!("delete {snapshot_id}"),
        }
    }
}

/// A value held once and shared by the plan entries that carry it: cloning one is a
/// count, not a copy. On disk it is the value itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema)]
#[schemars(transparent)]
pub struct Shared<T>(Arc<T>);

/// The plugins behind an action, a refusal or a kept image: a plan of 100,000s of actions
/// names a handful of distinct sets, each held once (`PluginSets`); a set of its own per
/// action was ~13 % of a 100,000-image plan's heap at its peak. On disk, the sorted names.
pub type Plugins = Shared<BTreeSet<String>>;

/// An action's reasons, `plugin: reason` in plugin order: a deregistration's snapshot
/// deletions share its list (a copy each was ~13 MB of a 100,000-image plan's peak).
pub type Reasons = Shared<Vec<String>>;

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::borrow::Borrow<T> for Shared<T> {
    fn borrow(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Shared<T> {
    fn from(value: T) -> Shared<T> {
        Shared(Arc::new(value))
    }
}

impl<const N: usize> From<[String; N]> for Plugins {
    fn from(names: [String; N]) -> Plugins {
        Shared(Arc::new(names.into()))
    }
}

impl<A, T: FromIterator<A>> FromIterator<A> for Shared<T> {
    fn from_iter<I: IntoIterator<Item = A>>(items: I) -> Shared<T> {
        Shared(Arc::new(items.into_iter().collect()))
    }
}

impl<'a, T> IntoIterator for &'a Shared<T>
where
    &'a T: IntoIterator,
{
    type Item = <&'a T as IntoIterator>::Item;
    type IntoIter = <&'a T as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        self.0.as_ref().into_iter()
    }
}

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Shared<T>, D::Error> {
        T::deserialize(d).map(Shared::from)
    }
}

impl<T: std::fmt::Display> std::fmt::Display for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Ord> Shared<T> {
    /// The value in `held` equal to `value`, shared; `value`, added to `held`, if none is.
    fn held_once(held: &mut BTreeSet<Shared<T>>, value: T) -> Shared<T> {
        if let Some(shared) = held.get(&value) {
            return Shared(Arc::clone(&shared.0));
        }
        let shared = Shared::from(value);
        held.insert(Shared(Arc::clone(&shared.0)));
        shared
    }
}

/// Hands out one shared `Plugins` per distinct set of names, to every thread of a merge.
#[derive(Debug, Default)]
pub struct PluginSets(std::sync::Mutex<BTreeSet<Plugins>>);

impl PluginSets {
    /// The shared set equal to `names`.
    pub fn get(&self, names: BTreeSet<String>) -> Plugins {
        Shared::held_once(&mut self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner), names)
    }
}

/// One action of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlannedAction {
    /// Stable id: the same inputs give the same id; doubles as EC2's client token.
    pub id: String,
    /// Its image's account and region, held once per location by a fresh plan (a plan
    /// of 1,000,000s of actions has a few hundred locations). On disk, `account` and
    /// `region`.
    #[serde(flatten, deserialize_with = "shared_location")]
    #[schemars(with = "Location")]
    pub location: Shared<Location>,
    pub image_id: String,
    pub image_name: String,
    #[serde(flatten)]
    pub op: Op,
    /// The plugins that proposed it.
    pub plugins: Plugins,
    /// Their reasons, in plugin order.
    pub reasons: Reasons,
    /// Change in monthly cost (negative saves).
    pub monthly_cost_delta: Micros,
    /// One-time cost (copy transfer).
    pub one_time_cost: Micros,
}

impl PlannedAction {
    /// The stable id of an op on an image.
    pub fn id_for(account: &str, region: &str, image_id: &str, op: &Op) -> String {
        let seed = format!("{account}/{region}/{image_id}/{}", serde_json::to_string(op).unwrap_or_default());
        crate::model::id::stable_id("act", seed.as_bytes(), 20)
    }
}

/// Reads a location, held once per thread however many actions of a plan file name it.
fn shared_location<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Shared<Location>, D::Error> {
    thread_local! {
        /// Every location a plan file read on this thread named: a plan's are a few
        /// hundred; a hostile file's are bounded by its size, which `files::open_input`
        /// limits, and the plan is refused once read (its locations are outside the scope).
        static READ: std::cell::RefCell<BTreeSet<Shared<Location>>> = Default::default();
    }
    let location = Location::deserialize(d)?;
    Ok(READ.with_borrow_mut(|read| Shared::held_once(read, location)))
}

/// Why a proposal did not make it into the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalKind {
    /// A plugin vetoed it in review.
    Vetoed,
    /// A host guardrail forbids it.
    Guardrail,
    /// The policy file does not grant the plugin this action kind.
    NotGranted,
    /// Another plugin retains the image.
    Retained,
    /// Plugins disagree and the host will not pick for them.
    Conflict,
    /// A plugin failed on the image, so destructive actions on it are blocked.
    PluginFailed,
}

/// A proposal that was refused, with who proposed it and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Refusal {
    pub image_id: String,
    pub account: String,
    pub region: String,
    /// The image's name, for people reading the plan (empty when unknown).
    #[serde(default)]
    pub image_name: String,
    pub action: Action,
    pub plugins: Plugins,
    pub kind: RefusalKind,
    pub reason: String,
}

/// An image a plugin retains, with why: the plan's record of what it keeps on purpose
/// (newest of a family, exempt by tag, ...), whether or not anything proposed to remove it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Kept {
    pub image_id: String,
    pub account: String,
    pub region: String,
    pub image_name: String,
    pub plugins: Plugins,
    /// `plugin: reason`, once per plugin.
    pub reasons: Vec<String>,
}

/// Totals of a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Totals {
    pub images_in_scope: usize,
    pub images_touched: usize,
    pub actions: usize,
    pub destructive: usize,
    pub refused: usize,
    pub plugin_errors: usize,
    pub monthly_cost_before: Micros,
    pub monthly_cost_after: Micros,
    pub one_time_cost: Micros,
}

/// The plan of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Plan {
    pub schema_version: u32,
    pub evaluation_time: Timestamp,
    /// What was evaluated: a scheduled run or one event.
    pub source: Source,
    /// sha256 of the inventory the plan was computed from.
    pub inventory_fingerprint: String,
    /// sha256 of the policy that made it: the file's settings and every plugin's bytes.
    pub policy_fingerprint: String,
    /// Why a guardrail stopped this plan; such a plan is never applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// The inventory data the plan was computed with (apply collects the same).
    pub inventory_needs: BTreeSet<crate::model::InventoryNeed>,
    pub actions: Vec<PlannedAction>,
    pub refused: Vec<Refusal>,
    pub errors: Vec<PluginError>,
    /// The images plugins retain, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<Kept>,
    pub totals: Totals,
}

/// The fingerprint of an inventory: sha256 of its canonical JSON.
pub fn fingerprint(images: &[Image]) -> String {
    let mut hasher = Sha256::new();
    let mut sorted: Vec<&Image> = images.iter().collect();
    sorted.sort_by(|a, b| (&a.account, &a.region, &a.id).cmp(&(&b.account, &b.region, &b.id)));
    for image in sorted {
        let mut canon = image.clone();
        canon.monthly_cost = 0;
        hasher.update(serde_json::to_vec(&canon).unwrap_or_default());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// Sorts actions into the safe, deterministic apply order.
pub fn sort_actions(actions: &mut [PlannedAction]) {
    use rayon::slice::ParallelSliceMut as _;
    // No two actions share an image and an op (a candidate is one merged action, and a
    // deregistration deletes each snapshot once), so the key is total and an unstable
    // sort gives the one order whatever the thread count, in place: a stable one copies
    // the whole plan into a buffer beside it.
    actions.par_sort_unstable_by(|a, b| {
        (a.op.phase(), &a.location, &a.image_id, &a.op).cmp(&(b.op.phase(), &b.location, &b.image_id, &b.op))
    });
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_as_a_plan_file_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = serde_json::from_slice::<super::Plan>(&bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_files_actions_share_their_location_and_write_it_as_account_and_region() {
        let action = |account: &str, image: &str| {
            serde_json::json!({
                "id": "act-1", "account": account, "region": "us-east-1", "image_id": image,
                "image_name": "web", "op": "deregister", "plugins": ["retention"], "reasons": ["old"],
                "monthly_cost_delta": -5, "one_time_cost": 0
            })
        };
        let json = serde_json::json!([
            action("111111111111", "ami-01"),
            action("111111111111", "ami-02"),
            action("222222222222", "ami-03")
        ]);
        let read: Vec<PlannedAction> = serde_json::from_value(json.clone()).unwrap();
        assert!(Arc::ptr_eq(&read[0].location.0, &read[1].location.0), "one location, held once");
        assert!(!Arc::ptr_eq(&read[0].location.0, &read[2].location.0));
        assert_eq!(
            (read[2].location.account.as_str(), read[2].location.region.as_str()),
            ("222222222222", "us-east-1")
        );
        assert_eq!(serde_json::to_value(&read).unwrap(), json, "written back as it was read");
        let mut missing = action("111111111111", "ami-01");
        missing.as_object_mut().unwrap().remove("account");
        let error = serde_json::from_value::<PlannedAction>(missing).unwrap_err().to_string();
        assert!(error.contains("missing field `account`"), "{error}");
    }
}
