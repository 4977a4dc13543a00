//! Planar 4:2:0 frames (owned and borrowed) and the YUYV 4:2:2 conversion webcams need.

use crate::geometry::FrameGeometry;

/// A buffer did not have the length its geometry requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("{plane} plane has {got} bytes, a {geometry} frame needs {expected}")]
    PlaneLength {
        plane: &'static str,
        geometry: FrameGeometry,
        expected: usize,
        got: usize,
    },
    #[error("YUYV buffer has {got} bytes, a {geometry} frame needs {expected}")]
    YuyvLength {
        geometry: FrameGeometry,
        expected: usize,
        got: usize,
    },
    #[error("destination frame is {got}, source is {expected}")]
    GeometryMismatch {
        expected: FrameGeometry,
        got: FrameGeometry,
    },
}

/// An owned I420 frame: Y plane then U and V at half resolution, rows packed (stride = width).
#[derive(Clone, PartialEq, Eq)]
pub struct I420Frame {
    geometry: FrameGeometry,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl std::fmt::Debug for I420Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I420Frame")
            .field("geometry", &self.geometry)
            .finish_non_exhaustive()
    }
}

impl I420Frame {
    /// A mid-grey frame: what a decoder shows before any payload has arrived.
    pub fn grey(geometry: FrameGeometry) -> Self {
        I420Frame {
            geometry,
            y: vec![128; geometry.luma_len()],
            u: vec![128; geometry.chroma_len()],
            v: vec![128; geometry.chroma_len()],
        }
    }

    /// Takes ownership of three planes, checking their lengths.
    pub fn from_planes(
        geometry: FrameGeometry,
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
    ) -> Result<Self, FrameError> {
        check_planes(geometry, &y, &u, &v)?;
        Ok(I420Frame { geometry, y, u, v })
    }

    pub fn geometry(&self) -> FrameGeometry {
        self.geometry
    }

    pub fn y(&self) -> &[u8] {
        &self.y
    }

    pub fn u(&self) -> &[u8] {
        &self.u
    }

    pub fn v(&self) -> &[u8] {
        &self.v
    }

    /// Mutable planes (Y, U, V), for sources that fill a frame in place.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        (&mut self.y, &mut self.u, &mut self.v)
    }

    pub fn view(&self) -> I420View<'_> {
        I420View {
            geometry: self.geometry,
            y: &self.y,
            u: &self.u,
            v: &self.v,
        }
    }

    /// Copies another frame of the same size into this one without reallocating.
    pub fn copy_from(&mut self, src: I420View<'_>) -> Result<(), FrameError> {
        if src.geometry != self.geometry {
            return Err(FrameError::GeometryMismatch {
                expected: src.geometry,
                got: self.geometry,
            });
        }
        self.y.copy_from_slice(src.y);
        self.u.copy_from_slice(src.u);
        self.v.copy_from_slice(src.v);
        Ok(())
    }
}

/// A borrowed I420 frame, e.g. a slot in a shared-memory ring, with checked plane lengths.
#[derive(Debug, Clone, Copy)]
pub struct I420View<'a> {
    geometry: FrameGeometry,
    y: &'a [u8],
    u: &'a [u8],
    v: &'a [u8],
}

impl<'a> I420View<'a> {
    pub fn new(
        geometry: FrameGeometry,
        y: &'a [u8],
        u: &'a [u8],
        v: &'a [u8],
    ) -> Result<Self, FrameError> {
        check_planes(geometry, y, u, v)?;
        Ok(I420View { geometry, y, u, v })
    }

    /// Splits one contiguous I420 buffer (Y, then U, then V) as Y4M and most tools store it.
    pub fn from_contiguous(geometry: FrameGeometry, buf: &'a [u8]) -> Result<Self, FrameError> {
        let (luma, chroma) = (geometry.luma_len(), geometry.chroma_len());
        let expected = luma + 2 * chroma;
        if buf.len() != expected {
            return Err(FrameError::PlaneLength {
                plane: "contiguous I420",
                geometry,
                expected,
                got: buf.len(),
            });
        }
        let (y, rest) = buf.split_at(luma);
        let (u, v) = rest.split_at(chroma);
        Ok(I420View { geometry, y, u, v })
    }

    pub fn geometry(&self) -> FrameGeometry {
        self.geometry
    }

    pub fn y(&self) -> &'a [u8] {
        self.y
    }

    pub fn u(&self) -> &'a [u8] {
        self.u
    }

    pub fn v(&self) -> &'a [u8] {
        self.v
    }
}

fn check_planes(geometry: FrameGeometry, y: &[u8], u: &[u8], v: &[u8]) -> Result<(), FrameError> {
    let expected = [
        geometry.luma_len(),
        geometry.chroma_len(),
        geometry.chroma_len(),
    ];
    for ((plane, buf), expected) in [("Y", y), ("U", u), ("V", v)].into_iter().zip(expected) {
        if buf.len() != expected {
            return Err(FrameError::PlaneLength {
                plane,
                geometry,
                expected,
                got: buf.len(),
            });
        }
    }
    Ok(())
}

/// Converts a packed YUYV 4:2:2 frame (Y0 U Y1 V per pixel pair, as V4L2 webcams deliver) into
/// `dst`, averaging the chroma of each pair of rows (rounded) to reach 4:2:0.
pub fn yuyv_to_i420(
    src: &[u8],
    geometry: FrameGeometry,
    dst: &mut I420Frame,
) -> Result<(), FrameError> {
    if src.len() != geometry.yuyv_len() {
        return Err(FrameError::YuyvLength {
            geometry,
            expected: geometry.yuyv_len(),
            got: src.len(),
        });
    }
    if dst.geometry != geometry {
        return Err(FrameError::GeometryMismatch {
            expected: geometry,
            got: dst.geometry,
        });
    }
    let width = geometry.width();
    let chroma_width = geometry.chroma_width();
    let row_bytes = width * 2;
    let rows = src.chunks_exact(2 * row_bytes);
    let y_rows = dst.y.chunks_exact_mut(2 * width);
    let u_rows = dst.u.chunks_exact_mut(chroma_width);
    let v_rows = dst.v.chunks_exact_mut(chroma_width);
    for (((pair, y_pair), u_row), v_row) in rows.zip(y_rows).zip(u_rows).zip(v_rows) {
        let (top, bottom) = pair.split_at(row_bytes);
        let (y_top, y_bottom) = y_pair.split_at_mut(width);
        yuyv_row_pair_to_i420(top, bottom, y_top, y_bottom, u_row, v_row);
    }
    Ok(())
}

/// One pair of YUYV rows (`top`, `bottom`) into two luma rows and one row of each chroma plane,
/// the chroma of the two rows averaged (rounded): the step of every YUYV conversion, packed
/// ([`yuyv_to_i420`]) or with padded lines (keymash-media's strided one). Converts as many pixel
/// pairs as the shortest of the slices holds.
pub fn yuyv_row_pair_to_i420(
    top: &[u8],
    bottom: &[u8],
    y_top: &mut [u8],
    y_bottom: &mut [u8],
    u_row: &mut [u8],
    v_row: &mut [u8],
) {
    for (((t, b), (yt, yb)), (u, v)) in top
        .chunks_exact(4)
        .zip(bottom.chunks_exact(4))
        .zip(y_top.chunks_exact_mut(2).zip(y_bottom.chunks_exact_mut(2)))
        .zip(u_row.iter_mut().zip(v_row.iter_mut()))
    {
        yt[0] = t[0];
        yt[1] = t[2];
        yb[0] = b[0];
        yb[1] = b[2];
        *u = ((u16::from(t[1]) + u16::from(b[1]) + 1) >> 1) as u8;
        *v = ((u16::from(t[3]) + u16::from(b[3]) + 1) >> 1) as u8;
    }
}

/// Sum of squared differences between two equally long sample slices (shorter length wins).
pub fn squared_error(a: &[u8], b: &[u8]) -> u64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = i32::from(x) - i32::from(y);
            (d * d) as u64
        })
        .sum()
}

/// Highest PSNR reported, for identical inputs (whose true PSNR is infinite and would not
/// survive JSON).
pub const PSNR_CAP_DB: f64 = 100.0;

/// PSNR in dB of 8-bit samples from a total squared error over `samples` samples.
pub fn psnr_from_squared_error(squared_error: u64, samples: u64) -> f64 {
    if samples == 0 || squared_error == 0 {
        return PSNR_CAP_DB;
    }
    let mse = squared_error as f64 / samples as f64;
    (10.0 * (255.0 * 255.0 / mse).log10()).min(PSNR_CAP_DB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_conversion_keeps_luma_and_averages_chroma_of_row_pairs() {
        let g = FrameGeometry::new(16, 16).unwrap();
        let mut src = vec![0u8; g.yuyv_len()];
        for (i, px) in src.chunks_exact_mut(4).enumerate() {
            let row = i / 8;
            px[0] = (i % 200) as u8;
            px[1] = if row % 2 == 0 { 10 } else { 21 };
            px[2] = (i % 200) as u8 + 1;
            px[3] = if row % 2 == 0 { 200 } else { 100 };
        }
        let mut dst = I420Frame::grey(g);
        yuyv_to_i420(&src, g, &mut dst).unwrap();
        assert_eq!(dst.y()[0], 0);
        assert_eq!(dst.y()[1], 1);
        assert_eq!(dst.y()[16], 8);
        assert!(dst.u().iter().all(|&u| u == 16), "(10+21+1)/2 = 16");
        assert!(dst.v().iter().all(|&v| v == 150));
    }

    #[test]
    fn wrong_buffer_lengths_are_refused() {
        let g = FrameGeometry::new(32, 16).unwrap();
        let mut dst = I420Frame::grey(g);
        assert!(matches!(
            yuyv_to_i420(&[0; 10], g, &mut dst),
            Err(FrameError::YuyvLength {
                expected: 1024,
                got: 10,
                ..
            })
        ));
        assert!(I420View::new(g, &[0; 512], &[0; 128], &[0; 127]).is_err());
        assert!(I420View::new(g, &[0; 512], &[0; 128], &[0; 128]).is_ok());
        assert!(I420View::from_contiguous(g, &[0; 768]).is_ok());
        assert!(I420View::from_contiguous(g, &[0; 767]).is_err());
    }

    #[test]
    fn psnr_matches_the_textbook_formula() {
        let cases: &[(u64, u64, f64)] =
            &[(0, 10, PSNR_CAP_DB), (10, 10, 48.1308), (6502, 10, 20.0)];
        for &(se, n, want) in cases {
            let got = psnr_from_squared_error(se, n);
            assert!((got - want).abs() < 1e-3, "{se}/{n}: {got} vs {want}");
        }
        assert_eq!(squared_error(&[0, 10, 255], &[1, 7, 255]), 10);
    }
}
