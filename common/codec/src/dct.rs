//! The 8x8 forward and inverse DCT in the Arai-Agui-Nakajima factorisation, in f32 (the decoder's
//! inverse; the encoder's forward transform is the integer one in [`crate::fdct`]).
//!
//! Each pass transforms all eight columns of a block at once: every butterfly is an element-wise
//! operation on an eight-lane row, which the compiler turns into SIMD instructions without any
//! `unsafe` or nightly intrinsics. Between the passes the block is transposed, and the result is
//! left transposed: the quantisation tables and the zigzag scan are permuted once instead (see
//! [`TRANSPOSED`]), which saves a transpose per block in each direction.
//!
//! The AAN output is scaled by `8 * s[u] * s[v]` with `s[0] = 1`, `s[k] = sqrt(2) cos(k pi / 16)`;
//! those factors are folded into the quantiser and dequantiser tables ([`aan_scale`]).

/// One 8x8 block of samples or coefficients, row-major.
pub type Block = [[f32; 8]; 8];

/// `TRANSPOSED[n]` is where natural index `n` (row-major) lives in a transposed block.
pub const TRANSPOSED: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut n = 0;
    while n < 64 {
        t[n] = ((n % 8) * 8 + n / 8) as u8;
        n += 1;
    }
    t
};

/// The AAN scale factor of frequency `k` (0..8).
pub fn aan_scale(k: usize) -> f64 {
    if k == 0 {
        1.0
    } else {
        std::f64::consts::SQRT_2 * (k as f64 * std::f64::consts::PI / 16.0).cos()
    }
}

/// Transposes by value, so that the block can stay in vector registers between the passes
/// (an in-place scalar swap forces the next pass's vector loads to wait for 64 scalar stores).
#[inline(always)]
fn transpose(b: &Block) -> Block {
    std::array::from_fn(|r| std::array::from_fn(|c| b[c][r]))
}

/// cos(4pi/16), the forward butterflies' constants.
const C4: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// cos(6pi/16).
const C6: f32 = 0.382_683_43;
/// cos(2pi/16) - cos(6pi/16).
const C2_MINUS_C6: f32 = 0.541_196_1;
/// cos(2pi/16) + cos(6pi/16).
const C2_PLUS_C6: f32 = 1.306_563;

/// One forward pass along the first index, all eight lanes at once.
#[inline(always)]
fn forward_pass(b: &mut Block) {
    let [d0, d1, d2, d3, d4, d5, d6, d7] = *b;
    let mut o = [[0f32; 8]; 8];
    for i in 0..8 {
        let tmp0 = d0[i] + d7[i];
        let tmp7 = d0[i] - d7[i];
        let tmp1 = d1[i] + d6[i];
        let tmp6 = d1[i] - d6[i];
        let tmp2 = d2[i] + d5[i];
        let tmp5 = d2[i] - d5[i];
        let tmp3 = d3[i] + d4[i];
        let tmp4 = d3[i] - d4[i];

        let tmp10 = tmp0 + tmp3;
        let tmp13 = tmp0 - tmp3;
        let tmp11 = tmp1 + tmp2;
        let tmp12 = tmp1 - tmp2;
        o[0][i] = tmp10 + tmp11;
        o[4][i] = tmp10 - tmp11;
        let z1 = (tmp12 + tmp13) * C4;
        o[2][i] = tmp13 + z1;
        o[6][i] = tmp13 - z1;

        let tmp10 = tmp4 + tmp5;
        let tmp11 = tmp5 + tmp6;
        let tmp12 = tmp6 + tmp7;
        let z5 = (tmp10 - tmp12) * C6;
        let z2 = C2_MINUS_C6 * tmp10 + z5;
        let z4 = C2_PLUS_C6 * tmp12 + z5;
        let z3 = tmp11 * C4;
        let z11 = tmp7 + z3;
        let z13 = tmp7 - z3;
        o[5][i] = z13 + z2;
        o[3][i] = z13 - z2;
        o[1][i] = z11 + z4;
        o[7][i] = z11 - z4;
    }
    *b = o;
}

/// sqrt(2), the inverse butterflies' constants (shared with the SSE2 path).
pub(crate) const SQRT2: f32 = std::f32::consts::SQRT_2;
/// 2 cos(2pi/16).
pub(crate) const C2_TIMES_2: f32 = 1.847_759;
/// 2 (cos(2pi/16) - cos(6pi/16)).
pub(crate) const K1: f32 = 1.082_392_2;
/// 2 (cos(2pi/16) + cos(6pi/16)).
pub(crate) const K2: f32 = 2.613_126;

/// One inverse pass along the first index, all eight lanes at once.
#[inline(always)]
fn inverse_pass(b: &mut Block) {
    let [d0, d1, d2, d3, d4, d5, d6, d7] = *b;
    let mut o = [[0f32; 8]; 8];
    for i in 0..8 {
        let tmp10 = d0[i] + d4[i];
        let tmp11 = d0[i] - d4[i];
        let tmp13 = d2[i] + d6[i];
        let tmp12 = (d2[i] - d6[i]) * SQRT2 - tmp13;
        let e0 = tmp10 + tmp13;
        let e3 = tmp10 - tmp13;
        let e1 = tmp11 + tmp12;
        let e2 = tmp11 - tmp12;

        let z13 = d5[i] + d3[i];
        let z10 = d5[i] - d3[i];
        let z11 = d1[i] + d7[i];
        let z12 = d1[i] - d7[i];
        let tmp7 = z11 + z13;
        let tmp11 = (z11 - z13) * SQRT2;
        let z5 = (z10 + z12) * C2_TIMES_2;
        let tmp10 = z5 - z12 * K1;
        let tmp12 = z5 - z10 * K2;
        let tmp6 = tmp12 - tmp7;
        let tmp5 = tmp11 - tmp6;
        let tmp4 = tmp10 - tmp5;

        o[0][i] = e0 + tmp7;
        o[7][i] = e0 - tmp7;
        o[1][i] = e1 + tmp6;
        o[6][i] = e1 - tmp6;
        o[2][i] = e2 + tmp5;
        o[5][i] = e2 - tmp5;
        o[3][i] = e3 + tmp4;
        o[4][i] = e3 - tmp4;
    }
    *b = o;
}

/// Forward DCT of level-shifted samples; the result is transposed and AAN-scaled. The encoder
/// uses the 16-bit integer version of the same butterflies ([`crate::fdct`]); this f32 one is
/// kept as the accurate reference beside the inverse.
pub fn forward(b: &mut Block) {
    forward_pass(b);
    *b = transpose(b);
    forward_pass(b);
}

/// Inverse DCT of transposed, dequantised, AAN-prescaled coefficients; the result is row-major
/// samples (not yet level-shifted back).
pub fn inverse(b: &mut Block) {
    inverse_pass(b);
    *b = transpose(b);
    inverse_pass(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook orthonormal JPEG DCT, natural order (indices as in the formula).
    #[allow(clippy::needless_range_loop)]
    fn reference_dct(px: &[[f64; 8]; 8]) -> [[f64; 8]; 8] {
        let c = |k: usize| if k == 0 { std::f64::consts::FRAC_1_SQRT_2 } else { 1.0 };
        let mut out = [[0.0; 8]; 8];
        for u in 0..8 {
            for v in 0..8 {
                let mut s = 0.0;
                for (y, row) in px.iter().enumerate() {
                    for (x, &p) in row.iter().enumerate() {
                        s += p
                            * ((2 * y + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos()
                            * ((2 * x + 1) as f64 * v as f64 * std::f64::consts::PI / 16.0).cos();
                    }
                }
                out[u][v] = 0.25 * c(u) * c(v) * s;
            }
        }
        out
    }

    fn sample_blocks() -> Vec<[[f64; 8]; 8]> {
        let mut blocks = vec![[[0.0; 8]; 8], [[-128.0; 8]; 8], [[127.0; 8]; 8]];
        let mut state = 0x1234_5678_u32;
        for _ in 0..20 {
            let mut b = [[0.0; 8]; 8];
            for row in b.iter_mut() {
                for p in row.iter_mut() {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    *p = f64::from(state >> 24) - 128.0;
                }
            }
            blocks.push(b);
        }
        let mut edge = [[-100.0; 8]; 8];
        for row in edge.iter_mut() {
            row[5..].fill(90.0);
        }
        blocks.push(edge);
        blocks
    }

    #[test]
    fn forward_matches_the_textbook_dct_after_aan_scaling() {
        for px in sample_blocks() {
            let want = reference_dct(&px);
            let mut b: Block = [[0.0; 8]; 8];
            for (r, row) in px.iter().enumerate() {
                for (c, &p) in row.iter().enumerate() {
                    b[r][c] = p as f32;
                }
            }
            forward(&mut b);
            for u in 0..8 {
                for v in 0..8 {
                    // Transposed layout: natural (u, v) lives at [v][u].
                    let got = f64::from(b[v][u]) / (8.0 * aan_scale(u) * aan_scale(v));
                    assert!((got - want[u][v]).abs() < 1e-3, "({u},{v}): {got} vs {}", want[u][v]);
                }
            }
        }
    }

    #[test]
    fn inverse_undoes_forward_when_prescaled() {
        for px in sample_blocks() {
            let mut b: Block = [[0.0; 8]; 8];
            for (r, row) in px.iter().enumerate() {
                for (c, &p) in row.iter().enumerate() {
                    b[r][c] = p as f32;
                }
            }
            forward(&mut b);
            // Undo the forward scaling (8 s_u s_v), apply the inverse prescaling (s_u s_v / 8).
            for (v, row) in b.iter_mut().enumerate() {
                for (u, x) in row.iter_mut().enumerate() {
                    let s = aan_scale(u) * aan_scale(v);
                    *x = (f64::from(*x) / (8.0 * s) * s / 8.0) as f32;
                }
            }
            inverse(&mut b);
            for (r, row) in px.iter().enumerate() {
                for (c, &p) in row.iter().enumerate() {
                    assert!((f64::from(b[r][c]) - p).abs() < 1e-3, "({r},{c})");
                }
            }
        }
    }
}
