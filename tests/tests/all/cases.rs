//! Every stock plugin passes its own cases through the real host, as wasm.

use std::path::PathBuf;

use amiwarden::cases::{Subject, case_dirs, run_case};
use amiwarden::plugin::Runtime;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn run_plugin_cases(name: &str) {
    let runtime = Runtime::new(Some(crate::support::cache_dir())).unwrap();
    let bytes = amiwarden::builtin::get(name).expect("built in");
    let subject = Subject::Plugin { bytes, origin: format!("builtin:{name}") };
    let dirs = case_dirs(&root().join("plugins").join(name).join("cases")).unwrap();
    assert!(dirs.len() >= 10, "{name} ships {} cases; at least 10 expected", dirs.len());
    let mut failures = Vec::new();
    for dir in dirs {
        let result = run_case(&runtime, &subject, &dir).unwrap();
        if !result.differences.is_empty() {
            failures.push(format!("{}:\n  {}", result.name, result.differences.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{name} cases failed:\n{}", failures.join("\n"));
}

#[test]
fn retention_passes_its_cases() {
    run_plugin_cases("retention");
}

#[test]
fn sharing_passes_its_cases() {
    run_plugin_cases("sharing");
}

#[test]
fn replication_passes_its_cases() {
    run_plugin_cases("replication");
}

#[test]
fn cost_guard_passes_its_cases() {
    run_plugin_cases("cost-guard");
}

#[test]
fn a_wrong_expectation_is_reported_as_a_difference() {
    let runtime = Runtime::new(Some(crate::support::cache_dir())).unwrap();
    let bytes = amiwarden::builtin::get("sharing").unwrap();
    let subject = Subject::Plugin { bytes, origin: "builtin:sharing".into() };
    let source = case_dirs(&root().join("plugins/sharing/cases")).unwrap().remove(0);
    let dir = tempfile::tempdir().unwrap();
    for file in ["case.json", "inventory.json", "event.json"] {
        if source.join(file).exists() {
            std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
        }
    }
    std::fs::write(dir.path().join("expected.json"), r#"{"proposals": [], "vetoes": []}"#).unwrap();
    let result = run_case(&runtime, &subject, dir.path()).unwrap();
    let expected_proposals: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("expected.json")).unwrap()).unwrap();
    let n = expected_proposals["proposals"].as_array().map_or(0, Vec::len);
    assert_eq!(result.differences.iter().filter(|d| d.starts_with("+ unexpected proposal")).count(), n);
}
