//! {{name}}: marks available images that lack an `owner` tag.

use amiwarden_sdk::prelude::*;
use serde::Deserialize;

/// The policy and its config (from the policy file's `[plugin.config]`).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Starter {
    /// The tag every image must carry.
    required: Option<String>,
}

impl Policy for Starter {
    fn info() -> PluginInfo {
        // A policy that implements `review` adds `.reviews()`, or `review` is never called.
        PluginInfo::new("{{name}}", env!("CARGO_PKG_VERSION")).proposes([ActionKind::Tag])
    }

    fn configure(&mut self, config: &str) -> Result<(), PolicyError> {
        *self = parse_config(config)?;
        Ok(())
    }

    fn propose(&self, event: &ImageEvent) -> Result<Vec<Proposal>, PolicyError> {
        let image = &event.image;
        let required = self.required.as_deref().unwrap_or("owner");
        if image.state != ImageState::Available || image.tag(required).is_some() || image.tag("compliance").is_some() {
            return Ok(Vec::new());
        }
        let tags = vec![Tag::new("compliance", &format!("missing:{required}"))];
        Ok(vec![Proposal::new(&image.id, Action::Tag(tags), format!("no `{required}` tag"))])
    }
}

export_policy!(Starter);
