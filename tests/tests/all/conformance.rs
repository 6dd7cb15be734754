//! Policies in any wasm language: the reference policy required-tags, written in Rust,
//! Python and JavaScript, passes the same cases, refuses the same bad configs with the
//! same messages, and meets the same sandbox when it misbehaves on demand.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use amiwarden::cases::{Subject, case_dirs, run_case};
use amiwarden::plugin::Lowered;
use amiwarden::plugin::{Limits, Plugin, PluginError, PluginFailure, PolicyErrorKind, Runtime, Stage};
use amiwarden_tests::{
    ARTIFACT_CACHE, REQUIRED_TAGS_JS, REQUIRED_TAGS_JS_WIT_0_1_0, REQUIRED_TAGS_PY, REQUIRED_TAGS_RUST,
};
use serde_json::{Value, json};

use crate::support::{NOW, image, inventory, scheduled, spec};

/// Every language the reference policy is written in, with its component.
const LANGUAGES: [(&str, &str); 3] =
    [("rust", REQUIRED_TAGS_RUST), ("python", REQUIRED_TAGS_PY), ("js", REQUIRED_TAGS_JS)];

/// The runtime, its artifact cache warmed with every language's component first, so
/// that tests running in parallel do not each compile the same component.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let runtime = Runtime::new(Some(PathBuf::from(ARTIFACT_CACHE))).expect("runtime starts");
        for (language, path) in LANGUAGES {
            let spec = spec("required-tags", json!({}), Limits::default());
            runtime.load_file(Path::new(path), spec).unwrap_or_else(|e| panic!("{language}: {e}"));
        }
        runtime
    })
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/cases")
}

fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Runs every conformance case against one language's component; returns the differences.
fn run_cases(language: &str, path: &str) -> Vec<String> {
    let bytes = bytes(path);
    let subject = Subject::Plugin { bytes: &bytes, origin: path.to_string() };
    let dirs = case_dirs(&cases_dir()).expect("conformance cases exist");
    assert!(dirs.len() >= 10, "the suite holds {} cases", dirs.len());
    let mut differences = Vec::new();
    for dir in dirs {
        let result =
            run_case(runtime(), &subject, &dir).unwrap_or_else(|e| panic!("{language} {}: {e:#}", dir.display()));
        differences.extend(result.differences.iter().map(|d| format!("{language} {}: {d}", result.name)));
    }
    differences
}

#[test]
fn the_rust_plugin_passes_every_conformance_case() {
    assert_eq!(run_cases("rust", REQUIRED_TAGS_RUST), Vec::<String>::new());
}

#[test]
fn the_python_plugin_passes_every_conformance_case() {
    assert_eq!(run_cases("python", REQUIRED_TAGS_PY), Vec::<String>::new());
}

#[test]
fn the_javascript_plugin_passes_every_conformance_case() {
    assert_eq!(run_cases("js", REQUIRED_TAGS_JS), Vec::<String>::new());
}

fn load(path: &str, config: Value, limits: Limits) -> Result<Plugin, PluginError> {
    runtime().load_file(Path::new(path), spec("required-tags", config, limits))
}

#[test]
fn every_language_describes_itself_the_same() {
    let infos: Vec<_> = LANGUAGES
        .iter()
        .map(|(language, path)| {
            let plugin = load(path, json!({}), Limits::default()).unwrap_or_else(|e| panic!("{language}: {e}"));
            (plugin.info.name, plugin.info.version, plugin.info.actions, plugin.info.needs, plugin.info.reviews)
        })
        .collect();
    assert_eq!(infos[0].0, "required-tags");
    assert!(!infos[0].4, "required-tags only proposes: it must not ask to review");
    assert_eq!(infos[1], infos[0], "python");
    assert_eq!(infos[2], infos[0], "js");
}

/// Bad configs and the message every language gives: in full when the flag is set,
/// else only as a prefix (the rest is the language's own JSON parser's detail).
fn bad_configs() -> Vec<(&'static str, &'static str, bool)> {
    vec![
        ("[1]", "config must be a JSON object", true),
        ("\"tag\"", "config must be a JSON object", true),
        (
            r#"{"requried": ["owner"], "zzz": 1}"#,
            "unknown config key `requried`; expected one of required, action, deprecate_after_days, marker_tag, misbehave",
            true,
        ),
        (r#"{"required": []}"#, "`required` must be a non-empty list of non-empty tag keys", true),
        (r#"{"required": "owner"}"#, "`required` must be a non-empty list of non-empty tag keys", true),
        (r#"{"required": ["owner", 7]}"#, "`required` must be a non-empty list of non-empty tag keys", true),
        (r#"{"required": ["owner", ""]}"#, "`required` must be a non-empty list of non-empty tag keys", true),
        (r#"{"required": ["owner", "owner"]}"#, "`required` lists `owner` twice", true),
        (r#"{"action": "delete"}"#, "`action` must be \"tag\" or \"deprecate\"", true),
        (r#"{"action": true}"#, "`action` must be \"tag\" or \"deprecate\"", true),
        (
            r#"{"deprecate_after_days": 1.5}"#,
            "`deprecate_after_days` must be a whole number of days from 0 to 3650",
            true,
        ),
        (
            r#"{"deprecate_after_days": -1}"#,
            "`deprecate_after_days` must be a whole number of days from 0 to 3650",
            true,
        ),
        (
            r#"{"deprecate_after_days": 3651}"#,
            "`deprecate_after_days` must be a whole number of days from 0 to 3650",
            true,
        ),
        (
            r#"{"deprecate_after_days": "30"}"#,
            "`deprecate_after_days` must be a whole number of days from 0 to 3650",
            true,
        ),
        (
            r#"{"deprecate_after_days": true}"#,
            "`deprecate_after_days` must be a whole number of days from 0 to 3650",
            true,
        ),
        (r#"{"marker_tag": ""}"#, "`marker_tag` must be a non-empty tag key", true),
        (r#"{"marker_tag": "owner"}"#, "`marker_tag` `owner` is also a required tag", true),
        (r#"{"misbehave": "explode"}"#, "`misbehave` must be one of loop, alloc, trap, read-file", true),
        ("{\"required\": [", "config is not valid JSON: ", false),
    ]
}

/// The config message a plugin refuses `config` with (the config goes in as raw text).
fn refusal(language: &str, path: &str, config: &str) -> String {
    let mut spec = spec("required-tags", json!({}), Limits::default());
    spec.config = config.to_string();
    match runtime().load(&bytes(path), spec) {
        Ok(_) => panic!("{language} accepted {config}"),
        Err(e) => {
            assert_eq!(e.stage, Stage::Configure, "{language} {config}: {e}");
            match e.failure {
                PluginFailure::Policy(PolicyErrorKind::InvalidConfig, message) => message,
                other => panic!("{language} {config}: {other:?}"),
            }
        }
    }
}

#[test]
fn every_language_refuses_the_same_bad_configs_with_the_same_message() {
    let mut wrong = Vec::new();
    for (config, message, exact) in bad_configs() {
        for (language, path) in LANGUAGES {
            let got = refusal(language, path, config);
            let ok = if exact { got == message } else { got.starts_with(message) };
            if !ok {
                wrong.push(format!("{language} {config}: got {got:?}, want {message:?}"));
            }
        }
    }
    assert_eq!(wrong, Vec::<String>::new());
}

#[test]
fn every_language_accepts_the_documented_config_example() {
    for (language, path) in LANGUAGES {
        let dir = match language {
            "rust" => "required-tags-rust",
            "python" => "required-tags-py",
            _ => "required-tags-js",
        };
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins").join(dir).join("config.example.json");
        let example: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("example exists")).expect("json");
        load(path, example, Limits::default()).unwrap_or_else(|e| panic!("{language} {}: {e}", file.display()));
    }
}

#[test]
fn a_plugin_built_for_another_wit_version_is_refused_naming_both() {
    let err = load(REQUIRED_TAGS_JS_WIT_0_1_0, json!({}), Limits::default()).err().expect("refused");
    assert_eq!(err.stage, Stage::Load);
    let message = err.to_string();
    assert!(message.contains("built for amiwarden:policy@0.1.0"), "{message}");
    assert!(message.contains("this host implements amiwarden:policy@0.2.0"), "{message}");
}

/// Runs the plugin of `path` with `misbehave = mode` on one image; it must fail there.
fn misbehaving(language: &str, path: &str, mode: &str, limits: Limits) -> PluginFailure {
    let plugin = load(path, json!({ "misbehave": mode }), limits).unwrap_or_else(|e| panic!("{language}: {e}"));
    let img = image("ami-0123456789abcdef0", &[]);
    let mut session = plugin.session(inventory(vec![img.clone()]), NOW).unwrap_or_else(|e| panic!("{language}: {e}"));
    match session.propose(&scheduled(img)) {
        Ok(p) => panic!("{language} with misbehave={mode} should fail, got {p:?}"),
        Err(e) => {
            assert_eq!((e.plugin.as_str(), e.stage), ("required-tags", Stage::Propose), "{language}: {e}");
            assert_eq!(e.image.as_deref(), Some("ami-0123456789abcdef0"), "{language}: {e}");
            e.failure
        }
    }
}

#[test]
fn an_endless_loop_is_a_timeout_in_every_language() {
    let limits = Limits { time_ms: 50, ..Limits::default() };
    for (language, path) in LANGUAGES {
        assert_eq!(misbehaving(language, path, "loop", limits.clone()), PluginFailure::Timeout(50), "{language}");
    }
}

#[test]
fn unbounded_allocation_is_out_of_memory_in_every_language() {
    for (language, path) in LANGUAGES {
        assert_eq!(
            misbehaving(language, path, "alloc", Limits::default()),
            PluginFailure::OutOfMemory(64),
            "{language}"
        );
    }
}

#[test]
fn a_panic_or_uncaught_exception_is_a_trap_in_every_language() {
    for (language, path) in LANGUAGES {
        let failure = misbehaving(language, path, "trap", Limits::default());
        assert!(matches!(failure, PluginFailure::Trap(_)), "{language}: {failure:?}");
    }
}

#[test]
fn reading_a_host_file_is_denied_in_every_language() {
    // Rust and Python reach WASI's file system and find nothing opened; the QuickJS
    // runtime has no file API at all, and the plugin reports that.
    for (language, path) in LANGUAGES {
        match misbehaving(language, path, "read-file", Limits::default()) {
            PluginFailure::Policy(PolicyErrorKind::Failed, message) => {
                assert!(message.starts_with("reading /etc/passwd denied"), "{language}: {message}");
            }
            other => panic!("{language}: {other:?}"),
        }
    }
}

#[test]
fn a_plugin_that_misbehaves_only_fails_the_call_it_misbehaves_in() {
    // After a failed call the host drops the store; a fresh session of the same plugin works.
    for (language, path) in LANGUAGES {
        let failing = load(path, json!({ "misbehave": "trap" }), Limits::default()).expect("loads");
        let healthy = load(path, json!({}), Limits::default()).expect("loads");
        let img = image("ami-0123456789abcdef0", &[("owner", "ops")]);
        let inv = inventory(vec![img.clone()]);
        let event = scheduled(img);
        assert!(failing.session(inv.clone(), NOW).expect("session").propose(&event).is_err(), "{language}");
        let proposals = healthy.session(inv, NOW).expect("session").propose(&event).expect("proposes");
        assert_eq!(proposals.len(), 1, "{language}: {proposals:?}");
    }
}

/// Images for the throughput measurement: every other one misses a required tag.
fn bench_images(n: usize) -> Vec<amiwarden::model::Image> {
    (0..n)
        .map(|i| {
            let id = format!("ami-{i:017x}");
            if i % 2 == 0 {
                image(&id, &[("owner", "ops"), ("cost-center", "cc-1")])
            } else {
                image(&id, &[("owner", "ops")])
            }
        })
        .collect()
}

/// Events per second on this thread (one core) when every `batch` events share a store.
fn evaluations_per_second(plugin: &Plugin, images: &[amiwarden::model::Image], batch: usize) -> f64 {
    let inv = inventory(images.to_vec());
    let events: Vec<Lowered> = images.iter().map(|i| Lowered::from(&scheduled(i.clone()))).collect();
    let started = std::time::Instant::now();
    let mut proposals = 0;
    for chunk in events.chunks(batch) {
        let mut session = plugin.session(inv.clone(), NOW).expect("session");
        for event in chunk {
            proposals += session.propose_lowered(event).expect("proposes").len();
        }
    }
    assert_eq!(proposals, images.len() / 2);
    images.len() as f64 / started.elapsed().as_secs_f64()
}

#[test]
#[ignore = "measures; run with `cargo test measure_every_language -- --ignored --nocapture`"]
fn measure_every_language() {
    use std::time::Instant;
    println!(
        "| language | component | cold load (compile) | cached load | evals/s, fresh store each | evals/s, default batch |"
    );
    println!("|---|---|---|---|---|---|");
    for (language, path) in LANGUAGES {
        let bytes = bytes(path);
        // A generous deadline: on a busy debug host, starting CPython can take longer than 100 ms.
        let spec = || spec("required-tags", json!({}), Limits { time_ms: 5000, ..Limits::default() });
        let uncached = Runtime::new(None).expect("runtime");
        let started = Instant::now();
        uncached.load(&bytes, spec()).expect("loads");
        let cold = started.elapsed();
        let mut cached: Vec<f64> = (0..5)
            .map(|_| {
                let started = Instant::now();
                let plugin = runtime().load(&bytes, spec()).expect("loads");
                assert!(plugin.from_cache, "{language} came from the cache");
                started.elapsed().as_secs_f64()
            })
            .collect();
        cached.sort_by(f64::total_cmp);
        let plugin = runtime().load(&bytes, spec()).expect("loads");
        let n = if language == "python" { 200 } else { 2000 };
        let fresh = evaluations_per_second(&plugin, &bench_images(n), 1);
        // Two whole default batches: a store lives as long as it does in a run.
        let batch = Limits::default().batch;
        let batched = evaluations_per_second(&plugin, &bench_images(batch * 2), batch);
        println!(
            "| {language} | {:.2} MB | {:.2} s | {:.0} ms | {fresh:.0} | {batched:.0} |",
            bytes.len() as f64 / 1e6,
            cold.as_secs_f64(),
            cached[2] * 1e3,
        );
    }
}
