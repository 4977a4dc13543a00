//! A machine-readable stamp of frame number and capture time, drawn into the picture itself so
//! delay and latency can be measured from pixels alone (after coding, transport and decoding).
//!
//! The stamp is 80 bits (frame number u32, capture time in milliseconds u32, CRC-16/CCITT of the
//! eight bytes before it) drawn as 16 x 5 cells of [`CELL`] x [`CELL`] luma pixels, black (0) or
//! white (1), at [`ORIGIN`] from the top-left corner. Each cell is exactly one 8x8 DCT block of
//! the codec, aligned to the block grid, and flat: a flat block is pure DC, which even quality 1
//! keeps within a few levels, so the cells survive coding. The reader averages each cell and
//! refuses cells that are neither clearly dark nor clearly bright (a damaged or mixed picture);
//! the CRC refuses the rest (stale blocks from another frame after a lost packet).

use keymash_codec::I420Frame;
use keymash_core::FrameNo;

/// Side of one bit cell in luma pixels: one 8x8 DCT block.
pub const CELL: usize = 8;
/// Cells per row of the stamp.
pub const COLUMNS: usize = 16;
/// Rows of cells.
pub const ROWS: usize = 5;
/// Top-left corner of the stamp (x, y) in luma pixels, on the macroblock grid.
pub const ORIGIN: (usize, usize) = (16, 16);
/// Stamp size in luma pixels (width, height).
pub const SIZE: (usize, usize) = (COLUMNS * CELL, ROWS * CELL);

/// Luma of a 0 cell and of a 1 cell (video range black and white).
const DARK: u8 = 16;
const BRIGHT: u8 = 235;
/// A cell mean between these two is neither bit: the picture under the stamp is damaged.
const DARK_BELOW: u32 = 96;
const BRIGHT_ABOVE: u32 = 160;

const BITS: usize = COLUMNS * ROWS;
const _: () = assert!(BITS == 80, "frame (32) + capture ms (32) + CRC-16 (16)");

/// What the stamp says about a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The capture frame number, modulo 2^32.
    pub frame: u32,
    /// CLOCK_MONOTONIC capture time in milliseconds, modulo 2^32 (wraps every 49.7 days;
    /// compare with [`Stamp::age_ms`], which handles the wrap).
    pub capture_ms: u32,
}

impl Stamp {
    /// The stamp of frame `frame` captured at `capture_ns` (CLOCK_MONOTONIC nanoseconds).
    pub fn new(frame: FrameNo, capture_ns: u64) -> Self {
        Stamp {
            frame: frame.0 as u32,
            capture_ms: (capture_ns / 1_000_000) as u32,
        }
    }

    /// Milliseconds from capture to `now_ns` (same clock, same machine), negative if `now_ns`
    /// is before the capture. Correct across the 2^32 ms wrap for ages under 24 days.
    pub fn age_ms(self, now_ns: u64) -> i64 {
        let now_ms = (now_ns / 1_000_000) as u32;
        i64::from(now_ms.wrapping_sub(self.capture_ms) as i32)
    }

    fn to_bits(self) -> [bool; BITS] {
        let mut bytes = [0u8; 10];
        bytes[..4].copy_from_slice(&self.frame.to_be_bytes());
        bytes[4..8].copy_from_slice(&self.capture_ms.to_be_bytes());
        let crc = crc16(&bytes[..8]);
        bytes[8..].copy_from_slice(&crc.to_be_bytes());
        let mut bits = [false; BITS];
        for (i, bit) in bits.iter_mut().enumerate() {
            *bit = bytes[i / 8] & (0x80 >> (i % 8)) != 0;
        }
        bits
    }

    fn from_bits(bits: &[bool; BITS]) -> Option<Self> {
        let mut bytes = [0u8; 10];
        for (i, &bit) in bits.iter().enumerate() {
            if bit {
                bytes[i / 8] |= 0x80 >> (i % 8);
            }
        }
        let crc = u16::from_be_bytes([bytes[8], bytes[9]]);
        if crc16(&bytes[..8]) != crc {
            return None;
        }
        Some(Stamp {
            frame: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            capture_ms: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        })
    }
}

/// Whether a `width` x `height` picture has room for the stamp.
pub fn fits(width: usize, height: usize) -> bool {
    width >= ORIGIN.0 + SIZE.0 && height >= ORIGIN.1 + SIZE.1
}

/// Draws `stamp` into `frame` (luma cells, neutral chroma under them). Returns false, drawing
/// nothing, if the frame is too small to hold it (see [`fits`]).
pub fn draw_stamp(frame: &mut I420Frame, stamp: Stamp) -> bool {
    let geometry = frame.geometry();
    let (width, height) = (geometry.width(), geometry.height());
    if !fits(width, height) {
        return false;
    }
    let chroma_width = geometry.chroma_width();
    let bits = stamp.to_bits();
    let (y, u, v) = frame.planes_mut();
    for (i, &bit) in bits.iter().enumerate() {
        let x0 = ORIGIN.0 + (i % COLUMNS) * CELL;
        let y0 = ORIGIN.1 + (i / COLUMNS) * CELL;
        let level = if bit { BRIGHT } else { DARK };
        for row in y0..y0 + CELL {
            let start = row * width + x0;
            if let Some(cells) = y.get_mut(start..start + CELL) {
                cells.fill(level);
            }
        }
    }
    for row in ORIGIN.1 / 2..(ORIGIN.1 + SIZE.1) / 2 {
        let start = row * chroma_width + ORIGIN.0 / 2;
        let end = start + SIZE.0 / 2;
        for plane in [&mut *u, &mut *v] {
            if let Some(span) = plane.get_mut(start..end) {
                span.fill(128);
            }
        }
    }
    true
}

/// Reads the stamp back from a (possibly decoded) frame: `None` if there is none, it is damaged,
/// or the frame is too small.
pub fn read_stamp(frame: &I420Frame) -> Option<Stamp> {
    let geometry = frame.geometry();
    read_stamp_from_luma(frame.y(), geometry.width(), geometry.height())
}

/// [`read_stamp`] on a bare luma plane of `width` x `height` (rows packed).
pub fn read_stamp_from_luma(luma: &[u8], width: usize, height: usize) -> Option<Stamp> {
    if !fits(width, height) || luma.len() < width * height {
        return None;
    }
    let mut bits = [false; BITS];
    for (i, bit) in bits.iter_mut().enumerate() {
        let x0 = ORIGIN.0 + (i % COLUMNS) * CELL;
        let y0 = ORIGIN.1 + (i / COLUMNS) * CELL;
        let sum: u32 = (y0..y0 + CELL)
            .filter_map(|row| luma.get(row * width + x0..row * width + x0 + CELL))
            .flat_map(|cells| cells.iter().map(|&p| u32::from(p)))
            .sum();
        let mean = sum / (CELL * CELL) as u32;
        *bit = if mean > BRIGHT_ABOVE {
            true
        } else if mean < DARK_BELOW {
            false
        } else {
            return None;
        };
    }
    Stamp::from_bits(&bits)
}

/// CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF): an all-dark or all-bright area never
/// passes, and any single damaged cell is caught.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymash_codec::FrameGeometry;

    #[test]
    fn crc16_matches_the_standard_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn a_drawn_stamp_reads_back_exactly() {
        let geometry = FrameGeometry::new(320, 240).unwrap();
        for (frame, capture_ns) in [
            (0u64, 0u64),
            (1, 33_333_333),
            (u64::from(u32::MAX) + 7, u64::MAX / 3),
        ] {
            let mut picture = I420Frame::grey(geometry);
            let stamp = Stamp::new(FrameNo(frame), capture_ns);
            assert!(draw_stamp(&mut picture, stamp));
            assert_eq!(read_stamp(&picture), Some(stamp));
        }
    }

    #[test]
    fn a_picture_without_a_stamp_reads_as_none() {
        let geometry = FrameGeometry::new(320, 240).unwrap();
        let mut picture = I420Frame::grey(geometry);
        assert_eq!(read_stamp(&picture), None, "mid grey is neither bit");
        picture.planes_mut().0.fill(16);
        assert_eq!(read_stamp(&picture), None, "all dark fails the CRC");
        picture.planes_mut().0.fill(235);
        assert_eq!(read_stamp(&picture), None, "all bright fails the CRC");
    }

    #[test]
    fn one_flipped_cell_is_refused() {
        let geometry = FrameGeometry::new(320, 240).unwrap();
        let mut picture = I420Frame::grey(geometry);
        assert!(draw_stamp(
            &mut picture,
            Stamp::new(FrameNo(1234), 987_654_321_000)
        ));
        for cell in [0, 37, 79] {
            let mut damaged = picture.clone();
            let x0 = ORIGIN.0 + (cell % COLUMNS) * CELL;
            let y0 = ORIGIN.1 + (cell / COLUMNS) * CELL;
            let luma = damaged.planes_mut().0;
            let flipped = if luma[y0 * 320 + x0] > 128 {
                DARK
            } else {
                BRIGHT
            };
            for row in y0..y0 + CELL {
                luma[row * 320 + x0..row * 320 + x0 + CELL].fill(flipped);
            }
            assert_eq!(read_stamp(&damaged), None, "cell {cell}");
        }
    }

    #[test]
    fn too_small_frames_are_left_alone() {
        let geometry = FrameGeometry::new(128, 48).unwrap();
        let mut picture = I420Frame::grey(geometry);
        assert!(!draw_stamp(&mut picture, Stamp::new(FrameNo(1), 1)));
        assert_eq!(picture, I420Frame::grey(geometry));
        assert_eq!(read_stamp(&picture), None);
    }

    #[test]
    fn age_is_measured_across_the_millisecond_wrap() {
        let cases = [
            // (capture ms, now ms, age)
            (1_000u64, 3_000u64, 2_000i64),
            (u64::from(u32::MAX) - 5, u64::from(u32::MAX) + 15, 20),
            (5_000, 4_000, -1_000),
        ];
        for (capture_ms, now_ms, age) in cases {
            let stamp = Stamp::new(FrameNo(0), capture_ms * 1_000_000);
            assert_eq!(
                stamp.age_ms(now_ms * 1_000_000),
                age,
                "{capture_ms} -> {now_ms}"
            );
        }
    }
}
