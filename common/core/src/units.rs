//! Bounded numbers as newtypes with checked constructors, so a quality can never be 0 or 101 and
//! a probability never 1.5, wherever it travels.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value was outside the range its type allows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what} must be in {range}, got {got}")]
pub struct OutOfRange {
    pub what: &'static str,
    pub range: &'static str,
    pub got: String,
}

/// Codec quality, 1 (worst) ..= 100 (best), with the meaning IJG JPEG gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Quality(u8);

impl Quality {
    pub const MIN: Quality = Quality(1);
    pub const MAX: Quality = Quality(100);

    pub fn new(q: u8) -> Result<Self, OutOfRange> {
        if (1..=100).contains(&q) {
            Ok(Quality(q))
        } else {
            Err(OutOfRange {
                what: "quality",
                range: "1..=100",
                got: q.to_string(),
            })
        }
    }

    /// The nearest valid quality: for values computed by curves, never for input.
    pub fn saturating(q: i64) -> Self {
        Quality(q.clamp(1, 100) as u8)
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}", self.0)
    }
}

impl TryFrom<u8> for Quality {
    type Error = OutOfRange;
    fn try_from(q: u8) -> Result<Self, OutOfRange> {
        Quality::new(q)
    }
}

/// Probability that the loss filter drops a video packet, 0.0 ..= 1.0.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct DropProbability(f64);

impl DropProbability {
    pub const NONE: DropProbability = DropProbability(0.0);
    pub const ALL: DropProbability = DropProbability(1.0);

    pub fn new(p: f64) -> Result<Self, OutOfRange> {
        if (0.0..=1.0).contains(&p) {
            Ok(DropProbability(p))
        } else {
            Err(OutOfRange {
                what: "drop probability",
                range: "0.0..=1.0",
                got: p.to_string(),
            })
        }
    }

    /// Clamp a computed value into range (NaN becomes 0: when in doubt, do not drop).
    pub fn saturating(p: f64) -> Self {
        if p.is_nan() {
            DropProbability(0.0)
        } else {
            DropProbability(p.clamp(0.0, 1.0))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }

    /// The probability as a fraction of 2^32, the form the eBPF filter compares a random u32
    /// against (as the original did). 1.0 maps to u32::MAX, which the filter treats as "always".
    pub fn as_u32_fraction(self) -> u32 {
        let scaled = (self.0 * 4_294_967_296.0).round();
        if scaled >= u32::MAX as f64 {
            u32::MAX
        } else {
            scaled as u32
        }
    }

    pub fn from_u32_fraction(f: u32) -> Self {
        if f == u32::MAX {
            DropProbability(1.0)
        } else {
            DropProbability(f as f64 / 4_294_967_296.0)
        }
    }
}

impl TryFrom<f64> for DropProbability {
    type Error = OutOfRange;
    fn try_from(p: f64) -> Result<Self, OutOfRange> {
        DropProbability::new(p)
    }
}

impl From<DropProbability> for f64 {
    fn from(p: DropProbability) -> f64 {
        p.0
    }
}

impl From<Quality> for u8 {
    fn from(q: Quality) -> u8 {
        q.0
    }
}

impl TryFrom<f32> for MashLevel {
    type Error = OutOfRange;
    fn try_from(level: f32) -> Result<Self, OutOfRange> {
        MashLevel::new(level)
    }
}

impl From<MashLevel> for f32 {
    fn from(level: MashLevel) -> f32 {
        level.0
    }
}

impl fmt::Display for DropProbability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}%", self.0 * 100.0)
    }
}

/// How hard visitors are mashing: 0.0 (nobody) ..= 1.0 (saturated).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(try_from = "f32", into = "f32")]
pub struct MashLevel(f32);

impl MashLevel {
    pub const IDLE: MashLevel = MashLevel(0.0);
    pub const FULL: MashLevel = MashLevel(1.0);

    pub fn new(level: f32) -> Result<Self, OutOfRange> {
        if (0.0..=1.0).contains(&level) {
            Ok(MashLevel(level))
        } else {
            Err(OutOfRange {
                what: "mash level",
                range: "0.0..=1.0",
                got: level.to_string(),
            })
        }
    }

    pub fn saturating(level: f32) -> Self {
        if level.is_nan() {
            MashLevel(0.0)
        } else {
            MashLevel(level.clamp(0.0, 1.0))
        }
    }

    pub fn get(self) -> f32 {
        self.0
    }

    /// Fixed-point form for wire formats and shared memory: level * 65535.
    pub fn as_u16(self) -> u16 {
        (self.0 * 65535.0).round() as u16
    }

    pub fn from_u16(v: u16) -> Self {
        MashLevel(v as f32 / 65535.0)
    }
}

/// A frame's number since the capture source started (monotonic, never wraps in practice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FrameNo(pub u64);

impl FrameNo {
    pub fn next(self) -> FrameNo {
        FrameNo(self.0.wrapping_add(1))
    }
}

impl fmt::Display for FrameNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_accepts_1_to_100_only() {
        assert!(Quality::new(0).is_err());
        assert_eq!(Quality::new(1).unwrap().get(), 1);
        assert_eq!(Quality::new(100).unwrap().get(), 100);
        assert!(Quality::new(101).is_err());
        assert_eq!(Quality::saturating(-5), Quality::MIN);
        assert_eq!(Quality::saturating(500), Quality::MAX);
    }

    #[test]
    fn drop_probability_fraction_round_trips_at_the_ends() {
        assert_eq!(DropProbability::NONE.as_u32_fraction(), 0);
        assert_eq!(DropProbability::ALL.as_u32_fraction(), u32::MAX);
        assert_eq!(
            DropProbability::from_u32_fraction(u32::MAX),
            DropProbability::ALL
        );
        let p = DropProbability::new(0.4).unwrap();
        let back = DropProbability::from_u32_fraction(p.as_u32_fraction()).get();
        assert!((back - 0.4).abs() < 1e-9);
        assert!(DropProbability::new(1.01).is_err());
        assert!(DropProbability::new(-0.01).is_err());
        assert_eq!(DropProbability::saturating(f64::NAN), DropProbability::NONE);
    }

    #[test]
    fn mash_level_fixed_point_round_trips() {
        assert_eq!(MashLevel::FULL.as_u16(), 65535);
        assert_eq!(MashLevel::from_u16(0), MashLevel::IDLE);
        let m = MashLevel::new(0.25).unwrap();
        assert!((MashLevel::from_u16(m.as_u16()).get() - 0.25).abs() < 1e-4);
        assert!(MashLevel::new(1.5).is_err());
    }
}
