//! What the encoder's and decoder's 8x8 DCTs share: both are the Arai-Agui-Nakajima
//! factorisation in 16-bit integers ([`crate::fdct`] forward, [`crate::idct`] inverse).
//!
//! Each pass transforms all eight columns of a block at once: every butterfly is an element-wise
//! operation on an eight-lane row. Between the passes the block is transposed, and the result is
//! left transposed: the quantisation tables and the zigzag scan are permuted once instead (see
//! [`TRANSPOSED`]), which saves a transpose per block in each direction.
//!
//! The AAN output is scaled by `8 * s[u] * s[v]` with `s[0] = 1`, `s[k] = sqrt(2) cos(k pi / 16)`;
//! those factors are folded into the quantiser and dequantiser tables ([`aan_scale`]).

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_swaps_row_and_column() {
        for (n, &t) in TRANSPOSED.iter().enumerate() {
            let t = usize::from(t);
            assert_eq!((t / 8, t % 8), (n % 8, n / 8));
            assert_eq!(usize::from(TRANSPOSED[t]), n);
        }
    }
}
