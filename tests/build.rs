//! Compiles the test guests to wasm32-wasip2 and exports their paths as `GUEST_*` env vars.

use std::path::PathBuf;

use amiwarden_wasm_build::{Guest, build};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("tests/ sits in the workspace root").to_path_buf();
    let guests = [
        Guest { package: "amiwarden-guest-hostile", dir: manifest_dir.join("guests/hostile") },
        Guest { package: "amiwarden-guest-trivial", dir: manifest_dir.join("guests/trivial") },
    ];
    for (package, path) in build(&root, &guests) {
        let var = package.trim_start_matches("amiwarden-").replace('-', "_").to_uppercase();
        println!("cargo:rustc-env={var}={}", path.display());
    }
}
