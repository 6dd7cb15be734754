//! The CLI's contract: exit codes, output streams and error messages naming the input.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]
use std::path::Path;
use std::process::{Command, Output};

const STATE: &str = r#"{"version": 1, "accounts": {"111111111111": {"regions": {"us-east-1": {
  "images": [
    {"id": "ami-0aaaaaaaaaaaaaaa1", "name": "web-1", "creation_time": "2026-01-01T00:00:00Z",
     "launch_permissions": ["public", "999999999999"], "tags": {"family": "web"},
     "block_devices": [{"device_name": "/dev/xvda", "snapshot_id": "snap-0aaaaaaaaaaaaaaa1", "size_gib": 8}]},
    {"id": "ami-0aaaaaaaaaaaaaaa2", "name": "web-2", "creation_time": "2026-06-01T00:00:00Z", "tags": {"family": "web"},
     "block_devices": [{"device_name": "/dev/xvda", "snapshot_id": "snap-0aaaaaaaaaaaaaaa2", "size_gib": 8}]},
    {"id": "ami-0aaaaaaaaaaaaaaa3", "name": "web-3", "creation_time": "2026-11-01T00:00:00Z", "tags": {"family": "web"},
     "block_devices": [{"device_name": "/dev/xvda", "snapshot_id": "snap-0aaaaaaaaaaaaaaa3", "size_gib": 8}]}
  ],
  "snapshots": [{"id": "snap-0aaaaaaaaaaaaaaa1", "size_gib": 8}, {"id": "snap-0aaaaaaaaaaaaaaa2", "size_gib": 8},
                {"id": "snap-0aaaaaaaaaaaaaaa3", "size_gib": 8}]}}}}}"#;

const POLICY: &str = r#"
[scope]
accounts = ["111111111111"]
regions = ["us-east-1"]

[guardrails]
max_destructive = 10
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

[[plugin]]
name = "sharing"
source = "builtin:sharing"
grants = ["share", "unshare"]
[plugin.config]
allowed = []
"#;

fn amiwarden(dir: &Path, args: &[&str]) -> Output {
    amiwarden_with(dir, args, None)
}

/// `amiwarden` with `COLUMNS` set to `columns`, or unset (the tables then take their
/// default width: stdout is a pipe here).
fn amiwarden_with(dir: &Path, args: &[&str], columns: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_amiwarden"));
    match columns {
        Some(c) => command.env("COLUMNS", c),
        None => command.env_remove("COLUMNS"),
    };
    command
        .current_dir(dir)
        .env_remove("AMIWARDEN_LOG")
        .env_remove("RUST_LOG")
        .args(args)
        .arg("--cache-dir")
        .arg(concat!(env!("CARGO_TARGET_TMPDIR"), "/cli-cache"))
        .output()
        .expect("amiwarden runs")
}

fn setup(policy: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.json"), STATE).unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    dir
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const PLAN: &[&str] = &["plan", "--policy", "policy.toml", "--sim", "state.json", "--as-of", "2026-11-24"];

#[test]
fn plan_prints_json_or_the_table_on_stdout() {
    let dir = setup(POLICY);
    let out = amiwarden(dir.path(), &[PLAN, &["--format", "json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is the plan JSON");
    for key in ["actions", "refused", "errors", "totals"] {
        assert!(plan.get(key).is_some(), "plan JSON lacks `{key}`");
    }
    let ops: Vec<&str> = plan["actions"].as_array().unwrap().iter().map(|a| a["op"].as_str().unwrap()).collect();
    assert!(ops.contains(&"unshare"), "{ops:?}");
    assert!(ops.contains(&"deregister"), "{ops:?}");
    let aws_habit = amiwarden(dir.path(), &[PLAN, &["--output", "json"]].concat());
    assert_eq!(aws_habit.stdout, out.stdout, "--output json is --format json: {}", stderr(&aws_habit));
    let table = amiwarden(dir.path(), PLAN);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("111111111111 / us-east-1"), "the table goes to stdout (`plan > plan.txt`): {text}");
    assert!(text.starts_with("Plan at 2026-11-24T00:00:00Z for a scheduled run over the whole scope"), "{text}");
    let by_op = text.lines().find(|l| l.starts_with("By operation: ")).unwrap_or_else(|| panic!("{text}"));
    assert_eq!(by_op, "By operation: 2 to unshare, 2 to deregister (+2 snapshots)");
}

/// `plan --format json | head -1`, `plan | less` quit early: the closed pipe ends the
/// output quietly, never a panic (exit 101).
#[test]
fn a_reader_that_goes_away_is_not_a_crash() {
    use std::process::Stdio;
    let dir = setup(POLICY);
    for format in ["json", "table"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_amiwarden"))
            .current_dir(dir.path())
            .args(
                [PLAN, &["--format", format, "--cache-dir", concat!(env!("CARGO_TARGET_TMPDIR"), "/cli-cache")]]
                    .concat(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before the first line is written
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{format}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{format}: {}", stderr(&out));
    }
}

#[test]
fn the_same_inputs_give_the_same_plan_bytes() {
    let dir = setup(POLICY);
    let a = amiwarden(dir.path(), &[PLAN, &["--format", "json"]].concat());
    let b = amiwarden(dir.path(), &[PLAN, &["--format", "json"]].concat());
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn apply_then_plan_shows_no_changes() {
    let dir = setup(POLICY);
    let out = amiwarden(dir.path(), &["apply", "--policy", "policy.toml", "--sim", "state.json", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let again = amiwarden(dir.path(), &["plan", "--policy", "policy.toml", "--sim", "state.json", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(plan["actions"].as_array().unwrap().len(), 0, "{}", stderr(&again));
    // The journal lives beside the state it belongs to, not in the working directory.
    assert!(dir.path().join("state.journal.jsonl").exists());
    assert!(!dir.path().join("amiwarden-journal.jsonl").exists());
}

#[test]
fn a_saved_plan_is_refused_once_the_inventory_changed() {
    let dir = setup(POLICY);
    let out = amiwarden(dir.path(), &[PLAN, &["--out", "plan.json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let changed = STATE.replace("\"web-3\"", "\"web-3-renamed\"");
    std::fs::write(dir.path().join("state.json"), changed).unwrap();
    let apply = amiwarden(
        dir.path(),
        &["apply", "--policy", "policy.toml", "--sim", "state.json", "--plan", "plan.json", "--yes"],
    );
    assert_eq!(apply.status.code(), Some(2), "{}", stderr(&apply));
    assert!(stderr(&apply).contains("another inventory"), "{}", stderr(&apply));
}

#[test]
fn over_the_blast_radius_the_run_stops_with_exit_3() {
    let dir = setup(&POLICY.replace("max_destructive = 10", "max_destructive = 0"));
    let out = amiwarden(dir.path(), &["apply", "--policy", "policy.toml", "--sim", "state.json", "--yes"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("guardrails.max_destructive"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dir.path().join("state.json")).unwrap(), STATE, "state must be untouched");
}

#[test]
fn bad_inputs_exit_2_naming_the_file_and_field() {
    let dir = setup(&POLICY.replace("max_destructive = 10", "max_destructiv = 10"));
    let out = amiwarden(dir.path(), PLAN);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("policy.toml") && stderr(&out).contains("max_destructiv"), "{}", stderr(&out));

    let dir = setup(POLICY);
    std::fs::write(
        dir.path().join("event.json"),
        r#"{"source":"aws.ec2","detail-type":"EC2 AMI State Change","detail":{"State":"available"}}"#,
    )
    .unwrap();
    let out = amiwarden(dir.path(), &[PLAN, &["--event", "event.json"]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("event.json") && stderr(&out).contains("detail.ImageId"), "{}", stderr(&out));

    std::fs::write(dir.path().join("state.json"), "{\"version\": 1, \"accounts\": {\"1234\": {\"regions\": {}}}}")
        .unwrap();
    let out = amiwarden(dir.path(), PLAN);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("state.json") && stderr(&out).contains("1234"), "{}", stderr(&out));
}

#[test]
fn inspect_describes_a_builtin_and_refuses_a_non_wasm_file() {
    let dir = setup(POLICY);
    let out = amiwarden(dir.path(), &["inspect", "builtin:retention", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["wit"], "amiwarden:policy@0.2.0");
    assert_eq!(info["reviews"], false, "retention does not review: {info:#}");
    let out = amiwarden(dir.path(), &["inspect", "builtin:cost-guard", "--format", "json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["reviews"], true, "cost-guard reviews: {info:#}");
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);
    let bad = amiwarden(dir.path(), &["inspect", "policy.toml"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("not a WebAssembly file"), "{}", stderr(&bad));
}

#[test]
fn apply_without_yes_and_without_a_terminal_refuses() {
    let dir = setup(POLICY);
    let out = amiwarden(dir.path(), &["apply", "--policy", "policy.toml", "--sim", "state.json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dir.path().join("state.json")).unwrap(), STATE);
}

#[test]
fn validate_loads_the_policy_and_says_what_a_run_will_read() {
    let dir = setup(POLICY);
    let out = amiwarden(dir.path(), &["validate", "--policy", "policy.toml", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = report["plugins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["retention", "sharing"]);
    // Deregistration is granted: usage for the in-use guardrail, snapshots for its price.
    assert_eq!(report["inventory_reads"], serde_json::json!(["launch-permissions", "usage", "snapshots"]));
    let table = amiwarden(dir.path(), &["validate", "--policy", "policy.toml"]);
    assert!(stderr(&table).contains("policy.toml: valid (2 plugin(s) loaded)"), "{}", stderr(&table));

    let broken = POLICY.replace("keep_newest = 1", "keep_newest = \"one\"");
    std::fs::write(dir.path().join("broken.toml"), broken).unwrap();
    let out = amiwarden(dir.path(), &["validate", "--policy", "broken.toml"]);
    assert_eq!(out.status.code(), Some(2), "a plugin refusing its config is bad input: {}", stderr(&out));
    assert!(stderr(&out).contains("retention"), "{}", stderr(&out));
}

#[test]
fn show_renders_a_saved_plan_as_the_preview_did() {
    let dir = setup(POLICY);
    let saved = amiwarden(dir.path(), &[PLAN, &["--out", "plan.json"]].concat());
    assert_eq!(saved.status.code(), Some(0), "{}", stderr(&saved));
    for format in ["table", "json", "markdown", "html"] {
        let preview = amiwarden(dir.path(), &[PLAN, &["--format", format]].concat());
        let shown = amiwarden(dir.path(), &["show", "plan.json", "--format", format]);
        assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
        // But for the line naming the policy file and backend, which a plan file does not record.
        let preview = String::from_utf8_lossy(&preview.stdout);
        let about = "Policy policy.toml on sim:state.json; scope: account(s) 111111111111 in us-east-1";
        assert_eq!(preview.contains(about), format != "json", "{format}: {preview}");
        let preview: Vec<&str> = preview.lines().filter(|l| !l.contains(about)).collect();
        assert_eq!(String::from_utf8_lossy(&shown.stdout).lines().collect::<Vec<_>>(), preview, "{format}");
    }
    let not_a_plan = amiwarden(dir.path(), &["show", "state.json"]);
    assert_eq!(not_a_plan.status.code(), Some(2), "{}", stderr(&not_a_plan));
    let device = amiwarden(dir.path(), &["show", "/dev/zero"]);
    assert_eq!(device.status.code(), Some(2), "{}", stderr(&device));
    assert!(stderr(&device).contains("/dev/zero: not a regular file"), "{}", stderr(&device));
}

/// EC2's pace on the sim (`--sim-latency-ms`, with several images at once) changes when
/// calls happen, never what they do: the same end state as an unpaced apply.
#[test]
fn the_sim_with_ec2_pace_ends_in_the_same_state() {
    let plain = setup(POLICY);
    let paced = setup(POLICY);
    let apply = ["apply", "--policy", "policy.toml", "--sim", "state.json", "--as-of", "2026-11-24", "--yes"];
    let a = amiwarden(plain.path(), &apply);
    let b = amiwarden(paced.path(), &[&apply[..], &["--sim-latency-ms", "5", "--concurrency", "4"]].concat());
    assert_eq!((a.status.code(), b.status.code()), (Some(0), Some(0)), "{}\n{}", stderr(&a), stderr(&b));
    let state = |dir: &tempfile::TempDir| std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    assert_eq!(state(&plain), state(&paced));
    assert_ne!(state(&plain), STATE, "the apply changed something");
}

#[test]
fn completions_are_printed_for_the_usual_shells() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, needle) in [("bash", "_amiwarden()"), ("zsh", "#compdef amiwarden"), ("fish", "complete -c amiwarden")]
    {
        let out = amiwarden(dir.path(), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(needle) && script.contains("validate"), "{shell}: {script:.300}");
    }
}

#[test]
fn apply_format_json_prints_one_result_per_action_and_the_totals_on_stdout() {
    let dir = setup(POLICY);
    let plan = amiwarden(dir.path(), &[PLAN, &["--format", "json"]].concat());
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let planned = plan["actions"].as_array().unwrap();
    let apply = ["apply", "--policy", "policy.toml", "--sim", "state.json", "--as-of", "2026-11-24", "--yes"];
    let out = amiwarden(dir.path(), &[&apply[..], &["--format", "json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    let n = planned.len();
    let totals = serde_json::json!({"actions": n, "done": n, "skipped": 0, "failed": 0, "earlier_run": 0});
    assert_eq!(doc["totals"], totals, "{doc:#}");
    assert_eq!(doc["journal"], "state.journal.jsonl");
    let results = doc["results"].as_array().unwrap();
    let ids = |list: &[serde_json::Value]| list.iter().map(|a| a["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(results), ids(planned), "one result per action, in apply order");
    for (result, action) in results.iter().zip(planned) {
        for field in ["op", "account", "region", "image_id"] {
            assert_eq!(result[field], action[field], "{field}: {result}");
        }
        assert_eq!(result["outcome"], "done", "{result}");
        assert!(result["detail"].as_str().is_some_and(|d| !d.is_empty()) && result.get("earlier_run").is_none());
    }
    let deregistered = results.iter().find(|r| r["op"] == "deregister").unwrap();
    assert_eq!(deregistered["detail"], format!("deregistered {}", deregistered["image_id"].as_str().unwrap()));
    // The preview and the per-action lines are for people: stderr.
    let err = stderr(&out);
    assert!(err.contains("By operation: ") && err.contains(&format!("[{n}/{n}] ")), "{err}");

    let again = amiwarden(dir.path(), &[&apply[..], &["--format", "json"]].concat());
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let doc: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!((doc["totals"]["actions"].as_u64(), doc["results"].as_array().map(Vec::len)), (Some(0), Some(0)));
}

#[test]
fn version_names_the_commit_the_plugin_contract_and_the_builtin_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let out = amiwarden(dir.path(), &["--version"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let prefix = format!("amiwarden {} (git ", env!("CARGO_PKG_VERSION"));
    let sha = lines[0].strip_prefix(&prefix).and_then(|s| s.strip_suffix(')')).unwrap_or_else(|| panic!("{text}"));
    let git = |args: &[&str]| Command::new("git").arg("-C").arg(workspace()).args(args).output();
    if git(&["rev-parse", "--show-toplevel"]).is_ok_and(|o| o.status.success()) {
        // A commit of this repository (HEAD may have moved since the build).
        let commit = git(&["cat-file", "-e", &format!("{sha}^{{commit}}")]).unwrap();
        assert!(commit.status.success() && sha.len() >= 7, "{sha} is not a commit here");
    } else {
        assert_eq!(sha, "unknown");
    }
    assert_eq!(lines[1], format!("plugin contract: amiwarden:policy@{}", amiwarden::plugin::WIT_VERSION));
    // Each built-in's version is the one the plugin itself reports.
    let mut builtins = Vec::new();
    for name in amiwarden::builtin::names() {
        let info = amiwarden(dir.path(), &["inspect", &format!("builtin:{name}"), "--format", "json"]);
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        builtins.push(format!("{name} {}", info["version"].as_str().unwrap()));
    }
    assert_eq!(lines[2], format!("built-in plugins: {}", builtins.join(", ")));
    let short = amiwarden(dir.path(), &["-V"]);
    assert_eq!(String::from_utf8(short.stdout).unwrap(), format!("{}\n", lines[0]));
}

fn records(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    found.sort();
    found
}

#[test]
fn a_recorded_run_keeps_its_plan_outcomes_and_metadata() {
    let dir = setup(POLICY);
    let out = amiwarden(dir.path(), &[PLAN, &["--record", "runs", "--out", "plan.json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let recorded = records(&dir.path().join("runs"))[0].join("plan.json");
    assert_eq!(
        std::fs::read(recorded).unwrap(),
        std::fs::read(dir.path().join("plan.json")).unwrap(),
        "as --out writes it"
    );
    let apply = ["apply", "--policy", "policy.toml", "--sim", "state.json", "--as-of", "2026-11-24", "--yes"];
    let out = amiwarden(dir.path(), &[&apply[..], &["--record", "runs"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let runs = records(&dir.path().join("runs"));
    assert_eq!(runs.len(), 2, "one directory per run: {runs:?}");
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let planned = runs.iter().find(|r| name(r).contains("-plan-plan-")).expect("the plan's record");
    let applied = runs.iter().find(|r| name(r).contains("-apply-plan-")).expect("the apply's record");
    let read =
        |p: std::path::PathBuf| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let plan = read(planned.join("plan.json"));
    let total = plan["actions"].as_array().unwrap().len();
    assert!(total > 1, "{plan:#}");
    // Each ended action is numbered against what this run has to do.
    assert!(err.contains(&format!("[1/{total}] ")) && err.contains(&format!("[{total}/{total}] ")), "{err}");
    assert!(!planned.join("report.json").exists(), "a plan has no outcomes");
    let meta = read(applied.join("metadata.json"));
    assert_eq!(meta["command"], "apply");
    assert_eq!(meta["exit_code"], 0);
    assert_eq!(meta["source"]["kind"], "scheduled");
    assert_eq!(meta["outcomes"]["done"], total, "{meta:#}");
    assert_eq!(meta["totals"]["actions"], total);
    let deregistrations = plan["actions"].as_array().unwrap().iter().filter(|a| a["op"] == "deregister").count();
    assert_eq!(meta["api_calls"]["DeregisterImage"], deregistrations, "{meta:#}");
    assert!(meta["duration_seconds"].as_f64().unwrap() >= 0.0);
    let report = read(applied.join("report.json"));
    assert_eq!(report["done"].as_array().unwrap().len(), total);
    assert_eq!(read(applied.join("plan.json")), plan, "the apply ran the plan the preview recorded");
    assert!(err.contains(&format!("run recorded in runs/{}", name(applied))), "{err}");
    // Where the time went, what the plan does by operation and place, and the journal.
    let stages = |meta: &serde_json::Value| -> Vec<String> {
        meta["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap().to_string()).collect()
    };
    let plan_meta = read(planned.join("metadata.json"));
    assert_eq!(stages(&plan_meta), ["inventory", "propose", "merge", "review", "finish"], "{plan_meta:#}");
    assert_eq!(stages(&meta), ["inventory", "propose", "merge", "review", "finish", "apply"], "{meta:#}");
    let plugins = meta["plugins"].as_object().unwrap();
    assert_eq!(plugins.len(), 2, "each plugin's seconds: {meta:#}");
    // Neither plugin reviews (plugin-info), so neither is called to.
    assert!(
        plugins.values().all(|p| p["propose"].as_f64().unwrap() > 0.0 && p["review"].as_f64().unwrap() == 0.0),
        "{meta:#}"
    );
    let sum = |v: &serde_json::Value| v.as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum(&meta["actions_by_operation"]), total as u64, "{meta:#}");
    assert_eq!(sum(&meta["actions_by_location"]), total as u64, "{meta:#}");
    assert_eq!(meta["actions_by_operation"]["deregister"], deregistrations);
    let journal = std::fs::read_to_string(applied.join("journal.jsonl")).unwrap();
    let done = journal.lines().filter(|l| l.contains(r#""phase":"done""#)).count();
    assert_eq!(done, total, "the record keeps this run's journal lines: {journal}");
    assert!(!planned.join("journal.jsonl").exists(), "a plan has no journal");
}

#[test]
fn accounts_and_regions_only_narrow_the_policys_scope() {
    let dir = setup(POLICY);
    let out = amiwarden(dir.path(), &[PLAN, &["--accounts", "111111111111", "--format", "json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!plan["actions"].as_array().unwrap().is_empty());
    for (flag, value, says) in [
        ("--accounts", "999999999999", "--accounts: 999999999999 is not in the scope of policy.toml (111111111111)"),
        ("--accounts", "prod", "--accounts: `prod` is not a 12-digit account id"),
        ("--regions", "eu-west-3", "--regions: eu-west-3 is not in the scope of policy.toml (us-east-1)"),
    ] {
        let out = amiwarden(dir.path(), &[PLAN, &[flag, value]].concat());
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
}

/// `amiwarden plan --aws` with no credentials anywhere but what `home` holds; EC2 and STS
/// at a closed loopback port (nothing leaves the machine).
fn plan_without_credentials(home: &Path, extra: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_amiwarden"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(home)
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([
            "plan",
            "--policy",
            "policy.toml",
            "--aws",
            "--endpoint-url",
            "http://127.0.0.1:9",
            "--max-attempts",
            "1",
        ])
        .args(extra)
        .output()
        .expect("amiwarden runs")
}

#[test]
fn credential_problems_are_named_in_a_few_lines_not_an_sdk_dump() {
    let dir = setup(POLICY);
    std::fs::create_dir_all(dir.path().join(".aws")).unwrap();
    std::fs::write(
        dir.path().join(".aws/config"),
        "[default]\nregion = us-east-1\n[profile ops]\nregion = eu-west-1\n[sso-session corp]\nsso_region = us-east-1\n",
    )
    .unwrap();
    let out = plan_without_credentials(dir.path(), &["--profile", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--profile nope: no such profile in"), "{}", stderr(&out));
    assert!(stderr(&out).contains("(profiles there: default, ops)"), "{}", stderr(&out));

    let out = plan_without_credentials(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no AWS credentials found (environment keys, --profile or AWS_PROFILE"), "{err}");
    assert!(!err.contains("ProviderAttempt") && !err.contains("DispatchFailure {"), "no Debug dump: {err}");
    assert!(err.lines().count() <= 10, "{err}");
}

#[test]
fn the_tables_fit_columns_and_wrap_reasons_instead_of_cutting_them() {
    let dir = setup(POLICY);
    // The tables' lines (the heading and totals are prose, one line each).
    let widest = |out: &Output| {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let rows = text.lines().filter(|l| l.starts_with(['┌', '│', '╞', '├', '└']));
        rows.map(|l| l.chars().count()).max().unwrap()
    };
    let default = amiwarden_with(dir.path(), PLAN, None);
    assert_eq!(default.status.code(), Some(0), "{}", stderr(&default));
    assert!(widest(&default) <= 160);
    for columns in ["100", "130"] {
        let out = amiwarden_with(dir.path(), PLAN, Some(columns));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            widest(&out) <= columns.parse().unwrap(),
            "COLUMNS={columns}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // A narrower table wraps the reasons, never cuts them: the `why` column, read down
    // and without its white space, is every reason of every action in order.
    let narrow = String::from_utf8_lossy(&amiwarden_with(dir.path(), PLAN, Some("100")).stdout).into_owned();
    let body = narrow.lines().skip_while(|l| !l.starts_with('╞')).skip(1).take_while(|l| !l.starts_with('└'));
    // At 100 columns the image names make way: `why` is the third column.
    let column: String = body.filter_map(|l| l.split('┆').nth(2)).collect::<String>();
    let json = amiwarden_with(dir.path(), &[PLAN, &["--format", "json"]].concat(), None);
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let mut reasons = String::new();
    for action in plan["actions"].as_array().unwrap() {
        for reason in action["reasons"].as_array().unwrap() {
            let text = reason.as_str().unwrap();
            reasons.push_str(text.split_once(": ").map_or(text, |(_, r)| r));
        }
    }
    let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    assert!(squeeze(&reasons).len() > 100, "long reasons: {reasons}");
    assert_eq!(squeeze(&column), squeeze(&reasons), "{narrow}");
}

#[test]
fn explain_shows_what_each_plugin_proposes_for_one_image_and_what_the_plan_does() {
    let dir = setup(POLICY);
    let explain = ["explain", "--policy", "policy.toml", "--sim", "state.json", "--as-of", "2026-11-24"];
    // web-1 is old and shared with an account the sharing plugin revokes.
    let out = amiwarden(dir.path(), &[&explain[..], &["ami-0aaaaaaaaaaaaaaa1", "--format", "json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["image"]["name"], "web-1");
    let by = |plugin: &str| e["proposals"].as_array().unwrap().iter().any(|p| p["plugin"] == plugin);
    assert!(by("retention") && by("sharing"), "{e:#}");
    let ops: Vec<&str> = e["actions"].as_array().unwrap().iter().map(|a| a["op"].as_str().unwrap()).collect();
    assert!(ops.contains(&"deregister") && ops.contains(&"unshare"), "{ops:?}");
    // web-3, the newest of its family, is kept: the table says by whom and why.
    let out = amiwarden(dir.path(), &[&explain[..], &["ami-0aaaaaaaaaaaaaaa3"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web-3 in 111111111111/us-east-1"), "{text}");
    assert!(text.contains("What the plan does\n  none"), "{text}");
    // As a document: the same sections, escaped for Markdown or HTML.
    let doc = |format: &str| {
        let out = amiwarden(dir.path(), &[&explain[..], &["ami-0aaaaaaaaaaaaaaa3", "--format", format]].concat());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let md = doc("markdown");
    assert!(md.starts_with("### ami-0aaaaaaaaaaaaaaa3 web-3 in 111111111111/us-east-1"), "{md}");
    assert!(md.contains("\n#### What the plan does\n\nnone\n"), "{md}");
    let html = doc("html");
    assert!(html.contains("<h2>What the plan does</h2>\n<p>none</p>") && !html.contains("<script"), "{html}");
    // An image outside the scope is named, exit 2.
    let out = amiwarden(dir.path(), &[&explain[..], &["ami-0fffffffffffffff9"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("ami-0fffffffffffffff9 is not in the inventory of the policy's scope"));
}

#[test]
fn detailed_exitcode_says_whether_the_plan_has_changes() {
    let dir = setup(POLICY);
    let out = amiwarden(dir.path(), &[PLAN, &["--detailed-exitcode"]].concat());
    assert_eq!(out.status.code(), Some(5), "changes planned: {}", stderr(&out));
    let out = amiwarden(dir.path(), &[PLAN, &[][..]].concat());
    assert_eq!(out.status.code(), Some(0), "without the flag, changes are a success: {}", stderr(&out));
    let apply = ["apply", "--policy", "policy.toml", "--sim", "state.json", "--as-of", "2026-11-24", "--yes"];
    assert_eq!(amiwarden(dir.path(), &apply).status.code(), Some(0));
    let out = amiwarden(dir.path(), &[PLAN, &["--detailed-exitcode"]].concat());
    assert_eq!(out.status.code(), Some(0), "nothing left to do: {}", stderr(&out));
}

/// The workspace root, where the examples' paths are relative to.
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn the_demo_plan_reads_the_same_as_a_table_a_markdown_ticket_and_a_web_page() {
    let demo = ["plan", "--policy", "examples/policy.toml", "--sim", "examples/sim/demo.json", "--as-of", "2026-11-24"];
    let run = |format: &str, columns: Option<&str>| {
        let out = amiwarden_with(workspace(), &[&demo[..], &["--format", format]].concat(), columns);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    insta::assert_snapshot!("demo_plan_markdown", run("markdown", None));
    insta::assert_snapshot!("demo_plan_table_100_columns", run("table", Some("100")));
    insta::assert_snapshot!("demo_plan_table_200_columns", run("table", Some("200")));
    let html = run("html", None);
    let json: serde_json::Value = serde_json::from_str(&run("json", None)).unwrap();
    let destructive = ["disable", "deregister", "delete_snapshot"];
    let count = |pick: &dyn Fn(&str) -> bool| {
        json["actions"].as_array().unwrap().iter().filter(|a| pick(a["op"].as_str().unwrap())).count()
    };
    for (class, n) in [
        ("destructive", count(&|op| destructive.contains(&op))),
        ("share", count(&|op| op == "share" || op == "unshare")),
        ("copy", count(&|op| op == "copy")),
    ] {
        assert!(n > 0, "{class}");
        assert_eq!(html.matches(&format!("<tr class=\"{class}\">")).count(), n, "{class} rows:\n{html}");
    }
}

#[test]
fn show_kept_lists_the_images_plugins_keep_and_why_which_the_table_otherwise_counts() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("plan.json");
    let demo = ["plan", "--policy", "examples/policy.toml", "--sim", "examples/sim/demo.json", "--as-of", "2026-11-24"];
    let run = |args: &[&str]| {
        let out = amiwarden_with(workspace(), args, Some("200"));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let counted = run(&[&demo[..], &["--out", saved.to_str().unwrap()]].concat());
    assert!(counted.ends_with("4 image(s) kept by plugins; --show-kept lists them\n"), "{counted}");
    assert!(!counted.contains("Kept by plugins"), "{counted}");
    let listed = run(&[&demo[..], &["--show-kept"]].concat());
    let shown = run(&["show", saved.to_str().unwrap(), "--show-kept"]);
    for text in [&listed, &shown] {
        let kept = text.split("Kept by plugins\n").nth(1).unwrap_or_else(|| panic!("{text}"));
        let row = kept.lines().find(|l| l.contains("ami-066c160cb2d3f111c")).unwrap_or_else(|| panic!("{kept}"));
        for cell in ["golden-batch-2026-03-02", "111111111111 / us-east-1", "exempt from retention by tag", "retention"]
        {
            assert!(row.contains(cell), "{cell}: {row}");
        }
        assert_eq!(kept.matches("┆ 111111111111 / us-east-1 ┆").count(), 4, "{kept}");
        assert!(!text.contains("--show-kept lists them"), "{text}");
    }
}

#[test]
fn the_demo_explanation_reads_the_same_as_text_and_markdown() {
    // golden-web-2026-04-06: deregistered with its snapshot, by retention.
    let explain = ["explain", "ami-0bb784c32469e665e", "--policy", "examples/policy.toml"];
    let demo = [&explain[..], &["--sim", "examples/sim/demo.json", "--as-of", "2026-11-24"]].concat();
    let run = |format: &str| {
        let out = amiwarden(workspace(), &[&demo[..], &["--format", format]].concat());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    insta::assert_snapshot!("demo_explain_table", run("table"));
    insta::assert_snapshot!("demo_explain_markdown", run("markdown"));
}

/// Headless Chromium (Debian's `chromium`, installed by scripts/setup.sh).
fn chromium() -> &'static str {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect(
            "headless Chromium is needed for the HTML test: scripts/setup.sh installs it (apt-get install chromium)",
        )
}

/// The DOM Chromium builds from an HTML file, scripts (if any ran) included.
fn rendered_dom(page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

const HOSTILE: &str = "a|b <script>alert(1)</script> ](javascript:x)";

#[test]
fn hostile_image_names_are_text_in_markdown_and_in_the_page_chromium_renders() {
    let dir = setup(POLICY);
    let state = STATE.replace(r#""name": "web-1""#, &format!("\"name\": {}", serde_json::json!(HOSTILE)));
    std::fs::write(dir.path().join("state.json"), state).unwrap();

    let md = amiwarden(dir.path(), &[PLAN, &["--format", "markdown"]].concat());
    assert_eq!(md.status.code(), Some(0), "{}", stderr(&md));
    let md = String::from_utf8(md.stdout).unwrap();
    let escaped = r"a\|b \<script\>alert(1)\</script\> \](javascript:x)";
    let rows: Vec<&str> = md.lines().filter(|l| l.contains("ami-0aaaaaaaaaaaaaaa1")).collect();
    assert_eq!(rows.len(), 4, "two unshares, the deregistration and its snapshot:\n{md}");
    for row in rows {
        assert!(row.contains(&format!("| {escaped} |")), "the name is one cell, escaped: {row}");
    }
    assert!(!md.replace(r"\<", "").contains("<script") && !md.replace(r"\]", "").contains("]("), "{md}");

    let html = amiwarden(dir.path(), &[PLAN, &["--format", "html"]].concat());
    assert_eq!(html.status.code(), Some(0), "{}", stderr(&html));
    let html = String::from_utf8(html.stdout).unwrap();
    assert!(!html.contains("<script"), "{html}");
    let page = dir.path().join("plan.html");
    std::fs::write(&page, &html).unwrap();
    let dom = rendered_dom(&page);
    assert!(!dom.contains("<script"), "the name became an element:\n{dom}");
    let text = "a|b &lt;script&gt;alert(1)&lt;/script&gt; ](javascript:x)";
    assert_eq!(dom.matches(&format!("<td>{text}</td>")).count(), 4, "the name is a cell's text:\n{dom}");
    assert_eq!(dom.matches("<tr class=\"destructive\">").count(), 4, "{dom}");
    assert_eq!(dom.matches("<tr class=\"share\">").count(), 2, "{dom}");
    assert!(dom.contains("<h1>Plan at 2026-11-24T00:00:00Z for a scheduled run over the whole scope</h1>"), "{dom}");
}

/// `amiwarden ARGS` with stdout on a terminal (`script` gives it a pseudo-terminal;
/// stderr, where spinners go, is dropped), `NO_COLOR` set or not.
fn on_a_terminal(dir: &Path, args: &[&str], no_color: bool) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line: Vec<String> = vec![quote(env!("CARGO_BIN_EXE_amiwarden"))];
    line.extend(args.iter().map(|a| quote(a)));
    line.extend([
        "--cache-dir".into(),
        quote(concat!(env!("CARGO_TARGET_TMPDIR"), "/cli-cache")),
        "2>/dev/null".into(),
    ]);
    let mut command = Command::new("script");
    command.current_dir(dir).env("COLUMNS", "160").args(["-qec", &line.join(" "), "/dev/null"]);
    match no_color {
        true => command.env("NO_COLOR", "1"),
        false => command.env_remove("NO_COLOR"),
    };
    let out = command.output().expect("script (util-linux) runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().replace("\r\n", "\n")
}

#[test]
fn rows_are_coloured_only_on_a_terminal_and_never_with_no_color() {
    let dir = setup(POLICY);
    let coloured = on_a_terminal(dir.path(), PLAN, false);
    let red = "\u{1b}[38;5;9m";
    let deregister = coloured.lines().find(|l| l.contains("deregister")).unwrap_or_else(|| panic!("{coloured}"));
    assert!(deregister.contains(red), "destructive rows are red on a terminal:\n{coloured}");
    let unshare = coloured.lines().find(|l| l.contains("unshare")).unwrap();
    assert!(unshare.contains("\u{1b}[38;5;11m") && !unshare.contains(red), "shares are yellow:\n{coloured}");

    let no_color = on_a_terminal(dir.path(), PLAN, true);
    assert!(!no_color.contains('\u{1b}'), "NO_COLOR:\n{no_color}");
    let piped = amiwarden_with(dir.path(), PLAN, Some("160"));
    assert!(!piped.stdout.contains(&0x1b), "{}", String::from_utf8_lossy(&piped.stdout));
    // Colour adds codes and nothing else: every line as wide, every word where it was.
    assert_eq!(console::strip_ansi_codes(&coloured), no_color);
    assert_eq!(no_color, String::from_utf8_lossy(&piped.stdout));
}

const APPLY: &[&str] = &["apply", "--policy", "policy.toml", "--sim", "state.json", "--as-of", "2026-11-24", "--yes"];

#[test]
fn verbose_says_what_each_stage_did_and_the_environment_still_decides() {
    let info = [
        "INFO amiwarden::cli::output: plugin retention (retention 0.1.0, builtin:retention) ",
        "inventory of 111111111111/us-east-1: 3 image(s)",
        "inventory: 3 image(s) in 1 account(s) and 1 region(s) of sim:state.json, read in ",
        "apply: 6 action(s) of plan-",
        "apply: ended in ",
    ];
    let dir = setup(POLICY);
    let quiet = amiwarden(dir.path(), &[&["-q"], APPLY].concat());
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr(&quiet));
    assert!(!stderr(&quiet).contains("INFO") && stderr(&quiet).contains("[6/6] "), "{}", stderr(&quiet));
    let dir = setup(POLICY);
    let verbose = amiwarden(dir.path(), &[APPLY, &["-v"]].concat());
    assert_eq!(verbose.status.code(), Some(0), "{}", stderr(&verbose));
    for line in info {
        assert!(stderr(&verbose).contains(line), "{line}:\n{}", stderr(&verbose));
    }
    assert!(!stderr(&verbose).contains("DEBUG"), "{}", stderr(&verbose));
    let dir = setup(POLICY);
    let debug = amiwarden(dir.path(), &[&["-vv"], PLAN].concat());
    assert!(stderr(&debug).contains("DEBUG"), "{}", stderr(&debug));
    // AMIWARDEN_LOG, when set, decides over the flags.
    let mut command = Command::new(env!("CARGO_BIN_EXE_amiwarden"));
    command.current_dir(dir.path()).env("AMIWARDEN_LOG", "info").args([&["-q"], PLAN].concat());
    let logged = command.arg("--cache-dir").arg(concat!(env!("CARGO_TARGET_TMPDIR"), "/cli-cache")).output().unwrap();
    assert!(stderr(&logged).contains(info[2]), "{}", stderr(&logged));
    let both = amiwarden(dir.path(), &[&["-q", "-v"], PLAN].concat());
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
}

/// `amiwarden ARGS` with stdout and stderr on one pseudo-terminal (`script`): what a
/// person at a terminal sees, progress bars included.
fn seen_on_a_terminal(dir: &Path, args: &[&str]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line: Vec<String> = vec![quote(env!("CARGO_BIN_EXE_amiwarden"))];
    line.extend(args.iter().map(|a| quote(a)));
    line.extend(["--cache-dir".into(), quote(concat!(env!("CARGO_TARGET_TMPDIR"), "/cli-cache"))]);
    let out = Command::new("script")
        .current_dir(dir)
        .env("COLUMNS", "160")
        .env_remove("AMIWARDEN_LOG")
        .env_remove("RUST_LOG")
        .args(["-qec", &line.join(" "), "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn quiet_draws_no_progress_bar_on_a_terminal_but_still_says_how_each_action_ended() {
    // 200 ms per EC2 call: the bar is drawn between the actions.
    let slow = [APPLY, &["--sim-latency-ms", "200"]].concat();
    let dir = setup(POLICY);
    let shown = seen_on_a_terminal(dir.path(), &slow);
    assert!(shown.contains("applying ") && shown.contains("[6/6] "), "{shown}");
    let dir = setup(POLICY);
    let quiet = seen_on_a_terminal(dir.path(), &[&["-q"], &slow[..]].concat());
    assert!(!quiet.contains("applying ") && quiet.contains("[6/6] "), "{quiet}");
    assert!(!quiet.contains("reading the inventory") && !quiet.contains("loading 2 plugin(s)"), "{quiet}");
}

#[test]
fn ctrl_c_during_an_apply_says_how_to_resume_and_exits_130_and_the_same_apply_resumes() {
    let dir = setup(POLICY);
    let child = Command::new(env!("CARGO_BIN_EXE_amiwarden"))
        .current_dir(dir.path())
        .args(
            [APPLY, &["--sim-latency-ms", "200", "--cache-dir", concat!(env!("CARGO_TARGET_TMPDIR"), "/cli-cache")]]
                .concat(),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let journal = dir.path().join("state.journal.jsonl");
    let ended = || std::fs::read_to_string(&journal).unwrap_or_default().matches(r#""phase":"done""#).count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while ended() == 0 {
        assert!(std::time::Instant::now() < deadline, "no action ended");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // In the 200 ms of the next call, not between a journal line and its [n/M] line.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let n = ended();
    assert!((1..6).contains(&n), "interrupted before the end: {n} of 6:\n{err}");
    let said = format!(
        "interrupted: {n} of 6 actions ended; run the same apply again to resume from journal state.journal.jsonl"
    );
    assert_eq!(err.lines().last(), Some(said.as_str()), "{err}");

    let resumed = amiwarden(dir.path(), &[APPLY, &["--format", "json"]].concat());
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    let doc: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    let totals = serde_json::json!({"actions": 6, "done": 6 - n, "skipped": 0, "failed": 0, "earlier_run": n});
    assert_eq!(doc["totals"], totals, "{doc:#}");
    let earlier = doc["results"].as_array().unwrap().iter().filter(|r| r["earlier_run"] == true).count();
    assert_eq!(earlier, n, "{doc:#}");
}

/// `command` on the demo state copied to `demo.json` (an apply changes it), with `policy`,
/// recorded under `runs`.
fn recorded<'a>(command: &'a str, policy: &'a str) -> Vec<&'a str> {
    vec![command, "--policy", policy, "--sim", "demo.json", "--as-of", "2026-11-24", "--record", "runs"]
}

#[test]
fn report_lists_each_recorded_run_oldest_first_then_the_totals() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(workspace().join("examples/sim/demo.json"), dir.path().join("demo.json")).unwrap();
    let policy = workspace().join("examples/policy.toml");
    let policy = policy.to_str().unwrap();
    let out = amiwarden(dir.path(), &recorded("plan", policy));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = amiwarden(dir.path(), &[recorded("apply", policy), vec!["--yes"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let read = |p: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let runs = records(&dir.path().join("runs"));
    let (planned, applied) = match &runs[..] {
        [a, b] if a.to_string_lossy().contains("-plan-plan-") => (a, b),
        [a, b] => (b, a),
        _ => panic!("two runs: {runs:?}"),
    };
    let plan = read(&planned.join("plan.json"));
    let totals = &plan["totals"];
    let actions = plan["actions"].as_array().unwrap().len();
    let change = totals["monthly_cost_after"].as_i64().unwrap() - totals["monthly_cost_before"].as_i64().unwrap();
    let (plan_calls, apply_calls) = (
        read(&planned.join("metadata.json"))["api_calls"].clone(),
        read(&applied.join("metadata.json"))["api_calls"].clone(),
    );
    assert!(actions > 0 && change != 0 && totals["destructive"].as_u64().unwrap() > 0, "{totals}");

    let report = |args: &[&str]| {
        let out = amiwarden(dir.path(), &[&["report", "runs"][..], args].concat());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&report(&["--format", "json"])).unwrap();
    let rows = json["runs"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{json:#}");
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        (rows[0]["record"].as_str().unwrap(), rows[1]["record"].as_str().unwrap()),
        (&*name(planned), &*name(applied))
    );
    for (row, command, outcomes, calls) in [
        (&rows[0], "plan", serde_json::Value::Null, &plan_calls),
        (
            &rows[1],
            "apply",
            serde_json::json!({"done": actions, "skipped": 0, "failed": 0, "resumed": 0}),
            &apply_calls,
        ),
    ] {
        assert_eq!(row["command"], command);
        assert_eq!(row["policy"], policy);
        assert_eq!(row["backend"], "sim:demo.json");
        assert_eq!(row["exit_code"], 0);
        assert_eq!(row["planned"], actions);
        assert_eq!(row["outcomes"], outcomes, "{command}");
        assert_eq!(row["destructive"], totals["destructive"]);
        assert_eq!(row["monthly_cost_change"], change);
        assert_eq!(&row["api_calls"], calls);
    }
    let mut calls = std::collections::BTreeMap::<String, u64>::new();
    for (op, n) in plan_calls.as_object().unwrap().iter().chain(apply_calls.as_object().unwrap()) {
        *calls.entry(op.clone()).or_default() += n.as_u64().unwrap();
    }
    let expected = serde_json::json!({
        "runs": 2, "plans": 1, "applies": 1, "unreadable": 0, "nonzero_exits": 0, "planned": actions,
        "outcomes": {"done": actions, "skipped": 0, "failed": 0, "resumed": 0},
        "destructive": totals["destructive"], "monthly_cost_change": change, "api_calls": calls,
    });
    assert_eq!(json["totals"], expected);

    let table = report(&[]);
    let (plan_row, apply_row) = (table.find(&format!("{actions} planned")), table.find(&format!("{actions} done, 0")));
    assert!(plan_row.unwrap() < apply_row.unwrap(), "oldest first:\n{table}");
    let amount = amiwarden::cost::dollars(change);
    let dollars = if change > 0 { format!("+{amount}") } else { amount };
    assert_eq!(table.matches(&dollars).count(), 3, "each run's change and the applies' total:\n{table}");
    assert!(table.contains("runs: 2 (plans 1, applies 1, unreadable 0, exited non-zero 0)"), "{table}");
    assert!(table.contains(&format!("plans: {actions} action(s) planned")), "{table}");
    let destructive = &totals["destructive"];
    assert!(
        table.contains(&format!(
            "applies: {actions} done, 0 skipped, 0 failed; {destructive} destructive; monthly cost {dollars}"
        )),
        "{table}"
    );
    assert!(table.contains(&format!("API calls: {}", calls.values().sum::<u64>())), "{table}");

    // The plan, as if it had run on an earlier day: --since leaves it out.
    let mut metadata = read(&planned.join("metadata.json"));
    metadata["started"] = "2026-11-01T00:00:00Z".into();
    std::fs::write(planned.join("metadata.json"), metadata.to_string()).unwrap();
    let since = |date: &str| -> serde_json::Value {
        serde_json::from_str(&report(&["--since", date, "--format", "json"])).unwrap()
    };
    let later = since("2026-11-02");
    assert_eq!(later["runs"].as_array().unwrap().len(), 1, "{later:#}");
    assert_eq!(later["runs"][0]["command"], "apply");
    assert_eq!((later["totals"]["plans"].clone(), later["totals"]["applies"].clone()), (0.into(), 1.into()));
    assert_eq!(since("2026-11-01")["totals"]["runs"], 2);
    assert_eq!(since("2999-01-01")["runs"], serde_json::json!([]));
}

#[test]
fn report_lists_a_record_it_cannot_read_and_why_and_refuses_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    std::fs::create_dir_all(runs.join("20261101T000000Z-plan-plan-0123")).unwrap();
    std::fs::write(runs.join("20261101T000000Z-plan-plan-0123/metadata.json"), "{").unwrap();
    std::fs::create_dir_all(runs.join("copied-by-hand")).unwrap();
    std::fs::write(runs.join("notes.txt"), "not a run").unwrap();
    let out = amiwarden(dir.path(), &["report", "runs", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = json["runs"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "a file beside the runs is not a run: {json:#}");
    assert_eq!(rows[0]["record"], "20261101T000000Z-plan-plan-0123");
    assert_eq!(rows[0]["started"], "2026-11-01T00:00:00Z", "from the directory's name");
    assert!(rows[0]["unreadable"].as_str().unwrap().contains("metadata.json: EOF while parsing"), "{json:#}");
    assert_eq!(rows[1]["record"], "copied-by-hand", "a start unknown comes last");
    assert!(rows[1]["unreadable"].as_str().unwrap().contains("cannot read it"), "{json:#}");
    assert_eq!((json["totals"]["runs"].clone(), json["totals"]["unreadable"].clone()), (2.into(), 2.into()));
    let table = amiwarden(dir.path(), &["report", "runs"]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("unreadable: copied-by-hand") && table.contains("unreadable 2"), "{table}");
    for (args, says) in [
        (&["report", "missing"][..], "report: missing: no such directory"),
        (&["report", "runs/notes.txt"], "report: runs/notes.txt: not a directory"),
        (&["report", "runs", "--since", "last week"], "--since: `last week` is not a date"),
    ] {
        let out = amiwarden(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
}

/// The JSON Schema `amiwarden schema OF` prints, compiled.
fn schema(of: &str) -> jsonschema::Validator {
    let out = amiwarden(workspace(), &["schema", of]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// What a validator finds wrong in `doc`, one line each.
fn violations(validator: &jsonschema::Validator, doc: &serde_json::Value) -> Vec<String> {
    validator.iter_errors(doc).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

#[test]
fn the_plan_schema_accepts_the_demo_plan_and_refuses_a_broken_one() {
    let validator = schema("plan");
    let demo = ["plan", "--policy", "examples/policy.toml", "--sim", "examples/sim/demo.json", "--as-of", "2026-11-24"];
    let out = amiwarden(workspace(), &[&demo[..], &["--format", "json"]].concat());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for part in ["actions", "refused", "kept"] {
        assert!(!plan[part].as_array().unwrap().is_empty(), "the demo plan has {part} to check");
    }
    assert_eq!(violations(&validator, &plan), Vec::<String>::new());
    let mut broken = plan.clone();
    broken["actions"][0]["op"] = "explode".into();
    broken.as_object_mut().unwrap().remove("totals");
    let found = violations(&validator, &broken);
    assert!(found.iter().any(|v| v.starts_with("/actions/0")), "{found:?}");
    assert!(found.iter().any(|v| v.contains("\"totals\" is a required property")), "{found:?}");
}

#[test]
fn the_policy_schema_accepts_the_example_policies_and_reads_accounts_as_the_scope_does() {
    let validator = schema("policy");
    let as_json = |text: &str| serde_json::to_value(toml::from_str::<toml::Table>(text).unwrap()).unwrap();
    let example = as_json(&std::fs::read_to_string(workspace().join("examples/policy.toml")).unwrap());
    assert_eq!(violations(&validator, &example), Vec::<String>::new());
    let scope = |accounts: &str| as_json(&format!("[scope]\naccounts = {accounts}\nregions = [\"us-east-1\"]\n"));
    for (accounts, valid) in [
        (r#"["111111111111", "222222222222"]"#, true),
        (r#""organization""#, true),
        (r#""everyone""#, false),
        (r#"["prod"]"#, false),
        ("12", false),
    ] {
        let found = violations(&validator, &scope(accounts));
        assert_eq!(found.is_empty(), valid, "accounts = {accounts}: {found:?}");
    }
    let found =
        violations(&validator, &as_json("[scope]\naccounts = []\nregions = []\n[guardrails]\nmax_destructiv = 3\n"));
    assert!(
        found.iter().any(|v| v.contains("max_destructiv")),
        "a typo is refused as the loader refuses it: {found:?}"
    );
    assert!(!violations(&validator, &as_json("[guardrails]\n")).is_empty(), "[scope] is required");
}
