//! The Rust guest SDK for amiwarden policy plugins: a `Policy` trait, one export macro
//! and host helpers that fall back to an in-process inventory when run natively.
//!
//! ```ignore
//! use amiwarden_sdk::prelude::*;
//!
//! #[derive(Default)]
//! struct KeepTagged;
//!
//! impl Policy for KeepTagged {
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("keep-tagged", env!("CARGO_PKG_VERSION")).proposes([ActionKind::Retain])
//!     }
//!     fn propose(&self, event: &ImageEvent) -> Result<Vec<Proposal>, PolicyError> {
//!         Ok(event.image.tag("keep").map(|_| Proposal::new(&event.image.id, Action::Retain, "tagged keep")).into_iter().collect())
//!     }
//! }
//!
//! export_policy!(KeepTagged);
//! ```

pub mod bindings {
    //! The generated bindings; plugins use the re-exports in the crate root instead.
    wit_bindgen::generate!({
        world: "policy",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_policy_bindings",
        default_bindings_module: "amiwarden_sdk::bindings",
        generate_all,
        additional_derives: [PartialEq, Eq],
    });
}

#[cfg(feature = "family")]
pub mod family;
mod host;
mod types;

pub use types::{SOURCE_IMAGE_TAG, SOURCE_REGION_TAG};

pub use bindings::amiwarden::policy::host::{ImageQuery, ImageSummary, LogLevel, Rank};
pub use bindings::amiwarden::policy::types::{
    Action, ActionKind, Architecture, BlockDevice, CopyRequest, Decision, EventKind, Image, ImageEvent, ImageState,
    InventoryNeed, LedgerEntry, Micros, Platform, PluginInfo, PolicyError, PricedAction, PricedPlan, Principal,
    Proposal, RootDeviceType, StorageTier, Tag, Timestamp, Usage, Verdict,
};
pub use host::{get_image, get_summary, log, now, query_images, query_summaries, rank_by_age, testing};

/// The version of the WIT package this SDK was built against.
pub const WIT_VERSION: &str = "0.2.0";

/// Seconds in a day, for age arithmetic on `Timestamp`s.
pub const DAY: Timestamp = 86_400;

/// A policy: what a plugin implements. Only `info` and `propose` are required.
pub trait Policy: Default + 'static {
    /// Name, version, action kinds and inventory needs.
    fn info() -> PluginInfo;

    /// Reads the plugin's JSON config from the policy file. The default accepts an
    /// empty object and nothing else.
    fn configure(&mut self, config: &str) -> Result<(), PolicyError> {
        match serde_json::from_str::<serde_json::Value>(config) {
            Ok(serde_json::Value::Object(map)) if map.is_empty() => Ok(()),
            Ok(serde_json::Value::Null) => Ok(()),
            Ok(_) => Err(PolicyError::InvalidConfig("this plugin takes no configuration".into())),
            Err(err) => Err(PolicyError::InvalidConfig(format!("config is not JSON: {err}"))),
        }
    }

    /// Proposals for one event.
    fn propose(&self, event: &ImageEvent) -> Result<Vec<Proposal>, PolicyError>;

    /// Verdicts on one part of the candidate plan (`plan.part` of `plan.parts`, in plan
    /// order, on one instance: keep running totals in `self` and reset them at part 0);
    /// the default approves everything. The host calls it only when `info` says
    /// `.reviews()`.
    fn review(&self, _plan: &PricedPlan) -> Result<Vec<Verdict>, PolicyError> {
        Ok(Vec::new())
    }
}

/// Parses a plugin config from JSON into a serde type, mapping errors to `InvalidConfig`.
pub fn parse_config<T: serde::de::DeserializeOwned>(config: &str) -> Result<T, PolicyError> {
    let text = if config.trim().is_empty() { "{}" } else { config };
    serde_json::from_str(text).map_err(|err| PolicyError::InvalidConfig(err.to_string()))
}

/// Parses a plugin config from JSON into `Raw`, then checks it into the plugin's own
/// config type; a parse or check failure becomes `InvalidConfig` with its message.
pub fn parse_checked<Raw: serde::de::DeserializeOwned, T>(
    config: &str,
    check: impl FnOnce(Raw) -> Result<T, String>,
) -> Result<T, PolicyError> {
    check(parse_config(config)?).map_err(PolicyError::InvalidConfig)
}

/// Everything a plugin usually needs, in one import.
pub mod prelude {
    pub use crate::{
        Action, ActionKind, DAY, Decision, EventKind, Image, ImageEvent, ImageQuery, ImageState, ImageSummary,
        InventoryNeed, LogLevel, PluginInfo, Policy, PolicyError, PricedAction, PricedPlan, Principal, Proposal, Tag,
        Timestamp, Verdict, export_policy, get_image, get_summary, log, now, parse_checked, parse_config, query_images,
        query_summaries, rank_by_age,
    };
}

/// Exports a `Policy` implementation as the plugin's component exports.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[doc(hidden)]
        pub struct __AmiwardenPlugin;

        thread_local! {
            static __AMIWARDEN_POLICY: ::std::cell::RefCell<$policy> =
                ::std::cell::RefCell::new(<$policy as ::std::default::Default>::default());
        }

        impl $crate::bindings::exports::amiwarden::policy::plugin::Guest for __AmiwardenPlugin {
            fn describe() -> $crate::PluginInfo {
                <$policy as $crate::Policy>::info()
            }
            fn configure(config: ::std::string::String) -> ::std::result::Result<(), $crate::PolicyError> {
                __AMIWARDEN_POLICY.with(|p| $crate::Policy::configure(&mut *p.borrow_mut(), &config))
            }
            fn propose(
                event: $crate::ImageEvent,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::Proposal>, $crate::PolicyError> {
                __AMIWARDEN_POLICY.with(|p| $crate::Policy::propose(&*p.borrow(), &event))
            }
            fn review(
                plan: $crate::PricedPlan,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::Verdict>, $crate::PolicyError> {
                __AMIWARDEN_POLICY.with(|p| $crate::Policy::review(&*p.borrow(), &plan))
            }
        }

        // Native builds (unit tests) skip the C ABI exports: their symbol names
        // (`amiwarden:policy/plugin@...#propose`) are not valid in a native linker script.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_policy_bindings!(__AmiwardenPlugin with_types_in $crate::bindings);
    };
}
