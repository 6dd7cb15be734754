//! amiwarden: a WebAssembly plugin-driven policy engine for Amazon Machine Images.

pub mod aws;
pub mod backend;
pub mod config;
pub mod cost;
pub mod inventory;
pub mod model;
pub mod plan;
pub mod plugin;
