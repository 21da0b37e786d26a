//! The receive path: vrrp.c `vrrp_check_packet`, `vrrp_state_backup` and
//! `vrrp_state_master_rx`.

use std::cmp::Ordering;
use std::net::IpAddr;
use std::time::Instant;

use super::{Instance, Want};
use crate::events::{Action, Dropped, Reason, State};
use crate::packet::{self, Advert, Auth, DecodeError, PacketContext, Version, VersionFields};

impl Instance {
    /// Decodes and handles a received VRRP message (the IP payload), counting decode errors as
    /// keepalived does. The TTL check is skipped for unicast instances, and the destination must
    /// be multicast for multicast instances and unicast for unicast ones.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        bytes: &[u8],
        ctx: &PacketContext,
    ) -> Result<(), Dropped> {
        if self.state == State::Stopped {
            return Err(Dropped::Stopped);
        }
        if let Some(vrid) = packet::peek_vrid(bytes) {
            if vrid != self.config.vrid {
                self.stats.vrid_errors += 1;
                return Err(Dropped::WrongVrid {
                    got: vrid,
                    ours: self.config.vrid,
                });
            }
        }
        self.check_listening()?;
        let ctx = PacketContext {
            ttl: if self.config.is_unicast() {
                None
            } else {
                ctx.ttl
            },
            ..*ctx
        };
        let advert = match packet::decode(bytes, &ctx) {
            Ok(advert) => advert,
            Err(e) => {
                self.record_decode_error(&e);
                return Err(Dropped::Decode(e));
            }
        };
        let multicast = ctx.endpoints.is_multicast();
        if multicast == self.config.is_unicast() {
            // vrrp.c `vrrp_check_packet`: "Expected multicast packet but received unicast packet".
            self.stats.address_list_errors += 1;
            return Err(Dropped::UnexpectedDestination { multicast });
        }
        self.handle_advert(now, ctx.endpoints.src(), &advert)
    }

    /// Counts a decode error against this instance (for shells that decode before choosing
    /// the instance by VRID with [`packet::peek_vrid`]).
    pub fn record_decode_error(&mut self, error: &DecodeError) {
        let counter = match error {
            DecodeError::TooShort { .. }
            | DecodeError::AddressCountMismatch { .. }
            | DecodeError::IpLengthMismatch { .. } => &mut self.stats.packet_length_errors,
            DecodeError::BadTtl { .. } => &mut self.stats.ttl_errors,
            DecodeError::BadVersion { .. } => &mut self.stats.version_errors,
            DecodeError::BadType { .. } => &mut self.stats.invalid_type,
            DecodeError::InvalidAuthType { .. } | DecodeError::AuthOverIpv6 { .. } => {
                &mut self.stats.invalid_auth_type
            }
            DecodeError::BadChecksum { .. } => &mut self.stats.checksum_errors,
            DecodeError::BadIpv4Header { .. } | DecodeError::NotVrrp { .. } => return,
        };
        *counter += 1;
    }

    /// Handles a decoded advert from `from` (the IP source). `Err` says why it changed nothing;
    /// the counters are updated either way.
    pub fn handle_advert(
        &mut self,
        now: Instant,
        from: IpAddr,
        advert: &Advert,
    ) -> Result<(), Dropped> {
        if self.state == State::Stopped {
            return Err(Dropped::Stopped);
        }
        if advert.vrid != self.config.vrid {
            self.stats.vrid_errors += 1;
            return Err(Dropped::WrongVrid {
                got: advert.vrid,
                ours: self.config.vrid,
            });
        }
        self.check_listening()?;
        self.check_advert(from, advert)?;
        match self.state {
            State::Backup => self.backup_rx(now, from, advert),
            State::Master => self.master_rx(now, from, advert),
            state => Err(Dropped::NotListening { state }),
        }
    }

    fn check_listening(&self) -> Result<(), Dropped> {
        match self.state {
            // vrrp_scheduler.c `vrrp_dispatcher_read`: FAULT and INIT ignore adverts.
            State::Fault | State::Initialize | State::Stopped => {
                Err(Dropped::NotListening { state: self.state })
            }
            State::Backup | State::Master => Ok(()),
        }
    }

    /// vrrp.c `vrrp_check_packet`, less what the codec checked, in keepalived's order.
    fn check_advert(&mut self, from: IpAddr, advert: &Advert) -> Result<(), Dropped> {
        let ours = self.config.version;
        if advert.version() != ours {
            self.stats.version_errors += 1;
            return Err(Dropped::VersionMismatch {
                got: advert.version(),
                ours,
            });
        }
        match advert.fields {
            VersionFields::V2 {
                auth,
                advert_int_secs,
            } => {
                if auth.auth_type() != self.config.auth.auth_type() {
                    self.stats.auth_type_mismatch += 1;
                    return Err(Dropped::AuthTypeMismatch {
                        got: auth.auth_type(),
                        ours: self.config.auth.auth_type(),
                    });
                }
                if let (Auth::Pass(theirs), Auth::Pass(ours)) = (auth, self.config.auth) {
                    if !constant_time_eq(&theirs, &ours) {
                        self.stats.auth_failures += 1;
                        return Err(Dropped::AuthFailure);
                    }
                }
                if advert_int_secs != self.config.advert_int_secs() {
                    // keepalived drops these "to prevent concurrent VRID running => multiple
                    // master in 1 VRID" (and logs without counting; we count).
                    self.stats.advert_interval_errors += 1;
                    return Err(Dropped::IntervalMismatch {
                        got: advert.interval(),
                        ours: self.config.advert_interval,
                    });
                }
            }
            VersionFields::V3 { max_advert_int } => {
                if max_advert_int.get() == 0 {
                    self.stats.advert_interval_errors += 1;
                    return Err(Dropped::ZeroInterval);
                }
            }
        }
        let ours_count = self.config.virtual_addresses.len();
        if advert.addresses.len() != ours_count {
            self.stats.address_list_errors += 1;
            return Err(Dropped::AddressCountMismatch {
                got: advert.addresses.len(),
                ours: ours_count,
            });
        }
        self.stats.adverts_received += 1;
        if let Some(addr) = self
            .config
            .virtual_addresses
            .iter()
            .find(|a| !advert.addresses.contains(*a))
        {
            self.stats.address_list_errors += 1;
            return Err(Dropped::MissingAddress { addr });
        }
        if self.config.is_unicast()
            && self.config.check_unicast_source
            && !self.config.unicast_peers.contains(&from)
        {
            return Err(Dropped::NotAPeer { from });
        }
        if advert.priority == 0 {
            self.stats.priority_zero_received += 1;
        }
        Ok(())
    }

    /// vrrp.c `vrrp_state_backup`.
    fn backup_rx(&mut self, now: Instant, from: IpAddr, advert: &Advert) -> Result<(), Dropped> {
        if advert.priority == 0 {
            // RFC 3768 §6.4.2: the master is leaving; take over after Skew_Time.
            self.next_master_reason = Reason::MasterReleased;
            self.deadline = Some(now + self.skew_time());
            return Ok(());
        }
        let preempt_delay = self.config.preempt_delay;
        let preempt_held =
            !preempt_delay.is_zero() && self.preempt_until.is_none_or(|until| until > now);
        if !self.config.preempt || advert.priority >= self.effective_priority || preempt_held {
            if self.config.version == Version::V3 {
                // RFC 5798 §6.4.2: Master_Adver_Interval comes from the advert.
                self.master_adver_int = advert.interval();
            }
            self.last_master = Some((from, advert.priority));
            self.next_master_reason = Reason::MasterDown;
            if !preempt_delay.is_zero() {
                if advert.priority >= self.effective_priority {
                    self.preempt_until = None;
                } else if self.preempt_until.is_none() {
                    self.preempt_until = Some(now + preempt_delay);
                }
            }
            // A sync group may have held us in BACKUP while we wanted MASTER; now there is a
            // master, so we want BACKUP.
            self.want = Want::Backup;
            self.deadline = Some(now + self.master_down_interval());
            return Ok(());
        }
        // Preempting: ignore the lower priority master and let the timer run out.
        self.next_master_reason = Reason::Preempted;
        Err(Dropped::LowerPriority {
            from,
            priority: advert.priority,
        })
    }

    /// vrrp.c `vrrp_state_master_rx`.
    fn master_rx(&mut self, now: Instant, from: IpAddr, advert: &Advert) -> Result<(), Dropped> {
        let addr_cmp = compare_addresses(from, self.config.source_address);
        let theirs = advert.priority;
        let mut ours = self.effective_priority;
        let they_win = theirs > ours || (theirs == ours && addr_cmp == Ordering::Greater);

        if theirs == 0 || (self.config.higher_prio_send_advert && they_win) {
            self.send_advert(ours);
            self.deadline = Some(now + self.config.advert_interval);
            if theirs == 0 {
                return Ok(());
            }
        }

        if theirs == ours {
            if addr_cmp == Ordering::Equal {
                return Err(Dropped::OwnAddress);
            }
            if ours == 255 {
                // Two address owners: keepalived reports the configuration error and lowers
                // its own priority so that one of them wins.
                self.base_priority = 254;
                self.effective_priority = 254;
                self.actions
                    .push_back(Action::PriorityChange { from: 255, to: 254 });
                ours = 254;
            }
        }

        if theirs < ours || (theirs == ours && addr_cmp == Ordering::Less) {
            // "Received advert from … with lower priority …, forcing new election"
            if !self.config.lower_prio_no_advert {
                self.send_advert(ours);
                self.deadline = Some(now + self.config.advert_interval);
            }
            let garp = &self.config.garp;
            if garp.lower_prio_repeat > 0 {
                let (repeat, delay) = (garp.lower_prio_repeat, garp.lower_prio_delay);
                self.push_garp(repeat);
                if !delay.is_zero() {
                    self.garp_lower_prio_at = Some(now + delay);
                }
            }
            self.actions.push_back(Action::MasterReceivedLowerPriority {
                from,
                priority: theirs,
            });
            return Ok(());
        }

        if self.config.version == Version::V3 {
            self.master_adver_int = advert.interval();
        }
        self.last_master = Some((from, theirs));
        self.want = Want::Backup;
        let reason = if theirs > ours {
            Reason::HigherPriority {
                from,
                priority: theirs,
            }
        } else {
            Reason::HigherAddress { from }
        };
        self.leave_master(now, State::Backup, reason);
        Ok(())
    }
}

/// keepalived's `vrrp_saddr_cmp`: numeric order within a family; another family counts as
/// lower.
fn compare_addresses(theirs: IpAddr, ours: IpAddr) -> Ordering {
    match (theirs, ours) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.cmp(&b),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.cmp(&b),
        _ => Ordering::Less,
    }
}

/// A password comparison that takes the same time wherever the first difference is.
fn constant_time_eq(a: &[u8; 8], b: &[u8; 8]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
