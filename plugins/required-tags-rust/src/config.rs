//! The required-tags configuration, validated by hand so that the Python and JavaScript
//! versions of this plugin can give the very same messages.

use amiwarden_sdk::PolicyError;
use serde_json::{Map, Value};

/// Config keys, in the order the messages list them.
const KEYS: [&str; 5] = ["required", "action", "deprecate_after_days", "marker_tag", "misbehave"];

/// What to do with an image that misses a required tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Tag it `marker_tag = missing:KEY,KEY`.
    Tag,
    /// Deprecate it `deprecate_after_days` after its creation.
    Deprecate,
}

/// A way to misbehave on purpose, for the sandbox conformance cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehave {
    Loop,
    Alloc,
    Trap,
    ReadFile,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub required: Vec<String>,
    pub remedy: Remedy,
    pub deprecate_after_days: i64,
    pub marker_tag: String,
    pub misbehave: Option<Misbehave>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            required: vec!["owner".into(), "cost-center".into()],
            remedy: Remedy::Tag,
            deprecate_after_days: 30,
            marker_tag: "compliance".into(),
            misbehave: None,
        }
    }
}

fn invalid(message: impl Into<String>) -> PolicyError {
    PolicyError::InvalidConfig(message.into())
}

impl Config {
    /// Parses the JSON text from the policy file; `null`, empty text and `{}` give the defaults.
    pub fn parse(text: &str) -> Result<Config, PolicyError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let value: Value = serde_json::from_str(text).map_err(|e| invalid(format!("config is not valid JSON: {e}")))?;
        match value {
            Value::Null => Ok(Config::default()),
            Value::Object(map) => Config::from_map(&map),
            _ => Err(invalid("config must be a JSON object")),
        }
    }

    fn from_map(map: &Map<String, Value>) -> Result<Config, PolicyError> {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        if let Some(unknown) = keys.into_iter().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(invalid(format!("unknown config key `{unknown}`; expected one of {}", KEYS.join(", "))));
        }
        let mut config = Config::default();
        if let Some(v) = map.get("required") {
            config.required = required(v)?;
        }
        if let Some(v) = map.get("action") {
            config.remedy = match v.as_str() {
                Some("tag") => Remedy::Tag,
                Some("deprecate") => Remedy::Deprecate,
                _ => return Err(invalid("`action` must be \"tag\" or \"deprecate\"")),
            };
        }
        if let Some(v) = map.get("deprecate_after_days") {
            config.deprecate_after_days = match v.as_f64() {
                Some(days) if days.fract() == 0.0 && (0.0..=3650.0).contains(&days) => days as i64,
                _ => return Err(invalid("`deprecate_after_days` must be a whole number of days from 0 to 3650")),
            };
        }
        if let Some(v) = map.get("marker_tag") {
            config.marker_tag = match v.as_str() {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => return Err(invalid("`marker_tag` must be a non-empty tag key")),
            };
        }
        if config.required.contains(&config.marker_tag) {
            return Err(invalid(format!("`marker_tag` `{}` is also a required tag", config.marker_tag)));
        }
        if let Some(v) = map.get("misbehave") {
            config.misbehave = Some(match v.as_str() {
                Some("loop") => Misbehave::Loop,
                Some("alloc") => Misbehave::Alloc,
                Some("trap") => Misbehave::Trap,
                Some("read-file") => Misbehave::ReadFile,
                _ => return Err(invalid("`misbehave` must be one of loop, alloc, trap, read-file")),
            });
        }
        Ok(config)
    }
}

fn required(v: &Value) -> Result<Vec<String>, PolicyError> {
    let shape = || invalid("`required` must be a non-empty list of non-empty tag keys");
    let list = v.as_array().filter(|l| !l.is_empty()).ok_or_else(shape)?;
    let mut keys: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        let key = item.as_str().filter(|k| !k.is_empty()).ok_or_else(shape)?;
        if keys.iter().any(|k| k == key) {
            return Err(invalid(format!("`required` lists `{key}` twice")));
        }
        keys.push(key.to_string());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> String {
        match Config::parse(text) {
            Err(PolicyError::InvalidConfig(m)) => m,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn empty_null_and_empty_object_give_the_defaults() {
        for text in ["", "  ", "null", "{}"] {
            assert_eq!(Config::parse(text).ok(), Some(Config::default()), "{text}");
        }
    }

    #[test]
    fn every_key_is_read() {
        let text = r#"{"required":["team"],"action":"deprecate","deprecate_after_days":7.0,"marker_tag":"c","misbehave":"trap"}"#;
        let config = Config::parse(text).expect("valid");
        assert_eq!(config.required, ["team"]);
        assert_eq!(config.remedy, Remedy::Deprecate);
        assert_eq!(config.deprecate_after_days, 7);
        assert_eq!(config.marker_tag, "c");
        assert_eq!(config.misbehave, Some(Misbehave::Trap));
    }

    #[test]
    fn bad_configs_are_refused_with_the_shared_messages() {
        let table = [
            ("[]", "config must be a JSON object"),
            (r#"{"requried":[]}"#, "unknown config key `requried`"),
            (r#"{"required":[]}"#, "`required` must be a non-empty list"),
            (r#"{"required":["a",""]}"#, "`required` must be a non-empty list"),
            (r#"{"required":["a","a"]}"#, "`required` lists `a` twice"),
            (r#"{"action":"delete"}"#, "`action` must be \"tag\" or \"deprecate\""),
            (r#"{"deprecate_after_days":1.5}"#, "`deprecate_after_days` must be a whole number"),
            (r#"{"deprecate_after_days":-1}"#, "`deprecate_after_days` must be a whole number"),
            (r#"{"marker_tag":""}"#, "`marker_tag` must be a non-empty tag key"),
            (r#"{"marker_tag":"owner"}"#, "`marker_tag` `owner` is also a required tag"),
            (r#"{"misbehave":"explode"}"#, "`misbehave` must be one of"),
            ("{", "config is not valid JSON"),
        ];
        for (text, needle) in table {
            let m = message(text);
            assert!(m.contains(needle), "{text}: {m}");
        }
    }
}
