//! The AWS backend against moto in server mode: inventory, then every applier action, checked through the EC2 API.
//!
//! Needs `moto_server` on PATH (`pip install 'moto[server]'`); the test fails with that
//! advice when it is missing. Each run starts its own moto on a free 127.0.0.1 port with
//! `MOTO_EC2_LOAD_DEFAULT_AMIS=false` and stops it at the end, even on failure.
//!
//! What moto 5.2 does not do like EC2, and how the backend and this test cope:
//! - DescribeImageReferences, EnableImageDeprecation and the
//!   `block-device-mapping.snapshot-id` filter answer HTTP 500 with an HTML body. The
//!   backend warns once, then finds usage with DescribeInstances and launch template
//!   versions and scans every image for snapshot users; a deprecation is `Failed` with a
//!   message naming the missing operation. `max_attempts = 1` keeps the 500s from being
//!   retried.
//! - RegisterImage ignores BlockDeviceMappings (it makes its own 15 GiB snapshot) and
//!   TagSpecifications; the test reads the snapshot id back and tags with CreateTags.
//! - CopyImage ignores ClientToken, CopyImageTags and encryption, and records no
//!   SourceImageId: the backend finds an earlier copy by its `amiwarden:action-id` tag,
//!   or, untagged, by the description naming its action (`backend::copy_description`),
//!   and writes the source tags itself.
//! - DeleteSnapshot succeeds on a snapshot an image still uses (EC2 says
//!   InvalidSnapshot.InUse): the backend checks the users itself first.
//! - `lastLaunchedTime` is absent, so usage comes only from instances and templates.

mod support;

use std::collections::BTreeSet;

use amiwarden::aws::{AwsBackend, AwsOptions};
use amiwarden::backend::{ACTION_TAG, ActionOutcome, Backend, SOURCE_IMAGE_TAG, SOURCE_REGION_TAG};
use amiwarden::config::{AwsSettings, Scope};
use amiwarden::model::{InventoryNeed, Location, Principal};
use amiwarden::plan::{Op, PlannedAction};
use aws_sdk_ec2::types::Tag;
use support::{Moto, launch_permissions, sdk};

const ACCOUNT: &str = "123456789012";
const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
const FRIEND: &str = "210987654321";

fn action(image: &str, image_name: &str, op: Op) -> PlannedAction {
    PlannedAction {
        id: PlannedAction::id_for(ACCOUNT, EAST, image, &op),
        location: amiwarden::model::Location { account: ACCOUNT.into(), region: EAST.into() }.into(),
        image_id: image.into(),
        image_name: image_name.into(),
        op,
        plugins: Default::default(),
        reasons: Default::default(),
        monthly_cost_delta: 0,
        one_time_cost: 0,
    }
}

fn done(outcome: ActionOutcome) -> String {
    match outcome {
        ActionOutcome::Done { detail } => detail,
        other => panic!("expected Done, got {other:?}"),
    }
}

/// Registers an image (moto makes its snapshot) and tags it; returns (image, snapshot).
async fn seed_image(ec2: &aws_sdk_ec2::Client, name: &str) -> (String, String) {
    let image = ec2
        .register_image()
        .name(name)
        .root_device_name("/dev/xvda")
        .send()
        .await
        .expect("register")
        .image_id()
        .expect("id")
        .to_string();
    ec2.create_tags()
        .resources(&image)
        .tags(Tag::builder().key("family").value("golden").build())
        .send()
        .await
        .expect("tag");
    let described = ec2.describe_images().image_ids(&image).send().await.expect("describe");
    let snapshot = described.images()[0].block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.snapshot_id())
        .expect("snapshot")
        .to_string();
    (image, snapshot)
}

async fn images_in(ec2: &aws_sdk_ec2::Client) -> Vec<aws_sdk_ec2::types::Image> {
    ec2.describe_images().owners("self").send().await.expect("describe").images().to_vec()
}

#[test]
fn the_aws_backend_collects_and_applies_against_moto() {
    support::use_test_credentials();
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let east = sdk(&moto, EAST);
    let west = sdk(&moto, WEST);

    // Seed: A runs an instance, B is referenced by a launch template, C is unused.
    let (a, b, c, snap_a, snap_c) = rt.block_on(async {
        let (a, snap_a) = seed_image(&east, "golden-a").await;
        let (b, _) = seed_image(&east, "golden-b").await;
        let (c, snap_c) = seed_image(&east, "golden-c").await;
        east.run_instances().image_id(&a).min_count(1).max_count(1).send().await.expect("run");
        let data = aws_sdk_ec2::types::RequestLaunchTemplateData::builder().image_id(&b).build();
        east.create_launch_template()
            .launch_template_name("web")
            .launch_template_data(data)
            .send()
            .await
            .expect("template");
        (a, b, c, snap_a, snap_c)
    });

    let scope = Scope::of([ACCOUNT.to_string()].into(), [EAST.to_string(), WEST.to_string()].into());
    let options = AwsOptions {
        profile: None,
        endpoint_url: Some(moto.url.clone()),
        max_attempts: Some(1),
        ..AwsOptions::default()
    };
    let backend = AwsBackend::connect(&scope, &AwsSettings::default(), options).expect("connect to moto");
    let east_loc = Location { account: ACCOUNT.into(), region: EAST.into() };

    // Inventory.
    let needs: BTreeSet<InventoryNeed> =
        [InventoryNeed::LaunchPermissions, InventoryNeed::Usage, InventoryNeed::Snapshots].into();
    let images = backend.collect(&scope, &needs).expect("collect");
    eprintln!("calls for one collect: {:?}", backend.call_counts());
    assert_eq!(images.len(), 3);
    let get = |id: &str| images.iter().find(|i| i.id == id).expect("collected");
    assert_eq!(get(&a).usage.instances, 1);
    assert!(get(&b).usage.launch_templates.len() == 1, "{:?}", get(&b).usage);
    assert!(!get(&c).usage.in_use());
    assert_eq!(get(&a).block_devices[0].snapshot_id.as_deref(), Some(snap_a.as_str()));
    assert!(get(&a).block_devices[0].size_gib > 0);
    assert_eq!(get(&a).launch_permissions, Some(BTreeSet::new()));
    assert_eq!(get(&a).tags.get("family").map(String::as_str), Some("golden"));
    let counts: std::collections::BTreeMap<String, u64> = backend.call_counts().into_iter().collect();
    assert_eq!(counts.get("DescribeImages"), Some(&2), "one page per region");
    assert_eq!(counts.get("DescribeImageAttribute"), Some(&3), "one per image");

    // Preflight with DryRun changes nothing.
    let share_friend = action(&a, "golden-a", Op::Share { principal: Principal::Account(FRIEND.into()) });
    let verdicts = backend.dry_run(&[share_friend.clone(), action(&c, "golden-c", Op::Deregister)]);
    eprintln!("preflight on moto: {verdicts:?}");
    assert!(verdicts.iter().all(|(_, v)| v.is_ok()), "{verdicts:?}");
    assert!(rt.block_on(launch_permissions(&east, &a)).is_empty(), "a dry run shares nothing");

    // Share and unshare.
    done(backend.execute(&share_friend));
    done(backend.execute(&action(&a, "golden-a", Op::Share { principal: Principal::Public })));
    done(backend.execute(&action(&a, "golden-a", Op::Unshare { principal: Principal::Public })));
    assert_eq!(rt.block_on(launch_permissions(&east, &a)), [FRIEND]);
    let refreshed = backend
        .refresh_many(&east_loc, std::slice::from_ref(&a), true)
        .expect("refresh")
        .remove(0)
        .1
        .expect("still there");
    assert_eq!(refreshed.launch_permissions, Some([Principal::Account(FRIEND.into())].into()));

    // Tag and untag.
    done(backend.execute(&action(
        &b,
        "golden-b",
        Op::Tag { tags: [("owner".to_string(), "platform".to_string())].into() },
    )));
    done(backend.execute(&action(&b, "golden-b", Op::Untag { keys: ["family".to_string()].into() })));
    let b_tags = rt.block_on(async {
        east.describe_images().image_ids(&b).send().await.expect("describe").images()[0].tags().to_vec()
    });
    assert_eq!(
        b_tags.iter().map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))).collect::<Vec<_>>(),
        [("owner", "platform")]
    );

    // Copy to another region, twice: the second run finds the first copy.
    let copy = action(&a, "golden-a", support::copy_with_tags(WEST));
    let first = done(backend.execute(&copy));
    let second = done(backend.execute(&copy));
    assert!(second.contains("already exists"), "{second}");
    let copies = rt.block_on(images_in(&west));
    assert_eq!(copies.len(), 1, "{first}");
    let copy_id = copies[0].image_id().expect("id").to_string();
    assert!(first.contains(&copy_id), "{first}");
    let tag =
        |k: &str| copies[0].tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).map(str::to_string);
    assert_eq!(tag(SOURCE_IMAGE_TAG).as_deref(), Some(a.as_str()));
    assert_eq!(tag(SOURCE_REGION_TAG).as_deref(), Some(EAST));
    assert_eq!(tag(ACTION_TAG).as_deref(), Some(copy.id.as_str()));
    assert_eq!(tag("family").as_deref(), Some("golden"), "copy_tags copies the source's tags");
    let west_images = backend
        .collect(&Scope { regions: [WEST.to_string()].into(), ..scope.clone() }, &BTreeSet::new())
        .expect("collect");
    assert_eq!(west_images[0].source_image_id.as_deref(), Some(a.as_str()), "the copy is recognised by its tags");

    // Deprecation: moto lacks it.
    let at = "2030-01-01".parse().expect("date");
    match backend.execute(&action(&a, "golden-a", Op::Deprecate { at })) {
        ActionOutcome::Failed { error } => {
            assert!(error.contains("EnableImageDeprecation is not implemented"), "{error}")
        }
        other => panic!("expected a clear failure, got {other:?}"),
    }

    // A snapshot of a registered image is not deleted.
    let kept = backend.execute(&action(&a, "golden-a", Op::DeleteSnapshot { snapshot_id: snap_a.clone() }));
    assert!(matches!(&kept, ActionOutcome::Skipped { reason } if reason.contains(&a)), "{kept:?}");
    assert!(backend.snapshot_users(&east_loc, std::slice::from_ref(&snap_a)).expect("users").contains_key(&snap_a));

    // Deregister C, then delete its snapshot; both are idempotent.
    done(backend.execute(&action(&c, "golden-c", Op::Deregister)));
    assert!(backend.refresh_many(&east_loc, std::slice::from_ref(&c), false).expect("refresh")[0].1.is_none());
    assert!(backend.snapshot_users(&east_loc, std::slice::from_ref(&snap_c)).expect("users").is_empty());
    assert_eq!(
        done(backend.execute(&action(&c, "golden-c", Op::DeleteSnapshot { snapshot_id: snap_c.clone() }))),
        format!("deleted {snap_c}")
    );
    assert!(matches!(backend.execute(&action(&c, "golden-c", Op::Deregister)), ActionOutcome::Skipped { .. }));
    assert!(matches!(
        backend.execute(&action(&c, "golden-c", Op::DeleteSnapshot { snapshot_id: snap_c.clone() })),
        ActionOutcome::Skipped { .. }
    ));

    let (left, snapshot_gone) = rt.block_on(async {
        let left: Vec<String> =
            images_in(&east).await.iter().filter_map(|i| i.image_id().map(str::to_string)).collect();
        let gone = east.describe_snapshots().snapshot_ids(&snap_c).send().await.is_err();
        (left, gone)
    });
    assert_eq!(left.iter().collect::<BTreeSet<_>>(), [&a, &b].into_iter().collect());
    assert!(snapshot_gone, "{snap_c} was deleted");
    eprintln!("calls for the whole run: {:?}", backend.call_counts());
}
