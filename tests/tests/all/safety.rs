//! Safety holes a hostile plugin or input would try, each closed: reserved tags, absurd
//! deprecations, terminal escapes, proposals and verdicts about nothing, events that
//! contradict EC2, and vetoes that would keep forbidden access.

use std::path::PathBuf;

use amiwarden::config::Policy;
use amiwarden::model::{Action, Principal, Timestamp};
use amiwarden::plan::{Op, Plan, RefusalKind};
use amiwarden::plugin::load_plugins;
use amiwarden::plugin::{PluginFailure, Runtime, Stage};
use amiwarden::run::{Source, plan};
use amiwarden::sim::{SimBackend, SimState};
use amiwarden_tests::{HOSTILE, TRIVIAL};

const AS_OF: Timestamp = Timestamp(1_795_478_400); // 2026-11-24

const STATE: &str = r#"{"version": 1, "accounts": {"111111111111": {"regions": {"us-east-1": {
  "images": [
    {"id": "ami-0aaaaaaaaaaaaaaa1", "name": "web-1", "creation_time": "2026-01-01T00:00:00Z",
     "launch_permissions": ["public"], "tags": {"family": "web"},
     "block_devices": [{"device_name": "/dev/xvda", "snapshot_id": "snap-0aaaaaaaaaaaaaaa1", "size_gib": 8}]},
    {"id": "ami-0aaaaaaaaaaaaaaa2", "name": "web-2", "creation_time": "2026-11-01T00:00:00Z", "tags": {"family": "web"},
     "block_devices": [{"device_name": "/dev/xvda", "snapshot_id": "snap-0aaaaaaaaaaaaaaa2", "size_gib": 8}]}
  ],
  "snapshots": [{"id": "snap-0aaaaaaaaaaaaaaa1", "size_gib": 8}, {"id": "snap-0aaaaaaaaaaaaaaa2", "size_gib": 8}]}}}}}"#;

fn sha256(path: &str) -> String {
    amiwarden::plugin::sha256_hex(&std::fs::read(path).unwrap())
}

/// A policy with the hostile plugin (mode and review mode as given, every kind granted)
/// and any extra plugin tables.
fn policy(mode: &str, review_mode: &str, extra: &str) -> Policy {
    let text = format!(
        r#"
[scope]
accounts = ["111111111111"]
regions = ["us-east-1"]

[guardrails]
max_destructive = 100
max_destructive_percent = 100.0

[[plugin]]
name = "hostile"
source = "{HOSTILE}"
sha256 = "{}"
grants = ["tag", "untag", "retain", "share", "copy", "deprecate"]
[plugin.config]
mode = "{mode}"
review_mode = "{review_mode}"
{extra}
"#,
        sha256(HOSTILE)
    );
    let mut policy = Policy::parse(&text).unwrap();
    policy.base_dir = PathBuf::from("/");
    policy
}

fn plan_on(policy: &Policy, state: &str, source: &Source) -> Plan {
    let runtime = Runtime::new(Some(crate::support::cache_dir())).unwrap();
    let plugins = load_plugins(&runtime, policy).unwrap();
    let backend = SimBackend::in_memory(SimState::parse(state, "state.json").unwrap(), AS_OF);
    plan(policy, &plugins, &backend, source, AS_OF, &|_, _| ()).unwrap().plan
}

fn malformed(plan: &Plan) -> Vec<String> {
    plan.errors
        .iter()
        .filter_map(|e| match &e.failure {
            PluginFailure::Malformed(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_plugin_granted_tag_cannot_write_or_remove_the_hosts_own_tags() {
    for mode in ["host-tag", "host-untag"] {
        let plan = plan_on(&policy(mode, "", ""), STATE, &Source::Scheduled);
        let reserved = |op: &Op| match op {
            Op::Tag { tags } => tags.keys().any(|k| k.starts_with("amiwarden:") || k.starts_with("aws:")),
            Op::Untag { keys } => keys.iter().any(|k| k.starts_with("amiwarden:") || k.starts_with("aws:")),
            _ => false,
        };
        assert!(!plan.actions.iter().any(|a| reserved(&a.op)), "{mode}: {:#?}", plan.actions);
        let refused: Vec<_> = plan.refused.iter().filter(|r| r.kind == RefusalKind::Guardrail).collect();
        assert_eq!(refused.len(), 2, "{mode}: one refusal per image: {:#?}", plan.refused);
        assert!(refused.iter().all(|r| r.reason.contains("reserved")), "{mode}: {refused:#?}");
    }
    // The harmless tag of the same proposal still goes through.
    let plan = plan_on(&policy("host-tag", "", ""), STATE, &Source::Scheduled);
    let team = plan.actions.iter().filter(|a| matches!(&a.op, Op::Tag { tags } if tags.contains_key("team")));
    assert_eq!(team.count(), 2);
}

#[test]
fn a_deprecation_at_the_end_of_time_is_a_plugin_error_not_a_crash() {
    let plan = plan_on(&policy("deprecate-max", "", ""), STATE, &Source::Scheduled);
    assert!(plan.actions.is_empty(), "{:#?}", plan.actions);
    let errors = malformed(&plan);
    assert_eq!(errors.len(), 2, "{:#?}", plan.errors);
    assert!(errors.iter().all(|m| m.contains("10 years")), "{errors:?}");
    // Whatever is written can be read back.
    let text = serde_json::to_string(&plan).unwrap();
    assert_eq!(serde_json::from_str::<Plan>(&text).unwrap(), plan);
}

#[test]
fn control_characters_in_plugin_text_are_refused_at_the_edge() {
    for mode in ["ansi-reason", "ansi-tag"] {
        let plan = plan_on(&policy(mode, "", ""), STATE, &Source::Scheduled);
        let errors = malformed(&plan);
        assert_eq!(errors.len(), 2, "{mode}: {:#?}", plan.errors);
        assert!(errors.iter().all(|m| m.contains("control character") && !m.contains('\u{1b}')), "{errors:?}");
        assert!(plan.actions.is_empty() && plan.refused.is_empty(), "{mode}");
    }
}

#[test]
fn a_proposal_for_an_image_outside_the_inventory_is_a_plugin_error_not_a_silent_drop() {
    let plan = plan_on(&policy("unknown-image", "", ""), STATE, &Source::Scheduled);
    let errors = malformed(&plan);
    assert_eq!(errors.len(), 2, "{:#?}", plan.errors);
    assert!(errors.iter().all(|m| m.contains("ami-00000000000000000") && m.contains("not in the inventory")));
}

const RETENTION: &str = r#"
[[plugin]]
name = "retention"
source = "builtin:retention"
grants = ["deprecate", "disable", "deregister", "delete-snapshots", "retain"]
[plugin.config]
family = { tag = "family" }
keep_newest = 1
deprecate_after_days = 30
deregister_after_days = 90
delete_snapshots = true

[[plugin]]
name = "sharing"
source = "builtin:sharing"
grants = ["share", "unshare"]
[plugin.config]
allowed = []
"#;

#[test]
fn a_verdict_on_an_action_the_plan_lacks_is_a_review_error_that_blocks_destruction() {
    let plan = plan_on(&policy("ok", "unknown-verdict", RETENTION), STATE, &Source::Scheduled);
    let review: Vec<_> = plan.errors.iter().filter(|e| e.stage == Stage::Review).collect();
    assert_eq!(review.len(), 1, "{:#?}", plan.errors);
    assert!(review[0].to_string().contains("not an action of the plan"), "{}", review[0]);
    assert!(!plan.actions.iter().any(|a| a.op.is_destructive()), "{:#?}", plan.actions);
    assert!(plan.refused.iter().any(|r| r.kind == RefusalKind::PluginFailed));
}

#[test]
fn a_veto_cannot_keep_an_image_public_when_the_policy_forbids_it() {
    let plan = plan_on(&policy("ok", "veto-all", RETENTION), STATE, &Source::Scheduled);
    let unshare = plan.actions.iter().find(|a| a.op == Op::Unshare { principal: Principal::Public });
    let unshare = unshare.unwrap_or_else(|| panic!("the public share is revoked: {:#?}", plan.actions));
    assert!(unshare.reasons.iter().any(|r| r.contains("veto ignored")), "{:?}", unshare.reasons);
    // Every other action is vetoed as usual.
    assert_eq!(plan.actions.len(), 1, "{:#?}", plan.actions);
    assert!(
        plan.refused.iter().any(|r| r.kind == RefusalKind::Vetoed && matches!(r.action, Action::Deregister { .. }))
    );
}

#[test]
fn a_plugin_whose_info_does_not_say_it_reviews_is_never_asked_to() {
    // The trivial guest's review would veto every action; its plugin-info says it does
    // not review, so the host neither lowers the plan into it nor calls it.
    let trivial = format!(
        "[[plugin]]\nname = \"keep-tagged\"\nsource = \"{TRIVIAL}\"\nsha256 = \"{}\"\ngrants = [\"retain\"]\n{RETENTION}",
        sha256(TRIVIAL)
    );
    let mut with_trivial = Policy::parse(&format!(
        "[scope]\naccounts = [\"111111111111\"]\nregions = [\"us-east-1\"]\n[guardrails]\nmax_destructive = 100\nmax_destructive_percent = 100.0\n{trivial}"
    ))
    .unwrap();
    with_trivial.base_dir = PathBuf::from("/");
    let plan = plan_on(&with_trivial, STATE, &Source::Scheduled);
    assert!(plan.errors.is_empty(), "{:#?}", plan.errors);
    assert!(!plan.refused.iter().any(|r| r.kind == RefusalKind::Vetoed), "{:#?}", plan.refused);
    assert!(plan.actions.iter().any(|a| matches!(a.op, Op::Deregister)), "{:#?}", plan.actions);
    // A plugin that says it reviews (the hostile guest, vetoing everything) is asked.
    let vetoed = plan_on(&policy("ok", "veto-all", RETENTION), STATE, &Source::Scheduled);
    assert!(vetoed.refused.iter().any(|r| r.kind == RefusalKind::Vetoed), "{:#?}", vetoed.refused);
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples")
}

fn event(kind: &str, image: &str) -> Source {
    event_in(kind, image, "us-east-1")
}

fn event_in(kind: &str, image: &str, region: &str) -> Source {
    let text = serde_json::json!({
        "version": "0", "id": "e", "detail-type": "EC2 AMI State Change", "source": "aws.ec2",
        "account": "111111111111", "time": "2026-11-23T16:02:40Z", "region": region, "resources": [],
        "detail": {"RequestId": "r", "ImageId": image, "State": kind, "ErrorReason": ""}
    });
    Source::Event { text: text.to_string(), origin: "event.json".into() }
}

#[test]
fn a_deregistered_event_for_a_live_image_does_not_retire_its_replicas() {
    let policy = Policy::load(&examples().join("policy.toml")).unwrap();
    let state = std::fs::read_to_string(examples().join("sim/demo.json")).unwrap();
    // golden-web-2026-09-07 is alive in us-east-1; its replica lives in eu-west-1.
    let (source, replica) = ("ami-002604f5ed051e1fd", "ami-00434109243220b3a");
    let retires = |plan: &Plan| plan.actions.iter().any(|a| a.image_id == replica && a.op.is_destructive());
    assert!(!retires(&plan_on(&policy, &state, &Source::Scheduled)), "a scheduled run keeps the replica");
    let plan = plan_on(&policy, &state, &event("deregistered", source));
    assert!(!retires(&plan), "{:#?}", plan.actions);
    // An event about an image that really is gone still reaches the plugins.
    let gone = plan_on(&policy, &state, &event("deregistered", "ami-0123456789abcdef0"));
    assert!(gone.errors.is_empty(), "{:#?}", gone.errors);
    // The live image said deregistered in another source region (image ids are unique
    // across regions): judged where EC2 lists it, its replica stays.
    let text = std::fs::read_to_string(examples().join("policy.toml")).unwrap();
    let two_sources =
        text.replace(r#"source_regions = ["us-east-1"]"#, r#"source_regions = ["us-east-1", "ap-southeast-2"]"#);
    assert_ne!(two_sources, text);
    let policy = Policy::parse(&two_sources).unwrap();
    let plan = plan_on(&policy, &state, &event_in("deregistered", source, "ap-southeast-2"));
    assert!(!retires(&plan), "{:#?}", plan.actions);
}

/// A plugin that traps on every image must not look like success: `plan` and `apply`
/// exit 4 (not 0 with "No changes"), so a scheduled job goes red.
#[test]
fn plugin_errors_make_plan_and_apply_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[scope]\naccounts = [\"111111111111\"]\nregions = [\"us-east-1\"]\n\n[[plugin]]\nname = \"hostile\"\n\
         source = \"{HOSTILE}\"\nsha256 = \"{}\"\ngrants = [\"tag\"]\n[plugin.config]\nmode = \"trap\"\n",
        sha256(HOSTILE)
    );
    std::fs::write(dir.path().join("policy.toml"), text).unwrap();
    std::fs::write(dir.path().join("state.json"), STATE).unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let cache = crate::support::cache_dir().display().to_string();
    let common = ["--policy", &path("policy.toml"), "--sim", &path("state.json"), "--cache-dir", &cache];
    let plan = amiwarden::cli::run_args(["amiwarden", "plan"].iter().chain(&common).copied());
    assert_eq!(plan, 4, "plan with a trapping plugin");
    let apply = amiwarden::cli::run_args(["amiwarden", "apply", "--yes"].iter().chain(&common).copied());
    assert_eq!(apply, 4, "apply with a trapping plugin");
}

fn as_of() -> Timestamp {
    AS_OF
}

/// A worker of `amiwarden serve` without a queue, on `backend`: `handle` and `run_shard`
/// as a received message would call them.
fn worker<'a>(
    policy: &'a Policy,
    plugins: &'a [amiwarden::plugin::Plugin],
    backend: &'a SimBackend,
    dir: &std::path::Path,
) -> amiwarden::serve::Service<'a> {
    amiwarden::serve::Service {
        settings: amiwarden::serve::Settings {
            schedule: None,
            dry_run: false,
            state_dir: dir.to_path_buf(),
            keep_runs: 2,
            visibility: std::time::Duration::from_secs(30),
            wait: std::time::Duration::from_secs(1),
        },
        policy,
        plugins,
        backend,
        queue: None,
        metrics: std::sync::Arc::new(amiwarden::serve::Metrics::default()),
        clock: &as_of,
        stop: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    }
}

/// An event whose image a plugin fails on is not acknowledged: nothing else would judge
/// that image again (a service may run without a schedule), so the message stays in the
/// queue to be tried again and, failing for good, reaches the dead-letter queue.
#[test]
fn a_plugin_failing_on_an_events_image_keeps_the_message_in_the_queue() {
    let Source::Event { text, .. } = event("available", "ami-0aaaaaaaaaaaaaaa1") else { unreachable!() };
    for (mode, kept) in [("trap", true), ("policy-error", true), ("ok", false)] {
        let policy = policy(mode, "", "");
        let runtime = Runtime::new(Some(crate::support::cache_dir())).unwrap();
        let plugins = load_plugins(&runtime, &policy).unwrap();
        let backend = SimBackend::in_memory(SimState::parse(STATE, "state.json").unwrap(), AS_OF);
        let dir = tempfile::tempdir().unwrap();
        let disposition = worker(&policy, &plugins, &backend, dir.path()).handle("m-1", &text);
        match disposition {
            amiwarden::serve::Disposition::Failed(why) if kept => {
                assert!(why.contains("a plugin failed on its images") && why.contains("left in the queue"), "{why}");
            }
            amiwarden::serve::Disposition::Done("handled") if !kept => {}
            other => panic!("{mode}: {other:?}"),
        }
    }
}

/// A shard's tick names its run directory, and run directories are pruned oldest first
/// by name: a forged tick that sorts after every real one would have them pruned.
#[test]
fn a_shard_whose_tick_is_not_a_scheduled_time_is_refused() {
    let policy = policy("ok", "", "");
    let runtime = Runtime::new(Some(crate::support::cache_dir())).unwrap();
    let plugins = load_plugins(&runtime, &policy).unwrap();
    let backend = SimBackend::in_memory(SimState::parse(STATE, "state.json").unwrap(), AS_OF);
    let dir = tempfile::tempdir().unwrap();
    let service = worker(&policy, &plugins, &backend, dir.path());
    let shard = |tick: &str| amiwarden::serve::Shard::new(tick, "111111111111");
    for tick in ["9999", "2999-01-01T00:00:00Z", "2026-11-24T00:00:00+00:00", "../../etc", ""] {
        match service.run_shard(&shard(tick)) {
            amiwarden::serve::Disposition::Failed(why) => assert!(why.contains("is not a scheduled time"), "{why}"),
            other => panic!("{tick:?}: {other:?}"),
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no run directory made");
    assert_eq!(service.run_shard(&shard("2026-11-24T00:00:00Z")), amiwarden::serve::Disposition::Done("applied"));
    assert!(dir.path().join("runs/2026-11-24T00_00_00Z/111111111111.jsonl").is_file());
}

/// A family of four images (three aged out, the newest kept) in each of `accounts`: in
/// account k, `ami-0aaaaaaaaaaaaaa{k}{n}` with `n` 1 (oldest) to 4.
fn families(accounts: &[&str]) -> String {
    let dates = ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-11-01T00:00:00Z"];
    let mut out = serde_json::Map::new();
    for (k, account) in accounts.iter().enumerate() {
        let images: Vec<_> = (1..=4)
            .zip(dates)
            .map(|(n, created)| {
                serde_json::json!({"id": format!("ami-0aaaaaaaaaaaaaa{k}{n}"), "name": format!("web-{n}"),
                    "creation_time": created, "tags": {"family": "web"}, "block_devices": [{"device_name": "/dev/xvda",
                    "snapshot_id": format!("snap-0aaaaaaaaaaaaaa{k}{n}"), "size_gib": 8}]})
            })
            .collect();
        let snapshots: Vec<_> =
            (1..=4).map(|n| serde_json::json!({"id": format!("snap-0aaaaaaaaaaaaaa{k}{n}"), "size_gib": 8})).collect();
        out.insert(
            account.to_string(),
            serde_json::json!({"regions": {"us-east-1": {"images": images, "snapshots": snapshots}}}),
        );
    }
    serde_json::json!({"version": 1, "accounts": out}).to_string()
}

/// Retention keeping the newest `keep_newest` over `accounts` with `max_destructive = 4`,
/// its plugins, and the sim holding
/// `families(accounts)`.
fn four_at_most(accounts: &[&str], keep_newest: u8) -> (Policy, Vec<amiwarden::plugin::Plugin>, SimBackend) {
    let list: Vec<String> = accounts.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        "[scope]\naccounts = [{}]\nregions = [\"us-east-1\"]\n[guardrails]\nmax_destructive = 4\n\
         max_destructive_percent = 100.0\n{RETENTION}",
        list.join(", ")
    );
    let text = text.replace("keep_newest = 1", &format!("keep_newest = {keep_newest}"));
    let policy = Policy::parse(&text).unwrap();
    let runtime = Runtime::new(Some(crate::support::cache_dir())).unwrap();
    let plugins = load_plugins(&runtime, &policy).unwrap();
    let backend = SimBackend::in_memory(SimState::parse(&families(accounts), "state.json").unwrap(), AS_OF);
    (policy, plugins, backend)
}

fn images_left(policy: &Policy, backend: &SimBackend) -> Vec<String> {
    let images = amiwarden::backend::Backend::collect(backend, &policy.scope, &Default::default()).unwrap();
    images.into_iter().map(|i| i.id).collect()
}

/// `max_destructive` is per run, and a message is one run however many events it holds:
/// a batch of events, each deregistering one image (and deleting its snapshot), stops
/// where the batch as a whole reaches the limit, and stays stopped when delivered again.
#[test]
fn a_message_of_many_events_is_one_run_for_the_blast_radius() {
    let (policy, plugins, backend) = four_at_most(&["111111111111"], 1);
    let dir = tempfile::tempdir().unwrap();
    let service = worker(&policy, &plugins, &backend, dir.path());
    let body = |ids: &[u8]| {
        let events: Vec<String> = ids
            .iter()
            .map(|n| match event("available", &format!("ami-0aaaaaaaaaaaaaa0{n}")) {
                Source::Event { text, .. } => text,
                other => panic!("{other:?}"),
            })
            .collect();
        format!("[{}]", events.join(","))
    };
    for delivery in 1..=2 {
        match service.handle("m-1", &body(&[1, 2, 3])) {
            amiwarden::serve::Disposition::Failed(why) => {
                assert!(why.contains("the message m-1 has done 4 destructive action(s)"), "{delivery}: {why}");
            }
            other => panic!("{delivery}: {other:?}"),
        }
        assert_eq!(images_left(&policy, &backend), ["ami-0aaaaaaaaaaaaaa03", "ami-0aaaaaaaaaaaaaa04"], "{delivery}");
    }
    // Another message is another run.
    assert_eq!(service.handle("m-2", &body(&[3])), amiwarden::serve::Disposition::Done("handled"));
    assert_eq!(images_left(&policy, &backend), ["ami-0aaaaaaaaaaaaaa04"]);
}

/// A scheduled run is one run however many accounts (shards) it has, as `apply` over the
/// whole scope is: keeping the newest two, each account deregisters two images and
/// deletes their snapshots (4, the limit), so the second account's shard would take
/// the tick to 8.
#[test]
fn the_shards_of_one_tick_are_one_run_for_the_blast_radius() {
    let (policy, plugins, backend) = four_at_most(&["111111111111", "333333333333"], 2);
    let dir = tempfile::tempdir().unwrap();
    let service = worker(&policy, &plugins, &backend, dir.path());
    let shard = |tick: &str, account: &str| amiwarden::serve::Shard::new(tick, account);
    let tick = "2026-11-24T00:00:00Z";
    assert_eq!(service.run_shard(&shard(tick, "111111111111")), amiwarden::serve::Disposition::Done("applied"));
    match service.run_shard(&shard(tick, "333333333333")) {
        amiwarden::serve::Disposition::Failed(why) => {
            assert!(why.contains(&format!("the scheduled run {tick} has done 4 destructive action(s)")), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let left = images_left(&policy, &backend);
    assert_eq!(left.iter().filter(|id| id.starts_with("ami-0aaaaaaaaaaaaaa1")).count(), 4, "{left:?}");
    assert_eq!(left.len(), 6, "{left:?}");
    // The next tick is another run.
    assert_eq!(
        service.run_shard(&shard("2026-11-23T23:00:00Z", "333333333333")),
        amiwarden::serve::Disposition::Done("applied")
    );
    assert_eq!(images_left(&policy, &backend).len(), 4);
}
