//! MJPEG webcam frames to the pipeline's I420, with zune-jpeg.
//!
//! A webcam's JPEG is YCbCr (usually 4:2:2, sometimes 4:2:0) in full range (JFIF: 0-255). The
//! pipeline's planes are studio-range BT.601 (luma 16-235, chroma 16-240), which is what the
//! display turns into RGB, so every sample is mapped by a table; chroma is brought to 4:2:0 by
//! averaging each 2x2 block of the decoder's full-resolution chroma (rounded).
//!
//! A frame is decoded into scratch space first and reaches the caller's frame only when the
//! whole picture decoded: a truncated or damaged frame (cameras send them when USB packets are
//! lost) is an error the caller counts and skips, never a half-grey picture. The decoder runs in
//! strict mode for that reason; without it zune-jpeg fills what it could not decode with grey and
//! reports success. Strict mode alone misses one case that lost packets cause: a frame missing
//! bytes in the middle but keeping its end-of-image marker, which zune-jpeg takes as the end of
//! the data and decodes the missing blocks as zeros. So each frame is copied with a trap between
//! its data and its marker (`TRAP_PAIRS`); a frame with no end-of-image marker at all was
//! cut short and is refused outright. A flipped bit inside the data can still decode to a
//! plausible picture: no decoder can tell, and the damage stays within the frame.
//!
//! Many UVC cameras leave the Huffman tables out of every frame (the "AVI1" convention: the
//! standard tables of JPEG Annex K.3 are implied). zune-jpeg supplies them when the frame says
//! AVI1 in its APP0 segment; a frame with no tables and no such segment gets one prepended here.

use keymash_codec::{FrameGeometry, I420Frame};
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// A frame that could not become a picture; the caller counts it and skips it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MjpegError {
    #[error("not a JPEG frame (no start-of-image marker; {len} bytes)")]
    NotJpeg { len: usize },
    #[error("JPEG frame has no end-of-image marker (cut short)")]
    NoEnd,
    #[error("corrupt or truncated JPEG frame: {0}")]
    Corrupt(String),
    #[error("JPEG frame is {width}x{height}, the pipeline's frame is {expected}")]
    WrongSize {
        width: usize,
        height: usize,
        expected: FrameGeometry,
    },
    #[error("JPEG frame is {0}, not YCbCr")]
    NotYcbcr(String),
    #[error("destination frame is {got}, the decoder's is {expected}")]
    GeometryMismatch {
        expected: FrameGeometry,
        got: FrameGeometry,
    },
}

/// Full-range luma (0-255) to studio range (16-235), rounded.
const LUMA_TO_STUDIO: [u8; 256] = studio_table(16, 219);
/// Full-range chroma (0-255 around 128) to studio range (16-240 around 128), rounded.
const CHROMA_TO_STUDIO: [u8; 256] = studio_table(16, 224);

/// The table taking `0..=255` to `low..=low + span`: the inverse of keymash-watch's encoder map.
const fn studio_table(low: u32, span: u32) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut v = 0;
    while v < 256 {
        // Rounded to nearest: low + (2 * span * v + 255) / 510; at most 255 for span <= 239.
        table[v as usize] = (low + (2 * span * v + 255) / 510) as u8;
        v += 1;
    }
    table
}

/// An APP0 segment saying "AVI1": zune-jpeg then supplies the standard Huffman tables.
const AVI1_APP0: [u8; 9] = [0xff, 0xe0, 0x00, 0x07, b'A', b'V', b'I', b'1', 0x00];

/// Stuffed 0xff bytes put between the entropy-coded data and the end-of-image marker: all
/// one-bits, which no JPEG Huffman code is (the standard forbids the all-ones code), so a
/// decoder that runs past the real data fails on them instead of seeing the marker early and
/// filling the rest of the picture with zeros. 32 bytes: more than the decoder's 8-byte
/// read-ahead.
const TRAP_PAIRS: usize = 16;

/// Decodes MJPEG frames of one size into I420, reusing its scratch buffers.
#[derive(Debug)]
pub struct MjpegDecoder {
    geometry: FrameGeometry,
    /// The decoded picture as interleaved full-resolution Y, Cb, Cr (zune-jpeg's output).
    ycbcr: Vec<u8>,
    /// The frame as handed to the decoder: the AVI1 segment added when it carries no Huffman
    /// tables, the trap before its end-of-image marker.
    patched: Vec<u8>,
}

impl MjpegDecoder {
    pub fn new(geometry: FrameGeometry) -> Self {
        MjpegDecoder {
            geometry,
            ycbcr: vec![0; geometry.luma_len() * 3],
            patched: Vec::new(),
        }
    }

    pub fn geometry(&self) -> FrameGeometry {
        self.geometry
    }

    /// Decodes `jpeg` into `dst` (which must have the decoder's geometry). Bytes after the
    /// end-of-image marker (drivers pad) are ignored. On error `dst` is untouched.
    pub fn decode(&mut self, jpeg: &[u8], dst: &mut I420Frame) -> Result<(), MjpegError> {
        if dst.geometry() != self.geometry {
            return Err(MjpegError::GeometryMismatch {
                expected: self.geometry,
                got: dst.geometry(),
            });
        }
        if jpeg.len() < 4 || jpeg[..2] != [0xff, 0xd8] {
            return Err(MjpegError::NotJpeg { len: jpeg.len() });
        }
        let data = entropy_end(jpeg).ok_or(MjpegError::NoEnd)?;
        self.patched.clear();
        self.patched.extend_from_slice(&data[..2]);
        if !has_huffman_tables(data) {
            self.patched.extend_from_slice(&AVI1_APP0);
        }
        self.patched.extend_from_slice(&data[2..]);
        for _ in 0..TRAP_PAIRS {
            self.patched.extend_from_slice(&[0xff, 0x00]);
        }
        self.patched.extend_from_slice(&[0xff, 0xd9]);
        let input = &self.patched[..];
        let (width, height) = (self.geometry.width(), self.geometry.height());
        let options = DecoderOptions::default()
            .jpeg_set_out_colorspace(ColorSpace::YCbCr)
            .set_strict_mode(true)
            // Nothing larger is wanted: refused before any picture-sized work.
            .set_max_width(width)
            .set_max_height(height);
        let mut decoder = JpegDecoder::new_with_options(ZCursor::new(input), options);
        decoder.decode_headers().map_err(corrupt)?;
        let (got_width, got_height) = decoder
            .dimensions()
            .ok_or_else(|| MjpegError::Corrupt("no frame header".to_owned()))?;
        if (got_width, got_height) != (width, height) {
            return Err(MjpegError::WrongSize {
                width: got_width,
                height: got_height,
                expected: self.geometry,
            });
        }
        match decoder.input_colorspace() {
            Some(ColorSpace::YCbCr) => {}
            other => return Err(MjpegError::NotYcbcr(format!("{other:?}"))),
        }
        decoder.decode_into(&mut self.ycbcr).map_err(corrupt)?;
        self.to_i420(dst);
        Ok(())
    }

    /// The decoded interleaved full-range picture to studio-range I420.
    fn to_i420(&self, dst: &mut I420Frame) {
        let width = self.geometry.width();
        let line = 3 * width;
        let (y_plane, u_plane, v_plane) = dst.planes_mut();
        let chroma_width = self.geometry.chroma_width();
        for (((pair, y_pair), u_row), v_row) in self
            .ycbcr
            .chunks_exact(2 * line)
            .zip(y_plane.chunks_exact_mut(2 * width))
            .zip(u_plane.chunks_exact_mut(chroma_width))
            .zip(v_plane.chunks_exact_mut(chroma_width))
        {
            let (top, bottom) = pair.split_at(line);
            let (y_top, y_bottom) = y_pair.split_at_mut(width);
            for (((t, b), (yt, yb)), (u, v)) in top
                .chunks_exact(6)
                .zip(bottom.chunks_exact(6))
                .zip(y_top.chunks_exact_mut(2).zip(y_bottom.chunks_exact_mut(2)))
                .zip(u_row.iter_mut().zip(v_row.iter_mut()))
            {
                yt[0] = LUMA_TO_STUDIO[usize::from(t[0])];
                yt[1] = LUMA_TO_STUDIO[usize::from(t[3])];
                yb[0] = LUMA_TO_STUDIO[usize::from(b[0])];
                yb[1] = LUMA_TO_STUDIO[usize::from(b[3])];
                let cb = u16::from(t[1]) + u16::from(t[4]) + u16::from(b[1]) + u16::from(b[4]);
                let cr = u16::from(t[2]) + u16::from(t[5]) + u16::from(b[2]) + u16::from(b[5]);
                *u = CHROMA_TO_STUDIO[usize::from((cb + 2) >> 2)];
                *v = CHROMA_TO_STUDIO[usize::from((cr + 2) >> 2)];
            }
        }
    }
}

/// The frame up to the end of its entropy-coded data: without the end-of-image marker, the
/// 0xff fill bytes before it and whatever the driver put after it (the trap goes there);
/// `None` without an end-of-image marker (the frame was cut short).
fn entropy_end(jpeg: &[u8]) -> Option<&[u8]> {
    // The last [0xff, 0xd9] is the marker: the pair cannot occur inside entropy-coded data
    // (0xff there is followed by 0x00 or an RSTn marker), and one inside a header segment (an
    // EXIF thumbnail's) comes before the picture's own.
    let eoi = jpeg.windows(2).rposition(|pair| pair == [0xff, 0xd9])?;
    let mut end = eoi;
    while end > 2 && jpeg[end - 1] == 0xff {
        end -= 1;
    }
    Some(&jpeg[..end])
}

fn corrupt(e: zune_jpeg::errors::DecodeErrors) -> MjpegError {
    MjpegError::Corrupt(e.to_string())
}

/// Whether a DHT segment comes before the first start-of-scan. Walks the marker segments from
/// just after SOI; anything unexpected ends the walk with "yes", leaving the verdict on a
/// malformed frame to the decoder.
fn has_huffman_tables(jpeg: &[u8]) -> bool {
    let mut at = 2;
    loop {
        // Markers may be preceded by any number of 0xff fill bytes.
        while jpeg.get(at) == Some(&0xff) && jpeg.get(at + 1) == Some(&0xff) {
            at += 1;
        }
        let (Some(&0xff), Some(&marker)) = (jpeg.get(at), jpeg.get(at + 1)) else {
            return true;
        };
        match marker {
            0xc4 => return true,
            0xda | 0xd9 => return false,
            // Markers without a length: TEM and RSTn.
            0x01 | 0xd0..=0xd7 => at += 2,
            _ => {
                let (Some(&hi), Some(&lo)) = (jpeg.get(at + 2), jpeg.get(at + 3)) else {
                    return true;
                };
                at += 2 + usize::from(u16::from_be_bytes([hi, lo]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

    /// A camera-like picture in full-range YCbCr: gradients, a disc with stripes and a fine
    /// ripple, shifted by `t`.
    fn scene(width: usize, height: usize, t: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for x in 0..width {
                let ripple = ((x + t) as f64 * 0.31).sin() * ((y as f64) * 0.23).cos() * 30.0;
                let ramp = ((x + y + t) * 180 / (width + height)) as f64;
                let (dx, dy) = (x.abs_diff(width / 2 + t % 16), y.abs_diff(height / 2));
                let luma = if dx * dx + dy * dy < (height / 4) * (height / 4) {
                    if (x / 4).is_multiple_of(2) {
                        200.0
                    } else {
                        60.0
                    }
                } else {
                    40.0 + ramp + ripple
                };
                out.push(luma.clamp(0.0, 255.0) as u8);
                out.push((60 + x * 140 / width) as u8);
                out.push((200 - y * 140 / height) as u8);
            }
        }
        out
    }

    fn encode(
        ycbcr: &[u8],
        width: usize,
        height: usize,
        quality: u8,
        sampling: SamplingFactor,
    ) -> Vec<u8> {
        let mut jpeg = Vec::new();
        let mut encoder = Encoder::new(&mut jpeg, quality);
        encoder.set_sampling_factor(sampling);
        encoder
            .encode(ycbcr, width as u16, height as u16, ColorType::Ycbcr)
            .unwrap();
        jpeg
    }

    /// The source in the pipeline's terms: studio range, chroma averaged over 2x2.
    fn expected_i420(ycbcr: &[u8], geometry: FrameGeometry) -> I420Frame {
        let mut decoder = MjpegDecoder::new(geometry);
        decoder.ycbcr.copy_from_slice(ycbcr);
        let mut frame = I420Frame::grey(geometry);
        decoder.to_i420(&mut frame);
        frame
    }

    fn psnr(a: &[u8], b: &[u8]) -> f64 {
        keymash_codec::frame::psnr_from_squared_error(
            keymash_codec::frame::squared_error(a, b),
            a.len() as u64,
        )
    }

    fn vga() -> FrameGeometry {
        FrameGeometry::VGA
    }

    #[test]
    fn the_range_tables_map_full_range_ends_to_studio_ends() {
        assert_eq!((LUMA_TO_STUDIO[0], LUMA_TO_STUDIO[255]), (16, 235));
        assert_eq!(
            (
                CHROMA_TO_STUDIO[0],
                CHROMA_TO_STUDIO[128],
                CHROMA_TO_STUDIO[255]
            ),
            (16, 128, 240)
        );
        assert!(LUMA_TO_STUDIO.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_webcam_jpeg_decodes_to_the_picture_at_q90_in_4_2_2_and_4_2_0() {
        let g = vga();
        let (w, h) = (g.width(), g.height());
        let source = scene(w, h, 3);
        let want = expected_i420(&source, g);
        for sampling in [
            SamplingFactor::F_2_1,
            SamplingFactor::F_2_2,
            SamplingFactor::F_1_1,
        ] {
            let jpeg = encode(&source, w, h, 90, sampling);
            let mut decoder = MjpegDecoder::new(g);
            let mut got = I420Frame::grey(g);
            decoder.decode(&jpeg, &mut got).unwrap();
            let figures = [
                psnr(want.y(), got.y()),
                psnr(want.u(), got.u()),
                psnr(want.v(), got.v()),
            ];
            for (plane, db) in ["Y", "U", "V"].iter().zip(figures) {
                assert!(db > 35.0, "{sampling:?} {plane}: {db:.1} dB");
            }
        }
    }

    #[test]
    fn progressive_and_restart_interval_frames_decode_too() {
        let g = vga();
        let (w, h) = (g.width(), g.height());
        let source = scene(w, h, 6);
        let want = expected_i420(&source, g);
        for progressive in [false, true] {
            for restart in [0u16, 4, 40] {
                let mut jpeg = Vec::new();
                let mut encoder = Encoder::new(&mut jpeg, 90);
                encoder.set_sampling_factor(SamplingFactor::F_2_1);
                encoder.set_progressive(progressive);
                if restart > 0 {
                    encoder.set_restart_interval(restart);
                }
                encoder
                    .encode(&source, w as u16, h as u16, ColorType::Ycbcr)
                    .unwrap();
                let mut got = I420Frame::grey(g);
                MjpegDecoder::new(g).decode(&jpeg, &mut got).unwrap();
                let db = psnr(want.y(), got.y());
                assert!(
                    db > 35.0,
                    "progressive {progressive}, restart {restart}: {db:.1} dB"
                );
            }
        }
    }

    #[test]
    fn black_and_white_land_on_the_studio_range_ends() {
        let g = FrameGeometry::new(32, 32).unwrap();
        for (full, studio) in [(0u8, 16u8), (255, 235)] {
            let source: Vec<u8> = (0..32 * 32).flat_map(|_| [full, 128, 128]).collect();
            let jpeg = encode(&source, 32, 32, 95, SamplingFactor::F_2_1);
            let mut got = I420Frame::grey(g);
            MjpegDecoder::new(g).decode(&jpeg, &mut got).unwrap();
            assert!(got.y().iter().all(|&y| y.abs_diff(studio) <= 1), "{full}");
            assert!(got.u().iter().chain(got.v()).all(|&c| c.abs_diff(128) <= 1));
        }
    }

    /// Removes every DHT segment, as many UVC cameras send their frames.
    fn without_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut at = 2;
        while jpeg[at + 1] != 0xda {
            let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
            if jpeg[at + 1] != 0xc4 {
                out.extend_from_slice(&jpeg[at..at + 2 + len]);
            }
            at += 2 + len;
        }
        out.extend_from_slice(&jpeg[at..]);
        out
    }

    #[test]
    fn frames_without_huffman_tables_decode_with_the_standard_ones() {
        let g = vga();
        let source = scene(g.width(), g.height(), 1);
        let jpeg = encode(&source, g.width(), g.height(), 80, SamplingFactor::F_2_1);
        let bare = without_huffman_tables(&jpeg);
        assert!(bare.len() < jpeg.len() && !has_huffman_tables(&bare));
        assert!(has_huffman_tables(&jpeg));
        let mut decoder = MjpegDecoder::new(g);
        let (mut with, mut without) = (I420Frame::grey(g), I420Frame::grey(g));
        decoder.decode(&jpeg, &mut with).unwrap();
        decoder.decode(&bare, &mut without).unwrap();
        assert_eq!(with, without);
    }

    #[test]
    fn padding_after_the_end_of_image_is_ignored() {
        let g = vga();
        let source = scene(g.width(), g.height(), 2);
        let mut jpeg = encode(&source, g.width(), g.height(), 80, SamplingFactor::F_2_1);
        let mut decoder = MjpegDecoder::new(g);
        let mut want = I420Frame::grey(g);
        decoder.decode(&jpeg, &mut want).unwrap();
        jpeg.resize(jpeg.len() + 4096, 0);
        let mut got = I420Frame::grey(g);
        decoder.decode(&jpeg, &mut got).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn truncated_frames_are_refused_and_leave_the_frame_untouched() {
        let g = vga();
        let source = scene(g.width(), g.height(), 4);
        let jpeg = encode(&source, g.width(), g.height(), 85, SamplingFactor::F_2_1);
        let mut decoder = MjpegDecoder::new(g);
        let mut frame = I420Frame::grey(g);
        // Cut anywhere from inside the headers to a tenth before the end, with and without an
        // end-of-image marker after the cut (a driver closing a frame early).
        let header_end = jpeg.windows(2).position(|w| w == [0xff, 0xda]).unwrap();
        for cut in (4..jpeg.len() * 9 / 10)
            .step_by(997)
            .chain([header_end, header_end + 20])
        {
            let truncated = &jpeg[..cut];
            assert!(
                decoder.decode(truncated, &mut frame).is_err(),
                "cut at {cut}"
            );
            let mut closed = truncated.to_vec();
            closed.extend_from_slice(&[0xff, 0xd9]);
            assert!(
                decoder.decode(&closed, &mut frame).is_err(),
                "cut at {cut} + EOI"
            );
            assert_eq!(frame, I420Frame::grey(g), "cut at {cut}: frame touched");
        }
    }

    #[test]
    fn frames_missing_a_packet_in_the_middle_are_refused() {
        // What a lost USB packet does to a frame: bytes gone from the middle, the end (and its
        // end-of-image marker) still there. UVC payloads are hundreds of bytes to 3 KiB. (A gap
        // of a few bytes can go unnoticed: the decoder may resynchronise and end within the
        // bits it still has. No USB transfer loses a few bytes.)
        let g = vga();
        let mut decoder = MjpegDecoder::new(g);
        let mut frame = I420Frame::grey(g);
        let (mut refused, mut total) = (0, 0);
        for t in 0..4 {
            let source = scene(g.width(), g.height(), t * 5);
            let jpeg = encode(&source, g.width(), g.height(), 85, SamplingFactor::F_2_1);
            let start = jpeg.windows(2).position(|w| w == [0xff, 0xda]).unwrap() + 20;
            for gap in [64, 512, 1024, 3072] {
                for at in (start..jpeg.len() - gap - 2).step_by(4999) {
                    let mut damaged = jpeg[..at].to_vec();
                    damaged.extend_from_slice(&jpeg[at + gap..]);
                    total += 1;
                    if decoder.decode(&damaged, &mut frame).is_err() {
                        refused += 1;
                    }
                }
            }
        }
        assert_eq!(refused, total, "{refused} of {total} refused");
    }

    #[test]
    fn a_frame_of_another_size_or_not_a_jpeg_is_refused_by_type() {
        let g = vga();
        let small = scene(320, 240, 0);
        let jpeg = encode(&small, 320, 240, 80, SamplingFactor::F_2_1);
        let mut frame = I420Frame::grey(g);
        let mut decoder = MjpegDecoder::new(g);
        assert_eq!(
            decoder.decode(&jpeg, &mut frame),
            Err(MjpegError::WrongSize {
                width: 320,
                height: 240,
                expected: g
            })
        );
        let big = scene(1280, 720, 0);
        let jpeg = encode(&big, 1280, 720, 80, SamplingFactor::F_2_1);
        assert!(decoder.decode(&jpeg, &mut frame).is_err());
        assert_eq!(
            decoder.decode(&[0u8; 100], &mut frame),
            Err(MjpegError::NotJpeg { len: 100 })
        );
        assert_eq!(
            decoder.decode(&[], &mut frame),
            Err(MjpegError::NotJpeg { len: 0 })
        );
        let mut gray = Vec::new();
        Encoder::new(&mut gray, 80)
            .encode(&vec![128u8; 640 * 480], 640, 480, ColorType::Luma)
            .unwrap();
        assert!(matches!(
            decoder.decode(&gray, &mut frame),
            Err(MjpegError::NotYcbcr(_))
        ));
        assert_eq!(frame, I420Frame::grey(g));
    }

    /// xorshift64: deterministic mutations without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_damage_never_panics() {
        let g = FrameGeometry::new(64, 48).unwrap();
        let source = scene(64, 48, 5);
        let clean = encode(&source, 64, 48, 75, SamplingFactor::F_2_1);
        let bare = without_huffman_tables(&clean);
        let mut decoder = MjpegDecoder::new(g);
        let mut frame = I420Frame::grey(g);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut ok, mut refused) = (0, 0);
        for round in 0..3000 {
            let mut jpeg = if round % 2 == 0 {
                clean.clone()
            } else {
                bare.clone()
            };
            for _ in 0..1 + rng.below(8) {
                if jpeg.len() < 4 {
                    break;
                }
                let at = rng.below(jpeg.len());
                match rng.below(5) {
                    0 => jpeg[at] ^= 1 << rng.below(8),
                    1 => jpeg[at] = rng.next() as u8,
                    2 => jpeg[at] = 0xff,
                    3 => jpeg.truncate(at.max(2)),
                    _ => {
                        let len = rng.below(16).min(jpeg.len() - at);
                        jpeg.drain(at..at + len);
                    }
                }
            }
            match decoder.decode(&jpeg, &mut frame) {
                Ok(()) => ok += 1,
                Err(_) => refused += 1,
            }
        }
        // Both outcomes happen: damage in the entropy-coded data often still decodes (no
        // decoder can tell a flipped coefficient bit), damage elsewhere is refused.
        assert!(ok > 0 && refused > 0, "{ok} decoded, {refused} refused");
    }
}
