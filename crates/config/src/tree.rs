//! From logical lines to a tree of keyword lines and their `{ }` blocks.
//!
//! keepalived decides by keyword whether a `{` opens a block; halb first builds the block
//! structure for every line alike and lets the section readers decide what a block means.
//! This is what lets an unknown keyword be skipped together with its whole block, instead of
//! letting the block's `}` close the parent as keepalived does.

use crate::diagnostic::Diagnostics;
use crate::preprocess::Line;
use crate::source::Span;

/// One word of a line, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub span: Span,
}

impl Word {
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A line with its words, and the block that follows it, if any.
#[derive(Debug, Clone)]
pub struct Node {
    /// Never empty: the first word is the keyword.
    pub words: Vec<Word>,
    /// The preprocessed line, for keywords whose values keepalived reads with its script quoting.
    pub line: Line,
    pub block: Option<Block>,
}

impl Node {
    pub fn keyword(&self) -> &Word {
        &self.words[0]
    }

    pub fn name(&self) -> &str {
        &self.words[0].text
    }

    pub fn args(&self) -> &[Word] {
        &self.words[1..]
    }

    pub fn arg(&self, i: usize) -> Option<&Word> {
        self.words.get(i + 1)
    }

    /// The span of the keyword.
    pub fn span(&self) -> Span {
        self.words[0].span
    }

    /// The span from the keyword to the last word of the line.
    pub fn line_span(&self) -> Span {
        let last = self.words.last().map(|w| w.span).unwrap_or(self.span());
        self.span().to(last)
    }

    /// The block's lines, or an empty slice.
    pub fn children(&self) -> &[Node] {
        self.block
            .as_ref()
            .map(|b| b.nodes.as_slice())
            .unwrap_or(&[])
    }
}

#[derive(Debug, Clone)]
pub struct Block {
    pub nodes: Vec<Node>,
    pub open: Span,
    /// `None` when the file ended before the block was closed.
    pub close: Option<Span>,
}

/// Splits a line into words the way keepalived's `alloc_strvec()` does: blanks separate words,
/// and `"..."` is one word without its quotes.
pub fn words(line: &Line, diags: &mut Diagnostics) -> Vec<Word> {
    let s = line.text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        while i < s.len() && is_blank(s[i]) {
            i += 1;
        }
        if i >= s.len() {
            break;
        }
        if s[i] == b'"' {
            let start = i + 1;
            match s[start..].iter().position(|&b| b == b'"') {
                Some(len) => {
                    out.push(Word {
                        text: line.text[start..start + len].to_string(),
                        span: line.span(i..start + len + 1),
                    });
                    i = start + len + 1;
                }
                None => {
                    diags.warn(line.span(i..s.len()), "unmatched quote");
                    break;
                }
            }
        } else {
            let start = i;
            while i < s.len() && !is_blank(s[i]) && s[i] != b'"' {
                i += 1;
            }
            out.push(Word {
                text: line.text[start..i].to_string(),
                span: line.span(start..i),
            });
        }
    }
    out
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

/// keepalived's deepest real nesting is four blocks (virtual_server, real_server, HTTP_GET,
/// url); far deeper text is a runaway substitution, and a tree that deep would exhaust the stack
/// of everything that walks or drops it recursively.
const MAX_BLOCK_DEPTH: usize = 32;

/// Builds the tree of a whole configuration.
pub fn build(lines: Vec<Line>, diags: &mut Diagnostics) -> Vec<Node> {
    let mut builder = Builder::new();
    let mut nodes = Vec::new();
    for line in lines {
        nodes.extend(builder.push(line, diags));
    }
    nodes.extend(builder.finish(diags));
    nodes
}

/// A block being filled: its nodes, and the `{` that opened it (None for the top level). An
/// orphan frame holds a `{` that followed no keyword; its contents are dropped.
struct Frame {
    nodes: Vec<Node>,
    open: Option<Span>,
    orphan: bool,
    /// Opened past MAX_BLOCK_DEPTH: already reported once, so not again when unclosed.
    too_deep: bool,
}

impl Frame {
    fn new(open: Option<Span>, orphan: bool, too_deep: bool) -> Frame {
        Frame {
            nodes: Vec::new(),
            open,
            orphan,
            too_deep,
        }
    }
}

/// Builds the tree line by line, handing out each top-level node once nothing that follows
/// can change it, so that a reader can consume a large configuration section by section
/// instead of holding all of it.
pub struct Builder {
    stack: Vec<Frame>,
    previous_was_keyword: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    pub fn new() -> Builder {
        Builder {
            stack: vec![Frame::new(None, false, false)],
            previous_was_keyword: false,
        }
    }

    /// Takes the next line; returns the top-level nodes it completed, in order.
    pub fn push(&mut self, line: Line, diags: &mut Diagnostics) -> Vec<Node> {
        let mut done = Vec::new();
        // At the top level, any line but a `{` completes the nodes before it: only a `{`
        // right after a keyword can still attach to the last one.
        if self.stack.len() == 1 && line.text != "{" {
            done = std::mem::take(&mut self.stack[0].nodes);
        }
        match line.text.as_str() {
            "{" => {
                let open = line.whole();
                let top = self.stack.last().expect("stack never empty");
                let owner_ok = self.previous_was_keyword
                    && top.nodes.last().is_some_and(|n| n.block.is_none());
                let too_deep = self.stack.len() > MAX_BLOCK_DEPTH;
                if too_deep {
                    if !top.orphan {
                        diags
                            .error(
                                open,
                                format!("blocks nest more than {MAX_BLOCK_DEPTH} deep"),
                            )
                            .set_help("this block is ignored");
                    }
                } else if !owner_ok {
                    diags.error(open, "unexpected '{'").set_help(
                        "a block must follow the keyword it belongs to; this block is ignored",
                    );
                }
                self.stack
                    .push(Frame::new(Some(open), !owner_ok || too_deep, too_deep));
                self.previous_was_keyword = false;
            }
            "}" => {
                let close = line.whole();
                self.previous_was_keyword = false;
                if self.stack.len() == 1 {
                    diags.error(close, "extra '}' found");
                    return done;
                }
                let mut frame = self.stack.pop().expect("checked length");
                if frame.orphan {
                    return done;
                }
                // A block is complete: give back what reading pushed beyond its size.
                frame.nodes.shrink_to_fit();
                let parent = self.stack.last_mut().expect("stack never empty");
                if let Some(owner) = parent.nodes.last_mut() {
                    owner.block = Some(Block {
                        nodes: frame.nodes,
                        open: frame.open.expect("only the top frame has no brace"),
                        close: Some(close),
                    });
                }
            }
            _ => {
                let mut ws = words(&line, diags);
                if ws.is_empty() {
                    self.previous_was_keyword = false;
                    return done;
                }
                ws.shrink_to_fit();
                self.stack
                    .last_mut()
                    .expect("stack never empty")
                    .nodes
                    .push(Node {
                        words: ws,
                        line,
                        block: None,
                    });
                self.previous_was_keyword = true;
            }
        }
        done
    }

    /// The end of the input: closes what the file left open, innermost first, so nothing read
    /// is lost, and returns the remaining top-level nodes.
    pub fn finish(mut self, diags: &mut Diagnostics) -> Vec<Node> {
        while self.stack.len() > 1 {
            let frame = self.stack.pop().expect("checked length");
            let open = frame.open.expect("only the top frame has no brace");
            if !frame.too_deep {
                diags
                    .error(open, "this '{' is never closed")
                    .set_help("add the missing '}'");
            }
            if frame.orphan {
                continue;
            }
            if let Some(owner) = self.stack.last_mut().and_then(|f| f.nodes.last_mut()) {
                owner.block = Some(Block {
                    nodes: frame.nodes,
                    open,
                    close: None,
                });
            }
        }
        self.stack.pop().map(|f| f.nodes).unwrap_or_default()
    }
}

/// Splits a line the way keepalived reads script values (`alloc_strvec_quoted_escaped()`):
/// single and double quotes group words, and backslash escapes (`\n`, `\t`, `\xHH`, octal,
/// `\cX`) are decoded. Returns `None` (with a warning) for an unterminated quote.
pub fn script_words(line: &Line, from_word: usize, diags: &mut Diagnostics) -> Option<Vec<Word>> {
    // Find where the `from_word`-th generic word starts, and tokenize from there.
    let s = line.text.as_bytes();
    let mut i = 0;
    let mut seen = 0;
    loop {
        while i < s.len() && is_blank(s[i]) {
            i += 1;
        }
        if seen == from_word || i >= s.len() {
            break;
        }
        if s[i] == b'"' {
            i += 1;
            while i < s.len() && s[i] != b'"' {
                i += 1;
            }
            i += 1;
        } else {
            while i < s.len() && !is_blank(s[i]) && s[i] != b'"' {
                i += 1;
            }
        }
        seen += 1;
    }
    let mut out = Vec::new();
    while i < s.len() {
        while i < s.len() && is_blank(s[i]) {
            i += 1;
        }
        if i >= s.len() {
            break;
        }
        let start = i;
        let mut word: Vec<u8> = Vec::new();
        let mut quote: Option<u8> = None;
        while i < s.len() {
            let b = s[i];
            match (quote, b) {
                (_, b'\\') => {
                    i += 1;
                    let Some(&c) = s.get(i) else {
                        diags.warn(
                            line.span(start..s.len()),
                            "missing escaped character at end",
                        );
                        return None;
                    };
                    match c {
                        b'x' if s.get(i + 1).is_some_and(u8::is_ascii_hexdigit) => {
                            i += 1;
                            let mut v: u8 = 0;
                            while i < s.len() && s[i].is_ascii_hexdigit() {
                                v = v.wrapping_shl(4) | hex_digit(s[i]);
                                i += 1;
                            }
                            word.push(v);
                        }
                        b'c' if i + 1 < s.len() => {
                            word.push(s[i + 1] & 0x1f);
                            i += 2;
                        }
                        b'0'..=b'7' => {
                            let mut v: u8 = c - b'0';
                            i += 1;
                            for _ in 0..2 {
                                if i < s.len() && (b'0'..=b'7').contains(&s[i]) {
                                    v = v.wrapping_shl(3).wrapping_add(s[i] - b'0');
                                    i += 1;
                                }
                            }
                            word.push(v);
                        }
                        _ => {
                            word.push(match c {
                                b'a' => 0x07,
                                b'b' => 0x08,
                                b'E' => 0x1b,
                                b'f' => 0x0c,
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'v' => 0x0b,
                                other => other,
                            });
                            i += 1;
                        }
                    }
                }
                (Some(q), c) if c == q => {
                    quote = None;
                    i += 1;
                }
                (Some(_), c) => {
                    word.push(c);
                    i += 1;
                }
                (None, b'"' | b'\'') => {
                    quote = Some(b);
                    i += 1;
                }
                (None, c) if is_blank(c) => break,
                (None, c) => {
                    word.push(c);
                    i += 1;
                }
            }
        }
        if let Some(q) = quote {
            diags.warn(
                line.span(start..s.len()),
                format!("missing terminating {}", q as char),
            );
            return None;
        }
        out.push(Word {
            text: String::from_utf8_lossy(&word).into_owned(),
            span: line.span(start..i),
        });
    }
    Some(out)
}

fn hex_digit(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FileId;

    fn line(s: &str) -> Line {
        Line {
            text: s.into(),
            cols: crate::preprocess::Cols::Offset(0),
            file: FileId(0),
            line: 1,
        }
    }

    fn texts(ws: &[Word]) -> Vec<&str> {
        ws.iter().map(|w| w.text.as_str()).collect()
    }

    /// The builder hands out a top-level node as soon as a later line shows it is complete,
    /// and never before: a `{` right after a keyword still belongs to it.
    #[test]
    fn builder_hands_out_completed_top_level_nodes() {
        let mut d = Diagnostics::new();
        let mut b = Builder::new();
        let names = |nodes: Vec<Node>| {
            nodes
                .iter()
                .map(|n| (n.name().to_string(), n.children().len()))
                .collect::<Vec<_>>()
        };
        assert!(b.push(line("a 1"), &mut d).is_empty());
        assert!(b.push(line("{"), &mut d).is_empty());
        assert!(b.push(line("x"), &mut d).is_empty());
        assert!(b.push(line("}"), &mut d).is_empty());
        assert_eq!(names(b.push(line("c"), &mut d)), [("a".into(), 1)]);
        assert!(b.push(line("{"), &mut d).is_empty());
        assert!(b.push(line("y"), &mut d).is_empty());
        // The file ends with the block open: it is closed, reported, and nothing is lost.
        assert_eq!(names(b.finish(&mut d)), [("c".into(), 1)]);
        assert_eq!(d.iter().count(), 1);
    }

    #[test]
    fn generic_words() {
        let mut d = Diagnostics::new();
        let ws = words(&line("a \"b c\" d\"e\""), &mut d);
        assert_eq!(texts(&ws), ["a", "b c", "d", "e"]);
        assert_eq!(ws[1].span.start, 2);
        assert_eq!(ws[1].span.len, 5);
    }

    #[test]
    fn script_quoting() {
        let mut d = Diagnostics::new();
        let ws =
            script_words(&line("notify \"/bin/x 'a b'\" 'c \"d' e\\tf"), 1, &mut d).expect("valid");
        assert_eq!(texts(&ws), ["/bin/x 'a b'", "c \"d", "e\tf"]);
        assert!(script_words(&line("notify 'open"), 1, &mut d).is_none());
    }

    #[test]
    fn blocks_and_errors() {
        let mut d = Diagnostics::new();
        let lines = ["a", "{", "b", "{", "}", "}", "}", "{", "c", "}"]
            .iter()
            .map(|s| line(s))
            .collect();
        let nodes = build(lines, &mut d);
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].children().len(), 1);
        assert!(nodes[0].children()[0].block.is_some());
        let msgs: Vec<_> = d.iter().map(|x| x.message.clone()).collect();
        assert_eq!(msgs, ["extra '}' found", "unexpected '{'"]);
    }

    #[test]
    fn nesting_is_bounded() {
        let mut d = Diagnostics::new();
        let mut lines = Vec::new();
        for _ in 0..100_000 {
            lines.push(line("n"));
            lines.push(line("{"));
        }
        let nodes = build(lines, &mut d);
        let mut depth = 0;
        let mut level = &nodes;
        while let Some(n) = level.first() {
            depth += 1;
            level = n.block.as_ref().map(|b| &b.nodes).unwrap_or(&EMPTY);
        }
        assert_eq!(depth, MAX_BLOCK_DEPTH + 1);
        let deep = d
            .iter()
            .filter(|x| x.message.contains("nest more than"))
            .count();
        assert_eq!(deep, 1, "one error where the nesting goes too deep");
        drop(nodes);
    }

    static EMPTY: Vec<Node> = Vec::new();

    #[test]
    fn unclosed_block_keeps_content() {
        let mut d = Diagnostics::new();
        let nodes = build(vec![line("a"), line("{"), line("b 1")], &mut d);
        assert_eq!(nodes[0].children().len(), 1);
        assert!(d.has_errors());
    }
}
