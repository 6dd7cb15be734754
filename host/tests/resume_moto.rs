//! Crash-resume on the emulator: `kill -9` of `amiwarden apply --aws` in the middle of
//! each kind of mutating call, then the same apply again; the plan is finished with no
//! action lost and none repeated, and moto ends as an uninterrupted apply leaves it.
//!
//! The kill lands at a chosen call, in the worst place: the proxy (`support/proxy.rs`)
//! forwards the chosen request (the `n`-th of one EC2 Action) to moto, moto applies it,
//! and the answer is held (`Fault::HoldAfterApply`); the test sees the hold and kills the
//! apply with SIGKILL. The call took effect but the client never learned it: the
//! journal's last line is that action's `start`. The rerun (same saved plan, same
//! journal, no faults) must then:
//! - finish every action exactly once across the two runs (`done` or `skipped`; the
//!   action in flight may be started twice, an action the first run finished is not
//!   touched again);
//! - never have moto apply a DeregisterImage, DeleteSnapshot or CopyImage twice for one
//!   resource (counted at the proxy: a retried deregistration or deletion finds the thing
//!   gone, `InvalidAMIID.Unavailable` / `InvalidSnapshot.NotFound`, and is `skipped`), and
//!   never send a second CopyImage for one source (the host finds the held copy by its
//!   description and tags it); a ModifyImageAttribute is repeated only for the action in
//!   flight (a set: removing a permission already removed changes nothing);
//! - leave moto exactly as an uninterrupted apply of the same plan leaves an identically
//!   seeded moto (images with their launch permissions and tags, snapshots, replicas
//!   with their `amiwarden:action-id` tags), compared with moto's random ids replaced by
//!   the names of the images they belong to;
//! - leave nothing to plan.
//!
//! With `--concurrency 8` the other workers' calls may be in flight at the kill as well;
//! each of them is then held to the same rules as the held one.
//!
//! Needs `moto_server` on PATH (`pip install 'moto[server]'`).

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]

#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_ec2::types::{LaunchPermission, LaunchPermissionModifications, PermissionGroup, Tag};
use proxy::{Fault, Proxy, Rule, Seen};
use serde_json::{Value, json};
use support::{Moto, launch_permissions, sdk};

const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
const ACTION_TAG: &str = "amiwarden:action-id";

/// Retention deregisters every `app` image (older than 30 days as of the apply, none
/// kept by rank) and deletes its snapshot; the `web` images are exempt (`keep`), are
/// unshared from the account the guardrails do not allow (and the public), one is
/// shared with prod, and each is copied to eu-west-1. Nothing depends on creation times
/// (moto gives every image the same second), so both seedings plan the same actions.
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
keep_newest = 0
deregister_after_days = 30
delete_snapshots = true
exempt_tags = ["keep"]

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

/// The plan's actions by op, as seeded.
const EXPECTED_OPS: [(&str, usize); 5] =
    [("unshare", 5), ("share", 1), ("copy", 4), ("deregister", 4), ("delete_snapshot", 4)];

/// Mutating calls that must never be applied twice for one resource.
const ONCE_ONLY: [&str; 3] = ["DeregisterImage", "DeleteSnapshot", "CopyImage"];
/// Mutating calls that are sets: repeated only for the action in flight at the kill.
const SETS: [&str; 2] = ["ModifyImageAttribute", "CreateTags"];

fn cache_dir() -> &'static str {
    concat!(env!("CARGO_TARGET_TMPDIR"), "/resume-moto-cache")
}

/// One `--as-of` for every plan and apply of the file (60 days from now).
fn as_of() -> &'static str {
    static AS_OF: OnceLock<String> = OnceLock::new();
    AS_OF.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        amiwarden::model::Timestamp(now as i64 + 60 * 86_400).to_string()
    })
}

/// Seeds moto in us-east-1; returns each image's and snapshot's id with a stable label
/// (the image's name), by which two seedings are compared.
async fn seed(ec2: &aws_sdk_ec2::Client) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let images = [
        ("golden-web-1", "web", true),
        ("golden-web-2", "web", false),
        ("golden-web-3", "web", false),
        ("golden-web-4", "web", false),
        ("app-1", "app", false),
        ("app-2", "app", false),
        ("app-3", "app", false),
        ("app-4", "app", false),
    ];
    for (name, family, public) in images {
        let out = ec2.register_image().name(name).root_device_name("/dev/xvda").send().await.unwrap();
        let id = out.image_id().unwrap().to_string();
        let mut tags = vec![Tag::builder().key("family").value(family).build()];
        if family == "web" {
            tags.push(Tag::builder().key("keep").value("true").build());
            let mut perms = LaunchPermissionModifications::builder()
                .add(LaunchPermission::builder().user_id("999999999999").build());
            if public {
                perms = perms.add(LaunchPermission::builder().group(PermissionGroup::All).build());
            }
            ec2.modify_image_attribute().image_id(&id).launch_permission(perms.build()).send().await.unwrap();
        }
        if name == "golden-web-2" {
            tags.push(Tag::builder().key("share-with").value("prod").build());
        }
        ec2.create_tags().resources(&id).set_tags(Some(tags)).send().await.unwrap();
        let described = ec2.describe_images().image_ids(&id).send().await.unwrap();
        for m in described.images()[0].block_device_mappings() {
            if let Some(snap) = m.ebs().and_then(|e| e.snapshot_id()) {
                labels.push((snap.to_string(), format!("<snapshot of {name}>")));
            }
        }
        labels.push((id, format!("<{name}>")));
    }
    labels
}

/// What moto holds, with its own ids: images and snapshots in both regions, each image
/// with its name, description, tags and launch permissions.
async fn moto_state(moto: &Moto) -> Value {
    let mut regions = serde_json::Map::new();
    for region in [EAST, WEST] {
        let ec2 = sdk(moto, region);
        let mut images = serde_json::Map::new();
        for image in ec2.describe_images().owners("self").send().await.unwrap().images() {
            let id = image.image_id().unwrap().to_string();
            let tags: BTreeMap<&str, &str> =
                image.tags().iter().map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))).collect();
            let snapshots: Vec<&str> =
                image.block_device_mappings().iter().filter_map(|m| m.ebs().and_then(|e| e.snapshot_id())).collect();
            images.insert(
                id.clone(),
                json!({
                    "name": image.name(),
                    "description": image.description(),
                    "state": image.state().map(|s| s.as_str().to_string()),
                    "tags": tags,
                    "snapshots": snapshots,
                    "launch_permissions": launch_permissions(&ec2, &id).await,
                }),
            );
        }
        let snapshots: Vec<Value> = ec2
            .describe_snapshots()
            .owner_ids("self")
            .send()
            .await
            .unwrap()
            .snapshots()
            .iter()
            .map(|s| json!({"id": s.snapshot_id(), "description": s.description(), "size": s.volume_size()}))
            .collect();
        regions.insert(region.to_string(), json!({"images": images, "snapshots": snapshots}));
    }
    Value::Object(regions)
}

/// `state` with every id `labels` knows replaced by its label, the copy actions' ids by
/// their op and image, the replicas' ids by their (relabelled) names, the ids of
/// snapshots no seeded image had (the replicas') by `<snap>`, and lists sorted: two
/// seedings compare equal when they hold the same things.
fn normalize(state: &Value, seeded: &[(String, String)], plan: &[Value]) -> Value {
    let mut labels = seeded.to_vec();
    for a in plan {
        let image = a["image_id"].as_str().unwrap();
        let name = &seeded.iter().find(|(id, _)| id == image).unwrap().1;
        labels.push((a["id"].as_str().unwrap().to_string(), format!("<{} {name}>", a["op"].as_str().unwrap())));
    }
    let relabel = |s: &str, labels: &[(String, String)]| {
        let s = labels.iter().fold(s.to_string(), |s, (id, label)| s.replace(id.as_str(), label));
        scrub(&s, "snap-", "<snap>")
    };
    for (id, image) in state[WEST]["images"].as_object().unwrap() {
        let label = format!("<replica {}>", relabel(image["name"].as_str().unwrap_or(""), &labels));
        labels.push((id.clone(), label));
    }
    fn walk(v: &Value, f: &dyn Fn(&str) -> String) -> Value {
        match v {
            Value::String(s) => Value::String(f(s)),
            Value::Array(items) => {
                let mut items: Vec<Value> = items.iter().map(|i| walk(i, f)).collect();
                items.sort_by_key(Value::to_string);
                Value::Array(items)
            }
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (f(k), walk(v, f))).collect()),
            other => other.clone(),
        }
    }
    let out = walk(state, &|s| relabel(s, &labels));
    let text = out.to_string();
    assert!(
        !text.contains("ami-") && !text.contains("act-"),
        "an image or action id that no seeding or plan explains: {out:#}"
    );
    out
}

/// `text` with each `prefix` followed by hex digits replaced by `with`.
fn scrub(text: &str, prefix: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        out.push_str(&rest[..at]);
        out.push_str(with);
        let tail = &rest[at + prefix.len()..];
        rest = tail.trim_start_matches(|c: char| c.is_ascii_hexdigit());
    }
    out.push_str(rest);
    out
}

/// The state an uninterrupted apply of the seeded plan leaves, on a moto of its own.
fn reference() -> &'static Value {
    static REFERENCE: OnceLock<Value> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let s = Scenario::new(1);
        let out = s
            .cli(&["apply", "--yes", "--journal", "apply.jsonl", "--plan", "plan.json"], &s.moto.url)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "the reference apply:\n{}", stderr(&out));
        let report = report(&out);
        assert_eq!((report[0] + report[1], report[2], report[3]), (s.plan.len(), 0, 0), "{}", stderr(&out));
        let state = s.normalized();
        check_replicas(&state, &s.plan);
        // What the plan says: the web images stay, unshared (one shared with prod), with
        // their snapshots; the app images and their snapshots are gone.
        let perms: BTreeMap<&str, &Value> = state[EAST]["images"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, i)| (id.as_str(), &i["launch_permissions"]))
            .collect();
        let web = ["<golden-web-1>", "<golden-web-2>", "<golden-web-3>", "<golden-web-4>"];
        assert_eq!(perms.keys().copied().collect::<Vec<_>>(), web, "{state:#}");
        assert!(perms.iter().all(|(id, p)| **p == json!(if *id == web[1] { vec!["222222222222"] } else { vec![] })));
        let snapshots: Vec<&str> =
            state[EAST]["snapshots"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
        assert_eq!(snapshots, web.map(|w| w.replace('<', "<snapshot of ")), "{state:#}");
        state
    })
}

/// moto, the proxy in front of it, a directory with the policy and the saved plan.
struct Scenario {
    moto: Moto,
    proxy: Proxy,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    labels: Vec<(String, String)>,
    plan: Vec<Value>,
    /// Images the apply works on at once (`--concurrency`).
    workers: usize,
}

impl Scenario {
    fn new(workers: usize) -> Scenario {
        let moto = Moto::start();
        let proxy = Proxy::start(&moto.url);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let labels = rt.block_on(seed(&sdk(&moto, EAST)));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
        let mut s = Scenario { moto, proxy, dir, rt, labels, plan: Vec::new(), workers };
        let out = s.cli(&["plan", "--format", "json", "--out", "plan.json"], &s.moto.url).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "plan:\n{}", stderr(&out));
        let plan: Value = serde_json::from_slice(&std::fs::read(s.dir.path().join("plan.json")).unwrap()).unwrap();
        s.plan = plan["actions"].as_array().unwrap().clone();
        let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
        for a in &s.plan {
            *ops.entry(a["op"].as_str().unwrap()).or_default() += 1;
        }
        assert_eq!(ops, BTreeMap::from(EXPECTED_OPS), "the seeded plan: {:#?}", s.plan);
        s
    }

    /// `amiwarden ARGS` against `endpoint`, on `workers` images at once.
    fn cli(&self, args: &[&str], endpoint: &str) -> Command {
        let mut cmd = support::aws_cli(self.dir.path(), cache_dir());
        cmd.args(args).args(["--policy", "policy.toml", "--as-of", as_of()]).args([
            "--aws",
            "--endpoint-url",
            endpoint,
            "--max-attempts",
            "3",
            "--concurrency",
            &self.workers.to_string(),
        ]);
        cmd
    }

    fn normalized(&self) -> Value {
        normalize(&self.rt.block_on(moto_state(&self.moto)), &self.labels, &self.plan)
    }

    fn op_of(&self, action_id: &str) -> String {
        let action = self.plan.iter().find(|a| a["id"] == action_id).unwrap();
        action["op"].as_str().unwrap().to_string()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The numbers of `applied: D done, S skipped, F failed, R already ended in an earlier run`.
fn report(out: &Output) -> Vec<usize> {
    let text = stderr(out);
    let line = text.lines().find(|l| l.starts_with("applied: ")).unwrap_or_else(|| panic!("no report:\n{text}"));
    line.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).take(4).collect()
}

#[derive(Debug, Clone)]
struct Line {
    action_id: String,
    phase: String,
    detail: String,
}

/// The journal's action lines (the plan records left out).
fn lines(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line ({e}): {l}"));
        if v["phase"] != "plan" {
            out.push(Line {
                action_id: v["action_id"].as_str().unwrap().into(),
                phase: v["phase"].as_str().unwrap().into(),
                detail: v["detail"].as_str().unwrap_or_default().into(),
            });
        }
    }
    out
}

fn is_terminal(phase: &str) -> bool {
    phase == "done" || phase == "skipped"
}

/// `resume.rs`'s rules: each action ends exactly once across the runs; one the first run
/// ended is not touched by the second; only the actions in flight at the kill (a `start`
/// without an end: one per worker at most) are started twice. Returns their ids.
fn check_journal(ids: &[String], first: &[Line], second: &[Line], workers: usize) -> Vec<String> {
    assert!(first.iter().chain(second).all(|l| l.phase != "failed"), "no action failed: {first:#?} {second:#?}");
    let count = |lines: &[Line], id: &str, f: &dyn Fn(&str) -> bool| {
        lines.iter().filter(|l| l.action_id == id && f(&l.phase)).count()
    };
    let mut in_flight = Vec::new();
    for id in ids {
        let (t1, t2) = (count(first, id, &is_terminal), count(second, id, &is_terminal));
        let (s1, s2) = (count(first, id, &|p| p == "start"), count(second, id, &|p| p == "start"));
        assert_eq!(t1 + t2, 1, "{id}: exactly one done/skipped across both runs (starts {s1} + {s2})");
        if t1 == 1 {
            assert_eq!(count(second, id, &|_| true), 0, "{id} was finished, yet the rerun touched it again");
        } else if s1 == 1 {
            in_flight.push(id.clone());
        }
        assert!(s1 + s2 <= 2, "{id} started {s1} + {s2} times");
        if s1 + s2 == 2 {
            assert!(t1 == 0 && s1 == 1, "{id}: only the action in flight at the kill may be started again");
        }
    }
    let unknown: Vec<&Line> = first.iter().chain(second).filter(|l| !ids.contains(&l.action_id)).collect();
    assert!(unknown.is_empty(), "actions the plan does not have: {unknown:?}");
    assert!((1..=workers).contains(&in_flight.len()), "1 to {workers} calls in flight at the kill: {in_flight:?}");
    in_flight
}

/// Every copy action has exactly one replica in eu-west-1, tagged with its id, and
/// there is no other replica.
fn check_replicas(state: &Value, plan: &[Value]) {
    let copies: BTreeSet<String> = plan.iter().filter(|a| a["op"] == "copy").map(|a| a["id"].to_string()).collect();
    let tagged: Vec<String> = state[WEST]["images"]
        .as_object()
        .unwrap()
        .values()
        .map(|i| i["tags"][ACTION_TAG].as_str().unwrap_or("untagged").to_string())
        .collect();
    assert_eq!(tagged.len(), copies.len(), "one replica per copy action: {tagged:?}");
    let distinct: BTreeSet<&String> = tagged.iter().collect();
    assert_eq!(distinct.len(), copies.len(), "each replica tagged with its own copy action: {tagged:?}");
    assert!(tagged.iter().all(|t| t.starts_with("<copy ")), "{tagged:?}");
}

/// What a mutating call changes: its action, region, resource and the permission or
/// tags it sets.
fn key(s: &Seen) -> String {
    let details: Vec<String> = s
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("LaunchPermission.") || k.starts_with("Tag."))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{} {} {} {}", s.action, s.region, s.target, details.join(" "))
}

/// The figures of one kill, for docs/reliability.md.
struct Figures {
    actions: usize,
    lost: usize,
    repeated: usize,
}

/// How the rerun after the kill names its plan.
#[derive(Clone, Copy, PartialEq)]
enum Rerun {
    /// With the same saved plan (`--plan plan.json`).
    SavedPlan,
    /// Without it: the plan the journal recorded is resumed.
    FromJournal,
}

/// Seeds moto, applies the saved plan through the proxy holding the answer to the
/// `n`-th `call` after moto applied it, kills the apply there, applies again without
/// faults, and checks everything (see the file's doc). `op` is the plan op in flight.
fn kill_and_resume(call: &'static str, n: u64, op: &str) -> Figures {
    kill_and_rerun(call, n, op, Rerun::SavedPlan, 1)
}

/// `kill_and_resume` with `workers` images worked on at once: the other workers' calls
/// may be in flight at the kill too (each then started again by the rerun, as the held
/// one is), and the rerun works on as many at once.
fn kill_and_rerun(call: &'static str, n: u64, op: &str, rerun: Rerun, workers: usize) -> Figures {
    let reference = reference();
    let s = Scenario::new(workers);
    let apply = ["apply", "--yes", "--journal", "apply.jsonl", "--plan", "plan.json"];
    let journal = s.dir.path().join("apply.jsonl");

    // The first apply, killed while moto's answer to the chosen call is held.
    s.proxy.arm(vec![Rule::nth(call, n, Fault::HoldAfterApply)]);
    let log = std::fs::File::create(s.dir.path().join("killed.log")).unwrap();
    let mut child = s.cli(&apply, &s.proxy.url).stdout(Stdio::null()).stderr(log).spawn().expect("amiwarden starts");
    if !s.proxy.wait_held(1, Duration::from_secs(60)) {
        let _ = child.kill();
        let status = child.wait().unwrap();
        let log = std::fs::read_to_string(s.dir.path().join("killed.log")).unwrap();
        panic!("the apply never made request {n} of {call} ({status}):\n{log}");
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the apply was killed, not finished: {status}");
    s.proxy.disarm();
    let first = lines(&journal);
    let last = first.last().expect("the killed apply journaled its actions").clone();
    if workers == 1 {
        assert_eq!(last.phase, "start", "the kill came while the call was in flight: {last:?}");
        assert_eq!(s.op_of(&last.action_id), op, "the kill landed in a {op}: {last:?}");
    }
    let ended_first = first.iter().filter(|l| is_terminal(&l.phase)).count();
    let held: Vec<Seen> = s.proxy.take();
    let held_call = held.iter().find(|x| x.fault.is_some()).unwrap().clone();
    assert_eq!((held_call.status, held_call.action.as_str()), (Some(200), call), "moto applied the held call");
    eprintln!(
        "--- {op}: killed holding {} ({}) after {ended_first} of {} actions ended",
        key(&held_call),
        last.action_id,
        s.plan.len()
    );

    // The rerun: same journal, no faults; the same saved plan, or the journal's.
    let again = match rerun {
        Rerun::SavedPlan => &apply[..],
        Rerun::FromJournal => &apply[..4],
    };
    let out = s.cli(again, &s.proxy.url).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "the rerun:\n{}", stderr(&out));
    if rerun == Rerun::FromJournal {
        assert!(stderr(&out).contains("resuming the plan in"), "{}", stderr(&out));
    }
    let r = report(&out);
    assert_eq!(r[2], 0, "nothing failed:\n{}", stderr(&out));
    assert_eq!(r[3], ended_first, "the rerun resumes exactly what the journal shows ended:\n{}", stderr(&out));
    assert_eq!(r[0] + r[1] + r[3], s.plan.len(), "{}", stderr(&out));
    let all = lines(&journal);
    let (first, second) = all.split_at(first.len());
    let ids: Vec<String> = s.plan.iter().map(|a| a["id"].as_str().unwrap().to_string()).collect();
    let in_flight = check_journal(&ids, first, second, workers);
    assert!(in_flight.iter().any(|id| s.op_of(id) == op), "a {op} was in flight at the kill: {in_flight:?}");
    if workers > 1 {
        eprintln!("--- {op}: {} call(s) in flight at the kill, each ended once by the rerun", in_flight.len());
    }
    let in_flight = if workers == 1 { in_flight[0].clone() } else { String::new() };
    if workers == 1 {
        assert_eq!(in_flight, last.action_id);
    }
    let resumed = second.iter().find(|l| l.action_id == in_flight && is_terminal(&l.phase));
    match resumed {
        // Which of several calls in flight moto applied is not known: the journal and
        // the final state say each ended once and right.
        None => assert!(workers > 1),
        Some(resumed) => check_resumed(resumed, op, call),
    }
    let seen: Vec<Seen> = held.into_iter().chain(s.proxy.take()).collect();
    check_calls(&s, &seen, &held_call, reference, workers, op)
}

/// How the rerun ended the one action in flight (moto had applied it).
fn check_resumed(resumed: &Line, op: &str, call: &str) {
    eprintln!("--- {op}: the rerun ended the action in flight: {} {}", resumed.phase, resumed.detail);
    match op {
        "deregister" | "delete_snapshot" => {
            assert_eq!(resumed.phase, "skipped", "{resumed:?}");
            assert!(resumed.detail.contains("no longer exists"), "{resumed:?}");
        }
        _ => assert_eq!(resumed.phase, "done", "{resumed:?}"),
    }
    match call {
        // The replica the held CopyImage made is found untagged and tagged now.
        "CopyImage" => assert!(resumed.detail.starts_with("copied "), "{resumed:?}"),
        // The replica is found tagged: nothing is called.
        "CreateTags" => assert!(resumed.detail.contains("already exists"), "{resumed:?}"),
        _ => {}
    }
}

/// The calls moto saw over both runs, and moto's final state.
fn check_calls(s: &Scenario, seen: &[Seen], held_call: &Seen, reference: &Value, workers: usize, op: &str) -> Figures {
    let journal = s.dir.path().join("apply.jsonl");
    let all = lines(&journal);
    let ids: Vec<String> = s.plan.iter().map(|a| a["id"].as_str().unwrap().to_string()).collect();

    // Counted at the emulator side, over both runs.
    let mut applied: BTreeMap<String, usize> = BTreeMap::new();
    let mut copies_sent: BTreeMap<String, usize> = BTreeMap::new();
    for x in seen.iter().filter(|x| x.forwarded) {
        if x.action == "CopyImage" {
            *copies_sent.entry(x.target.clone()).or_default() += 1;
        }
        if x.status == Some(200) && (ONCE_ONLY.contains(&x.action.as_str()) || SETS.contains(&x.action.as_str())) {
            *applied.entry(key(x)).or_default() += 1;
        }
    }
    assert!(copies_sent.values().all(|&c| c == 1), "one CopyImage per source reached moto: {copies_sent:?}");
    assert_eq!(copies_sent.len(), 4, "{copies_sent:?}");
    let twice: Vec<(&String, &usize)> = applied.iter().filter(|(_, n)| **n > 1).collect();
    let held_key = key(held_call);
    // A set call is sent again only for a call in flight at the kill: the held one, or
    // with several workers any of theirs.
    let allowed = |k: &String, n: usize| {
        n == 2 && (*k == held_key || workers > 1) && SETS.iter().any(|set| k.starts_with(&format!("{set} ")))
    };
    let repeated = twice.iter().filter(|(k, n)| !allowed(k, **n)).count();
    assert_eq!(repeated, 0, "applied twice by moto: {twice:?}");
    let resent = twice.len();

    // moto ends as an uninterrupted apply leaves it, and nothing is left to plan.
    let state = s.normalized();
    check_replicas(&state, &s.plan);
    assert_eq!(&state, reference, "the resumed apply leaves moto as an uninterrupted one does");
    let out = s.cli(&["plan", "--format", "json"], &s.moto.url).output().unwrap();
    assert!(out.status.success(), "plan:\n{}", stderr(&out));
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["actions"].as_array().map(Vec::len), Some(0), "nothing left to plan: {again:#}");

    let lost = ids.len() - all.iter().filter(|l| is_terminal(&l.phase)).count();
    eprintln!(
        "--- {op}: 1 kill, {} actions, {lost} lost, {repeated} repeated; set calls sent again for the action in \
         flight: {resent}; mutating calls applied by moto: {}",
        s.plan.len(),
        applied.values().sum::<usize>()
    );
    Figures { actions: s.plan.len(), lost, repeated }
}

#[test]
fn killed_during_unshares_resumes_with_nothing_lost_or_repeated() {
    // The second unshare: moto removed the permission, the apply never learned it.
    let f = kill_and_resume("ModifyImageAttribute", 1, "unshare");
    assert_eq!((f.actions, f.lost, f.repeated), (18, 0, 0));
}

#[test]
fn killed_during_copies_resumes_with_one_replica_per_copy() {
    // The second CopyImage: moto made the replica (untagged: the host tags it in a second
    // call); the rerun finds it by its description and tags it instead of copying again.
    let f = kill_and_resume("CopyImage", 1, "copy");
    assert_eq!((f.actions, f.lost, f.repeated), (18, 0, 0));
}

#[test]
fn killed_while_tagging_a_copy_resumes_with_one_replica_per_copy() {
    // The tagging of the second replica: moto tagged it; the rerun finds the tagged
    // replica and calls nothing more.
    let f = kill_and_resume("CreateTags", 1, "copy");
    assert_eq!((f.actions, f.lost, f.repeated), (18, 0, 0));
}

#[test]
fn killed_during_deregistrations_resumes_with_nothing_lost_or_repeated() {
    let f = kill_and_resume("DeregisterImage", 1, "deregister");
    assert_eq!((f.actions, f.lost, f.repeated), (18, 0, 0));
}

#[test]
fn killed_during_snapshot_deletions_resumes_with_nothing_lost_or_repeated() {
    let f = kill_and_resume("DeleteSnapshot", 1, "delete_snapshot");
    assert_eq!((f.actions, f.lost, f.repeated), (18, 0, 0));
}

#[test]
fn killed_during_deregistrations_resumes_the_journals_plan_without_the_saved_one() {
    // The rerun is a plain `apply`: it finds the interrupted plan in the journal.
    let f = kill_and_rerun("DeregisterImage", 1, "deregister", Rerun::FromJournal, 1);
    assert_eq!((f.actions, f.lost, f.repeated), (18, 0, 0));
}

#[test]
fn killed_while_eight_images_are_worked_on_at_once_resumes_with_nothing_lost_or_repeated() {
    // The resume tests of `resume.rs` with --concurrency 8, on the emulator: a kill in
    // the unshares, the copies and the deregistrations, with the other workers' calls in
    // flight or done; the rerun works on eight at once too.
    for (call, op) in [("ModifyImageAttribute", "unshare"), ("CopyImage", "copy"), ("DeregisterImage", "deregister")] {
        let f = kill_and_rerun(call, 1, op, Rerun::SavedPlan, 8);
        assert_eq!((f.actions, f.lost, f.repeated), (18, 0, 0), "{op}");
    }
}
