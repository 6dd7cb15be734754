//! `amiwarden new` in every language: the scaffolded project builds with its own build
//! script and passes its own case.

use std::path::Path;
use std::process::Command;

use amiwarden::cases::{Subject, case_dirs, run_case};
use amiwarden::plugin::Runtime;
use amiwarden::scaffold::{Lang, scaffold};

fn build_and_test(lang: Lang, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let project = scaffold(dir.path(), name, lang).unwrap();
    let mut build = Command::new(project.join("build.sh"));
    // The outer cargo's settings must not leak into the project's own build.
    for var in ["CARGO_TARGET_DIR", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "RUSTC_WRAPPER"] {
        build.env_remove(var);
    }
    if lang == Lang::Rust {
        // Reuse one target dir across runs so the SDK's dependencies compile once.
        build.env("CARGO_TARGET_DIR", concat!(env!("CARGO_TARGET_TMPDIR"), "/scaffold-rust"));
        std::fs::write(
            project.join("build.sh"),
            std::fs::read_to_string(project.join("build.sh"))
                .unwrap()
                .replace("cp target/wasm32-wasip2", "cp \"${CARGO_TARGET_DIR:-target}\"/wasm32-wasip2"),
        )
        .unwrap();
    }
    let out = build.current_dir(&project).output().unwrap();
    assert!(out.status.success(), "{name}: build.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let wasm = std::fs::read(project.join(format!("{name}.wasm"))).unwrap();
    let runtime = Runtime::new(Some(crate::support::cache_dir())).unwrap();
    let subject = Subject::Plugin { bytes: &wasm, origin: name.into() };
    for case in case_dirs(&project.join("cases")).unwrap() {
        let result = run_case(&runtime, &subject, &case).unwrap();
        assert!(result.differences.is_empty(), "{name} {}: {:?}", result.name, result.differences);
    }
    assert!(Path::new(&project.join("wit/policy.wit")).is_file());
}

#[test]
fn a_new_rust_plugin_builds_and_passes_its_case() {
    build_and_test(Lang::Rust, "owner-check-rust");
}

#[test]
fn a_new_python_plugin_builds_and_passes_its_case() {
    build_and_test(Lang::Python, "owner-check-py");
}

#[test]
fn a_new_javascript_plugin_builds_and_passes_its_case() {
    build_and_test(Lang::Js, "owner-check-js");
}
