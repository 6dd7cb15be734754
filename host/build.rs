//! Compiles the stock policies to wasm32-wasip2 so the binary carries them as built-ins.

use std::path::PathBuf;

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
    std::fs::write(out.join("builtins.rs"), table).expect("write builtins.rs");
}
