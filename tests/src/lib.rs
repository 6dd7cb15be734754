//! Paths of the guest plugins the build script compiled, for the end-to-end tests.

/// The plugin that misbehaves on demand.
pub const HOSTILE: &str = env!("GUEST_HOSTILE");
/// The smallest useful plugin (retains images tagged keep=true).
pub const TRIVIAL: &str = env!("GUEST_TRIVIAL");
