//! Compiles the stock policies to wasm32-wasip2 so the binary carries them as built-ins,
//! with their versions, and records the git commit the binary is built from.

use std::path::{Path, PathBuf};
use std::process::Command;

use amiwarden_wasm_build::{Guest, build};

/// The stock policies, by built-in name and package.
const BUILTINS: &[(&str, &str)] = &[
    ("retention", "amiwarden-plugin-retention"),
    ("sharing", "amiwarden-plugin-sharing"),
    ("replication", "amiwarden-plugin-replication"),
    ("cost-guard", "amiwarden-plugin-cost-guard"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("host/ sits in the workspace root").to_path_buf();
    let guests: Vec<Guest<'_>> =
        BUILTINS.iter().map(|(name, package)| Guest { package, dir: root.join("plugins").join(name) }).collect();
    let built = build(&root, &guests);
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let mut table = String::from(
        "/// The built-in plugins: (name, component bytes).\npub static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for ((name, _), (_, path)) in BUILTINS.iter().zip(built) {
        table.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", path.display().to_string()));
    }
    table.push_str("];\n");
    table.push_str("/// The built-in plugins' versions: (name, version).\npub static VERSIONS: &[(&str, &str)] = &[\n");
    for (name, _) in BUILTINS {
        let version = package_version(&root.join("plugins").join(name).join("Cargo.toml"));
        table.push_str(&format!("    ({name:?}, {version:?}),\n"));
    }
    table.push_str("];\n");
    std::fs::write(out.join("builtins.rs"), table).expect("write builtins.rs");
    println!("cargo:rustc-env=AMIWARDEN_GIT_SHA={}", git_sha(&root));
}

/// The `[package] version` of a plugin's Cargo.toml; the workspace's (which is this
/// crate's, inherited the same way) when it says `version.workspace = true`.
fn package_version(manifest: &Path) -> String {
    let text = std::fs::read_to_string(manifest).expect("read a built-in plugin's Cargo.toml");
    let package = text.split("\n[").next().unwrap_or_default();
    for line in package.lines().map(|l| l.split('#').next().unwrap_or_default().replace(' ', "")) {
        if line == "version.workspace=true" {
            return std::env::var("CARGO_PKG_VERSION").expect("set by cargo");
        }
        if let Some(version) = line.strip_prefix("version=") {
            return version.trim_matches('"').to_string();
        }
    }
    panic!("{}: no [package] version", manifest.display());
}

/// The short sha of the commit checked out at `root`, or "unknown" where there is no git
/// (a source tarball). Rebuilt when HEAD moves.
fn git_sha(root: &Path) -> String {
    let git = |args: &[&str]| {
        let out = Command::new("git").arg("-C").arg(root).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // Only this checkout's own repository: not one that a source tarball was unpacked in.
    let top = git(&["rev-parse", "--show-toplevel"]).and_then(|t| std::fs::canonicalize(t).ok());
    if top.is_none() || top != std::fs::canonicalize(root).ok() {
        return "unknown".into();
    }
    let Some(sha) = git(&["rev-parse", "--short", "HEAD"]) else { return "unknown".into() };
    // HEAD, the branch it names (absent when detached) and packed-refs, where they exist
    // (a missing file would rerun this script on every build).
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD".to_string(), "packed-refs".to_string()].into_iter().chain(branch) {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]).map(|p| root.join(p)).filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    sha
}
