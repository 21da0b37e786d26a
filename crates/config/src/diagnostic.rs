//! Diagnostics: what is wrong, where, and how bad.
//!
//! Severities follow keepalived's `--config-test` classes so that halb's exit codes can be
//! keepalived's: an [`Severity::Error`] means the configuration cannot run at all (keepalived's
//! fatal class: a missing file, an interface that does not exist), a [`Severity::Warning`] means
//! a value was ignored or fixed up and the rest runs (every other keepalived config error),
//! and a [`Severity::Note`] is information that does not make the file unclean.

use crate::source::{SourceMap, Span};
use annotate_snippets::{Level, Renderer, Snippet};
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
        for d in sorted {
            match format {
                Format::Short => {
                    let _ = writeln!(out, "{}", short_line(d, sources));
                }
                Format::Human => {
                    let _ = writeln!(out, "{}\n", human(d, sources, color));
                }
            }
        }
        out
    }
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
        text = displayable(file.line(span.line));
        origin = file.path.display().to_string();
        let start = crate::source::floor_char_boundary(&text, span.start as usize);
        let end = crate::source::floor_char_boundary(&text, (span.start + span.len) as usize);
        // annotate-snippets needs a non-empty range to draw a caret.
        let end = if end > start {
            end
        } else {
            text[start..]
                .chars()
                .next()
                .map(|c| start + c.len_utf8())
                .unwrap_or(start)
        };
        message = message.snippet(
            Snippet::source(&text)
                .line_start(span.line as usize)
                .origin(&origin)
                .annotation(lvl.span(start..end)),
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
}
