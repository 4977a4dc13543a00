//! Fixtures of the protection's tests (tests/security.rs) and bench (benches/security.rs, which
//! includes this file by path): keys, endpoints, and packets to seal.
#![allow(dead_code)]

use keymash_core::key::PreSharedKey;
use keymash_transport::rtcp;
use keymash_transport::rtp::{PayloadType, RtpHeader};
use keymash_transport::security::{Direction, Endpoint, SessionSalt};
use keymash_transport::{Protection, Ssrc, TransportConfig};

/// The pre-shared key of 32 bytes `b`.
pub(crate) fn key(b: u8) -> PreSharedKey {
    PreSharedKey::from_bytes([b; 32])
}

/// The default transport protected under `key(7)`, with NACK on or off.
pub(crate) fn protected(nack: bool) -> TransportConfig {
    TransportConfig {
        nack,
        security: Protection::PreShared(key(7)),
        ..TransportConfig::default()
    }
}

/// An endpoint that seals what it sends in `direction` under `key(key_byte)`, in the session
/// `salt`.
pub(crate) fn endpoint(key_byte: u8, direction: Direction, salt: [u8; 8]) -> Endpoint {
    Endpoint::new(key(key_byte), direction, SessionSalt::new(salt))
}

/// The header of a video packet (payload type 96), no marker, timestamp 0.
pub(crate) fn video_header(seq: u16, ssrc: Ssrc) -> RtpHeader {
    RtpHeader {
        payload_type: PayloadType::DYNAMIC_VIDEO,
        marker: false,
        seq,
        timestamp: 0,
        ssrc,
    }
}

/// An RTCP receiver report without report blocks: the first packet of every compound a
/// receiver sends.
pub(crate) fn receiver_report(ssrc: Ssrc) -> Vec<u8> {
    let mut out = Vec::new();
    rtcp::rr::write(ssrc, &[], &mut out).expect("an empty receiver report fits");
    out
}

/// A receiver's RTCP compound (from SSRC 1) asking the `media` stream to resend the `count`
/// packets up to `newest`.
pub(crate) fn nack_for_newest(media: Ssrc, newest: u16, count: u16) -> Vec<u8> {
    let mut out = receiver_report(Ssrc(1));
    rtcp::nack::write(
        Ssrc(1),
        media,
        &rtcp::nack::entries_for((0..count).map(|i| newest.wrapping_sub(i))),
        &mut out,
    )
    .expect("the NACK fits");
    out
}
