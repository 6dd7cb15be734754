//! The deploy examples are tested: YAML and JSON parse, the systemd unit has what systemd
//! needs, every amiwarden command line in them parses with this amiwarden's own parser,
//! and the worker IAM policy is what `amiwarden iam-policy` prints today.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]
use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use serde_json::Value;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy")
}

fn parses(args: &[String], origin: &str) {
    let mut argv = vec!["amiwarden".to_string()];
    argv.extend(args.iter().cloned());
    if let Err(e) = amiwarden::cli::Cli::try_parse_from(&argv) {
        panic!("{origin}: `{}` does not parse: {e}", argv.join(" "));
    }
}

#[test]
fn the_systemd_unit_runs_a_command_amiwarden_accepts() {
    let text = std::fs::read_to_string(deploy().join("amiwarden.service")).unwrap();
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(text.contains(section), "{section}");
    }
    let joined = text.replace("\\\n", " ");
    let exec = joined.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    let words: Vec<String> = shell_words(exec);
    assert!(words[0].ends_with("/amiwarden"), "{words:?}");
    parses(&words[1..], "amiwarden.service");
}

/// Splits a command line on blanks, keeping "double quoted" words whole.
fn shell_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[test]
fn the_kubernetes_manifests_parse_and_their_commands_are_accepted() {
    let path = deploy().join("kubernetes.yaml");
    // PyYAML comes with moto, which the test setup installs.
    let out = Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ServiceAccount", "ConfigMap", "Deployment", "CronJob"]);
    let policy = docs[1]["data"]["policy.toml"].as_str().unwrap();
    amiwarden::config::Policy::parse(policy).unwrap();
    let containers = [
        &docs[2]["spec"]["template"]["spec"]["containers"][0],
        &docs[3]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0],
    ];
    for c in containers {
        let args: Vec<String> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
        parses(&args, "kubernetes.yaml");
    }
}

#[test]
fn the_cloudformation_template_declares_the_queue_its_dead_letter_queue_and_the_rule() {
    let text = std::fs::read_to_string(deploy().join("eventbridge-sqs.json")).unwrap();
    let t: Value = serde_json::from_str(&text).unwrap();
    let r = &t["Resources"];
    assert_eq!(r["EventsQueue"]["Properties"]["FifoQueue"], true);
    assert_eq!(
        r["EventsQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0],
        "DeadLetterQueue"
    );
    let pattern = &r["AmiEventsRule"]["Properties"]["EventPattern"];
    assert_eq!(pattern["source"][0], "aws.ec2");
    let names: Vec<&str> =
        pattern["$or"][1]["detail"]["eventName"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for call in ["CreateImage", "CopyImage", "ModifyImageAttribute", "DeregisterImage", "CreateTags"] {
        assert!(names.contains(&call), "{call}");
    }
}

#[test]
fn the_worker_iam_policy_is_what_iam_policy_prints() {
    let queue = "https://sqs.us-east-1.amazonaws.com/111111111111/amiwarden-events.fifo";
    let out = Command::new(env!("CARGO_BIN_EXE_amiwarden"))
        .args(["iam-policy", "--policy", "examples/policy.toml", "--queue-url", queue])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy().join("iam-worker.json")).unwrap()).unwrap();
    assert_eq!(printed, committed, "regenerate examples/deploy/iam-worker.json with the command in its README");
}
