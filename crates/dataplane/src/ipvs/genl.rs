//! Generic netlink by hand: message framing, attributes (nlattr) in both directions, the
//! kernel's acknowledgements and errors, family resolution through the controller, and a
//! blocking socket that carries one request and its answers at a time.
//!
//! The codec half (everything but [`GenlSocket`]) is pure and works on byte slices, so the
//! exact bytes can be tested without a kernel. Attributes are written in the host's byte
//! order, as netlink wants; callers that need network order (IPVS ports) convert first.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    bind, getsockname, recv, recvfrom, send, setsockopt, socket, sockopt, AddressFamily, MsgFlags,
    NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

/// `struct nlmsghdr`: length, type, flags, sequence, port id.
pub const NLMSG_HDRLEN: usize = 16;
/// `struct genlmsghdr`: command, version, reserved.
pub const GENL_HDRLEN: usize = 4;
/// `struct nlattr`: length, type.
pub const NLA_HDRLEN: usize = 4;

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;

pub const NLM_F_REQUEST: u16 = 0x01;
pub const NLM_F_MULTI: u16 = 0x02;
pub const NLM_F_ACK: u16 = 0x04;
/// Set by the kernel on the parts of a dump when the table changed while it was being dumped.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_ROOT | NLM_F_MATCH`.
pub const NLM_F_DUMP: u16 = 0x300;

/// Marks an attribute whose payload is more attributes.
pub const NLA_F_NESTED: u16 = 1 << 15;
pub const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// The generic netlink controller, which maps family names to ids.
pub const GENL_ID_CTRL: u16 = 0x10;
pub const CTRL_CMD_GETFAMILY: u8 = 3;
pub const CTRL_ATTR_FAMILY_ID: u16 = 1;
pub const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_VERSION: u8 = 2;

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Bytes that do not parse as netlink: what was expected, where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed netlink data: {0}")]
pub struct CodecError(pub String);

impl From<CodecError> for io::Error {
    fn from(e: CodecError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Builds a run of attributes, nested ones included.
#[derive(Debug, Default, Clone)]
pub struct AttrWriter {
    buf: Vec<u8>,
}

impl AttrWriter {
    pub fn new() -> AttrWriter {
        AttrWriter::default()
    }

    /// One attribute with `payload`, padded to 4 bytes.
    pub fn put(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = NLA_HDRLEN + payload.len();
        // A payload over 64 KiB cannot be framed; none of IPVS's comes close (16 bytes at most).
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub fn put_u8(&mut self, kind: u16, value: u8) -> &mut Self {
        self.put(kind, &[value])
    }

    pub fn put_u16(&mut self, kind: u16, value: u16) -> &mut Self {
        self.put(kind, &value.to_ne_bytes())
    }

    /// A u16 in network byte order (`nla_put_be16`).
    pub fn put_be16(&mut self, kind: u16, value: u16) -> &mut Self {
        self.put(kind, &value.to_be_bytes())
    }

    pub fn put_u32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.put(kind, &value.to_ne_bytes())
    }

    pub fn put_u64(&mut self, kind: u16, value: u64) -> &mut Self {
        self.put(kind, &value.to_ne_bytes())
    }

    /// A NUL-terminated string (`NLA_NUL_STRING`).
    pub fn put_str(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut payload = Vec::with_capacity(value.len() + 1);
        payload.extend_from_slice(value.as_bytes());
        payload.push(0);
        self.put(kind, &payload)
    }

    /// A nested attribute whose content `fill` writes.
    pub fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut AttrWriter)) -> &mut Self {
        let mut inner = AttrWriter::new();
        fill(&mut inner);
        self.put(kind | NLA_F_NESTED, &inner.buf)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// A whole request: netlink header, generic netlink header, attributes.
pub fn encode_request(
    family: u16,
    flags: u16,
    seq: u32,
    cmd: u8,
    version: u8,
    attrs: &[u8],
) -> Vec<u8> {
    let len = NLMSG_HDRLEN + GENL_HDRLEN + attrs.len();
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&family.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    // Port id 0: the kernel fills in the sender's.
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(cmd);
    buf.push(version);
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(attrs);
    buf
}

/// One attribute as read: its type (without the nested / byte-order bits) and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    pub kind: u16,
    pub payload: &'a [u8],
}

impl<'a> Attr<'a> {
    fn exact<const N: usize>(&self) -> Result<[u8; N], CodecError> {
        self.payload.try_into().map_err(|_| {
            CodecError(format!(
                "attribute {} has {} bytes, expected {N}",
                self.kind,
                self.payload.len()
            ))
        })
    }

    pub fn u8(&self) -> Result<u8, CodecError> {
        Ok(self.exact::<1>()?[0])
    }

    pub fn u16(&self) -> Result<u16, CodecError> {
        Ok(u16::from_ne_bytes(self.exact()?))
    }

    /// A u16 sent in network byte order (`nla_put_be16`).
    pub fn be16(&self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.exact()?))
    }

    pub fn u32(&self) -> Result<u32, CodecError> {
        Ok(u32::from_ne_bytes(self.exact()?))
    }

    pub fn u64(&self) -> Result<u64, CodecError> {
        Ok(u64::from_ne_bytes(self.exact()?))
    }

    /// A string, up to its first NUL.
    pub fn string(&self) -> Result<String, CodecError> {
        let bytes = self
            .payload
            .split(|b| *b == 0)
            .next()
            .unwrap_or(self.payload);
        String::from_utf8(bytes.to_vec())
            .map_err(|_| CodecError(format!("attribute {} is not UTF-8", self.kind)))
    }

    /// The attributes nested inside this one.
    pub fn nested(&self) -> AttrIter<'a> {
        AttrIter::new(self.payload)
    }
}

/// Walks a run of attributes.
#[derive(Debug, Clone)]
pub struct AttrIter<'a> {
    rest: &'a [u8],
}

impl<'a> AttrIter<'a> {
    pub fn new(data: &'a [u8]) -> AttrIter<'a> {
        AttrIter { rest: data }
    }
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = Result<Attr<'a>, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < NLA_HDRLEN {
            let left = self.rest.len();
            self.rest = &[];
            return Some(Err(CodecError(format!(
                "{left} bytes left after the last attribute, too few for a header"
            ))));
        }
        let len = usize::from(u16::from_ne_bytes([self.rest[0], self.rest[1]]));
        let kind = u16::from_ne_bytes([self.rest[2], self.rest[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > self.rest.len() {
            let have = self.rest.len();
            self.rest = &[];
            return Some(Err(CodecError(format!(
                "attribute {kind} claims {len} bytes, {have} are left"
            ))));
        }
        let payload = &self.rest[NLA_HDRLEN..len];
        self.rest = &self.rest[align4(len).min(self.rest.len())..];
        Some(Ok(Attr { kind, payload }))
    }
}

/// A run of attributes indexed by type (the last one of a type wins, as in the kernel's
/// `nla_parse`).
#[derive(Debug, Clone, Default)]
pub struct AttrMap<'a> {
    attrs: Vec<Attr<'a>>,
}

impl<'a> AttrMap<'a> {
    pub fn parse(data: &'a [u8]) -> Result<AttrMap<'a>, CodecError> {
        Ok(AttrMap {
            attrs: AttrIter::new(data).collect::<Result<_, _>>()?,
        })
    }

    pub fn get(&self, kind: u16) -> Option<Attr<'a>> {
        self.attrs.iter().rev().find(|a| a.kind == kind).copied()
    }

    /// The attribute of `kind`, which must be there.
    pub fn require(&self, kind: u16, what: &str) -> Result<Attr<'a>, CodecError> {
        self.get(kind)
            .ok_or_else(|| CodecError(format!("{what} (attribute {kind}) is missing")))
    }

    /// The attributes nested in the one of `kind`.
    pub fn nested(&self, kind: u16) -> Result<Option<AttrMap<'a>>, CodecError> {
        self.get(kind)
            .map(|a| AttrMap::parse(a.payload))
            .transpose()
    }
}

/// One netlink message from the kernel, decoded as far as generic netlink goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A generic netlink message: `cmd` and its attributes.
    Message {
        kind: u16,
        flags: u16,
        seq: u32,
        cmd: u8,
        attrs: &'a [u8],
    },
    /// `NLMSG_ERROR` with error 0: the request was carried out.
    Ack { seq: u32 },
    /// `NLMSG_ERROR` with an error: the positive errno.
    Error { seq: u32, errno: i32 },
    /// The end of a dump; `errno` is non-zero when the dump itself failed.
    Done { seq: u32, errno: i32 },
    /// `NLMSG_NOOP` and `NLMSG_OVERRUN`: nothing to act on.
    Other { kind: u16, seq: u32 },
}

impl Reply<'_> {
    pub fn seq(&self) -> u32 {
        match *self {
            Reply::Message { seq, .. }
            | Reply::Ack { seq }
            | Reply::Error { seq, .. }
            | Reply::Done { seq, .. }
            | Reply::Other { seq, .. } => seq,
        }
    }
}

fn read_i32(payload: &[u8], what: &str) -> Result<i32, CodecError> {
    payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
        .ok_or_else(|| CodecError(format!("{what} has {} bytes", payload.len())))
}

/// Splits one datagram into its messages.
pub fn parse_replies(datagram: &[u8]) -> Result<Vec<Reply<'_>>, CodecError> {
    let mut replies = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        if rest.len() < NLMSG_HDRLEN {
            return Err(CodecError(format!(
                "{} bytes after the last message, too few for a header",
                rest.len()
            )));
        }
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let flags = u16::from_ne_bytes([rest[6], rest[7]]);
        let seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(CodecError(format!(
                "message of type {kind} claims {len} bytes, {} are left",
                rest.len()
            )));
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        let reply = match kind {
            NLMSG_ERROR => {
                // A negative errno, then the request's header (and more that we do not need).
                let code = read_i32(payload, "an error message")?;
                if code == 0 {
                    Reply::Ack { seq }
                } else {
                    Reply::Error {
                        seq,
                        errno: code.checked_neg().unwrap_or(i32::MAX),
                    }
                }
            }
            NLMSG_DONE => {
                // Old kernels may send DONE without the status word.
                let code = if payload.len() >= 4 {
                    read_i32(payload, "a done message")?
                } else {
                    0
                };
                Reply::Done {
                    seq,
                    errno: code.checked_neg().unwrap_or(i32::MAX),
                }
            }
            NLMSG_NOOP | NLMSG_OVERRUN => Reply::Other { kind, seq },
            _ => {
                if payload.len() < GENL_HDRLEN {
                    return Err(CodecError(format!(
                        "message of type {kind} has {} bytes, too few for a generic netlink header",
                        payload.len()
                    )));
                }
                Reply::Message {
                    kind,
                    flags,
                    seq,
                    cmd: payload[0],
                    attrs: &payload[GENL_HDRLEN..],
                }
            }
        };
        replies.push(reply);
        rest = &rest[align4(len).min(rest.len())..];
    }
    Ok(replies)
}

/// The controller request that asks for the id of family `name`.
pub fn get_family_request(seq: u32, name: &str) -> Vec<u8> {
    let mut attrs = AttrWriter::new();
    attrs.put_str(CTRL_ATTR_FAMILY_NAME, name);
    encode_request(
        GENL_ID_CTRL,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        CTRL_CMD_GETFAMILY,
        CTRL_VERSION,
        attrs.as_bytes(),
    )
}

/// The family id in the controller's answer.
pub fn family_id_from_reply(attrs: &[u8]) -> Result<u16, CodecError> {
    AttrMap::parse(attrs)?
        .require(CTRL_ATTR_FAMILY_ID, "the family id")?
        .u16()
}

/// One message of an answer, copied out of the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenlMessage {
    pub cmd: u8,
    pub attrs: Vec<u8>,
}

/// How long to wait for the kernel before calling a request lost. The kernel answers at once;
/// this only keeps a wedged process from hanging for ever.
const RECV_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of a dump that the kernel reports as interrupted by a concurrent change.
const DUMP_TRIES: usize = 3;

/// A generic netlink socket in the network namespace of the thread that opened it. Requests
/// are carried out one at a time, blocking.
#[derive(Debug)]
pub struct GenlSocket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl GenlSocket {
    pub fn open() -> io::Result<GenlSocket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkGeneric,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &TimeVal::new(RECV_TIMEOUT.as_secs() as _, 0),
        )?;
        // Sequence numbers only need to differ between requests on this socket; starting from
        // the port id keeps two sockets of one process apart in traces.
        let seq = getsockname::<NetlinkAddr>(fd.as_raw_fd())
            .map(|a| a.pid())
            .unwrap_or(1);
        Ok(GenlSocket {
            fd,
            seq,
            buf: vec![0; 32 * 1024],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// The id of family `name`, or `None` when the kernel has no such family (for IPVS: the
    /// module is not loaded and cannot be).
    pub fn resolve_family(&mut self, name: &str) -> io::Result<Option<u16>> {
        let seq = self.next_seq();
        let request = get_family_request(seq, name);
        match self.exchange(&request, seq, false) {
            Ok(messages) => {
                let message = messages.first().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the controller acknowledged without answering",
                    )
                })?;
                Ok(Some(family_id_from_reply(&message.attrs)?))
            }
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends command `cmd` of `family` with `attrs` and returns the kernel's answer: the
    /// messages of a dump, the one message of a `GET`, or nothing for a change. A kernel
    /// error comes back as an `io::Error` with its errno.
    pub fn execute(
        &mut self,
        family: u16,
        cmd: u8,
        version: u8,
        attrs: &[u8],
        dump: bool,
    ) -> io::Result<Vec<GenlMessage>> {
        let flags = if dump {
            NLM_F_REQUEST | NLM_F_DUMP
        } else {
            NLM_F_REQUEST | NLM_F_ACK
        };
        let mut tries = 0;
        loop {
            let seq = self.next_seq();
            let request = encode_request(family, flags, seq, cmd, version, attrs);
            match self.exchange(&request, seq, dump) {
                Err(e) if dump && e.kind() == io::ErrorKind::Interrupted => {
                    tries += 1;
                    if tries >= DUMP_TRIES {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// Sends `request` and collects the answers to `seq` until the ack, the error or the end of
    /// the dump.
    fn exchange(&mut self, request: &[u8], seq: u32, dump: bool) -> io::Result<Vec<GenlMessage>> {
        let sent = retry_eintr(|| send(self.fd.as_raw_fd(), request, MsgFlags::empty()))?;
        if sent != request.len() {
            return Err(io::Error::other(format!(
                "netlink sent {sent} of {} bytes",
                request.len()
            )));
        }
        let mut messages = Vec::new();
        let mut interrupted = false;
        loop {
            let len = self.receive()?;
            for reply in parse_replies(&self.buf[..len])? {
                // Answers to an earlier request that timed out are not ours.
                if reply.seq() != seq {
                    continue;
                }
                match reply {
                    Reply::Message {
                        flags, cmd, attrs, ..
                    } => {
                        interrupted |= flags & NLM_F_DUMP_INTR != 0;
                        messages.push(GenlMessage {
                            cmd,
                            attrs: attrs.to_vec(),
                        });
                    }
                    Reply::Ack { .. } if !dump => return Ok(messages),
                    Reply::Error { errno, .. } => return Err(io::Error::from_raw_os_error(errno)),
                    Reply::Done { errno, .. } if dump => {
                        if errno != 0 {
                            return Err(io::Error::from_raw_os_error(errno));
                        }
                        if interrupted {
                            return Err(io::Error::new(
                                io::ErrorKind::Interrupted,
                                "the table changed during the dump",
                            ));
                        }
                        return Ok(messages);
                    }
                    Reply::Ack { .. } | Reply::Done { .. } | Reply::Other { .. } => {}
                }
            }
        }
    }

    /// Receives one datagram from the kernel into `self.buf`, growing it to the datagram's
    /// size first; returns its length.
    fn receive(&mut self) -> io::Result<usize> {
        loop {
            // MSG_TRUNC makes a netlink socket report the datagram's whole length.
            let needed = retry_eintr(|| {
                recv(
                    self.fd.as_raw_fd(),
                    &mut self.buf[..1],
                    MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
                )
            })
            .map_err(timeout_context)?;
            if needed > self.buf.len() {
                self.buf.resize(needed, 0);
            }
            let (len, from) =
                retry_eintr(|| recvfrom::<NetlinkAddr>(self.fd.as_raw_fd(), &mut self.buf))
                    .map_err(timeout_context)?;
            // Only the kernel (port 0) speaks for IPVS.
            if from.map(|a| a.pid()).unwrap_or(0) == 0 {
                return Ok(len);
            }
        }
    }
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

fn retry_eintr<T>(mut f: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

fn timeout_context(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no answer from the kernel within {} s",
                RECV_TIMEOUT.as_secs()
            ),
        )
    } else {
        e
    }
}
