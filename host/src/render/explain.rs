//! `explain`'s answer in words, once: the image's facts, then its sections (guardrails,
//! proposals, plugin errors, what the plan does and refuses), shown as text, Markdown or
//! HTML.

use crate::explain::Explanation;
use crate::model::text::escape;

/// The explanation in words, raw: each format escapes them its own way.
struct Words {
    /// What the image is (the first line is the title).
    facts: Vec<String>,
    /// Each section's title and items (none: the section says "none").
    sections: Vec<(&'static str, Vec<String>)>,
}

fn words(e: &Explanation) -> Words {
    let i = &e.image;
    let state = serde_json::to_string(&i.state).unwrap_or_default();
    let title = format!(
        "{} {} in {}/{}: {} days old, {}, {}/month in snapshots",
        i.id,
        i.name,
        i.account,
        i.region,
        e.age_days,
        state.trim_matches('"'),
        crate::cost::dollars(i.monthly_cost)
    );
    let tags: Vec<String> = i.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let shares = match &i.launch_permissions {
        Some(p) if p.is_empty() => "private".to_string(),
        Some(p) => p.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
        None if i.public => "public (other shares not read by this run)".into(),
        None => "not read by this run".into(),
    };
    let templates = i.usage.launch_templates.join(", ");
    let mut usage = format!(
        "usage: {} instance(s), launch templates: {}, last launched: {}",
        i.usage.instances,
        if templates.is_empty() { "none" } else { &templates },
        i.usage.last_launched.map_or("unknown".into(), |t| t.to_string())
    );
    if !i.usage.references.is_empty() {
        usage.push_str(&format!(", referenced by: {}", i.usage.references.join(", ")));
    }
    let action = super::action_text;
    Words {
        facts: vec![
            title,
            format!("tags: {}", if tags.is_empty() { "none".into() } else { tags.join(", ") }),
            format!("shared with: {shares}"),
            usage,
        ],
        sections: vec![
            ("Guardrails that bind it", e.guardrails.clone()),
            (
                "What the plugins propose",
                e.proposals.iter().map(|p| format!("{}: {}: {}", p.plugin, action(&p.action), p.reason)).collect(),
            ),
            ("Plugin errors", e.plugin_errors.clone()),
            (
                "What the plan does",
                e.actions.iter().map(|a| format!("{} ({})", a.op.verb(), a.reasons.join("; "))).collect(),
            ),
            (
                "What the plan refuses",
                e.refused
                    .iter()
                    .map(|r| {
                        let kind = serde_json::to_string(&r.kind).unwrap_or_default();
                        format!("{} ({}): {}", action(&r.action), kind.trim_matches('"'), r.reason)
                    })
                    .collect(),
            ),
        ],
    }
}

/// How a format lays the words out: what goes before and after each part, and how text
/// is escaped.
struct Layout {
    escape: fn(&str) -> String,
    /// Around the title; `None` leaves it to the page.
    title: Option<(&'static str, &'static str)>,
    fact: (&'static str, &'static str),
    section: (&'static str, &'static str),
    /// Around a section's items.
    list: (&'static str, &'static str),
    item: (&'static str, &'static str),
    /// A section without items.
    none: &'static str,
}

fn lay_out(w: &Words, l: &Layout) -> String {
    let mut out = String::new();
    let mut facts = w.facts.iter();
    if let (Some((before, after)), Some(title)) = (l.title, facts.next()) {
        out.push_str(&format!("{before}{}{after}", (l.escape)(title)));
    }
    for fact in facts {
        out.push_str(&format!("{}{}{}", l.fact.0, (l.escape)(fact), l.fact.1));
    }
    for (title, items) in &w.sections {
        out.push_str(&format!("{}{}{}", l.section.0, (l.escape)(title), l.section.1));
        if items.is_empty() {
            out.push_str(l.none);
            continue;
        }
        out.push_str(l.list.0);
        for item in items {
            out.push_str(&format!("{}{}{}", l.item.0, (l.escape)(item), l.item.1));
        }
        out.push_str(l.list.1);
    }
    out
}

/// As text for a terminal: the facts, then each section's items indented.
pub fn text(e: &Explanation) -> String {
    let layout = Layout {
        escape: |s| escape(s).into_owned(),
        title: Some(("", "\n")),
        fact: ("  ", "\n"),
        section: ("\n", "\n"),
        list: ("", ""),
        item: ("  - ", "\n"),
        none: "  none\n",
    };
    lay_out(&words(e), &layout).trim_end().to_string()
}

/// As Markdown: the title as a heading, the facts as lines, each section a list.
pub fn markdown(e: &Explanation) -> String {
    let layout = Layout {
        escape: super::markdown::text,
        title: Some(("### ", "\n\n")),
        fact: ("", "  \n"),
        section: ("\n#### ", "\n\n"),
        list: ("", ""),
        item: ("- ", "\n"),
        none: "none\n",
    };
    lay_out(&words(e), &layout)
}

/// As one self-contained HTML page.
pub fn html(e: &Explanation) -> String {
    let layout = Layout {
        escape: super::html::text,
        title: None,
        fact: ("<p>", "</p>\n"),
        section: ("<h2>", "</h2>\n"),
        list: ("<ul>\n", "</ul>\n"),
        item: ("<li>", "</li>\n"),
        none: "<p>none</p>\n",
    };
    let w = words(e);
    super::html::page(w.facts.first().map_or("", String::as_str), &lay_out(&w, &layout))
}
