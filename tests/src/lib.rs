//! Paths of the guest plugins the build script compiled, for the end-to-end tests.

/// The plugin that misbehaves on demand.
pub const HOSTILE: &str = env!("GUEST_HOSTILE");
/// The smallest useful plugin (retains images tagged keep=true).
pub const TRIVIAL: &str = env!("GUEST_TRIVIAL");
/// The measuring probe of image handles (tests/fixtures/wit-probe), for `benches/probe.rs`.
pub const PROBE: &str = env!("GUEST_PROBE");
/// The reference policy required-tags, in Rust (plugins/required-tags-rust).
pub const REQUIRED_TAGS_RUST: &str = env!("PLUGIN_REQUIRED_TAGS");
/// The reference policy required-tags, in Python (plugins/required-tags-py, componentize-py).
pub const REQUIRED_TAGS_PY: &str = env!("PLUGIN_REQUIRED_TAGS_PY");
/// The reference policy required-tags, in JavaScript (plugins/required-tags-js, jco with QuickJS).
pub const REQUIRED_TAGS_JS: &str = env!("PLUGIN_REQUIRED_TAGS_JS");
/// The JavaScript plugin as it was built for the previous contract, amiwarden:policy@0.1.0
/// (tests/fixtures/wit-0.1.0).
pub const REQUIRED_TAGS_JS_WIT_0_1_0: &str = env!("PLUGIN_REQUIRED_TAGS_JS_WIT_0_1_0");
/// A compiled-artifact cache that outlives one test run, so the 18 MB Python component
/// is compiled by the (debug-built) host once, not on every `cargo test`.
pub const ARTIFACT_CACHE: &str = concat!(env!("OUT_DIR"), "/artifact-cache");
