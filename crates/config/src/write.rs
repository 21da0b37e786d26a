//! Writing a model back out as keepalived.conf.
//!
//! The output is keepalived syntax that halb and keepalived both read back to the same model;
//! the round-trip property test holds the readers and writers to that.

/// An indenting line writer.
#[derive(Debug, Default)]
pub struct ConfWriter {
    out: String,
    depth: usize,
}

impl ConfWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes one line at the current depth.
    pub fn line(&mut self, text: &str) {
        for _ in 0..self.depth {
            self.out.push_str("    ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// `keyword value`, with the value quoted when needed.
    pub fn kv(&mut self, keyword: &str, value: impl std::fmt::Display) {
        self.line(&format!("{keyword} {}", quote(&value.to_string())));
    }

    /// `keyword` followed by already formatted words.
    pub fn words(&mut self, words: &[&str]) {
        self.line(&words.join(" "));
    }

    /// Writes `keyword` when `on`.
    pub fn flag(&mut self, keyword: &str, on: bool) {
        if on {
            self.line(keyword);
        }
    }

    /// Opens `head {` and indents.
    pub fn open(&mut self, head: &str) {
        self.line(&format!("{head} {{"));
        self.depth += 1;
    }

    pub fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        self.line("}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Quotes a word when keepalived would otherwise read it differently: blanks, braces,
/// comment characters, backslashes, a leading `@`, `$` or `~` (conditionals, parameters and
/// sequences are only recognised at the start of an unquoted line), or an empty word. Words
/// never contain `"`: the lexer ends a word there.
pub fn quote(s: &str) -> String {
    let needs = s.is_empty()
        || s.starts_with(['@', '$', '~'])
        || s.starts_with("include")
        || s.bytes().any(|b| {
            matches!(
                b,
                b' ' | b'\t'
                    | b'\n'
                    | b'\r'
                    | 0x0b
                    | 0x0c
                    | b'{'
                    | b'}'
                    | b'#'
                    | b'!'
                    | b'\\'
                    | b'$'
            )
        });
    if needs && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        s.to_string()
    }
}
