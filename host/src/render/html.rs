//! The plan as one self-contained HTML page (inline CSS, no script, nothing fetched): the
//! table's words, every string HTML-escaped, destructive rows set apart from shares and
//! copies. A Content-Security-Policy forbids scripts and remote loads besides.

use super::view::{ERRORS, KEPT, REFUSED, View, view};
use crate::model::text::escape;
use crate::plan::Plan;

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1f2328}\
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}\
table{border-collapse:collapse;width:100%}\
th,td{border:1px solid #d0d7de;padding:.3em .5em;text-align:left;vertical-align:top;overflow-wrap:break-word}\
td:first-child{overflow-wrap:anywhere;min-width:10em}th{background:#f6f8fa;white-space:nowrap}td.num{text-align:right}td.id{font-family:monospace;white-space:nowrap}\
tr.destructive{background:#ffebe9}tr.destructive td:first-child{color:#a40e26;font-weight:bold}\
tr.share{background:#fff8c5}tr.copy{background:#dafbe1}\
p.stopped{color:#a40e26;font-weight:bold}\
details.kept{margin-top:1.5em}details.kept summary{font-weight:bold;cursor:pointer}";

/// `s` as HTML text: control characters escaped, then the five characters HTML gives a
/// meaning to as entities; newlines as line breaks.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in escape(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
    out
}

/// A table with a header; each row is its class and its cells' (class, escaped text).
fn table(header: &[&str], rows: impl Iterator<Item = (&'static str, Vec<(&'static str, String)>)>) -> String {
    let mut out = String::from("<table>\n<thead><tr>");
    for h in header {
        out.push_str(&format!("<th>{}</th>", text(h)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (class, cells) in rows {
        out.push_str(&format!("<tr class=\"{class}\">"));
        for (cell_class, cell) in cells {
            match cell_class {
                "" => out.push_str(&format!("<td>{cell}</td>")),
                c => out.push_str(&format!("<td class=\"{c}\">{cell}</td>")),
            }
        }
        out.push_str("</tr>\n");
    }
    out + "</tbody>\n</table>\n"
}

/// The plan as an HTML page: heading and totals, a table of actions per account and
/// region, the refusals and the plugin errors; last, folded away, the images plugins
/// keep and why.
pub fn plan(plan: &Plan, about: Option<&super::About>) -> String {
    let v: View = view(plan, about);
    let mut out = String::new();
    if let Some(about) = &v.about {
        out.push_str(&format!("<p class=\"about\">{}</p>\n", text(about)));
    }
    if let Some(stopped) = &v.stopped {
        out.push_str(&format!("<p class=\"stopped\">{}</p>\n", text(stopped)));
    }
    let lines = v.empty.map(text).into_iter().chain([format!("<strong>{}</strong>", text(&v.totals))]);
    let lines: Vec<String> = lines.chain(v.by_operation.as_deref().map(text)).chain([text(&v.cost)]).collect();
    out.push_str(&format!("<p class=\"summary\">{}</p>\n", lines.join("<br>\n")));
    for group in &v.groups {
        out.push_str(&format!("<h2>{} / {}</h2>\n", text(&group.account), text(&group.region)));
        out.push_str(&table(
            &["action", "image", "name", "why", "who", "Δ $/month"],
            group.rows.iter().map(|r| {
                let why: Vec<String> = r.why.iter().map(|w| text(w)).collect();
                (
                    r.tone.class(),
                    vec![
                        ("", text(&r.action)),
                        ("id", text(&r.image_id)),
                        ("", text(&r.image_name)),
                        ("", why.join("<br>")),
                        ("", text(&r.who)),
                        ("num", text(&r.delta)),
                    ],
                )
            }),
        ));
    }
    if !v.refused.is_empty() {
        out.push_str(&format!("<h2>{}</h2>\n", text(REFUSED)));
        out.push_str(&table(
            &["refused", "image", "name", "kind", "reason", "who"],
            v.refused.iter().map(|r| {
                (
                    "refused",
                    vec![
                        ("", text(&r.action)),
                        ("id", text(&r.image_id)),
                        ("", text(&r.image_name)),
                        ("", text(&r.kind)),
                        ("", text(&r.reason)),
                        ("", text(&r.who)),
                    ],
                )
            }),
        ));
    }
    if !v.errors.is_empty() {
        out.push_str(&format!("<h2>{}</h2>\n<ul>\n", text(ERRORS)));
        for e in &v.errors {
            out.push_str(&format!("<li>{}</li>\n", text(e)));
        }
        out.push_str("</ul>\n");
    }
    if !v.kept.is_empty() {
        out.push_str(&format!(
            "<details class=\"kept\">\n<summary>{} ({} image(s))</summary>\n",
            text(KEPT),
            v.kept.len()
        ));
        out.push_str(&table(
            &["image", "name", "where", "why", "who"],
            v.kept.iter().map(|k| {
                let why: Vec<String> = k.why.iter().map(|w| text(w)).collect();
                (
                    "kept",
                    vec![
                        ("id", text(&k.image_id)),
                        ("", text(&k.image_name)),
                        ("", text(&k.place)),
                        ("", why.join("<br>")),
                        ("", text(&k.who)),
                    ],
                )
            }),
        ));
        out.push_str("</details>\n");
    }
    page(&v.title, &out)
}

/// One HTML page titled `title` (raw text) around `body` (HTML), with the style inline
/// and a Content-Security-Policy that lets nothing run or load.
pub(super) fn page(title: &str, body: &str) -> String {
    let title = text(title);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n{body}</body>\n</html>\n"
    )
}
