//! Compiles the test guests to wasm32-wasip2 and exports their paths as `GUEST_*` (and
//! `PLUGIN_*`) env vars; builds the Python and JavaScript reference plugins with their
//! own toolchains (componentize-py, jco) into OUT_DIR as well.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use amiwarden_wasm_build::{Guest, build};

/// The pinned toolchains, as `.ci/run` installs them.
const COMPONENTIZE_PY: &str = "0.25.1";
const PY_INSTALL: &str = "pip install componentize-py==0.25.1";
const JS_INSTALL: &str = "npm install --prefix plugins/required-tags-js --no-audit --no-fund";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("tests/ sits in the workspace root").to_path_buf();

    // The other languages build while cargo builds the Rust guests.
    let py = python_plugin(&root, &out_dir);
    let js = js_plugin(&root, &out_dir);
    let js_previous = js_plugin_for_previous_wit(&root, &out_dir);

    let guests = [
        Guest { package: "amiwarden-guest-hostile", dir: manifest_dir.join("guests/hostile") },
        Guest { package: "amiwarden-guest-trivial", dir: manifest_dir.join("guests/trivial") },
        Guest { package: "amiwarden-guest-probe", dir: manifest_dir.join("guests/probe") },
        Guest { package: "amiwarden-plugin-required-tags", dir: root.join("plugins/required-tags-rust") },
    ];
    for (package, path) in build(&root, &guests) {
        let var = package.trim_start_matches("amiwarden-").replace('-', "_").to_uppercase();
        println!("cargo:rustc-env={var}={}", path.display());
    }
    for (var, pending) in [
        ("PLUGIN_REQUIRED_TAGS_PY", py),
        ("PLUGIN_REQUIRED_TAGS_JS", js),
        ("PLUGIN_REQUIRED_TAGS_JS_WIT_0_1_0", js_previous),
    ] {
        let path = pending.finish();
        println!("cargo:rustc-env={var}={}", path.display());
    }
}

/// A component being built by another toolchain.
struct Pending {
    what: &'static str,
    /// `None` when the output is already up to date.
    child: Option<Child>,
    output: PathBuf,
    /// Written beside the output once the build succeeded.
    stamp: Option<(PathBuf, String)>,
}

impl Pending {
    fn finish(self) -> PathBuf {
        let Some(child) = self.child else { return self.output };
        let output = child.wait_with_output().unwrap_or_else(|e| panic!("waiting for {} failed: {e}", self.what));
        if !output.status.success() || !self.output.is_file() {
            panic!(
                "building {} failed ({}):\n{}{}",
                self.what,
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if let Some((file, stamp)) = &self.stamp {
            std::fs::write(file, stamp).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        }
        self.output
    }
}

fn spawn(what: &'static str, mut cmd: Command, output: PathBuf, install: &str) -> Pending {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    match cmd.spawn() {
        Ok(child) => Pending { what, child: Some(child), output, stamp: None },
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

/// FNV-1a over the names and contents of `inputs` (directories: their files, sorted) and `extra`.
fn fingerprint(inputs: &[PathBuf], extra: &str) -> String {
    let mut files = Vec::new();
    for input in inputs {
        match std::fs::read_dir(input) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
                found.sort();
                files.extend(found);
            }
            Err(_) => files.push(input.clone()),
        }
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(extra.as_bytes());
    for file in files {
        feed(file.to_string_lossy().as_bytes());
        feed(&std::fs::read(&file).unwrap_or_default());
    }
    format!("{hash:016x}")
}

/// Builds `output` with `cmd` unless the stamp beside it says these inputs built it already.
/// componentize-py and jco do not build reproducibly (different bytes each time), so
/// rebuilding on every unrelated change would also defeat the compiled-artifact cache.
fn build_unless_fresh(what: &'static str, cmd: Command, output: PathBuf, stamp: String, install: &str) -> Pending {
    let stamp_file = output.with_extension("stamp");
    if output.is_file() && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
        return Pending { what, child: None, output, stamp: None };
    }
    let _ = std::fs::remove_file(&output);
    let _ = std::fs::remove_file(&stamp_file);
    let mut pending = spawn(what, cmd, output, install);
    pending.stamp = Some((stamp_file, stamp));
    pending
}

/// `componentize-py -d wit -w policy componentize app -o OUT_DIR/required-tags-py.wasm`
fn python_plugin(root: &Path, out_dir: &Path) -> Pending {
    let dir = root.join("plugins/required-tags-py");
    let inputs = [dir.join("app.py"), root.join("wit")];
    rerun_if_changed(&inputs);
    println!("cargo:rerun-if-env-changed=PATH");
    let version = match Command::new("componentize-py").arg("--version").output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("building the Python plugin needs componentize-py, which is not installed: run `{PY_INSTALL}`")
        }
        Err(e) => panic!("cannot run componentize-py: {e}"),
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
    };
    if !version.contains(COMPONENTIZE_PY) {
        println!("cargo:warning={version} found, the tests are pinned to {COMPONENTIZE_PY}: run `{PY_INSTALL}`");
    }
    let output = out_dir.join("required-tags-py.wasm");
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
    let stamp = fingerprint(&inputs, &version);
    build_unless_fresh("the Python plugin (plugins/required-tags-py)", cmd, output, stamp, PY_INSTALL)
}

/// The JavaScript plugin as it was for WIT 0.1.0 (tests/fixtures/wit-0.1.0: that WIT and
/// that plugin.js), for the test that the host refuses a plugin of another contract version.
fn js_plugin_for_previous_wit(root: &Path, out_dir: &Path) -> Pending {
    let dir = root.join("tests/fixtures/wit-0.1.0");
    let inputs = [dir.join("plugin.js"), dir.join("wit")];
    rerun_if_changed(&inputs);
    let js = root.join("plugins/required-tags-js");
    let jco = js.join("node_modules/.bin/jco");
    if !jco.is_file() {
        panic!("building the JavaScript plugin needs jco in {}: run `{JS_INSTALL}` (node 20+)", jco.display());
    }
    let output = out_dir.join("required-tags-js-wit-0.1.0.wasm");
    let mut cmd = Command::new(&jco);
    cmd.current_dir(&dir)
        .args(["componentize", "plugin.js", "--wit", "wit", "--world-name", "policy"])
        .args(["--backend", "qjs", "--backend-qjs-disable-async", "-o"])
        .arg(&output);
    let stamp = fingerprint(&[dir.join("plugin.js"), js.join("package-lock.json"), dir.join("wit")], "");
    build_unless_fresh("the JavaScript plugin for WIT 0.1.0 (tests/fixtures/wit-0.1.0)", cmd, output, stamp, JS_INSTALL)
}

/// `jco componentize plugin.js --wit wit --world-name policy --backend qjs
/// --backend-qjs-disable-async -o OUT_DIR/required-tags-js.wasm`, with the jco that
/// `npm install` put there from the plugin's package-lock.json.
fn js_plugin(root: &Path, out_dir: &Path) -> Pending {
    let dir = root.join("plugins/required-tags-js");
    let inputs = [dir.join("plugin.js"), dir.join("package-lock.json"), root.join("wit")];
    rerun_if_changed(&inputs);
    let jco = dir.join("node_modules/.bin/jco");
    if !jco.is_file() {
        panic!("building the JavaScript plugin needs jco in {}: run `{JS_INSTALL}` (node 20+)", jco.display());
    }
    let output = out_dir.join("required-tags-js.wasm");
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
    let stamp = fingerprint(&inputs, "");
    build_unless_fresh("the JavaScript plugin (plugins/required-tags-js)", cmd, output, stamp, JS_INSTALL)
}
