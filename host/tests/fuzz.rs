//! Mutation fuzzing of every input that comes from outside, through the binary: the
//! policy file, the sim state, an event, a saved plan, a journal and the sim's apply
//! log. Each starts from a real file (the examples, or one the binary wrote) and is
//! mutated by proptest, both as bytes (flips, inserts, deletions, duplicated runs, cuts,
//! hostile tokens) and as a structure (a JSON or TOML value replaced by a hostile one,
//! or removed). Every case must end with a documented exit code (0 done, 1 error, 2 bad
//! input, 3 guardrail, 4 plugin errors), never a panic (101) or a hang, and a run that
//! refuses its input must leave the state untouched.
//!
//! `AMIWARDEN_FUZZ_CASES=N` sets the cases per target (default 12, what CI runs);
//! `AMIWARDEN_FUZZ_SEED=N` picks another deterministic sequence.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test fixtures fail loudly")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::Value;

const AS_OF: &str = "2026-11-24";
/// Longer than any run here takes (a plan of the demo is well under a second): past it
/// the case is a hang.
const HANG: Duration = Duration::from_secs(60);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn cases() -> u32 {
    std::env::var("AMIWARDEN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12)
}

fn runner() -> TestRunner {
    let seed: u64 = std::env::var("AMIWARDEN_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config { cases: cases(), failure_persistence: None, max_shrink_iters: 64, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key))
}

/// Runs the binary in `dir`; returns its exit code and stderr, or fails on a hang.
fn run(dir: &Path, args: &[&str]) -> Result<(i32, String), TestCaseError> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_amiwarden"))
        .current_dir(dir)
        .args(args)
        .args(["--cache-dir", concat!(env!("CARGO_TARGET_TMPDIR"), "/fuzz-cache")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("amiwarden runs");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TestCaseError::fail(format!("amiwarden {args:?} hung for {HANG:?}")));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = reader.join().unwrap();
    let code = status.code().unwrap_or(-1);
    if !(0..=4).contains(&code) || stderr.contains("panicked") {
        return Err(TestCaseError::fail(format!("amiwarden {args:?} exited {code}:\n{stderr}")));
    }
    Ok((code, stderr))
}

/// A hostile token: what a careless or malicious writer puts where a value goes.
fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"-1".to_vec()),
        Just(b"1e309".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"null".to_vec()),
        Just(b"\"\"".to_vec()),
        Just(b"[]".to_vec()),
        Just(b"{}".to_vec()),
        Just(b"\\u0000".to_vec()),
        Just("\u{202e}ami-0\u{0007}".as_bytes().to_vec()),
        Just(vec![b'A'; 70_000]),
        Just(vec![b'['; 5_000]),
        Just(vec![0xff, 0xfe]),
        proptest::collection::vec(any::<u8>(), 1..16),
    ]
}

/// One byte-level mutation; positions are taken modulo the input's length.
#[derive(Debug, Clone)]
enum Bytes {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Cut(usize),
}

fn byte_mutation() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Bytes::Flip(at, b)),
        (any::<usize>(), token()).prop_map(|(at, t)| Bytes::Insert(at, t)),
        (any::<usize>(), 1usize..64).prop_map(|(at, n)| Bytes::Delete(at, n)),
        (any::<usize>(), 1usize..256).prop_map(|(at, n)| Bytes::Duplicate(at, n)),
        any::<usize>().prop_map(Bytes::Cut),
    ]
}

fn apply_bytes(mut data: Vec<u8>, mutations: &[Bytes]) -> Vec<u8> {
    for m in mutations {
        let len = data.len().max(1);
        match m {
            Bytes::Flip(at, b) => {
                if !data.is_empty() {
                    data[at % len] = *b;
                }
            }
            Bytes::Insert(at, t) => {
                let at = at % (data.len() + 1);
                data.splice(at..at, t.iter().copied());
            }
            Bytes::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(data.len());
                data.drain(at.min(end)..end);
            }
            Bytes::Duplicate(at, n) => {
                let at = at % len;
                let end = (at + n).min(data.len());
                let run: Vec<u8> = data[at.min(end)..end].to_vec();
                data.splice(end..end, run);
            }
            Bytes::Cut(at) => data.truncate(at % len),
        }
    }
    data
}

/// A structure-aware mutation: the `n`th value of the document (in a walk of it) is
/// replaced by a hostile one, or removed from its parent.
#[derive(Debug, Clone)]
struct Structure {
    n: usize,
    with: Option<Value>,
}

fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(i64::MAX)),
        Just(serde_json::json!(u64::MAX)),
        Just(serde_json::json!(1.0e300)),
        Just(serde_json::json!("")),
        Just(serde_json::json!("x".repeat(20_000))),
        Just(serde_json::json!("9999-12-31T23:59:59Z")),
        Just(serde_json::json!("ami-0\u{1b}[31m")),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!({"unexpected": true})),
        Just(serde_json::json!(true)),
        "[a-z0-9:/._-]{0,24}".prop_map(Value::String),
    ]
}

fn structure_mutation() -> impl Strategy<Value = Structure> {
    (any::<usize>(), proptest::option::weighted(0.8, hostile_value())).prop_map(|(n, with)| Structure { n, with })
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(map) => map.values().map(count).sum(),
        _ => 0,
    }
}

/// Replaces (or removes) the value at position `n` of a walk; true when done.
fn mutate_at(v: &mut Value, n: &mut usize, with: &Option<Value>) -> bool {
    let keys: Vec<String> = match v {
        Value::Object(map) => map.keys().cloned().collect(),
        Value::Array(items) => (0..items.len()).map(|i| i.to_string()).collect(),
        _ => return false,
    };
    for key in keys {
        if *n == 0 {
            match (with, &mut *v) {
                (Some(new), Value::Object(map)) => {
                    map.insert(key, new.clone());
                }
                (Some(new), Value::Array(items)) => items[key.parse::<usize>().unwrap()] = new.clone(),
                (None, Value::Object(map)) => {
                    map.remove(&key);
                }
                (None, Value::Array(items)) => {
                    items.remove(key.parse::<usize>().unwrap());
                }
                _ => unreachable!("only containers have children"),
            }
            return true;
        }
        *n -= 1;
        let child = match v {
            Value::Object(map) => map.get_mut(&key).unwrap(),
            Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
            _ => unreachable!("only containers have children"),
        };
        if mutate_at(child, n, with) {
            return true;
        }
    }
    false
}

/// A JSON document, or one line of a JSON-lines file (a journal, an apply log).
fn mutate_json(text: &[u8], m: &Structure) -> Vec<u8> {
    if let Ok(mut doc) = serde_json::from_slice::<Value>(text) {
        let mut n = m.n % count(&doc).max(1);
        mutate_at(&mut doc, &mut n, &m.with);
        return serde_json::to_vec_pretty(&doc).unwrap();
    }
    let text = String::from_utf8_lossy(text);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return Vec::new();
    }
    let at = m.n % lines.len();
    if let Ok(mut doc) = serde_json::from_str::<Value>(&lines[at]) {
        let mut n = (m.n / lines.len()) % count(&doc).max(1);
        mutate_at(&mut doc, &mut n, &m.with);
        lines[at] = doc.to_string();
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out.into_bytes()
}

fn mutate_toml(text: &[u8], m: &Structure) -> Vec<u8> {
    let Ok(table) = toml::from_str::<toml::Table>(&String::from_utf8_lossy(text)) else { return text.to_vec() };
    let mut doc = serde_json::to_value(&table).unwrap();
    let mut n = m.n % count(&doc).max(1);
    mutate_at(&mut doc, &mut n, &m.with);
    // TOML has no null: a null written back is left out, as TOML would.
    match toml::to_string(&doc) {
        Ok(text) => text.into_bytes(),
        Err(_) => serde_json::to_vec(&doc).unwrap(),
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Bytes(Vec<Bytes>),
    Structure(Structure),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        proptest::collection::vec(byte_mutation(), 1..4).prop_map(Mutation::Bytes),
        structure_mutation().prop_map(Mutation::Structure),
    ]
}

fn mutated(seed: &[u8], m: &Mutation, toml: bool) -> Vec<u8> {
    match m {
        Mutation::Bytes(ms) => apply_bytes(seed.to_vec(), ms),
        Mutation::Structure(s) if toml => mutate_toml(seed, s),
        Mutation::Structure(s) => mutate_json(seed, s),
    }
}

/// A work directory with the example policy and a copy of the demo state.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(examples().join("policy.toml"), dir.path().join("policy.toml")).unwrap();
        std::fs::copy(examples().join("sim/demo.json"), dir.path().join("state.json")).unwrap();
        Work { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.path(name), bytes).unwrap();
    }

    fn run(&self, args: &[&str]) -> Result<(i32, String), TestCaseError> {
        run(self.dir.path(), args)
    }

    /// Resets the state (and removes journals, logs and locks) before a case.
    fn reset(&self, state: &[u8]) {
        self.write("state.json", state);
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with("state.json.") || name.ends_with(".lock") {
                let _ = std::fs::remove_file(self.path(&name));
            }
        }
    }
}

const PLAN: [&str; 9] =
    ["plan", "--policy", "policy.toml", "--sim", "state.json", "--as-of", AS_OF, "--format", "json"];

/// Fuzzes a file read by a plan (which only reads: the state must not change).
fn fuzz_read_by_plan(name: &str, seed: &[u8], toml: bool, extra: &[&str]) {
    let work = Work::new();
    let state = work.read("state.json");
    let mut args: Vec<&str> = PLAN.to_vec();
    args.extend_from_slice(extra);
    work.write(name, seed);
    let (code, stderr) = work.run(&args).unwrap();
    assert_eq!(code, 0, "the unmutated {name} plans: {stderr}");
    let outcomes = std::cell::RefCell::new([0u32; 5]);
    runner()
        .run(&mutation(), |m| {
            work.reset(&state);
            work.write(name, &mutated(seed, &m, toml));
            let (code, _) = work.run(&args)?;
            outcomes.borrow_mut()[code as usize] += 1;
            if name != "state.json" {
                prop_assert_eq!(work.read("state.json"), state.clone(), "a plan changed the state");
            }
            Ok(())
        })
        .unwrap();
    eprintln!("{name}: {} cases, exits 0..4: {:?}", cases(), outcomes.borrow());
}

#[test]
fn mutated_policy_files_are_refused_or_planned_never_a_panic() {
    let seed = std::fs::read(examples().join("policy.toml")).unwrap();
    fuzz_read_by_plan("policy.toml", &seed, true, &[]);
}

#[test]
fn mutated_sim_states_are_refused_or_planned_never_a_panic() {
    let seed = std::fs::read(examples().join("sim/demo.json")).unwrap();
    fuzz_read_by_plan("state.json", &seed, false, &[]);
}

#[test]
fn mutated_events_are_refused_or_planned_never_a_panic() {
    let seed = std::fs::read(examples().join("events/cloudtrail-create-tags.json")).unwrap();
    fuzz_read_by_plan("event.json", &seed, false, &["--event", "event.json"]);
}

#[test]
fn a_mutated_apply_log_beside_the_state_is_refused_or_replayed_never_a_panic() {
    // A log as an interrupted apply leaves it: its first actions, one entry each.
    let work = Work::new();
    let (code, _) = work.run(&[&PLAN[..], &["--out", "plan.json"]].concat()).unwrap();
    assert_eq!(code, 0);
    let plan: Value = serde_json::from_slice(&work.read("plan.json")).unwrap();
    let mut log = String::new();
    for (i, action) in plan["actions"].as_array().unwrap().iter().take(6).enumerate() {
        let entry = serde_json::json!({"seq": i + 1, "now": "2026-11-24T00:00:00Z", "action": action});
        log.push_str(&format!("{entry}\n"));
    }
    fuzz_read_by_plan("state.json.log", log.as_bytes(), false, &[]);
}

/// Fuzzes a file an apply reads: a refused apply (bad input, guardrail) leaves the state
/// exactly as it was.
fn fuzz_read_by_apply(name: &str, seed: &[u8], state: &[u8], work: &Work, args: &[&str]) {
    let outcomes = std::cell::RefCell::new([0u32; 5]);
    runner()
        .run(&mutation(), |m| {
            work.reset(state);
            work.write(name, &mutated(seed, &m, false));
            let (code, stderr) = work.run(args)?;
            outcomes.borrow_mut()[code as usize] += 1;
            if code == 2 || code == 3 {
                prop_assert_eq!(work.read("state.json"), state.to_vec(), "refused, yet the state changed: {}", stderr);
            }
            Ok(())
        })
        .unwrap();
    eprintln!("{name}: {} cases, exits 0..4: {:?}", cases(), outcomes.borrow());
}

#[test]
fn mutated_saved_plans_are_refused_before_any_change_or_applied_as_planned() {
    let work = Work::new();
    let (code, _) = work.run(&[&PLAN[..], &["--out", "plan.json"]].concat()).unwrap();
    assert_eq!(code, 0);
    let seed = work.read("plan.json");
    let state = work.read("state.json");
    let args = [
        "apply",
        "--policy",
        "policy.toml",
        "--sim",
        "state.json",
        "--as-of",
        AS_OF,
        "--plan",
        "mutated.json",
        "--yes",
    ];
    fuzz_read_by_apply("mutated.json", &seed, &state, &work, &args);
}

#[test]
fn mutated_journals_are_refused_before_any_change_or_resumed() {
    // The journal of a complete apply, resumed on the state as it was before the apply:
    // the mutations decide what the rerun believes already happened.
    let work = Work::new();
    let state = work.read("state.json");
    let args = ["apply", "--policy", "policy.toml", "--sim", "state.json", "--as-of", AS_OF, "--yes"];
    let with_journal = [&args[..], &["--journal", "journal.jsonl"]].concat();
    let (code, stderr) = work.run(&with_journal).unwrap();
    assert_eq!(code, 0, "{stderr}");
    let seed = work.read("journal.jsonl");
    fuzz_read_by_apply("journal.jsonl", &seed, &state, &work, &with_journal);
}
