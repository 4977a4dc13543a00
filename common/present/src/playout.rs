//! Playout timing: when a received frame goes on screen.
//!
//! Payloads arrive in sequence order from net-rx, a frame's payloads spread over a few
//! milliseconds (pacing) and jittered by the network. The queue holds each frame until
//! `delay` after its first payload arrived, then hands it out whole, so the screen never shows
//! half of one frame's blocks over the last. A frame whose remaining payloads were lost is
//! released anyway once a newer frame has started or a frame interval of grace has passed: the
//! blocks it would have refreshed stay stale, which is the installation's glitch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keymash_codec::payload::HeaderError;
use keymash_codec::PayloadHeader;
use keymash_core::FrameNo;

/// Frames held at most; more means the display is not keeping up, and the oldest are dropped.
pub const MAX_PENDING_FRAMES: usize = 64;
/// A frame number this far below the last shown one means the sender started over (its frame
/// numbers restarted), not a late packet: follow the new stream.
pub const RESTART_GAP_FRAMES: u64 = 300;

/// A payload the queue could not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("payload header: {0}")]
    Header(#[from] HeaderError),
    #[error("payload of frame {frame} arrived after frame {shown} was shown (late)")]
    Late { frame: FrameNo, shown: FrameNo },
}

/// What the queue counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayoutStats {
    pub frames_released: u64,
    /// Frames released with payloads missing (the glitch).
    pub frames_incomplete: u64,
    pub payloads_late: u64,
    /// Frames dropped unshown because the queue was full.
    pub frames_overflowed: u64,
    pub stream_restarts: u64,
}

#[derive(Debug)]
struct PendingFrame {
    first_arrival: Instant,
    payload_count: u16,
    payloads: Vec<Vec<u8>>,
}

/// A frame ready to be decoded and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedFrame {
    pub frame: FrameNo,
    pub first_arrival: Instant,
    /// The payloads that arrived, in arrival order.
    pub payloads: Vec<Vec<u8>>,
    /// How many the frame was sent as.
    pub payload_count: u16,
}

impl ReleasedFrame {
    pub fn is_complete(&self) -> bool {
        self.payloads.len() >= usize::from(self.payload_count)
    }
}

/// Received payloads grouped by frame, released after the playout delay.
#[derive(Debug)]
pub struct PlayoutQueue {
    delay: Duration,
    grace: Duration,
    pending: BTreeMap<FrameNo, PendingFrame>,
    last_released: Option<FrameNo>,
    stats: PlayoutStats,
}

impl PlayoutQueue {
    /// `delay` is `display.playout_delay_ms`; `frame_interval` (1 / video.fps) is how long a
    /// frame waits for stragglers when no newer frame has begun.
    pub fn new(delay: Duration, frame_interval: Duration) -> Self {
        PlayoutQueue {
            delay,
            grace: frame_interval,
            pending: BTreeMap::new(),
            last_released: None,
            stats: PlayoutStats::default(),
        }
    }

    pub fn stats(&self) -> PlayoutStats {
        self.stats
    }

    /// Frames waiting.
    pub fn pending_frames(&self) -> usize {
        self.pending.len()
    }

    /// Forgets which frame was shown last, so the next frame is taken whatever its number.
    ///
    /// For a signal lost: a sender that comes back may have started its frame numbers over (a
    /// rebooted PC, its shared memory gone) less than [`RESTART_GAP_FRAMES`] below the last one
    /// shown, and its frames would be refused as late until its numbers passed the old ones,
    /// a stall of up to ten seconds after the silence.
    pub fn forget_shown(&mut self) {
        self.last_released = None;
    }

    /// A payload arrived at `now`.
    pub fn push(&mut self, now: Instant, payload: Vec<u8>) -> Result<FrameNo, PushError> {
        let header = PayloadHeader::parse(&payload)?;
        let frame = header.frame_no;
        if let Some(shown) = self.last_released {
            if frame.0.saturating_add(RESTART_GAP_FRAMES) < shown.0 {
                self.stats.stream_restarts += 1;
                self.pending.clear();
                self.last_released = None;
            } else if frame <= shown {
                self.stats.payloads_late += 1;
                return Err(PushError::Late { frame, shown });
            }
        }
        let entry = self.pending.entry(frame).or_insert_with(|| PendingFrame {
            first_arrival: now,
            payload_count: header.payload_count,
            payloads: Vec::with_capacity(usize::from(header.payload_count)),
        });
        entry.payloads.push(payload);
        while self.pending.len() > MAX_PENDING_FRAMES {
            if let Some((oldest, _)) = self.pending.pop_first() {
                self.stats.frames_overflowed += 1;
                self.last_released = Some(oldest);
            }
        }
        Ok(frame)
    }

    /// The oldest frame, if it is due at `now`: its delay has passed and it is complete, a newer
    /// frame has begun, or it has waited a frame interval beyond its delay.
    pub fn pop_due(&mut self, now: Instant) -> Option<ReleasedFrame> {
        let newer_exists = self.pending.len() > 1;
        let (&frame, oldest) = self.pending.first_key_value()?;
        let due_at = oldest.first_arrival + self.delay;
        if now < due_at {
            return None;
        }
        let complete = oldest.payloads.len() >= usize::from(oldest.payload_count);
        if !(complete || newer_exists || now >= due_at + self.grace) {
            return None;
        }
        let (_, pending) = self.pending.pop_first()?;
        self.stats.frames_released += 1;
        if !complete {
            self.stats.frames_incomplete += 1;
        }
        self.last_released = Some(frame);
        Some(ReleasedFrame {
            frame,
            first_arrival: pending.first_arrival,
            payloads: pending.payloads,
            payload_count: pending.payload_count,
        })
    }

    /// When [`PlayoutQueue::pop_due`] may next have a frame (for sleeping).
    pub fn next_due(&self) -> Option<Instant> {
        self.pending
            .first_key_value()
            .map(|(_, f)| f.first_arrival + self.delay)
    }
}

/// Ticks at the stream's frame rate. A late tick (the process was descheduled) is not caught
/// up in a burst: the clock skips to the next tick in the future.
#[derive(Debug, Clone, Copy)]
pub struct PresentClock {
    interval: Duration,
    next: Instant,
    skipped: u64,
}

impl PresentClock {
    pub fn new(fps: u32, start: Instant) -> Self {
        PresentClock {
            interval: frame_interval(fps),
            next: start,
            skipped: 0,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The next tick.
    pub fn next_tick(&self) -> Instant {
        self.next
    }

    /// Ticks missed so far (presentations that could not happen on time).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// True if a tick is due at `now`; the clock then moves to the following one.
    pub fn tick(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next += self.interval;
        while self.next <= now {
            self.next += self.interval;
            self.skipped += 1;
        }
        true
    }
}

/// 1 / fps (fps 0 is treated as 1: the configuration refuses it anyway).
pub fn frame_interval(fps: u32) -> Duration {
    Duration::from_nanos(1_000_000_000 / u64::from(fps.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymash_codec::{
        Encoder, EncoderConfig, FrameGeometry, I420Frame, PayloadSink, QualitySpec,
    };
    use keymash_core::Quality;

    fn payloads_of(frame: u64, count_at_least: usize) -> Vec<Vec<u8>> {
        let geometry = FrameGeometry::new(128, 96).unwrap();
        let mut config = EncoderConfig::new(geometry);
        config.max_payload = 200;
        let mut encoder = Encoder::new(config).unwrap();
        let mut sink = PayloadSink::new();
        let picture = I420Frame::grey(geometry);
        encoder
            .encode(
                FrameNo(frame),
                picture.view(),
                QualitySpec::Uniform(Quality::new(90).unwrap()),
                &mut sink,
            )
            .unwrap();
        let out: Vec<Vec<u8>> = sink.iter().map(<[u8]>::to_vec).collect();
        assert!(
            out.len() >= count_at_least,
            "test frame needs {count_at_least} payloads, got {}",
            out.len()
        );
        out
    }

    const DELAY: Duration = Duration::from_millis(100);
    const INTERVAL: Duration = Duration::from_millis(33);

    #[test]
    fn a_complete_frame_is_released_exactly_after_the_playout_delay() {
        let t0 = Instant::now();
        let mut q = PlayoutQueue::new(DELAY, INTERVAL);
        let payloads = payloads_of(1, 2);
        for (i, p) in payloads.iter().enumerate() {
            q.push(t0 + Duration::from_millis(i as u64), p.clone())
                .unwrap();
        }
        assert_eq!(q.pop_due(t0 + DELAY - Duration::from_millis(1)), None);
        let released = q.pop_due(t0 + DELAY).unwrap();
        assert!(released.is_complete());
        assert_eq!(released.payloads.len(), payloads.len());
        assert_eq!(q.pending_frames(), 0);
    }

    #[test]
    fn an_incomplete_frame_waits_for_a_newer_frame_or_a_frame_interval() {
        let t0 = Instant::now();
        let table = [
            // (newer frame arrives, release time after t0 + DELAY)
            (true, Duration::ZERO),
            (false, INTERVAL),
        ];
        for (newer, release_after) in table {
            let mut q = PlayoutQueue::new(DELAY, INTERVAL);
            let first = payloads_of(1, 2);
            q.push(t0, first[0].clone()).unwrap();
            if newer {
                q.push(t0 + Duration::from_millis(5), payloads_of(2, 1)[0].clone())
                    .unwrap();
            }
            let release = t0 + DELAY + release_after;
            if release_after > Duration::ZERO {
                assert_eq!(
                    q.pop_due(release - Duration::from_millis(1)),
                    None,
                    "newer={newer}"
                );
            }
            let frame = q.pop_due(release).unwrap();
            assert_eq!(frame.frame, FrameNo(1));
            assert!(!frame.is_complete());
            assert_eq!(q.stats().frames_incomplete, 1);
        }
    }

    #[test]
    fn after_forget_shown_a_sender_numbering_from_a_little_lower_is_followed() {
        let t0 = Instant::now();
        let mut q = PlayoutQueue::new(DELAY, INTERVAL);
        for p in payloads_of(100, 1) {
            q.push(t0, p).expect("push");
        }
        assert!(q.pop_due(t0 + DELAY).is_some());
        // A sender that started over at 20: within RESTART_GAP_FRAMES, so late...
        let restarted = payloads_of(20, 1);
        assert!(matches!(
            q.push(t0 + DELAY, restarted[0].clone()),
            Err(PushError::Late { .. })
        ));
        // ...until the display, having lost the signal, forgets what it showed.
        q.forget_shown();
        let t1 = t0 + 2 * DELAY;
        for p in restarted {
            q.push(t1, p).expect("push after forget");
        }
        assert_eq!(q.pop_due(t1 + DELAY).map(|f| f.frame), Some(FrameNo(20)));
    }

    #[test]
    fn payloads_of_a_frame_already_shown_are_refused_as_late() {
        let t0 = Instant::now();
        let mut q = PlayoutQueue::new(DELAY, INTERVAL);
        let f1 = payloads_of(1, 2);
        q.push(t0, f1[0].clone()).unwrap();
        q.push(t0, payloads_of(2, 1)[0].clone()).unwrap();
        q.pop_due(t0 + DELAY).unwrap();
        assert!(matches!(
            q.push(t0 + DELAY, f1[1].clone()),
            Err(PushError::Late { .. })
        ));
        assert_eq!(q.stats().payloads_late, 1);
    }

    #[test]
    fn a_restarted_sender_with_low_frame_numbers_is_followed() {
        let t0 = Instant::now();
        let mut q = PlayoutQueue::new(DELAY, INTERVAL);
        q.push(t0, payloads_of(10_000, 1)[0].clone()).unwrap();
        q.pop_due(t0 + DELAY + INTERVAL).unwrap();
        assert_eq!(
            q.push(t0 + DELAY, payloads_of(3, 1)[0].clone()),
            Ok(FrameNo(3))
        );
        assert_eq!(q.stats().stream_restarts, 1);
    }

    #[test]
    fn garbage_is_refused_with_the_header_error() {
        let mut q = PlayoutQueue::new(DELAY, INTERVAL);
        assert!(matches!(
            q.push(Instant::now(), vec![1, 2, 3]),
            Err(PushError::Header(_))
        ));
    }

    #[test]
    fn the_present_clock_ticks_at_the_frame_rate_and_skips_missed_ticks() {
        let t0 = Instant::now();
        let mut clock = PresentClock::new(25, t0);
        assert_eq!(clock.interval(), Duration::from_millis(40));
        assert!(clock.tick(t0));
        assert!(!clock.tick(t0 + Duration::from_millis(39)));
        assert!(clock.tick(t0 + Duration::from_millis(40)));
        // The tick due at 80 ms comes at 210 ms: shown once, those at 120, 160 and 200 skipped.
        assert!(clock.tick(t0 + Duration::from_millis(210)));
        assert_eq!(clock.skipped(), 3);
        assert_eq!(clock.next_tick(), t0 + Duration::from_millis(240));
    }
}
