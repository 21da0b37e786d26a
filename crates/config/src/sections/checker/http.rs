//! `HTTP_GET` and `SSL_GET`, with their `url { }` blocks.

use super::common::{read_keyword, write_keywords};
use super::model::{
    Checker, CheckerKind, HttpCheck, HttpProtocol, Url, UrlRegex, DEFAULT_STATUS_CODES,
    REGEX_OPTIONS,
};
use crate::read::Ctx;
use crate::sections::lvs::block_end;
use crate::sections::script::value_word;
use crate::tree::{script_words, Node};
use crate::write::{quote, ConfWriter};

const STATUS_MIN: u16 = 100;
const STATUS_MAX: u16 = 599;

/// Reads an HTTP_GET / SSL_GET block; `None` when keepalived drops it (no usable url).
pub fn read(kind: CheckerKind, node: &Node, ctx: &mut Ctx) -> Option<Checker> {
    let mut h = HttpCheck::default();
    for n in ctx.block(node) {
        if read_keyword(n, ctx, &mut h.common, kind) {
            continue;
        }
        if n.name() != "url" {
            ctx.no_block(n);
        }
        match n.name() {
            "virtualhost" => {
                if let Some(v) = ctx.string(n, 0) {
                    h.virtualhost = Some(v);
                }
            }
            "http_protocol" => {
                const NAMES: &[&str] = &["1.0", "1.1", "1.0C", "1.0c"];
                h.http_protocol = match ctx.choice(n, 0, NAMES) {
                    Some(0) => Some(HttpProtocol::Http10),
                    Some(1) => Some(HttpProtocol::Http11),
                    Some(_) => Some(HttpProtocol::Http10Close),
                    None => h.http_protocol,
                };
            }
            "enable_sni" => {
                if let Some(v) = ctx.flag(n, 0) {
                    h.enable_sni = v;
                }
            }
            "fast_recovery" => {
                if let Some(v) = ctx.flag(n, 0) {
                    h.fast_recovery = v;
                }
            }
            "url" => h.urls.extend(read_url(n, ctx)),
            _ => ctx.unknown(n),
        }
    }
    if h.urls.is_empty() {
        ctx.diags.warn(
            block_end(node),
            "HTTP/SSL_GET checker has no urls specified - ignoring",
        );
        return None;
    }
    Some(if kind == CheckerKind::SslGet {
        Checker::Ssl(h)
    } else {
        Checker::Http(h)
    })
}

/// What a `url` block sets before its end is checked.
#[derive(Default)]
struct UrlDraft {
    path: Option<String>,
    digest: Option<[u8; 16]>,
    /// Bit `i` for status code 100 + i.
    status: Vec<bool>,
    virtualhost: Option<String>,
    regex: Option<String>,
    no_match: bool,
    options: Vec<String>,
    min_offset: Option<u64>,
    max_offset: Option<u64>,
    stack: Option<(u64, u64)>,
}

fn read_url(node: &Node, ctx: &mut Ctx) -> Option<Url> {
    let mut d = UrlDraft {
        status: vec![false; usize::from(STATUS_MAX - STATUS_MIN + 1)],
        ..UrlDraft::default()
    };
    for n in ctx.block(node) {
        ctx.no_block(n);
        match n.name() {
            "path" => d.path = ctx.string(n, 0).or(d.path.take()),
            "digest" => read_digest(n, ctx, &mut d.digest),
            "status_code" => read_status_codes(n, ctx, &mut d.status),
            "virtualhost" => d.virtualhost = ctx.string(n, 0).or(d.virtualhost.take()),
            "regex" => {
                if let Some(words) = script_words(&n.line, 1, ctx.diags) {
                    if words.len() == 1 {
                        d.regex = words.into_iter().next().map(|w| w.text);
                    } else {
                        ctx.diags
                            .warn(n.line_span(), "regex missing or too many fields - ignoring");
                    }
                }
            }
            "regex_no_match" => d.no_match = true,
            "regex_options" => {
                for w in n.args() {
                    if !REGEX_OPTIONS.contains(&w.text.as_str()) {
                        ctx.diags.note(
                            w.span,
                            format!("unknown regex option '{}' - ignored", w.text),
                        );
                    } else if !d.options.contains(&w.text) {
                        d.options.push(w.text.clone());
                    }
                }
            }
            "regex_min_offset" => d.min_offset = read_offset(n, ctx).or(d.min_offset),
            "regex_max_offset" => d.max_offset = read_offset(n, ctx).or(d.max_offset),
            "regex_stack" => {
                if let (Some(start), Some(max)) = (
                    ctx.unsigned(n, 0, 0, u64::MAX),
                    ctx.unsigned(n, 1, 0, u64::MAX),
                ) {
                    if start > max {
                        ctx.diags.warn(
                            n.line_span(),
                            "regex stack start cannot exceed max value - ignoring",
                        );
                    } else {
                        d.stack = Some((start, max));
                    }
                }
            }
            _ => ctx.unknown(n),
        }
    }
    finish_url(d, node, ctx)
}

/// keepalived's `url_check()`.
fn finish_url(d: UrlDraft, node: &Node, ctx: &mut Ctx) -> Option<Url> {
    let end = block_end(node);
    let Some(path) = d.path else {
        ctx.diags
            .warn(end, "HTTP/SSL_GET checker url has no path - ignoring");
        return None;
    };
    let mut url = Url::new(path);
    url.digest = d.digest;
    url.virtualhost = d.virtualhost;
    let ranges = status_ranges(&d.status);
    if !ranges.is_empty() {
        url.status_codes = ranges;
    }
    let has_regex_settings = d.no_match
        || !d.options.is_empty()
        || d.min_offset.is_some()
        || d.max_offset.is_some()
        || d.stack.is_some();
    match d.regex {
        None if has_regex_settings => {
            ctx.diags.warn(
                end,
                "regex parameters specified without regex - ignoring them",
            );
        }
        None => {}
        Some(pattern) => {
            let (mut min_offset, mut max_offset) = (d.min_offset, d.max_offset);
            if let Some(max) = max_offset {
                if min_offset.unwrap_or(0) > max {
                    ctx.diags.warn(
                        end,
                        format!(
                            "regex min offset {} > regex_max_offset {max} - ignoring",
                            min_offset.unwrap_or(0)
                        ),
                    );
                    min_offset = None;
                    max_offset = None;
                }
            }
            let mut options = d.options;
            options.sort_by_key(|o| REGEX_OPTIONS.iter().position(|k| k == o));
            url.regex = Some(UrlRegex {
                pattern,
                no_match: d.no_match,
                options,
                min_offset,
                max_offset,
                stack: d.stack,
            });
        }
    }
    Some(url)
}

fn read_offset(n: &Node, ctx: &mut Ctx) -> Option<u64> {
    if n.args().len() != 1 {
        ctx.diags.warn(
            n.line_span(),
            format!("'{}' needs exactly one value - ignoring", n.name()),
        );
        return None;
    }
    ctx.unsigned(n, 0, 0, u64::MAX)
}

fn read_digest(n: &Node, ctx: &mut Ctx, digest: &mut Option<[u8; 16]>) {
    let Some(w) = ctx.arg(n, 0) else {
        return;
    };
    let text = &w.text;
    if digest.is_some() {
        ctx.diags
            .warn(w.span, format!("Digest '{text}' is a duplicate"));
        return;
    }
    if text.len() != 32 {
        ctx.diags.warn(
            w.span,
            format!(
                "digest '{text}' character length should be 32 rather than {}",
                text.len()
            ),
        );
        return;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        match text
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            Some(b) => *byte = b,
            None => {
                ctx.diags.warn(
                    w.span,
                    format!(
                        "Unable to interpret hex digit in '{text}' at offset {}/{}",
                        2 * i,
                        2 * i + 1
                    ),
                );
                return;
            }
        }
    }
    *digest = Some(out);
}

fn read_status_codes(n: &Node, ctx: &mut Ctx, status: &mut [bool]) {
    for w in n.args() {
        let (lo, hi) = w.text.split_once('-').unwrap_or((&w.text, &w.text));
        let parse = |s: &str| {
            s.parse::<u16>().ok().filter(|v| {
                (STATUS_MIN..=STATUS_MAX).contains(v) && s.bytes().all(|b| b.is_ascii_digit())
            })
        };
        match (parse(lo), parse(hi)) {
            (Some(lo), Some(hi)) if lo <= hi => {
                for code in lo..=hi {
                    status[usize::from(code - STATUS_MIN)] = true;
                }
            }
            _ => {
                ctx.diags
                    .warn(w.span, format!("Invalid HTTP_GET status code '{}'", w.text));
            }
        }
    }
}

/// The set status codes as sorted inclusive ranges.
fn status_ranges(status: &[bool]) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (i, on) in status.iter().enumerate() {
        if !on {
            continue;
        }
        let code = STATUS_MIN + i as u16;
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == code => *hi = code,
            _ => out.push((code, code)),
        }
    }
    out
}

/// Writes the inside of an HTTP_GET / SSL_GET block.
pub fn write(h: &HttpCheck, kind: CheckerKind, w: &mut ConfWriter) {
    write_keywords(&h.common, kind, w);
    if let Some(v) = &h.virtualhost {
        w.line(&format!("virtualhost {}", quote(v)));
    }
    if let Some(p) = h.http_protocol {
        w.kv("http_protocol", p.as_str());
    }
    w.flag("enable_sni", h.enable_sni);
    w.flag("fast_recovery", h.fast_recovery);
    for url in &h.urls {
        write_url(url, w);
    }
}

fn write_url(url: &Url, w: &mut ConfWriter) {
    w.open("url");
    w.line(&format!("path {}", quote(&url.path)));
    if let Some(d) = &url.digest {
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        w.kv("digest", hex);
    }
    if url.status_codes != [DEFAULT_STATUS_CODES] {
        let codes: Vec<String> = url
            .status_codes
            .iter()
            .map(|(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        w.line(&format!("status_code {}", codes.join(" ")));
    }
    if let Some(v) = &url.virtualhost {
        w.line(&format!("virtualhost {}", quote(v)));
    }
    if let Some(r) = &url.regex {
        w.line(&format!("regex {}", value_word(&r.pattern)));
        w.flag("regex_no_match", r.no_match);
        if !r.options.is_empty() {
            w.line(&format!("regex_options {}", r.options.join(" ")));
        }
        if let Some(v) = r.min_offset {
            w.kv("regex_min_offset", v);
        }
        if let Some(v) = r.max_offset {
            w.kv("regex_max_offset", v);
        }
        if let Some((start, max)) = r.stack {
            w.line(&format!("regex_stack {start} {max}"));
        }
    }
    w.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let mut s = vec![false; 500];
        for c in [200u16, 201, 202, 404] {
            s[usize::from(c - STATUS_MIN)] = true;
        }
        assert_eq!(status_ranges(&s), vec![(200, 202), (404, 404)]);
    }
}
