//! Live events from the command line pay for what they touch: an event collects its own
//! account, a saved plan of it is not made stale by a change in another account, and
//! `apply --event` applies it.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

const POLICY: &str = r#"
[scope]
accounts = ["111111111111", "222222222222"]
regions = ["us-east-1", "eu-west-1"]

[[plugin]]
name = "sharing"
source = "builtin:sharing"
grants = ["share", "unshare"]
[plugin.config]
share_tag = "share-with"
groups = { prod = ["222222222222"] }
"#;

fn state() -> Value {
    let region = |prefix: &str| {
        let images: Vec<Value> = (1..=3)
            .map(|i| {
                json!({"id": format!("ami-{prefix}{i:016x}"), "name": format!("golden-{i}"),
                             "creation_time": "2026-11-01T00:00:00Z", "tags": {"share-with": "prod"}})
            })
            .collect();
        json!({"images": images})
    };
    json!({"version": 1, "accounts": {
        "111111111111": {"regions": {"us-east-1": region("a"), "eu-west-1": region("b")}},
        "222222222222": {"regions": {"us-east-1": region("c"), "eu-west-1": region("d")}}
    }})
}

fn event(image: &str) -> String {
    json!({"version": "0", "id": "e", "detail-type": "EC2 AMI State Change", "source": "aws.ec2",
           "account": "111111111111", "time": "2026-11-24T00:00:00Z", "region": "us-east-1", "resources": [],
           "detail": {"RequestId": "r", "ImageId": image, "State": "available", "ErrorMessage": ""}})
    .to_string()
}

fn amiwarden(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_amiwarden"))
        .current_dir(dir)
        .args(args)
        .arg("--cache-dir")
        .arg(concat!(env!("CARGO_TARGET_TMPDIR"), "/events-cache"))
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    std::fs::write(dir.path().join("state.json"), serde_json::to_string_pretty(&state()).unwrap()).unwrap();
    std::fs::write(dir.path().join("event.json"), event("ami-a0000000000000001")).unwrap();
    dir
}

const PLAN: &[&str] = &["plan", "--policy", "policy.toml", "--sim", "state.json", "--as-of", "2026-11-24"];

#[test]
fn an_event_collects_its_own_account_only() {
    let dir = setup();
    let scheduled = amiwarden(dir.path(), PLAN);
    assert!(stderr(&scheduled).contains("DescribeImages 4"), "{}", stderr(&scheduled));
    let out = amiwarden(dir.path(), &[PLAN, &["--event", "event.json", "--format", "json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("DescribeImages 2"), "one account's two regions: {}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions = plan["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{actions:#?}");
    assert_eq!(actions[0]["image_id"], "ami-a0000000000000001");
    assert_eq!(plan["source"]["kind"], "event");
}

#[test]
fn a_saved_event_plan_survives_an_unrelated_change_and_apply_event_applies() {
    let dir = setup();
    let out = amiwarden(dir.path(), &[PLAN, &["--event", "event.json", "--out", "plan.json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A tag edit in the other account does not make the event's plan stale.
    let mut s = state();
    s["accounts"]["222222222222"]["regions"]["us-east-1"]["images"][0]["tags"]["team"] = json!("x");
    std::fs::write(dir.path().join("state.json"), serde_json::to_string_pretty(&s).unwrap()).unwrap();
    let apply = ["apply", "--policy", "policy.toml", "--sim", "state.json", "--as-of", "2026-11-24", "--yes"];
    let out = amiwarden(dir.path(), &[&apply[..], &["--plan", "plan.json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 done"), "{}", stderr(&out));
    // apply --event applies the event's plan directly; here for another image.
    std::fs::write(dir.path().join("event2.json"), event("ami-a0000000000000002")).unwrap();
    let out = amiwarden(dir.path(), &[&apply[..], &["--event", "event2.json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("state.json")).unwrap()).unwrap();
    let images = after["accounts"]["111111111111"]["regions"]["us-east-1"]["images"].as_array().unwrap();
    let shared: Vec<&str> = images
        .iter()
        .filter(|i| i["launch_permissions"] == json!(["222222222222"]))
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(shared, ["ami-a0000000000000001", "ami-a0000000000000002"]);
}

/// A CreateTags event that names one image 4,000 times (165 KB) is one image event: the
/// plan is the one of an event naming it once, and a note says what was merged.
#[test]
fn an_image_named_many_times_in_one_event_is_decided_once() {
    let dir = setup();
    let tags_event = |times: usize| {
        let items: Vec<Value> = (0..times).map(|_| json!({"resourceId": "ami-a0000000000000001"})).collect();
        json!({"version": "0", "id": "e", "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2",
               "account": "111111111111", "time": "2026-11-24T00:00:00Z", "region": "us-east-1",
               "detail": {"eventName": "CreateTags", "awsRegion": "us-east-1", "recipientAccountId": "111111111111",
                          "requestParameters": {"resourcesSet": {"items": items},
                                                "tagSet": {"items": [{"key": "share-with", "value": "prod"}]}}}})
        .to_string()
    };
    std::fs::write(dir.path().join("once.json"), tags_event(1)).unwrap();
    std::fs::write(dir.path().join("many.json"), tags_event(4000)).unwrap();
    let once = amiwarden(dir.path(), &[PLAN, &["--event", "once.json", "--format", "json"]].concat());
    let many = amiwarden(dir.path(), &[PLAN, &["--event", "many.json", "--format", "json"]].concat());
    assert_eq!(many.status.code(), Some(0), "{}", stderr(&many));
    let actions = |o: &Output| serde_json::from_slice::<Value>(&o.stdout).unwrap()["actions"].clone();
    assert_eq!(actions(&many), actions(&once));
    assert_eq!(actions(&once).as_array().unwrap().len(), 1, "one share of the one image");
    assert!(stderr(&many).contains("3999 repeated mention(s) of an image merged"), "{}", stderr(&many));
}

/// Where the address space is limited (`ulimit -v`) and wasmtime's instance pool cannot
/// be reserved, plugin stores map their own memory: the plan is the same, with a warning.
#[test]
fn a_limited_address_space_plans_the_same_without_the_instance_pool() {
    let dir = setup();
    let args = [PLAN, &["--event", "event.json", "--format", "json"]].concat();
    let pooled = amiwarden(dir.path(), &args);
    assert_eq!(pooled.status.code(), Some(0), "{}", stderr(&pooled));
    assert!(!stderr(&pooled).contains("instance pool"), "{}", stderr(&pooled));
    // 64 GiB: room for stores that map their own 4 GiB each, not for the pool's slots.
    let limited = Command::new("sh")
        .current_dir(dir.path())
        .arg("-c")
        .arg("ulimit -v 67108864 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_amiwarden"))
        .args(&args)
        .arg("--cache-dir")
        .arg(concat!(env!("CARGO_TARGET_TMPDIR"), "/events-cache"))
        .output()
        .unwrap();
    assert_eq!(limited.status.code(), Some(0), "{}", stderr(&limited));
    assert!(stderr(&limited).contains("plugin stores map their own memory"), "{}", stderr(&limited));
    let actions = |o: &Output| serde_json::from_slice::<Value>(&o.stdout).unwrap()["actions"].clone();
    assert_eq!(actions(&limited), actions(&pooled));
    assert_eq!(actions(&pooled).as_array().unwrap().len(), 1);
}
