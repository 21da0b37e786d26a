//! Script values (`notify_up`, `quorum_up`, `misc_path`, …) read with keepalived's script quoting.
//!
//! keepalived reads such a line twice: the line is split with quotes and backslash escapes
//! (`alloc_strvec_quoted_escaped()`), its first value is the command, which is split the same way
//! again into the program and its arguments, and the next two values are the user and group.

use crate::preprocess::{Cols, Line};
use crate::read::Ctx;
use crate::tree::{script_words, Node, Word};
use crate::write::quote;
use serde::{Deserialize, Serialize};

/// A program with its arguments, and whom it runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    /// Never empty.
    pub argv: Vec<String>,
    /// `None`: keepalived's default script user (`script_user`, else `keepalived_script`, else
    /// root).
    pub user: Option<String>,
    pub group: Option<String>,
}

/// Reads a script keyword into its slot; a second one for the same slot is ignored with a
/// warning, as keepalived does.
pub fn read_notify_once(slot: &mut Option<Script>, node: &Node, ctx: &mut Ctx) {
    if slot.is_some() {
        ctx.diags.warn(
            node.span(),
            format!("{} script already specified - ignoring", node.name()),
        );
    } else {
        *slot = read_notify(node, ctx);
    }
}

/// The words after a script keyword with keepalived's script quoting; never empty (a missing
/// command is reported).
fn script_line(node: &Node, ctx: &mut Ctx) -> Option<Vec<Word>> {
    let words = script_words(&node.line, 1, ctx.diags)?;
    if words.is_empty() {
        ctx.diags.warn(
            node.line_span(),
            format!("'{}' needs a script", node.name()),
        );
        return None;
    }
    Some(words)
}

/// Reads `KEYWORD COMMAND [USER [GROUP]]` (`notify_up`, `quorum_up`, …).
pub fn read_notify(node: &Node, ctx: &mut Ctx) -> Option<Script> {
    let words = script_line(node, ctx)?;
    let argv = split_command(&words[0], node, ctx)?;
    Some(Script {
        argv,
        user: words.get(1).map(|w| w.text.clone()),
        group: words.get(2).map(|w| w.text.clone()),
    })
}

/// Reads `misc_path COMMAND` (words after the command are ignored, as keepalived does; the user
/// comes from the `user` keyword).
pub fn read_command(node: &Node, ctx: &mut Ctx) -> Option<Vec<String>> {
    let words = script_line(node, ctx)?;
    split_command(&words[0], node, ctx)
}

/// Splits the command value into the program and its arguments.
fn split_command(command: &Word, node: &Node, ctx: &mut Ctx) -> Option<Vec<String>> {
    let len = command.text.len();
    let line = Line {
        text: command.text.clone(),
        cols: Cols::Table(vec![command.span.start; len]),
        file: command.span.file,
        line: command.span.line,
    };
    let argv: Vec<String> = script_words(&line, 0, ctx.diags)?
        .into_iter()
        .map(|w| w.text)
        .collect();
    if argv.is_empty() {
        ctx.diags.warn(
            command.span,
            format!("'{}': unable to parse script - ignoring", node.name()),
        );
        return None;
    }
    Some(argv)
}

/// The command as one value of a script line: each argument quoted for the inner reading, the
/// whole in double quotes for the outer one when needed.
pub fn command_word(argv: &[String]) -> String {
    let inner: Vec<String> = argv.iter().map(|a| inner_quote(a)).collect();
    let joined = inner.join(" ");
    if argv.len() == 1 && inner.first() == argv.first() {
        return joined;
    }
    // The outer reading decodes backslash escapes too, so each one is doubled. Characters that
    // the preprocessor or the outer reading would act on never appear: `inner_quote` wrote them
    // as octal escapes.
    format!("\"{}\"", joined.replace('\\', "\\\\"))
}

/// `KEYWORD COMMAND [USER [GROUP]]`.
pub fn notify_line(keyword: &str, script: &Script) -> String {
    let mut words = vec![keyword.to_string(), command_word(&script.argv)];
    if let Some(u) = &script.user {
        words.push(quote(u));
        if let Some(g) = &script.group {
            words.push(quote(g));
        }
    }
    words.join(" ")
}

/// An argument as the inner reading needs it (see [`quoted`]), in single quotes.
fn inner_quote(arg: &str) -> String {
    if is_plain(arg) {
        arg.to_string()
    } else {
        quoted(arg, '\'')
    }
}

/// A single value for a line keepalived reads with its script quoting (`regex`).
pub fn value_word(s: &str) -> String {
    if is_plain(s) {
        s.to_string()
    } else {
        quoted(s, '"')
    }
}

fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=,+@%^~".contains(&b))
}

/// `s` between `q` quotes, with every character that a quote, an escape, a comment, a brace or a
/// `$` parameter could change written as a three-digit octal escape (which the script reading
/// decodes, and nothing before it acts on).
fn quoted(s: &str, q: char) -> String {
    let mut out = String::from(q);
    for c in s.chars() {
        if c.is_ascii_control() || "'\"\\#!{}$".contains(c) {
            out.push_str(&format!("\\{:03o}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.push(q);
    out
}
