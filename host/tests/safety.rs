//! What a hostile user, input file or crash would try against `amiwarden apply`, each
//! refused or made right: edited and stopped saved plans, journals from elsewhere,
//! failures that must not wedge later runs, crashes between a call and its journal line,
//! two applies at once, duplicate ids, terminal escapes and silent drops.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const AS_OF: &str = "2026-11-24";

/// web-1 and web-2 are old enough to deregister (retention keeps the newest, web-3);
/// keep-1 is exempt; web-1 is shared with an account the sharing plugin revokes.
/// 333333333333 is outside the policy's scope.
fn state() -> Value {
    let image = |id: &str, name: &str, created: &str, tags: Value| {
        json!({"id": id, "name": name, "creation_time": created, "tags": tags,
               "block_devices": [{"device_name": "/dev/xvda", "snapshot_id": id.replace("ami-", "snap-"), "size_gib": 8}]})
    };
    let mut web1 = image("ami-0aaaaaaaaaaaaaaa1", "web-1", "2026-01-01T00:00:00Z", json!({"family": "web"}));
    web1["launch_permissions"] = json!(["999999999999"]);
    let images = vec![
        web1,
        image("ami-0aaaaaaaaaaaaaaa2", "web-2", "2026-06-01T00:00:00Z", json!({"family": "web"})),
        image("ami-0aaaaaaaaaaaaaaa3", "web-3", "2026-11-01T00:00:00Z", json!({"family": "web"})),
        image("ami-0aaaaaaaaaaaaaaa4", "keep-1", "2025-01-01T00:00:00Z", json!({"family": "web", "keep": "true"})),
    ];
    let snaps: Vec<Value> =
        images.iter().map(|i| json!({"id": i["block_devices"][0]["snapshot_id"], "size_gib": 8})).collect();
    let other = image("ami-0ccccccccccccccc1", "theirs", "2025-01-01T00:00:00Z", json!({"family": "web"}));
    json!({"version": 1, "accounts": {
        "111111111111": {"regions": {"us-east-1": {"images": images, "snapshots": snaps}}},
        "333333333333": {"regions": {"us-east-1": {"images": [other], "snapshots": [{"id": "snap-0ccccccccccccccc1", "size_gib": 8}]}}}
    }})
}

const POLICY: &str = r#"
[scope]
accounts = ["111111111111"]
regions = ["us-east-1", "eu-west-1", "us-west-2"]

[guardrails]
copy_regions = ["eu-west-1"]
max_destructive = 4
max_destructive_percent = 100.0

[[plugin]]
name = "retention"
source = "builtin:retention"
grants = ["deprecate", "disable", "deregister", "delete-snapshots", "retain"]
[plugin.config]
family = { tag = "family" }
keep_newest = 1
deprecate_after_days = 30
deregister_after_days = 90
delete_snapshots = true
exempt_tags = ["keep"]

[[plugin]]
name = "sharing"
source = "builtin:sharing"
grants = ["share", "unshare"]
[plugin.config]
allowed = []

[[plugin]]
name = "replication"
source = "builtin:replication"
grants = ["copy"]
[plugin.config]
source_regions = ["us-east-1"]
select = { tag = "replicate" }
[plugin.config.targets.eu-west-1]
encrypted = false
"#;

fn amiwarden(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().expect("amiwarden runs")
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amiwarden"));
    cmd.current_dir(dir)
        .args(args)
        .arg("--cache-dir")
        .arg(concat!(env!("CARGO_TARGET_TMPDIR"), "/safety-cache"))
        .stdin(Stdio::null());
    cmd
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn setup(policy: &str, state: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_json(&dir.path().join("state.json"), state);
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    dir
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn plan_args<'a>(state: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    [&["plan", "--policy", "policy.toml", "--sim", state, "--as-of", AS_OF][..], extra].concat()
}

fn apply_args<'a>(state: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    [&["apply", "--policy", "policy.toml", "--sim", state, "--as-of", AS_OF, "--yes"][..], extra].concat()
}

/// A planned action as `amiwarden plan` writes it, with the id the host would give it.
fn action(account: &str, image: &str, op: Value, plugin: &str) -> Value {
    let op: amiwarden::plan::Op = serde_json::from_value(op).unwrap();
    let id = amiwarden::plan::PlannedAction::id_for(account, "us-east-1", image, &op);
    let mut a = serde_json::to_value(amiwarden::plan::PlannedAction {
        id,
        location: amiwarden::model::Location { account: account.into(), region: "us-east-1".into() }.into(),
        image_id: image.into(),
        image_name: "x".into(),
        op,
        plugins: [plugin.to_string()].into(),
        reasons: vec![format!("{plugin}: edited in")].into(),
        monthly_cost_delta: 0,
        one_time_cost: 0,
    })
    .unwrap();
    a["image_name"] = json!("edited");
    a
}

#[test]
fn a_saved_plan_cannot_do_what_the_policy_would_not_plan() {
    let dir = setup(POLICY, &state());
    let out = amiwarden(dir.path(), &plan_args("state.json", &["--out", "plan.json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let saved = read_json(&dir.path().join("plan.json"));
    let destructive = saved["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| matches!(a["op"].as_str(), Some("deregister" | "delete_snapshot" | "disable")));
    assert_eq!(destructive.count(), 4, "the fixture plans exactly max_destructive destructive actions");
    let (web3, keep) = ("ami-0aaaaaaaaaaaaaaa3", "ami-0aaaaaaaaaaaaaaa4");
    let rows: Vec<(&str, Vec<Value>, i32, &str)> = vec![
        (
            "a_saved_plan_cannot_share_publicly_when_the_policy_forbids_it",
            vec![action("111111111111", web3, json!({"op": "share", "principal": "public"}), "sharing")],
            3,
            "guardrails.allow_public is false",
        ),
        (
            "a_saved_plan_cannot_share_with_a_principal_off_the_allow_list",
            vec![action("111111111111", web3, json!({"op": "share", "principal": "444444444444"}), "sharing")],
            3,
            "444444444444 is not on guardrails.allowed_principals",
        ),
        (
            "a_saved_plan_cannot_copy_outside_the_copy_regions",
            vec![action(
                "111111111111",
                web3,
                json!({"op": "copy", "request": {"region": "us-west-2"}}),
                "replication",
            )],
            3,
            "us-west-2 is not on guardrails.copy_regions",
        ),
        (
            "a_saved_plan_cannot_deregister_an_exempt_image",
            vec![action("111111111111", keep, json!({"op": "deregister"}), "retention")],
            // Within the blast radius once web-1's snapshot deletion is taken out below.
            2,
            "the policy does not plan it",
        ),
        (
            "a_saved_plan_cannot_reach_outside_the_scope",
            vec![action("333333333333", "ami-0ccccccccccccccc1", json!({"op": "deregister"}), "retention")],
            3,
            "333333333333/us-east-1 is outside the policy's scope",
        ),
        (
            "a_saved_plan_cannot_exceed_the_blast_radius",
            vec![
                action("111111111111", web3, json!({"op": "deregister"}), "retention"),
                action(
                    "111111111111",
                    web3,
                    json!({"op": "delete_snapshot", "snapshot_id": "snap-0aaaaaaaaaaaaaaa3"}),
                    "retention",
                ),
            ],
            3,
            "guardrails.max_destructive",
        ),
        (
            "a_saved_plan_cannot_grant_a_plugin_what_the_policy_does_not",
            vec![action("111111111111", web3, json!({"op": "tag", "tags": {"team": "x"}}), "sharing")],
            3,
            "does not grant `sharing` the `tag` action",
        ),
    ];
    for (name, added, code, needle) in rows {
        let mut edited = saved.clone();
        let actions = edited["actions"].as_array_mut().unwrap();
        if name.contains("exempt") {
            actions.retain(|a| a["op"] != "delete_snapshot" || a["image_id"] != "ami-0aaaaaaaaaaaaaaa1");
        }
        actions.extend(added);
        write_json(&dir.path().join("edited.json"), &edited);
        let before = std::fs::read(dir.path().join("state.json")).unwrap();
        let out = amiwarden(dir.path(), &apply_args("state.json", &["--plan", "edited.json"]));
        assert_eq!(out.status.code(), Some(code), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{name}: {}", stderr(&out));
        assert_eq!(std::fs::read(dir.path().join("state.json")).unwrap(), before, "{name}: nothing changed");
    }
    // The file as written is applied.
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--plan", "plan.json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_plan_stopped_by_a_guardrail_is_written_for_reading_but_never_applied() {
    let dir = setup(&POLICY.replace("max_destructive = 4", "max_destructive = 1"), &state());
    let out = amiwarden(dir.path(), &plan_args("state.json", &["--out", "plan.json"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot be applied"), "{}", stderr(&out));
    let mut plan = read_json(&dir.path().join("plan.json"));
    assert!(plan["stopped"].as_str().unwrap().contains("max_destructive"), "{plan}");
    let before = std::fs::read(dir.path().join("state.json")).unwrap();
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--plan", "plan.json"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // Taking the mark out does not help: the plan is checked again.
    plan.as_object_mut().unwrap().remove("stopped");
    write_json(&dir.path().join("plan.json"), &plan);
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--plan", "plan.json"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.path().join("state.json")).unwrap(), before);
}

#[test]
fn a_saved_plan_made_under_another_policy_or_for_a_later_date_is_refused() {
    let dir = setup(POLICY, &state());
    let out = amiwarden(dir.path(), &plan_args("state.json", &["--out", "plan.json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::write(dir.path().join("policy.toml"), POLICY.replace("keep_newest = 1", "keep_newest = 2")).unwrap();
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--plan", "plan.json"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("another policy"), "{}", stderr(&out));

    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    let later = ["--as-of", "2027-06-01", "--out", "later.json"];
    let out = amiwarden(
        dir.path(),
        &["plan", "--policy", "policy.toml", "--sim", "state.json"].into_iter().chain(later).collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--plan", "later.json"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("later than now"), "{}", stderr(&out));
}

#[test]
fn an_apply_to_ec2_as_of_a_later_date_is_refused_before_any_call() {
    // An image launched yesterday would look idle two months from now: on EC2 the
    // future is previewed, never applied. Refused before a client is even made, so the
    // endpoint (not loopback, never contacted) does not matter.
    let dir = setup(POLICY, &state());
    let endpoint = ["--aws", "--endpoint-url", "https://ec2.us-east-1.amazonaws.com"];
    let args: Vec<&str> =
        ["apply", "--policy", "policy.toml", "--as-of", "2999-01-01", "--yes"].into_iter().chain(endpoint).collect();
    let out = amiwarden(dir.path(), &args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--as-of 2999-01-01T00:00:00Z is later than now"), "{}", stderr(&out));
    // The sim keeps its clock wherever the run puts it.
    let sim = ["apply", "--policy", "policy.toml", "--sim", "state.json", "--as-of", "2999-01-01", "--yes"];
    let out = amiwarden(dir.path(), &sim);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Applies on `state.json` and cuts the journal back to its plan line and the `start`
/// of the first action: an apply killed right after its first call began.
fn interrupted(dir: &Path, journal: &str) -> Value {
    let out = amiwarden(dir, &apply_args("state.json", &["--journal", journal]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.join(journal)).unwrap();
    let kept: Vec<&str> = text.lines().take(2).collect();
    assert!(kept[1].contains("\"start\""), "{kept:?}");
    std::fs::write(dir.join(journal), kept.join("\n") + "\n").unwrap();
    serde_json::from_str(kept[0]).unwrap()
}

#[test]
fn a_journal_from_another_state_or_policy_is_refused() {
    let dir = setup(POLICY, &state());
    let plan_line = interrupted(dir.path(), "j.jsonl");
    assert!(plan_line["binding"]["backend"].as_str().unwrap().ends_with("state.json"), "{plan_line}");
    // Another state, and a policy with nothing in it that could stop anything.
    write_json(&dir.path().join("other.json"), &state());
    let permissive = POLICY.replace("max_destructive = 4", "max_destructive = 0");
    std::fs::write(dir.path().join("other.toml"), permissive).unwrap();
    let before = std::fs::read(dir.path().join("other.json")).unwrap();
    for (policy, state) in [("other.toml", "other.json"), ("policy.toml", "other.json"), ("other.toml", "state.json")] {
        let out = amiwarden(
            dir.path(),
            &["apply", "--policy", policy, "--sim", state, "--as-of", AS_OF, "--yes", "--journal", "j.jsonl"],
        );
        assert_eq!(out.status.code(), Some(2), "{policy} {state}: {}", stderr(&out));
        assert!(stderr(&out).contains("j.jsonl") && stderr(&out).contains("not resumed here"), "{}", stderr(&out));
    }
    assert_eq!(std::fs::read(dir.path().join("other.json")).unwrap(), before);
}

#[test]
fn a_resumed_plan_holds_a_deregistration_the_policy_no_longer_plans() {
    // The plan deregisters web-1 and web-2 (keep_newest = 1 keeps web-3). While the
    // apply lay interrupted, someone deregistered web-3: web-2 is the family's newest now,
    // and retention keeps it by proposing nothing for it (no `retain` to re-ask). The
    // same for a journal's own plan and for a saved plan resumed.
    for saved in [false, true] {
        let dir = setup(POLICY, &state());
        let resume: Vec<&str> = if saved {
            let out = amiwarden(dir.path(), &plan_args("state.json", &["--out", "plan.json"]));
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            vec!["--journal", "j.jsonl", "--plan", "plan.json"]
        } else {
            vec!["--journal", "j.jsonl"]
        };
        let out = amiwarden(dir.path(), &apply_args("state.json", &resume));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = std::fs::read_to_string(dir.path().join("j.jsonl")).unwrap();
        let kept: Vec<&str> = text.lines().take(2).collect();
        assert!(kept[1].contains("\"start\""), "{kept:?}");
        std::fs::write(dir.path().join("j.jsonl"), kept.join("\n") + "\n").unwrap();
        let mut s = state();
        let region = &mut s["accounts"]["111111111111"]["regions"]["us-east-1"];
        region["images"].as_array_mut().unwrap().retain(|i| i["id"] != "ami-0aaaaaaaaaaaaaaa3");
        region["snapshots"].as_array_mut().unwrap().retain(|i| i["id"] != "snap-0aaaaaaaaaaaaaaa3");
        write_json(&dir.path().join("state.json"), &s);

        let out = amiwarden(dir.path(), &apply_args("state.json", &resume));
        assert!(stderr(&out).contains("resuming") || saved, "{}", stderr(&out));
        let after = read_json(&dir.path().join("state.json"));
        let region = &after["accounts"]["111111111111"]["regions"]["us-east-1"];
        let ids = |what: &str| -> Vec<String> {
            region[what].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
        };
        assert!(ids("images").contains(&"ami-0aaaaaaaaaaaaaaa2".into()), "{saved}: web-2 is kept: {:?}", ids("images"));
        assert!(ids("snapshots").contains(&"snap-0aaaaaaaaaaaaaaa2".into()), "{saved}: with its snapshot");
        assert!(!ids("images").contains(&"ami-0aaaaaaaaaaaaaaa1".into()), "{saved}: web-1 still goes");
        assert!(!ids("snapshots").contains(&"snap-0aaaaaaaaaaaaaaa1".into()), "{saved}: with its snapshot");
        let text = stderr(&out);
        assert!(
            text.contains("the policy no longer plans to deregister it on the inventory of now"),
            "{saved}: {text}"
        );
    }
}

#[test]
fn a_failed_action_is_final_and_the_next_run_plans_afresh() {
    let mut s = state();
    let region = &mut s["accounts"]["111111111111"]["regions"]["us-east-1"];
    region["block_public_access"] = json!(true);
    region["images"][2]["tags"]["share-with"] = json!("everyone");
    let policy = POLICY
        .replace("max_destructive = 4", "max_destructive = 4\nallow_public = true\nallowed_principals = [\"public\"]")
        .replace(
            "allowed = []",
            "allowed = []\nallow_public = true\nshare_tag = \"share-with\"\ngroups = { everyone = [\"public\"] }",
        );
    let dir = setup(&policy, &s);
    let first = amiwarden(dir.path(), &apply_args("state.json", &[]));
    assert_eq!(first.status.code(), Some(1), "the public share fails: {}", stderr(&first));
    assert!(stderr(&first).contains("1 failed"), "{}", stderr(&first));
    // Not "interrupted": the next run plans again (the share is due again, and fails again).
    let second = amiwarden(dir.path(), &apply_args("state.json", &[]));
    assert!(!stderr(&second).contains("resuming"), "{}", stderr(&second));
    assert!(stderr(&second).contains("1 failed"), "{}", stderr(&second));
    // Once the cause is gone the next run does it.
    let mut fixed = read_json(&dir.path().join("state.json"));
    fixed["accounts"]["111111111111"]["regions"]["us-east-1"]["block_public_access"] = json!(false);
    write_json(&dir.path().join("state.json"), &fixed);
    let third = amiwarden(dir.path(), &apply_args("state.json", &[]));
    assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));
    let after = read_json(&dir.path().join("state.json"));
    let images = after["accounts"]["111111111111"]["regions"]["us-east-1"]["images"].as_array().unwrap();
    let web3 = images.iter().find(|i| i["id"] == "ami-0aaaaaaaaaaaaaaa3").unwrap();
    assert_eq!(web3["launch_permissions"], json!(["public"]));
}

#[test]
fn a_crash_between_a_deregistration_and_its_journal_line_still_deletes_its_snapshots() {
    let dir = setup(POLICY, &state());
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--journal", "j.jsonl"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let done = read_json(&dir.path().join("state.json"));
    // The journal cut right after the first deregistration's `start` line; the state as
    // the sim left it once that call took effect.
    let text = std::fs::read_to_string(dir.path().join("j.jsonl")).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let plan: Value = serde_json::from_str(lines[0]["detail"].as_str().unwrap()).unwrap();
    let dereg = plan["actions"].as_array().unwrap().iter().find(|a| a["op"] == "deregister").unwrap();
    let cut = lines.iter().position(|l| l["action_id"] == dereg["id"] && l["phase"] == "start").unwrap();
    let kept: Vec<String> = lines[..=cut].iter().map(Value::to_string).collect();
    std::fs::write(dir.path().join("j.jsonl"), kept.join("\n") + "\n").unwrap();
    let mut crashed = done.clone();
    let region = &mut crashed["accounts"]["111111111111"]["regions"]["us-east-1"];
    // Everything after the deregistration undone: every snapshot is back.
    region["snapshots"] = state()["accounts"]["111111111111"]["regions"]["us-east-1"]["snapshots"].clone();
    let images = region["images"].as_array().unwrap().clone();
    let gone = dereg["image_id"].as_str().unwrap();
    let mut restored: Vec<Value> = state()["accounts"]["111111111111"]["regions"]["us-east-1"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"] != gone && !images.iter().any(|j| j["id"] == i["id"]))
        .cloned()
        .collect();
    restored.extend(images);
    region["images"] = json!(restored);
    write_json(&dir.path().join("state.json"), &crashed);

    let out = amiwarden(dir.path(), &apply_args("state.json", &["--journal", "j.jsonl"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    // The preview shows what is left: the unshare ended before the crash.
    assert!(plan["actions"].as_array().unwrap().iter().any(|a| a["op"] == "unshare"), "{plan}");
    let total = plan["actions"].as_array().unwrap().len();
    let ended = lines[..cut].iter().filter(|l| l["phase"] == "done").count();
    let says = format!("{ended} of its {total} action(s) ended in the interrupted run; the {} left:", total - ended);
    assert!(stderr(&out).contains(&says), "{says}\n{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("unshare"), "{}", String::from_utf8_lossy(&out.stdout));
    let after = read_json(&dir.path().join("state.json"));
    let snaps: Vec<&str> = after["accounts"]["111111111111"]["regions"]["us-east-1"]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(!snaps.contains(&gone.replace("ami-", "snap-").as_str()), "the orphan is deleted: {snaps:?}");
    assert_eq!(
        after["accounts"]["111111111111"]["regions"]["us-east-1"]["snapshots"],
        done["accounts"]["111111111111"]["regions"]["us-east-1"]["snapshots"]
    );
}

/// A synthetic org large enough that an apply takes a few seconds.
fn big(dir: &Path) {
    let out = amiwarden(dir, &["synth", "--images", "300", "--out", "big.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let policy = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/bench/policy.toml")).unwrap();
    std::fs::write(dir.join("big.toml"), policy).unwrap();
}

#[test]
fn two_applies_on_one_state_or_journal_cannot_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    big(dir.path());
    let apply = |state: &str, journal: &str| {
        vec!["apply", "--policy", "big.toml", "--sim", state, "--as-of", AS_OF, "--yes", "--journal", journal]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let args = apply("big.json", "a.jsonl");
    let mut first = command(dir.path(), &args.iter().map(String::as_str).collect::<Vec<_>>())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(dir.path().join("a.jsonl")).unwrap_or_default().lines().count() < 3 {
        assert!(Instant::now() < deadline, "the first apply never started");
        assert!(first.try_wait().unwrap().is_none(), "the first apply ended before the test could race it");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::copy(dir.path().join("big.json"), dir.path().join("copy.json")).unwrap();
    for (state, journal, locked) in [("big.json", "b.jsonl", "big.json.lock"), ("copy.json", "a.jsonl", "a.jsonl.lock")]
    {
        let started = Instant::now();
        let args = apply(state, journal);
        let out = amiwarden(dir.path(), &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let msg = stderr(&out);
        assert!(msg.contains(&format!("pid {}", first.id())) && msg.contains(locked), "{msg}");
        assert!(started.elapsed() < Duration::from_secs(60), "refused at once, not after waiting");
    }
    assert!(first.try_wait().unwrap().is_none(), "the race happened while the first apply ran");
    assert!(first.wait().unwrap().success());
    // Once it is over, the state is free again and already converged.
    let args = apply("big.json", "c.jsonl");
    let out = amiwarden(dir.path(), &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn the_same_image_id_in_two_accounts_is_refused_with_exit_2() {
    let mut s = state();
    s["accounts"]["333333333333"]["regions"]["us-east-1"]["images"][0]["id"] = json!("ami-0aaaaaaaaaaaaaaa1");
    let dir = setup(POLICY, &s);
    let out = amiwarden(dir.path(), &plan_args("state.json", &[]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(
        msg.contains("state.json") && msg.contains("ami-0aaaaaaaaaaaaaaa1") && msg.contains("333333333333"),
        "{msg}"
    );
}

#[test]
fn escape_sequences_in_names_never_reach_the_terminal_raw() {
    let mut s = state();
    s["accounts"]["111111111111"]["regions"]["us-east-1"]["images"][0]["name"] =
        json!("web\u{1b}[2K\u{1b}[1Ahidden\u{202e}");
    let dir = setup(POLICY, &s);
    let out = amiwarden(dir.path(), &plan_args("state.json", &[]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
    let text = String::from_utf8_lossy(&all);
    assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}'), "{text}");
    assert!(text.contains("web\\u{1b}[2K"), "{text}");
}

#[test]
fn nothing_is_silently_dropped_from_the_command_line() {
    let dir = setup(POLICY, &state());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (plan_args("state.json", &["--regions", "us-east1"]), "not a region name"),
        (plan_args("state.json", &["--regions", "ap-south-1"]), "only narrows the scope"),
    ];
    for (args, needle) in cases {
        let out = amiwarden(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    let truncated: String = POLICY.lines().take_while(|l| !l.starts_with("[[plugin]]")).collect::<Vec<_>>().join("\n");
    std::fs::write(dir.path().join("policy.toml"), truncated).unwrap();
    let out = amiwarden(dir.path(), &plan_args("state.json", &[]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no enabled [[plugin]]"), "{}", stderr(&out));
}

/// web-1 (which the policy deregisters) under EC2's deregistration protection.
fn protected() -> Value {
    let mut s = state();
    s["accounts"]["111111111111"]["regions"]["us-east-1"]["images"][0]["deregistration_protection"] =
        json!("enabled-with-cooldown");
    s
}

#[test]
fn deregistration_protection_is_respected_on_a_fresh_plan_a_saved_plan_and_a_resumed_journal() {
    // A fresh plan refuses it, naming the protection, and keeps its snapshot.
    let dir = setup(POLICY, &protected());
    let out = amiwarden(dir.path(), &plan_args("state.json", &["--format", "json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let destroys = |plan: &Value, id: &str| {
        plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["image_id"] == id && (a["op"] == "deregister" || a["op"] == "delete_snapshot"))
    };
    assert!(!destroys(&plan, "ami-0aaaaaaaaaaaaaaa1"), "{plan:#}");
    assert!(destroys(&plan, "ami-0aaaaaaaaaaaaaaa2"), "the unprotected image still goes");
    let refusal =
        plan["refused"].as_array().unwrap().iter().find(|r| r["image_id"] == "ami-0aaaaaaaaaaaaaaa1").unwrap();
    assert!(refusal["reason"].as_str().unwrap().contains("deregistration protection is on (enabled-with-cooldown)"));
    let out = amiwarden(dir.path(), &apply_args("state.json", &[]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after = read_json(&dir.path().join("state.json"));
    let region = &after["accounts"]["111111111111"]["regions"]["us-east-1"];
    assert!(region["images"].as_array().unwrap().iter().any(|i| i["id"] == "ami-0aaaaaaaaaaaaaaa1"));
    assert!(region["snapshots"].as_array().unwrap().iter().any(|s| s["id"] == "snap-0aaaaaaaaaaaaaaa1"));

    // A plan saved before the protection was turned on is refused before any call.
    let dir = setup(POLICY, &state());
    let out = amiwarden(dir.path(), &plan_args("state.json", &["--out", "plan.json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    write_json(&dir.path().join("state.json"), &protected());
    let before = std::fs::read(dir.path().join("state.json")).unwrap();
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--plan", "plan.json"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.path().join("state.json")).unwrap(), before);

    // A journal whose plan was recorded before the protection was turned on (a crash
    // before the first call) resumes into a guardrail stop, naming it, before any call.
    let dir = setup(POLICY, &state());
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--journal", "j.jsonl"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("j.jsonl")).unwrap();
    std::fs::write(dir.path().join("j.jsonl"), format!("{}\n", text.lines().next().unwrap())).unwrap();
    write_json(&dir.path().join("state.json"), &protected());
    let before = std::fs::read(dir.path().join("state.json")).unwrap();
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--journal", "j.jsonl"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("deregistration protection is on for ami-0aaaaaaaaaaaaaaa1"), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.path().join("state.json")).unwrap(), before);
}

/// `state()` with Recycle Bin rules in its region: `image_days` for images and
/// `snapshot_days` for snapshots (none when 0), and web-1 shared with an account the
/// guardrails allow (the sharing plugin still revokes it).
fn binned(image_days: u32, snapshot_days: u32) -> Value {
    let mut s = state();
    let region = &mut s["accounts"]["111111111111"]["regions"]["us-east-1"];
    let mut rules = Vec::new();
    for (resource, days) in [("image", image_days), ("snapshot", snapshot_days)] {
        if days > 0 {
            rules.push(json!({"id": format!("rule-{resource}"), "resource": resource, "retention_days": days}));
        }
    }
    region["recycle_bin_rules"] = json!(rules);
    s
}

fn bin_policy() -> String {
    POLICY.replace(
        "max_destructive = 4",
        "max_destructive = 4\nrecycle_bin_days = 7\nallowed_principals = [\"999999999999\"]",
    )
}

fn ops_on(plan: &Value, op: &str) -> Vec<String> {
    plan["actions"].as_array().unwrap().iter().filter(|a| a["op"] == op).map(|a| a["image_id"].to_string()).collect()
}

#[test]
fn the_recycle_bin_guardrail_holds_on_a_fresh_plan_and_a_resumed_journal() {
    // No rule: nothing is deregistered, each refusal names the guardrail.
    let dir = setup(&bin_policy(), &binned(0, 0));
    let out = amiwarden(dir.path(), &plan_args("state.json", &["--format", "json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(ops_on(&plan, "deregister").is_empty() && ops_on(&plan, "delete_snapshot").is_empty(), "{plan:#}");
    let reasons: Vec<&str> = plan["refused"].as_array().unwrap().iter().filter_map(|r| r["reason"].as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("no Recycle Bin retention rule would keep the image")), "{reasons:?}");

    // A rule too short for images: refused, naming both numbers.
    let dir = setup(&bin_policy(), &binned(3, 30));
    let out = amiwarden(dir.path(), &plan_args("state.json", &["--format", "json"]));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(ops_on(&plan, "deregister").is_empty(), "{plan:#}");
    assert!(plan.to_string().contains("would keep the image 3 day(s), under guardrails.recycle_bin_days = 7"));

    // Images kept, snapshots not: the images go, their snapshots stay, and the plan says why.
    let dir = setup(&bin_policy(), &binned(7, 0));
    let out = amiwarden(dir.path(), &plan_args("state.json", &["--format", "json"]));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ops_on(&plan, "deregister").len(), 2, "{plan:#}");
    assert!(ops_on(&plan, "delete_snapshot").is_empty(), "{plan:#}");
    assert!(plan.to_string().contains("its snapshot is kept: no Recycle Bin retention rule would keep the snapshot"));

    // Both kept: the whole plan, and the apply puts both in the bin.
    let dir = setup(&bin_policy(), &binned(30, 30));
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--journal", "j.jsonl"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after = read_json(&dir.path().join("state.json"));
    let bin = &after["accounts"]["111111111111"]["regions"]["us-east-1"]["recycle_bin"];
    assert_eq!(bin["images"].as_array().unwrap().len(), 2, "{bin:#}");
    assert_eq!(bin["snapshots"].as_array().unwrap().len(), 2, "{bin:#}");

    // A journal whose plan was recorded while the rules were there, resumed after they
    // were deleted: a guardrail stop naming the Recycle Bin, before any call.
    let dir = setup(&bin_policy(), &binned(30, 30));
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--journal", "j.jsonl"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("j.jsonl")).unwrap();
    std::fs::write(dir.path().join("j.jsonl"), format!("{}\n", text.lines().next().unwrap())).unwrap();
    write_json(&dir.path().join("state.json"), &binned(0, 0));
    let before = std::fs::read(dir.path().join("state.json")).unwrap();
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--journal", "j.jsonl"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("no Recycle Bin retention rule would keep the image"), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.path().join("state.json")).unwrap(), before);
}

/// The images (id → shares and state) and snapshot ids of the region, whatever order.
fn region_view(state: &Value) -> (Vec<(String, Value, Value)>, Vec<String>) {
    let region = &state["accounts"]["111111111111"]["regions"]["us-east-1"];
    let mut images: Vec<(String, Value, Value)> = region["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].to_string(),
                i.get("launch_permissions").cloned().unwrap_or(json!([])),
                i.get("state").cloned().unwrap_or(json!("available")),
            )
        })
        .collect();
    images.sort_by(|a, b| a.0.cmp(&b.0));
    let mut snaps: Vec<String> = region["snapshots"].as_array().unwrap().iter().map(|s| s["id"].to_string()).collect();
    snaps.sort();
    (images, snaps)
}

#[test]
fn undo_restores_what_a_run_removed_and_shares_it_again_once() {
    let dir = setup(&bin_policy(), &binned(30, 30));
    let original = region_view(&binned(30, 30));
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--journal", "j.jsonl"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_ne!(region_view(&read_json(&dir.path().join("state.json"))), original);

    let undo = ["undo", "--policy", "policy.toml", "--sim", "state.json", "--journal", "j.jsonl"];
    // Without --yes and no terminal: refused, nothing changed.
    let before = std::fs::read(dir.path().join("state.json")).unwrap();
    let out = amiwarden(dir.path(), &undo);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.path().join("state.json")).unwrap(), before);

    let out = amiwarden(dir.path(), &[&undo[..], &["--yes", "--format", "json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps: Vec<&str> = report["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    // Snapshots before images (EC2 restores an image only with its snapshots), shares last.
    assert_eq!(
        steps,
        [
            "restore snapshot snap-0aaaaaaaaaaaaaaa1",
            "restore snapshot snap-0aaaaaaaaaaaaaaa2",
            "restore ami-0aaaaaaaaaaaaaaa1",
            "restore ami-0aaaaaaaaaaaaaaa2",
            "share ami-0aaaaaaaaaaaaaaa1 with 999999999999"
        ],
        "{report:#}"
    );
    assert_eq!(region_view(&read_json(&dir.path().join("state.json"))), original, "{}", stderr(&out));
    let bin = &read_json(&dir.path().join("state.json"))["accounts"]["111111111111"]["regions"]["us-east-1"];
    assert!(bin.get("recycle_bin").is_none(), "the bin is empty again: {bin:#}");

    // A second undo of the same run has nothing left to do.
    let before = std::fs::read(dir.path().join("state.json")).unwrap();
    let out = amiwarden(dir.path(), &[&undo[..], &["--yes"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(": 0 call(s)") && shown.contains("already undone"), "{shown}");
    assert_eq!(std::fs::read(dir.path().join("state.json")).unwrap(), before);
}

/// A run applied to the binned state with journal `j.jsonl`: its directory, the journal's
/// lines, and the plan its first line holds.
fn applied_to_bins() -> (tempfile::TempDir, Vec<Value>, Value) {
    let dir = setup(&bin_policy(), &binned(30, 30));
    let out = amiwarden(dir.path(), &apply_args("state.json", &["--journal", "j.jsonl"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let journal = std::fs::read_to_string(dir.path().join("j.jsonl")).unwrap();
    let lines: Vec<Value> = journal.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let plan: Value = serde_json::from_str(lines[0]["detail"].as_str().unwrap()).unwrap();
    (dir, lines, plan)
}

/// The id of `plan`'s `op` on `image`.
fn action_id(plan: &Value, op: &str, image: &str) -> String {
    let actions = plan["actions"].as_array().unwrap();
    actions.iter().find(|a| a["op"] == op && a["image_id"] == image).unwrap()["id"].as_str().unwrap().to_string()
}

#[test]
fn undo_of_one_deregistration_brings_its_snapshots_and_refuses_what_it_cannot_undo() {
    let (dir, _, plan) = applied_to_bins();
    let deregister = action_id(&plan, "deregister", "ami-0aaaaaaaaaaaaaaa2");
    let undo = ["undo", "--policy", "policy.toml", "--sim", "state.json", "--journal", "j.jsonl", "--yes"];
    let out = amiwarden(dir.path(), &[&undo[..], &["--action", &deregister]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (images, snaps) = region_view(&read_json(&dir.path().join("state.json")));
    assert!(images.iter().any(|i| i.0 == "\"ami-0aaaaaaaaaaaaaaa2\""));
    assert!(!images.iter().any(|i| i.0 == "\"ami-0aaaaaaaaaaaaaaa1\""), "only the one asked for");
    assert!(snaps.contains(&"\"snap-0aaaaaaaaaaaaaaa2\"".to_string()));

    // An action that added something, and one the run does not have: bad input, nothing done.
    let before = std::fs::read(dir.path().join("state.json")).unwrap();
    if let Some(deprecate) = plan["actions"].as_array().unwrap().iter().find(|a| a["op"] == "deprecate") {
        let out = amiwarden(dir.path(), &[&undo[..], &["--action", deprecate["id"].as_str().unwrap()]].concat());
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("adds rather than removes"), "{}", stderr(&out));
    }
    let out = amiwarden(dir.path(), &[&undo[..], &["--action", "act-nope"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--action act-nope: run"), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.path().join("state.json")).unwrap(), before);

    // Another EC2 than the one the run changed: refused.
    std::fs::copy(dir.path().join("state.json"), dir.path().join("other.json")).unwrap();
    let out = amiwarden(
        dir.path(),
        &["undo", "--policy", "policy.toml", "--sim", "other.json", "--journal", "j.jsonl", "--yes"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("undo it there"), "{}", stderr(&out));
}

/// A deregistration whose answer was lost ends "skipped: … no longer exists" (the SDK's
/// retry finds it gone), yet it happened: undo restores it, and a journal whose plan line
/// was edited is refused.
#[test]
fn undo_restores_a_deregistration_whose_answer_was_lost_and_refuses_an_edited_journal() {
    let (dir, mut lines, plan) = applied_to_bins();
    let gone = "ami-0aaaaaaaaaaaaaaa2";
    let dereg = action_id(&plan, "deregister", gone);
    let done = lines.iter_mut().find(|l| l["action_id"] == dereg && l["phase"] == "done").unwrap();
    done["phase"] = json!("skipped");
    done["detail"] = json!(format!("{gone} no longer exists"));
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("j.jsonl"), &text).unwrap();

    let undo = ["undo", "--policy", "policy.toml", "--sim", "state.json", "--journal", "j.jsonl", "--yes"];
    let out = amiwarden(dir.path(), &undo);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (images, _) = region_view(&read_json(&dir.path().join("state.json")));
    assert!(images.iter().any(|i| i.0 == format!("\"{gone}\"")), "restored: {images:?}");

    // The plan line edited (an action dropped): its id no longer matches; nothing is undone.
    let mut edited: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut plan = plan.clone();
    plan["actions"].as_array_mut().unwrap().pop();
    edited[0]["detail"] = json!(plan.to_string());
    let edited: String = edited.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("j2.jsonl"), edited).unwrap();
    let out = amiwarden(
        dir.path(),
        &["undo", "--policy", "policy.toml", "--sim", "state.json", "--journal", "j2.jsonl", "--yes"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not match its id"), "{}", stderr(&out));
}

#[test]
fn an_organization_scope_is_every_account_of_the_state_and_still_narrows() {
    let policy = POLICY.replace(r#"accounts = ["111111111111"]"#, r#"accounts = "organization""#);
    let dir = setup(&policy, &state());
    let out = amiwarden(dir.path(), &plan_args("state.json", &["--format", "json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    // 333333333333 is outside the listed scope (4 images); the organization's has its image too.
    assert_eq!(plan["totals"]["images_in_scope"], 5);

    let out = amiwarden(dir.path(), &plan_args("state.json", &["--format", "json", "--accounts", "333333333333"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["totals"]["images_in_scope"], 1, "--accounts narrows the discovered scope");
    let out = amiwarden(dir.path(), &plan_args("state.json", &["--accounts", "444444444444"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // A state with no account: refused, naming where it looked.
    let dir = setup(&policy, &json!({"version": 1, "accounts": {}}));
    let out = amiwarden(dir.path(), &plan_args("state.json", &[]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("found no active account"), "{}", stderr(&out));
}
