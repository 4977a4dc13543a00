//! Deterministic frame contents that make a torn frame detectable: every 8-byte word of frame
//! `seq` is a different function of `seq` and the word's position, so bytes from two frames (or
//! a half-written one) never pass [`verify`]. Shared by the integration tests, their helper
//! process (`shm-test-peer`) and the `ring_hop` benchmark.

const SEQ_MIX: u64 = 0x9E37_79B9_7F4A_7C15;
const POSITION_MIX: u64 = 0xD6E8_FEB8_6659_FD93;

fn word(seq: u64, index: usize) -> u64 {
    (seq.wrapping_add(1)).wrapping_mul(SEQ_MIX)
        ^ (index as u64).wrapping_add(1).wrapping_mul(POSITION_MIX)
}

/// Payload length used for frame `seq` in a slot of `slot_size` bytes: varies between half and
/// all of the slot, so a torn length is caught too.
pub fn frame_len(seq: u64, slot_size: usize) -> usize {
    let half = slot_size / 2;
    let span = (slot_size - half) as u64 + 1;
    half + (word(seq, usize::MAX) % span) as usize
}

/// Fills `buf` with frame `seq`'s pattern.
pub fn fill(seq: u64, buf: &mut [u8]) {
    let tail_index = buf.len() / 8;
    let mut chunks = buf.chunks_exact_mut(8);
    for (index, chunk) in (&mut chunks).enumerate() {
        chunk.copy_from_slice(&word(seq, index).to_le_bytes());
    }
    let tail = chunks.into_remainder();
    let tail_len = tail.len();
    tail.copy_from_slice(&word(seq, tail_index).to_le_bytes()[..tail_len]);
}

/// Whether `buf` is exactly frame `seq`'s pattern.
pub fn verify(seq: u64, buf: &[u8]) -> bool {
    let mut chunks = buf.chunks_exact(8);
    for (index, chunk) in (&mut chunks).enumerate() {
        if chunk != word(seq, index).to_le_bytes() {
            return false;
        }
    }
    let tail = chunks.remainder();
    tail == &word(seq, buf.len() / 8).to_le_bytes()[..tail.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_verifies_and_any_mix_of_two_frames_does_not() {
        for len in [0usize, 1, 7, 8, 9, 64, 4095] {
            let mut a = vec![0u8; len];
            let mut b = vec![0u8; len];
            fill(1, &mut a);
            fill(2, &mut b);
            assert!(verify(1, &a), "len {len}");
            if len == 0 {
                continue;
            }
            assert!(
                !verify(2, &a),
                "len {len}: frame 1 must not pass as frame 2"
            );
            for cut in [len / 2, len - 1].into_iter().filter(|&cut| cut > 0) {
                let mut torn = a.clone();
                torn[cut..].copy_from_slice(&b[cut..]);
                assert!(
                    !verify(1, &torn) && !verify(2, &torn),
                    "len {len}, torn at {cut}"
                );
            }
        }
    }

    #[test]
    fn frame_lengths_stay_within_half_and_all_of_the_slot() {
        for slot_size in [1usize, 2, 64, 4096] {
            for seq in 0..200 {
                let len = frame_len(seq, slot_size);
                assert!(
                    len >= slot_size / 2 && len <= slot_size,
                    "seq {seq} slot {slot_size} len {len}"
                );
            }
        }
    }
}

/// A cell value whose words all derive from `seq`, so a torn load is detectable.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
pub struct PatternRecord {
    seq: u64,
    words: [u64; PatternRecord::WORDS],
}

impl PatternRecord {
    /// 15 words + seq = 128 bytes: several cache lines, so a torn copy is possible in practice.
    pub const WORDS: usize = 15;

    pub fn new(seq: u64) -> Self {
        PatternRecord {
            seq,
            words: std::array::from_fn(|index| word(seq, index)),
        }
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether every word belongs to the same `seq`.
    pub fn is_consistent(&self) -> bool {
        self.words
            .iter()
            .enumerate()
            .all(|(index, &w)| w == word(self.seq, index))
    }
}
