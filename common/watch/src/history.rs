//! Per-second samples of the figures the page plots, kept over the last minutes.
//!
//! Each figure is read from the stage that has it on this PC, first found in the order below; a
//! stage that is not `up` gives nothing (its last figures are not current). On the receiver the
//! receiver's stages have them, on the sender the sender's; with both on one machine (the test
//! setup) the receiver's come first, as they are the ones the exhibit is seen through.
//!
//! | figure | gauge, in order of preference |
//! |---|---|
//! | `mash` | mash-input `level`, display `mash`, loss-controller `mash_level`, net-rx `mash` |
//! | `drop_percent` | loss-controller `target_drop_percent` (the drop probability the filter is set to), else its measured `drop_percent` |
//! | `quality` | net-rx `quality` (what the receiver asks for), encoder `quality` (what it codes at), net-tx `quality` (what the sender hears asked) |
//! | `fps` | display `fps` (presented), encoder `rate`, capture `rate` (frames per second) |
//! | `loss_percent` | net-rx `loss_percent` (after recovery, over the last second) |
//! | `camera_to_screen_ms` | display `camera_to_screen_p50_ms` (once measured) |

use std::collections::VecDeque;

use keymash_pipeline::stat;
use serde::Serialize;

use crate::status::StatusReport;

/// Where a figure is read from: a stage and the gauge it publishes.
type Source = (&'static str, &'static str);

const MASH_FROM: &[Source] = &[
    ("mash-input", "level"),
    ("display", "mash"),
    ("loss-controller", "mash_level"),
    ("net-rx", "mash"),
];
const DROP_PERCENT_FROM: &[Source] = &[
    ("loss-controller", "target_drop_percent"),
    ("loss-controller", "drop_percent"),
];
const QUALITY_FROM: &[Source] = &[
    ("net-rx", "quality"),
    ("encoder", "quality"),
    ("net-tx", "quality"),
];
const FPS_FROM: &[Source] = &[
    ("display", "fps"),
    ("encoder", stat::RATE),
    ("capture", stat::RATE),
];
const LOSS_PERCENT_FROM: &[Source] = &[("net-rx", "loss_percent")];
const CAMERA_TO_SCREEN_FROM: &[Source] = &[("display", "camera_to_screen_p50_ms")];

/// One second's figures on this PC; a figure this PC does not have is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Wall-clock time of the sample, ms since the Unix epoch.
    pub unix_ms: u64,
    /// The mash level, 0 to 1.
    pub mash: Option<f64>,
    /// The loss filter's drop probability, percent.
    pub drop_percent: Option<f64>,
    /// The codec quality asked for / coded at.
    pub quality: Option<f64>,
    /// Frames per second of this PC's main stage (display on the receiver, encoder on the sender).
    pub fps: Option<f64>,
    /// Packets lost after recovery, percent (receiver).
    pub loss_percent: Option<f64>,
    /// Camera to screen, p50, ms (receiver).
    pub camera_to_screen_ms: Option<f64>,
}

impl Sample {
    /// The figures of `report`, stamped `unix_ms` (see the module's table for their sources).
    pub fn from_report(report: &StatusReport, unix_ms: u64) -> Sample {
        let pick = |sources: &[Source]| pick(report, sources);
        Sample {
            unix_ms,
            mash: pick(MASH_FROM),
            drop_percent: pick(DROP_PERCENT_FROM),
            quality: pick(QUALITY_FROM),
            fps: pick(FPS_FROM),
            loss_percent: pick(LOSS_PERCENT_FROM),
            camera_to_screen_ms: pick(CAMERA_TO_SCREEN_FROM),
        }
    }
}

/// The first of `sources` an up stage publishes, as a finite number (JSON has no NaN).
fn pick(report: &StatusReport, sources: &[Source]) -> Option<f64> {
    sources.iter().find_map(|&(stage, gauge)| {
        report
            .stages
            .iter()
            .find(|s| s.name == stage && s.state == "up")?
            .gauges
            .iter()
            .find(|(name, _)| name == gauge)
            .map(|&(_, value)| value)
            .filter(|value| value.is_finite())
    })
}

/// The last `capacity` samples, oldest first.
#[derive(Debug, Clone)]
pub struct History {
    samples: VecDeque<Sample>,
    capacity: usize,
}

impl History {
    /// An empty history keeping at most `capacity` samples (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        History {
            samples: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds `sample` as the newest, forgetting the oldest when full.
    pub fn push(&mut self, sample: Sample) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// How many samples it keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// `{"capacity":N,"samples":[...]}`, oldest first; a figure this PC lacks is `null`.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Json<'a> {
            capacity: usize,
            samples: &'a VecDeque<Sample>,
        }
        let json = Json {
            capacity: self.capacity,
            samples: &self.samples,
        };
        match serde_json::to_string(&json) {
            Ok(text) => text,
            // Plain numbers and options cannot fail to serialise; an empty history is still
            // something the page can draw.
            Err(e) => {
                log::error!("cannot serialise the history: {e}");
                format!(r#"{{"capacity":{},"samples":[]}}"#, self.capacity)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::StageStatus;

    fn stage(name: &'static str, state: &str, gauges: &[(&str, f64)]) -> StageStatus {
        StageStatus {
            name,
            role: String::new(),
            state: state.to_owned(),
            pid: None,
            heartbeat_age_s: Some(0.1),
            rate: gauges.iter().find(|g| g.0 == stat::RATE).map(|g| g.1),
            rate_unit: "frames",
            dropped: None,
            counters: Vec::new(),
            gauges: gauges.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect(),
            status_line: String::new(),
            last_error: String::new(),
        }
    }

    fn report(stages: Vec<StageStatus>) -> StatusReport {
        StatusReport {
            prefix: "t".to_owned(),
            stages,
            segments: Vec::new(),
            shm: None,
        }
    }

    fn sample(unix_ms: u64) -> Sample {
        Sample::from_report(&report(Vec::new()), unix_ms)
    }

    #[test]
    fn on_the_receiver_every_figure_comes_from_the_receivers_stages() {
        let report = report(vec![
            stage("encoder", "absent", &[]),
            stage(
                "net-rx",
                "up",
                &[("loss_percent", 1.5), ("quality", 70.0), ("mash", 0.4)],
            ),
            stage(
                "display",
                "up",
                &[
                    ("rate", 30.0),
                    ("fps", 29.9),
                    ("mash", 0.5),
                    ("camera_to_screen_p50_ms", 180.0),
                ],
            ),
            stage("mash-input", "up", &[("rate", 3.0), ("level", 0.6)]),
            stage(
                "loss-controller",
                "up",
                &[
                    ("target_drop_percent", 12.0),
                    ("drop_percent", 11.0),
                    ("mash_level", 0.6),
                ],
            ),
        ]);
        let s = Sample::from_report(&report, 1_700_000_000_000);
        assert_eq!(
            s,
            Sample {
                unix_ms: 1_700_000_000_000,
                mash: Some(0.6),
                drop_percent: Some(12.0),
                quality: Some(70.0),
                fps: Some(29.9),
                loss_percent: Some(1.5),
                camera_to_screen_ms: Some(180.0),
            }
        );
    }

    #[test]
    fn on_the_sender_quality_and_fps_come_from_the_encoder_and_the_rest_is_none() {
        let report = report(vec![
            stage("capture", "up", &[("rate", 30.0)]),
            stage("encoder", "up", &[("rate", 29.0), ("quality", 55.0)]),
            stage("net-tx", "up", &[("quality", 60.0)]),
            stage("net-rx", "absent", &[]),
            stage("display", "absent", &[]),
        ]);
        let s = Sample::from_report(&report, 5);
        assert_eq!(s.quality, Some(55.0));
        assert_eq!(s.fps, Some(29.0));
        assert_eq!(
            (
                s.mash,
                s.drop_percent,
                s.loss_percent,
                s.camera_to_screen_ms
            ),
            (None, None, None, None)
        );
    }

    #[test]
    fn a_stage_that_is_not_up_gives_nothing_and_the_next_source_is_used() {
        let report = report(vec![
            stage("capture", "up", &[("rate", 30.0)]),
            stage("encoder", "stale", &[("rate", 29.0), ("quality", 55.0)]),
            stage("net-tx", "up", &[("quality", 60.0)]),
            stage("mash-input", "dead", &[("level", 0.9)]),
            stage(
                "loss-controller",
                "starting",
                &[("target_drop_percent", 5.0)],
            ),
        ]);
        let s = Sample::from_report(&report, 5);
        assert_eq!(s.fps, Some(30.0));
        assert_eq!(s.quality, Some(60.0));
        assert_eq!(s.mash, None);
        assert_eq!(s.drop_percent, None);
    }

    #[test]
    fn the_measured_drop_stands_in_for_the_target_and_nan_is_none() {
        let report = report(vec![
            stage("loss-controller", "up", &[("drop_percent", 3.0)]),
            stage("display", "up", &[("fps", f64::NAN)]),
        ]);
        let s = Sample::from_report(&report, 5);
        assert_eq!(s.drop_percent, Some(3.0));
        assert_eq!(s.fps, None);
    }

    #[test]
    fn history_keeps_the_last_capacity_samples_oldest_first() {
        let mut history = History::new(3);
        assert!(history.is_empty());
        assert_eq!(history.latest(), None);
        for t in 1..=5 {
            history.push(sample(t));
        }
        let times: Vec<u64> = history.samples().map(|s| s.unix_ms).collect();
        assert_eq!(times, [3, 4, 5]);
        assert_eq!((history.len(), history.capacity()), (3, 3));
        assert_eq!(history.latest().map(|s| s.unix_ms), Some(5));
        assert_eq!(History::new(0).capacity(), 1);
    }

    #[test]
    fn json_lists_samples_oldest_first_with_null_for_missing_figures() {
        let mut history = History::new(10);
        history.push(sample(1));
        let mut second = sample(2);
        second.mash = Some(0.5);
        history.push(second);
        let json: serde_json::Value = serde_json::from_str(&history.to_json()).unwrap();
        assert_eq!(json["capacity"], 10);
        let samples = json["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0]["unix_ms"], 1);
        assert_eq!(samples[1]["unix_ms"], 2);
        assert_eq!(samples[1]["mash"], 0.5);
        assert!(samples[0]["mash"].is_null());
        for key in [
            "drop_percent",
            "quality",
            "fps",
            "loss_percent",
            "camera_to_screen_ms",
        ] {
            assert!(samples[0].get(key).is_some(), "{key}");
        }
    }
}
