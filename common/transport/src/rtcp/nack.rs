//! Generic NACK (RFC 4585 section 6.2.1): transport-layer feedback, FMT 1, a list of
//! (PID, BLP) entries each naming a lost packet and a bitmask of the 16 after it.

use zerocopy::byteorder::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{body_too_short, CommonHeader, RtcpParseError, RtcpWriteError, PT_RTPFB};
use crate::rtp::Ssrc;

/// Feedback message type of generic NACK.
pub const FMT_GENERIC_NACK: u8 = 1;

/// One FCI entry: lost packet `pid` and bitmask `blp` of lost packets pid+1..=pid+16.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct NackEntry {
    pid: U16,
    blp: U16,
}

impl NackEntry {
    pub fn new(pid: u16, blp: u16) -> Self {
        NackEntry {
            pid: U16::new(pid),
            blp: U16::new(blp),
        }
    }
    pub fn pid(&self) -> u16 {
        self.pid.get()
    }
    pub fn blp(&self) -> u16 {
        self.blp.get()
    }
    /// The wire sequence numbers this entry names as lost.
    pub fn lost(&self) -> impl Iterator<Item = u16> + '_ {
        let pid = self.pid();
        let blp = self.blp();
        std::iter::once(pid).chain(
            (0..16u16)
                .filter(move |b| blp & (1 << b) != 0)
                .map(move |b| pid.wrapping_add(b + 1)),
        )
    }
}

#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct FeedbackHeader {
    sender_ssrc: U32,
    media_ssrc: U32,
}

/// A parsed generic NACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenericNack<'a> {
    pub sender_ssrc: Ssrc,
    pub media_ssrc: Ssrc,
    pub entries: &'a [NackEntry],
}

impl<'a> GenericNack<'a> {
    pub(crate) fn parse(fmt: u8, body: &'a [u8]) -> Result<Self, RtcpParseError> {
        if fmt != FMT_GENERIC_NACK {
            return Err(RtcpParseError::UnsupportedFeedback(fmt));
        }
        let (header, rest) = FeedbackHeader::ref_from_prefix(body)
            .map_err(|_| body_too_short("NACK", body.len(), 8))?;
        if rest.is_empty() {
            return Err(body_too_short("NACK", body.len(), 12));
        }
        let entries = <[NackEntry]>::ref_from_bytes(rest)
            .map_err(|_| body_too_short("NACK", body.len(), 12))?;
        Ok(GenericNack {
            sender_ssrc: Ssrc(header.sender_ssrc.get()),
            media_ssrc: Ssrc(header.media_ssrc.get()),
            entries,
        })
    }

    /// Every wire sequence number named as lost.
    pub fn lost_wire_seqs(&self) -> impl Iterator<Item = u16> + 'a {
        self.entries.iter().flat_map(|e| e.lost())
    }
}

/// Pack sorted, distinct wire sequence numbers into as few entries as possible.
pub fn entries_for(lost: impl IntoIterator<Item = u16>) -> Vec<NackEntry> {
    let mut entries: Vec<NackEntry> = Vec::new();
    for seq in lost {
        if let Some(last) = entries.last_mut() {
            let offset = seq.wrapping_sub(last.pid());
            if (1..=16).contains(&offset) {
                last.blp = U16::new(last.blp() | (1 << (offset - 1)));
                continue;
            }
        }
        entries.push(NackEntry::new(seq, 0));
    }
    entries
}

/// Append a generic NACK to `out`.
pub fn write(
    sender_ssrc: Ssrc,
    media_ssrc: Ssrc,
    entries: &[NackEntry],
    out: &mut Vec<u8>,
) -> Result<(), RtcpWriteError> {
    let header = CommonHeader::new(FMT_GENERIC_NACK, PT_RTPFB, 8 + entries.len() * 4)?;
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(
        FeedbackHeader {
            sender_ssrc: U32::new(sender_ssrc.0),
            media_ssrc: U32::new(media_ssrc.0),
        }
        .as_bytes(),
    );
    for e in entries {
        out.extend_from_slice(e.as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::type_complexity)]
    fn lost_sequence_numbers_pack_into_pid_and_bitmask() {
        let cases: &[(&[u16], &[(u16, u16)])] = &[
            (&[5], &[(5, 0)]),
            (&[5, 6, 21], &[(5, 0b1 | 1 << 15)]),
            (&[5, 22], &[(5, 0), (22, 0)]),
            (&[65534, 65535, 0, 3], &[(65534, 0b1_0011)]),
        ];
        for (lost, want) in cases {
            let got: Vec<(u16, u16)> = entries_for(lost.iter().copied())
                .iter()
                .map(|e| (e.pid(), e.blp()))
                .collect();
            assert_eq!(&got[..], *want, "{lost:?}");
            let back: Vec<u16> = entries_for(lost.iter().copied())
                .iter()
                .flat_map(|e| e.lost().collect::<Vec<_>>())
                .collect();
            assert_eq!(&back[..], *lost);
        }
    }

    #[test]
    fn a_nack_without_entries_or_with_a_partial_entry_is_refused() {
        assert!(GenericNack::parse(1, &[0; 8]).is_err());
        assert!(GenericNack::parse(1, &[0; 10]).is_err());
        assert!(GenericNack::parse(1, &[0; 12]).is_ok());
        assert!(GenericNack::parse(15, &[0; 12]).is_err());
    }
}
