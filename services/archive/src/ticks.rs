//! When to take a picture: `fps` ticks a second on the monotonic clock. A tick that comes late
//! (the machine was busy, an encode or a disk write took long) still counts the ticks it
//! missed, and the recorder repeats the picture for them, so an hour of video plays for an
//! hour and the `.jsonl` lines stay in step with the frames.

use std::time::{Duration, Instant};

/// Missed ticks are filled for at most this long; a longer stall (the process was stopped with
/// SIGSTOP, the machine suspended) restarts the schedule instead of writing a burst of copies.
const MAX_CATCH_UP: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(crate) struct Ticks {
    period: Duration,
    next: Instant,
    max_frames: u64,
}

impl Ticks {
    /// `fps` ticks a second (at least 1), the first at `start`.
    pub(crate) fn new(fps: u32, start: Instant) -> Self {
        let fps = fps.max(1);
        Ticks {
            period: Duration::from_secs(1) / fps,
            next: start,
            max_frames: (MAX_CATCH_UP.as_secs() * u64::from(fps)).max(1),
        }
    }

    /// When the next tick is due.
    pub(crate) fn next(&self) -> Instant {
        self.next
    }

    /// At `now`: how many frames are due (0 before the next tick; more than 1 when ticks were
    /// missed, up to [`MAX_CATCH_UP`]'s worth), and the schedule moves past `now`.
    pub(crate) fn due(&mut self, now: Instant) -> u64 {
        if now < self.next {
            return 0;
        }
        let late = now.duration_since(self.next);
        let missed = (late.as_nanos() / self.period.as_nanos()) as u64;
        if missed >= self.max_frames {
            self.next = now + self.period;
            return 1;
        }
        // `missed` is bounded by max_frames above, so it fits a u32.
        self.next += self.period * (missed as u32 + 1);
        missed + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_come_at_the_rate_and_late_ones_count_what_they_missed() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut ticks = Ticks::new(5, t0);
        assert_eq!(ticks.due(t0), 1);
        assert_eq!(ticks.due(ms(100)), 0);
        assert_eq!(ticks.next(), ms(200));
        assert_eq!(ticks.due(ms(205)), 1);
        // 0.5 s late: the ticks at 400, 600 and 800 ms, due at 850.
        assert_eq!(ticks.due(ms(850)), 3);
        assert_eq!(ticks.next(), ms(1000));
        // Over the catch-up limit: one frame and a fresh schedule.
        assert_eq!(ticks.due(ms(10_000)), 1);
        assert_eq!(ticks.next(), ms(10_200));
    }

    #[test]
    fn frames_over_a_minute_match_the_rate_whatever_the_wake_ups() {
        let t0 = Instant::now();
        let mut ticks = Ticks::new(5, t0);
        let mut frames = 0;
        // Wake-ups at irregular times, some late by most of a second.
        let mut now = t0;
        let mut step = 37u64;
        while now < t0 + Duration::from_secs(60) {
            frames += ticks.due(now);
            step = (step * 7919 + 13) % 900;
            now += Duration::from_millis(step);
        }
        let expected = 5 * now.duration_since(t0).as_millis() as u64 / 1000;
        assert!(
            frames.abs_diff(expected) <= 1,
            "{frames} frames, expected {expected}"
        );
    }
}
