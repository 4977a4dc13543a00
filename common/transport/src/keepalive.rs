//! Liveness: each side notes when it last heard from and last sent to the other, sends
//! something when it has been quiet for the keepalive interval (so NAT and conntrack state
//! stays up on an idle path), and calls the peer gone after the peer timeout.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Liveness {
    interval: Duration,
    timeout: Duration,
    last_heard: Option<Instant>,
    last_sent: Option<Instant>,
}

impl Liveness {
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Liveness {
            interval,
            timeout,
            last_heard: None,
            last_sent: None,
        }
    }

    pub fn heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
    }

    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
    }

    /// When a keepalive must go if nothing else is sent before.
    pub fn next_keepalive(&self) -> Option<Instant> {
        self.last_sent.map(|t| t + self.interval)
    }

    /// Whether a keepalive is due at `now` (also when nothing was ever sent).
    pub fn keepalive_due(&self, now: Instant) -> bool {
        self.next_keepalive().is_none_or(|t| t <= now)
    }

    /// Whether the peer has been heard from within the timeout.
    pub fn peer_alive(&self, now: Instant) -> bool {
        self.last_heard
            .is_some_and(|t| now.saturating_duration_since(t) < self.timeout)
    }

    pub fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalives_fall_due_after_the_interval_and_the_peer_expires_after_the_timeout() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Liveness::new(ms(500), ms(3000));
        assert!(l.keepalive_due(t0));
        assert!(!l.peer_alive(t0));
        l.sent(t0);
        l.heard(t0);
        let cases = [
            (ms(0), false, true),
            (ms(499), false, true),
            (ms(500), true, true),
            (ms(2999), true, true),
            (ms(3000), true, false),
        ];
        for (after, due, alive) in cases {
            assert_eq!(l.keepalive_due(t0 + after), due, "due at {after:?}");
            assert_eq!(l.peer_alive(t0 + after), alive, "alive at {after:?}");
        }
    }
}
