//! Domain types shared by every part of the host: images, principals, events, actions.
//!
//! These are independent of the generated plugin bindings (converted in `plugin::bindings`)
//! and of the AWS SDK (converted in `aws`). Their serde form is the JSON of sim state
//! files, plan files and test cases.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod action;
mod failure;
pub mod id;
mod image;
pub mod recycle;
mod tags;
pub mod text;
mod time;
pub use action::{Action, ActionKind, CopyRequest, InventoryNeed, PluginInfo, Proposal, Proposed, Verdict};
pub use failure::{PluginError, PluginFailure, PolicyErrorKind, Stage};
pub use image::{Architecture, BlockDevice, Image, ImageState, Location, Platform, RootDeviceType, StorageTier, Usage};
pub use tags::Tags;
pub use time::{DAY, Timestamp};

/// Money in millionths of a US dollar.
pub type Micros = i64;

/// Someone an image is shared with. Written as text: a 12-digit account id, an
/// organization or OU ARN, or `public`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Principal {
    Account(String),
    Organization(String),
    OrganizationalUnit(String),
    Public,
}

/// In a schema: the text form `FromStr` reads.
impl schemars::JsonSchema for Principal {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Principal".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A 12-digit account id, an organization ARN (arn:aws:organizations::…:organization/o-…), an OU ARN (…:ou/o-…/ou-…), or `public`",
        })
    }
}

impl Principal {
    /// The text form: the account id, the ARN, or `public`.
    pub fn as_str(&self) -> &str {
        match self {
            Principal::Account(s) | Principal::Organization(s) | Principal::OrganizationalUnit(s) => s,
            Principal::Public => "public",
        }
    }
}

impl FromStr for Principal {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "public" || s == "all" {
            Ok(Principal::Public)
        } else if is_account_id(s) {
            Ok(Principal::Account(s.to_string()))
        } else if s.starts_with("arn:aws") && s.contains(":organization/o-") {
            Ok(Principal::Organization(s.to_string()))
        } else if s.starts_with("arn:aws") && s.contains(":ou/o-") {
            Ok(Principal::OrganizationalUnit(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not a principal: expected a 12-digit account id, an organization or OU ARN, or `public`"
            ))
        }
    }
}

impl TryFrom<String> for Principal {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Principal> for String {
    fn from(p: Principal) -> String {
        p.as_str().to_string()
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `s` is a 12-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` looks like an AMI id: `ami-` and 8 or 17 lowercase hex digits.
pub fn is_image_id(s: &str) -> bool {
    s.strip_prefix("ami-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Whether `s` has the shape of an AWS region name (`eu-west-1`, `us-gov-east-1`).
pub fn is_region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// EC2's limits on an image's tags: at most 50, keys of 1 to 128 characters, values of
/// at most 256.
pub const MAX_TAGS: usize = 50;
/// The longest tag key EC2 takes, in characters.
pub const MAX_TAG_KEY: usize = 128;
/// The longest tag value EC2 takes, in characters.
pub const MAX_TAG_VALUE: usize = 256;

/// Tag key prefixes no plugin may write or remove: `amiwarden:` belongs to the host
/// (it recognises its replicas by them) and `aws:` to AWS.
pub const RESERVED_TAG_PREFIXES: [&str; 2] = ["amiwarden:", "aws:"];

/// Whether a tag key is reserved to the host or to AWS (case-insensitive, as AWS is).
pub fn is_reserved_tag(key: &str) -> bool {
    RESERVED_TAG_PREFIXES
        .iter()
        .any(|prefix| key.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix)))
}

/// How far ahead EC2 accepts a deprecation time: 10 years (3,650 days, to stay inside
/// EC2's limit whatever leap days fall in between).
pub const MAX_DEPRECATE_AHEAD: i64 = 3650 * DAY;

/// What happened to an image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Scheduled,
    Created,
    Registered,
    Copied,
    Shared(Vec<Principal>),
    Unshared(Vec<Principal>),
    Deprecated,
    Disabled,
    Deregistered,
    TagsChanged,
}

/// One event about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEvent {
    pub kind: EventKind,
    pub image: Image,
    pub evaluation_time: Timestamp,
    /// The raw source event as JSON text, shared by every image event it names; empty
    /// for a scheduled review.
    pub raw: std::sync::Arc<str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_parse_from_their_text_form() {
        let cases = [
            ("123456789012", Some(Principal::Account("123456789012".into()))),
            ("12345678901", None),
            ("public", Some(Principal::Public)),
            (
                "arn:aws:organizations::123456789012:organization/o-abc123",
                Some(Principal::Organization("arn:aws:organizations::123456789012:organization/o-abc123".into())),
            ),
            (
                "arn:aws:organizations::123456789012:ou/o-abc123/ou-ab12-cdef34",
                Some(Principal::OrganizationalUnit(
                    "arn:aws:organizations::123456789012:ou/o-abc123/ou-ab12-cdef34".into(),
                )),
            ),
            ("bob", None),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Principal>().ok(), want, "{text}");
        }
    }

    #[test]
    fn reserved_tag_prefixes_are_recognised_in_any_case() {
        let rows = [
            ("amiwarden:source-image-id", true),
            ("AMIWARDEN:Source-Region", true),
            ("aws:cloudformation:stack-name", true),
            ("AWS:x", true),
            ("amiwarden", false),
            ("awsome", false),
            ("team", false),
            ("", false),
        ];
        for (key, reserved) in rows {
            assert_eq!(is_reserved_tag(key), reserved, "{key}");
        }
    }

    #[test]
    fn region_names_are_recognised_by_shape() {
        for ok in ["us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-4"] {
            assert!(is_region_name(ok), "{ok}");
        }
        for bad in ["us-east", "us-east1", "moon-1", "US-EAST-1", "eu--1", ""] {
            assert!(!is_region_name(bad), "{bad}");
        }
    }

    #[test]
    fn image_ids_have_the_ec2_form() {
        assert!(is_image_id("ami-0123456789abcdef0"));
        assert!(is_image_id("ami-12345678"));
        assert!(!is_image_id("ami-XYZ"));
        assert!(!is_image_id("snap-0123456789abcdef0"));
    }

    #[test]
    fn actions_have_a_readable_json_form() {
        let action = Action::Deregister { delete_snapshots: true };
        assert_eq!(serde_json::to_string(&action).unwrap(), r#"{"deregister":{"delete_snapshots":true}}"#);
        assert_eq!(serde_json::to_string(&Action::Retain).unwrap(), r#""retain""#);
        let share: Action = serde_json::from_str(r#"{"share":"public"}"#).unwrap();
        assert_eq!(share, Action::Share(Principal::Public));
    }
}
