//! Human output: the plan as tables grouped by account and region, with totals.

use std::collections::BTreeMap;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use crate::cost::dollars;
use crate::model::Action;
use crate::model::text::escape;
use crate::plan::{Plan, Source};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic).set_width(160);
    t.set_header(header.iter().copied());
    t
}

/// Text from outside, cut to `n` characters, with control characters escaped: a plugin's
/// reason or an image's name cannot move the cursor or hide rows.
fn short(s: &str, n: usize) -> String {
    let s = escape(s);
    if s.chars().count() <= n { s.into_owned() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}

fn plain(s: &str) -> String {
    escape(s).into_owned()
}

/// A proposed action in words, as the refusal table shows it.
fn action_text(action: &Action) -> String {
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

/// What a plan is about: its evaluation time and source.
fn heading(plan: &Plan) -> String {
    let source = match &plan.source {
        Source::Scheduled => "a scheduled run over the whole scope".to_string(),
        Source::Shard { account } => format!("a scheduled run of account {}", plain(account)),
        Source::Event { origin, .. } => format!("the event {}", plain(origin)),
    };
    let stopped = plan.stopped.as_ref().map(|s| format!("\nSTOPPED, nothing will be applied: {}", plain(s)));
    format!("Plan at {} for {source}{}\n", plan.evaluation_time, stopped.unwrap_or_default())
}

/// The plan as text: what it is about, actions per account and region, refusals,
/// plugin errors, and totals with a count per operation.
pub fn plan(plan: &Plan) -> String {
    let mut out = heading(plan);
    let mut groups: BTreeMap<(&str, &str), Vec<&crate::plan::PlannedAction>> = BTreeMap::new();
    for a in &plan.actions {
        groups.entry((&a.account, &a.region)).or_default().push(a);
    }
    if groups.is_empty() && plan.errors.is_empty() {
        out.push_str("No changes: the images already follow the policy.\n");
    } else if groups.is_empty() {
        out.push_str("No changes planned, but plugins failed: the plan is incomplete (see the errors below).\n");
    }
    for ((account, region), actions) in groups {
        let mut t = table(&["action", "image", "name", "why", "who", "Δ $/month"]);
        for a in actions {
            let delta = if a.one_time_cost != 0 {
                format!("{} (+{} once)", dollars(a.monthly_cost_delta), dollars(a.one_time_cost))
            } else {
                dollars(a.monthly_cost_delta)
            };
            let why: Vec<String> =
                a.reasons.iter().map(|r| short(r.split_once(": ").map_or(r.as_str(), |(_, r)| r), 70)).collect();
            t.add_row(vec![
                plain(&a.op.verb()),
                plain(&a.image_id),
                short(&a.image_name, 28),
                why.join("\n"),
                plain(&a.plugins.iter().cloned().collect::<Vec<_>>().join(", ")),
                delta,
            ]);
        }
        out.push_str(&format!("\n{} / {}\n{t}\n", plain(account), plain(region)));
    }
    if !plan.refused.is_empty() {
        let mut t = table(&["refused", "image", "kind", "reason", "who"]);
        for r in &plan.refused {
            t.add_row(vec![
                short(&action_text(&r.action), 40),
                plain(&r.image_id),
                serde_json::to_string(&r.kind).unwrap_or_default().replace('"', ""),
                short(&r.reason, 90),
                plain(&r.plugins.iter().cloned().collect::<Vec<_>>().join(", ")),
            ]);
        }
        out.push_str(&format!("\nRefused or vetoed\n{t}\n"));
    }
    if !plan.errors.is_empty() {
        out.push_str("\nPlugin errors (destructive actions on these images are blocked)\n");
        for e in &plan.errors {
            out.push_str(&format!("  - {}\n", plain(&e.to_string())));
        }
    }
    let t = &plan.totals;
    let mut by_op: BTreeMap<(u8, String), usize> = BTreeMap::new();
    for a in &plan.actions {
        *by_op.entry((a.op.kind().phase(), a.op.kind().to_string())).or_default() += 1;
    }
    if !by_op.is_empty() {
        let list: Vec<String> = by_op.iter().map(|((_, op), n)| format!("{op} {n}")).collect();
        out.push_str(&format!("\nBy operation: {}", list.join(", ")));
    }
    out.push_str(&format!(
        "\n{} action(s) on {} of {} image(s), {} destructive; {} refused; {} plugin error(s)\nmonthly snapshot cost {} → {} ({}), one-time {}\n",
        t.actions,
        t.images_touched,
        t.images_in_scope,
        t.destructive,
        t.refused,
        t.plugin_errors,
        dollars(t.monthly_cost_before),
        dollars(t.monthly_cost_after),
        dollars(t.monthly_cost_after.saturating_sub(t.monthly_cost_before)),
        dollars(t.one_time_cost),
    ));
    out
}
