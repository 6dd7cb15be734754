//! The sharing plugin's configuration: principal groups, what selects them, the allow list.

use amiwarden_sdk::prelude::*;
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The JSON config as written in the policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    share_tag: Option<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    allowed: Vec<String>,
    #[serde(default)]
    allow_public: bool,
    #[serde(default)]
    report_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name_regex: Option<String>,
    tag: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    principals: Vec<String>,
}

/// A rule: images it selects get its principals.
#[derive(Debug, Clone)]
pub struct Rule {
    name_regex: Option<Regex>,
    tag: Option<(String, Option<String>)>,
    /// How reasons name the rule.
    pub label: String,
    /// Its principals, with the group each came from (`None` when listed directly).
    pub principals: Vec<(Principal, Option<String>)>,
}

impl Rule {
    /// Whether the rule selects `image` (every selector set must match).
    pub fn selects(&self, image: &Image) -> bool {
        self.name_regex.as_ref().is_none_or(|r| r.is_match(&image.name))
            && self.tag.as_ref().is_none_or(|(key, want)| match image.tag(key) {
                None => false,
                Some(value) => want.as_ref().is_none_or(|w| w == value),
            })
    }
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub groups: BTreeMap<String, Vec<Principal>>,
    pub share_tag: Option<String>,
    pub rules: Vec<Rule>,
    /// Principals that may keep a launch permission though nothing desires them, by text.
    pub allowed: BTreeSet<String>,
    pub allow_public: bool,
    pub report_only: bool,
}

impl Config {
    /// Parses and checks the JSON config.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        parse_checked::<RawConfig, _>(text, check)
    }
}

fn check(raw: RawConfig) -> Result<Config, String> {
    let public_ok = |p: &Principal, place: &str| {
        if *p == Principal::Public && !raw.allow_public {
            Err(format!("{place} lists `public`, which needs allow_public = true"))
        } else {
            Ok(())
        }
    };
    let mut groups = BTreeMap::new();
    for (name, members) in &raw.groups {
        let mut principals = Vec::new();
        for text in members {
            let principal = parse_principal(text).map_err(|e| format!("groups.{name}: {e}"))?;
            public_ok(&principal, &format!("groups.{name}"))?;
            principals.push(principal);
        }
        groups.insert(name.clone(), principals);
    }
    if raw.share_tag.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err("share_tag must not be empty".into());
    }
    let mut rules = Vec::new();
    for (index, rule) in raw.rules.iter().enumerate() {
        let place = format!("rules[{index}]");
        if rule.name_regex.is_none() && rule.tag.is_none() {
            return Err(format!("{place} needs name_regex or tag to select images"));
        }
        if rule.groups.is_empty() && rule.principals.is_empty() {
            return Err(format!("{place} needs groups or principals to share with"));
        }
        let name_regex = match &rule.name_regex {
            Some(p) => Some(Regex::new(p).map_err(|e| format!("{place}.name_regex `{p}` is invalid: {e}"))?),
            None => None,
        };
        let tag = match &rule.tag {
            Some(t) => Some(parse_tag_match(t).map_err(|e| format!("{place}.tag: {e}"))?),
            None => None,
        };
        let mut principals = Vec::new();
        for group in &rule.groups {
            let members = groups.get(group).ok_or_else(|| format!("{place} names unknown group `{group}`"))?;
            principals.extend(members.iter().map(|p| (p.clone(), Some(group.clone()))));
        }
        for text in &rule.principals {
            let principal = parse_principal(text).map_err(|e| format!("{place}.principals: {e}"))?;
            public_ok(&principal, &format!("{place}.principals"))?;
            principals.push((principal, None));
        }
        let mut selectors = Vec::new();
        if let Some(p) = &rule.name_regex {
            selectors.push(format!("name ~ {p}"));
        }
        if let Some(t) = &rule.tag {
            selectors.push(format!("tag {t}"));
        }
        rules.push(Rule { name_regex, tag, label: format!("{place} ({})", selectors.join(", ")), principals });
    }
    let mut allowed = BTreeSet::new();
    for text in &raw.allowed {
        match parse_principal(text).map_err(|e| format!("allowed: {e}"))? {
            Principal::Public => return Err("allowed must not list `public`; set allow_public = true instead".into()),
            principal => allowed.insert(principal.as_str().to_string()),
        };
    }
    Ok(Config {
        groups,
        share_tag: raw.share_tag,
        rules,
        allowed,
        allow_public: raw.allow_public,
        report_only: raw.report_only,
    })
}

/// `key` (any value) or `key=value`.
fn parse_tag_match(text: &str) -> Result<(String, Option<String>), String> {
    let (key, value) = match text.split_once('=') {
        Some((key, value)) => (key, Some(value.to_string())),
        None => (text, None),
    };
    if key.trim().is_empty() {
        return Err(format!("`{text}` has an empty tag key"));
    }
    Ok((key.to_string(), value))
}

/// A principal from its text: a 12-digit account id, an organization or OU ARN, or `public`.
pub fn parse_principal(text: &str) -> Result<Principal, String> {
    if text == "public" {
        Ok(Principal::Public)
    } else if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(Principal::Account(text.into()))
    } else if let Some(kind) = organization_arn(text) {
        Ok(match kind {
            OrgArn::Organization => Principal::Organization(text.into()),
            OrgArn::Unit => Principal::OrganizationalUnit(text.into()),
        })
    } else {
        Err(format!(
            "`{text}` is not a principal (a 12-digit account id, an organization ARN \
             arn:aws:organizations::ACCOUNT:organization/o-ID, an OU ARN \
             arn:aws:organizations::ACCOUNT:ou/o-ID/ou-ID, or public)"
        ))
    }
}

/// What an organization ARN names.
#[derive(Debug, PartialEq)]
pub(crate) enum OrgArn {
    Organization,
    Unit,
}

/// Whether `text` is `arn:aws(-[a-z]+)*:organizations::` and a 12-digit account, then
/// `organization/o-[a-z0-9]+` or `ou/o-[a-z0-9]+/ou-[a-z0-9]+-[a-z0-9]+`. Checked by hand:
/// regexes compiled for it were paid in every fresh instance, so by every live event
/// (docs/design-notes.md).
pub(crate) fn organization_arn(text: &str) -> Option<OrgArn> {
    let word = |s: &str, digits: bool| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || (digits && b.is_ascii_digit()))
    };
    let (partition, rest) = text.strip_prefix("arn:aws")?.split_once(':')?;
    let (account, resource) = rest.strip_prefix("organizations::")?.split_once(':')?;
    let partition_ok = partition.is_empty() || partition.strip_prefix('-')?.split('-').all(|w| word(w, false));
    if !partition_ok || account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(org) = resource.strip_prefix("organization/o-") {
        return word(org, true).then_some(OrgArn::Organization);
    }
    let (org, unit) = resource.strip_prefix("ou/o-")?.split_once('/')?;
    let (root, unit) = unit.strip_prefix("ou-")?.split_once('-')?;
    (word(org, true) && word(root, true) && word(unit, true)).then_some(OrgArn::Unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(json: &str) -> String {
        amiwarden_sdk::testing::invalid_config_message(Config::parse(json))
    }

    #[test]
    fn principals_are_read_from_their_text() {
        let org = "arn:aws:organizations::123456789012:organization/o-abc";
        let ou = "arn:aws:organizations::123456789012:ou/o-abc/ou-ab12-cdef3456";
        assert_eq!(parse_principal("123456789012"), Ok(Principal::Account("123456789012".into())));
        assert_eq!(parse_principal(org), Ok(Principal::Organization(org.into())));
        assert_eq!(parse_principal(ou), Ok(Principal::OrganizationalUnit(ou.into())));
        assert_eq!(parse_principal("public"), Ok(Principal::Public));
        for bad in ["12345678901", "1234567890123", "all", "arn:aws:organizations::123:organization/o-abc", ""] {
            assert!(parse_principal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_organization_arn_is_what_the_patterns_say_without_compiling_them() {
        let org = Regex::new(r"^arn:aws(-[a-z]+)*:organizations::[0-9]{12}:organization/o-[a-z0-9]+$").unwrap();
        let ou =
            Regex::new(r"^arn:aws(-[a-z]+)*:organizations::[0-9]{12}:ou/o-[a-z0-9]+/ou-[a-z0-9]+-[a-z0-9]+$").unwrap();
        let account = "123456789012";
        let mut texts = vec![String::new(), "arn:aws".into(), "public".into(), account.into()];
        for partition in ["aws", "aws-cn", "aws-us-gov", "aws-", "aws--cn", "aws-CN", "aws-c1", "awscn", "azure"] {
            for acct in [account, "12345678901", "1234567890123", "12345678901x", ""] {
                for resource in [
                    "organization/o-abc123",
                    "organization/o-",
                    "organization/o-ab/c",
                    "organization/o-AB",
                    "organization/abc",
                    "ou/o-abc/ou-ab12-cdef3456",
                    "ou/o-abc/ou-ab12cdef3456",
                    "ou/o-abc/ou-ab12-cdef-3456",
                    "ou/o-abc/ou--cdef",
                    "ou/o-abc/ou-ab12-",
                    "ou/o-/ou-ab12-cdef",
                    "ou/o-abc/ab12-cdef",
                    "ou/o-abc",
                    "ou/o-abc/ou-ab12-cdef/x",
                    "ou/o-abc/ou-ab12-cd:ef",
                ] {
                    texts.push(format!("arn:{partition}:organizations::{acct}:{resource}"));
                }
            }
        }
        texts.push(format!("arn:aws:organizations:us-east-1:{account}:organization/o-abc"));
        texts.push(format!("arn:aws:iam::{account}:organization/o-abc"));
        for text in &texts {
            let want = if org.is_match(text) {
                Some(OrgArn::Organization)
            } else if ou.is_match(text) {
                Some(OrgArn::Unit)
            } else {
                None
            };
            assert_eq!(organization_arn(text), want, "{text}");
        }
        assert!(texts.iter().filter(|t| organization_arn(t).is_some()).count() >= 6);
    }

    #[test]
    fn public_is_only_desired_or_allowed_with_allow_public() {
        let msg = error_of(r#"{"groups":{"world":["public"]}}"#);
        assert!(msg.contains("groups.world lists `public`"), "{msg}");
        assert!(Config::parse(r#"{"groups":{"world":["public"]},"allow_public":true}"#).is_ok());
        let msg = error_of(r#"{"allowed":["public"],"allow_public":true}"#);
        assert!(msg.contains("set allow_public = true instead"), "{msg}");
    }

    #[test]
    fn rules_must_select_something_and_share_with_someone() {
        assert!(
            error_of(r#"{"rules":[{"principals":["123456789012"]}]}"#).contains("rules[0] needs name_regex or tag")
        );
        assert!(error_of(r#"{"rules":[{"tag":"x"}]}"#).contains("rules[0] needs groups or principals"));
        assert!(error_of(r#"{"rules":[{"tag":"x","groups":["prod"]}]}"#).contains("unknown group `prod`"));
        assert!(error_of(r#"{"rules":[{"name_regex":"(","principals":["123456789012"]}]}"#).contains("is invalid"));
    }

    #[test]
    fn a_malformed_principal_names_where_it_is() {
        let msg = error_of(r#"{"groups":{"prod":["22222222222"]}}"#);
        assert!(msg.starts_with("groups.prod: `22222222222` is not a principal"), "{msg}");
        assert!(error_of(r#"{"allowed":["x"]}"#).starts_with("allowed: "));
        assert!(error_of(r#"{"alowed":[]}"#).contains("unknown field `alowed`"));
    }
}
