//! What the filter should do at a given moment, as pure code: the loss model (fixed, or from
//! the mash level through the mash curve), the deadline that makes it fail safe, and the
//! per-second drop rate computed from kernel counter samples. Time is passed in.

use std::time::Duration;

use keymash_core::curves::LossCurve;
use keymash_core::{DropProbability, MashLevel};

use crate::layout::{LossConfigRecord, LossCounters};
use crate::loss_model::{GilbertElliott, LossModel};

/// Where the drop probability comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Drive {
    /// A model held until the controller stops (`--fixed-drop`, `--model gilbert-elliott`).
    Fixed(LossModel),
    /// Loss from the mash level through the mash curve (the exhibit): Bernoulli at the curve's
    /// probability, or, with `burst`, that chain (the loss at rest) with both states' drop
    /// probabilities scaled down by the curve's fall from its value at rest.
    Mash {
        curve: LossCurve,
        burst: Option<GilbertElliott>,
    },
}

/// The controller's plan: which flow, which loss, how long each refresh stays valid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub drive: Drive,
    /// UDP destination port of the video flow.
    pub port: u16,
    /// How long a written config stays in force without a refresh (the fail-safe window).
    pub failsafe: Duration,
}

impl Plan {
    /// The model to apply now. An absent mash level (no mash cell yet, or a dead mash-input)
    /// counts as nobody mashing.
    pub fn model(&self, mash: Option<MashLevel>) -> LossModel {
        match self.drive {
            Drive::Fixed(model) => model,
            Drive::Mash { curve, burst } => {
                let drop = curve.drop_probability(mash.unwrap_or(MashLevel::IDLE));
                match burst {
                    None => LossModel::Bernoulli(drop),
                    Some(chain) => {
                        let at_rest = curve.drop_at_rest().get();
                        let factor = if at_rest > 0.0 {
                            drop.get() / at_rest
                        } else {
                            0.0
                        };
                        LossModel::GilbertElliott(chain.with_loss_scaled(factor))
                    }
                }
            }
        }
    }

    /// The config record to write at `now_ns` (CLOCK_MONOTONIC): the current model, valid until
    /// `now_ns + failsafe`.
    pub fn record(&self, now_ns: u64, mash: Option<MashLevel>) -> LossConfigRecord {
        let failsafe_ns = u64::try_from(self.failsafe.as_nanos()).unwrap_or(u64::MAX);
        self.model(mash)
            .record(self.port, now_ns.saturating_add(failsafe_ns))
    }
}

/// The record that switches loss off at once (written on a clean stop, before detaching, so
/// no packet is dropped in between).
pub fn pass_everything(port: u16) -> LossConfigRecord {
    LossModel::Pass.record(port, 0)
}

/// Kernel-truth drop rate over one measuring window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowRate {
    /// Counters accumulated within the window.
    pub delta: LossCounters,
    /// Length of the window.
    pub elapsed: Duration,
}

impl WindowRate {
    /// Dropped / seen within the window, or `None` when no packet of the flow arrived.
    pub fn drop_ratio(&self) -> Option<DropProbability> {
        (self.delta.seen > 0).then(|| {
            DropProbability::saturating(self.delta.dropped as f64 / self.delta.seen as f64)
        })
    }

    /// Packets of the flow per second within the window.
    pub fn packets_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.delta.seen as f64 / secs
        } else {
            0.0
        }
    }
}

/// Turns a stream of counter samples into one [`WindowRate`] per window (one second for the
/// statistics cell's "per-second drop %").
#[derive(Debug, Clone)]
pub struct DropRateMeter {
    window: Duration,
    window_start: Option<(u64, LossCounters)>,
    latest: Option<WindowRate>,
}

impl DropRateMeter {
    pub fn new(window: Duration) -> Self {
        DropRateMeter {
            window,
            window_start: None,
            latest: None,
        }
    }

    /// Feeds the counters read at `now_ns`; returns the window that just closed, if one did.
    pub fn observe(&mut self, now_ns: u64, counters: LossCounters) -> Option<WindowRate> {
        let Some((start_ns, start)) = self.window_start else {
            self.window_start = Some((now_ns, counters));
            return None;
        };
        let elapsed = Duration::from_nanos(now_ns.saturating_sub(start_ns));
        if elapsed < self.window {
            return None;
        }
        let rate = WindowRate {
            delta: counters.since(start),
            elapsed,
        };
        self.window_start = Some((now_ns, counters));
        self.latest = Some(rate);
        Some(rate)
    }

    /// The last closed window.
    pub fn latest(&self) -> Option<WindowRate> {
        self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{MODEL_BERNOULLI, MODEL_PASS};

    const MS: u64 = 1_000_000;

    fn mash_plan() -> Plan {
        Plan {
            drive: Drive::Mash {
                curve: LossCurve::default(),
                burst: None,
            },
            port: 5004,
            failsafe: Duration::from_millis(250),
        }
    }

    #[test]
    fn mash_plan_follows_the_curve_and_treats_no_mash_as_idle() {
        let plan = mash_plan();
        let curve = LossCurve::default();
        let cases = [
            None,
            Some(MashLevel::IDLE),
            Some(MashLevel::new(0.3).unwrap()),
            Some(MashLevel::FULL),
        ];
        for mash in cases {
            let expected = curve.drop_probability(mash.unwrap_or(MashLevel::IDLE));
            assert_eq!(plan.model(mash), LossModel::Bernoulli(expected), "{mash:?}");
        }
    }

    #[test]
    fn mashing_scales_a_burst_chain_down_without_changing_its_rhythm() {
        let chain = GilbertElliott {
            p: DropProbability::new(0.1).unwrap(),
            r: DropProbability::new(0.25).unwrap(),
            loss_bad: DropProbability::ALL,
            loss_good: DropProbability::new(0.02).unwrap(),
        };
        let plan = Plan {
            drive: Drive::Mash {
                curve: LossCurve::default(),
                burst: Some(chain),
            },
            ..mash_plan()
        };
        // (mash level, expected scale of both drop probabilities): the default curve falls from
        // 0.4 at rest as (1 - level/0.8)^2.
        for (level, scale) in [(0.0f32, 1.0f64), (0.4, 0.25), (0.8, 0.0), (1.0, 0.0)] {
            let LossModel::GilbertElliott(got) = plan.model(Some(MashLevel::new(level).unwrap()))
            else {
                panic!("burst drive must stay Gilbert-Elliott");
            };
            assert_eq!(
                (got.p, got.r),
                (chain.p, chain.r),
                "the rhythm must not change"
            );
            assert!(
                (got.loss_bad.get() - scale).abs() < 1e-9,
                "level {level}: {got:?}"
            );
            assert!(
                (got.loss_good.get() - 0.02 * scale).abs() < 1e-9,
                "level {level}: {got:?}"
            );
        }
    }

    #[test]
    fn every_record_expires_one_failsafe_window_after_it_was_written() {
        let plan = mash_plan();
        for now in [0, 1, 10 * MS, u64::MAX - 5] {
            let record = plan.record(now, None);
            assert_eq!(record.deadline_ns, now.saturating_add(250 * MS));
            assert_eq!(record.port, 5004);
            assert_eq!(record.model, MODEL_BERNOULLI);
        }
    }

    #[test]
    fn fixed_plan_ignores_the_mash_level() {
        let model = LossModel::Bernoulli(DropProbability::new(0.1).unwrap());
        let plan = Plan {
            drive: Drive::Fixed(model),
            ..mash_plan()
        };
        assert_eq!(plan.model(Some(MashLevel::FULL)), model);
    }

    #[test]
    fn pass_everything_is_already_expired_and_drops_nothing() {
        let record = pass_everything(5004);
        assert_eq!(
            (record.model, record.deadline_ns, record.drop_fraction),
            (MODEL_PASS, 0, 0)
        );
    }

    #[test]
    fn drop_rate_meter_reports_each_closed_window() {
        let mut meter = DropRateMeter::new(Duration::from_secs(1));
        let c = |seen, dropped| LossCounters {
            seen,
            dropped,
            passed_expired: 0,
        };
        // (now in ms, counters, expected (seen, dropped) of a closed window)
        type Step = (u64, LossCounters, Option<(u64, u64)>);
        let steps: [Step; 5] = [
            (0, c(100, 10), None),
            (500, c(150, 20), None),
            (1000, c(200, 30), Some((100, 20))),
            (1500, c(200, 30), None),
            (2100, c(200, 30), Some((0, 0))),
        ];
        for (now_ms, counters, expected) in steps {
            let got = meter
                .observe(now_ms * MS, counters)
                .map(|w| (w.delta.seen, w.delta.dropped));
            assert_eq!(got, expected, "at {now_ms} ms");
        }
        let last = meter.latest().unwrap();
        assert_eq!(last.drop_ratio(), None);
        let window = WindowRate {
            delta: c(200, 50),
            elapsed: Duration::from_millis(500),
        };
        assert_eq!(
            window.drop_ratio(),
            Some(DropProbability::new(0.25).unwrap())
        );
        assert_eq!(window.packets_per_second(), 400.0);
    }
}
