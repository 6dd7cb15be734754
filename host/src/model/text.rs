//! Text from outside (plugins, EC2 names and tags, files): control characters are
//! refused where text enters from a plugin and escaped wherever text is rendered, so
//! no input can move the cursor, erase lines or reorder what a terminal shows.

use std::borrow::Cow;

/// Whether `c` may not appear raw on a terminal: C0 and C1 controls (tab and newline
/// excepted), DEL, and the bidirectional overrides and isolates.
pub fn is_unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The first character of `s` that may not be shown raw, if any.
pub fn unsafe_char(s: &str) -> Option<char> {
    s.chars().find(|&c| is_unsafe_char(c))
}

/// `s` with every unsafe character written as `\u{…}`: safe to print anywhere.
pub fn escape(s: &str) -> Cow<'_, str> {
    if unsafe_char(s).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_and_bidi_overrides_are_escaped_and_plain_text_is_kept() {
        let rows = [
            ("plain reason", "plain reason"),
            ("two\nlines\tand a tab", "two\nlines\tand a tab"),
            ("\u{1b}[1A\u{1b}[2Khidden", "\\u{1b}[1A\\u{1b}[2Khidden"),
            ("C1 \u{9b}2J", "C1 \\u{9b}2J"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("isolate\u{2066}x\u{2069}", "isolate\\u{2066}x\\u{2069}"),
            ("del\u{7f}", "del\\u{7f}"),
            ("naïve ünïcode 日本", "naïve ünïcode 日本"),
        ];
        for (input, want) in rows {
            assert_eq!(escape(input), want, "{input:?}");
            assert_eq!(unsafe_char(input).is_none(), input == want, "{input:?}");
        }
    }
}
