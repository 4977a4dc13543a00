//! The decoder's dequantisation and inverse DCT in 16-bit integers: the portable reference that
//! the SSE2 path (`sse2::inverse_store`) reproduces bit for bit.
//!
//! The transform is the inverse Arai-Agui-Nakajima factorisation (see [`crate::dct`]) on
//! eight 16-bit lanes (a block is eight SSE2 registers). Coefficients enter dequantised and
//! prescaled by `s_u s_v / 8` (AAN) with [`FRACTION_BITS`] fraction bits, and samples leave after
//! rounding those bits away. The largest intermediate for decodable content is about 640 sample
//! units (twice `z10 + z12` in the odd part, over every quality and the extreme blocks of each
//! basis function), so five fraction bits keep it near 20,500 of the 32,767 an i16 holds. Sums
//! saturate rather than wrap, so that anything beyond (only hostile payloads get there) clamps
//! instead of flipping a bright sample dark.
//!
//! Products are `(x * K) >> 16` (SSE2's `pmulhw`) by constants below one half, with factors
//! above one half written as sums, as in [`crate::fdct`].

use crate::dct::aan_scale;
use crate::lanes::{transpose, Lanes, Row};

/// Fraction bits of the coefficients and of every intermediate.
pub const FRACTION_BITS: i32 = 5;
/// Added before the final shift: round half up.
pub const OUTPUT_ROUNDING: i16 = 1 << (FRACTION_BITS - 1);

/// `-round((sqrt(2) - 1) * 2^16)`: x * sqrt(2) = x - mulhi(x, this).
pub const MINUS_SQRT2_MINUS_ONE: i16 = -27146;
/// `round((1 - cos(2pi/16)) * 2^16)`: x * 2 cos(2pi/16) = 2x - mulhi(2x, this).
pub const ONE_MINUS_C2: i16 = 4989;
/// `round((2 (cos(2pi/16) - cos(6pi/16)) - 1) * 2^16)`: x * 1.0824 = x + mulhi(x, this).
pub const K1_MINUS_ONE: i16 = 5400;
/// `-round((cos(2pi/16) + cos(6pi/16) - 1) * 2^16)`: x * 2.6131 = 2x - mulhi(2x, this).
pub const MINUS_HALF_K2_MINUS_ONE: i16 = -20091;

/// Fraction bits of [`Dequantiser`]'s multipliers.
pub const DEQUANTISER_BITS: u32 = 12;
/// Added before the dequantiser's shift: round half up.
pub const DEQUANTISER_ROUNDING: i32 = 1 << (DEQUANTISER_BITS - 1);

/// `LEVEL_ORDER[t]` is where the level of transposed position `t` (row `t / 8`, column `t % 8`)
/// lives in a block of raw levels, the form the AVX2 unit dequantises itself (see
/// [`Dequantiser::split`]): per pair of rows (2i, 2i+1), 16 values at `16 i`, first columns 0-3
/// of both rows, then columns 4-7 of both. Sign-extended to 32 bits eight at a time, two such
/// halves pack (with saturation) into one register holding row 2i then row 2i+1, in order, with
/// no shuffle. Position 0 (DC) stays at 0.
pub const LEVEL_ORDER: [u8; 64] = {
    let mut order = [0u8; 64];
    let mut t = 0;
    while t < 64 {
        let (row, column) = (t / 8, t % 8);
        order[t] = (16 * (row / 2) + 8 * (column / 4) + 4 * (row % 2) + column % 4) as u8;
        t += 1;
    }
    order
};

/// Per coefficient position, the multiplier that turns a level into the inverse transform's
/// input: `step * s_u * s_v / 8 * 2^FRACTION_BITS`, with `DEQUANTISER_BITS` (12) fraction bits, in
/// the transposed layout (see [`crate::dct::TRANSPOSED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dequantiser {
    multiplier: [i32; 64],
    /// The same multipliers split as `high * 2^12 + low` (`low` in 0..4096), in [`LEVEL_ORDER`]:
    /// `[high, low]`, eight per row of the level block. Each fits 16 bits (tested: the largest
    /// multiplier, step 255, is about 2^23), so a level sign-extended to 32 bits multiplies by
    /// either with one `pmaddwd` (the level's upper half meets the multiplier's zero upper half)
    /// and `(l * multiplier + 2^11) >> 12 = l * high + ((l * low + 2^11) >> 12)` exactly
    /// (floor division passes over a multiple of 2^12), both products far inside 32 bits for any
    /// 16-bit `l`; a saturating pack then gives [`Dequantiser::coefficient`]'s clamp.
    pub(crate) split: [[[i32; 8]; 8]; 2],
}

impl Dequantiser {
    /// The dequantiser for a JPEG table (`table`, natural order).
    pub fn new(table: &[u16; 64]) -> Self {
        let mut multiplier = [0; 64];
        for (n, &step) in table.iter().enumerate() {
            let factor = f64::from(step) * aan_scale(n / 8) * aan_scale(n % 8) / 8.0
                * f64::from(1 << FRACTION_BITS)
                * f64::from(1 << DEQUANTISER_BITS);
            multiplier[usize::from(crate::dct::TRANSPOSED[n])] = factor.round() as i32;
        }
        let mut split = [[[0; 8]; 8]; 2];
        for (&m, &at) in multiplier.iter().zip(&LEVEL_ORDER) {
            let (row, lane) = (usize::from(at) / 8, usize::from(at) % 8);
            split[0][row][lane] = m >> DEQUANTISER_BITS;
            split[1][row][lane] = m & ((1 << DEQUANTISER_BITS) - 1);
        }
        Dequantiser { multiplier, split }
    }

    /// The transform input of `level` at transposed position `t` (taken modulo 64), saturated
    /// to 16 bits: a level of real content never is; a hostile one may be, even within the
    /// |level| <= 2047 the reader accepts (2047 times a coarse step is far past 16 bits).
    #[inline(always)]
    pub fn coefficient(&self, level: i32, t: usize) -> i16 {
        let scaled = i64::from(level) * i64::from(self.multiplier[t % 64]);
        let rounded = (scaled + i64::from(DEQUANTISER_ROUNDING)) >> DEQUANTISER_BITS;
        rounded.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16
    }

    /// The transform input of a block of raw levels in [`LEVEL_ORDER`]: the reference the
    /// vector dequantisation reproduces, a [`Dequantiser::coefficient`] per position.
    pub fn coefficients(&self, levels: &[i16; 64]) -> [i16; 64] {
        let mut coefficients = [0; 64];
        for (t, (c, &at)) in coefficients.iter_mut().zip(&LEVEL_ORDER).enumerate() {
            *c = self.coefficient(i32::from(levels[usize::from(at)]), t);
        }
        coefficients
    }
}

/// One inverse AAN pass along the first index.
///
/// `mul_high` rounds down, so `x + x.mul_high(k)` is half a unit low on average and
/// `x - mul_high(x, -k)` half a unit high. The signs below are chosen so that the outputs' biases
/// stay within one unit; with every product rounded down they reached 2.5 units.
#[inline(always)]
pub fn inverse_pass<L: Lanes>(d: &[L; 8]) -> [L; 8] {
    let (add, sub) = (L::saturating_add, L::saturating_sub);
    let tmp10 = add(d[0], d[4]);
    let tmp11 = sub(d[0], d[4]);
    let tmp13 = add(d[2], d[6]);
    let difference = sub(d[2], d[6]);
    let tmp12 = sub(
        sub(difference, difference.mul_high(MINUS_SQRT2_MINUS_ONE)),
        tmp13,
    );
    let e0 = add(tmp10, tmp13);
    let e3 = sub(tmp10, tmp13);
    let e1 = add(tmp11, tmp12);
    let e2 = sub(tmp11, tmp12);

    let z13 = add(d[5], d[3]);
    let z10 = sub(d[5], d[3]);
    let z11 = add(d[1], d[7]);
    let z12 = sub(d[1], d[7]);
    let tmp7 = add(z11, z13);
    let odd_difference = sub(z11, z13);
    let tmp11 = sub(
        odd_difference,
        odd_difference.mul_high(MINUS_SQRT2_MINUS_ONE),
    );
    let sum = add(z10, z12);
    let twice_sum = add(sum, sum);
    let z5 = sub(twice_sum, twice_sum.mul_high(ONE_MINUS_C2));
    let tmp10 = sub(z5, add(z12, z12.mul_high(K1_MINUS_ONE)));
    let twice_z10 = add(z10, z10);
    let tmp12 = sub(
        z5,
        sub(twice_z10, twice_z10.mul_high(MINUS_HALF_K2_MINUS_ONE)),
    );
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

/// The sample of a transform output: fraction bits rounded away, level shift undone, clamped.
#[inline(always)]
pub fn sample(v: i16) -> u8 {
    ((v.saturating_add(OUTPUT_ROUNDING) >> FRACTION_BITS) + 128).clamp(0, 255) as u8
}

/// Inverse DCT of a dequantised block in the transposed layout, stored as 8x8 samples at
/// (`x`, `y`) of `plane`.
pub fn inverse_store(
    coefficients: &[i16; 64],
    plane: &mut [u8],
    stride: usize,
    x: usize,
    y: usize,
) {
    let rows: [Row; 8] = std::array::from_fn(|r| std::array::from_fn(|c| coefficients[8 * r + c]));
    let out = inverse_pass(&transpose(&inverse_pass(&rows)));
    for (r, row) in out.iter().enumerate() {
        let start = (y + r) * stride + x;
        for (d, &v) in plane[start..start + 8].iter_mut().zip(row) {
            *d = sample(v);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dct::TRANSPOSED;
    use crate::tables::{scaled_table, CHROMA_BASE, LUMA_BASE};
    use keymash_core::Quality;

    #[test]
    fn constants_are_the_rounded_cosines() {
        let k = |c: f64| (c * 65536.0).round() as i16;
        let cos = |n: f64| (n * std::f64::consts::PI / 16.0).cos();
        assert_eq!(MINUS_SQRT2_MINUS_ONE, -k(std::f64::consts::SQRT_2 - 1.0));
        assert_eq!(ONE_MINUS_C2, k(1.0 - cos(2.0)));
        assert_eq!(K1_MINUS_ONE, k(2.0 * (cos(2.0) - cos(6.0)) - 1.0));
        assert_eq!(MINUS_HALF_K2_MINUS_ONE, -k(cos(2.0) + cos(6.0) - 1.0));
    }

    /// Orthonormal DCT basis value of frequency `k` at position `n`.
    fn basis(k: usize, n: usize) -> f64 {
        let c = if k == 0 { (1.0f64 / 8.0).sqrt() } else { 0.5 };
        c * ((2 * n + 1) as f64 * k as f64 * std::f64::consts::PI / 16.0).cos()
    }

    /// Levels of real content: each sample block through the f64 DCT and a JPEG table.
    fn level_blocks(table: &[u16; 64]) -> Vec<[i32; 64]> {
        crate::fdct::tests::sample_blocks()
            .iter()
            .map(|px| {
                std::array::from_fn(|n| {
                    let (u, v) = (n / 8, n % 8);
                    let mut x = 0.0;
                    for (i, &p) in px.iter().enumerate() {
                        x += (f64::from(p) - 128.0) * basis(u, i / 8) * basis(v, i % 8);
                    }
                    (x / f64::from(table[n])).round() as i32
                })
            })
            .collect()
    }

    /// The exact inverse (f64) of dequantised levels, rounded and clamped as samples.
    fn reference_samples(levels: &[i32; 64], table: &[u16; 64]) -> [f64; 64] {
        std::array::from_fn(|i| {
            let (y, x) = (i / 8, i % 8);
            let mut s = 0.0;
            for n in 0..64 {
                s += f64::from(levels[n]) * f64::from(table[n]) * basis(n / 8, y) * basis(n % 8, x);
            }
            (s + 128.0).clamp(0.0, 255.0)
        })
    }

    pub(crate) fn coefficients(levels: &[i32; 64], d: &Dequantiser) -> [i16; 64] {
        let mut c = [0i16; 64];
        for (n, &l) in levels.iter().enumerate() {
            let t = usize::from(TRANSPOSED[n]);
            c[t] = d.coefficient(l, t);
        }
        c
    }

    #[test]
    fn samples_are_within_rounding_of_the_exact_inverse() {
        // Measured over these qualities and the sample blocks (extremes included): every sample
        // within 1.34 of the exact inverse, 5.8% differ from its rounding (an f32 IDCT: ~0).
        let (mut off, mut total, mut worst) = (0usize, 0usize, 0.0f64);
        for quality in [1u8, 10, 30, 50, 75, 90, 95, 100] {
            for base in [&LUMA_BASE, &CHROMA_BASE] {
                let table = scaled_table(base, Quality::new(quality).unwrap());
                let d = Dequantiser::new(&table);
                for levels in level_blocks(&table) {
                    let want = reference_samples(&levels, &table);
                    let mut plane = [0u8; 64];
                    inverse_store(&coefficients(&levels, &d), &mut plane, 8, 0, 0);
                    for (&got, &exact) in plane.iter().zip(&want) {
                        worst = worst.max((f64::from(got) - exact).abs());
                        off += usize::from(f64::from(got) != exact.round());
                        total += 1;
                    }
                }
            }
        }
        assert!(worst < 1.5, "a sample is {worst:.3} from the exact inverse");
        assert!(
            off * 100 < 7 * total,
            "{off} of {total} samples differ from the exact inverse, rounded"
        );
    }

    #[test]
    fn the_level_order_is_a_permutation_and_the_split_multipliers_fit_16_bits() {
        let mut seen = [false; 64];
        for &at in &LEVEL_ORDER {
            assert!(
                !std::mem::replace(&mut seen[usize::from(at)], true),
                "{at} twice"
            );
        }
        assert_eq!(LEVEL_ORDER[0], 0);
        for quality in 1..=100u8 {
            for base in [&LUMA_BASE, &CHROMA_BASE] {
                let d = Dequantiser::new(&scaled_table(base, Quality::new(quality).unwrap()));
                let [high, low] = d.split;
                for (t, &at) in LEVEL_ORDER.iter().enumerate() {
                    let (row, lane) = (usize::from(at) / 8, usize::from(at) % 8);
                    let (h, l) = (high[row][lane], low[row][lane]);
                    // pmaddwd reads each as a 16-bit lane beside a zero one.
                    assert!(
                        (0..1 << 15).contains(&h) && (0..1 << 12).contains(&l),
                        "q{quality}"
                    );
                    assert_eq!(h * 4096 + l, d.multiplier[t], "q{quality} position {t}");
                }
            }
        }
    }

    #[test]
    fn hostile_levels_clamp_instead_of_wrapping() {
        // The largest levels of alternating sign at the coarsest quantiser: every sum saturates;
        // the result is garbage but bounded, and the call must not panic in any build.
        let table = [255u16; 64];
        let d = Dequantiser::new(&table);
        for sign in [1, -1] {
            let levels: [i32; 64] = std::array::from_fn(|n| {
                if n % 3 == 0 {
                    sign * 2047
                } else {
                    -sign * 2047
                }
            });
            let mut plane = [0u8; 64];
            inverse_store(&coefficients(&levels, &d), &mut plane, 8, 0, 0);
        }
        // A lone saturated DC still gives a flat extreme block.
        let mut c = [0i16; 64];
        c[0] = d.coefficient(2047, 0);
        let mut plane = [0u8; 64];
        inverse_store(&c, &mut plane, 8, 0, 0);
        assert!(plane.iter().all(|&p| p == 255));
    }
}
