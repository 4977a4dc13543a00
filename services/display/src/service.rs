//! The playback loop: payloads from the received ring into the playout queue; at each tick of
//! the stream's frame rate, the frames that are due are decoded into the persistent picture,
//! which is then presented with the mash glow and the HUD.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use keymash_codec::{Decoder, FrameGeometry};
use keymash_core::config::{Config, DisplayOutput};
use keymash_core::curves::QualityCurve;
use keymash_core::{FrameNo, MashLevel, Percentiles};
use keymash_pipeline::{stat, Follow, MashRecord, Segments, Service};
use keymash_present::playout::frame_interval;
use keymash_present::{HudFigures, PlayoutQueue, PresentClock};
use keymash_service::{Lifecycle, StatsPublisher};
use keymash_shm::{monotonic_now_ns, CellReader, ServiceState, ServiceStats};

use crate::feed::Feed;
use crate::output::{FramesOutput, Output, Presentation, Y4mOutput};
use crate::window::{Screen, WindowOutput};

/// Figures averaged over this many presentations for the status line and the gauges.
const TIMING_WINDOW: usize = 60;
/// Capture-to-present latency percentiles over this many stamped frames (10 s at 30 fps).
const LATENCY_WINDOW: usize = 300;
/// Statistics and the status line are refreshed this often.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);
/// A net-rx statistics cell older than this is not shown in the HUD (net-rx is down).
const NET_RX_STALE_NS: u64 = 2_000_000_000;

pub(crate) fn run(lifecycle: &mut Lifecycle, config: Config) -> anyhow::Result<()> {
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
    /// New frames presented since the start.
    frames: u64,
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

    /// A new frame was presented at `now`.
    fn record(&mut self, now: Instant, decode_ms: f64, present_ms: f64) {
        self.frames += 1;
        Timings::push(&mut self.decode_ms, decode_ms);
        Timings::push(&mut self.present_ms, present_ms);
        self.presented_at.push_back(now);
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

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// The persistent picture: due frames decoded into it (blocks of lost packets keep their old
/// content), and how old the frames it shows were.
struct Picture {
    decoder: Decoder,
    /// The newest frame applied.
    shown: FrameNo,
    undecodable: u64,
    /// Capture to presentation, the playout delay left out.
    latency_ms: Percentiles,
    last_stamp: Option<u32>,
    playout_delay_ms: f64,
}

impl Picture {
    fn new(geometry: FrameGeometry, playout_delay_ms: u32) -> Self {
        Picture {
            decoder: Decoder::new(geometry),
            shown: FrameNo(0),
            undecodable: 0,
            latency_ms: Percentiles::new(LATENCY_WINDOW),
            last_stamp: None,
            playout_delay_ms: f64::from(playout_delay_ms),
        }
    }

    /// Applies every frame that is due at `now`; true if there was one.
    fn decode_due(&mut self, queue: &mut PlayoutQueue, now: Instant) -> bool {
        let mut new_frame = false;
        while let Some(frame) = queue.pop_due(now) {
            for payload in &frame.payloads {
                if self.decoder.apply(payload).is_err() {
                    self.undecodable += 1;
                }
            }
            self.shown = frame.frame;
            new_frame = true;
        }
        new_frame
    }

    /// With the synthetic scene (or any source that stamps its pictures), the capture time is
    /// in the pixels: records capture to presentation, the playout delay left out. The stamp
    /// carries the capture frame number (the delay buffer renumbers frames, so it is not
    /// `shown`). The same stamp again is stale blocks left by a lost packet, not this frame's
    /// age.
    fn measure_latency(&mut self) {
        let stamp = keymash_media::stamp::read_stamp(self.decoder.frame())
            .filter(|s| self.last_stamp != Some(s.frame));
        if let Some(stamp) = stamp {
            self.last_stamp = Some(stamp.frame);
            let age_ms = stamp.age_ms(monotonic_now_ns()) as f64;
            self.latency_ms.record(age_ms - self.playout_delay_ms);
        }
    }
}

/// Everything the playback loop keeps between ticks, but the output.
struct Player {
    feed: Feed,
    mash_cell: Follow<CellReader<MashRecord>>,
    /// For the HUD's loss figure.
    net_rx_stats: Follow<CellReader<ServiceStats>>,
    queue: PlayoutQueue,
    clock: PresentClock,
    picture: Picture,
    timings: Timings,
    stats: StatsPublisher,
    curve: QualityCurve,
    hud: bool,
    mash: MashLevel,
    next_publish: Instant,
}

impl Player {
    fn open(config: &Config, geometry: FrameGeometry) -> anyhow::Result<Self> {
        let segments = Segments::new(config)?;
        let playout_delay = Duration::from_millis(u64::from(config.display.playout_delay_ms));
        Ok(Player {
            feed: Feed::new(segments.received()?.follow()),
            mash_cell: segments.mash_cell()?.follow(),
            net_rx_stats: segments.stats_cell(Service::NetRx)?.follow(),
            queue: PlayoutQueue::new(playout_delay, frame_interval(config.video.fps)),
            clock: PresentClock::new(config.video.fps, Instant::now()),
            picture: Picture::new(geometry, config.display.playout_delay_ms),
            timings: Timings::default(),
            stats: StatsPublisher::open(config, Service::Display, "frames", monotonic_now_ns())?,
            curve: QualityCurve::from_config(&config.quality),
            hud: config.display.hud,
            mash: MashLevel::IDLE,
            next_publish: Instant::now(),
        })
    }

    /// Takes in payloads until the next tick of the frame rate (or [`Lifecycle::MAX_WAIT`]).
    fn receive(&mut self) {
        let wait = self
            .clock
            .next_tick()
            .saturating_duration_since(Instant::now())
            .min(Lifecycle::MAX_WAIT);
        self.feed.drain(wait, &mut self.queue);
    }

    /// A tick: decodes the frames that are due and presents the picture with the glow and HUD.
    fn present(&mut self, now: Instant, output: &mut impl Output) -> anyhow::Result<()> {
        let decode_start = Instant::now();
        let new_frame = self.picture.decode_due(&mut self.queue, now);
        let decode_ms = ms_since(decode_start);
        if new_frame {
            self.picture.measure_latency();
        }
        self.mash = self
            .mash_cell
            .reader()
            .and_then(|cell| cell.load().ok())
            .map_or(MashLevel::IDLE, |record| {
                keymash_input::current_level(&record, monotonic_now_ns())
            });
        let hud = self.hud.then(|| self.hud_line(now));
        let present_start = Instant::now();
        output.present(&Presentation {
            picture: self.picture.decoder.frame(),
            frame: self.picture.shown,
            new_frame,
            mash: self.mash,
            hud: hud.as_deref(),
        })?;
        if new_frame {
            self.stats.count("frames", 1);
            self.timings.record(now, decode_ms, ms_since(present_start));
        }
        Ok(())
    }

    fn hud_line(&mut self, now: Instant) -> String {
        let loss_percent = self
            .net_rx_stats
            .reader()
            .and_then(|c| c.load().ok())
            .filter(|s| monotonic_now_ns().saturating_sub(s.heartbeat_ns()) < NET_RX_STALE_NS)
            .and_then(|s| s.gauge("loss_percent"));
        HudFigures {
            loss_percent,
            quality: self.curve.quality(self.mash),
            fps: self.timings.fps(now),
            mash: self.mash,
        }
        .line()
    }

    /// Publishes the statistics when due; returns the status line then. While an input is
    /// missing, the line starts with why.
    fn publish(&mut self, now: Instant) -> Option<String> {
        if now < self.next_publish {
            return None;
        }
        self.next_publish = now + PUBLISH_INTERVAL;
        let q = self.queue.stats();
        let fps = self.timings.fps(now);
        let (feed, picture, timings) = (&self.feed, &mut self.picture, &self.timings);
        let stats = &mut self.stats;
        stats.set_count("incomplete_frames", q.frames_incomplete);
        stats.set_count("joined_mid_frame", feed.joined_mid_frame());
        stats.set_count("late_payloads", q.payloads_late);
        stats.set_count("undecodable_payloads", feed.refused() + picture.undecodable);
        stats.set_count("ring_missed_payloads", feed.missed());
        stats.set_count("skipped_ticks", self.clock.skipped());
        stats.set_count(
            stat::DROPPED,
            q.payloads_late + q.frames_overflowed + feed.missed(),
        );
        stats.gauge("fps", fps);
        stats.gauge("decode_ms", Timings::mean(&timings.decode_ms));
        stats.gauge("present_ms", Timings::mean(&timings.present_ms));
        stats.gauge("mash", f64::from(self.mash.get()));
        stats.gauge("frame", picture.shown.0 as f64);
        let latency = &mut picture.latency_ms;
        if let (Some(p50), Some(p99)) = (latency.quantile(0.5), latency.quantile(0.99)) {
            stats.gauge("capture_to_present_p50_ms", p50);
            stats.gauge("capture_to_present_p99_ms", p99);
        }
        let mut line = String::new();
        for why in [feed.waiting(), self.mash_cell.waiting()]
            .into_iter()
            .flatten()
        {
            line.push_str(why);
            line.push_str("; ");
        }
        if timings.frames == 0 {
            line.push_str(&format!(
                "waiting for the stream (mash {:.2})",
                self.mash.get()
            ));
        } else {
            line.push_str(&format!(
                "frame {}, {fps:.1} fps, decode {:.2} ms, present {:.2} ms, {} incomplete frames, mash {:.2}",
                picture.shown,
                Timings::mean(&timings.decode_ms),
                Timings::mean(&timings.present_ms),
                q.frames_incomplete,
                self.mash.get()
            ));
        }
        stats.set_status_line(&line);
        stats.publish(monotonic_now_ns());
        Some(line)
    }
}

fn play(
    lifecycle: &mut Lifecycle,
    config: &Config,
    geometry: FrameGeometry,
    mut output: impl Output,
) -> anyhow::Result<()> {
    let mut player = Player::open(config, geometry)?;
    lifecycle.ready(&format!(
        "presenting {geometry} at {} fps to {}",
        config.video.fps,
        String::from(config.display.output.clone())
    ));
    player.stats.set_state(ServiceState::Running);
    while !lifecycle.stop_requested() {
        player.receive();
        let now = Instant::now();
        lifecycle.progress(now);
        if output.pump_events() {
            log::info!("window closed");
            break;
        }
        if !player.clock.tick(now) {
            continue;
        }
        player.present(now, &mut output)?;
        if let Some(line) = player.publish(now) {
            lifecycle.status(now, &line);
        }
    }
    Ok(())
}
