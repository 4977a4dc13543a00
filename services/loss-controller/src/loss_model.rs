//! Loss models as the controller thinks of them, and their encoding into the filter's config
//! record. Pure code: the caller supplies the deadline.

use keymash_core::DropProbability;

use crate::layout::{LossConfigRecord, MODEL_BERNOULLI, MODEL_GILBERT_ELLIOTT, MODEL_PASS};

/// Gilbert-Elliott burst loss with the meaning of netem's `loss gemodel p r 1-h 1-k`.
///
/// The transition probabilities reuse [`DropProbability`] for its 0..=1 check and its
/// fraction-of-2^32 form, which is what the filter compares against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability, per packet, of moving from the good to the bad state.
    pub p: DropProbability,
    /// Probability, per packet, of moving from the bad to the good state.
    pub r: DropProbability,
    /// Drop probability in the bad state (netem's 1-h; 1.0 in the simple Gilbert model).
    pub loss_bad: DropProbability,
    /// Drop probability in the good state (netem's 1-k; 0.0 in the simple Gilbert model).
    pub loss_good: DropProbability,
}

impl GilbertElliott {
    /// Mean number of consecutive packets spent in the bad state: 1 / r (infinite for r = 0).
    /// With `loss_bad` = 1 and `loss_good` = 0 this is the mean burst length of losses.
    pub fn mean_bad_run(&self) -> f64 {
        1.0 / self.r.get()
    }

    /// Long-run drop probability: the stationary mix of the two states' drop probabilities.
    pub fn mean_loss(&self) -> f64 {
        let (p, r) = (self.p.get(), self.r.get());
        if p + r == 0.0 {
            // The chain never moves: it stays in the good state it starts in.
            return self.loss_good.get();
        }
        let bad_share = p / (p + r);
        bad_share * self.loss_bad.get() + (1.0 - bad_share) * self.loss_good.get()
    }

    /// The same chain with both states' drop probabilities multiplied by `factor` (0..=1): how
    /// mashing eases burst loss without changing the burst rhythm.
    pub fn with_loss_scaled(&self, factor: f64) -> GilbertElliott {
        GilbertElliott {
            loss_bad: DropProbability::saturating(self.loss_bad.get() * factor),
            loss_good: DropProbability::saturating(self.loss_good.get() * factor),
            ..*self
        }
    }
}

/// What the filter does to the video flow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossModel {
    /// Drop nothing (but still count).
    Pass,
    /// Drop each packet independently with this probability (the original exhibit).
    Bernoulli(DropProbability),
    /// Burst loss.
    GilbertElliott(GilbertElliott),
}

impl LossModel {
    /// The config record that makes the filter apply this model to UDP `port` until
    /// `deadline_ns` (CLOCK_MONOTONIC).
    pub fn record(&self, port: u16, deadline_ns: u64) -> LossConfigRecord {
        let base = LossConfigRecord {
            deadline_ns,
            port,
            ..LossConfigRecord::default()
        };
        match self {
            LossModel::Pass => LossConfigRecord {
                model: MODEL_PASS,
                ..base
            },
            LossModel::Bernoulli(drop) => LossConfigRecord {
                model: MODEL_BERNOULLI,
                drop_fraction: drop.as_u32_fraction(),
                ..base
            },
            LossModel::GilbertElliott(ge) => LossConfigRecord {
                model: MODEL_GILBERT_ELLIOTT,
                ge_p: ge.p.as_u32_fraction(),
                ge_r: ge.r.as_u32_fraction(),
                ge_loss_bad: ge.loss_bad.as_u32_fraction(),
                ge_loss_good: ge.loss_good.as_u32_fraction(),
                ..base
            },
        }
    }

    /// Long-run drop probability the model aims at.
    pub fn mean_loss(&self) -> f64 {
        match self {
            LossModel::Pass => 0.0,
            LossModel::Bernoulli(drop) => drop.get(),
            LossModel::GilbertElliott(ge) => ge.mean_loss(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prob(p: f64) -> DropProbability {
        DropProbability::new(p).unwrap()
    }

    fn gilbert(p: f64, r: f64, bad: f64, good: f64) -> GilbertElliott {
        GilbertElliott {
            p: prob(p),
            r: prob(r),
            loss_bad: prob(bad),
            loss_good: prob(good),
        }
    }

    #[test]
    fn models_encode_into_the_fields_the_filter_reads() {
        let cases = [
            (LossModel::Pass, MODEL_PASS, 0, [0, 0, 0, 0]),
            (
                LossModel::Bernoulli(prob(0.5)),
                MODEL_BERNOULLI,
                1 << 31,
                [0, 0, 0, 0],
            ),
            (
                LossModel::Bernoulli(DropProbability::ALL),
                MODEL_BERNOULLI,
                u32::MAX,
                [0, 0, 0, 0],
            ),
            (
                LossModel::GilbertElliott(gilbert(0.25, 0.5, 1.0, 0.0)),
                MODEL_GILBERT_ELLIOTT,
                0,
                [1 << 30, 1 << 31, u32::MAX, 0],
            ),
        ];
        for (model, code, drop, [p, r, bad, good]) in cases {
            let record = model.record(5004, 77);
            assert_eq!(record.model, code, "{model:?}");
            assert_eq!(record.port, 5004);
            assert_eq!(record.deadline_ns, 77);
            assert_eq!(record.drop_fraction, drop, "{model:?}");
            assert_eq!(
                [
                    record.ge_p,
                    record.ge_r,
                    record.ge_loss_bad,
                    record.ge_loss_good
                ],
                [p, r, bad, good]
            );
        }
    }

    #[test]
    fn gilbert_elliott_mean_loss_and_burst_follow_the_stationary_chain() {
        // (p, r, 1-h, 1-k, mean loss, mean bad run)
        let cases = [
            (0.1, 0.4, 1.0, 0.0, 0.2, 2.5),
            (0.01, 0.25, 1.0, 0.0, 0.01 / 0.26, 4.0),
            (0.5, 0.5, 0.5, 0.1, 0.3, 2.0),
            (0.0, 0.0, 1.0, 0.05, 0.05, f64::INFINITY),
        ];
        for (p, r, bad, good, loss, run) in cases {
            let ge = gilbert(p, r, bad, good);
            assert!((ge.mean_loss() - loss).abs() < 1e-12, "{ge:?}");
            assert_eq!(ge.mean_bad_run(), run, "{ge:?}");
        }
    }

    #[test]
    fn scaling_gilbert_elliott_keeps_the_rhythm_and_scales_the_loss() {
        let ge = gilbert(0.1, 0.4, 1.0, 0.2).with_loss_scaled(0.5);
        assert_eq!(ge, gilbert(0.1, 0.4, 0.5, 0.1));
    }
}
