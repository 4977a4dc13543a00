//! The encoder's transform and quantisation, and the decoder's inverse transform and sample
//! store, with SSE2, which every x86-64 CPU has (no `target-cpu` flag needed), through
//! `safe_arch`'s safe wrappers of the intrinsics (std::arch calls would need `unsafe` here,
//! which this crate forbids).
//!
//! Auto-vectorisation handles the butterflies but not the transposes between passes (LLVM
//! scalarises them) nor the packing of non-zero flags into a mask; written with intrinsics, a
//! block stays in registers from its bytes to its levels.
//!
//! Each function computes exactly what its portable reference does, so both give bit-identical
//! results (tested): [`crate::fdct::forward_quantise`] and [`crate::idct::inverse_store`], both
//! in 16-bit integers, eight lanes per register.

use safe_arch::{
    add_i16_m128i, add_saturating_i16_m128i, bitxor_m128i, cmp_eq_mask_i16_m128i,
    get_i64_from_m128i_s, m128i, min_i16_m128i, move_mask_i8_m128i, mul_i16_keep_high_m128i,
    mul_u16_keep_high_m128i, pack_i16_to_i8_m128i, pack_i16_to_u8_m128i, set_i64_m128i_s,
    set_splat_i16_m128i, shl_imm_u16_m128i, shr_imm_i16_m128i, sub_i16_m128i,
    sub_saturating_i16_m128i, unpack_high_i16_m128i, unpack_high_i32_m128i, unpack_high_i64_m128i,
    unpack_high_i8_m128i, unpack_low_i16_m128i, unpack_low_i32_m128i, unpack_low_i64_m128i,
    unpack_low_i8_m128i, zeroed_m128i,
};

use crate::fdct::{self, Quantiser};
use crate::idct;
use crate::lanes::Lanes;
use crate::simd::{ForwardPair, PairSource};

/// Samples widened to 16-bit lanes, level-shifted by -128 and scaled by 2^VERTICAL_SHIFT, as
/// [`fdct::forward`] does.
#[inline(always)]
fn level_shifted(words: m128i) -> m128i {
    let shift = set_splat_i16_m128i(128);
    shl_imm_u16_m128i::<{ fdct::VERTICAL_SHIFT }>(sub_i16_m128i(words, shift))
}

/// Loads the 8x8 block at (`x`, `y`) as [`level_shifted`] 16-bit lanes.
#[inline(always)]
fn load_i16(plane: &[u8], stride: usize, x: usize, y: usize) -> [m128i; 8] {
    let zero = zeroed_m128i();
    fdct::block_rows(plane, stride, x, y).map(|bytes| {
        level_shifted(unpack_low_i8_m128i(
            set_i64_m128i_s(i64::from_le_bytes(bytes)),
            zero,
        ))
    })
}

/// [`forward_quantise`] of two blocks: side by side, a row of both is one 16-byte load.
#[inline(always)]
pub(crate) fn forward_quantise_pair(pair: ForwardPair<'_>, q: &Quantiser) -> [u64; 2] {
    let ForwardPair {
        source,
        levels: [first_levels, second_levels],
    } = pair;
    match source {
        PairSource::SideBySide {
            plane,
            stride,
            x,
            y,
        } => {
            let zero = zeroed_m128i();
            let start = y * stride + x;
            let block = &plane[start..start + 7 * stride + 16];
            let (mut first, mut second) = ([zero; 8], [zero; 8]);
            for (r, (a, b)) in first.iter_mut().zip(&mut second).enumerate() {
                let mut both = [0u8; 16];
                both.copy_from_slice(&block[r * stride..r * stride + 16]);
                let bytes = m128i::from(both);
                *a = level_shifted(unpack_low_i8_m128i(bytes, zero));
                *b = level_shifted(unpack_high_i8_m128i(bytes, zero));
            }
            [
                transform_quantise(&first, q, first_levels),
                transform_quantise(&second, q, second_levels),
            ]
        }
        PairSource::TwoPlanes {
            first,
            second,
            stride,
            x,
            y,
        } => [
            forward_quantise(first, stride, x, y, q, first_levels),
            forward_quantise(second, stride, x, y, q, second_levels),
        ],
    }
}

/// The transforms' lane operations on SSE2 registers (see [`crate::lanes`]).
impl Lanes for m128i {
    #[inline(always)]
    fn wrapping_add(self, other: Self) -> Self {
        add_i16_m128i(self, other)
    }

    #[inline(always)]
    fn wrapping_sub(self, other: Self) -> Self {
        sub_i16_m128i(self, other)
    }

    #[inline(always)]
    fn saturating_add(self, other: Self) -> Self {
        add_saturating_i16_m128i(self, other)
    }

    #[inline(always)]
    fn saturating_sub(self, other: Self) -> Self {
        sub_saturating_i16_m128i(self, other)
    }

    #[inline(always)]
    fn mul_high(self, k: i16) -> Self {
        mul_i16_keep_high_m128i(self, set_splat_i16_m128i(k))
    }
}

/// Transposes eight rows of eight 16-bit lanes (three rounds of interleaving).
#[inline(always)]
fn transpose_i16(r: &[m128i; 8]) -> [m128i; 8] {
    // Round 1: pairs of rows, 16-bit interleave.
    let a0 = unpack_low_i16_m128i(r[0], r[1]);
    let a1 = unpack_high_i16_m128i(r[0], r[1]);
    let a2 = unpack_low_i16_m128i(r[2], r[3]);
    let a3 = unpack_high_i16_m128i(r[2], r[3]);
    let a4 = unpack_low_i16_m128i(r[4], r[5]);
    let a5 = unpack_high_i16_m128i(r[4], r[5]);
    let a6 = unpack_low_i16_m128i(r[6], r[7]);
    let a7 = unpack_high_i16_m128i(r[6], r[7]);
    // Round 2: 32-bit interleave (columns 0-1, 2-3 of four rows).
    let b0 = unpack_low_i32_m128i(a0, a2);
    let b1 = unpack_high_i32_m128i(a0, a2);
    let b2 = unpack_low_i32_m128i(a1, a3);
    let b3 = unpack_high_i32_m128i(a1, a3);
    let b4 = unpack_low_i32_m128i(a4, a6);
    let b5 = unpack_high_i32_m128i(a4, a6);
    let b6 = unpack_low_i32_m128i(a5, a7);
    let b7 = unpack_high_i32_m128i(a5, a7);
    // Round 3: 64-bit interleave joins the top and bottom four rows.
    [
        unpack_low_i64_m128i(b0, b4),
        unpack_high_i64_m128i(b0, b4),
        unpack_low_i64_m128i(b1, b5),
        unpack_high_i64_m128i(b1, b5),
        unpack_low_i64_m128i(b2, b6),
        unpack_high_i64_m128i(b2, b6),
        unpack_low_i64_m128i(b3, b7),
        unpack_high_i64_m128i(b3, b7),
    ]
}

/// Forward DCT and quantisation of the 8x8 block at (`x`, `y`): levels in the transposed
/// layout and a mask with bit `n` set when `levels[n]` is non-zero. Bit-identical to
/// [`fdct::forward_quantise`].
#[inline]
pub(crate) fn forward_quantise(
    plane: &[u8],
    stride: usize,
    x: usize,
    y: usize,
    q: &Quantiser,
    levels: &mut [i16; 64],
) -> u64 {
    transform_quantise(&load_i16(plane, stride, x, y), q, levels)
}

/// [`forward_quantise`] of a block's [`level_shifted`] rows.
#[inline(always)]
fn transform_quantise(samples: &[m128i; 8], q: &Quantiser, levels: &mut [i16; 64]) -> u64 {
    let vertical = fdct::forward_pass(samples);
    let rounding = set_splat_i16_m128i(fdct::DESCALE_ROUNDING);
    let descaled = vertical
        .map(|row| shr_imm_i16_m128i::<{ fdct::DESCALE_SHIFT }>(add_i16_m128i(row, rounding)));
    let coefficients = fdct::forward_pass(&transpose_i16(&descaled));
    let limit = set_splat_i16_m128i(fdct::MAX_LEVEL);
    let zero = zeroed_m128i();
    let rows: [m128i; 8] = std::array::from_fn(|r| {
        let c = coefficients[r];
        let sign = shr_imm_i16_m128i::<15>(c);
        let magnitude = sub_i16_m128i(bitxor_m128i(c, sign), sign);
        let biased = add_i16_m128i(
            shl_imm_u16_m128i::<1>(magnitude),
            m128i::from(q.rounding[r]),
        );
        let t = mul_u16_keep_high_m128i(biased, m128i::from(q.reciprocal[r]));
        let m = min_i16_m128i(mul_u16_keep_high_m128i(t, m128i::from(q.scale[r])), limit);
        sub_i16_m128i(bitxor_m128i(m, sign), sign)
    });
    let mut mask = 0u64;
    for (pair, rows) in rows.chunks_exact(2).enumerate() {
        // 0xff bytes where a level is zero, one bit per level after the movemask.
        let zero_flags = pack_i16_to_i8_m128i(
            cmp_eq_mask_i16_m128i(rows[0], zero),
            cmp_eq_mask_i16_m128i(rows[1], zero),
        );
        let zero_bits = move_mask_i8_m128i(zero_flags) as u32;
        mask |= u64::from(!zero_bits & 0xffff) << (16 * pair);
    }
    for (dst, &row) in levels.chunks_exact_mut(8).zip(&rows) {
        dst.copy_from_slice(&<[i16; 8]>::from(row));
    }
    mask
}

/// Inverse DCT of a dequantised block in the transposed layout, stored as 8x8 samples at
/// (`x`, `y`) of `plane`. Bit-identical to [`idct::inverse_store`].
#[inline]
pub(crate) fn inverse_store(
    coefficients: &[i16; 64],
    plane: &mut [u8],
    stride: usize,
    x: usize,
    y: usize,
) {
    let rows: [m128i; 8] = std::array::from_fn(|r| {
        let mut row = [0i16; 8];
        row.copy_from_slice(&coefficients[8 * r..8 * r + 8]);
        m128i::from(row)
    });
    let out = idct::inverse_pass(&transpose_i16(&idct::inverse_pass(&rows)));
    let rounding = set_splat_i16_m128i(idct::OUTPUT_ROUNDING);
    let shift = set_splat_i16_m128i(128);
    for (r, &row) in out.iter().enumerate() {
        // Round, shift right, undo the level shift; the unsigned pack clamps to 0..=255.
        let words = add_i16_m128i(
            shr_imm_i16_m128i::<{ idct::FRACTION_BITS }>(add_saturating_i16_m128i(row, rounding)),
            shift,
        );
        let bytes = pack_i16_to_u8_m128i(words, words);
        let start = (y + r) * stride + x;
        plane[start..start + 8].copy_from_slice(&get_i64_from_m128i_s(bytes).to_le_bytes());
    }
}
