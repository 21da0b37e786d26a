//! Diagnostics: what is wrong, where, and how bad.
//!
//! Severities follow keepalived's `--config-test` classes so that halb's exit codes can be
//! keepalived's: an [`Severity::Error`] means the configuration cannot run at all (keepalived's
//! fatal class: a missing file, an interface that does not exist), a [`Severity::Warning`] means
//! a value was ignored or fixed up and the rest runs (every other keepalived config error),
//! and a [`Severity::Note`] is information that does not make the file unclean.

use crate::source::{SourceMap, Span};
use annotate_snippets::{Level, Renderer, Snippet};
use std::collections::HashMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Note,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Where; `None` for whole-configuration findings (for example "no configuration file").
    pub span: Option<Span>,
    pub message: String,
    /// What the user can do about it, or what halb did instead.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sets the help text of a diagnostic already pushed.
    pub fn set_help(&mut self, help: impl Into<String>) -> &mut Self {
        self.help = Some(help.into());
        self
    }
}

/// How `halb check-config` prints diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// rustc-like, with the offending source line.
    Human,
    /// One line each: `path:line:col: severity: message`.
    Short,
}

/// The diagnostics of one load, in the order they were found.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, d: Diagnostic) -> &mut Diagnostic {
        self.items.push(d);
        self.items.last_mut().expect("just pushed")
    }

    fn add(&mut self, severity: Severity, span: Option<Span>, message: String) -> &mut Diagnostic {
        self.push(Diagnostic {
            severity,
            span,
            message,
            help: None,
        })
    }

    pub fn error(&mut self, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.add(Severity::Error, Some(span), message.into())
    }

    pub fn warn(&mut self, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.add(Severity::Warning, Some(span), message.into())
    }

    pub fn note(&mut self, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.add(Severity::Note, Some(span), message.into())
    }

    /// A finding about the whole configuration rather than a place in it.
    pub fn global(&mut self, severity: Severity, message: impl Into<String>) -> &mut Diagnostic {
        self.add(severity, None, message.into())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The worst severity present, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.items.iter().map(|d| d.severity).max()
    }

    pub fn has_errors(&self) -> bool {
        self.worst() == Some(Severity::Error)
    }

    /// True when nothing would make `keepalived -t` complain (notes do not count).
    pub fn is_clean(&self) -> bool {
        self.worst().is_none_or(|s| s == Severity::Note)
    }

    /// Renders every diagnostic.
    pub fn render(&self, sources: &SourceMap, format: Format, color: bool) -> String {
        let mut out = String::new();
        // In file order, whole-configuration findings last: the order a reader scans the file.
        let mut sorted: Vec<&Diagnostic> = self.items.iter().collect();
        sorted.sort_by_key(|d| match d.span {
            Some(s) => (0, s.file.0, s.line, s.start),
            None => (1, 0, 0, 0),
        });
        let mut alike: HashMap<(Severity, String), usize> = HashMap::new();
        let mut suppressed: Vec<(Severity, String)> = Vec::new();
        for d in sorted {
            let shape = (d.severity, shape(&d.message));
            let count = alike.entry(shape.clone()).or_default();
            *count += 1;
            if *count > MAX_ALIKE {
                if *count == MAX_ALIKE + 1 {
                    suppressed.push(shape);
                }
                continue;
            }
            match format {
                Format::Short => {
                    let _ = writeln!(out, "{}", short_line(d, sources));
                }
                Format::Human => {
                    let _ = writeln!(out, "{}\n", human(d, sources, color));
                }
            }
        }
        for shape in suppressed {
            let more = alike[&shape] - MAX_ALIKE;
            let (severity, pattern) = shape;
            let _ = writeln!(
                out,
                "note: {more} more {}(s) like \"{pattern}\" not shown ({MAX_ALIKE} are)",
                severity.as_str()
            );
        }
        out
    }
}

/// How many diagnostics of one shape (same severity, same message but for numbers) are
/// printed; the rest are counted in one line. A generated file with one mistake repeated
/// 20,000 times should give a readable report, not 160 MB.
pub const MAX_ALIKE: usize = 10;

/// The message with every run of digits as `N`: `VI_7 and VI_9 both use VRID 51` and
/// `VI_8 and VI_10 both use VRID 51` have the same shape.
fn shape(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_digits = false;
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// `path:line:col: severity: message` (with the help text after ` - ` when there is one).
pub fn short_line(d: &Diagnostic, sources: &SourceMap) -> String {
    let location = match d.span {
        Some(span) => format!("{}: ", sources.location(span)),
        None => String::new(),
    };
    let help = d
        .help
        .as_deref()
        .map(|h| format!(" ({h})"))
        .unwrap_or_default();
    format!("{location}{}: {}{help}", d.severity.as_str(), d.message)
}

fn level(severity: Severity) -> Level {
    match severity {
        Severity::Error => Level::Error,
        Severity::Warning => Level::Warning,
        Severity::Note => Level::Note,
    }
}

/// The source line as it can be shown: control characters (tabs among them) become spaces of
/// the same byte length, so that byte offsets still point at the same place and the renderer,
/// which counts a tab as several columns, cannot lose its place on a long line.
fn displayable(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() {
                " ".repeat(c.len_utf8())
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Lines longer than this are shown as a window around the annotated place.
const MAX_SHOWN: usize = 100;

/// The part of a line to show and the annotated byte range in it: the whole line when it is
/// short, else about `MAX_SHOWN` bytes around the place, marked with `...` where cut. (Long
/// lines also trip the snippet renderer's own margin arithmetic.) The range is never empty,
/// so that a caret is drawn.
fn window(line: &str, start: usize, end: usize) -> (String, std::ops::Range<usize>) {
    use crate::source::floor_char_boundary as floor;
    let ceil = |i: usize| {
        let mut i = i.min(line.len());
        while !line.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    let non_empty = |text: &str, start: usize, end: usize| {
        if end > start {
            end
        } else {
            text[start..]
                .chars()
                .next()
                .map(|c| start + c.len_utf8())
                .unwrap_or(start)
        }
    };
    if line.len() <= MAX_SHOWN {
        let end = non_empty(line, start, end);
        return (line.to_string(), start..end);
    }
    let from = floor(line, start.saturating_sub(MAX_SHOWN / 3));
    let to = ceil(end.max(start + 1).min(start + MAX_SHOWN / 2) + MAX_SHOWN / 3);
    let prefix = if from > 0 { "..." } else { "" };
    let suffix = if to < line.len() { "..." } else { "" };
    let shown = format!("{prefix}{}{suffix}", &line[from..to]);
    let shift = |i: usize| (i.clamp(from, to) - from) + prefix.len();
    let (a, b) = (shift(start), shift(end));
    let b = non_empty(&shown, a, b.min(shown.len() - suffix.len()));
    (shown, a..b)
}

fn human(d: &Diagnostic, sources: &SourceMap, color: bool) -> String {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let lvl = level(d.severity);
    let mut message = lvl.title(&d.message);
    let origin;
    let text;
    if let Some(span) = d.span {
        let file = sources.get(span.file);
        let full = displayable(file.line(span.line));
        origin = file.path.display().to_string();
        let start = crate::source::floor_char_boundary(&full, span.start as usize);
        let end = crate::source::floor_char_boundary(&full, (span.start + span.len) as usize);
        let (shown, range) = window(&full, start, end);
        text = shown;
        message = message.snippet(
            Snippet::source(&text)
                .line_start(span.line as usize)
                .origin(&origin)
                .annotation(lvl.span(range)),
        );
    }
    if let Some(help) = &d.help {
        message = message.footer(Level::Help.title(help));
    }
    let rendered = renderer.render(message).to_string();
    rendered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{SourceMap, Span};

    #[test]
    fn repeated_shapes_are_counted_not_printed() {
        let mut sources = SourceMap::new();
        let text: String = (0..30)
            .map(|i| format!("vrrp_instance VI_{i} {{\n"))
            .collect();
        let file = sources.add("/k.conf", text);
        let mut d = Diagnostics::new();
        for i in 1..30 {
            d.error(
                Span::new(file, i + 1, 0, 13),
                format!("VI_0 and VI_{i} both use VRID 51 with IPv4 on interface eth0"),
            );
        }
        d.warn(Span::new(file, 1, 0, 13), "something else");
        let out = d.render(&sources, Format::Short, false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), MAX_ALIKE + 2, "{out}");
        assert!(lines[0].ends_with("warning: something else"), "{out}");
        assert_eq!(
            lines.last().copied(),
            Some(
                "note: 19 more error(s) like \"VI_N and VI_N both use VRID N with IPvN on \
                 interface ethN\" not shown (10 are)"
            )
        );
        assert_eq!(d.len(), 30, "the count stays whole");
    }

    /// Found by fuzzing: a long line of tabs and replacement characters made the renderer
    /// overflow.
    #[test]
    fn renders_long_lines_with_tabs_and_controls() {
        let mut line = "\t".repeat(200);
        line.push('I');
        line.push_str(&"\u{fffd}".repeat(120));
        line.push_str("\0\u{85}\t~");
        let mut sources = SourceMap::new();
        let file = sources.add("/k.conf", format!("{line}\n"));
        let mut d = Diagnostics::new();
        d.warn(Span::new(file, 1, 200, 1), "unknown keyword");
        d.warn(Span::new(file, 1, line.len() as u32 - 1, 1), "at the end");
        let out = d.render(&sources, Format::Human, false);
        assert!(out.contains("unknown keyword") && out.contains("at the end"));
    }

    /// Found by fuzzing: a long line of tabs, control characters and replacement characters,
    /// annotated at every position.
    #[test]
    fn renders_any_place_of_a_long_line() {
        let line = format!(
            "{}{}{}{}{}{}{}",
            "\t".repeat(28),
            "\u{16}".repeat(91),
            "\t".repeat(11),
            "\0".repeat(30),
            "\t".repeat(41),
            "\u{fffd}".repeat(74),
            "\t".repeat(27)
        );
        let mut sources = SourceMap::new();
        let file = sources.add("/k.conf", format!("x\n{line}\n"));
        for (start, _) in line.char_indices() {
            for len in [0u32, 1, 7, 400] {
                let mut d = Diagnostics::new();
                d.warn(Span::new(file, 2, start as u32, len), "here");
                let out = d.render(&sources, Format::Human, false);
                assert!(out.contains("here"));
            }
        }
    }
}
