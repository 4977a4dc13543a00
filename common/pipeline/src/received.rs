//! The received-payload ring (net-rx to display): one codec payload per slot, in sequence
//! order, as net-rx received or recovered it. A slot is described by a [`ReceivedSlot`].

use keymash_core::FrameNo;
use keymash_shm::{FrameMeta, GeometryError, RingGeometry};

/// Slots of the received-payload ring: about 4 s of 640x480 video at high quality (~30
/// payloads a frame at 30 fps), far more than display ever lags behind.
pub const RECEIVED_SLOTS: usize = 4096;

/// The smallest slot: a whole datagram as net-rx reads it (its receive buffer, 2048 bytes), so
/// a payload is never cut whatever `codec.max_payload_bytes` says.
pub const MIN_RECEIVED_SLOT: usize = 2048;

/// The received ring's shape for `max_payload_bytes` (`codec.max_payload_bytes`).
pub(crate) fn received_ring(max_payload_bytes: u32) -> Result<RingGeometry, GeometryError> {
    RingGeometry::new(
        (max_payload_bytes as usize).max(MIN_RECEIVED_SLOT),
        RECEIVED_SLOTS,
    )
}

/// How a payload reached the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrived {
    /// In its own packet.
    Direct,
    /// Rebuilt from forward error correction.
    Fec,
    /// Resent after a NACK.
    Nack,
}

/// A received payload's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedSlot {
    /// The payload header's frame number; 0 if it does not parse (display refuses it).
    pub frame: FrameNo,
    /// CLOCK_MONOTONIC nanoseconds when net-rx received it: display's playout counts from here.
    pub arrival_ns: u64,
    pub arrived: Arrived,
    /// The packet's 90 kHz RTP timestamp, the sender's capture time of the frame: display's
    /// playout measures the network's jitter against it. `None` from a writer that had none.
    pub rtp_timestamp: Option<u32>,
}

/// The metadata words a [`ReceivedSlot`] uses: the RTP timestamp, and whether it is set.
const RTP_TIMESTAMP_WORD: usize = 2;
const RTP_TIMESTAMP_SET_WORD: usize = 3;

impl ReceivedSlot {
    pub fn meta(&self) -> FrameMeta {
        let flags = match self.arrived {
            Arrived::Direct => 0,
            Arrived::Fec => 1,
            Arrived::Nack => 2,
        };
        let mut words = [0; FrameMeta::WORDS];
        if let Some(ts) = self.rtp_timestamp {
            words[RTP_TIMESTAMP_WORD] = ts;
            words[RTP_TIMESTAMP_SET_WORD] = 1;
        }
        FrameMeta::new(self.frame, self.arrival_ns)
            .with_flags(flags)
            .with_words(words)
    }

    pub fn read(meta: &FrameMeta) -> Self {
        ReceivedSlot {
            frame: meta.frame(),
            arrival_ns: meta.capture_ns(),
            arrived: match meta.flags() {
                1 => Arrived::Fec,
                2 => Arrived::Nack,
                _ => Arrived::Direct,
            },
            rtp_timestamp: (meta.words()[RTP_TIMESTAMP_SET_WORD] == 1)
                .then(|| meta.words()[RTP_TIMESTAMP_WORD]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_slot_round_trips_through_the_ring_metadata() {
        for arrived in [Arrived::Direct, Arrived::Fec, Arrived::Nack] {
            for rtp_timestamp in [None, Some(0), Some(u32::MAX)] {
                let slot = ReceivedSlot {
                    frame: FrameNo(3),
                    arrival_ns: 99,
                    arrived,
                    rtp_timestamp,
                };
                assert_eq!(ReceivedSlot::read(&slot.meta()), slot);
            }
        }
    }

    #[test]
    fn a_slot_holds_the_largest_configured_payload_and_never_less_than_a_datagram() {
        assert_eq!(received_ring(1200).unwrap().slot_size(), MIN_RECEIVED_SLOT);
        assert_eq!(received_ring(9000).unwrap().slot_size(), 9000);
    }
}
