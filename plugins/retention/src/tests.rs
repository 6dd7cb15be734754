//! Retention rules as specifications, run natively against the SDK's test inventory.

use super::*;
use amiwarden_sdk::testing::set_inventory;

/// 2026-11-24T00:00:00Z.
const NOW: Timestamp = 1_795_478_400;

const TAGGED: &str = r#"{"family":{"tag":"family"},"keep_newest":2,"deprecate_after_days":30,
    "disable_after_days":90,"deregister_after_days":180,"exempt_tags":["keep","pin=forever"]}"#;

fn id(n: u32) -> String {
    format!("ami-{n:017x}")
}

/// Image number `n` of family `family`, `age` days old.
fn image(n: u32, family: &str, age: i64) -> Image {
    let mut image = Image::new(&id(n), "111111111111", "us-east-1", &format!("golden-{family}-{n}"), NOW - age * DAY);
    image.set_tag("family", family);
    image
}

fn retention(config: &str) -> Retention {
    let mut policy = Retention::default();
    policy.configure(config).expect("valid config");
    policy
}

fn event(kind: EventKind, image: &Image) -> ImageEvent {
    ImageEvent { kind, image: image.clone(), evaluation_time: NOW, raw: String::new() }
}

/// Proposals for image `n` on a scheduled run over `images`.
fn propose(config: &str, images: &[Image], n: u32) -> Vec<Proposal> {
    set_inventory(images.to_vec(), NOW);
    let image = images.iter().find(|i| i.id == id(n)).expect("image in inventory");
    retention(config).propose(&event(EventKind::Scheduled, image)).expect("propose succeeds")
}

fn actions(proposals: &[Proposal]) -> Vec<Action> {
    proposals.iter().map(|p| p.action.clone()).collect()
}

#[test]
fn the_newest_images_of_a_family_are_left_alone() {
    let images = [image(1, "web", 400), image(2, "web", 300), image(3, "web", 200)];
    assert!(propose(TAGGED, &images, 2).is_empty());
    assert!(propose(TAGGED, &images, 3).is_empty());
    assert_eq!(actions(&propose(TAGGED, &images, 1)), [Action::Deregister(false)]);
}

#[test]
fn families_are_ranked_separately() {
    let images = [image(1, "web", 400), image(2, "api", 300), image(3, "api", 200)];
    assert!(propose(TAGGED, &images, 1).is_empty());
}

#[test]
fn ties_in_creation_time_are_broken_by_image_id() {
    let images = [image(1, "web", 100), image(2, "web", 100), image(3, "web", 100)];
    assert_eq!(actions(&propose(TAGGED, &images, 1)), [Action::Disable]);
    assert!(propose(TAGGED, &images, 2).is_empty());
    assert!(propose(TAGGED, &images, 3).is_empty());
}

#[test]
fn a_superseded_image_is_scheduled_for_deprecation_at_its_deprecation_age() {
    let images = [image(1, "web", 10), image(2, "web", 5), image(3, "web", 1)];
    let proposals = propose(TAGGED, &images, 1);
    assert_eq!(actions(&proposals), [Action::DeprecateAt(NOW + 20 * DAY)]);
    assert!(proposals[0].reason.contains("deprecate at 2026-12-14T00:00:00Z"), "{}", proposals[0].reason);
    assert!(proposals[0].reason.contains("3rd newest in family web (tag family)"), "{}", proposals[0].reason);
}

#[test]
fn an_image_past_its_deprecation_age_is_deprecated_now_rounded_up_to_the_minute() {
    let mut images = [image(1, "web", 40), image(2, "web", 5), image(3, "web", 1)];
    images[0].creation_time -= 30;
    set_inventory(images.to_vec(), NOW + 10);
    let mut late = event(EventKind::Scheduled, &images[0]);
    late.evaluation_time = NOW + 10;
    let proposals = retention(TAGGED).propose(&late).expect("propose succeeds");
    assert_eq!(actions(&proposals), [Action::DeprecateAt(NOW + 60)]);
}

#[test]
fn an_image_already_deprecated_at_or_before_the_proposed_time_is_not_deprecated_again() {
    let mut images = [image(1, "web", 10), image(2, "web", 5), image(3, "web", 1)];
    images[0].deprecation_time = Some(NOW + 20 * DAY);
    assert!(propose(TAGGED, &images, 1).is_empty());
    images[0].deprecation_time = Some(NOW + 21 * DAY);
    assert_eq!(actions(&propose(TAGGED, &images, 1)), [Action::DeprecateAt(NOW + 20 * DAY)]);
}

#[test]
fn a_disabled_image_is_not_disabled_again_and_is_deregistered_when_old_enough() {
    let mut images = [image(1, "web", 100), image(2, "web", 5), image(3, "web", 1)];
    images[0].state = ImageState::Disabled;
    assert!(propose(TAGGED, &images, 1).is_empty());
    images[0].creation_time = NOW - 200 * DAY;
    assert_eq!(actions(&propose(TAGGED, &images, 1)), [Action::Deregister(false)]);
}

#[test]
fn deregistration_deletes_snapshots_only_when_configured() {
    let config = TAGGED.replace("\"keep_newest\":2", "\"keep_newest\":2,\"delete_snapshots\":true");
    let images = [image(1, "web", 400), image(2, "web", 5), image(3, "web", 1)];
    let proposals = propose(&config, &images, 1);
    assert_eq!(actions(&proposals), [Action::Deregister(true)]);
    assert!(proposals[0].reason.contains("delete its snapshots"), "{}", proposals[0].reason);
}

#[test]
fn an_image_in_use_by_instances_is_retained_with_the_count() {
    let mut images = [image(1, "web", 400), image(2, "web", 5), image(3, "web", 1)];
    images[0].usage.instances = 2;
    let proposals = propose(TAGGED, &images, 1);
    assert_eq!(actions(&proposals), [Action::Retain]);
    assert!(proposals[0].reason.starts_with("in use by 2 instances"), "{}", proposals[0].reason);
}

#[test]
fn image_in_use_through_a_launch_template_is_never_deregistered() {
    let mut images = [image(1, "web", 400), image(2, "web", 5), image(3, "web", 1)];
    images[0].usage.launch_templates = vec!["lt-0123456789abcdef0".into()];
    let proposals = propose(TAGGED, &images, 1);
    assert_eq!(actions(&proposals), [Action::Retain]);
    assert!(proposals[0].reason.contains("referenced by launch template lt-0123456789abcdef0"));
}

#[test]
fn an_image_launched_within_the_window_is_retained_and_one_launched_before_it_is_not() {
    let mut images = [image(1, "web", 400), image(2, "web", 5), image(3, "web", 1)];
    images[0].usage.last_launched = Some(NOW - 30 * DAY);
    let proposals = propose(TAGGED, &images, 1);
    assert_eq!(actions(&proposals), [Action::Retain]);
    assert!(proposals[0].reason.contains("last launched 30 days ago"), "{}", proposals[0].reason);
    images[0].usage.last_launched = Some(NOW - 30 * DAY - 1);
    assert_eq!(actions(&propose(TAGGED, &images, 1)), [Action::Deregister(false)]);
}

#[test]
fn an_unused_image_that_needs_no_change_gets_no_retain_either() {
    let mut images = [image(1, "web", 10), image(2, "web", 5), image(3, "web", 1)];
    images[0].deprecation_time = Some(NOW);
    images[0].usage.instances = 1;
    assert!(propose(TAGGED, &images, 1).is_empty());
}

#[test]
fn exemption_tags_match_by_key_or_by_key_and_value() {
    let mut images = [image(1, "web", 400), image(2, "web", 5), image(3, "web", 1), image(4, "web", 400)];
    images[0].set_tag("keep", "");
    images[3].set_tag("pin", "forever");
    let proposals = propose(TAGGED, &images, 1);
    assert_eq!(actions(&proposals), [Action::Retain]);
    assert!(proposals[0].reason.contains("exempt from retention by tag keep="), "{}", proposals[0].reason);
    assert_eq!(actions(&propose(TAGGED, &images, 4)), [Action::Retain]);
    images[3].set_tag("pin", "until-friday");
    assert_eq!(actions(&propose(TAGGED, &images, 4)), [Action::Deregister(false)]);
}

#[test]
fn images_not_in_any_family_are_left_alone() {
    let mut images = [image(1, "web", 400), image(2, "web", 5), image(3, "web", 1)];
    images[0].tags.clear();
    assert!(propose(TAGGED, &images, 1).is_empty());
    images[0].set_tag("family", "");
    assert!(propose(TAGGED, &images, 1).is_empty());
}

#[test]
fn a_name_regex_family_is_its_capture_group() {
    let config = r#"{"family":{"name_regex":"^golden-(\\w+)-\\d+$"},"keep_newest":1,"deregister_after_days":100}"#;
    let images = [image(1, "web", 400), image(2, "api", 300), image(3, "web", 200), image(4, "web", 1)];
    assert_eq!(actions(&propose(config, &images, 1)), [Action::Deregister(false)]);
    assert_eq!(actions(&propose(config, &images, 3)), [Action::Deregister(false)]);
    assert!(propose(config, &images, 2).is_empty(), "api is the newest of its own family");
    assert!(propose(config, &images, 4).is_empty());
}

#[test]
fn pending_and_failed_images_do_not_count_among_the_newest() {
    let mut images = [image(1, "web", 400), image(2, "web", 300), image(3, "web", 1), image(4, "web", 0)];
    images[2].state = ImageState::Failed;
    images[3].state = ImageState::Pending;
    assert!(propose(TAGGED, &images, 1).is_empty());
    assert!(propose(TAGGED, &images, 3).is_empty(), "failed images are not retention's business");
}

fn copy_of(source: &Image, n: u32, region: &str) -> Image {
    let mut copy = source.clone();
    copy.id = id(n);
    copy.region = region.into();
    copy.source_image_id = Some(source.id.clone());
    copy.source_region = Some(source.region.clone());
    copy.usage = Image::new(&copy.id, "", "", "", 0).usage;
    copy
}

#[test]
fn a_copy_follows_its_sources_stage() {
    let mut images = vec![image(1, "web", 400), image(2, "web", 5), image(3, "web", 1)];
    images.push(copy_of(&images[0], 11, "eu-west-1"));
    images.push(copy_of(&images[1], 12, "eu-west-1"));
    let proposals = propose(TAGGED, &images, 11);
    assert_eq!(actions(&proposals), [Action::Deregister(false)]);
    assert!(proposals[0].reason.contains("copy of ami-00000000000000001 in us-east-1"), "{}", proposals[0].reason);
    assert!(propose(TAGGED, &images, 12).is_empty());
}

#[test]
fn a_copy_in_use_in_its_region_is_retained_though_its_source_goes() {
    let mut images = vec![image(1, "web", 400), image(2, "web", 5), image(3, "web", 1)];
    let mut copy = copy_of(&images[0], 11, "eu-west-1");
    copy.usage.instances = 1;
    images.push(copy);
    let proposals = propose(TAGGED, &images, 11);
    assert_eq!(actions(&proposals), [Action::Retain]);
    assert!(proposals[0].reason.starts_with("in use by 1 instance;"), "{}", proposals[0].reason);
}

#[test]
fn a_copy_of_a_source_in_use_or_exempt_is_retained() {
    let mut images = vec![image(1, "web", 400), image(2, "web", 5), image(3, "web", 1)];
    images[0].usage.instances = 3;
    images.push(copy_of(&images[0], 11, "eu-west-1"));
    let proposals = propose(TAGGED, &images, 11);
    assert_eq!(actions(&proposals), [Action::Retain]);
    assert!(proposals[0].reason.contains("its source ami-00000000000000001 is in use by 3 instances in us-east-1"));
    images[0].usage.instances = 0;
    images[0].set_tag("keep", "yes");
    assert_eq!(actions(&propose(TAGGED, &images, 11)), [Action::Retain]);
}

#[test]
fn a_copy_whose_source_is_gone_is_ranked_in_its_own_region() {
    let gone = image(1, "web", 400);
    let mut images = vec![image(2, "web", 5), image(3, "web", 1), copy_of(&gone, 11, "eu-west-1")];
    assert!(propose(TAGGED, &images, 11).is_empty(), "the only web image in eu-west-1");
    images.push(copy_of(&image(4, "web", 3), 14, "eu-west-1"));
    images.push(copy_of(&image(5, "web", 2), 15, "eu-west-1"));
    assert_eq!(actions(&propose(TAGGED, &images, 11)), [Action::Deregister(false)]);
}

#[test]
fn a_copy_is_recognised_by_the_hosts_source_tag() {
    let mut images = vec![image(1, "web", 400), image(2, "web", 5), image(3, "web", 1)];
    let mut copy = image(11, "web", 1);
    copy.region = "eu-west-1".into();
    copy.set_tag("amiwarden:source-image-id", &id(1));
    images.push(copy);
    assert_eq!(actions(&propose(TAGGED, &images, 11)), [Action::Deregister(false)]);
}

#[test]
fn a_deregistered_image_gets_no_proposal() {
    let images = [image(1, "web", 400), image(2, "web", 5), image(3, "web", 1)];
    set_inventory(images[1..].to_vec(), NOW);
    let proposals = retention(TAGGED).propose(&event(EventKind::Deregistered, &images[0])).expect("propose succeeds");
    assert!(proposals.is_empty());
}

#[test]
fn propose_before_configure_fails_instead_of_guessing() {
    let images = [image(1, "web", 400)];
    set_inventory(images.to_vec(), NOW);
    let result = Retention::default().propose(&event(EventKind::Scheduled, &images[0]));
    assert!(matches!(result, Err(PolicyError::Failed(_))));
}

#[test]
fn ordinals_and_timestamps_read_as_people_write_them() {
    let ordinals: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111].map(ordinal).into();
    assert_eq!(ordinals, ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]);
    assert_eq!(rfc3339(NOW), "2026-11-24T00:00:00Z");
    assert_eq!(rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
}
