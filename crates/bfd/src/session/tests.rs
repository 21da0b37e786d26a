//! Two sessions wired in memory, in virtual time.

use super::*;

const MS: Duration = Duration::from_millis(1);

/// Two sessions and the wire between them; `cut` drops everything in both directions.
struct Pair {
    a: Session,
    b: Session,
    now: Instant,
    cut: bool,
    events_a: Vec<Event>,
    events_b: Vec<Event>,
    sent_a: Vec<(Instant, ControlPacket)>,
}

impl Pair {
    fn new(a: SessionConfig, b: SessionConfig) -> Pair {
        let now = Instant::now();
        Pair {
            a: Session::new(a, now),
            b: Session::new(b, now),
            now,
            cut: false,
            events_a: Vec::new(),
            events_b: Vec::new(),
            sent_a: Vec::new(),
        }
    }

    /// Runs every timer and delivery up to `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.deliver();
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = t.max(self.now);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = until;
        self.deliver();
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn deliver(&mut self) {
        loop {
            let mut moved = false;
            while let Some(p) = self.a.poll_transmit() {
                moved = true;
                self.sent_a.push((self.now, p.clone()));
                if !self.cut {
                    self.b.handle_packet(self.now, &p).unwrap();
                }
            }
            while let Some(p) = self.b.poll_transmit() {
                moved = true;
                if !self.cut {
                    self.a.handle_packet(self.now, &p).unwrap();
                }
            }
            self.events_a
                .extend(std::iter::from_fn(|| self.a.poll_event()));
            self.events_b
                .extend(std::iter::from_fn(|| self.b.poll_event()));
            if !moved {
                break;
            }
        }
    }

    fn both_up(&self) -> bool {
        self.a.state() == State::Up && self.b.state() == State::Up
    }
}

fn fast(discr: u32) -> SessionConfig {
    SessionConfig::new(discr)
        .with_seed(u64::from(discr) * 7919)
        .with_intervals(50 * MS, 50 * MS, 3)
}

#[test]
fn three_way_handshake_comes_up_then_polls_to_fast_rate() {
    let mut p = Pair::new(fast(11), fast(22));
    p.run_for(10 * MS);
    assert!(p.both_up(), "a {:?} b {:?}", p.a.state(), p.b.state());
    assert_eq!(p.a.remote_discriminator(), 22);
    let states: Vec<_> = p
        .events_a
        .iter()
        .map(|Event::StateChanged { to, .. }| *to)
        .collect();
    assert_eq!(states, [State::Init, State::Up]);
    // Up: the 1 s idle rate was replaced by 50 ms through a Poll Sequence.
    p.run_for(200 * MS);
    assert!(!p.a.polling() && !p.b.polling());
    assert_eq!(p.a.transmit_interval(), Some(50 * MS));
    assert_eq!(p.a.detection_time(), Some(150 * MS));
    // Sent at 75–100 % of 50 ms.
    let start = p.now;
    p.run_for(Duration::from_secs(1));
    let times: Vec<Instant> = p
        .sent_a
        .iter()
        .filter(|(t, _)| *t > start)
        .map(|(t, _)| *t)
        .collect();
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap >= 37 * MS && gap <= 50 * MS, "gap {gap:?}");
    }
    assert!(times.len() >= 20, "{} packets in 1 s", times.len());
}

#[test]
fn silence_is_detected_within_mult_times_interval() {
    let mut p = Pair::new(fast(1), fast(2));
    p.run_for(500 * MS);
    assert!(p.both_up());
    p.cut = true;
    let cut_at = p.now;
    while p.a.state() == State::Up {
        let t = p.a.poll_timeout().unwrap();
        p.run_until(t);
    }
    let took = p.now - cut_at;
    assert!(took <= 150 * MS, "detected after {took:?}");
    assert!(took > 100 * MS, "detected after {took:?}");
    assert_eq!(p.a.local_diag(), Diag::DETECTION_TIME_EXPIRED);
    assert_eq!(
        p.events_a.last(),
        Some(&Event::StateChanged {
            from: State::Up,
            to: State::Down,
            diag: Diag::DETECTION_TIME_EXPIRED,
            remote_diag: Diag::NONE,
        })
    );
    // Down again, the idle rate is back and the neighbour is forgotten.
    p.run_for(200 * MS);
    assert_eq!(p.a.remote_discriminator(), 0);
    assert_eq!(p.a.transmit_interval(), Some(Duration::from_secs(1)));
    // The link comes back: Up again within the idle second plus a handshake.
    p.cut = false;
    p.run_for(Duration::from_millis(2100));
    assert!(p.both_up());
}

#[test]
fn multiplier_one_jitter_stays_below_90_percent() {
    let cfg = |d| fast(d).with_intervals(100 * MS, 100 * MS, 1);
    let mut p = Pair::new(cfg(5), cfg(6));
    p.run_for(500 * MS);
    assert!(p.both_up());
    let start = p.now;
    p.run_for(Duration::from_secs(2));
    let times: Vec<Instant> = p
        .sent_a
        .iter()
        .filter(|(t, _)| *t > start)
        .map(|(t, _)| *t)
        .collect();
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap >= 75 * MS && gap <= 90 * MS, "gap {gap:?}");
    }
    assert!(p.both_up(), "no false detection with mult 1");
}

#[test]
fn neighbour_signalled_down_and_admin_down() {
    let mut p = Pair::new(fast(1), fast(2));
    p.run_for(300 * MS);
    assert!(p.both_up());
    p.b.admin_down(p.now);
    p.deliver();
    assert_eq!(p.b.state(), State::AdminDown);
    assert_eq!(p.a.state(), State::Down);
    assert_eq!(p.a.local_diag(), Diag::NEIGHBOR_SIGNALED_DOWN);
    assert_eq!(p.a.remote_diag(), Diag::ADMINISTRATIVELY_DOWN);
    // Stays down while B is AdminDown, and A does not time B out into Init.
    p.run_for(Duration::from_secs(3));
    assert_eq!(p.a.state(), State::Down);
    p.b.admin_up(p.now);
    p.run_for(Duration::from_millis(2100));
    assert!(p.both_up());
}

#[test]
fn poll_final_on_a_timer_change() {
    let mut p = Pair::new(fast(1), fast(2));
    p.run_for(300 * MS);
    assert!(p.both_up());
    p.sent_a.clear();
    // Slower transmit on A: advertised at once with P, used only after B's F.
    p.a.set_intervals(p.now, 200 * MS, 50 * MS);
    assert!(p.a.polling());
    assert_eq!(p.a.transmit_interval(), Some(50 * MS));
    p.run_for(60 * MS);
    assert!(!p.a.polling());
    assert!(p
        .sent_a
        .iter()
        .any(|(_, pk)| pk.poll && pk.desired_min_tx_us == 200_000));
    assert_eq!(p.a.transmit_interval(), Some(200 * MS));
    // B's detection time follows A's slower rate: 3 × 200 ms.
    assert_eq!(p.b.detection_time(), Some(600 * MS));
    p.run_for(Duration::from_secs(2));
    assert!(p.both_up());
}

#[test]
fn passive_waits_for_the_neighbour() {
    let mut p = Pair::new(fast(1).with_passive(true), fast(2).with_passive(true));
    p.run_for(Duration::from_secs(3));
    assert!(p.sent_a.is_empty());
    assert_eq!(p.a.state(), State::Down);
    let mut p = Pair::new(fast(1).with_passive(true), fast(2));
    p.run_for(Duration::from_millis(100));
    assert!(p.both_up());
}

#[test]
fn neighbour_restart_with_a_new_discriminator() {
    let mut p = Pair::new(fast(1), fast(2));
    p.run_for(300 * MS);
    assert!(p.both_up());
    // B restarts: a new session, Down, that does not know A's discriminator yet.
    p.b = Session::new(fast(3), p.now);
    p.run_for(Duration::from_millis(20));
    assert!(p
        .events_a
        .iter()
        .any(|e| matches!(e, Event::StateChanged { to: State::Down, diag, .. } if *diag == Diag::NEIGHBOR_SIGNALED_DOWN)));
    p.run_for(Duration::from_millis(2100));
    assert!(p.both_up());
    assert_eq!(p.a.remote_discriminator(), 3);
}

#[test]
fn drops_auth_and_foreign_discriminators() {
    let now = Instant::now();
    let mut s = Session::new(fast(9), now);
    s.handle_timeout(now);
    let mut pkt = s.poll_transmit().unwrap();
    pkt.my_discriminator = 4;
    pkt.your_discriminator = 77;
    assert_eq!(
        s.handle_packet(now, &pkt),
        Err(Dropped::DiscriminatorMismatch { got: 77, local: 9 })
    );
    pkt.your_discriminator = 0;
    pkt.auth = Some(crate::packet::AuthSection {
        auth_type: 1,
        data: vec![1, b'x', b'y'],
    });
    assert_eq!(s.handle_packet(now, &pkt), Err(Dropped::AuthNotConfigured));
    let st = s.stats();
    assert_eq!(
        (
            st.dropped_auth,
            st.dropped_discriminator,
            st.packets_received
        ),
        (1, 1, 0)
    );
    assert_eq!(s.state(), State::Down);
}
