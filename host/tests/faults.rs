//! Faults on the real client path: `amiwarden apply --aws` talks to moto through a
//! fault-injecting HTTP/1.1 proxy (`support/proxy.rs`), which throttles, fails, resets,
//! slows or loses answers, and counts at the emulator side which calls reached moto and
//! what moto answered.
//!
//! Every scenario applies one plan (deregistrations with snapshot deletions, unshares, a
//! share, copies to another region, each copy tagged by the host) under one kind of fault,
//! then checks:
//! - nothing lost: every planned action ends `done`, `skipped` or `failed` in the journal;
//! - nothing doubled: no DeregisterImage, DeleteSnapshot or CopyImage was applied by moto
//!   (answered 200) twice for one resource, across all runs;
//! - the journal matches moto: a done or skipped deregistration left no image, a done
//!   copy exactly one replica tagged with its action id (and no untagged orphan), a done
//!   unshare no permission, a failed action nothing;
//! - convergence: a second apply without faults does only what the first reported failed
//!   (or skipped because of a failure), and a plan after it is empty.
//!
//! Needs `moto_server` on PATH (`pip install 'moto[server]'`). The SDK is given three
//! attempts (`--max-attempts 3`) and the apply works on one image at a time
//! (`--concurrency 1`), so which request a fault hits is the same on every run.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]

#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;

use aws_sdk_ec2::types::{LaunchPermission, LaunchPermissionModifications, Tag};
use proxy::{Fault, Proxy, Rule, Seen};
use serde_json::Value;
use support::{Moto, launch_permissions, sdk};

const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
const ACTION_TAG: &str = "amiwarden:action-id";

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
copy_tags = false
[plugin.config.targets.eu-west-1]
encrypted = false
"#;

/// The EC2 calls that change something.
const MUTATING: [&str; 5] = ["DeregisterImage", "DeleteSnapshot", "ModifyImageAttribute", "CopyImage", "CreateTags"];

/// moto, the proxy in front of it, and a directory with the policy.
struct Scenario {
    moto: Moto,
    proxy: Proxy,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    as_of: String,
    /// Every request the proxy saw, over all runs.
    seen: Vec<Seen>,
}

impl Scenario {
    fn new() -> Scenario {
        let moto = Moto::start();
        let proxy = Proxy::start(&moto.url);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(seed(&sdk(&moto, EAST)));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
        Scenario { moto, proxy, dir, rt, as_of: time_in_60_days(), seen: Vec::new() }
    }

    fn run(&self, args: &[&str]) -> Output {
        let backend = ["--aws", "--endpoint-url", &self.proxy.url, "--max-attempts", "3", "--concurrency", "1"];
        support::aws_cli(self.dir.path(), concat!(env!("CARGO_TARGET_TMPDIR"), "/faults-cache"))
            .args(args)
            .args(["--policy", "policy.toml", "--as-of", &self.as_of])
            .args(backend)
            .output()
            .expect("amiwarden runs")
    }

    /// Applies with the journal `journal`; returns the exit code and stderr.
    fn apply(&mut self, journal: &str) -> (i32, String) {
        let out = self.run(&["apply", "--yes", "--journal", journal]);
        self.seen.extend(self.proxy.take());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), err)
    }

    /// The ids of the actions a plan would take now.
    fn plan(&mut self) -> BTreeSet<String> {
        let out = self.run(&["plan", "--format", "json"]);
        self.seen.extend(self.proxy.take());
        assert!(out.status.success(), "plan failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        plan["actions"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect()
    }
}

/// Seeds moto in us-east-1: a family of five web images (the first shared with an
/// account and the public, the second running an instance, the fourth asking to be
/// shared with prod) and a lone batch image.
async fn seed(ec2: &aws_sdk_ec2::Client) {
    let mut ids = Vec::new();
    for (name, family, extra) in [
        ("golden-web-1", "web", None),
        ("golden-web-2", "web", None),
        ("golden-web-3", "web", None),
        ("golden-web-4", "web", Some(("share-with", "prod"))),
        ("golden-web-5", "web", None),
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

fn time_in_60_days() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    amiwarden::model::Timestamp(now as i64 + 60 * 86_400).to_string()
}

/// One action's end in a journal: `done`, `skipped` or `failed`, and its detail.
type Outcomes = BTreeMap<String, (String, String)>;

/// The plan and outcomes of the run that wrote `journal` from byte `from` on (a resumed
/// run writes no plan line: its plan is the last one before `from`).
fn read_journal(journal: &Path, from: usize) -> (Vec<Value>, Outcomes) {
    let text = std::fs::read_to_string(journal).unwrap();
    let mut plan = Vec::new();
    let mut outcomes = Outcomes::new();
    for (at, line) in text.split_inclusive('\n').scan(0, |at, l| {
        let start = *at;
        *at += l.len();
        Some((start, l))
    }) {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).unwrap();
        let phase = v["phase"].as_str().unwrap();
        if phase == "plan" {
            let p: Value = serde_json::from_str(v["detail"].as_str().unwrap()).unwrap();
            plan = p["actions"].as_array().unwrap().clone();
            if at >= from {
                outcomes.clear();
            }
        } else if at >= from && matches!(phase, "done" | "skipped" | "failed") {
            let detail = v["detail"].as_str().unwrap_or("").to_string();
            outcomes.insert(v["action_id"].as_str().unwrap().to_string(), (phase.to_string(), detail));
        }
    }
    (plan, outcomes)
}

/// What moto holds: images and snapshots in us-east-1 with their launch permissions, and
/// the images in eu-west-1 with their tags.
struct MotoState {
    east_images: BTreeMap<String, Vec<String>>,
    east_snapshots: BTreeSet<String>,
    west_images: Vec<(String, BTreeMap<String, String>)>,
}

async fn moto_state(moto: &Moto) -> MotoState {
    let east = sdk(moto, EAST);
    let west = sdk(moto, WEST);
    let mut east_images = BTreeMap::new();
    for image in east.describe_images().owners("self").send().await.unwrap().images() {
        let id = image.image_id().unwrap().to_string();
        let perms = launch_permissions(&east, &id).await;
        east_images.insert(id, perms);
    }
    let east_snapshots = east
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .unwrap()
        .snapshots()
        .iter()
        .map(|s| s.snapshot_id().unwrap().to_string())
        .collect();
    let west_images = west
        .describe_images()
        .owners("self")
        .send()
        .await
        .unwrap()
        .images()
        .iter()
        .map(|i| {
            let tags = i
                .tags()
                .iter()
                .map(|t| (t.key().unwrap_or("").to_string(), t.value().unwrap_or("").to_string()))
                .collect();
            let mut tags: BTreeMap<String, String> = tags;
            tags.insert("description".into(), i.description().unwrap_or("").to_string());
            (i.image_id().unwrap().to_string(), tags)
        })
        .collect();
    MotoState { east_images, east_snapshots, west_images }
}

/// Every action of `plan` ended, and its outcome is what moto shows.
fn check_outcomes(plan: &[Value], outcomes: &Outcomes, state: &MotoState) {
    for action in plan {
        let id = action["id"].as_str().unwrap();
        let image = action["image_id"].as_str().unwrap();
        let Some((phase, detail)) = outcomes.get(id) else { panic!("{id} has no outcome: lost\n{outcomes:#?}") };
        let applied = phase == "done";
        let what = format!("{id} {} {image}: {phase}: {detail}", action["op"]);
        let perms = state.east_images.get(image);
        match action["op"].as_str().unwrap() {
            "deregister" => {
                let gone = applied || (phase == "skipped" && detail.contains("no longer exists"));
                assert_eq!(perms.is_none(), gone, "{what}");
            }
            "delete_snapshot" => {
                let snapshot = action["snapshot_id"].as_str().unwrap();
                let gone = applied || (phase == "skipped" && detail.contains("no longer exists"));
                assert_eq!(!state.east_snapshots.contains(snapshot), gone, "{what}");
            }
            op @ ("share" | "unshare") => {
                let principal = action["principal"].as_str().unwrap().to_string();
                if let Some(perms) = perms.filter(|_| phase != "skipped") {
                    assert_eq!(perms.contains(&principal), (op == "share") == applied, "{what}: {perms:?}");
                }
            }
            "copy" => {
                let replicas: Vec<&String> = state
                    .west_images
                    .iter()
                    .filter(|(_, tags)| tags.get(ACTION_TAG).map(String::as_str) == Some(id))
                    .map(|(i, _)| i)
                    .collect();
                assert_eq!(replicas.len(), usize::from(applied), "{what}: replicas {replicas:?}");
            }
            other => panic!("the scenario plans no {other}"),
        }
    }
    // An untagged replica is allowed only for a copy that failed to tag it: its
    // description names the action, and the next run tags it instead of copying again.
    let failed_copies: Vec<&String> = outcomes.iter().filter(|(_, (p, _))| p == "failed").map(|(id, _)| id).collect();
    let orphans: Vec<&String> = state
        .west_images
        .iter()
        .filter(|(_, tags)| {
            !tags.contains_key(ACTION_TAG) && !failed_copies.iter().any(|id| tags["description"].ends_with(id.as_str()))
        })
        .map(|(i, _)| i)
        .collect();
    assert!(orphans.is_empty(), "replicas moto holds that no copy action claims (a copy made twice): {orphans:?}");
}

/// How often moto applied (answered 200 to) each mutating call, by action, region and resource.
fn applied(seen: &[Seen]) -> BTreeMap<(String, String, String), usize> {
    let mut out = BTreeMap::new();
    for s in seen.iter().filter(|s| MUTATING.contains(&s.action.as_str()) && s.status == Some(200)) {
        *out.entry((s.action.clone(), s.region.clone(), s.target.clone())).or_default() += 1;
    }
    out
}

/// Figures of one scenario, printed for docs/reliability.md.
struct Figures {
    faults: usize,
    /// The op of each planned action.
    ops: Vec<String>,
    failed_first: usize,
    reached_moto: BTreeMap<String, usize>,
}

/// Applies the scenario's plan with `rules` armed, checks it, then applies again without
/// faults and plans once more. Returns the figures and the first run's outcomes.
fn faulted_apply(name: &str, rules: Vec<Rule>) -> (Figures, Outcomes) {
    let mut s = Scenario::new();
    let journal = s.dir.path().join("apply.jsonl");
    s.proxy.arm(rules);
    let (code, err) = s.apply("apply.jsonl");
    s.proxy.disarm();
    let (plan, first) = read_journal(&journal, 0);
    eprintln!("--- {name}: first apply exited {code}\n{err}");
    assert!(plan.len() >= 10, "the scenario plans every kind of action: {plan:#?}");
    let failed: BTreeSet<String> = first.iter().filter(|(_, (p, _))| p == "failed").map(|(id, _)| id.clone()).collect();
    assert_eq!(code, if failed.is_empty() { 0 } else { 1 }, "{err}");
    let state = s.rt.block_on(moto_state(&s.moto));
    check_outcomes(&plan, &first, &state);
    let faults = s.seen.iter().filter(|x| x.fault.is_some()).count();
    assert!(faults > 0, "no fault was injected");
    let mut reached_moto = BTreeMap::new();
    for x in s.seen.iter().filter(|x| x.forwarded && MUTATING.contains(&x.action.as_str())) {
        *reached_moto.entry(x.action.clone()).or_default() += 1;
    }

    // A second apply without faults does what the first left failed, and only that.
    let from = std::fs::metadata(&journal).unwrap().len() as usize;
    let (code, err) = s.apply("apply.jsonl");
    assert_eq!(code, 0, "the second apply:\n{err}");
    let (plan2, second) = read_journal(&journal, from);
    let redone: BTreeSet<String> = second.keys().cloned().collect();
    let unfinished: BTreeSet<String> = first
        .iter()
        .filter(|(_, (p, d))| p != "done" && !d.contains("no longer exists"))
        .map(|(id, _)| id.clone())
        .collect();
    assert!(failed.is_subset(&redone), "failed {failed:?}, second run {redone:?}");
    assert!(redone.is_subset(&unfinished), "the second run repeated {:?}", redone.difference(&unfinished));
    assert!(second.values().all(|(p, _)| p != "failed"), "{second:#?}");
    if !redone.is_empty() {
        check_outcomes(&plan2, &second, &s.rt.block_on(moto_state(&s.moto)));
    }
    let again = s.plan();
    assert!(again.is_empty(), "the plan after both applies is not empty: {again:?}");

    // Never applied twice, over both runs.
    let doubled: Vec<_> = applied(&s.seen)
        .into_iter()
        .filter(|((action, _, _), n)| {
            *n > 1 && ["DeregisterImage", "DeleteSnapshot", "CopyImage"].contains(&action.as_str())
        })
        .collect();
    assert!(doubled.is_empty(), "applied twice by moto: {doubled:?}");
    let copies = plan.iter().filter(|a| a["op"] == "copy").count();
    let final_state = s.rt.block_on(moto_state(&s.moto));
    assert_eq!(final_state.west_images.len(), copies, "one replica per copy action");

    let figures = Figures {
        faults,
        ops: plan.iter().map(|a| a["op"].as_str().unwrap().to_string()).collect(),
        failed_first: failed.len(),
        reached_moto,
    };
    eprintln!(
        "--- {name}: {} faults injected, {} actions, {} failed in the first apply and done in the second, \
         0 lost, 0 applied twice; mutating calls that reached moto: {:?}",
        figures.faults,
        figures.ops.len(),
        figures.failed_first,
        figures.reached_moto
    );
    (figures, first)
}

/// Rules with `fault` on every other request of each mutating call, and on the first
/// two DescribeImages (the inventory's): the SDK's second attempt gets through.
fn every_other(fault: &Fault, limit: u64) -> Vec<Rule> {
    let mut rules: Vec<Rule> = MUTATING.iter().map(|a| Rule::every_other(a, limit, fault.clone())).collect();
    rules.push(Rule::every_other("DescribeImages", 2, fault.clone()));
    rules
}

#[test]
fn a_throttling_storm_is_retried_and_calls_past_the_attempts_fail_once_then_finish() {
    // Three RequestLimitExceeded in a row outlast the SDK's three attempts: the first
    // deregistration fails (its snapshot then stays, still in use); every other call is
    // throttled once and goes through on its second attempt.
    // Likewise the first CreateTags, which tags the first replica: that copy fails after
    // CopyImage succeeded, and the second apply tags the replica it finds by its
    // description instead of copying again.
    let mut rules =
        vec![Rule::first("DeregisterImage", 3, Fault::throttled()), Rule::first("CreateTags", 3, Fault::throttled())];
    rules.extend(every_other(&Fault::throttled(), 10));
    let (figures, first) = faulted_apply("throttling", rules);
    assert_eq!(figures.failed_first, 2, "{first:#?}");
    let failed: Vec<&String> = first.values().filter(|(p, _)| p == "failed").map(|(_, d)| d).collect();
    assert!(failed.iter().all(|d| d.contains("RequestLimitExceeded")), "{failed:?}");
    assert!(failed.iter().any(|d| d.contains("could not tag it")), "{failed:?}");
}

#[test]
fn internal_errors_and_unavailable_are_retried() {
    let mut rules = Vec::new();
    for (action, fault) in [
        ("DeregisterImage", Fault::internal_error()),
        ("DeleteSnapshot", Fault::internal_error()),
        ("CopyImage", Fault::internal_error()),
        ("ModifyImageAttribute", Fault::unavailable()),
        ("CreateTags", Fault::unavailable()),
    ] {
        rules.push(Rule::every_other(action, 10, fault));
    }
    rules.push(Rule::every_other("DescribeImages", 2, Fault::unavailable()));
    let (figures, first) = faulted_apply("5xx", rules);
    assert_eq!(figures.failed_first, 0, "{first:#?}");
}

#[test]
fn connections_reset_before_the_call_are_retried() {
    let (figures, first) = faulted_apply("reset", every_other(&Fault::Reset, 10));
    assert_eq!(figures.failed_first, 0, "{first:#?}");
}

#[test]
fn slow_answers_within_the_timeouts_are_waited_for_not_retried() {
    let slow = Fault::Slow(std::time::Duration::from_millis(1500));
    let rules = MUTATING.iter().map(|a| Rule::first(a, 1, slow.clone())).collect();
    let (figures, first) = faulted_apply("slow", rules);
    assert_eq!(figures.failed_first, 0, "{first:#?}");
    assert!(first.values().all(|(p, _)| p == "done"), "{first:#?}");
    let mut once: BTreeMap<String, usize> = BTreeMap::new();
    for op in &figures.ops {
        let calls: &[&str] = match op.as_str() {
            "copy" => &["CopyImage", "CreateTags"],
            "deregister" => &["DeregisterImage"],
            "delete_snapshot" => &["DeleteSnapshot"],
            _ => &["ModifyImageAttribute"],
        };
        for call in calls {
            *once.entry(call.to_string()).or_default() += 1;
        }
    }
    assert_eq!(figures.reached_moto, once, "each call reached moto once: nothing was retried");
}

#[test]
fn answers_lost_after_moto_applied_the_call_are_not_applied_twice() {
    // moto applies the call, the proxy drops the answer, the SDK sends it again: a
    // deregistration or snapshot deletion then finds the thing gone (`skipped`), a share
    // or tag is set again (a set), and a copy is found in the destination instead of being
    // sent again (moto ignores CopyImage's ClientToken and would make a second replica).
    let rules = MUTATING.iter().map(|a| Rule::every_other(a, 10, Fault::LostAfterApply)).collect();
    let (figures, first) = faulted_apply("lost answers", rules);
    assert_eq!(figures.failed_first, 0, "{first:#?}");
    let gone = first.values().filter(|(p, d)| p == "skipped" && d.contains("no longer exists")).count();
    assert!(gone >= 2, "a retried deregistration and snapshot deletion find it gone: {first:#?}");
    let copies = figures.ops.iter().filter(|op| *op == "copy").count();
    assert_eq!(figures.reached_moto["CopyImage"], copies, "one CopyImage per copy reached moto");
}
