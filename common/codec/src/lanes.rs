//! Eight 16-bit lanes, the unit the integer transforms ([`crate::fdct`], [`crate::idct`]) are
//! written in. Each transform pass is written once, generic over [`Lanes`]: the portable
//! reference runs it on [`Row`] arrays, the SSE2 path on registers (its `impl` lives in
//! `sse2.rs`), the AVX2 path on 256-bit registers holding a row of each of two blocks (`avx2.rs`),
//! so all compute the same butterflies by construction.

/// One row of eight 16-bit lanes: what one SSE2 register holds.
pub type Row = [i16; 8];

/// The lane-wise operations of the transforms, each with SSE2's exact semantics.
pub trait Lanes: Copy {
    /// `paddw`: wrapping.
    fn wrapping_add(self, other: Self) -> Self;
    /// `psubw`: wrapping.
    fn wrapping_sub(self, other: Self) -> Self;
    /// `paddsw`: saturating.
    fn saturating_add(self, other: Self) -> Self;
    /// `psubsw`: saturating.
    fn saturating_sub(self, other: Self) -> Self;
    /// `pmulhw` by a constant: `(lane * k) >> 16`, rounding down.
    fn mul_high(self, k: i16) -> Self;
}

impl Lanes for Row {
    #[inline(always)]
    fn wrapping_add(self, other: Self) -> Self {
        std::array::from_fn(|i| self[i].wrapping_add(other[i]))
    }

    #[inline(always)]
    fn wrapping_sub(self, other: Self) -> Self {
        std::array::from_fn(|i| self[i].wrapping_sub(other[i]))
    }

    #[inline(always)]
    fn saturating_add(self, other: Self) -> Self {
        std::array::from_fn(|i| self[i].saturating_add(other[i]))
    }

    #[inline(always)]
    fn saturating_sub(self, other: Self) -> Self {
        std::array::from_fn(|i| self[i].saturating_sub(other[i]))
    }

    #[inline(always)]
    fn mul_high(self, k: i16) -> Self {
        std::array::from_fn(|i| ((i32::from(self[i]) * i32::from(k)) >> 16) as i16)
    }
}

/// Transposes a block of eight rows (the portable reference; SSE2 has its own shuffles).
#[inline(always)]
pub fn transpose(b: &[Row; 8]) -> [Row; 8] {
    std::array::from_fn(|r| std::array::from_fn(|c| b[c][r]))
}
