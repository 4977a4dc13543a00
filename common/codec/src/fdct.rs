//! The encoder's forward DCT and quantiser in 16-bit integers: the portable reference that the
//! SSE2 path (`sse2::forward_quantise`) reproduces bit for bit.
//!
//! Why integers: a block of 16-bit coefficients is eight rows of eight lanes, eight SSE2
//! registers, so a whole block stays in registers from its samples to its levels. In f32 the
//! same block needs sixteen registers, and the transform spent much of its time spilling them.
//!
//! The transform is the Arai-Agui-Nakajima factorisation (see [`crate::dct`]); its five
//! multiplications become `(x * K) >> 16` (SSE2's `pmulhw`) by constants below one half, so a
//! factor above one half is written as `x - x * (1 - c)` or `x + x * (c - 1)`. Precision is kept
//! by scaling: the vertical pass works on samples times 16 (four fraction bits; its largest
//! intermediate is 1287 * 16 for 8-bit input), the horizontal pass on samples times 2 (its largest
//! intermediate is 12,941 * 2). Both bounds are the exact maxima over all 8-bit blocks, so no sum
//! can overflow `i16`. Below quality 100 every level is within 0.65 of the exact quotient; at 100,
//! where every step is 1, within 1.76 (tested against the f64 textbook DCT below).
//!
//! Quantisation is a multiplication by a 16-bit reciprocal and then by a power of two (SSE2's
//! `pmulhuw`, twice), with rounding to nearest; see [`Quantiser`].

use crate::dct::aan_scale;
use crate::lanes::{transpose, Lanes, Row};

/// Fraction bits of the vertical pass's input: samples are level-shifted and multiplied by 16.
pub const VERTICAL_SHIFT: i32 = 4;
/// Fraction bits of the horizontal pass's input (samples times 2); the vertical pass's output
/// is rounded down to it.
pub const HORIZONTAL_SHIFT: i32 = 1;
/// The rounding of that descale: add half of the dropped unit, then shift right arithmetically.
pub const DESCALE_SHIFT: i32 = VERTICAL_SHIFT - HORIZONTAL_SHIFT;
pub const DESCALE_ROUNDING: i16 = 1 << (DESCALE_SHIFT - 1);

/// `round((1 - cos(4 pi / 16)) * 2^16)`: x * cos(4pi/16) = x - mulhi(x, this).
pub const ONE_MINUS_C4: i16 = 19195;
/// `round(cos(6 pi / 16) * 2^16)`.
pub const C6: i16 = 25080;
/// `-round((1 - (cos(2pi/16) - cos(6pi/16))) * 2^16)`: x * 0.5412 = x + mulhi(x, this).
pub const MINUS_ONE_MINUS_C2_MINUS_C6: i16 = -30068;
/// `round((cos(2pi/16) + cos(6pi/16) - 1) * 2^16)`: x * 1.3066 = x + mulhi(x, this).
pub const C2_PLUS_C6_MINUS_ONE: i16 = 20091;

/// Largest level magnitude, as in [`crate::tables::MAX_LEVEL`].
pub const MAX_LEVEL: i16 = crate::tables::MAX_LEVEL as i16;

/// One forward AAN pass along the first index (butterflies between rows, eight lanes each).
///
/// Why the odd part's products have the signs they have: `mul_high` rounds down, so
/// `x + x.mul_high(k)` comes out half a unit low on average and `x - x.mul_high(k)` half a
/// unit high; computing `-z5` as `(-d).mul_high(c6)` makes z5 half a unit high. With z3 high,
/// z5 high and the products inside z2 and z4 low, every odd output (z3 +- z4 +- z2 ...) ends up
/// at most half a unit off on average; with all products rounded down the 7th output was 1.5
/// units high, which at quality 100 (every step 1) cost 3 dB of PSNR.
#[inline(always)]
pub fn forward_pass<L: Lanes>(d: &[L; 8]) -> [L; 8] {
    let (add, sub) = (L::wrapping_add, L::wrapping_sub);
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
    let s = add(tmp12, tmp13);
    let z1 = sub(s, s.mul_high(ONE_MINUS_C4));
    let o2 = add(tmp13, z1);
    let o6 = sub(tmp13, z1);

    let tmp10 = add(tmp4, tmp5);
    let tmp11 = add(tmp5, tmp6);
    let tmp12 = add(tmp6, tmp7);
    // mul_high rounds down; each product is taken with the sign that makes the outputs'
    // rounding biases cancel as far as they can (see above).
    let minus_z5 = sub(tmp12, tmp10).mul_high(C6);
    let z2 = sub(
        add(tmp10, tmp10.mul_high(MINUS_ONE_MINUS_C2_MINUS_C6)),
        minus_z5,
    );
    let z4 = sub(add(tmp12, tmp12.mul_high(C2_PLUS_C6_MINUS_ONE)), minus_z5);
    let z3 = sub(tmp11, tmp11.mul_high(ONE_MINUS_C4));
    let z11 = add(tmp7, z3);
    let z13 = sub(tmp7, z3);
    [
        o0,
        add(z11, z4),
        o2,
        sub(z13, z2),
        o4,
        add(z13, z2),
        o6,
        sub(z11, z4),
    ]
}

/// The quantiser of one coefficient position, for 16-bit lanes without division:
///
/// `level = ((2|c| + rounding) * reciprocal >> 16) * scale >> 16`, which with `scale = 2^(16-e)`
/// is `floor((2|c| + rounding) * reciprocal / 2^(16+e))`, and with
/// `reciprocal ~ 2^(16+e) / 2D` and `rounding ~ D` is `round(|c| / D)`: the coefficient divided
/// by its divisor `D`, rounded to nearest, to 16 significant bits. The magnitude is doubled
/// first so that `2D >= 2` and the scale fits 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantiser {
    /// Rows of eight, so that a row loads as one register.
    pub reciprocal: [[u16; 8]; 8],
    pub scale: [[u16; 8]; 8],
    pub rounding: [[u16; 8]; 8],
    /// The largest `(2|c| + rounding) * reciprocal >> 16` whose level is within
    /// [`MAX_LEVEL`]: clamping that product to it before the scale gives the same levels as
    /// clamping the level after (see [`Quantiser::clamp_for`]). The AVX2 quantiser clamps
    /// first; the compiler turned its multiply by the scale after a signed clamp into six
    /// instructions in 32-bit lanes instead of one.
    pub clamp: [[u16; 8]; 8],
}

impl Quantiser {
    /// The quantiser for a JPEG table (`table`, natural order), laid out as the transform leaves
    /// its coefficients (transposed, see [`crate::dct::TRANSPOSED`]).
    pub fn new(table: &[u16; 64]) -> Self {
        let mut q = Quantiser {
            reciprocal: [[0; 8]; 8],
            scale: [[0; 8]; 8],
            rounding: [[0; 8]; 8],
            clamp: [[0; 8]; 8],
        };
        for (n, &step) in table.iter().enumerate() {
            // The transform's output is the orthonormal coefficient times 8 s_u s_v (AAN) times
            // 2^HORIZONTAL_SHIFT; the divisor folds all of it into the JPEG step.
            let divisor = f64::from(step)
                * 8.0
                * f64::from(1 << HORIZONTAL_SHIFT)
                * aan_scale(n / 8)
                * aan_scale(n % 8);
            let twice = 2.0 * divisor;
            // twice >= 2 * 16 * 0.076 > 2 for every step >= 1, so e >= 1 and the scale fits.
            let e = twice.log2().floor() as i32;
            let t = usize::from(crate::dct::TRANSPOSED[n]);
            let (row, lane) = (t / 8, t % 8);
            q.reciprocal[row][lane] = (f64::from(1u32 << (16 + e)) / twice)
                .round()
                .min(f64::from(u16::MAX)) as u16;
            q.scale[row][lane] = (1u32 << (16 - e)) as u16;
            q.clamp[row][lane] = Self::clamp_for(e as u32);
            q.rounding[row][lane] = divisor.round() as u16;
        }
        q
    }

    /// [`Quantiser::clamp`] for `scale = 2^(16 - e)`: the level is `t >> e`, at most
    /// MAX_LEVEL exactly while `t < (MAX_LEVEL + 1) << e`.
    pub fn clamp_for(e: u32) -> u16 {
        let largest = ((MAX_LEVEL as u32 + 1) << e) - 1;
        largest.min(u32::from(u16::MAX)) as u16
    }
}

/// Quantises one row: lanes of `c` with the quantiser's row `row` (taken modulo 8).
#[inline(always)]
fn quantise_row(c: Row, q: &Quantiser, row: usize) -> Row {
    let (rounding, reciprocal, scale) =
        (q.rounding[row % 8], q.reciprocal[row % 8], q.scale[row % 8]);
    std::array::from_fn(|i| {
        // Sign as 0 or -1, magnitude by (c ^ sign) - sign: what the SSE2 path computes.
        let sign = c[i] >> 15;
        let magnitude = (c[i] ^ sign).wrapping_sub(sign) as u16;
        let biased = (magnitude << 1).wrapping_add(rounding[i]);
        let t = ((u32::from(biased) * u32::from(reciprocal[i])) >> 16) as u16;
        let m = ((u32::from(t) * u32::from(scale[i])) >> 16) as i16;
        (m.min(MAX_LEVEL) ^ sign).wrapping_sub(sign)
    })
}

/// The eight rows of eight samples of the block at (`x`, `y`), cut with one bounds check for the
/// block and a cheap one per row.
#[inline(always)]
pub fn block_rows(plane: &[u8], stride: usize, x: usize, y: usize) -> [[u8; 8]; 8] {
    let start = y * stride + x;
    let block = &plane[start..start + 7 * stride + 8];
    std::array::from_fn(|r| {
        let mut row = [0u8; 8];
        row.copy_from_slice(&block[r * stride..r * stride + 8]);
        row
    })
}

/// Loads the 8x8 block at (`x`, `y`), level-shifted by -128 and scaled by 2^VERTICAL_SHIFT.
#[inline(always)]
fn load(plane: &[u8], stride: usize, x: usize, y: usize) -> [Row; 8] {
    block_rows(plane, stride, x, y).map(|src| src.map(|s| (i16::from(s) - 128) << VERTICAL_SHIFT))
}

/// Transform of the block at (`x`, `y`), before quantisation: coefficients in the transposed
/// layout, scaled by `8 s_u s_v 2^HORIZONTAL_SHIFT` relative to the orthonormal DCT.
pub fn forward(plane: &[u8], stride: usize, x: usize, y: usize) -> [Row; 8] {
    let vertical = forward_pass(&load(plane, stride, x, y));
    let descaled =
        vertical.map(|row| row.map(|v| v.wrapping_add(DESCALE_ROUNDING) >> DESCALE_SHIFT));
    forward_pass(&transpose(&descaled))
}

/// Transform and quantisation of one block: levels in the transposed layout into `levels`, and
/// the mask of non-zero levels in that layout (bit n for `levels[n]`).
pub fn forward_quantise(
    plane: &[u8],
    stride: usize,
    x: usize,
    y: usize,
    q: &Quantiser,
    levels: &mut [i16; 64],
) -> u64 {
    let coefficients = forward(plane, stride, x, y);
    let mut mask = 0u64;
    for (r, (dst, &row)) in levels.chunks_exact_mut(8).zip(&coefficients).enumerate() {
        let quantised = quantise_row(row, q, r);
        dst.copy_from_slice(&quantised);
        for (i, &l) in quantised.iter().enumerate() {
            mask |= u64::from(l != 0) << (8 * r + i);
        }
    }
    mask
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dct::TRANSPOSED;
    use crate::tables::{scaled_table, CHROMA_BASE, LUMA_BASE};
    use keymash_core::Quality;

    /// The textbook orthonormal JPEG DCT in f64, natural order.
    fn reference_dct(px: &[u8], stride: usize) -> [f64; 64] {
        let c = |k: usize| {
            if k == 0 {
                std::f64::consts::FRAC_1_SQRT_2
            } else {
                1.0
            }
        };
        let mut out = [0.0; 64];
        for u in 0..8 {
            for v in 0..8 {
                let mut s = 0.0;
                for y in 0..8 {
                    for x in 0..8 {
                        let p = f64::from(px[y * stride + x]) - 128.0;
                        s += p
                            * ((2 * y + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos()
                            * ((2 * x + 1) as f64 * v as f64 * std::f64::consts::PI / 16.0).cos();
                    }
                }
                out[u * 8 + v] = 0.25 * c(u) * c(v) * s;
            }
        }
        out
    }

    /// Blocks of every kind: flat extremes, noise, edges, checkerboards and the sign patterns
    /// that drive each coefficient to its largest magnitude (the overflow bound's worst cases).
    pub(crate) fn sample_blocks() -> Vec<[u8; 64]> {
        let mut blocks = vec![[0u8; 64], [255u8; 64], [128u8; 64], [127u8; 64]];
        let mut state = 0x2545_f491_u32;
        for smoothness in [0u32, 2, 5] {
            for _ in 0..60 {
                let mut b = [0u8; 64];
                for (i, s) in b.iter_mut().enumerate() {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let noise = (state >> 24) >> smoothness;
                    *s = ((i as u32 * 4 + noise) % 256) as u8;
                }
                blocks.push(b);
            }
        }
        blocks.push(std::array::from_fn(|i| if i % 8 < 3 { 0 } else { 255 }));
        blocks.push(std::array::from_fn(|i| {
            if (i / 8 + i % 8) % 2 == 0 {
                0
            } else {
                255
            }
        }));
        // For each coefficient, the block whose samples are 0 or 255 by the sign of its basis
        // function: the largest value that coefficient can take, and its negation.
        for u in 0..8 {
            for v in 0..8 {
                let basis = |n: usize| {
                    ((2 * (n / 8) + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos()
                        * ((2 * (n % 8) + 1) as f64 * v as f64 * std::f64::consts::PI / 16.0).cos()
                };
                blocks.push(std::array::from_fn(
                    |n| if basis(n) >= 0.0 { 255 } else { 0 },
                ));
                blocks.push(std::array::from_fn(
                    |n| if basis(n) >= 0.0 { 0 } else { 255 },
                ));
            }
        }
        blocks
    }

    #[test]
    fn constants_are_the_rounded_cosines() {
        let k = |c: f64| (c * 65536.0).round() as i16;
        let cos = |n: f64| (n * std::f64::consts::PI / 16.0).cos();
        assert_eq!(ONE_MINUS_C4, k(1.0 - cos(4.0)));
        assert_eq!(C6, k(cos(6.0)));
        assert_eq!(MINUS_ONE_MINUS_C2_MINUS_C6, -k(1.0 - (cos(2.0) - cos(6.0))));
        assert_eq!(C2_PLUS_C6_MINUS_ONE, k(cos(2.0) + cos(6.0) - 1.0));
    }

    #[test]
    fn the_transform_is_within_a_small_error_of_the_textbook_dct() {
        // Error measured in orthonormal coefficient units (the JPEG quantiser's units; a step is
        // at least 1). Measured: largest 1.47 (a high-frequency coefficient of an extreme block),
        // mean 0.053.
        let (mut worst, mut total, mut count) = (0.0f64, 0.0f64, 0usize);
        for block in sample_blocks() {
            let want = reference_dct(&block, 8);
            let got = forward(&block, 8, 0, 0);
            for n in 0..64 {
                let t = usize::from(TRANSPOSED[n]);
                let scale =
                    8.0 * f64::from(1 << HORIZONTAL_SHIFT) * aan_scale(n / 8) * aan_scale(n % 8);
                let err = (f64::from(got[t / 8][t % 8]) / scale - want[n]).abs();
                worst = worst.max(err);
                total += err;
                count += 1;
            }
        }
        let mean = total / count as f64;
        assert!(
            worst < 1.6 && mean < 0.06,
            "worst {worst:.3}, mean {mean:.4}"
        );
    }

    #[test]
    fn quantised_levels_are_the_rounded_quotients() {
        // Against f64 division of the reference DCT by the JPEG step. Levels may differ from
        // exact rounding where the quotient lies within the transform's error of a half-way
        // point: rarely, and by more than one only where steps are 1 (quality 100).
        for quality in [1u8, 10, 50, 75, 90, 95, 100] {
            let (mut off, mut total, mut worst) = (0usize, 0usize, 0.0f64);
            let quality = Quality::new(quality).unwrap();
            for base in [&LUMA_BASE, &CHROMA_BASE] {
                let table = scaled_table(base, quality);
                let q = Quantiser::new(&table);
                for block in sample_blocks() {
                    let want = reference_dct(&block, 8);
                    let mut levels = [0i16; 64];
                    let mask = forward_quantise(&block, 8, 0, 0, &q, &mut levels);
                    for n in 0..64 {
                        let t = usize::from(TRANSPOSED[n]);
                        let exact = want[n] / f64::from(table[n]);
                        let got = f64::from(levels[t]);
                        assert_eq!(mask >> t & 1 == 1, levels[t] != 0);
                        worst = worst.max((got - exact).abs());
                        off += usize::from(got != exact.round());
                        total += 1;
                    }
                }
            }
            // Measured: below quality 100 every level is within 0.65 of the exact quotient and
            // at most 0.9% differ from its rounding; at 100, 1.76 and 5.7%.
            let (worst_allowed, share_allowed) = if quality.get() < 100 {
                (0.75, 0.01)
            } else {
                (2.0, 0.07)
            };
            assert!(
                worst <= worst_allowed,
                "q{}: a level is {worst:.3} from the exact quotient",
                quality.get()
            );
            assert!(
                (off as f64) < share_allowed * total as f64,
                "q{}: {off} of {total} levels differ from exact rounding",
                quality.get()
            );
        }
    }

    #[test]
    fn a_zero_coefficient_quantises_to_zero_at_every_quality() {
        // The AVX2 quantiser puts the sign back with `vpsignw`, which gives 0 for a zero
        // coefficient whatever the magnitude's level: exact only because that level is 0.
        for quality in 1..=100u8 {
            let quality = Quality::new(quality).unwrap();
            for base in [&LUMA_BASE, &CHROMA_BASE] {
                let q = Quantiser::new(&scaled_table(base, quality));
                for row in 0..8 {
                    assert_eq!(quantise_row([0; 8], &q, row), [0; 8], "q{}", quality.get());
                }
            }
        }
    }

    #[test]
    fn clamping_before_the_scale_gives_the_levels_clamping_after_does() {
        // For every exponent a quantiser uses (e >= 1, scale = 2^(16 - e) fits 16 bits) and
        // every product t: the AVX2 order (clamp t, then scale) against the reference's.
        for e in 1..=15u32 {
            let (scale, clamp) = (1u32 << (16 - e), u32::from(Quantiser::clamp_for(e)));
            for t in 0..=u32::from(u16::MAX) {
                let after = (((t * scale) >> 16) as i16).min(MAX_LEVEL);
                let before = ((t.min(clamp) * scale) >> 16) as i16;
                assert_eq!(before, after, "e {e}, t {t}");
            }
        }
        // Every quantiser's exponents are within that range.
        for quality in 1..=100u8 {
            let quality = Quality::new(quality).unwrap();
            for base in [&LUMA_BASE, &CHROMA_BASE] {
                let q = Quantiser::new(&scaled_table(base, quality));
                for (scale, clamp) in q.scale.iter().flatten().zip(q.clamp.iter().flatten()) {
                    let e = 16 - scale.trailing_zeros();
                    assert!(scale.is_power_of_two() && (1..=15).contains(&e));
                    assert_eq!(*clamp, Quantiser::clamp_for(e));
                }
            }
        }
    }

    #[test]
    fn levels_never_exceed_the_syntax_range() {
        let q = Quantiser::new(&[1; 64]);
        for block in sample_blocks() {
            let mut levels = [0i16; 64];
            forward_quantise(&block, 8, 0, 0, &q, &mut levels);
            assert!(levels.iter().all(|l| l.unsigned_abs() <= MAX_LEVEL as u16));
        }
    }
}
