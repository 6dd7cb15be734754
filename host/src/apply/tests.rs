//! The applier's re-check against EC2 as it is at the call, on the simulated EC2.

use std::collections::BTreeSet;

use super::{Binding, Checks, Journal, apply, plan_id};
use crate::backend::Backend;
use crate::config::Policy;
use crate::model::{InventoryNeed, Timestamp};
use crate::plan::{Op, Plan, PlannedAction, SCHEMA_VERSION, Source, Totals};
use crate::sim::{SimBackend, SimState};

const NOW: Timestamp = Timestamp(1_795_000_000);

const POLICY: &str = r#"
[scope]
accounts = ["111111111111"]
regions = ["us-east-1"]
[guardrails]
max_destructive_percent = 100.0
[[plugin]]
name = "retention"
source = "builtin:retention"
grants = ["deregister", "delete-snapshots"]
"#;

fn state(protection: Option<&str>) -> SimState {
    let protection = protection.map_or(String::new(), |p| format!(r#", "deregistration_protection": "{p}""#));
    SimState::parse(
        &format!(
            r#"{{"version": 1, "accounts": {{"111111111111": {{"regions": {{"us-east-1": {{
              "images": [{{"id": "ami-0aaaaaaaaaaaaaaa1", "name": "web-1", "creation_time": "2025-01-01T00:00:00Z"{protection},
                           "block_devices": [{{"device_name": "/dev/xvda", "snapshot_id": "snap-0aaaaaaaaaaaaaaa1", "size_gib": 8}}]}}],
              "snapshots": [{{"id": "snap-0aaaaaaaaaaaaaaa1", "size_gib": 8}}]}}}}}}}}}}"#
        ),
        "test",
    )
    .unwrap()
}

fn planned(op: Op) -> PlannedAction {
    PlannedAction {
        id: PlannedAction::id_for("111111111111", "us-east-1", "ami-0aaaaaaaaaaaaaaa1", &op),
        location: crate::model::Location { account: "111111111111".into(), region: "us-east-1".into() }.into(),
        image_id: "ami-0aaaaaaaaaaaaaaa1".into(),
        image_name: "web-1".into(),
        op,
        plugins: ["retention".to_string()].into(),
        reasons: vec!["older than 180 days".into()].into(),
        monthly_cost_delta: 0,
        one_time_cost: 0,
    }
}

#[test]
fn deregistration_protection_turned_on_after_the_plan_holds_the_image_and_its_snapshots() {
    let policy = Policy::parse(POLICY).unwrap();
    let needs: BTreeSet<InventoryNeed> = [InventoryNeed::Usage, InventoryNeed::Snapshots].into();
    // The plan was made while the image was unprotected…
    let before = SimBackend::in_memory(state(None), NOW);
    let planned_inventory = crate::inventory::Inventory::new(before.collect(&policy.scope, &needs).unwrap()).unwrap();
    let plan = Plan {
        schema_version: SCHEMA_VERSION,
        evaluation_time: NOW,
        source: Source::Scheduled,
        inventory_fingerprint: String::new(),
        policy_fingerprint: String::new(),
        stopped: None,
        inventory_needs: needs,
        actions: vec![
            planned(Op::Deregister),
            planned(Op::DeleteSnapshot { snapshot_id: "snap-0aaaaaaaaaaaaaaa1".into() }),
        ],
        refused: Vec::new(),
        errors: Vec::new(),
        kept: Vec::new(),
        totals: Totals::default(),
    };
    // …and protection was turned on before the call.
    let backend = SimBackend::in_memory(state(Some("enabled-without-cooldown")), NOW);
    let dir = tempfile::tempdir().unwrap();
    let binding = Binding { backend: backend.identity(), policy: "test".into() };
    let mut journal = Journal::open(&dir.path().join("j.jsonl"), &plan_id(&plan), binding).unwrap();
    let checks = Checks { policy: &policy, planned: &planned_inventory, retained: Default::default(), now: NOW };

    let report = apply(&checks, &backend, &plan, &mut journal, &|_, _| {}).unwrap();

    assert!(report.done.is_empty(), "{report:?}");
    assert_eq!(report.skipped.len(), 2, "{report:?}");
    assert!(report.skipped[0].1.contains("deregistration protection is now on (enabled-without-cooldown)"));
    assert!(report.skipped[1].1.contains("did not happen"), "its snapshot is held: {report:?}");
    assert_eq!(backend.state(), state(Some("enabled-without-cooldown")), "nothing was called");
}

#[test]
fn a_journal_key_is_a_plans_own_id_or_a_run_of_it() {
    use super::journal::is_key_of;
    let id = "plan-0123456789abcdef0123";
    assert!(is_key_of(id, id));
    assert!(is_key_of(&super::journal::run_id(id), id));
    assert!(!is_key_of("plan-0123456789abcdef0124", id));
    assert!(!is_key_of(&format!("{id}x"), id));
    assert!(!is_key_of(&format!("{id}-undo"), id));
}
