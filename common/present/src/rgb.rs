//! I420 to RGB for image files (`frames:DIR`), and binary PPM.
//!
//! PPM (P6) rather than PNG: the display writes up to 30 pictures a second, and PPM costs a
//! colour conversion and one write, where PNG's deflate would cost the exhibit PC a core at
//! 640x480x30; every image tool (ffmpeg, ImageMagick, Python's PIL) reads PPM, and tests parse
//! it in a few lines. Convert to PNG after the fact if disk space matters
//! (`ffmpeg -i frame-%06d.ppm frame-%06d.png`).

use std::io::{self, Write};

use keymash_codec::I420View;

/// BT.601 limited-range I420 to packed 8-bit RGB (`width * height * 3` bytes), chroma
/// upsampled by repetition. Integer arithmetic with 8 fractional bits (the usual 298/409/100/
/// 208/516 coefficients): within one level of the floating-point formula, and several times
/// faster, which matters at 30 pictures a second.
pub fn i420_to_rgb(picture: I420View<'_>, rgb: &mut Vec<u8>) {
    let g = picture.geometry();
    let (w, h, cw) = (g.width(), g.height(), g.chroma_width());
    rgb.clear();
    rgb.resize(w * h * 3, 0);
    let (ys, us, vs) = (picture.y(), picture.u(), picture.v());
    let clamp = |x: i32| (x >> 8).clamp(0, 255) as u8;
    for (row, (out_row, y_row)) in rgb
        .chunks_exact_mut(w * 3)
        .zip(ys.chunks_exact(w))
        .enumerate()
        .take(h)
    {
        let c_row = (row / 2) * cw;
        for (col, (px, &y)) in out_row.chunks_exact_mut(3).zip(y_row).enumerate() {
            let c = c_row + col / 2;
            let (u, v) = (i32::from(us[c]) - 128, i32::from(vs[c]) - 128);
            let y = 298 * (i32::from(y) - 16) + 128;
            px[0] = clamp(y + 409 * v);
            px[1] = clamp(y - 100 * u - 208 * v);
            px[2] = clamp(y + 516 * u);
        }
    }
}

/// Writes packed RGB as a binary PPM (P6, maxval 255).
pub fn write_ppm<W: Write>(mut out: W, width: usize, height: usize, rgb: &[u8]) -> io::Result<()> {
    write!(out, "P6\n{width} {height}\n255\n")?;
    out.write_all(rgb)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::rgb_to_ycbcr;
    use keymash_codec::{FrameGeometry, I420Frame};

    #[test]
    fn colours_survive_the_round_trip_through_ycbcr_within_rounding() {
        let geometry = FrameGeometry::new(16, 16).unwrap();
        for colour in [
            [0u8, 0, 0],
            [255, 255, 255],
            [0, 255, 0],
            [200, 30, 90],
            [16, 128, 240],
        ] {
            let [y, u, v] = rgb_to_ycbcr(colour);
            let frame =
                I420Frame::from_planes(geometry, vec![y; 256], vec![u; 64], vec![v; 64]).unwrap();
            let mut rgb = Vec::new();
            i420_to_rgb(frame.view(), &mut rgb);
            assert_eq!(rgb.len(), 16 * 16 * 3);
            for (got, want) in rgb[..3].iter().zip(colour) {
                assert!(
                    (i32::from(*got) - i32::from(want)).abs() <= 3,
                    "{colour:?} came back as {:?}",
                    &rgb[..3]
                );
            }
        }
    }

    #[test]
    fn a_ppm_has_its_header_then_the_pixels() {
        let mut out = Vec::new();
        write_ppm(&mut out, 2, 1, &[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(out, b"P6\n2 1\n255\n\x01\x02\x03\x04\x05\x06");
    }
}
