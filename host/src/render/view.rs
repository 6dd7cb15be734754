//! The plan's words, once: what every human format (table, Markdown, HTML) shows, as raw
//! text that each format cuts and escapes its own way.

use std::collections::BTreeMap;

use crate::cost::dollars;
use crate::plan::{Op, Plan, PlannedAction, Source};

/// The most of a reason any format shows: a table wraps it to its width, so what a user
/// needs to act on (a veto's "$31.50 over $27.00") is not cut; a plugin's 4 KB reason is.
const REASON: usize = 400;

/// What a row does, for the formats that set rows apart: destructive rows stand out from
/// shares and copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Cannot simply be undone (`ActionKind::is_destructive`): disable, deregister, delete.
    Destructive,
    /// Share or unshare.
    Share,
    /// Copy to another region.
    Copy,
    /// Tags and deprecations.
    Plain,
}

impl Tone {
    pub fn of(op: &Op) -> Tone {
        match op {
            _ if op.is_destructive() => Tone::Destructive,
            Op::Share { .. } | Op::Unshare { .. } => Tone::Share,
            Op::Copy { .. } => Tone::Copy,
            _ => Tone::Plain,
        }
    }

    /// Its name as a CSS class.
    pub fn class(self) -> &'static str {
        match self {
            Tone::Destructive => "destructive",
            Tone::Share => "share",
            Tone::Copy => "copy",
            Tone::Plain => "plain",
        }
    }
}

/// One planned action.
#[derive(Debug)]
pub struct ActionRow {
    pub tone: Tone,
    pub action: String,
    pub image_id: String,
    pub image_name: String,
    /// One reason per plugin, without the plugin's name (the `who` column says it).
    pub why: Vec<String>,
    pub who: String,
    pub delta: String,
}

/// The actions in one account and region.
#[derive(Debug)]
pub struct Group {
    pub account: String,
    pub region: String,
    pub rows: Vec<ActionRow>,
}

/// One refused proposal, in the words an action would have.
#[derive(Debug)]
pub struct RefusalRow {
    pub action: String,
    pub image_id: String,
    pub image_name: String,
    pub kind: String,
    pub reason: String,
    pub who: String,
}

/// One image a plugin retains, and why.
#[derive(Debug)]
pub struct KeptRow {
    pub image_id: String,
    pub image_name: String,
    /// "ACCOUNT / REGION".
    pub place: String,
    /// One reason per plugin, without the plugin's name (the `who` column says it).
    pub why: Vec<String>,
    pub who: String,
}

/// What the command line knows about a run that the plan file does not record.
#[derive(Debug, Clone)]
pub struct About {
    /// The policy file.
    pub policy: String,
    /// The backend's name (`sim:STATE.json`, `aws:…`).
    pub backend: String,
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
}

/// A plan in words.
#[derive(Debug)]
pub struct View {
    /// "Plan at TIME for SOURCE".
    pub title: String,
    /// The policy, backend and scope, when known.
    pub about: Option<String>,
    /// "STOPPED, nothing will be applied: " and why, when a guardrail stopped the plan.
    pub stopped: Option<String>,
    /// Said instead of the actions when there are none.
    pub empty: Option<&'static str>,
    pub groups: Vec<Group>,
    pub refused: Vec<RefusalRow>,
    pub errors: Vec<String>,
    /// The images plugins retain, and why (a secondary section: nothing happens to them
    /// because of it).
    pub kept: Vec<KeptRow>,
    /// "By operation: 5 to unshare, 3 to share, …, 4 to deregister (+3 snapshots)", in
    /// apply order.
    pub by_operation: Option<String>,
    /// Counts of actions, images, refusals and errors.
    pub totals: String,
    /// The monthly and one-time cost.
    pub cost: String,
}

/// A proposed action in words, as refusals and `explain` show it.
pub fn action_text(action: &crate::model::Action) -> String {
    use crate::model::Action;
    match action {
        Action::Share(p) => format!("share with {p}"),
        Action::Unshare(p) => format!("unshare from {p}"),
        Action::CopyToRegion(c) => format!("copy to {}", c.region),
        Action::DeprecateAt(t) => format!("deprecate at {t}"),
        Action::Disable => "disable".into(),
        Action::Deregister { delete_snapshots: true } => "deregister with its snapshots".into(),
        Action::Deregister { delete_snapshots: false } => "deregister".into(),
        Action::Tag(tags) => {
            format!("tag {}", tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
        }
        Action::Untag(keys) => format!("untag {}", keys.iter().cloned().collect::<Vec<_>>().join(",")),
        Action::Retain => "retain".into(),
    }
}

/// `s` cut to `n` characters, with an ellipsis when cut.
pub fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}

fn list(items: &std::collections::BTreeSet<String>) -> String {
    items.iter().cloned().collect::<Vec<_>>().join(", ")
}

fn row(a: &PlannedAction) -> ActionRow {
    let delta = match a.one_time_cost {
        0 => dollars(a.monthly_cost_delta),
        once => format!("{} (+{} once)", dollars(a.monthly_cost_delta), dollars(once)),
    };
    ActionRow {
        tone: Tone::of(&a.op),
        action: a.op.verb(),
        image_id: a.image_id.clone(),
        image_name: a.image_name.clone(),
        why: reasons(&a.reasons),
        who: list(&a.plugins),
        delta,
    }
}

/// Reasons recorded as `plugin: reason`, without the plugin's name (a `who` column says it).
fn reasons(recorded: &[String]) -> Vec<String> {
    recorded.iter().map(|r| cut(r.split_once(": ").map_or(r.as_str(), |(_, r)| r), REASON)).collect()
}

/// How many actions of each kind, in apply order and Terraform's words ("3 to share"); a
/// deregistration's snapshot deletions are counted beside it.
fn by_operation(plan: &Plan) -> Option<String> {
    use crate::model::ActionKind;
    let mut counts: BTreeMap<(u8, ActionKind), usize> = BTreeMap::new();
    for a in &plan.actions {
        *counts.entry((a.op.phase(), a.op.kind())).or_default() += 1;
    }
    let snapshots = counts.iter().find(|((_, k), _)| *k == ActionKind::DeleteSnapshots).map_or(0, |(_, n)| *n);
    let deregisters = counts.keys().any(|(_, k)| *k == ActionKind::Deregister);
    let words: Vec<String> = counts
        .iter()
        .filter_map(|((_, kind), n)| match kind {
            ActionKind::DeleteSnapshots if deregisters => None,
            ActionKind::DeleteSnapshots => Some(format!("{n} snapshot(s) to delete")),
            ActionKind::Deregister if snapshots > 0 => Some(format!("{n} to deregister (+{snapshots} snapshots)")),
            kind => Some(format!("{n} to {kind}")),
        })
        .collect();
    (!words.is_empty()).then(|| format!("By operation: {}", words.join(", ")))
}

/// The plan in words; `about` adds what the command line knows of the run.
pub fn view(plan: &Plan, about: Option<&About>) -> View {
    let source = match &plan.source {
        Source::Scheduled => "a scheduled run over the whole scope".to_string(),
        Source::Shard { account } => format!("a scheduled run of account {account}"),
        Source::Event { origin, .. } => format!("the event {origin}"),
    };
    let about = about.map(|a| {
        format!(
            "Policy {} on {}; scope: account(s) {} in {}",
            a.policy,
            a.backend,
            a.accounts.join(", "),
            a.regions.join(", ")
        )
    });
    let mut groups: BTreeMap<(&str, &str), Vec<ActionRow>> = BTreeMap::new();
    for a in &plan.actions {
        groups.entry((&a.location.account, &a.location.region)).or_default().push(row(a));
    }
    let empty = match (plan.actions.is_empty(), plan.errors.is_empty()) {
        (false, _) => None,
        (true, true) => Some("No changes: the images already follow the policy."),
        (true, false) => Some("No changes planned, but plugins failed: the plan is incomplete (see the errors below)."),
    };
    let refused = plan
        .refused
        .iter()
        .map(|r| RefusalRow {
            action: action_text(&r.action),
            image_id: r.image_id.clone(),
            image_name: r.image_name.clone(),
            kind: serde_json::to_string(&r.kind).unwrap_or_default().replace('"', ""),
            reason: cut(&r.reason, REASON),
            who: list(&r.plugins),
        })
        .collect();
    let kept = plan
        .kept
        .iter()
        .map(|k| KeptRow {
            image_id: k.image_id.clone(),
            image_name: k.image_name.clone(),
            place: format!("{} / {}", k.account, k.region),
            why: reasons(&k.reasons),
            who: list(&k.plugins),
        })
        .collect();
    let by_operation = by_operation(plan);
    let t = &plan.totals;
    View {
        title: format!("Plan at {} for {source}", plan.evaluation_time),
        about,
        stopped: plan.stopped.as_ref().map(|why| format!("STOPPED, nothing will be applied: {why}")),
        empty,
        groups: groups
            .into_iter()
            .map(|((account, region), rows)| Group { account: account.into(), region: region.into(), rows })
            .collect(),
        refused,
        errors: plan.errors.iter().map(ToString::to_string).collect(),
        kept,
        by_operation,
        totals: format!(
            "{} action(s) on {} of {} image(s), {} destructive; {} refused; {} plugin error(s)",
            t.actions, t.images_touched, t.images_in_scope, t.destructive, t.refused, t.plugin_errors
        ),
        cost: format!(
            "monthly snapshot cost {} → {} ({}), one-time {}",
            dollars(t.monthly_cost_before),
            dollars(t.monthly_cost_after),
            dollars(t.monthly_cost_after.saturating_sub(t.monthly_cost_before)),
            dollars(t.one_time_cost),
        ),
    }
}

/// The title of the refusals.
pub const REFUSED: &str = "Refused or vetoed";

/// The title of the images plugins retain.
pub const KEPT: &str = "Kept by plugins";

/// The title of the plugin errors.
pub const ERRORS: &str = "Plugin errors (destructive actions on these images are blocked)";
