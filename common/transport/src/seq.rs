//! RTP sequence numbers: the 16-bit wire value is extended exactly once, on arrival, into a 64-bit
//! [`SeqNo`]. Everything past this module works in the 64-bit space, so wraparound (65535 -> 0)
//! is handled here and nowhere else, and wire and extended numbers cannot be mixed up.

use std::fmt;

/// An extended (64-bit, never wrapping) RTP sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeqNo(u64);

impl SeqNo {
    /// An extended sequence number from its raw 64-bit value.
    pub const fn new(raw: u64) -> Self {
        SeqNo(raw)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The 16 bits that travel in the RTP header.
    pub const fn wire(self) -> u16 {
        self.0 as u16
    }

    /// How many wraps of the 16-bit space came before (the "cycles" of RFC 3550 A.1).
    pub const fn cycles(self) -> u64 {
        self.0 >> 16
    }

    pub const fn next(self) -> SeqNo {
        SeqNo(self.0.wrapping_add(1))
    }

    /// `self + n`, saturating at the top of the space (which a 64-bit stream never reaches).
    pub const fn add(self, n: u64) -> SeqNo {
        SeqNo(self.0.saturating_add(n))
    }

    /// `self - other` if `self` is not behind `other`.
    pub fn distance_from(self, other: SeqNo) -> Option<u64> {
        self.0.checked_sub(other.0)
    }

    /// Extend a 16-bit wire value to the [`SeqNo`] nearest to `self` (the reference point):
    /// within 32768 either side. Returns `None` only when the nearest value would be negative.
    pub fn nearest_to_wire(self, wire: u16) -> Option<SeqNo> {
        let base = self.0 & !0xFFFF;
        let candidate = base | u64::from(wire);
        let half = 1u64 << 15;
        let result = if candidate > self.0 && candidate - self.0 > half {
            candidate.checked_sub(1 << 16)?
        } else if candidate < self.0 && self.0 - candidate > half {
            candidate.checked_add(1 << 16)?
        } else {
            candidate
        };
        Some(SeqNo(result))
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Extends the wire sequence numbers of one stream (one SSRC) as they arrive.
///
/// The first packet's wire value starts the space one full cycle up (so a packet slightly older
/// than the first one still has a non-negative extended number); every later value is taken to
/// be the one nearest to the highest number seen so far.
#[derive(Debug, Clone, Default)]
pub struct SeqExtender {
    highest: Option<SeqNo>,
}

impl SeqExtender {
    /// The cycle the first packet is placed in: leaves room below it for reordered packets.
    const FIRST_CYCLE: u64 = 1;

    pub fn new() -> Self {
        SeqExtender { highest: None }
    }

    /// Extend `wire` and remember it if it is the newest so far.
    pub fn extend(&mut self, wire: u16) -> SeqNo {
        let seq = self.peek(wire);
        if self.highest.is_none_or(|h| seq > h) {
            self.highest = Some(seq);
        }
        seq
    }

    /// Extend `wire` without recording it (for numbers that refer to the stream, such as the
    /// base sequence number in an FEC repair header or a NACK).
    pub fn peek(&self, wire: u16) -> SeqNo {
        match self.highest {
            None => SeqNo((Self::FIRST_CYCLE << 16) | u64::from(wire)),
            Some(h) => h.nearest_to_wire(wire).unwrap_or(SeqNo(u64::from(wire))),
        }
    }

    /// The highest sequence number seen so far.
    pub fn highest(&self) -> Option<SeqNo> {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_follows_the_stream_across_wraparound() {
        // (wire values fed in order, expected extended values)
        let cases: &[(&[u16], &[u64])] = &[
            (
                &[65534, 65535, 0, 1],
                &[0x1_FFFE, 0x1_FFFF, 0x2_0000, 0x2_0001],
            ),
            // reordered across the wrap: 0 arrives before 65535
            (
                &[65534, 0, 65535, 1],
                &[0x1_FFFE, 0x2_0000, 0x1_FFFF, 0x2_0001],
            ),
            // a packet from before the first one stays below it
            (&[5, 3, 6], &[0x1_0005, 0x1_0003, 0x1_0006]),
            // before the first one and across the wrap downward
            (&[2, 65530, 3], &[0x1_0002, 0x0_FFFA, 0x1_0003]),
            // two full cycles
            (
                &[0, 30000, 60000, 24464, 54464, 18928],
                &[0x1_0000, 0x1_7530, 0x1_EA60, 0x2_5F90, 0x2_D4C0, 0x3_49F0],
            ),
        ];
        for (wires, expected) in cases {
            let mut ext = SeqExtender::new();
            let got: Vec<u64> = wires.iter().map(|&w| ext.extend(w).get()).collect();
            assert_eq!(&got[..], *expected, "wires {wires:?}");
        }
    }

    #[test]
    fn extended_numbers_give_back_their_wire_value_and_cycle() {
        let s = SeqNo::new(0x3_0005);
        assert_eq!(s.wire(), 5);
        assert_eq!(s.cycles(), 3);
        assert_eq!(SeqNo::new(0x1_FFFF).next().wire(), 0);
        assert_eq!(SeqNo::new(0x1_FFFF).next().cycles(), 2);
    }

    #[test]
    fn nearest_to_wire_never_goes_negative() {
        assert_eq!(SeqNo::new(3).nearest_to_wire(65535), None);
        assert_eq!(SeqNo::new(3).nearest_to_wire(1), Some(SeqNo::new(1)));
    }

    #[test]
    fn peek_does_not_move_the_highest() {
        let mut ext = SeqExtender::new();
        ext.extend(100);
        assert_eq!(ext.peek(200).get(), 0x1_00C8);
        assert_eq!(ext.highest(), Some(SeqNo::new(0x1_0064)));
    }
}
