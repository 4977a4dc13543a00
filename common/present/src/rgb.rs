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
/// upsampled by repetition.
pub fn i420_to_rgb(picture: I420View<'_>, rgb: &mut Vec<u8>) {
    let g = picture.geometry();
    let (w, h, cw) = (g.width(), g.height(), g.chroma_width());
    rgb.clear();
    rgb.reserve(w * h * 3);
    let (ys, us, vs) = (picture.y(), picture.u(), picture.v());
    for row in 0..h {
        for col in 0..w {
            let c = (row / 2) * cw + col / 2;
            let y = 1.164 * (f32::from(ys[row * w + col]) - 16.0);
            let u = f32::from(us[c]) - 128.0;
            let v = f32::from(vs[c]) - 128.0;
            let r = y + 1.596 * v;
            let gr = y - 0.392 * u - 0.813 * v;
            let b = y + 2.017 * u;
            rgb.extend([r, gr, b].map(|x| x.round().clamp(0.0, 255.0) as u8));
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
        for colour in [[0u8, 0, 0], [255, 255, 255], [0, 255, 0], [200, 30, 90], [16, 128, 240]] {
            let [y, u, v] = rgb_to_ycbcr(colour);
            let frame = I420Frame::from_planes(geometry, vec![y; 256], vec![u; 64], vec![v; 64]).unwrap();
            let mut rgb = Vec::new();
            i420_to_rgb(frame.view(), &mut rgb);
            assert_eq!(rgb.len(), 16 * 16 * 3);
            for (got, want) in rgb[..3].iter().zip(colour) {
                assert!((i32::from(*got) - i32::from(want)).abs() <= 3, "{colour:?} came back as {:?}", &rgb[..3]);
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
