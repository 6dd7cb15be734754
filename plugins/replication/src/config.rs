//! The replication plugin's configuration: what to copy, where, how, and what to name it.

use amiwarden_sdk::prelude::*;
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    source_regions: Vec<String>,
    select: RawSelector,
    targets: BTreeMap<String, RawTarget>,
    #[serde(default = "yes")]
    copy_tags: bool,
    #[serde(default = "default_name")]
    name: String,
    #[serde(default)]
    delete_snapshots: bool,
    #[serde(default = "default_in_use_window_days")]
    in_use_window_days: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    tag: Option<String>,
    /// Several tags, all of which must match (`["family=base", "replicate=true"]`).
    #[serde(default)]
    tags: Vec<String>,
    name_regex: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(default)]
    encrypted: bool,
    kms_key_id: Option<String>,
}

fn yes() -> bool {
    true
}

fn default_name() -> String {
    "{name}".into()
}

fn default_in_use_window_days() -> u32 {
    30
}

/// Which images are replicated: every selector set must match.
#[derive(Debug, Clone)]
pub struct Selector {
    /// Every (key, value or any) must match.
    tags: Vec<(String, Option<String>)>,
    name_regex: Option<Regex>,
    /// How reasons name the selector.
    pub label: String,
}

impl Selector {
    pub fn selects(&self, image: &Image) -> bool {
        self.name_regex.as_ref().is_none_or(|r| r.is_match(&image.name))
            && self.tags.iter().all(|(key, want)| match image.tag(key) {
                None => false,
                Some(value) => want.as_ref().is_none_or(|w| w == value),
            })
    }
}

/// How copies into one region are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
}

/// One piece of the copy-name template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Name,
    Region,
    SourceRegion,
    Id,
}

/// The copy-name template: `{name}`, `{region}`, `{source_region}`, `{id}`; `{{`/`}}` escape braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate(Vec<Piece>);

impl NameTemplate {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut field = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => field.push(c),
                            None => return Err(format!("name `{text}` has an unclosed `{{`")),
                        }
                    }
                    let piece = match field.as_str() {
                        "name" => Piece::Name,
                        "region" => Piece::Region,
                        "source_region" => Piece::SourceRegion,
                        "id" => Piece::Id,
                        other => {
                            return Err(format!(
                                "name `{text}` uses unknown placeholder `{{{other}}}` \
                                 (known: {{name}}, {{region}}, {{source_region}}, {{id}})"
                            ));
                        }
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(piece);
                }
                '}' => return Err(format!("name `{text}` has a `}}` without `{{` (write `}}}}` for a brace)")),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(NameTemplate(pieces))
    }

    /// The copy's name for `image` copied into `region`.
    pub fn render(&self, image: &Image, region: &str) -> String {
        self.0
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.as_str(),
                Piece::Name => image.name.as_str(),
                Piece::Region => region,
                Piece::SourceRegion => image.region.as_str(),
                Piece::Id => image.id.as_str(),
            })
            .collect()
    }
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source_regions: Vec<String>,
    pub select: Selector,
    pub targets: BTreeMap<String, Target>,
    pub copy_tags: bool,
    pub name: NameTemplate,
    pub delete_snapshots: bool,
    pub in_use_window: Timestamp,
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        parse_checked::<RawConfig, _>(text, check)
    }
}

/// A region name, like eu-west-1 or us-gov-west-1: `[a-z]{2}(-[a-z]+)+-[0-9]+`. Checked by
/// hand: a regex compiled for it was most of a fresh instance's configuration, paid by
/// every live event (BENCHMARKS §14).
pub(crate) fn is_region_name(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let letters = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    let Some((last, rest)) = parts.split_last() else { return false };
    rest.len() >= 2
        && rest[0].len() == 2
        && rest.iter().all(letters)
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
}

fn check(raw: RawConfig) -> Result<Config, String> {
    if raw.source_regions.is_empty() {
        return Err("source_regions must name at least one region".into());
    }
    for region in raw.source_regions.iter().chain(raw.targets.keys()) {
        if !is_region_name(region) {
            return Err(format!("`{region}` is not a region name (like eu-west-1)"));
        }
    }
    if raw.targets.is_empty() {
        return Err("targets must name at least one region".into());
    }
    let mut targets = BTreeMap::new();
    for (region, target) in raw.targets {
        if let Some(key) = &target.kms_key_id {
            if !target.encrypted {
                return Err(format!("targets.{region}: kms_key_id needs encrypted = true"));
            }
            if let Some(key_region) = key.strip_prefix("arn:").and_then(|rest| rest.split(':').nth(2))
                && key_region != region
            {
                return Err(format!("targets.{region}: kms_key_id {key} is a key in {key_region}, not in {region}"));
            }
        }
        targets.insert(region, Target { encrypted: target.encrypted, kms_key_id: target.kms_key_id });
    }
    let texts: Vec<&String> = raw.select.tag.iter().chain(&raw.select.tags).collect();
    if texts.is_empty() && raw.select.name_regex.is_none() {
        return Err("select needs tag, tags or name_regex (every one set must match)".into());
    }
    let mut tags = Vec::new();
    for text in &texts {
        let (key, value) = match text.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (text.to_string(), None),
        };
        if key.trim().is_empty() {
            return Err(format!("select: tag `{text}` has an empty key"));
        }
        tags.push((key, value));
    }
    let name_regex = match &raw.select.name_regex {
        Some(p) => Some(Regex::new(p).map_err(|e| format!("select.name_regex `{p}` is invalid: {e}"))?),
        None => None,
    };
    let mut label = Vec::new();
    for t in &texts {
        label.push(format!("tag {t}"));
    }
    if let Some(p) = &raw.select.name_regex {
        label.push(format!("name ~ {p}"));
    }
    Ok(Config {
        source_regions: raw.source_regions,
        select: Selector { tags, name_regex, label: label.join(" and ") },
        targets,
        copy_tags: raw.copy_tags,
        name: NameTemplate::parse(&raw.name)?,
        delete_snapshots: raw.delete_snapshots,
        in_use_window: Timestamp::from(raw.in_use_window_days) * DAY,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""source_regions":["us-east-1"],"select":{"tag":"replicate=true"}"#;

    fn error_of(json: &str) -> String {
        amiwarden_sdk::testing::invalid_config_message(Config::parse(json))
    }

    #[test]
    fn the_name_template_fills_every_placeholder() {
        let template = NameTemplate::parse("{name} ({region}, from {source_region} {id}) {{x}}").expect("valid");
        let image = Image::new("ami-0a1b2c3d4e5f60001", "111111111111", "us-east-1", "golden-web-1", 0);
        assert_eq!(
            template.render(&image, "eu-west-1"),
            "golden-web-1 (eu-west-1, from us-east-1 ami-0a1b2c3d4e5f60001) {x}"
        );
    }

    #[test]
    fn a_bad_name_template_is_rejected() {
        let error_of = |text: &str| NameTemplate::parse(text).err().unwrap_or_default();
        assert!(error_of("{nmae}").contains("unknown placeholder `{nmae}`"));
        assert!(error_of("{name").contains("unclosed"));
        assert!(error_of("name}").contains("without"));
    }

    #[test]
    fn a_kms_key_must_be_encrypted_and_in_its_target_region() {
        let plain = format!(r#"{{{BASE},"targets":{{"eu-west-1":{{"kms_key_id":"alias/x"}}}}}}"#);
        assert!(error_of(&plain).contains("needs encrypted = true"));
        let key = "arn:aws:kms:us-east-1:111111111111:key/abcd";
        let elsewhere = format!(r#"{{{BASE},"targets":{{"eu-west-1":{{"encrypted":true,"kms_key_id":"{key}"}}}}}}"#);
        assert!(error_of(&elsewhere).contains("is a key in us-east-1, not in eu-west-1"));
    }

    #[test]
    fn selectors_regions_and_targets_are_required() {
        let none = r#"{"source_regions":["us-east-1"],"select":{},"targets":{"eu-west-1":{}}}"#;
        assert!(error_of(none).contains("select needs tag, tags or name_regex"));
        assert!(error_of(&format!(r#"{{{BASE},"targets":{{}}}}"#)).contains("targets must name"));
        assert!(error_of(&format!(r#"{{{BASE},"targets":{{"Europe":{{}}}}}}"#)).contains("`Europe` is not a region"));
    }

    #[test]
    fn every_tag_a_selector_names_must_match() {
        let config = Config::parse(
            r#"{"source_regions":["us-east-1"],"select":{"tags":["family=base","replicate=true"],"name_regex":"^golden-"},
                "targets":{"eu-west-1":{}}}"#,
        )
        .expect("valid");
        let image = |name: &str, tags: &[(&str, &str)]| {
            let mut image = Image::new("ami-0a1b2c3d4e5f60001", "111111111111", "us-east-1", name, 0);
            for (k, v) in tags {
                image.set_tag(k, v);
            }
            image
        };
        let both = [("family", "base"), ("replicate", "true")];
        let rows = [
            ("both tags and the name", image("golden-base-1", &both), true),
            ("one tag only", image("golden-base-1", &[("family", "base")]), false),
            ("another value", image("golden-base-1", &[("family", "web"), ("replicate", "true")]), false),
            ("not the name", image("base-1", &both), false),
        ];
        for (name, image, want) in rows {
            assert_eq!(config.select.selects(&image), want, "{name}");
        }
        assert_eq!(config.select.label, "tag family=base and tag replicate=true and name ~ ^golden-");
        let empty_key = r#"{"source_regions":["us-east-1"],"select":{"tags":["=x"]},"targets":{"eu-west-1":{}}}"#;
        assert!(error_of(empty_key).contains("select: tag `=x` has an empty key"));
    }
}
