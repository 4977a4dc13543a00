//! The payload ring (encoder to net-tx): one encoded frame per slot, all its payloads packed
//! together, so net-tx gets the whole frame at once (the transport paces a frame's packets and
//! computes FEC over them as a group) and a frame is either wholly there or wholly lapped,
//! never half.
//!
//! Slot layout, little-endian: `count: u16`, then `count` times `len: u16` followed by `len`
//! bytes. A codec payload is at most 65 507 bytes (one UDP datagram), so 16-bit lengths always
//! suffice. The slot's description is a [`PayloadSlot`].

use keymash_core::config::VideoConfig;
use keymash_core::FrameNo;
use keymash_shm::{FrameMeta, GeometryError, RingGeometry};

use crate::frames::{i420_len, FrameKind};

/// Encoded frames the payload ring holds.
pub const PAYLOAD_SLOTS: usize = 16;

/// The payload ring's shape: a slot holds twice the raw frame. Intra coding of noise at quality
/// 100 stays below 1.5 bytes a pixel, and the framing adds 2 bytes per ~1.2 kB payload.
pub(crate) fn payload_ring(video: &VideoConfig) -> Result<RingGeometry, GeometryError> {
    RingGeometry::new(
        2 * i420_len(video.width, video.height) + 4096,
        PAYLOAD_SLOTS,
    )
}

/// An encoded frame's description: the delayed frame's number and capture time, and whether it
/// is the countdown card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadSlot {
    pub frame: FrameNo,
    pub capture_ns: u64,
    pub kind: FrameKind,
}

impl PayloadSlot {
    pub fn meta(&self) -> FrameMeta {
        FrameMeta::new(self.frame, self.capture_ns).with_flags(self.kind.flags())
    }

    pub fn read(meta: &FrameMeta) -> Self {
        PayloadSlot {
            frame: meta.frame(),
            capture_ns: meta.capture_ns(),
            kind: FrameKind::from_flags(meta.flags()),
        }
    }
}

/// A slot's contents could not be packed or unpacked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("{needed} bytes of payloads do not fit a {capacity}-byte slot")]
    SlotTooSmall { needed: usize, capacity: usize },
    #[error("a frame of {0} payloads exceeds the 65535 a slot can list")]
    TooManyPayloads(usize),
    #[error("a payload of {0} bytes exceeds the 65535 a slot can hold")]
    PayloadTooLong(usize),
    #[error("slot is truncated: it lists more payload bytes than it holds")]
    Truncated,
}

/// Bytes [`pack_payloads`] needs for `payloads`.
pub fn packed_len<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> usize {
    2 + payloads.into_iter().map(|p| 2 + p.len()).sum::<usize>()
}

/// Packs `payloads` into the front of `slot` in one pass; returns the bytes used. On error the
/// slot holds a partial frame and must not be published.
pub fn pack_payloads<'a>(
    payloads: impl IntoIterator<Item = &'a [u8]>,
    slot: &mut [u8],
) -> Result<usize, FramingError> {
    let capacity = slot.len();
    let mut at = 2;
    let mut count = 0usize;
    for payload in payloads {
        let len = u16::try_from(payload.len())
            .map_err(|_| FramingError::PayloadTooLong(payload.len()))?;
        let end = at + 2 + payload.len();
        let dst = slot.get_mut(at..end).ok_or(FramingError::SlotTooSmall {
            needed: end,
            capacity,
        })?;
        dst[..2].copy_from_slice(&len.to_le_bytes());
        dst[2..].copy_from_slice(payload);
        at = end;
        count += 1;
    }
    let count16 = u16::try_from(count).map_err(|_| FramingError::TooManyPayloads(count))?;
    slot.get_mut(..2)
        .ok_or(FramingError::SlotTooSmall {
            needed: 2,
            capacity,
        })?
        .copy_from_slice(&count16.to_le_bytes());
    Ok(at)
}

/// The payloads of one packed slot, borrowed from a copy of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedPayloads<'a> {
    pub payloads: Vec<&'a [u8]>,
}

impl<'a> PackedPayloads<'a> {
    /// Splits a packed slot (as copied out of the ring) into its payloads.
    pub fn parse(slot: &'a [u8]) -> Result<Self, FramingError> {
        let (count, mut rest) = split_u16(slot)?;
        let mut payloads = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let (len, after) = split_u16(rest)?;
            let (payload, after) = after
                .split_at_checked(usize::from(len))
                .ok_or(FramingError::Truncated)?;
            payloads.push(payload);
            rest = after;
        }
        Ok(PackedPayloads { payloads })
    }

    pub fn total_bytes(&self) -> usize {
        self.payloads.iter().map(|p| p.len()).sum()
    }
}

fn split_u16(bytes: &[u8]) -> Result<(u16, &[u8]), FramingError> {
    let (head, rest) = bytes.split_at_checked(2).ok_or(FramingError::Truncated)?;
    Ok((u16::from_le_bytes([head[0], head[1]]), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_slot_round_trips_through_the_ring_metadata() {
        let slot = PayloadSlot {
            frame: FrameNo(41),
            capture_ns: 5,
            kind: FrameKind::Countdown,
        };
        assert_eq!(PayloadSlot::read(&slot.meta()), slot);
        let vga = VideoConfig {
            width: 640,
            height: 480,
            fps: 30,
        };
        assert_eq!(payload_ring(&vga).unwrap().slot_size(), 2 * 460_800 + 4096);
    }

    #[test]
    fn payloads_round_trip_through_a_slot() {
        let cases: [&[&[u8]]; 4] = [
            &[],
            &[b"a"],
            &[b"", b"xyz", &[7u8; 1188]],
            &[&[1u8; 65_535]],
        ];
        for payloads in cases {
            let mut slot = vec![0xEE; 70_000];
            let used = pack_payloads(payloads.iter().copied(), &mut slot).unwrap();
            assert_eq!(used, packed_len(payloads.iter().copied()));
            let parsed = PackedPayloads::parse(&slot[..used]).unwrap();
            assert_eq!(parsed.payloads, payloads);
        }
    }

    #[test]
    fn a_frame_too_big_for_the_slot_is_refused() {
        let mut slot = [0u8; 10];
        let payloads: [&[u8]; 2] = [b"12345", b"678"];
        assert_eq!(
            pack_payloads(payloads.iter().copied(), &mut slot),
            Err(FramingError::SlotTooSmall {
                needed: 14,
                capacity: 10
            })
        );
        assert!(matches!(
            pack_payloads([], &mut [0u8; 1]),
            Err(FramingError::SlotTooSmall { .. })
        ));
    }

    #[test]
    fn truncated_slots_are_refused() {
        let mut slot = vec![0u8; 64];
        let payloads: [&[u8]; 2] = [b"hello", b"world"];
        let used = pack_payloads(payloads.iter().copied(), &mut slot).unwrap();
        for cut in [0, 1, 3, used - 1] {
            assert_eq!(
                PackedPayloads::parse(&slot[..cut]),
                Err(FramingError::Truncated),
                "cut at {cut}"
            );
        }
    }
}
