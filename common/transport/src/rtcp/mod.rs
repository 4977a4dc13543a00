//! RTCP (RFC 3550 section 6, RFC 4585, RFC 3611's RRTR/DLRR): one file per packet type, and
//! compound packets here.
//!
//! Parsing borrows the received bytes: fixed parts are zerocopy views, lists (report blocks,
//! NACK entries) are zerocopy slices. Every length field is checked against the bytes present;
//! nothing here can panic on input.

pub mod app;
pub mod nack;
pub mod rr;
pub mod sr;
pub mod xr;

use zerocopy::byteorder::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

pub use app::KeymashApp;
pub use nack::{GenericNack, NackEntry};
pub use rr::{ReceiverReport, ReportBlock, ReportBlockFields};
pub use sr::SenderReport;
pub use xr::{DlrrItem, ExtendedReport};

/// RTCP packet types keymash understands.
pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_APP: u8 = 204;
/// Transport-layer feedback (RFC 4585); FMT 1 is generic NACK.
pub const PT_RTPFB: u8 = 205;
/// Extended report (RFC 3611).
pub const PT_XR: u8 = 207;

/// The 4-byte header every RTCP packet starts with.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct CommonHeader {
    /// V(2) P(1) count-or-subtype(5)
    pub flags: u8,
    pub packet_type: u8,
    /// Length in 32-bit words minus one.
    pub length: U16,
}

pub(crate) const COMMON_HEADER_LEN: usize = 4;
const _: () = assert!(std::mem::size_of::<CommonHeader>() == COMMON_HEADER_LEN);

impl CommonHeader {
    pub(crate) fn new(count: u8, packet_type: u8, body_len: usize) -> Result<Self, RtcpWriteError> {
        if !body_len.is_multiple_of(4) {
            return Err(RtcpWriteError::NotWordAligned(body_len));
        }
        let words = u16::try_from(body_len / 4).map_err(|_| RtcpWriteError::TooLong(body_len))?;
        Ok(CommonHeader {
            flags: (2 << 6) | (count & 0x1F),
            packet_type,
            length: U16::new(words),
        })
    }
}

/// Why bytes are not well-formed RTCP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcpParseError {
    #[error("{0} bytes is too short for an RTCP header")]
    TooShort(usize),
    #[error("RTCP version {0}, expected 2")]
    WrongVersion(u8),
    #[error("length field says {declared} bytes, only {available} present")]
    LengthOverrun { declared: usize, available: usize },
    #[error("padding count {count} is invalid for a {len}-byte packet")]
    BadPadding { count: usize, len: usize },
    #[error("{kind}: body of {len} bytes is too short for {needed}")]
    BodyTooShort {
        kind: &'static str,
        len: usize,
        needed: usize,
    },
    #[error("APP packet name {0:?} is not ours")]
    ForeignApp([u8; 4]),
    #[error("RTPFB format {0} is not generic NACK")]
    UnsupportedFeedback(u8),
    #[error("requested quality {0} is outside 1..=100")]
    BadQuality(u8),
    #[error("first packet of a compound is type {0}, RFC 3550 wants SR or RR")]
    CompoundStartsWrong(u8),
}

/// Why an RTCP packet could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcpWriteError {
    #[error("RTCP body of {0} bytes is not a multiple of 4")]
    NotWordAligned(usize),
    #[error("RTCP body of {0} bytes does not fit the 16-bit length field")]
    TooLong(usize),
    #[error("{0} report blocks do not fit the 5-bit count")]
    TooManyBlocks(usize),
}

/// One packet out of a compound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    SenderReport(SenderReport<'a>),
    ReceiverReport(ReceiverReport<'a>),
    Nack(GenericNack<'a>),
    App(KeymashApp),
    ExtendedReport(ExtendedReport<'a>),
    /// A well-framed packet of a type keymash does not use (SDES, BYE, other feedback...).
    Other {
        packet_type: u8,
    },
}

/// Iterates over the packets of a compound RTCP datagram.
///
/// Framing errors (a length running past the end) end the iteration with that error, because
/// nothing after it can be trusted; a packet whose body is malformed yields its error and the
/// iteration carries on with the next, correctly framed, packet.
#[derive(Debug, Clone)]
pub struct CompoundIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Walk the packets of a compound RTCP datagram.
pub fn parse_compound(datagram: &[u8]) -> CompoundIter<'_> {
    CompoundIter {
        rest: datagram,
        failed: false,
    }
}

/// Check that a datagram is a valid compound packet as RFC 3550 6.1 defines it: it starts with
/// SR or RR, every packet is correctly framed and every body parses.
pub fn validate_compound(datagram: &[u8]) -> Result<usize, RtcpParseError> {
    let mut count = 0;
    for packet in parse_compound(datagram) {
        let packet = packet?;
        if count == 0
            && !matches!(
                packet,
                RtcpPacket::SenderReport(_) | RtcpPacket::ReceiverReport(_)
            )
        {
            let pt = datagram.get(1).copied().unwrap_or(0);
            return Err(RtcpParseError::CompoundStartsWrong(pt));
        }
        count += 1;
    }
    if count == 0 {
        return Err(RtcpParseError::TooShort(datagram.len()));
    }
    Ok(count)
}

impl<'a> Iterator for CompoundIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match split_packet(self.rest) {
            Ok(framed) => {
                self.rest = framed.rest;
                Some(parse_body(
                    framed.flags & 0x1F,
                    framed.packet_type,
                    framed.body,
                ))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One packet cut out of a compound.
struct Framed<'a> {
    flags: u8,
    packet_type: u8,
    /// Without the common header and without padding.
    body: &'a [u8],
    /// The packets after this one.
    rest: &'a [u8],
}

/// Frame one packet by its length field.
fn split_packet(bytes: &[u8]) -> Result<Framed<'_>, RtcpParseError> {
    let (header, _) =
        CommonHeader::ref_from_prefix(bytes).map_err(|_| RtcpParseError::TooShort(bytes.len()))?;
    let version = header.flags >> 6;
    if version != 2 {
        return Err(RtcpParseError::WrongVersion(version));
    }
    let total = (usize::from(header.length.get()) + 1) * 4;
    if total > bytes.len() {
        return Err(RtcpParseError::LengthOverrun {
            declared: total,
            available: bytes.len(),
        });
    }
    let (packet, rest) = bytes.split_at(total);
    let mut body = &packet[COMMON_HEADER_LEN..];
    if header.flags & 0x20 != 0 {
        let count = usize::from(packet[total - 1]);
        if count == 0 || count > body.len() {
            return Err(RtcpParseError::BadPadding { count, len: total });
        }
        body = &body[..body.len() - count];
    }
    Ok(Framed {
        flags: header.flags,
        packet_type: header.packet_type,
        body,
        rest,
    })
}

fn parse_body(count: u8, packet_type: u8, body: &[u8]) -> Result<RtcpPacket<'_>, RtcpParseError> {
    Ok(match packet_type {
        PT_SR => RtcpPacket::SenderReport(SenderReport::parse(count, body)?),
        PT_RR => RtcpPacket::ReceiverReport(ReceiverReport::parse(count, body)?),
        PT_RTPFB => RtcpPacket::Nack(GenericNack::parse(count, body)?),
        PT_APP => RtcpPacket::App(KeymashApp::parse(count, body)?),
        PT_XR => RtcpPacket::ExtendedReport(ExtendedReport::parse(body)?),
        other => RtcpPacket::Other { packet_type: other },
    })
}

pub(crate) fn body_too_short(kind: &'static str, len: usize, needed: usize) -> RtcpParseError {
    RtcpParseError::BodyTooShort { kind, len, needed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::Ssrc;
    use keymash_core::{MashLevel, Quality};

    fn compound() -> Vec<u8> {
        let mut out = Vec::new();
        let block = ReportBlockFields {
            ssrc: Ssrc(7),
            fraction_lost: 12,
            cumulative_lost: -3,
            extended_highest_seq: 0x1_0005,
            jitter: 44,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 99,
        };
        rr::write(Ssrc(1), &[block], &mut out).unwrap();
        nack::write(Ssrc(1), Ssrc(7), &[NackEntry::new(10, 0b101)], &mut out).unwrap();
        app::write(
            Ssrc(1),
            &KeymashApp {
                quality: Quality::new(55).unwrap(),
                mash: MashLevel::new(0.5).unwrap(),
            },
            &mut out,
        )
        .unwrap();
        out
    }

    #[test]
    fn a_compound_packet_parses_back_packet_by_packet() {
        let bytes = compound();
        assert_eq!(validate_compound(&bytes), Ok(3));
        let packets: Vec<_> = parse_compound(&bytes).collect::<Result<_, _>>().unwrap();
        match packets[0] {
            RtcpPacket::ReceiverReport(rr) => {
                assert_eq!(rr.sender_ssrc, Ssrc(1));
                let b = rr.blocks[0].fields();
                assert_eq!(b.cumulative_lost, -3);
                assert_eq!(b.extended_highest_seq, 0x1_0005);
                assert_eq!(b.fraction_lost, 12);
            }
            other => panic!("expected RR, got {other:?}"),
        }
        match packets[1] {
            RtcpPacket::Nack(n) => {
                assert_eq!(n.lost_wire_seqs().collect::<Vec<_>>(), vec![10, 11, 13])
            }
            other => panic!("expected NACK, got {other:?}"),
        }
        match packets[2] {
            RtcpPacket::App(a) => assert_eq!(a.quality.get(), 55),
            other => panic!("expected APP, got {other:?}"),
        }
    }

    #[test]
    fn framing_errors_stop_the_iteration() {
        let mut bytes = compound();
        bytes.truncate(bytes.len() - 2);
        let results: Vec<_> = parse_compound(&bytes).collect();
        assert!(results[0].is_ok());
        assert!(matches!(
            results.last(),
            Some(Err(RtcpParseError::LengthOverrun { .. }))
        ));
        assert!(validate_compound(&bytes).is_err());
    }

    #[test]
    fn a_compound_must_start_with_a_report() {
        let mut out = Vec::new();
        nack::write(Ssrc(1), Ssrc(7), &[NackEntry::new(10, 0)], &mut out).unwrap();
        assert_eq!(
            validate_compound(&out),
            Err(RtcpParseError::CompoundStartsWrong(PT_RTPFB))
        );
    }

    #[test]
    fn padding_is_stripped_and_checked() {
        // An RR with no blocks, padded by 4 bytes.
        let good = [0xA0, PT_RR, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4];
        assert!(matches!(
            parse_compound(&good).next(),
            Some(Ok(RtcpPacket::ReceiverReport(_)))
        ));
        let bad = [0xA0, PT_RR, 0, 2, 0, 0, 0, 1, 0, 0, 0, 9];
        assert!(matches!(
            parse_compound(&bad).next(),
            Some(Err(RtcpParseError::BadPadding { .. }))
        ));
    }
}
