//! What an instance tells its I/O shell: states, the actions to carry out, and why a received
//! advert changed nothing. Display texts keep keepalived's wording, so operators' greps keep
//! working.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::packet::{Advert, DecodeError, Version};

/// An instance's state (RFC 3768 §6.4, plus keepalived's FAULT and STOP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started yet: waiting for the first result of an unweighted tracker, or for the
    /// instant an address owner takes over.
    Initialize,
    Backup,
    Master,
    /// The interface is down or an unweighted tracker failed (or, in a sync group, another
    /// member's did): adverts are neither sent nor heard.
    Fault,
    /// After [`crate::Instance::shutdown`].
    Stopped,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
            State::Stopped => "STOP",
        })
    }
}

/// Why a state changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The instance started (keepalived logs these with "(init)").
    Startup,
    /// Priority 255 takes over at once.
    AddressOwner,
    /// No advert within Master_Down_Interval (RFC 5798 MIB: masterNoResponse).
    MasterDown,
    /// The master announced it was leaving with priority 0 (RFC 5798 MIB: priority).
    MasterReleased,
    /// We discarded a lower priority master's adverts until the timer ran out (MIB: preempted).
    Preempted,
    /// The previous process on this host handed its MASTER role over (an upgrade).
    HandedOver,
    /// A master yields to a higher priority advert.
    HigherPriority {
        from: IpAddr,
        priority: u8,
    },
    /// A master yields to an advert of its own priority from a higher address.
    HigherAddress {
        from: IpAddr,
    },
    InterfaceDown,
    InterfaceUp,
    TrackerDown {
        name: String,
    },
    TrackerUp {
        name: String,
    },
    /// Another member of the sync group moved.
    SyncGroup {
        group: String,
    },
    Shutdown,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Startup => f.write_str("startup"),
            Reason::AddressOwner => f.write_str("address owner"),
            Reason::MasterDown => f.write_str("no advert from the master"),
            Reason::MasterReleased => f.write_str("the master released with priority 0"),
            Reason::Preempted => f.write_str("preempted a lower priority master"),
            Reason::HandedOver => f.write_str("handed over by the previous process"),
            Reason::HigherPriority { from, priority } => {
                write!(f, "advert from {from} with higher priority {priority}")
            }
            Reason::HigherAddress { from } => write!(
                f,
                "advert from {from} with same priority but higher IP address"
            ),
            Reason::InterfaceDown => f.write_str("interface down"),
            Reason::InterfaceUp => f.write_str("interface up"),
            Reason::TrackerDown { name } => write!(f, "tracked {name} down"),
            Reason::TrackerUp { name } => write!(f, "tracked {name} up"),
            Reason::SyncGroup { group } => write!(f, "sync group {group}"),
            Reason::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// A transition, for log lines ("Entering MASTER STATE") and notify scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub from: State,
    pub to: State,
    pub reason: Reason,
}

impl fmt::Display for StateChange {
    /// keepalived's line, without the "(instance)" prefix the shell adds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.to == State::Stopped {
            return f.write_str("Stopped");
        }
        let to = match self.to {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault | State::Stopped => "FAULT",
        };
        write!(f, "Entering {to} STATE")?;
        // keepalived's `vrrp_init_state` marks the first state it sets; an owner's immediate
        // MASTER goes through the ordinary path and is not marked.
        if self.reason == Reason::Startup
            || (self.from == State::Initialize && self.to != State::Master)
        {
            f.write_str(" (init)")?;
        }
        Ok(())
    }
}

/// Something the shell must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `advert` from `src` to `dst` (the multicast group, or one unicast peer: one action
    /// per peer). Multicast adverts go out with TTL / hop limit 255.
    SendAdvert {
        advert: Advert,
        src: IpAddr,
        dst: IpAddr,
    },
    /// Add the virtual addresses (and the excluded ones) to the interface.
    AddVips {
        addresses: Vec<IpAddr>,
    },
    RemoveVips {
        addresses: Vec<IpAddr>,
    },
    /// Gratuitous ARP (IPv4) or unsolicited neighbour advertisement (IPv6), `repeat` times for
    /// each address; the shell paces them (keepalived's `garp_interval`).
    SendGratuitousArp {
        addresses: Vec<IpAddr>,
        repeat: u32,
    },
    StateChange(StateChange),
    /// The effective priority moved (tracker weights, or an address owner conflict).
    PriorityChange {
        from: u8,
        to: u8,
    },
    /// A master heard a lower priority advert: keepalived's `notify_master_rx_lower_pri`.
    MasterReceivedLowerPriority {
        from: IpAddr,
        priority: u8,
    },
}

/// Why a received advert changed nothing (for the log; counters are already updated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// The instance was shut down.
    Stopped,
    /// FAULT and Initialize do not listen.
    NotListening {
        state: State,
    },
    WrongVrid {
        got: u8,
        ours: u8,
    },
    Decode(DecodeError),
    VersionMismatch {
        got: Version,
        ours: Version,
    },
    AuthTypeMismatch {
        got: u8,
        ours: u8,
    },
    /// Wrong PASS password.
    AuthFailure,
    /// VRRPv2 requires the same interval everywhere (RFC 3768 §7.1).
    IntervalMismatch {
        got: Duration,
        ours: Duration,
    },
    /// A VRRPv3 interval of 0 would make every backup take over at once.
    ZeroInterval,
    AddressCountMismatch {
        got: usize,
        ours: usize,
    },
    /// One of our virtual addresses is not in the advert.
    MissingAddress {
        addr: IpAddr,
    },
    /// A multicast advert on a unicast instance, or the reverse.
    UnexpectedDestination {
        multicast: bool,
    },
    /// `check_unicast_src` and the sender is not a peer.
    NotAPeer {
        from: IpAddr,
    },
    /// A backup that preempts ignores a lower priority master until its timer runs out.
    LowerPriority {
        from: IpAddr,
        priority: u8,
    },
    /// An advert of our priority from our own address.
    OwnAddress,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::Stopped => f.write_str("instance stopped"),
            Dropped::NotListening { state } => write!(f, "advert ignored in {state} state"),
            Dropped::WrongVrid { got, ours } => write!(
                f,
                "Unknown VRID({got}) received, ours is {ours}. ignoring..."
            ),
            Dropped::Decode(e) => e.fmt(f),
            Dropped::VersionMismatch { got, ours } => write!(
                f,
                "wrong version. Received {} and expect {}",
                got.number(),
                ours.number()
            ),
            Dropped::AuthTypeMismatch { got, ours } => {
                write!(f, "received a {got} auth, expecting {ours}!")
            }
            Dropped::AuthFailure => f.write_str("received an invalid passwd!"),
            Dropped::IntervalMismatch { got, ours } => write!(
                f,
                "advertisement interval mismatch mine={} sec rcv'd={} sec",
                ours.as_secs(),
                got.as_secs()
            ),
            Dropped::ZeroInterval => f.write_str("advertisement interval 0 received"),
            Dropped::AddressCountMismatch { got, ours } => {
                write!(
                    f,
                    "received an unexpected ip number count {got}, expected {ours}!"
                )
            }
            Dropped::MissingAddress { addr } => {
                write!(f, "ip address {addr} not present in MASTER advert")
            }
            Dropped::UnexpectedDestination { multicast } => {
                if *multicast {
                    f.write_str("Expected unicast packet but received multicast packet")
                } else {
                    f.write_str("Expected multicast packet but received unicast packet")
                }
            }
            Dropped::NotAPeer { from } => {
                write!(f, "unicast source address {from} not a unicast peer")
            }
            Dropped::LowerPriority { from, priority } => {
                write!(
                    f,
                    "received lower priority ({priority}) advert from {from} - discarding"
                )
            }
            Dropped::OwnAddress => f.write_str(
                "WARNING - equal priority advert received from remote host with our IP address.",
            ),
        }
    }
}
