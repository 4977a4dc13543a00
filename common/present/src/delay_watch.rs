//! Is the stream as late as configured? The sender's header extension tells how old each frame
//! was when it left ([`crate::camera_latency::FrameAge::age_at_send`]): the delay buffer's hold
//! plus encoding and pacing, a few milliseconds. [`DelayWatch`] compares that with `delay.seconds` and says so, once, when it has
//! differed by more than a frame interval for longer than a few seconds (a delay buffer that
//! cannot hold what it was told, a wrong config on one PC, a clock stepping on the sender), and
//! once again when it is back.

use std::fmt;
use std::time::{Duration, Instant};

/// How long the measured delay must stay off before it is reported: a few seconds, so a
/// restart of a sender stage (which replays or skips a moment) does not raise it.
pub const DELAY_OFF_PATIENCE: Duration = Duration::from_secs(3);

/// A change worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayChange {
    /// The measured delay has been off by more than the tolerance for `for_at_least`.
    Off {
        measured: Duration,
        expected: Duration,
        for_at_least: Duration,
    },
    /// Back within the tolerance.
    Back { measured: Duration },
}

impl DelayChange {
    /// Whether this is the warning (as opposed to the all-clear).
    pub fn is_off(&self) -> bool {
        matches!(self, DelayChange::Off { .. })
    }
}

impl fmt::Display for DelayChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DelayChange::Off {
                measured,
                expected,
                for_at_least,
            } => write!(
                f,
                "measured delay {:.3} s differs from delay.seconds {:.3} s by more than a frame \
                 interval, for {:.1} s now",
                measured.as_secs_f64(),
                expected.as_secs_f64(),
                for_at_least.as_secs_f64()
            ),
            DelayChange::Back { measured } => write!(
                f,
                "measured delay {:.3} s is back within a frame interval of delay.seconds",
                measured.as_secs_f64()
            ),
        }
    }
}

/// The measured delay against the configured one; sans-IO, time passed in.
#[derive(Debug, Clone)]
pub struct DelayWatch {
    expected: Duration,
    tolerance: Duration,
    patience: Duration,
    /// Since when every measurement has been off (None while within the tolerance).
    off_since: Option<Instant>,
    reported: bool,
    last: Option<Duration>,
}

impl DelayWatch {
    /// `expected` is `delay.seconds`; `tolerance` one frame interval (1 / video.fps), since the
    /// delay buffer releases frames on frame boundaries and encoding takes part of one.
    pub fn new(expected: Duration, tolerance: Duration, patience: Duration) -> Self {
        DelayWatch {
            expected,
            tolerance,
            patience,
            off_since: None,
            reported: false,
            last: None,
        }
    }

    /// One frame's measured delay at `now`; a change to report, at most once each way.
    pub fn observe(&mut self, now: Instant, measured: Duration) -> Option<DelayChange> {
        self.last = Some(measured);
        let off = measured.abs_diff(self.expected) > self.tolerance;
        if !off {
            self.off_since = None;
            if self.reported {
                self.reported = false;
                return Some(DelayChange::Back { measured });
            }
            return None;
        }
        let since = *self.off_since.get_or_insert(now);
        let for_at_least = now.saturating_duration_since(since);
        if !self.reported && for_at_least > self.patience {
            self.reported = true;
            return Some(DelayChange::Off {
                measured,
                expected: self.expected,
                for_at_least,
            });
        }
        None
    }

    /// Whether the delay is reported off now (for the status line).
    pub fn is_off(&self) -> bool {
        self.reported
    }

    /// The newest measurement.
    pub fn measured(&self) -> Option<Duration> {
        self.last
    }

    pub fn expected(&self) -> Duration {
        self.expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(33);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn watch() -> DelayWatch {
        DelayWatch::new(Duration::from_secs(30), FRAME, DELAY_OFF_PATIENCE)
    }

    #[test]
    fn a_delay_within_a_frame_interval_is_never_reported() {
        let t0 = Instant::now();
        let mut w = watch();
        for i in 0..600 {
            let measured = ms(30_000 + (i % 3) * 16);
            assert_eq!(w.observe(t0 + ms(i * 33), measured), None);
        }
        assert!(!w.is_off());
        assert_eq!(w.measured(), Some(ms(30_032)));
    }

    #[test]
    fn an_off_delay_is_reported_once_after_the_patience_and_once_when_back() {
        let t0 = Instant::now();
        let mut w = watch();
        let mut changes = Vec::new();
        // 5 s of frames 100 ms short, then 2 s on time.
        for i in 0..=150u64 {
            if let Some(c) = w.observe(t0 + ms(i * 33), ms(29_900)) {
                changes.push((i * 33, c));
            }
        }
        assert!(w.is_off());
        for i in 151..210u64 {
            if let Some(c) = w.observe(t0 + ms(i * 33), ms(30_010)) {
                changes.push((i * 33, c));
            }
        }
        assert!(!w.is_off());
        assert_eq!(
            changes,
            vec![
                (
                    3003,
                    DelayChange::Off {
                        measured: ms(29_900),
                        expected: ms(30_000),
                        for_at_least: ms(3003),
                    }
                ),
                (
                    4983,
                    DelayChange::Back {
                        measured: ms(30_010)
                    }
                ),
            ]
        );
    }

    #[test]
    fn one_good_frame_restarts_the_patience() {
        let t0 = Instant::now();
        let mut w = watch();
        for i in 0..200u64 {
            // Every 2.5 s one frame on time: never off for 3 s in a row.
            let measured = if i % 75 == 74 { ms(30_000) } else { ms(30_500) };
            assert_eq!(w.observe(t0 + ms(i * 33), measured), None, "frame {i}");
        }
        assert!(!w.is_off());
    }

    #[test]
    fn too_late_counts_as_off_as_well_as_too_early() {
        let t0 = Instant::now();
        let mut w = watch();
        assert_eq!(w.observe(t0, ms(30_034)), None);
        assert!(matches!(
            w.observe(t0 + ms(3001), ms(30_034)),
            Some(DelayChange::Off { .. })
        ));
        // Exactly a frame interval off is still within.
        let mut w = watch();
        assert_eq!(w.observe(t0, ms(30_033)), None);
        assert_eq!(w.observe(t0 + ms(5000), ms(30_033)), None);
    }
}
