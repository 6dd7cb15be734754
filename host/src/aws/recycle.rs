//! The Recycle Bin on AWS: its retention rules (aws-sdk-rbin ListRules, then GetRule for
//! each rule's tags and status, which ListRules does not return) and `undo`'s restores
//! (EC2's RestoreSnapshotFromRecycleBin, RestoreImageFromRecycleBin, EnableImage).

use std::collections::BTreeSet;

use aws_sdk_rbin::types::{ResourceTag, ResourceType, RetentionPeriodUnit, RuleStatus};

use super::calls::{Ec2, next_page};
use super::collect::describe_images;
use super::errors::ApiError;
use crate::backend::{ActionOutcome, Restore};
use crate::model::ImageState;
use crate::model::recycle::{BinResource, RetentionRule, RuleTag};

/// Every retention rule of the location for images and snapshots.
pub async fn rules(ec2: &Ec2) -> Result<Vec<RetentionRule>, ApiError> {
    let Some(rbin) = &ec2.rbin else { return Ok(Vec::new()) };
    let mut rules = Vec::new();
    for (resource, kind) in
        [(BinResource::Image, ResourceType::Ec2Image), (BinResource::Snapshot, ResourceType::EbsSnapshot)]
    {
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = BTreeSet::new();
        loop {
            let request = rbin.list_rules().resource_type(kind.clone()).set_next_token(token.take());
            let page = ec2.call("ListRules", request.send()).await?;
            ids.extend(page.rules().iter().filter_map(|r| r.identifier()).map(str::to_string));
            token = next_page("ListRules", page.next_token(), &mut seen)?;
            if token.is_none() {
                break;
            }
        }
        for id in ids {
            let rule = ec2.call("GetRule", rbin.get_rule().identifier(&id).send()).await?;
            let Some(period) = rule.retention_period() else { continue };
            if *period.retention_period_unit() != RetentionPeriodUnit::Days {
                continue;
            }
            let tags = |list: &[ResourceTag]| {
                list.iter()
                    .map(|t| RuleTag {
                        key: t.resource_tag_key().to_string(),
                        value: t.resource_tag_value().map(str::to_string),
                    })
                    .collect()
            };
            rules.push(RetentionRule {
                id,
                resource,
                retention_days: u32::try_from(period.retention_period_value()).unwrap_or(0),
                tags: tags(rule.resource_tags()),
                exclude_tags: tags(rule.exclude_resource_tags()),
                available: rule.status() == Some(&RuleStatus::Available),
            });
        }
    }
    Ok(rules)
}

/// Reverses one change (`Backend::restore`), after reading whether it is needed.
pub async fn restore(ec2: &Ec2, what: &Restore) -> ActionOutcome {
    let result = match what {
        Restore::Snapshot { snapshot_id } => restore_snapshot(ec2, snapshot_id).await,
        Restore::Image { image_id } => restore_image(ec2, image_id).await,
        Restore::Enable { image_id } => enable(ec2, image_id).await,
    };
    result.unwrap_or_else(|e| ActionOutcome::Failed { error: format!("{} in {}: {e}", what.verb(), ec2.location) })
}

/// The image's state, `None` when EC2 does not know it (deregistered, or in the bin).
async fn image_state(ec2: &Ec2, image_id: &str) -> Result<Option<ImageState>, ApiError> {
    match describe_images(ec2, Some(vec![image_id.to_string()]), Vec::new()).await {
        Ok(found) => Ok(found
            .first()
            .map(|raw| super::convert::image(&ec2.location, raw).map(|i| i.state).unwrap_or(ImageState::Available))
            .filter(|s| *s != ImageState::Deregistered)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

async fn restore_snapshot(ec2: &Ec2, snapshot_id: &str) -> Result<ActionOutcome, ApiError> {
    let described =
        ec2.call("DescribeSnapshots", ec2.client.describe_snapshots().snapshot_ids(snapshot_id).send()).await;
    match described {
        Ok(out) if !out.snapshots().is_empty() => {
            return Ok(ActionOutcome::Skipped { reason: format!("{snapshot_id} exists (already restored)") });
        }
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    let request = ec2.client.restore_snapshot_from_recycle_bin().snapshot_id(snapshot_id);
    ec2.call("RestoreSnapshotFromRecycleBin", request.send()).await?;
    Ok(ActionOutcome::Done { detail: format!("restored {snapshot_id}") })
}

async fn restore_image(ec2: &Ec2, image_id: &str) -> Result<ActionOutcome, ApiError> {
    if image_state(ec2, image_id).await?.is_some() {
        return Ok(ActionOutcome::Skipped { reason: format!("{image_id} exists (already restored)") });
    }
    let request = ec2.client.restore_image_from_recycle_bin().image_id(image_id);
    ec2.call("RestoreImageFromRecycleBin", request.send()).await?;
    Ok(ActionOutcome::Done { detail: format!("restored {image_id}") })
}

async fn enable(ec2: &Ec2, image_id: &str) -> Result<ActionOutcome, ApiError> {
    match image_state(ec2, image_id).await? {
        None => Ok(ActionOutcome::Failed { error: format!("{image_id} no longer exists") }),
        Some(ImageState::Disabled) => {
            ec2.call("EnableImage", ec2.client.enable_image().image_id(image_id).send()).await?;
            Ok(ActionOutcome::Done { detail: format!("enabled {image_id}") })
        }
        Some(_) => Ok(ActionOutcome::Skipped { reason: format!("{image_id} is not disabled") }),
    }
}
