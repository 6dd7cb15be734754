//! Finishing a plan: the review's verdicts (a veto removes a candidate, except a
//! revocation the guardrails demand), review failures, the expansion of candidates into
//! ops (a deregistration and its snapshot deletions), and the blast radius.

use std::collections::{BTreeMap, BTreeSet};

use super::{Candidate, Candidates, guardrails};
use crate::config::Policy;
use crate::cost::Pricing;
use crate::error::GuardrailStop;
use crate::inventory::Inventory;
use crate::model::{Action, Image, PluginError, Stage, Timestamp, Verdict};
use crate::plan::{
    Op, Plan, PlannedAction, Plugins, Refusal, RefusalKind, SCHEMA_VERSION, Source, Totals, sort_actions,
};

/// Applies verdicts and review failures, checks the blast radius and builds the plan.
/// Returns the plan and, when the blast-radius limit is exceeded, why the run must stop.
pub fn finish(
    policy: &Policy,
    inventory: &Inventory,
    pricing: &Pricing,
    mut merged: Candidates,
    verdicts: &[(String, Verdict)],
    mut errors: Vec<PluginError>,
    now: Timestamp,
) -> (Plan, Option<GuardrailStop>) {
    let mut vetoes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut vetoers: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (plugin, v) in verdicts {
        if let Some(reason) = &v.veto {
            vetoes.entry(v.action_id.as_str()).or_default().push(format!("{plugin}: {reason}"));
            vetoers.entry(v.action_id.as_str()).or_default().insert(plugin.clone());
        }
    }
    // A plugin that failed in review, or in propose for the whole run (not on one image),
    // leaves no destructive action standing.
    let run_failed: Vec<&str> = errors
        .iter()
        .filter(|e| e.stage == Stage::Review || (e.stage == Stage::Propose && e.image.is_none()))
        .map(|e| e.plugin.as_str())
        .collect();
    // Filtered in place: a second vector grown beside the candidates was, for a moment,
    // twice their size again.
    let mut kept = std::mem::take(&mut merged.candidates);
    let refused = &mut merged.refused;
    kept.retain_mut(|c| {
        let image = inventory.get(&c.image_id);
        // Revoking access the guardrails forbid (public when it is not allowed, a
        // principal off the allow list) is not vetoable: a veto cannot keep it.
        if let Action::Unshare(principal) = &c.action
            && let Some(why) = guardrails::share_forbidden(policy, principal)
            && let Some(reasons) = vetoes.remove(c.id.as_str())
        {
            c.reasons.push(format!(
                "host: veto ignored ({}): {why}, so this revocation cannot be vetoed",
                reasons.join("; ")
            ));
        }
        let refuse = |kind, reason| Refusal {
            image_id: c.image_id.clone(),
            account: c.location.account.clone(),
            region: c.location.region.clone(),
            image_name: image.map(|i| i.name.clone()).unwrap_or_default(),
            action: c.action.clone(),
            plugins: c.plugins.clone(),
            kind,
            reason,
        };
        if let Some(reasons) = vetoes.get(c.id.as_str()) {
            let mut r = refuse(RefusalKind::Vetoed, reasons.join("; "));
            r.plugins = vetoers.get(c.id.as_str()).cloned().map(Plugins::from).unwrap_or_default();
            refused.push(r);
        } else if c.is_destructive() && !run_failed.is_empty() {
            refused.push(refuse(
                RefusalKind::PluginFailed,
                format!(
                    "plugin(s) {} failed in review or for the whole run; destructive actions are blocked",
                    run_failed.join(", ")
                ),
            ));
        } else if image.is_none() {
            refused.push(refuse(RefusalKind::Guardrail, "image is not in the inventory".into()));
        } else {
            return true;
        }
        false
    });
    share_out_snapshots(inventory, pricing, &mut kept);
    keep_unrecoverable_snapshots(policy, inventory, &mut kept, &mut merged.refused);
    name_kept_snapshots(inventory, &mut kept);
    // Sized once rather than grown by doubling, and each piece of candidates freed as
    // soon as it is expanded (the order they are expanded in does not matter: sorted next).
    let mut actions = Vec::with_capacity(kept.iter().map(|c| 1 + c.snapshots.len()).sum());
    let mut touched = Touched::new(inventory.images().len());
    for piece in in_pieces(kept) {
        for c in piece {
            let Some((at, image)) = inventory.find(&c.image_id) else { continue };
            let first = actions.len();
            expand(c, image, &mut actions);
            touched.mark(at, &actions[first..]);
        }
    }
    sort_actions(&mut actions);
    let destructive = actions.iter().filter(|a| a.op.is_destructive()).count();
    let in_scope = inventory.images().len();
    let stop = guardrails::blast_radius(policy, destructive, touched.destroyed, in_scope).map(GuardrailStop);
    merged.refused.sort();
    errors.sort_by(|a, b| (&a.plugin, &a.image, a.stage).cmp(&(&b.plugin, &b.image, b.stage)));
    let monthly_before = crate::cost::total(inventory.monthly_by_location().values().copied());
    let delta = crate::cost::total(actions.iter().map(|a| a.monthly_cost_delta));
    let totals = Totals {
        images_in_scope: in_scope,
        images_touched: touched.touched,
        actions: actions.len(),
        destructive,
        refused: merged.refused.len(),
        plugin_errors: errors.len(),
        monthly_cost_before: monthly_before,
        monthly_cost_after: monthly_before.saturating_add(delta),
        one_time_cost: crate::cost::total(actions.iter().map(|a| a.one_time_cost)),
    };
    let plan = Plan {
        schema_version: SCHEMA_VERSION,
        evaluation_time: now,
        source: Source::Scheduled,
        inventory_fingerprint: inventory.fingerprint().to_string(),
        policy_fingerprint: String::new(),
        stopped: stop.as_ref().map(|s| s.0.clone()),
        inventory_needs: BTreeSet::new(),
        actions,
        refused: merged.refused,
        errors,
        kept: merged.kept,
        totals,
    };
    (plan, stop)
}

/// A snapshot shared only by images this plan deregisters with their snapshots is
/// deleted once, after the last of them (by image id); otherwise it would be orphaned.
fn share_out_snapshots(inventory: &Inventory, pricing: &Pricing, kept: &mut [Candidate]) {
    let deleting: BTreeSet<String> = kept
        .iter()
        .filter(|c| c.action == Action::Deregister { delete_snapshots: true })
        .map(|c| c.image_id.clone())
        .collect();
    for c in kept.iter_mut().filter(|c| c.action == Action::Deregister { delete_snapshots: true }) {
        let Some(image) = inventory.get(&c.image_id) else { continue };
        for dev in &image.block_devices {
            let Some(snap) = &dev.snapshot_id else { continue };
            if c.snapshots.iter().any(|(s, _)| s == snap) {
                continue;
            }
            let users: Vec<&str> = inventory.snapshot_users(snap).collect();
            if users.iter().all(|u| deleting.contains(*u)) && users.iter().max() == Some(&c.image_id.as_str()) {
                let cost = pricing.snapshot_monthly(&image.region, dev);
                c.snapshots.push((snap.clone(), -cost));
                c.monthly_cost_delta = c.monthly_cost_delta.saturating_sub(cost);
                c.reasons.push(format!("host: {snap} is shared only with images this plan deregisters; deleted once"));
            }
        }
    }
}

/// Takes out of each deregistration the snapshot deletions `guardrails.recycle_bin_days`
/// forbids (no Recycle Bin rule would keep the snapshot long enough): the image is still
/// deregistered, the snapshot kept, and the plan says why.
fn keep_unrecoverable_snapshots(
    policy: &Policy,
    inventory: &Inventory,
    kept: &mut [Candidate],
    refused: &mut Vec<Refusal>,
) {
    if policy.guardrails.recycle_bin_days == 0 {
        return;
    }
    for c in kept.iter_mut().filter(|c| !c.snapshots.is_empty()) {
        let Some(image) = inventory.get(&c.image_id) else { continue };
        let mut why = Vec::new();
        c.snapshots.retain(|(snap, cost)| {
            let days = image
                .block_devices
                .iter()
                .find(|d| d.snapshot_id.as_ref() == Some(snap))
                .and_then(|d| d.recycle_bin_days);
            match guardrails::unrecoverable(policy, &format!("snapshot {snap}"), days) {
                Some(reason) => {
                    c.monthly_cost_delta = c.monthly_cost_delta.saturating_sub(*cost);
                    why.push(reason);
                    false
                }
                None => true,
            }
        });
        if !why.is_empty() {
            refused.push(Refusal {
                image_id: c.image_id.clone(),
                account: c.location.account.clone(),
                region: c.location.region.clone(),
                image_name: image.name.clone(),
                action: Action::Deregister { delete_snapshots: true },
                plugins: c.plugins.clone(),
                kind: RefusalKind::Guardrail,
                reason: format!(
                    "{} kept: {}",
                    if why.len() == 1 { "its snapshot is" } else { "snapshots are" },
                    why.join("; ")
                ),
            });
        }
    }
}

/// A deregistration asked to delete its snapshots says why a snapshot has no delete row:
/// another image still uses it, or another deregistration of this plan deletes it.
fn name_kept_snapshots(inventory: &Inventory, kept: &mut [Candidate]) {
    let deleted_by: BTreeMap<String, String> =
        kept.iter().flat_map(|c| c.snapshots.iter().map(|(snap, _)| (snap.clone(), c.image_id.clone()))).collect();
    for c in kept.iter_mut().filter(|c| c.action == Action::Deregister { delete_snapshots: true }) {
        let Some(image) = inventory.get(&c.image_id) else { continue };
        for snap in image.snapshot_ids() {
            if c.snapshots.iter().any(|(s, _)| s == snap) {
                continue;
            }
            let why = match deleted_by.get(snap) {
                Some(other) => format!("host: {snap} is deleted after {other}, which shares it"),
                None => {
                    let users: Vec<&str> = inventory.snapshot_users(snap).filter(|u| *u != c.image_id).collect();
                    if users.is_empty() {
                        continue;
                    }
                    format!("host: {snap} is kept: {} still use(s) it", users.join(", "))
                }
            };
            c.reasons.push(why);
        }
    }
}

/// How many images a plan's actions touch, and how many of them destructively: each image
/// marked by its inventory position as its candidates are expanded and counted when first
/// marked, so the work is the actions' (a live event's few), not the inventory's. Hash
/// sets of the ids (a sorted set before them was a tenth of a large plan's serial time)
/// were ~90 MiB at 1,000,000 images, the plan's peak once the candidates were freed piece
/// by piece; counting the marks by scanning them all was ~8 % of a live event's CPU
/// (BENCHMARKS §14).
struct Touched {
    marks: Vec<u8>,
    touched: usize,
    destroyed: usize,
}

impl Touched {
    const TOUCHED: u8 = 1;
    const DESTROYED: u8 = 2;

    /// None of `images` (the inventory's count) marked.
    fn new(images: usize) -> Touched {
        Touched { marks: vec![0; images], touched: 0, destroyed: 0 }
    }

    /// Marks the image at inventory position `at` with the actions one of its candidates
    /// became (none for a retain).
    fn mark(&mut self, at: usize, actions: &[PlannedAction]) {
        if actions.is_empty() {
            return;
        }
        let destroys = actions.iter().any(|a| a.op.is_destructive());
        let mark = if destroys { Self::TOUCHED | Self::DESTROYED } else { Self::TOUCHED };
        let seen = &mut self.marks[at];
        self.touched += usize::from(*seen == 0);
        self.destroyed += usize::from(destroys && *seen & Self::DESTROYED == 0);
        *seen |= mark;
    }
}

/// Candidates per piece in `in_pieces`: ~3 MB.
const PIECE: usize = 16_384;

/// The candidates moved into pieces of `PIECE`, from the end, and their one vector freed:
/// expanded from that vector, its buffer stayed whole beside the plan's actions until the
/// last candidate was expanded (~230 MiB at 1,000,000 images, the plan's peak; BENCHMARKS
/// §14). The copy briefly doubles the candidates' buffer, but before any action exists.
fn in_pieces<T>(mut all: Vec<T>) -> Vec<Vec<T>> {
    let mut pieces = Vec::with_capacity(all.len().div_ceil(PIECE));
    while all.len() > PIECE {
        pieces.push(all.split_off(all.len() - PIECE));
    }
    // Not `split_off(0)` or a `collect`: either would keep the whole buffer for the rest.
    let mut first = Vec::with_capacity(all.len());
    first.append(&mut all);
    pieces.push(first);
    pieces
}

/// A candidate as plan actions: its names and reasons move into its action, and only a
/// deregistration's snapshot deletions copy them.
fn expand(c: Candidate, image: &Image, out: &mut Vec<PlannedAction>) {
    let (op, monthly, one_time) = match c.action {
        Action::Share(principal) => (Op::Share { principal }, 0, 0),
        Action::Unshare(principal) => (Op::Unshare { principal }, 0, 0),
        Action::CopyToRegion(request) => (Op::Copy { request }, c.monthly_cost_delta, c.one_time_cost),
        Action::DeprecateAt(at) => (Op::Deprecate { at }, 0, 0),
        Action::Disable => (Op::Disable, 0, 0),
        Action::Deregister { .. } => (Op::Deregister, 0, 0),
        Action::Tag(tags) => (Op::Tag { tags }, 0, 0),
        Action::Untag(keys) => (Op::Untag { keys }, 0, 0),
        Action::Retain => return,
    };
    let action = PlannedAction {
        id: PlannedAction::id_for(&c.location.account, &c.location.region, &c.image_id, &op),
        location: c.location,
        image_id: c.image_id,
        image_name: image.name.clone(),
        op,
        plugins: c.plugins,
        reasons: c.reasons.into(),
        monthly_cost_delta: monthly,
        one_time_cost: one_time,
    };
    if action.op == Op::Deregister {
        for (snapshot_id, cost) in c.snapshots {
            let op = Op::DeleteSnapshot { snapshot_id };
            out.push(PlannedAction {
                id: PlannedAction::id_for(&action.location.account, &action.location.region, &action.image_id, &op),
                op,
                monthly_cost_delta: cost,
                one_time_cost: 0,
                ..action.clone()
            });
        }
    }
    out.push(action);
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_image_is_touched_once_and_destroyed_once_however_many_of_its_actions() {
        use crate::plan::{Op, PlannedAction};
        let action = |op| PlannedAction {
            id: String::new(),
            location: crate::model::Location { account: String::new(), region: String::new() }.into(),
            image_id: String::new(),
            image_name: String::new(),
            op,
            plugins: Default::default(),
            reasons: Vec::<String>::new().into(),
            monthly_cost_delta: 0,
            one_time_cost: 0,
        };
        let mut touched = super::Touched::new(3);
        // Image 0: a share, then a deregistration with a snapshot deletion, then a disable.
        touched.mark(0, &[action(Op::Share { principal: crate::model::Principal::Public })]);
        let snapshot = Op::DeleteSnapshot { snapshot_id: "snap-1".into() };
        touched.mark(0, &[action(snapshot), action(Op::Deregister)]);
        touched.mark(0, &[action(Op::Disable)]);
        // Image 1: a retain (no action); image 2: an untag only, which destroys nothing.
        touched.mark(1, &[]);
        touched.mark(2, &[action(Op::Untag { keys: ["team".to_string()].into() })]);
        assert_eq!((touched.touched, touched.destroyed), (2, 1));
    }

    #[test]
    fn candidates_in_pieces_are_all_of_them_once_and_no_piece_keeps_the_whole_buffer() {
        for n in [0, 1, super::PIECE, super::PIECE + 1, 3 * super::PIECE + 7] {
            let pieces = super::in_pieces((0..n).collect::<Vec<usize>>());
            assert!(pieces.iter().all(|p| p.capacity() <= super::PIECE), "{n}");
            let back: Vec<usize> = pieces.into_iter().rev().flatten().collect();
            assert_eq!(back, (0..n).collect::<Vec<_>>(), "{n}");
        }
    }
}
