//! Scheduled runs through a FIFO queue: two schedulers (an injected clock, no real
//! sleeps) enqueue each tick once, one shard per account, and a worker runs them.
//! Alone in its binary: it sets the test credentials in the process environment.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use support::Moto;

const ACCOUNT: &str = "111111111111";
const PROD: &str = "222222222222";

const POLICY: &str = r#"
[scope]
accounts = ["111111111111", "333333333333"]
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

fn shares(state: &std::path::Path) -> Vec<Value> {
    let s: Value = serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    s["accounts"][ACCOUNT]["regions"]["us-east-1"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["launch_permissions"].clone())
        .collect()
}

#[test]
fn two_schedulers_enqueue_each_tick_once_and_a_worker_runs_every_shard() {
    use amiwarden::aws::AwsOptions;
    use amiwarden::aws::queue::Queue;
    use amiwarden::model::Timestamp;
    use amiwarden::serve::{Metrics, Schedule, Service, Settings};

    support::use_test_credentials();
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(&moto.url)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "moto"))
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(config);
    let create = sqs.create_queue().queue_name("runs.fifo").attributes(QueueAttributeName::FifoQueue, "true");
    let fifo = rt.block_on(create.send()).unwrap().queue_url().unwrap().to_string();
    let count = || {
        let out = rt
            .block_on(
                sqs.get_queue_attributes()
                    .queue_url(&fifo)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                    .send(),
            )
            .unwrap();
        out.attributes().unwrap()[&QueueAttributeName::ApproximateNumberOfMessages].parse::<usize>().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("state.json"),
        serde_json::to_string_pretty(&support::tagged_org(ACCOUNT, 4)).unwrap(),
    )
    .unwrap();
    let policy = amiwarden::config::Policy::parse(POLICY).unwrap();
    let runtime = amiwarden::plugin::Runtime::new(None).unwrap();
    let plugins = amiwarden::plugin::load_plugins(&runtime, &policy).unwrap();
    let options = AwsOptions {
        profile: None,
        endpoint_url: Some(moto.url.clone()),
        max_attempts: Some(1),
        ..AwsOptions::default()
    };
    let queue = Queue::connect(&fifo, &options, "us-east-1").unwrap();
    let backend = amiwarden::sim::SimBackend::open(&dir.path().join("state.json"), Timestamp(0)).unwrap();
    let started: Timestamp = "2026-11-24T09:30:00Z".parse().unwrap();
    let now = std::sync::Mutex::new(started);
    let clock = || *now.lock().unwrap();
    let service = |state: &str| Service {
        settings: Settings {
            schedule: Some(Schedule::parse("0 * * * *").unwrap()),
            dry_run: false,
            state_dir: dir.path().join(state),
            keep_runs: 2,
            visibility: Duration::from_secs(10),
            wait: Duration::from_secs(1),
        },
        policy: &policy,
        plugins: &plugins,
        backend: &backend,
        queue: Some(&queue),
        metrics: Arc::new(Metrics::default()),
        clock: &clock,
        stop: Arc::new(AtomicBool::new(false)),
    };
    let (one, two) = (service("one"), service("two"));
    for s in [&one, &two] {
        std::fs::create_dir_all(&s.settings.state_dir).unwrap();
    }
    assert_eq!(one.tick(started).unwrap(), None, "nothing due before the first tick");
    *now.lock().unwrap() = "2026-11-24T10:00:05Z".parse().unwrap();
    assert!(one.tick(started).unwrap().is_some());
    assert!(two.tick(started).unwrap().is_some(), "the second scheduler also sees the tick due");
    assert_eq!(one.tick(started).unwrap(), None, "and not twice");
    assert_eq!(count(), 2, "one message per account for the tick, however many schedulers");
    // A worker runs both shards: the account outside the sim has nothing to do.
    while one.poll().unwrap() > 0 {}
    assert_eq!(count(), 0);
    let shares = shares(&dir.path().join("state.json"));
    assert!(shares.iter().all(|p| p == &json!([PROD])), "the scheduled run shared every image: {shares:?}");
    assert!(dir.path().join("one/runs/2026-11-24T10_00_00Z/111111111111.jsonl").is_file());
}
