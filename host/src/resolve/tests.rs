//! Every rule of resolve as a table: rows of proposals (and image facts) in, the
//! decision out. A rule without a table is a rumour.

use std::collections::BTreeSet;

use super::{finish, merge, order_candidates};
use crate::config::Policy;
use crate::cost::Pricing;
use crate::inventory::Inventory;
use crate::model::{
    Action, Architecture, BlockDevice, CopyRequest, Image, ImageState, PluginError, PluginFailure, Principal, Proposal,
    Proposed, Stage, Timestamp, Usage, Verdict,
};
use crate::plan::Plan;

const NOW: Timestamp = Timestamp(1_795_000_000);
const A: &str = "ami-0000000000000000a";
const B: &str = "ami-0000000000000000b";
const PROD: &str = "222222222222";

fn policy(guardrails: &str) -> Policy {
    Policy::parse(&format!(
        r#"
[scope]
accounts = ["111111111111", "222222222222"]
regions = ["us-east-1", "eu-west-1", "us-west-2"]
[guardrails]
copy_regions = ["eu-west-1", "us-west-2"]
max_destructive = 100
max_destructive_percent = 100.0
in_use_days = 30
{guardrails}
[[plugin]]
name = "p"
source = "builtin:retention"
grants = ["share", "unshare", "copy", "deprecate", "disable", "deregister", "delete-snapshots", "tag", "untag", "retain"]
[[plugin]]
name = "q"
source = "builtin:retention"
grants = ["share", "unshare", "copy", "deprecate", "disable", "deregister", "delete-snapshots", "tag", "untag", "retain"]
[[plugin]]
name = "narrow"
source = "builtin:retention"
grants = ["tag", "deregister"]
"#
    ))
    .unwrap()
}

fn image(id: &str, snapshot: &str) -> Image {
    Image {
        id: id.into(),
        account: "111111111111".into(),
        region: "us-east-1".into(),
        name: id.into(),
        description: String::new(),
        creation_time: Timestamp(0),
        state: ImageState::Available,
        architecture: Architecture::X86_64,
        platform: Default::default(),
        root_device_type: Default::default(),
        public: false,
        launch_permissions: Some(BTreeSet::from([Principal::Account(PROD.into())])),
        tags: [("team".to_string(), "web".to_string())].into(),
        block_devices: vec![BlockDevice {
            device_name: "/dev/xvda".into(),
            snapshot_id: Some(snapshot.into()),
            size_gib: 8,
            full_size_bytes: None,
            storage_tier: Default::default(),
            recycle_bin_days: None,
        }],
        deprecation_time: None,
        source_image_id: None,
        source_region: None,
        deregistration_protection: None,
        recycle_bin_days: None,
        usage: Usage::default(),
        monthly_cost: 0,
    }
}

fn by(plugin: &str, image: &str, action: Action) -> Proposed {
    Proposed { plugin: plugin.into(), proposal: Proposal { image_id: image.into(), action, reason: "r".into() } }
}

fn share(p: &str) -> Action {
    Action::Share(p.parse().unwrap())
}

fn unshare(p: &str) -> Action {
    Action::Unshare(p.parse().unwrap())
}

fn copy(region: &str, encrypted: bool) -> Action {
    Action::CopyToRegion(Box::new(CopyRequest {
        region: region.into(),
        encrypted,
        kms_key_id: None,
        copy_tags: false,
        name: None,
    }))
}

fn keyed_copy(region: &str, key: &str) -> Action {
    Action::CopyToRegion(Box::new(CopyRequest {
        region: region.into(),
        encrypted: true,
        kms_key_id: Some(key.into()),
        copy_tags: false,
        name: None,
    }))
}

fn tag(k: &str, v: &str) -> Action {
    Action::Tag([(k.to_string(), v.to_string())].into())
}

const DEREGISTER: Action = Action::Deregister { delete_snapshots: true };

/// Plans `proposed` on images A and B (and whatever `adjust` changes), with `failures`
/// and `verdicts`.
fn plan_with(
    policy: &Policy,
    adjust: impl Fn(&mut Vec<Image>),
    proposed: Vec<Proposed>,
    failures: Vec<PluginError>,
    verdicts: Vec<(String, Verdict)>,
) -> (Plan, Option<String>) {
    let mut images = vec![image(A, "snap-a"), image(B, "snap-b")];
    adjust(&mut images);
    let inventory = Inventory::new(images).unwrap();
    let pricing = Pricing::new(&policy.pricing);
    let mut merged = merge(policy, &inventory, &pricing, proposed, &failures, NOW);
    order_candidates(&mut merged.candidates);
    let verdicts = verdicts
        .into_iter()
        .map(|(plugin, v)| {
            // Verdicts name candidates by the action they are about, resolved here.
            let id = merged.candidates.iter().find(|c| format!("{:?}", c.action) == v.action_id).map(|c| c.id.clone());
            (plugin, Verdict { action_id: id.unwrap_or(v.action_id), veto: v.veto })
        })
        .collect::<Vec<_>>();
    let (plan, stop) = finish(policy, &inventory, &pricing, merged, &verdicts, failures, NOW);
    (plan, stop.map(|s| s.0))
}

fn plan(proposed: Vec<Proposed>) -> Plan {
    plan_with(&policy(""), |_| {}, proposed, Vec::new(), Vec::new()).0
}

/// The plan in short: `op image` per action, `kind image` per refusal.
type Summary = (Vec<String>, Vec<String>);

/// Rows of a table: a name, the proposals, the plan in short.
type Rows = Vec<(&'static str, Vec<Proposed>, Summary)>;

/// Rows whose images are adjusted first.
type AdjustedRows = Vec<(&'static str, Box<dyn Fn(&mut Vec<Image>)>, Vec<Proposed>, Summary)>;

fn summary(plan: &Plan) -> Summary {
    let ops = plan.actions.iter().map(|a| format!("{} {}", a.op.verb(), a.image_id)).collect();
    let refused = plan
        .refused
        .iter()
        .map(|r| format!("{} {}", serde_json::to_string(&r.kind).unwrap().trim_matches('"'), r.image_id))
        .collect();
    (ops, refused)
}

fn row(ops: &[&str], refused: &[&str]) -> Summary {
    (ops.iter().map(|s| s.to_string()).collect(), refused.iter().map(|s| s.to_string()).collect())
}

#[test]
fn sharing_unshare_beats_share_and_the_more_private_outcome_wins() {
    let other = "333333333333";
    let rows: Rows = vec![
        ("a new share", vec![by("p", A, share("111111111111"))], row(&[&format!("share 111111111111 {A}")], &[])),
        ("a share already there", vec![by("p", A, share(PROD))], row(&[], &[])),
        (
            "share and unshare of the same principal",
            vec![by("p", A, share(PROD)), by("q", A, unshare(PROD))],
            row(&[&format!("unshare {PROD} {A}")], &[&format!("conflict {A}")]),
        ),
        ("an unshare of what is not shared", vec![by("p", A, unshare(other))], row(&[], &[])),
        ("public when not allowed", vec![by("p", A, share("public"))], row(&[], &[&format!("guardrail {A}")])),
        ("off the allow list", vec![by("p", A, share("444444444444"))], row(&[], &[&format!("guardrail {A}")])),
    ];
    for (name, proposed, want) in rows {
        assert_eq!(summary(&plan(proposed)), want, "{name}");
    }
}

#[test]
fn copies_merge_when_identical_conflict_when_not_and_go_only_where_allowed() {
    let replica = |images: &mut Vec<Image>| {
        let mut r = image("ami-0000000000000000c", "snap-c");
        r.region = "eu-west-1".into();
        r.source_image_id = Some(A.into());
        images.push(r);
    };
    let rows: Vec<(&str, bool, Vec<Proposed>, Summary)> = vec![
        (
            "two identical requests",
            false,
            vec![by("p", A, copy("us-west-2", false)), by("q", A, copy("us-west-2", false))],
            row(&[&format!("copy to us-west-2 {A}")], &[]),
        ),
        (
            "two different requests",
            false,
            vec![by("p", A, copy("us-west-2", false)), by("q", A, copy("us-west-2", true))],
            row(&[], &[&format!("conflict {A}")]),
        ),
        ("a replica exists", true, vec![by("p", A, copy("eu-west-1", false))], row(&[], &[])),
        (
            "into its own region",
            false,
            vec![by("p", A, copy("us-east-1", false))],
            row(&[], &[&format!("guardrail {A}")]),
        ),
        (
            "encrypted with a key of another account",
            false,
            vec![by("p", A, keyed_copy("us-west-2", "arn:aws:kms:us-west-2:999999999999:key/k"))],
            row(&[], &[&format!("guardrail {A}")]),
        ),
        (
            "encrypted with a key of its own account",
            false,
            vec![by("p", A, keyed_copy("us-west-2", "arn:aws:kms:us-west-2:111111111111:key/k"))],
            row(&[&format!("copy to us-west-2 (encrypted) {A}")], &[]),
        ),
        (
            "a copy of an image the plan retires",
            false,
            vec![by("p", A, copy("us-west-2", false)), by("q", A, Action::Disable)],
            row(&[&format!("disable {A}")], &[&format!("conflict {A}")]),
        ),
    ];
    for (name, with_replica, proposed, want) in rows {
        let (plan, _) = plan_with(
            &policy(""),
            |i| {
                if with_replica {
                    replica(i)
                }
            },
            proposed,
            Vec::new(),
            Vec::new(),
        );
        assert_eq!(summary(&plan), want, "{name}");
    }
    let (plan, _) = plan_with(
        &policy(""),
        |_| {},
        vec![by("p", A, copy("us-west-2", false)), by("q", A, copy("us-west-2", false))],
        Vec::new(),
        Vec::new(),
    );
    assert_eq!(*plan.actions[0].plugins, BTreeSet::from(["p".to_string(), "q".to_string()]), "both are credited");
}

#[test]
fn tags_merge_and_disagreements_or_reserved_keys_are_refused() {
    let untag = |k: &str| Action::Untag([k.to_string()].into());
    let rows: Rows = vec![
        ("a new tag", vec![by("p", A, tag("owner", "ops"))], row(&[&format!("tag owner=ops {A}")], &[])),
        (
            "the same tag twice",
            vec![by("p", A, tag("owner", "ops")), by("q", A, tag("owner", "ops"))],
            row(&[&format!("tag owner=ops {A}")], &[]),
        ),
        ("a tag already set", vec![by("p", A, tag("team", "web"))], row(&[], &[])),
        (
            "two values",
            vec![by("p", A, tag("owner", "a")), by("q", A, tag("owner", "b"))],
            row(&[], &[&format!("conflict {A}")]),
        ),
        (
            "set and removed",
            vec![by("p", A, tag("team", "x")), by("q", A, untag("team"))],
            row(&[], &[&format!("conflict {A}")]),
        ),
        ("removed", vec![by("p", A, untag("team"))], row(&[&format!("untag team {A}")], &[])),
        (
            "the host's key",
            vec![by("p", A, tag("amiwarden:source-image-id", B))],
            row(&[], &[&format!("guardrail {A}")]),
        ),
        ("an aws: key removed", vec![by("p", A, untag("aws:x"))], row(&[], &[&format!("guardrail {A}")])),
    ];
    for (name, proposed, want) in rows {
        assert_eq!(summary(&plan(proposed)), want, "{name}");
    }
    let many = Action::Tag((0..50).map(|i| (format!("k{i}"), "v".to_string())).collect());
    let (ops, refused) = summary(&plan(vec![by("p", A, many)]));
    assert_eq!((ops.len(), refused), (0, vec![format!("guardrail {A}")]), "50 new tags on top of one is 51");
}

#[test]
fn retain_beats_every_destructive_action_and_in_use_images_are_never_disabled_or_deregistered() {
    let in_use = |f: fn(&mut Usage)| {
        move |images: &mut Vec<Image>| {
            f(&mut images[0].usage);
        }
    };
    let deprecate = Action::DeprecateAt(Timestamp(NOW.0 + 86_400));
    let rows: AdjustedRows = vec![
        (
            "deregistered",
            Box::new(|_| {}),
            vec![by("p", A, DEREGISTER)],
            row(&[&format!("deregister {A}"), &format!("delete snap-a {A}")], &[]),
        ),
        (
            "retained",
            Box::new(|_| {}),
            vec![by("p", A, DEREGISTER), by("q", A, Action::Retain)],
            row(&[], &[&format!("retained {A}")]),
        ),
        (
            "retain beats deprecate",
            Box::new(|_| {}),
            vec![by("p", A, deprecate.clone()), by("q", A, Action::Retain)],
            row(&[], &[&format!("retained {A}")]),
        ),
        (
            "retain beats disable",
            Box::new(|_| {}),
            vec![by("p", A, Action::Disable), by("q", A, Action::Retain)],
            row(&[], &[&format!("retained {A}")]),
        ),
        (
            "an instance",
            Box::new(in_use(|u| u.instances = 1)),
            vec![by("p", A, DEREGISTER)],
            row(&[], &[&format!("guardrail {A}")]),
        ),
        (
            "a launch template",
            Box::new(in_use(|u| u.launch_templates = vec!["lt-1".into()])),
            vec![by("p", A, Action::Disable)],
            row(&[], &[&format!("guardrail {A}")]),
        ),
        (
            "an SSM parameter",
            Box::new(in_use(|u| u.references = vec!["arn:aws:ssm:us-east-1:111111111111:parameter/golden".into()])),
            vec![by("p", A, DEREGISTER)],
            row(&[], &[&format!("guardrail {A}")]),
        ),
        (
            "launched 29 days ago",
            Box::new(in_use(|u| u.last_launched = Some(Timestamp(NOW.0 - 29 * 86_400)))),
            vec![by("p", A, DEREGISTER)],
            row(&[], &[&format!("guardrail {A}")]),
        ),
        (
            "launched 31 days ago",
            Box::new(in_use(|u| u.last_launched = Some(Timestamp(NOW.0 - 31 * 86_400)))),
            vec![by("p", A, Action::Disable)],
            row(&[&format!("disable {A}")], &[]),
        ),
        (
            "in use but only deprecated",
            Box::new(in_use(|u| u.instances = 1)),
            vec![by("p", A, deprecate)],
            row(&[&format!("deprecate at 2026-11-19 {A}")], &[]),
        ),
        (
            "disable and deregister: deregister",
            Box::new(|_| {}),
            vec![by("p", A, Action::Disable), by("q", A, Action::Deregister { delete_snapshots: false })],
            row(&[&format!("deregister {A}")], &[]),
        ),
        (
            "deregistration protection: neither it nor its snapshots",
            Box::new(|images| images[0].deregistration_protection = Some("enabled-with-cooldown".into())),
            vec![by("p", A, DEREGISTER)],
            row(&[], &[&format!("guardrail {A}")]),
        ),
        (
            "deregistration protection does not stop a disable",
            Box::new(|images| images[0].deregistration_protection = Some("enabled-without-cooldown".into())),
            vec![by("p", A, Action::Disable)],
            row(&[&format!("disable {A}")], &[]),
        ),
    ];
    for (name, adjust, proposed, want) in rows {
        let (plan, _) = plan_with(&policy(""), adjust, proposed, Vec::new(), Vec::new());
        assert_eq!(summary(&plan), want, "{name}");
    }
    let off = policy("protect_in_use = false");
    let (plan, _) = plan_with(&off, in_use(|u| u.instances = 1), vec![by("p", A, DEREGISTER)], Vec::new(), Vec::new());
    assert_eq!(summary(&plan).0.len(), 2, "protect_in_use = false lets it go");
}

#[test]
fn a_plugin_failure_blocks_destructive_actions_on_its_image_only() {
    let failure = |image: Option<&str>, stage| PluginError {
        plugin: "q".into(),
        stage,
        image: image.map(str::to_string),
        failure: PluginFailure::Trap("boom".into()),
    };
    let proposed = || vec![by("p", A, DEREGISTER), by("p", A, tag("owner", "ops")), by("p", B, Action::Disable)];
    let (plan, _) = plan_with(&policy(""), |_| {}, proposed(), vec![failure(Some(A), Stage::Propose)], Vec::new());
    assert_eq!(
        summary(&plan),
        row(&[&format!("tag owner=ops {A}"), &format!("disable {B}")], &[&format!("plugin-failed {A}")])
    );
    // A failure in review, or in propose for the whole run (its proposals over the run's
    // budget), blocks every destructive action of the plan.
    for stage in [Stage::Review, Stage::Propose] {
        let (plan, _) = plan_with(&policy(""), |_| {}, proposed(), vec![failure(None, stage)], Vec::new());
        assert_eq!(
            summary(&plan),
            row(&[&format!("tag owner=ops {A}")], &[&format!("plugin-failed {A}"), &format!("plugin-failed {B}")]),
            "{stage:?}"
        );
    }
}

#[test]
fn only_granted_kinds_are_planned() {
    let rows: Rows = vec![
        ("granted", vec![by("narrow", A, tag("owner", "ops"))], row(&[&format!("tag owner=ops {A}")], &[])),
        ("not granted", vec![by("narrow", A, share("111111111111"))], row(&[], &[&format!("not-granted {A}")])),
        ("snapshots not granted", vec![by("narrow", A, DEREGISTER)], row(&[], &[&format!("not-granted {A}")])),
        (
            "without its snapshots",
            vec![by("narrow", A, Action::Deregister { delete_snapshots: false })],
            row(&[&format!("deregister {A}")], &[]),
        ),
        (
            "a plugin not in the policy",
            vec![by("ghost", A, tag("owner", "ops"))],
            row(&[], &[&format!("not-granted {A}")]),
        ),
    ];
    for (name, proposed, want) in rows {
        assert_eq!(summary(&plan(proposed)), want, "{name}");
    }
}

#[test]
fn a_shared_snapshot_is_deleted_once_after_its_last_image_and_never_while_used() {
    let shared = |images: &mut Vec<Image>| images[1].block_devices[0].snapshot_id = Some("snap-a".into());
    let (plan, _) =
        plan_with(&policy(""), shared, vec![by("p", A, DEREGISTER), by("p", B, DEREGISTER)], Vec::new(), Vec::new());
    assert_eq!(
        summary(&plan).0,
        [format!("deregister {A}"), format!("deregister {B}"), format!("delete snap-a {B}")],
        "deleted once, after the last image that uses it (by id)"
    );
    assert!(plan.actions[0].reasons.contains(&format!("host: snap-a is deleted after {B}, which shares it")));
    let (plan, _) = plan_with(&policy(""), shared, vec![by("p", A, DEREGISTER)], Vec::new(), Vec::new());
    assert_eq!(summary(&plan).0, [format!("deregister {A}")], "B still uses it");
    assert!(
        plan.actions[0].reasons.contains(&format!("host: snap-a is kept: {B} still use(s) it")),
        "the plan says why there is no delete row: {:?}",
        plan.actions[0].reasons
    );
}

#[test]
fn a_snapshot_behind_two_devices_of_one_image_is_deleted_and_saved_once() {
    let twice = |images: &mut Vec<Image>| {
        let mut second = images[0].block_devices[0].clone();
        second.device_name = "/dev/xvdb".into();
        images[0].block_devices.push(second);
    };
    let (plan, _) = plan_with(&policy(""), twice, vec![by("p", A, DEREGISTER)], Vec::new(), Vec::new());
    assert_eq!(summary(&plan).0, [format!("deregister {A}"), format!("delete snap-a {A}")]);
    let (once, _) = plan_with(&policy(""), |_| {}, vec![by("p", A, DEREGISTER)], Vec::new(), Vec::new());
    assert_eq!(plan.totals.monthly_cost_after, once.totals.monthly_cost_after, "its cost is saved once too");
}

#[test]
fn actions_by_the_same_plugins_share_one_set_of_names_and_a_deletion_its_deregistrations_reasons() {
    let (plan, _) = plan_with(
        &policy(""),
        |_| {},
        vec![by("p", A, DEREGISTER), by("p", B, DEREGISTER), by("q", B, tag("k", "v"))],
        Vec::new(),
        Vec::new(),
    );
    let by_p: Vec<_> = plan.actions.iter().filter(|a| a.plugins.contains("p")).collect();
    assert_eq!(by_p.len(), 4, "two deregistrations and their snapshot deletions: {:?}", summary(&plan));
    assert!(by_p.iter().all(|a| std::ptr::eq(&*a.plugins, &*by_p[0].plugins)), "one set, shared");
    let by_q = plan.actions.iter().find(|a| a.plugins.contains("q")).unwrap();
    assert_eq!(by_q.plugins.iter().collect::<Vec<_>>(), ["q"]);
    // A snapshot deletion holds its deregistration's reasons, not a copy of them.
    for image in [A, B] {
        let of_image: Vec<_> = by_p.iter().filter(|a| a.image_id == image).collect();
        assert_eq!(of_image.len(), 2, "{image}: {:?}", summary(&plan));
        assert!(std::ptr::eq(&*of_image[0].reasons, &*of_image[1].reasons), "{image}: one list of reasons");
        assert!(!of_image[0].reasons.is_empty());
    }
}

#[test]
fn candidates_order_the_same_whatever_order_they_come_in() {
    let policy = policy("");
    let inventory = Inventory::new(vec![image(A, "snap-a"), image(B, "snap-b")]).unwrap();
    let pricing = Pricing::new(&policy.pricing);
    let proposed = vec![by("p", B, DEREGISTER), by("q", A, share("123456789012")), by("p", A, tag("k", "v"))];
    let mut merged = merge(&policy, &inventory, &pricing, proposed, &[], NOW).candidates;
    // Two candidates alike but for who proposed them and why: only the tie-break orders them.
    let mut twin = merged[0].clone();
    twin.plugins = ["z".to_string()].into();
    twin.reasons = vec!["z: other".into()];
    merged.push(twin);
    let mut forward = merged.clone();
    let mut backward: Vec<_> = merged.into_iter().rev().collect();
    order_candidates(&mut forward);
    order_candidates(&mut backward);
    assert_eq!(forward, backward);
}

#[test]
fn the_blast_radius_stops_the_plan_just_over_each_limit() {
    let two = || vec![by("p", A, Action::Disable), by("p", B, Action::Disable)];
    let rows = [
        ("max_destructive = 2", None),
        ("max_destructive = 1", Some("max_destructive = 1")),
        ("max_destructive_percent = 100.0", None),
        ("max_destructive_percent = 99.0", Some("max_destructive_percent = 99")),
    ];
    for (limit, want) in rows {
        let mut p = policy("");
        match limit.split_once(" = ") {
            Some(("max_destructive", n)) => p.guardrails.max_destructive = n.parse().unwrap(),
            Some((_, n)) => p.guardrails.max_destructive_percent = n.parse().unwrap(),
            None => unreachable!(),
        }
        let (plan, stop) = plan_with(&p, |_| {}, two(), Vec::new(), Vec::new());
        assert_eq!(stop.as_deref().map(|s| s.contains(want.unwrap_or("-"))), want.map(|_| true), "{limit}: {stop:?}");
        assert_eq!(plan.stopped, stop, "{limit}: the plan records why it stopped");
    }
}

#[test]
fn a_veto_removes_a_candidate_but_not_a_revocation_the_guardrails_demand() {
    let public = |images: &mut Vec<Image>| {
        images[0].launch_permissions =
            Some(BTreeSet::from([Principal::Public, Principal::Account("444444444444".into())]));
    };
    let veto =
        |action: &Action| ("q".to_string(), Verdict { action_id: format!("{action:?}"), veto: Some("no".into()) });
    let proposed = vec![
        by("p", A, unshare("public")),
        by("p", A, unshare("444444444444")),
        by("p", B, tag("owner", "ops")),
        by("p", B, unshare(PROD)),
    ];
    let vetoes = vec![
        veto(&unshare("public")),
        veto(&unshare("444444444444")),
        veto(&tag("owner", "ops")),
        veto(&unshare(PROD)),
    ];
    let (plan, _) = plan_with(&policy(""), public, proposed, Vec::new(), vetoes);
    assert_eq!(
        summary(&plan),
        row(
            &[&format!("unshare 444444444444 {A}"), &format!("unshare public {A}")],
            &[&format!("vetoed {B}"), &format!("vetoed {B}")]
        ),
        "revoking public and an off-list share stands; the allowed share's revocation and the tag are vetoed"
    );
    assert!(plan.actions.iter().all(|a| a.reasons.iter().any(|r| r.contains("veto ignored"))));
}

#[test]
fn a_plugin_repeating_itself_is_one_reason_with_a_count_not_one_reason_per_event() {
    // The same unshare of A proposed from 500 events (a plugin that proposes on every
    // image from every event), each with its own reason, and once by another plugin.
    let with_reason = |plugin: &str, reason: String| {
        let mut p = by(plugin, A, unshare("222222222222"));
        p.proposal.reason = reason;
        p
    };
    let mut proposed: Vec<Proposed> = (0..500).map(|n| with_reason("p", format!("seen from event {n:03}"))).collect();
    proposed.push(with_reason("q", "not on the allow list".into()));
    proposed.sort();
    let unshared = plan(proposed);
    assert_eq!(unshared.actions.len(), 1);
    assert_eq!(
        *unshared.actions[0].reasons,
        ["p: seen from event 000 (and 499 more reason(s) from p)", "q: not on the allow list"]
    );
    // Retains are counted the same way in the refusal they cause.
    let mut proposed = vec![by("p", A, DEREGISTER)];
    proposed.extend((0..3).map(|n| {
        let mut p = by("q", A, Action::Retain);
        p.proposal.reason = format!("kept {n}");
        p
    }));
    proposed.sort();
    let retained = plan(proposed);
    assert_eq!(retained.refused[0].reason, "retained by q (kept 0 (and 2 more reason(s) from q))");
}

#[test]
fn the_recycle_bin_guardrail_needs_a_rule_long_enough_for_the_image_and_for_each_snapshot() {
    let bin = policy("recycle_bin_days = 7");
    let kept = |image: Option<u32>, snapshot: Option<u32>| {
        move |images: &mut Vec<Image>| {
            for i in images.iter_mut() {
                i.recycle_bin_days = image;
                i.block_devices[0].recycle_bin_days = snapshot;
            }
        }
    };
    let rows: AdjustedRows = vec![
        (
            "no rule: refused",
            Box::new(kept(None, None)),
            vec![by("p", A, DEREGISTER)],
            row(&[], &[&format!("guardrail {A}")]),
        ),
        (
            "too short: refused",
            Box::new(kept(Some(6), Some(30))),
            vec![by("p", A, DEREGISTER)],
            row(&[], &[&format!("guardrail {A}")]),
        ),
        (
            "image kept, snapshot not: deregistered, snapshot kept",
            Box::new(kept(Some(7), None)),
            vec![by("p", A, DEREGISTER)],
            row(&[&format!("deregister {A}")], &[&format!("guardrail {A}")]),
        ),
        (
            "both kept long enough",
            Box::new(kept(Some(7), Some(7))),
            vec![by("p", A, DEREGISTER)],
            row(&[&format!("deregister {A}"), &format!("delete snap-a {A}")], &[]),
        ),
        (
            "its tags change in the same plan: the tags go, the image stays for a later run",
            Box::new(kept(Some(7), Some(7))),
            vec![by("p", A, DEREGISTER), by("q", A, Action::Untag(["team".to_string()].into()))],
            row(&[&format!("untag team {A}")], &[&format!("guardrail {A}")]),
        ),
        (
            "a tag it already has changes nothing",
            Box::new(kept(Some(7), Some(7))),
            vec![
                by("p", A, DEREGISTER),
                by("q", A, Action::Tag([("team".to_string(), "web".to_string())].into())),
                by("q", A, Action::Untag(["absent".to_string()].into())),
            ],
            row(&[&format!("deregister {A}"), &format!("delete snap-a {A}")], &[]),
        ),
        (
            "a disable needs no rule (EnableImage undoes it)",
            Box::new(kept(None, None)),
            vec![by("p", A, Action::Disable)],
            row(&[&format!("disable {A}")], &[]),
        ),
        (
            "a snapshot shared out to its last image is kept too",
            Box::new(move |images: &mut Vec<Image>| {
                kept(Some(7), None)(images);
                images[1].block_devices[0].snapshot_id = Some("snap-a".into());
            }),
            vec![by("p", A, DEREGISTER), by("p", B, DEREGISTER)],
            row(&[&format!("deregister {A}"), &format!("deregister {B}")], &[&format!("guardrail {B}")]),
        ),
    ];
    for (name, adjust, proposed, want) in rows {
        let (plan, _) = plan_with(&bin, adjust, proposed, Vec::new(), Vec::new());
        assert_eq!(summary(&plan), want, "{name}");
    }
    // Without the guardrail, no rule is needed.
    let (plan, _) = plan_with(&policy(""), kept(None, None), vec![by("p", A, DEREGISTER)], Vec::new(), Vec::new());
    assert_eq!(summary(&plan), row(&[&format!("deregister {A}"), &format!("delete snap-a {A}")], &[]));
}

#[test]
fn the_plan_keeps_every_retained_image_once_with_each_plugins_reason() {
    let (plan, _) = plan_with(
        &policy(""),
        |_| {},
        vec![
            by("p", A, Action::Retain),
            by("q", A, Action::Retain),
            by("p", A, Action::Retain),
            by("q", B, Action::Retain),
            by("p", B, tag("k", "v")),
        ],
        Vec::new(),
        Vec::new(),
    );
    let kept: Vec<(&str, Vec<&str>)> =
        plan.kept.iter().map(|k| (k.image_id.as_str(), k.reasons.iter().map(String::as_str).collect())).collect();
    assert_eq!(kept, [(A, vec!["p: r (and 1 more reason(s) from p)", "q: r"]), (B, vec!["q: r"]),], "{:#?}", plan.kept);
    assert_eq!(summary(&plan).0, [format!("tag k=v {B}")], "a retain does not stop what is not destructive");
}
