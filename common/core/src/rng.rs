//! SplitMix64: a tiny, well-mixed, seedable generator, written out here rather than taken from a
//! crate whose output could change between versions: the FEC repair subsets must come out the
//! same on both PCs, and fuzz and loss runs must replay from their seed.

/// SplitMix64 (Steele, Lea and Flood's generator as used to seed xoshiro).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` by Lemire's multiply-shift (bias below 2^-32 for the bounds used
    /// here); a zero bound yields 0.
    pub fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_splitmix64s_and_fixed_forever() {
        // The reference outputs for seed 0; the FEC subsets on the wire depend on them.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn below_stays_in_range_and_zero_gives_zero() {
        let mut rng = SplitMix64::new(7);
        assert_eq!(rng.below(0), 0);
        for bound in [1, 2, 3, 20, 1000] {
            for _ in 0..1000 {
                assert!(rng.below(bound) < bound);
            }
        }
    }
}
