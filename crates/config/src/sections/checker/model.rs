//! Model types of the health checkers of a `real_server`.
//!
//! One variant per checker keyword. A new checker (for example halb's `MYSQL_CHECK`) is a new
//! variant with its own struct, a row in [`CheckerKind`], a reader and a writer module.

use crate::read::secs;
use crate::sections::script::Script;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The checker keywords, with what keepalived gives each by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CheckerKind {
    Tcp,
    HttpGet,
    SslGet,
    Smtp,
    Dns,
    Misc,
    Udp,
    Ping,
    File,
    Bfd,
    /// halb's own: a MySQL / MariaDB login and query.
    Mysql,
    /// halb's own: a SYN to VIP:port through the real server's MAC address (direct routing).
    DrPath,
}

impl CheckerKind {
    pub const ALL: [CheckerKind; 12] = [
        CheckerKind::Tcp,
        CheckerKind::HttpGet,
        CheckerKind::SslGet,
        CheckerKind::Smtp,
        CheckerKind::Dns,
        CheckerKind::Misc,
        CheckerKind::Udp,
        CheckerKind::Ping,
        CheckerKind::File,
        CheckerKind::Bfd,
        CheckerKind::Mysql,
        CheckerKind::DrPath,
    ];

    /// The configuration keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            CheckerKind::Tcp => "TCP_CHECK",
            CheckerKind::HttpGet => "HTTP_GET",
            CheckerKind::SslGet => "SSL_GET",
            CheckerKind::Smtp => "SMTP_CHECK",
            CheckerKind::Dns => "DNS_CHECK",
            CheckerKind::Misc => "MISC_CHECK",
            CheckerKind::Udp => "UDP_CHECK",
            CheckerKind::Ping => "PING_CHECK",
            CheckerKind::File => "FILE_CHECK",
            CheckerKind::Bfd => "BFD_CHECK",
            CheckerKind::Mysql => "MYSQL_CHECK",
            CheckerKind::DrPath => "DR_PATH_CHECK",
        }
    }

    pub fn from_keyword(keyword: &str) -> Option<CheckerKind> {
        CheckerKind::ALL
            .into_iter()
            .find(|k| k.keyword() == keyword)
    }

    /// Whether the checker opens a connection (and so takes `connect_ip`, `connect_port`,
    /// `bindto`, `bind_port`, `bind_if`, `connect_timeout`, `fwmark`).
    pub fn has_connection(self) -> bool {
        !matches!(
            self,
            CheckerKind::Misc | CheckerKind::File | CheckerKind::Bfd
        )
    }

    /// Whether the checker takes the timing keywords (`retry`, `delay_before_retry`, `warmup`,
    /// `delay_loop`, `alpha`, `log_all_failures`).
    pub fn has_timing(self) -> bool {
        !matches!(self, CheckerKind::File | CheckerKind::Bfd)
    }

    /// `retry` when neither the checker, the real server nor the virtual server sets one.
    pub fn default_retry(self) -> u32 {
        match self {
            CheckerKind::Dns => 3,
            CheckerKind::Misc => 0,
            _ => 1,
        }
    }

    /// `delay_before_retry` when nothing sets one; `None`: the checker's `delay_loop`.
    pub fn default_delay_before_retry_us(self) -> Option<u64> {
        match self {
            CheckerKind::HttpGet | CheckerKind::SslGet => Some(secs(3)),
            CheckerKind::Dns => None,
            _ => Some(secs(1)),
        }
    }
}

/// One health checker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Checker {
    Tcp(TcpCheck),
    /// `HTTP_GET`.
    Http(HttpCheck),
    /// `SSL_GET`: the same settings as HTTP_GET, over TLS.
    Ssl(HttpCheck),
    Smtp(SmtpCheck),
    Dns(DnsCheck),
    Misc(MiscCheck),
    Udp(UdpCheck),
    Ping(PingCheck),
    File(FileCheck),
    Bfd(BfdCheck),
    /// halb's `MYSQL_CHECK`.
    Mysql(MysqlCheck),
    /// halb's `DR_PATH_CHECK`.
    DrPath(TcpCheck),
}

impl Checker {
    pub fn kind(&self) -> CheckerKind {
        match self {
            Checker::Tcp(_) => CheckerKind::Tcp,
            Checker::Http(_) => CheckerKind::HttpGet,
            Checker::Ssl(_) => CheckerKind::SslGet,
            Checker::Smtp(_) => CheckerKind::Smtp,
            Checker::Dns(_) => CheckerKind::Dns,
            Checker::Misc(_) => CheckerKind::Misc,
            Checker::Udp(_) => CheckerKind::Udp,
            Checker::Ping(_) => CheckerKind::Ping,
            Checker::File(_) => CheckerKind::File,
            Checker::Bfd(_) => CheckerKind::Bfd,
            Checker::Mysql(_) => CheckerKind::Mysql,
            Checker::DrPath(_) => CheckerKind::DrPath,
        }
    }

    /// `TCP_CHECK`, `HTTP_GET`, …
    pub fn kind_name(&self) -> &'static str {
        self.kind().keyword()
    }

    /// The common keywords; `None` for FILE_CHECK and BFD_CHECK, which take none of them.
    pub fn common(&self) -> Option<&CheckerCommon> {
        match self {
            Checker::Tcp(c) => Some(&c.common),
            Checker::Http(c) | Checker::Ssl(c) => Some(&c.common),
            Checker::Smtp(c) => Some(&c.common),
            Checker::Dns(c) => Some(&c.common),
            Checker::Misc(c) => Some(&c.common),
            Checker::Udp(c) => Some(&c.common),
            Checker::Ping(c) => Some(&c.common),
            Checker::Mysql(c) => Some(&c.common),
            Checker::DrPath(c) => Some(&c.common),
            Checker::File(_) | Checker::Bfd(_) => None,
        }
    }

    pub fn has_connection(&self) -> bool {
        self.kind().has_connection()
    }

    pub fn default_retry(&self) -> u32 {
        self.kind().default_retry()
    }

    pub fn default_delay_before_retry_us(&self) -> Option<u64> {
        self.kind().default_delay_before_retry_us()
    }

    /// The checker's own `alpha`, if it sets one.
    pub fn alpha(&self) -> Option<bool> {
        match self {
            Checker::Bfd(b) => b.alpha,
            other => other.common().and_then(|c| c.alpha),
        }
    }
}

/// The keywords every timed checker takes (`install_checker_common_keywords()`); the
/// connection ones (`connect_ip` … `fwmark`) only where the checker connects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckerCommon {
    /// Default: the real server's address.
    pub connect_ip: Option<IpAddr>,
    /// Default: the real server's port.
    pub connect_port: Option<u16>,
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub bind_if: Option<String>,
    pub connect_timeout_us: Option<u64>,
    /// SO_MARK of the checker's socket.
    pub fwmark: Option<u32>,
    pub retry: Option<u32>,
    pub delay_before_retry_us: Option<u64>,
    pub warmup_us: Option<u64>,
    pub delay_loop_us: Option<u64>,
    pub alpha: Option<bool>,
    pub log_all_failures: bool,
}

impl CheckerCommon {
    /// Where the checker connects to, given its real server.
    pub fn connect_to(&self, rs_ip: IpAddr, rs_port: u16) -> (IpAddr, u16) {
        (
            self.connect_ip.unwrap_or(rs_ip),
            self.connect_port.unwrap_or(rs_port),
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpCheck {
    pub common: CheckerCommon,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingCheck {
    pub common: CheckerCommon,
}

/// `HTTP_GET` / `SSL_GET`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCheck {
    pub common: CheckerCommon,
    /// Never empty: keepalived drops a checker without a usable `url`.
    pub urls: Vec<Url>,
    /// The Host header for every url that sets none; default the real server's `virtualhost`,
    /// then the virtual server's.
    pub virtualhost: Option<String>,
    pub http_protocol: Option<HttpProtocol>,
    /// `enable_sni`: send the virtualhost as TLS SNI (SSL_GET).
    pub enable_sni: bool,
    pub fast_recovery: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpProtocol {
    /// `1.0`
    Http10,
    /// `1.1`
    Http11,
    /// `1.0C`: HTTP/1.0 with `Connection: close`.
    Http10Close,
}

impl HttpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpProtocol::Http10 => "1.0",
            HttpProtocol::Http11 => "1.1",
            HttpProtocol::Http10Close => "1.0C",
        }
    }
}

/// One `url { }` of an HTTP_GET / SSL_GET.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Url {
    pub path: String,
    /// MD5 of the body.
    pub digest: Option<[u8; 16]>,
    /// Accepted status codes as sorted, disjoint, non-adjacent inclusive ranges; 200-299 when the
    /// url sets none.
    pub status_codes: Vec<(u16, u16)>,
    pub virtualhost: Option<String>,
    pub regex: Option<UrlRegex>,
}

/// The default accepted status codes.
pub const DEFAULT_STATUS_CODES: (u16, u16) = (200, 299);

impl Url {
    pub fn new(path: String) -> Self {
        Url {
            path,
            digest: None,
            status_codes: vec![DEFAULT_STATUS_CODES],
            virtualhost: None,
            regex: None,
        }
    }
}

/// `regex` and its options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlRegex {
    pub pattern: String,
    pub no_match: bool,
    /// PCRE2 option names (`caseless`, `multiline`, …) in keepalived's order, without repeats.
    pub options: Vec<String>,
    pub min_offset: Option<u64>,
    /// `regex_max_offset` as written (keepalived stores one more).
    pub max_offset: Option<u64>,
    /// `regex_stack START MAX`.
    pub stack: Option<(u64, u64)>,
}

/// The PCRE2 options `regex_options` knows.
pub const REGEX_OPTIONS: &[&str] = &[
    "allow_empty_class",
    "alt_bsux",
    "auto_callout",
    "caseless",
    "dollar_endonly",
    "dotall",
    "dupnames",
    "extended",
    "firstline",
    "match_unset_backref",
    "multiline",
    "never_ucp",
    "never_utf",
    "no_auto_capture",
    "no_auto_possess",
    "no_dotstar_anchor",
    "no_start_optimize",
    "ucp",
    "ungreedy",
    "utf",
    "never_backslash_c",
    "alt_circumflex",
    "alt_verbnames",
    "use_offset_limit",
];

/// `SMTP_CHECK`. keepalived's deprecated `host { }` blocks are read as one SMTP_CHECK each,
/// which is what keepalived makes of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpCheck {
    pub common: CheckerCommon,
    /// Default `smtpchecker.keepalived.org`.
    pub helo_name: Option<String>,
}

/// The HELO name keepalived sends when none is set.
pub const DEFAULT_SMTP_HELO: &str = "smtpchecker.keepalived.org";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsCheck {
    pub common: CheckerCommon,
    pub query_type: DnsType,
    /// Default "" (the root).
    pub name: String,
}

/// The query types DNS_CHECK knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DnsType {
    A,
    Ns,
    Cname,
    #[default]
    Soa,
    Mx,
    Txt,
    Aaaa,
    Rrsig,
    Dnskey,
}

impl DnsType {
    pub const ALL: [DnsType; 9] = [
        DnsType::A,
        DnsType::Ns,
        DnsType::Cname,
        DnsType::Soa,
        DnsType::Mx,
        DnsType::Txt,
        DnsType::Aaaa,
        DnsType::Rrsig,
        DnsType::Dnskey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DnsType::A => "A",
            DnsType::Ns => "NS",
            DnsType::Cname => "CNAME",
            DnsType::Soa => "SOA",
            DnsType::Mx => "MX",
            DnsType::Txt => "TXT",
            DnsType::Aaaa => "AAAA",
            DnsType::Rrsig => "RRSIG",
            DnsType::Dnskey => "DNSKEY",
        }
    }

    /// The RR type number.
    pub fn code(self) -> u16 {
        match self {
            DnsType::A => 1,
            DnsType::Ns => 2,
            DnsType::Cname => 5,
            DnsType::Soa => 6,
            DnsType::Mx => 15,
            DnsType::Txt => 16,
            DnsType::Aaaa => 28,
            DnsType::Rrsig => 46,
            DnsType::Dnskey => 48,
        }
    }

    /// keepalived compares type names without regard to case.
    pub fn from_name(name: &str) -> Option<DnsType> {
        DnsType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
    }
}

/// `MISC_CHECK`: a script whose exit status is the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MiscCheck {
    /// Only the timing keywords: MISC_CHECK takes no connection keywords.
    pub common: CheckerCommon,
    /// `misc_path`, with `user USER [GROUP]`.
    pub misc_path: Script,
    /// `misc_timeout` (whole seconds); `None`: the virtual server's `delay_loop` (as keepalived).
    pub misc_timeout_us: Option<u64>,
    /// Exit status 2..255 sets the weight to status - 2.
    pub misc_dynamic: bool,
}

/// `UDP_CHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpCheck {
    pub common: CheckerCommon,
    /// The datagram sent; `None`: an empty one.
    pub payload: Option<HexBytes>,
    pub require_reply: bool,
    /// What the reply must start with (`x` nibbles match anything).
    pub reply: Option<HexBytes>,
    /// Default 0.
    pub min_reply_length: u16,
    /// Default 255.
    pub max_reply_length: u16,
}

impl Default for UdpCheck {
    fn default() -> Self {
        UdpCheck {
            common: CheckerCommon::default(),
            payload: None,
            require_reply: false,
            reply: None,
            min_reply_length: 0,
            max_reply_length: 255,
        }
    }
}

/// Bytes written as hex; `mask` has 0xf in the nibbles written as `x` (wildcards), and is
/// `None` when there are none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HexBytes {
    pub data: Vec<u8>,
    pub mask: Option<Vec<u8>>,
}

/// `FILE_CHECK`: the real server's weight follows a file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheck {
    /// The name of a top-level `track_file`.
    pub track_file: String,
    /// `None`: the `track_file`'s own weight.
    pub weight: Option<i32>,
    pub reverse: bool,
}

/// `BFD_CHECK`: the real server follows a `bfd_instance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BfdCheck {
    pub name: String,
    pub alpha: Option<bool>,
}

/// halb's `MYSQL_CHECK`: the MySQL handshake, a login as a monitor user, a query and a clean
/// `COM_QUIT`, so that the server never counts the balancer's address against
/// `max_connect_errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MysqlCheck {
    pub common: CheckerCommon,
    /// `user NAME`: the monitor account.
    pub user: String,
    /// `password SECRET`; default empty.
    pub password: String,
    /// `database NAME`: the schema to log in to; default none.
    pub database: Option<String>,
    /// `query "SQL"`: must succeed; default `SELECT 1`.
    pub query: String,
}

/// The query MYSQL_CHECK runs when none is set.
pub const DEFAULT_MYSQL_QUERY: &str = "SELECT 1";
