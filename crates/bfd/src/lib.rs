//! BFD for halb, sans-IO: the control packet codec ([`packet`]) and one session's state machine
//! ([`Session`]), RFC 5880 asynchronous mode as RFC 5881 runs it over single-hop UDP, with the
//! parameters of keepalived's `bfd_instance`.
//!
//! Nothing here touches a socket or a clock: time is an input, the jitter of the transmit timer
//! comes from a seed in the [`SessionConfig`], and the shell sends the packets
//! [`Session::poll_transmit`] returns and acts on the [`Event`]s of [`Session::poll_event`].
//!
//! ```
//! use std::time::{Duration, Instant};
//! use halb_bfd::{Session, SessionConfig, State};
//!
//! let start = Instant::now();
//! let mut a = Session::new(SessionConfig::new(1).with_seed(1), start);
//! let mut b = Session::new(SessionConfig::new(2).with_seed(2), start);
//! let mut now = start;
//! // Wire the two sessions to each other until both are Up.
//! while a.state() != State::Up || b.state() != State::Up {
//!     now = a.poll_timeout().unwrap().min(b.poll_timeout().unwrap()).max(now);
//!     a.handle_timeout(now);
//!     b.handle_timeout(now);
//!     while let Some(p) = a.poll_transmit() { b.handle_packet(now, &p).unwrap(); }
//!     while let Some(p) = b.poll_transmit() { a.handle_packet(now, &p).unwrap(); }
//! }
//! assert!(now - start < Duration::from_secs(3));
//! ```
//!
//! # Where halb knowingly differs from keepalived 2.2.7
//! - A packet with the Authentication Present bit is dropped and counted (RFC 5880 §6.8.6: no
//!   authentication is configured); keepalived ignores the bit and the section.
//! - A packet whose Length field is shorter than the datagram is accepted (RFC 5880 §6.8.6
//!   only drops a Length greater than the payload); keepalived wants them equal.
//! - Diagnostic codes above 8 are kept as they are (reserved, not an error in the RFC);
//!   keepalived drops such packets.

pub mod packet;
pub mod session;

pub use packet::{ControlPacket, DecodeError, Diag, State};
pub use session::{Dropped, Event, Session, SessionConfig, Stats};
