//! When a frame has left net-tx: a frame is sent when its last media packet is. The pacer may
//! drop a stale frame's rest, so frames before the one that completed, whose last packet never
//! went, are forgotten at that point. Gives net-tx's capture-to-send latency and how long the
//! pacer took to send the frame.

use std::collections::VecDeque;

/// A frame that left: when it was captured and when it was queued with the pacer
/// (CLOCK_MONOTONIC nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departed {
    pub capture_ns: u64,
    pub queued_ns: u64,
}

/// Frames waiting for their last packet to leave, bounded.
#[derive(Debug, Clone)]
pub struct Departures {
    /// (RTP sequence number of the frame's last media packet, the frame's times), oldest first.
    in_flight: VecDeque<(u16, Departed)>,
    capacity: usize,
}

impl Departures {
    /// Frames tracked at most: bounded even if the pacer drops every frame's last packet.
    pub const CAPACITY: usize = 64;

    pub fn new() -> Self {
        Departures {
            in_flight: VecDeque::new(),
            capacity: Self::CAPACITY,
        }
    }

    /// A frame queued for sending: its last media packet has sequence number `last_seq`.
    pub fn queued(&mut self, last_seq: u16, frame: Departed) {
        if self.in_flight.len() == self.capacity {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back((last_seq, frame));
    }

    /// A media packet with sequence number `seq` went out. Returns the times of the frame it
    /// completed, if it was one's last packet.
    pub fn sent(&mut self, seq: u16) -> Option<Departed> {
        let done = self.in_flight.iter().position(|&(last, _)| last == seq)?;
        self.in_flight
            .drain(..=done)
            .next_back()
            .map(|(_, frame)| frame)
    }

    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}

impl Default for Departures {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(capture_ns: u64) -> Departed {
        Departed {
            capture_ns,
            queued_ns: capture_ns + 5,
        }
    }

    #[test]
    fn a_frame_departs_with_its_last_packet() {
        let mut d = Departures::new();
        d.queued(10, at(1_000));
        d.queued(20, at(2_000));
        assert_eq!(d.sent(9), None, "a packet inside frame one");
        assert_eq!(d.sent(10), Some(at(1_000)));
        assert_eq!(d.sent(10), None, "departs once");
        assert_eq!(d.sent(20), Some(at(2_000)));
        assert!(d.is_empty());
    }

    #[test]
    fn frames_whose_last_packet_never_went_are_forgotten_when_a_later_one_departs() {
        let mut d = Departures::new();
        d.queued(10, at(1_000));
        d.queued(20, at(2_000));
        d.queued(30, at(3_000));
        assert_eq!(d.sent(20), Some(at(2_000)));
        assert_eq!(d.len(), 1);
        assert_eq!(d.sent(10), None);
        assert_eq!(d.sent(30), Some(at(3_000)));
    }

    #[test]
    fn sequence_numbers_that_wrap_are_matched_exactly() {
        let mut d = Departures::new();
        d.queued(65_535, at(1));
        d.queued(0, at(2));
        assert_eq!(d.sent(65_535), Some(at(1)));
        assert_eq!(d.sent(0), Some(at(2)));
    }

    #[test]
    fn tracking_is_bounded() {
        let mut d = Departures::new();
        for i in 0..1_000u16 {
            d.queued(i, at(u64::from(i)));
        }
        assert_eq!(d.len(), Departures::CAPACITY);
        assert_eq!(d.sent(0), None, "the oldest were let go");
        assert_eq!(d.sent(999), Some(at(999)));
    }
}
