//! keymash-delay-buffer: holds `delay.seconds` of video in shared memory and releases each frame
//! when its capture time plus the delay is reached; shows a countdown card until it holds enough.
//!
//! Three rings: it reads the raw-frame ring, copies every frame into its own hold ring
//! (`<prefix>.delay-hold`, sized by `keymash_pipeline::hold`), and writes what is due into the
//! delayed-frame ring. All its state is in those rings (the held frames with their capture
//! times, and the capture time of the frame released last), so a restart of any sender stage,
//! this one included, loses nothing: the held video survives and release continues on time.
//! The decision itself is `keymash_media::schedule`.
#![forbid(unsafe_code)]

use std::ops::Range;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use keymash_codec::{FrameGeometry, I420Frame};
use keymash_core::config::{Config, VideoConfig};
use keymash_core::FrameNo;
use keymash_media::{
    render_awaiting_video, render_countdown, DelaySchedule, HeldFrames, Release, GAP_TOLERANCE_NS,
};
use keymash_pipeline::{stat, FrameKind, FrameSlot, Segments, Service};
use keymash_service::{Lifecycle, ServiceArgs, StatsPublisher};
use keymash_shm::{monotonic_now_ns, RecvError, RingReader, RingWriter};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Holds the configured delay of video in shared memory and releases each frame when it is due."
)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    keymash_service::run("keymash-delay-buffer", &args.service, run)
}

/// The hold ring seen through the schedule's eyes: capture times by sequence number.
struct Held<'r>(&'r RingReader);

impl HeldFrames for Held<'_> {
    fn retained(&self) -> Range<u64> {
        self.0.retained()
    }
    fn capture_ns(&self, seq: u64) -> Option<u64> {
        self.0.read_seq_with(seq, |meta, _| meta.capture_ns()).ok()
    }
}

fn run(lifecycle: &mut Lifecycle, config: Config) -> anyhow::Result<()> {
    let video = &config.video;
    let segments = Segments::new(&config)?;
    // A delay that cannot fit was refused with the configuration (preflight); should it still
    // fail here, run() maps the delay error to exit 78 like any refused configuration.
    let (hold_spec, budget) = segments.delay_hold()?;
    let geometry = FrameGeometry::new(video.width as usize, video.height as usize)
        .context("`video.width`/`video.height` do not give a frame the codec can code")?;
    let frame_len = geometry.luma_len() + 2 * geometry.chroma_len();
    let interval_ns = 1_000_000_000 / u64::from(video.fps.max(1));
    // A stage's restart (RestartSec + start) in the held video shows the last frame, not the
    // card (see GAP_TOLERANCE_NS).
    let schedule = DelaySchedule::new((config.delay.seconds * 1e9) as u64, GAP_TOLERANCE_NS);

    let (mut hold, hold_attach) = hold_spec.create()?;
    let hold_reader = hold_spec.open_own()?;
    let delayed_spec = segments.delayed_frames()?;
    let (delayed, _) = delayed_spec.create()?;
    let mut raw = segments.raw_frames()?.follow();
    let mut stats =
        StatsPublisher::open(&config, Service::DelayBuffer, "frames", monotonic_now_ns())?;

    // Where release stands: the capture time of the last real frame in the delayed ring.
    let mut last_released = last_released_capture_ns(&delayed_spec.open_own()?, &delayed);
    let held_at_start = hold_reader.retained();
    lifecycle.ready(&format!(
        "delay {:.1} s at {geometry} {} fps: {} slots, {:.1} MiB ({:?}, {} frames held from before)",
        config.delay.seconds,
        video.fps,
        budget.geometry.slot_count(),
        budget.mib(),
        hold_attach.attach,
        held_at_start.end - held_at_start.start,
    ));
    stats.set_state(keymash_shm::ServiceState::Running);

    let mut outlet = Outlet {
        delayed,
        video: video.clone(),
        frame_len,
        card: I420Frame::grey(geometry),
        interval_ns,
        last_card_ns: 0,
        showing: None,
    };
    let mut last_publish = Instant::now();
    while !lifecycle.stop_requested() {
        let now_ns = monotonic_now_ns();
        // 1. What is due now?
        let wait = match schedule.decide(now_ns, &Held(&hold_reader), last_released) {
            Release::Frame { seq, capture_ns } => {
                let released = outlet.release(&hold_reader, seq, capture_ns)?;
                stats.count(if released { "frames" } else { stat::DROPPED }, 1);
                // Either way this frame is done with: never retry it.
                last_released = Some(capture_ns);
                Duration::ZERO
            }
            Release::Countdown { seconds_left } => outlet.card(
                now_ns,
                Card::Countdown(seconds_left),
                schedule.delay_seconds_ceil(),
            )?,
            Release::AwaitingVideo => {
                outlet.card(now_ns, Card::AwaitingVideo, schedule.delay_seconds_ceil())?
            }
            Release::Wait { until_ns } => until_ns.map_or(Lifecycle::MAX_WAIT, |until| {
                Duration::from_nanos(until.saturating_sub(now_ns))
            }),
        };
        // 2. Take in what capture wrote, sleeping on the raw ring until then.
        let opened = raw.reader().is_some() && raw.take_just_opened();
        if let Some(reader) = raw.reader() {
            if opened {
                resume_after_held(reader, &hold_reader);
            }
            match reader.next(wait.min(Lifecycle::MAX_WAIT)) {
                Ok(arrival) => {
                    stats.count(stat::DROPPED, arrival.missed);
                    if take_in(reader, arrival.seq, &mut hold, &hold_reader, video)? {
                        stats.count("held", 1);
                    }
                }
                Err(RecvError::TimedOut) => raw.silent(),
                Err(e) => raw.reopen(&e),
            }
        } else if !wait.is_zero() {
            std::thread::sleep(wait.min(Duration::from_millis(50)));
        }

        let now = Instant::now();
        lifecycle.progress(now);
        if now.duration_since(last_publish) >= Duration::from_millis(500) {
            last_publish = now;
            let held = held_seconds(&hold_reader);
            let line = publish(
                &mut stats,
                held,
                config.delay.seconds,
                outlet.showing,
                raw.waiting(),
            );
            lifecycle.status(now, &line);
        }
    }
    stats.set_state(keymash_shm::ServiceState::Stopping);
    stats.publish(monotonic_now_ns());
    Ok(())
}

/// Copies raw frame `seq` into the hold ring unless it is already held (a restarted delay
/// buffer sees the newest raw frame again) or unusable. Returns whether it was taken.
fn take_in(
    raw: &RingReader,
    seq: u64,
    hold: &mut RingWriter,
    hold_reader: &RingReader,
    video: &VideoConfig,
) -> anyhow::Result<bool> {
    let newest_held = hold_reader.retained().end.checked_sub(1).and_then(|s| {
        hold_reader
            .read_seq_with(s, |meta, _| meta.capture_ns())
            .ok()
    });
    // Check everything before claiming a slot: claiming destroys the oldest held frame.
    let checked = raw.read_seq_with(seq, |meta, bytes| FrameSlot::read(meta, video, bytes.len()));
    let slot = match checked {
        Ok(Ok(slot)) => slot,
        Ok(Err(e)) => {
            log::warn!("raw frame {seq} refused: {e}");
            return Ok(false);
        }
        Err(_) => return Ok(false),
    };
    if newest_held.is_some_and(|held| slot.capture_ns <= held) {
        return Ok(false);
    }
    let mut out = hold.begin();
    let copied = raw.read_seq_with(seq, |meta, bytes| {
        (bytes.copy_to_slice(out.payload_mut()), *meta)
    });
    match copied {
        // The slot was checked above; a writer lapping it since is caught by the read itself.
        Ok((n, meta)) if FrameSlot::read(&meta, video, n) == Ok(slot) => {
            out.commit(n, &meta)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Writes what the schedule releases into the delayed-frame ring: held frames, or the
/// countdown card at the frame rate.
struct Outlet {
    delayed: RingWriter,
    video: VideoConfig,
    frame_len: usize,
    card: I420Frame,
    interval_ns: u64,
    last_card_ns: u64,
    showing: Option<Card>,
}

/// The card the delay buffer shows instead of video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Card {
    /// Video is held and comes out in this many seconds.
    Countdown(u32),
    /// No video is arriving (see `Release::AwaitingVideo`).
    AwaitingVideo,
}

impl Outlet {
    /// Copies held frame `seq` out as the next delayed frame; `false` if it could not be read
    /// whole (its slot was being recycled).
    fn release(&mut self, hold: &RingReader, seq: u64, capture_ns: u64) -> anyhow::Result<bool> {
        let mut slot = self.delayed.begin();
        let out_seq = slot.seq();
        let copied = hold.read_seq_with(seq, |_, bytes| bytes.copy_to_slice(slot.payload_mut()));
        if copied != Ok(self.frame_len) {
            return Ok(false);
        }
        let meta = FrameSlot::video(FrameNo(out_seq), capture_ns).meta(&self.video);
        slot.commit(self.frame_len, &meta)?;
        self.showing = None;
        Ok(true)
    }

    /// Shows `card` (at most once a frame interval); returns how long to wait.
    fn card(&mut self, now_ns: u64, card: Card, delay_seconds: u32) -> anyhow::Result<Duration> {
        if now_ns.saturating_sub(self.last_card_ns) >= self.interval_ns {
            match card {
                Card::Countdown(seconds_left) => {
                    render_countdown(&mut self.card, seconds_left, delay_seconds)
                }
                Card::AwaitingVideo => render_awaiting_video(&mut self.card, delay_seconds),
            }
            let mut slot = self.delayed.begin();
            let out_seq = slot.seq();
            let payload = slot.payload_mut();
            let (y, u, v) = (self.card.y(), self.card.u(), self.card.v());
            payload[..y.len()].copy_from_slice(y);
            payload[y.len()..y.len() + u.len()].copy_from_slice(u);
            payload[y.len() + u.len()..self.frame_len].copy_from_slice(v);
            let meta = FrameSlot {
                frame: FrameNo(out_seq),
                capture_ns: now_ns,
                kind: FrameKind::Countdown,
            }
            .meta(&self.video);
            slot.commit(self.frame_len, &meta)?;
            self.last_card_ns = now_ns;
            self.showing = Some(card);
        }
        Ok(Duration::from_nanos(
            (self.last_card_ns + self.interval_ns).saturating_sub(now_ns),
        ))
    }
}

/// Publishes the hold's figures; returns the status line.
fn publish(
    stats: &mut StatsPublisher,
    held: f64,
    delay: f64,
    showing: Option<Card>,
    waiting: Option<&str>,
) -> String {
    stats.gauge("held_seconds", held);
    stats.gauge("delay_seconds", delay);
    let countdown = match showing {
        Some(Card::Countdown(left)) => f64::from(left),
        _ => -1.0,
    };
    stats.gauge("countdown", countdown);
    stats.gauge(
        "awaiting_video",
        if showing == Some(Card::AwaitingVideo) {
            1.0
        } else {
            0.0
        },
    );
    let line = match showing {
        Some(Card::Countdown(left)) => {
            format!("countdown: starting in {left} s; holding {held:.1} s of {delay:.1} s")
        }
        Some(Card::AwaitingVideo) => format!(
            "no video from capture for over {:.0} s: showing the waiting card; holding {held:.1} s",
            GAP_TOLERANCE_NS as f64 / 1e9
        ),
        None => format!(
            "holding {held:.1} s, delay {delay:.1} s, {} frames released",
            stats.counter("frames").unwrap_or(0)
        ),
    };
    let line = match waiting {
        Some(why) => format!("{why}; {line}"),
        None => line,
    };
    stats.set_status_line(&line);
    stats.publish(monotonic_now_ns());
    line
}

/// Positions a freshly opened raw reader at the first frame not yet held, so frames captured
/// while this process was down (still in the raw ring) are taken in rather than skipped.
fn resume_after_held(raw: &mut RingReader, hold: &RingReader) {
    let Some(newest_held) = hold
        .retained()
        .end
        .checked_sub(1)
        .and_then(|s| hold.read_seq_with(s, |meta, _| meta.capture_ns()).ok())
    else {
        return;
    };
    let first_new = raw.retained().find(|&seq| {
        raw.read_seq_with(seq, |meta, _| meta.capture_ns() > newest_held)
            .unwrap_or(false)
    });
    if let Some(seq) = first_new {
        raw.seek(seq);
    }
}

/// The capture time of the last real (not countdown) frame in the delayed ring, where a
/// restarted delay buffer continues from.
fn last_released_capture_ns(reader: &RingReader, delayed: &RingWriter) -> Option<u64> {
    let newest = delayed.next_seq().checked_sub(1)?;
    reader
        .read_seq_with(newest, |meta, _| {
            (FrameKind::of(meta) == FrameKind::Video).then_some(meta.capture_ns())
        })
        .ok()
        .flatten()
}

/// Seconds between the oldest and newest held frame.
fn held_seconds(hold: &RingReader) -> f64 {
    let range = hold.retained();
    if range.is_empty() {
        return 0.0;
    }
    let capture = |seq| hold.read_seq_with(seq, |meta, _| meta.capture_ns()).ok();
    // The oldest slot may be under rewrite; the next one is as good a measure.
    let oldest = capture(range.start).or_else(|| capture(range.start + 1));
    match (oldest, capture(range.end - 1)) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
        _ => 0.0,
    }
}
