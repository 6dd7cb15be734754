//! The human formats: the same words in each, every outside string escaped the way its
//! format needs, and colour that changes no character a reader sees.

#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]

use crate::plan::Plan;

const HOSTILE: &str =
    "a|b <script>alert(1)</script> ](javascript:x) `x` *y* $1 & \"q\"\nnext [l](javascript:y) $m$ ~~s~~ <i>z</i>";

/// A plan with one action of each tone, a refusal and a kept image, every outside string
/// hostile.
fn plan() -> Plan {
    let action = |id: &str, op: serde_json::Value| {
        let mut a = serde_json::json!({
            "id": id, "account": "111111111111", "region": "us-east-1",
            "image_id": "ami-0aaaaaaaaaaaaaaa1", "image_name": HOSTILE,
            "plugins": ["p|lugin"], "reasons": [format!("p|lugin: {HOSTILE}")],
            "monthly_cost_delta": -400000, "one_time_cost": 0,
        });
        a.as_object_mut().unwrap().extend(op.as_object().unwrap().clone());
        a
    };
    serde_json::from_value(serde_json::json!({
        "schema_version": crate::plan::SCHEMA_VERSION,
        "evaluation_time": "2026-11-24T00:00:00Z",
        "source": {"kind": "event", "origin": "<b>event</b>.json", "text": ""},
        "inventory_fingerprint": "", "policy_fingerprint": "", "inventory_needs": [],
        "actions": [
            action("act-1", serde_json::json!({"op": "share", "principal": "222222222222"})),
            action("act-2", serde_json::json!({"op": "copy", "request": {"region": "eu-west-1", "encrypted": false,
                "kms_key_id": null, "copy_tags": true, "name": "copy"}})),
            action("act-3", serde_json::json!({"op": "deregister"})),
        ],
        "refused": [{"image_id": "ami-0aaaaaaaaaaaaaaa1", "account": "111111111111", "region": "us-east-1",
            "image_name": HOSTILE, "action": {"deregister": {"delete_snapshots": true}}, "plugins": ["p|lugin"],
            "kind": "vetoed", "reason": HOSTILE}],
        "errors": [],
        "kept": [{"image_id": "ami-0aaaaaaaaaaaaaaa2", "account": "111111111111", "region": "us-east-1",
            "image_name": HOSTILE, "plugins": ["p|lugin"], "reasons": [format!("p|lugin: {HOSTILE}")]}],
        "totals": {"images_in_scope": 1, "images_touched": 1, "actions": 3, "destructive": 1, "refused": 1,
            "plugin_errors": 0, "monthly_cost_before": 400000, "monthly_cost_after": 0, "one_time_cost": 0},
    }))
    .unwrap()
}

#[test]
fn markdown_text_escapes_what_would_break_a_cell_or_make_a_link_tag_or_code() {
    use super::markdown::text;
    let rows = [
        ("golden-web-2026-11-16", "golden-web-2026-11-16"),
        ("a|b", "a\\|b"),
        ("<script>alert(1)</script>", "\\<script\\>alert(1)\\</script\\>"),
        ("[x](javascript:x)", "\\[x\\](javascript:x)"),
        ("![i](http://e/x.png)", "\\!\\[i\\](http://e/x.png)"),
        ("`code`", "\\`code\\`"),
        ("*b* _i_ ~~s~~", "\\*b\\* \\_i\\_ \\~\\~s\\~\\~"),
        ("$1 over $2", "\\$1 over \\$2"),
        ("&lt; # \\", "\\&lt; \\# \\\\"),
        ("two\nlines\n", "two lines "),
        ("cr\r", "cr\\\\u{d}"),
        ("\u{1b}[2J", "\\\\u{1b}\\[2J"),
    ];
    table(text, &rows);
}

#[test]
fn html_text_escapes_markup_and_keeps_line_breaks() {
    use super::html::text;
    let rows = [
        ("plain", "plain"),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("a & \"b\" 'c'", "a &amp; &quot;b&quot; &#39;c&#39;"),
        ("&lt;", "&amp;lt;"),
        ("two\nlines", "two<br>lines"),
        ("\u{202e}rtl", "\\u{202e}rtl"),
    ];
    table(text, &rows);
}

/// Checks `escape` on every (input, wanted output) row.
fn table(escape: fn(&str) -> String, rows: &[(&str, &str)]) {
    for (input, want) in rows {
        assert_eq!(escape(input), *want, "{input:?}");
    }
}

#[test]
fn every_markdown_table_row_has_as_many_cells_as_its_header() {
    let md = super::markdown::plan(&plan(), None);
    // A `|` not escaped by a backslash separates cells.
    let separators = |line: &str| {
        let mut n = 0;
        let mut escaped = false;
        for c in line.chars() {
            match (c, escaped) {
                ('\\', false) => escaped = true,
                ('|', false) => n += 1,
                _ => escaped = false,
            }
        }
        n
    };
    let tables: Vec<Vec<&str>> = md.split("\n\n").map(|b| b.lines().filter(|l| l.starts_with('|')).collect()).collect();
    let mut rows = 0;
    for table in tables.iter().filter(|t| !t.is_empty()) {
        let columns = separators(table[0]);
        for line in table {
            assert_eq!(separators(line), columns, "{line}\nin\n{md}");
            rows += 1;
        }
    }
    assert_eq!(rows, 3 * 2 + 3 + 1 + 1, "three headers, three actions, a refusal and a kept image:\n{md}");
    // Every `<` and `]` from outside is escaped: no tag opens, no link closes.
    let unescaped = md.replace("\\<", "").replace("\\]", "");
    assert!(!unescaped.contains('<') && !unescaped.contains("]("), "{md}");
    assert!(md.contains("| **deregister** |"), "destructive actions in bold: {md}");
    assert!(!md.contains("**share"), "{md}");
}

#[test]
fn the_html_page_escapes_every_outside_string_and_sets_destructive_rows_apart() {
    let html = super::html::plan(&plan(), None);
    assert!(!html.contains("<script") && !html.contains("<b>"), "{html}");
    assert!(html.contains("a|b &lt;script&gt;alert(1)&lt;/script&gt; ](javascript:x)"), "{html}");
    for class in ["destructive", "share", "copy", "refused", "kept"] {
        assert_eq!(html.matches(&format!("<tr class=\"{class}\">")).count(), 1, "{class}: {html}");
    }
    // Self-contained: nothing is fetched, nothing runs.
    for outside in ["src=", "href=", "url(", "@import", "<link", "<iframe", "<object", "http://", "https://"] {
        assert!(!html.contains(outside), "{outside}: {html}");
    }
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"), "{html}");
}

#[test]
fn colour_marks_rows_by_what_they_do_and_changes_no_character_a_reader_sees() {
    let plan = plan();
    let layout = super::Layout { width: 160, colour: false, show_kept: true };
    let plain = super::plan(&plan, None, layout);
    let coloured = super::plan(&plan, None, super::Layout { colour: true, ..layout });
    assert!(!plain.contains('\u{1b}'), "{plain}");
    assert_eq!(console::strip_ansi_codes(&coloured), plain);
    let line = |verb: &str| coloured.lines().find(|l| l.contains(verb)).unwrap().to_string();
    // crossterm's 256-colour codes: 9 red, 11 yellow, 10 green.
    assert!(line("deregister").contains("\u{1b}[38;5;9m"), "{coloured}");
    assert!(line("share 222222222222").contains("\u{1b}[38;5;11m"), "{coloured}");
    assert!(line("copy to eu-west-1").contains("\u{1b}[38;5;10m"), "{coloured}");
    // The refusals and kept images are not actions: no colour of their own.
    let refused = coloured.split("Refused or vetoed").nth(1).unwrap();
    assert!(refused.contains("Kept by plugins") && !refused.contains('\u{1b}'), "{refused}");
}

#[test]
fn the_three_formats_say_the_same_words() {
    let plan = plan();
    let table = super::plan(&plan, None, super::Layout { width: 160, colour: false, show_kept: true });
    let md = super::markdown::plan(&plan, None);
    let html = super::html::plan(&plan, None);
    for words in [
        "Kept by plugins",
        "111111111111 / us-east-1",
        "ami-0aaaaaaaaaaaaaaa2",
        "Plan at 2026-11-24T00:00:00Z for the event",
        "3 action(s) on 1 of 1 image(s), 1 destructive; 1 refused; 0 plugin error(s)",
        "By operation: 1 to share, 1 to copy, 1 to deregister",
        "Refused or vetoed",
        "vetoed",
    ] {
        for (format, text) in [("table", &table), ("markdown", &md), ("html", &html)] {
            assert!(text.contains(words), "{format} lacks {words:?}:\n{text}");
        }
    }
}

/// The plain text under a node: its text, code and line-break nodes in order.
fn text_of<'a>(node: comrak::Node<'a>) -> String {
    use comrak::nodes::NodeValue;
    node.descendants()
        .map(|n| match &n.data().value {
            NodeValue::Text(t) => t.to_string(),
            NodeValue::SoftBreak | NodeValue::LineBreak => " ".into(),
            _ => String::new(),
        })
        .collect()
}

/// A GitHub-flavoured Markdown parser (comrak, with GitHub's tables, strikethrough,
/// autolinks and `$` math) reads the hostile strings as the text they are: one cell
/// each, no link, image, HTML, code or math made of them.
#[test]
fn a_gfm_parser_reads_every_outside_string_as_plain_text() {
    use comrak::nodes::NodeValue;
    let mut options = comrak::Options::default();
    options.extension.table = true;
    options.extension.strikethrough = true;
    options.extension.autolink = true;
    options.extension.math_dollars = true;
    let md = super::markdown::plan(&plan(), None);
    let arena = comrak::Arena::new();
    let root = comrak::parse_document(&arena, &md, &options);
    for node in root.descendants() {
        let value = &node.data().value;
        let made_up = matches!(
            value,
            NodeValue::Link(_)
                | NodeValue::Image(_)
                | NodeValue::HtmlInline(_)
                | NodeValue::HtmlBlock(_)
                | NodeValue::Code(_)
                | NodeValue::CodeBlock(_)
                | NodeValue::Math(_)
                | NodeValue::Strikethrough
                | NodeValue::Emph
        );
        assert!(!made_up, "{} from {md}", value.xml_node_name());
    }
    let rows: Vec<Vec<String>> = root
        .descendants()
        .filter(|n| matches!(n.data().value, NodeValue::TableRow(false)))
        .map(|row| row.children().map(text_of).collect())
        .collect();
    let shown = HOSTILE.replace('\n', " ");
    assert_eq!(rows.len(), 5, "three actions, a refusal and a kept image: {rows:?}");
    for row in &rows[..3] {
        assert_eq!(row.len(), 6, "{row:?}");
        assert_eq!([&row[2], &row[3], &row[4]], [&shown, &shown, "p|lugin"], "name, why, who");
    }
    assert_eq!(rows[2][0], "deregister", "{:?}", rows[2]);
    let refusal = ["deregister with its snapshots", "ami-0aaaaaaaaaaaaaaa1", &shown, "vetoed", &shown, "p|lugin"];
    assert_eq!(rows[3], refusal);
    assert_eq!(rows[4], ["ami-0aaaaaaaaaaaaaaa2", &shown, "111111111111 / us-east-1", &shown, "p|lugin"]);
    let title = root.descendants().find(|n| matches!(n.data().value, NodeValue::Heading(_))).unwrap();
    assert_eq!(text_of(title), "Plan at 2026-11-24T00:00:00Z for the event <b>event</b>.json");
}

#[test]
fn the_table_lists_kept_images_only_when_asked_and_otherwise_counts_them() {
    let plan = plan();
    let listed = super::plan(&plan, None, super::Layout { width: 160, colour: false, show_kept: true });
    let counted = super::plan(&plan, None, super::Layout { width: 160, colour: false, show_kept: false });
    let kept = listed.split("Kept by plugins\n").nth(1).unwrap_or_else(|| panic!("{listed}"));
    assert!(kept.contains("ami-0aaaaaaaaaaaaaaa2") && kept.contains("111111111111 / us-east-1"), "{kept}");
    assert!(!listed.contains("--show-kept"), "{listed}");
    assert!(!counted.contains("Kept by plugins") && !counted.contains("ami-0aaaaaaaaaaaaaaa2"), "{counted}");
    assert!(counted.ends_with("1 image(s) kept by plugins; --show-kept lists them\n"), "{counted}");
    let mut none = plan;
    none.kept.clear();
    let quiet = super::plan(&none, None, super::Layout { width: 160, colour: false, show_kept: false });
    assert!(!quiet.contains("kept"), "{quiet}");
}

#[test]
fn refusals_name_their_image_unless_the_table_is_narrow() {
    let plan = plan();
    let named = |width| {
        let text = super::plan(&plan, None, super::Layout { width, colour: false, show_kept: false });
        let refused = text.split("Refused or vetoed\n").nth(1).unwrap().to_string();
        refused.lines().nth(1).unwrap().contains("┆ name ")
    };
    assert_eq!([named(200), named(129), named(100)], [true, false, false]);
    let html = super::html::plan(&plan, None);
    assert!(html.contains("<details class=\"kept\">\n<summary>Kept by plugins (1 image(s))</summary>"), "{html}");
}
