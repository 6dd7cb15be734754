//! The least-privilege IAM policy for a policy file: read calls always, and only the
//! mutating calls its plugins are granted.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::config::Policy;
use crate::model::ActionKind;

/// The EC2 calls every run makes to build the inventory.
const READ: [&str; 8] = [
    "ec2:DescribeImages",
    "ec2:DescribeImageAttribute",
    "ec2:DescribeSnapshots",
    "ec2:DescribeInstances",
    "ec2:DescribeLaunchTemplates",
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

/// The IAM policy document (JSON) for the enabled plugins' grants, scoped to the
/// policy's regions; `sts:AssumeRole` on the role template when one is set.
pub fn iam_policy(policy: &Policy) -> Value {
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
        let doc = iam_policy(&policy).to_string();
        assert!(doc.contains("ec2:ModifyImageAttribute"));
        assert!(!doc.contains("ec2:DeregisterImage"));
        assert!(!doc.contains("ec2:DeleteSnapshot"));
    }
}
