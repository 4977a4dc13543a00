//! The encoder's transform and quantisation, and the decoder's inverse transform and sample
//! store, with SSE2, which every x86-64 CPU has (no
//! `target-cpu` flag needed), through `safe_arch`'s safe wrappers of the intrinsics (std::arch
//! calls would need `unsafe` here, which this crate forbids).
//!
//! Auto-vectorisation handles the DCT's butterflies but not the transpose between its passes
//! (LLVM scalarises it, 64 single-lane moves per block) nor the packing of non-zero flags into a
//! mask; written with intrinsics, a block stays in registers from its bytes to its levels.
//!
//! The arithmetic is exactly that of the portable path ([`crate::dct::forward`] followed by the
//! quantiser in [`crate::block`], and [`crate::dct::inverse`] followed by the sample store): the same f32 operations in the same order, no fused
//! multiply-add, and rounding half to even, so both give bit-identical levels (tested).

use safe_arch::{
    add_m128, cmp_eq_mask_i16_m128i, convert_to_i32_m128i_from_m128, convert_to_m128_from_i32_m128i, m128, m128i,
    get_i64_from_m128i_s, load_unaligned_m128, max_m128, min_m128, move_high_low_m128, move_low_high_m128, move_mask_i8_m128i, mul_m128, pack_i16_to_i8_m128i,
    pack_i16_to_u8_m128i, pack_i32_to_i16_m128i, set_i64_m128i_s, set_splat_i16_m128i, set_splat_m128, shr_imm_i32_m128i, sub_i16_m128i,
    sub_m128, unpack_high_i16_m128i, unpack_high_m128, unpack_low_i16_m128i, unpack_low_i8_m128i, unpack_low_m128,
    zeroed_m128i,
};

use crate::dct::{Block, C2_MINUS_C6, C2_PLUS_C6, C2_TIMES_2, C4, C6, K1, K2, SQRT2};

/// Eight rows of four lanes: the left (columns 0..4) or right (columns 4..8) half of a block.
type Half = [m128; 8];

/// Loads an 8x8 block of samples, level-shifted by -128, as its two halves.
#[inline(always)]
fn load(plane: &[u8], stride: usize, x: usize, y: usize) -> (Half, Half) {
    let zero = zeroed_m128i();
    let shift = set_splat_i16_m128i(128);
    let mut left = [set_splat_m128(0.0); 8];
    let mut right = [set_splat_m128(0.0); 8];
    for (r, (l, h)) in left.iter_mut().zip(right.iter_mut()).enumerate() {
        let start = (y + r) * stride + x;
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&plane[start..start + 8]);
        let words = sub_i16_m128i(unpack_low_i8_m128i(set_i64_m128i_s(i64::from_le_bytes(bytes)), zero), shift);
        // Interleaving a word with itself and shifting right arithmetically sign-extends it.
        *l = convert_to_m128_from_i32_m128i(shr_imm_i32_m128i::<16>(unpack_low_i16_m128i(words, words)));
        *h = convert_to_m128_from_i32_m128i(shr_imm_i32_m128i::<16>(unpack_high_i16_m128i(words, words)));
    }
    (left, right)
}

/// One forward AAN pass along the rows of a half (the same butterflies as the portable pass).
#[inline(always)]
fn forward_pass(d: &Half) -> Half {
    let (add, sub, mul) = (add_m128, sub_m128, mul_m128);
    let tmp0 = add(d[0], d[7]);
    let tmp7 = sub(d[0], d[7]);
    let tmp1 = add(d[1], d[6]);
    let tmp6 = sub(d[1], d[6]);
    let tmp2 = add(d[2], d[5]);
    let tmp5 = sub(d[2], d[5]);
    let tmp3 = add(d[3], d[4]);
    let tmp4 = sub(d[3], d[4]);

    let tmp10 = add(tmp0, tmp3);
    let tmp13 = sub(tmp0, tmp3);
    let tmp11 = add(tmp1, tmp2);
    let tmp12 = sub(tmp1, tmp2);
    let o0 = add(tmp10, tmp11);
    let o4 = sub(tmp10, tmp11);
    let z1 = mul(add(tmp12, tmp13), set_splat_m128(C4));
    let o2 = add(tmp13, z1);
    let o6 = sub(tmp13, z1);

    let tmp10 = add(tmp4, tmp5);
    let tmp11 = add(tmp5, tmp6);
    let tmp12 = add(tmp6, tmp7);
    let z5 = mul(sub(tmp10, tmp12), set_splat_m128(C6));
    let z2 = add(mul(set_splat_m128(C2_MINUS_C6), tmp10), z5);
    let z4 = add(mul(set_splat_m128(C2_PLUS_C6), tmp12), z5);
    let z3 = mul(tmp11, set_splat_m128(C4));
    let z11 = add(tmp7, z3);
    let z13 = sub(tmp7, z3);
    let o5 = add(z13, z2);
    let o3 = sub(z13, z2);
    let o1 = add(z11, z4);
    let o7 = sub(z11, z4);
    [o0, o1, o2, o3, o4, o5, o6, o7]
}

/// Transposes a 4x4 tile held as four rows.
#[inline(always)]
fn transpose_tile(a: m128, b: m128, c: m128, d: m128) -> [m128; 4] {
    let ab_low = unpack_low_m128(a, b); // a0 b0 a1 b1
    let cd_low = unpack_low_m128(c, d);
    let ab_high = unpack_high_m128(a, b); // a2 b2 a3 b3
    let cd_high = unpack_high_m128(c, d);
    [
        move_low_high_m128(ab_low, cd_low),
        move_high_low_m128(cd_low, ab_low),
        move_low_high_m128(ab_high, cd_high),
        move_high_low_m128(cd_high, ab_high),
    ]
}

/// Transposes a block held as halves: tiles are transposed and the off-diagonal ones swap.
#[inline(always)]
fn transpose(left: &Half, right: &Half) -> (Half, Half) {
    let [a0, a1, a2, a3] = transpose_tile(left[0], left[1], left[2], left[3]);
    let [b0, b1, b2, b3] = transpose_tile(left[4], left[5], left[6], left[7]);
    let [c0, c1, c2, c3] = transpose_tile(right[0], right[1], right[2], right[3]);
    let [d0, d1, d2, d3] = transpose_tile(right[4], right[5], right[6], right[7]);
    ([a0, a1, a2, a3, c0, c1, c2, c3], [b0, b1, b2, b3, d0, d1, d2, d3])
}

/// Quantises one four-lane row with the rounding of the portable path (`cvtps2dq` rounds half
/// to even, as the magic-number addition does).
#[inline(always)]
fn quantise_lanes(v: m128, factors: &[f32]) -> m128i {
    let m = m128::from([factors[0], factors[1], factors[2], factors[3]]);
    let limit = crate::block::MAX_LEVEL as f32;
    let clamped = min_m128(max_m128(mul_m128(v, m), set_splat_m128(-limit)), set_splat_m128(limit));
    convert_to_i32_m128i_from_m128(clamped)
}

/// Forward DCT and quantisation of the 8x8 block at (`x`, `y`): levels in the transposed
/// layout (as [`crate::dct::forward`] leaves coefficients) and a mask with bit `n` set when
/// `levels[n]` is non-zero.
#[inline]
pub(crate) fn forward_quantise(plane: &[u8], stride: usize, x: usize, y: usize, quantise: &[f32; 64]) -> ([i16; 64], u64) {
    let (left, right) = load(plane, stride, x, y);
    let (left, right) = transpose(&forward_pass(&left), &forward_pass(&right));
    let (left, right) = (forward_pass(&left), forward_pass(&right));
    let zero = zeroed_m128i();
    let mut rows = [zero; 8];
    for (r, row) in rows.iter_mut().enumerate() {
        let factors = &quantise[8 * r..8 * r + 8];
        *row = pack_i32_to_i16_m128i(quantise_lanes(left[r], &factors[..4]), quantise_lanes(right[r], &factors[4..]));
    }
    let mut mask = 0u64;
    for (pair, rows) in rows.chunks_exact(2).enumerate() {
        // 0xff bytes where a level is zero, one bit per level after the movemask.
        let zero_flags = pack_i16_to_i8_m128i(cmp_eq_mask_i16_m128i(rows[0], zero), cmp_eq_mask_i16_m128i(rows[1], zero));
        let zero_bits = move_mask_i8_m128i(zero_flags) as u32;
        mask |= u64::from(!zero_bits & 0xffff) << (16 * pair);
    }
    let mut levels = [0i16; 64];
    for (dst, &row) in levels.chunks_exact_mut(8).zip(&rows) {
        dst.copy_from_slice(&<[i16; 8]>::from(row));
    }
    (levels, mask)
}

/// One inverse AAN pass along the rows of a half (the same butterflies as the portable pass).
#[inline(always)]
fn inverse_pass(d: &Half) -> Half {
    let (add, sub, mul) = (add_m128, sub_m128, mul_m128);
    let tmp10 = add(d[0], d[4]);
    let tmp11 = sub(d[0], d[4]);
    let tmp13 = add(d[2], d[6]);
    let tmp12 = sub(mul(sub(d[2], d[6]), set_splat_m128(SQRT2)), tmp13);
    let e0 = add(tmp10, tmp13);
    let e3 = sub(tmp10, tmp13);
    let e1 = add(tmp11, tmp12);
    let e2 = sub(tmp11, tmp12);

    let z13 = add(d[5], d[3]);
    let z10 = sub(d[5], d[3]);
    let z11 = add(d[1], d[7]);
    let z12 = sub(d[1], d[7]);
    let tmp7 = add(z11, z13);
    let tmp11 = mul(sub(z11, z13), set_splat_m128(SQRT2));
    let z5 = mul(add(z10, z12), set_splat_m128(C2_TIMES_2));
    let tmp10 = sub(z5, mul(z12, set_splat_m128(K1)));
    let tmp12 = sub(z5, mul(z10, set_splat_m128(K2)));
    let tmp6 = sub(tmp12, tmp7);
    let tmp5 = sub(tmp11, tmp6);
    let tmp4 = sub(tmp10, tmp5);
    [
        add(e0, tmp7),
        add(e1, tmp6),
        add(e2, tmp5),
        add(e3, tmp4),
        sub(e3, tmp4),
        sub(e2, tmp5),
        sub(e1, tmp6),
        sub(e0, tmp7),
    ]
}

/// Rounds four samples (half to even, as the portable path) after level-shifting and clamping.
#[inline(always)]
fn samples(v: m128) -> m128i {
    let shifted = add_m128(v, set_splat_m128(128.0));
    convert_to_i32_m128i_from_m128(min_m128(max_m128(shifted, set_splat_m128(0.0)), set_splat_m128(255.0)))
}

/// Inverse DCT of a dequantised block in the transposed layout, stored as 8x8 samples at
/// (`x`, `y`) of `plane`.
#[inline]
pub(crate) fn inverse_store(b: &Block, plane: &mut [u8], stride: usize, x: usize, y: usize) {
    let mut left = [set_splat_m128(0.0); 8];
    let mut right = [set_splat_m128(0.0); 8];
    for ((l, h), row) in left.iter_mut().zip(right.iter_mut()).zip(b) {
        let [a0, a1, a2, a3, a4, a5, a6, a7] = *row;
        *l = load_unaligned_m128(&[a0, a1, a2, a3]);
        *h = load_unaligned_m128(&[a4, a5, a6, a7]);
    }
    let (left, right) = transpose(&inverse_pass(&left), &inverse_pass(&right));
    let (left, right) = (inverse_pass(&left), inverse_pass(&right));
    for (r, (&l, &h)) in left.iter().zip(&right).enumerate() {
        // Values are clamped to 0..=255, so both saturating packs are exact.
        let words = pack_i32_to_i16_m128i(samples(l), samples(h));
        let bytes = pack_i16_to_u8_m128i(words, words);
        let start = (y + r) * stride + x;
        plane[start..start + 8].copy_from_slice(&get_i64_from_m128i_s(bytes).to_le_bytes());
    }
}
