//! The transforms with AVX2, two 8x8 blocks at once: each 256-bit register holds one row of the
//! first block in its low half and the same row of the second block in its high half.
//!
//! AVX2's 16-bit arithmetic and its unpack instructions work within each 128-bit half, so the
//! butterflies ([`crate::fdct::forward_pass`], [`crate::idct::inverse_pass`], generic over
//! [`Lanes`]) and the SSE2 transpose's interleaving rounds do to each half exactly what SSE2 does
//! to one block: both blocks come out bit-identical to the SSE2 and portable paths (tested).
//!
//! The intrinsics come from `pulp`, whose [`V3`] token proves at run time that the CPU has AVX2
//! and makes them safe to call; everything here runs inside [`crate::simd::Kernel::dispatch`],
//! compiled with AVX2 enabled.

use crate::fdct::{self, Quantiser};
use crate::idct::{self, Dequantiser};
use crate::lanes::Lanes;
use crate::simd::{ForwardPair, PairDestination, PairSource};
use pulp::bytemuck::{self, cast};
use pulp::x86::V3;
use std::arch::x86_64::{__m128i, __m256i};

/// The AVX2 transforms; holding one proves the CPU has AVX2 (see [`crate::simd::Kernel`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(pub(crate) V3);

/// Sixteen 16-bit lanes: a row of each of two blocks.
#[derive(Debug, Clone, Copy)]
struct Ymm {
    simd: V3,
    v: __m256i,
}

/// The transforms' lane operations on AVX2 registers (see [`crate::lanes`]).
impl Lanes for Ymm {
    #[inline(always)]
    fn wrapping_add(self, other: Self) -> Self {
        self.with(self.simd.avx2._mm256_add_epi16(self.v, other.v))
    }

    #[inline(always)]
    fn wrapping_sub(self, other: Self) -> Self {
        self.with(self.simd.avx2._mm256_sub_epi16(self.v, other.v))
    }

    #[inline(always)]
    fn saturating_add(self, other: Self) -> Self {
        self.with(self.simd.avx2._mm256_adds_epi16(self.v, other.v))
    }

    #[inline(always)]
    fn saturating_sub(self, other: Self) -> Self {
        self.with(self.simd.avx2._mm256_subs_epi16(self.v, other.v))
    }

    #[inline(always)]
    fn mul_high(self, k: i16) -> Self {
        let k = self.simd.avx._mm256_set1_epi16(k);
        self.with(self.simd.avx2._mm256_mulhi_epi16(self.v, k))
    }
}

impl Ymm {
    #[inline(always)]
    fn with(self, v: __m256i) -> Self {
        Ymm { simd: self.simd, v }
    }
}

/// Transposes both blocks of eight rows (three rounds of interleaving within each half).
///
/// Nothing in this file hands a closure to a std helper (`array::map`, `from_fn`): such a
/// closure is compiled without AVX2 when the helper is not inlined, and every intrinsic in it
/// becomes a call.
#[inline(always)]
fn transpose(s: V3, r: &[Ymm; 8]) -> [Ymm; 8] {
    let a = &s.avx2;
    let a0 = a._mm256_unpacklo_epi16(r[0].v, r[1].v);
    let a1 = a._mm256_unpackhi_epi16(r[0].v, r[1].v);
    let a2 = a._mm256_unpacklo_epi16(r[2].v, r[3].v);
    let a3 = a._mm256_unpackhi_epi16(r[2].v, r[3].v);
    let a4 = a._mm256_unpacklo_epi16(r[4].v, r[5].v);
    let a5 = a._mm256_unpackhi_epi16(r[4].v, r[5].v);
    let a6 = a._mm256_unpacklo_epi16(r[6].v, r[7].v);
    let a7 = a._mm256_unpackhi_epi16(r[6].v, r[7].v);
    let b0 = a._mm256_unpacklo_epi32(a0, a2);
    let b1 = a._mm256_unpackhi_epi32(a0, a2);
    let b2 = a._mm256_unpacklo_epi32(a1, a3);
    let b3 = a._mm256_unpackhi_epi32(a1, a3);
    let b4 = a._mm256_unpacklo_epi32(a4, a6);
    let b5 = a._mm256_unpackhi_epi32(a4, a6);
    let b6 = a._mm256_unpacklo_epi32(a5, a7);
    let b7 = a._mm256_unpackhi_epi32(a5, a7);
    let y = |v: __m256i| Ymm { simd: s, v };
    [
        y(a._mm256_unpacklo_epi64(b0, b4)),
        y(a._mm256_unpackhi_epi64(b0, b4)),
        y(a._mm256_unpacklo_epi64(b1, b5)),
        y(a._mm256_unpackhi_epi64(b1, b5)),
        y(a._mm256_unpacklo_epi64(b2, b6)),
        y(a._mm256_unpackhi_epi64(b2, b6)),
        y(a._mm256_unpacklo_epi64(b3, b7)),
        y(a._mm256_unpackhi_epi64(b3, b7)),
    ]
}

/// A row of eight 16-bit values in both halves.
#[inline(always)]
fn both_halves(s: V3, row: [u16; 8]) -> __m256i {
    s.avx2
        ._mm256_broadcastsi128_si256(bytemuck::cast::<[u16; 8], __m128i>(row))
}

// One block at a time: the SSE2 code, compiled here with AVX2's encodings.
crate::simd::one_block_transforms! {
    Avx2,
    crate::sse2,

    /// Bit-identical to [`fdct::forward_quantise`] of each block.
    #[inline(always)]
    fn forward_quantise_pair(self, pair: ForwardPair<'_>, q: &Quantiser) -> [u64; 2] {
        let s = self.0;
        let (avx, avx2) = (&s.avx, &s.avx2);
        let ForwardPair { source, levels } = pair;
        let level_shift = avx._mm256_set1_epi16(128);
        let zero = avx._mm256_setzero_si256();
        let mut samples = [Ymm { simd: s, v: zero }; 8];
        // Row r of the first block in bytes 0..8, of the second in bytes 8..16.
        let mut bytes = [s.sse2._mm_setzero_si128(); 8];
        match source {
            PairSource::SideBySide {
                plane,
                stride,
                x,
                y,
            } => {
                let start = y * stride + x;
                let block = &plane[start..start + 7 * stride + 16];
                for (r, row) in bytes.iter_mut().enumerate() {
                    let mut both = [0u8; 16];
                    both.copy_from_slice(&block[r * stride..r * stride + 16]);
                    *row = cast(both);
                }
            }
            PairSource::TwoPlanes {
                first,
                second,
                stride,
                x,
                y,
            } => {
                let first = fdct::block_rows(first, stride, x, y);
                let second = fdct::block_rows(second, stride, x, y);
                for (r, row) in bytes.iter_mut().enumerate() {
                    *row = s
                        .sse2
                        ._mm_set_epi64x(i64::from_le_bytes(second[r]), i64::from_le_bytes(first[r]));
                }
            }
        }
        for (row, &b) in samples.iter_mut().zip(&bytes) {
            let words = avx2._mm256_sub_epi16(avx2._mm256_cvtepu8_epi16(b), level_shift);
            row.v = avx2._mm256_slli_epi16::<{ fdct::VERTICAL_SHIFT }>(words);
        }
        let rounding = avx._mm256_set1_epi16(fdct::DESCALE_ROUNDING);
        let mut descaled = fdct::forward_pass(&samples);
        for row in &mut descaled {
            row.v = avx2._mm256_srai_epi16::<{ fdct::DESCALE_SHIFT }>(
                avx2._mm256_add_epi16(row.v, rounding),
            );
        }
        let coefficients = fdct::forward_pass(&transpose(s, &descaled));
        let mut rows = [zero; 8];
        for (r, (row, c)) in rows.iter_mut().zip(&coefficients).enumerate() {
            let c = c.v;
            // |c| as the reference's (c ^ sign) - sign: |-32768| is 32768 as an unsigned lane.
            let magnitude = avx2._mm256_abs_epi16(c);
            let biased = avx2._mm256_add_epi16(
                avx2._mm256_slli_epi16::<1>(magnitude),
                both_halves(s, q.rounding[r]),
            );
            let t = avx2._mm256_mulhi_epu16(biased, both_halves(s, q.reciprocal[r]));
            // Clamped before the scale (see Quantiser::clamp): the level is at most MAX_LEVEL.
            let t = avx2._mm256_min_epu16(t, both_halves(s, q.clamp[r]));
            let m = avx2._mm256_mulhi_epu16(t, both_halves(s, q.scale[r]));
            // The sign of c back on: -m where c < 0, m where c > 0, and 0 where c = 0, where m
            // is 0 too (a zero coefficient quantises to zero, tested at every quality).
            *row = avx2._mm256_sign_epi16(m, c);
        }
        let mut masks = [0u64; 2];
        for (pair, rows) in rows.chunks_exact(2).enumerate() {
            // Per half, 0xff bytes where a level of the two rows is zero; after the movemask,
            // bits 0..16 are the first block's two rows, bits 16..32 the second's.
            let zero_flags = avx2._mm256_packs_epi16(
                avx2._mm256_cmpeq_epi16(rows[0], zero),
                avx2._mm256_cmpeq_epi16(rows[1], zero),
            );
            let nonzero = !(avx2._mm256_movemask_epi8(zero_flags) as u32);
            masks[0] |= u64::from(nonzero & 0xffff) << (16 * pair);
            masks[1] |= u64::from(nonzero >> 16) << (16 * pair);
        }
        let [first_levels, second_levels] = levels;
        for (r, &row) in rows.iter().enumerate() {
            let lanes: [i16; 16] = bytemuck::cast(row);
            first_levels[8 * r..8 * r + 8].copy_from_slice(&lanes[..8]);
            second_levels[8 * r..8 * r + 8].copy_from_slice(&lanes[8..]);
        }
        masks
    }

    const TAKES_LEVELS: bool = true;

    /// Bit-identical to [`Dequantiser::coefficients`] then [`idct::inverse_store`], per block.
    #[inline(always)]
    fn dequantise_inverse_store_pair(
        self,
        levels: [&[i16; 64]; 2],
        dequantiser: &Dequantiser,
        destination: PairDestination<'_>,
    ) {
        let s = self.0;
        let avx2 = &s.avx2;
        let [a, b] = levels;
        if std::ptr::eq(a, b) {
            // One block alone (its partner is flat): dequantised once, in both halves.
            return dequantise_alone(s, a, dequantiser, destination);
        }
        let (a, b): (&[[i16; 8]; 8], &[[i16; 8]; 8]) =
            (bytemuck::cast_ref(a), bytemuck::cast_ref(b));
        let [high, low] = &dequantiser.split;
        let rounding = s.avx._mm256_set1_epi32(idct::DEQUANTISER_ROUNDING);
        let mut rows = [Ymm { simd: s, v: rounding }; 8];
        for (i, pair) in rows.chunks_exact_mut(2).enumerate() {
            // Row 2i then row 2i + 1 of each block (see LEVEL_ORDER), from two halves of eight
            // lanes each: both blocks at once, so each multiplier is loaded once for both.
            let (r0, r1) = (2 * i, 2 * i + 1);
            let mut first = [rounding; 2];
            let mut second = [rounding; 2];
            for (h, r) in [r0, r1].into_iter().enumerate() {
                let (high, low) = (bytemuck::cast(high[r]), bytemuck::cast(low[r]));
                first[h] = dequantise_half(s, a[r], high, low, rounding);
                second[h] = dequantise_half(s, b[r], high, low, rounding);
            }
            let f = avx2._mm256_packs_epi32(first[0], first[1]);
            let g = avx2._mm256_packs_epi32(second[0], second[1]);
            // Row 2i of both blocks from the low halves, row 2i + 1 from the high halves.
            pair[0].v = avx2._mm256_permute2x128_si256::<0x20>(f, g);
            pair[1].v = avx2._mm256_permute2x128_si256::<0x31>(f, g);
        }
        inverse_rows_store(s, &rows, destination);
    }

    /// Bit-identical to [`idct::inverse_store`] of each block.
    #[inline(always)]
    fn inverse_store_pair(self, coefficients: [&[i16; 64]; 2], destination: PairDestination<'_>) {
        let s = self.0;
        let avx = &s.avx;
        let [a, b] = coefficients;
        let (a, b): (&[[i16; 8]; 8], &[[i16; 8]; 8]) =
            (bytemuck::cast_ref(a), bytemuck::cast_ref(b));
        let mut rows = [Ymm {
            simd: s,
            v: avx._mm256_setzero_si256(),
        }; 8];
        for (row, (ra, rb)) in rows.iter_mut().zip(a.iter().zip(b)) {
            row.v = avx._mm256_set_m128i(bytemuck::cast(*rb), bytemuck::cast(*ra));
        }
        inverse_rows_store(s, &rows, destination);
    }
}

/// [`Transforms::dequantise_inverse_store_pair`] of a block paired with itself.
#[inline(always)]
fn dequantise_alone(
    s: V3,
    levels: &[i16; 64],
    dequantiser: &Dequantiser,
    destination: PairDestination<'_>,
) {
    let avx2 = &s.avx2;
    let levels: &[[i16; 8]; 8] = bytemuck::cast_ref(levels);
    let [high, low] = &dequantiser.split;
    let rounding = s.avx._mm256_set1_epi32(idct::DEQUANTISER_ROUNDING);
    let mut rows = [Ymm {
        simd: s,
        v: rounding,
    }; 8];
    for (i, pair) in rows.chunks_exact_mut(2).enumerate() {
        let (r0, r1) = (2 * i, 2 * i + 1);
        let first = dequantise_half(s, levels[r0], cast(high[r0]), cast(low[r0]), rounding);
        let second = dequantise_half(s, levels[r1], cast(high[r1]), cast(low[r1]), rounding);
        let f = avx2._mm256_packs_epi32(first, second);
        pair[0].v = avx2._mm256_permute2x128_si256::<0x00>(f, f);
        pair[1].v = avx2._mm256_permute2x128_si256::<0x11>(f, f);
    }
    inverse_rows_store(s, &rows, destination);
}

/// Dequantises eight raw levels (half of a row pair in [`idct::LEVEL_ORDER`]) to 32 bits, as
/// [`Dequantiser::coefficients`] gives them before their saturation to 16 bits (see
/// [`Dequantiser::split`] for why this is exact); packing two such halves with saturation gives
/// the row pair.
#[inline(always)]
fn dequantise_half(
    s: V3,
    levels: [i16; 8],
    high: __m256i,
    low: __m256i,
    rounding: __m256i,
) -> __m256i {
    let avx2 = &s.avx2;
    let wide = avx2._mm256_cvtepi16_epi32(bytemuck::cast(levels));
    let whole = avx2._mm256_madd_epi16(wide, high);
    let fraction = avx2._mm256_madd_epi16(wide, low);
    let fraction = avx2._mm256_srai_epi32::<{ idct::DEQUANTISER_BITS as i32 }>(
        avx2._mm256_add_epi32(fraction, rounding),
    );
    avx2._mm256_add_epi32(whole, fraction)
}

/// The inverse transform of two blocks' rows (row r of the first in the low half of `rows[r]`,
/// of the second in the high half), stored where `destination` says.
#[inline(always)]
fn inverse_rows_store(s: V3, rows: &[Ymm; 8], destination: PairDestination<'_>) {
    let (avx, avx2) = (&s.avx, &s.avx2);
    let out = idct::inverse_pass(&transpose(s, &idct::inverse_pass(rows)));
    let rounding = avx._mm256_set1_epi16(idct::OUTPUT_ROUNDING);
    let level_shift = avx._mm256_set1_epi16(128);
    let mut words = [rounding; 8];
    for (w, row) in words.iter_mut().zip(&out) {
        *w = avx2._mm256_add_epi16(
            avx2._mm256_srai_epi16::<{ idct::FRACTION_BITS }>(
                avx2._mm256_adds_epi16(row.v, rounding),
            ),
            level_shift,
        );
    }
    // Two rows per register after the unsigned pack (which clamps to 0..=255): per half,
    // the first row's eight bytes, then the second's.
    let mut packed = [rounding; 4];
    for (p, two) in packed.iter_mut().zip(words.chunks_exact(2)) {
        *p = avx2._mm256_packus_epi16(two[0], two[1]);
    }
    match destination {
        PairDestination::First {
            plane,
            stride,
            x,
            y,
        } => {
            for (p, &two_rows) in packed.iter().enumerate() {
                let [a0, a1, _, _]: [[u8; 8]; 4] = bytemuck::cast(two_rows);
                let start = (y + 2 * p) * stride + x;
                plane[start..start + 8].copy_from_slice(&a0);
                plane[start + stride..start + stride + 8].copy_from_slice(&a1);
            }
        }
        PairDestination::SideBySide {
            plane,
            stride,
            x,
            y,
        } => {
            for (p, &two_rows) in packed.iter().enumerate() {
                // Quadwords (first r, second r, first r+1, second r+1): 16 bytes per row.
                let ordered: [[u8; 16]; 2] =
                    bytemuck::cast(avx2._mm256_permute4x64_epi64::<0b11_01_10_00>(two_rows));
                for (i, row) in ordered.iter().enumerate() {
                    let start = (y + 2 * p + i) * stride + x;
                    plane[start..start + 16].copy_from_slice(row);
                }
            }
        }
        PairDestination::TwoPlanes {
            first,
            second,
            stride,
            x,
            y,
        } => {
            for (p, &two_rows) in packed.iter().enumerate() {
                let [a0, a1, b0, b1]: [[u8; 8]; 4] = bytemuck::cast(two_rows);
                let start = (y + 2 * p) * stride + x;
                first[start..start + 8].copy_from_slice(&a0);
                first[start + stride..start + stride + 8].copy_from_slice(&a1);
                second[start..start + 8].copy_from_slice(&b0);
                second[start + stride..start + stride + 8].copy_from_slice(&b1);
            }
        }
    }
}
