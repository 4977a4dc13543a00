//! Curves that turn the mash level into what the exhibit changes: the drop probability the loss
//! filter applies and the codec quality the receiver asks for.

use crate::config::{loss_defaults, QualityCurveConfig};
use crate::units::{DropProbability, MashLevel, Quality};

/// A loss curve parameter was unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossCurveError {
    /// The exponent must be a finite number > 0 (0 would make loss ignore mashing).
    #[error("loss curve exponent must be finite and > 0, got {0}")]
    BadExponent(f64),
    /// The zero-loss level must be > 0 (at 0 there is never any loss, which is a setting
    /// better written as drop_at_rest = 0).
    #[error("mash level at which loss reaches 0 must be > 0, got {0}")]
    ZeroLossAtZero(f32),
}

/// The mash curve: drop probability as a function of the mash level.
///
/// `drop(level) = drop_at_rest * (1 - min(level / zero_loss_at, 1)) ^ exponent`
///
/// It starts at `drop_at_rest` with nobody mashing, falls monotonically and reaches exactly 0 at
/// `zero_loss_at` and above.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossCurve {
    drop_at_rest: DropProbability,
    exponent: f64,
    zero_loss_at: MashLevel,
}

impl Default for LossCurve {
    fn default() -> Self {
        LossCurve {
            drop_at_rest: DropProbability::saturating(loss_defaults::DROP_AT_REST),
            exponent: loss_defaults::EXPONENT,
            zero_loss_at: MashLevel::saturating(loss_defaults::ZERO_LOSS_AT),
        }
    }
}

impl LossCurve {
    pub fn new(
        drop_at_rest: DropProbability,
        exponent: f64,
        zero_loss_at: MashLevel,
    ) -> Result<Self, LossCurveError> {
        if !(exponent.is_finite() && exponent > 0.0) {
            return Err(LossCurveError::BadExponent(exponent));
        }
        if zero_loss_at.get() <= 0.0 {
            return Err(LossCurveError::ZeroLossAtZero(zero_loss_at.get()));
        }
        Ok(LossCurve {
            drop_at_rest,
            exponent,
            zero_loss_at,
        })
    }

    pub fn drop_at_rest(&self) -> DropProbability {
        self.drop_at_rest
    }

    pub fn exponent(&self) -> f64 {
        self.exponent
    }

    pub fn zero_loss_at(&self) -> MashLevel {
        self.zero_loss_at
    }

    /// The drop probability at `level`.
    pub fn drop_probability(&self, level: MashLevel) -> DropProbability {
        let progress = (f64::from(level.get()) / f64::from(self.zero_loss_at.get())).min(1.0);
        let remaining = (1.0 - progress).max(0.0).powf(self.exponent);
        DropProbability::saturating(self.drop_at_rest.get() * remaining)
    }
}

/// The quality curve: the codec quality the receiver asks for as a function of the mash level.
///
/// `quality(level) = at_rest + (at_full - at_rest) * level ^ exponent`, rounded; at_rest with
/// nobody mashing, at_full at a saturated mash level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityCurve {
    at_rest: Quality,
    at_full: Quality,
    exponent: f64,
}

impl QualityCurve {
    /// The curve as configured (`[quality]`; the configuration has already checked the values).
    pub fn from_config(config: &QualityCurveConfig) -> Self {
        QualityCurve {
            at_rest: config.at_rest,
            at_full: config.at_full,
            exponent: config.exponent,
        }
    }

    pub fn quality(&self, level: MashLevel) -> Quality {
        let span = f64::from(self.at_full.get()) - f64::from(self.at_rest.get());
        let shaped = f64::from(level.get()).clamp(0.0, 1.0).powf(self.exponent);
        Quality::saturating((f64::from(self.at_rest.get()) + span * shaped).round() as i64)
    }
}

#[cfg(test)]
mod quality_curve_tests {
    use super::*;

    #[test]
    fn quality_curve_runs_from_rest_to_full() {
        let curve = QualityCurve::from_config(&QualityCurveConfig::default());
        let table = [(0.0, 10), (0.25, 30), (0.5, 50), (1.0, 90)];
        for (level, want) in table {
            assert_eq!(
                curve.quality(MashLevel::new(level).unwrap()).get(),
                want,
                "level {level}"
            );
        }
    }

    #[test]
    fn quality_curve_never_falls_as_mashing_increases() {
        let config = QualityCurveConfig {
            exponent: 2.5,
            ..QualityCurveConfig::default()
        };
        let curve = QualityCurve::from_config(&config);
        let mut previous = curve.quality(MashLevel::IDLE);
        for step in 1..=100u16 {
            let q = curve.quality(MashLevel::new(f32::from(step) / 100.0).unwrap());
            assert!(q >= previous);
            previous = q;
        }
        assert_eq!(previous.get(), 90);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(drop: f64, exponent: f64, zero_at: f32) -> LossCurve {
        LossCurve::new(
            DropProbability::new(drop).unwrap(),
            exponent,
            MashLevel::new(zero_at).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn loss_curve_follows_its_formula() {
        // (drop at idle, exponent, zero-loss level, mash level, expected drop)
        let cases: [(f64, f64, f32, f32, f64); 12] = [
            (0.4, 2.0, 1.0, 0.0, 0.4),
            (0.4, 2.0, 1.0, 0.5, 0.1),
            (0.4, 2.0, 1.0, 1.0, 0.0),
            (0.4, 1.0, 1.0, 0.25, 0.3),
            (0.4, 2.0, 0.5, 0.25, 0.1),
            (0.4, 2.0, 0.5, 0.5, 0.0),
            (0.4, 2.0, 0.5, 0.9, 0.0),
            (1.0, 3.0, 1.0, 0.5, 0.125),
            (0.0, 2.0, 1.0, 0.0, 0.0),
            (0.4, 0.5, 1.0, 0.75, 0.2),
            (1.0, 2.0, 0.8, 0.0, 1.0),
            (0.4, 2.0, 0.8, 0.4, 0.1),
        ];
        for (drop, exponent, zero_at, level, expected) in cases {
            let got = curve(drop, exponent, zero_at)
                .drop_probability(MashLevel::new(level).unwrap())
                .get();
            assert!(
                (got - expected).abs() < 1e-6,
                "drop {drop} exp {exponent} zero_at {zero_at} level {level}: got {got}, want {expected}"
            );
        }
    }

    #[test]
    fn loss_curve_never_rises_as_mashing_increases() {
        let c = LossCurve::default();
        let mut previous = c.drop_probability(MashLevel::IDLE).get();
        for step in 1..=1000u16 {
            let level = MashLevel::new(f32::from(step) / 1000.0).unwrap();
            let now = c.drop_probability(level).get();
            assert!(now <= previous, "rose at {level:?}: {previous} -> {now}");
            previous = now;
        }
        assert_eq!(previous, 0.0);
    }

    #[test]
    fn default_loss_curve_starts_at_forty_percent_at_rest() {
        assert_eq!(
            LossCurve::default().drop_probability(MashLevel::IDLE).get(),
            loss_defaults::DROP_AT_REST
        );
    }

    #[test]
    fn loss_curve_rejects_unusable_parameters() {
        let drop = DropProbability::new(0.4).unwrap();
        let one = MashLevel::FULL;
        let cases = [
            (0.0, one, LossCurveError::BadExponent(0.0)),
            (-1.0, one, LossCurveError::BadExponent(-1.0)),
            (
                f64::INFINITY,
                one,
                LossCurveError::BadExponent(f64::INFINITY),
            ),
            (2.0, MashLevel::IDLE, LossCurveError::ZeroLossAtZero(0.0)),
        ];
        for (exponent, zero_at, expected) in cases {
            assert_eq!(LossCurve::new(drop, exponent, zero_at), Err(expected));
        }
        assert!(matches!(
            LossCurve::new(drop, f64::NAN, one),
            Err(LossCurveError::BadExponent(_))
        ));
    }
}
