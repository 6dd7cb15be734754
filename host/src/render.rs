//! Human output: the plan as tables grouped by account and region, with totals.

use std::collections::BTreeMap;

use comfy_table::{ColumnConstraint, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use crate::cost::dollars;
use crate::model::Action;
use crate::model::text::escape;
use crate::plan::{Plan, Source};

/// The width the tables get when the output's width is not known (a file, a pipe).
pub const DEFAULT_WIDTH: u16 = 160;

/// The narrowest the tables get: below it they are drawn this wide (a terminal wraps the
/// lines) rather than squeezing ids and amounts.
pub const MIN_WIDTH: u16 = 100;

/// Below this width the action tables leave out the image names.
const NARROW: u16 = 130;

/// How a column may be laid out when the table must fit its width.
#[derive(Clone, Copy)]
enum Fit {
    /// Never wrapped (ids, amounts, plugin names).
    Whole,
    /// Between these many characters (actions, image names).
    Between(u16, u16),
    /// Given what is left, at least this many characters (reasons).
    AtLeast(u16),
}

/// A table `width` wide whose columns fit as `fits` says.
fn table(header: &[&str], fits: &[Fit], width: u16) -> Table {
    use comfy_table::Width::Fixed;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic).set_width(width);
    t.set_header(header.iter().copied());
    for (i, fit) in fits.iter().enumerate() {
        if let Some(column) = t.column_mut(i) {
            column.set_constraint(match *fit {
                Fit::Whole => ColumnConstraint::ContentWidth,
                Fit::Between(lower, upper) => ColumnConstraint::Boundaries { lower: Fixed(lower), upper: Fixed(upper) },
                Fit::AtLeast(n) => ColumnConstraint::LowerBoundary(Fixed(n)),
            });
        }
    }
    t
}

/// The most of a reason a table shows: the table wraps it to its width, so what a user
/// needs to act on (a veto's "$31.50 over $27.00") is not cut; a plugin's 4 KB reason is.
const REASON: usize = 400;

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
pub fn action_text(action: &Action) -> String {
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
pub fn plan(plan: &Plan, width: u16) -> String {
    let width = width.max(MIN_WIDTH);
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
    // Below NARROW the image names make way for the reasons (the ids stay).
    let named = width >= NARROW;
    for ((account, region), actions) in groups {
        let mut t = if named {
            table(
                &["action", "image", "name", "why", "who", "Δ $/month"],
                &[Fit::Between(10, 24), Fit::Whole, Fit::Between(10, 24), Fit::AtLeast(24), Fit::Whole, Fit::Whole],
                width,
            )
        } else {
            table(
                &["action", "image", "why", "who", "Δ $/month"],
                &[Fit::Between(10, 24), Fit::Whole, Fit::AtLeast(20), Fit::Whole, Fit::Whole],
                width,
            )
        };
        for a in actions {
            let delta = if a.one_time_cost != 0 {
                format!("{} (+{} once)", dollars(a.monthly_cost_delta), dollars(a.one_time_cost))
            } else {
                dollars(a.monthly_cost_delta)
            };
            let why: Vec<String> =
                a.reasons.iter().map(|r| short(r.split_once(": ").map_or(r.as_str(), |(_, r)| r), REASON)).collect();
            let mut row = vec![plain(&a.op.verb()), plain(&a.image_id)];
            if named {
                row.push(short(&a.image_name, 28));
            }
            row.extend([why.join("\n"), plain(&a.plugins.iter().cloned().collect::<Vec<_>>().join(", ")), delta]);
            t.add_row(row);
        }
        out.push_str(&format!("\n{} / {}\n{t}\n", plain(account), plain(region)));
    }
    if !plan.refused.is_empty() {
        let mut t = table(
            &["refused", "image", "kind", "reason", "who"],
            &[Fit::Between(10, 30), Fit::Whole, Fit::Whole, Fit::AtLeast(24), Fit::Whole],
            width,
        );
        for r in &plan.refused {
            t.add_row(vec![
                short(&action_text(&r.action), 40),
                plain(&r.image_id),
                serde_json::to_string(&r.kind).unwrap_or_default().replace('"', ""),
                short(&r.reason, REASON),
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
