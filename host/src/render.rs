//! Human output: the plan as tables grouped by account and region, with totals.

use std::collections::BTreeMap;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use crate::cost::dollars;
use crate::model::text::escape;
use crate::plan::Plan;

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

/// The plan as text: actions per account and region, refusals, plugin errors, totals.
pub fn plan(plan: &Plan) -> String {
    let mut out = String::new();
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
                short(&serde_json::to_string(&r.action).unwrap_or_default().replace('"', ""), 40),
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
        dollars(t.monthly_cost_after - t.monthly_cost_before),
        dollars(t.one_time_cost),
    ));
    out
}
