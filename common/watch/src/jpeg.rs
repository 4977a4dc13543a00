//! An I420 picture as a baseline JPEG: the MJPEG stream, the snapshot and the archive.
//!
//! The picture the display publishes is already YCbCr 4:2:0, which is what a baseline JPEG
//! holds, so the encoder is fed the three planes through jpeg-encoder's [`ImageBuffer`] trait
//! and never sees RGB: no colour conversion there and back, no rounding added by one.
//!
//! One mapping is needed: keymash's pictures are studio range (luma 16-235, chroma 16-240, as
//! cameras give them and as the display turns them into RGB), a JPEG file is full range (JFIF:
//! 0-255). Each sample is stretched by a table on its way in, so a browser shows the picture
//! with the screen's contrast instead of washed out.

use jpeg_encoder::{ChromaSubsamplingMethod, Encoder, ImageBuffer, JpegColorType, SamplingFactor};
use keymash_pipeline::frames::i420_len;

/// Studio-range luma (16-235) to full range (0-255), rounded and clamped.
const LUMA_TO_FULL: [u8; 256] = range_table(16, 219);
/// Studio-range chroma (16-240 around 128) to full range (0-255 around 128).
const CHROMA_TO_FULL: [u8; 256] = range_table(16, 224);

/// The table taking `low..low + span` to `0..=255`.
const fn range_table(low: i32, span: i32) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut v = 0;
    while v < 256 {
        // Rounded to nearest: (2 * 255 * x + span) / (2 * span).
        let scaled = (2 * 255 * (v - low) + span).div_euclid(2 * span);
        table[v as usize] = if scaled < 0 {
            0
        } else if scaled > 255 {
            255
        } else {
            scaled as u8
        };
        v += 1;
    }
    table
}

/// A picture that cannot be encoded.
#[derive(Debug, thiserror::Error)]
pub enum JpegError {
    #[error("{len} bytes is not a {width}x{height} I420 picture ({expected} bytes)")]
    WrongLength {
        width: u32,
        height: u32,
        len: usize,
        expected: usize,
    },
    /// JPEG's frame header holds 16-bit dimensions, and an empty picture has no blocks.
    #[error("a {width}x{height} picture cannot be a JPEG (each side must be 1 to 65535)")]
    WrongSize { width: u32, height: u32 },
    #[error("JPEG encoder: {0}")]
    Encoder(String),
}

/// Encodes the I420 picture `i420` (`width` x `height`, Y then U then V, rows packed) as a
/// baseline 4:2:0 JPEG of `quality` (1-100; outside that range clamped) into `out` (cleared
/// first).
pub fn encode_i420(
    i420: &[u8],
    width: u32,
    height: u32,
    quality: u8,
    out: &mut Vec<u8>,
) -> Result<(), JpegError> {
    out.clear();
    let picture = I420Picture::new(i420, width, height)?;
    let mut encoder = Encoder::new(&mut *out, quality.clamp(1, 100));
    // jpeg-encoder picks 4:4:4 from quality 90 up; the source has no more chroma than 4:2:0, so
    // more would only cost bytes.
    encoder.set_sampling_factor(SamplingFactor::F_2_2);
    // Each chroma sample reaches the encoder repeated over its 2x2 pixels (see `fill_buffers`),
    // so the top-left one is the sample itself: exact, and cheaper than averaging four copies.
    encoder.set_chroma_subsampling_method(ChromaSubsamplingMethod::Nearest);
    encoder
        .encode_image(picture)
        .map_err(|e| JpegError::Encoder(e.to_string()))
}

/// An I420 picture as jpeg-encoder reads an image: luma borrowed, and each chroma row widened
/// to full width once here (each sample twice), so that feeding a row to the encoder is three
/// copies of contiguous bytes (fast in a debug build too, where a per-sample loop was three
/// times the encoder's own cost).
struct I420Picture<'a> {
    y: &'a [u8],
    /// Cb then Cr, `chroma_rows` rows of `width` samples each.
    wide_chroma: Vec<u8>,
    chroma_rows: usize,
    width: u16,
    height: u16,
}

impl<'a> I420Picture<'a> {
    fn new(i420: &'a [u8], width: u32, height: u32) -> Result<Self, JpegError> {
        let (Ok(w16), Ok(h16)) = (u16::try_from(width), u16::try_from(height)) else {
            return Err(JpegError::WrongSize { width, height });
        };
        if w16 == 0 || h16 == 0 {
            return Err(JpegError::WrongSize { width, height });
        }
        let expected = i420_len(width, height);
        if i420.len() != expected {
            return Err(JpegError::WrongLength {
                width,
                height,
                len: i420.len(),
                expected,
            });
        }
        let (w, h) = (usize::from(w16), usize::from(h16));
        let (chroma_width, chroma_rows) = (w.div_ceil(2), h.div_ceil(2));
        let (y, chroma) = i420.split_at(w * h);
        let mut wide_chroma = Vec::with_capacity(2 * chroma_rows * w);
        for line in chroma.chunks_exact(chroma_width) {
            wide_chroma.extend(
                line.iter()
                    .flat_map(|&c| {
                        let full = CHROMA_TO_FULL[usize::from(c)];
                        [full, full]
                    })
                    .take(w),
            );
        }
        Ok(I420Picture {
            y,
            wide_chroma,
            chroma_rows,
            width: w16,
            height: h16,
        })
    }
}

impl ImageBuffer for I420Picture<'_> {
    fn get_jpeg_color_type(&self) -> JpegColorType {
        JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.width
    }

    fn height(&self) -> u16 {
        self.height
    }

    /// Row `y` of each component at full resolution, as the trait asks, in full range: luma
    /// stretched, chroma (stretched when widened) (the encoder subsamples 2x2 again; with `Nearest` it takes back exactly the
    /// sample given). The encoder asks only for rows below `height`.
    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let width = usize::from(self.width);
        let row = usize::from(y);
        buffers[0].extend(
            self.y[row * width..(row + 1) * width]
                .iter()
                .map(|&v| LUMA_TO_FULL[usize::from(v)]),
        );
        for (plane, buffer) in buffers[1..3].iter_mut().enumerate() {
            let start = (plane * self.chroma_rows + row / 2) * width;
            buffer.extend_from_slice(&self.wide_chroma[start..start + width]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;

    /// A textured picture: a diagonal gradient, a fine sinusoid and a chroma ramp, shifted by
    /// `t`, the way camera pictures mix smooth areas and detail.
    fn textured(width: usize, height: usize, t: usize) -> Vec<u8> {
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        let mut out = Vec::with_capacity(width * height + 2 * cw * ch);
        for y in 0..height {
            for x in 0..width {
                let ripple = ((x + t) as f64 * 0.31).sin() * ((y as f64) * 0.23).cos() * 40.0;
                let ramp = ((x + y + t) * 160 / (width + height)) as f64;
                out.push((48.0 + ramp + ripple).clamp(0.0, 255.0) as u8);
            }
        }
        for plane in 0..2 {
            for y in 0..ch {
                for x in 0..cw {
                    let v = if plane == 0 {
                        x * 200 / cw
                    } else {
                        y * 200 / ch
                    };
                    out.push((28 + v + t % 7) as u8);
                }
            }
        }
        out
    }

    /// The decoded picture as full-resolution Y, Cb, Cr samples, and its size.
    fn decode(jpeg: &[u8]) -> (Vec<u8>, usize, usize) {
        let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::YCbCr);
        let mut decoder =
            zune_jpeg::JpegDecoder::new_with_options(std::io::Cursor::new(jpeg), options);
        let pixels = decoder.decode().unwrap();
        let (w, h) = decoder.dimensions().unwrap();
        (pixels, w, h)
    }

    fn psnr(mse: f64) -> f64 {
        10.0 * (255.0 * 255.0 / mse).log10()
    }

    /// PSNR of luma, and of each chroma plane against the mean of the decoded pixels each
    /// chroma sample covers (the decoder interpolates chroma when it upsamples).
    fn compare(source: &[u8], decoded: &[u8], width: usize, height: usize) -> [f64; 3] {
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        let mut sums = [0.0f64; 3];
        for y in 0..height {
            for x in 0..width {
                let want = LUMA_TO_FULL[usize::from(source[y * width + x])];
                let d = f64::from(want) - f64::from(decoded[(y * width + x) * 3]);
                sums[0] += d * d;
            }
        }
        for plane in 0..2 {
            let base = width * height + plane * cw * ch;
            for y in 0..ch {
                for x in 0..cw {
                    let covered: Vec<f64> = [(0, 0), (0, 1), (1, 0), (1, 1)]
                        .into_iter()
                        .map(|(dy, dx)| (2 * y + dy, 2 * x + dx))
                        .filter(|&(py, px)| py < height && px < width)
                        .map(|(py, px)| f64::from(decoded[(py * width + px) * 3 + 1 + plane]))
                        .collect();
                    let got = covered.iter().sum::<f64>() / covered.len() as f64;
                    let want = CHROMA_TO_FULL[usize::from(source[base + y * cw + x])];
                    let d = f64::from(want) - got;
                    sums[plane + 1] += d * d;
                }
            }
        }
        [
            psnr(sums[0] / (width * height) as f64),
            psnr(sums[1] / (cw * ch) as f64),
            psnr(sums[2] / (cw * ch) as f64),
        ]
    }

    #[test]
    fn a_picture_decodes_back_to_its_size_and_close_to_its_pixels() {
        for (width, height) in [(320, 240), (640, 480), (33, 17)] {
            let source = textured(width, height, 5);
            let mut jpeg = Vec::new();
            encode_i420(&source, width as u32, height as u32, 90, &mut jpeg).unwrap();
            assert_eq!(&jpeg[..2], &[0xff, 0xd8], "SOI");
            assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9], "EOI");
            let (decoded, w, h) = decode(&jpeg);
            assert_eq!((w, h), (width, height));
            let [y, cb, cr] = compare(&source, &decoded, width, height);
            assert!(y >= 35.0, "{width}x{height}: luma PSNR {y:.1} dB");
            assert!(
                cb >= 35.0 && cr >= 35.0,
                "{width}x{height}: chroma {cb:.1}/{cr:.1} dB"
            );
        }
    }

    #[test]
    fn studio_range_black_and_white_become_full_range() {
        assert_eq!((LUMA_TO_FULL[16], LUMA_TO_FULL[235]), (0, 255));
        assert_eq!((LUMA_TO_FULL[0], LUMA_TO_FULL[255]), (0, 255), "clamped");
        assert_eq!(LUMA_TO_FULL[126], 128, "mid grey (16 + 219 / 2) stays mid");
        assert_eq!(
            (CHROMA_TO_FULL[16], CHROMA_TO_FULL[128], CHROMA_TO_FULL[240]),
            (0, 128, 255)
        );
        assert!(LUMA_TO_FULL.windows(2).all(|w| w[0] <= w[1]), "monotonic");
        // A flat studio-black picture decodes to full-range black, white to white.
        for (luma, want) in [(16u8, 0u8), (235, 255)] {
            let mut source = vec![luma; 64 * 48];
            source.extend(vec![128u8; 2 * 32 * 24]);
            let mut jpeg = Vec::new();
            encode_i420(&source, 64, 48, 90, &mut jpeg).unwrap();
            let (decoded, _, _) = decode(&jpeg);
            let mean = decoded
                .iter()
                .step_by(3)
                .map(|&v| f64::from(v))
                .sum::<f64>()
                / (64.0 * 48.0);
            assert!((mean - f64::from(want)).abs() < 1.5, "{luma} -> {mean}");
        }
    }

    #[test]
    fn the_output_is_baseline_4_2_0_at_every_quality() {
        let source = textured(64, 48, 0);
        let mut jpeg = Vec::new();
        for quality in [1, 70, 95, 100, 0, 255] {
            encode_i420(&source, 64, 48, quality, &mut jpeg).unwrap();
            // SOF0 (baseline), three components, luma sampled 2x2 against chroma 1x1.
            let sof = jpeg
                .windows(2)
                .position(|w| w == [0xff, 0xc0])
                .unwrap_or_else(|| panic!("q{quality}: no SOF0 marker"));
            let sof = &jpeg[sof + 2..];
            assert_eq!(sof[7], 3, "components");
            assert_eq!([sof[9], sof[12], sof[15]], [0x22, 0x11, 0x11], "sampling");
            assert!(!jpeg.windows(2).any(|w| w == [0xff, 0xc2]), "progressive");
        }
    }

    #[test]
    fn lower_quality_makes_smaller_files() {
        let source = textured(320, 240, 3);
        let sizes: Vec<usize> = [30, 70, 90]
            .into_iter()
            .map(|q| {
                let mut jpeg = Vec::new();
                encode_i420(&source, 320, 240, q, &mut jpeg).unwrap();
                jpeg.len()
            })
            .collect();
        assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2], "{sizes:?}");
    }

    #[test]
    fn pictures_of_the_wrong_length_or_size_are_refused() {
        let mut out = vec![1, 2, 3];
        let picture = textured(32, 32, 0);
        assert!(matches!(
            encode_i420(&picture[1..], 32, 32, 70, &mut out),
            Err(JpegError::WrongLength {
                len: 1535,
                expected: 1536,
                ..
            })
        ));
        assert!(out.is_empty(), "out is cleared");
        assert!(matches!(
            encode_i420(&picture, 32, 33, 70, &mut out),
            Err(JpegError::WrongLength { .. })
        ));
        assert!(matches!(
            encode_i420(&[], 0, 0, 70, &mut out),
            Err(JpegError::WrongSize { .. })
        ));
        assert!(matches!(
            encode_i420(&[], 70_000, 1, 70, &mut out),
            Err(JpegError::WrongSize { .. })
        ));
    }
}
