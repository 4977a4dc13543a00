//! Sender report (RFC 3550 section 6.4.1). The keymash sender sends one about once a second and
//! when idle, so the receiver can echo its timestamp (LSR/DLSR) and the sender can measure RTT.
//!
//! The NTP timestamp is the sender's own monotonic clock in NTP's 32.32 format, not wall-clock
//! time: only the sender interprets it (when it comes back in LSR), and a sans-IO state machine
//! has no wall clock.

use zerocopy::byteorder::network_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::rr::{parse_blocks, write_blocks, ReportBlock, ReportBlockFields, MAX_REPORT_BLOCKS};
use super::{body_too_short, CommonHeader, RtcpParseError, RtcpWriteError, PT_SR};
use crate::rtp::Ssrc;

#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct SenderInfo {
    ssrc: U32,
    ntp_seconds: U32,
    ntp_fraction: U32,
    rtp_timestamp: U32,
    packet_count: U32,
    octet_count: U32,
}

const SENDER_INFO_LEN: usize = 24;
const _: () = assert!(std::mem::size_of::<SenderInfo>() == SENDER_INFO_LEN);

/// A parsed sender report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport<'a> {
    pub sender_ssrc: Ssrc,
    /// 64-bit NTP-format timestamp (32.32 fixed point seconds).
    pub ntp_timestamp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
    pub blocks: &'a [ReportBlock],
}

impl SenderReport<'_> {
    /// The middle 32 bits of the NTP timestamp, which a receiver echoes as LSR.
    pub fn compact_ntp(&self) -> u32 {
        (self.ntp_timestamp >> 16) as u32
    }
}

impl<'a> SenderReport<'a> {
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpParseError> {
        let (info, rest) = SenderInfo::ref_from_prefix(body)
            .map_err(|_| body_too_short("SR", body.len(), SENDER_INFO_LEN))?;
        Ok(SenderReport {
            sender_ssrc: Ssrc(info.ssrc.get()),
            ntp_timestamp: (u64::from(info.ntp_seconds.get()) << 32)
                | u64::from(info.ntp_fraction.get()),
            rtp_timestamp: info.rtp_timestamp.get(),
            packet_count: info.packet_count.get(),
            octet_count: info.octet_count.get(),
            blocks: parse_blocks("SR", count, rest)?,
        })
    }
}

/// The sender-info fields of an SR to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfoFields {
    pub ssrc: Ssrc,
    pub ntp_timestamp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// Append a sender report to `out`.
pub fn write(
    info: &SenderInfoFields,
    blocks: &[ReportBlockFields],
    out: &mut Vec<u8>,
) -> Result<(), RtcpWriteError> {
    if blocks.len() > MAX_REPORT_BLOCKS {
        return Err(RtcpWriteError::TooManyBlocks(blocks.len()));
    }
    let header = CommonHeader::new(
        blocks.len() as u8,
        PT_SR,
        SENDER_INFO_LEN + blocks.len() * 24,
    )?;
    out.extend_from_slice(header.as_bytes());
    let wire = SenderInfo {
        ssrc: U32::new(info.ssrc.0),
        ntp_seconds: U32::new((info.ntp_timestamp >> 32) as u32),
        ntp_fraction: U32::new(info.ntp_timestamp as u32),
        rtp_timestamp: U32::new(info.rtp_timestamp),
        packet_count: U32::new(info.packet_count),
        octet_count: U32::new(info.octet_count),
    };
    out.extend_from_slice(wire.as_bytes());
    write_blocks(blocks, out);
    Ok(())
}

/// A duration as a 64-bit NTP-format (32.32) value.
pub fn ntp_from_duration(d: std::time::Duration) -> u64 {
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (d.as_secs() << 32) | frac
}

/// A compact (16.16) NTP value, as used by LSR and DLSR, as a duration.
pub fn duration_from_compact_ntp(v: u32) -> std::time::Duration {
    let secs = u64::from(v >> 16);
    let nanos = (u64::from(v & 0xFFFF) * 1_000_000_000) >> 16;
    std::time::Duration::from_secs(secs) + std::time::Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::{parse_compound, RtcpPacket};
    use std::time::Duration;

    #[test]
    fn a_sender_report_round_trips() {
        let info = SenderInfoFields {
            ssrc: Ssrc(9),
            ntp_timestamp: ntp_from_duration(Duration::from_millis(1500)),
            rtp_timestamp: 77,
            packet_count: 3,
            octet_count: 4000,
        };
        let mut out = Vec::new();
        write(&info, &[], &mut out).unwrap();
        assert_eq!(out.len(), 28);
        match parse_compound(&out).next() {
            Some(Ok(RtcpPacket::SenderReport(sr))) => {
                assert_eq!(sr.ntp_timestamp, info.ntp_timestamp);
                assert_eq!(sr.octet_count, 4000);
                assert_eq!(
                    duration_from_compact_ntp(sr.compact_ntp()).as_millis(),
                    1500
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn compact_ntp_converts_in_sixty_five_thousandths_of_a_second() {
        assert_eq!(
            duration_from_compact_ntp(0x0001_8000),
            Duration::from_millis(1500)
        );
        assert_eq!(duration_from_compact_ntp(0), Duration::ZERO);
    }
}
