//! The stock policies compiled into the binary, addressed as `builtin:NAME`.

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The names of the built-in plugins.
pub const NAMES: [&str; 4] = ["retention", "sharing", "replication", "cost-guard"];

/// The component bytes of a built-in plugin.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}
