//! The AWS path spends calls where they protect something: a deregistration sweep on moto
//! re-reads images and snapshot users in batches (no per-action Describe*, no per-snapshot
//! scan), reads no launch permissions when no plugin needs them, and works on several
//! images at once with the same outcome.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use aws_sdk_ec2::types::Tag;
use support::{Moto, sdk};

const EAST: &str = "us-east-1";
const IMAGES: usize = 150;

const POLICY: &str = r#"
[scope]
accounts = ["123456789012"]
regions = ["us-east-1"]

[guardrails]
max_destructive = 1000
max_destructive_percent = 100.0

[[plugin]]
name = "retention"
source = "builtin:retention"
grants = ["deregister", "delete-snapshots", "retain"]
[plugin.config]
family = { tag = "family" }
keep_newest = 1
deregister_after_days = 30
delete_snapshots = true
"#;

fn amiwarden(dir: &Path, moto: &Moto, args: &[&str]) -> Output {
    let out = support::aws_cli(dir, concat!(env!("CARGO_TARGET_TMPDIR"), "/lean-cache"))
        .args(args)
        .args(["--policy", "policy.toml", "--aws", "--endpoint-url", &moto.url, "--max-attempts", "1"])
        .args(["--as-of", "2031-01-01"])
        .output()
        .expect("amiwarden runs");
    assert!(out.status.success(), "amiwarden {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `API calls: DescribeImages 3, ...` from the end of an apply's stderr.
fn calls(out: &Output) -> BTreeMap<String, u64> {
    let text = String::from_utf8_lossy(&out.stderr);
    let line =
        text.lines().find_map(|l| l.strip_prefix("API calls: ")).unwrap_or_else(|| panic!("no call counts:\n{text}"));
    line.split(", ")
        .map(|item| {
            let (op, n) = item.rsplit_once(' ').unwrap();
            (op.to_string(), n.parse().unwrap())
        })
        .collect()
}

/// Registers `IMAGES` images of one family (moto makes a snapshot for each) and runs an
/// instance from one of them. Returns the image ids (moto stamps them all with the same
/// second, so which one is "newest" is the retention plugin's tie-break).
fn seed(moto: &Moto) -> Vec<String> {
    let ec2 = sdk(moto, EAST);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut ids = Vec::new();
        for i in 0..IMAGES {
            let out = ec2.register_image().name(format!("sweep-{i:03}")).root_device_name("/dev/xvda").send().await;
            let id = out.unwrap().image_id().unwrap().to_string();
            let tag = Tag::builder().key("family").value("sweep").build();
            ec2.create_tags().resources(&id).tags(tag).send().await.unwrap();
            ids.push(id);
        }
        ec2.run_instances().image_id(&ids[10]).min_count(1).max_count(1).send().await.unwrap();
        ids
    })
}

/// What is left: (image ids, snapshot ids) in the region, sorted.
fn remaining(moto: &Moto) -> (Vec<String>, Vec<String>) {
    let ec2 = sdk(moto, EAST);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let images = ec2.describe_images().owners("self").send().await.unwrap();
        let mut images: Vec<String> = images.images().iter().filter_map(|i| i.image_id().map(String::from)).collect();
        let snapshots = ec2.describe_snapshots().owner_ids("self").send().await.unwrap();
        let mut snapshots: Vec<String> =
            snapshots.snapshots().iter().filter_map(|s| s.snapshot_id().map(String::from)).collect();
        images.sort();
        snapshots.sort();
        (images, snapshots)
    })
}

#[test]
fn a_deregistration_sweep_re_reads_in_batches_and_reads_no_launch_permissions() {
    support::use_test_credentials();
    for concurrency in ["1", "8"] {
        let moto = Moto::start();
        let ids = seed(&moto);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
        let out = amiwarden(dir.path(), &moto, &["apply", "--yes", "--no-pacing", "--concurrency", concurrency]);
        let calls = calls(&out);
        eprintln!("concurrency {concurrency}: {calls:?}");
        let swept = (IMAGES - 2) as u64; // the newest and the one in use stay
        let count = |op: &str| calls.get(op).copied().unwrap_or(0);
        assert_eq!((count("DeregisterImage"), count("DeleteSnapshot")), (swept, swept), "{calls:?}");
        assert_eq!(count("DescribeImageAttribute"), 0, "no plugin needs launch permissions: {calls:?}");
        // 1 to collect, 1 re-read per 100 deregistrations, 1 probe of the snapshot filter
        // moto lacks, then 1 scan per 100 snapshot deletions: 6. A batch read more than
        // 15 s before its call is read again (apply/fresh.rs), which a loaded machine may
        // need once or twice; a re-read per action would be ~300.
        assert!(count("DescribeImages") <= 9, "re-reads are batched: {calls:?}");
        assert!(count("DescribeInstances") <= 5, "usage is read per batch: {calls:?}");
        let (images, snapshots) = remaining(&moto);
        assert_eq!(images.len(), 2, "{images:?}");
        assert!(images.contains(&ids[10]), "the image in use stays: {images:?}");
        assert_eq!(snapshots.len(), 2, "the swept images' snapshots are gone: {snapshots:?}");
    }
}

const PUBLIC_ONLY: &str = r#"
[scope]
accounts = ["123456789012"]
regions = ["us-east-1"]

[guardrails]
allowed_principals = ["222222222222"]

[[plugin]]
name = "sharing"
source = "builtin:sharing"
grants = ["unshare"]
# Only make public images private: launch permissions are not read, `public` comes with
# DescribeImages.
needs = []
[plugin.config]
allowed = ["222222222222"]
"#;

#[test]
fn removing_public_access_reads_no_launch_permissions_and_keeps_account_shares() {
    use aws_sdk_ec2::types::{LaunchPermission, LaunchPermissionModifications, PermissionGroup};
    support::use_test_credentials();
    let moto = Moto::start();
    let ids = seed(&moto);
    let ec2 = sdk(&moto, EAST);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (public, shared): (Vec<&String>, Vec<&String>) =
        (ids.iter().step_by(10).collect(), ids.iter().skip(3).step_by(7).collect());
    rt.block_on(async {
        for (images, permission) in [
            (&public, LaunchPermission::builder().group(PermissionGroup::All).build()),
            (&shared, LaunchPermission::builder().user_id("222222222222").build()),
        ] {
            for id in images {
                let change = LaunchPermissionModifications::builder().add(permission.clone()).build();
                ec2.modify_image_attribute().image_id(*id).launch_permission(change).send().await.unwrap();
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), PUBLIC_ONLY).unwrap();

    let out = amiwarden(dir.path(), &moto, &["apply", "--yes", "--no-pacing"]);

    let calls = calls(&out);
    eprintln!("{calls:?}");
    let count = |op: &str| calls.get(op).copied().unwrap_or(0);
    assert_eq!(count("DescribeImageAttribute"), 0, "{calls:?}");
    assert_eq!(count("ModifyImageAttribute"), public.len() as u64, "{calls:?}");
    // Nothing granted is destructive or priced: no usage, no snapshots, one listing.
    for op in ["DescribeSnapshots", "DescribeInstances", "DescribeLaunchTemplateVersions", "DescribeImageReferences"] {
        assert_eq!(count(op), 0, "{op}: {calls:?}");
    }
    assert_eq!(count("DescribeImages"), 1, "{calls:?}");
    rt.block_on(async {
        let still_public = ec2.describe_images().owners("self").send().await.unwrap();
        assert!(still_public.images().iter().all(|i| i.public() != Some(true)), "no image is public any more");
        for id in &shared {
            assert_eq!(support::launch_permissions(&ec2, id).await, ["222222222222"], "{id} keeps its share");
        }
    });
}
