//! The RTP fixed header (RFC 3550 section 5.1): parsed in place over the received bytes with
//! zerocopy, strict about every length, and written back out for sending.
//!
//! keymash never sends CSRCs, header extensions or padding, but a standard RTP packet may carry
//! them, so the parser accepts and skips them with every length checked, rather than
//! misreading the payload.

use std::fmt;

use zerocopy::byteorder::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// RTP version carried in every packet.
pub const RTP_VERSION: u8 = 2;
/// Size of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;
/// Largest codec payload keymash sends. A media packet is then at most 1200 bytes of plain RTP
/// ([`MAX_MEDIA_PACKET_LEN`]) and 1228 sealed (protection adds
/// [`crate::security::RTP_OVERHEAD`], 28 bytes): 1256 bytes in IPv4 and UDP, 1276 in IPv6, so
/// it passes even IPv6's minimum MTU of 1280 unfragmented. A FEC repair packet carries 14 bytes
/// more than its longest source (repair header and length, see [`crate::fec`]): at most 1214
/// bytes plain and 1242 sealed, which is 1290 in IPv6 and needs a path MTU above the minimum.
pub const MAX_PAYLOAD_LEN: usize = 1188;
/// Largest RTP media packet as written, before sealing: sealed it is
/// [`crate::security::RTP_OVERHEAD`] (28) bytes longer, 1228.
pub const MAX_MEDIA_PACKET_LEN: usize = RTP_HEADER_LEN + MAX_PAYLOAD_LEN;

/// Synchronisation source identifier of an RTP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Ssrc(pub u32);

impl fmt::Display for Ssrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// A payload type that was out of range or clashes with RTCP packet types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadTypeError {
    #[error("RTP payload type must be 0..=127, got {0}")]
    TooLarge(u8),
    #[error("RTP payload type {0} is in 64..=95, which collides with RTCP when both share a port (RFC 5761 section 4)")]
    CollidesWithRtcp(u8),
}

/// An RTP payload type (7 bits), never one that RTCP-mux could confuse with RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadType(u8);

impl PayloadType {
    /// The first dynamic payload type, keymash's default for video.
    pub const DYNAMIC_VIDEO: PayloadType = PayloadType(96);
    /// The default payload type of FEC repair packets.
    pub const DYNAMIC_REPAIR: PayloadType = PayloadType(97);

    pub fn new(pt: u8) -> Result<Self, PayloadTypeError> {
        if pt > 127 {
            Err(PayloadTypeError::TooLarge(pt))
        } else if (64..=95).contains(&pt) {
            Err(PayloadTypeError::CollidesWithRtcp(pt))
        } else {
            Ok(PayloadType(pt))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// The 12-byte fixed header as it sits on the wire.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct WireHeader {
    /// V(2) P(1) X(1) CC(4)
    flags: u8,
    /// M(1) PT(7)
    marker_pt: u8,
    seq: U16,
    timestamp: U32,
    ssrc: U32,
}

const _: () = assert!(std::mem::size_of::<WireHeader>() == RTP_HEADER_LEN);

/// Why a datagram is not a well-formed RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpParseError {
    #[error("datagram of {0} bytes is shorter than the 12-byte RTP header")]
    TooShort(usize),
    #[error("RTP version {0}, expected 2")]
    WrongVersion(u8),
    #[error("{count} CSRCs do not fit in {len} bytes")]
    CsrcOverrun { count: usize, len: usize },
    #[error("header extension runs past the end of the packet")]
    ExtensionOverrun,
    #[error("padding count {count} is invalid for {available} bytes after the header")]
    BadPadding { count: usize, available: usize },
}

/// The header fields keymash uses, for writing a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: PayloadType,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: Ssrc,
}

/// A parsed RTP packet borrowing its payload from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Raw 7-bit payload type as received (the caller decides which ones it accepts).
    pub payload_type: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: Ssrc,
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Parse a datagram as RTP. Never panics, whatever the bytes.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, RtpParseError> {
        let (header, rest) = WireHeader::ref_from_prefix(datagram)
            .map_err(|_| RtpParseError::TooShort(datagram.len()))?;
        let version = header.flags >> 6;
        if version != RTP_VERSION {
            return Err(RtpParseError::WrongVersion(version));
        }
        let has_padding = header.flags & 0x20 != 0;
        let has_extension = header.flags & 0x10 != 0;
        let csrc_count = usize::from(header.flags & 0x0F);

        let csrc_len = csrc_count * 4;
        let rest = rest.get(csrc_len..).ok_or(RtpParseError::CsrcOverrun {
            count: csrc_count,
            len: rest.len(),
        })?;

        let rest = if has_extension {
            // 16-bit profile id, 16-bit length in 32-bit words, then the words.
            let words = rest.get(2..4).ok_or(RtpParseError::ExtensionOverrun)?;
            let ext_len = 4 + usize::from(u16::from_be_bytes([words[0], words[1]])) * 4;
            rest.get(ext_len..).ok_or(RtpParseError::ExtensionOverrun)?
        } else {
            rest
        };

        let payload = if has_padding {
            let count = usize::from(rest.last().copied().unwrap_or(0));
            if count == 0 || count > rest.len() {
                return Err(RtpParseError::BadPadding {
                    count,
                    available: rest.len(),
                });
            }
            &rest[..rest.len() - count]
        } else {
            rest
        };

        Ok(RtpPacket {
            payload_type: header.marker_pt & 0x7F,
            marker: header.marker_pt & 0x80 != 0,
            seq: header.seq.get(),
            timestamp: header.timestamp.get(),
            ssrc: Ssrc(header.ssrc.get()),
            payload,
        })
    }
}

impl RtpHeader {
    /// Append this header followed by `payload` to `out`.
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) {
        let header = WireHeader {
            flags: RTP_VERSION << 6,
            marker_pt: (u8::from(self.marker) << 7) | self.payload_type.get(),
            seq: U16::new(self.seq),
            timestamp: U32::new(self.timestamp),
            ssrc: U32::new(self.ssrc.0),
        };
        out.reserve(RTP_HEADER_LEN + payload.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(payload);
    }

    /// This header and `payload` as one new packet.
    pub fn to_packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(RTP_HEADER_LEN + payload.len());
        self.write(payload, &mut out);
        out
    }
}

/// RTP clock rate for video (RFC 3551).
pub const VIDEO_CLOCK_RATE_HZ: u64 = 90_000;

/// The 90 kHz RTP timestamp of a capture time `since_start` after the stream's start, offset
/// by the stream's random initial timestamp. Wraps as RFC 3550 says it must.
pub fn rtp_timestamp_90khz(since_start: std::time::Duration, initial: u32) -> u32 {
    let ticks = since_start.as_nanos() * u128::from(VIDEO_CLOCK_RATE_HZ) / 1_000_000_000;
    initial.wrapping_add(ticks as u32)
}

/// What a datagram on the shared RTP/RTCP port is (RFC 5761 section 4: the second byte of
/// RTCP packets is a packet type 192..=223, which no RTP payload type we allow produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    Rtp,
    Rtcp,
    /// Not version 2 or too short to tell: not ours.
    Other,
}

pub fn classify(datagram: &[u8]) -> DatagramKind {
    match datagram {
        [first, second, ..] if first >> 6 == RTP_VERSION => {
            if (192..=223).contains(second) {
                DatagramKind::Rtcp
            } else {
                DatagramKind::Rtp
            }
        }
        _ => DatagramKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(marker: bool) -> RtpHeader {
        RtpHeader {
            payload_type: PayloadType::DYNAMIC_VIDEO,
            marker,
            seq: 0xBEEF,
            timestamp: 0x0102_0304,
            ssrc: Ssrc(0xCAFE_F00D),
        }
    }

    #[test]
    fn written_packets_parse_back_to_the_same_fields() {
        for marker in [false, true] {
            for payload in [&b""[..], b"x", &[7u8; MAX_PAYLOAD_LEN][..]] {
                let bytes = header(marker).to_packet(payload);
                let p = RtpPacket::parse(&bytes).unwrap();
                assert_eq!(p.payload_type, 96);
                assert_eq!(p.marker, marker);
                assert_eq!(p.seq, 0xBEEF);
                assert_eq!(p.timestamp, 0x0102_0304);
                assert_eq!(p.ssrc, Ssrc(0xCAFE_F00D));
                assert_eq!(p.payload, payload);
            }
        }
    }

    #[test]
    fn header_bytes_match_rfc_3550_layout() {
        let bytes = header(true).to_packet(b"");
        assert_eq!(
            bytes,
            [0x80, 0xE0, 0xBE, 0xEF, 1, 2, 3, 4, 0xCA, 0xFE, 0xF0, 0x0D]
        );
    }

    #[test]
    fn malformed_headers_are_refused_with_their_cause() {
        let base = header(false).to_packet(b"abcd");
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = base.clone();
            f(&mut b);
            RtpPacket::parse(&b).map(|_| ())
        };
        let cases: Vec<(&str, Result<(), RtpParseError>, Option<RtpParseError>)> = vec![
            (
                "empty",
                RtpPacket::parse(&[]).map(|_| ()),
                Some(RtpParseError::TooShort(0)),
            ),
            (
                "11 bytes",
                RtpPacket::parse(&base[..11]).map(|_| ()),
                Some(RtpParseError::TooShort(11)),
            ),
            (
                "version 1",
                with(&|b| b[0] = 0x40),
                Some(RtpParseError::WrongVersion(1)),
            ),
            (
                "2 CSRC in 4 bytes",
                with(&|b| b[0] |= 2),
                Some(RtpParseError::CsrcOverrun { count: 2, len: 4 }),
            ),
            ("extension without room", with(&|b| b[0] |= 0x10), None),
            (
                "padding 0",
                with(&|b| {
                    b[0] |= 0x20;
                    *b.last_mut().unwrap() = 0
                }),
                Some(RtpParseError::BadPadding {
                    count: 0,
                    available: 4,
                }),
            ),
            (
                "padding too long",
                with(&|b| {
                    b[0] |= 0x20;
                    *b.last_mut().unwrap() = 5
                }),
                Some(RtpParseError::BadPadding {
                    count: 5,
                    available: 4,
                }),
            ),
        ];
        for (name, got, want) in cases {
            match want {
                Some(e) => assert_eq!(got, Err(e), "{name}"),
                None => assert!(got.is_err(), "{name}"),
            }
        }
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped_exactly() {
        let mut b = vec![0x80 | 0x20 | 0x10 | 1, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        b.extend_from_slice(&[1, 2, 3, 4]); // one CSRC
        b.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // extension of one word
        b.extend_from_slice(b"hello");
        b.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.payload, b"hello");
    }

    #[test]
    fn payload_types_that_collide_with_rtcp_are_refused() {
        assert!(PayloadType::new(96).is_ok());
        assert!(PayloadType::new(35).is_ok());
        assert_eq!(
            PayloadType::new(72),
            Err(PayloadTypeError::CollidesWithRtcp(72))
        );
        assert_eq!(PayloadType::new(128), Err(PayloadTypeError::TooLarge(128)));
    }

    #[test]
    fn datagrams_are_told_apart_by_their_second_byte() {
        assert_eq!(classify(&[0x80, 96]), DatagramKind::Rtp);
        assert_eq!(classify(&[0x80, 0xE0]), DatagramKind::Rtp);
        assert_eq!(classify(&[0x81, 201]), DatagramKind::Rtcp);
        assert_eq!(classify(&[0x40, 96]), DatagramKind::Other);
        assert_eq!(classify(&[0x80]), DatagramKind::Other);
    }

    #[test]
    fn timestamps_tick_at_90_khz_and_wrap() {
        use std::time::Duration;
        assert_eq!(rtp_timestamp_90khz(Duration::from_secs(1), 0), 90_000);
        assert_eq!(rtp_timestamp_90khz(Duration::from_millis(1), u32::MAX), 89);
    }
}
