//! Frame sizes the codec accepts, and the macroblock grid they imply.

/// Side of a macroblock in luma pixels: four 8x8 luma blocks, two 8x8 chroma blocks (4:2:0).
pub const MACROBLOCK_SIZE: usize = 16;

/// Largest width or height accepted; bounds memory per frame.
pub const MAX_DIMENSION: usize = 4096;

/// Most macroblocks per frame: macroblock numbers and payload counts travel as u16.
pub const MAX_MACROBLOCKS: usize = u16::MAX as usize;

/// Why a frame size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error(
        "frame size {width}x{height} is not a multiple of {MACROBLOCK_SIZE} in both directions"
    )]
    NotMacroblockAligned { width: usize, height: usize },
    #[error("frame size {width}x{height} is empty")]
    Empty { width: usize, height: usize },
    #[error("frame size {width}x{height} exceeds the maximum of {MAX_DIMENSION} per side")]
    TooLarge { width: usize, height: usize },
    #[error("frame size {width}x{height} has more than {MAX_MACROBLOCKS} macroblocks")]
    TooManyMacroblocks { width: usize, height: usize },
}

/// A frame size the codec can code: both sides a non-zero multiple of 16, at most 4096.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameGeometry {
    width: u16,
    height: u16,
}

impl FrameGeometry {
    /// 640x480, the installation's default camera mode.
    pub const VGA: FrameGeometry = FrameGeometry {
        width: 640,
        height: 480,
    };
    /// 1280x720, the larger mode the codec must also handle.
    pub const HD720: FrameGeometry = FrameGeometry {
        width: 1280,
        height: 720,
    };

    pub fn new(width: usize, height: usize) -> Result<Self, GeometryError> {
        if width == 0 || height == 0 {
            return Err(GeometryError::Empty { width, height });
        }
        if width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(GeometryError::TooLarge { width, height });
        }
        if !width.is_multiple_of(MACROBLOCK_SIZE) || !height.is_multiple_of(MACROBLOCK_SIZE) {
            return Err(GeometryError::NotMacroblockAligned { width, height });
        }
        if (width / MACROBLOCK_SIZE) * (height / MACROBLOCK_SIZE) > MAX_MACROBLOCKS {
            return Err(GeometryError::TooManyMacroblocks { width, height });
        }
        // Both fit in u16 after the MAX_DIMENSION check.
        Ok(FrameGeometry {
            width: width as u16,
            height: height as u16,
        })
    }

    pub fn width(self) -> usize {
        usize::from(self.width)
    }

    pub fn height(self) -> usize {
        usize::from(self.height)
    }

    /// Width of each chroma plane (4:2:0).
    pub fn chroma_width(self) -> usize {
        self.width() / 2
    }

    /// Height of each chroma plane (4:2:0).
    pub fn chroma_height(self) -> usize {
        self.height() / 2
    }

    pub fn luma_len(self) -> usize {
        self.width() * self.height()
    }

    pub fn chroma_len(self) -> usize {
        self.chroma_width() * self.chroma_height()
    }

    /// Macroblock columns.
    pub fn mb_cols(self) -> usize {
        self.width() / MACROBLOCK_SIZE
    }

    /// Macroblock rows.
    pub fn mb_rows(self) -> usize {
        self.height() / MACROBLOCK_SIZE
    }

    /// Macroblocks per frame; at most [`MAX_MACROBLOCKS`].
    pub fn mb_count(self) -> usize {
        self.mb_cols() * self.mb_rows()
    }

    /// Length of a YUYV 4:2:2 frame of this size (two bytes per pixel).
    pub fn yuyv_len(self) -> usize {
        self.luma_len() * 2
    }
}

impl std::fmt::Display for FrameGeometry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// Raster macroblock position of sequence number `seq` when payloads walk the frame with `stride`.
#[inline]
pub(crate) fn position_of(seq: usize, stride: usize, mb_count: usize) -> usize {
    ((seq as u64 * stride as u64) % mb_count as u64) as usize
}

/// The macroblocks of sequence numbers `first_seq`, `first_seq + 1` ... in the order payloads
/// walk the frame with `stride`: each step is [`position_of`] of the next number, found with
/// additions instead of the three divisions (modulo, column, row) per macroblock it would cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MacroblockWalk {
    cols: usize,
    rows: usize,
    /// The stride reduced modulo the macroblock count, in whole rows and columns.
    step_x: usize,
    step_y: usize,
    x: usize,
    y: usize,
}

/// Where a [`MacroblockWalk`] stands: the raster position and its column and row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MacroblockAt {
    pub position: usize,
    pub x: usize,
    pub y: usize,
}

impl MacroblockWalk {
    /// A walk starting at `first_seq`; any stride (a hostile header's too) is taken modulo the
    /// macroblock count, which gives the same positions as [`position_of`].
    pub(crate) fn new(geometry: FrameGeometry, first_seq: usize, stride: usize) -> Self {
        let (cols, rows) = (geometry.mb_cols(), geometry.mb_rows());
        let n = geometry.mb_count();
        let first = position_of(first_seq, stride, n);
        let step = stride % n;
        MacroblockWalk {
            cols,
            rows,
            step_x: step % cols,
            step_y: step / cols,
            x: first % cols,
            y: first / cols,
        }
    }

    /// The current macroblock; then moves on to the next sequence number.
    #[inline(always)]
    pub(crate) fn next_macroblock(&mut self) -> MacroblockAt {
        let at = MacroblockAt {
            position: self.y * self.cols + self.x,
            x: self.x,
            y: self.y,
        };
        // position + step < 2 * mb_count: a carry into the row, then at most one wrap.
        self.x += self.step_x;
        self.y += self.step_y;
        if self.x >= self.cols {
            self.x -= self.cols;
            self.y += 1;
        }
        if self.y >= self.rows {
            self.y -= self.rows;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_visits_the_positions_of_the_sequence_numbers() {
        for (w, h) in [
            (16, 16),
            (48, 32),
            (640, 480),
            (1280, 720),
            (4096, 16),
            (16, 4096),
        ] {
            let g = FrameGeometry::new(w, h).unwrap();
            let n = g.mb_count();
            for stride in [1, 7, 23, n - 1, n, n + 5, 3 * n + 2, 65535] {
                for first in [0, 1, n / 2, n - 1, 65535] {
                    let mut walk = MacroblockWalk::new(g, first, stride);
                    for seq in first..first + n + 3 {
                        let position = position_of(seq, stride, n);
                        let at = walk.next_macroblock();
                        assert_eq!(
                            at,
                            MacroblockAt {
                                position,
                                x: position % g.mb_cols(),
                                y: position / g.mb_cols()
                            },
                            "{g} stride {stride} first {first} seq {seq}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn accepts_only_non_empty_multiples_of_16_up_to_4096() {
        let cases: &[(usize, usize, bool)] = &[
            (640, 480, true),
            (1280, 720, true),
            (16, 16, true),
            (4096, 4080, true),
            (4096, 4096, false),
            (0, 480, false),
            (640, 0, false),
            (641, 480, false),
            (640, 488, false),
            (1920, 1080, false),
            (4112, 16, false),
            (usize::MAX, 16, false),
        ];
        for &(w, h, ok) in cases {
            assert_eq!(FrameGeometry::new(w, h).is_ok(), ok, "{w}x{h}");
        }
    }

    #[test]
    fn macroblock_grid_follows_the_size() {
        let g = FrameGeometry::new(1280, 720).unwrap();
        assert_eq!((g.mb_cols(), g.mb_rows(), g.mb_count()), (80, 45, 3600));
        assert_eq!((g.chroma_width(), g.chroma_height()), (640, 360));
        assert_eq!(FrameGeometry::new(4096, 4080).unwrap().mb_count(), 65280);
    }
}
