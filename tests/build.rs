//! Compiles the test guests to wasm32-wasip2 and exports their paths as `GUEST_*` (and
//! `PLUGIN_*`) env vars; builds the Python and JavaScript reference plugins with their
//! own toolchains (componentize-py, jco) into OUT_DIR as well.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use amiwarden_wasm_build::{Guest, build};

/// The pinned toolchains, as `.ci/run` installs them.
const COMPONENTIZE_PY: &str = "0.25.1";
const PY_INSTALL: &str = "pip install componentize-py==0.25.1";
const JS_INSTALL: &str = "npm ci --prefix plugins/required-tags-js";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("tests/ sits in the workspace root").to_path_buf();

    // The other languages build while cargo builds the Rust guests.
    let py = python_plugin(&root, &out_dir);
    let js = js_plugin(&root, &out_dir);

    let guests = [
        Guest { package: "amiwarden-guest-hostile", dir: manifest_dir.join("guests/hostile") },
        Guest { package: "amiwarden-guest-trivial", dir: manifest_dir.join("guests/trivial") },
        Guest { package: "amiwarden-plugin-required-tags", dir: root.join("plugins/required-tags-rust") },
    ];
    for (package, path) in build(&root, &guests) {
        let var = package.trim_start_matches("amiwarden-").replace('-', "_").to_uppercase();
        println!("cargo:rustc-env={var}={}", path.display());
    }
    for (var, pending) in [("PLUGIN_REQUIRED_TAGS_PY", py), ("PLUGIN_REQUIRED_TAGS_JS", js)] {
        let path = pending.finish();
        println!("cargo:rustc-env={var}={}", path.display());
    }
}

/// A component being built by another toolchain.
struct Pending {
    what: &'static str,
    child: Child,
    output: PathBuf,
}

impl Pending {
    fn finish(self) -> PathBuf {
        let output = self.child.wait_with_output().unwrap_or_else(|e| panic!("waiting for {} failed: {e}", self.what));
        if !output.status.success() || !self.output.is_file() {
            panic!(
                "building {} failed ({}):\n{}{}",
                self.what,
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        self.output
    }
}

fn spawn(what: &'static str, mut cmd: Command, output: PathBuf, install: &str) -> Pending {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    match cmd.spawn() {
        Ok(child) => Pending { what, child, output },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("building {what} needs {:?}, which is not installed: run `{install}`", cmd.get_program())
        }
        Err(e) => panic!("cannot run {:?} to build {what}: {e}", cmd.get_program()),
    }
}

fn rerun_if_changed(paths: &[PathBuf]) {
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// `componentize-py -d wit -w policy componentize app -o OUT_DIR/required-tags-py.wasm`
fn python_plugin(root: &Path, out_dir: &Path) -> Pending {
    let dir = root.join("plugins/required-tags-py");
    rerun_if_changed(&[dir.join("app.py"), dir.join("build.sh"), root.join("wit")]);
    println!("cargo:rerun-if-env-changed=PATH");
    let version = Command::new("componentize-py").arg("--version").output();
    match version {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("building the Python plugin needs componentize-py, which is not installed: run `{PY_INSTALL}`")
        }
        Err(e) => panic!("cannot run componentize-py: {e}"),
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            if !text.contains(COMPONENTIZE_PY) {
                println!(
                    "cargo:warning=componentize-py is {}, the tests are pinned to {COMPONENTIZE_PY}: run `{PY_INSTALL}`",
                    text.trim()
                );
            }
        }
    }
    let output = out_dir.join("required-tags-py.wasm");
    let _ = std::fs::remove_file(&output);
    let mut cmd = Command::new("componentize-py");
    cmd.current_dir(&dir)
        // Keep the source tree free of __pycache__.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("--quiet")
        .arg("-d")
        .arg(root.join("wit"))
        .arg("-w")
        .arg("policy")
        .arg("componentize")
        .arg("-p")
        .arg(&dir)
        .arg("app")
        .arg("-o")
        .arg(&output);
    spawn("the Python plugin (plugins/required-tags-py)", cmd, output, PY_INSTALL)
}

/// `jco componentize plugin.js --wit wit --world-name policy --backend qjs
/// --backend-qjs-disable-async -o OUT_DIR/required-tags-js.wasm`, with the jco that
/// `npm ci` installed from the plugin's package-lock.json.
fn js_plugin(root: &Path, out_dir: &Path) -> Pending {
    let dir = root.join("plugins/required-tags-js");
    rerun_if_changed(&[dir.join("plugin.js"), dir.join("package-lock.json"), root.join("wit")]);
    let jco = dir.join("node_modules/.bin/jco");
    if !jco.is_file() {
        panic!("building the JavaScript plugin needs jco in {}: run `{JS_INSTALL}` (node 20+)", jco.display());
    }
    let output = out_dir.join("required-tags-js.wasm");
    let _ = std::fs::remove_file(&output);
    let mut cmd = Command::new(&jco);
    cmd.current_dir(&dir)
        .arg("componentize")
        .arg("plugin.js")
        .arg("--wit")
        .arg(root.join("wit"))
        .arg("--world-name")
        .arg("policy")
        .arg("--backend")
        .arg("qjs")
        .arg("--backend-qjs-disable-async")
        .arg("-o")
        .arg(&output);
    spawn("the JavaScript plugin (plugins/required-tags-js)", cmd, output, JS_INSTALL)
}
