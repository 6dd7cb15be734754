//! Replication rules as specifications, run natively against the SDK's test inventory.

use super::*;
use amiwarden_sdk::testing::{self, set_inventory};

const NOW: Timestamp = 1_795_478_400;
const KEY: &str = "arn:aws:kms:eu-west-1:111111111111:key/abcd";

fn config() -> String {
    format!(
        r#"{{"source_regions":["us-east-1"],"select":{{"tag":"replicate=true"}},
        "targets":{{"eu-west-1":{{"encrypted":true,"kms_key_id":"{KEY}"}},"us-west-2":{{}}}},
        "name":"{{name}} ({{region}})","delete_snapshots":true}}"#
    )
}

fn replication(config: &str) -> Replication {
    let mut policy = Replication::default();
    policy.configure(config).expect("valid config");
    policy
}

fn id(n: u32) -> String {
    format!("ami-{n:017x}")
}

fn source(n: u32) -> Image {
    let mut image = Image::new(&id(n), "111111111111", "us-east-1", &format!("golden-web-{n}"), NOW - DAY);
    image.set_tag("replicate", "true");
    image
}

fn replica(of: &Image, n: u32, region: &str) -> Image {
    let mut copy = Image::new(&id(n), &of.account, region, &format!("{} ({region})", of.name), NOW);
    copy.source_image_id = Some(of.id.clone());
    copy.source_region = Some(of.region.clone());
    copy
}

fn propose_on(kind: EventKind, inventory: &[Image], image: &Image) -> Vec<Proposal> {
    set_inventory(inventory.to_vec(), NOW);
    let event = ImageEvent { kind, image: image.clone(), evaluation_time: NOW, raw: String::new() };
    replication(&config()).propose(&event).expect("propose succeeds")
}

fn propose(inventory: &[Image], n: u32) -> Vec<Proposal> {
    let image = inventory.iter().find(|i| i.id == id(n)).expect("image in inventory").clone();
    propose_on(EventKind::Scheduled, inventory, &image)
}

fn copy_regions(proposals: &[Proposal]) -> Vec<String> {
    proposals
        .iter()
        .map(|p| match &p.action {
            Action::CopyToRegion(request) => request.region.clone(),
            other => panic!("expected a copy, got {other:?}"),
        })
        .collect()
}

#[test]
fn a_selected_image_is_copied_to_every_target_region_with_its_settings() {
    let proposals = propose(&[source(1)], 1);
    assert_eq!(copy_regions(&proposals), ["eu-west-1", "us-west-2"]);
    let Action::CopyToRegion(eu) = &proposals[0].action else { unreachable!() };
    assert_eq!(
        *eu,
        CopyRequest {
            region: "eu-west-1".into(),
            encrypted: true,
            kms_key_id: Some(KEY.into()),
            copy_tags: true,
            name: Some("golden-web-1 (eu-west-1)".into()),
        }
    );
    let Action::CopyToRegion(west) = &proposals[1].action else { unreachable!() };
    assert!(!west.encrypted && west.kms_key_id.is_none());
    assert!(proposals[0].reason.contains("selected by tag replicate=true"), "{}", proposals[0].reason);
}

#[test]
fn an_image_is_not_copied_into_its_own_region() {
    let config = config().replace("\"us-west-2\":{}", "\"us-east-1\":{}");
    set_inventory(vec![source(1)], NOW);
    let event = ImageEvent { kind: EventKind::Created, image: source(1), evaluation_time: NOW, raw: String::new() };
    let proposals = replication(&config).propose(&event).expect("propose succeeds");
    assert_eq!(copy_regions(&proposals), ["eu-west-1"]);
}

#[test]
fn an_existing_replica_prevents_a_second_copy_whether_known_by_source_id_or_tag() {
    let original = source(1);
    let by_id = replica(&original, 2, "eu-west-1");
    let mut by_tag = Image::new(&id(3), "111111111111", "us-west-2", "golden-web-1", NOW);
    by_tag.set_tag(SOURCE_IMAGE_TAG, &original.id);
    assert_eq!(copy_regions(&propose(&[original.clone(), by_id.clone()], 1)), ["us-west-2"]);
    assert!(propose(&[original, by_id, by_tag], 1).is_empty());
}

#[test]
fn a_failed_copy_is_not_repeated_but_reported() {
    let original = source(1);
    let mut failed = replica(&original, 2, "eu-west-1");
    failed.state = ImageState::Failed;
    assert_eq!(copy_regions(&propose(&[original, failed], 1)), ["us-west-2"]);
    let logs = testing::with(|inv| inv.logs.clone());
    assert!(
        logs.iter()
            .any(|(l, m)| *l == LogLevel::Warn && m.contains("copy of ami-00000000000000001 to eu-west-1 failed"))
    );
}

#[test]
fn a_copy_is_never_copied() {
    let original = source(1);
    let mut copy = replica(&original, 2, "us-east-1");
    copy.set_tag("replicate", "true");
    assert!(propose(&[original, copy], 2).is_empty());
}

#[test]
fn unselected_unavailable_deprecated_or_foreign_region_images_are_not_copied() {
    let mut unselected = source(1);
    unselected.set_tag("replicate", "false");
    let mut pending = source(2);
    pending.state = ImageState::Pending;
    let mut deprecated = source(3);
    deprecated.deprecation_time = Some(NOW);
    let mut foreign = source(4);
    foreign.region = "ap-southeast-2".into();
    let inventory = [unselected, pending, deprecated, foreign];
    for n in 1..=4 {
        assert!(propose(&inventory, n).is_empty(), "image {n}");
    }
}

#[test]
fn a_deregistered_source_retires_its_replicas_in_target_regions() {
    let mut original = source(1);
    let eu = replica(&original, 2, "eu-west-1");
    let elsewhere = replica(&original, 3, "ap-southeast-2");
    original.state = ImageState::Deregistered;
    let proposals = propose_on(EventKind::Deregistered, &[eu, elsewhere], &original);
    assert_eq!(proposals.len(), 1);
    assert_eq!(proposals[0].image_id, id(2));
    assert_eq!(proposals[0].action, Action::Deregister(true));
    assert!(proposals[0].reason.contains("replica of ami-00000000000000001 in us-east-1, which was deregistered"));
}

#[test]
fn a_replica_in_use_in_its_region_is_retained_when_its_source_goes() {
    let original = source(1);
    let mut eu = replica(&original, 2, "eu-west-1");
    eu.usage.launch_templates = vec!["lt-0123456789abcdef0".into()];
    let proposals = propose_on(EventKind::Deregistered, &[eu], &original);
    assert_eq!(proposals.iter().map(|p| p.action.clone()).collect::<Vec<_>>(), [Action::Retain]);
    assert!(proposals[0].reason.starts_with("referenced by launch template lt-0123456789abcdef0 in eu-west-1"));
}

#[test]
fn a_scheduled_run_retires_a_replica_whose_source_no_longer_exists() {
    let gone = source(1);
    let inventory = [source(9), replica(&gone, 2, "eu-west-1")];
    let proposals = propose(&inventory, 2);
    assert_eq!(proposals.iter().map(|p| p.action.clone()).collect::<Vec<_>>(), [Action::Deregister(true)]);
    assert!(proposals[0].reason.contains("which no longer exists"), "{}", proposals[0].reason);
}

#[test]
fn a_replica_whose_source_exists_is_left_alone() {
    let original = source(1);
    let inventory = [original.clone(), replica(&original, 2, "eu-west-1")];
    assert!(propose(&inventory, 2).is_empty());
}

#[test]
fn a_source_region_with_nothing_in_scope_does_not_count_as_proof_the_source_is_gone() {
    let gone = source(1);
    let inventory = [replica(&gone, 2, "eu-west-1")];
    assert!(propose(&inventory, 2).is_empty());
    let logs = testing::with(|inv| inv.logs.clone());
    assert!(logs.iter().any(|(_, m)| m.contains("not treating the source as gone")), "{logs:?}");
}

#[test]
fn one_instance_decides_every_orphan_of_a_batch_as_fresh_instances_do() {
    // An instance learns once per account and region whether it was inventoried; what
    // it decides must not depend on which replicas it saw first.
    let mut elsewhere = replica(&source(5), 6, "eu-west-1");
    elsewhere.account = "222222222222".into();
    let inventory = [source(9), replica(&source(1), 2, "eu-west-1"), elsewhere, replica(&source(3), 4, "eu-west-1")];
    set_inventory(inventory.to_vec(), NOW);
    let event = |n: u32| ImageEvent {
        kind: EventKind::Scheduled,
        image: inventory.iter().find(|i| i.id == id(n)).expect("in inventory").clone(),
        evaluation_time: NOW,
        raw: String::new(),
    };
    let one = replication(&config());
    let kept: Vec<Vec<Proposal>> = [2, 6, 4, 6, 2].map(|n| one.propose(&event(n)).expect("propose")).to_vec();
    let fresh: Vec<Vec<Proposal>> =
        [2, 6, 4, 6, 2].map(|n| replication(&config()).propose(&event(n)).expect("propose")).to_vec();
    assert_eq!(kept, fresh);
    let retired = |p: &Vec<Proposal>| p.iter().map(|p| p.action.clone()).collect::<Vec<_>>();
    assert_eq!(
        kept.iter().map(retired).collect::<Vec<_>>()[..3],
        [vec![Action::Deregister(true)], vec![], vec![Action::Deregister(true)]]
    );
}

#[test]
fn replicas_from_other_source_regions_or_in_other_regions_are_not_ours() {
    let mut foreign = source(1);
    foreign.region = "ap-southeast-2".into();
    let gone = source(3);
    let inventory = [source(9), replica(&foreign, 2, "eu-west-1"), replica(&gone, 4, "sa-east-1")];
    assert!(propose(&inventory, 2).is_empty());
    assert!(propose(&inventory, 4).is_empty());
}

#[test]
fn a_replica_known_only_by_tags_is_retired_when_its_source_is_gone() {
    let mut tagged = Image::new(&id(2), "111111111111", "eu-west-1", "golden-web-1", NOW);
    tagged.set_tag(SOURCE_IMAGE_TAG, &id(1));
    tagged.set_tag("amiwarden:source-region", "us-east-1");
    let inventory = [source(9), tagged];
    assert_eq!(propose(&inventory, 2).iter().map(|p| p.action.clone()).collect::<Vec<_>>(), [Action::Deregister(true)]);
}

#[test]
fn a_region_name_is_what_the_pattern_says_without_compiling_it() {
    let pattern = regex::Regex::new(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$").unwrap();
    let names = [
        "eu-west-1",
        "us-gov-west-1",
        "ap-southeast-2",
        "il-central-1",
        "us-east-10",
        "eu-west",
        "eu-west-",
        "eu--west-1",
        "-eu-west-1",
        "eu-west-1-",
        "e-west-1",
        "eus-west-1",
        "EU-west-1",
        "eu-West-1",
        "eu-west1-1",
        "eu-west-1a",
        "eu-1",
        "eu-west-x",
        "",
        "-",
        "--",
        "eu-west-١",
        "eu_west-1",
        "eu-west-1 ",
    ];
    for name in names {
        assert_eq!(config::is_region_name(name), pattern.is_match(name), "{name:?}");
    }
}
