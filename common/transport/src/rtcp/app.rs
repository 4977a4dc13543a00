//! The keymash APP packet (RFC 3550 section 6.7), name "KMSH", subtype 0: the quality the
//! receiver asks the encoder for and the current mash level, so the sender side can show it.
//!
//! Body after the SSRC and name: quality (u8, 1..=100), reserved (u8, 0), mash level (u16,
//! [`MashLevel::as_u16`] fixed point).

use keymash_core::{MashLevel, Quality};
use zerocopy::byteorder::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{body_too_short, CommonHeader, RtcpParseError, RtcpWriteError, PT_APP};
use crate::rtp::Ssrc;

pub const APP_NAME: [u8; 4] = *b"KMSH";
pub const APP_SUBTYPE_QUALITY: u8 = 0;

#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct WireApp {
    ssrc: U32,
    name: [u8; 4],
    quality: u8,
    reserved: u8,
    mash: U16,
}

const WIRE_APP_LEN: usize = 12;
const _: () = assert!(std::mem::size_of::<WireApp>() == WIRE_APP_LEN);

/// What the receiver tells the sender in a KMSH APP packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeymashApp {
    pub quality: Quality,
    pub mash: MashLevel,
}

impl Eq for KeymashApp {}

impl KeymashApp {
    pub(crate) fn parse(subtype: u8, body: &[u8]) -> Result<Self, RtcpParseError> {
        let (app, _) = WireApp::ref_from_prefix(body)
            .map_err(|_| body_too_short("APP", body.len(), WIRE_APP_LEN))?;
        if app.name != APP_NAME || subtype != APP_SUBTYPE_QUALITY {
            return Err(RtcpParseError::ForeignApp(app.name));
        }
        let quality =
            Quality::new(app.quality).map_err(|_| RtcpParseError::BadQuality(app.quality))?;
        Ok(KeymashApp {
            quality,
            mash: MashLevel::from_u16(app.mash.get()),
        })
    }
}

/// Append a KMSH APP packet to `out`.
pub fn write(sender_ssrc: Ssrc, app: &KeymashApp, out: &mut Vec<u8>) -> Result<(), RtcpWriteError> {
    let header = CommonHeader::new(APP_SUBTYPE_QUALITY, PT_APP, WIRE_APP_LEN)?;
    out.extend_from_slice(header.as_bytes());
    let wire = WireApp {
        ssrc: U32::new(sender_ssrc.0),
        name: APP_NAME,
        quality: app.quality.get(),
        reserved: 0,
        mash: U16::new(app.mash.as_u16()),
    };
    out.extend_from_slice(wire.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_packets_with_another_name_or_a_bad_quality_are_refused() {
        let mut body = [0u8; 12];
        body[4..8].copy_from_slice(b"KMSH");
        body[8] = 50;
        assert_eq!(KeymashApp::parse(0, &body).unwrap().quality.get(), 50);
        body[8] = 0;
        assert_eq!(
            KeymashApp::parse(0, &body),
            Err(RtcpParseError::BadQuality(0))
        );
        body[8] = 50;
        assert!(matches!(
            KeymashApp::parse(1, &body),
            Err(RtcpParseError::ForeignApp(_))
        ));
        body[4] = b'X';
        assert!(matches!(
            KeymashApp::parse(0, &body),
            Err(RtcpParseError::ForeignApp(_))
        ));
        assert!(KeymashApp::parse(0, &body[..11]).is_err());
    }
}
