//! amiwarden: a WebAssembly plugin-driven policy engine for Amazon Machine Images.

pub mod apply;
pub mod aws;
pub mod backend;
pub mod builtin;
pub mod cases;
pub mod cli;
pub mod config;
pub mod cost;
pub mod enforce;
pub mod error;
pub mod event;
pub mod explain;
pub mod files;
pub mod inventory;
pub mod model;
pub mod pacing;
pub mod plan;
pub mod plugin;
pub mod render;
pub mod resolve;
pub mod run;
pub mod scaffold;
pub mod serve;
pub mod sim;
