//! The playback loop: payloads from the received ring into the playout queue; at each tick of
//! the stream's frame rate, the frames that are due are decoded into the persistent picture,
//! which is then presented with the mash glow and the HUD.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use keymash_codec::{Decoder, FrameGeometry, FrameJoin, PayloadHeader};
use keymash_core::config::{Config, DisplayOutput};
use keymash_core::curves::QualityCurve;
use keymash_core::pipeline::{stat, MashRecord, Service, MASH_CELL, RECEIVED_PAYLOADS};
use keymash_core::{FrameNo, MashLevel};
use keymash_media::Percentiles;
use keymash_present::playout::frame_interval;
use keymash_present::{HudFigures, PlayoutQueue, PresentClock};
use keymash_service::stats::segment_id;
use keymash_service::{Lifecycle, StatsPublisher};
use keymash_shm::{monotonic_now_ns, CellReader, RecvError, RingReader, SegmentId, ServiceStats};

use crate::output::{FramesOutput, Output, Presentation, Y4mOutput};
use crate::window::{Screen, WindowOutput};

/// How often a missing segment (net-rx or mash-input not started yet) is looked for again.
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);
/// Payloads taken from the ring per loop turn at most, so presentation is never starved.
const DRAIN_BATCH: usize = 256;
/// Figures averaged over this many presentations for the status line and the gauges.
const TIMING_WINDOW: usize = 60;
/// Capture-to-present latency percentiles over this many stamped frames (10 s at 30 fps).
const LATENCY_WINDOW: usize = 300;
/// Statistics and the status line are refreshed this often.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);
/// A net-rx statistics cell older than this is not shown in the HUD (net-rx is down).
const NET_RX_STALE_NS: u64 = 2_000_000_000;

/// A segment opened when it exists, looked for again every [`REOPEN_INTERVAL`] until then.
struct Lazy<T> {
    id: SegmentId,
    value: Option<T>,
    last_try: Option<Instant>,
    open: fn(&SegmentId) -> Option<T>,
}

impl<T> Lazy<T> {
    fn new(id: SegmentId, open: fn(&SegmentId) -> Option<T>) -> Self {
        Lazy {
            id,
            value: None,
            last_try: None,
            open,
        }
    }

    fn get(&mut self, now: Instant) -> Option<&mut T> {
        if self.value.is_none()
            && self
                .last_try
                .is_none_or(|t| now.saturating_duration_since(t) >= REOPEN_INTERVAL)
        {
            self.last_try = Some(now);
            self.value = (self.open)(&self.id);
        }
        self.value.as_mut()
    }
}

pub fn run(lifecycle: &mut Lifecycle, config: Config) -> anyhow::Result<()> {
    let geometry = FrameGeometry::new(config.video.width as usize, config.video.height as usize)
        .context("video.width/video.height")?;
    let d = &config.display;
    match &d.output {
        DisplayOutput::Frames(dir) => {
            let output = FramesOutput::new(dir, geometry, d.glow_border_px)?;
            play(lifecycle, &config, geometry, output)
        }
        DisplayOutput::Y4m(path) => {
            let output = Y4mOutput::new(path, geometry, d.glow_border_px, config.video.fps)?;
            play(lifecycle, &config, geometry, output)
        }
        DisplayOutput::Window => {
            let screen = Screen::open(geometry, d.glow_border_px, d.fullscreen)?;
            let creator = screen.texture_creator();
            let output = WindowOutput::new(screen, &creator, geometry, d.glow_border_px)?;
            play(lifecycle, &config, geometry, output)
        }
    }
}

/// Rolling timings for the status line and the gauges.
#[derive(Default)]
struct Timings {
    decode_ms: VecDeque<f64>,
    present_ms: VecDeque<f64>,
    presented_at: VecDeque<Instant>,
}

impl Timings {
    fn push(window: &mut VecDeque<f64>, value: f64) {
        if window.len() == TIMING_WINDOW {
            window.pop_front();
        }
        window.push_back(value);
    }

    fn mean(window: &VecDeque<f64>) -> f64 {
        if window.is_empty() {
            0.0
        } else {
            window.iter().sum::<f64>() / window.len() as f64
        }
    }

    /// New frames shown over the last second.
    fn fps(&mut self, now: Instant) -> f64 {
        while self
            .presented_at
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > Duration::from_secs(1))
        {
            self.presented_at.pop_front();
        }
        self.presented_at.len() as f64
    }
}

fn play(
    lifecycle: &mut Lifecycle,
    config: &Config,
    geometry: FrameGeometry,
    mut output: impl Output,
) -> anyhow::Result<()> {
    let mut ring = Lazy::new(segment_id(config, RECEIVED_PAYLOADS)?, |id| {
        RingReader::open(id).ok()
    });
    let mut mash_cell = Lazy::new(segment_id(config, MASH_CELL)?, |id| {
        CellReader::<MashRecord>::open(id).ok()
    });
    let mut net_rx_stats = Lazy::new(segment_id(config, &Service::NetRx.stats_cell())?, |id| {
        CellReader::<ServiceStats>::open(id).ok()
    });
    let mut stats = StatsPublisher::open(config, Service::Display, "frames", monotonic_now_ns())?;
    let curve = QualityCurve::from_config(&config.quality);

    let interval = frame_interval(config.video.fps);
    let mut queue = PlayoutQueue::new(
        Duration::from_millis(u64::from(config.display.playout_delay_ms)),
        interval,
    );
    let mut clock = PresentClock::new(config.video.fps, Instant::now());
    let mut decoder = Decoder::new(geometry);
    let mut shown = FrameNo(0);
    let mut buf = Vec::new();
    let mut timings = Timings::default();
    let (mut frames, mut undecodable, mut missed_payloads) = (0u64, 0u64, 0u64);
    let mut mash = MashLevel::IDLE;
    let mut next_publish = Instant::now();
    let mut latency_ms = Percentiles::new(LATENCY_WINDOW);
    let mut last_stamp: Option<u32> = None;
    // A display that (re)opens the ring joins the payloads part-way through a frame: it starts
    // on the next whole frame instead of showing that frame's tail over a grey picture.
    let mut join = FrameJoin::new();
    let mut ring_opens = 0u64;
    lifecycle.ready(&format!(
        "presenting {geometry} at {} fps to {}",
        config.video.fps,
        String::from(config.display.output.clone())
    ));

    while !lifecycle.stop_requested() {
        let now = Instant::now();
        let wait = clock
            .next_tick()
            .saturating_duration_since(now)
            .min(Lifecycle::MAX_WAIT);
        let was_open = ring.value.is_some();
        match ring.get(now) {
            Some(reader) => {
                if !was_open {
                    ring_opens += 1;
                }
                let mut wait = wait;
                for _ in 0..DRAIN_BATCH {
                    match reader.recv_into(wait, &mut buf) {
                        Ok(received) => {
                            missed_payloads += received.missed;
                            // The ring's time stamp is when net-rx received the payload.
                            let age = Duration::from_nanos(
                                monotonic_now_ns().saturating_sub(received.meta.capture_ns()),
                            );
                            let arrival =
                                Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                            // A payload whose header does not parse goes on to the queue, which
                            // refuses and counts it.
                            let header = PayloadHeader::parse(&buf).ok();
                            let joined = header.is_none_or(|h| join.admit(ring_opens, &h));
                            if joined && queue.push(arrival, std::mem::take(&mut buf)).is_err() {
                                undecodable += 1;
                            }
                        }
                        Err(RecvError::TimedOut) => break,
                        Err(e) => {
                            log::warn!("received-payload ring: {e}; reopening");
                            ring.value = None;
                            break;
                        }
                    }
                    wait = Duration::ZERO;
                }
            }
            None => std::thread::sleep(wait),
        }
        let now = Instant::now();
        lifecycle.progress(now);
        if output.pump_events() {
            log::info!("window closed");
            break;
        }
        if !clock.tick(now) {
            continue;
        }
        let decode_start = Instant::now();
        let mut new_frame = false;
        while let Some(frame) = queue.pop_due(now) {
            for payload in &frame.payloads {
                if decoder.apply(payload).is_err() {
                    undecodable += 1;
                }
            }
            shown = frame.frame;
            new_frame = true;
        }
        let decode_ms = decode_start.elapsed().as_secs_f64() * 1e3;
        if new_frame {
            // With the synthetic scene (or any source that stamps its pictures), the capture
            // time is in the pixels: capture to presentation, the playout delay left out.
            // The stamp carries the capture frame number (the delay buffer renumbers frames, so
            // it is not `shown`). The same stamp again is stale blocks left by a lost packet,
            // not this frame's age.
            let stamp = keymash_media::stamp::read_stamp(decoder.frame())
                .filter(|s| last_stamp != Some(s.frame));
            if let Some(stamp) = stamp {
                last_stamp = Some(stamp.frame);
                let age_ms = stamp.age_ms(monotonic_now_ns()) as f64;
                latency_ms.record(age_ms - f64::from(config.display.playout_delay_ms));
            }
        }
        if let Some(cell) = mash_cell.get(now) {
            mash = cell.load().map_or(MashLevel::IDLE, |r| {
                keymash_input::current_level(&r, monotonic_now_ns())
            });
        }
        let hud = config.display.hud.then(|| {
            let loss_percent = net_rx_stats
                .get(now)
                .and_then(|c| c.load().ok())
                .filter(|s| monotonic_now_ns().saturating_sub(s.heartbeat_ns()) < NET_RX_STALE_NS)
                .and_then(|s| s.gauge("loss_percent"));
            HudFigures {
                loss_percent,
                quality: curve.quality(mash),
                fps: timings.fps(now),
                mash,
            }
            .line()
        });
        let present_start = Instant::now();
        output.present(&Presentation {
            picture: decoder.frame(),
            frame: shown,
            new_frame,
            mash,
            hud: hud.as_deref(),
        })?;
        let present_ms = present_start.elapsed().as_secs_f64() * 1e3;
        if new_frame {
            frames += 1;
            stats.count("frames", 1);
            Timings::push(&mut timings.decode_ms, decode_ms);
            Timings::push(&mut timings.present_ms, present_ms);
            timings.presented_at.push_back(now);
        }
        if now >= next_publish {
            next_publish = now + PUBLISH_INTERVAL;
            let q = queue.stats();
            let fps = timings.fps(now);
            stats.set_count("incomplete_frames", q.frames_incomplete);
            stats.set_count("joined_mid_frame", join.skipped());
            stats.set_count("late_payloads", q.payloads_late);
            stats.set_count("undecodable_payloads", undecodable);
            stats.set_count("ring_missed_payloads", missed_payloads);
            stats.set_count("skipped_ticks", clock.skipped());
            stats.set_count(
                stat::DROPPED,
                q.payloads_late + q.frames_overflowed + missed_payloads,
            );
            stats.gauge("fps", fps);
            stats.gauge("decode_ms", Timings::mean(&timings.decode_ms));
            stats.gauge("present_ms", Timings::mean(&timings.present_ms));
            stats.gauge("mash", f64::from(mash.get()));
            stats.gauge("frame", shown.0 as f64);
            if let (Some(p50), Some(p99)) = (latency_ms.quantile(0.5), latency_ms.quantile(0.99)) {
                stats.gauge("capture_to_present_p50_ms", p50);
                stats.gauge("capture_to_present_p99_ms", p99);
            }
            let line = if frames == 0 {
                format!("waiting for the stream (mash {:.2})", mash.get())
            } else {
                format!(
                    "frame {shown}, {fps:.1} fps, decode {:.2} ms, present {:.2} ms, {} incomplete frames, mash {:.2}",
                    Timings::mean(&timings.decode_ms),
                    Timings::mean(&timings.present_ms),
                    q.frames_incomplete,
                    mash.get()
                )
            };
            stats.set_status_line(&line);
            stats.publish(monotonic_now_ns());
            lifecycle.status(now, &line);
        }
    }
    Ok(())
}
