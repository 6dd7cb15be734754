//! Recycle Bin retention rules, as the backends read them: which rule keeps a deleted
//! image or snapshot, and for how long (the `recycle_bin_days` guardrail's question).
//!
//! A rule lives in one account and region and keeps one resource type. A tag-level rule
//! keeps the resources that carry at least one of its tags (a tag without a value
//! matches any value of its key); a region-level rule (no tags) keeps every resource of
//! its type but those carrying one of its exclusion tags. Only an available rule keeps
//! anything (a new rule is pending for up to 30 minutes); when several rules match, the
//! longest retention wins, as EC2 does.

use serde::{Deserialize, Serialize};

/// What a retention rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BinResource {
    /// EBS-backed AMIs (rbin's `EC2_IMAGE`).
    Image,
    /// EBS snapshots (rbin's `EBS_SNAPSHOT`).
    Snapshot,
}

/// A tag a rule matches: the key, and the value unless any value matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTag {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl RuleTag {
    fn matches(&self, tags: &super::Tags) -> bool {
        tags.get(&self.key).is_some_and(|v| self.value.as_ref().is_none_or(|want| want == v))
    }
}

/// One Recycle Bin retention rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// The rule's id (rbin's `Identifier`), for messages.
    pub id: String,
    pub resource: BinResource,
    /// How many days a deleted resource stays restorable.
    pub retention_days: u32,
    /// Tag-level rule: the tags, one of which a resource must carry. Empty: region-level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<RuleTag>,
    /// Region-level rule: resources with one of these tags are not kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_tags: Vec<RuleTag>,
    /// Whether the rule is active (`available`); a `pending` rule keeps nothing yet.
    #[serde(default = "yes")]
    pub available: bool,
}

fn yes() -> bool {
    true
}

impl RetentionRule {
    /// Whether the rule keeps a deleted resource of type `resource` with `tags`.
    pub fn covers(&self, resource: BinResource, tags: &super::Tags) -> bool {
        self.available
            && self.resource == resource
            && if self.tags.is_empty() {
                !self.exclude_tags.iter().any(|t| t.matches(tags))
            } else {
                self.tags.iter().any(|t| t.matches(tags))
            }
    }
}

/// How many days the rules of a location keep a deleted resource: the longest matching
/// rule's retention; `None` when no rule matches (deletion is final).
pub fn retention_days(rules: &[RetentionRule], resource: BinResource, tags: &super::Tags) -> Option<u32> {
    rules.iter().filter(|r| r.covers(resource, tags)).map(|r| r.retention_days).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str, value: Option<&str>) -> RuleTag {
        RuleTag { key: key.into(), value: value.map(str::to_string) }
    }

    fn rule(resource: BinResource, days: u32, tags: Vec<RuleTag>, exclude: Vec<RuleTag>) -> RetentionRule {
        RetentionRule {
            id: format!("r{days}"),
            resource,
            retention_days: days,
            tags,
            exclude_tags: exclude,
            available: true,
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> crate::model::Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_longest_matching_rule_of_the_resources_type_decides_and_pending_rules_keep_nothing() {
        use BinResource::{Image, Snapshot};
        let golden = tags(&[("team", "platform"), ("keep", "no")]);
        let rows: Vec<(&str, Vec<RetentionRule>, Option<u32>)> = vec![
            ("no rules", vec![], None),
            ("region-level rule", vec![rule(Image, 7, vec![], vec![])], Some(7)),
            ("a snapshot rule does not keep images", vec![rule(Snapshot, 30, vec![], vec![])], None),
            ("excluded by a tag", vec![rule(Image, 7, vec![], vec![tag("keep", Some("no"))])], None),
            ("exclusion of another value", vec![rule(Image, 7, vec![], vec![tag("keep", Some("yes"))])], Some(7)),
            (
                "tag-level rule, value matches",
                vec![rule(Image, 14, vec![tag("team", Some("platform"))], vec![])],
                Some(14),
            ),
            ("tag-level rule, any value of the key", vec![rule(Image, 14, vec![tag("team", None)], vec![])], Some(14)),
            ("tag-level rule, other value", vec![rule(Image, 14, vec![tag("team", Some("data"))], vec![])], None),
            (
                "one tag of several is enough",
                vec![rule(Image, 21, vec![tag("x", Some("y")), tag("team", Some("platform"))], vec![])],
                Some(21),
            ),
            (
                "the longest wins",
                vec![rule(Image, 7, vec![], vec![]), rule(Image, 90, vec![tag("team", None)], vec![])],
                Some(90),
            ),
            (
                "a pending rule keeps nothing",
                vec![RetentionRule { available: false, ..rule(Image, 30, vec![], vec![]) }],
                None,
            ),
        ];
        for (name, rules, want) in rows {
            assert_eq!(retention_days(&rules, Image, &golden), want, "{name}");
        }
    }
}
