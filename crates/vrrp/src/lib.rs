//! VRRP for halb, sans-IO: the advertisement codec ([`packet`]), one instance's state machine
//! ([`Instance`]) and the sync-group coordinator ([`SyncGroup`]), with keepalived 2.2's
//! semantics so that halb and keepalived can share a virtual router.
//!
//! Nothing here touches a socket, a clock or a thread: time is an input, and the I/O shell
//! carries out the [`Action`]s an instance returns. That makes failover testable in virtual
//! time, in memory.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use std::time::{Duration, Instant};
//! use halb_vrrp::{packet::AddressList, Action, Instance, InstanceConfig, State};
//!
//! let vip = Ipv4Addr::new(192, 168, 66, 251);
//! let me = IpAddr::V4(Ipv4Addr::new(192, 168, 66, 10));
//! let config = InstanceConfig::new("VI_1", 51, me, AddressList::ipv4([vip]).unwrap());
//! let start = Instant::now();
//! let mut vrrp = Instance::new(config, start);
//! assert_eq!(vrrp.state(), State::Backup);
//! while vrrp.poll_action().is_some() {} // "Entering BACKUP STATE (init)"
//!
//! // Nobody advertises: the Master_Down_Timer (3 s + skew) runs out.
//! let deadline = vrrp.poll_timeout().unwrap();
//! assert_eq!(deadline - start, Duration::from_micros(3_609_375));
//! vrrp.handle_timeout(deadline);
//! assert_eq!(vrrp.state(), State::Master);
//! assert!(matches!(vrrp.poll_action(), Some(Action::SendAdvert { .. })));
//! ```

//! # Modules
//! - [`packet`]: the codec (`decode`, `encode`, and the IPv4-header variants).
//! - [`instance`]: [`Instance`], with the receive path, tracking and sync-group hooks in
//!   submodules; [`config`] holds its [`InstanceConfig`] and keepalived's fix-ups.
//! - [`events`]: [`Action`], [`State`], [`Reason`], [`Dropped`]; [`stats`]: [`Stats`];
//!   [`timers`]: Skew_Time and Master_Down_Interval.
//! - [`sync_group`]: [`SyncGroup`], which the shell calls after feeding any member.
//!
//! # Where halb knowingly differs from keepalived 2.2.7
//! - A MASTER restarts its advert timer only when it actually sends an advert (keepalived also
//!   restarts it on adverts it drops).
//! - A VRRPv3 advert with interval 0 is dropped (keepalived would adopt it and time out at once).
//! - VRRPv2 interval mismatches are counted in `advert_interval_errors` (keepalived only logs).
//! - MASTER → FAULT sends one priority 0 advert (keepalived sends two).
//! - While an unweighted tracker has not reported, the state is Initialize (keepalived shows
//!   FAULT without notifying).
//! - A priority change moves a running BACKUP timer by the change in Skew_Time, also right after
//!   a priority 0 advert (keepalived recomputes from the full Master_Down_Interval there).

mod checksum;
pub mod config;
pub mod events;
pub mod instance;
pub mod packet;
pub mod stats;
pub mod sync_group;
pub mod timers;

pub use config::{
    ConfigWarning, GarpPolicy, InitialState, InstanceConfig, TrackerConfig, TrackerStatus,
};
pub use events::{Action, Dropped, Reason, State, StateChange};
pub use instance::Instance;
pub use packet::{Advert, DecodeError};
pub use stats::Stats;
pub use sync_group::SyncGroup;
