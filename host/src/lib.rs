//! amiwarden: a WebAssembly plugin-driven policy engine for Amazon Machine Images.

pub mod inventory;
pub mod model;
pub mod plugin;
