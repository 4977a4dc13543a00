//! The playback loop: payloads from the received ring into the playout queue; as soon as a
//! frame is due (its play time, which follows the network's jitter) it is decoded into the
//! persistent picture, which is then presented with the mash glow and the HUD. With no frame
//! due the picture is presented again once a frame interval (the glow follows the mash level,
//! the signal-lost card shows); a window output presents on the screen's vsync.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use keymash_codec::{Decoder, FrameGeometry, I420Frame, Simd};
use keymash_core::config::{Config, DisplayOutput};
use keymash_core::curves::QualityCurve;
use keymash_core::{FrameNo, MashLevel, Percentiles, Quality};
use keymash_pipeline::{stat, Follow, MashRecord, ScreenSlot, Segments, Service};
use keymash_present::playout::frame_interval;
use keymash_present::{
    compose_card, CameraLatency, DelayWatch, Evidence, FilterCounters, FrameAge, HudFigures,
    PlayoutBounds, PlayoutQueue, PresentClock, SignalState, SignalWatch, DELAY_OFF_PATIENCE,
};
use keymash_service::{Lifecycle, StatsPublisher};
use keymash_shm::{monotonic_now_ns, CellReader, ServiceState, ServiceStats};

use crate::feed::Feed;
use crate::output::{FramesOutput, Output, Presentation, Y4mOutput};
use crate::screen::ScreenPublisher;
use crate::window::{Screen, WindowOutput};

/// Figures averaged over this many presentations for the status line and the gauges.
const TIMING_WINDOW: usize = 60;
/// Capture-to-present latency percentiles over this many stamped frames (10 s at 30 fps).
const LATENCY_WINDOW: usize = 300;
/// Statistics and the status line are refreshed this often.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);
/// A net-rx statistics cell older than this is not shown in the HUD (net-rx is down).
const NET_RX_STALE_NS: u64 = 2_000_000_000;
/// The same for loss-controller's cell, read for its kernel counters when the signal is lost.
const LOSS_CONTROLLER_STALE_NS: u64 = 2_000_000_000;
/// The card's name in the headless outputs (a Y4M tag, a file name).
const SIGNAL_LOST_CARD: &str = "signal-lost";

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

/// The frames one presentation applied.
#[derive(Debug, Clone, Copy)]
struct Applied {
    /// The first payload arrival of the first of them (how long the picture took to come back
    /// after a loss counts from it).
    first_arrival: Instant,
    /// The last payload arrival of the newest of them (its playout hold counts from it).
    last_arrival: Instant,
    /// When they were taken from the playout queue.
    released: Instant,
}

/// The persistent picture: due frames decoded into it (blocks of lost packets keep their old
/// content), and how old the frames it shows were.
struct Picture {
    decoder: Decoder,
    /// The newest frame applied.
    shown: FrameNo,
    /// The quality the newest frame was coded at, and how many of its payloads arrived of how
    /// many it was sent as (for the screen segment).
    shown_quality: Option<Quality>,
    shown_payloads: (u16, u16),
    undecodable: u64,
    /// Capture to presentation, everything included (the playout hold too).
    latency_ms: Percentiles,
    /// Capture to the frame's last payload arriving at net-rx.
    to_arrival_ms: Percentiles,
    /// The frame's last payload arriving to its release from the playout queue.
    hold_ms: Percentiles,
    last_stamp: Option<u32>,
    /// The newest frame applied, by the sender's account of its age (header extension).
    age: Option<FrameAge>,
    /// Camera to presentation from the header extension, everything included (the delay, the
    /// playout hold), for any camera; and the measured delay against `delay.seconds`.
    camera: CameraLatency,
}

impl Picture {
    fn new(geometry: FrameGeometry, simd: Simd, delay: DelayWatch) -> Self {
        Picture {
            age: None,
            camera: CameraLatency::new(LATENCY_WINDOW, delay),
            decoder: Decoder::with_simd(geometry, simd),
            shown: FrameNo(0),
            shown_quality: None,
            shown_payloads: (0, 0),
            undecodable: 0,
            latency_ms: Percentiles::new(LATENCY_WINDOW),
            to_arrival_ms: Percentiles::new(LATENCY_WINDOW),
            hold_ms: Percentiles::new(LATENCY_WINDOW),
            last_stamp: None,
        }
    }

    /// Applies every frame that is due at `now`.
    fn decode_due(&mut self, queue: &mut PlayoutQueue, now: Instant) -> Option<Applied> {
        let mut applied: Option<Applied> = None;
        while let Some(frame) = queue.pop_due(now) {
            let mut quality = None;
            for payload in &frame.payloads {
                match self.decoder.apply(payload) {
                    Ok(info) => quality = info.quality.or(quality),
                    Err(_) => self.undecodable += 1,
                }
            }
            self.shown = frame.frame;
            self.shown_quality = quality;
            let arrived = u16::try_from(frame.payloads.len()).unwrap_or(u16::MAX);
            self.shown_payloads = (arrived, frame.payload_count);
            self.age = frame.age;
            applied = Some(Applied {
                first_arrival: applied.map_or(frame.first_arrival, |a| a.first_arrival),
                last_arrival: frame.last_arrival,
                released: now,
            });
        }
        if let Some(a) = applied {
            let held = a.released.saturating_duration_since(a.last_arrival);
            self.hold_ms.record(held.as_secs_f64() * 1e3);
        }
        applied
    }

    /// With the synthetic scene (or any source that stamps its pictures), the capture time is
    /// in the pixels: records capture to presentation (called just after presenting) and
    /// capture to arrival. The stamp carries the capture frame number (the delay buffer
    /// renumbers frames, so it is not `shown`). The same stamp again is stale blocks left by a
    /// lost packet, not this frame's age.
    ///
    /// With any camera, the sender's account of the frame's age (header extension) gives
    /// camera to presentation too, and the delay it is shown with.
    fn measure_latency(&mut self, applied: &Applied) {
        if let Some(change) = self
            .age
            .take()
            .and_then(|age| self.camera.shown(Instant::now(), age))
        {
            match change.is_off() {
                true => log::warn!("{change}"),
                false => log::info!("{change}"),
            }
        }
        let stamp = keymash_media::stamp::read_stamp(self.decoder.frame())
            .filter(|s| self.last_stamp != Some(s.frame));
        if let Some(stamp) = stamp {
            self.last_stamp = Some(stamp.frame);
            let age_ms = stamp.age_ms(monotonic_now_ns()) as f64;
            let since_arrival_ms = applied.last_arrival.elapsed().as_secs_f64() * 1e3;
            self.latency_ms.record(age_ms);
            self.to_arrival_ms.record(age_ms - since_arrival_ms);
        }
    }
}

/// The signal-lost card as shown: composed once when it first shows (and again if its reason
/// changes), not every tick, since the picture under it no longer changes.
struct Card {
    picture: I420Frame,
    /// The lines on the card while it shows.
    lines: Option<[&'static str; 2]>,
    /// First arrival of the frame that ended the last loss to its presentation.
    last_return_ms: Option<f64>,
}

impl Card {
    fn new(geometry: FrameGeometry) -> Self {
        Card {
            picture: I420Frame::grey(geometry),
            lines: None,
            last_return_ms: None,
        }
    }

    /// Follows `signal`, composing the card over `last` (the last picture shown) when it first
    /// shows or its text changes; true then, so the headless outputs write it.
    fn update(&mut self, signal: &SignalState, last: &I420Frame) -> bool {
        let (SignalState::Lost { why, .. }, Some(title)) = (signal, signal.card_title()) else {
            self.lines = None;
            return false;
        };
        let lines = [title, why.card_line()];
        if self.lines == Some(lines) {
            return false;
        }
        match self.lines {
            None => log::warn!(
                "{}: showing the signal-lost card ({why})",
                title.to_lowercase()
            ),
            Some(_) => log::info!("signal still lost, now: {why}"),
        }
        if !compose_card(last.view(), &lines, &mut self.picture) {
            // Both are the stream's geometry; should that ever differ, the plain dimmed grey
            // card still says it.
            log::error!(
                "the card is {}, the picture {}",
                self.picture.geometry(),
                last.geometry()
            );
        }
        self.lines = Some(lines);
        true
    }

    fn showing(&self) -> Option<&I420Frame> {
        self.lines.map(|_| &self.picture)
    }

    /// Frame `frame`, whose first payload arrived at `arrival`, ended a loss at `now`; the card
    /// had shown for `card_shown`.
    fn returned(&mut self, now: Instant, arrival: Instant, card_shown: Duration, frame: FrameNo) {
        let ms = now.saturating_duration_since(arrival).as_secs_f64() * 1e3;
        self.last_return_ms = Some(ms);
        log::info!(
            "signal back: frame {frame} on screen {ms:.1} ms after its first packet arrived, after {:.1} s of the card",
            card_shown.as_secs_f64()
        );
    }
}

/// Everything the playback loop keeps between ticks, but the output.
struct Player {
    feed: Feed,
    mash_cell: Follow<CellReader<MashRecord>>,
    /// For the HUD's loss figure, and whether packets arrive while no frame does.
    net_rx_stats: Follow<CellReader<ServiceStats>>,
    /// The loss filter's kernel counters: whether packets arrive only to be dropped.
    loss_stats: Follow<CellReader<ServiceStats>>,
    signal: SignalWatch,
    /// The signal-lost card, composed when it first shows or its text changes.
    card: Card,
    queue: PlayoutQueue,
    clock: PresentClock,
    picture: Picture,
    timings: Timings,
    stats: StatsPublisher,
    /// The screen segment (`display.publish_picture`).
    screen: Option<ScreenPublisher>,
    curve: QualityCurve,
    hud: bool,
    mash: MashLevel,
    next_publish: Instant,
}

impl Player {
    fn open(config: &Config, geometry: FrameGeometry) -> anyhow::Result<Self> {
        let segments = Segments::new(config)?;
        let playout =
            PlayoutBounds::from_ms(config.display.playout_min_ms, config.display.playout_max_ms);
        Ok(Player {
            feed: Feed::new(segments.received()?.follow()),
            mash_cell: segments.mash_cell()?.follow(),
            net_rx_stats: segments.stats_cell(Service::NetRx)?.follow(),
            loss_stats: segments.stats_cell(Service::LossController)?.follow(),
            signal: SignalWatch::new(
                Duration::from_millis(u64::from(config.display.signal_lost_ms)),
                Instant::now(),
            ),
            card: Card::new(geometry),
            queue: PlayoutQueue::new(playout, frame_interval(config.video.fps)),
            clock: PresentClock::new(config.video.fps, Instant::now()),
            picture: Picture::new(
                geometry,
                // The widest vector unit the CPU has, unless KEYMASH_CODEC_SIMD names another.
                Simd::from_env()?,
                DelayWatch::new(
                    Duration::from_secs_f64(config.delay.seconds),
                    frame_interval(config.video.fps),
                    DELAY_OFF_PATIENCE,
                ),
            ),
            timings: Timings::default(),
            stats: StatsPublisher::open(config, Service::Display, "frames", monotonic_now_ns())?,
            screen: match config.display.publish_picture {
                true => Some(ScreenPublisher::open(&segments, config.video.clone())?),
                false => None,
            },
            curve: QualityCurve::from_config(&config.quality),
            hud: config.display.hud,
            mash: MashLevel::IDLE,
            next_publish: Instant::now(),
        })
    }

    /// Takes in payloads until the next frame is due or the picture is to be presented again
    /// (or [`Lifecycle::MAX_WAIT`]); returns at the first payloads that come.
    fn receive(&mut self) {
        let until = match self.queue.next_due() {
            Some(due) => due.min(self.clock.next_tick()),
            None => self.clock.next_tick(),
        };
        let wait = until
            .saturating_duration_since(Instant::now())
            .min(Lifecycle::MAX_WAIT);
        self.feed.drain(wait, &mut self.queue);
    }

    /// Whether to present at `now`: a frame is due, or no presentation for a frame interval.
    fn due(&mut self, now: Instant) -> bool {
        let frame_due = self.queue.next_due().is_some_and(|due| due <= now);
        // `tick` moves the refresh clock on; a frame due presents whatever the clock says.
        self.clock.tick(now) || frame_due
    }

    /// Decodes the frames that are due and presents the picture with the glow and HUD, or the
    /// signal-lost card when no frame has come for `display.signal_lost_ms`.
    fn present(&mut self, now: Instant, output: &mut impl Output) -> anyhow::Result<()> {
        let decode_start = Instant::now();
        let applied = self.picture.decode_due(&mut self.queue, now);
        let new_frame = applied.is_some();
        let decode_ms = ms_since(decode_start);
        let evidence = self.evidence();
        self.signal.observe(now, evidence);
        if let Some(applied) = &applied {
            if let Some(card_shown) = self.signal.frame_shown(now) {
                self.card
                    .returned(now, applied.first_arrival, card_shown, self.picture.shown);
            }
        }
        let signal = self.signal.update(now);
        let card_changed = self.card.update(&signal, self.picture.decoder.frame());
        if card_changed && signal.is_lost() {
            // The sender that comes back may number its frames from lower down (a rebooted
            // PC): take its first frame rather than refuse it as late.
            self.queue.forget_shown();
        }
        self.mash = self
            .mash_cell
            .reader()
            .and_then(|cell| cell.load().ok())
            .map_or(MashLevel::IDLE, |record| {
                keymash_input::current_level(&record, monotonic_now_ns())
            });
        let hud = self.hud.then(|| self.hud_line(now, signal.is_lost()));
        let present_start = Instant::now();
        output.present(&Presentation {
            picture: match self.card.showing() {
                Some(card) => card,
                None => self.picture.decoder.frame(),
            },
            frame: self.picture.shown,
            new_frame,
            card: self.card.showing().map(|_| SIGNAL_LOST_CARD),
            card_changed,
            mash: self.mash,
            hud: hud.as_deref(),
        })?;
        if let Some(screen) = self.screen.as_mut().filter(|_| new_frame || card_changed) {
            let picture = &self.picture;
            let card = self.card.showing();
            screen.publish(
                card.unwrap_or(picture.decoder.frame()),
                &ScreenSlot {
                    frame: picture.shown,
                    presented_ns: monotonic_now_ns(),
                    quality: picture.shown_quality.filter(|_| card.is_none()),
                    payloads_arrived: picture.shown_payloads.0,
                    payloads_total: picture.shown_payloads.1,
                    card: card.is_some(),
                },
            );
        }
        if let Some(applied) = &applied {
            self.picture.measure_latency(applied);
            self.stats.count("frames", 1);
            self.timings.record(now, decode_ms, ms_since(present_start));
            // The next refresh is a frame interval after this presentation, not after the
            // last refresh.
            self.clock.presented(Instant::now());
        }
        Ok(())
    }

    /// What net-rx and the loss filter count now, for the signal-lost decision. A stale cell
    /// (its stage stopped) counts as none; the follower then looks for a replaced one.
    fn evidence(&mut self) -> Evidence {
        let now_ns = monotonic_now_ns();
        let fresh = |follow: &mut Follow<CellReader<ServiceStats>>, stale_ns: u64| {
            let stats = follow
                .reader()
                .and_then(|c| c.load().ok())
                .filter(|s| now_ns.saturating_sub(s.heartbeat_ns()) < stale_ns);
            if stats.is_none() {
                follow.silent();
            }
            stats
        };
        let net_rx = fresh(&mut self.net_rx_stats, NET_RX_STALE_NS);
        let filter = fresh(&mut self.loss_stats, LOSS_CONTROLLER_STALE_NS);
        Evidence {
            net_rx_packets: net_rx.and_then(|s| s.counter("packets")),
            filter: filter.and_then(|s| {
                Some(FilterCounters {
                    seen: s.counter("seen")?,
                    dropped: s.counter(stat::DROPPED)?,
                })
            }),
        }
    }

    /// The HUD line; while the signal is lost the loss figure is left out (`loss -%`): net-rx's
    /// 0.0% of no packets at all is not a live figure.
    fn hud_line(&mut self, now: Instant, signal_lost: bool) -> String {
        let loss_percent = self
            .net_rx_stats
            .reader()
            .and_then(|c| c.load().ok())
            .filter(|s| monotonic_now_ns().saturating_sub(s.heartbeat_ns()) < NET_RX_STALE_NS)
            .and_then(|s| s.gauge("loss_percent"))
            .filter(|_| !signal_lost);
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
        if let Some(screen) = &self.screen {
            screen.heartbeat();
            stats.set_count("screen_published", screen.published());
            stats.set_count("screen_publish_us", screen.spent_us());
        }
        stats.set_count(
            stat::DROPPED,
            q.payloads_late + q.frames_overflowed + feed.missed(),
        );
        stats.gauge("fps", fps);
        stats.gauge("decode_ms", Timings::mean(&timings.decode_ms));
        stats.gauge("present_ms", Timings::mean(&timings.present_ms));
        stats.gauge("mash", f64::from(self.mash.get()));
        let signal = self.signal.state(now);
        stats.set_count("signal_lost", self.signal.losses());
        stats.gauge(
            "signal_lost_s",
            match signal {
                SignalState::Lost { silent_for, .. } => silent_for.as_secs_f64(),
                SignalState::Live => 0.0,
            },
        );
        if let Some(ms) = self.card.last_return_ms {
            stats.gauge("signal_return_ms", ms);
        }
        let latency = &mut picture.latency_ms;
        if let (Some(p50), Some(p99)) = (latency.quantile(0.5), latency.quantile(0.99)) {
            stats.gauge("capture_to_present_p50_ms", p50);
            stats.gauge("capture_to_present_p99_ms", p99);
        }
        if let Some(p50) = picture.to_arrival_ms.quantile(0.5) {
            stats.gauge("capture_to_arrival_p50_ms", p50);
        }
        if let Some(p50) = picture.hold_ms.quantile(0.5) {
            stats.gauge("playout_hold_p50_ms", p50);
        }
        stats.gauge("playout_target_ms", self.queue.hold().as_secs_f64() * 1e3);
        for (name, value) in picture.camera.gauges() {
            stats.gauge(name, value);
        }
        let mut line = String::new();
        // The screen's state leads: the 128 bytes of a status line may not hold the rest.
        if let SignalState::Lost {
            silent_for,
            why,
            ever_live,
        } = signal
        {
            let what = if ever_live {
                "signal lost"
            } else {
                "no signal yet"
            };
            line.push_str(&format!(
                "{what} {:.1} s: {why}; ",
                silent_for.as_secs_f64()
            ));
        }
        if let Some(warning) = picture.camera.warning() {
            line.push_str(&warning);
            line.push_str("; ");
        }
        for why in [feed.waiting(), self.mash_cell.waiting()]
            .into_iter()
            .flatten()
        {
            line.push_str(why);
            line.push_str("; ");
        }
        if signal.is_lost() && timings.frames > 0 {
            line.push_str(&format!(
                "showing the card since frame {}, mash {:.2}",
                picture.shown,
                self.mash.get()
            ));
        } else if timings.frames == 0 {
            line.push_str(&format!(
                "waiting for the stream (mash {:.2})",
                self.mash.get()
            ));
        } else {
            // Camera to screen and the delay first: they are what the line is read for.
            if let Some(figures) = picture.camera.figures() {
                line.push_str(&figures);
                line.push_str(", ");
            }
            line.push_str(&format!(
                "frame {}, {fps:.1} fps, hold {:.1} ms, decode {:.2} ms, present {:.2} ms, {} incomplete frames, mash {:.2}",
                picture.shown,
                self.queue.hold().as_secs_f64() * 1e3,
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
        if !player.due(now) {
            continue;
        }
        player.present(now, &mut output)?;
        if let Some(line) = player.publish(now) {
            lifecycle.status(now, &line);
        }
    }
    Ok(())
}
