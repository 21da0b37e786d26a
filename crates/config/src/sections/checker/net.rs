//! The protocol checkers with settings of their own: `SMTP_CHECK`, `DNS_CHECK`, `UDP_CHECK`.

use super::common::{read_connection_keyword, read_keyword, read_timing_keyword, write_keywords};
use super::model::{
    Checker, CheckerCommon, CheckerKind, DnsCheck, DnsType, HexBytes, SmtpCheck, UdpCheck,
};
use crate::read::Ctx;
use crate::sections::lvs::block_end;
use crate::tree::Node;
use crate::write::{quote, ConfWriter};

/// Reads an SMTP_CHECK. keepalived turns each (deprecated) `host { }` block into a checker of
/// its own, with the host's connection settings and the block's other settings; so does this.
pub fn read_smtp(node: &Node, ctx: &mut Ctx) -> Vec<Checker> {
    let kind = CheckerKind::Smtp;
    let mut main = CheckerCommon::default();
    let mut helo_name = None;
    let mut hosts: Vec<CheckerCommon> = Vec::new();
    let mut first_host = None;
    for n in ctx.block(node) {
        if read_keyword(n, ctx, &mut main, kind) {
            continue;
        }
        match n.name() {
            "helo_name" => {
                ctx.no_block(n);
                match n.arg(0) {
                    Some(w) => helo_name = Some(w.text.clone()),
                    None => {
                        ctx.diags.warn(n.span(), "SMTP_CHECK helo name missing");
                    }
                }
            }
            "host" => {
                first_host.get_or_insert(n.span());
                let mut host = CheckerCommon::default();
                for h in ctx.block(n) {
                    // Timing keywords in a host block set the checker's (keepalived's
                    // "current checker"), connection ones the host's.
                    if !read_connection_keyword(h, ctx, &mut host)
                        && !read_timing_keyword(h, ctx, &mut main)
                    {
                        ctx.unknown(h);
                    }
                }
                hosts.push(host);
            }
            _ => ctx.unknown(n),
        }
    }
    if let Some(span) = first_host {
        ctx.diags.note(
            span,
            "The SMTP_CHECK host block is deprecated. Please define additional checkers.",
        );
    }
    let own_connection = connection_of(&main) != CheckerCommon::default();
    let mut connections = Vec::new();
    if own_connection || hosts.is_empty() {
        connections.push(connection_of(&main));
    }
    connections.extend(hosts.iter().map(connection_of));
    connections
        .into_iter()
        .map(|conn| {
            Checker::Smtp(SmtpCheck {
                common: CheckerCommon {
                    retry: main.retry,
                    delay_before_retry_us: main.delay_before_retry_us,
                    warmup_us: main.warmup_us,
                    delay_loop_us: main.delay_loop_us,
                    alpha: main.alpha,
                    log_all_failures: main.log_all_failures,
                    ..conn
                },
                helo_name: helo_name.clone(),
            })
        })
        .collect()
}

/// Only the connection settings of `c`.
fn connection_of(c: &CheckerCommon) -> CheckerCommon {
    CheckerCommon {
        connect_ip: c.connect_ip,
        connect_port: c.connect_port,
        bindto: c.bindto,
        bind_port: c.bind_port,
        bind_if: c.bind_if.clone(),
        connect_timeout_us: c.connect_timeout_us,
        fwmark: c.fwmark,
        ..CheckerCommon::default()
    }
}

pub fn write_smtp(s: &SmtpCheck, w: &mut ConfWriter) {
    write_keywords(&s.common, CheckerKind::Smtp, w);
    if let Some(v) = &s.helo_name {
        w.line(&format!("helo_name {}", quote(v)));
    }
}

pub fn read_dns(node: &Node, ctx: &mut Ctx) -> Checker {
    let kind = CheckerKind::Dns;
    let mut common = CheckerCommon::default();
    let mut query_type = DnsType::default();
    let mut name: Option<String> = None;
    for n in ctx.block(node) {
        if read_keyword(n, ctx, &mut common, kind) {
            continue;
        }
        ctx.no_block(n);
        match n.name() {
            "type" => {
                if let Some(w) = ctx.arg(n, 0) {
                    match DnsType::from_name(&w.text) {
                        Some(t) => query_type = t,
                        None => {
                            ctx.diags.warn(
                                w.span,
                                format!("Unknown DNS check type {} - ignoring", w.text),
                            );
                        }
                    }
                }
            }
            "name" => {
                let Some(w) = ctx.arg(n, 0) else { continue };
                if name.is_some() {
                    ctx.diags
                        .warn(n.span(), "DNS_CHECK name already specified - ignoring");
                } else if has_empty_label(&w.text) {
                    ctx.diags.warn(
                        w.span,
                        format!("DNS_CHECK name '{}' has empty label - ignoring", w.text),
                    );
                } else {
                    name = Some(w.text.clone());
                }
            }
            _ => ctx.unknown(n),
        }
    }
    Checker::Dns(DnsCheck {
        common,
        query_type,
        name: name.unwrap_or_default(),
    })
}

/// A name with an empty label: a leading dot (other than the root name `.`) or two dots in a
/// row. (keepalived 2.2.7 also rejects a one-character first label, such as `a.example`, by
/// mistake; halb accepts it.)
fn has_empty_label(name: &str) -> bool {
    (name.starts_with('.') && name != ".") || name.contains("..")
}

pub fn write_dns(d: &DnsCheck, w: &mut ConfWriter) {
    write_keywords(&d.common, CheckerKind::Dns, w);
    if d.query_type != DnsType::default() {
        w.kv("type", d.query_type.as_str());
    }
    if !d.name.is_empty() {
        w.line(&format!("name {}", quote(&d.name)));
    }
}

pub fn read_udp(node: &Node, ctx: &mut Ctx) -> Checker {
    let kind = CheckerKind::Udp;
    let mut u = UdpCheck::default();
    for n in ctx.block(node) {
        if read_keyword(n, ctx, &mut u.common, kind) {
            continue;
        }
        ctx.no_block(n);
        match n.name() {
            "payload" => {
                if n.args().is_empty() {
                    ctx.diags
                        .warn(n.span(), "UDP_CHECK payload requires a payload");
                    continue;
                }
                match parse_hex(&joined_args(n), false) {
                    Some(h) => u.payload = Some(h),
                    None => {
                        ctx.diags
                            .warn(n.line_span(), "Invalid hex string for UDP_CHECK payload");
                    }
                }
            }
            "require_reply" => {
                u.require_reply = true;
                if n.args().is_empty() {
                    continue;
                }
                match parse_hex(&joined_args(n), true) {
                    Some(h) => u.reply = Some(h),
                    None => {
                        ctx.diags
                            .warn(n.line_span(), "Invalid hex string for UDP_CHECK reply");
                    }
                }
            }
            "min_reply_length" => {
                if let Some(v) = ctx.unsigned(n, 0, 0, u64::from(u16::MAX)) {
                    u.min_reply_length = v as u16;
                }
            }
            "max_reply_length" => {
                if let Some(v) = ctx.unsigned(n, 0, 0, u64::from(u16::MAX)) {
                    u.max_reply_length = v as u16;
                }
            }
            _ => ctx.unknown(n),
        }
    }
    if u.min_reply_length > u.max_reply_length {
        ctx.diags.warn(
            block_end(node),
            format!(
                "UDP_CHECK min_reply length {} > max_reply_length {} - will always fail",
                u.min_reply_length, u.max_reply_length
            ),
        );
    }
    Checker::Udp(u)
}

fn joined_args(n: &Node) -> String {
    n.args()
        .iter()
        .map(|w| w.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// keepalived's `read_hex_str()`: pairs of hex digits, blanks between bytes, a lone digit before
/// a space is one byte; with `wildcards`, `x` matches any nibble.
fn parse_hex(s: &str, wildcards: bool) -> Option<HexBytes> {
    let nibble = |c: u8| -> Option<(u8, u8)> {
        match c.to_ascii_uppercase() {
            d @ b'0'..=b'9' => Some((d - b'0', 0)),
            d @ b'A'..=b'F' => Some((d - b'A' + 10, 0)),
            b'X' if wildcards => Some((0, 0x0f)),
            _ => None,
        }
    };
    let b = s.as_bytes();
    let (mut data, mut mask) = (Vec::new(), Vec::new());
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let (mut val, mut m) = nibble(b[i])?;
        i += 1;
        if i < b.len() && b[i] != b' ' {
            let (lo, lo_mask) = nibble(b[i])?;
            i += 1;
            val = (val << 4) | lo;
            m = (m << 4) | lo_mask;
        }
        data.push(val);
        mask.push(m);
    }
    if data.is_empty() {
        return None;
    }
    let mask = mask.iter().any(|&m| m != 0).then_some(mask);
    Some(HexBytes { data, mask })
}

fn hex_words(h: &HexBytes) -> String {
    let mut out = String::new();
    for (i, byte) in h.data.iter().enumerate() {
        let m = h.mask.as_ref().and_then(|m| m.get(i)).copied().unwrap_or(0);
        for (shift, nib_mask) in [(4, 0xf0u8), (0, 0x0f)] {
            if m & nib_mask != 0 {
                out.push('x');
            } else {
                out.push_str(&format!("{:x}", (byte >> shift) & 0x0f));
            }
        }
    }
    out
}

pub fn write_udp(u: &UdpCheck, w: &mut ConfWriter) {
    write_keywords(&u.common, CheckerKind::Udp, w);
    if let Some(p) = &u.payload {
        w.line(&format!("payload {}", hex_words(p)));
    }
    match (&u.reply, u.require_reply) {
        (Some(r), _) => w.line(&format!("require_reply {}", hex_words(r))),
        (None, true) => w.line("require_reply"),
        (None, false) => {}
    }
    let d = UdpCheck::default();
    if u.min_reply_length != d.min_reply_length {
        w.kv("min_reply_length", u.min_reply_length);
    }
    if u.max_reply_length != d.max_reply_length {
        w.kv("max_reply_length", u.max_reply_length);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_strings() {
        let h = parse_hex("01 2 ab", false).expect("valid");
        assert_eq!(h.data, [0x01, 0x02, 0xab]);
        assert_eq!(h.mask, None);
        assert!(parse_hex("0g", false).is_none());
        assert!(parse_hex("x1", false).is_none());
        let w = parse_hex("x1 2X", true).expect("valid");
        assert_eq!(w.data, [0x01, 0x20]);
        assert_eq!(w.mask, Some(vec![0xf0, 0x0f]));
        assert_eq!(hex_words(&w), "x12x");
        assert_eq!(parse_hex(&hex_words(&w), true), Some(w));
    }

    #[test]
    fn dns_labels() {
        assert!(!has_empty_label("a.example.com"));
        assert!(!has_empty_label("."));
        assert!(!has_empty_label("example.com."));
        assert!(has_empty_label(".example"));
        assert!(has_empty_label("a..b"));
    }
}
