//! Source files and positions in them.
//!
//! Every word halb reads keeps a [`Span`] back to the file and line it came from, also when it was
//! produced by an `include`, a `$NAME` substitution or a `~SEQ` expansion, so that each diagnostic
//! can name `file:line:col` and show the line.

use std::path::{Path, PathBuf};

/// Index of a file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A place in a source file: a 1-based line, and a byte range within that line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: FileId,
    /// 1-based line number.
    pub line: u32,
    /// Byte offset of the start within the line (0-based).
    pub start: u32,
    /// Length in bytes (0 for a position).
    pub len: u32,
}

impl Span {
    pub fn new(file: FileId, line: u32, start: u32, len: u32) -> Self {
        Span {
            file,
            line,
            start,
            len,
        }
    }

    /// A span covering `self` through the end of `other` when both are on one line, else `self`.
    pub fn to(self, other: Span) -> Span {
        if self.file == other.file && self.line == other.line && other.start >= self.start {
            Span {
                len: other.start + other.len - self.start,
                ..self
            }
        } else {
            self
        }
    }
}

/// One loaded file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

impl SourceFile {
    fn new(path: PathBuf, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            path,
            text,
            line_starts,
        }
    }

    /// Number of lines (a trailing newline does not start a new line).
    pub fn line_count(&self) -> usize {
        if self.text.ends_with('\n') {
            self.line_starts.len() - 1
        } else {
            self.line_starts.len()
        }
    }

    /// The text of a 1-based line without its line ending, or "" past the end.
    pub fn line(&self, line: u32) -> &str {
        let idx = (line as usize).wrapping_sub(1);
        let Some(&start) = self.line_starts.get(idx) else {
            return "";
        };
        let end = self
            .line_starts
            .get(idx + 1)
            .copied()
            .unwrap_or(self.text.len());
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }

    /// Iterates over (1-based line number, line text without its ending).
    pub fn lines(&self) -> impl Iterator<Item = (u32, &str)> {
        (1..=self.line_count() as u32).map(move |n| (n, self.line(n)))
    }
}

/// All files read for one configuration.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, path: impl Into<PathBuf>, text: String) -> FileId {
        let id = FileId(self.files.len() as u32);
        self.files.push(SourceFile::new(path.into(), text));
        id
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn path(&self, id: FileId) -> &Path {
        &self.get(id).path
    }

    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }

    /// 1-based character column of a span's start, as editors count it.
    pub fn column(&self, span: Span) -> usize {
        let line = self.get(span.file).line(span.line);
        let start = (span.start as usize).min(line.len());
        let start = floor_char_boundary(line, start);
        line[..start].chars().count() + 1
    }

    /// `path:line:col` of a span.
    pub fn location(&self, span: Span) -> String {
        format!(
            "{}:{}:{}",
            self.path(span.file).display(),
            span.line,
            self.column(span)
        )
    }
}

pub(crate) fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
