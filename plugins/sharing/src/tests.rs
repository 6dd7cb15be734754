//! Sharing rules as specifications, run natively against the SDK's test inventory.

use super::*;
use amiwarden_sdk::testing::{self, set_inventory};

const NOW: Timestamp = 1_795_478_400;
const ORG: &str = "arn:aws:organizations::123456789012:organization/o-abc";
const OU: &str = "arn:aws:organizations::123456789012:ou/o-abc/ou-ab12-cdef3456";

fn config() -> String {
    format!(
        r#"{{"groups":{{"prod":["222222222222","{OU}"],"dev":["333333333333"]}},"share_tag":"share-with",
        "rules":[{{"name_regex":"^golden-","principals":["{ORG}"]}}],"allowed":["999999999999"]}}"#
    )
}

fn sharing(config: &str) -> Sharing {
    let mut policy = Sharing::default();
    policy.configure(config).expect("valid config");
    policy
}

fn image(name: &str, share_with: Option<&str>, current: &[&str]) -> Image {
    let mut image = Image::new("ami-0a1b2c3d4e5f60001", "111111111111", "us-east-1", name, NOW - DAY);
    if let Some(groups) = share_with {
        image.set_tag("share-with", groups);
    }
    let current = current.iter().map(|t| config::parse_principal(t).expect("valid principal"));
    image.launch_permissions = Some(current.collect());
    image.public = image.launch_permissions.iter().flatten().any(|p| *p == Principal::Public);
    image
}

fn propose(config: &str, image: &Image) -> Vec<Proposal> {
    set_inventory(vec![image.clone()], NOW);
    let event =
        ImageEvent { kind: EventKind::Scheduled, image: image.clone(), evaluation_time: NOW, raw: String::new() };
    sharing(config).propose(&event).expect("propose succeeds")
}

fn texts(proposals: &[Proposal]) -> Vec<String> {
    proposals
        .iter()
        .map(|p| match &p.action {
            Action::Share(x) => format!("share {}", x.as_str()),
            Action::Unshare(x) => format!("unshare {}", x.as_str()),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn missing_principals_of_the_tagged_group_are_shared() {
    let proposals = propose(&config(), &image("app-1", Some("prod"), &["222222222222"]));
    assert_eq!(texts(&proposals), [format!("share {OU}")]);
    assert!(proposals[0].reason.contains("tag share-with=prod (group prod)"), "{}", proposals[0].reason);
}

#[test]
fn a_tag_may_name_several_groups() {
    let proposals = propose(&config(), &image("app-1", Some("prod, dev"), &[]));
    assert_eq!(texts(&proposals), ["share 222222222222", "share 333333333333", &format!("share {OU}")]);
}

#[test]
fn a_name_rule_shares_with_its_principals() {
    let proposals = propose(&config(), &image("golden-web-1", None, &[]));
    assert_eq!(texts(&proposals), [format!("share {ORG}")]);
    assert!(proposals[0].reason.contains("rules[0] (name ~ ^golden-)"), "{}", proposals[0].reason);
}

#[test]
fn every_unwanted_principal_is_unshared_individually_and_legitimate_ones_stay() {
    let current = ["222222222222", "444444444444", "555555555555", "999999999999", OU];
    let proposals = propose(&config(), &image("app-1", Some("prod"), &current));
    assert_eq!(texts(&proposals), ["unshare 444444444444", "unshare 555555555555"]);
    assert!(proposals[0].reason.contains("neither desired for this image nor on the allow list"));
}

#[test]
fn a_public_image_is_made_private_even_when_other_shares_are_fine() {
    let proposals = propose(&config(), &image("app-1", Some("dev"), &["333333333333", "public"]));
    assert_eq!(texts(&proposals), ["unshare public"]);
    assert!(proposals[0].reason.contains("does not allow public images"));
}

#[test]
fn the_public_flag_alone_is_enough_to_revoke_public() {
    let mut image = image("app-1", None, &[]);
    image.public = true;
    assert_eq!(texts(&propose(&config(), &image)), ["unshare public"]);
}

#[test]
fn allow_public_keeps_a_public_image_public() {
    let config = config().replace("\"allowed\"", "\"allow_public\":true,\"allowed\"");
    assert!(propose(&config, &image("app-1", None, &["public"])).is_empty());
}

#[test]
fn report_only_proposes_nothing_and_logs_what_it_would_do() {
    let config = config().replace("\"allowed\"", "\"report_only\":true,\"allowed\"");
    let proposals = propose(&config, &image("app-1", Some("dev"), &["444444444444"]));
    assert!(proposals.is_empty());
    let logs = testing::with(|inv| inv.logs.clone());
    let lines: Vec<&str> = logs.iter().map(|(_, line)| line.as_str()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("report only: would share ami-0a1b2c3d4e5f60001 with 333333333333"), "{lines:?}");
    assert!(lines[1].starts_with("report only: would unshare ami-0a1b2c3d4e5f60001 with 444444444444"), "{lines:?}");
}

#[test]
fn without_launch_permissions_only_public_is_judged() {
    // Not fetched (the policy said `needs = []`): shares with accounts are unknown, so the
    // share tag asks for nothing, and only the public flag DescribeImages gives counts.
    let mut private = image("golden-web-1", Some("prod"), &[]);
    private.launch_permissions = None;
    assert!(propose(&config(), &private).is_empty());
    let mut public = image("golden-web-2", Some("prod"), &[]);
    public.launch_permissions = None;
    public.public = true;
    let proposals = propose(&config(), &public);
    assert_eq!(texts(&proposals), ["unshare public"]);
    assert!(proposals[0].reason.contains("launch permissions not read"), "{}", proposals[0].reason);
    let allowed = config().replace("\"allowed\"", "\"allow_public\":true,\"allowed\"");
    assert!(propose(&allowed, &public).is_empty(), "allow_public keeps it");
}

#[test]
fn an_unknown_group_in_the_tag_is_logged_and_grants_nothing() {
    let proposals = propose(&config(), &image("app-1", Some("qa"), &["444444444444"]));
    assert_eq!(texts(&proposals), ["unshare 444444444444"]);
    let logs = testing::with(|inv| inv.logs.clone());
    assert!(logs.iter().any(|(level, line)| *level == LogLevel::Warn && line.contains("unknown group `qa`")));
}

#[test]
fn images_that_are_not_available_are_left_alone() {
    let mut image = image("golden-web-1", Some("prod"), &["444444444444"]);
    image.state = ImageState::Disabled;
    assert!(propose(&config(), &image).is_empty());
    image.state = ImageState::Pending;
    assert!(propose(&config(), &image).is_empty());
}

#[test]
fn an_image_already_shared_as_desired_needs_nothing() {
    let current = ["222222222222", OU, ORG];
    assert!(propose(&config(), &image("golden-app", Some("prod"), &current)).is_empty());
}
