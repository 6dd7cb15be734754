//! The plan as GitHub-flavoured Markdown, for a change ticket or a pull-request comment:
//! the table's words, with every string escaped so that no image name, tag or reason
//! can close a table cell, open a link or an HTML tag, or start a code span.

use super::view::{ERRORS, KEPT, REFUSED, Tone, View, view};
use crate::model::text::escape;
use crate::plan::Plan;

/// `s` as Markdown text that shows as it reads: control characters escaped, newlines as
/// spaces (a newline would end a table row), and every character that Markdown, GitHub's
/// extensions (tables, strikethrough, math) or inline HTML give a meaning to escaped with
/// a backslash, which CommonMark allows before any ASCII punctuation.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in escape(s).chars() {
        match c {
            '\r' | '\n' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '~' | '$' | '!' | '#' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// One table row of escaped cells.
fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

/// A table header; `right` says which columns are numbers.
fn header(names: &[&str], right: &[bool]) -> String {
    let rule: Vec<String> = right.iter().map(|r| if *r { "---:".into() } else { "---".into() }).collect();
    row(&names.iter().map(|n| text(n)).collect::<Vec<_>>()) + &row(&rule)
}

/// The plan as a Markdown document: the heading and totals first (what a reviewer reads),
/// then a table of actions per account and region (destructive ones in bold), the
/// refusals and the plugin errors; last, the images plugins keep and why (secondary: a
/// reviewer checks them when an image they expected to go stays).
pub fn plan(plan: &Plan, about: Option<&super::About>) -> String {
    let v: View = view(plan, about);
    let mut out = format!("### {}\n\n", text(&v.title));
    if let Some(about) = &v.about {
        out.push_str(&format!("{}  \n", text(about)));
    }
    if let Some(stopped) = &v.stopped {
        out.push_str(&format!("**{}**  \n", text(stopped)));
    }
    if let Some(empty) = v.empty {
        out.push_str(&format!("{}  \n", text(empty)));
    }
    out.push_str(&format!("**{}**  \n", text(&v.totals)));
    if let Some(by_op) = &v.by_operation {
        out.push_str(&format!("{}  \n", text(by_op)));
    }
    out.push_str(&format!("{}\n", text(&v.cost)));
    for group in &v.groups {
        out.push_str(&format!("\n#### {} / {}\n\n", text(&group.account), text(&group.region)));
        out.push_str(&header(
            &["action", "image", "name", "why", "who", "Δ $/month"],
            &[false, false, false, false, false, true],
        ));
        for r in &group.rows {
            let action = match r.tone {
                Tone::Destructive => format!("**{}**", text(&r.action)),
                _ => text(&r.action),
            };
            let why: Vec<String> = r.why.iter().map(|w| text(w)).collect();
            out.push_str(&row(&[
                action,
                text(&r.image_id),
                text(&r.image_name),
                why.join("<br>"),
                text(&r.who),
                text(&r.delta),
            ]));
        }
    }
    if !v.refused.is_empty() {
        out.push_str(&format!("\n#### {}\n\n", text(REFUSED)));
        out.push_str(&header(&["refused", "image", "name", "kind", "reason", "who"], &[false; 6]));
        for r in &v.refused {
            out.push_str(&row(&[
                text(&r.action),
                text(&r.image_id),
                text(&r.image_name),
                text(&r.kind),
                text(&r.reason),
                text(&r.who),
            ]));
        }
    }
    if !v.errors.is_empty() {
        out.push_str(&format!("\n#### {}\n\n", text(ERRORS)));
        for e in &v.errors {
            out.push_str(&format!("- {}\n", text(e)));
        }
    }
    if !v.kept.is_empty() {
        out.push_str(&format!("\n#### {}\n\n", text(KEPT)));
        out.push_str(&header(&["image", "name", "where", "why", "who"], &[false; 5]));
        for k in &v.kept {
            let why: Vec<String> = k.why.iter().map(|w| text(w)).collect();
            out.push_str(&row(&[
                text(&k.image_id),
                text(&k.image_name),
                text(&k.place),
                why.join("<br>"),
                text(&k.who),
            ]));
        }
    }
    out
}
