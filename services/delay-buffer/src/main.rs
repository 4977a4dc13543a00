//! keymash-delay-buffer: holds `delay.seconds` of video in shared memory and releases each frame
//! when its capture time plus the delay is reached; shows a countdown card until it holds enough.
//!
//! Three rings: it reads the raw-frame ring, copies every frame into its own hold ring
//! (`<prefix>.delay-hold`, sized by `keymash_media::memory`), and writes what is due into the
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
use keymash_core::config::Config;
use keymash_core::pipeline::{stat, Service, DELAYED_FRAMES, DELAY_HOLD, RAW_FRAMES};
use keymash_core::FrameNo;
use keymash_media::raw::FLAG_COUNTDOWN;
use keymash_media::{
    render_countdown, rings, DelayBudget, DelaySchedule, HeldFrames, RawFrameInfo, Release,
};
use keymash_service::stats::{permissions, segment_id};
use keymash_service::{Lifecycle, ServiceArgs, StatsPublisher, EXIT_BAD_CONFIG};
use keymash_shm::{
    monotonic_now_ns, remove_segment, FrameMeta, OpenError, Permissions, RecvError, RingGeometry,
    RingReader, RingWriter, SegmentId, WriterAttach,
};

/// The picture may stand still this long (a stalled camera, a restart) before the countdown card
/// replaces it.
const GAP_TOLERANCE_NS: u64 = 1_000_000_000;
/// A reader that has seen no frame for this long reopens its ring (the writer may have
/// recreated it with another geometry after a configuration change).
const REOPEN_AFTER: Duration = Duration::from_secs(2);

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

/// Opens a ring for writing; a ring left with another geometry by an older configuration is
/// replaced (its content is of no use at the new size).
fn open_writer(
    id: &SegmentId,
    geometry: RingGeometry,
    permissions: Permissions,
) -> anyhow::Result<(RingWriter, WriterAttach)> {
    match RingWriter::open(id, geometry, permissions) {
        Err(OpenError::GeometryMismatch { found, .. }) => {
            log::warn!(
                "{id} holds {found} from an older configuration; replacing it with {geometry}"
            );
            remove_segment(id)?;
            Ok(RingWriter::open(id, geometry, permissions)?)
        }
        other => Ok(other.with_context(|| format!("cannot open {id}"))?),
    }
}

fn run(lifecycle: &mut Lifecycle, config: Config) -> anyhow::Result<()> {
    let video = &config.video;
    let budget = match DelayBudget::for_config(video, &config.delay) {
        Ok(budget) => budget,
        Err(e) => {
            // A delay that cannot fit is a configuration error: exit so systemd does not retry.
            log::error!("configuration refused: {e}");
            std::process::exit(i32::from(EXIT_BAD_CONFIG));
        }
    };
    let geometry = FrameGeometry::new(video.width as usize, video.height as usize)
        .context("`video.width`/`video.height` do not give a frame the codec can code")?;
    let frame_len = geometry.luma_len() + 2 * geometry.chroma_len();
    let interval_ns = 1_000_000_000 / u64::from(video.fps.max(1));
    let schedule = DelaySchedule::new((config.delay.seconds * 1e9) as u64, GAP_TOLERANCE_NS);

    let hold_id = segment_id(&config, DELAY_HOLD)?;
    let (mut hold, hold_attach) = open_writer(&hold_id, budget.geometry, permissions(&config))?;
    let hold_reader = RingReader::open_expecting(&hold_id, budget.geometry)?;
    let delayed_id = segment_id(&config, DELAYED_FRAMES)?;
    let (mut delayed, _) =
        open_writer(&delayed_id, rings::frame_ring(video)?, permissions(&config))?;
    let raw_id = segment_id(&config, RAW_FRAMES)?;
    let mut raw: Option<RingReader> = None;
    let mut stats =
        StatsPublisher::open(&config, Service::DelayBuffer, "frames", monotonic_now_ns())?;

    // Where release stands: the capture time of the last real frame in the delayed ring.
    let mut last_released = last_released_capture_ns(&delayed_id, &delayed);
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

    let mut card = I420Frame::grey(geometry);
    let mut last_card_ns = 0u64;
    let mut last_raw_ns = monotonic_now_ns();
    let mut last_publish = Instant::now();
    let mut showing_countdown = None;
    while !lifecycle.stop_requested() {
        let now_ns = monotonic_now_ns();
        // 1. What is due now?
        let mut wait = Lifecycle::MAX_WAIT;
        match schedule.decide(now_ns, &Held(&hold_reader), last_released) {
            Release::Frame { seq, capture_ns } => {
                let mut slot = delayed.begin();
                let out_seq = slot.seq();
                let copied = hold_reader.read_seq_with(seq, |meta, bytes| {
                    let n = bytes.copy_to_slice(slot.payload_mut());
                    (n, *meta)
                });
                match copied {
                    Ok((n, meta)) if n == frame_len => {
                        let meta =
                            FrameMeta::new(FrameNo(out_seq), capture_ns).with_words(meta.words());
                        slot.commit(n, &meta)?;
                        stats.count("frames", 1);
                        showing_countdown = None;
                    }
                    _ => {
                        drop(slot);
                        stats.count(stat::DROPPED, 1);
                    }
                }
                // Either way this frame is done with: never retry it.
                last_released = Some(capture_ns);
                wait = Duration::ZERO;
            }
            Release::Countdown { seconds_left } => {
                if now_ns.saturating_sub(last_card_ns) >= interval_ns {
                    render_countdown(&mut card, seconds_left, schedule.delay_seconds_ceil());
                    let mut slot = delayed.begin();
                    let out_seq = slot.seq();
                    let payload = slot.payload_mut();
                    let (y, u, v) = (card.y(), card.u(), card.v());
                    payload[..y.len()].copy_from_slice(y);
                    payload[y.len()..y.len() + u.len()].copy_from_slice(u);
                    payload[y.len() + u.len()..frame_len].copy_from_slice(v);
                    let info = RawFrameInfo {
                        width: video.width,
                        height: video.height,
                        capture_frame: FrameNo(0),
                    };
                    let meta = FrameMeta::new(FrameNo(out_seq), now_ns)
                        .with_flags(FLAG_COUNTDOWN)
                        .with_words(info.words());
                    slot.commit(frame_len, &meta)?;
                    last_card_ns = now_ns;
                    showing_countdown = Some(seconds_left);
                }
                wait = Duration::from_nanos((last_card_ns + interval_ns).saturating_sub(now_ns));
            }
            Release::Wait { until_ns } => {
                if let Some(until) = until_ns {
                    wait = Duration::from_nanos(until.saturating_sub(now_ns));
                }
            }
        }
        // 2. Take in what capture wrote, sleeping on the raw ring until then.
        if raw.is_none() {
            match RingReader::open(&raw_id) {
                Ok(mut reader) => {
                    resume_after_held(&mut reader, &hold_reader);
                    raw = Some(reader);
                }
                Err(OpenError::NotFound { .. } | OpenError::NotReady { .. }) => {}
                Err(e) => log::warn!("{e}"),
            }
            if raw.is_none() {
                wait = wait.min(Duration::from_millis(50));
            }
        }
        if let Some(reader) = raw.as_mut() {
            match reader.next(wait.min(Lifecycle::MAX_WAIT)) {
                Ok(arrival) => {
                    stats.count(stat::DROPPED, arrival.missed);
                    if take_in(
                        reader,
                        arrival.seq,
                        &mut hold,
                        &hold_reader,
                        video,
                        frame_len,
                    )? {
                        stats.count("held", 1);
                    }
                    last_raw_ns = monotonic_now_ns();
                }
                Err(RecvError::TimedOut) => {
                    if monotonic_now_ns().saturating_sub(last_raw_ns)
                        > REOPEN_AFTER.as_nanos() as u64
                    {
                        raw = None;
                        last_raw_ns = monotonic_now_ns();
                    }
                }
                Err(e) => {
                    log::warn!("raw-frame ring: {e}; reopening");
                    raw = None;
                }
            }
        } else if !wait.is_zero() {
            std::thread::sleep(wait.min(Lifecycle::MAX_WAIT));
        }

        let now = Instant::now();
        lifecycle.progress(now);
        if now.duration_since(last_publish) >= Duration::from_millis(500) {
            last_publish = now;
            let now_ns = monotonic_now_ns();
            let held = held_seconds(&hold_reader);
            stats.gauge("held_seconds", held);
            stats.gauge("delay_seconds", config.delay.seconds);
            stats.gauge("countdown", showing_countdown.map_or(-1.0, f64::from));
            stats.publish(now_ns);
            let line = match showing_countdown {
                Some(left) => format!(
                    "countdown: starting in {left} s; holding {held:.1} s of {:.1} s",
                    config.delay.seconds
                ),
                None => format!(
                    "holding {held:.1} s, delay {:.1} s, {} frames released",
                    config.delay.seconds,
                    stats.counter("frames").unwrap_or(0)
                ),
            };
            stats.set_status_line(&line);
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
    video: &keymash_core::config::VideoConfig,
    frame_len: usize,
) -> anyhow::Result<bool> {
    let newest_held = hold_reader.retained().end.checked_sub(1).and_then(|s| {
        hold_reader
            .read_seq_with(s, |meta, _| meta.capture_ns())
            .ok()
    });
    // Check before claiming a slot: claiming destroys the oldest held frame.
    let Ok(capture_ns) = raw.read_seq_with(seq, |meta, _| meta.capture_ns()) else {
        return Ok(false);
    };
    if newest_held.is_some_and(|held| capture_ns <= held) {
        return Ok(false);
    }
    let mut slot = hold.begin();
    let copied = raw.read_seq_with(seq, |meta, bytes| {
        (bytes.copy_to_slice(slot.payload_mut()), *meta)
    });
    match copied {
        Ok((n, meta)) => match RawFrameInfo::check(&meta, video.width, video.height, n) {
            Ok(_) if n == frame_len => {
                slot.commit(n, &meta)?;
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) => {
                log::warn!("raw frame {seq} refused: {e}");
                Ok(false)
            }
        },
        Err(_) => Ok(false),
    }
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
fn last_released_capture_ns(id: &SegmentId, delayed: &RingWriter) -> Option<u64> {
    let newest = delayed.next_seq().checked_sub(1)?;
    let reader = RingReader::open(id).ok()?;
    reader
        .read_seq_with(newest, |meta, _| {
            (meta.flags() & FLAG_COUNTDOWN == 0).then_some(meta.capture_ns())
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
