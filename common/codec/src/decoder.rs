//! The decoder: applies payloads, in any order and with any missing, to a persistent frame.

use crate::bitio::BitReader;
use crate::block::{
    read_macroblock_for, store_macroblock, DecodedMacroblock, MacroblockError, PredictionState,
    QuantTables,
};
use crate::frame::I420Frame;
use crate::geometry::position_of;
use crate::geometry::FrameGeometry;
use crate::payload::{HeaderError, PayloadHeader, HEADER_LEN};
use crate::prefetch::{self, Intent};
use crate::simd::{Kernel, Simd, Transforms, WithTransforms};
use keymash_core::{FrameNo, Quality};

/// Why a payload was refused. Payloads come from the network, so every cause is an input error,
/// never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("payload is for a {width}x{height} frame, this decoder shows {expected}")]
    GeometryMismatch {
        expected: FrameGeometry,
        width: u16,
        height: u16,
    },
    #[error("macroblocks {first}..{first}+{count} run past the frame's {frame_macroblocks}")]
    MacroblocksOutOfFrame {
        first: u16,
        count: u16,
        frame_macroblocks: usize,
    },
    #[error("macroblock {index} of the payload is malformed: {cause}")]
    Macroblock { index: u16, cause: MacroblockError },
    #[error("{0} bytes left over after the last macroblock")]
    TrailingBytes(usize),
}

/// What a successfully applied payload was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadInfo {
    pub frame_no: FrameNo,
    pub payload_index: u16,
    pub payload_count: u16,
    /// Macroblocks written to the frame.
    pub macroblocks: u16,
    /// The quality its last macroblock was coded at (`None` for a payload of no macroblocks).
    pub quality: Option<Quality>,
}

/// Decodes payloads into a persistent I420 frame: blocks no payload touched keep their old
/// content, which is what a lost packet looks like on screen.
#[derive(Debug)]
pub struct Decoder {
    frame: I420Frame,
    tables: QuantTables,
    kernel: Kernel,
}

impl Decoder {
    /// A decoder whose frame starts mid-grey, on the widest vector unit the CPU has.
    pub fn new(geometry: FrameGeometry) -> Self {
        Self::with_simd(geometry, Simd::detect())
    }

    /// A decoder on `simd`, or on the widest unit below it that the CPU has. Every unit
    /// decodes to the same picture.
    pub fn with_simd(geometry: FrameGeometry, simd: Simd) -> Self {
        Decoder {
            frame: I420Frame::grey(geometry),
            tables: QuantTables::new(),
            kernel: Kernel::new(simd),
        }
    }

    /// The vector unit the inverse transform runs on.
    pub fn simd(&self) -> Simd {
        self.kernel.simd()
    }

    pub fn geometry(&self) -> FrameGeometry {
        self.frame.geometry()
    }

    /// The picture as the payloads applied so far left it.
    pub fn frame(&self) -> &I420Frame {
        &self.frame
    }

    /// Back to mid-grey.
    pub fn reset(&mut self) {
        self.frame = I420Frame::grey(self.frame.geometry());
    }

    /// Decodes one payload into the frame.
    ///
    /// The header is checked in full before anything is written. Macroblocks are written as they
    /// decode, so if a corrupt payload fails half-way, the macroblocks before the fault are
    /// already on screen (each is whole: a macroblock is written only after all of it decoded).
    pub fn apply(&mut self, payload: &[u8]) -> Result<PayloadInfo, DecodeError> {
        let header = PayloadHeader::parse(payload)?;
        let geometry = self.frame.geometry();
        if !header.matches(geometry) {
            return Err(DecodeError::GeometryMismatch {
                expected: geometry,
                width: header.width,
                height: header.height,
            });
        }
        let n = geometry.mb_count();
        if usize::from(header.first_seq) + usize::from(header.mb_count) > n {
            return Err(DecodeError::MacroblocksOutOfFrame {
                first: header.first_seq,
                count: header.mb_count,
                frame_macroblocks: n,
            });
        }
        let body = payload.get(HEADER_LEN..).unwrap_or_default();
        let quality = self.kernel.dispatch(DecodeBody {
            frame: &mut self.frame,
            tables: &self.tables,
            header: &header,
            body,
        })?;
        Ok(PayloadInfo {
            frame_no: header.frame_no,
            payload_index: header.payload_index,
            payload_count: header.payload_count,
            macroblocks: header.mb_count,
            quality,
        })
    }
}

/// The macroblocks of one payload whose header has been checked, to decode into `frame`.
struct DecodeBody<'a> {
    frame: &'a mut I420Frame,
    tables: &'a QuantTables,
    header: &'a PayloadHeader,
    body: &'a [u8],
}

impl WithTransforms for DecodeBody<'_> {
    /// The quality of the last macroblock.
    type Output = Result<Option<Quality>, DecodeError>;

    #[inline(always)]
    fn run<T: Transforms>(self, transforms: T) -> Self::Output {
        let DecodeBody {
            frame,
            tables,
            header,
            body,
        } = self;
        let geometry = frame.geometry();
        let n = geometry.mb_count();
        let mut reader = BitReader::new(body);
        let mut state = PredictionState::default();
        let mut mb = DecodedMacroblock::default();
        let cols = geometry.mb_cols();
        let width = geometry.width();
        for index in 0..header.mb_count {
            let seq = usize::from(header.first_seq) + usize::from(index);
            let position = position_of(seq, usize::from(header.mb_stride), n);
            let (mx, my) = (position % cols, position / cols);
            let (lx, ly, cx, cy) = (mx * 16, my * 16, mx * 8, my * 8);
            // Asked for before the bits are read, which takes far longer than fetching them.
            // The width is read from the frame here: passing `width` kept it live through the
            // reader, which cost the SSE2 decode 8% more instructions (measured).
            prefetch::macroblock_lines(
                [frame.y(), frame.u(), frame.v()],
                frame.geometry().width(),
                [lx, ly, cx, cy],
                Intent::Write,
            );
            read_macroblock_for(transforms, &mut reader, tables, &mut state, &mut mb)
                .map_err(|cause| DecodeError::Macroblock { index, cause })?;
            let planes = frame.planes_mut();
            store_macroblock(transforms, tables, &mb, planes, width, lx, ly, cx, cy);
        }
        let left = reader.bits_left();
        if left >= 8 {
            return Err(DecodeError::TrailingBytes(left / 8));
        }
        Ok(state.quality())
    }
}
