//! Plugin benchmarks: evaluations per second on one core, wasm beside the same logic
//! compiled natively; per-call latency with a fresh instance, a warm one, and a warm one
//! on a bare image (the floor of any call); cold compile versus cached load. Run:
//! `cargo bench -p amiwarden-tests --bench plugins`.
//! Prints a markdown table; BENCHMARKS.md holds a run's output.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amiwarden::event::scheduled_event;
use amiwarden::model;
use amiwarden::plugin::{Limits, Lowered, PluginSpec, Runtime};
use amiwarden_sdk as sdk;

mod common;
use common::NOW;

/// The same image in the SDK's (guest) types, for the native runs.
fn to_sdk(i: &model::Image) -> sdk::Image {
    let principal = |p: &model::Principal| match p {
        model::Principal::Account(s) => sdk::Principal::Account(s.clone()),
        model::Principal::Organization(s) => sdk::Principal::Organization(s.clone()),
        model::Principal::OrganizationalUnit(s) => sdk::Principal::OrganizationalUnit(s.clone()),
        model::Principal::Public => sdk::Principal::Public,
    };
    sdk::Image {
        id: i.id.clone(),
        account: i.account.clone(),
        region: i.region.clone(),
        name: i.name.clone(),
        description: i.description.clone(),
        creation_time: i.creation_time.0,
        state: sdk::ImageState::Available,
        architecture: sdk::Architecture::X8664,
        platform: sdk::Platform::Linux,
        root_device_type: sdk::RootDeviceType::Ebs,
        public: i.is_public(),
        launch_permissions: i.launch_permissions.as_ref().map(|ps| ps.iter().map(principal).collect()),
        tags: i.tags.iter().map(|(k, v)| sdk::Tag::new(k, v)).collect(),
        block_devices: i
            .block_devices
            .iter()
            .map(|b| sdk::BlockDevice {
                device_name: b.device_name.clone(),
                snapshot_id: b.snapshot_id.clone(),
                size_gib: b.size_gib,
                full_size_bytes: b.full_size_bytes,
                storage_tier: sdk::StorageTier::Standard,
            })
            .collect(),
        deprecation_time: i.deprecation_time.map(|t| t.0),
        source_image_id: i.source_image_id.clone(),
        source_region: i.source_region.clone(),
        usage: sdk::Usage {
            instances: i.usage.instances,
            launch_templates: i.usage.launch_templates.clone(),
            last_launched: i.usage.last_launched.map(|t| t.0),
        },
        monthly_cost: i.monthly_cost,
    }
}

struct Subject {
    name: &'static str,
    wasm: Vec<u8>,
    config: serde_json::Value,
    native: fn(&str, &[sdk::ImageEvent]) -> usize,
}

fn run_native<P: sdk::Policy>(config: &str, events: &[sdk::ImageEvent]) -> usize {
    let mut policy = P::default();
    policy.configure(config).expect("config");
    events.iter().map(|e| policy.propose(e).map(|p| p.len()).unwrap_or(0)).sum()
}

fn subjects() -> Vec<Subject> {
    let builtin = |name| amiwarden::builtin::get(name).expect("built in").to_vec();
    vec![
        Subject {
            name: "trivial (keep-tagged)",
            wasm: std::fs::read(amiwarden_tests::TRIVIAL).expect("trivial guest"),
            config: serde_json::json!({}),
            native: run_native::<amiwarden_guest_trivial::KeepTagged>,
        },
        Subject {
            name: "retention",
            wasm: builtin("retention"),
            config: serde_json::json!({"family": {"tag": "family"}, "keep_newest": 3, "deprecate_after_days": 30,
                "disable_after_days": 90, "deregister_after_days": 180, "delete_snapshots": true, "exempt_tags": ["keep"]}),
            native: run_native::<amiwarden_plugin_retention::Retention>,
        },
        Subject {
            name: "sharing",
            wasm: builtin("sharing"),
            config: serde_json::json!({"share_tag": "share-with", "groups": {"prod": ["222222222222"]}, "allowed": []}),
            native: run_native::<amiwarden_plugin_sharing::Sharing>,
        },
        Subject {
            name: "replication",
            wasm: builtin("replication"),
            config: serde_json::json!({"source_regions": ["us-east-1"], "select": {"tag": "family"},
                "targets": {"eu-west-1": {"encrypted": true}}}),
            native: run_native::<amiwarden_plugin_replication::Replication>,
        },
        Subject {
            name: "cost-guard",
            wasm: builtin("cost-guard"),
            config: serde_json::json!({"budgets": [{"account": "111111111111", "region": "eu-west-1", "monthly_usd": "100.00"}]}),
            native: run_native::<amiwarden_plugin_cost_guard::CostGuard>,
        },
    ]
}

/// The event with its image cut to what every image has (id, account, region, times,
/// enums): a call on it is the floor of a call, whatever a plugin reads.
fn bare(event: &model::ImageEvent) -> Lowered {
    let mut event = event.clone();
    let image = &mut event.image;
    image.name.clear();
    image.description.clear();
    image.tags = Default::default();
    image.block_devices.clear();
    image.launch_permissions = None;
    image.usage = Default::default();
    image.source_image_id = None;
    image.source_region = None;
    Lowered::from(&event)
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let images = common::images();
    let all_needs: BTreeSet<model::InventoryNeed> =
        [model::InventoryNeed::LaunchPermissions, model::InventoryNeed::Usage, model::InventoryNeed::Snapshots].into();
    let inventory = common::inventory(images, &all_needs);
    let events: Vec<model::ImageEvent> = inventory.images().iter().map(|i| scheduled_event(i, NOW)).collect();
    let wit_events: Vec<Lowered> = events.iter().map(Lowered::from).collect();
    let sdk_events: Vec<sdk::ImageEvent> = events
        .iter()
        .map(|e| sdk::ImageEvent {
            kind: sdk::EventKind::Scheduled,
            image: to_sdk(&e.image),
            evaluation_time: NOW.0,
            raw: String::new(),
        })
        .collect();
    sdk::testing::set_inventory(inventory.images().iter().map(to_sdk).collect(), NOW.0);

    println!("## Plugins: evaluations per second on one core ({images} synthetic images, scheduled events)\n");
    println!(
        "| plugin | wasm µs/event | native µs/event | wasm ÷ native | wasm events/s | fresh-instance call µs | warm call µs | warm call, bare image µs |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let cache = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(Some(cache.path().to_path_buf())).expect("runtime");
    let mut compile_rows = Vec::new();
    for s in subjects() {
        let spec = |batch| PluginSpec {
            name: s.name.into(),
            origin: s.name.into(),
            sha256: None,
            limits: Limits { batch, ..Limits::default() },
            data_dir: None,
            config: s.config.to_string(),
        };
        let cold = Instant::now();
        let plugin = runtime.load(&s.wasm, spec(Limits::default().batch)).expect("load");
        let cold = cold.elapsed();
        let cached = Instant::now();
        let _again = runtime.load(&s.wasm, spec(Limits::default().batch)).expect("load cached");
        let cached = cached.elapsed();
        compile_rows.push((s.name, s.wasm.len(), cold, cached));

        // Wasm, one core: a fresh store per batch of events, as the engine does.
        let loaded = [plugin];
        let start = Instant::now();
        let mut produced = 0;
        for chunk in wit_events.chunks(Limits::default().batch) {
            let mut session = loaded[0].session(Arc::clone(&inventory), NOW).expect("session");
            for e in chunk {
                produced += session.propose_lowered(e).map(|p| p.len()).unwrap_or(0);
            }
        }
        let wasm = start.elapsed();

        // The same logic natively.
        let start = Instant::now();
        let native_produced = (s.native)(&s.config.to_string(), &sdk_events);
        let native = start.elapsed();
        assert_eq!(produced, native_produced, "{}: wasm and native disagree", s.name);

        // Latency: a fresh instance per call, and a warm instance.
        let fresh_n = 2000.min(wit_events.len());
        let start = Instant::now();
        for e in &wit_events[..fresh_n] {
            let mut session = loaded[0].session(Arc::clone(&inventory), NOW).expect("session");
            let _ = session.propose_lowered(e);
        }
        let fresh = start.elapsed();
        let mut session = loaded[0].session(Arc::clone(&inventory), NOW).expect("session");
        let start = Instant::now();
        for e in &wit_events[..fresh_n] {
            let _ = session.propose_lowered(e);
        }
        let warm = start.elapsed();
        let bare_events: Vec<Lowered> = events[..fresh_n].iter().map(bare).collect();
        let start = Instant::now();
        for e in &bare_events {
            let _ = session.propose_lowered(e);
        }
        let warm_bare = start.elapsed();

        let us = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
        println!(
            "| {} | {:.1} | {:.1} | {:.2}× | {:.0} | {:.1} | {:.1} | {:.1} |",
            s.name,
            us(wasm, events.len()),
            us(native, events.len()),
            wasm.as_secs_f64() / native.as_secs_f64(),
            per_sec(events.len(), wasm),
            us(fresh, fresh_n),
            us(warm, fresh_n),
            us(warm_bare, fresh_n),
        );
    }
    println!("\n## Compile: cold versus cached load (includes describe and configure)\n");
    println!("| plugin | component size | cold compile ms | cached load ms |");
    println!("|---|---|---|---|");
    for (name, size, cold, cached) in compile_rows {
        println!(
            "| {name} | {} KiB | {:.1} | {:.1} |",
            size / 1024,
            cold.as_secs_f64() * 1e3,
            cached.as_secs_f64() * 1e3
        );
    }
}
