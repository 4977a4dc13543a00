//! The received-payload ring (net-rx to display): one codec payload per slot, in sequence
//! order, as net-rx received or recovered it. A slot is described by a [`ReceivedSlot`].

use std::time::Duration;

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

/// How old a payload's frame was when it left the sender, from the sender's RTP header
/// extension, and the round trip net-rx knew then: with the payload's arrival, when the camera
/// captured the frame on the receiver's clock (`keymash_present::FrameAge::from_arrival`), for
/// any camera and with no clock shared between the PCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraTiming {
    /// Capture to the packet leaving the sender, on the sender's clock (the delay buffer's hold
    /// included).
    pub age_at_send: Duration,
    /// The round trip net-rx measured, if it has one; half of it stands for the one-way trip.
    pub rtt: Option<Duration>,
}

/// Microseconds in a metadata word (words 0 and 1); `u32::MAX` is "none" (71 minutes, beyond
/// any frame's age: `delay.seconds` is at most 600).
const NO_MICROS: u32 = u32::MAX;

fn to_micros(d: Option<Duration>) -> u32 {
    d.map_or(NO_MICROS, |d| {
        u32::try_from(d.as_micros()).map_or(NO_MICROS - 1, |us| us.min(NO_MICROS - 1))
    })
}

fn from_micros(word: u32) -> Option<Duration> {
    (word != NO_MICROS).then(|| Duration::from_micros(u64::from(word)))
}

/// A received payload's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedSlot {
    /// The payload header's frame number; 0 if it does not parse (display refuses it).
    pub frame: FrameNo,
    /// CLOCK_MONOTONIC nanoseconds when its datagram arrived (the kernel's receive timestamp):
    /// display's playout counts from here.
    pub arrival_ns: u64,
    pub arrived: Arrived,
    /// The packet's 90 kHz RTP timestamp, the sender's capture time of the frame: display's
    /// playout measures the network's jitter against it. `None` from a writer that had none.
    pub rtp_timestamp: Option<u32>,
    /// Set for a payload that arrived directly with the sender's capture age (not for one
    /// rebuilt by FEC, which has no header of its own, nor one resent after a NACK, whose age
    /// was taken at its first sending).
    pub camera: Option<CameraTiming>,
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
        // Words 0 and 1: the camera timing.
        words[0] = to_micros(self.camera.map(|c| c.age_at_send));
        words[1] = to_micros(self.camera.and_then(|c| c.rtt));
        // Words 2 and 3: the RTP timestamp.
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
            camera: from_micros(meta.words()[0]).map(|age_at_send| CameraTiming {
                age_at_send,
                rtt: from_micros(meta.words()[1]),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_slot_round_trips_through_the_ring_metadata() {
        for arrived in [Arrived::Direct, Arrived::Fec, Arrived::Nack] {
            for camera in [
                None,
                Some(CameraTiming {
                    age_at_send: Duration::from_micros(30_012_345),
                    rtt: None,
                }),
                Some(CameraTiming {
                    age_at_send: Duration::ZERO,
                    rtt: Some(Duration::from_micros(250)),
                }),
            ] {
                for rtp_timestamp in [None, Some(0), Some(u32::MAX)] {
                    let slot = ReceivedSlot {
                        frame: FrameNo(3),
                        arrival_ns: 99,
                        arrived,
                        rtp_timestamp,
                        camera,
                    };
                    assert_eq!(ReceivedSlot::read(&slot.meta()), slot);
                }
            }
        }
    }

    #[test]
    fn a_slot_holds_the_largest_configured_payload_and_never_less_than_a_datagram() {
        assert_eq!(received_ring(1200).unwrap().slot_size(), MIN_RECEIVED_SLOT);
        assert_eq!(received_ring(9000).unwrap().slot_size(), 9000);
    }
}
