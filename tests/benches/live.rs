//! Live-event latency: one EC2 event in, its plan out, on an inventory collected once
//! (a long-running worker's situation), with the stock plugins of the plan benchmark's
//! policy at their default limits and a warm compiled-plugin cache.
//!
//! Run: `CARGO_TARGET_DIR=target/bench BENCH_IMAGES=100000 cargo bench -p amiwarden-tests --bench live`.
//! Prints the decision latency (event JSON parsed → plan finished) median, p90, p99 and
//! max over `BENCH_EVENTS` events (default 400), with the four plugins and with each
//! alone (which one the latency is made of). The four run twice over the same events:
//! first on an inventory no event has ranked a family of yet (each family's first event
//! builds its ranking), then warm, as a worker runs after its first events. Last, what
//! building one family's ranking costs, on an inventory of its own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use amiwarden::config::Policy;
use amiwarden::inventory::{Inventory, Query};
use amiwarden::model::Timestamp;
use amiwarden::plugin::{Plugin, Runtime, load_plugins, needs};
use amiwarden::run::{Source, collect, plan_on};

const NOW: Timestamp = Timestamp(1_795_478_400); // 2026-11-24

/// The plan benchmark's policy (scripts/bench/policy.toml) without its `[plugin.limits]`
/// tables: every plugin at the default limits.
fn policy() -> Policy {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench/policy.toml");
    let text = std::fs::read_to_string(&path).expect("scripts/bench/policy.toml");
    let mut kept = Vec::new();
    let mut skip = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skip = line.trim() == "[plugin.limits]";
        }
        if !skip {
            kept.push(line);
        }
    }
    let mut policy = Policy::parse(&kept.join("\n")).expect("policy");
    policy.base_dir = path.parent().expect("scripts/bench").to_path_buf();
    policy
}

/// An EventBridge "EC2 AMI State Change" (available) about `image`.
fn event(image: &amiwarden::model::Image) -> Source {
    let text = serde_json::json!({
        "version": "0", "id": format!("e-{}", image.id), "detail-type": "EC2 AMI State Change",
        "source": "aws.ec2", "account": image.account, "time": "2026-11-23T16:02:40Z",
        "region": image.region, "resources": [],
        "detail": {"RequestId": "r", "ImageId": image.id, "State": "available", "ErrorReason": ""}
    });
    Source::Event { text: text.to_string(), origin: "bench".into() }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let images: usize = std::env::var("BENCH_IMAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let count: usize = std::env::var("BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let policy = policy();
    let cache = tempfile::tempdir().expect("temp dir");
    // Compile once into the cache, then load from it: the worker's warm start.
    load_plugins(&Runtime::new(Some(cache.path().to_path_buf())).expect("runtime"), &policy).expect("plugins");
    let runtime = Runtime::new(Some(cache.path().to_path_buf())).expect("runtime");
    let plugins = load_plugins(&runtime, &policy).expect("plugins");
    let backend = amiwarden::sim::SimBackend::in_memory(amiwarden::sim::synth::generate(images, NOW, 1), NOW);
    let started = Instant::now();
    let inventory = Arc::new(collect(&policy, &backend, &needs(&policy, &plugins)).expect("collect"));
    let collected = started.elapsed();

    // The fingerprint is a property of the inventory (hashed once per inventory, beside the
    // plugins' work in a scheduled run), not of an event.
    let started = Instant::now();
    let fingerprinted = inventory.fingerprint().len();
    let fingerprint = started.elapsed();

    let step = (inventory.images().len() / count).max(1);
    let picked: Vec<_> = inventory.images().iter().step_by(step).take(count).collect();
    println!(
        "## Live events: {} events on {} images ({} in the inventory, collected once in {:.1} s, fingerprinted ({fingerprinted} hex digits) in {:.2} s)\n",
        picked.len(),
        images,
        inventory.images().len(),
        collected.as_secs_f64(),
        fingerprint.as_secs_f64(),
    );
    println!("| plugins | median ms | p90 ms | p99 ms | max ms | actions planned |");
    println!("|---|---|---|---|---|---|");
    // All four, first events and warm, then each alone: which one the latency is made of.
    let mut subsets: Vec<(String, Vec<&Plugin>)> = vec![
        ("all four, first events".to_string(), plugins.iter().collect()),
        ("all four, warm".to_string(), plugins.iter().collect()),
    ];
    subsets.extend(plugins.iter().map(|p| (p.name.to_string(), vec![p])));
    for (label, subset) in subsets {
        let mut only = policy.clone();
        only.plugins.retain(|e| subset.iter().any(|p| *p.name == *e.name));
        let loaded = load_plugins(&runtime, &only).expect("plugins");
        let mut latencies = Vec::new();
        let mut actions = 0;
        for image in &picked {
            let source = event(image);
            let started = Instant::now();
            let planned = plan_on(&only, &loaded, Arc::clone(&inventory), &source, NOW, &|_, _| ()).expect("plan");
            latencies.push(started.elapsed().as_secs_f64() * 1e3);
            actions += planned.plan.actions.len();
        }
        latencies.sort_by(f64::total_cmp);
        println!(
            "| {label} | {:.3} | {:.3} | {:.3} | {:.3} | {actions} |",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.9),
            percentile(&latencies, 0.99),
            latencies[latencies.len() - 1]
        );
    }
    let fresh = collect(&policy, &backend, &needs(&policy, &plugins)).expect("collect");
    first_rankings(&fresh);
}

/// The first `rank` of each (account, region, family) of `inventory`, which builds the
/// family's ranking, against a second one, answered from the cache: median µs of each.
fn first_rankings(inventory: &Inventory) {
    let mut seen = std::collections::BTreeSet::new();
    let (mut first, mut again) = (Vec::new(), Vec::new());
    for image in inventory.images() {
        let Some(family) = image.tags.get("family") else { continue };
        if !seen.insert((image.account.as_str(), image.region.as_str(), family.as_str())) {
            continue;
        }
        let query = Query {
            account: Some(image.account.clone()),
            region: Some(image.region.clone()),
            tag_key: Some("family".into()),
            tag_value: Some(family.clone()),
            ..Query::default()
        };
        for times in [&mut first, &mut again] {
            let started = Instant::now();
            assert!(inventory.rank(&query, &image.id).is_some(), "{} ranks in its family", image.id);
            times.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    first.sort_by(f64::total_cmp);
    again.sort_by(f64::total_cmp);
    println!(
        "\nA family's ranking: {} families (account, region, tag value), first rank median {:.1} µs (max {:.1}), from the cache {:.2} µs",
        first.len(),
        percentile(&first, 0.5),
        first[first.len() - 1],
        percentile(&again, 0.5),
    );
}
