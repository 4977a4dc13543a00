//! Camera-to-screen time for any camera, from the sender's own account of each frame's age.
//!
//! The sender writes into every media packet how long ago the camera captured its frame, as the
//! packet leaves (an RFC 8285 RTP header extension, on the sender's clock). net-rx keeps that
//! age with the payload, with when the datagram arrived (the kernel's receive timestamp) and
//! the round trip time it knows. Counted back from the arrival by the age and half the round
//! trip, that is when the camera captured the frame on this PC's clock ([`FrameAge`]); from
//! there to the moment the frame goes on screen is camera-to-screen ([`CameraLatency`]). No
//! clock is shared between the PCs: only durations cross, each measured on one clock.
//!
//! The age when sent is also the delay the stream is shown with (the delay buffer's hold plus
//! encoding): [`CameraLatency`] feeds it to a [`DelayWatch`], which says when it has strayed
//! from `delay.seconds`.

use std::time::{Duration, Instant};

use keymash_core::Percentiles;

use crate::delay_watch::{DelayChange, DelayWatch};

/// How old a frame is by the sender's account: with it the screen knows camera-to-screen time
/// for any camera, not only one that stamps its pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAge {
    /// When the camera captured the frame, on this PC's clock.
    pub captured: Instant,
    /// Capture to sending, on the sender's clock: the delay buffer's hold, encoding, pacing.
    pub age_at_send: Duration,
}

impl FrameAge {
    /// The age of a payload's frame: its datagram `arrival` (this PC's clock), the frame's
    /// `age_at_send` from the packet's extension (the sender's clock), and the round trip `rtt`
    /// if one was measured (half of it stands for the one-way trip; without one the trip
    /// counts as nothing, a fraction of a millisecond on a LAN). `None` if that would be
    /// before this clock's start.
    pub fn from_arrival(
        arrival: Instant,
        age_at_send: Duration,
        rtt: Option<Duration>,
    ) -> Option<Self> {
        let one_way = rtt.unwrap_or_default() / 2;
        Some(FrameAge {
            captured: arrival.checked_sub(age_at_send + one_way)?,
            age_at_send,
        })
    }

    /// Of this estimate and an `earlier` one for the same frame, the one with the earlier
    /// capture time: every payload's estimate is late by whatever neither side counted (the
    /// sender's last step before the socket, the part of the trip half the RTT misses), so the
    /// earliest is the closest.
    pub fn or_earlier(self, other: Option<FrameAge>) -> FrameAge {
        match other {
            Some(other) if other.captured < self.captured => other,
            _ => self,
        }
    }
}

/// Camera-to-screen times and the delay, from [`FrameAge`]s of the frames shown.
#[derive(Debug, Clone)]
pub struct CameraLatency {
    camera_to_screen_ms: Percentiles,
    delay: DelayWatch,
}

impl CameraLatency {
    /// Percentiles over the last `window` frames; `delay` watches the measured delay.
    pub fn new(window: usize, delay: DelayWatch) -> Self {
        CameraLatency {
            camera_to_screen_ms: Percentiles::new(window),
            delay,
        }
    }

    /// A frame of age `age` went on screen at `now`: records its camera-to-screen time and
    /// its delay; a change of the delay's state worth a log line.
    pub fn shown(&mut self, now: Instant, age: FrameAge) -> Option<DelayChange> {
        let camera_to_screen = now.saturating_duration_since(age.captured);
        self.camera_to_screen_ms
            .record(camera_to_screen.as_secs_f64() * 1e3);
        self.delay.observe(now, age.age_at_send)
    }

    /// The `q` quantile of camera-to-screen over the window, in milliseconds.
    pub fn camera_to_screen_ms(&mut self, q: f64) -> Option<f64> {
        self.camera_to_screen_ms.quantile(q)
    }

    pub fn delay(&self) -> &DelayWatch {
        &self.delay
    }

    /// The figures for the statistics cell: `camera_to_screen_p50_ms`, `..._p99_ms`,
    /// `delay_measured_s` and `delay_off` (1 while the delay is reported off), each once it has
    /// a value.
    pub fn gauges(&mut self) -> Vec<(&'static str, f64)> {
        let mut gauges = Vec::with_capacity(4);
        if let (Some(p50), Some(p99)) = (
            self.camera_to_screen_ms(0.5),
            self.camera_to_screen_ms(0.99),
        ) {
            gauges.push(("camera_to_screen_p50_ms", p50));
            gauges.push(("camera_to_screen_p99_ms", p99));
        }
        if let Some(measured) = self.delay.measured() {
            gauges.push(("delay_measured_s", measured.as_secs_f64()));
            gauges.push(("delay_off", f64::from(u8::from(self.delay.is_off()))));
        }
        gauges
    }

    /// What leads the status line while the delay is reported off.
    pub fn warning(&self) -> Option<String> {
        let measured = self.delay.measured().filter(|_| self.delay.is_off())?;
        Some(format!(
            "DELAY {:.2} s, NOT delay.seconds {:.2} s",
            measured.as_secs_f64(),
            self.delay.expected().as_secs_f64()
        ))
    }

    /// Camera to screen (p50) and the measured delay, for the status line.
    pub fn figures(&mut self) -> Option<String> {
        let c2s = self.camera_to_screen_ms(0.5)?;
        let delay = self.delay.measured()?;
        Some(format!(
            "camera-to-screen {c2s:.0} ms, delay {:.3} s",
            delay.as_secs_f64()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delay_watch::DELAY_OFF_PATIENCE;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn latency() -> CameraLatency {
        CameraLatency::new(
            300,
            DelayWatch::new(Duration::from_secs(30), ms(33), DELAY_OFF_PATIENCE),
        )
    }

    #[test]
    fn the_capture_time_is_the_arrival_less_the_age_and_half_the_round_trip() {
        let arrival = Instant::now() + Duration::from_secs(100);
        let table = [
            (ms(30_010), None, ms(30_010)),
            (ms(30_010), Some(ms(4)), ms(30_012)),
            (
                ms(0),
                Some(Duration::from_micros(200)),
                Duration::from_micros(100),
            ),
        ];
        for (age_at_send, rtt, before_arrival) in table {
            let age = FrameAge::from_arrival(arrival, age_at_send, rtt).unwrap();
            assert_eq!(
                age.captured,
                arrival - before_arrival,
                "{age_at_send:?} {rtt:?}"
            );
            assert_eq!(age.age_at_send, age_at_send);
        }
    }

    #[test]
    fn of_a_frames_estimates_the_earliest_is_kept() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let at = |ms_before: u64| FrameAge {
            captured: t0 - ms(ms_before),
            age_at_send: ms(ms_before),
        };
        assert_eq!(at(30).or_earlier(None), at(30));
        assert_eq!(at(30).or_earlier(Some(at(31))), at(31));
        assert_eq!(at(31).or_earlier(Some(at(30))), at(31));
    }

    #[test]
    fn camera_to_screen_runs_from_the_capture_to_the_moment_on_screen() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut l = latency();
        assert!(l.gauges().is_empty());
        assert_eq!((l.figures(), l.warning()), (None, None));
        for i in 0..10u64 {
            let shown = t0 + ms(33 * i);
            // Captured 30.05 s before it is shown; sent 30.01 s after capture.
            let age = FrameAge {
                captured: shown - ms(30_050),
                age_at_send: ms(30_010),
            };
            assert_eq!(l.shown(shown, age), None);
        }
        assert_eq!(l.camera_to_screen_ms(0.5), Some(30_050.0));
        assert_eq!(
            l.gauges(),
            vec![
                ("camera_to_screen_p50_ms", 30_050.0),
                ("camera_to_screen_p99_ms", 30_050.0),
                ("delay_measured_s", 30.01),
                ("delay_off", 0.0),
            ]
        );
        assert_eq!(
            l.figures().as_deref(),
            Some("camera-to-screen 30050 ms, delay 30.010 s")
        );
        assert_eq!(l.warning(), None);
    }

    #[test]
    fn a_delay_off_for_longer_than_the_patience_is_warned_about() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut l = latency();
        let mut changes = Vec::new();
        for i in 0..=100u64 {
            let shown = t0 + ms(33 * i);
            let age = FrameAge {
                captured: shown - ms(29_050),
                age_at_send: ms(29_000),
            };
            changes.extend(l.shown(shown, age));
        }
        assert!(matches!(changes[..], [DelayChange::Off { .. }]));
        assert_eq!(
            l.warning().as_deref(),
            Some("DELAY 29.00 s, NOT delay.seconds 30.00 s")
        );
        assert!(l.gauges().contains(&("delay_off", 1.0)));
    }
}
