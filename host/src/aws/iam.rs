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

/// What EC2 does with KMS for an encrypted CopyImage (re-encrypting the snapshots
/// under the destination's key, and granting itself their use).
const KMS: [&str; 6] = [
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncrypt*",
];

/// What the Recycle Bin guardrail reads (the retention rules), and what `undo` calls to
/// give back what a run removed (re-sharing is `ec2:ModifyImageAttribute`).
const RECYCLE_BIN: [&str; 6] = [
    "rbin:ListRules",
    "rbin:GetRule",
    "ec2:RestoreImageFromRecycleBin",
    "ec2:RestoreSnapshotFromRecycleBin",
    "ec2:EnableImage",
    "ec2:ModifyImageAttribute",
];

/// The trust policy of the role each member account creates for `role_arn_template`:
/// `principal` (the account or role amiwarden runs as) may assume it, with the policy's
/// `external_id` required when one is set.
pub fn trust_policy(policy: &Policy, principal: &str) -> Result<Value, String> {
    let arn = if crate::model::is_account_id(principal) {
        format!("arn:aws:iam::{principal}:root")
    } else if principal.starts_with("arn:aws") && principal.contains(":iam::") {
        principal.to_string()
    } else {
        return Err(format!("--trust-for `{principal}`: give a 12-digit account id or an IAM role ARN"));
    };
    let mut statement = json!({
        "Sid": "AmiwardenAssumeRole",
        "Effect": "Allow",
        "Principal": { "AWS": arn },
        "Action": "sts:AssumeRole",
    });
    if let Some(external_id) = &policy.aws.external_id {
        statement["Condition"] = json!({ "StringEquals": { "sts:ExternalId": external_id } });
    }
    Ok(json!({ "Version": "2012-10-17", "Statement": [statement] }))
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
    if policy.plugins.iter().any(|p| p.enabled && p.grants.contains(&ActionKind::Copy)) {
        // An encrypted copy (or a copy of an encrypted image) has EC2 use KMS on the
        // caller's behalf in the destination region: only through EC2 is allowed.
        let via: Vec<String> = policy.copy_regions().iter().map(|r| format!("ec2.{r}.amazonaws.com")).collect();
        statements.push(json!({
            "Sid": "AmiwardenEncryptedCopies",
            "Effect": "Allow",
            "Action": KMS,
            "Resource": "*",
            "Condition": { "StringEquals": { "kms:ViaService": via } },
        }));
    }
    if policy.host_needs().contains(&crate::model::InventoryNeed::RecycleBin) {
        statements.push(json!({
            "Sid": "AmiwardenRecycleBinAndUndo",
            "Effect": "Allow",
            "Action": RECYCLE_BIN,
            "Resource": "*",
            "Condition": { "StringEquals": { "aws:RequestedRegion": regions } },
        }));
    }
    if policy.scope.organization {
        statements.push(json!({
            "Sid": "AmiwardenOrganizationAccounts",
            "Effect": "Allow",
            "Action": "organizations:ListAccounts",
            "Resource": "*",
        }));
    }
    if let Some(template) = &policy.aws.role_arn_template {
        // An organization's accounts are known only at run time: its role in any account.
        let roles: Vec<String> = if policy.scope.organization && policy.scope.accounts.is_empty() {
            vec![template.replace("{account}", "*")]
        } else {
            policy.scope.accounts.iter().map(|a| template.replace("{account}", a)).collect()
        };
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
    fn the_recycle_bin_guardrail_adds_its_rules_and_undos_calls() {
        let policy = Policy::parse(
            r#"
[scope]
accounts = ["111111111111"]
regions = ["us-east-1"]
[guardrails]
recycle_bin_days = 7
[[plugin]]
name = "retention"
source = "builtin:retention"
grants = ["deregister", "delete-snapshots"]
"#,
        )
        .unwrap();
        let doc = iam_policy(&policy, None);
        let bin =
            doc["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "AmiwardenRecycleBinAndUndo").unwrap();
        let actions: Vec<&str> = bin["Action"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
        assert_eq!(actions, RECYCLE_BIN);
    }

    #[test]
    fn an_organization_scope_lists_its_accounts_and_assumes_its_role_in_any_of_them() {
        let policy = Policy::parse(
            r#"
[scope]
accounts = "organization"
regions = ["us-east-1"]
[aws]
role_arn_template = "arn:aws:iam::{account}:role/amiwarden"
"#,
        )
        .unwrap();
        let doc = iam_policy(&policy, None);
        let statements = doc["Statement"].as_array().unwrap();
        let sid = |sid: &str| statements.iter().find(|s| s["Sid"] == sid).unwrap().clone();
        assert_eq!(sid("AmiwardenOrganizationAccounts")["Action"], "organizations:ListAccounts");
        assert_eq!(sid("AmiwardenAssumeRoles")["Resource"], json!(["arn:aws:iam::*:role/amiwarden"]));
        let err =
            Policy::parse("[scope]\naccounts = \"everyone\"\nregions = [\"us-east-1\"]\n").unwrap_err().to_string();
        assert!(err.contains("give a list of account ids, or \"organization\""), "{err}");
    }

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
        assert!(!doc.contains("rbin:"), "the Recycle Bin is read only for its guardrail");
        let worker = iam_policy(&policy, Some("https://sqs.eu-west-1.amazonaws.com/111111111111/ami-events.fifo"));
        let queue = &worker["Statement"].as_array().unwrap().last().unwrap();
        assert_eq!(queue["Resource"], "arn:aws:sqs:eu-west-1:111111111111:ami-events.fifo");
        assert!(queue["Action"].as_array().unwrap().iter().any(|a| a == "sqs:DeleteMessage"));
    }

    fn multi_account() -> Policy {
        Policy::parse(
            r#"
[scope]
accounts = ["111111111111", "222222222222"]
regions = ["us-east-1"]
[guardrails]
copy_regions = ["eu-west-1"]
[aws]
role_arn_template = "arn:aws:iam::{account}:role/amiwarden"
external_id = "org-7f3a"
[[plugin]]
name = "replication"
source = "builtin:replication"
grants = ["copy"]
[plugin.config]
source_regions = ["us-east-1"]
[plugin.config.targets.eu-west-1]
encrypted = true
"#,
        )
        .unwrap()
    }

    #[test]
    fn copies_may_use_kms_through_ec2_in_their_destinations_only() {
        let doc = iam_policy(&multi_account(), None);
        let statements = doc["Statement"].as_array().unwrap();
        let kms = statements.iter().find(|s| s["Sid"] == "AmiwardenEncryptedCopies").expect("a KMS statement");
        assert!(kms["Action"].as_array().unwrap().iter().any(|a| a == "kms:CreateGrant"));
        assert_eq!(kms["Condition"]["StringEquals"]["kms:ViaService"], json!(["ec2.eu-west-1.amazonaws.com"]));
        let roles = statements.iter().find(|s| s["Sid"] == "AmiwardenAssumeRoles").unwrap();
        assert_eq!(
            roles["Resource"],
            json!(["arn:aws:iam::111111111111:role/amiwarden", "arn:aws:iam::222222222222:role/amiwarden"])
        );
        let sharing_only = Policy::parse(
            "[scope]\naccounts = [\"111111111111\"]\nregions = [\"us-east-1\"]\n[[plugin]]\nname = \"s\"\nsource = \"builtin:sharing\"\ngrants = [\"unshare\"]\n",
        )
        .unwrap();
        assert!(!iam_policy(&sharing_only, None).to_string().contains("kms:"), "no copies, no KMS");
    }

    #[test]
    fn the_member_roles_trust_the_runner_with_the_external_id() {
        let policy = multi_account();
        let trust = trust_policy(&policy, "999999999999").unwrap();
        let statement = &trust["Statement"][0];
        assert_eq!(statement["Principal"]["AWS"], "arn:aws:iam::999999999999:root");
        assert_eq!(statement["Action"], "sts:AssumeRole");
        assert_eq!(statement["Condition"]["StringEquals"]["sts:ExternalId"], "org-7f3a");
        let role = "arn:aws:iam::999999999999:role/amiwarden-runner";
        assert_eq!(trust_policy(&policy, role).unwrap()["Statement"][0]["Principal"]["AWS"], role);
        let err = trust_policy(&policy, "runner").unwrap_err();
        assert!(err.contains("--trust-for `runner`"), "{err}");
    }
}
