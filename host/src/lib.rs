//! amiwarden: a WebAssembly plugin-driven policy engine for Amazon Machine Images.

pub mod apply;
pub mod backend;
pub mod builtin;
pub mod cases;
pub mod cli;
pub mod config;
pub mod cost;
pub mod engine;
pub mod event;
pub mod inventory;
pub mod model;
pub mod plan;
pub mod plugin;
pub mod render;
pub mod resolve;
pub mod run;
pub mod sim;

/// The AWS backend, once compiled in (see `aws`).
pub fn aws_backend(
    _policy: &config::Policy,
    _profile: Option<String>,
    _endpoint_url: Option<String>,
) -> anyhow::Result<Box<dyn backend::Backend>> {
    anyhow::bail!("the AWS backend is not available in this build")
}
