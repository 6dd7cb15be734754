//! The least-privilege IAM policy for a policy file: read calls always, and only the
//! mutating calls its plugins are granted.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::config::Policy;
use crate::model::ActionKind;

/// The EC2 calls every run makes to build the inventory.
const READ: [&str; 7] = [
    "ec2:DescribeImages",
    "ec2:DescribeImageAttribute",
    "ec2:DescribeSnapshots",
    "ec2:DescribeInstances",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:DescribeImageReferences",
    "ec2:DescribeTags",
];

fn calls(kind: ActionKind) -> &'static [&'static str] {
    match kind {
        ActionKind::Share | ActionKind::Unshare => &["ec2:ModifyImageAttribute"],
        ActionKind::Copy => &["ec2:CopyImage", "ec2:CreateTags"],
        ActionKind::Deprecate => &["ec2:EnableImageDeprecation"],
        ActionKind::Disable => &["ec2:DisableImage"],
        ActionKind::Deregister => &["ec2:DeregisterImage"],
        ActionKind::DeleteSnapshots => &["ec2:DeleteSnapshot"],
        ActionKind::Tag => &["ec2:CreateTags"],
        ActionKind::Untag => &["ec2:DeleteTags"],
        ActionKind::Retain => &[],
    }
}

/// What a `serve` worker does with its queue: receive, extend, delete; send (schedulers
/// and `enqueue-run`); read the redrive policy.
const QUEUE: [&str; 5] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:SendMessage",
];

/// The ARN of a queue from its URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`).
pub fn queue_arn(url: &str) -> Option<String> {
    let region = super::queue::region_of(url)?;
    let mut path = url.split("://").nth(1)?.split('/').skip(1);
    let (account, name) = (path.next()?, path.next()?);
    crate::model::is_account_id(account).then(|| format!("arn:aws:sqs:{region}:{account}:{name}"))
}

/// The IAM policy document (JSON) for the enabled plugins' grants, scoped to the
/// policy's regions; `sts:AssumeRole` on the role template when one is set; the queue's
/// calls when a worker uses `queue_url`.
pub fn iam_policy(policy: &Policy, queue_url: Option<&str>) -> Value {
    let mut write: BTreeSet<&str> = BTreeSet::new();
    for plugin in policy.plugins.iter().filter(|p| p.enabled) {
        for kind in &plugin.grants {
            write.extend(calls(*kind));
        }
    }
    let regions: Vec<&str> = policy.scope.regions.iter().map(String::as_str).collect();
    let mut statements = vec![json!({
        "Sid": "AmiwardenInventory",
        "Effect": "Allow",
        "Action": READ,
        "Resource": "*",
        "Condition": { "StringEquals": { "aws:RequestedRegion": regions } },
    })];
    if !write.is_empty() {
        let copy_regions: BTreeSet<&str> =
            regions.iter().copied().chain(policy.copy_regions().iter().map(String::as_str)).collect();
        statements.push(json!({
            "Sid": "AmiwardenGrantedActions",
            "Effect": "Allow",
            "Action": write,
            "Resource": "*",
            "Condition": { "StringEquals": { "aws:RequestedRegion": copy_regions } },
        }));
    }
    if let Some(template) = &policy.aws.role_arn_template {
        let roles: Vec<String> = policy.scope.accounts.iter().map(|a| template.replace("{account}", a)).collect();
        statements.push(
            json!({ "Sid": "AmiwardenAssumeRoles", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": roles }),
        );
    }
    if let Some(url) = queue_url {
        let resource = queue_arn(url).unwrap_or_else(|| "*".into());
        statements.push(json!({ "Sid": "AmiwardenQueue", "Effect": "Allow", "Action": QUEUE, "Resource": resource }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_mutations_are_allowed() {
        let policy = Policy::parse(
            r#"
[scope]
accounts = ["111111111111"]
regions = ["us-east-1"]
[[plugin]]
name = "sharing"
source = "builtin:sharing"
grants = ["share", "unshare"]
"#,
        )
        .unwrap();
        let doc = iam_policy(&policy, None).to_string();
        assert!(doc.contains("ec2:ModifyImageAttribute"));
        assert!(!doc.contains("ec2:DeregisterImage"));
        assert!(!doc.contains("ec2:DeleteSnapshot"));
        assert!(!doc.contains("sqs:"));
        let worker = iam_policy(&policy, Some("https://sqs.eu-west-1.amazonaws.com/111111111111/ami-events.fifo"));
        let queue = &worker["Statement"].as_array().unwrap().last().unwrap();
        assert_eq!(queue["Resource"], "arn:aws:sqs:eu-west-1:111111111111:ami-events.fifo");
        assert!(queue["Action"].as_array().unwrap().iter().any(|a| a == "sqs:DeleteMessage"));
    }
}
