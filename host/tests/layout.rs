//! The map of the house, enforced: the domain modules never reach for the plugin
//! runtime, a backend, the applier or the pipeline; generated WIT types stay in
//! `plugin/`; the AWS SDK stays in `aws/`; no module grows past ~400 lines of code.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The domain: pure decisions over domain types (DESIGN.md, "Where things live").
const DOMAIN: &[&str] =
    &["model.rs", "model/", "config.rs", "event/", "inventory.rs", "cost.rs", "plan.rs", "resolve/"];

/// What the domain must never name.
const NEVER_IN_DOMAIN: &[&str] = &[
    "crate::plugin",
    "crate::aws",
    "crate::sim",
    "crate::apply",
    "crate::run",
    "crate::cli",
    "crate::cases",
    "wasmtime",
    "aws_sdk",
    "wit::",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every source file, as (path relative to src/, code lines without comments).
fn sources() -> Vec<(String, Vec<String>)> {
    let mut paths = Vec::new();
    files(Path::new(SRC), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(SRC).unwrap().to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.lines().filter(|l| !l.trim_start().starts_with("//")).map(str::to_string).collect();
            (rel, code)
        })
        .collect()
}

fn offenders(pick: impl Fn(&str) -> bool, needles: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (file, code) in sources().iter().filter(|(f, _)| pick(f)) {
        for (n, line) in code.iter().enumerate() {
            if let Some(needle) = needles.iter().find(|needle| line.contains(*needle)) {
                out.push(format!("{file}: `{needle}` in `{}` (code line {})", line.trim(), n + 1));
            }
        }
    }
    out
}

#[test]
fn domain_modules_never_import_the_runtime_a_backend_or_the_pipeline() {
    let domain = |f: &str| DOMAIN.iter().any(|d| f == *d || (d.ends_with('/') && f.starts_with(d)));
    let found = offenders(domain, NEVER_IN_DOMAIN);
    assert!(found.is_empty(), "the domain reaches outward:\n{}", found.join("\n"));
}

#[test]
fn generated_wit_types_stay_in_the_plugin_runtime_and_the_sdk_in_aws() {
    let found = offenders(|f| !f.starts_with("plugin/"), &["wit::", "bindgen!", "bindings::"]);
    assert!(found.is_empty(), "generated types outside plugin/:\n{}", found.join("\n"));
    let found = offenders(|f| !f.starts_with("aws/"), &["aws_sdk_", "aws_config", "aws_smithy"]);
    assert!(found.is_empty(), "the AWS SDK outside aws/:\n{}", found.join("\n"));
}

#[test]
fn no_module_grows_past_about_four_hundred_lines_of_code() {
    let mut big = Vec::new();
    for (file, _) in sources() {
        let text = std::fs::read_to_string(Path::new(SRC).join(&file)).unwrap();
        // Tests are specifications, not code to find one's way in: they do not count.
        let code = text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).count();
        if code > 420 && !file.ends_with("tests.rs") {
            big.push(format!("{file}: {code} lines"));
        }
    }
    assert!(big.is_empty(), "modules over ~400 lines:\n{}", big.join("\n"));
}
