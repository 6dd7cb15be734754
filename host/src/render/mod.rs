//! Human output: the plan as tables grouped by account and region, with totals, or as a
//! Markdown or HTML document with the same words (`view`); `explain`'s answer likewise.

pub mod explain;
pub mod html;
pub mod markdown;
mod view;

use comfy_table::{Cell, Color, ColumnConstraint, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use crate::model::text::escape;
use crate::plan::Plan;
pub use view::{About, action_text};
use view::{ERRORS, KEPT, REFUSED, Tone, cut};

/// The width the tables get when the output's width is not known (a file, a pipe).
pub const DEFAULT_WIDTH: u16 = 160;

/// The narrowest the tables get: below it they are drawn this wide (a terminal wraps the
/// lines) rather than squeezing ids and amounts.
pub const MIN_WIDTH: u16 = 100;

/// Below this width the action tables leave out the image names.
const NARROW: u16 = 130;

/// Image names: cut at `NAME_CHARS` characters, so the column is never wider than the
/// cut name and its padding.
const NAME_CHARS: usize = 28;
const NAME: Fit = Fit::Between(10, NAME_CHARS as u16 + 3);

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

/// A table `width` wide whose columns fit as `fits` says; styled cells are coloured only
/// when `colour` says so, whatever stdout is (the caller decides: a terminal, no NO_COLOR).
fn table(header: &[&str], fits: &[Fit], width: u16, colour: bool) -> Table {
    use comfy_table::Width::Fixed;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic).set_width(width);
    // comfy-table measures the unstyled text and styles each laid-out line, so colour
    // never changes a width.
    t.force_no_tty();
    if colour {
        t.enforce_styling();
    }
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

/// The colour of a row on a terminal: destructive red, shares yellow, copies green.
fn colour_of(tone: Tone) -> Option<Color> {
    match tone {
        Tone::Destructive => Some(Color::Red),
        Tone::Share => Some(Color::Yellow),
        Tone::Copy => Some(Color::Green),
        Tone::Plain => None,
    }
}

/// Text from outside, cut to `n` characters, with control characters escaped: a plugin's
/// reason or an image's name cannot move the cursor or hide rows.
fn short(s: &str, n: usize) -> String {
    cut(&escape(s), n)
}

fn plain(s: &str) -> String {
    escape(s).into_owned()
}

/// How the plan's tables are laid out.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// The width of the tables (never under `MIN_WIDTH`).
    pub width: u16,
    /// Style the rows by what they do (for a terminal).
    pub colour: bool,
    /// List the images plugins retain; otherwise only count them.
    pub show_kept: bool,
}

/// The plan as text: what it is about, actions per account and region, refusals, the
/// images plugins keep (listed or counted, as `layout` says), plugin errors, and totals
/// with a count per operation.
pub fn plan(plan: &Plan, about: Option<&About>, layout: Layout) -> String {
    let v = view::view(plan, about);
    let Layout { width, colour, show_kept } = layout;
    let width = width.max(MIN_WIDTH);
    let mut out = plain(&v.title) + "\n";
    for line in v.about.iter().chain(&v.stopped) {
        out.push_str(&plain(line));
        out.push('\n');
    }
    if let Some(empty) = v.empty {
        out.push_str(empty);
        out.push('\n');
    }
    // Below NARROW the image names make way for the reasons (the ids stay).
    let named = width >= NARROW;
    for group in &v.groups {
        let mut t = if named {
            table(
                &["action", "image", "name", "why", "who", "Δ $/month"],
                &[Fit::Between(10, 24), Fit::Whole, NAME, Fit::AtLeast(24), Fit::Whole, Fit::Whole],
                width,
                colour,
            )
        } else {
            table(
                &["action", "image", "why", "who", "Δ $/month"],
                &[Fit::Between(10, 24), Fit::Whole, Fit::AtLeast(20), Fit::Whole, Fit::Whole],
                width,
                colour,
            )
        };
        for r in &group.rows {
            let why: Vec<String> = r.why.iter().map(|w| plain(w)).collect();
            let mut row = vec![plain(&r.action), plain(&r.image_id)];
            if named {
                row.push(short(&r.image_name, NAME_CHARS));
            }
            row.extend([why.join("\n"), plain(&r.who), r.delta.clone()]);
            let fg = colour_of(r.tone);
            t.add_row(row.into_iter().map(|text| match fg {
                Some(c) => Cell::new(text).fg(c),
                None => Cell::new(text),
            }));
        }
        out.push_str(&format!("\n{} / {}\n{t}\n", plain(&group.account), plain(&group.region)));
    }
    if !v.refused.is_empty() {
        let mut t = if named {
            table(
                &["refused", "image", "name", "kind", "reason", "who"],
                &[Fit::Between(10, 30), Fit::Whole, NAME, Fit::Whole, Fit::AtLeast(24), Fit::Whole],
                width,
                colour,
            )
        } else {
            table(
                &["refused", "image", "kind", "reason", "who"],
                &[Fit::Between(10, 30), Fit::Whole, Fit::Whole, Fit::AtLeast(24), Fit::Whole],
                width,
                colour,
            )
        };
        for r in &v.refused {
            let mut row = vec![short(&r.action, 40), plain(&r.image_id)];
            if named {
                row.push(short(&r.image_name, NAME_CHARS));
            }
            row.extend([r.kind.clone(), plain(&r.reason), plain(&r.who)]);
            t.add_row(row);
        }
        out.push_str(&format!("\n{REFUSED}\n{t}\n"));
    }
    if show_kept && !v.kept.is_empty() {
        let mut t = if named {
            table(
                &["image", "name", "where", "why", "who"],
                &[Fit::Whole, NAME, Fit::Whole, Fit::AtLeast(24), Fit::Whole],
                width,
                colour,
            )
        } else {
            table(
                &["image", "where", "why", "who"],
                &[Fit::Whole, Fit::Whole, Fit::AtLeast(24), Fit::Whole],
                width,
                colour,
            )
        };
        for k in &v.kept {
            let why: Vec<String> = k.why.iter().map(|w| plain(w)).collect();
            let mut row = vec![plain(&k.image_id)];
            if named {
                row.push(short(&k.image_name, NAME_CHARS));
            }
            row.extend([plain(&k.place), why.join("\n"), plain(&k.who)]);
            t.add_row(row);
        }
        out.push_str(&format!("\n{KEPT}\n{t}\n"));
    }
    if !v.errors.is_empty() {
        out.push_str(&format!("\n{ERRORS}\n"));
        for e in &v.errors {
            out.push_str(&format!("  - {}\n", plain(e)));
        }
    }
    if let Some(by_op) = &v.by_operation {
        out.push_str(&format!("\n{by_op}"));
    }
    out.push_str(&format!("\n{}\n{}\n", v.totals, v.cost));
    if !show_kept && !v.kept.is_empty() {
        out.push_str(&format!("{} image(s) kept by plugins; --show-kept lists them\n", v.kept.len()));
    }
    out
}

#[cfg(test)]
mod tests;
