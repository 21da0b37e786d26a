//! keepalived's preprocessor: from files to logical lines.
//!
//! This follows keepalived 2.2's `read_line()` step by step, because users' files depend on its
//! exact behaviour: comments (`#`, `!`) are cut anywhere outside double quotes (`\#` and `\!`
//! escape them), `@ID` / `@^ID` keep or drop a line by config id, `$NAME=value` defines a
//! parameter (multi-line with a trailing `\`), `$NAME` and `${NAME}` substitute it, `~SEQ(...)`
//! and `~LST(...)` repeat the rest of a line, `include` reads other files (globs, relative to the
//! including file), and every `{` and `}` becomes a line of its own.
//!
//! Each produced [`Line`] maps each of its bytes back to a column of the source line it came
//! from; text that a substitution put there maps to the `$` that asked for it.

use crate::diagnostic::Diagnostics;
use crate::source::{FileId, SourceMap, Span};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

/// How the preprocessor reads files and what it may expand.
pub struct Options<'a> {
    /// The config id that `@ID` lines are compared with (keepalived: `-i`, default the host name).
    pub config_id: String,
    /// Reads a file; the default reads the filesystem. Tests and fuzzing pass their own.
    pub read_file: &'a dyn Fn(&Path) -> std::io::Result<String>,
    /// Expands an `include` pattern to the files it names, sorted.
    pub glob: &'a dyn Fn(&str) -> Vec<PathBuf>,
    /// A limit on produced lines, so that a runaway `~SEQ` or a self-referencing parameter is an
    /// error instead of a hang.
    pub max_lines: usize,
}

/// Reads a file from the filesystem.
pub fn read_fs(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Expands a pattern on the filesystem, with `{a,b}` alternatives as glibc's GLOB_BRACE does.
pub fn glob_fs(pattern: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for alternative in expand_braces(pattern) {
        let mut matched: Vec<PathBuf> = match glob::glob(&alternative) {
            Ok(paths) => paths
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect(),
            Err(_) => Vec::new(),
        };
        matched.sort();
        out.extend(matched);
    }
    out
}

/// `a{b,c}d` → `abd`, `acd` (nested braces included); a brace without a comma is literal.
fn expand_braces(pattern: &str) -> Vec<String> {
    let bytes = pattern.as_bytes();
    let Some(open) = bytes.iter().position(|&b| b == b'{') else {
        return vec![pattern.to_string()];
    };
    let mut depth = 0;
    let mut parts = Vec::new();
    let mut part_start = open + 1;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    parts.push(&pattern[part_start..i]);
                    if parts.len() < 2 {
                        // "{x}" is not an alternative list: keep it and expand what follows.
                        let rest = expand_braces(&pattern[i + 1..]);
                        return rest
                            .into_iter()
                            .map(|r| format!("{}{r}", &pattern[..=i]))
                            .collect();
                    }
                    let (head, tail) = (&pattern[..open], &pattern[i + 1..]);
                    return parts
                        .into_iter()
                        .flat_map(|p| expand_braces(&format!("{head}{p}{tail}")))
                        .collect();
                }
            }
            b',' if depth == 1 => {
                parts.push(&pattern[part_start..i]);
                part_start = i + 1;
            }
            _ => {}
        }
    }
    vec![pattern.to_string()]
}

/// A logical line after preprocessing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    /// Where each byte of `text` came from in the source line.
    pub cols: Cols,
    pub file: FileId,
    pub line: u32,
}

/// The source column of each byte of a preprocessed line. Most lines are a slice of their
/// source line (`Offset`), which needs no table; a substitution or an unescaped `\#` makes
/// one (`Table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cols {
    /// Byte `i` came from column `offset + i`.
    Offset(u32),
    /// Byte `i` came from column `table[i]`.
    Table(Vec<u32>),
}

impl Cols {
    /// The column of byte `i` of a text `len` bytes long (one past the end for `i == len`).
    pub fn get(&self, i: usize, len: usize) -> u32 {
        match self {
            Cols::Offset(o) => o + i as u32,
            Cols::Table(t) => t.get(i).copied().unwrap_or_else(|| {
                t.last().map(|c| c + 1).unwrap_or(0) + (i.saturating_sub(len)) as u32
            }),
        }
    }
}

impl Line {
    /// The source span of a byte range of `text`.
    pub fn span(&self, range: std::ops::Range<usize>) -> Span {
        let len_text = self.text.len();
        let start = self.cols.get(range.start, len_text);
        let len = if range.end > range.start {
            let last = self.cols.get(range.end - 1, len_text);
            (last + 1).saturating_sub(start)
        } else {
            0
        };
        Span::new(self.file, self.line, start, len)
    }

    /// The span of the whole line.
    pub fn whole(&self) -> Span {
        self.span(0..self.text.len())
    }
}

/// Text with a source column for each byte.
#[derive(Debug, Clone)]
struct Text {
    s: String,
    cols: Cols,
}

impl Text {
    fn from_source(s: &str) -> Self {
        Text {
            s: s.to_string(),
            cols: Cols::Offset(0),
        }
    }

    fn at(s: &str, col: u32) -> Self {
        Text {
            s: s.to_string(),
            cols: Cols::Table(vec![col; s.len()]),
        }
    }

    /// Turns an offset map into a table, for edits inside the text.
    fn table(&mut self) -> &mut Vec<u32> {
        if let Cols::Offset(o) = self.cols {
            self.cols = Cols::Table((o..o + self.s.len() as u32).collect());
        }
        match &mut self.cols {
            Cols::Table(t) => t,
            Cols::Offset(_) => unreachable!("just made a table"),
        }
    }

    fn trim_start_blanks(&mut self) {
        let n = self.s.len() - self.s.trim_start_matches([' ', '\t']).len();
        self.drain(0..n);
    }

    fn trim_end_blanks(&mut self) {
        let n = self.s.trim_end_matches([' ', '\t']).len();
        self.truncate(n);
    }

    fn truncate(&mut self, n: usize) {
        self.s.truncate(n);
        if let Cols::Table(t) = &mut self.cols {
            t.truncate(n);
        }
    }

    fn drain(&mut self, range: std::ops::Range<usize>) {
        if range.is_empty() {
            return;
        }
        if range.start == 0 {
            if let Cols::Offset(o) = &mut self.cols {
                // Dropping a prefix keeps the map an offset.
                *o += range.end as u32;
                self.s.replace_range(range, "");
                return;
            }
        }
        self.table().drain(range.clone());
        self.s.replace_range(range, "");
    }

    fn push(&mut self, c: char) {
        let col = self.col(self.s.len());
        self.s.push(c);
        if let Cols::Table(t) = &mut self.cols {
            t.extend(std::iter::repeat_n(col, c.len_utf8()));
        }
    }

    fn splice(&mut self, range: std::ops::Range<usize>, with: &str, col: u32) {
        self.table()
            .splice(range.clone(), std::iter::repeat_n(col, with.len()));
        self.s.replace_range(range, with);
    }

    fn slice(&self, range: std::ops::Range<usize>) -> Text {
        let cols = match &self.cols {
            Cols::Offset(o) => Cols::Offset(o + range.start as u32),
            Cols::Table(t) => Cols::Table(t[range.clone()].to_vec()),
        };
        Text {
            s: self.s[range].to_string(),
            cols,
        }
    }

    fn col(&self, i: usize) -> u32 {
        self.cols.get(i, self.s.len())
    }
}

#[derive(Debug, Clone)]
struct Definition {
    /// The lines of the value: one for a plain definition, one or more for a multi-line one.
    lines: Vec<String>,
    multiline: bool,
}

/// A multi-line definition being collected from the lines after `$NAME= \`.
struct Collecting {
    name: String,
}

/// Runs the preprocessor over a configuration file and everything it includes.
pub fn preprocess(
    path: &Path,
    opts: &Options<'_>,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
) -> Vec<Line> {
    let mut out = Vec::new();
    preprocess_each(path, opts, sources, diags, &mut |line, _| out.push(line));
    out
}

/// Runs the preprocessor, handing each logical line to `sink` as soon as it is made (with the
/// diagnostics, for what the sink finds in it), so that a large configuration never has to be
/// held as a whole list of lines.
pub fn preprocess_each(
    path: &Path,
    opts: &Options<'_>,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
    sink: &mut dyn FnMut(Line, &mut Diagnostics),
) {
    let mut pp = Preprocessor {
        opts,
        sources,
        diags,
        defs: HashMap::new(),
        collecting: None,
        sink,
        emitted: 0,
        include_depth: 0,
        overflow: false,
        out_bytes: 0,
        processed: 0,
        runaway_lines: HashSet::new(),
        random_state: 0x2545_f491_4f6c_dd1d,
    };
    pp.defs.insert(
        "_INSTANCE".into(),
        Definition {
            lines: vec![opts.config_id.clone()],
            multiline: false,
        },
    );
    pp.defs.insert("_HASH".into(), plain("#"));
    pp.defs.insert("_BANG".into(), plain("!"));
    pp.read_top(path);
}

fn plain(v: &str) -> Definition {
    Definition {
        lines: vec![v.to_string()],
        multiline: false,
    }
}

struct Preprocessor<'a, 'o> {
    opts: &'a Options<'o>,
    sources: &'a mut SourceMap,
    diags: &'a mut Diagnostics,
    defs: HashMap<String, Definition>,
    collecting: Option<Collecting>,
    /// Where the lines go, in order.
    sink: &'a mut dyn FnMut(Line, &mut Diagnostics),
    /// Lines handed to `sink`, for `max_lines`.
    emitted: usize,
    include_depth: usize,
    overflow: bool,
    /// The bytes emitted: a short file can expand to gigabytes (a 64 KiB definition on every
    /// line of a sequence), so the total is bounded too.
    out_bytes: usize,
    /// Lines looked at, emitted or not: lines that expand into failing includes or definitions
    /// emit nothing, and a self-referring multi-line value can multiply them without end.
    processed: usize,
    /// Lines already reported for runaway substitution: one such line can expand into
    /// thousands of lines that each hit the limit, and one error says it.
    runaway_lines: HashSet<(FileId, u32)>,
    random_state: u64,
}

const MAX_INCLUDE_DEPTH: usize = 32;
const MAX_SUBSTITUTION_ROUNDS: usize = 64;
/// The most a configuration may expand to: keepalived files of 10,000 real servers are about
/// 1 MiB.
const MAX_EXPANDED_BYTES: usize = 16 * 1024 * 1024;
/// A definition that refers to itself twice doubles the line each round: stop long before the
/// rounds run out (2^64 bytes would). keepalived's own lines are far shorter than this.
const MAX_SUBSTITUTED_LINE: usize = 64 * 1024;

impl Preprocessor<'_, '_> {
    fn read_top(&mut self, path: &Path) {
        match (self.opts.read_file)(path) {
            Ok(text) => {
                let id = self.sources.add(path, text);
                self.read_file(id);
            }
            Err(e) => {
                self.diags
                    .global(
                        crate::diagnostic::Severity::Error,
                        format!("cannot read configuration file {}: {e}", path.display()),
                    )
                    .set_help("check the path given with -f");
            }
        }
    }

    fn read_file(&mut self, id: FileId) {
        let dir = self
            .sources
            .path(id)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let pwd = Definition {
            lines: vec![absolute(&dir).display().to_string()],
            multiline: false,
        };
        let saved_pwd = self.defs.insert("_PWD".into(), pwd);
        let count = self.sources.get(id).line_count() as u32;
        for n in 1..=count {
            if self.overflow {
                break;
            }
            let mut text = Text::from_source(self.sources.get(id).line(n));
            // A line holding only whitespace ends a multi-line definition.
            if text.s.trim_matches([' ', '\t', '\r']).is_empty() {
                if self.collecting.take().is_some() {
                    continue;
                }
                continue;
            }
            self.decomment(&mut text, id, n);
            if let Some(c) = &self.collecting {
                let name = c.name.clone();
                let continues = text.s.ends_with('\\');
                if continues {
                    text.truncate(text.s.len() - 1);
                    text.trim_end_blanks();
                } else {
                    self.collecting = None;
                }
                if !text.s.is_empty() {
                    if let Some(def) = self.defs.get_mut(&name) {
                        def.lines.push(text.s.clone());
                    }
                }
                continue;
            }
            if text.s.is_empty() {
                continue;
            }
            self.process(text, id, n, &dir, 0);
        }
        match saved_pwd {
            Some(p) => {
                self.defs.insert("_PWD".into(), p);
            }
            None => {
                self.defs.remove("_PWD");
            }
        }
    }

    /// keepalived's `decomment()`: strip leading blanks, cut the comment, unescape `\#` and `\!`
    /// outside quotes, strip trailing blanks, keep a final `\` (it continues a definition).
    fn decomment(&mut self, text: &mut Text, file: FileId, line: u32) {
        text.trim_start_blanks();
        let mut quote = false;
        let mut cont = false;
        let mut skip: Option<usize> = None;
        let mut quote_at = 0;
        let mut i = 0;
        while i < text.s.len() {
            let b = text.s.as_bytes()[i];
            match b {
                b'"' => {
                    if skip.is_none() {
                        quote = !quote;
                        quote_at = i;
                    }
                    i += 1;
                }
                b'\\' => {
                    if i + 1 < text.s.len() {
                        let next = text.s.as_bytes()[i + 1];
                        if !quote && (next == b'#' || next == b'!') {
                            text.drain(i..i + 1);
                            i += 1;
                        } else {
                            i += 2;
                        }
                    } else {
                        text.truncate(i);
                        cont = true;
                        break;
                    }
                }
                b'!' | b'#' => {
                    if !quote && skip.is_none() {
                        skip = Some(i);
                    }
                    i += 1;
                }
                _ => i += 1,
            }
        }
        if quote {
            let span = Span::new(file, line, text.col(quote_at), 1);
            self.diags.warn(span, "unterminated quote");
        }
        if let Some(at) = skip {
            text.truncate(at.min(text.s.len()));
        }
        text.trim_end_blanks();
        if cont {
            text.push('\\');
        }
    }

    /// Everything after decommenting: conditionals, definitions, sequences, substitution,
    /// includes, then brace splitting.
    fn process(&mut self, mut text: Text, file: FileId, line: u32, dir: &Path, depth: usize) {
        if self.overflow {
            return;
        }
        self.processed += 1;
        let work_limit = self.opts.max_lines.saturating_mul(4);
        if self.processed > work_limit {
            let span = Span::new(file, line, text.col(0), text.s.len() as u32);
            self.diags.error(
                span,
                format!("the configuration expands to more than {work_limit} lines of work"),
            );
            self.overflow = true;
            return;
        }
        if depth > MAX_SUBSTITUTION_ROUNDS {
            if !self.runaway_lines.insert((file, line)) {
                return;
            }
            let span = Span::new(file, line, text.col(0), text.s.len() as u32);
            self.diags
                .error(span, "parameter expansion nests too deeply")
                .set_help("a definition probably refers to itself");
            return;
        }
        let mut pending: VecDeque<String> = VecDeque::new();
        let mut rounds = 0;
        // Names already reported as left unsubstituted on this line (each round rescans it).
        let mut not_substituted: Vec<String> = Vec::new();
        loop {
            if text.s.starts_with('@') && !self.keep_conditional(&mut text) {
                return;
            }
            if text.s.starts_with('$') && self.try_definition(&text) {
                return;
            }
            if text.s.starts_with("~SEQ") || text.s.starts_with("~LST") {
                self.sequence(text, file, line, dir, depth);
                for rest in pending {
                    self.process(Text::at(&rest, 0), file, line, dir, depth + 1);
                }
                return;
            }
            if text.s.starts_with('~') || !text.s.contains('$') {
                break;
            }
            rounds += 1;
            if rounds > MAX_SUBSTITUTION_ROUNDS {
                let span = Span::new(file, line, text.col(0), text.s.len() as u32);
                self.diags
                    .error(span, "parameter substitution does not terminate")
                    .set_help("a definition probably refers to itself");
                return;
            }
            match self.substitute(&mut text, file, line, &mut not_substituted) {
                Some(rest) => {
                    if text.s.len() > MAX_SUBSTITUTED_LINE {
                        let span = Span::new(file, line, text.col(0), 1);
                        self.diags
                            .error(
                                span,
                                format!(
                                    "parameter substitution makes this line longer than {MAX_SUBSTITUTED_LINE} bytes"
                                ),
                            )
                            .set_help("a definition probably refers to itself more than once");
                        return;
                    }
                    // Lines of a multi-line value come after this line, before the next one.
                    for (i, l) in rest.into_iter().enumerate() {
                        pending.insert(i, l);
                    }
                    self.decomment(&mut text, file, line);
                    if text.s.is_empty() {
                        break;
                    }
                    if !(text.s.starts_with('@') || text.s.contains('$')) {
                        break;
                    }
                }
                None => break,
            }
        }
        if !text.s.is_empty() && !self.try_include(&text, file, line, dir) {
            self.emit_split(text, file, line);
        }
        // Lines of a multi-line value have no column of their own: they point at the line start.
        while let Some(l) = pending.pop_front() {
            self.process(Text::at(&l, 0), file, line, dir, depth + 1);
        }
    }

    /// `@ID rest` / `@^ID rest`: false when the line is dropped, else strips the prefix.
    fn keep_conditional(&mut self, text: &mut Text) -> bool {
        let (reverse, ofs) = if text.s.as_bytes().get(1) == Some(&b'^') {
            (true, 2)
        } else {
            (false, 1)
        };
        let Some(end) = text.s[ofs..].find([' ', '\t']).map(|e| e + ofs) else {
            return false;
        };
        let matches = text.s[ofs..end] == self.opts.config_id;
        if matches == reverse {
            return false;
        }
        let rest = text.s[end..]
            .find(|c| c != ' ' && c != '\t')
            .map(|r| r + end)
            .unwrap_or(text.s.len());
        text.drain(0..rest);
        true
    }

    /// `$NAME=value` (or `$NAME= \` starting a multi-line value). True when the line was one.
    fn try_definition(&mut self, text: &Text) -> bool {
        let s = text.s.as_str();
        let bytes = s.as_bytes();
        if bytes.len() < 2 || !(bytes[1].is_ascii_alphabetic() || bytes[1] == b'_') {
            return false;
        }
        let name_end = bytes[1..]
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
            .map(|p| p + 1)
            .unwrap_or(bytes.len());
        let after = s[name_end..].trim_start_matches([' ', '\t']);
        let Some(value) = after.strip_prefix('=') else {
            return false;
        };
        let name = s[1..name_end].to_string();
        let value = value.trim_start_matches([' ', '\t']);
        let def = if let Some(first) = value.strip_suffix('\\') {
            let first = first.trim_end_matches([' ', '\t']);
            self.collecting = Some(Collecting { name: name.clone() });
            Definition {
                lines: if first.is_empty() {
                    Vec::new()
                } else {
                    vec![first.to_string()]
                },
                multiline: true,
            }
        } else {
            plain(value)
        };
        self.defs.insert(name, def);
        true
    }

    /// Replaces every defined `$NAME` / `${NAME}` in the line. Returns `None` when nothing was
    /// replaced, else the further lines a multi-line value brought.
    fn substitute(
        &mut self,
        text: &mut Text,
        file: FileId,
        line: u32,
        not_substituted: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        let mut found = false;
        let mut rest = Vec::new();
        let mut pos = 0;
        while let Some(off) = text.s[pos..].find('$') {
            let at = pos + off;
            let Some((name, args, end)) = reference_at(&text.s, at) else {
                if let Some(name) = glued_reference_at(&text.s, at) {
                    if self.defs.contains_key(name) && !not_substituted.iter().any(|n| n == name) {
                        let span = Span::new(file, line, text.col(at), name.len() as u32 + 1);
                        let glued = &text.s[at + 1 + name.len()..];
                        let next = glued.chars().next().unwrap_or_default();
                        self.diags
                            .note(
                                span,
                                format!(
                                    "${name} is not substituted here: keepalived replaces $NAME only before a space, a tab or the end of the line, not before '{next}'"
                                ),
                            )
                            .set_help(format!("write ${{{name}}} to substitute it"));
                        not_substituted.push(name.to_string());
                    }
                }
                pos = at + 1;
                continue;
            };
            let value = if name == "_RANDOM" {
                Some(self.random(args.as_deref()))
            } else {
                self.defs.get(&name).map(|d| {
                    if d.multiline {
                        let mut lines = d.lines.clone().into_iter();
                        let first = lines.next().unwrap_or_default();
                        rest.extend(lines);
                        first
                    } else {
                        d.lines.first().cloned().unwrap_or_default()
                    }
                })
            };
            match value {
                Some(v) => {
                    found = true;
                    let col = text.col(at);
                    text.splice(at..end, &v, col);
                    // keepalived stops substituting once a value starts a sequence.
                    if v.trim_start_matches([' ', '\t']).starts_with('~') {
                        break;
                    }
                    pos = at + v.len();
                }
                None => pos = at + 1,
            }
        }
        found.then_some(rest)
    }

    fn random(&mut self, args: Option<&str>) -> String {
        let nums: Vec<u64> = args
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|a| a.parse().ok())
            .collect();
        let min = nums.first().copied().unwrap_or(0);
        let max = nums.get(1).copied().unwrap_or(32767).max(min);
        // xorshift: keepalived's ${_RANDOM} promises no particular sequence.
        self.random_state ^= self.random_state << 13;
        self.random_state ^= self.random_state >> 7;
        self.random_state ^= self.random_state << 17;
        (min + self.random_state % (max - min + 1)).to_string()
    }

    /// `~SEQ(var, [start,] [step,] end) rest`, `~SEQx(...)` and `~LST(var|{vars}, values...)`.
    fn sequence(&mut self, text: Text, file: FileId, line: u32, dir: &Path, depth: usize) {
        let s = &text.s;
        let hex = s.starts_with("~SEQx");
        let is_seq = s.starts_with("~SEQ");
        let open = if hex { 5 } else { 4 };
        let bad = |this: &mut Self, why: &str| {
            let span = Span::new(file, line, text.col(0), s.len() as u32);
            let what = if is_seq { "~SEQ" } else { "~LST" };
            this.diags
                .warn(span, format!("invalid {what} specification: {why}"));
        };
        if s.as_bytes().get(open) != Some(&b'(') {
            bad(self, "expected '(' after the name");
            return;
        }
        let Some(close) = matching_paren(s, open) else {
            bad(self, "missing ')'");
            return;
        };
        let inner = &s[open + 1..close];
        let rest_start = s[close + 1..]
            .find(|c| c != ' ' && c != '\t')
            .map(|r| r + close + 1)
            .unwrap_or(s.len());
        let rest = text.slice(rest_start..s.len());
        let iterations: Vec<Vec<(String, String)>> = if is_seq {
            match parse_seq(inner, hex) {
                Ok(it) => it,
                Err(why) => {
                    bad(self, &why);
                    return;
                }
            }
        } else {
            match parse_lst(inner) {
                Ok(it) => it,
                Err(why) => {
                    bad(self, &why);
                    return;
                }
            }
        };
        if iterations.len() > self.opts.max_lines {
            let span = Span::new(file, line, text.col(0), s.len() as u32);
            self.diags.error(
                span,
                format!(
                    "sequence expands to {} lines, more than the limit of {}",
                    iterations.len(),
                    self.opts.max_lines
                ),
            );
            self.overflow = true;
            return;
        }
        for assignments in iterations {
            if self.overflow {
                return;
            }
            for (var, value) in assignments {
                self.defs.insert(var, plain(&value));
            }
            self.process(rest.clone(), file, line, dir, depth + 1);
        }
    }

    /// `include FILE` and its variants `includer`, `includem`, `includew`, `includeb`, `includea`.
    fn try_include(&mut self, text: &Text, file: FileId, line: u32, dir: &Path) -> bool {
        let s = &text.s;
        let Some(after) = s.strip_prefix("include") else {
            return false;
        };
        let arg_start = match after.as_bytes() {
            [b' ' | b'\t', ..] => 8,
            [b'r' | b'm' | b'w' | b'b' | b'a', b' ' | b'\t', ..] => 9,
            _ => return false,
        };
        let pattern_start = s[arg_start..]
            .find(|c| c != ' ' && c != '\t')
            .map(|p| p + arg_start)
            .unwrap_or(s.len());
        let pattern = s[pattern_start..].trim_end();
        let span = Span::new(file, line, text.col(pattern_start), pattern.len() as u32);
        if pattern.is_empty() {
            self.diags.warn(span, "include without a file name");
            return true;
        }
        let full = if Path::new(pattern).is_absolute() {
            pattern.to_string()
        } else {
            dir.join(pattern).display().to_string()
        };
        let paths = (self.opts.glob)(&full);
        if paths.is_empty() {
            self.diags
                .warn(span, format!("no configuration file matches '{pattern}'"))
                .set_help("keepalived skips a missing include silently; halb says so");
            return true;
        }
        if self.include_depth >= MAX_INCLUDE_DEPTH {
            self.diags
                .error(span, "includes nest too deeply")
                .set_help("a file probably includes itself");
            return true;
        }
        for path in paths {
            match (self.opts.read_file)(&path) {
                Ok(content) => {
                    let id = self.sources.add(&path, content);
                    self.include_depth += 1;
                    self.read_file(id);
                    self.include_depth -= 1;
                }
                Err(e) => {
                    self.diags
                        .warn(span, format!("cannot read {}: {e}", path.display()));
                }
            }
        }
        true
    }

    /// Emits the line, with each `{` and `}` outside quotes on a line of its own.
    fn emit_split(&mut self, mut text: Text, file: FileId, line: u32) {
        loop {
            if text.s.is_empty() {
                return;
            }
            let brace = find_brace(&text.s);
            match brace {
                Some(0) => {
                    let after = text.s[1..]
                        .find(|c| c != ' ' && c != '\t')
                        .map(|p| p + 1)
                        .unwrap_or(text.s.len());
                    let head = text.slice(0..1);
                    self.emit(head, file, line);
                    text.drain(0..after);
                }
                Some(at) => {
                    let mut head = text.slice(0..at);
                    head.trim_end_blanks();
                    self.emit(head, file, line);
                    text.drain(0..at);
                }
                None => {
                    text.trim_end_blanks();
                    self.emit(text, file, line);
                    return;
                }
            }
        }
    }

    fn emit(&mut self, text: Text, file: FileId, line: u32) {
        if text.s.is_empty() {
            return;
        }
        let too_long = self.emitted >= self.opts.max_lines;
        if too_long || self.out_bytes + text.s.len() > MAX_EXPANDED_BYTES {
            if !self.overflow {
                let span = Span::new(file, line, text.col(0), text.s.len() as u32);
                let limit = if too_long {
                    format!("{} lines", self.opts.max_lines)
                } else {
                    format!("{} MiB", MAX_EXPANDED_BYTES >> 20)
                };
                self.diags.error(
                    span,
                    format!("the configuration expands to more than {limit}"),
                );
            }
            self.overflow = true;
            return;
        }
        self.out_bytes += text.s.len();
        self.emitted += 1;
        let line = Line {
            text: text.s,
            cols: text.cols,
            file,
            line,
        };
        (self.sink)(line, self.diags);
    }
}

fn absolute(dir: &Path) -> PathBuf {
    if dir.as_os_str().is_empty() {
        std::env::current_dir().unwrap_or_default()
    } else if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(dir))
            .unwrap_or_else(|_| dir.to_path_buf())
    }
}

/// The first `{` or `}` not inside double quotes (keepalived looks at the first character
/// before skipping quoted text).
fn find_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if matches!(bytes.first(), Some(b'{' | b'}')) {
        return Some(0);
    }
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'}' => return Some(i),
            b'"' => match bytes[i + 1..].iter().position(|&b| b == b'"') {
                Some(p) => i += p + 2,
                None => return None,
            },
            _ => i += 1,
        }
    }
    None
}

/// A parameter reference at `at` (which holds `$`): `$NAME` or `${NAME}` / `${NAME args}`.
/// Returns the name, the arguments, and the end of the reference.
fn reference_at(s: &str, at: usize) -> Option<(String, Option<String>, usize)> {
    let bytes = s.as_bytes();
    if bytes.get(at + 1) == Some(&b'{') {
        let close = s[at + 2..].find('}')? + at + 2;
        let inner = s[at + 2..close].trim();
        let (name, args) = match inner.split_once([' ', '\t']) {
            Some((n, a)) => (n.to_string(), Some(a.trim().to_string())),
            None => (inner.to_string(), None),
        };
        if name.is_empty() {
            return None;
        }
        Some((name, args, close + 1))
    } else {
        let start = at + 1;
        let first = *bytes.get(start)?;
        if !(first.is_ascii_alphabetic() || first == b'_') {
            return None;
        }
        let end = name_end(bytes, start);
        // keepalived's find_definition(): an unbraced name must end the word.
        if !matches!(bytes.get(end), None | Some(b' ' | b'\t')) {
            return None;
        }
        Some((s[start..end].to_string(), None, end))
    }
}

/// The name of an unbraced `$NAME` at `at` that keepalived does not take as a reference because
/// another character follows it directly (`$VIP/32`).
fn glued_reference_at(s: &str, at: usize) -> Option<&str> {
    let bytes = s.as_bytes();
    let start = at + 1;
    let first = *bytes.get(start)?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let end = name_end(bytes, start);
    match bytes.get(end) {
        None | Some(b' ' | b'\t') => None,
        Some(_) => Some(&s[start..end]),
    }
}

/// Where a parameter name starting at `start` ends.
fn name_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
        .map(|p| p + start)
        .unwrap_or(bytes.len())
}

fn matching_paren(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, b) in s.bytes().enumerate().skip(open) {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_number(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t),
    };
    let v = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(h, 16)
    } else {
        digits.parse::<i64>()
    }
    .map_err(|_| format!("'{t}' is not a number"))?;
    Ok(if neg { -v } else { v })
}

/// The assignments of each iteration of `~SEQ(var, [start,] [step,] end)`.
fn parse_seq(inner: &str, hex: bool) -> Result<Vec<Vec<(String, String)>>, String> {
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    let var = parts.first().copied().unwrap_or("");
    if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("'{var}' is not a variable name"));
    }
    let nums: Vec<i64> = parts[1..]
        .iter()
        .map(|p| parse_number(p))
        .collect::<Result<_, _>>()?;
    let (start, step, end) = match nums.as_slice() {
        [end] => (if *end >= 0 { 1 } else { -1 }, None, *end),
        [start, end] => (*start, None, *end),
        [start, step, end] => (*start, Some(*step), *end),
        _ => return Err("expected 1 to 3 numbers after the variable".into()),
    };
    let step = step.unwrap_or(if end >= start { 1 } else { -1 });
    if step == 0 || (step > 0 && start > end) || (step < 0 && start < end) {
        return Err("the step never reaches the end".into());
    }
    let count = (end - start) / step + 1;
    if count > 10_000_000 {
        return Err(format!("{count} iterations is too many"));
    }
    Ok((0..count)
        .map(|i| {
            let v = start + i * step;
            let text = if hex { format!("{v:x}") } else { v.to_string() };
            vec![(var.to_string(), text)]
        })
        .collect())
}

/// The assignments of each iteration of `~LST(var, v1, v2...)` or
/// `~LST({a, b}, {1, 2}, {3, 4})`.
fn parse_lst(inner: &str) -> Result<Vec<Vec<(String, String)>>, String> {
    let items = split_top_level(inner);
    let Some((vars, values)) = items.split_first() else {
        return Err("no variable".into());
    };
    let vars: Vec<String> = unbrace(vars)
        .split(',')
        .map(|v| v.trim().to_string())
        .collect();
    if vars
        .iter()
        .any(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        return Err("bad variable name".into());
    }
    if values.is_empty() {
        return Err("no values".into());
    }
    values
        .iter()
        .map(|set| {
            let vals: Vec<&str> = if vars.len() > 1 {
                unbrace(set).split(',').map(str::trim).collect()
            } else {
                vec![unbrace(set).trim()]
            };
            if vals.len() != vars.len() {
                return Err(format!(
                    "'{set}' has {} values for {} variables",
                    vals.len(),
                    vars.len()
                ));
            }
            Ok(vars
                .iter()
                .cloned()
                .zip(vals.into_iter().map(str::to_string))
                .collect())
        })
        .collect()
}

fn unbrace(s: &str) -> &str {
    let t = s.trim();
    t.strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(t)
}

/// Splits at commas that are not inside `{}`.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Severity;
    use std::collections::HashMap;

    fn run(files: &[(&str, &str)], config_id: &str) -> (Vec<String>, Diagnostics, SourceMap) {
        let map: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        let read = |p: &Path| {
            map.get(p)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        let keys: Vec<PathBuf> = map.keys().cloned().collect();
        let glob = |pat: &str| {
            let pattern = glob::Pattern::new(pat).ok();
            let mut v: Vec<PathBuf> = keys
                .iter()
                .filter(|k| pattern.as_ref().is_some_and(|p| p.matches_path(k)))
                .cloned()
                .collect();
            v.sort();
            v
        };
        let opts = Options {
            config_id: config_id.into(),
            read_file: &read,
            glob: &glob,
            max_lines: 100_000,
        };
        let mut sources = SourceMap::new();
        let mut diags = Diagnostics::new();
        let lines = preprocess(Path::new(files[0].0), &opts, &mut sources, &mut diags);
        (lines.into_iter().map(|l| l.text).collect(), diags, sources)
    }

    #[test]
    fn comments_and_braces() {
        let (lines, d, _) = run(
            &[(
                "/c/k.conf",
                "! header\nvrrp_instance VI { # x\n  state MASTER ! y\n  pass \"a#b\" }\n\\#lit\n",
            )],
            "h",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            lines,
            [
                "vrrp_instance VI",
                "{",
                "state MASTER",
                "pass \"a#b\"",
                "}",
                "#lit"
            ]
        );
    }

    #[test]
    fn conditionals() {
        let text = "@main priority 100\n@backup priority 90\n@^main weight 1\nnoprefix\n@main\n";
        let (lines, _, _) = run(&[("/k.conf", text)], "main");
        assert_eq!(lines, ["priority 100", "noprefix"]);
        let (lines, _, _) = run(&[("/k.conf", text)], "backup");
        assert_eq!(lines, ["priority 90", "weight 1", "noprefix"]);
    }

    #[test]
    fn definitions_and_multiline() {
        let text = "$PRIO=100\n$IF = eth0\npriority $PRIO\ninterface ${IF}.1\n$BLOCK= \\\n  a $PRIO \\\n  b\n\nx $BLOCK\ny $UNDEFINED\n";
        let (lines, d, _) = run(&[("/k.conf", text)], "h");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            lines,
            [
                "priority 100",
                "interface eth0.1",
                "x a 100",
                "b",
                "y $UNDEFINED"
            ]
        );
    }

    #[test]
    fn an_unbraced_name_must_end_its_word() {
        // keepalived 2.2.7 leaves `$VIP/32` as written ("VRRP parsed invalid IP $VIP/32").
        let text = "$VIP=10.0.0.9\n$VIP/32 dev eth0\n${VIP}/32 dev eth0\n$VIP dev eth0\npeer $VIP/32 $VIP/24\n$OTHER/8\n";
        let (lines, d, _) = run(&[("/k.conf", text)], "h");
        assert_eq!(
            lines,
            [
                "$VIP/32 dev eth0",
                "10.0.0.9/32 dev eth0",
                "10.0.0.9 dev eth0",
                "peer $VIP/32 $VIP/24",
                "$OTHER/8"
            ]
        );
        let notes: Vec<(u32, u32)> = d
            .iter()
            .map(|n| {
                assert_eq!(n.severity, Severity::Note, "{n:?}");
                let span = n.span.expect("a place");
                (span.line, span.start)
            })
            .collect();
        assert_eq!(
            notes,
            [(2, 0), (5, 5)],
            "once per line, only for defined names"
        );
    }

    #[test]
    fn sequences() {
        let (lines, _, _) = run(
            &[(
                "/k.conf",
                "~SEQ(N, 0, 2) ip 10.0.${N}.1\n~SEQx(H, 0x9, 0x10, 0x1a) h ${H}\n~LST({A, B}, {1,2},{3,4}) ~SEQ(C, 2) v ${A}.${B}.${C}\n",
            )],
            "h",
        );
        assert_eq!(
            lines,
            [
                "ip 10.0.0.1",
                "ip 10.0.1.1",
                "ip 10.0.2.1",
                "h 9",
                "h 19",
                "v 1.2.1",
                "v 1.2.2",
                "v 3.4.1",
                "v 3.4.2"
            ]
        );
    }

    #[test]
    fn includes_are_relative_and_positions_kept() {
        let (lines, d, sources) = run(
            &[
                ("/etc/k/main.conf", "a 1\ninclude conf.d/*.conf\nb 2\n"),
                ("/etc/k/conf.d/x.conf", "x {\n}\n"),
                ("/etc/k/conf.d/y.conf", "y\n"),
            ],
            "h",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(lines, ["a 1", "x", "{", "}", "y", "b 2"]);
        assert_eq!(sources.files().count(), 3);
    }

    #[test]
    fn missing_include_warns_with_place() {
        let (_, d, sources) = run(&[("/k.conf", "\n  include nothere.conf\n")], "h");
        let diag = d.iter().next().expect("a diagnostic");
        assert_eq!(sources.location(diag.span.expect("span")), "/k.conf:2:11");
    }

    #[test]
    fn self_reference_does_not_hang() {
        let (_, d, _) = run(&[("/k.conf", "$A=x $A\nv $A\n")], "h");
        assert!(d.has_errors());
        let (_, d, _) = run(&[("/k.conf", "include /k.conf\n")], "h");
        assert!(d.has_errors());
        // 60 KiB on each of 90,000 lines: 5 GiB unless the total is bounded.
        // Braced: keepalived takes `$A$A` for no reference at all (a name must end its word).
        let big = format!(
            "$A=0123456789abcdef\n$B={}\n$C={}\n$D={}\n~SEQ(i,1,90000) $D\n",
            "${A}".repeat(16),
            "${B}".repeat(16),
            "${C}".repeat(15)
        );
        let (lines, d, _) = run(&[("/k.conf", &big)], "h");
        assert!(
            d.iter().any(|d| d.message.contains("MiB")),
            "{:?}",
            d.iter().map(|d| &d.message).collect::<Vec<_>>()
        );
        assert!(lines.iter().map(String::len).sum::<usize>() <= MAX_EXPANDED_BYTES);
        // A multi-line value whose second line includes it twice: every include fails and emits
        // nothing, while the pending lines double.
        let (_, d, _) = run(&[("/k.conf", "$X=)\\\ninclude ${X}${X}\n$X")], "h");
        assert!(d.iter().any(|d| d.message.contains("lines of work")));
        // Doubling on every round: 2^64 bytes unless the line length is bounded.
        let (_, d, _) = run(&[("/k.conf", "$X=${X}${X}\n$X\n")], "h");
        assert!(d.iter().any(|d| d.message.contains("longer than")));
    }

    #[test]
    fn columns_follow_substitution() {
        let opts_line = "$X=long_value\n  key $X tail\n";
        let map: HashMap<PathBuf, String> = [(PathBuf::from("/k"), opts_line.to_string())]
            .into_iter()
            .collect();
        let read = |p: &Path| {
            map.get(p)
                .cloned()
                .ok_or_else(|| std::io::ErrorKind::NotFound.into())
        };
        let glob = |_: &str| Vec::new();
        let opts = Options {
            config_id: "h".into(),
            read_file: &read,
            glob: &glob,
            max_lines: 100,
        };
        let mut sources = SourceMap::new();
        let mut diags = Diagnostics::new();
        let lines = preprocess(Path::new("/k"), &opts, &mut sources, &mut diags);
        let l = &lines[0];
        assert_eq!(l.text, "key long_value tail");
        let tail = l.text.find("tail").expect("tail");
        assert_eq!(l.span(tail..tail + 4).start, 9);
        assert_eq!(l.span(4..14).start, 6);
    }

    #[test]
    fn braces_in_globs() {
        assert_eq!(expand_braces("a{b,c}d"), ["abd", "acd"]);
        assert_eq!(expand_braces("x{1}y"), ["x{1}y"]);
    }
}
