//! Extended reports (RFC 3611), the two blocks with which a receiver measures the round trip
//! without sending any media (sections 4.4 and 4.5):
//!
//! - the receiver puts a *receiver reference time* block (RRTR, block type 4) with its own
//!   NTP-format clock in its feedback;
//! - the sender echoes the middle 32 bits of it (LRR) with the delay since it received it
//!   (DLRR, 1/65536 s) in a DLRR block (type 5) of its next report;
//! - the receiver's round trip is its clock now, less LRR, less DLRR.
//!
//! As with the sender report's timestamp, the NTP-format time is the originator's own
//! monotonic clock, not wall-clock time: only the originator interprets it when it comes back.
//! Blocks of other types are skipped by their length; one that runs past the packet is
//! malformed.

use zerocopy::byteorder::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{body_too_short, CommonHeader, RtcpParseError, RtcpWriteError, PT_XR};
use crate::rtp::Ssrc;

/// Block type of a receiver reference time block.
pub const BT_RRTR: u8 = 4;
/// Block type of a DLRR block.
pub const BT_DLRR: u8 = 5;

/// The 4-byte header of every report block.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct BlockHeader {
    block_type: u8,
    type_specific: u8,
    /// Length of the block in 32-bit words, minus one (the header).
    length: U16,
}

/// The body of an RRTR block: a 64-bit NTP-format timestamp.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RrtrBody {
    ntp_seconds: U32,
    ntp_fraction: U32,
}

/// One sub-block of a DLRR block: for receiver `ssrc`, the LRR it sent and the delay since.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct DlrrItem {
    ssrc: U32,
    last_rr: U32,
    delay_since_last_rr: U32,
}

impl DlrrItem {
    pub fn new(ssrc: Ssrc, last_rr: u32, delay_since_last_rr: u32) -> Self {
        DlrrItem {
            ssrc: U32::new(ssrc.0),
            last_rr: U32::new(last_rr),
            delay_since_last_rr: U32::new(delay_since_last_rr),
        }
    }

    /// The receiver whose RRTR this answers.
    pub fn ssrc(&self) -> Ssrc {
        Ssrc(self.ssrc.get())
    }

    /// The middle 32 bits of that RRTR's timestamp.
    pub fn last_rr(&self) -> u32 {
        self.last_rr.get()
    }

    /// Compact NTP (16.16) from receiving that RRTR to sending this.
    pub fn delay_since_last_rr(&self) -> u32 {
        self.delay_since_last_rr.get()
    }
}

/// A parsed XR packet: the blocks keymash uses (the first of each type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedReport<'a> {
    pub sender_ssrc: Ssrc,
    /// The 64-bit NTP-format timestamp of an RRTR block.
    pub rrtr: Option<u64>,
    /// The sub-blocks of a DLRR block (empty if there is none).
    pub dlrr: &'a [DlrrItem],
}

impl ExtendedReport<'_> {
    /// The compact (middle 32 bits) form of the RRTR timestamp, as a DLRR echoes it.
    pub fn compact_rrtr(&self) -> Option<u32> {
        self.rrtr.map(|ntp| (ntp >> 16) as u32)
    }
}

impl<'a> ExtendedReport<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpParseError> {
        let (ssrc, mut rest) =
            U32::ref_from_prefix(body).map_err(|_| body_too_short("XR", body.len(), 4))?;
        let mut report = ExtendedReport {
            sender_ssrc: Ssrc(ssrc.get()),
            rrtr: None,
            dlrr: &[],
        };
        while !rest.is_empty() {
            let (header, after) = BlockHeader::ref_from_prefix(rest)
                .map_err(|_| body_too_short("XR block", rest.len(), 4))?;
            let len = usize::from(header.length.get()) * 4;
            let block = after
                .get(..len)
                .ok_or_else(|| body_too_short("XR block", after.len(), len))?;
            match header.block_type {
                BT_RRTR if report.rrtr.is_none() => {
                    let rrtr = RrtrBody::ref_from_bytes(block)
                        .map_err(|_| body_too_short("XR RRTR", block.len(), 8))?;
                    report.rrtr = Some(
                        (u64::from(rrtr.ntp_seconds.get()) << 32)
                            | u64::from(rrtr.ntp_fraction.get()),
                    );
                }
                BT_DLRR if report.dlrr.is_empty() => {
                    report.dlrr = <[DlrrItem]>::ref_from_bytes(block)
                        .map_err(|_| body_too_short("XR DLRR", block.len(), 12))?;
                }
                _ => {}
            }
            rest = &after[len..];
        }
        Ok(report)
    }
}

/// Append an XR packet from `sender_ssrc` with one RRTR block stamped `ntp_timestamp`.
pub fn write_rrtr(
    sender_ssrc: Ssrc,
    ntp_timestamp: u64,
    out: &mut Vec<u8>,
) -> Result<(), RtcpWriteError> {
    let body = RrtrBody {
        ntp_seconds: U32::new((ntp_timestamp >> 32) as u32),
        ntp_fraction: U32::new(ntp_timestamp as u32),
    };
    write(sender_ssrc, BT_RRTR, body.as_bytes(), out)
}

/// Append an XR packet from `sender_ssrc` with one DLRR block of `items`.
pub fn write_dlrr(
    sender_ssrc: Ssrc,
    items: &[DlrrItem],
    out: &mut Vec<u8>,
) -> Result<(), RtcpWriteError> {
    write(sender_ssrc, BT_DLRR, items.as_bytes(), out)
}

fn write(
    sender_ssrc: Ssrc,
    block_type: u8,
    block: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RtcpWriteError> {
    let words = u16::try_from(block.len() / 4).map_err(|_| RtcpWriteError::TooLong(block.len()))?;
    let header = CommonHeader::new(0, PT_XR, 4 + 4 + block.len())?;
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&sender_ssrc.0.to_be_bytes());
    let block_header = BlockHeader {
        block_type,
        type_specific: 0,
        length: U16::new(words),
    };
    out.extend_from_slice(block_header.as_bytes());
    out.extend_from_slice(block);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::{parse_compound, RtcpPacket};

    fn parse(bytes: &[u8]) -> Result<RtcpPacket<'_>, RtcpParseError> {
        parse_compound(bytes).next().expect("one packet")
    }

    #[test]
    fn an_rrtr_round_trips_in_the_rfc_3611_layout() {
        let mut out = Vec::new();
        write_rrtr(Ssrc(0x0102_0304), 0x1111_2222_3333_4444, &mut out).unwrap();
        assert_eq!(
            out,
            [
                0x80, 207, 0, 4, 1, 2, 3, 4, 4, 0, 0, 2, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44,
                0x44
            ]
        );
        match parse(&out) {
            Ok(RtcpPacket::ExtendedReport(xr)) => {
                assert_eq!(xr.sender_ssrc, Ssrc(0x0102_0304));
                assert_eq!(xr.rrtr, Some(0x1111_2222_3333_4444));
                assert_eq!(xr.compact_rrtr(), Some(0x2222_3333));
                assert!(xr.dlrr.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_dlrr_round_trips_with_every_sub_block() {
        let items = [
            DlrrItem::new(Ssrc(7), 0xAAAA_BBBB, 0x0001_8000),
            DlrrItem::new(Ssrc(8), 1, 2),
        ];
        let mut out = Vec::new();
        write_dlrr(Ssrc(9), &items, &mut out).unwrap();
        assert_eq!(out.len(), 4 + 4 + 4 + 24);
        assert_eq!(&out[8..12], &[5, 0, 0, 6]);
        match parse(&out) {
            Ok(RtcpPacket::ExtendedReport(xr)) => {
                assert_eq!(xr.rrtr, None);
                assert_eq!(xr.dlrr, &items[..]);
                assert_eq!(xr.dlrr[0].ssrc(), Ssrc(7));
                assert_eq!(xr.dlrr[0].last_rr(), 0xAAAA_BBBB);
                assert_eq!(xr.dlrr[0].delay_since_last_rr(), 0x0001_8000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_blocks_are_skipped_and_overruns_refused() {
        // SSRC, a VoIP-metrics-like block (type 7, one word), then an RRTR.
        let mut out = vec![0x80, 207, 0, 6, 0, 0, 0, 1, 7, 0, 0, 1, 9, 9, 9, 9];
        out.extend_from_slice(&[4, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 6]);
        match parse(&out) {
            Ok(RtcpPacket::ExtendedReport(xr)) => assert_eq!(xr.rrtr, Some(5 << 32 | 6)),
            other => panic!("{other:?}"),
        }
        // A block that says 2 words where 1 is left; an RRTR of the wrong size; a DLRR with a
        // partial sub-block.
        for body in [
            &[0, 0, 0, 1, 7, 0, 0, 2, 9, 9, 9, 9][..],
            &[0, 0, 0, 1, 4, 0, 0, 1, 9, 9, 9, 9][..],
            &[0, 0, 0, 1, 5, 0, 0, 1, 9, 9, 9, 9][..],
        ] {
            let mut p = vec![0x80, 207, 0, (body.len() / 4) as u8];
            p.extend_from_slice(body);
            assert!(
                matches!(parse(&p), Err(RtcpParseError::BodyTooShort { .. })),
                "{body:?}"
            );
        }
    }
}
