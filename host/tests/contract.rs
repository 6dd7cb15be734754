//! One outcome contract for both backends (the table in `backend.rs`): the same ops, in
//! the same order, on the embedded sim and on moto, give the same outcomes — done,
//! skipped (with the same reason) or failed — and leave one copy where a copy is asked
//! for twice.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]

mod support;

use std::collections::BTreeSet;

use amiwarden::aws::{AwsBackend, AwsOptions};
use amiwarden::backend::{ActionOutcome, Backend};
use amiwarden::config::{AwsSettings, Scope};
use amiwarden::model::{Principal, Timestamp};
use amiwarden::plan::{Op, PlannedAction};
use amiwarden::sim::{SimBackend, SimState};
use aws_sdk_ec2::types::{LaunchPermission, LaunchPermissionModifications, Tag};
use support::{Moto, sdk};

const ACCOUNT: &str = "123456789012";
const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
const FRIEND: &str = "210987654321";
const GONE: &str = "ami-0123456789abcdef0";

fn action(image: &str, op: Op) -> PlannedAction {
    PlannedAction {
        id: PlannedAction::id_for(ACCOUNT, EAST, image, &op),
        location: amiwarden::model::Location { account: ACCOUNT.into(), region: EAST.into() }.into(),
        image_id: image.into(),
        image_name: "golden-a".into(),
        op,
        plugins: Default::default(),
        reasons: Default::default(),
        monthly_cost_delta: 0,
        one_time_cost: 0,
    }
}

/// The outcome as the contract states it: the kind, and a skip's reason (ids are the
/// same on both sides, since the sim mirrors moto).
fn contract(outcome: &ActionOutcome) -> String {
    match outcome {
        ActionOutcome::Done { .. } => "done".into(),
        ActionOutcome::Skipped { reason } => format!("skipped: {reason}"),
        ActionOutcome::Failed { .. } => "failed".into(),
    }
}

fn tag(k: &str, v: &str) -> Op {
    Op::Tag { tags: [(k.to_string(), v.to_string())].into() }
}

#[test]
fn both_backends_answer_every_op_by_one_contract() {
    support::use_test_credentials();
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ec2 = sdk(&moto, EAST);
    let (a, b, snap_a, snap_b, state) = rt.block_on(async {
        let mut ids = Vec::new();
        for name in ["golden-a", "golden-b"] {
            let id = ec2.register_image().name(name).root_device_name("/dev/xvda").send().await.unwrap();
            let id = id.image_id().unwrap().to_string();
            let tags =
                vec![Tag::builder().key("team").value("web").build(), Tag::builder().key("family").value("g").build()];
            ec2.create_tags().resources(&id).set_tags(Some(tags)).send().await.unwrap();
            ids.push(id);
        }
        let share = LaunchPermissionModifications::builder().add(LaunchPermission::builder().user_id(FRIEND).build());
        ec2.modify_image_attribute().image_id(&ids[0]).launch_permission(share.build()).send().await.unwrap();
        let snap = |id: String| {
            let ec2 = ec2.clone();
            async move {
                let d = ec2.describe_images().image_ids(id).send().await.unwrap();
                d.images()[0].block_device_mappings()[0].ebs().unwrap().snapshot_id().unwrap().to_string()
            }
        };
        let (snap_a, snap_b) = (snap(ids[0].clone()).await, snap(ids[1].clone()).await);
        let state = support::mirror(&ec2, ACCOUNT, EAST, WEST).await;
        (ids[0].clone(), ids[1].clone(), snap_a, snap_b, state)
    });
    let now = Timestamp(1_795_000_000);
    let sim = SimBackend::in_memory(SimState::parse(&state.to_string(), "mirror").unwrap(), now);
    let scope = Scope::of([ACCOUNT.to_string()].into(), [EAST.to_string(), WEST.to_string()].into());
    let options = AwsOptions {
        profile: None,
        endpoint_url: Some(moto.url.clone()),
        max_attempts: Some(1),
        ..AwsOptions::default()
    };
    let aws = AwsBackend::connect(&scope, &AwsSettings::default(), options).unwrap();

    let copy = support::copy_with_tags(WEST);
    let rows: Vec<(&str, PlannedAction, String)> = vec![
        ("a new tag", action(&a, tag("owner", "ops")), "done".into()),
        ("a tag already set", action(&a, tag("team", "web")), "done".into()),
        (
            "a tag on an image that is gone",
            action(GONE, tag("owner", "ops")),
            format!("skipped: {GONE} no longer exists"),
        ),
        (
            "a share already present",
            action(&a, Op::Share { principal: Principal::Account(FRIEND.into()) }),
            "done".into(),
        ),
        (
            "an unshare of a principal not there",
            action(&a, Op::Unshare { principal: Principal::Account("333333333333".into()) }),
            "done".into(),
        ),
        (
            "a share on an image that is gone",
            action(GONE, Op::Share { principal: Principal::Account(FRIEND.into()) }),
            format!("skipped: {GONE} no longer exists"),
        ),
        ("a copy", action(&a, copy.clone()), "done".into()),
        ("the same copy again", action(&a, copy), "done".into()),
        (
            "a snapshot its image still uses",
            action(&a, Op::DeleteSnapshot { snapshot_id: snap_a.clone() }),
            format!("skipped: {snap_a} is still used by {a}"),
        ),
        ("a deregistration", action(&b, Op::Deregister), "done".into()),
        ("the same deregistration again", action(&b, Op::Deregister), format!("skipped: {b} no longer exists")),
        (
            "the snapshot of the image just deregistered",
            action(&b, Op::DeleteSnapshot { snapshot_id: snap_b.clone() }),
            "done".into(),
        ),
        (
            "a snapshot already gone",
            action(&b, Op::DeleteSnapshot { snapshot_id: snap_b.clone() }),
            format!("skipped: {snap_b} no longer exists"),
        ),
        (
            "a deregistration of an image that never was",
            action(GONE, Op::Deregister),
            format!("skipped: {GONE} no longer exists"),
        ),
    ];
    for (name, act, want) in rows {
        let on_sim = contract(&sim.execute(&act));
        let on_aws = contract(&aws.execute(&act));
        assert_eq!((on_sim.as_str(), on_aws.as_str()), (want.as_str(), want.as_str()), "{name}");
    }

    // One replica each, carrying the source's tags and the host's own.
    let west = amiwarden::model::Location { account: ACCOUNT.into(), region: WEST.into() };
    let sim_copies =
        sim.collect(&Scope { regions: [WEST.to_string()].into(), ..scope.clone() }, &BTreeSet::new()).unwrap();
    let aws_copies =
        aws.collect(&Scope { regions: [WEST.to_string()].into(), ..scope.clone() }, &BTreeSet::new()).unwrap();
    for copies in [&sim_copies, &aws_copies] {
        assert_eq!(copies.len(), 1, "{copies:#?}");
        let tags: BTreeSet<&str> = copies[0].tags.keys().map(String::as_str).collect();
        assert_eq!(
            tags,
            ["amiwarden:action-id", "amiwarden:source-image-id", "amiwarden:source-region", "family", "owner", "team"]
                .into(),
            "{}",
            west
        );
        assert_eq!(copies[0].name, "golden-a");
        assert_eq!(copies[0].source_image_id.as_deref(), Some(a.as_str()));
    }
}
