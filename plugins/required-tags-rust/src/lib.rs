//! Required tags, the reference policy written in every guest language: an available
//! image that misses a required tag is marked (or deprecated); once it carries them all,
//! the marker the plugin wrote is taken off again.
//!
//! The Python (`plugins/required-tags-py`) and JavaScript (`plugins/required-tags-js`)
//! versions behave the same; `tests/conformance` holds the cases all three must pass.

mod config;

use amiwarden_sdk::ImageState;
use amiwarden_sdk::prelude::*;
pub use config::{Config, Misbehave, Remedy};

/// The prefix of every marker value this plugin writes; it only removes markers with it.
pub const MARKER_PREFIX: &str = "missing:";

/// The required-tags policy.
#[derive(Default)]
pub struct RequiredTags {
    config: Config,
}

impl Policy for RequiredTags {
    fn info() -> PluginInfo {
        PluginInfo::new("required-tags", env!("CARGO_PKG_VERSION")).proposes([
            ActionKind::Tag,
            ActionKind::Untag,
            ActionKind::Deprecate,
        ])
    }

    fn configure(&mut self, config: &str) -> Result<(), PolicyError> {
        self.config = Config::parse(config)?;
        Ok(())
    }

    fn propose(&self, event: &ImageEvent) -> Result<Vec<Proposal>, PolicyError> {
        if let Some(mode) = self.config.misbehave {
            misbehave(mode)?;
        }
        Ok(evaluate(&self.config, &event.image).into_iter().collect())
    }
}

/// The one proposal (if any) for `image`.
pub fn evaluate(config: &Config, image: &Image) -> Option<Proposal> {
    if image.state != ImageState::Available {
        return None;
    }
    let missing: Vec<&str> =
        config.required.iter().map(String::as_str).filter(|k| image.tag(k).is_none_or(str::is_empty)).collect();
    let marker = image.tag(&config.marker_tag);
    if missing.is_empty() {
        let stale = marker.filter(|m| m.starts_with(MARKER_PREFIX))?;
        let reason = format!(
            "carries every required tag ({}); the marker {}={stale} is stale",
            config.required.join(", "),
            config.marker_tag
        );
        return Some(Proposal::new(&image.id, Action::Untag(vec![config.marker_tag.clone()]), reason));
    }
    let reason = format!("missing required tags: {}", missing.join(", "));
    log(LogLevel::Debug, &format!("{} {reason}", image.id));
    match config.remedy {
        Remedy::Tag => {
            let value = format!("{MARKER_PREFIX}{}", missing.join(","));
            if marker == Some(value.as_str()) {
                return None;
            }
            Some(Proposal::new(&image.id, Action::Tag(vec![Tag::new(&config.marker_tag, &value)]), reason))
        }
        Remedy::Deprecate => {
            let at = image.creation_time + config.deprecate_after_days * DAY;
            if image.deprecation_time.is_some_and(|t| t <= at) {
                return None;
            }
            let reason = format!("{reason}; deprecated {} days after creation", config.deprecate_after_days);
            Some(Proposal::new(&image.id, Action::DeprecateAt(at), reason))
        }
    }
}

/// Misbehaves on purpose, so the conformance suite can check every language's sandbox.
fn misbehave(mode: Misbehave) -> Result<(), PolicyError> {
    match mode {
        Misbehave::Loop => loop {
            std::hint::black_box(0u8);
        },
        Misbehave::Alloc => {
            let mut blocks = Vec::new();
            loop {
                blocks.push(std::hint::black_box(vec![1u8; 1 << 20]));
            }
        }
        Misbehave::Trap => panic!("required-tags traps on purpose (misbehave = trap)"),
        Misbehave::ReadFile => match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => Err(PolicyError::Failed(format!("reading /etc/passwd succeeded: {} bytes", text.len()))),
            Err(err) => Err(PolicyError::Failed(format!("reading /etc/passwd denied: {err}"))),
        },
    }
}

export_policy!(RequiredTags);

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = 1_795_000_000;

    fn image(tags: &[(&str, &str)]) -> Image {
        let mut image = Image::new("ami-0123456789abcdef0", "111111111111", "us-east-1", "golden", NOW - 10 * DAY);
        for (k, v) in tags {
            image.set_tag(k, v);
        }
        image
    }

    fn action(config: &Config, image: &Image) -> Option<Action> {
        evaluate(config, image).map(|p| p.action)
    }

    fn marker(value: &str) -> Option<Action> {
        Some(Action::Tag(vec![Tag::new("compliance", value)]))
    }

    #[test]
    fn missing_tags_are_marked_in_config_order() {
        let config = Config::default();
        assert_eq!(action(&config, &image(&[])), marker("missing:owner,cost-center"));
        assert_eq!(action(&config, &image(&[("owner", "ops")])), marker("missing:cost-center"));
        assert_eq!(action(&config, &image(&[("owner", ""), ("cost-center", "42")])), marker("missing:owner"));
    }

    #[test]
    fn a_current_marker_needs_nothing_and_a_stale_one_is_removed() {
        let config = Config::default();
        assert_eq!(action(&config, &image(&[("compliance", "missing:cost-center"), ("owner", "ops")])), None);
        let compliant = image(&[("owner", "ops"), ("cost-center", "42"), ("compliance", "missing:owner")]);
        assert_eq!(action(&config, &compliant), Some(Action::Untag(vec!["compliance".into()])));
        let foreign = image(&[("owner", "ops"), ("cost-center", "42"), ("compliance", "pci")]);
        assert_eq!(action(&config, &foreign), None);
    }

    #[test]
    fn deprecate_mode_deprecates_after_the_configured_days_once() {
        let config = Config { remedy: Remedy::Deprecate, deprecate_after_days: 30, ..Config::default() };
        let mut img = image(&[]);
        let at = img.creation_time + 30 * DAY;
        assert_eq!(action(&config, &img), Some(Action::DeprecateAt(at)));
        img.deprecation_time = Some(at - DAY);
        assert_eq!(action(&config, &img), None);
        img.deprecation_time = Some(at + DAY);
        assert_eq!(action(&config, &img), Some(Action::DeprecateAt(at)));
    }

    #[test]
    fn images_that_are_not_available_are_left_alone() {
        let mut img = image(&[]);
        for state in [ImageState::Pending, ImageState::Failed, ImageState::Disabled, ImageState::Deregistered] {
            img.state = state;
            assert_eq!(action(&Config::default(), &img), None);
        }
    }
}
