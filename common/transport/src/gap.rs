//! When the receiver gives up a missing packet.
//!
//! A missing sequence number holds every later payload back, so how long it may wait is the
//! latency loss adds. Its wait starts when the first packet after it arrived (that is when the
//! gap became visible), not when the consumer cursor reached it: a burst of N losses, or losses
//! that follow each other faster than the hold, are then given up together after one hold, not
//! after N. Timed from the cursor (as before), losses are given up in series and above
//! hold⁻¹ losses a second (200 with a 5 ms hold) the delay grows until the window overflows.
//!
//! With FEC the wait covers the time its block's repair packets may still take; once they
//! have come (the block's last repair packet, or any of a later block: the sender sends a
//! frame's repair packets in block order after its sources) and the packet is still missing,
//! FEC cannot bring it any more and it is given up after the reorder tolerance.
//!
//! Deadlines only grow with the sequence number (the first packet past `s` cannot arrive
//! before the first packet past `s - 1`), so the times the newest sequence number moved
//! forward, one entry per advance, give every missing number's deadline in order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::TransportConfig;
use crate::seq::SeqNo;

/// How long a missing packet may hold later ones back, counted from the arrival of the first
/// packet after it: what recovery can still achieve in that time, and no longer.
///
/// - Always the reorder tolerance: a packet merely overtaken arrives within it.
/// - With FEC: the repair packets of its block leave after the frame's last source packet, at
///   most a frame spread after the first later packet, plus their own reorder tolerance.
/// - With NACK: the first NACK goes after the reorder tolerance, the retries one re-NACK
///   interval (`rtt` + reorder tolerance) apart, and the last retransmission arrives an RTT
///   plus jitter after the last NACK; never longer than the retransmit deadline, after which
///   the sender no longer retransmits.
pub fn loss_wait(config: &TransportConfig, rtt: Option<Duration>) -> Duration {
    let tolerance = config.reorder_tolerance;
    let mut wait = tolerance;
    if config.fec {
        wait = wait.max(tolerance + config.frame_spread + tolerance);
    }
    if config.nack && config.max_nack_tries > 0 {
        let rtt = rtt.unwrap_or(config.initial_rtt);
        let renack = rtt + tolerance;
        let retries = u32::from(config.max_nack_tries - 1);
        let last_retransmission = tolerance + renack * retries + rtt + tolerance;
        wait = wait.max(last_retransmission.min(tolerance + config.retransmit_deadline));
    }
    wait
}

/// The times the newest sequence number moved forward; see the module documentation.
#[derive(Debug, Default)]
pub struct GapClock {
    /// (newest sequence number after the advance, when): increasing in both.
    advances: VecDeque<(SeqNo, Instant)>,
    /// (FEC can recover nothing more below this sequence number, since when): increasing.
    fec_decided: VecDeque<(SeqNo, Instant)>,
    /// Only with `serial_gap_hold` (the old behaviour, kept to measure against): the gap at
    /// the cursor and when the cursor reached it.
    serial: Option<(SeqNo, Instant)>,
}

impl GapClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// A packet was stored (received or recovered) and the newest sequence number is now
    /// `newest`: if it moved forward, the numbers it passed over start waiting at `now`.
    pub fn stored(&mut self, newest: Option<SeqNo>, now: Instant) {
        let Some(newest) = newest else { return };
        if self.advances.back().is_none_or(|(s, _)| newest > *s) {
            self.advances.push_back((newest, now));
        }
    }

    /// Every repair packet for sequence numbers below `below` has arrived or is lost (up to
    /// reordering): what FEC has not recovered there by now it will not recover.
    pub fn fec_decided(&mut self, below: SeqNo, now: Instant) {
        if self.fec_decided.back().is_none_or(|(s, _)| below > *s) {
            self.fec_decided.push_back((below, now));
        }
    }

    /// When FEC's chance for `cursor` was decided, dropping what the cursor has passed.
    fn decided_since(&mut self, cursor: SeqNo) -> Option<Instant> {
        while self.fec_decided.front().is_some_and(|(s, _)| *s <= cursor) {
            self.fec_decided.pop_front();
        }
        self.fec_decided.front().map(|(_, t)| *t)
    }

    /// Since when the missing packet `cursor` has waited (the arrival of the first packet after
    /// it), dropping the advances the cursor has passed: `None` if nothing later has arrived.
    fn waiting_since(&mut self, cursor: SeqNo) -> Option<Instant> {
        while self.advances.front().is_some_and(|(s, _)| *s <= cursor) {
            self.advances.pop_front();
        }
        self.advances.front().map(|(_, t)| *t)
    }

    /// When the packet at the cursor is given up, if the cursor waits on a missing packet
    /// (`gap`); `hold` is [`loss_wait`], `tolerance` the reorder tolerance (the least wait, and
    /// the wait once FEC's chance is decided). With `serial`, timed from when the cursor reached
    /// the gap (the old behaviour: one hold per loss, in series).
    pub fn deadline(
        &mut self,
        cursor: Option<SeqNo>,
        gap: bool,
        hold: Duration,
        tolerance: Duration,
        serial: bool,
        now: Instant,
    ) -> Option<Instant> {
        let cursor = cursor?;
        // Drop what the cursor has passed, so both queues stay within the window.
        let decided = self.decided_since(cursor);
        if !gap {
            self.serial = None;
            self.waiting_since(cursor);
            return None;
        }
        if serial {
            if self.serial.map(|(s, _)| s) != Some(cursor) {
                self.serial = Some((cursor, now));
            }
            return self.serial.map(|(_, t)| t + hold);
        }
        // A gap with nothing recorded after it cannot happen (the window's newest packet was
        // recorded when stored); should it, the gap starts waiting now rather than never.
        let since = match self.waiting_since(cursor) {
            Some(t) => t,
            None => {
                self.advances.push_front((cursor.next(), now));
                now
            }
        };
        Some(Self::given_up_at(since, decided, hold, tolerance))
    }

    fn given_up_at(
        since: Instant,
        decided: Option<Instant>,
        hold: Duration,
        tolerance: Duration,
    ) -> Instant {
        let full = since + hold;
        match decided {
            Some(d) => (d + tolerance).clamp(since + tolerance.min(hold), full),
            None => full,
        }
    }

    /// [`GapClock::deadline`] without updating anything, for `poll_timeout`.
    pub fn peek_deadline(
        &self,
        cursor: Option<SeqNo>,
        gap: bool,
        hold: Duration,
        tolerance: Duration,
        serial: bool,
    ) -> Option<Instant> {
        let cursor = cursor?;
        if !gap {
            return None;
        }
        if serial {
            return self
                .serial
                .filter(|(s, _)| *s == cursor)
                .map(|(_, t)| t + hold);
        }
        let decided = self
            .fec_decided
            .iter()
            .find(|(s, _)| *s > cursor)
            .map(|(_, t)| *t);
        self.advances
            .iter()
            .find(|(s, _)| *s > cursor)
            .map(|(_, t)| Self::given_up_at(*t, decided, hold, tolerance))
    }

    /// The stream started over: nothing waits.
    pub fn clear(&mut self) {
        self.advances.clear();
        self.fec_decided.clear();
        self.serial = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> SeqNo {
        SeqNo::new(n)
    }

    const HOLD: Duration = Duration::from_millis(5);

    #[test]
    fn every_missing_number_waits_from_the_first_arrival_after_it() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut g = GapClock::new();
        g.stored(Some(s(10)), ms(0));
        // 11..=19 lost; 20 arrives at 1 ms, 21 at 2 ms; 22..=29 lost, 30 at 3 ms.
        g.stored(Some(s(20)), ms(1));
        g.stored(Some(s(21)), ms(2));
        g.stored(Some(s(30)), ms(3));
        // A reordered older packet does not move anything.
        g.stored(Some(s(30)), ms(4));
        for (cursor, since) in [(11, 1), (19, 1), (22, 3), (29, 3)] {
            assert_eq!(
                g.deadline(Some(s(cursor)), true, HOLD, HOLD, false, ms(50)),
                Some(ms(since) + HOLD),
                "cursor {cursor}"
            );
        }
        assert_eq!(
            g.deadline(Some(s(30)), false, HOLD, HOLD, false, ms(50)),
            None
        );
    }

    #[test]
    fn a_burst_of_losses_is_given_up_after_one_hold_not_one_per_loss() {
        // The consumer reaches each missing number right after the previous one was given up.
        for (serial, burst, want_ms) in [(false, 200u64, 5u64), (true, 200, 200 * 5)] {
            let t0 = Instant::now();
            let mut g = GapClock::new();
            g.stored(Some(s(0)), t0);
            g.stored(Some(s(burst + 1)), t0);
            let mut now = t0;
            for cursor in 1..=burst {
                let d = g
                    .deadline(Some(s(cursor)), true, HOLD, HOLD, serial, now)
                    .expect("a gap has a deadline");
                assert_eq!(
                    g.peek_deadline(Some(s(cursor)), true, HOLD, HOLD, serial),
                    Some(d)
                );
                now = now.max(d);
            }
            assert_eq!(
                now - t0,
                Duration::from_millis(want_ms),
                "serial {serial}: all {burst} given up"
            );
        }
    }

    #[test]
    fn once_fec_can_recover_nothing_more_the_wait_ends_after_the_reorder_tolerance() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let (hold, tolerance) = (Duration::from_millis(21), Duration::from_millis(5));
        let mut g = GapClock::new();
        g.stored(Some(s(0)), ms(0));
        // 1 lost, 2..=9 arrive from 1 ms on; the block 0..10's last repair packet at 3 ms.
        g.stored(Some(s(2)), ms(1));
        g.stored(Some(s(9)), ms(2));
        g.fec_decided(s(10), ms(3));
        let d = g.deadline(Some(s(1)), true, hold, tolerance, false, ms(3));
        assert_eq!(d, Some(ms(3) + tolerance));
        assert_eq!(g.peek_deadline(Some(s(1)), true, hold, tolerance, false), d);
        // 12 lost in the next block, not decided yet: the full hold from 13's arrival.
        g.stored(Some(s(13)), ms(20));
        let d = g.deadline(Some(s(12)), true, hold, tolerance, false, ms(20));
        assert_eq!(d, Some(ms(20) + hold));
        // Decided long before the packet after it came: still the reorder tolerance after that.
        let mut g = GapClock::new();
        g.stored(Some(s(0)), ms(0));
        g.fec_decided(s(10), ms(0));
        g.stored(Some(s(5)), ms(30));
        let d = g.deadline(Some(s(1)), true, hold, tolerance, false, ms(30));
        assert_eq!(d, Some(ms(30) + tolerance));
    }

    #[test]
    fn the_wait_is_what_recovery_can_still_achieve() {
        let base = TransportConfig::default();
        let tol = base.reorder_tolerance;
        assert_eq!(loss_wait(&base, None), tol);
        let fec = TransportConfig {
            fec: true,
            ..base.clone()
        };
        assert_eq!(loss_wait(&fec, None), tol * 2 + base.frame_spread);
        let nack = TransportConfig {
            nack: true,
            ..base.clone()
        };
        // On a LAN (1 ms RTT) three tries take 5 + 2 * 6 + 1 + 5 ms, far below the deadline.
        assert_eq!(
            loss_wait(&nack, Some(Duration::from_millis(1))),
            Duration::from_millis(23)
        );
        // Over a long path the retransmit deadline bounds it.
        assert_eq!(
            loss_wait(&nack, Some(Duration::from_millis(400))),
            tol + base.retransmit_deadline
        );
        let no_tries = TransportConfig {
            max_nack_tries: 0,
            ..nack
        };
        assert_eq!(loss_wait(&no_tries, None), tol);
    }
}
