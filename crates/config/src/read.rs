//! Reading values from keyword lines, with keepalived's rules and halb's diagnostics.
//!
//! Every reader takes the node and the index of the argument (0 = first word after the
//! keyword), reports what is wrong at the word's position, and returns `None` when the value
//! cannot be used, so that the caller keeps its default, as keepalived does.

use crate::diagnostic::Diagnostics;
use crate::tree::{Node, Word};
use std::net::IpAddr;

/// Microseconds in a second: keepalived keeps every time as microseconds (TIMER_HZ).
pub const US_PER_SEC: u64 = 1_000_000;

/// What a section reader has at hand.
pub struct Ctx<'a> {
    pub diags: &'a mut Diagnostics,
    /// The network interfaces of the host the configuration is checked for; `None` skips the
    /// checks that need them (keepalived checks them on the host it runs on).
    pub interfaces: Option<&'a [String]>,
}

impl<'a> Ctx<'a> {
    pub fn new(diags: &'a mut Diagnostics) -> Self {
        Ctx {
            diags,
            interfaces: None,
        }
    }

    /// False only when the host's interfaces are known and `name` is not among them.
    pub fn interface_exists(&self, name: &str) -> bool {
        self.interfaces
            .is_none_or(|list| list.iter().any(|i| i == name))
    }

    /// The `i`-th argument, or a warning that it is missing.
    pub fn arg<'n>(&mut self, node: &'n Node, i: usize) -> Option<&'n Word> {
        let w = node.arg(i);
        if w.is_none() {
            let what = if i == 0 {
                "a value".to_string()
            } else {
                format!("{} values", i + 1)
            };
            self.diags
                .warn(node.line_span(), format!("'{}' needs {what}", node.name()));
        }
        w
    }

    /// The `i`-th argument as text.
    pub fn string(&mut self, node: &Node, i: usize) -> Option<String> {
        self.arg(node, i).map(|w| w.text.clone())
    }

    /// All arguments joined by a space (keepalived's `strvec` re-joined).
    pub fn rest(&mut self, node: &Node, from: usize) -> Option<String> {
        self.arg(node, from)?;
        Some(
            node.args()[from..]
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    /// An unsigned integer in `[min, max]` (keepalived's `read_unsigned_strvec`).
    pub fn unsigned(&mut self, node: &Node, i: usize, min: u64, max: u64) -> Option<u64> {
        self.number(node, i, min, max, parse_unsigned)
    }

    /// A signed integer in `[min, max]`.
    pub fn int(&mut self, node: &Node, i: usize, min: i64, max: i64) -> Option<i64> {
        self.number(node, i, min, max, |t| {
            t.parse::<i64>()
                .map_err(|_| format!("invalid number '{t}'"))
        })
    }

    /// A number read by `parse` and checked against `[min, max]`.
    fn number<T: PartialOrd + std::fmt::Display + Copy>(
        &mut self,
        node: &Node,
        i: usize,
        min: T,
        max: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let w = self.arg(node, i)?;
        let why = match parse(&w.text) {
            Ok(v) if min <= v && v <= max => return Some(v),
            Ok(_) => format!("{} '{}' outside range [{min}, {max}]", node.name(), w.text),
            Err(why) => format!("{}: {why}", node.name()),
        };
        self.diags.warn(w.span, why);
        None
    }

    /// A time in seconds with up to six decimals, as microseconds within `[min_us, max_us]`
    /// (keepalived's `read_timer`).
    pub fn timer(&mut self, node: &Node, i: usize, min_us: u64, max_us: u64) -> Option<u64> {
        self.decimal(node, i, 6, min_us, max_us)
    }

    /// A non-negative decimal with at most `shift` decimals, scaled by 10^shift, within
    /// `[min, max]` (keepalived's `read_decimal_unsigned_strvec`). Too many decimals round and
    /// warn, as keepalived does.
    pub fn decimal(
        &mut self,
        node: &Node,
        i: usize,
        shift: u32,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let w = self.arg(node, i)?;
        match parse_decimal(&w.text, shift) {
            Ok((v, rounded)) => {
                if rounded {
                    self.diags.warn(
                        w.span,
                        format!("number '{}' has too many decimal places", w.text),
                    );
                }
                if (min..=max).contains(&v) {
                    Some(v)
                } else {
                    let scale = 10u64.pow(shift);
                    self.diags.warn(
                        w.span,
                        format!(
                            "{} '{}' outside range [{}, {}]",
                            node.name(),
                            w.text,
                            format_scaled(min, scale),
                            format_scaled(max, scale)
                        ),
                    );
                    None
                }
            }
            Err(why) => {
                self.diags.warn(w.span, format!("{}: {why}", node.name()));
                None
            }
        }
    }

    /// An optional `true|on|yes|false|off|no`; no argument means true.
    pub fn flag(&mut self, node: &Node, i: usize) -> Option<bool> {
        let Some(w) = node.arg(i) else {
            return Some(true);
        };
        match true_false(&w.text) {
            Some(b) => Some(b),
            None => {
                self.diags.warn(
                    w.span,
                    format!(
                        "{}: '{}' is not one of true, false, on, off, yes, no",
                        node.name(),
                        w.text
                    ),
                );
                None
            }
        }
    }

    /// An IPv4 or IPv6 address.
    pub fn ip(&mut self, node: &Node, i: usize) -> Option<IpAddr> {
        let w = self.arg(node, i)?;
        match parse_ip(&w.text) {
            Some(ip) => Some(ip),
            None => {
                self.diags.warn(
                    w.span,
                    format!("{}: '{}' is not an IP address", node.name(), w.text),
                );
                None
            }
        }
    }

    /// One of a fixed set of words; returns its index.
    pub fn choice(&mut self, node: &Node, i: usize, choices: &[&str]) -> Option<usize> {
        let w = self.arg(node, i)?;
        match choices.iter().position(|c| *c == w.text) {
            Some(p) => Some(p),
            None => {
                self.diags
                    .warn(
                        w.span,
                        format!("{}: unknown value '{}'", node.name(), w.text),
                    )
                    .set_help(format!("expected one of: {}", choices.join(", ")));
                None
            }
        }
    }

    /// Warns about a keyword this section does not know; the caller skips its block.
    pub fn unknown(&mut self, node: &Node) {
        let d = self
            .diags
            .warn(node.span(), format!("unknown keyword '{}'", node.name()));
        if node.block.is_some() {
            d.set_help("skipped together with its block");
        }
    }

    /// Warns when a keyword that takes no block has one (its content is ignored).
    pub fn no_block(&mut self, node: &Node) {
        if let Some(b) = &node.block {
            self.diags
                .warn(b.open, format!("'{}' does not take a block", node.name()))
                .set_help("the block is ignored");
        }
    }

    /// The children of a keyword that needs a block; warns when there is none.
    pub fn block<'n>(&mut self, node: &'n Node) -> &'n [Node] {
        if node.block.is_none() {
            self.diags.warn(
                node.line_span(),
                format!("'{}' needs a '{{' block", node.name()),
            );
        }
        node.children()
    }
}

/// keepalived's `check_true_false`.
pub fn true_false(s: &str) -> Option<bool> {
    match s {
        "true" | "on" | "yes" => Some(true),
        "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// An unsigned decimal integer (keepalived's `read_unsigned`: base 10, no sign).
pub fn parse_unsigned(s: &str) -> Result<u64, String> {
    if s.starts_with('-') {
        return Err(format!("negative number '{s}'"));
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid number '{s}'"));
    }
    s.parse::<u64>()
        .map_err(|_| format!("number '{s}' outside unsigned range"))
}

/// A decimal with at most `shift` decimals scaled by 10^shift; the flag says it was rounded.
pub fn parse_decimal(s: &str, shift: u32) -> Result<(u64, bool), String> {
    if s.starts_with('-') {
        return Err(format!("negative number '{s}'"));
    }
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("invalid number '{s}'"));
    }
    let shift = shift as usize;
    let rounded = frac.len() > shift;
    let round_up = rounded && frac.as_bytes()[shift] >= b'5';
    let mut digits = String::with_capacity(int.len() + shift);
    digits.push_str(int);
    digits.push_str(&frac[..frac.len().min(shift)]);
    for _ in frac.len().min(shift)..shift {
        digits.push('0');
    }
    let v = if digits.is_empty() {
        0
    } else {
        digits
            .parse::<u64>()
            .map_err(|_| format!("number '{s}' outside unsigned decimal range"))?
    };
    Ok((v + u64::from(round_up), rounded))
}

fn format_scaled(v: u64, scale: u64) -> String {
    if scale == 1 {
        v.to_string()
    } else {
        let width = scale.ilog10() as usize;
        format!("{}.{:0width$}", v / scale, v % scale)
    }
}

/// An IP address as keepalived accepts it (IPv6 may carry a `%scope`, which is dropped here).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.split('%').next().unwrap_or(s);
    s.parse().ok()
}

/// Seconds as microseconds, for defaults.
pub const fn secs(s: u64) -> u64 {
    s * US_PER_SEC
}

/// Microseconds as keepalived writes a time: seconds with the decimals needed.
pub fn format_us(us: u64) -> String {
    // `%`, not `is_multiple_of`: that is Rust 1.87, the workspace builds with 1.85.
    if us % US_PER_SEC == 0 {
        (us / US_PER_SEC).to_string()
    } else {
        let s = format!("{}.{:06}", us / US_PER_SEC, us % US_PER_SEC);
        s.trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("1", 6), Ok((1_000_000, false)));
        assert_eq!(parse_decimal("0.1", 6), Ok((100_000, false)));
        assert_eq!(parse_decimal(".5", 2), Ok((50, false)));
        assert_eq!(parse_decimal("1.005", 2), Ok((101, true)));
        assert!(parse_decimal("1.2.3", 6).is_err());
        assert!(parse_decimal("-1", 6).is_err());
        assert!(parse_decimal("x", 6).is_err());
        assert_eq!(format_us(2_500_000), "2.5");
        assert_eq!(format_us(20_000_000), "20");
        assert_eq!(format_scaled(100, 100), "1.00");
    }

    #[test]
    fn unsigned_rules() {
        assert_eq!(parse_unsigned("42"), Ok(42));
        assert!(parse_unsigned("-1").is_err());
        assert!(parse_unsigned("4x").is_err());
        assert!(parse_unsigned("").is_err());
    }
}
