//! YUYV 4:2:2 with any line stride (`bytesperline`) to the pipeline's I420.
//!
//! Many drivers pad each line to an alignment (`bytesperline > 2 * width`); reading such a
//! buffer as packed would shear the picture. The conversion reads each line at its stride and
//! averages the chroma of each pair of lines (rounded), exactly as keymash-codec's packed
//! `yuyv_to_i420` does, so a packed buffer gives the same planes either way.

use keymash_codec::{yuyv_row_pair_to_i420, FrameGeometry, I420Frame};

/// A YUYV buffer that cannot be converted. Cameras send short buffers when they hiccup: the
/// caller skips and counts the frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YuyvError {
    #[error(
        "YUYV line stride {bytes_per_line} is less than the {min} bytes a {geometry} line needs"
    )]
    StrideTooSmall {
        geometry: FrameGeometry,
        bytes_per_line: usize,
        min: usize,
    },
    #[error("destination frame is {got}, the YUYV layout is {expected}")]
    GeometryMismatch {
        expected: FrameGeometry,
        got: FrameGeometry,
    },
    #[error("YUYV buffer has {got} bytes, a {geometry} frame at stride {bytes_per_line} needs {expected}")]
    Short {
        geometry: FrameGeometry,
        bytes_per_line: usize,
        expected: usize,
        got: usize,
    },
}

/// How a driver lays out a YUYV frame: the picture's size and the bytes from one line's start
/// to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YuyvLayout {
    geometry: FrameGeometry,
    bytes_per_line: usize,
}

impl YuyvLayout {
    /// `bytes_per_line` as the driver reports it (G_FMT/S_FMT); 0, which some drivers report
    /// for packed formats, means packed (`2 * width`).
    pub fn new(geometry: FrameGeometry, bytes_per_line: usize) -> Result<Self, YuyvError> {
        let min = 2 * geometry.width();
        let bytes_per_line = if bytes_per_line == 0 {
            min
        } else {
            bytes_per_line
        };
        if bytes_per_line < min {
            return Err(YuyvError::StrideTooSmall {
                geometry,
                bytes_per_line,
                min,
            });
        }
        Ok(YuyvLayout {
            geometry,
            bytes_per_line,
        })
    }

    pub fn geometry(self) -> FrameGeometry {
        self.geometry
    }

    pub fn bytes_per_line(self) -> usize {
        self.bytes_per_line
    }

    /// The shortest buffer holding a whole frame: the last line needs no padding after it.
    pub fn min_len(self) -> usize {
        self.bytes_per_line * (self.geometry.height() - 1) + 2 * self.geometry.width()
    }

    /// Converts `src` into `dst`, which must have this layout's geometry. Bytes past [`min_len`](Self::min_len) are ignored (drivers report `bytesused` as the
    /// whole buffer, padding included).
    pub fn to_i420(self, src: &[u8], dst: &mut I420Frame) -> Result<(), YuyvError> {
        if dst.geometry() != self.geometry {
            return Err(YuyvError::GeometryMismatch {
                expected: self.geometry,
                got: dst.geometry(),
            });
        }
        let expected = self.min_len();
        if src.len() < expected {
            return Err(YuyvError::Short {
                geometry: self.geometry,
                bytes_per_line: self.bytes_per_line,
                expected,
                got: src.len(),
            });
        }
        let width = self.geometry.width();
        let line = 2 * width;
        let stride = self.bytes_per_line;
        let chroma_width = self.geometry.chroma_width();
        let (y_plane, u_plane, v_plane) = dst.planes_mut();
        let y_pairs = y_plane.chunks_exact_mut(2 * width);
        let u_rows = u_plane.chunks_exact_mut(chroma_width);
        let v_rows = v_plane.chunks_exact_mut(chroma_width);
        for (pair, ((y_pair, u_row), v_row)) in y_pairs.zip(u_rows).zip(v_rows).enumerate() {
            let top_start = 2 * pair * stride;
            let bottom_start = top_start + stride;
            // In bounds: the bottom line of the last pair starts at (height - 1) * stride.
            let top = &src[top_start..top_start + line];
            let bottom = &src[bottom_start..bottom_start + line];
            let (y_top, y_bottom) = y_pair.split_at_mut(width);
            yuyv_row_pair_to_i420(top, bottom, y_top, y_bottom, u_row, v_row);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymash_codec::yuyv_to_i420;

    fn geometry() -> FrameGeometry {
        FrameGeometry::new(64, 32).unwrap()
    }

    /// A packed YUYV picture with every sample distinct enough to catch a misplaced line.
    fn packed(geometry: FrameGeometry, seed: u32) -> Vec<u8> {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        (0..geometry.yuyv_len())
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8
            })
            .collect()
    }

    /// The same picture with each line padded to `stride` bytes by `pad` bytes, and no padding
    /// after the last line (the shortest buffer that must be accepted).
    fn padded(packed: &[u8], geometry: FrameGeometry, stride: usize, pad: u8) -> Vec<u8> {
        let line = 2 * geometry.width();
        let mut out = Vec::new();
        for (i, row) in packed.chunks_exact(line).enumerate() {
            out.extend_from_slice(row);
            if i + 1 < geometry.height() {
                out.resize(out.len() + stride - line, pad);
            }
        }
        out
    }

    #[test]
    fn a_packed_buffer_converts_exactly_as_the_codecs_packed_conversion() {
        let g = geometry();
        let src = packed(g, 1);
        let mut want = I420Frame::grey(g);
        yuyv_to_i420(&src, g, &mut want).unwrap();
        let mut got = I420Frame::grey(g);
        YuyvLayout::new(g, 2 * g.width())
            .unwrap()
            .to_i420(&src, &mut got)
            .unwrap();
        assert_eq!(got, want);
        let mut zero_stride = I420Frame::grey(g);
        YuyvLayout::new(g, 0)
            .unwrap()
            .to_i420(&src, &mut zero_stride)
            .unwrap();
        assert_eq!(zero_stride, want, "stride 0 means packed");
    }

    #[test]
    fn padded_lines_give_the_same_picture_as_packed_ones() {
        let g = geometry();
        let src = packed(g, 2);
        let mut want = I420Frame::grey(g);
        yuyv_to_i420(&src, g, &mut want).unwrap();
        for extra in [2, 32, 64, 130] {
            let stride = 2 * g.width() + extra;
            // Padding of 0xff: read as picture it would show as bright garbage.
            let buffer = padded(&src, g, stride, 0xff);
            let layout = YuyvLayout::new(g, stride).unwrap();
            assert_eq!(buffer.len(), layout.min_len());
            let mut got = I420Frame::grey(g);
            layout.to_i420(&buffer, &mut got).unwrap();
            assert_eq!(got, want, "stride {stride}");
            // A full last line (as most drivers deliver) is fine too.
            let mut full = buffer.clone();
            full.resize(stride * g.height(), 0xff);
            layout.to_i420(&full, &mut got).unwrap();
            assert_eq!(got, want, "stride {stride}, padded last line");
        }
    }

    #[test]
    fn a_short_buffer_is_refused_and_leaves_no_partial_picture() {
        let g = geometry();
        let stride = 2 * g.width() + 16;
        let layout = YuyvLayout::new(g, stride).unwrap();
        let buffer = padded(&packed(g, 3), g, stride, 0);
        let mut frame = I420Frame::grey(g);
        for len in [0, 1, stride, layout.min_len() - 1] {
            let err = layout.to_i420(&buffer[..len], &mut frame).unwrap_err();
            assert_eq!(
                err,
                YuyvError::Short {
                    geometry: g,
                    bytes_per_line: stride,
                    expected: layout.min_len(),
                    got: len
                }
            );
            assert_eq!(frame, I420Frame::grey(g), "untouched after a refusal");
        }
        assert!(err_text(&layout, &buffer[..10]).contains("64x32"));
    }

    fn err_text(layout: &YuyvLayout, src: &[u8]) -> String {
        layout
            .to_i420(src, &mut I420Frame::grey(layout.geometry()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_stride_shorter_than_a_line_is_refused() {
        let g = geometry();
        assert_eq!(
            YuyvLayout::new(g, 2 * g.width() - 2),
            Err(YuyvError::StrideTooSmall {
                geometry: g,
                bytes_per_line: 126,
                min: 128
            })
        );
    }
}
