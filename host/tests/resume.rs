//! Crash-resume: `kill -9` in the middle of `amiwarden apply`, then run it again; the
//! plan is finished with no action lost and none repeated.
//!
//! What "repeated" means. The applier writes `start` to the journal (synced) before an
//! EC2 call and `done`/`skipped`/`failed` after it; the sim writes its state file between
//! the two. A crash can therefore land in three places for the in-flight action:
//! - before the call took effect: the state does not show it, the journal shows only
//!   `start`, the rerun makes the call: the action runs once;
//! - after the call took effect but before `done` was written: the state shows it, the
//!   journal shows only `start`, and the rerun makes the call *again*. This second call
//!   cannot be avoided by a journal (the write of `done` and the call are not atomic), so
//!   every call is idempotent instead: a tag, share or unshare is set semantics, a copy
//!   finds the earlier copy by its `amiwarden:action-id` tag (and the client token on
//!   EC2) instead of making a second one, a deregister or snapshot deletion of something
//!   already gone is `skipped`;
//! - after `done`: the rerun must not touch the action at all.
//!
//! So the checks are: every action of the plan ends with exactly one `done` or
//! `skipped` line across both runs; an action the first run finished has no line at all
//! in the second run (no second `start`); only an action whose `start` had no terminal
//! line may be started twice; every copied image has exactly one replica in each target
//! region; and the final state file is byte-for-byte (as JSON values) the state an
//! uninterrupted apply of the same plan leaves.
//!
//! The apply is slowed only by its size (about 900 actions over 300 images; the sim
//! rewrites its state file and the journal is synced twice per action), so the kill
//! lands mid-way without any test hook in the binary. Kill points are picked from the
//! plan itself (for example the middle of the copy phase), and each scenario asserts the
//! kill really landed where it was aimed.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ACCOUNT: &str = "111111111111";
const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
const AS_OF: &str = "2026-11-24";
/// Images in us-east-1. Every sixth is a golden image that replication copies to
/// eu-west-1 and retention keeps; every image is shared with an account the sharing
/// plugin revokes; odd ones ask to be shared with prod; old ones are deregistered with
/// their snapshots.
const IMAGES: usize = 300;

const POLICY: &str = r#"
[scope]
accounts = ["111111111111"]
regions = ["us-east-1", "eu-west-1"]

[guardrails]
allowed_principals = ["111111111111", "222222222222"]
copy_regions = ["eu-west-1"]
max_destructive = 100000
max_destructive_percent = 100.0

[[plugin]]
name = "retention"
source = "builtin:retention"
grants = ["deprecate", "disable", "deregister", "delete-snapshots", "retain"]

# Generous: a slow shared machine must not turn a plugin call into a timeout error
# (that would change a recomputed plan).
[plugin.limits]
time_ms = 10000
[plugin.config]
family = { tag = "family" }
keep_newest = 3
deprecate_after_days = 30
deregister_after_days = 180
delete_snapshots = true
exempt_tags = ["keep"]

[[plugin]]
name = "sharing"
source = "builtin:sharing"
grants = ["share", "unshare"]

[plugin.limits]
time_ms = 10000
[plugin.config]
share_tag = "share-with"
allowed = []
[plugin.config.groups]
prod = ["222222222222"]

[[plugin]]
name = "replication"
source = "builtin:replication"
grants = ["copy", "retain"]

[plugin.limits]
time_ms = 10000
[plugin.config]
source_regions = ["us-east-1"]
select = { tag = "family", name_regex = "^golden-" }
copy_tags = false
[plugin.config.targets.eu-west-1]
encrypted = false
"#;

fn state() -> Value {
    let mut images = Vec::new();
    let mut snapshots = Vec::new();
    for i in 0..IMAGES {
        let family = format!("f{}", i % 10);
        let day = time_of(i);
        let golden = i % 6 == 0;
        let mut tags = BTreeMap::from([("family".to_string(), family.clone())]);
        if golden {
            tags.insert("keep".into(), "true".into());
        }
        if i % 2 == 1 {
            tags.insert("share-with".into(), "prod".into());
        }
        let id = format!("ami-{:017x}", i + 1);
        let snap = format!("snap-{:017x}", i + 1);
        images.push(json!({
            "id": id,
            "name": if golden { format!("golden-{family}-{i}") } else { format!("app-{family}-{i}") },
            "creation_time": day,
            "launch_permissions": ["333333333333"],
            "tags": tags,
            "block_devices": [{"device_name": "/dev/xvda", "snapshot_id": snap, "size_gib": 8}],
        }));
        snapshots.push(json!({"id": snap, "size_gib": 8}));
    }
    json!({"version": 1, "accounts": {ACCOUNT: {"regions": {
        EAST: {"images": images, "snapshots": snapshots},
        WEST: {},
    }}}})
}

/// Creation times spread over 2025-01-01 .. 2026-08-20.
fn time_of(i: usize) -> String {
    let days = (i * 7) % 597;
    let (mut y, mut d) = (2025, days);
    if d >= 365 {
        y += 1;
        d -= 365;
    }
    let months = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut m = 0;
    while d >= months[m] {
        d -= months[m];
        m += 1;
    }
    format!("{y}-{:02}-{:02}T00:00:00Z", m + 1, d + 1)
}

fn cache_dir() -> String {
    concat!(env!("CARGO_TARGET_TMPDIR"), "/resume-cache").to_string()
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amiwarden"));
    cmd.current_dir(dir).args(args).arg("--cache-dir").arg(cache_dir()).arg("--as-of").arg(AS_OF);
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().expect("amiwarden runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn apply_args<'a>(state: &'a str, journal: &'a str, plan: Option<&'a str>) -> Vec<&'a str> {
    let mut args = vec!["apply", "--policy", "policy.toml", "--sim", state, "--yes", "--journal", journal];
    if let Some(plan) = plan {
        args.extend(["--plan", plan]);
    }
    args
}

/// A directory with the policy, the initial state and the saved plan.
struct Setup {
    dir: tempfile::TempDir,
    plan: Value,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
        std::fs::write(dir.path().join("initial.json"), serde_json::to_string_pretty(&state()).unwrap()).unwrap();
        let out = run(
            dir.path(),
            &["plan", "--policy", "policy.toml", "--sim", "initial.json", "--format", "json", "--out", "plan.json"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let plan: Value = serde_json::from_slice(&std::fs::read(dir.path().join("plan.json")).unwrap()).unwrap();
        Setup { dir, plan }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn actions(&self) -> &[Value] {
        self.plan["actions"].as_array().unwrap()
    }

    /// Index of the first action with `op`, and how many there are (they are contiguous).
    fn range(&self, op: &str) -> (usize, usize) {
        let idx: Vec<usize> =
            self.actions().iter().enumerate().filter(|(_, a)| a["op"] == op).map(|(i, _)| i).collect();
        assert!(!idx.is_empty(), "the plan has no `{op}` action");
        assert_eq!(idx.len(), idx[idx.len() - 1] - idx[0] + 1, "`{op}` actions are contiguous");
        (idx[0], idx.len())
    }

    fn copy_state(&self, name: &str) -> String {
        std::fs::copy(self.path("initial.json"), self.path(name)).unwrap();
        name.to_string()
    }

    /// The state an uninterrupted apply of the saved plan leaves.
    fn reference(&self) -> Value {
        let state = self.copy_state("reference.json");
        let out = run(self.dir.path(), &apply_args(&state, "reference.jsonl", Some("plan.json")));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let report = report_line(&out);
        assert_eq!(report.done + report.skipped, self.actions().len(), "{}", stderr(&out));
        read_state(&self.path(&state))
    }

    /// Starts an apply and kills it (SIGKILL) once the journal holds `kill_at` `done`
    /// lines. Returns the number of journal lines the killed run left.
    fn crash(&self, state: &str, journal: &str, plan: Option<&str>, kill_at: usize) -> usize {
        self.crash_with(state, journal, plan, kill_at, &[])
    }

    /// `crash` with more arguments for the killed apply.
    fn crash_with(&self, state: &str, journal: &str, plan: Option<&str>, kill_at: usize, extra: &[&str]) -> usize {
        let journal_path = self.path(journal);
        let mut args = apply_args(state, journal, plan);
        args.extend(extra);
        let mut child = command(self.dir.path(), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("amiwarden starts");
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let text = std::fs::read_to_string(&journal_path).unwrap_or_default();
            if text.matches("\"phase\":\"done\"").count() >= kill_at {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("apply finished ({status}) before {kill_at} actions were done: make the plan bigger");
            }
            assert!(Instant::now() < deadline, "apply made no progress for 300 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(!status.success(), "the apply was killed, not finished: {status}");
        let lines = lines(&journal_path);
        let done = lines.iter().filter(|l| l.phase == "done").count();
        assert!(done < self.actions().len(), "the kill came after the last action");
        eprintln!(
            "killed after {done} done of {} actions; the last journal line: {:?}",
            self.actions().len(),
            lines.last()
        );
        lines.len()
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A sim state file as EC2 would show it: whole (an apply that ended left no apply log
/// beside it) and without the log's bookkeeping (`log_seq`, which counts the changes one
/// run made and so differs between an interrupted apply and an uninterrupted one).
fn read_state(path: &Path) -> Value {
    let mut log = path.as_os_str().to_os_string();
    log.push(".log");
    assert!(!Path::new(&log).exists(), "an ended apply leaves no apply log beside {}", path.display());
    let mut state = read_json(path);
    state.as_object_mut().unwrap().remove("log_seq");
    state
}

#[derive(Debug, Clone)]
struct Line {
    plan_id: String,
    action_id: String,
    phase: String,
    detail: String,
}

/// The journal's lines; a torn line (from a crash in the middle of a write) is dropped,
/// and only the last line of a run may be torn.
fn lines(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap();
    let raw: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    for (n, l) in raw.iter().enumerate() {
        match serde_json::from_str::<Value>(l) {
            // The plan itself, recorded before its first action: not an action's line.
            Ok(v) if v["phase"] == "plan" => {}
            Ok(v) => out.push(Line {
                plan_id: v["plan_id"].as_str().unwrap().into(),
                action_id: v["action_id"].as_str().unwrap().into(),
                phase: v["phase"].as_str().unwrap().into(),
                detail: v["detail"].as_str().unwrap_or_default().into(),
            }),
            Err(e) => eprintln!("journal line {} is torn ({e}): {l}", n + 1),
        }
    }
    out
}

/// The numbers of `applied: D done, S skipped, F failed, R already done in an earlier run`.
#[derive(Debug)]
struct Report {
    done: usize,
    skipped: usize,
    failed: usize,
    resumed: usize,
}

fn report_line(out: &Output) -> Report {
    let text = stderr(out);
    let line = text.lines().find(|l| l.starts_with("applied: ")).unwrap_or_else(|| panic!("no report:\n{text}"));
    let n: Vec<usize> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    Report { done: n[0], skipped: n[1], failed: n[2], resumed: n[3] }
}

fn is_terminal(phase: &str) -> bool {
    phase == "done" || phase == "skipped"
}

/// The checks shared by every scenario; `first` holds the killed run's lines, `second`
/// the rerun's, `ids` the ids of the actions the (reference) plan has.
fn check_journal(ids: &[String], first: &[Line], second: &[Line], same_plan: bool) {
    check_journal_in_flight(ids, first, second, same_plan, 1);
}

/// `check_journal` for an apply that had up to `workers` calls in flight at the crash.
fn check_journal_in_flight(ids: &[String], first: &[Line], second: &[Line], same_plan: bool, workers: usize) {
    assert!(first.iter().chain(second).all(|l| l.phase != "failed"), "no action failed");
    let count = |lines: &[Line], id: &str, f: &dyn Fn(&str) -> bool| {
        lines.iter().filter(|l| l.action_id == id && f(&l.phase)).count()
    };
    let mut in_flight = Vec::new();
    for id in ids {
        let t1 = count(first, id, &is_terminal);
        let t2 = count(second, id, &is_terminal);
        let s1 = count(first, id, &|p| p == "start");
        let s2 = count(second, id, &|p| p == "start");
        assert!(t1 <= 1, "{id} finished {t1} times in the first run");
        if t1 == 1 {
            // Finished before the crash: the rerun leaves it alone entirely.
            assert_eq!(count(second, id, &|_| true), 0, "{id} was finished, yet the rerun touched it again");
        } else if s1 == 1 {
            // Started but not finished: the one action in flight when the process died.
            in_flight.push(id.clone());
        }
        if same_plan || (t1 == 0 && s1 == 0) {
            assert_eq!(t1 + t2, 1, "{id}: exactly one done/skipped across both runs (starts {s1} + {s2})");
        } else {
            // A fresh plan leaves out what the crashed run already did (even without
            // its `done` line); the final state comparison shows it took effect.
            assert!(t1 + t2 <= 1, "{id} finished twice");
        }
        assert!(s1 + s2 <= 2, "{id} started {s1} + {s2} times");
        if s1 + s2 == 2 {
            assert!(t1 == 0 && s1 == 1, "{id}: only the action in flight at the crash may be started again");
        }
    }
    let known: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let unknown: Vec<&Line> = first.iter().chain(second).filter(|l| !known.contains(l.action_id.as_str())).collect();
    assert!(unknown.is_empty(), "actions the uninterrupted plan does not have: {unknown:?}");
    assert!(in_flight.len() <= workers, "at most {workers} action(s) were in flight at the crash: {in_flight:?}");
    for id in &in_flight {
        eprintln!(
            "in flight at the crash: {id}; rerun lines {:?}",
            second.iter().filter(|l| &l.action_id == id).collect::<Vec<_>>()
        );
    }
}

/// Every copy action's source has exactly one replica in eu-west-1.
fn check_replicas(plan: &Value, state: &Value) {
    let sources: BTreeSet<&str> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["op"] == "copy")
        .map(|a| a["image_id"].as_str().unwrap())
        .collect();
    let mut replicas: BTreeMap<&str, usize> = BTreeMap::new();
    for image in state["accounts"][ACCOUNT]["regions"][WEST]["images"].as_array().unwrap() {
        let source = image["tags"]["amiwarden:source-image-id"].as_str().unwrap();
        *replicas.entry(source).or_default() += 1;
    }
    assert!(replicas.values().all(|&n| n == 1), "one replica per source: {replicas:?}");
    assert_eq!(replicas.keys().copied().collect::<BTreeSet<_>>(), sources);
}

fn ids(plan: &Value) -> Vec<String> {
    plan["actions"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect()
}

/// Cuts the journal back to just after the `start` line of the last copy the killed run
/// finished: exactly what a crash after CopyImage (and the state write) but before the
/// `done` line leaves. The rerun must find that copy instead of making a second one.
fn crash_after_a_copy_before_done(path: &Path) -> (String, usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let raw: Vec<&str> = text.lines().collect();
    let last_copy_done = raw
        .iter()
        .rposition(|l| l.contains("\"phase\":\"done\"") && l.contains("copied to"))
        .expect("the killed run finished a copy");
    let id = serde_json::from_str::<Value>(raw[last_copy_done]).unwrap()["action_id"].as_str().unwrap().to_string();
    let start = raw[..last_copy_done]
        .iter()
        .rposition(|l| l.contains(&id) && l.contains("\"phase\":\"start\""))
        .expect("its start line");
    let kept = raw[..=start].join("\n") + "\n";
    std::fs::write(path, kept).unwrap();
    // The split as `lines` counts: without the plan record.
    (id, raw[..=start].iter().filter(|l| !l.contains("\"phase\":\"plan\"")).count())
}

#[test]
fn a_killed_apply_of_a_saved_plan_finishes_on_rerun_with_nothing_lost_or_repeated() {
    let setup = Setup::new();
    let reference = setup.reference();
    let (copies_at, copies) = setup.range("copy");
    let (deregs_at, deregs) = setup.range("deregister");
    let (unshares_at, unshares) = setup.range("unshare");
    assert!(copies >= 40 && deregs >= 100, "a big enough plan: {copies} copies, {deregs} deregistrations");
    check_replicas(&setup.plan, &reference);
    let scenarios = [
        ("unshare", unshares_at + unshares / 2),
        ("copy", copies_at + copies / 2),
        ("deregister", deregs_at + deregs / 2),
    ];
    for (phase, kill_at) in scenarios {
        eprintln!("--- saved plan, kill in the {phase} phase");
        let state = setup.copy_state(&format!("crash-{phase}.json"));
        let journal = format!("crash-{phase}.jsonl");
        let mut split = setup.crash(&state, &journal, Some("plan.json"), kill_at);
        let mut redone_copy = None;
        if phase == "copy" {
            let (id, kept) = crash_after_a_copy_before_done(&setup.path(&journal));
            split = kept;
            redone_copy = Some(id);
        }
        let all_before = lines(&setup.path(&journal));
        let phases_done: BTreeSet<String> = all_before
            .iter()
            .filter(|l| l.phase == "done")
            .filter_map(|l| setup.actions().iter().find(|a| a["id"] == l.action_id.as_str()))
            .map(|a| a["op"].as_str().unwrap().to_string())
            .collect();
        assert!(phases_done.contains(phase), "the kill landed in the {phase} phase: {phases_done:?}");

        let out = run(setup.dir.path(), &apply_args(&state, &journal, Some("plan.json")));
        assert_eq!(out.status.code(), Some(0), "the rerun succeeds:\n{}", stderr(&out));
        let all = lines(&setup.path(&journal));
        assert!(all.iter().all(|l| l.plan_id == all[0].plan_id), "one plan id across both runs");
        let (first, second) = all.split_at(split.min(all.len()));
        let first_terminals = first.iter().filter(|l| is_terminal(&l.phase)).count();
        let report = report_line(&out);
        assert_eq!(report.failed, 0);
        assert_eq!(report.resumed, first_terminals, "the rerun resumes exactly what the journal shows finished");
        assert_eq!(report.done + report.skipped + report.resumed, setup.actions().len());
        check_journal(&ids(&setup.plan), first, second, true);
        if let Some(id) = redone_copy {
            let line = second.iter().find(|l| l.action_id == id && is_terminal(&l.phase)).unwrap();
            assert!(line.detail.contains("exists already"), "the copy was found, not made again: {line:?}");
        }
        let after = read_state(&setup.path(&state));
        check_replicas(&setup.plan, &after);
        assert_eq!(after, reference, "the resumed apply leaves the state an uninterrupted one does");

        // A third run has nothing left to do.
        let again = run(setup.dir.path(), &apply_args(&state, &journal, Some("plan.json")));
        assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
        let r = report_line(&again);
        assert_eq!((r.done, r.skipped, r.resumed), (0, 0, setup.actions().len()));
        assert_eq!(read_state(&setup.path(&state)), reference);
    }
}

/// Without `--plan` the rerun finds the interrupted plan in the journal (apply records
/// the whole plan before its first action) and finishes it, in every phase, including
/// the middle of the deregistrations, whose snapshots a fresh plan could no longer see.
#[test]
fn a_killed_apply_without_a_saved_plan_resumes_it_from_the_journal() {
    let setup = Setup::new();
    let reference = setup.reference();
    let (copies_at, copies) = setup.range("copy");
    let (shares_at, shares) = setup.range("share");
    let (deregisters_at, deregisters) = setup.range("deregister");
    for (phase, kill_at) in [
        ("share", shares_at + shares / 2),
        ("copy", copies_at + copies / 2),
        ("deregister", deregisters_at + deregisters / 2),
    ] {
        eprintln!("--- no saved plan, kill in the {phase} phase");
        let state = setup.copy_state(&format!("fresh-{phase}.json"));
        let journal = format!("fresh-{phase}.jsonl");
        let split = setup.crash(&state, &journal, None, kill_at);
        let out = run(setup.dir.path(), &apply_args(&state, &journal, None));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
        let all = lines(&setup.path(&journal));
        let (first, second) = all.split_at(split.min(all.len()));
        // The journal holds the interrupted plan: the rerun finishes it rather than
        // planning afresh (a fresh plan could not see the snapshots of images already
        // deregistered, and would leave them behind).
        assert!(second.iter().all(|l| l.plan_id == first[0].plan_id), "the rerun resumed the journal's plan");
        check_journal(&ids(&setup.plan), first, second, true);
        let after = read_state(&setup.path(&state));
        check_replicas(&setup.plan, &after);
        assert_eq!(after, reference, "the rerun converges to the state an uninterrupted apply leaves");
    }
}

/// With eight images worked on at once, a kill in any phase leaves at most eight calls in
/// flight; the rerun (concurrent too) finishes each action exactly once and ends in the
/// state an uninterrupted one-at-a-time apply leaves.
#[test]
fn a_killed_concurrent_apply_resumes_with_nothing_lost_or_repeated() {
    let setup = Setup::new();
    let reference = setup.reference();
    let (copies_at, copies) = setup.range("copy");
    let (shares_at, shares) = setup.range("share");
    let (deregisters_at, deregisters) = setup.range("deregister");
    let concurrent = ["--concurrency", "8"];
    for (phase, kill_at) in [
        ("share", shares_at + shares / 2),
        ("copy", copies_at + copies / 2),
        ("deregister", deregisters_at + deregisters / 2),
    ] {
        eprintln!("--- concurrent, kill in the {phase} phase");
        let state = setup.copy_state(&format!("concurrent-{phase}.json"));
        let journal = format!("concurrent-{phase}.jsonl");
        let split = setup.crash_with(&state, &journal, Some("plan.json"), kill_at, &concurrent);
        let mut args = apply_args(&state, &journal, Some("plan.json"));
        args.extend(concurrent);
        let out = run(setup.dir.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let all = lines(&setup.path(&journal));
        let (first, second) = all.split_at(split.min(all.len()));
        check_journal_in_flight(&ids(&setup.plan), first, second, true, 8);
        let after = read_state(&setup.path(&state));
        check_replicas(&setup.plan, &after);
        assert_eq!(after, reference, "the rerun converges to the state a one-at-a-time apply leaves");
    }
}

/// The narrowest window: the process dies after the first call took effect, before its
/// `done` line (and mid-way through writing the next line). The saved plan's
/// fingerprint no longer matches the inventory, but the journal shows the plan began, so
/// the rerun resumes it instead of refusing it as stale.
#[test]
fn a_crash_before_the_first_done_line_still_resumes_the_saved_plan() {
    let setup = Setup::new();
    let reference = setup.reference();
    let first = &setup.actions()[0];
    assert_eq!(first["op"], "unshare", "{first}");
    let plan_id = serde_json::from_str::<Value>(
        std::fs::read_to_string(setup.path("reference.jsonl")).unwrap().lines().next().unwrap(),
    )
    .unwrap()["plan_id"]
        .as_str()
        .unwrap()
        .to_string();

    // What the sim leaves after the first unshare and its state write, then a torn line.
    let mut state = state();
    let images = state["accounts"][ACCOUNT]["regions"][EAST]["images"].as_array_mut().unwrap();
    let image = images.iter_mut().find(|i| i["id"] == first["image_id"]).unwrap();
    assert_eq!(first["principal"], "333333333333", "{first}");
    image["launch_permissions"] = json!([]);
    std::fs::write(setup.path("crashed.json"), serde_json::to_string_pretty(&state).unwrap()).unwrap();
    // As an apply writes it: the plan with its binding, then the call's `start`.
    let plan_text = std::fs::read_to_string(setup.path("plan.json")).unwrap();
    let plan_json: Value = serde_json::from_str(&plan_text).unwrap();
    let backend = format!("sim:{}", std::fs::canonicalize(setup.path("crashed.json")).unwrap().display());
    let binding = json!({"backend": backend, "policy": plan_json["policy_fingerprint"]});
    let plan_line = json!({"plan_id": plan_id, "phase": "plan", "detail": plan_json.to_string(), "binding": binding});
    let start = json!({"plan_id": plan_id, "action_id": first["id"], "phase": "start"});
    std::fs::write(setup.path("crashed.jsonl"), format!("{plan_line}\n{start}\n{{\"plan_id\":\"plan-")).unwrap();

    let out = run(setup.dir.path(), &apply_args("crashed.json", "crashed.jsonl", Some("plan.json")));
    assert_eq!(out.status.code(), Some(0), "the saved plan is resumed, not refused:\n{}", stderr(&out));
    let r = report_line(&out);
    assert_eq!((r.done + r.skipped, r.resumed), (setup.actions().len(), 0));
    assert_eq!(read_state(&setup.path("crashed.json")), reference);
    // The torn line was ended, so every line the rerun wrote is readable.
    let all = lines(&setup.path("crashed.jsonl"));
    assert_eq!(all.len(), 1 + setup.reference_lines());
    check_journal(&ids(&setup.plan), &all[..1], &all[1..], true);
}

impl Setup {
    fn reference_lines(&self) -> usize {
        lines(&self.path("reference.jsonl")).len()
    }
}
