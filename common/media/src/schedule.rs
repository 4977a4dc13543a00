//! The delay schedule: which held frame is due at `now`.
//!
//! A frame is due when its capture time plus the delay has passed. Release is by time, not by
//! count, so the delay stays right when the camera's real rate drifts from the configured one.
//! The schedule keeps no state of its own: it looks at the held frames' capture times and at the
//! capture time of the frame released last, both of which live in shared memory, so a restarted
//! delay buffer (or a restart of any other stage) continues exactly where it was.

use std::ops::Range;

/// Read access to the frames the delay buffer holds, by sequence number. Capture times must not
/// decrease with the sequence number (they come from one monotonic clock).
pub trait HeldFrames {
    /// Sequence numbers currently held, oldest first.
    fn retained(&self) -> Range<u64>;
    /// Capture time (CLOCK_MONOTONIC ns) of frame `seq`, or `None` if it is no longer readable
    /// (the writer is recycling its slot: it is the oldest, so it counts as long due).
    fn capture_ns(&self, seq: u64) -> Option<u64>;
}

/// How long the picture may stand still before the countdown card replaces it: the gap
/// tolerance the delay buffer runs with.
///
/// The card is for video that is really missing (the camera away for a while, the delay just
/// started); a hiccup must show the last frame instead. The longest hiccup the pipeline makes
/// itself is a stage crashing and systemd restarting it: the units' `RestartSec=1s` plus the
/// stage's start, a fraction of a second idle (about 1.1 s in all, measured under real systemd
/// by `tests/tests/systemd_faults.rs`) and more on a loaded machine. A crashed capture or delay
/// buffer leaves that gap in the held video itself, so it comes out of the delay
/// `delay.seconds` later; at the former 1 s tolerance it showed the card there for a moment.
/// Three seconds covers RestartSec with two seconds to spare for the start, and is still short
/// enough that a visitor never faces a frozen picture for long when the camera is gone.
pub const GAP_TOLERANCE_NS: u64 = 3_000_000_000;

/// What the delay buffer should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Release held frame `seq` (the newest one due; older due ones are skipped, since a stage
    /// that fell behind must catch up to the right moment rather than play late).
    Frame { seq: u64, capture_ns: u64 },
    /// Nothing new is due and the picture would otherwise stand still for longer than the gap
    /// tolerance: show the countdown card; the next frame is due in `seconds_left` (rounded up).
    Countdown { seconds_left: u32 },
    /// As for the countdown, but no held frame is still to come: no video is arriving (the
    /// camera is unplugged, or capture is not running). There is nothing to count down to, so
    /// the card says the picture returns the delay after the video does, rather than show a
    /// countdown that stands still.
    AwaitingVideo,
    /// Nothing is due: check again at `until_ns`, or when a new frame arrives if `None`.
    Wait { until_ns: Option<u64> },
}

/// The schedule for one delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelaySchedule {
    delay_ns: u64,
    gap_tolerance_ns: u64,
}

impl DelaySchedule {
    /// A schedule holding frames back `delay_ns`; the countdown card replaces a picture that has
    /// not changed for `gap_tolerance_ns` (the delay buffer uses [`GAP_TOLERANCE_NS`]).
    pub fn new(delay_ns: u64, gap_tolerance_ns: u64) -> Self {
        DelaySchedule {
            delay_ns,
            gap_tolerance_ns,
        }
    }

    pub fn delay_ns(&self) -> u64 {
        self.delay_ns
    }

    /// The delay in whole seconds, rounded up (what the countdown starts from).
    pub fn delay_seconds_ceil(&self) -> u32 {
        u32::try_from(self.delay_ns.div_ceil(1_000_000_000)).unwrap_or(u32::MAX)
    }

    /// Decides what to do at `now_ns`, given the held frames and the capture time of the frame
    /// released last (`None` if none was, or the last release was a countdown card).
    pub fn decide(
        &self,
        now_ns: u64,
        held: &impl HeldFrames,
        last_released_capture_ns: Option<u64>,
    ) -> Release {
        let range = held.retained();
        let is_due = |seq: u64| {
            held.capture_ns(seq)
                .is_none_or(|c| c.saturating_add(self.delay_ns) <= now_ns)
        };
        // Frames due form a prefix of the range: find its end by bisection.
        let (mut lo, mut hi) = (range.start, range.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if is_due(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let newest_due = lo.checked_sub(1).filter(|&seq| seq >= range.start);
        if let Some(seq) = newest_due {
            if let Some(capture_ns) = held.capture_ns(seq) {
                if last_released_capture_ns.is_none_or(|last| capture_ns > last) {
                    return Release::Frame { seq, capture_ns };
                }
            }
        }
        // Nothing new is due. The first frame not yet due (if any) says when to look again.
        let next_due_ns = (lo < range.end)
            .then(|| held.capture_ns(lo))
            .flatten()
            .map(|c| c.saturating_add(self.delay_ns));
        let picture_still_since = last_released_capture_ns.map(|c| c.saturating_add(self.delay_ns));
        let stale = picture_still_since
            .is_none_or(|since| now_ns.saturating_sub(since) > self.gap_tolerance_ns);
        if stale {
            return match next_due_ns {
                Some(due) => Release::Countdown {
                    seconds_left: u32::try_from(due.saturating_sub(now_ns).div_ceil(1_000_000_000))
                        .unwrap_or(u32::MAX),
                },
                None => Release::AwaitingVideo,
            };
        }
        Release::Wait {
            until_ns: next_due_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;
    const FRAME: u64 = SECOND / 30;

    /// Held frames as a plain list of capture times; `lost` marks the oldest as recycled.
    struct List {
        first_seq: u64,
        captures: Vec<u64>,
        lost: bool,
    }

    impl HeldFrames for List {
        fn retained(&self) -> Range<u64> {
            self.first_seq..self.first_seq + self.captures.len() as u64
        }
        fn capture_ns(&self, seq: u64) -> Option<u64> {
            if self.lost && seq == self.first_seq {
                return None;
            }
            self.captures
                .get(seq.checked_sub(self.first_seq)? as usize)
                .copied()
        }
    }

    fn camera(first_seq: u64, start_ns: u64, frames: usize, interval: u64) -> List {
        List {
            first_seq,
            captures: (0..frames as u64)
                .map(|i| start_ns + i * interval)
                .collect(),
            lost: false,
        }
    }

    #[test]
    fn decisions_follow_capture_time_plus_delay() {
        let schedule = DelaySchedule::new(2 * SECOND, SECOND);
        let held = camera(100, 10 * SECOND, 90, FRAME); // 3 s of video from t = 10 s
        let cases: [(&str, u64, Option<u64>, Release); 6] = [
            (
                "before anything is due: countdown from the oldest",
                10 * SECOND,
                None,
                Release::Countdown { seconds_left: 2 },
            ),
            (
                "half a second before: rounds up",
                11 * SECOND + SECOND / 2,
                None,
                Release::Countdown { seconds_left: 1 },
            ),
            (
                "exactly due: the first frame",
                12 * SECOND,
                None,
                Release::Frame {
                    seq: 100,
                    capture_ns: 10 * SECOND,
                },
            ),
            (
                "one frame later: the second",
                12 * SECOND + FRAME,
                Some(10 * SECOND),
                Release::Frame {
                    seq: 101,
                    capture_ns: 10 * SECOND + FRAME,
                },
            ),
            (
                "already released: wait for the next",
                12 * SECOND + FRAME,
                Some(10 * SECOND + FRAME),
                Release::Wait {
                    until_ns: Some(12 * SECOND + 2 * FRAME),
                },
            ),
            (
                "far behind: skip to the newest due",
                13 * SECOND + 5 * FRAME,
                Some(10 * SECOND),
                Release::Frame {
                    seq: 135,
                    capture_ns: 10 * SECOND + 35 * FRAME,
                },
            ),
        ];
        for (what, now, last, expected) in cases {
            assert_eq!(schedule.decide(now, &held, last), expected, "{what}");
        }
    }

    #[test]
    fn a_drifting_camera_is_still_delayed_by_time_not_by_count() {
        // A camera configured for 30 fps that really delivers 25: the frame due after 2 s is
        // the one captured 2 s ago, whatever its number.
        let schedule = DelaySchedule::new(2 * SECOND, SECOND);
        let held = camera(0, 0, 200, SECOND / 25);
        let Release::Frame { seq, capture_ns } = schedule.decide(6 * SECOND, &held, None) else {
            panic!("a frame is due");
        };
        assert_eq!(capture_ns, 4 * SECOND);
        assert_eq!(seq, 100);
    }

    #[test]
    fn an_empty_buffer_waits_for_video_then_counts_down_the_whole_delay() {
        let schedule = DelaySchedule::new(30 * SECOND, SECOND);
        let held = camera(0, 0, 0, FRAME);
        assert_eq!(
            schedule.decide(5 * SECOND, &held, None),
            Release::AwaitingVideo
        );
        // The first frame arrives at 5 s: due at 35 s.
        let held = camera(0, 5 * SECOND, 1, FRAME);
        assert_eq!(
            schedule.decide(5 * SECOND + FRAME, &held, None),
            Release::Countdown { seconds_left: 30 }
        );
    }

    #[test]
    fn a_camera_away_after_the_held_video_ran_out_shows_the_waiting_card_not_a_countdown() {
        // Video until 10 s, then the camera unplugged: once the last frame is shown (at 12 s
        // with a 2 s delay) and the gap tolerance passed, nothing is still to come.
        let schedule = DelaySchedule::new(2 * SECOND, SECOND);
        let held = camera(0, 9 * SECOND, 30, FRAME);
        let last = Some(9 * SECOND + 29 * FRAME);
        assert!(matches!(
            schedule.decide(12 * SECOND, &held, last),
            Release::Wait { until_ns: None }
        ));
        for now in [13 * SECOND, 20 * SECOND, 600 * SECOND] {
            assert_eq!(
                schedule.decide(now, &held, last),
                Release::AwaitingVideo,
                "at {now} ns"
            );
        }
        // The camera is back at 30 s: a countdown to its first frame, due at 32 s.
        let mut held = held;
        held.captures
            .extend((0..30).map(|i| 30 * SECOND + i * FRAME));
        assert_eq!(
            schedule.decide(30 * SECOND + SECOND / 2, &held, last),
            Release::Countdown { seconds_left: 2 }
        );
    }

    #[test]
    fn a_long_gap_in_the_video_shows_the_countdown_instead_of_a_frozen_picture() {
        let schedule = DelaySchedule::new(2 * SECOND, SECOND);
        // Frames from 0..1 s, then the camera was away until 10 s.
        let mut held = camera(0, 0, 30, FRAME);
        held.captures
            .extend((0..30).map(|i| 10 * SECOND + i * FRAME));
        let last = Some(29 * FRAME);
        // Shortly after the last old frame: keep it (a short stall is not worth a card).
        let shortly = 2 * SECOND + 29 * FRAME + SECOND / 2;
        assert_eq!(
            schedule.decide(shortly, &held, last),
            Release::Wait {
                until_ns: Some(12 * SECOND)
            }
        );
        // Seconds later: the card, counting down to the new video.
        assert_eq!(
            schedule.decide(8 * SECOND + SECOND / 2, &held, last),
            Release::Countdown { seconds_left: 4 }
        );
    }

    #[test]
    fn a_gap_of_a_stage_restart_in_the_held_video_keeps_the_last_frame_until_video_resumes() {
        // What a capture killed and restarted by systemd leaves in the held video: frames up to
        // 100 s, then none for RestartSec (1 s) plus a slow start (1.8 s), then frames again.
        let schedule = DelaySchedule::new(4 * SECOND, GAP_TOLERANCE_NS);
        let resumed = 100 * SECOND + 2_800_000_000;
        let mut held = camera(0, 97 * SECOND, 91, FRAME); // 97 s ..= 100 s
        held.captures.extend((0..30).map(|i| resumed + i * FRAME));
        let last = Some(100 * SECOND);
        // Throughout the gap, as it comes out of the delay: nothing to release, no card; the
        // screen keeps the frame captured at 100 s.
        let mut now = 104 * SECOND + FRAME;
        while now < resumed + 4 * SECOND {
            assert_eq!(
                schedule.decide(now, &held, last),
                Release::Wait {
                    until_ns: Some(resumed + 4 * SECOND)
                },
                "{} ms into the gap",
                (now - 104 * SECOND) / 1_000_000
            );
            now += FRAME / 2;
        }
        // Then the first frame after the gap, on time.
        assert_eq!(
            schedule.decide(resumed + 4 * SECOND, &held, last),
            Release::Frame {
                seq: 91,
                capture_ns: resumed
            }
        );
        // A gap longer than the tolerance (the camera really away) still gets the card.
        let away = 100 * SECOND + GAP_TOLERANCE_NS + SECOND;
        let mut held = camera(0, 97 * SECOND, 91, FRAME);
        held.captures.push(away);
        assert!(matches!(
            schedule.decide(104 * SECOND + GAP_TOLERANCE_NS + SECOND / 2, &held, last),
            Release::Countdown { .. }
        ));
    }

    #[test]
    fn a_restarted_buffer_continues_after_the_frame_released_last() {
        let schedule = DelaySchedule::new(2 * SECOND, SECOND);
        let held = camera(5000, 100 * SECOND, 300, FRAME);
        let last = Some(100 * SECOND + 40 * FRAME);
        // Restarted 3 frames later: the newest due is released, nothing before it again.
        assert_eq!(
            schedule.decide(102 * SECOND + 43 * FRAME, &held, last),
            Release::Frame {
                seq: 5043,
                capture_ns: 100 * SECOND + 43 * FRAME
            }
        );
    }

    #[test]
    fn a_recycled_oldest_slot_counts_as_due_but_is_not_released() {
        let schedule = DelaySchedule::new(0, SECOND);
        let mut held = camera(0, 0, 1, FRAME);
        held.lost = true;
        assert_eq!(schedule.decide(SECOND, &held, None), Release::AwaitingVideo);
    }

    #[test]
    fn pass_through_releases_each_frame_at_once() {
        let schedule = DelaySchedule::new(0, SECOND);
        let held = camera(7, SECOND, 3, FRAME);
        assert_eq!(
            schedule.decide(SECOND + 2 * FRAME, &held, Some(SECOND + FRAME)),
            Release::Frame {
                seq: 9,
                capture_ns: SECOND + 2 * FRAME
            }
        );
    }
}
