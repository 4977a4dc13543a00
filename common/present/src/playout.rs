//! Playout timing: when a received frame goes on screen.
//!
//! Payloads arrive in sequence order from net-rx, a frame's payloads spread over a millisecond
//! or two (pacing) and jittered by the network. A frame is held until its play time, then
//! handed out whole, so the screen never shows half of one frame's blocks over the last.
//!
//! The play time follows the network instead of a fixed delay: each frame's RTP timestamp
//! says when the sender captured it, so `transit` = (when it became whole here) - (its
//! timestamp) is its trip time plus a constant unknown offset (the two clocks). Over the last
//! [`JITTER_WINDOW_FRAMES`] whole frames (of the last [`JITTER_WINDOW_MAX_AGE`]) the fastest
//! transit is the base, and the hold is the 95th percentile of how much later than the base
//! frames became whole (their jitter: encode time, pacing, the network), bounded by
//! `display.playout_min_ms` and `playout_max_ms`. A frame plays at its timestamp + the base +
//! the hold, so frames leave at the sender's pace with as little added wait as the jitter
//! allows: a few milliseconds on a quiet LAN. A frame that becomes whole after its play time
//! is shown at once.
//!
//! Arrival times are the kernel's receive timestamps (net-rx passes them on), so a frame held
//! in net-rx behind an earlier frame's lost packet does not count as late; a frame completed by
//! FEC or a retransmission counts as whole when its recovered payload arrived, so with NACK on
//! the hold grows to cover a retransmission's round trip (within the maximum) and frames are
//! shown whole.
//!
//! A frame whose remaining payloads were lost is released at its play time once its last
//! payload or a newer frame has come (net-rx delivers in sequence order, so none of its
//! missing payloads can still come), or a frame interval after it if neither comes (its tail
//! was lost: only the next frame tells): the blocks it would have refreshed stay stale, which
//! is the installation's glitch.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use keymash_codec::payload::HeaderError;
use keymash_codec::PayloadHeader;
use keymash_core::FrameNo;

use crate::camera_latency::FrameAge;

/// Frames held at most; more means the display is not keeping up, and the oldest are dropped.
pub const MAX_PENDING_FRAMES: usize = 64;
/// A frame number this far below the last shown one means the sender started over (its frame
/// numbers restarted), not a late packet: follow the new stream.
pub const RESTART_GAP_FRAMES: u64 = 300;
/// Whole frames the base transit and the jitter are measured over: 3 s at 30 fps, long enough
/// for a steady figure, short enough to follow a network that changes.
pub const JITTER_WINDOW_FRAMES: usize = 90;
/// A measurement older than this is forgotten even when few frames come whole (heavy loss):
/// the hold then falls back to the minimum rather than keep an old network's jitter.
pub const JITTER_WINDOW_MAX_AGE: Duration = Duration::from_secs(10);
/// The share of frames the hold covers: the rest become whole after their play time and are
/// shown at once (a little early-to-late wobble, never a wait).
const HOLD_QUANTILE: f64 = 0.95;
/// A transit this far from the base is a new time line (a restarted sender's new timestamps,
/// a stalled machine), not jitter: the measurement starts over.
const TRANSIT_RESET: Duration = Duration::from_secs(2);
/// RTP video timestamps tick at 90 kHz.
const RTP_CLOCK_HZ: i64 = 90_000;

/// The least and most a frame is held for jitter (`display.playout_min_ms`, `playout_max_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayoutBounds {
    pub min: Duration,
    pub max: Duration,
}

impl PlayoutBounds {
    /// A fixed hold (`min` = `max`).
    pub fn fixed(hold: Duration) -> Self {
        PlayoutBounds {
            min: hold,
            max: hold,
        }
    }

    pub fn from_ms(min_ms: u32, max_ms: u32) -> Self {
        let ms = |v: u32| Duration::from_millis(u64::from(v));
        PlayoutBounds {
            min: ms(min_ms.min(max_ms)),
            max: ms(max_ms),
        }
    }

    fn clamp(&self, d: Duration) -> Duration {
        d.clamp(self.min, self.max)
    }
}

/// What net-rx says about a payload besides its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PayloadTiming {
    /// The packet's 90 kHz RTP timestamp (the sender's capture time of the frame).
    pub rtp_timestamp: Option<u32>,
    /// The sender's account of the frame's age (its RTP header extension), if it came
    /// directly; of a frame's payloads the earliest capture estimate is kept
    /// ([`FrameAge::or_earlier`]).
    pub age: Option<FrameAge>,
}

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
    /// Whole frames that became whole after their play time (shown at once, late).
    pub frames_after_play_time: u64,
    pub payloads_late: u64,
    /// Frames dropped unshown because the queue was full.
    pub frames_overflowed: u64,
    pub stream_restarts: u64,
}

/// The sender's time line against this PC's: unwraps RTP timestamps and keeps the transits of
/// the last whole frames.
#[derive(Debug)]
struct Transits {
    /// Local times are nanoseconds after this.
    anchor: Instant,
    /// The last timestamp seen and its unwrapped value in 90 kHz ticks.
    last: Option<(u32, i64)>,
    /// (when it was measured, transit: local nanoseconds minus sender nanoseconds) of the last
    /// whole frames.
    window: VecDeque<(Instant, i64)>,
    /// The fastest transit in `window`, and the hold its spread asks for.
    base: Option<i64>,
    hold: Duration,
}

impl Transits {
    fn new(anchor: Instant, bounds: PlayoutBounds) -> Self {
        Transits {
            anchor,
            last: None,
            window: VecDeque::with_capacity(JITTER_WINDOW_FRAMES),
            base: None,
            hold: bounds.min,
        }
    }

    /// The sender's capture time of a frame stamped `timestamp`, in nanoseconds of its own
    /// (arbitrary) time line, unwrapped from the last timestamp seen.
    fn sender_ns(&mut self, timestamp: u32) -> i64 {
        let ticks = match self.last {
            // Frames arrive in order, so the step is small either way; a wrap of the 32 bits is
            // a small step too.
            Some((raw, ticks)) => ticks + i64::from(timestamp.wrapping_sub(raw) as i32),
            None => 0,
        };
        self.last = Some((timestamp, ticks));
        ticks * 1_000_000_000 / RTP_CLOCK_HZ
    }

    fn local_ns(&self, t: Instant) -> i64 {
        let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        match t.checked_duration_since(self.anchor) {
            Some(after) => ns(after),
            None => -ns(self.anchor.duration_since(t)),
        }
    }

    fn local_instant(&self, ns: i64) -> Instant {
        let d = Duration::from_nanos(ns.unsigned_abs());
        if ns >= 0 {
            self.anchor + d
        } else {
            self.anchor.checked_sub(d).unwrap_or(self.anchor)
        }
    }

    /// A frame captured at `sender_ns` became whole at `whole`: one more transit.
    fn record(&mut self, sender_ns: i64, whole: Instant, bounds: PlayoutBounds) {
        let transit = self.local_ns(whole) - sender_ns;
        let reset = TRANSIT_RESET.as_nanos() as i64;
        if self.base.is_some_and(|base| (transit - base).abs() > reset) {
            self.window.clear();
        }
        if self.window.len() == JITTER_WINDOW_FRAMES {
            self.window.pop_front();
        }
        self.window.push_back((whole, transit));
        self.update(bounds);
    }

    /// Forgets measurements older than [`JITTER_WINDOW_MAX_AGE`] at `now`.
    fn expire(&mut self, now: Instant, bounds: PlayoutBounds) {
        let before = self.window.len();
        while self
            .window
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > JITTER_WINDOW_MAX_AGE)
        {
            self.window.pop_front();
        }
        if self.window.len() != before {
            self.update(bounds);
        }
    }

    /// The base and the hold from the window.
    fn update(&mut self, bounds: PlayoutBounds) {
        let Some(base) = self.window.iter().map(|(_, t)| *t).min() else {
            self.base = None;
            self.hold = bounds.min;
            return;
        };
        let mut excess: Vec<i64> = self.window.iter().map(|(_, t)| t - base).collect();
        excess.sort_unstable();
        let at = ((excess.len() - 1) as f64 * HOLD_QUANTILE).round() as usize;
        let jitter = Duration::from_nanos(u64::try_from(excess[at]).unwrap_or(0));
        self.base = Some(base);
        self.hold = bounds.clamp(jitter);
    }

    /// The play time of a frame captured at `sender_ns`, once a transit is known.
    fn play_time(&self, sender_ns: i64) -> Option<Instant> {
        let base = self.base?;
        let hold = i64::try_from(self.hold.as_nanos()).unwrap_or(i64::MAX);
        Some(self.local_instant(sender_ns.saturating_add(base).saturating_add(hold)))
    }

    /// Forgets the time line (a new stream, or the same after a silence): the hold starts over
    /// at the least.
    fn restart(&mut self, bounds: PlayoutBounds) {
        self.last = None;
        self.window.clear();
        self.base = None;
        self.hold = bounds.min;
    }
}

#[derive(Debug)]
struct PendingFrame {
    first_arrival: Instant,
    last_arrival: Instant,
    /// The sender's capture time, from the RTP timestamp (see [`Transits`]).
    sender_ns: Option<i64>,
    /// The sender's account of its age, the earliest any payload gave.
    age: Option<FrameAge>,
    payload_count: u16,
    payloads: Vec<Vec<u8>>,
    /// Its last payload (index `payload_count - 1`) came: payloads come in order, so any still
    /// missing were lost.
    has_last: bool,
}

impl PendingFrame {
    fn is_complete(&self) -> bool {
        self.payloads.len() >= usize::from(self.payload_count)
    }
}

/// A frame ready to be decoded and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedFrame {
    pub frame: FrameNo,
    pub first_arrival: Instant,
    /// When its last payload (of those that came) arrived: the hold counts from here.
    pub last_arrival: Instant,
    /// The sender's account of its age, if any of its payloads carried one.
    pub age: Option<FrameAge>,
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

/// Received payloads grouped by frame, released at their play time.
#[derive(Debug)]
pub struct PlayoutQueue {
    bounds: PlayoutBounds,
    grace: Duration,
    pending: BTreeMap<FrameNo, PendingFrame>,
    transits: Transits,
    last_released: Option<FrameNo>,
    stats: PlayoutStats,
}

impl PlayoutQueue {
    /// `bounds` are `display.playout_min_ms`/`playout_max_ms`; `frame_interval` (1 / video.fps)
    /// is how long an incomplete frame waits for stragglers when no newer frame has begun.
    pub fn new(bounds: PlayoutBounds, frame_interval: Duration) -> Self {
        PlayoutQueue {
            bounds,
            grace: frame_interval,
            pending: BTreeMap::new(),
            transits: Transits::new(Instant::now(), bounds),
            last_released: None,
            stats: PlayoutStats::default(),
        }
    }

    pub fn stats(&self) -> PlayoutStats {
        self.stats
    }

    /// The hold the measured jitter asks for now, within the bounds.
    pub fn hold(&self) -> Duration {
        self.transits.hold
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
    /// a stall of up to ten seconds after the silence. Its timestamps start over too.
    pub fn forget_shown(&mut self) {
        self.last_released = None;
        self.transits.restart(self.bounds);
    }

    /// A payload with no RTP timestamp arrived at `now`: its frame plays the least hold after
    /// its first payload.
    pub fn push(&mut self, now: Instant, payload: Vec<u8>) -> Result<FrameNo, PushError> {
        self.push_timed(now, payload, PayloadTiming::default())
    }

    /// A payload arrived at `now`, with its packet's RTP timestamp (the same for every payload
    /// of a frame) if net-rx passed it on, and the sender's account of its age.
    pub fn push_timed(
        &mut self,
        now: Instant,
        payload: Vec<u8>,
        timing: PayloadTiming,
    ) -> Result<FrameNo, PushError> {
        let header = PayloadHeader::parse(&payload)?;
        let frame = header.frame_no;
        if let Some(shown) = self.last_released {
            if frame.0.saturating_add(RESTART_GAP_FRAMES) < shown.0 {
                self.stats.stream_restarts += 1;
                self.pending.clear();
                self.last_released = None;
                self.transits.restart(self.bounds);
            } else if frame <= shown {
                self.stats.payloads_late += 1;
                return Err(PushError::Late { frame, shown });
            }
        }
        self.transits.expire(now, self.bounds);
        let transits = &mut self.transits;
        let entry = self.pending.entry(frame).or_insert_with(|| PendingFrame {
            first_arrival: now,
            last_arrival: now,
            sender_ns: timing.rtp_timestamp.map(|ts| transits.sender_ns(ts)),
            age: None,
            payload_count: header.payload_count,
            payloads: Vec::with_capacity(usize::from(header.payload_count)),
            has_last: false,
        });
        let was_complete = entry.is_complete();
        entry.payloads.push(payload);
        entry.last_arrival = now;
        entry.has_last |= header.payload_index.saturating_add(1) >= header.payload_count;
        if !was_complete && entry.is_complete() {
            if let Some(sender_ns) = entry.sender_ns {
                self.transits.record(sender_ns, now, self.bounds);
            }
        }
        if let Some(age) = timing.age {
            entry.age = Some(age.or_earlier(entry.age));
        }
        while self.pending.len() > MAX_PENDING_FRAMES {
            if let Some((oldest, _)) = self.pending.pop_first() {
                self.stats.frames_overflowed += 1;
                self.last_released = Some(oldest);
            }
        }
        Ok(frame)
    }

    /// When `frame` plays: its timestamp on this PC's time line plus the hold, or, before any
    /// transit is known or without a timestamp, its first arrival plus the hold.
    fn play_time(&self, frame: &PendingFrame) -> Instant {
        frame
            .sender_ns
            .and_then(|ns| self.transits.play_time(ns))
            .unwrap_or(frame.first_arrival + self.transits.hold)
    }

    /// When the oldest frame is due: at its play time once it is whole or a newer frame has
    /// begun (one that became whole after its play time is due at once), else a frame interval
    /// of grace after its play time or its last payload, whichever is later: a late frame
    /// whose payloads are still coming is not cut off after its first.
    fn oldest_due(&self) -> Option<Instant> {
        let (_, oldest) = self.pending.first_key_value()?;
        let play = self.play_time(oldest);
        let final_ = oldest.is_complete() || oldest.has_last || self.pending.len() > 1;
        Some(if final_ {
            play
        } else {
            play.max(oldest.last_arrival) + self.grace
        })
    }

    /// The oldest frame, if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<ReleasedFrame> {
        let due = self.oldest_due()?;
        if now < due {
            return None;
        }
        let (frame, pending) = self.pending.pop_first()?;
        let complete = pending.is_complete();
        self.stats.frames_released += 1;
        if !complete {
            self.stats.frames_incomplete += 1;
        } else if pending.last_arrival > due {
            self.stats.frames_after_play_time += 1;
        }
        self.last_released = Some(frame);
        Some(ReleasedFrame {
            frame,
            first_arrival: pending.first_arrival,
            last_arrival: pending.last_arrival,
            age: pending.age,
            payloads: pending.payloads,
            payload_count: pending.payload_count,
        })
    }

    /// When [`PlayoutQueue::pop_due`] may next have a frame (for sleeping).
    pub fn next_due(&self) -> Option<Instant> {
        self.oldest_due()
    }
}

/// When the picture is presented again with no new frame: a frame interval after the last
/// presentation, so the glow follows the mash level and the signal-lost card shows while no
/// frame comes. Frames themselves are presented when due, whatever this clock says. A late
/// tick (the process was descheduled) is not caught up in a burst: the clock skips to the next
/// tick in the future.
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

    /// A frame was presented at `now`: the next tick is a frame interval later.
    pub fn presented(&mut self, now: Instant) {
        self.next = now + self.interval;
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
        let mut q = PlayoutQueue::new(PlayoutBounds::fixed(DELAY), INTERVAL);
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
    fn a_released_frame_keeps_its_earliest_capture_estimate() {
        let t0 = Instant::now() + Duration::from_secs(60);
        let mut q = PlayoutQueue::new(PlayoutBounds::fixed(DELAY), INTERVAL);
        let payloads = payloads_of(1, 3);
        let age = |ms: u64| FrameAge {
            captured: t0 - Duration::from_millis(ms),
            age_at_send: Duration::from_millis(ms),
        };
        // Unaged (FEC-rebuilt), then two aged, the second estimate earlier than the first.
        q.push(t0, payloads[0].clone()).unwrap();
        let aged = |ms| PayloadTiming {
            age: Some(age(ms)),
            ..PayloadTiming::default()
        };
        q.push_timed(t0, payloads[1].clone(), aged(30)).unwrap();
        q.push_timed(t0, payloads[2].clone(), aged(31)).unwrap();
        for p in &payloads[3..] {
            q.push(t0, p.clone()).unwrap();
        }
        let released = q.pop_due(t0 + DELAY).unwrap();
        assert_eq!(released.age, Some(age(31)));
        // A frame none of whose payloads said its age has none.
        for p in payloads_of(2, 1) {
            q.push(t0, p).unwrap();
        }
        assert_eq!(q.pop_due(t0 + DELAY).unwrap().age, None);
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
            let mut q = PlayoutQueue::new(PlayoutBounds::fixed(DELAY), INTERVAL);
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
        let mut q = PlayoutQueue::new(PlayoutBounds::fixed(DELAY), INTERVAL);
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
        let mut q = PlayoutQueue::new(PlayoutBounds::fixed(DELAY), INTERVAL);
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
        let mut q = PlayoutQueue::new(PlayoutBounds::fixed(DELAY), INTERVAL);
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
        let mut q = PlayoutQueue::new(PlayoutBounds::fixed(DELAY), INTERVAL);
        assert!(matches!(
            q.push(Instant::now(), vec![1, 2, 3]),
            Err(PushError::Header(_))
        ));
    }

    fn timed(rtp_timestamp: u32) -> PayloadTiming {
        PayloadTiming {
            rtp_timestamp: Some(rtp_timestamp),
            ..PayloadTiming::default()
        }
    }

    /// 90 kHz ticks of one frame at 30 fps.
    const TICKS_PER_FRAME: u32 = 3_000;
    const FRAME: Duration = Duration::from_nanos(33_333_333);

    /// Plays `frames` frames, frame `i` captured at `i` frame intervals with timestamp
    /// `first_ts + i * 3000`, its payloads arriving 1 ms apart and the last at `whole(i)` after
    /// its capture, but in order as net-rx delivers them (a late one holds up those after it);
    /// pops every frame at its due time. Returns, per frame, when it became whole and when it
    /// was released (after `t0`).
    fn play(
        q: &mut PlayoutQueue,
        frames: u64,
        first_ts: u32,
        whole: impl Fn(u64) -> Duration,
    ) -> Vec<(Duration, Duration)> {
        let t0 = Instant::now();
        let mut arrivals: Vec<(Instant, u64, Vec<u8>)> = Vec::new();
        let mut previous = t0;
        for i in 0..frames {
            let payloads = payloads_of(i + 1, 2);
            let n = payloads.len() as u32;
            let last = t0 + FRAME * i as u32 + whole(i);
            for (k, p) in payloads.into_iter().enumerate() {
                let at = (last - Duration::from_millis(1) * (n - 1 - k as u32)).max(previous);
                previous = at;
                arrivals.push((at, i, p));
            }
        }
        let mut whole_at = vec![Duration::ZERO; frames as usize];
        let mut released = vec![Duration::MAX; frames as usize];
        let mut record = |f: ReleasedFrame, at: Instant| {
            released[(f.frame.0 - 1) as usize] = at - t0;
        };
        // The display's clock: never before the last arrival it saw.
        let mut now = t0;
        for (at, i, p) in arrivals {
            while let Some(due) = q.next_due().map(|d| d.max(now)).filter(|&d| d <= at) {
                let f = q.pop_due(due).expect("due");
                record(f, due);
            }
            now = at;
            whole_at[i as usize] = at - t0;
            let ts = first_ts.wrapping_add(TICKS_PER_FRAME * i as u32);
            q.push_timed(at, p, timed(ts)).expect("push");
        }
        while let Some(due) = q.next_due().map(|d| d.max(now)) {
            let f = q.pop_due(due).expect("due");
            record(f, due);
        }
        whole_at.into_iter().zip(released).collect()
    }

    #[test]
    fn on_a_quiet_network_the_hold_falls_to_the_minimum() {
        let bounds = PlayoutBounds::from_ms(2, 100);
        let mut q = PlayoutQueue::new(bounds, INTERVAL);
        // Whole 5 ms after capture, give or take 0.4 ms.
        let times = play(&mut q, 120, 7, |i| {
            Duration::from_micros(5_000 + (i * 37 % 9) * 50)
        });
        assert_eq!(q.hold(), Duration::from_millis(2));
        for (i, (whole, released)) in times.iter().enumerate().skip(10) {
            let held = released.saturating_sub(*whole);
            assert!(
                held <= Duration::from_millis(2),
                "frame {i}: held {held:?} after it was whole"
            );
        }
        assert_eq!(q.stats().frames_incomplete, 0);
    }

    #[test]
    fn the_hold_grows_with_the_jitter_and_frames_leave_at_the_senders_pace() {
        let bounds = PlayoutBounds::from_ms(2, 100);
        let mut q = PlayoutQueue::new(bounds, INTERVAL);
        // One frame in four is 20 ms late.
        let jitter = |i: u64| Duration::from_millis(if i % 4 == 3 { 25 } else { 5 });
        let times = play(&mut q, 180, 0, jitter);
        let hold = q.hold();
        assert!(
            (Duration::from_millis(19)..=Duration::from_millis(21)).contains(&hold),
            "hold {hold:?} for 20 ms of jitter"
        );
        // Once the window holds a late frame, every frame leaves one sender interval after
        // the one before: the jitter is gone from the screen.
        let steady: Vec<Duration> = times[100..].iter().map(|t| t.1).collect();
        for pair in steady.windows(2) {
            let step = pair[1] - pair[0];
            assert!(
                step.abs_diff(FRAME) < Duration::from_micros(2),
                "frames released {step:?} apart"
            );
        }
    }

    #[test]
    fn a_frame_missing_a_middle_payload_plays_on_time_once_its_last_has_come() {
        let t0 = Instant::now();
        let mut q = PlayoutQueue::new(PlayoutBounds::fixed(DELAY), INTERVAL);
        let payloads = payloads_of(1, 3);
        // The second payload lost: net-rx delivers in order, so once the last is here the
        // frame can get nothing more and needs no grace.
        for (i, p) in payloads.iter().enumerate().filter(|(i, _)| *i != 1) {
            q.push(t0 + Duration::from_millis(i as u64), p.clone())
                .expect("push");
        }
        let f = q.pop_due(t0 + DELAY).expect("due at its play time");
        assert!(!f.is_complete());
        // Its tail lost instead: only a newer frame, or the grace, ends it.
        let payloads = payloads_of(2, 3);
        let t1 = t0 + INTERVAL;
        for p in &payloads[..payloads.len() - 1] {
            q.push(t1, p.clone()).expect("push");
        }
        assert_eq!(q.pop_due(t1 + DELAY), None);
        assert!(q.pop_due(t1 + DELAY + INTERVAL).is_some());
    }

    #[test]
    fn a_late_frame_whose_payloads_are_still_coming_is_not_cut_off() {
        let mut q = PlayoutQueue::new(PlayoutBounds::from_ms(2, 100), INTERVAL);
        let t0 = Instant::now();
        for p in payloads_of(1, 1) {
            q.push_timed(t0, p, timed(0)).expect("push");
        }
        assert!(q.pop_due(t0 + Duration::from_millis(2)).is_some());
        // Frame 2's first payload comes 200 ms after its play time, the rest 1 ms apart.
        let late = t0 + FRAME + Duration::from_millis(200);
        let payloads = payloads_of(2, 3);
        let n = payloads.len();
        for (k, p) in payloads.into_iter().enumerate() {
            let at = late + Duration::from_millis(k as u64);
            assert_eq!(q.pop_due(at), None, "released after {k} of {n} payloads");
            q.push_timed(at, p, timed(TICKS_PER_FRAME)).expect("push");
        }
        let f = q
            .pop_due(late + Duration::from_millis(n as u64))
            .expect("whole");
        assert!(f.is_complete());
    }

    #[test]
    fn the_hold_never_exceeds_the_maximum_and_a_later_frame_is_shown_when_whole() {
        let bounds = PlayoutBounds::from_ms(2, 30);
        let mut q = PlayoutQueue::new(bounds, INTERVAL);
        let jitter = |i: u64| Duration::from_millis(if i % 5 == 4 { 205 } else { 5 });
        let times = play(&mut q, 150, 0, jitter);
        assert_eq!(q.hold(), Duration::from_millis(30));
        for (i, (whole, released)) in times.iter().enumerate() {
            assert!(
                released >= whole,
                "frame {i} released at {released:?}, before it was whole at {whole:?}"
            );
        }
        assert!(q.stats().frames_after_play_time > 0);
    }

    #[test]
    fn after_a_signal_loss_the_hold_starts_over_at_the_least() {
        let mut q = PlayoutQueue::new(PlayoutBounds::from_ms(2, 100), INTERVAL);
        let jitter = |i: u64| Duration::from_millis(if i % 4 == 3 { 25 } else { 5 });
        play(&mut q, 90, 0, jitter);
        assert!(q.hold() > Duration::from_millis(15));
        q.forget_shown();
        assert_eq!(q.hold(), Duration::from_millis(2));
    }

    #[test]
    fn an_old_measurement_is_forgotten_when_no_frame_comes_whole() {
        let mut q = PlayoutQueue::new(PlayoutBounds::from_ms(2, 100), INTERVAL);
        let jitter = |i: u64| Duration::from_millis(if i % 4 == 3 { 25 } else { 5 });
        play(&mut q, 90, 0, jitter);
        assert!(q.hold() > Duration::from_millis(15));
        // Then only incomplete frames for longer than the window's age: the hold falls back.
        // (`play` ran 90 frames of virtual time, 3 s, from its start.)
        let later = Instant::now() + FRAME * 90 + JITTER_WINDOW_MAX_AGE + Duration::from_secs(1);
        let first = payloads_of(1_000, 2);
        q.push_timed(later, first[0].clone(), timed(3_000_000))
            .expect("push");
        assert_eq!(q.hold(), Duration::from_millis(2));
    }

    #[test]
    fn timestamps_that_wrap_keep_the_time_line() {
        let bounds = PlayoutBounds::from_ms(2, 100);
        let mut q = PlayoutQueue::new(bounds, INTERVAL);
        let first = u32::MAX - 50 * TICKS_PER_FRAME;
        let times = play(&mut q, 120, first, |_| Duration::from_millis(5));
        assert_eq!(q.hold(), Duration::from_millis(2));
        for (i, (whole, released)) in times.iter().enumerate() {
            let held = released.saturating_sub(*whole);
            assert!(held <= Duration::from_millis(2), "frame {i}: held {held:?}");
        }
    }

    #[test]
    fn a_new_time_line_starts_the_measurement_over() {
        let bounds = PlayoutBounds::from_ms(2, 100);
        let mut q = PlayoutQueue::new(bounds, INTERVAL);
        let t0 = Instant::now();
        // Frame 1 on one time line, frame 2 (a restarted sender's random timestamps) an hour
        // of ticks away on another: without a restart of the measurement, frame 2 would be
        // held for an hour or the hold would jump to the maximum.
        for (frame, ts, at) in [(1, 1_000u32, t0), (2, 324_000_000, t0 + FRAME)] {
            for p in payloads_of(frame, 1) {
                q.push_timed(at, p, timed(ts)).expect("push");
            }
        }
        assert!(q.pop_due(t0 + Duration::from_millis(2)).is_some());
        assert_eq!(q.hold(), Duration::from_millis(2));
        assert_eq!(
            q.pop_due(t0 + FRAME + Duration::from_millis(2))
                .map(|f| f.frame),
            Some(FrameNo(2))
        );
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
        // A frame presented at 230 ms: no refresh until 270 ms.
        clock.presented(t0 + Duration::from_millis(230));
        assert!(!clock.tick(t0 + Duration::from_millis(240)));
        assert!(clock.tick(t0 + Duration::from_millis(270)));
    }
}
