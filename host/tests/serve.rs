//! `amiwarden serve` against moto's SQS (and EC2) on loopback: events in, actions
//! applied, messages deleted; poison to the dead-letter queue; duplicates applied once;
//! two workers on one queue; SIGTERM mid-batch; schedulers enqueuing a tick once; dry runs.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use support::{Moto, org_image_id};

const ACCOUNT: &str = "111111111111";
const PROD: &str = "222222222222";

const POLICY: &str = r#"
[scope]
accounts = ["111111111111"]
regions = ["us-east-1"]

[guardrails]
allowed_principals = ["222222222222"]

[[plugin]]
name = "sharing"
source = "builtin:sharing"
grants = ["share", "unshare"]
[plugin.config]
share_tag = "share-with"
groups = { prod = ["222222222222"] }
"#;

fn event(account: &str, image: &str) -> String {
    json!({"version": "0", "id": format!("e-{image}"), "detail-type": "EC2 AMI State Change", "source": "aws.ec2",
           "account": account, "time": "2026-11-24T00:00:00Z", "region": "us-east-1", "resources": [],
           "detail": {"RequestId": "r", "ImageId": image, "State": "available", "ErrorMessage": ""}})
    .to_string()
}

struct Sqs {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_sqs::Client,
}

impl Sqs {
    fn new(moto: &Moto) -> Sqs {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(&moto.url)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "moto"))
            .build();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Sqs { rt, client: aws_sdk_sqs::Client::from_conf(config) }
    }

    /// A queue with a dead-letter queue after `max_receives`; returns (queue, dlq) URLs.
    fn queue(&self, name: &str, max_receives: u32) -> (String, String) {
        self.rt.block_on(async {
            let dlq = self.client.create_queue().queue_name(format!("{name}-dlq")).send().await.unwrap();
            let dlq = dlq.queue_url().unwrap().to_string();
            let arn = self
                .client
                .get_queue_attributes()
                .queue_url(&dlq)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap()
                .attributes()
                .unwrap()[&QueueAttributeName::QueueArn]
                .clone();
            let redrive = json!({"deadLetterTargetArn": arn, "maxReceiveCount": max_receives}).to_string();
            let q = self
                .client
                .create_queue()
                .queue_name(name)
                .attributes(QueueAttributeName::RedrivePolicy, redrive)
                .send()
                .await
                .unwrap();
            (q.queue_url().unwrap().to_string(), dlq)
        })
    }

    fn delete(&self, url: &str) {
        self.rt.block_on(self.client.delete_queue().queue_url(url).send()).unwrap();
    }

    fn send(&self, url: &str, body: &str) {
        self.rt.block_on(self.client.send_message().queue_url(url).message_body(body).send()).unwrap();
    }

    /// Messages in the queue, visible or in flight.
    fn count(&self, url: &str) -> usize {
        let out = self
            .rt
            .block_on(
                self.client
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                    .send(),
            )
            .unwrap();
        let attrs = out.attributes().unwrap();
        let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        n(QueueAttributeName::ApproximateNumberOfMessages)
            + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
    }

    fn bodies(&self, url: &str) -> Vec<String> {
        let out = self
            .rt
            .block_on(
                self.client.receive_message().queue_url(url).max_number_of_messages(10).wait_time_seconds(1).send(),
            )
            .unwrap();
        out.messages().iter().filter_map(|m| m.body().map(str::to_string)).collect()
    }
}

fn credentials(cmd: &mut Command) -> &mut Command {
    cmd.envs(support::TEST_CREDENTIALS).env("AMIWARDEN_LOG", "info")
}

/// Starts a worker on the sim state in `dir`; its stderr goes to `log`.
fn worker(dir: &Path, moto: &Moto, queue: &str, log: &str, extra: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amiwarden"));
    credentials(&mut cmd)
        .current_dir(dir)
        .args(["serve", "--policy", "policy.toml", "--sim", "state.json", "--queue-url", queue])
        .args(["--queue-endpoint-url", &moto.url, "--max-attempts", "1", "--state-dir", "serve-state"])
        .args(["--poll-wait", "1"])
        .args(if extra.contains(&"--visibility-timeout") { &[][..] } else { &["--visibility-timeout", "10"][..] })
        .args(extra)
        .arg("--cache-dir")
        .arg(concat!(env!("CARGO_TARGET_TMPDIR"), "/serve-cache"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            let logs: Vec<String> = std::fs::read_dir(std::env::temp_dir())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .map(|p| format!("{}:\n{}", p.display(), std::fs::read_to_string(&p).unwrap_or_default()))
                .collect();
            panic!("timed out waiting for {what}; worker logs:\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM and waits for the worker to exit; returns its exit code.
fn terminate(child: &mut Child) -> Option<i32> {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "the worker did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn setup(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    std::fs::write(
        dir.path().join("state.json"),
        serde_json::to_string_pretty(&support::tagged_org(ACCOUNT, n)).unwrap(),
    )
    .unwrap();
    dir
}

/// Launch permissions per image in the sim state.
fn shares(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let s: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    s["accounts"][ACCOUNT]["regions"]["us-east-1"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let perms = i["launch_permissions"]
                .as_array()
                .map_or(Vec::new(), |p| p.iter().map(|v| v.as_str().unwrap().to_string()).collect());
            (i["id"].as_str().unwrap().to_string(), perms)
        })
        .collect()
}

/// `done` lines per action id over every journal the workers wrote.
fn done_lines(dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let events = dir.join("serve-state/events");
    for entry in std::fs::read_dir(events).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
                let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                if v["phase"] == "done" {
                    *out.entry(v["action_id"].as_str().unwrap().to_string()).or_default() += 1;
                }
            }
        }
    }
    out
}

fn metrics(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn an_event_is_applied_once_then_deleted_even_when_delivered_twice() {
    let moto = Moto::start();
    let sqs = Sqs::new(&moto);
    let (queue, _) = sqs.queue("events", 3);
    let dir = setup(3);
    let target = org_image_id(1);
    sqs.send(&queue, &event(ACCOUNT, &target));
    sqs.send(&queue, &event(ACCOUNT, &target));
    let port = free_port();
    let mut w = worker(dir.path(), &moto, &queue, "w.log", &["--metrics", &port.to_string()]);
    wait_until("both messages handled", Duration::from_secs(60), || sqs.count(&queue) == 0);
    let text = metrics(port);
    assert_eq!(terminate(&mut w), Some(0));
    let shares = shares(dir.path());
    assert_eq!(shares[&target], [PROD], "{shares:?}");
    assert!(shares.iter().filter(|(id, _)| **id != target).all(|(_, p)| p.is_empty()), "only the event's image");
    let done = done_lines(dir.path());
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(done.values().all(|n| *n == 1), "one action, applied once: {done:?}");
    for line in [
        r#"amiwarden_messages_received_total{kind="event"} 2"#,
        r#"amiwarden_actions_total{op="share",outcome="done"} 1"#,
        r#"amiwarden_messages_handled_total{kind="event",result="applied"} 1"#,
        r#"amiwarden_messages_handled_total{kind="event",result="no-change"} 1"#,
    ] {
        assert!(text.contains(line), "{line} not in {text}");
    }
}

#[test]
fn a_poison_message_reaches_the_dead_letter_queue_with_its_error_logged() {
    let moto = Moto::start();
    let sqs = Sqs::new(&moto);
    let (queue, dlq) = sqs.queue("poison", 2);
    let dir = setup(1);
    sqs.send(&queue, "this is not an event");
    let outside = event("999999999999", &org_image_id(0));
    sqs.send(&queue, &outside);
    let mut w = worker(dir.path(), &moto, &queue, "w.log", &["--visibility-timeout", "2"]);
    wait_until("the poison message in the dead-letter queue", Duration::from_secs(60), || sqs.count(&dlq) == 1);
    wait_until("the queue drained", Duration::from_secs(30), || sqs.count(&queue) == 0);
    assert_eq!(terminate(&mut w), Some(0));
    assert_eq!(
        sqs.bodies(&dlq),
        ["this is not an event"],
        "the event outside the scope is acknowledged, not dead-lettered"
    );
    let log = std::fs::read_to_string(dir.path().join("w.log")).unwrap();
    assert!(log.contains("is not one amiwarden reads"), "{log}");
    assert!(log.contains("outside the policy's scope"), "{log}");
}

#[test]
fn two_workers_on_one_queue_handle_every_event_once_and_lose_none() {
    let n = 200;
    let moto = Moto::start();
    let sqs = Sqs::new(&moto);
    let (queue, dlq) = sqs.queue("many", 5);
    let dir = setup(n);
    for i in 0..n {
        sqs.send(&queue, &event(ACCOUNT, &org_image_id(i)));
    }
    let mut a = worker(dir.path(), &moto, &queue, "a.log", &[]);
    let mut b = worker(dir.path(), &moto, &queue, "b.log", &[]);
    wait_until("every event handled", Duration::from_secs(600), || sqs.count(&queue) == 0);
    let codes = (terminate(&mut a), terminate(&mut b));
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    assert_eq!(codes, (Some(0), Some(0)), "a.log:\n{}\nb.log:\n{}", log("a.log"), log("b.log"));
    let errors: Vec<String> =
        [log("a.log"), log("b.log")].join("\n").lines().filter(|l| l.contains("ERROR")).map(str::to_string).collect();
    assert_eq!(sqs.count(&dlq), 0, "nothing failed: {errors:#?}");
    let shares = shares(dir.path());
    assert!(shares.values().all(|p| p == &[PROD]), "every image shared: {shares:?}");
    let done = done_lines(dir.path());
    assert_eq!(done.len(), n, "one action per image");
    assert!(done.values().all(|n| *n == 1), "none applied twice");
    let handled = |log: &str| std::fs::read_to_string(dir.path().join(log)).unwrap().matches("applied").count();
    assert!(handled("a.log") > 0 && handled("b.log") > 0, "both workers took part");
}

#[test]
fn sigterm_mid_batch_loses_no_message_and_a_restart_finishes_them() {
    let n = 40;
    let moto = Moto::start();
    let sqs = Sqs::new(&moto);
    let (queue, dlq) = sqs.queue("term", 5);
    let dir = setup(n);
    for i in 0..n {
        sqs.send(&queue, &event(ACCOUNT, &org_image_id(i)));
    }
    let mut w = worker(dir.path(), &moto, &queue, "w1.log", &[]);
    wait_until("a few events handled", Duration::from_secs(120), || done_lines(dir.path()).len() >= 3);
    assert_eq!(terminate(&mut w), Some(0), "a graceful stop exits 0");
    let after_stop = done_lines(dir.path()).len();
    assert!(after_stop < n, "stopped mid-way ({after_stop} of {n})");
    let mut again = worker(dir.path(), &moto, &queue, "w2.log", &[]);
    wait_until("the rest handled", Duration::from_secs(300), || sqs.count(&queue) == 0);
    assert_eq!(terminate(&mut again), Some(0));
    assert_eq!(sqs.count(&dlq), 0);
    let done = done_lines(dir.path());
    assert_eq!(done.len(), n);
    assert!(done.values().all(|n| *n == 1), "{done:?}");
}

#[test]
fn a_batch_stays_invisible_while_its_first_messages_are_worked_on() {
    let moto = Moto::start();
    let sqs = Sqs::new(&moto);
    let (queue, dlq) = sqs.queue("slow", 5);
    let dir = setup(3);
    for i in 0..3 {
        sqs.send(&queue, &event(ACCOUNT, &org_image_id(i)));
    }
    // Worker a takes the three in one receive; each event's plan and share take two
    // simulated calls of 1.5 s, so the third is started ~6 s after the batch arrived,
    // past the 4 s its visibility timeout gave it unless a extends it too. Worker b,
    // idle, would receive whatever reappears.
    let (port_a, port_b) = (free_port(), free_port());
    let slow = ["--visibility-timeout", "4", "--sim-latency-ms", "1500", "--metrics"];
    let mut a = worker(dir.path(), &moto, &queue, "a.log", &[&slow[..], &[&port_a.to_string()]].concat());
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    wait_until("a at work on the batch", Duration::from_secs(60), || log("a.log").contains("inventory of"));
    let mut b = worker(dir.path(), &moto, &queue, "b.log", &[&slow[..], &[&port_b.to_string()]].concat());
    wait_until("every event handled", Duration::from_secs(120), || sqs.count(&queue) == 0);
    let received = |port: u16| {
        let text = metrics(port);
        let line = text.lines().find(|l| l.starts_with(r#"amiwarden_messages_received_total{kind="event"}"#));
        line.and_then(|l| l.rsplit(' ').next()).map_or(0, |n| n.parse::<u64>().unwrap())
    };
    let (by_a, by_b) = (received(port_a), received(port_b));
    assert_eq!((terminate(&mut a), terminate(&mut b)), (Some(0), Some(0)));
    assert_eq!(sqs.count(&dlq), 0);
    assert_eq!((by_a, by_b), (3, 0), "each message received once, by a:\n{}\n{}", log("a.log"), log("b.log"));
    assert!(done_lines(dir.path()).values().all(|n| *n == 1));
}

#[test]
fn the_service_outlives_its_queue_failing_and_goes_on_once_it_is_back() {
    let moto = Moto::start();
    let sqs = Sqs::new(&moto);
    let (queue, _) = sqs.queue("flaky", 3);
    let dir = setup(2);
    let mut w = worker(dir.path(), &moto, &queue, "w.log", &[]);
    let log = || std::fs::read_to_string(dir.path().join("w.log")).unwrap_or_default();
    wait_until("the worker serving", Duration::from_secs(60), || log().contains("serving"));
    // Every receive now fails (the queue is gone), for a few loops.
    sqs.delete(&queue);
    wait_until("a failed receive logged", Duration::from_secs(60), || log().contains("receiving from the queue"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(w.try_wait().unwrap().is_none(), "the worker is still running:\n{}", log());
    let (again, _) = sqs.queue("flaky", 3);
    assert_eq!(again, queue, "moto gives the queue its old URL");
    sqs.send(&queue, &event(ACCOUNT, &org_image_id(1)));
    wait_until("the event handled", Duration::from_secs(120), || shares(dir.path())[&org_image_id(1)] == [PROD]);
    assert_eq!(terminate(&mut w), Some(0));
}

#[test]
fn a_dry_run_plans_and_acknowledges_but_changes_nothing() {
    let moto = Moto::start();
    let sqs = Sqs::new(&moto);
    let (queue, _) = sqs.queue("dry", 3);
    let dir = setup(2);
    let before = std::fs::read(dir.path().join("state.json")).unwrap();
    sqs.send(&queue, &event(ACCOUNT, &org_image_id(0)));
    let mut w = worker(dir.path(), &moto, &queue, "w.log", &["--dry-run"]);
    wait_until("the event handled", Duration::from_secs(60), || sqs.count(&queue) == 0);
    assert_eq!(terminate(&mut w), Some(0));
    assert_eq!(std::fs::read(dir.path().join("state.json")).unwrap(), before);
    let plans: Vec<_> = std::fs::read_dir(dir.path().join("serve-state/events"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().to_string_lossy().ends_with(".plan.json"))
        .collect();
    assert_eq!(plans.len(), 1);
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(plans[0].path()).unwrap()).unwrap();
    assert_eq!(plan["actions"][0]["op"], "share");
}

/// The same path on moto's EC2: a worker with `--aws` re-reads the image named by the
/// event from EC2, shares it as the policy asks, and deletes the message; other images
/// are left alone.
#[test]
fn an_event_is_applied_on_moto_ec2_through_the_aws_backend() {
    const MOTO_ACCOUNT: &str = "123456789012";
    let moto = Moto::start();
    let sqs = Sqs::new(&moto);
    let (queue, _) = sqs.queue("aws-events", 3);
    let ec2 = support::sdk(&moto, "us-east-1");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ids: Vec<String> = rt.block_on(async {
        let mut ids = Vec::new();
        for i in 0..3 {
            let out = ec2.register_image().name(format!("golden-{i}")).root_device_name("/dev/xvda").send().await;
            let id = out.unwrap().image_id().unwrap().to_string();
            let tag = aws_sdk_ec2::types::Tag::builder().key("share-with").value("prod").build();
            ec2.create_tags().resources(&id).tags(tag).send().await.unwrap();
            ids.push(id);
        }
        ids
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY.replace(ACCOUNT, MOTO_ACCOUNT)).unwrap();
    sqs.send(&queue, &event(MOTO_ACCOUNT, &ids[1]));
    let log = std::fs::File::create(dir.path().join("w.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amiwarden"));
    let mut w = credentials(&mut cmd)
        .current_dir(dir.path())
        .args(["serve", "--policy", "policy.toml", "--aws", "--endpoint-url", &moto.url, "--queue-url", &queue])
        .args(["--max-attempts", "1", "--state-dir", "serve-state", "--poll-wait", "1", "--visibility-timeout", "10"])
        .arg("--cache-dir")
        .arg(concat!(env!("CARGO_TARGET_TMPDIR"), "/serve-cache"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_until("the event handled", Duration::from_secs(60), || sqs.count(&queue) == 0);
    assert_eq!(terminate(&mut w), Some(0));
    let log = std::fs::read_to_string(dir.path().join("w.log")).unwrap();
    rt.block_on(async {
        assert_eq!(support::launch_permissions(&ec2, &ids[1]).await, [PROD], "{log}");
        for other in [&ids[0], &ids[2]] {
            assert!(support::launch_permissions(&ec2, other).await.is_empty(), "only the event's image: {log}");
        }
    });
}
