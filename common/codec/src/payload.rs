//! The fixed header at the start of every payload.
//!
//! ```text
//! offset size field
//!  0     1    magic 'K'
//!  1     1    version (1)
//!  2     2    frame width in pixels         (a decoder refuses payloads for another size)
//!  4     2    frame height in pixels
//!  6     8    frame number                  (which frame this payload belongs to)
//! 14     2    payload index within the frame, 0-based
//! 16     2    payload count of the frame    (index == count - 1 marks the last one)
//! 18     2    macroblock stride S           (1 = raster strips; else dispersed)
//! 20     2    first sequence number k0
//! 22     2    macroblock count M
//! 24     ...  M macroblocks (see `block`), zero-padded to a byte
//! ```
//! All fields big-endian. Macroblock `i` of the payload sits at raster position
//! `((k0 + i) * S) mod macroblocks_per_frame`, so positions cost no bits, and a payload decodes
//! without any other.

use crate::geometry::FrameGeometry;
use keymash_core::FrameNo;

pub const MAGIC: u8 = b'K';
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 24;

/// Why a payload header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("payload of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    TooShort(usize),
    #[error("payload starts with {0:#04x}, not the keymash magic 'K'")]
    BadMagic(u8),
    #[error("payload version {0} is not supported (this decoder reads version {VERSION})")]
    UnsupportedVersion(u8),
    #[error("payload index {index} is not below the payload count {count}")]
    IndexOutOfRange { index: u16, count: u16 },
    #[error("macroblock stride 0 would put every macroblock at one position")]
    ZeroStride,
}

/// The decoded header of a payload: which frame it belongs to and where its macroblocks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadHeader {
    pub width: u16,
    pub height: u16,
    pub frame_no: FrameNo,
    pub payload_index: u16,
    pub payload_count: u16,
    pub mb_stride: u16,
    pub first_seq: u16,
    pub mb_count: u16,
}

impl PayloadHeader {
    /// Reads and checks the header; geometry is checked by the decoder, which knows its own.
    /// Receivers use this to group payloads by frame without decoding them.
    pub fn parse(bytes: &[u8]) -> Result<Self, HeaderError> {
        let h: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(HeaderError::TooShort(bytes.len()))?;
        if h[0] != MAGIC {
            return Err(HeaderError::BadMagic(h[0]));
        }
        if h[1] != VERSION {
            return Err(HeaderError::UnsupportedVersion(h[1]));
        }
        let u16_at = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        let mut frame = [0u8; 8];
        frame.copy_from_slice(&h[6..14]);
        let header = PayloadHeader {
            width: u16_at(2),
            height: u16_at(4),
            frame_no: FrameNo(u64::from_be_bytes(frame)),
            payload_index: u16_at(14),
            payload_count: u16_at(16),
            mb_stride: u16_at(18),
            first_seq: u16_at(20),
            mb_count: u16_at(22),
        };
        if header.payload_index >= header.payload_count {
            return Err(HeaderError::IndexOutOfRange {
                index: header.payload_index,
                count: header.payload_count,
            });
        }
        if header.mb_stride == 0 {
            return Err(HeaderError::ZeroStride);
        }
        Ok(header)
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        let fields: [&[u8]; 10] = [
            &[MAGIC],
            &[VERSION],
            &self.width.to_be_bytes(),
            &self.height.to_be_bytes(),
            &self.frame_no.0.to_be_bytes(),
            &self.payload_index.to_be_bytes(),
            &self.payload_count.to_be_bytes(),
            &self.mb_stride.to_be_bytes(),
            &self.first_seq.to_be_bytes(),
            &self.mb_count.to_be_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            h[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        }
        debug_assert_eq!(at, HEADER_LEN);
        h
    }

    /// True for the frame's last payload (where RTP sets the marker bit).
    pub fn is_last_of_frame(&self) -> bool {
        self.payload_index + 1 == self.payload_count
    }

    /// Raster index of the payload's `i`-th macroblock in a frame of `mb_count` macroblocks.
    pub fn macroblock_position(&self, i: usize, mb_count: usize) -> usize {
        crate::geometry::position_of(
            usize::from(self.first_seq) + i,
            usize::from(self.mb_stride),
            mb_count,
        )
    }

    /// Whether the header's frame size is `geometry`.
    pub fn matches(&self, geometry: FrameGeometry) -> bool {
        usize::from(self.width) == geometry.width() && usize::from(self.height) == geometry.height()
    }
}

/// Overwrites the index and count fields of an already written header in place.
pub(crate) fn patch_index_and_count(header: &mut [u8], index: u16, count: u16) {
    if let Some(field) = header.get_mut(14..18) {
        field[..2].copy_from_slice(&index.to_be_bytes());
        field[2..].copy_from_slice(&count.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PayloadHeader {
        PayloadHeader {
            width: 640,
            height: 480,
            frame_no: FrameNo(0x0102_0304_0506_0708),
            payload_index: 3,
            payload_count: 9,
            mb_stride: 463,
            first_seq: 1000,
            mb_count: 40,
        }
    }

    #[test]
    fn header_round_trips_and_is_24_bytes() {
        let mut buf = Vec::new();
        sample().write(&mut buf);
        assert_eq!(buf.len(), HEADER_LEN);
        assert_eq!(PayloadHeader::parse(&buf), Ok(sample()));
        patch_index_and_count(&mut buf, 8, 9);
        assert!(PayloadHeader::parse(&buf).unwrap().is_last_of_frame());
    }

    #[test]
    fn broken_headers_are_refused_with_their_cause() {
        let mut good = Vec::new();
        sample().write(&mut good);
        let edit = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            b
        };
        let cases: Vec<(Vec<u8>, HeaderError)> = vec![
            (good[..23].to_vec(), HeaderError::TooShort(23)),
            (edit(0, b'J'), HeaderError::BadMagic(b'J')),
            (edit(1, 2), HeaderError::UnsupportedVersion(2)),
            (
                edit(15, 9),
                HeaderError::IndexOutOfRange { index: 9, count: 9 },
            ),
            (
                {
                    let mut b = edit(18, 0);
                    b[19] = 0;
                    b
                },
                HeaderError::ZeroStride,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(PayloadHeader::parse(&bytes), Err(want));
        }
    }
}
