//! A cheap, repeated read of `/proc/net/ip_vs_conn` for passive detection (see [`super::stall`]).
//!
//! [`super::conn`] builds a `ConnectionEntry` with owned strings per line, which is right for
//! `halb status -c` once in a while and wrong for a read every 100 ms of a table that may hold
//! 100,000 entries. Here the whole file is read into one buffer kept from read to read, and each
//! line is parsed in place into a [`ConnView`] that borrows nothing and allocates nothing; the
//! caller sees every TCP connection (persistence templates, with client port 0, left out) and
//! keeps only those of the destinations it watches.
//!
//! The kernel writes each IPv4 entry as fixed-width hex (`%08X %04X`), IPv6 addresses as `%pI6`;
//! IPv6 lines are parsed too, through the standard parser on a stack slice.

use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::conn::PROC_PATH;

/// IPVS's TCP connection states as `/proc/net/ip_vs_conn` names them (`tcp_state_name_table`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// The director saw the client's SYN and nothing after it: in DR and TUN mode the client's
    /// ACK of the server's SYN-ACK has not come (the server has not answered, or refused).
    SynRecv,
    Established,
    /// The connection was reset (`CLOSE`), or half-closed by the server (`CLOSE_WAIT`).
    Close,
    /// Any other state (`SYN_SENT`, `FIN_WAIT`, `TIME_WAIT`, `LAST_ACK`, `LISTEN`, `SYNACK`,
    /// `NONE`).
    Other,
}

impl TcpState {
    fn from_name(name: &[u8]) -> TcpState {
        match name {
            b"SYN_RECV" => TcpState::SynRecv,
            b"ESTABLISHED" => TcpState::Established,
            b"CLOSE" | b"CLOSE_WAIT" => TcpState::Close,
            _ => TcpState::Other,
        }
    }
}

/// One TCP connection entry, parsed in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnView {
    pub client: SocketAddr,
    pub virtual_addr: SocketAddr,
    pub dest: SocketAddr,
    pub state: TcpState,
}

/// Calls `each` for every TCP connection in `text` (the content of `/proc/net/ip_vs_conn`);
/// the header, persistence templates, other protocols and lines that do not parse are skipped.
/// Returns how many lines were looked at.
pub fn scan(text: &[u8], mut each: impl FnMut(ConnView)) -> usize {
    let mut lines = 0;
    for line in text.split(|&b| b == b'\n') {
        lines += 1;
        if let Some(view) = parse_line(line) {
            each(view);
        }
    }
    lines
}

fn parse_line(line: &[u8]) -> Option<ConnView> {
    let mut fields = line.split(|&b| b == b' ').filter(|field| !field.is_empty());
    if fields.next()? != b"TCP" {
        return None;
    }
    let mut endpoint = || -> Option<SocketAddr> {
        let ip = parse_addr(fields.next()?)?;
        let port = u16::try_from(hex(fields.next()?)?).ok()?;
        Some(SocketAddr::new(ip, port))
    };
    let client = endpoint()?;
    let virtual_addr = endpoint()?;
    let dest = endpoint()?;
    if client.port() == 0 {
        // A persistence template: a client's affinity, not a connection.
        return None;
    }
    let state = TcpState::from_name(fields.next()?);
    Some(ConnView {
        client,
        virtual_addr,
        dest,
        state,
    })
}

/// Up to 8 hex digits as a number.
fn hex(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let mut n: u32 = 0;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        n = (n << 4) | u32::from(v);
    }
    Some(n)
}

fn parse_addr(text: &[u8]) -> Option<IpAddr> {
    if text.len() == 8 {
        return hex(text).map(|n| IpAddr::V4(Ipv4Addr::from(n)));
    }
    // `%pI6`: at most 39 characters; parsed from the bytes without a String.
    if text.len() > 39 || !text.contains(&b':') {
        return None;
    }
    let s = std::str::from_utf8(text).ok()?;
    s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Reads the connection table again and again into the same buffer.
#[derive(Debug)]
pub struct ConnTableReader {
    path: PathBuf,
    buf: Vec<u8>,
}

impl Default for ConnTableReader {
    fn default() -> Self {
        ConnTableReader::new(PROC_PATH)
    }
}

impl ConnTableReader {
    pub fn new(path: impl AsRef<Path>) -> ConnTableReader {
        ConnTableReader {
            path: path.as_ref().to_path_buf(),
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// The whole table as the kernel prints it now (in the calling thread's network
    /// namespace). The buffer keeps its capacity, so a table of steady size costs no
    /// allocation after the first reads.
    pub fn read(&mut self) -> io::Result<&[u8]> {
        self.buf.clear();
        let mut file = File::open(&self.path)?;
        file.read_to_end(&mut self.buf)?;
        Ok(&self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP C0A8420A D431 C0A842FB 0CEA C0A842FD 0CEA SYN_RECV         59
TCP C0A8420A 0000 C0A842FB 0CEA C0A842FD 0CEA NONE            119
TCP C0A8420A D432 C0A842FB 0CEA C0A842FD 0CEA ESTABLISHED     899
UDP C0A8420A D433 C0A842FB 0035 C0A842FD 0035 UDP             299
TCP C0A8420A D434 C0A842FB 0CEA C0A842FE 0CEA CLOSE_WAIT       59
TCP 2001:0db8:0000:0000:0000:0000:0000:0010 9C40 2001:0db8:0000:0000:0000:0000:0000:00fb 0050 2001:0db8:0000:0000:0000:0000:0000:0021 0050 TIME_WAIT       119
TCP C0A8420A ZZZZ C0A842FB 0CEA C0A842FD 0CEA SYN_RECV         59
";

    #[test]
    fn scans_tcp_connections_and_skips_templates_and_other_protocols() {
        let mut seen = Vec::new();
        let lines = scan(TABLE.as_bytes(), |c| seen.push(c));
        assert_eq!(
            lines, 9,
            "eight lines and the empty tail after the last newline"
        );
        let rs: SocketAddr = "192.168.66.253:3306".parse().unwrap();
        let sorry: SocketAddr = "192.168.66.254:3306".parse().unwrap();
        let vip: SocketAddr = "192.168.66.251:3306".parse().unwrap();
        assert_eq!(
            seen.iter()
                .map(|c| (c.client.port(), c.dest, c.state))
                .collect::<Vec<_>>(),
            vec![
                (0xd431, rs, TcpState::SynRecv),
                (0xd432, rs, TcpState::Established),
                (0xd434, sorry, TcpState::Close),
                (40000, "[2001:db8::21]:80".parse().unwrap(), TcpState::Other),
            ]
        );
        assert!(seen[..3].iter().all(|c| c.virtual_addr == vip));
        assert_eq!(seen[0].client, "192.168.66.10:54321".parse().unwrap());
    }

    #[test]
    fn garbage_is_skipped() {
        for line in [
            "",
            "TCP",
            "TCP C0A8420A",
            "TCP C0A8420A D431 C0A842FB 0CEA C0A842FD 0CEA",
            "TCP C0A8420 D431 C0A842FB 0CEA C0A842FD 0CEA SYN_RECV 1",
            "TCP C0A8420A 1D431 C0A842FB 0CEA C0A842FD 0CEA SYN_RECV 1",
            "TCP ::::::::::::::::::::::::::::::::::::::::::: 0001 C0A842FB 0CEA C0A842FD 0CEA SYN_RECV 1",
        ] {
            assert_eq!(parse_line(line.as_bytes()), None, "{line:?}");
        }
    }

    #[test]
    fn the_reader_keeps_its_buffer() {
        let dir = std::env::temp_dir().join(format!("halb-conn-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ip_vs_conn");
        std::fs::write(&path, TABLE).unwrap();
        let mut reader = ConnTableReader::new(&path);
        let first = reader.read().unwrap().len();
        let capacity = reader.buf.capacity();
        assert_eq!(reader.read().unwrap().len(), first);
        assert_eq!(reader.buf.capacity(), capacity);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
