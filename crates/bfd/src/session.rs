//! One BFD session in asynchronous mode: the reception procedure and state machine of RFC 5880
//! §6.8.6, the transmit timer of §6.8.7 and the detection time of §6.8.4, with the
//! Poll/Final sequence of §6.5 whenever the advertised intervals change while Up.
//!
//! The session is given already decoded packets (the codec's checks are done); it makes the
//! checks that need its state (discriminator, authentication) and counts what it drops.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::packet::{ControlPacket, Diag, State};

/// keepalived's `bfd_instance` defaults (bfd.h): min_rx and min_tx 10 ms, idle_tx 1 s,
/// multiplier 5.
pub const DEFAULT_MIN_RX: Duration = Duration::from_millis(10);
pub const DEFAULT_MIN_TX: Duration = Duration::from_millis(10);
pub const DEFAULT_IDLE_TX: Duration = Duration::from_secs(1);
pub const DEFAULT_MULTIPLIER: u8 = 5;

/// What a session is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// bfd.LocalDiscr: nonzero and unique among this system's sessions.
    pub local_discriminator: u32,
    /// bfd.DesiredMinTxInterval while Up (`min_tx`).
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval (`min_rx`).
    pub required_min_rx: Duration,
    /// The interval advertised and used while not Up (`idle_tx`); RFC 5880 §6.8.3 wants at least
    /// one second there, which keepalived's range for it (1000–10000 ms) guarantees.
    pub idle_tx: Duration,
    /// bfd.DetectMult (`multiplier`).
    pub detect_mult: u8,
    /// Wait for the neighbour's first packet before sending (`passive`, RFC 5880 §6.1).
    pub passive: bool,
    /// Seeds the transmit jitter, so that a run is reproducible.
    pub seed: u64,
}

impl SessionConfig {
    /// keepalived's defaults with the given discriminator (0 is replaced by 1).
    pub fn new(local_discriminator: u32) -> SessionConfig {
        SessionConfig {
            local_discriminator: local_discriminator.max(1),
            desired_min_tx: DEFAULT_MIN_TX,
            required_min_rx: DEFAULT_MIN_RX,
            idle_tx: DEFAULT_IDLE_TX,
            detect_mult: DEFAULT_MULTIPLIER,
            passive: false,
            seed: u64::from(local_discriminator),
        }
    }

    pub fn with_seed(mut self, seed: u64) -> SessionConfig {
        self.seed = seed;
        self
    }

    pub fn with_intervals(mut self, min_tx: Duration, min_rx: Duration, mult: u8) -> SessionConfig {
        self.desired_min_tx = min_tx;
        self.required_min_rx = min_rx;
        self.detect_mult = mult.max(1);
        self
    }

    pub fn with_passive(mut self, passive: bool) -> SessionConfig {
        self.passive = passive;
        self
    }
}

/// What the shell hears of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The session state changed; `diag` is the local diagnostic after the change (why it went
    /// Down), `remote_diag` the last one the neighbour sent.
    StateChanged {
        from: State,
        to: State,
        diag: Diag,
        remote_diag: Diag,
    },
}

/// Why a decoded packet was dropped by the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The Authentication Present bit is set, and no authentication is configured.
    AuthNotConfigured,
    /// Your Discriminator is not this session's.
    DiscriminatorMismatch { got: u32, local: u32 },
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::AuthNotConfigured => {
                f.write_str("authentication present but none is configured")
            }
            Dropped::DiscriminatorMismatch { got, local } => {
                write!(f, "your discriminator {got} is not ours ({local})")
            }
        }
    }
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets_received: u64,
    pub packets_sent: u64,
    pub dropped_auth: u64,
    pub dropped_discriminator: u64,
    pub down_transitions: u64,
}

/// One session. Feed it packets and timeouts; take its packets and events.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    remote_state: State,
    remote_discr: u32,
    local_diag: Diag,
    remote_diag: Diag,
    /// bfd.RemoteMinRxInterval, µs; 1 until the neighbour says otherwise (§6.8.1).
    remote_min_rx_us: u32,
    remote_desired_min_tx_us: u32,
    remote_detect_mult: u8,
    /// The intervals in the packets we send, µs.
    advertised_tx_us: u32,
    advertised_rx_us: u32,
    /// The intervals in force; they differ from the advertised ones only during a Poll Sequence.
    committed_tx_us: u32,
    committed_rx_us: u32,
    polling: bool,
    next_tx: Option<Instant>,
    detect_deadline: Option<Instant>,
    rng: u64,
    transmits: VecDeque<ControlPacket>,
    events: VecDeque<Event>,
    stats: Stats,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Session {
    /// A session in state Down; unless passive it sends its first packet at once.
    pub fn new(config: SessionConfig, now: Instant) -> Session {
        let tx = micros(config.desired_min_tx.max(config.idle_tx));
        let rx = micros(config.required_min_rx);
        let mut session = Session {
            rng: config.seed | 1,
            config,
            state: State::Down,
            remote_state: State::Down,
            remote_discr: 0,
            local_diag: Diag::NONE,
            remote_diag: Diag::NONE,
            remote_min_rx_us: 1,
            remote_desired_min_tx_us: 0,
            remote_detect_mult: 0,
            advertised_tx_us: tx,
            advertised_rx_us: rx,
            committed_tx_us: tx,
            committed_rx_us: rx,
            polling: false,
            next_tx: None,
            detect_deadline: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        };
        if session.may_send() {
            session.next_tx = Some(now);
        }
        session
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    pub fn local_discriminator(&self) -> u32 {
        self.config.local_discriminator
    }

    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }

    pub fn local_diag(&self) -> Diag {
        self.local_diag
    }

    pub fn remote_diag(&self) -> Diag {
        self.remote_diag
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether a Poll Sequence is outstanding.
    pub fn polling(&self) -> bool {
        self.polling
    }

    /// The interval packets are sent at before jitter (§6.8.7), if they are sent at all.
    pub fn transmit_interval(&self) -> Option<Duration> {
        self.may_send()
            .then(|| Duration::from_micros(u64::from(self.tx_base_us())))
    }

    /// The Detection Time (§6.8.4), once a packet of the neighbour has been seen.
    pub fn detection_time(&self) -> Option<Duration> {
        (self.remote_detect_mult != 0).then(|| self.detection_time_raw())
    }

    /// The next instant [`Session::handle_timeout`] must be called at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_tx, self.detect_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next packet to send to the neighbour.
    pub fn poll_transmit(&mut self) -> Option<ControlPacket> {
        let packet = self.transmits.pop_front()?;
        self.stats.packets_sent += 1;
        Some(packet)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.detect_deadline.is_some_and(|t| t <= now) {
            self.detect_deadline = None;
            // §6.8.1: bfd.RemoteDiscr is zeroed when a Detection Time passes in silence.
            self.remote_discr = 0;
            if matches!(self.state, State::Init | State::Up) {
                self.local_diag = Diag::DETECTION_TIME_EXPIRED;
                self.set_state(State::Down, now);
            }
        }
        if self.next_tx.is_some_and(|t| t <= now) {
            self.queue_packet(false);
            self.next_tx = self.may_send().then(|| now + self.jittered_interval());
        }
    }

    /// The reception procedure of §6.8.6 after the codec's checks.
    pub fn handle_packet(&mut self, now: Instant, packet: &ControlPacket) -> Result<(), Dropped> {
        if packet.auth.is_some() {
            self.stats.dropped_auth += 1;
            return Err(Dropped::AuthNotConfigured);
        }
        if packet.your_discriminator != 0
            && packet.your_discriminator != self.config.local_discriminator
        {
            self.stats.dropped_discriminator += 1;
            return Err(Dropped::DiscriminatorMismatch {
                got: packet.your_discriminator,
                local: self.config.local_discriminator,
            });
        }
        self.stats.packets_received += 1;
        self.remote_discr = packet.my_discriminator;
        self.remote_state = packet.state;
        self.remote_diag = packet.diag;
        self.remote_min_rx_us = packet.required_min_rx_us;
        self.remote_desired_min_tx_us = packet.desired_min_tx_us;
        self.remote_detect_mult = packet.detect_mult;
        if packet.final_ && self.polling {
            self.polling = false;
            self.committed_tx_us = self.advertised_tx_us;
            self.committed_rx_us = self.advertised_rx_us;
        }
        self.detect_deadline = Some(now + self.detection_time_raw());

        if self.state != State::AdminDown {
            let before = self.state;
            if packet.state == State::AdminDown {
                if self.state != State::Down {
                    self.local_diag = Diag::NEIGHBOR_SIGNALED_DOWN;
                    self.set_state(State::Down, now);
                }
            } else {
                match (self.state, packet.state) {
                    (State::Down, State::Down) => self.set_state(State::Init, now),
                    (State::Down, State::Init) => self.set_state(State::Up, now),
                    (State::Init, State::Init | State::Up) => self.set_state(State::Up, now),
                    (State::Up, State::Down) => {
                        self.local_diag = Diag::NEIGHBOR_SIGNALED_DOWN;
                        self.set_state(State::Down, now);
                    }
                    _ => {}
                }
            }
            // A state change is told at once rather than at the next tick, which may be a
            // second away while not Up.
            if self.state != before && !packet.poll && self.may_send() {
                self.queue_packet(false);
            }
        }
        if packet.poll {
            // §6.5: the Final answers the Poll as soon as practicable, outside the timer.
            self.queue_packet(true);
        }
        self.reschedule(now);
        Ok(())
    }

    /// Takes the session administratively down (diag 7) and tells the neighbour.
    pub fn admin_down(&mut self, now: Instant) {
        if self.state == State::AdminDown {
            return;
        }
        self.local_diag = Diag::ADMINISTRATIVELY_DOWN;
        self.detect_deadline = None;
        self.set_state(State::AdminDown, now);
        self.queue_packet(false);
        self.reschedule(now);
    }

    /// Leaves AdminDown for Down.
    pub fn admin_up(&mut self, now: Instant) {
        if self.state != State::AdminDown {
            return;
        }
        self.local_diag = Diag::NONE;
        self.set_state(State::Down, now);
        self.reschedule(now);
    }

    /// New `min_tx` / `min_rx`; while Up they are announced with a Poll Sequence.
    pub fn set_intervals(&mut self, now: Instant, min_tx: Duration, min_rx: Duration) {
        self.config.desired_min_tx = min_tx;
        self.config.required_min_rx = min_rx;
        self.update_advertised();
        self.reschedule(now);
    }

    fn set_state(&mut self, to: State, now: Instant) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        if to == State::Up {
            self.local_diag = Diag::NONE;
        }
        if from == State::Up {
            self.stats.down_transitions += 1;
        }
        self.events.push_back(Event::StateChanged {
            from,
            to,
            diag: self.local_diag,
            remote_diag: self.remote_diag,
        });
        self.update_advertised();
        self.reschedule(now);
    }

    /// The intervals to advertise in the current state; a change while Up starts a Poll
    /// Sequence, otherwise it takes effect at once (§6.8.3).
    fn update_advertised(&mut self) {
        let tx = if self.state == State::Up {
            micros(self.config.desired_min_tx)
        } else {
            micros(self.config.desired_min_tx.max(self.config.idle_tx))
        };
        let rx = micros(self.config.required_min_rx);
        if tx == self.advertised_tx_us && rx == self.advertised_rx_us {
            return;
        }
        self.advertised_tx_us = tx;
        self.advertised_rx_us = rx;
        if self.state == State::Up {
            self.polling = true;
        } else {
            self.polling = false;
            self.committed_tx_us = tx;
            self.committed_rx_us = rx;
        }
    }

    fn may_send(&self) -> bool {
        // §6.8.7: nothing while the neighbour asks for no packets, and a passive session waits
        // for the neighbour to speak first.
        self.remote_min_rx_us != 0 && !(self.config.passive && self.remote_discr == 0)
    }

    /// §6.8.3: a faster transmit interval applies at once, a slower one once the Poll
    /// Sequence is over; for detection, the other way round.
    fn tx_base_us(&self) -> u32 {
        self.committed_tx_us
            .min(self.advertised_tx_us)
            .max(self.remote_min_rx_us)
    }

    fn detection_time_raw(&self) -> Duration {
        let rx = self.committed_rx_us.max(self.advertised_rx_us);
        let agreed = u64::from(rx.max(self.remote_desired_min_tx_us));
        Duration::from_micros(agreed * u64::from(self.remote_detect_mult.max(1)))
    }

    /// 75–100 % of the interval, at most 90 % with a multiplier of 1 (§6.8.7).
    fn jittered_interval(&mut self) -> Duration {
        // xorshift64*: deterministic for a seed, which is all the jitter needs.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
        let top = if self.config.detect_mult == 1 {
            90
        } else {
            100
        };
        let percent = 75 + r % (top - 75 + 1);
        Duration::from_micros(u64::from(self.tx_base_us()) * percent / 100)
    }

    /// After anything that may shorten the transmit interval or allow sending at all.
    fn reschedule(&mut self, now: Instant) {
        if !self.may_send() {
            self.next_tx = None;
            return;
        }
        let interval = Duration::from_micros(u64::from(self.tx_base_us()));
        if self.next_tx.is_none_or(|t| t > now + interval) {
            self.next_tx = Some(now + self.jittered_interval());
        }
    }

    fn queue_packet(&mut self, final_: bool) {
        self.transmits.push_back(ControlPacket {
            diag: self.local_diag,
            state: self.state,
            poll: self.polling && !final_,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.config.detect_mult,
            my_discriminator: self.config.local_discriminator,
            your_discriminator: self.remote_discr,
            desired_min_tx_us: self.advertised_tx_us,
            required_min_rx_us: self.advertised_rx_us,
            required_min_echo_rx_us: 0,
            auth: None,
        });
    }
}

#[cfg(test)]
mod tests;
