//! What plugins say: the actions they propose, the kinds a policy grants, proposals,
//! verdicts, and what a plugin declares about itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Principal, Timestamp};

/// How a copy to another region is made.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CopyRequest {
    pub region: String,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub copy_tags: bool,
    #[serde(default)]
    pub name: Option<String>,
}

/// A change a plugin proposes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Share(Principal),
    Unshare(Principal),
    /// Boxed: the largest payload by far, on a few actions in a plan; inline it made every
    /// action 80 bytes rather than 32 (a proposal, a candidate and a plan action each hold one).
    CopyToRegion(Box<CopyRequest>),
    DeprecateAt(Timestamp),
    Disable,
    Deregister {
        delete_snapshots: bool,
    },
    Tag(BTreeMap<String, String>),
    Untag(BTreeSet<String>),
    Retain,
}

impl Action {
    /// The kind a policy file grants.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Share(_) => ActionKind::Share,
            Action::Unshare(_) => ActionKind::Unshare,
            Action::CopyToRegion(_) => ActionKind::Copy,
            Action::DeprecateAt(_) => ActionKind::Deprecate,
            Action::Disable => ActionKind::Disable,
            Action::Deregister { .. } => ActionKind::Deregister,
            Action::Tag(_) => ActionKind::Tag,
            Action::Untag(_) => ActionKind::Untag,
            Action::Retain => ActionKind::Retain,
        }
    }
}

/// The kinds of action a policy file grants to a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    Share,
    Unshare,
    Copy,
    Deprecate,
    Disable,
    Deregister,
    DeleteSnapshots,
    Tag,
    Untag,
    Retain,
}

impl ActionKind {
    /// Every kind, in declaration order.
    pub const ALL: [ActionKind; 10] = [
        ActionKind::Share,
        ActionKind::Unshare,
        ActionKind::Copy,
        ActionKind::Deprecate,
        ActionKind::Disable,
        ActionKind::Deregister,
        ActionKind::DeleteSnapshots,
        ActionKind::Tag,
        ActionKind::Untag,
        ActionKind::Retain,
    ];
}

impl ActionKind {
    /// Where actions of this kind fall in the safe apply order: tags, unshares, shares,
    /// copies, deprecations, disables, deregistrations, snapshot deletions. The one
    /// definition of apply order (plans, candidates and the applier use it).
    pub fn phase(self) -> u8 {
        match self {
            ActionKind::Tag | ActionKind::Untag => 0,
            ActionKind::Unshare => 1,
            ActionKind::Share => 2,
            ActionKind::Copy => 3,
            ActionKind::Deprecate => 4,
            ActionKind::Disable => 5,
            ActionKind::Deregister => 6,
            ActionKind::DeleteSnapshots => 7,
            ActionKind::Retain => 9,
        }
    }

    /// Whether it cannot simply be undone: disable, deregister, snapshot deletion. The one
    /// definition of "destructive" (the blast radius counts these; a plugin failure on an
    /// image blocks these).
    pub fn is_destructive(self) -> bool {
        matches!(self, ActionKind::Disable | ActionKind::Deregister | ActionKind::DeleteSnapshots)
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string));
        f.write_str(text.as_deref().unwrap_or("?"))
    }
}

/// Inventory data a plugin needs beyond image basics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InventoryNeed {
    LaunchPermissions,
    Usage,
    Snapshots,
    /// The Recycle Bin's retention rules (how long a deleted image or snapshot stays
    /// restorable): the host's own need for `guardrails.recycle_bin_days`; plugins
    /// cannot ask for it.
    RecycleBin,
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub actions: BTreeSet<ActionKind>,
    pub needs: BTreeSet<InventoryNeed>,
    /// Whether it reviews the priced plan (`review` is called only then).
    #[serde(default)]
    pub reviews: bool,
}

/// A plugin's proposal about one image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Proposal {
    pub image_id: String,
    pub action: Action,
    pub reason: String,
}

impl Proposal {
    /// Roughly the bytes it holds in the host's memory (as a `Proposed`): its fields and
    /// the text they own. What the run-level budget of a plugin's proposals counts.
    pub fn held_bytes(&self) -> usize {
        let text = |s: &str| s.len() + 16;
        let action = match &self.action {
            Action::Share(p) | Action::Unshare(p) => text(p.as_str()),
            Action::CopyToRegion(c) => {
                std::mem::size_of::<CopyRequest>()
                    + text(&c.region)
                    + c.kms_key_id.as_deref().map_or(0, text)
                    + c.name.as_deref().map_or(0, text)
            }
            Action::Tag(tags) => tags.iter().map(|(k, v)| text(k) + text(v) + 32).sum(),
            Action::Untag(keys) => keys.iter().map(|k| text(k) + 16).sum(),
            Action::DeprecateAt(_) | Action::Disable | Action::Deregister { .. } | Action::Retain => 0,
        };
        std::mem::size_of::<Proposed>() + text(&self.image_id) + text(&self.reason) + action
    }
}

/// A proposal with the plugin that made it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Proposed {
    pub plugin: String,
    pub proposal: Proposal,
}

/// A plugin's decision on one candidate action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub action_id: String,
    /// `None` approves; `Some(reason)` vetoes.
    pub veto: Option<String>,
}
