//! How a plugin failed: domain values, recorded in plans and matched by callers. A
//! failing plugin fails closed: every destructive action on the image is blocked.

use serde::{Deserialize, Serialize};

/// Which call of the contract failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Load,
    Configure,
    Propose,
    Review,
}

/// The kind of an expected failure a plugin reported itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyErrorKind {
    InvalidConfig,
    InvalidEvent,
    Failed,
}

/// Why a plugin call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "cause", content = "detail")]
pub enum PluginFailure {
    #[error("ran past its time budget of {0} ms")]
    Timeout(u64),
    #[error("hit its memory cap of {0} MiB")]
    OutOfMemory(u64),
    #[error("made the host work past its time budget of {0} ms (queries returning too many images)")]
    HostWork(u64),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("reported {0:?}: {1}")]
    Policy(PolicyErrorKind, String),
    #[error("returned malformed output: {0}")]
    Malformed(String),
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
}

/// A plugin failure, recorded against the plugin and (when known) the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, schemars::JsonSchema)]
#[error("plugin `{plugin}` {stage_text}{image_text}: {failure}", stage_text = stage_text(*.stage), image_text = image_text(.image))]
pub struct PluginError {
    pub plugin: String,
    pub stage: Stage,
    pub image: Option<String>,
    pub failure: PluginFailure,
}

fn stage_text(stage: Stage) -> &'static str {
    match stage {
        Stage::Load => "failed to load",
        Stage::Configure => "rejected its configuration",
        Stage::Propose => "failed in propose",
        Stage::Review => "failed in review",
    }
}

fn image_text(image: &Option<String>) -> String {
    image.as_ref().map(|i| format!(" on image {i}")).unwrap_or_default()
}
