//! Receiver report (RFC 3550 section 6.4.2) and its report block, shared with the sender report.

use zerocopy::byteorder::network_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{body_too_short, CommonHeader, RtcpParseError, RtcpWriteError, PT_RR};
use crate::rtp::Ssrc;

/// Size of one report block on the wire.
pub const REPORT_BLOCK_LEN: usize = 24;
/// The 5-bit count field limits a packet to 31 blocks.
pub const MAX_REPORT_BLOCKS: usize = 31;

/// A report block as it sits on the wire: read in place.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ReportBlock {
    ssrc: U32,
    /// fraction lost (8 bits) and cumulative number of packets lost (signed 24 bits).
    lost: U32,
    extended_highest_seq: U32,
    jitter: U32,
    last_sr: U32,
    delay_since_last_sr: U32,
}

const _: () = assert!(std::mem::size_of::<ReportBlock>() == REPORT_BLOCK_LEN);

/// The values of a report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlockFields {
    /// The stream being reported on.
    pub ssrc: Ssrc,
    /// Fraction lost since the previous report, in 1/256 (RFC 3550 A.3).
    pub fraction_lost: u8,
    /// Packets expected minus received since the start; negative with duplicates. 24 bits.
    pub cumulative_lost: i32,
    /// Highest sequence number received, with the cycle count in the upper 16 bits.
    pub extended_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units (RFC 3550 A.8).
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received, 0 if none.
    pub last_sr: u32,
    /// Delay between receiving that SR and sending this block, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    pub fn fields(&self) -> ReportBlockFields {
        let lost = self.lost.get();
        // Sign-extend the 24-bit cumulative count.
        let cumulative = ((lost << 8) as i32) >> 8;
        ReportBlockFields {
            ssrc: Ssrc(self.ssrc.get()),
            fraction_lost: (lost >> 24) as u8,
            cumulative_lost: cumulative,
            extended_highest_seq: self.extended_highest_seq.get(),
            jitter: self.jitter.get(),
            last_sr: self.last_sr.get(),
            delay_since_last_sr: self.delay_since_last_sr.get(),
        }
    }

    pub fn from_fields(f: &ReportBlockFields) -> Self {
        // Clamp to the 24-bit signed range as RFC 3550 6.4.1 asks.
        let cumulative = f.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0x00FF_FFFF;
        ReportBlock {
            ssrc: U32::new(f.ssrc.0),
            lost: U32::new((u32::from(f.fraction_lost) << 24) | cumulative),
            extended_highest_seq: U32::new(f.extended_highest_seq),
            jitter: U32::new(f.jitter),
            last_sr: U32::new(f.last_sr),
            delay_since_last_sr: U32::new(f.delay_since_last_sr),
        }
    }
}

/// Parse `count` report blocks at the start of `bytes` (profile extensions after them are ignored).
pub(crate) fn parse_blocks<'a>(
    kind: &'static str,
    count: u8,
    bytes: &'a [u8],
) -> Result<&'a [ReportBlock], RtcpParseError> {
    let count = usize::from(count);
    let needed = count * REPORT_BLOCK_LEN;
    let raw = bytes
        .get(..needed)
        .ok_or(body_too_short(kind, bytes.len(), needed))?;
    <[ReportBlock]>::ref_from_bytes(raw).map_err(|_| body_too_short(kind, bytes.len(), needed))
}

/// A parsed receiver report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    pub sender_ssrc: Ssrc,
    pub blocks: &'a [ReportBlock],
}

impl<'a> ReceiverReport<'a> {
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpParseError> {
        let (ssrc, rest) =
            U32::ref_from_prefix(body).map_err(|_| body_too_short("RR", body.len(), 4))?;
        Ok(ReceiverReport {
            sender_ssrc: Ssrc(ssrc.get()),
            blocks: parse_blocks("RR", count, rest)?,
        })
    }
}

/// Append a receiver report to `out`.
pub fn write(
    sender_ssrc: Ssrc,
    blocks: &[ReportBlockFields],
    out: &mut Vec<u8>,
) -> Result<(), RtcpWriteError> {
    if blocks.len() > MAX_REPORT_BLOCKS {
        return Err(RtcpWriteError::TooManyBlocks(blocks.len()));
    }
    let header = CommonHeader::new(
        blocks.len() as u8,
        PT_RR,
        4 + blocks.len() * REPORT_BLOCK_LEN,
    )?;
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(U32::new(sender_ssrc.0).as_bytes());
    write_blocks(blocks, out);
    Ok(())
}

pub(crate) fn write_blocks(blocks: &[ReportBlockFields], out: &mut Vec<u8>) {
    for b in blocks {
        out.extend_from_slice(ReportBlock::from_fields(b).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_loss_keeps_its_sign_and_clamps_to_24_bits() {
        for (written, read) in [
            (0, 0),
            (5, 5),
            (-1, -1),
            (0x7F_FFFF, 0x7F_FFFF),
            (0x100_0000, 0x7F_FFFF),
            (-0x100_0000, -0x80_0000),
        ] {
            let f = ReportBlockFields {
                cumulative_lost: written,
                fraction_lost: 255,
                ..Default::default()
            };
            let back = ReportBlock::from_fields(&f).fields();
            assert_eq!(back.cumulative_lost, read, "wrote {written}");
            assert_eq!(back.fraction_lost, 255);
        }
    }

    #[test]
    fn a_report_with_too_few_bytes_for_its_blocks_is_refused() {
        let body = [0u8; 4 + 23];
        assert!(ReceiverReport::parse(1, &body).is_err());
        let body = [0u8; 4 + 24];
        assert_eq!(ReceiverReport::parse(1, &body).unwrap().blocks.len(), 1);
    }
}
