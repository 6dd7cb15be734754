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
use glue::exports::amiwarden::probe::probe::{Guest, KeepImage, Proposal, ShareImage, Tag};

struct Probe;

fn keep_reason(tag: Option<&str>) -> Option<&'static str> {
    (tag == Some("true")).then_some("tagged keep=true")
}

fn keep(image: u32) -> Vec<Proposal> {
    match keep_reason(images::tag(image, "keep").as_deref()) {
        Some(reason) => vec![Proposal { image_id: images::id(image), reason: reason.into() }],
        None => Vec::new(),
    }
}

/// A reason per permission neither the image's account nor its share tag names.
fn unwanted(permissions: &[Principal], account: &str, wanted: &str, id: &str) -> Vec<Proposal> {
    permissions
        .iter()
        .filter_map(|p| match p {
            Principal::Account(a) if a == account || wanted.split(',').any(|w| w == a) => None,
            Principal::Account(a) | Principal::Organization(a) | Principal::OrganizationalUnit(a) => Some(a.clone()),
            Principal::Public => Some("public".into()),
        })
        .map(|p| Proposal { image_id: id.to_string(), reason: format!("{p} is not desired") })
        .collect()
}

fn share(image: u32) -> Vec<Proposal> {
    let Some(permissions) = images::launch_permissions(image) else { return Vec::new() };
    if permissions.is_empty() {
        return Vec::new();
    }
    let wanted = images::tag(image, "share-with").unwrap_or_default();
    unwanted(&permissions, &images::account(image), &wanted, &images::id(image))
}

fn tag<'a>(tags: &'a Option<Vec<Tag>>, key: &str) -> Option<&'a str> {
    tags.as_ref()?.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

impl Guest for Probe {
    fn keep(count: u32) -> Vec<Vec<Proposal>> {
        (0..count).map(keep).collect()
    }

    fn share(count: u32) -> Vec<Vec<Proposal>> {
        (0..count).map(share).collect()
    }

    fn keep_lowered(images: Vec<KeepImage>) -> Vec<Vec<Proposal>> {
        images
            .into_iter()
            .map(|i| match keep_reason(tag(&i.tags, "keep")) {
                Some(reason) => vec![Proposal { image_id: i.id, reason: reason.into() }],
                None => Vec::new(),
            })
            .collect()
    }

    fn share_lowered(images: Vec<ShareImage>) -> Vec<Vec<Proposal>> {
        images
            .iter()
            .map(|i| match &i.launch_permissions {
                Some(permissions) if !permissions.is_empty() => {
                    unwanted(permissions, &i.account, tag(&i.tags, "share-with").unwrap_or_default(), &i.id)
                }
                _ => Vec::new(),
            })
            .collect()
    }
}
