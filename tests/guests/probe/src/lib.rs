//! The guest side of the probe (`tests/fixtures/wit-probe`): keep-tagged and a
//! sharing-like read on images the host keeps, read through host calls.

#[cfg_attr(target_arch = "wasm32", expect(unsafe_code, reason = "wit-bindgen's generated export glue"))]
mod glue {
    wit_bindgen::generate!({ world: "measure", path: "../../fixtures/wit-probe" });
    // Natively (`cargo test --workspace` builds every member) there is nothing to export
    // to, and a native linker refuses the component model's export names.
    #[cfg(target_arch = "wasm32")]
    use super::Probe;
    #[cfg(target_arch = "wasm32")]
    export!(Probe);
}

use glue::amiwarden::probe::images::{self, Principal};
use glue::exports::amiwarden::probe::probe::{Guest, Proposal};

struct Probe;

fn keep(image: u32) -> Vec<Proposal> {
    match images::tag(image, "keep").as_deref() {
        Some("true") => vec![Proposal { image_id: images::id(image), reason: "tagged keep=true".into() }],
        _ => Vec::new(),
    }
}

fn share(image: u32) -> Vec<Proposal> {
    let Some(permissions) = images::launch_permissions(image) else { return Vec::new() };
    if permissions.is_empty() {
        return Vec::new();
    }
    let wanted = images::tag(image, "share-with").unwrap_or_default();
    let account = images::account(image);
    let id = images::id(image);
    permissions
        .iter()
        .filter_map(|p| match p {
            Principal::Account(a) if *a == account || wanted.split(',').any(|w| w == a) => None,
            Principal::Account(a) | Principal::Organization(a) | Principal::OrganizationalUnit(a) => Some(a.clone()),
            Principal::Public => Some("public".into()),
        })
        .map(|p| Proposal { image_id: id.clone(), reason: format!("{p} is not desired") })
        .collect()
}

impl Guest for Probe {
    fn keep(count: u32) -> Vec<Vec<Proposal>> {
        (0..count).map(keep).collect()
    }

    fn share(count: u32) -> Vec<Vec<Proposal>> {
        (0..count).map(share).collect()
    }
}
