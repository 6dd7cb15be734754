//! The SDK edge tested with aws-smithy-mocks: pagination, fallbacks, retries and the applier's calls.
//!
//! The clients are built like `mock_client!` builds them, minus `with_test_defaults_v2`:
//! that needs aws-sdk-ec2's `test-util` feature, which would compile a second copy of
//! the 1.4 GB aws-sdk-ec2 crate for tests only. The interceptor and HTTP client are the
//! same ones `mock_client!` uses.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::error::ErrorMetadata;
use aws_sdk_ec2::operation::copy_image::CopyImageOutput;
use aws_sdk_ec2::operation::create_tags::{CreateTagsError, CreateTagsOutput};
use aws_sdk_ec2::operation::delete_snapshot::DeleteSnapshotOutput;
use aws_sdk_ec2::operation::describe_image_attribute::DescribeImageAttributeOutput;
use aws_sdk_ec2::operation::describe_image_references::DescribeImageReferencesOutput;
use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_launch_template_versions::DescribeLaunchTemplateVersionsOutput;
use aws_sdk_ec2::operation::describe_snapshots::{DescribeSnapshotsError, DescribeSnapshotsOutput};
use aws_sdk_ec2::types as ec2;
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};

use super::AwsBackend;
use crate::backend::{ACTION_TAG, ActionOutcome, Backend, SOURCE_IMAGE_TAG, SOURCE_REGION_TAG};
use crate::config::Scope;
use crate::model::{CopyRequest, InventoryNeed, Location, Principal, StorageTier, Timestamp};
use crate::plan::{Op, PlannedAction};

const ACCOUNT: &str = "123456789012";
const MOTO_500: &str = "<!doctype html><html><title>500 Internal Server Error</title></html>";

fn mock_ec2(region: &str, mode: RuleMode, rules: &[&Rule]) -> Client {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(mode);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "mock"))
        .retry_config(RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(1)))
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .build();
    Client::from_conf(config)
}

fn location(region: &str) -> Location {
    Location { account: ACCOUNT.into(), region: region.into() }
}

fn backend(region: &str, mode: RuleMode, rules: &[&Rule]) -> AwsBackend {
    AwsBackend::with_clients(vec![(location(region), mock_ec2(region, mode, rules))])
}

fn scope(region: &str) -> Scope {
    Scope::of([ACCOUNT.to_string()].into(), [region.to_string()].into())
}

fn counts(backend: &AwsBackend) -> BTreeMap<String, u64> {
    backend.call_counts().into_iter().collect()
}

fn ec2_image(id: &str, snapshots: &[&str]) -> ec2::Image {
    let mut b = ec2::Image::builder()
        .image_id(id)
        .owner_id(ACCOUNT)
        .name(format!("golden-{id}"))
        .creation_date("2026-11-01T00:00:00.000Z")
        .state(ec2::ImageState::Available)
        .architecture(ec2::ArchitectureValues::X8664)
        .root_device_type(ec2::DeviceType::Ebs);
    for (i, snap) in snapshots.iter().enumerate() {
        b = b.block_device_mappings(
            ec2::BlockDeviceMapping::builder()
                .device_name(format!("/dev/sd{}", (b'a' + i as u8) as char))
                .ebs(ec2::EbsBlockDevice::builder().snapshot_id(*snap).volume_size(8).build())
                .build(),
        );
    }
    b.build()
}

fn snapshot(id: &str, gib: i32, tier: ec2::StorageTier) -> ec2::Snapshot {
    ec2::Snapshot::builder()
        .snapshot_id(id)
        .volume_size(gib)
        .storage_tier(tier)
        .full_snapshot_size_in_bytes(1 << 30)
        .build()
}

fn action(region: &str, image: &str, op: Op) -> PlannedAction {
    PlannedAction {
        id: PlannedAction::id_for(ACCOUNT, region, image, &op),
        location: Location { account: ACCOUNT.into(), region: region.into() }.into(),
        image_id: image.into(),
        image_name: format!("golden-{image}"),
        op,
        plugins: Default::default(),
        reasons: Default::default(),
        monthly_cost_delta: 0,
        one_time_cost: 0,
    }
}

#[test]
fn collect_pages_through_images_and_falls_back_where_the_endpoint_lacks_calls() {
    let page1 = mock!(Client::describe_images).match_requests(|r| r.next_token().is_none()).then_output(|| {
        DescribeImagesOutput::builder().images(ec2_image("ami-0000000a", &["snap-a"])).next_token("page-2").build()
    });
    let page2 = mock!(Client::describe_images).match_requests(|r| r.next_token() == Some("page-2")).then_output(|| {
        DescribeImagesOutput::builder().images(ec2_image("ami-0000000b", &["snap-b", "snap-gone"])).build()
    });
    // One deleted snapshot fails the whole batch; the batch is then asked one by one.
    let batch = mock!(Client::describe_snapshots).match_requests(|r| r.snapshot_ids().len() > 1).then_error(|| {
        DescribeSnapshotsError::generic(ErrorMetadata::builder().code("InvalidSnapshot.NotFound").build())
    });
    let snap_a =
        mock!(Client::describe_snapshots).match_requests(|r| r.snapshot_ids() == ["snap-a"]).then_output(|| {
            DescribeSnapshotsOutput::builder().snapshots(snapshot("snap-a", 8, ec2::StorageTier::Standard)).build()
        });
    let snap_b =
        mock!(Client::describe_snapshots).match_requests(|r| r.snapshot_ids() == ["snap-b"]).then_output(|| {
            DescribeSnapshotsOutput::builder().snapshots(snapshot("snap-b", 8, ec2::StorageTier::Archive)).build()
        });
    let snap_gone =
        mock!(Client::describe_snapshots).match_requests(|r| r.snapshot_ids() == ["snap-gone"]).then_error(|| {
            DescribeSnapshotsError::generic(ErrorMetadata::builder().code("InvalidSnapshot.NotFound").build())
        });
    // As moto answers DescribeImageReferences: HTTP 500 with an HTML body.
    let references = mock!(Client::describe_image_references)
        .sequence()
        .http_status(500, Some(MOTO_500.into()))
        .repeatedly()
        .build();
    let instances = mock!(Client::describe_instances).then_output(|| {
        let instance = |id: &str| ec2::Instance::builder().instance_id(id).image_id("ami-0000000a").build();
        DescribeInstancesOutput::builder()
            .reservations(ec2::Reservation::builder().instances(instance("i-1")).instances(instance("i-2")).build())
            .build()
    });
    // Every template's $Latest and $Default in one call, without a template id.
    let versions = mock!(Client::describe_launch_template_versions)
        .match_requests(|r| r.launch_template_id().is_none() && r.versions().len() == 2)
        .then_output(|| {
            let data = ec2::ResponseLaunchTemplateData::builder().image_id("ami-0000000b").build();
            let version = ec2::LaunchTemplateVersion::builder().launch_template_id("lt-1").launch_template_data(data);
            DescribeLaunchTemplateVersionsOutput::builder().launch_template_versions(version.build()).build()
        });
    let perms_a = mock!(Client::describe_image_attribute)
        .match_requests(|r| r.image_id() == Some("ami-0000000a"))
        .then_output(|| {
            DescribeImageAttributeOutput::builder()
                .launch_permissions(ec2::LaunchPermission::builder().group(ec2::PermissionGroup::All).build())
                .launch_permissions(ec2::LaunchPermission::builder().user_id("210987654321").build())
                .build()
        });
    let perms_b = mock!(Client::describe_image_attribute)
        .match_requests(|r| r.image_id() == Some("ami-0000000b"))
        .then_output(|| DescribeImageAttributeOutput::builder().build());
    let rules =
        [&page1, &page2, &batch, &snap_a, &snap_b, &snap_gone, &references, &instances, &versions, &perms_a, &perms_b];
    let backend = backend("us-east-1", RuleMode::MatchAny, &rules);

    let images = backend.collect(&scope("us-east-1"), &all_needs()).expect("collect");

    assert_eq!(images.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["ami-0000000a", "ami-0000000b"]);
    let (a, b) = (&images[0], &images[1]);
    assert_eq!(a.usage.instances, 2);
    assert_eq!(b.usage.launch_templates, ["lt-1"]);
    assert!(a.is_public());
    assert_eq!(a.launch_permissions.as_ref().map(BTreeSet::len), Some(2));
    assert_eq!(b.launch_permissions, Some(BTreeSet::new()));
    assert_eq!(b.block_devices[0].storage_tier, StorageTier::Archive);
    assert_eq!(b.block_devices[1].full_size_bytes, None, "a deleted snapshot keeps what the image says");
    assert_eq!(a.block_devices[0].full_size_bytes, Some(1 << 30));
    let want: BTreeMap<String, u64> = [
        ("DescribeImageAttribute", 2),
        ("DescribeImageReferences", 1),
        ("DescribeImages", 2),
        ("DescribeInstances", 1),
        ("DescribeLaunchTemplateVersions", 1),
        ("DescribeSnapshots", 4),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(counts(&backend), want);
    assert_eq!(references.num_calls(), 3, "the SDK retried the 500 (max attempts 3 here), then we fell back");
}

#[test]
fn launch_permissions_are_fetched_only_when_a_plugin_needs_them() {
    let images = mock!(Client::describe_images)
        .then_output(|| DescribeImagesOutput::builder().images(ec2_image("ami-0000000a", &["snap-a"])).build());
    let snaps = mock!(Client::describe_snapshots).then_output(|| {
        DescribeSnapshotsOutput::builder().snapshots(snapshot("snap-a", 8, ec2::StorageTier::Standard)).build()
    });
    // Where the endpoint has DescribeImageReferences, it is the only usage call.
    let references = mock!(Client::describe_image_references).then_output(|| {
        DescribeImageReferencesOutput::builder()
            .image_references(
                ec2::ImageReference::builder()
                    .image_id("ami-0000000a")
                    .resource_type(ec2::ImageReferenceResourceType::Ec2LaunchTemplate)
                    .arn("arn:aws:ec2:us-east-1:123456789012:launch-template/lt-9")
                    .build(),
            )
            .build()
    });
    let attribute =
        mock!(Client::describe_image_attribute).then_output(|| DescribeImageAttributeOutput::builder().build());
    let backend = backend("us-east-1", RuleMode::MatchAny, &[&images, &snaps, &references, &attribute]);

    let needs = [InventoryNeed::Usage, InventoryNeed::Snapshots].into();
    let found = backend.collect(&scope("us-east-1"), &needs).expect("collect");

    assert_eq!(found[0].launch_permissions, None);
    assert_eq!(found[0].usage.launch_templates, ["lt-9"]);
    assert_eq!(attribute.num_calls(), 0);
    assert!(!counts(&backend).contains_key("DescribeInstances"));
}

#[test]
fn an_image_an_ssm_parameter_or_a_build_recipe_refers_to_is_in_use() {
    let images = mock!(Client::describe_images).then_output(|| {
        DescribeImagesOutput::builder()
            .images(ec2_image("ami-0000000a", &[]))
            .images(ec2_image("ami-0000000b", &[]))
            .images(ec2_image("ami-0000000c", &[]))
            .build()
    });
    let reference = |image: &str, kind: ec2::ImageReferenceResourceType, arn: Option<&str>| {
        ec2::ImageReference::builder().image_id(image).resource_type(kind).set_arn(arn.map(str::to_string)).build()
    };
    let parameter = "arn:aws:ssm:us-east-1:123456789012:parameter/golden/latest";
    let references = mock!(Client::describe_image_references).then_output(move || {
        DescribeImageReferencesOutput::builder()
            .image_references(reference("ami-0000000a", ec2::ImageReferenceResourceType::SsmParameter, Some(parameter)))
            .image_references(reference("ami-0000000b", ec2::ImageReferenceResourceType::ImageBuilderImageRecipe, None))
            .build()
    });
    let backend = backend("us-east-1", RuleMode::MatchAny, &[&images, &references]);

    // The inventory and an apply's re-read alike.
    let found = backend.collect(&scope("us-east-1"), &[InventoryNeed::Usage].into()).expect("collect");
    let ids = ["ami-0000000a".to_string(), "ami-0000000b".into(), "ami-0000000c".into()];
    let reread = backend.refresh_many(&location("us-east-1"), &ids, false).expect("re-read");
    for images in [found, reread.into_iter().filter_map(|(_, i)| i).collect()] {
        let usage: Vec<_> = images.iter().map(|i| (i.usage.references.clone(), i.usage.in_use())).collect();
        assert_eq!(
            usage,
            [
                (vec![parameter.to_string()], true),
                (vec!["an imagebuilder:ImageRecipe resource".to_string()], true),
                (vec![], false)
            ]
        );
    }
}

/// DescribeImageReferences is asked for every kind with every launch template version
/// (its default for all kinds looks at the newest 10) and live instances only.
#[test]
fn image_references_look_at_every_template_version_and_live_instances() {
    let images = mock!(Client::describe_images)
        .then_output(|| DescribeImagesOutput::builder().images(ec2_image("ami-0000000a", &[])).build());
    let asked = |r: &aws_sdk_ec2::operation::describe_image_references::DescribeImageReferencesInput| {
        let option = |kind: ec2::ImageReferenceResourceType| {
            let request = r.resource_types().iter().find(|t| t.resource_type() == Some(&kind))?;
            let values = request.resource_type_options().first()?.option_values().to_vec();
            Some(values)
        };
        let kinds: Vec<_> = r.resource_types().iter().filter_map(|t| t.resource_type().cloned()).collect();
        r.include_all_resource_types().is_none()
            && option(ec2::ImageReferenceResourceType::Ec2LaunchTemplate) == Some(vec!["10000".to_string()])
            && option(ec2::ImageReferenceResourceType::Ec2Instance).is_some_and(|states| {
                states.iter().all(|s| s != "terminated") && states.contains(&"stopped".to_string())
            })
            && kinds.contains(&ec2::ImageReferenceResourceType::SsmParameter)
            && kinds.contains(&ec2::ImageReferenceResourceType::ImageBuilderImageRecipe)
            && kinds.contains(&ec2::ImageReferenceResourceType::ImageBuilderContainerRecipe)
    };
    let references = mock!(Client::describe_image_references)
        .match_requests(asked)
        .then_output(|| DescribeImageReferencesOutput::builder().build());
    let backend = backend("us-east-1", RuleMode::MatchAny, &[&images, &references]);
    let found = backend.collect(&scope("us-east-1"), &[InventoryNeed::Usage].into()).expect("the request as wanted");
    assert_eq!((found.len(), references.num_calls()), (1, 1));
}

/// An endpoint that gives a page token twice fails the listing: stopping there would take
/// part of it for the whole (an instance left out is an image that looks unused).
#[test]
fn a_page_token_given_twice_fails_the_listing() {
    let first = mock!(Client::describe_images)
        .match_requests(|r| r.next_token().is_none())
        .then_output(|| DescribeImagesOutput::builder().images(ec2_image("ami-0000000a", &[])).next_token("p").build());
    let again = mock!(Client::describe_images)
        .match_requests(|r| r.next_token() == Some("p"))
        .then_output(|| DescribeImagesOutput::builder().images(ec2_image("ami-0000000b", &[])).next_token("p").build());
    let backend = backend("us-east-1", RuleMode::MatchAny, &[&first, &again]);
    let error = format!("{:#}", backend.collect(&scope("us-east-1"), &BTreeSet::new()).unwrap_err());
    assert!(error.contains(r#"DescribeImages failed: the endpoint gave the page token "p" twice"#), "{error}");
    assert_eq!((first.num_calls(), again.num_calls()), (1, 1));
}

/// A role denied DescribeImageReferences fails the read, naming the permission: the
/// fallback (instances and launch templates) cannot see SSM parameters or recipes, and
/// one account's denial would have turned the call off for every account of the run.
#[test]
fn a_denied_reference_read_fails_instead_of_falling_back() {
    use aws_sdk_ec2::operation::describe_image_references::DescribeImageReferencesError;
    let images = mock!(Client::describe_images)
        .then_output(|| DescribeImagesOutput::builder().images(ec2_image("ami-0000000a", &[])).build());
    let denied = mock!(Client::describe_image_references).then_error(|| {
        DescribeImageReferencesError::generic(
            ErrorMetadata::builder().code("UnauthorizedOperation").message("You are not authorized").build(),
        )
    });
    let backend = backend("us-east-1", RuleMode::MatchAny, &[&images, &denied]);
    let error = format!("{:#}", backend.collect(&scope("us-east-1"), &[InventoryNeed::Usage].into()).unwrap_err());
    assert!(
        error.contains("DescribeImageReferences is denied") && error.contains("ec2:DescribeImageReferences"),
        "{error}"
    );
    assert!(!counts(&backend).contains_key("DescribeInstances"), "no fallback");
}

/// EC2 holding images a and b, where moto fails b's DescribeImageAttribute with its bare
/// 500, and a DescribeImages of b alone finds `b_now`.
fn b_permissions_failing(b_now: Option<ec2::Image>) -> AwsBackend {
    let both = mock!(Client::describe_images).match_requests(|r| r.image_ids().len() != 1).then_output(|| {
        DescribeImagesOutput::builder()
            .images(ec2_image("ami-0000000a", &[]))
            .images(ec2_image("ami-0000000b", &[]))
            .build()
    });
    let b_again = mock!(Client::describe_images)
        .match_requests(|r| r.image_ids() == ["ami-0000000b"])
        .then_output(move || DescribeImagesOutput::builder().set_images(b_now.clone().map(|i| vec![i])).build());
    let references =
        mock!(Client::describe_image_references).then_output(|| DescribeImageReferencesOutput::builder().build());
    let a = mock!(Client::describe_image_attribute)
        .match_requests(|r| r.image_id() == Some("ami-0000000a"))
        .then_output(|| {
            DescribeImageAttributeOutput::builder()
                .launch_permissions(ec2::LaunchPermission::builder().user_id("222222222222").build())
                .build()
        });
    let b = mock!(Client::describe_image_attribute)
        .match_requests(|r| r.image_id() == Some("ami-0000000b"))
        .sequence()
        .http_status(500, Some(MOTO_500.into()))
        .repeatedly()
        .build();
    backend("us-east-1", RuleMode::MatchAny, &[&both, &b_again, &references, &a, &b])
}

/// Re-reads images a and b with their permissions (as an apply's re-check does).
fn reread_with_b_failing(b_now: Option<ec2::Image>) -> anyhow::Result<Vec<(String, Option<crate::model::Image>)>> {
    b_permissions_failing(b_now).refresh_many(
        &location("us-east-1"),
        &["ami-0000000a".into(), "ami-0000000b".into()],
        true,
    )
}

#[test]
fn a_permission_read_failing_for_an_image_gone_meanwhile_leaves_it_out_and_fails_otherwise() {
    // Gone when asked again (deregistered by another worker between the two calls): the
    // re-read reports it gone, as it does an image EC2 answers NotFound for.
    let read = reread_with_b_failing(None).expect("the re-read goes on");
    let a = read[0].1.as_ref().expect("a is there");
    assert_eq!(a.launch_permissions, Some([Principal::Account("222222222222".into())].into()));
    assert_eq!(read[1], ("ami-0000000b".to_string(), None), "b is gone");
    let deregistered = ec2::Image::builder().image_id("ami-0000000b").state(ec2::ImageState::Deregistered).build();
    let read = reread_with_b_failing(Some(deregistered)).expect("the re-read goes on");
    assert!(read[0].1.is_some() && read[1].1.is_none(), "b is gone");
    // Still there: the failure is the endpoint's, and the re-read fails naming it.
    let error = format!("{:#}", reread_with_b_failing(Some(ec2_image("ami-0000000b", &[]))).unwrap_err());
    assert!(error.contains("launch permissions in 123456789012/us-east-1"), "{error}");
    assert!(error.contains("DescribeImageAttribute"), "{error}");
}

#[test]
fn an_image_gone_before_its_permissions_are_read_is_not_in_the_inventory() {
    let needs = [InventoryNeed::LaunchPermissions].into();
    let found = b_permissions_failing(None).collect(&scope("us-east-1"), &needs).expect("collect");
    assert_eq!(found.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["ami-0000000a"]);
    assert!(found[0].launch_permissions.is_some());
    let error = b_permissions_failing(Some(ec2_image("ami-0000000b", &[]))).collect(&scope("us-east-1"), &needs);
    assert!(format!("{:#}", error.unwrap_err()).contains("DescribeImageAttribute"));
}

#[test]
fn a_policy_that_needs_nothing_more_reads_only_describe_images() {
    let images = mock!(Client::describe_images)
        .then_output(|| DescribeImagesOutput::builder().images(ec2_image("ami-0000000a", &["snap-a"])).build());
    let backend = backend("us-east-1", RuleMode::MatchAny, &[&images]);

    let found = backend.collect(&scope("us-east-1"), &BTreeSet::new()).expect("collect");

    assert_eq!((found[0].usage.instances, found[0].launch_permissions.is_none()), (0, true));
    assert_eq!(found[0].block_devices[0].size_gib, 8, "the size the image's mapping gives");
    assert_eq!(counts(&backend), [("DescribeImages".to_string(), 1)].into());
}

fn all_needs() -> BTreeSet<InventoryNeed> {
    [InventoryNeed::LaunchPermissions, InventoryNeed::Usage, InventoryNeed::Snapshots].into()
}

/// 250 images, each with its own snapshot; image 7 runs on two instances.
fn many_images_rules(listing_pages: Option<usize>) -> Vec<Rule> {
    let ids: Vec<String> = (0..250).map(|i| format!("ami-{i:08x}")).collect();
    let images = mock!(Client::describe_images).then_output(move || {
        let mut out = DescribeImagesOutput::builder();
        for id in &ids {
            out = out.images(ec2_image(id, &[id.replace("ami-", "snap-").as_str()]));
        }
        out.build()
    });
    let references = mock!(Client::describe_image_references)
        .sequence()
        .http_status(500, Some(MOTO_500.into()))
        .repeatedly()
        .build();
    let versions = mock!(Client::describe_launch_template_versions)
        .then_output(|| DescribeLaunchTemplateVersionsOutput::builder().build());
    // Listings of every live instance and every owned snapshot: `listing_pages` pages
    // (the last one holds what matters), or endless when `None` (an estate far larger
    // than the images asked about).
    let more = move |token: Option<&str>| {
        let page = token.and_then(|t| t.strip_prefix('p')).and_then(|n| n.parse::<usize>().ok()).unwrap_or(1);
        listing_pages.is_none_or(|n| page < n).then(|| format!("p{}", page + 1))
    };
    let instance = |id: &str, image: &str| ec2::Instance::builder().instance_id(id).image_id(image).build();
    let used = move |extra: bool| {
        let mut reservation = ec2::Reservation::builder()
            .instances(instance("i-1", "ami-00000007"))
            .instances(instance("i-2", "ami-00000007"));
        if extra {
            reservation = reservation.instances(instance("i-3", "ami-other"));
        }
        DescribeInstancesOutput::builder().reservations(reservation.build())
    };
    let owned_snapshots = || {
        let mut out = DescribeSnapshotsOutput::builder();
        for i in 0..250 {
            out = out.snapshots(snapshot(&format!("snap-{i:08x}"), 8, ec2::StorageTier::Archive));
        }
        out
    };
    let listed_instances = mock!(Client::describe_instances)
        .match_requests(|r| r.filters().iter().all(|f| f.name() != Some("image-id")))
        .then_compute_output(move |r| match more(r.next_token()) {
            Some(next) => DescribeInstancesOutput::builder().next_token(next).build(),
            None => used(true).build(),
        });
    let filtered_instances = mock!(Client::describe_instances)
        .match_requests(|r| r.filters().iter().any(|f| f.name() == Some("image-id")))
        .then_compute_output(move |r| {
            let asked = r.filters().iter().filter(|f| f.name() == Some("image-id")).flat_map(|f| f.values());
            match asked.into_iter().any(|id| id == "ami-00000007") {
                true => used(false).build(),
                false => DescribeInstancesOutput::builder().build(),
            }
        });
    let listed_snapshots = mock!(Client::describe_snapshots)
        .match_requests(|r| r.snapshot_ids().is_empty())
        .then_compute_output(move |r| match more(r.next_token()) {
            Some(next) => DescribeSnapshotsOutput::builder().next_token(next).build(),
            None => owned_snapshots().build(),
        });
    let snapshots_by_id = mock!(Client::describe_snapshots)
        .match_requests(|r| !r.snapshot_ids().is_empty())
        .then_output(move || owned_snapshots().build());
    vec![images, references, versions, listed_instances, filtered_instances, listed_snapshots, snapshots_by_id]
}

#[test]
fn many_images_list_instances_and_snapshots_in_one_page_instead_of_a_call_per_200() {
    let rules = many_images_rules(Some(1));
    let backend = backend("us-east-1", RuleMode::MatchAny, &rules.iter().collect::<Vec<_>>());
    let needs = [InventoryNeed::Usage, InventoryNeed::Snapshots].into();

    let found = backend.collect(&scope("us-east-1"), &needs).expect("collect");

    assert_eq!(found.len(), 250);
    let used: Vec<(&str, u32)> =
        found.iter().filter(|i| i.usage.in_use()).map(|i| (&*i.id, i.usage.instances)).collect();
    assert_eq!(used, [("ami-00000007", 2)], "an instance of an image outside the inventory counts for nothing");
    assert!(found.iter().all(|i| i.block_devices[0].storage_tier == StorageTier::Archive), "every snapshot read");
    let calls = counts(&backend);
    assert_eq!((calls["DescribeInstances"], calls["DescribeSnapshots"]), (1, 1), "{calls:?}");
    assert_eq!(rules[4].num_calls() + rules[6].num_calls(), 0, "no call by id");
}

#[test]
fn a_listing_longer_than_the_calls_by_id_gives_way_to_them() {
    let rules = many_images_rules(None);
    let backend = backend("us-east-1", RuleMode::MatchAny, &rules.iter().collect::<Vec<_>>());
    let needs = [InventoryNeed::Usage, InventoryNeed::Snapshots].into();

    let found = backend.collect(&scope("us-east-1"), &needs).expect("collect");

    let used: Vec<(&str, u32)> =
        found.iter().filter(|i| i.usage.in_use()).map(|i| (&*i.id, i.usage.instances)).collect();
    assert_eq!(used, [("ami-00000007", 2)]);
    assert!(found.iter().all(|i| i.block_devices[0].storage_tier == StorageTier::Archive));
    // 250 ids are 2 calls by id: at most 2 pages of listing first, then the 2 calls.
    let calls = counts(&backend);
    assert_eq!((calls["DescribeInstances"], calls["DescribeSnapshots"]), (4, 4), "{calls:?}");
    assert_eq!((rules[4].num_calls(), rules[6].num_calls()), (2, 2));
}

#[test]
fn a_throttled_call_is_retried_by_the_sdk_until_it_succeeds() {
    let throttled = || {
        CreateTagsError::generic(
            ErrorMetadata::builder().code("RequestLimitExceeded").message("Request limit exceeded.").build(),
        )
    };
    let tags = mock!(Client::create_tags)
        .sequence()
        .error(throttled)
        .times(2)
        .output(|| CreateTagsOutput::builder().build())
        .build();
    let backend = backend("us-east-1", RuleMode::Sequential, &[&tags]);
    let tag = Op::Tag { tags: [("team".to_string(), "platform".to_string())].into() };

    let outcome = backend.execute(&action("us-east-1", "ami-0000000a", tag));

    assert!(matches!(outcome, ActionOutcome::Done { .. }), "{outcome:?}");
    assert_eq!(tags.num_calls(), 3, "two throttled attempts, then success");
    assert_eq!(counts(&backend).get("CreateTags"), Some(&1), "one logical call");
}

#[test]
fn sharing_adds_and_unsharing_removes_the_launch_permission() {
    let add = mock!(Client::modify_image_attribute)
        .match_requests(|r| {
            r.launch_permission()
                .is_some_and(|m| m.add().len() == 1 && m.add()[0].organization_arn().is_some() && m.remove().is_empty())
        })
        .then_output(|| aws_sdk_ec2::operation::modify_image_attribute::ModifyImageAttributeOutput::builder().build());
    let remove = mock!(Client::modify_image_attribute)
        .match_requests(|r| {
            r.launch_permission()
                .is_some_and(|m| m.remove().first().and_then(|p| p.group()) == Some(&ec2::PermissionGroup::All))
        })
        .then_output(|| aws_sdk_ec2::operation::modify_image_attribute::ModifyImageAttributeOutput::builder().build());
    let backend = backend("us-east-1", RuleMode::Sequential, &[&add, &remove]);
    let org = Principal::Organization("arn:aws:organizations::123456789012:organization/o-abc123".into());

    let shared = backend.execute(&action("us-east-1", "ami-0000000a", Op::Share { principal: org }));
    let unshared = backend.execute(&action("us-east-1", "ami-0000000a", Op::Unshare { principal: Principal::Public }));

    assert!(matches!(&shared, ActionOutcome::Done { detail } if detail.contains("o-abc123")), "{shared:?}");
    assert!(matches!(&unshared, ActionOutcome::Done { detail } if detail.contains("public")), "{unshared:?}");
}

fn copy_action() -> PlannedAction {
    let request = CopyRequest {
        region: "eu-west-1".into(),
        encrypted: true,
        kms_key_id: Some("alias/golden".into()),
        copy_tags: false,
        name: None,
    };
    action("us-east-1", "ami-0000000a", Op::Copy { request: Box::new(request) })
}

#[test]
fn a_copy_is_made_in_the_destination_region_and_tagged_with_its_source() {
    let act = copy_action();
    let token = act.id.clone();
    let none_yet = mock!(Client::describe_images)
        .match_requests(|r| r.filters().iter().any(|f| f.name() == Some("name")))
        .then_output(|| DescribeImagesOutput::builder().build());
    let description = crate::backend::copy_description(&act);
    let copy = mock!(Client::copy_image)
        .match_requests(move |r| {
            r.source_region() == Some("us-east-1")
                && r.source_image_id() == Some("ami-0000000a")
                && r.client_token() == Some(token.as_str())
                && r.encrypted() == Some(true)
                && r.kms_key_id() == Some("alias/golden")
                && r.name() == Some("golden-ami-0000000a")
                && r.description() == Some(description.as_str())
        })
        .then_output(|| CopyImageOutput::builder().image_id("ami-0000000c").build());
    let id = act.id.clone();
    let tag = mock!(Client::create_tags)
        .match_requests(move |r| {
            let tags: BTreeMap<&str, &str> = r.tags().iter().filter_map(|t| Some((t.key()?, t.value()?))).collect();
            r.resources() == ["ami-0000000c"]
                && tags.get(SOURCE_IMAGE_TAG) == Some(&"ami-0000000a")
                && tags.get(SOURCE_REGION_TAG) == Some(&"us-east-1")
                && tags.get(ACTION_TAG) == Some(&id.as_str())
        })
        .then_output(|| CreateTagsOutput::builder().build());
    let source = mock_ec2("us-east-1", RuleMode::Sequential, &[]);
    let dest = mock_ec2("eu-west-1", RuleMode::Sequential, &[&none_yet, &copy, &tag]);
    let backend = AwsBackend::with_clients(vec![(location("us-east-1"), source), (location("eu-west-1"), dest)]);

    let outcome = backend.execute(&act);

    assert_eq!(outcome, ActionOutcome::Done { detail: "copied ami-0000000a to eu-west-1 as ami-0000000c".into() });
}

/// EC2 answers a client token it remembers with the copy it made for it once, even when
/// that copy was deregistered since (by hand, and the copy planned again): tagging it
/// finds it gone, and the copy is made afresh under a token of its own.
#[test]
fn a_copy_the_token_once_made_and_gone_since_is_made_afresh() {
    let act = copy_action();
    let none_yet = mock!(Client::describe_images)
        .match_requests(|r| r.filters().iter().any(|f| f.name() == Some("name")))
        .then_output(|| DescribeImagesOutput::builder().build());
    let token = act.id.clone();
    let remembered = mock!(Client::copy_image)
        .match_requests(move |r| r.client_token() == Some(token.as_str()))
        .then_output(|| CopyImageOutput::builder().image_id("ami-0000000c").build());
    let token = act.id.clone();
    let afresh = mock!(Client::copy_image)
        .match_requests(move |r| r.client_token().is_some_and(|t| t != token && t.len() <= 64))
        .then_output(|| CopyImageOutput::builder().image_id("ami-0000000d").build());
    let gone = mock!(Client::create_tags).match_requests(|r| r.resources() == ["ami-0000000c"]).then_error(|| {
        aws_sdk_ec2::operation::create_tags::CreateTagsError::generic(
            ErrorMetadata::builder().code("InvalidAMIID.NotFound").message("The image id does not exist").build(),
        )
    });
    let tagged = mock!(Client::create_tags)
        .match_requests(|r| r.resources() == ["ami-0000000d"])
        .then_output(|| CreateTagsOutput::builder().build());
    let dest = mock_ec2("eu-west-1", RuleMode::MatchAny, &[&none_yet, &remembered, &afresh, &gone, &tagged]);
    let backend = AwsBackend::with_clients(vec![
        (location("us-east-1"), mock_ec2("us-east-1", RuleMode::Sequential, &[])),
        (location("eu-west-1"), dest),
    ]);

    let outcome = backend.execute(&act);

    assert_eq!(outcome, ActionOutcome::Done { detail: "copied ami-0000000a to eu-west-1 as ami-0000000d".into() });
    assert_eq!((remembered.num_calls(), afresh.num_calls(), tagged.num_calls()), (1, 1, 1));
}

#[test]
fn a_copy_already_made_by_the_same_action_is_returned_instead_of_copied_again() {
    let id = copy_action().id;
    let earlier = mock!(Client::describe_images).then_output(move || {
        let tagged = ec2::Image::builder()
            .image_id("ami-0000000c")
            .name("golden-ami-0000000a")
            .tags(ec2::Tag::builder().key(ACTION_TAG).value(&id).build())
            .build();
        DescribeImagesOutput::builder().images(tagged).build()
    });
    let copy = mock!(Client::copy_image).then_output(|| CopyImageOutput::builder().image_id("ami-0000000d").build());
    let dest = mock_ec2("eu-west-1", RuleMode::MatchAny, &[&earlier, &copy]);
    let backend = AwsBackend::with_clients(vec![
        (location("us-east-1"), mock_ec2("us-east-1", RuleMode::Sequential, &[])),
        (location("eu-west-1"), dest),
    ]);

    let outcome = backend.execute(&copy_action());

    assert!(
        matches!(&outcome, ActionOutcome::Done { detail } if detail.contains("already exists") && detail.contains("ami-0000000c")),
        "{outcome:?}"
    );
    assert_eq!(copy.num_calls(), 0);
}

const EC2_500: &str = "<Response><Errors><Error><Code>InternalError</Code><Message>An internal error has \
                       occurred.</Message></Error></Errors><RequestID>r-1</RequestID></Response>";

/// An image named like the copy, with `description`.
fn named_like_the_copy(id: &str, description: &str) -> ec2::Image {
    ec2::Image::builder()
        .image_id(id)
        .name("golden-ami-0000000a")
        .description(description)
        .state(ec2::ImageState::Available)
        .build()
}

#[test]
fn a_copy_whose_answer_was_lost_is_found_instead_of_copied_again() {
    // The copy was made but the answer is a 500: an endpoint that ignores client tokens
    // (moto) would make a second copy if the call were sent again.
    let act = copy_action();
    let made = named_like_the_copy("ami-0000000c", &crate::backend::copy_description(&act));
    let named = mock!(Client::describe_images)
        .match_requests(|r| r.filters().iter().any(|f| f.name() == Some("name")))
        .sequence()
        .output(|| DescribeImagesOutput::builder().build())
        .output(move || DescribeImagesOutput::builder().images(made.clone()).build())
        .build();
    let copy = mock!(Client::copy_image)
        .sequence()
        .http_status(500, Some(EC2_500.into()))
        .output(|| CopyImageOutput::builder().image_id("ami-0000000d").build())
        .build();
    let tag = mock!(Client::create_tags)
        .match_requests(|r| r.resources() == ["ami-0000000c"])
        .then_output(|| CreateTagsOutput::builder().build());
    let dest = mock_ec2("eu-west-1", RuleMode::MatchAny, &[&named, &copy, &tag]);
    let backend = AwsBackend::with_clients(vec![
        (location("us-east-1"), mock_ec2("us-east-1", RuleMode::Sequential, &[])),
        (location("eu-west-1"), dest),
    ]);

    let outcome = backend.execute(&act);

    assert_eq!(outcome, ActionOutcome::Done { detail: "copied ami-0000000a to eu-west-1 as ami-0000000c".into() });
    assert_eq!((copy.num_calls(), named.num_calls(), tag.num_calls()), (1, 2, 1), "no second CopyImage");
}

#[test]
fn an_untagged_copy_made_by_the_action_is_tagged_instead_of_copied_again() {
    // A run killed (or whose CreateTags failed) between CopyImage and CreateTags.
    let act = copy_action();
    let made = named_like_the_copy("ami-0000000c", &crate::backend::copy_description(&act));
    let named = mock!(Client::describe_images)
        .then_output(move || DescribeImagesOutput::builder().images(made.clone()).build());
    let copy = mock!(Client::copy_image).then_output(|| CopyImageOutput::builder().image_id("ami-0000000d").build());
    let tag = mock!(Client::create_tags)
        .match_requests(|r| r.resources() == ["ami-0000000c"])
        .then_output(|| CreateTagsOutput::builder().build());
    let dest = mock_ec2("eu-west-1", RuleMode::MatchAny, &[&named, &copy, &tag]);
    let backend = AwsBackend::with_clients(vec![
        (location("us-east-1"), mock_ec2("us-east-1", RuleMode::Sequential, &[])),
        (location("eu-west-1"), dest),
    ]);

    let outcome = backend.execute(&act);

    assert_eq!(outcome, ActionOutcome::Done { detail: "copied ami-0000000a to eu-west-1 as ami-0000000c".into() });
    assert_eq!((copy.num_calls(), tag.num_calls()), (0, 1));
}

#[test]
fn a_copy_is_sent_again_only_when_no_copy_was_made() {
    // A 500 without a copy behind it (only an image of the same name that this action
    // did not make), then throttling (EC2 refused the call: no search), then the copy:
    // three attempts, the client's limit.
    let other = named_like_the_copy("ami-00000009", "built in eu-west-1 by the image pipeline");
    let named = mock!(Client::describe_images)
        .then_output(move || DescribeImagesOutput::builder().images(other.clone()).build());
    let throttled = || {
        aws_sdk_ec2::operation::copy_image::CopyImageError::generic(
            ErrorMetadata::builder().code("RequestLimitExceeded").message("Request limit exceeded.").build(),
        )
    };
    let copy = mock!(Client::copy_image)
        .sequence()
        .http_status(500, Some(EC2_500.into()))
        .error(throttled)
        .output(|| CopyImageOutput::builder().image_id("ami-0000000c").build())
        .build();
    let tag = mock!(Client::create_tags).then_output(|| CreateTagsOutput::builder().build());
    let dest = mock_ec2("eu-west-1", RuleMode::MatchAny, &[&named, &copy, &tag]);
    let backend = AwsBackend::with_clients(vec![
        (location("us-east-1"), mock_ec2("us-east-1", RuleMode::Sequential, &[])),
        (location("eu-west-1"), dest),
    ]);

    let outcome = backend.execute(&copy_action());

    assert_eq!(outcome, ActionOutcome::Done { detail: "copied ami-0000000a to eu-west-1 as ami-0000000c".into() });
    assert_eq!(copy.num_calls(), 3, "each attempt sent by the host, not the SDK");
    assert_eq!(named.num_calls(), 2, "searched before the copy and after the 500 only");
    assert_eq!(counts(&backend).get("CopyImage"), Some(&3));
}

#[test]
fn a_copy_refused_by_the_limit_on_copies_in_progress_waits_and_is_sent_again() {
    // EC2 allows 100 copies in progress per destination region: past it, CopyImage
    // fails with ResourceLimitExceeded and nothing is copied. The copy waits and is sent
    // again, beyond the client's 3 attempts; no search for a copy is needed.
    let limited = || {
        aws_sdk_ec2::operation::copy_image::CopyImageError::generic(
            ErrorMetadata::builder()
                .code("ResourceLimitExceeded")
                .message("You have reached the maximum number of concurrent copy operations (100).")
                .build(),
        )
    };
    let copy = mock!(Client::copy_image)
        .sequence()
        .error(limited)
        .times(5)
        .output(|| CopyImageOutput::builder().image_id("ami-0000000c").build())
        .build();
    let named = mock!(Client::describe_images).then_output(|| DescribeImagesOutput::builder().build());
    let tag = mock!(Client::create_tags).then_output(|| CreateTagsOutput::builder().build());
    let dest = mock_ec2("eu-west-1", RuleMode::MatchAny, &[&named, &copy, &tag]);
    let backend = AwsBackend::with_clients(vec![
        (location("us-east-1"), mock_ec2("us-east-1", RuleMode::Sequential, &[])),
        (location("eu-west-1"), dest),
    ]);

    let outcome = backend.execute(&copy_action());

    assert_eq!(outcome, ActionOutcome::Done { detail: "copied ami-0000000a to eu-west-1 as ami-0000000c".into() });
    assert_eq!(copy.num_calls(), 6, "five refusals waited out, then the copy");
    assert_eq!(named.num_calls(), 1, "searched once, before the first call");
}

#[test]
fn a_copy_the_limit_refuses_for_too_long_fails_naming_the_limit() {
    let limited = || {
        aws_sdk_ec2::operation::copy_image::CopyImageError::generic(
            ErrorMetadata::builder().code("ResourceLimitExceeded").message("too many copies in progress").build(),
        )
    };
    let copy = mock!(Client::copy_image).sequence().error(limited).repeatedly().build();
    let named = mock!(Client::describe_images).then_output(|| DescribeImagesOutput::builder().build());
    let dest = mock_ec2("eu-west-1", RuleMode::MatchAny, &[&named, &copy]);
    let backend = AwsBackend::with_clients(vec![
        (location("us-east-1"), mock_ec2("us-east-1", RuleMode::Sequential, &[])),
        (location("eu-west-1"), dest),
    ]);

    let outcome = backend.execute(&copy_action());

    let ActionOutcome::Failed { error } = outcome else { panic!("expected a failure, got {outcome:?}") };
    assert!(error.contains("ResourceLimitExceeded"), "{error}");
    // The first call and one after each of the 64 waits, then it gives up.
    assert_eq!(copy.num_calls(), 1 + 64);
}

#[test]
fn deprecation_on_an_endpoint_without_it_fails_with_a_clear_message() {
    let deprecate =
        mock!(Client::enable_image_deprecation).sequence().http_status(500, Some(MOTO_500.into())).repeatedly().build();
    let backend = backend("us-east-1", RuleMode::MatchAny, &[&deprecate]);
    let at: Timestamp = "2027-01-01".parse().expect("a date");

    let outcome = backend.execute(&action("us-east-1", "ami-0000000a", Op::Deprecate { at }));

    let ActionOutcome::Failed { error } = outcome else { panic!("expected a failure, got {outcome:?}") };
    assert!(error.contains("EnableImageDeprecation is not implemented by this EC2 endpoint"), "{error}");
}

#[test]
fn a_snapshot_still_used_by_another_image_is_not_deleted() {
    let users = mock!(Client::describe_images)
        .then_output(|| DescribeImagesOutput::builder().images(ec2_image("ami-0000000b", &["snap-a"])).build());
    let delete = mock!(Client::delete_snapshot).then_output(|| DeleteSnapshotOutput::builder().build());
    let backend = backend("us-east-1", RuleMode::MatchAny, &[&users, &delete]);

    let outcome =
        backend.execute(&action("us-east-1", "ami-0000000a", Op::DeleteSnapshot { snapshot_id: "snap-a".into() }));

    assert_eq!(outcome, ActionOutcome::Skipped { reason: "snap-a is still used by ami-0000000b".into() });
    assert_eq!(delete.num_calls(), 0);
}

#[test]
fn the_apply_reads_a_batch_of_snapshots_in_one_call_and_deletes_without_reading_again() {
    let users = mock!(Client::describe_images)
        .match_requests(|r| r.filters().iter().any(|f| f.values().len() == 3))
        .then_output(|| DescribeImagesOutput::builder().images(ec2_image("ami-0000000b", &["snap-a"])).build());
    let delete = mock!(Client::delete_snapshot).then_output(|| DeleteSnapshotOutput::builder().build());
    let backend = backend("us-east-1", RuleMode::MatchAny, &[&users, &delete]);
    let ids: Vec<String> = ["snap-a", "snap-b", "snap-c"].map(String::from).to_vec();

    let found = backend.snapshot_users(&location("us-east-1"), &ids).expect("users");
    let outcome =
        backend.execute(&action("us-east-1", "ami-0000000c", Op::DeleteSnapshot { snapshot_id: "snap-c".into() }));

    assert_eq!(found, [("snap-a".to_string(), vec!["ami-0000000b".to_string()])].into());
    assert_eq!(outcome, ActionOutcome::Done { detail: "deleted snap-c".into() });
    assert_eq!((users.num_calls(), delete.num_calls()), (1, 1));
}

#[test]
fn without_the_snapshot_filter_the_images_are_scanned_before_deleting() {
    let filtered = mock!(Client::describe_images)
        .match_requests(|r| !r.filters().is_empty())
        .sequence()
        .http_status(500, Some(MOTO_500.into()))
        .repeatedly()
        .build();
    let all = mock!(Client::describe_images)
        .match_requests(|r| r.filters().is_empty())
        .then_output(|| DescribeImagesOutput::builder().images(ec2_image("ami-0000000b", &["snap-b"])).build());
    let delete = mock!(Client::delete_snapshot)
        .match_requests(|r| r.snapshot_id() == Some("snap-a"))
        .then_output(|| DeleteSnapshotOutput::builder().build());
    let backend = backend("us-east-1", RuleMode::MatchAny, &[&filtered, &all, &delete]);

    let first =
        backend.execute(&action("us-east-1", "ami-0000000a", Op::DeleteSnapshot { snapshot_id: "snap-a".into() }));
    let second =
        backend.execute(&action("us-east-1", "ami-0000000a", Op::DeleteSnapshot { snapshot_id: "snap-a".into() }));

    assert_eq!(first, ActionOutcome::Done { detail: "deleted snap-a".into() });
    assert_eq!(second, first);
    assert_eq!(filtered.num_calls(), 3, "the filter is tried once (3 SDK attempts), then remembered as missing");
    assert_eq!(counts(&backend).get("DescribeImages"), Some(&3));
}

#[test]
fn preflight_reports_allowed_and_denied_calls_without_changing_anything() {
    use aws_sdk_ec2::operation::deregister_image::DeregisterImageError;
    use aws_sdk_ec2::operation::modify_image_attribute::ModifyImageAttributeError;
    let allowed = mock!(Client::deregister_image).match_requests(|r| r.dry_run() == Some(true)).then_error(|| {
        DeregisterImageError::generic(
            ErrorMetadata::builder().code("DryRunOperation").message("Request would have succeeded").build(),
        )
    });
    let denied = mock!(Client::modify_image_attribute).match_requests(|r| r.dry_run() == Some(true)).then_error(|| {
        ModifyImageAttributeError::generic(
            ErrorMetadata::builder()
                .code("UnauthorizedOperation")
                .message("You are not authorized to perform this operation.")
                .build(),
        )
    });
    let backend = backend("us-east-1", RuleMode::MatchAny, &[&allowed, &denied]);
    let actions = [
        action("us-east-1", "ami-0000000a", Op::Deregister),
        action("us-east-1", "ami-0000000a", Op::Share { principal: Principal::Account("210987654321".into()) }),
    ];

    let verdicts = backend.dry_run(&actions);

    assert_eq!(verdicts[0], (actions[0].id.clone(), Ok(())));
    let (id, Err(reason)) = &verdicts[1] else { panic!("expected a denial: {verdicts:?}") };
    assert_eq!(id, &actions[1].id);
    assert!(reason.contains("UnauthorizedOperation"), "{reason}");
}

fn mock_rbin(region: &str, rules: &[&Rule]) -> aws_sdk_rbin::Client {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    let config = aws_sdk_rbin::Config::builder()
        .behavior_version(aws_sdk_rbin::config::BehaviorVersion::latest())
        .region(aws_sdk_rbin::config::Region::new(region.to_string()))
        .credentials_provider(aws_sdk_rbin::config::Credentials::new("testing", "testing", None, None, "mock"))
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .build();
    aws_sdk_rbin::Client::from_conf(config)
}

/// `backend`, with a Recycle Bin client answering `rbin_rules`.
fn backend_with_bin(region: &str, ec2_rules: &[&Rule], rbin_rules: &[&Rule]) -> AwsBackend {
    let backend = backend(region, RuleMode::MatchAny, ec2_rules);
    let mut clients = backend.clients.lock().expect("fresh mutex");
    let ec2 = clients.remove(&location(region)).expect("the client");
    clients.insert(location(region), ec2.with_rbin(mock_rbin(region, rbin_rules)));
    drop(clients);
    backend
}

#[test]
fn recycle_bin_rules_are_read_with_their_tags_and_status_and_the_longest_match_decides() {
    use aws_sdk_rbin::operation::get_rule::GetRuleOutput;
    use aws_sdk_rbin::operation::list_rules::ListRulesOutput;
    use aws_sdk_rbin::types::{
        ResourceTag, ResourceType, RetentionPeriod, RetentionPeriodUnit, RuleStatus, RuleSummary,
    };

    let mut tagged = ec2_image("ami-0000000a", &["snap-a"]);
    tagged.tags = Some(vec![ec2::Tag::builder().key("team").value("platform").build()]);
    let images = mock!(Client::describe_images)
        .then_output(move || DescribeImagesOutput::builder().images(tagged.clone()).build());
    let snaps = mock!(Client::describe_snapshots).then_output(|| {
        let mut s = snapshot("snap-a", 8, ec2::StorageTier::Standard);
        s.tags = Some(vec![ec2::Tag::builder().key("keep").value("no").build()]);
        DescribeSnapshotsOutput::builder().snapshots(s).build()
    });
    let summary = |id: &str| RuleSummary::builder().identifier(id).build();
    let image_rules = mock!(aws_sdk_rbin::Client::list_rules)
        .match_requests(|r| r.resource_type() == Some(&ResourceType::Ec2Image))
        .then_output(move || {
            ListRulesOutput::builder()
                .rules(summary("img-7"))
                .rules(summary("img-30"))
                .rules(summary("img-pending"))
                .build()
        });
    let snapshot_rules = mock!(aws_sdk_rbin::Client::list_rules)
        .match_requests(|r| r.resource_type() == Some(&ResourceType::EbsSnapshot))
        .then_output(move || ListRulesOutput::builder().rules(summary("snap-excluding")).build());
    let days = |n| {
        RetentionPeriod::builder()
            .retention_period_value(n)
            .retention_period_unit(RetentionPeriodUnit::Days)
            .build()
            .unwrap()
    };
    let tag = |k: &str, v: &str| ResourceTag::builder().resource_tag_key(k).resource_tag_value(v).build().unwrap();
    let rule =
        move |id: &'static str, n: i32, status: RuleStatus, tags: Vec<ResourceTag>, exclude: Vec<ResourceTag>| {
            mock!(aws_sdk_rbin::Client::get_rule).match_requests(move |r| r.identifier() == Some(id)).then_output(
                move || {
                    GetRuleOutput::builder()
                        .identifier(id)
                        .retention_period(days(n))
                        .status(status.clone())
                        .set_resource_tags(Some(tags.clone()))
                        .set_exclude_resource_tags(Some(exclude.clone()))
                        .build()
                },
            )
        };
    let r7 = rule("img-7", 7, RuleStatus::Available, vec![], vec![]);
    let r30 = rule("img-30", 30, RuleStatus::Available, vec![tag("team", "platform")], vec![]);
    let pending = rule("img-pending", 90, RuleStatus::Pending, vec![], vec![]);
    let excluding = rule("snap-excluding", 10, RuleStatus::Available, vec![], vec![tag("keep", "no")]);
    let backend = backend_with_bin(
        "us-east-1",
        &[&images, &snaps],
        &[&image_rules, &snapshot_rules, &r7, &r30, &pending, &excluding],
    );

    let needs = [InventoryNeed::Snapshots, InventoryNeed::RecycleBin].into();
    let found = backend.collect(&scope("us-east-1"), &needs).expect("collect");

    assert_eq!(found[0].recycle_bin_days, Some(30), "the tag-level rule is longer; the pending one keeps nothing yet");
    assert_eq!(found[0].block_devices[0].recycle_bin_days, None, "the snapshot carries the rule's exclusion tag");
    let calls = counts(&backend);
    assert_eq!((calls["ListRules"], calls["GetRule"]), (2, 4), "{calls:?}");

    // Without the need, the Recycle Bin is not asked.
    let backend = backend_with_bin("us-east-1", &[&images, &snaps], &[&image_rules]);
    let found = backend.collect(&scope("us-east-1"), &[InventoryNeed::Snapshots].into()).expect("collect");
    assert_eq!(found[0].recycle_bin_days, None);
    assert!(!counts(&backend).contains_key("ListRules"));
}

#[test]
fn undo_restores_through_the_recycle_bin_only_what_is_not_back_already() {
    use aws_sdk_ec2::operation::enable_image::EnableImageOutput;
    use aws_sdk_ec2::operation::restore_image_from_recycle_bin::RestoreImageFromRecycleBinOutput;
    use aws_sdk_ec2::operation::restore_snapshot_from_recycle_bin::RestoreSnapshotFromRecycleBinOutput;

    use crate::backend::Restore;

    let gone = mock!(Client::describe_images)
        .match_requests(|r| r.image_ids() == ["ami-0000000a"])
        .then_output(|| DescribeImagesOutput::builder().build());
    let mut disabled = ec2_image("ami-0000000b", &[]);
    disabled.state = Some(ec2::ImageState::Disabled);
    let there = mock!(Client::describe_images)
        .match_requests(|r| r.image_ids() == ["ami-0000000b"])
        .then_output(move || DescribeImagesOutput::builder().images(disabled.clone()).build());
    let restore_image = mock!(Client::restore_image_from_recycle_bin)
        .then_output(|| RestoreImageFromRecycleBinOutput::builder().r#return(true).build());
    let no_snapshot = mock!(Client::describe_snapshots).then_error(|| {
        DescribeSnapshotsError::generic(ErrorMetadata::builder().code("InvalidSnapshot.NotFound").build())
    });
    let restore_snapshot = mock!(Client::restore_snapshot_from_recycle_bin)
        .then_output(|| RestoreSnapshotFromRecycleBinOutput::builder().build());
    let enable = mock!(Client::enable_image).then_output(|| EnableImageOutput::builder().r#return(true).build());
    let backend = backend(
        "us-east-1",
        RuleMode::MatchAny,
        &[&gone, &there, &restore_image, &no_snapshot, &restore_snapshot, &enable],
    );
    let here = location("us-east-1");

    let outcome = backend.restore(&here, &Restore::Snapshot { snapshot_id: "snap-a".into() });
    assert_eq!(outcome, ActionOutcome::Done { detail: "restored snap-a".into() });
    let outcome = backend.restore(&here, &Restore::Image { image_id: "ami-0000000a".into() });
    assert_eq!(outcome, ActionOutcome::Done { detail: "restored ami-0000000a".into() });
    let outcome = backend.restore(&here, &Restore::Enable { image_id: "ami-0000000b".into() });
    assert_eq!(outcome, ActionOutcome::Done { detail: "enabled ami-0000000b".into() });
    // An image EC2 knows is not restored again.
    let outcome = backend.restore(&here, &Restore::Image { image_id: "ami-0000000b".into() });
    assert!(matches!(outcome, ActionOutcome::Skipped { reason } if reason.contains("already restored")));
    assert_eq!((restore_image.num_calls(), restore_snapshot.num_calls(), enable.num_calls()), (1, 1, 1));
}

#[test]
fn an_organization_scope_is_its_active_accounts_over_every_page() {
    use aws_sdk_organizations::operation::list_accounts::ListAccountsOutput;
    use aws_sdk_organizations::types::{Account, AccountState, AccountStatus};

    let account = |id: &str, state: Option<AccountState>, status: Option<AccountStatus>| {
        Account::builder().id(id).set_state(state).set_status(status).build()
    };
    let first = mock!(aws_sdk_organizations::Client::list_accounts)
        .match_requests(|r| r.next_token().is_none())
        .then_output(move || {
            ListAccountsOutput::builder()
                .accounts(account("111111111111", Some(AccountState::Active), None))
                .accounts(account("222222222222", Some(AccountState::Suspended), Some(AccountStatus::Active)))
                .next_token("page-2")
                .build()
        });
    let second = mock!(aws_sdk_organizations::Client::list_accounts)
        .match_requests(|r| r.next_token() == Some("page-2"))
        .then_output(move || {
            ListAccountsOutput::builder()
                .accounts(account("333333333333", None, Some(AccountStatus::Active)))
                .accounts(account("444444444444", Some(AccountState::PendingClosure), None))
                .build()
        });
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    interceptor = interceptor.with_rule(&first).with_rule(&second);
    let config = aws_sdk_organizations::Config::builder()
        .behavior_version(aws_sdk_organizations::config::BehaviorVersion::latest())
        .region(aws_sdk_organizations::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_organizations::config::Credentials::new("testing", "testing", None, None, "mock"))
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .build();
    let client = aws_sdk_organizations::Client::from_conf(config);
    let runtime = super::runtime().unwrap();

    let found = runtime.block_on(super::organization::active_accounts(&client)).unwrap();

    assert_eq!(found, ["111111111111".to_string(), "333333333333".to_string()].into());
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    let mut scope = crate::config::Scope { organization: true, ..scope("us-east-1") };
    scope.discover(found, "the organization").unwrap();
    assert_eq!(scope.accounts.len(), 2);
    assert!(scope.discover(BTreeSet::new(), "the organization").is_err(), "an organization of none is refused");
}
