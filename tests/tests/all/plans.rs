//! Whole plans on the example org: deterministic, independent of input order, stable
//! (an insta snapshot), convergent after apply, and every example event plans cleanly.

use std::path::PathBuf;

use amiwarden::backend::Backend;
use amiwarden::config::Policy;
use amiwarden::model::Timestamp;
use amiwarden::plan::Plan;
use amiwarden::plugin::Runtime;
use amiwarden::plugin::load_plugins;
use amiwarden::run::{Source, plan};
use amiwarden::sim::{SimBackend, SimState};

const AS_OF: Timestamp = Timestamp(1_795_478_400); // 2026-11-24

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples")
}

fn runtime() -> Runtime {
    Runtime::new(Some(crate::support::cache_dir())).unwrap()
}

fn plan_of(policy: &Policy, state: SimState, source: &Source) -> Plan {
    let runtime = runtime();
    let plugins = load_plugins(&runtime, policy).unwrap();
    let backend = SimBackend::in_memory(state, AS_OF);
    plan(policy, &plugins, &backend, source, AS_OF, &|_, _| ()).unwrap().plan
}

fn demo() -> (Policy, SimState) {
    let policy = Policy::load(&examples().join("policy.toml")).unwrap();
    let state = SimState::load(&examples().join("sim/demo.json")).unwrap();
    (policy, state)
}

#[test]
fn the_demo_plan_is_stable() {
    let (policy, state) = demo();
    let mut plan = plan_of(&policy, state, &Source::Scheduled);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    // It hashes the built-in plugins' bytes, which depend on the toolchain that built them.
    assert!(plan.policy_fingerprint.starts_with("pol-"), "{}", plan.policy_fingerprint);
    plan.policy_fingerprint = "[the policy and its plugins' bytes]".into();
    insta::assert_json_snapshot!("demo_plan", plan);
}

#[test]
fn the_plan_does_not_depend_on_the_order_of_images_or_plugins() {
    let (policy, state) = demo();
    let reference = serde_json::to_string(&plan_of(&policy, state.clone(), &Source::Scheduled)).unwrap();
    let mut shuffled = state;
    for account in shuffled.accounts.values_mut() {
        for region in account.regions.values_mut() {
            region.images.reverse();
            let n = region.images.len();
            if n > 1 {
                region.images.rotate_left(n / 2);
            }
            region.snapshots.reverse();
            region.instances.reverse();
        }
    }
    let mut reordered = policy.clone();
    reordered.plugins.reverse();
    let again = serde_json::to_string(&plan_of(&reordered, shuffled, &Source::Scheduled)).unwrap();
    assert_eq!(reference, again);
}

#[test]
fn applying_the_demo_plan_converges() {
    let (policy, state) = demo();
    let runtime = runtime();
    let plugins = load_plugins(&runtime, &policy).unwrap();
    let backend = SimBackend::in_memory(state, AS_OF);
    let first = plan(&policy, &plugins, &backend, &Source::Scheduled, AS_OF, &|_, _| ()).unwrap();
    assert!(first.stop.is_none());
    assert!(!first.plan.actions.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let binding = amiwarden::apply::Binding {
        backend: backend.identity(),
        policy: amiwarden::run::policy_fingerprint(&policy, &plugins),
    };
    let mut journal =
        amiwarden::apply::Journal::open(&dir.path().join("j.jsonl"), &amiwarden::apply::plan_id(&first.plan), binding)
            .unwrap();
    let checks = amiwarden::apply::Checks {
        policy: &policy,
        planned: &first.inventory,
        retained: Default::default(),
        now: AS_OF,
    };
    let report = amiwarden::apply::apply(&checks, &backend, &first.plan, &mut journal, &|_, _| ()).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let second = plan(&policy, &plugins, &backend, &Source::Scheduled, AS_OF, &|_, _| ()).unwrap();
    assert!(second.plan.actions.is_empty(), "{:#?}", second.plan.actions);
}

#[test]
fn every_example_event_plans_without_errors() {
    let (policy, state) = demo();
    let runtime = runtime();
    let plugins = load_plugins(&runtime, &policy).unwrap();
    let mut events: Vec<PathBuf> =
        std::fs::read_dir(examples().join("events")).unwrap().map(|e| e.unwrap().path()).collect();
    events.sort();
    assert!(events.len() >= 10);
    for path in events {
        let backend = SimBackend::in_memory(state.clone(), AS_OF);
        let source =
            Source::Event { text: std::fs::read_to_string(&path).unwrap(), origin: path.display().to_string() };
        let outcome = plan(&policy, &plugins, &backend, &source, AS_OF, &|_, _| ())
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        assert!(outcome.plan.errors.is_empty(), "{}: {:?}", path.display(), outcome.plan.errors);
    }
}

#[test]
fn the_example_policy_loads_its_plugins() {
    let (policy, _) = demo();
    let loaded = load_plugins(&runtime(), &policy).unwrap();
    assert_eq!(loaded.len(), policy.plugins.len());
}
