//! The same scenario on the embedded simulated EC2 and on moto (an EC2 emulator) ends in
//! the same state: plan and apply through the CLI on both, then compare.
//!
//! The scenario stays on the part of EC2 that moto implements (see `moto.rs` for its
//! gaps): shares and unshares, copies with tags, deregistrations with snapshot deletion,
//! an in-use image protected. Deprecation is left out: moto lacks EnableImageDeprecation.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;

use aws_sdk_ec2::types::{LaunchPermission, LaunchPermissionModifications, Tag};
use serde_json::Value;
use support::{Moto, launch_permissions, sdk};

const ACCOUNT: &str = "123456789012";
const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";

const POLICY: &str = r#"
[scope]
accounts = ["123456789012"]
regions = ["us-east-1", "eu-west-1"]

[guardrails]
allowed_principals = ["222222222222"]
copy_regions = ["eu-west-1"]
max_destructive = 50
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

[[plugin]]
name = "sharing"
source = "builtin:sharing"
grants = ["share", "unshare"]
[plugin.config]
share_tag = "share-with"
groups = { prod = ["222222222222"] }

[[plugin]]
name = "replication"
source = "builtin:replication"
grants = ["copy"]
[plugin.config]
source_regions = ["us-east-1"]
select = { tag = "family=web" }
# With copied tags, a replica of an image tagged share-with would get its shares only in
# the next run (the sharing plugin sees the replica once it exists): one run must converge.
copy_tags = false
[plugin.config.targets.eu-west-1]
encrypted = false
"#;

fn amiwarden(dir: &Path, args: &[&str]) -> Output {
    let out = support::aws_cli(dir, concat!(env!("CARGO_TARGET_TMPDIR"), "/differential-cache"))
        .args(args)
        .output()
        .expect("amiwarden runs");
    assert!(out.status.success(), "amiwarden {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Seeds moto: a family of four web images (one running an instance, one shared too
/// widely and publicly, one tagged for prod) and a lone batch image.
async fn seed(ec2: &aws_sdk_ec2::Client) {
    let mut ids = Vec::new();
    for (name, family, extra) in [
        ("golden-web-1", "web", None),
        ("golden-web-2", "web", None),
        ("golden-web-3", "web", None),
        ("golden-web-4", "web", Some(("share-with", "prod"))),
        ("golden-batch-1", "batch", None),
    ] {
        let id = ec2.register_image().name(name).root_device_name("/dev/xvda").send().await.unwrap();
        let id = id.image_id().unwrap().to_string();
        let mut tags = vec![Tag::builder().key("family").value(family).build()];
        if let Some((k, v)) = extra {
            tags.push(Tag::builder().key(k).value(v).build());
        }
        ec2.create_tags().resources(&id).set_tags(Some(tags)).send().await.unwrap();
        ids.push(id);
    }
    ec2.run_instances().image_id(&ids[1]).min_count(1).max_count(1).send().await.unwrap();
    let perms = LaunchPermissionModifications::builder()
        .add(LaunchPermission::builder().user_id("999999999999").build())
        .add(LaunchPermission::builder().group(aws_sdk_ec2::types::PermissionGroup::All).build())
        .build();
    ec2.modify_image_attribute().image_id(&ids[0]).launch_permission(perms).send().await.unwrap();
}

/// What must match: per region, each image (a copy named by its source) with its
/// name, tags and launch permissions; and how many snapshots are left.
type Normal = BTreeMap<String, (BTreeSet<String>, usize)>;

fn key(region: &str, id: &str, tags: &BTreeMap<String, String>) -> String {
    match tags.get("amiwarden:source-image-id") {
        Some(source) => format!("{region} copy-of {source}"),
        None => format!("{region} {id}"),
    }
}

fn line(name: &str, tags: &BTreeMap<String, String>, perms: &[String]) -> String {
    format!("{name} tags={tags:?} perms={perms:?}")
}

async fn moto_state(moto: &Moto) -> Normal {
    let mut out = Normal::new();
    for region in [EAST, WEST] {
        let ec2 = sdk(moto, region);
        let mut lines = BTreeSet::new();
        for image in ec2.describe_images().owners("self").send().await.unwrap().images() {
            let id = image.image_id().unwrap();
            let tags: BTreeMap<String, String> = image
                .tags()
                .iter()
                .map(|t| (t.key().unwrap_or("").to_string(), t.value().unwrap_or("").to_string()))
                .collect();
            lines.insert(format!(
                "{} {}",
                key(region, id, &tags),
                line(image.name().unwrap(), &tags, &launch_permissions(&ec2, id).await)
            ));
        }
        let snaps = ec2.describe_snapshots().owner_ids("self").send().await.unwrap().snapshots().len();
        out.insert(region.to_string(), (lines, snaps));
    }
    out
}

fn sim_state(path: &Path) -> Normal {
    let state: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Normal::new();
    for region in [EAST, WEST] {
        let r = &state["accounts"][ACCOUNT]["regions"][region];
        let mut lines = BTreeSet::new();
        for image in r["images"].as_array().into_iter().flatten() {
            let tags: BTreeMap<String, String> = serde_json::from_value(image["tags"].clone()).unwrap_or_default();
            let mut perms: Vec<String> =
                serde_json::from_value(image["launch_permissions"].clone()).unwrap_or_default();
            perms.sort();
            let id = image["id"].as_str().unwrap();
            lines.insert(format!(
                "{} {}",
                key(region, id, &tags),
                line(image["name"].as_str().unwrap(), &tags, &perms)
            ));
        }
        out.insert(region.to_string(), (lines, r["snapshots"].as_array().map_or(0, Vec::len)));
    }
    out
}

fn actions(plan: &[u8]) -> Vec<String> {
    let plan: Value = serde_json::from_slice(plan).unwrap();
    plan["actions"].as_array().unwrap().iter().map(|a| format!("{} {} {}", a["id"], a["image_id"], a["op"])).collect()
}

#[test]
fn the_same_scenario_ends_in_the_same_state_on_sim_and_on_moto() {
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let east = sdk(&moto, EAST);
    let state = rt.block_on(async {
        seed(&east).await;
        support::mirror(&east, ACCOUNT, EAST, WEST).await
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    std::fs::write(dir.path().join("state.json"), serde_json::to_string_pretty(&state).unwrap()).unwrap();
    // Sixty days on, every web image but the newest is past retention.
    let as_of = time_in_60_days();
    let sim = ["--sim", "state.json"];
    let aws = ["--aws", "--endpoint-url", moto.url.as_str(), "--max-attempts", "1"];
    let plan = |backend: &[&str]| {
        let mut args = vec!["plan", "--policy", "policy.toml", "--as-of", &as_of, "--format", "json"];
        args.extend_from_slice(backend);
        actions(&amiwarden(dir.path(), &args).stdout)
    };
    let sim_plan = plan(&sim);
    let aws_plan = plan(&aws);
    assert_eq!(sim_plan, aws_plan, "both backends must plan the same actions");
    assert!(sim_plan.iter().any(|a| a.contains("\"copy\"")), "{sim_plan:#?}");
    assert!(sim_plan.iter().any(|a| a.contains("\"deregister\"")), "{sim_plan:#?}");
    assert!(sim_plan.iter().any(|a| a.contains("\"unshare\"")), "{sim_plan:#?}");
    for (backend, journal) in [(&sim[..], "sim.jsonl"), (&aws[..], "aws.jsonl")] {
        let mut args = vec!["apply", "--policy", "policy.toml", "--as-of", &as_of, "--yes", "--journal", journal];
        args.extend_from_slice(backend);
        amiwarden(dir.path(), &args);
    }
    let on_moto = rt.block_on(moto_state(&moto));
    let on_sim = sim_state(&dir.path().join("state.json"));
    assert_eq!(on_sim, on_moto);
    // Action by action, both backends report the same outcome (backend.rs's contract).
    let (sim_outcomes, aws_outcomes) =
        (outcomes(&dir.path().join("sim.jsonl")), outcomes(&dir.path().join("aws.jsonl")));
    assert_eq!(sim_outcomes.len(), sim_plan.len(), "{sim_outcomes:#?}");
    assert_eq!(sim_outcomes, aws_outcomes);
    // And both converge.
    let (again_sim, again_aws) = (plan(&sim), plan(&aws));
    assert!(again_sim.is_empty(), "{again_sim:#?}");
    assert!(again_aws.is_empty(), "{again_aws:#?}");
}

/// Each action's final journal line: its phase, and a skip's reason.
fn outcomes(journal: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(journal).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let phase = v["phase"].as_str().unwrap();
        if matches!(phase, "done" | "failed") {
            out.insert(v["action_id"].as_str().unwrap().to_string(), phase.to_string());
        } else if phase == "skipped" {
            out.insert(
                v["action_id"].as_str().unwrap().to_string(),
                format!("skipped: {}", v["detail"].as_str().unwrap()),
            );
        }
    }
    out
}

fn time_in_60_days() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    amiwarden::model::Timestamp(now as i64 + 60 * 86_400).to_string()
}
