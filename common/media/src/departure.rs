//! When a frame has left net-tx: a frame is sent when its last media packet is. The pacer may
//! drop a stale frame's rest, so frames before the one that completed, whose last packet never
//! went, are forgotten at that point. Gives net-tx's capture-to-send latency.

use std::collections::VecDeque;

/// Frames waiting for their last packet to leave, bounded.
#[derive(Debug, Clone)]
pub struct Departures {
    /// (RTP sequence number of the frame's last media packet, capture time), oldest first.
    in_flight: VecDeque<(u16, u64)>,
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
    pub fn queued(&mut self, last_seq: u16, capture_ns: u64) {
        if self.in_flight.len() == self.capacity {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back((last_seq, capture_ns));
    }

    /// A media packet with sequence number `seq` went out. Returns the capture time of the frame
    /// it completed, if it was one's last packet.
    pub fn sent(&mut self, seq: u16) -> Option<u64> {
        let done = self.in_flight.iter().position(|&(last, _)| last == seq)?;
        self.in_flight
            .drain(..=done)
            .next_back()
            .map(|(_, capture_ns)| capture_ns)
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

    #[test]
    fn a_frame_departs_with_its_last_packet() {
        let mut d = Departures::new();
        d.queued(10, 1_000);
        d.queued(20, 2_000);
        assert_eq!(d.sent(9), None, "a packet inside frame one");
        assert_eq!(d.sent(10), Some(1_000));
        assert_eq!(d.sent(10), None, "departs once");
        assert_eq!(d.sent(20), Some(2_000));
        assert!(d.is_empty());
    }

    #[test]
    fn frames_whose_last_packet_never_went_are_forgotten_when_a_later_one_departs() {
        let mut d = Departures::new();
        d.queued(10, 1_000);
        d.queued(20, 2_000);
        d.queued(30, 3_000);
        assert_eq!(d.sent(20), Some(2_000));
        assert_eq!(d.len(), 1);
        assert_eq!(d.sent(10), None);
        assert_eq!(d.sent(30), Some(3_000));
    }

    #[test]
    fn sequence_numbers_that_wrap_are_matched_exactly() {
        let mut d = Departures::new();
        d.queued(65_535, 1);
        d.queued(0, 2);
        assert_eq!(d.sent(65_535), Some(1));
        assert_eq!(d.sent(0), Some(2));
    }

    #[test]
    fn tracking_is_bounded() {
        let mut d = Departures::new();
        for i in 0..1_000u16 {
            d.queued(i, u64::from(i));
        }
        assert_eq!(d.len(), Departures::CAPACITY);
        assert_eq!(d.sent(0), None, "the oldest were let go");
        assert_eq!(d.sent(999), Some(999));
    }
}
