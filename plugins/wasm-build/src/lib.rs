//! Build-script support: compiles guest crates of this workspace to wasm32-wasip2 in a
//! target directory of their own under OUT_DIR, so the nested cargo never waits on the
//! outer build's lock, and returns the paths of the components.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every plugin is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// One guest crate to build: its package name and its directory (for rerun-if-changed).
pub struct Guest<'a> {
    pub package: &'a str,
    pub dir: PathBuf,
}

/// Builds `guests` in release mode; returns `(package, path of the .wasm)` in order.
///
/// Panics with a readable message when the build fails: a build script has no other
/// way to report.
pub fn build(workspace_root: &Path, guests: &[Guest<'_>]) -> Vec<(String, PathBuf)> {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    let target_dir = out_dir.join("wasm-target");
    println!("cargo:rerun-if-changed={}", workspace_root.join("wit").display());
    println!("cargo:rerun-if-changed={}", workspace_root.join("plugins/sdk").display());
    println!("cargo:rerun-if-changed={}", workspace_root.join("Cargo.lock").display());
    for guest in guests {
        println!("cargo:rerun-if-changed={}", guest.dir.join("src").display());
        println!("cargo:rerun-if-changed={}", guest.dir.join("Cargo.toml").display());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(workspace_root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Plugins ship without debug info: it is most of a component's size.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    for guest in guests {
        cmd.arg("-p").arg(guest.package);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd.output().expect("cannot run cargo to build the wasm plugins");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("target may not be installed") || stderr.contains("can't find crate for `core`") {
            "\n\nhint: install the target with `rustup target add wasm32-wasip2`"
        } else {
            ""
        };
        panic!("building the wasm plugins failed:\n{stderr}{hint}");
    }
    guests
        .iter()
        .map(|g| {
            let file = format!("{}.wasm", g.package.replace('-', "_"));
            (g.package.to_string(), target_dir.join(TARGET).join("release").join(file))
        })
        .collect()
}
