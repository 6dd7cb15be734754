//! The retention plugin's configuration, parsed and checked once at `configure`.

use amiwarden_sdk::family::{Family, FamilySpec};
use amiwarden_sdk::prelude::*;
use serde::Deserialize;

/// The JSON config as written in the policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    family: FamilySpec,
    keep_newest: u32,
    deprecate_after_days: Option<u32>,
    disable_after_days: Option<u32>,
    deregister_after_days: Option<u32>,
    #[serde(default)]
    delete_snapshots: bool,
    #[serde(default)]
    exempt_tags: Vec<String>,
    #[serde(default = "default_in_use_window_days")]
    in_use_window_days: u32,
}

fn default_in_use_window_days() -> u32 {
    30
}

/// A tag that exempts an image: `key` (any value) or `key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exemption {
    pub key: String,
    pub value: Option<String>,
}

impl Exemption {
    fn parse(text: &str) -> Result<Self, String> {
        let (key, value) = match text.split_once('=') {
            Some((key, value)) => (key, Some(value.to_string())),
            None => (text, None),
        };
        if key.trim().is_empty() {
            return Err(format!("exempt_tags entry `{text}` has an empty key"));
        }
        Ok(Exemption { key: key.to_string(), value })
    }

    /// The exemption's text if the image carries it.
    pub fn matched_by(&self, image: &Image) -> Option<String> {
        let value = image.tag(&self.key)?;
        match &self.value {
            Some(want) if want != value => None,
            _ => Some(format!("{}={value}", self.key)),
        }
    }
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub family: Family,
    pub keep_newest: usize,
    pub deprecate_after: Option<Timestamp>,
    pub disable_after: Option<Timestamp>,
    pub deregister_after: Option<Timestamp>,
    pub delete_snapshots: bool,
    pub exemptions: Vec<Exemption>,
    pub in_use_window: Timestamp,
}

impl Config {
    /// Parses and checks the JSON config.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let raw: RawConfig = parse_config(text)?;
        let invalid = |msg: String| PolicyError::InvalidConfig(msg);
        let family = Family::compile(&raw.family).map_err(invalid)?;
        let stages = [
            ("deprecate_after_days", raw.deprecate_after_days),
            ("disable_after_days", raw.disable_after_days),
            ("deregister_after_days", raw.deregister_after_days),
        ];
        if stages.iter().all(|(_, days)| days.is_none()) {
            return Err(invalid(
                "set at least one of deprecate_after_days, disable_after_days, deregister_after_days".into(),
            ));
        }
        let set: Vec<(&str, u32)> = stages.iter().filter_map(|(k, d)| d.map(|d| (*k, d))).collect();
        for pair in set.windows(2) {
            let ((k1, d1), (k2, d2)) = (pair[0], pair[1]);
            if d1 > d2 {
                return Err(invalid(format!("{k1} ({d1}) must not be greater than {k2} ({d2})")));
            }
        }
        let exemptions =
            raw.exempt_tags.iter().map(|t| Exemption::parse(t)).collect::<Result<_, _>>().map_err(invalid)?;
        let days = |d: Option<u32>| d.map(|d| Timestamp::from(d) * DAY);
        Ok(Config {
            family,
            keep_newest: raw.keep_newest as usize,
            deprecate_after: days(raw.deprecate_after_days),
            disable_after: days(raw.disable_after_days),
            deregister_after: days(raw.deregister_after_days),
            delete_snapshots: raw.delete_snapshots,
            exemptions,
            in_use_window: Timestamp::from(raw.in_use_window_days) * DAY,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(json: &str) -> String {
        amiwarden_sdk::testing::invalid_config_message(Config::parse(json))
    }

    #[test]
    fn stages_out_of_order_are_rejected() {
        let msg = error_of(
            r#"{"family":{"tag":"family"},"keep_newest":2,"deprecate_after_days":90,"deregister_after_days":30}"#,
        );
        assert!(msg.contains("deprecate_after_days (90) must not be greater than deregister_after_days (30)"), "{msg}");
    }

    #[test]
    fn a_config_without_any_stage_is_rejected() {
        let msg = error_of(r#"{"family":{"tag":"family"},"keep_newest":2}"#);
        assert!(msg.contains("at least one"), "{msg}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let msg = error_of(r#"{"family":{"tag":"family"},"keep_newest":2,"deregister_after_days":3,"keep":1}"#);
        assert!(msg.contains("unknown field `keep`"), "{msg}");
    }

    #[test]
    fn exemptions_match_a_key_or_a_key_and_value() {
        let any = Exemption::parse("keep").expect("valid");
        let exact = Exemption::parse("keep=forever").expect("valid");
        assert_eq!(any, Exemption { key: "keep".into(), value: None });
        assert_eq!(exact.value.as_deref(), Some("forever"));
        assert!(Exemption::parse("=x").is_err());
    }
}
