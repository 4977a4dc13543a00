//! The encoder: frames in, self-contained payloads out, in parallel without locks.
//!
//! The frame's macroblocks are numbered by a sequence `k` (raster order for strips, a fixed
//! scattering permutation for dispersed) and the sequence is cut into [`WORK_UNITS`] contiguous
//! shares. Each share is transformed, quantised and packetised on its own into its own buffers,
//! so workers share nothing mutable. The shares depend only on the geometry, never on the thread
//! count, which is why any number of threads produces byte-identical payloads.

use crate::bitio::BitWriter;
use crate::block::{
    quantise_macroblock, write_macroblock, BitBreakdown, PredictionState, QuantTables,
    QuantisedMacroblock,
};
use crate::frame::I420View;
use crate::geometry::{FrameGeometry, MacroblockWalk};
use crate::payload::{patch_index_and_count, PayloadHeader, HEADER_LEN};
use crate::prefetch::{self, Intent};
use crate::simd::{Kernel, Simd, Transforms, WithTransforms};
use keymash_core::{FrameNo, Quality};
use rayon::prelude::*;

/// Default payload size: a 1200-byte UDP payload minus the 12-byte RTP header.
pub const DEFAULT_MAX_PAYLOAD: usize = 1200 - 12;

/// Smallest payload size accepted: the header plus a macroblock cut down to its six DC values
/// at their largest (8 + 6 x 26 bits = 21 bytes), with margin.
pub const MIN_MAX_PAYLOAD: usize = HEADER_LEN + 24;

/// Largest payload size accepted: what fits a UDP datagram (and keeps counts in 16 bits).
pub const MAX_MAX_PAYLOAD: usize = 65_507;

/// Number of independent shares of a frame. Fixed so output never depends on the thread count;
/// 8 keeps the cores of a typical exhibit PC busy while costing at most 8 partly filled
/// payloads per frame.
pub const WORK_UNITS: usize = 8;

/// How macroblocks are spread over payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Raster order: a lost payload leaves a horizontal strip of stale blocks (the original look).
    #[default]
    Strips,
    /// A fixed scattering permutation: a lost payload leaves single stale blocks all over.
    Dispersed,
}

/// Encoder settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderConfig {
    pub geometry: FrameGeometry,
    pub layout: Layout,
    /// Largest payload in bytes (default [`DEFAULT_MAX_PAYLOAD`]).
    pub max_payload: usize,
    /// Worker threads; 1 encodes on the caller's thread, 0 uses one per core.
    pub threads: usize,
}

impl EncoderConfig {
    /// Defaults: strips, 1188-byte payloads, one thread.
    pub fn new(geometry: FrameGeometry) -> Self {
        EncoderConfig {
            geometry,
            layout: Layout::Strips,
            max_payload: DEFAULT_MAX_PAYLOAD,
            threads: 1,
        }
    }
}

/// Why an encoder could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EncoderConfigError {
    #[error("max_payload {got} is below the minimum {MIN_MAX_PAYLOAD} that fits one macroblock")]
    PayloadTooSmall { got: usize },
    #[error("max_payload {got} exceeds the largest UDP payload {MAX_MAX_PAYLOAD}")]
    PayloadTooLarge { got: usize },
    #[error("could not start the encoder's worker threads: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("frame is {got}, the encoder is configured for {expected}")]
    GeometryMismatch {
        expected: FrameGeometry,
        got: FrameGeometry,
    },
    #[error("quality map has {got} entries, the frame has {expected} macroblocks")]
    QualityMapLength { expected: usize, got: usize },
}

/// One quality for the whole frame, or one per macroblock in raster order.
#[derive(Debug, Clone, Copy)]
pub enum QualitySpec<'a> {
    Uniform(Quality),
    Map(&'a [Quality]),
}

impl QualitySpec<'_> {
    #[inline]
    fn at(&self, position: usize) -> Quality {
        match self {
            QualitySpec::Uniform(q) => *q,
            QualitySpec::Map(map) => map.get(position).copied().unwrap_or(Quality::MAX),
        }
    }
}

/// Where the bytes of a frame went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeStats {
    pub payloads: u64,
    pub macroblocks: u64,
    /// Macroblocks whose highest-frequency coefficients were dropped to fit one payload.
    pub truncated_macroblocks: u64,
    pub header_bits: u64,
    pub padding_bits: u64,
    pub syntax: BitBreakdown,
}

impl std::ops::AddAssign for EncodeStats {
    fn add_assign(&mut self, o: Self) {
        self.payloads += o.payloads;
        self.macroblocks += o.macroblocks;
        self.truncated_macroblocks += o.truncated_macroblocks;
        self.header_bits += o.header_bits;
        self.padding_bits += o.padding_bits;
        self.syntax += o.syntax;
    }
}

/// The payloads of one share of a frame, concatenated, with their end offsets.
#[derive(Debug, Default)]
struct UnitOutput {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    stats: EncodeStats,
}

/// The payloads of the last encoded frame. Reuse one sink for every frame: its buffers keep
/// their capacity, so encoding does not allocate once warmed up.
#[derive(Debug, Default)]
pub struct PayloadSink {
    units: Vec<UnitOutput>,
}

impl PayloadSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of payloads of the frame.
    pub fn len(&self) -> usize {
        self.units.iter().map(|u| u.ends.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payloads in order (index 0 first).
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.units.iter().flat_map(|u| {
            u.ends.iter().scan(0usize, move |start, &end| {
                let p = u.bytes.get(*start..end);
                *start = end;
                p
            })
        })
    }

    /// Total bytes over all payloads.
    pub fn total_bytes(&self) -> usize {
        self.units.iter().map(|u| u.bytes.len()).sum()
    }

    /// Where the bytes went.
    pub fn stats(&self) -> EncodeStats {
        let mut s = EncodeStats::default();
        for u in &self.units {
            s += u.stats;
        }
        s
    }
}

/// A contiguous share of the macroblock sequence.
#[derive(Debug, Clone, Copy)]
struct UnitPlan {
    first_seq: usize,
    count: usize,
}

/// Everything a worker reads, shared immutably.
struct FrameContext<'a> {
    geometry: FrameGeometry,
    frame_no: FrameNo,
    planes: [&'a [u8]; 3],
    quality: QualitySpec<'a>,
    stride: usize,
    max_payload: usize,
    tables: &'a QuantTables,
}

/// Encodes frames into payloads. See the module documentation for how work is shared.
#[derive(Debug)]
pub struct Encoder {
    config: EncoderConfig,
    stride: usize,
    plans: Vec<UnitPlan>,
    tables: QuantTables,
    pool: Option<rayon::ThreadPool>,
    kernel: Kernel,
}

impl Encoder {
    /// An encoder on the widest vector unit the CPU has.
    pub fn new(config: EncoderConfig) -> Result<Self, EncoderConfigError> {
        Self::with_simd(config, Simd::detect())
    }

    /// An encoder on `simd`, or on the widest unit below it that the CPU has. Every unit gives
    /// the same payloads.
    pub fn with_simd(config: EncoderConfig, simd: Simd) -> Result<Self, EncoderConfigError> {
        if config.max_payload < MIN_MAX_PAYLOAD {
            return Err(EncoderConfigError::PayloadTooSmall {
                got: config.max_payload,
            });
        }
        if config.max_payload > MAX_MAX_PAYLOAD {
            return Err(EncoderConfigError::PayloadTooLarge {
                got: config.max_payload,
            });
        }
        let pool = if config.threads == 1 {
            None
        } else {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(config.threads)
                    .build()?,
            )
        };
        let n = config.geometry.mb_count();
        let stride = match config.layout {
            Layout::Strips => 1,
            Layout::Dispersed => dispersed_stride(config.geometry),
        };
        let units = WORK_UNITS.min(n);
        let plans = (0..units)
            .map(|u| {
                let first_seq = u * n / units;
                UnitPlan {
                    first_seq,
                    count: (u + 1) * n / units - first_seq,
                }
            })
            .collect();
        Ok(Encoder {
            config,
            stride,
            plans,
            tables: QuantTables::new(),
            pool,
            kernel: Kernel::new(simd),
        })
    }

    /// The vector unit the transforms run on.
    pub fn simd(&self) -> Simd {
        self.kernel.simd()
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Encodes one frame into `out`, replacing what it held.
    pub fn encode(
        &mut self,
        frame_no: FrameNo,
        frame: I420View<'_>,
        quality: QualitySpec<'_>,
        out: &mut PayloadSink,
    ) -> Result<(), EncodeError> {
        let geometry = self.config.geometry;
        if frame.geometry() != geometry {
            return Err(EncodeError::GeometryMismatch {
                expected: geometry,
                got: frame.geometry(),
            });
        }
        if let QualitySpec::Map(map) = quality {
            if map.len() != geometry.mb_count() {
                return Err(EncodeError::QualityMapLength {
                    expected: geometry.mb_count(),
                    got: map.len(),
                });
            }
        }
        let ctx = FrameContext {
            geometry,
            frame_no,
            planes: [frame.y(), frame.u(), frame.v()],
            quality,
            stride: self.stride,
            max_payload: self.config.max_payload,
            tables: &self.tables,
        };
        out.units.resize_with(self.plans.len(), UnitOutput::default);
        let kernel = self.kernel;
        let share = |(unit, plan): (&mut UnitOutput, &UnitPlan)| {
            kernel.dispatch(EncodeShare {
                ctx: &ctx,
                plan: *plan,
                unit,
            })
        };
        match &self.pool {
            None => out.units.iter_mut().zip(self.plans.iter()).for_each(share),
            Some(pool) => pool.install(|| {
                out.units
                    .par_iter_mut()
                    .zip(self.plans.par_iter())
                    .for_each(share)
            }),
        }
        // Number the payloads now that every share knows how many it made.
        let count = out.len();
        let count_u16 = u16::try_from(count).unwrap_or(u16::MAX);
        let mut index = 0u16;
        for unit in &mut out.units {
            let mut start = 0;
            for &end in &unit.ends {
                patch_index_and_count(&mut unit.bytes[start..end], index, count_u16);
                index = index.saturating_add(1);
                start = end;
            }
        }
        Ok(())
    }
}

/// A stride that scatters consecutive sequence numbers over the frame: about 0.38 of the rows
/// and 0.38 of the columns apart (the golden ratio avoids regular patterns), coprime with the
/// macroblock count so that `k * stride mod n` visits every macroblock once.
fn dispersed_stride(geometry: FrameGeometry) -> usize {
    const GOLDEN_FRACTION: f64 = 0.381_966;
    let n = geometry.mb_count();
    if n <= 2 {
        return 1;
    }
    let rows = (geometry.mb_rows() as f64 * GOLDEN_FRACTION).round() as usize;
    let cols = (geometry.mb_cols() as f64 * GOLDEN_FRACTION).round() as usize;
    let mut stride = (rows * geometry.mb_cols() + cols).clamp(2, n - 1);
    while gcd(stride, n) != 1 {
        stride = if stride + 1 >= n { 2 } else { stride + 1 };
    }
    stride
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// An open payload being filled by one worker.
struct OpenPayload {
    start: usize,
    mb_count: usize,
    state: PredictionState,
}

/// One share of a frame to encode, with the vector unit [`Kernel::dispatch`] chooses.
struct EncodeShare<'a, 'f> {
    ctx: &'a FrameContext<'f>,
    plan: UnitPlan,
    unit: &'a mut UnitOutput,
}

impl WithTransforms for EncodeShare<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run<T: Transforms>(self, transforms: T) {
        encode_unit(transforms, self.ctx, self.plan, self.unit);
    }
}

#[inline(always)]
fn encode_unit<T: Transforms>(
    transforms: T,
    ctx: &FrameContext<'_>,
    plan: UnitPlan,
    unit: &mut UnitOutput,
) {
    let mut bytes = std::mem::take(&mut unit.bytes);
    bytes.clear();
    unit.ends.clear();
    unit.stats = EncodeStats::default();
    let mut w = BitWriter::new(bytes);
    let mut open: Option<OpenPayload> = None;
    let mut mb = QuantisedMacroblock::default();
    let limit_bits = ctx.max_payload * 8;
    let mut walk = MacroblockWalk::new(ctx.geometry, plan.first_seq, ctx.stride);

    let mut next = walk.next_macroblock();
    for seq in plan.first_seq..plan.first_seq + plan.count {
        let at = next;
        next = walk.next_macroblock();
        // The next macroblock's lines are fetched while this one is coded (see `prefetch`).
        prefetch::macroblock_lines(
            ctx.planes,
            ctx.geometry.width(),
            [next.x * 16, next.y * 16, next.x * 8, next.y * 8],
            Intent::Read,
        );
        quantise_macroblock(
            transforms,
            ctx.tables,
            ctx.planes,
            ctx.geometry.width(),
            at.x,
            at.y,
            ctx.quality.at(at.position),
            &mut mb,
        );
        loop {
            let p = open.get_or_insert_with(|| {
                let start = w.byte_len();
                // Index and count are patched once the whole frame is done.
                w.put_bytes(&header(ctx, seq, 0).to_bytes());
                unit.stats.header_bits += (HEADER_LEN * 8) as u64;
                OpenPayload {
                    start,
                    mb_count: 0,
                    state: PredictionState::default(),
                }
            });
            let mark = w.mark();
            let saved_state = p.state;
            let bits = write_macroblock(&mut w, &mb, 63, &mut p.state);
            if w.bit_len() - p.start * 8 <= limit_bits {
                p.mb_count += 1;
                unit.stats.syntax += bits;
                unit.stats.macroblocks += 1;
                break;
            }
            w.rollback(mark);
            p.state = saved_state;
            if p.mb_count > 0 {
                close_payload(&mut w, unit, p);
                open = None;
                continue;
            }
            // Alone in a payload and still too big: drop the highest frequencies until it fits.
            // The DC-only form always fits (MIN_MAX_PAYLOAD), so the search ends.
            let mut keep = 62u32;
            loop {
                let bits = write_macroblock(&mut w, &mb, keep, &mut p.state);
                let fits = w.bit_len() - p.start * 8 <= limit_bits;
                debug_assert!(
                    fits || keep > 0,
                    "a DC-only macroblock must fit MIN_MAX_PAYLOAD"
                );
                if fits || keep == 0 {
                    p.mb_count += 1;
                    unit.stats.syntax += bits;
                    unit.stats.macroblocks += 1;
                    unit.stats.truncated_macroblocks += 1;
                    break;
                }
                w.rollback(mark);
                p.state = saved_state;
                keep = if keep > 16 { keep - 8 } else { keep - 1 };
            }
            break;
        }
    }
    if let Some(p) = open.as_mut() {
        close_payload(&mut w, unit, p);
    }
    unit.bytes = w.into_inner();
}

fn header(ctx: &FrameContext<'_>, first_seq: usize, mb_count: usize) -> PayloadHeader {
    PayloadHeader {
        width: ctx.geometry.width() as u16,
        height: ctx.geometry.height() as u16,
        frame_no: ctx.frame_no,
        payload_index: 0,
        payload_count: 1,
        mb_stride: ctx.stride as u16,
        first_seq: first_seq as u16,
        mb_count: mb_count as u16,
    }
}

fn close_payload(w: &mut BitWriter, unit: &mut UnitOutput, p: &OpenPayload) {
    unit.stats.padding_bits += u64::from(w.align_to_byte());
    // The macroblock count sits at header bytes 22..24; it fits u16 because a payload of at
    // most 65507 bytes cannot hold 65536 macroblocks of at least 13 bits each.
    w.patch_bytes(p.start + 22, &(p.mb_count as u16).to_be_bytes());
    unit.ends.push(w.byte_len());
    unit.stats.payloads += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispersed_stride_visits_every_macroblock_once() {
        for (w, h) in [
            (16, 16),
            (32, 16),
            (48, 48),
            (640, 480),
            (1280, 720),
            (4096, 4080),
        ] {
            let g = FrameGeometry::new(w, h).unwrap();
            let n = g.mb_count();
            let s = dispersed_stride(g);
            assert_eq!(gcd(s, n), 1, "{g}");
            let mut seen = vec![false; n];
            for k in 0..n {
                seen[crate::geometry::position_of(k, s, n)] = true;
            }
            assert!(seen.iter().all(|&x| x), "{g}");
        }
    }

    #[test]
    fn configs_outside_the_payload_bounds_are_refused() {
        let mut c = EncoderConfig::new(FrameGeometry::VGA);
        c.max_payload = MIN_MAX_PAYLOAD - 1;
        assert!(matches!(
            Encoder::new(c.clone()),
            Err(EncoderConfigError::PayloadTooSmall { .. })
        ));
        c.max_payload = MAX_MAX_PAYLOAD + 1;
        assert!(matches!(
            Encoder::new(c.clone()),
            Err(EncoderConfigError::PayloadTooLarge { .. })
        ));
        c.max_payload = MIN_MAX_PAYLOAD;
        assert!(Encoder::new(c).is_ok());
    }
}
