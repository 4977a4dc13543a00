//! Quantisation of DCT blocks and the bit syntax of one macroblock.
//!
//! Macroblock syntax (all Exp-Golomb codes are MSB-first, see [`crate::bitio`]):
//!
//! ```text
//! quality:  '1' = same quality as the previous macroblock of this payload
//!           '0' + 7 bits (quality - 1)
//! 6 blocks (Y top-left, Y top-right, Y bottom-left, Y bottom-right, U, V), each:
//!   se(DC - predictor)   predictor = previous DC of the same component in this payload, else 0
//!   ue(N)                number of non-zero AC coefficients, 0..=63
//!   N times: ue(run) ue(|level| - 1) sign-bit   run = zeros skipped in zigzag order
//! ```

use crate::bitio::{burst_span, se_mapping, BitError, BitReader, BitWriter};
use crate::dct::TRANSPOSED;
use crate::fdct::Quantiser;
use crate::idct::{Dequantiser, LEVEL_ORDER};
use crate::simd::{BlockAtMut, ForwardPair, PairDestination, PairSource, Transforms};
use crate::tables::{scaled_table, CHROMA_BASE, LUMA_BASE, MAX_LEVEL, ZIGZAG};
use keymash_core::Quality;

// The reader's fast path skips the level range check: its longest level code must stay in range.
const _: () = assert!((1 << (crate::bitio::FAST_LEVEL_PREFIX + 1)) - 1 <= MAX_LEVEL);

/// Blocks per macroblock: four luma, one U, one V.
pub const BLOCKS_PER_MACROBLOCK: usize = 6;

/// Most bits one macroblock can take: an explicit quality, then per block the largest DC
/// difference (two extreme levels), a count of 63 and 63 coefficients each with the longest run
/// and the largest level. The writer reserves this much room before writing a macroblock.
pub const MAX_MACROBLOCK_BITS: usize = {
    let dc = crate::bitio::ue_len(crate::bitio::se_mapping(-2 * MAX_LEVEL));
    let count = crate::bitio::ue_len(63);
    let coefficient = crate::bitio::ue_len(62) + crate::bitio::ue_len(MAX_LEVEL as u32 - 1) + 1;
    8 + BLOCKS_PER_MACROBLOCK * (dc + count + 63 * coefficient) as usize
};

// The writer puts a block's DC difference and count together, and each run with its level: both
// must fit one put.
const _: () = {
    let dc = crate::bitio::ue_len(crate::bitio::se_mapping(-2 * MAX_LEVEL));
    let count = crate::bitio::ue_len(63);
    let coefficient = crate::bitio::ue_len(62) + crate::bitio::ue_len(MAX_LEVEL as u32 - 1) + 1;
    assert!(dc + count <= crate::bitio::LONGEST_PUT);
    assert!(coefficient <= crate::bitio::LONGEST_PUT);
};

/// Length of the run code ue(run) by its code value run + 1 (the zigzag step, 1..=63): a load
/// instead of `bsr` and its zero check (baseline x86-64 has no `lzcnt`). 256 entries so that
/// any byte indexes it (entries from 64 on are never used).
const RUN_CODE_LEN: &[u8; 256] = &{
    let mut table = [0u8; 256];
    let mut step = 1;
    while step < 64 {
        table[step] = crate::bitio::ue_len(step as u32 - 1) as u8;
        step += 1;
    }
    table
};

/// Entries of [`LEVEL_CODES`]: every level in -MAX_LEVEL..=MAX_LEVEL, rounded up to a power of
/// two so that an index can be masked instead of bounds-checked.
const LEVEL_CODE_ENTRIES: usize = (2 * MAX_LEVEL as usize + 1).next_power_of_two();

/// Index of `level` in [`LEVEL_CODES`]: its low 12 bits, two's complement (one `and`; every
/// level in -MAX_LEVEL..=MAX_LEVEL has its own).
#[inline(always)]
fn level_code_index(level: i16) -> usize {
    usize::from(level as u16) & (LEVEL_CODE_ENTRIES - 1)
}

const _: () = assert!(LEVEL_CODE_ENTRIES == 1 << 12 && MAX_LEVEL < 1 << 11);

/// The code of every level, ue(|level| - 1) followed by the sign bit, as `bits << 8 | length`:
/// one load instead of an absolute value, a `bsr` and the shifts around them.
const LEVEL_CODES: &[u32; LEVEL_CODE_ENTRIES] = &{
    let mut table = [0u32; LEVEL_CODE_ENTRIES];
    let mut level = -MAX_LEVEL;
    while level <= MAX_LEVEL {
        if level != 0 {
            let magnitude = level.unsigned_abs();
            let length = crate::bitio::ue_len(magnitude - 1) + 1;
            let bits = (magnitude << 1) | (level < 0) as u32;
            table[level as u16 as usize & (LEVEL_CODE_ENTRIES - 1)] = (bits << 8) | length;
        }
        level += 1;
    }
    table
};

/// [`MAX_MACROBLOCK_BITS`] in whole bytes, plus one for the bits already pending.
const MAX_MACROBLOCK_BYTES: usize = MAX_MACROBLOCK_BITS.div_ceil(8) + 1;

/// Which predictor (and quantisation table) a block of a macroblock uses.
pub const BLOCK_COMPONENT: [usize; BLOCKS_PER_MACROBLOCK] = [0, 0, 0, 0, 1, 2];

/// Natural zigzag index `k` mapped into the transposed block layout the DCT produces.
const ZIGZAG_TRANSPOSED: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut k = 0;
    while k < 64 {
        t[k] = TRANSPOSED[ZIGZAG[k] as usize];
        k += 1;
    }
    t
};

/// Quantisers and dequantiser multipliers for one quality, in the transposed DCT layout with the
/// AAN scale factors folded in.
#[derive(Debug, Clone)]
struct QualityTables {
    /// `[luma, chroma]`: the integer quantisers of [`crate::fdct`].
    quantise: [Quantiser; 2],
    /// `[luma, chroma]`: the integer dequantisers of [`crate::idct`].
    dequantise: [Dequantiser; 2],
}

/// The tables of all 100 qualities, computed once (about 125 KiB), so a quality map can change
/// quality per macroblock at no cost.
#[derive(Debug, Clone)]
pub struct QuantTables {
    by_quality: Vec<QualityTables>,
}

impl Default for QuantTables {
    fn default() -> Self {
        Self::new()
    }
}

impl QuantTables {
    pub fn new() -> Self {
        let by_quality = (Quality::MIN.get()..=Quality::MAX.get())
            .map(|q| {
                let quality = Quality::saturating(i64::from(q));
                let tables = [
                    scaled_table(&LUMA_BASE, quality),
                    scaled_table(&CHROMA_BASE, quality),
                ];
                QualityTables {
                    quantise: tables.each_ref().map(Quantiser::new),
                    dequantise: tables.each_ref().map(Dequantiser::new),
                }
            })
            .collect();
        QuantTables { by_quality }
    }

    fn get(&self, quality: Quality) -> &QualityTables {
        // Quality is 1..=100 by construction and the vector holds 100 entries.
        &self.by_quality[usize::from(quality.get() - 1)]
    }
}

/// One block after quantisation: levels in the transposed layout the DCT produces (zigzag
/// position `k` lives at `levels[ZIGZAG_TRANSPOSED[k]]`) and, in zigzag order, which are non-zero.
///
/// The levels are not reordered: only the few non-zero ones are ever read in scan order (by
/// walking `nonzero` with `trailing_zeros`), so a 64-element gather per block would be wasted.
#[derive(Debug, Clone, Copy)]
pub struct QuantisedBlock {
    levels: [i16; 64],
    /// Bit k set when the coefficient at zigzag position k is non-zero.
    pub nonzero: u64,
}

impl QuantisedBlock {
    /// The level at zigzag position `k` (0 = DC); `k` is taken modulo 64.
    #[inline(always)]
    pub fn level(&self, k: usize) -> i16 {
        self.levels[usize::from(ZIGZAG_TRANSPOSED[k % 64])]
    }
}

impl Default for QuantisedBlock {
    fn default() -> Self {
        QuantisedBlock {
            levels: [0; 64],
            nonzero: 0,
        }
    }
}

/// A macroblock ready to be written: its quality and six quantised blocks.
#[derive(Debug, Clone, Copy)]
pub struct QuantisedMacroblock {
    pub quality: Quality,
    pub blocks: [QuantisedBlock; BLOCKS_PER_MACROBLOCK],
}

impl Default for QuantisedMacroblock {
    fn default() -> Self {
        QuantisedMacroblock {
            quality: Quality::MAX,
            blocks: [QuantisedBlock::default(); 6],
        }
    }
}

/// Per row of the transposed block, per pattern of non-zero columns in that row: the matching
/// bits of the zigzag-order mask. Eight lookups permute a 64-bit mask (16 KiB, stays in L1).
const ZIGZAG_BITS_OF_ROW: &[[u64; 256]; 8] = &{
    let mut zigzag_position = [0u8; 64];
    let mut k = 0;
    while k < 64 {
        zigzag_position[ZIGZAG_TRANSPOSED[k] as usize] = k as u8;
        k += 1;
    }
    let mut table = [[0u64; 256]; 8];
    let mut row = 0;
    while row < 8 {
        let mut pattern = 0;
        while pattern < 256 {
            let mut bits = 0u64;
            let mut column = 0;
            while column < 8 {
                if pattern & (1 << column) != 0 {
                    bits |= 1 << zigzag_position[row * 8 + column];
                }
                column += 1;
            }
            table[row][pattern] = bits;
            pattern += 1;
        }
        row += 1;
    }
    table
};

/// The same mask in zigzag order (bit k for zigzag position k): eight table lookups.
#[inline]
fn zigzag_order(transposed_mask: u64) -> u64 {
    let mut mask = 0u64;
    for (byte, table) in transposed_mask
        .to_le_bytes()
        .into_iter()
        .zip(ZIGZAG_BITS_OF_ROW)
    {
        mask |= table[usize::from(byte)];
    }
    mask
}

/// Transforms and quantises macroblock (`mb_x`, `mb_y`) of a frame's planes at `quality`, two
/// blocks at a time: the two top luma blocks, the two bottom ones, then U with V.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn quantise_macroblock<T: Transforms>(
    transforms: T,
    tables: &QuantTables,
    planes: [&[u8]; 3],
    width: usize,
    mb_x: usize,
    mb_y: usize,
    quality: Quality,
    out: &mut QuantisedMacroblock,
) {
    let t = tables.get(quality);
    out.quality = quality;
    let (lx, ly) = (mb_x * 16, mb_y * 16);
    let (cx, cy) = (mb_x * 8, mb_y * 8);
    let cw = width / 2;
    let luma = |y: usize| PairSource::SideBySide {
        plane: planes[0],
        stride: width,
        x: lx,
        y,
    };
    let pairs = [
        luma(ly),
        luma(ly + 8),
        PairSource::TwoPlanes {
            first: planes[1],
            second: planes[2],
            stride: cw,
            x: cx,
            y: cy,
        },
    ];
    let [b0, b1, b2, b3, bu, bv] = &mut out.blocks;
    let destinations = [[b0, b1], [b2, b3], [bu, bv]];
    for (i, (source, [first, second])) in pairs.into_iter().zip(destinations).enumerate() {
        let quantiser = &t.quantise[usize::from(i == 2)];
        let pair = ForwardPair {
            source,
            levels: [&mut first.levels, &mut second.levels],
        };
        let [m0, m1] = transforms.forward_quantise_pair(pair, quantiser);
        first.nonzero = zigzag_order(m0);
        second.nonzero = zigzag_order(m1);
    }
}

/// Running state of a payload's bit stream: DC predictors and the last quality written.
#[derive(Debug, Clone, Copy, Default)]
pub struct PredictionState {
    dc: [i32; 3],
    quality: Option<Quality>,
}

impl PredictionState {
    /// The quality of the last macroblock read or written (`None` before the first).
    pub fn quality(&self) -> Option<Quality> {
        self.quality
    }
}

/// Bits spent per syntax element, to see where the bytes go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BitBreakdown {
    pub quality_bits: u64,
    pub dc_bits: u64,
    pub ac_count_bits: u64,
    pub ac_run_bits: u64,
    pub ac_level_bits: u64,
}

impl std::ops::AddAssign for BitBreakdown {
    fn add_assign(&mut self, o: Self) {
        self.quality_bits += o.quality_bits;
        self.dc_bits += o.dc_bits;
        self.ac_count_bits += o.ac_count_bits;
        self.ac_run_bits += o.ac_run_bits;
        self.ac_level_bits += o.ac_level_bits;
    }
}

/// Writes a macroblock, keeping AC coefficients up to zigzag index `last_index` (63 = all; lower
/// values drop the highest frequencies to make an oversize macroblock fit a payload).
///
/// Forced inline, as is [`read_macroblock`], and free of closures, so that it is compiled into
/// the unit [`crate::simd::Kernel::dispatch`] chose (AVX2 brings BMI2, LZCNT and POPCNT with it).
#[inline(always)]
pub fn write_macroblock(
    writer: &mut BitWriter,
    mb: &QuantisedMacroblock,
    last_index: u32,
    state: &mut PredictionState,
) -> BitBreakdown {
    let mut w = writer.burst::<{ burst_span(MAX_MACROBLOCK_BYTES) }>();
    let mut bits = BitBreakdown::default();
    if state.quality == Some(mb.quality) {
        w.put(1, 1);
        bits.quality_bits += 1;
    } else {
        w.put(u64::from(mb.quality.get() - 1), 8);
        bits.quality_bits += 8;
        state.quality = Some(mb.quality);
    }
    // AC positions 1..=last_index.
    let ac_mask: u64 = if last_index >= 63 {
        !1
    } else {
        ((1u64 << (last_index + 1)) - 1) & !1
    };
    let (mut ac_bits, mut ac_level_bits) = (0, 0);
    for (block, &component) in mb.blocks.iter().zip(&BLOCK_COMPONENT) {
        let dc = i32::from(block.level(0));
        let dc_code = se_mapping(dc - state.dc[component]) + 1;
        let dc_len = code_len(dc_code);
        state.dc[component] = dc;
        let mask = block.nonzero & ac_mask;
        let count_code = mask.count_ones() + 1;
        let count_len = code_len(count_code);
        // se(DC difference) and ue(count) together: at most 25 + 13 bits.
        w.put(
            (u64::from(dc_code) << count_len) | u64::from(count_code),
            dc_len + count_len,
        );
        bits.dc_bits += u64::from(dc_len);
        bits.ac_count_bits += u64::from(count_len);
        let ac_start = w.bits_from_start();
        let mut scan = AcScan {
            block,
            mask,
            prev: 0,
            level_bits: 0,
        };
        // One, then two, then four coefficients at a time: four nearly always fit one put (one
        // store for all four), else each goes alone.
        let count = count_code - 1;
        if count & 1 != 0 {
            let c = scan.next_code();
            w.put(c.bits, c.len);
        }
        if count & 2 != 0 {
            let (a, b) = (scan.next_code(), scan.next_code());
            if a.len + b.len <= crate::bitio::LONGEST_PUT {
                w.put((a.bits << b.len) | b.bits, a.len + b.len);
            } else {
                w.put(a.bits, a.len);
                w.put(b.bits, b.len);
            }
        }
        while scan.mask != 0 {
            let [a, b, c, d] = [
                scan.next_code(),
                scan.next_code(),
                scan.next_code(),
                scan.next_code(),
            ];
            let len = a.len + b.len + c.len + d.len;
            if len <= crate::bitio::LONGEST_PUT {
                let ab = (a.bits << b.len) | b.bits;
                let cd = (c.bits << d.len) | d.bits;
                w.put((ab << (c.len + d.len)) | cd, len);
            } else {
                for code in [a, b, c, d] {
                    w.put(code.bits, code.len);
                }
            }
        }
        ac_bits += (w.bits_from_start() - ac_start) as u64;
        ac_level_bits += u64::from(scan.level_bits);
    }
    bits.ac_level_bits = ac_level_bits;
    bits.ac_run_bits = ac_bits - ac_level_bits;
    w.finish();
    bits
}

/// The AC coefficients of a block still to write, in zigzag order.
struct AcScan<'a> {
    block: &'a QuantisedBlock,
    /// Zigzag positions not written yet (bit k for position k).
    mask: u64,
    /// Position of the coefficient written last (0 for the DC).
    prev: u32,
    /// Bits of the level codes so far (summed as they come: fewer values live at once).
    level_bits: u32,
}

impl AcScan<'_> {
    /// The next coefficient's code; there must be one (`mask != 0`).
    #[inline(always)]
    fn next_code(&mut self) -> CoefficientCode {
        let k = self.mask.trailing_zeros();
        self.mask &= self.mask.wrapping_sub(1);
        let (code, level_len) = coefficient_code(self.block, k, self.prev);
        self.prev = k;
        self.level_bits += level_len;
        code
    }
}

/// The code of one coefficient: ue(run), then ue(|level| - 1) followed by the sign bit.
#[derive(Clone, Copy)]
struct CoefficientCode {
    bits: u64,
    /// At most 33.
    len: u32,
}

/// The code of the coefficient at zigzag position `k` of `block`, the previous one written
/// being at `prev` (0 for the DC), and the length of its level's part.
#[inline(always)]
fn coefficient_code(block: &QuantisedBlock, k: u32, prev: u32) -> (CoefficientCode, u32) {
    let run_code = k - prev;
    // Indexed by the run's low byte: one zero-extending move instead of a copy and a mask.
    let run_len = u32::from(RUN_CODE_LEN[usize::from(run_code as u8)]);
    // k comes from `trailing_zeros` of a u64, so at most 64: the decoder's 256-entry scan
    // table needs no mask for it.
    let level = block.levels[usize::from(SCAN_TRANSPOSED[k as usize])];
    let level_code = LEVEL_CODES[level_code_index(level)];
    let (level_bits, level_len) = (level_code >> 8, level_code & 0xff);
    let code = CoefficientCode {
        bits: (u64::from(run_code) << level_len) | u64::from(level_bits),
        len: run_len + level_len,
    };
    (code, level_len)
}

/// Length of the Exp-Golomb code whose value (the coded number plus one) is `code`.
#[inline(always)]
fn code_len(code: u32) -> u32 {
    2 * (32 - code.leading_zeros()) - 1
}

/// Why the bits of a macroblock could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MacroblockError {
    #[error(transparent)]
    Bits(#[from] BitError),
    #[error("quality {0} is outside 1..=100")]
    QualityOutOfRange(u32),
    #[error("first macroblock of a payload repeats a quality that was never given")]
    RepeatedQualityWithoutPrevious,
    #[error("block claims {0} AC coefficients, at most 63 exist")]
    TooManyCoefficients(u32),
    #[error("run of zeros leads past the last coefficient")]
    RunPastEnd,
    #[error("level {0} exceeds the maximum magnitude {MAX_LEVEL}")]
    LevelOutOfRange(i64),
}

/// The coefficients of one block as the inverse transform takes them: dequantised, prescaled,
/// in the transposed layout (see [`crate::idct`]); or, for a unit that dequantises them itself,
/// the raw levels in [`LEVEL_ORDER`] (see [`DecodedMacroblock`]).
pub type CoefficientBlock = [i16; 64];

/// A macroblock read from the bit stream, ready for the inverse DCT, and which of its blocks
/// carry only a DC value (flat blocks, which skip the IDCT: only their `[0]` is written, always
/// the dequantised DC). The other blocks hold dequantised, transposed DCT coefficients
/// ([`read_macroblock`]), or the raw levels in [`LEVEL_ORDER`] when read for a unit that
/// dequantises them itself, sixteen at a time as it loads them ([`Transforms::TAKES_LEVELS`]).
#[derive(Debug, Clone, Copy)]
pub struct DecodedMacroblock {
    pub quality: Quality,
    pub blocks: [CoefficientBlock; BLOCKS_PER_MACROBLOCK],
    pub dc_only: [bool; BLOCKS_PER_MACROBLOCK],
}

impl Default for DecodedMacroblock {
    fn default() -> Self {
        DecodedMacroblock {
            quality: Quality::MAX,
            blocks: [[0; 64]; BLOCKS_PER_MACROBLOCK],
            dc_only: [false; BLOCKS_PER_MACROBLOCK],
        }
    }
}

/// The level of each level code of the reader's fast path
/// ([`BitReader::get_run_and_level_codes_fast`]: `|level| << 1 | negative`): a load instead of
/// the arithmetic, in the loop that runs once per coefficient.
const LEVEL_OF_CODE: [i16; 2 << (crate::bitio::FAST_LEVEL_PREFIX + 1)] = {
    let mut table = [0i16; 2 << (crate::bitio::FAST_LEVEL_PREFIX + 1)];
    let mut code = 2;
    while code < table.len() {
        let magnitude = (code >> 1) as i16;
        table[code] = if code & 1 == 1 { -magnitude } else { magnitude };
        code += 1;
    }
    table
};

/// Where the reader stores the coefficient of each zigzag position `k` (0..64), indexed by `k`
/// as a byte: every index a `u8` can take is in range, so no check, and positions past 63 (only
/// in a block about to be refused, see [`read_macroblock_with`]) land harmlessly at 0.
type Scan = [u8; 256];

/// [`Scan`] into the transposed layout of dequantised coefficients (and of the encoder's levels).
const SCAN_TRANSPOSED: Scan = {
    let mut t = [0u8; 256];
    let mut k = 0;
    while k < 64 {
        t[k] = ZIGZAG_TRANSPOSED[k];
        k += 1;
    }
    t
};

/// [`Scan`] into [`LEVEL_ORDER`], where a block of raw levels keeps them.
const SCAN_LEVELS: Scan = {
    let mut t = [0u8; 256];
    let mut k = 0;
    while k < 64 {
        t[k] = LEVEL_ORDER[ZIGZAG_TRANSPOSED[k] as usize];
        k += 1;
    }
    t
};

/// Reads one macroblock's bits, dequantised.
#[inline(always)]
pub fn read_macroblock(
    reader: &mut BitReader<'_>,
    tables: &QuantTables,
    state: &mut PredictionState,
    out: &mut DecodedMacroblock,
) -> Result<(), MacroblockError> {
    read_macroblock_as::<false>(reader, tables, state, out)
}

/// Reads one macroblock's bits in the form `transforms` takes: raw levels for a unit that
/// dequantises them itself ([`Transforms::TAKES_LEVELS`]), else dequantised.
#[inline(always)]
pub(crate) fn read_macroblock_for<T: Transforms>(
    _transforms: T,
    reader: &mut BitReader<'_>,
    tables: &QuantTables,
    state: &mut PredictionState,
    out: &mut DecodedMacroblock,
) -> Result<(), MacroblockError> {
    if T::TAKES_LEVELS {
        read_macroblock_as::<true>(reader, tables, state, out)
    } else {
        read_macroblock_as::<false>(reader, tables, state, out)
    }
}

/// [`read_macroblock`], keeping raw levels when `LEVELS`.
#[inline(always)]
fn read_macroblock_as<const LEVELS: bool>(
    reader: &mut BitReader<'_>,
    tables: &QuantTables,
    state: &mut PredictionState,
    out: &mut DecodedMacroblock,
) -> Result<(), MacroblockError> {
    // A local copy keeps the reader's state in registers while coefficients are stored.
    let mut r = reader.clone();
    out.quality =
        read_macroblock_with::<LEVELS>(&mut r, tables, state, &mut out.blocks, &mut out.dc_only)?;
    *reader = r;
    Ok(())
}

#[inline(always)]
fn read_macroblock_with<const LEVELS: bool>(
    r: &mut BitReader<'_>,
    tables: &QuantTables,
    state: &mut PredictionState,
    out: &mut [CoefficientBlock; BLOCKS_PER_MACROBLOCK],
    dc_only: &mut [bool; BLOCKS_PER_MACROBLOCK],
) -> Result<Quality, MacroblockError> {
    let quality = if r.get(1)? == 1 {
        state
            .quality
            .ok_or(MacroblockError::RepeatedQualityWithoutPrevious)?
    } else {
        let q = r.get(7)? + 1;
        let quality = u8::try_from(q)
            .ok()
            .and_then(|q| Quality::new(q).ok())
            .ok_or(MacroblockError::QualityOutOfRange(q))?;
        state.quality = Some(quality);
        quality
    };
    let t = tables.get(quality);
    let scan = if LEVELS {
        &SCAN_LEVELS
    } else {
        &SCAN_TRANSPOSED
    };
    for ((dst, flat_block), &component) in
        out.iter_mut().zip(dc_only.iter_mut()).zip(&BLOCK_COMPONENT)
    {
        let dequantise = &t.dequantise[usize::from(component != 0)];
        // The codes of a DC difference (|difference| <= 2 * MAX_LEVEL) have at most 12 prefix
        // zeros, and those of a count in range at most 6: longer ones take the checked path.
        let difference = match r.get_ue_code_short(12) {
            // se(v): the code's value is 2v for v > 0, 1 - 2v for v <= 0.
            Some(code) => {
                let half = (code >> 1) as i32;
                if code & 1 == 0 {
                    half
                } else {
                    -half
                }
            }
            None => r.get_se()?,
        };
        let dc = i64::from(state.dc[component]) + i64::from(difference);
        if dc.abs() > i64::from(MAX_LEVEL) {
            return Err(MacroblockError::LevelOutOfRange(dc));
        }
        // |dc| <= MAX_LEVEL from here on: it fits every narrower type.
        let dc = dc as i32;
        state.dc[component] = dc;
        let count = match r.get_ue_code_short(6) {
            Some(code) => code - 1,
            None => r.get_ue()?,
        };
        if count > 63 {
            return Err(MacroblockError::TooManyCoefficients(count));
        }
        *flat_block = count == 0;
        if count == 0 {
            // Only the DC value matters; the block is not zeroed nor transformed.
            dst[0] = dequantise.coefficient(dc, 0);
            continue;
        }
        *dst = [0; 64];
        dst[0] = if LEVELS {
            dc as i16
        } else {
            dequantise.coefficient(dc, 0)
        };
        // Zigzag position of the last coefficient read. The fast path does not check it: a run
        // past the end is its only possible fault, so it is reported when the checked path is
        // next taken or after the block, exactly as if at once (nothing else can fail in
        // between). Until then positions past 63 land in the block (see `Scan`), whose content
        // does not matter once it is refused.
        let mut k = 0u32;
        for _ in 0..count {
            if let Some((step, level_code)) = r.get_run_and_level_codes_fast() {
                k += step;
                // Short codes: the magnitude is at most 2047 by construction.
                let level = LEVEL_OF_CODE[level_code as usize % LEVEL_OF_CODE.len()];
                let at = usize::from(scan[usize::from(k as u8)]);
                dst[at] = if LEVELS {
                    level
                } else {
                    dequantise.coefficient(i32::from(level), at)
                };
                continue;
            }
            if k > 63 {
                return Err(MacroblockError::RunPastEnd);
            }
            k += r.get_ue()? + 1;
            if k > 63 {
                return Err(MacroblockError::RunPastEnd);
            }
            let (magnitude_minus_one, negative) = r.get_ue_and_bit()?;
            let magnitude = i64::from(magnitude_minus_one) + 1;
            if magnitude > i64::from(MAX_LEVEL) {
                return Err(MacroblockError::LevelOutOfRange(magnitude));
            }
            let level = if negative { -magnitude } else { magnitude };
            let at = usize::from(scan[k as usize]);
            dst[at] = if LEVELS {
                // |level| <= MAX_LEVEL: the i16 holds it; the transform dequantises it.
                level as i16
            } else {
                dequantise.coefficient(level as i32, at)
            };
        }
        if k > 63 {
            return Err(MacroblockError::RunPastEnd);
        }
    }
    Ok(quality)
}

/// Inverse-transforms a dequantised block and stores it as 8x8 samples. A DC-only block is
/// flat: every sample is its DC term (the inverse AAN DCT passes a lone DC through unchanged).
#[inline(always)]
pub(crate) fn store_block<T: Transforms>(
    transforms: T,
    b: &CoefficientBlock,
    dc_only: bool,
    plane: &mut [u8],
    stride: usize,
    x: usize,
    y: usize,
) {
    if dc_only {
        store_flat(b[0], plane, stride, x, y);
        return;
    }
    transforms.inverse_store(
        b,
        BlockAtMut {
            plane,
            stride,
            x,
            y,
        },
    );
}

/// Stores the flat block of DC coefficient `dc` (the inverse AAN DCT passes a lone DC through
/// unchanged, so every sample is its DC term).
#[inline(always)]
fn store_flat(dc: i16, plane: &mut [u8], stride: usize, x: usize, y: usize) {
    let value = crate::idct::sample(dc);
    for r in 0..8 {
        let start = (y + r) * stride + x;
        plane[start..start + 8].fill(value);
    }
}

/// Inverse-transforms one block of a decoded macroblock whose partner did not go with it, and
/// stores it: flat, or through the transform (a unit that dequantises gets it as a pair with
/// itself, of which only the first is stored: on AVX2 that costs what one block alone would).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn store_alone<T: Transforms>(
    transforms: T,
    block: &CoefficientBlock,
    dc_only: bool,
    levels: Option<&Dequantiser>,
    plane: &mut [u8],
    stride: usize,
    x: usize,
    y: usize,
) {
    match levels {
        Some(dequantiser) if !dc_only => {
            let destination = PairDestination::First {
                plane,
                stride,
                x,
                y,
            };
            transforms.dequantise_inverse_store_pair([block, block], dequantiser, destination);
        }
        _ => store_block(transforms, block, dc_only, plane, stride, x, y),
    }
}

/// Inverse-transforms two blocks of a decoded macroblock together, with `dequantiser` when
/// they hold raw levels (see [`DecodedMacroblock`]).
#[inline(always)]
fn store_pair<T: Transforms>(
    transforms: T,
    blocks: [&CoefficientBlock; 2],
    levels: Option<&Dequantiser>,
    destination: PairDestination<'_>,
) {
    match levels {
        Some(dequantiser) => {
            transforms.dequantise_inverse_store_pair(blocks, dequantiser, destination);
        }
        None => transforms.inverse_store_pair(blocks, destination),
    }
}

/// Stores a decoded macroblock whose luma blocks start at (`lx`, `ly`) and chroma blocks at
/// (`cx`, `cy`): pairs of blocks that both need the inverse transform go through it together
/// (the two top luma blocks, the two bottom ones, U with V). `mb` must have been read for the
/// same unit ([`read_macroblock_for`]); `tables` dequantise its blocks if they hold raw levels.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn store_macroblock<T: Transforms>(
    transforms: T,
    tables: &QuantTables,
    mb: &DecodedMacroblock,
    planes: (&mut [u8], &mut [u8], &mut [u8]),
    width: usize,
    lx: usize,
    ly: usize,
    cx: usize,
    cy: usize,
) {
    let (y, u, v) = planes;
    let (luma, chroma) = if T::TAKES_LEVELS {
        let [luma, chroma] = &tables.get(mb.quality).dequantise;
        (Some(luma), Some(chroma))
    } else {
        (None, None)
    };
    let [b0, b1, b2, b3, bu, bv] = &mb.blocks;
    let [f0, f1, f2, f3, fu, fv] = mb.dc_only;
    for (top, [a, b], [fa, fb]) in [(ly, [b0, b1], [f0, f1]), (ly + 8, [b2, b3], [f2, f3])] {
        if fa || fb {
            store_alone(transforms, a, fa, luma, y, width, lx, top);
            store_alone(transforms, b, fb, luma, y, width, lx + 8, top);
        } else {
            let destination = PairDestination::SideBySide {
                plane: &mut *y,
                stride: width,
                x: lx,
                y: top,
            };
            store_pair(transforms, [a, b], luma, destination);
        }
    }
    let cw = width / 2;
    if fu || fv {
        store_alone(transforms, bu, fu, chroma, u, cw, cx, cy);
        store_alone(transforms, bv, fv, chroma, v, cw, cx, cy);
    } else {
        let destination = PairDestination::TwoPlanes {
            first: u,
            second: v,
            stride: cw,
            x: cx,
            y: cy,
        };
        store_pair(transforms, [bu, bv], chroma, destination);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{Kernel, Simd, WithTransforms};

    #[test]
    fn quantised_levels_follow_the_ijg_tables() {
        // A flat block of value 128 + 64 has DC = 8 * 64 = 512 in JPEG units; at quality 50 the luma
        // DC quantiser is 16, so the level is 32; every AC level is zero.
        let tables = QuantTables::new();
        let plane = vec![192u8; 16 * 16];
        let chroma = vec![128u8; 8 * 8];
        let mut mb = QuantisedMacroblock::default();
        quantise_macroblock(
            crate::simd::Portable,
            &tables,
            [&plane, &chroma, &chroma],
            16,
            0,
            0,
            Quality::new(50).unwrap(),
            &mut mb,
        );
        for b in &mb.blocks[..4] {
            assert_eq!(b.level(0), 32);
            assert_eq!(b.nonzero, 1);
        }
        assert_eq!(mb.blocks[4].nonzero, 0);
    }

    #[test]
    fn nonzero_mask_marks_exactly_the_nonzero_levels_in_zigzag_order() {
        let nonzero_mask = |levels: &[i16; 64]| {
            levels
                .iter()
                .enumerate()
                .fold(0u64, |m, (n, &l)| m | (u64::from(l != 0) << n))
        };
        let mut state = 0x9e37_79b9_u32;
        let densities = [0u32, 1, 8, 32, 64, 128, 200, 255, 256];
        for (case, &density) in densities.iter().cycle().take(900).enumerate() {
            let mut block = QuantisedBlock::default();
            for l in block.levels.iter_mut() {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let value = ((state >> 8) % 5) as i16 - 2;
                *l = if (state >> 24) < density {
                    value.max(1) * if value < 0 { -1 } else { 1 }
                } else {
                    0
                };
            }
            let expected = (0..64).fold(0u64, |m, k| m | (u64::from(block.level(k) != 0) << k));
            assert_eq!(
                zigzag_order(nonzero_mask(&block.levels)),
                expected,
                "case {case}"
            );
        }
        let mut single = [0i16; 64];
        for k in 0..64 {
            single.fill(0);
            single[usize::from(ZIGZAG_TRANSPOSED[k])] = -1;
            assert_eq!(
                zigzag_order(nonzero_mask(&single)),
                1 << k,
                "zigzag position {k}"
            );
        }
    }

    /// Samples, random and hostile: the fdct tests' blocks (flat extremes, every coefficient at
    /// its largest and smallest, checkerboards, noise) and random bytes, fully random and
    /// clipped to 0 or 255.
    fn forward_test_blocks() -> Vec<[u8; 64]> {
        let mut blocks = crate::fdct::tests::sample_blocks();
        let mut state = 0x243f_6a88_u32;
        let mut next = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        };
        for case in 0..64 {
            blocks.push(std::array::from_fn(|_| match case % 3 {
                0 => next(),
                // Next to the extremes: 0, 1, 254, 255.
                1 => {
                    let low = next() & 1;
                    if next() >> 7 == 0 {
                        low
                    } else {
                        255 - low
                    }
                }
                _ => 255 * (next() >> 7),
            }));
        }
        blocks
    }

    /// The levels and transposed non-zero mask of `block` through `T`, paired with `partner`
    /// (side by side in one plane when `side_by_side`, else in two planes), checked against
    /// the portable reference for both blocks.
    fn check_forward_pair<T: Transforms>(
        transforms: T,
        blocks: [&[u8; 64]; 2],
        side_by_side: bool,
        q: &Quantiser,
        what: &str,
    ) {
        // Blocks at x = 3 of 24-wide planes (row r of the second block at x = 11 when side by
        // side), so neither is aligned.
        let mut planes = [[0u8; 24 * 8]; 2];
        for r in 0..8 {
            planes[0][24 * r + 3..24 * r + 11].copy_from_slice(&blocks[0][8 * r..8 * r + 8]);
            let (plane, x) = if side_by_side { (0, 11) } else { (1, 3) };
            planes[plane][24 * r + x..24 * r + x + 8].copy_from_slice(&blocks[1][8 * r..8 * r + 8]);
        }
        let source = if side_by_side {
            PairSource::SideBySide {
                plane: &planes[0],
                stride: 24,
                x: 3,
                y: 0,
            }
        } else {
            PairSource::TwoPlanes {
                first: &planes[0],
                second: &planes[1],
                stride: 24,
                x: 3,
                y: 0,
            }
        };
        let (mut l0, mut l1) = ([0i16; 64], [0i16; 64]);
        let pair = ForwardPair {
            source,
            levels: [&mut l0, &mut l1],
        };
        let masks = transforms.forward_quantise_pair(pair, q);
        for (i, (block, levels)) in blocks.iter().zip([l0, l1]).enumerate() {
            let mut reference = [0i16; 64];
            let mask = crate::fdct::forward_quantise(&block[..], 8, 0, 0, q, &mut reference);
            assert_eq!(levels, reference, "{what}, block {i}");
            assert_eq!(masks[i], mask, "{what}, block {i} mask");
        }
    }

    fn check_forward_at_every_quality<T: Transforms>(transforms: T, unit: &str) {
        let tables = QuantTables::new();
        let blocks = forward_test_blocks();
        for quality in 1..=100u8 {
            let t = tables.get(Quality::new(quality).unwrap());
            for (case, block) in blocks.iter().enumerate() {
                let partner = &blocks[(case * 7 + 1) % blocks.len()];
                for (c, quantiser) in t.quantise.iter().enumerate() {
                    let what = format!("{unit} q{quality} case {case} component {c}");
                    check_forward_pair(transforms, [block, partner], c == 0, quantiser, &what);
                }
            }
        }
    }

    /// Runs a check with every vector unit this CPU has, through [`Kernel::dispatch`] as the
    /// codec does (so AVX2 is checked as compiled for it), saying which units it lacks.
    fn on_every_unit(check: impl Fn(Simd) -> CheckOn) {
        for simd in Simd::ALL {
            if simd.is_available() {
                Kernel::new(simd).dispatch(check(simd));
            } else {
                eprintln!("note: this CPU has no {simd}; that path was not tested");
            }
        }
    }

    /// Which check [`on_every_unit`] runs, on which unit.
    #[derive(Clone, Copy)]
    enum CheckOn {
        Forward(Simd),
        Inverse(Simd),
        Levels(Simd),
    }

    impl WithTransforms for CheckOn {
        type Output = ();

        fn run<T: Transforms>(self, transforms: T) {
            match self {
                CheckOn::Forward(simd) => check_forward_at_every_quality(transforms, simd.name()),
                CheckOn::Inverse(simd) => check_inverse_at_every_quality(transforms, simd.name()),
                CheckOn::Levels(simd) => check_levels_at_every_quality(transforms, simd.name()),
            }
        }
    }

    #[test]
    fn every_vector_unit_quantises_to_the_portable_levels_at_every_quality() {
        on_every_unit(CheckOn::Forward);
    }

    /// Dequantised blocks, random and hostile, for every quality: sparse to dense, levels up to
    /// the extremes the syntax allows, alternating extremes (every sum saturates) and lone
    /// extreme DCs.
    fn inverse_test_blocks(dequantise: &Dequantiser, state: &mut u32) -> Vec<CoefficientBlock> {
        let mut blocks = Vec::new();
        for case in 0..40u32 {
            let mut block: CoefficientBlock = [0; 64];
            for (n, c) in block.iter_mut().enumerate() {
                *state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let keep = (*state >> 28) < case % 16;
                let level = ((*state >> 8) % 4095) as i32 - 2047;
                let level = if case % 5 == 0 { level } else { level / 64 };
                if keep || n == 0 {
                    *c = dequantise.coefficient(level, n);
                }
            }
            blocks.push(block);
        }
        for sign in [1, -1] {
            blocks.push(std::array::from_fn(|n| {
                let level = if n % 3 == 0 {
                    sign * 2047
                } else {
                    -sign * 2047
                };
                dequantise.coefficient(level, n)
            }));
            blocks.push(std::array::from_fn(|n| {
                dequantise.coefficient(
                    if (n / 8 + n % 8) % 2 == 0 {
                        sign * 2047
                    } else {
                        0
                    },
                    n,
                )
            }));
            let mut dc: CoefficientBlock = [0; 64];
            dc[0] = dequantise.coefficient(sign * 2047, 0);
            blocks.push(dc);
        }
        blocks.push([i16::MAX; 64]);
        blocks.push([i16::MIN; 64]);
        blocks
    }

    /// Stores the pair (`a`, `b`) with `store` side by side and in two planes, and `a` alone
    /// (paired with itself), each unaligned in a plane whose other bytes must stay untouched,
    /// and compares with `reference` storing each block by itself at `x`.
    fn check_pair_destinations(
        what: &str,
        [a, b]: [&CoefficientBlock; 2],
        store: impl Fn([&CoefficientBlock; 2], PairDestination<'_>),
        reference: impl Fn(&CoefficientBlock, &mut [u8], usize),
    ) {
        let (mut fast, mut slow) = ([7u8; 24 * 9], [7u8; 24 * 9]);
        let destination = PairDestination::SideBySide {
            plane: &mut fast,
            stride: 24,
            x: 3,
            y: 0,
        };
        store([a, b], destination);
        reference(a, &mut slow, 3);
        reference(b, &mut slow, 11);
        assert_eq!(fast, slow, "{what}: side by side");
        let (mut u, mut v) = ([7u8; 24 * 9], [7u8; 24 * 9]);
        let destination = PairDestination::TwoPlanes {
            first: &mut u,
            second: &mut v,
            stride: 24,
            x: 5,
            y: 0,
        };
        store([a, b], destination);
        let (mut slow_u, mut slow_v) = ([7u8; 24 * 9], [7u8; 24 * 9]);
        reference(a, &mut slow_u, 5);
        reference(b, &mut slow_v, 5);
        assert_eq!((u, v), (slow_u, slow_v), "{what}: two planes");
        let (mut alone, mut slow) = ([7u8; 24 * 9], [7u8; 24 * 9]);
        let destination = PairDestination::First {
            plane: &mut alone,
            stride: 24,
            x: 7,
            y: 0,
        };
        store([a, a], destination);
        reference(a, &mut slow, 7);
        assert_eq!(alone, slow, "{what}: alone");
    }

    fn check_inverse_at_every_quality<T: Transforms>(transforms: T, unit: &str) {
        let tables = QuantTables::new();
        let mut state = 0x6a09_e667_u32;
        let reference = |b: &CoefficientBlock, plane: &mut [u8], x: usize| {
            crate::idct::inverse_store(b, plane, 24, x, 0);
        };
        for quality in 1..=100u8 {
            let t = tables.get(Quality::new(quality).unwrap());
            for (c, dequantise) in t.dequantise.iter().enumerate() {
                let blocks = inverse_test_blocks(dequantise, &mut state);
                for (case, a) in blocks.iter().enumerate() {
                    let b = &blocks[(case * 7 + 1) % blocks.len()];
                    let what = format!("{unit} q{quality} case {case} component {c}");
                    // Single, then as a pair; unaligned, with bytes around them that must stay
                    // untouched.
                    let (mut fast, mut slow) = ([7u8; 24 * 9], [7u8; 24 * 9]);
                    let single = BlockAtMut {
                        plane: &mut fast,
                        stride: 24,
                        x: 3,
                        y: 0,
                    };
                    transforms.inverse_store(a, single);
                    reference(a, &mut slow, 3);
                    assert_eq!(fast, slow, "{what}: single");
                    check_pair_destinations(
                        &what,
                        [a, b],
                        |pair, destination| transforms.inverse_store_pair(pair, destination),
                        reference,
                    );
                }
            }
        }
    }

    #[test]
    fn every_vector_unit_stores_the_portable_samples_at_every_quality() {
        on_every_unit(CheckOn::Inverse);
    }

    /// Blocks of raw levels ([`LEVEL_ORDER`]), random and hostile: sparse to dense, up to the
    /// largest magnitude the reader accepts, alternating extremes, lone DCs, and every lane at
    /// the ends of 16 bits (beyond anything the reader stores).
    fn level_test_blocks(state: &mut u32) -> Vec<CoefficientBlock> {
        let mut blocks = Vec::new();
        for case in 0..48u32 {
            let mut block: CoefficientBlock = [0; 64];
            for (n, l) in block.iter_mut().enumerate() {
                *state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let keep = (*state >> 28) < case % 17;
                let level = ((*state >> 8) % 4095) as i16 - 2047;
                if keep || n == 0 {
                    *l = if case % 3 == 0 { level } else { level / 32 };
                }
            }
            blocks.push(block);
        }
        for sign in [1, -1] {
            let extreme = sign * MAX_LEVEL as i16;
            blocks.push(std::array::from_fn(|n| {
                if n % 3 == 0 {
                    extreme
                } else {
                    -extreme
                }
            }));
            blocks.push(std::array::from_fn(|n| if n == 0 { extreme } else { 0 }));
            blocks.push([extreme; 64]);
        }
        blocks.push([i16::MAX; 64]);
        blocks.push([i16::MIN; 64]);
        blocks
    }

    /// [`Transforms::dequantise_inverse_store_pair`] against its reference (each block through
    /// [`Dequantiser::coefficients`] and the portable inverse transform), for every destination
    /// and for a block paired with itself.
    fn check_levels_at_every_quality<T: Transforms>(transforms: T, unit: &str) {
        let tables = QuantTables::new();
        let mut state = 0xbb67_ae85_u32;
        let blocks = level_test_blocks(&mut state);
        let reference = |levels: &CoefficientBlock, d: &Dequantiser, plane: &mut [u8], x| {
            crate::idct::inverse_store(&d.coefficients(levels), plane, 24, x, 0);
        };
        for quality in 1..=100u8 {
            let t = tables.get(Quality::new(quality).unwrap());
            for (c, d) in t.dequantise.iter().enumerate() {
                for (case, a) in blocks.iter().enumerate() {
                    let b = &blocks[(case * 5 + 3) % blocks.len()];
                    let what = format!("{unit} q{quality} case {case} component {c}");
                    check_pair_destinations(
                        &what,
                        [a, b],
                        |pair, destination| {
                            transforms.dequantise_inverse_store_pair(pair, d, destination);
                        },
                        |levels, plane, x| reference(levels, d, plane, x),
                    );
                }
            }
        }
    }

    #[test]
    fn every_vector_unit_dequantises_levels_as_the_reference_at_every_quality() {
        on_every_unit(CheckOn::Levels);
    }

    #[test]
    fn the_largest_possible_macroblock_fits_the_room_the_writer_reserves() {
        // Extreme levels of alternating sign everywhere: the longest DC differences and levels.
        for first_dc in [MAX_LEVEL as i16, -(MAX_LEVEL as i16)] {
            let mut mb = QuantisedMacroblock {
                quality: Quality::new(100).unwrap(),
                ..Default::default()
            };
            for (b, block) in mb.blocks.iter_mut().enumerate() {
                for (n, l) in block.levels.iter_mut().enumerate() {
                    *l = if (n + b) % 2 == 0 {
                        first_dc
                    } else {
                        -first_dc
                    };
                }
                block.nonzero = u64::MAX;
            }
            let mut w = BitWriter::new(Vec::new());
            // Previous DCs at the opposite extreme: every DC difference is 2 * MAX_LEVEL.
            let mut state = PredictionState {
                dc: [-i32::from(first_dc); 3],
                quality: None,
            };
            write_macroblock(&mut w, &mb, 63, &mut state);
            assert!(w.bit_len() <= MAX_MACROBLOCK_BITS, "{} bits", w.bit_len());
        }
    }

    /// The macroblock syntax of the module comment, written one element at a time with the
    /// plain writer: what the packed, table-driven `write_macroblock` must reproduce bit for bit.
    fn write_macroblock_by_the_syntax(
        w: &mut BitWriter,
        mb: &QuantisedMacroblock,
        last_index: u32,
        state: &mut PredictionState,
    ) {
        if state.quality == Some(mb.quality) {
            w.put(1, 1);
        } else {
            w.put(u32::from(mb.quality.get() - 1), 8);
            state.quality = Some(mb.quality);
        }
        for (block, &component) in mb.blocks.iter().zip(&BLOCK_COMPONENT) {
            let dc = i32::from(block.level(0));
            w.put_se(dc - state.dc[component]);
            state.dc[component] = dc;
            let kept: Vec<usize> = (1..=last_index.min(63) as usize)
                .filter(|&k| block.level(k) != 0)
                .collect();
            w.put_ue(kept.len() as u32);
            let mut prev = 0;
            for k in kept {
                let level = i32::from(block.level(k));
                w.put_ue((k - prev - 1) as u32);
                w.put_ue(level.unsigned_abs() - 1);
                w.put(u32::from(level < 0), 1);
                prev = k;
            }
        }
    }

    #[test]
    fn the_packed_writer_writes_the_bits_of_the_syntax_element_by_element() {
        let mut rng = 0x2545_f491_u32;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            rng
        };
        let (mut fast, mut reference) = (BitWriter::new(Vec::new()), BitWriter::new(Vec::new()));
        let (mut fast_state, mut reference_state) =
            (PredictionState::default(), PredictionState::default());
        for case in 0..3000u32 {
            let mut mb = QuantisedMacroblock {
                quality: Quality::saturating(i64::from(1 + next() % 100 / (1 + case % 3 * 40))),
                ..Default::default()
            };
            // Sparse and dense blocks, small and extreme levels, long runs.
            let density = next() % 65;
            for block in &mut mb.blocks {
                for (k, &t) in ZIGZAG_TRANSPOSED.iter().enumerate() {
                    let level = if next() % 64 < density {
                        let magnitude = match next() % 8 {
                            0 => MAX_LEVEL,
                            1 => 1 + next() as i32 % MAX_LEVEL,
                            _ => 1 + next() as i32 % 4,
                        };
                        if next() % 2 == 0 {
                            magnitude
                        } else {
                            -magnitude
                        }
                    } else {
                        0
                    };
                    block.levels[usize::from(t)] = level as i16;
                    if level != 0 {
                        block.nonzero |= 1 << k;
                    }
                }
            }
            let last_index = if case % 4 == 0 { next() % 64 } else { 63 };
            let fast_bits = write_macroblock(&mut fast, &mb, last_index, &mut fast_state);
            let before = reference.bit_len();
            write_macroblock_by_the_syntax(&mut reference, &mb, last_index, &mut reference_state);
            assert_eq!(fast.bit_len(), reference.bit_len(), "case {case}");
            let counted = fast_bits.quality_bits
                + fast_bits.dc_bits
                + fast_bits.ac_count_bits
                + fast_bits.ac_run_bits
                + fast_bits.ac_level_bits;
            assert_eq!(
                counted as usize,
                reference.bit_len() - before,
                "case {case}"
            );
            // A rolled-back macroblock must leave no trace in the bytes written after it.
            if case % 7 == 0 {
                let (mark, state) = (fast.mark(), fast_state);
                write_macroblock(&mut fast, &mb, 63, &mut fast_state);
                fast.rollback(mark);
                fast_state = state;
            }
        }
        fast.align_to_byte();
        reference.align_to_byte();
        assert_eq!(fast.into_inner(), reference.into_inner());
    }

    #[test]
    fn code_tables_hold_the_exp_golomb_codes_of_every_run_and_level() {
        for run in 1..64u32 {
            assert_eq!(
                u32::from(RUN_CODE_LEN[run as usize]),
                2 * (32 - run.leading_zeros()) - 1,
                "run {run}"
            );
        }
        for level in -MAX_LEVEL..=MAX_LEVEL {
            if level == 0 {
                continue;
            }
            let code = LEVEL_CODES[level_code_index(level as i16)];
            let magnitude = level.unsigned_abs();
            assert_eq!(
                code >> 8,
                (magnitude << 1) | u32::from(level < 0),
                "level {level}"
            );
            assert_eq!(
                code & 0xff,
                2 * (32 - magnitude.leading_zeros()),
                "level {level}"
            );
        }
    }

    #[test]
    fn flat_blocks_skip_the_idct_with_the_same_result() {
        for dc in [
            i16::MIN,
            -16000,
            -2000,
            -37,
            0,
            7,
            8,
            9,
            12,
            2030,
            2040,
            16000,
            i16::MAX,
        ] {
            let mut block: CoefficientBlock = [0; 64];
            block[0] = dc;
            let (mut fast, mut full) = ([0u8; 64], [0u8; 64]);
            store_block(crate::simd::Portable, &block, true, &mut fast, 8, 0, 0);
            store_block(crate::simd::Portable, &block, false, &mut full, 8, 0, 0);
            assert_eq!(fast, full, "DC {dc}");
        }
    }

    #[test]
    fn a_macroblock_survives_writing_and_reading() {
        let tables = QuantTables::new();
        let mut y = vec![0u8; 16 * 16];
        for (i, p) in y.iter_mut().enumerate() {
            *p = ((i * 37) % 251) as u8;
        }
        let u: Vec<u8> = (0..64).map(|i| (i * 3) as u8).collect();
        let v: Vec<u8> = (0..64).map(|i| 255 - (i * 2) as u8).collect();
        for quality in [1u8, 30, 75, 100] {
            let mut mb = QuantisedMacroblock::default();
            quantise_macroblock(
                crate::simd::Portable,
                &tables,
                [&y, &u, &v],
                16,
                0,
                0,
                Quality::new(quality).unwrap(),
                &mut mb,
            );
            let mut w = BitWriter::new(Vec::new());
            let mut st = PredictionState::default();
            write_macroblock(&mut w, &mb, 63, &mut st);
            write_macroblock(&mut w, &mb, 63, &mut st);
            w.align_to_byte();
            let bytes = w.into_inner();
            let mut r = BitReader::new(&bytes);
            let mut st = PredictionState::default();
            let mut decoded = DecodedMacroblock::default();
            for _ in 0..2 {
                read_macroblock(&mut r, &tables, &mut st, &mut decoded).unwrap();
                assert_eq!(decoded.quality.get(), quality);
            }
            assert!(r.bits_left() < 8);
        }
    }
}
