//! The sandbox holds against a plugin that misbehaves on demand: every limit is tested
//! as an obeyed/violated pair, and every failure is a typed `PluginError` on that image.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use amiwarden::model::{Action, Proposal};
use amiwarden::plugin::{Limits, Plugin, PluginError, PluginFailure, PolicyErrorKind, Runtime, Stage};
use amiwarden_tests::HOSTILE;
use serde_json::json;

use crate::support::{NOW, image, inventory, scheduled, spec};

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(Some(crate::support::cache_dir())).expect("runtime starts"))
}

fn hostile(mode: &str, limits: Limits) -> Plugin {
    runtime()
        .load_file(Path::new(HOSTILE), spec("hostile", json!({ "mode": mode }), limits))
        .expect("hostile guest loads")
}

/// Runs the hostile guest in `mode` on one image.
fn propose(mode: &str, limits: Limits) -> Result<Vec<Proposal>, PluginError> {
    let plugin = hostile(mode, limits);
    let img = image("ami-0123456789abcdef0", &[]);
    let inv = inventory(vec![img.clone()]);
    let mut session = plugin.session(inv, NOW)?;
    session.propose(&scheduled(img))
}

fn failure(mode: &str, limits: Limits) -> PluginFailure {
    match propose(mode, limits) {
        Ok(p) => panic!("mode {mode} should fail, got {p:?}"),
        Err(e) => {
            assert_eq!(e.plugin, "hostile");
            assert_eq!(e.stage, Stage::Propose);
            assert_eq!(e.image.as_deref(), Some("ami-0123456789abcdef0"), "{e}");
            e.failure
        }
    }
}

fn probe(proposals: &[Proposal]) -> String {
    match proposals.first().map(|p| &p.action) {
        Some(Action::Tag(tags)) => tags.get("probe").cloned().unwrap_or_default(),
        other => panic!("expected a probe tag, got {other:?}"),
    }
}

#[test]
fn a_well_behaved_call_returns_its_proposals() {
    let proposals = propose("ok", Limits::default()).unwrap();
    assert_eq!(probe(&proposals), "ok");
}

#[test]
fn a_bounded_loop_within_the_time_budget_finishes() {
    let proposals = propose("spin:100000", Limits::default()).unwrap();
    assert!(probe(&proposals).starts_with("spun"));
}

#[test]
fn an_endless_loop_is_recorded_as_timeout() {
    let limits = Limits { time_ms: 50, ..Limits::default() };
    assert_eq!(failure("loop", limits), PluginFailure::Timeout(50));
}

#[test]
fn allocation_under_the_memory_cap_succeeds() {
    let proposals = propose("alloc:8", Limits::default()).unwrap();
    assert_eq!(probe(&proposals), "allocated 8 MiB");
}

#[test]
fn allocation_over_the_memory_cap_is_recorded_as_out_of_memory() {
    let limits = Limits { memory_mib: 32, ..Limits::default() };
    assert_eq!(failure("alloc:64", limits.clone()), PluginFailure::OutOfMemory(32));
    assert_eq!(failure("alloc-forever", limits), PluginFailure::OutOfMemory(32));
}

#[test]
fn a_panic_is_recorded_as_a_trap() {
    assert!(matches!(failure("trap", Limits::default()), PluginFailure::Trap(_)));
}

#[test]
fn a_stack_overflow_is_recorded_as_a_trap() {
    // Rust keeps its stack in linear memory: overflowing it is an out-of-bounds access.
    assert!(matches!(failure("stack-overflow", Limits::default()), PluginFailure::Trap(_)));
}

#[test]
fn proposals_up_to_the_limit_are_accepted() {
    let limits = Limits { max_proposals: 1000, ..Limits::default() };
    assert_eq!(propose("proposals:1000", limits).unwrap().len(), 1000);
}

#[test]
fn a_million_proposals_are_refused() {
    match failure("proposals:1000000", Limits::default()) {
        PluginFailure::Malformed(msg) => assert!(msg.contains("1000000 proposals"), "{msg}"),
        PluginFailure::OutOfMemory(_) => {}
        other => panic!("{other:?}"),
    }
}

/// The propose stage of a run over `n` images, the hostile guest in `mode` with
/// `memory_mib`: its proposals, and its failures for the whole run (no image).
fn run_of(n: usize, mode: &str, memory_mib: u64) -> (usize, Vec<String>) {
    let policy = amiwarden::config::Policy::parse(
        "[scope]\naccounts = [\"111111111111\"]\nregions = [\"us-east-1\"]\n[[plugin]]\nname = \"hostile\"\n\
         source = \"builtin:retention\"\ngrants = [\"retain\"]\n",
    )
    .unwrap();
    let limits = Limits { memory_mib, batch: 50, ..Limits::default() };
    let plugins = [hostile(mode, limits)];
    let images = (0..n).map(|i| image(&format!("ami-{i:017x}"), &[])).collect();
    let events = amiwarden::event::Events::Scheduled(NOW);
    let out = amiwarden::plugin::propose(&policy, &plugins, &inventory(images), &events, NOW, &|_| {});
    let whole_run = out.failures.iter().filter(|f| f.image.is_none()).map(|f| f.failure.to_string()).collect();
    (out.proposed.len(), whole_run)
}

/// `max_proposals` bounds one call; a run's worth of them is bounded too, by the
/// plugin's memory limit and 2 KiB per event: 1,000 proposals (~160 KB) on each of 200
/// events is over 16 MiB + 400 KiB, and the plugin fails for the whole run.
#[test]
fn a_runs_worth_of_proposals_within_the_budget_is_kept_and_over_it_the_plugin_fails_for_the_run() {
    let (kept, failed) = run_of(200, "proposals:10", 16);
    assert_eq!((kept, failed.len()), (2000, 0), "{failed:?}");
    let (kept, failed) = run_of(200, "proposals:1000", 16);
    assert_eq!(kept, 0, "every proposal of the plugin is dropped");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("its budget (16 MiB, its memory limit, and 2 KiB per event, for 200 events)"),
        "{failed:?}"
    );
}

#[test]
fn a_reason_within_the_text_limit_is_accepted() {
    assert_eq!(propose("big-string:4000", Limits::default()).unwrap().len(), 1);
}

#[test]
fn a_hundred_megabyte_string_is_refused() {
    let limits = Limits { memory_mib: 256, time_ms: 5000, ..Limits::default() };
    match failure("big-string:100000000", limits) {
        PluginFailure::Malformed(msg) => assert!(msg.contains("100000000 bytes"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(failure("big-string:100000000", Limits::default()), PluginFailure::OutOfMemory(64));
}

#[test]
fn malformed_output_is_refused_with_the_offending_value() {
    let cases = [
        ("bad-ami", "ami-NOTHEX"),
        ("short-account", "12345678901"),
        ("undeclared-kind", "`deregister`"),
        ("empty-tag-key", "tag"),
    ];
    for (mode, needle) in cases {
        match failure(mode, Limits::default()) {
            PluginFailure::Malformed(msg) => assert!(msg.contains(needle), "{mode}: {msg}"),
            other => panic!("{mode}: {other:?}"),
        }
    }
}

fn denied(mode: &str) -> String {
    match failure(mode, Limits::default()) {
        PluginFailure::Policy(PolicyErrorKind::Failed, msg) => {
            assert!(msg.contains("denied"), "{mode}: {msg}");
            msg
        }
        other => panic!("{mode}: {other:?}"),
    }
}

#[test]
fn host_files_environment_and_network_are_out_of_reach() {
    denied("read-host-file");
    denied("read-outside-data");
    denied("env");
    denied("network");
}

fn with_data_dir(mode: &str) -> Result<Vec<Proposal>, PluginError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allowed.txt"), "granted\n").unwrap();
    let mut spec = spec("hostile", json!({ "mode": mode }), Limits::default());
    spec.data_dir = Some(dir.path().to_path_buf());
    let plugin = runtime().load_file(Path::new(HOSTILE), spec).unwrap();
    let img = image("ami-0123456789abcdef0", &[]);
    let mut session = plugin.session(inventory(vec![img.clone()]), NOW)?;
    let result = session.propose(&scheduled(img));
    assert!(!dir.path().join("written.txt").exists(), "the plugin wrote into its data dir");
    result
}

#[test]
fn the_data_dir_is_readable_but_not_writable() {
    assert_eq!(probe(&with_data_dir("read-data").unwrap()), "read granted");
    match with_data_dir("write-data").unwrap_err().failure {
        PluginFailure::Policy(_, msg) => assert!(msg.contains("denied"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_wall_clock_is_pinned_to_the_evaluation_time() {
    let proposals = propose("clock", Limits::default()).unwrap();
    assert_eq!(probe(&proposals), format!("{}/{}", NOW.0, NOW.0));
}

#[test]
fn a_bad_config_fails_at_load_with_the_plugins_message() {
    let err = runtime()
        .load_file(Path::new(HOSTILE), spec("hostile", json!({ "mode": "bad-config" }), Limits::default()))
        .err()
        .expect("load fails");
    assert_eq!(err.stage, Stage::Configure);
    assert!(err.to_string().contains("refused on purpose"), "{err}");
}

#[test]
fn one_image_failing_leaves_the_others_evaluated() {
    let plugin = hostile("ok", Limits { time_ms: 30, ..Limits::default() });
    let images = vec![
        image("ami-0000000000000000a", &[]),
        image("ami-0000000000000000b", &[("hostile-mode", "loop")]),
        image("ami-0000000000000000c", &[("hostile-mode", "trap")]),
        image("ami-0000000000000000d", &[]),
    ];
    let inv = inventory(images.clone());
    let mut outcomes = Vec::new();
    for img in images {
        let mut session = plugin.session(Arc::clone(&inv), NOW).unwrap();
        outcomes.push(session.propose(&scheduled(img)).map(|p| probe(&p)));
    }
    assert_eq!(outcomes[0].as_deref(), Ok("ok"));
    assert_eq!(outcomes[1].as_ref().unwrap_err().failure, PluginFailure::Timeout(30));
    assert!(matches!(outcomes[2].as_ref().unwrap_err().failure, PluginFailure::Trap(_)));
    assert_eq!(outcomes[3].as_deref(), Ok("ok"));
}

#[test]
fn a_plugin_pinned_to_another_hash_is_refused() {
    let mut spec = spec("hostile", json!({}), Limits::default());
    spec.sha256 = Some("00".repeat(32));
    let err = runtime().load_file(Path::new(HOSTILE), spec).err().expect("refused");
    assert!(err.to_string().contains("but the policy pins"), "{err}");
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let err = runtime().load(b"#!/bin/sh\necho hi\n", spec("x", json!({}), Limits::default())).err().expect("refused");
    assert!(err.to_string().contains("not a WebAssembly file"), "{err}");
}

fn counters(batch: usize) -> Vec<String> {
    use amiwarden::config::Policy;
    use amiwarden::event::Events;
    use amiwarden::plugin::propose;
    let plugin = hostile("counter", Limits { batch, ..Limits::default() });
    let images: Vec<_> = (0..10).map(|i| image(&format!("ami-{i:017x}"), &[])).collect();
    let inv = inventory(images);
    let policy = Policy::parse("[scope]\naccounts = [\"111111111111\"]\nregions = [\"us-east-1\"]\n").unwrap();
    let plugins = [plugin];
    let out = propose(&policy, &plugins, &inv, &Events::Scheduled(NOW), NOW, &|_| ());
    out.proposed.iter().map(|p| probe(std::slice::from_ref(&p.proposal))).collect()
}

#[test]
fn state_never_outlives_a_batch_and_batches_are_fixed() {
    // One event per store: nothing carries over.
    assert_eq!(counters(1), vec!["1"; 10]);
    // Four events per store: a plugin's global state restarts with every batch, and the
    // batch boundaries depend only on the input, so results do not depend on scheduling.
    assert_eq!(counters(4), ["1", "2", "3", "4", "1", "2", "3", "4", "1", "2"]);
}

/// Runs `f` and returns what it logged on this thread, as plain text.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let shared = Shared(Arc::default());
    let writer = shared.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&shared.0.lock().unwrap()).into_owned();
    (out, text)
}

#[test]
fn log_lines_within_the_output_budget_all_reach_the_log() {
    let (proposals, text) = logged(|| propose("log-flood:10", Limits::default()));
    assert_eq!(probe(&proposals.unwrap()), "flooded");
    assert_eq!(text.matches("flood ").count(), 10, "{text}");
    assert!(!text.contains("dropped"), "{text}");
}

#[test]
fn a_log_flood_is_cut_at_the_output_budget_with_one_note() {
    let limits = Limits::default();
    let (proposals, text) = logged(|| propose("log-flood:5000", limits.clone()));
    assert_eq!(probe(&proposals.unwrap()), "flooded", "the call itself still succeeds");
    let kept = text.matches("flood ").count();
    assert!(kept > 0 && kept * 1000 <= limits.output_bytes, "{kept} lines kept");
    let notes: Vec<&str> = text.lines().filter(|l| l.contains("dropped")).collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains(&format!("{} log message(s) dropped", 5_000 - kept)), "{}", notes[0]);
    assert!(text.len() < 2 * limits.output_bytes, "{} bytes logged", text.len());
}

#[test]
fn a_log_flood_on_every_event_of_a_batch_is_noted_once() {
    let plugin = hostile("log-flood:100", Limits::default());
    let images: Vec<_> = (0..10).map(|i| image(&format!("ami-{i:017x}"), &[])).collect();
    let inv = inventory(images.clone());
    let (_, text) = logged(|| {
        let mut session = plugin.session(inv, NOW).unwrap();
        for img in &images {
            assert_eq!(probe(&session.propose(&scheduled(img.clone())).unwrap()), "flooded");
        }
    });
    let notes: Vec<&str> = text.lines().filter(|l| l.contains("dropped")).collect();
    assert_eq!(notes.len(), 1, "one note for the batch, not one per event: {notes:?}");
    assert!(notes[0].contains("and any more in this batch"), "{}", notes[0]);
}

#[test]
fn what_a_plugin_prints_is_logged_once_per_call() {
    let plugin = hostile("print", Limits::default());
    let images = [image("ami-0000000000000000a", &[]), image("ami-0000000000000000b", &[])];
    let inv = inventory(images.to_vec());
    let (_, text) = logged(|| {
        let mut session = plugin.session(inv, NOW).unwrap();
        for img in &images {
            session.propose(&scheduled(img.clone())).unwrap();
        }
    });
    for img in &images {
        assert_eq!(text.matches(&format!("hello from {}", img.id)).count(), 1, "{text}");
    }
}

#[test]
fn printing_past_the_output_budget_is_cut_with_a_note_and_fails_nothing() {
    // ~30 bytes to stdout and ~35 to stderr per event: a 1 KiB budget is spent by the
    // ~35th event of the batch; every later event still gets its proposals.
    let limits = Limits { output_bytes: 1024, ..Limits::default() };
    let plugin = hostile("print", limits.clone());
    let images: Vec<_> = (0..200).map(|i| image(&format!("ami-{i:017x}"), &[])).collect();
    let inv = inventory(images.clone());
    let (proposals, text) = logged(|| {
        let mut session = plugin.session(inv, NOW).unwrap();
        images.iter().map(|img| session.propose(&scheduled(img.clone())).map(|p| probe(&p))).collect::<Vec<_>>()
    });
    for (img, got) in images.iter().zip(&proposals) {
        assert_eq!(got.as_deref().ok(), Some("printed"), "{}: {got:?}", img.id);
    }
    assert_eq!(text.matches("hello from ami-00000000000000000 ").count(), 1, "the first event's line is logged");
    assert!(!text.contains("hello from ami-000000000000000c7"), "the last event's line is past the budget");
    for stream in ["stdout", "stderr"] {
        let notes: Vec<&str> = text.lines().filter(|l| l.contains(&format!("of {stream} dropped"))).collect();
        assert_eq!(notes.len(), 1, "one note per stream, when the budget is first passed: {notes:?}");
    }
    let printed = text.lines().filter(|l| l.contains("hello from") || l.contains("warning about")).count();
    assert!((50..=80).contains(&printed), "{printed} lines within two 1 KiB budgets:\n{text}");
}

/// Runs the hostile guest in `mode` on the first of `n` images.
fn propose_among(mode: &str, n: usize) -> Result<Vec<Proposal>, PluginError> {
    let plugin = hostile(mode, Limits::default());
    let images: Vec<_> = (0..n).map(|i| image(&format!("ami-{i:017x}"), &[])).collect();
    let first = images[0].clone();
    let mut session = plugin.session(inventory(images), NOW)?;
    session.propose(&scheduled(first))
}

#[test]
fn queries_within_the_host_work_budget_are_answered() {
    let proposals = propose_among("query-everything", 2000).unwrap();
    assert_eq!(probe(&proposals), "saw 2000");
}

#[test]
fn a_plugin_looping_over_queries_is_stopped_by_its_host_work_budget() {
    // Fuel counts only the guest's instructions: without a host-work budget this loop
    // made the host lower images until the wall-clock backstop (20 x time_ms) fired.
    let err = propose_among("query-loop", 2000).unwrap_err();
    assert_eq!(err.failure, PluginFailure::HostWork(Limits::default().time_ms), "{err}");
    assert!(err.to_string().contains("made the host work past its time budget"), "{err}");
}
