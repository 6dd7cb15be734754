//! Permission preflight: each planned call sent with EC2's DryRun flag, which checks IAM only and changes nothing.

use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types::{LaunchPermissionModifications, Tag};

use super::calls::Ec2;
use super::convert;
use super::errors::{ApiError, ErrorKind};
use crate::plan::{Op, PlannedAction};

/// Sends `action`'s call with DryRun: `Ok` when EC2 answers DryRunOperation (allowed),
/// otherwise the reason (UnauthorizedOperation, a bad parameter, a missing operation).
pub async fn check(ec2: &Ec2, destination: Option<&Ec2>, action: &PlannedAction) -> Result<(), String> {
    let image = action.image_id.as_str();
    let c = &ec2.client;
    match &action.op {
        Op::Tag { tags } => {
            let tags = tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
            verdict(
                ec2.call("CreateTags", c.create_tags().dry_run(true).resources(image).set_tags(Some(tags)).send())
                    .await,
            )
        }
        Op::Untag { keys } => {
            let tags = keys.iter().map(|k| Tag::builder().key(k).build()).collect();
            verdict(
                ec2.call("DeleteTags", c.delete_tags().dry_run(true).resources(image).set_tags(Some(tags)).send())
                    .await,
            )
        }
        Op::Share { principal } | Op::Unshare { principal } => {
            let permission = convert::launch_permission(principal);
            let change = match &action.op {
                Op::Share { .. } => LaunchPermissionModifications::builder().add(permission),
                _ => LaunchPermissionModifications::builder().remove(permission),
            };
            let request = c.modify_image_attribute().dry_run(true).image_id(image).launch_permission(change.build());
            verdict(ec2.call("ModifyImageAttribute", request.send()).await)
        }
        Op::Copy { request } => {
            let Some(dest) = destination else { return Err(format!("no client for {}", request.region)) };
            let call = dest
                .client
                .copy_image()
                .dry_run(true)
                .source_image_id(image)
                .source_region(&action.location.region)
                .name(request.name.clone().unwrap_or_else(|| action.image_name.clone()))
                .encrypted(request.encrypted)
                .set_kms_key_id(request.kms_key_id.clone());
            verdict(dest.call("CopyImage", call.send()).await)
        }
        Op::Deprecate { at } => {
            let request =
                c.enable_image_deprecation().dry_run(true).image_id(image).deprecate_at(DateTime::from_secs(at.0));
            verdict(ec2.call("EnableImageDeprecation", request.send()).await)
        }
        Op::Disable => verdict(ec2.call("DisableImage", c.disable_image().dry_run(true).image_id(image).send()).await),
        Op::Deregister => {
            verdict(ec2.call("DeregisterImage", c.deregister_image().dry_run(true).image_id(image).send()).await)
        }
        Op::DeleteSnapshot { snapshot_id } => {
            verdict(ec2.call("DeleteSnapshot", c.delete_snapshot().dry_run(true).snapshot_id(snapshot_id).send()).await)
        }
    }
}

fn verdict<T>(result: Result<T, ApiError>) -> Result<(), String> {
    match result {
        Err(e) if e.kind == ErrorKind::DryRunAllowed => Ok(()),
        Err(e) => Err(e.to_string()),
        Ok(_) => Err("the endpoint ignored DryRun and performed the call".into()),
    }
}
