//! The RTP fixed header (RFC 3550 section 5.1): parsed in place over the received bytes with
//! zerocopy, strict about every length, and written back out for sending.
//!
//! keymash never sends CSRCs or padding, but a standard RTP packet may carry them, so the parser
//! accepts and skips them with every length checked, rather than misreading the payload.
//!
//! Media packets carry one RFC 8285 header extension (one-byte form): the frame's age when the
//! packet left, [`CaptureAge`] under [`CAPTURE_AGE_EXT_ID`], written in place as it leaves
//! ([`set_capture_age`]). Elements with other IDs are skipped; an element that runs past its
//! block is refused.

use std::fmt;
use std::time::Duration;

use zerocopy::byteorder::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// RTP version carried in every packet.
pub const RTP_VERSION: u8 = 2;
/// Size of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;
/// Largest codec payload keymash sends. A media packet is then at most 1208 bytes of plain RTP
/// ([`MAX_MEDIA_PACKET_LEN`]: the header, the 8-byte capture-age extension, the payload) and
/// 1236 sealed (protection adds [`crate::security::RTP_OVERHEAD`], 28 bytes): 1264 bytes in
/// IPv4 and UDP, 1284 in IPv6, 4 more than IPv6's minimum MTU of 1280 (the payload size was
/// kept, not cut by 8 bytes, since every LAN keymash runs on is 1500-byte Ethernet). A FEC
/// repair packet carries 14 bytes more than its longest source (repair header and length, see
/// [`crate::fec`]) and no extension: at most 1214 bytes plain and 1242 sealed, 1290 in IPv6.
pub const MAX_PAYLOAD_LEN: usize = 1188;
/// Largest RTP media packet as written, before sealing: sealed it is
/// [`crate::security::RTP_OVERHEAD`] (28) bytes longer, 1236.
pub const MAX_MEDIA_PACKET_LEN: usize = RTP_HEADER_LEN + CAPTURE_AGE_EXT_LEN + MAX_PAYLOAD_LEN;

/// "defined by profile" value of an RFC 8285 one-byte-header extension block.
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;

/// Local ID (1..=14) of the capture-age element in the one-byte form. keymash has no SDP to
/// negotiate IDs (RFC 8285 section 5), so it is fixed here; 1 because it is keymash's only
/// element. Receivers skip any other ID.
pub const CAPTURE_AGE_EXT_ID: u8 = 1;

/// Bytes of a capture-age element's data (its one-byte header says length - 1 = 2).
pub const CAPTURE_AGE_LEN: usize = 3;

/// Bytes a media packet's header grows by with the capture-age extension: 4 for the block's
/// profile and length, 1 element header, 3 data bytes. That is exactly one 32-bit word, so no
/// padding is needed (see [`MAX_PAYLOAD_LEN`] for what it does to the packet size).
pub const CAPTURE_AGE_EXT_LEN: usize = 4 + 1 + CAPTURE_AGE_LEN;

/// How long before a packet left the sender its frame was captured, as the sender measured on
/// its own clock (so no clock sync between the PCs is needed). It includes the delay buffer's
/// hold, encoding and pacing.
///
/// On the wire: 24 bits in units of 100 µs, saturating. Why this unit: the age includes
/// `delay.seconds` (up to 600 s), so 24 bits of microseconds (16.7 s) would overflow and 24
/// bits of milliseconds would cost up to a millisecond of the 5 ms the figure must agree
/// within; 100 µs units reach 1677 s with a tenth of a millisecond's resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CaptureAge(Duration);

impl CaptureAge {
    /// Resolution of the wire form.
    pub const UNIT: Duration = Duration::from_micros(100);
    /// Largest age the wire form holds; older frames say this.
    pub const MAX: CaptureAge = CaptureAge(Duration::from_micros(100 * 0xFF_FFFF));

    /// `age`, rounded to the wire's resolution and saturated at [`CaptureAge::MAX`].
    pub fn new(age: Duration) -> Self {
        let units = (age.as_nanos() + Self::UNIT.as_nanos() / 2) / Self::UNIT.as_nanos();
        CaptureAge::from_units(units.min(0xFF_FFFF) as u32)
    }

    fn from_units(units: u32) -> Self {
        CaptureAge(Self::UNIT * units)
    }

    pub fn get(self) -> Duration {
        self.0
    }

    fn to_wire(self) -> [u8; CAPTURE_AGE_LEN] {
        let units = (self.0.as_nanos() / Self::UNIT.as_nanos()).min(0xFF_FFFF) as u32;
        let [_, a, b, c] = units.to_be_bytes();
        [a, b, c]
    }

    fn from_wire(bytes: [u8; CAPTURE_AGE_LEN]) -> Self {
        let [a, b, c] = bytes;
        CaptureAge::from_units(u32::from_be_bytes([0, a, b, c]))
    }
}

/// Where the capture-age element's data starts in a packet written with it: after the fixed
/// header, the block's profile and length, and the element's one-byte header.
const CAPTURE_AGE_AT: usize = RTP_HEADER_LEN + 4 + 1;

/// Writes `age` into the capture-age element of `packet`, a packet [`RtpHeader::write_with`]
/// wrote with one (sealed or not: the element is in the clear header). The sender does this as
/// the packet leaves, so the age counts pacing and its own wake-up. False, and nothing
/// changed, if the packet has no such element there.
pub fn set_capture_age(packet: &mut [u8], age: CaptureAge) -> bool {
    let element_header = (CAPTURE_AGE_EXT_ID << 4) | (CAPTURE_AGE_LEN as u8 - 1);
    let [p0, p1] = ONE_BYTE_PROFILE.to_be_bytes();
    // X set and no CSRCs; a one-word one-byte block whose first element is the capture age.
    let ours = packet.first().is_some_and(|&b| b & 0x1F == 0x10)
        && packet.get(RTP_HEADER_LEN..CAPTURE_AGE_AT) == Some(&[p0, p1, 0, 1, element_header][..]);
    match packet.get_mut(CAPTURE_AGE_AT..CAPTURE_AGE_AT + CAPTURE_AGE_LEN) {
        Some(data) if ours => {
            data.copy_from_slice(&age.to_wire());
            true
        }
        _ => false,
    }
}

/// The capture age in an RFC 8285 one-byte-header extension block (`data` is the block's
/// words after its profile and length). Padding bytes are skipped, other IDs are skipped by
/// their length, ID 15 (and a non-zero byte with ID 0) ends the block (section 4.2); an element
/// running past the block is malformed. A capture-age ID with the wrong length is someone else's element: ignored.
fn one_byte_capture_age(mut data: &[u8]) -> Result<Option<CaptureAge>, RtpParseError> {
    let mut age = None;
    while let Some((&first, rest)) = data.split_first() {
        if first == 0 {
            data = rest;
            continue;
        }
        let id = first >> 4;
        // ID 15 is reserved and ends the block; ID 0 is padding only, so a zero ID with a
        // length is not an element anyone defined: stop there rather than guess its length.
        if id == 15 || id == 0 {
            break;
        }
        let len = usize::from(first & 0x0F) + 1;
        let element = rest
            .get(..len)
            .ok_or(RtpParseError::ExtensionElementOverrun { id, len })?;
        if id == CAPTURE_AGE_EXT_ID {
            if let Ok(bytes) = <[u8; CAPTURE_AGE_LEN]>::try_from(element) {
                age = Some(CaptureAge::from_wire(bytes));
            }
        }
        data = &rest[len..];
    }
    Ok(age)
}

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
    #[error("header extension element {id} of {len} bytes runs past its block")]
    ExtensionElementOverrun { id: u8, len: usize },
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
    /// The sender's [`CaptureAge`] element, if the packet has one.
    pub capture_age: Option<CaptureAge>,
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

        let mut capture_age = None;
        let rest = if has_extension {
            // 16-bit profile id, 16-bit length in 32-bit words, then the words.
            let head = rest.get(..4).ok_or(RtpParseError::ExtensionOverrun)?;
            let profile = u16::from_be_bytes([head[0], head[1]]);
            let ext_len = 4 + usize::from(u16::from_be_bytes([head[2], head[3]])) * 4;
            let block = rest
                .get(4..ext_len)
                .ok_or(RtpParseError::ExtensionOverrun)?;
            // Other profiles (RFC 8285's two-byte form, older uses) are skipped whole.
            if profile == ONE_BYTE_PROFILE {
                capture_age = one_byte_capture_age(block)?;
            }
            &rest[ext_len..]
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
            capture_age,
            payload,
        })
    }
}

impl RtpHeader {
    /// Append this header followed by `payload` to `out`.
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) {
        self.write_with(None, payload, out);
    }

    /// Append this header, the capture-age extension when `age` is given, and `payload`.
    pub fn write_with(&self, age: Option<CaptureAge>, payload: &[u8], out: &mut Vec<u8>) {
        let header = WireHeader {
            flags: (RTP_VERSION << 6) | if age.is_some() { 0x10 } else { 0 },
            marker_pt: (u8::from(self.marker) << 7) | self.payload_type.get(),
            seq: U16::new(self.seq),
            timestamp: U32::new(self.timestamp),
            ssrc: U32::new(self.ssrc.0),
        };
        out.reserve(RTP_HEADER_LEN + CAPTURE_AGE_EXT_LEN + payload.len());
        out.extend_from_slice(header.as_bytes());
        if let Some(age) = age {
            const WORDS: u16 = (CAPTURE_AGE_EXT_LEN as u16 - 4) / 4;
            const _: () = assert!(CAPTURE_AGE_EXT_LEN.is_multiple_of(4));
            out.extend_from_slice(&ONE_BYTE_PROFILE.to_be_bytes());
            out.extend_from_slice(&WORDS.to_be_bytes());
            out.push((CAPTURE_AGE_EXT_ID << 4) | (CAPTURE_AGE_LEN as u8 - 1));
            out.extend_from_slice(&age.to_wire());
        }
        out.extend_from_slice(payload);
    }

    /// This header with the capture-age extension and `payload` as one new packet.
    pub fn to_packet_with(&self, age: Option<CaptureAge>, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(RTP_HEADER_LEN + CAPTURE_AGE_EXT_LEN + payload.len());
        self.write_with(age, payload, &mut out);
        out
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
    fn capture_age_round_trips_through_the_extension() {
        for ms in [0u64, 1, 33, 30_000, 600_000] {
            let age = CaptureAge::new(Duration::from_millis(ms));
            let bytes = header(true).to_packet_with(Some(age), b"pay");
            assert_eq!(bytes.len(), RTP_HEADER_LEN + CAPTURE_AGE_EXT_LEN + 3);
            let p = RtpPacket::parse(&bytes).unwrap();
            assert_eq!(p.capture_age, Some(age), "{ms} ms");
            assert_eq!(p.capture_age.unwrap().get(), Duration::from_millis(ms));
            assert_eq!(p.payload, b"pay");
            assert_eq!(p.seq, 0xBEEF);
        }
        assert_eq!(
            RtpPacket::parse(&header(false).to_packet(b"x"))
                .unwrap()
                .capture_age,
            None
        );
    }

    #[test]
    fn capture_age_bytes_match_rfc_8285_one_byte_form() {
        let age = CaptureAge::new(Duration::from_micros(123_456));
        let bytes = header(false).to_packet_with(Some(age), b"");
        // X bit set; 0xBEDE, one word; ID 1, length - 1 = 2; 1235 units of 100 us.
        assert_eq!(bytes[0], 0x90);
        assert_eq!(&bytes[12..], &[0xBE, 0xDE, 0, 1, 0x12, 0x00, 0x04, 0xD3]);
        assert_eq!(age.get(), Duration::from_micros(123_500));
    }

    #[test]
    fn the_capture_age_is_rewritten_in_place_and_only_in_our_element() {
        let age = CaptureAge::new(Duration::from_millis(30_007));
        let mut bytes = header(true).to_packet_with(Some(CaptureAge::default()), b"pay");
        assert!(set_capture_age(&mut bytes, age));
        assert_eq!(bytes, header(true).to_packet_with(Some(age), b"pay"));
        // No extension, or someone else's element first: left alone.
        let mut plain = header(true).to_packet(b"pay");
        let before = plain.clone();
        assert!(!set_capture_age(&mut plain, age));
        assert_eq!(plain, before);
        let mut other = with_extension(ONE_BYTE_PROFILE, &[0x22, 0, 0, 0]);
        let before = other.clone();
        assert!(!set_capture_age(&mut other, age));
        assert_eq!(other, before);
        assert!(!set_capture_age(&mut bytes[..18], age));
    }

    #[test]
    fn capture_age_rounds_and_saturates() {
        assert_eq!(
            CaptureAge::new(Duration::from_micros(49)).get(),
            Duration::ZERO
        );
        assert_eq!(
            CaptureAge::new(Duration::from_micros(50)).get(),
            Duration::from_micros(100)
        );
        assert_eq!(
            CaptureAge::new(Duration::from_secs(100_000)),
            CaptureAge::MAX
        );
        assert!(CaptureAge::MAX.get() > Duration::from_secs(1600));
    }

    fn with_extension(profile: u16, words: &[u8]) -> Vec<u8> {
        let mut b = vec![0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        b.extend_from_slice(&profile.to_be_bytes());
        b.extend_from_slice(&((words.len() / 4) as u16).to_be_bytes());
        b.extend_from_slice(words);
        b.extend_from_slice(b"hello");
        b
    }

    #[test]
    fn unknown_elements_and_padding_are_skipped() {
        // ID 3 (2 bytes), a padding byte, ID 1 (3 bytes), padding to the word.
        let b = with_extension(
            ONE_BYTE_PROFILE,
            &[0x31, 0xAA, 0xBB, 0x00, 0x12, 0, 0, 10, 0, 0, 0, 0],
        );
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(
            p.capture_age,
            Some(CaptureAge::new(Duration::from_millis(1)))
        );
        assert_eq!(p.payload, b"hello");
        // Only unknown IDs: no age, payload intact.
        let b = with_extension(ONE_BYTE_PROFILE, &[0xE0, 7, 0, 0]);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!((p.capture_age, p.payload), (None, &b"hello"[..]));
        // ID 1 with another length is not ours; ID 15 ends the block; two-byte form skipped.
        for (profile, words) in [
            (ONE_BYTE_PROFILE, &[0x11, 1, 2, 0][..]),
            (ONE_BYTE_PROFILE, &[0xF0, 0x12, 0, 0, 10, 0, 0, 0][..]),
            (0x1000, &[0x01, 0x03, 0, 0, 10, 0, 0, 0][..]),
        ] {
            let b = with_extension(profile, words);
            let p = RtpPacket::parse(&b).unwrap();
            assert_eq!((p.capture_age, p.payload), (None, &b"hello"[..]));
        }
    }

    #[test]
    fn malformed_extensions_are_refused() {
        // An element of 16 bytes in a 4-byte block.
        assert_eq!(
            RtpPacket::parse(&with_extension(ONE_BYTE_PROFILE, &[0x1F, 0, 0, 0])),
            Err(RtpParseError::ExtensionElementOverrun { id: 1, len: 16 })
        );
        // Our element cut by the block's end.
        assert_eq!(
            RtpPacket::parse(&with_extension(ONE_BYTE_PROFILE, &[0, 0, 0, 0x12])),
            Err(RtpParseError::ExtensionElementOverrun { id: 1, len: 3 })
        );
        // A block longer than the packet.
        let mut b = with_extension(ONE_BYTE_PROFILE, &[0x12, 0, 0, 1]);
        b[15] = 9;
        assert_eq!(RtpPacket::parse(&b), Err(RtpParseError::ExtensionOverrun));
        assert_eq!(
            RtpPacket::parse(&b[..14]),
            Err(RtpParseError::ExtensionOverrun)
        );
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
