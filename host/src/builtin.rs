//! The stock policies compiled into the binary, addressed as `builtin:NAME`.

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The names of the built-in plugins, in the build's order.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(name, _)| *name)
}

/// The built-in plugins' names and versions (their crates' versions, which each reports
/// as its `info().version`), in the build's order.
pub fn versions() -> impl Iterator<Item = (&'static str, &'static str)> {
    VERSIONS.iter().copied()
}

/// The component bytes of a built-in plugin.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}

/// The bytes a plugin source names when it is `builtin:NAME`; `None` for any other
/// source (a file), an error naming the built-ins for an unknown name.
pub fn lookup(source: &str) -> Option<Result<&'static [u8], String>> {
    let name = source.strip_prefix("builtin:")?;
    Some(get(name).ok_or_else(|| {
        format!("no built-in plugin named `{name}` (built-ins: {})", names().collect::<Vec<_>>().join(", "))
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stock_policies_are_built_in_and_other_sources_are_files() {
        assert_eq!(super::names().collect::<Vec<_>>(), ["retention", "sharing", "replication", "cost-guard"]);
        assert!(super::lookup("builtin:retention").is_some_and(|r| r.is_ok_and(|b| b.starts_with(b"\0asm"))));
        let unknown = super::lookup("builtin:retension").and_then(Result::err).unwrap_or_default();
        assert!(unknown.contains("retension") && unknown.contains("cost-guard"), "{unknown}");
        assert!(super::lookup("plugins/mine.wasm").is_none());
    }
}
