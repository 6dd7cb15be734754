//! What still uses an image: DescribeImageReferences where the endpoint has it, else instances and launch template versions.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use aws_sdk_ec2::types::{
    Filter, ImageReferenceOptionName, ImageReferenceResourceType, ResourceTypeOption, ResourceTypeRequest,
};

use super::calls::{Ec2, Gaps, next_page};
use super::errors::{ApiError, ErrorKind};

/// Image ids per DescribeImageReferences call (FACTS.md).
const REFERENCE_BATCH: usize = 10;
/// Launch template versions DescribeImageReferences looks at, newest first (EC2's most;
/// its default is 10).
const TEMPLATE_VERSION_DEPTH: &str = "10000";

/// Values per `image-id` filter of DescribeInstances.
const INSTANCE_FILTER_BATCH: usize = 200;
/// Instance states that count as using an image.
const LIVE_STATES: [&str; 5] = ["pending", "running", "shutting-down", "stopping", "stopped"];

/// What DescribeImageReferences is asked to look at: every kind it knows, with options
/// where its defaults would miss a use. Asked for all kinds at once
/// (`IncludeAllResourceTypes`), EC2 looks only at the newest 10 versions of a launch
/// template, so an Auto Scaling group pinned to an older version would not count; every
/// version is looked at here. Instances are those in a live state, as the fallback reads
/// them (the default counts terminated instances too).
fn reference_kinds() -> Vec<ResourceTypeRequest> {
    let option = |name: ImageReferenceOptionName, values: &[&str]| {
        let values = values.iter().map(|v| v.to_string()).collect();
        ResourceTypeOption::builder().option_name(name).set_option_values(Some(values)).build()
    };
    let kind = |kind: ImageReferenceResourceType, options: Option<ResourceTypeOption>| {
        ResourceTypeRequest::builder().resource_type(kind).set_resource_type_options(options.map(|o| vec![o])).build()
    };
    vec![
        kind(ImageReferenceResourceType::Ec2Instance, Some(option(ImageReferenceOptionName::StateName, &LIVE_STATES))),
        kind(
            ImageReferenceResourceType::Ec2LaunchTemplate,
            Some(option(ImageReferenceOptionName::VersionDepth, &[TEMPLATE_VERSION_DEPTH])),
        ),
        kind(ImageReferenceResourceType::SsmParameter, None),
        kind(ImageReferenceResourceType::ImageBuilderImageRecipe, None),
        kind(ImageReferenceResourceType::ImageBuilderContainerRecipe, None),
    ]
}

/// Instances, launch templates and other resources referring to an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    pub instances: u32,
    pub launch_templates: BTreeSet<String>,
    /// SSM parameters and Image Builder recipes, by ARN (or by kind when EC2 gives no
    /// ARN): each makes the image in use.
    pub others: BTreeSet<String>,
}

/// The references to each of `image_ids` (images without any are absent).
pub async fn references(ec2: &Ec2, image_ids: &[String]) -> anyhow::Result<BTreeMap<String, References>> {
    if image_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    if !Gaps::known(&ec2.gaps.no_image_references) {
        match image_references(ec2, image_ids).await {
            Ok(found) => return Ok(found),
            // An endpoint without the call (an emulator: the whole endpoint lacks it) falls
            // back. A denial does not: it is one account's role, the fallback cannot see
            // SSM parameters or recipes that use an image, and the gap would be learned
            // for every account of the run.
            Err(e) if e.kind == ErrorKind::Unauthorized => {
                return Err(e).with_context(|| {
                    format!(
                        "image usage in {}: DescribeImageReferences is denied, and without it the SSM parameters and \
                         Image Builder recipes that use an image are not seen; allow ec2:DescribeImageReferences \
                         (`amiwarden iam-policy` prints the policy amiwarden needs)",
                        ec2.location
                    )
                });
            }
            Err(e) if e.kind == ErrorKind::NotImplemented => {
                if Gaps::learn(&ec2.gaps.no_image_references) {
                    tracing::warn!(
                        "{e}; finding image usage with DescribeInstances and launch template versions instead \
                         (SSM parameters and Image Builder recipes are not seen)"
                    );
                }
            }
            Err(e) => return Err(e).with_context(|| format!("image usage in {}", ec2.location)),
        }
    }
    let wanted: BTreeSet<&str> = image_ids.iter().map(String::as_str).collect();
    let mut found = instances(ec2, image_ids).await.with_context(|| format!("instances in {}", ec2.location))?;
    for (template, image) in
        launch_template_images(ec2).await.with_context(|| format!("launch templates in {}", ec2.location))?
    {
        if wanted.contains(image.as_str()) {
            found.entry(image).or_default().launch_templates.insert(template);
        }
    }
    Ok(found)
}

/// DescribeImageReferences, 10 images a call, every page.
async fn image_references(ec2: &Ec2, image_ids: &[String]) -> Result<BTreeMap<String, References>, ApiError> {
    let mut found: BTreeMap<String, References> = BTreeMap::new();
    for batch in image_ids.chunks(REFERENCE_BATCH) {
        let mut token: Option<String> = None;
        let mut seen = BTreeSet::new();
        loop {
            let request = ec2
                .client
                .describe_image_references()
                .set_image_ids(Some(batch.to_vec()))
                .set_resource_types(Some(reference_kinds()))
                .set_next_token(token.take());
            let page = ec2.call("DescribeImageReferences", request.send()).await?;
            for r in page.image_references() {
                let (Some(image), Some(kind)) = (r.image_id(), r.resource_type()) else { continue };
                let entry = found.entry(image.to_string()).or_default();
                match kind {
                    ImageReferenceResourceType::Ec2Instance => entry.instances += 1,
                    ImageReferenceResourceType::Ec2LaunchTemplate => {
                        let arn = r.arn().unwrap_or_default();
                        let id = arn.rsplit_once("launch-template/").map_or(arn, |(_, id)| id);
                        entry.launch_templates.insert(id.to_string());
                    }
                    // An SSM parameter (`/golden/latest`) or a build recipe still points at
                    // it: deregistering it breaks whatever resolves that reference.
                    other => {
                        let what = r.arn().map_or_else(|| format!("an {} resource", other.as_str()), str::to_string);
                        entry.others.insert(what);
                    }
                }
            }
            token = next_page("DescribeImageReferences", page.next_token(), &mut seen)?;
            if token.is_none() {
                break;
            }
        }
    }
    Ok(found)
}

/// Live instances per image, in as few calls as the estate allows: for a few images,
/// DescribeInstances filtered by their ids (200 a call); for many, every live instance
/// of the location (1,000 a page) as long as that takes no more pages than the filtered
/// calls would be, else the filtered calls after all.
async fn instances(ec2: &Ec2, image_ids: &[String]) -> Result<BTreeMap<String, References>, ApiError> {
    let filtered_calls = image_ids.len().div_ceil(INSTANCE_FILTER_BATCH);
    if filtered_calls > 1 {
        let wanted: BTreeSet<&str> = image_ids.iter().map(String::as_str).collect();
        let mut found: BTreeMap<String, References> = BTreeMap::new();
        let complete = live_instances(ec2, None, Some(filtered_calls), |image| {
            if wanted.contains(image) {
                found.entry(image.to_string()).or_default().instances += 1;
            }
        })
        .await?;
        if complete {
            return Ok(found);
        }
    }
    let mut found: BTreeMap<String, References> = BTreeMap::new();
    for batch in image_ids.chunks(INSTANCE_FILTER_BATCH) {
        live_instances(ec2, Some(batch), None, |image| found.entry(image.to_string()).or_default().instances += 1)
            .await?;
    }
    Ok(found)
}

/// DescribeInstances over live instances (those of `images` only, when given), calling
/// `each` with every instance's image id; at most `max_pages` pages. `true` when the
/// listing ended within them.
async fn live_instances(
    ec2: &Ec2,
    images: Option<&[String]>,
    max_pages: Option<usize>,
    mut each: impl FnMut(&str),
) -> Result<bool, ApiError> {
    let states =
        Filter::builder().name("instance-state-name").set_values(Some(LIVE_STATES.map(String::from).to_vec())).build();
    let mut filters = vec![states];
    if let Some(ids) = images {
        filters.push(Filter::builder().name("image-id").set_values(Some(ids.to_vec())).build());
    }
    let mut token: Option<String> = None;
    let mut seen = BTreeSet::new();
    let mut pages = 0;
    loop {
        if max_pages.is_some_and(|max| pages == max) {
            return Ok(false);
        }
        pages += 1;
        let request = ec2
            .client
            .describe_instances()
            .set_filters(Some(filters.clone()))
            .set_max_results(images.is_none().then_some(super::collect::LIST_PAGE))
            .set_next_token(token.take());
        let page = ec2.call("DescribeInstances", request.send()).await?;
        for instance in page.reservations().iter().flat_map(|r| r.instances()) {
            if let Some(image) = instance.image_id() {
                each(image);
            }
        }
        token = next_page("DescribeInstances", page.next_token(), &mut seen)?;
        if token.is_none() {
            return Ok(true);
        }
    }
}

/// (launch template id, image id) for the `$Latest` and `$Default` version of every
/// template: one DescribeLaunchTemplateVersions without a template id covers them all,
/// 200 versions a page.
async fn launch_template_images(ec2: &Ec2) -> Result<BTreeSet<(String, String)>, ApiError> {
    let mut found = BTreeSet::new();
    let mut token: Option<String> = None;
    let mut seen = BTreeSet::new();
    loop {
        let request = ec2
            .client
            .describe_launch_template_versions()
            .versions("$Latest")
            .versions("$Default")
            .max_results(200)
            .set_next_token(token.take());
        let page = ec2.call("DescribeLaunchTemplateVersions", request.send()).await?;
        for version in page.launch_template_versions() {
            if let (Some(template), Some(image)) =
                (version.launch_template_id(), version.launch_template_data().and_then(|d| d.image_id()))
            {
                found.insert((template.to_string(), image.to_string()));
            }
        }
        token = next_page("DescribeLaunchTemplateVersions", page.next_token(), &mut seen)?;
        if token.is_none() {
            break;
        }
    }
    Ok(found)
}
