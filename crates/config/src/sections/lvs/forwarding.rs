//! `lb_kind` / `lvs_method` / `sorry_server_lvs_method`: `NAT|DR|TUN [type ipip|gue|gre]
//! [port N] [nocsum|csum|remcsum]`.

use super::model::{Forwarding, Tunnel, TunnelChecksum, TunnelType};
use crate::read::Ctx;
use crate::tree::Node;

/// Reads a forwarding method as keepalived's `svr_forwarding_handler()` does. `current` is the
/// server's method so far; `server` is `virtual`, `real` or `sorry` (for messages).
///
/// keepalived sets the method before it reads the tunnel options, and keeps the previous tunnel
/// options when one of them is wrong; so does this.
pub fn read(
    n: &Node,
    ctx: &mut Ctx,
    current: Option<Forwarding>,
    server: &str,
) -> Option<Forwarding> {
    let Some(word) = ctx.arg(n, 0) else {
        return current;
    };
    let previous_tunnel = match current {
        Some(Forwarding::Tun(t)) => t,
        _ => Tunnel::default(),
    };
    let with_tunnel = |t: Tunnel| match word.text.as_str() {
        "NAT" => Forwarding::Nat,
        "DR" => Forwarding::Dr,
        _ => Forwarding::Tun(t),
    };
    if !matches!(word.text.as_str(), "NAT" | "DR" | "TUN") {
        ctx.diags.warn(
            word.span,
            format!("unknown [{}] routing method for {server} server", word.text),
        );
        return current;
    }
    match read_tunnel(n, ctx, server) {
        Some(t) => Some(with_tunnel(t)),
        None => Some(with_tunnel(previous_tunnel)),
    }
}

/// The tunnel options after the method; `None` (with a warning) when one is wrong.
fn read_tunnel(n: &Node, ctx: &mut Ctx, server: &str) -> Option<Tunnel> {
    let mut tunnel_type = TunnelType::Ipip;
    let mut gue = false;
    let mut port: u16 = 0;
    let mut checksum = TunnelChecksum::NoCsum;
    let mut i = 1;
    while let Some(w) = n.arg(i) {
        match w.text.as_str() {
            "type" => {
                let Some(v) = n.arg(i + 1) else {
                    ctx.diags
                        .warn(w.span, format!("missing tunnel type for {server} server"));
                    return None;
                };
                (tunnel_type, gue) = match v.text.as_str() {
                    "ipip" => (TunnelType::Ipip, false),
                    "gue" => (TunnelType::Ipip, true),
                    "gre" => (TunnelType::Gre, false),
                    other => {
                        ctx.diags.warn(
                            v.span,
                            format!("unknown tunnel type {other} for {server} server"),
                        );
                        return None;
                    }
                };
                i += 2;
            }
            "port" => {
                if n.arg(i + 1).is_none() {
                    ctx.diags.warn(
                        w.span,
                        format!("missing port for {server} server gue tunnel"),
                    );
                    return None;
                }
                port = ctx.unsigned(n, i + 1, 1, 65535)? as u16;
                i += 2;
            }
            "nocsum" => {
                checksum = TunnelChecksum::NoCsum;
                i += 1;
            }
            "csum" => {
                checksum = TunnelChecksum::Csum;
                i += 1;
            }
            "remcsum" => {
                checksum = TunnelChecksum::RemCsum;
                i += 1;
            }
            other => {
                ctx.diags.warn(
                    w.span,
                    format!("invalid tunnel option {other} for {server} server"),
                );
                return None;
            }
        }
    }
    if gue != (port != 0) {
        ctx.diags.warn(
            n.line_span(),
            "gue tunnels require port, otherwise cannot have port",
        );
        return None;
    }
    if gue {
        tunnel_type = TunnelType::Gue { port };
    }
    if tunnel_type == TunnelType::Ipip && checksum != TunnelChecksum::NoCsum {
        ctx.diags
            .warn(n.line_span(), "ipip tunnels do not support checksum option");
        return None;
    }
    if tunnel_type == TunnelType::Gre && checksum == TunnelChecksum::RemCsum {
        ctx.diags.warn(
            n.line_span(),
            "gre tunnels do not support remote checksum option",
        );
        return None;
    }
    Some(Tunnel {
        tunnel_type,
        checksum,
    })
}

/// The value words: `DR`, `TUN type gue port 6080 csum`, …
pub fn words(f: &Forwarding) -> String {
    let Forwarding::Tun(t) = f else {
        return f.name().to_string();
    };
    let mut out = String::from("TUN");
    match t.tunnel_type {
        TunnelType::Ipip => {}
        TunnelType::Gue { port } => out.push_str(&format!(" type gue port {port}")),
        TunnelType::Gre => out.push_str(" type gre"),
    }
    match t.checksum {
        TunnelChecksum::NoCsum => {}
        TunnelChecksum::Csum => out.push_str(" csum"),
        TunnelChecksum::RemCsum => out.push_str(" remcsum"),
    }
    out
}
