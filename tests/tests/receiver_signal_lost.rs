//! A screen that never lies: the whole installation in two network namespaces (the four sender
//! services in one, net-rx, display and the eBPF loss filter in the other), the display writing
//! its pictures to a Y4M file.
//!
//! - net-tx stopped (SIGSTOP) for 3 s, then continued; then killed, and started again 3 s later
//!   (a new RTP stream, new SSRC). Each time, the display's output shows the signal-lost card
//!   (the last picture dimmed, "SIGNAL LOST - RECONNECTING" and "SENDER SILENT - NO PACKETS
//!   ARRIVE", checked pixel by pixel) within 1.2 s of the last live picture and not before the
//!   configured second; the status line says "signal lost" and why; and live pictures come back
//!   by themselves, within one frame interval of the first packet arriving (the display's own
//!   figure, `signal_return_ms`, with a margin for a loaded machine): the playout starts its
//!   jitter measurement over at the least hold.
//! - A filter that drops every video packet: the card says so ("ALL PACKETS DROPPED BY THE LOSS
//!   FILTER"), told from the kernel's counters, and so does the status line.
//!
//! When each picture appeared is taken by a thread that watches the output file grow (every
//! 2 ms); the display flushes each picture whole.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keymash_codec::{FrameGeometry, I420Frame};
use keymash_pipeline::Service;
use keymash_present::{card_layout, draw_text, text_width, LostReason, GLYPH_HEIGHT};
use keymash_shm::{CellReader, ServiceStats};
use keymash_tests::receiver::{
    crop_picture, read_y4m_pictures, ReceiverSetup, RunningService, Y4mPicture,
};
use keymash_tests::{require_root, Netns, NetnsPair};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SIGNAL_LOST_MS: u64 = 1000;
/// The bound: the card within 1.2 s of the last live picture.
const CARD_WITHIN: Duration = Duration::from_millis(1200);
const SILENCE: Duration = Duration::from_secs(3);
const PLAYOUT_MAX_MS: u64 = 30;
const FPS: u64 = 30;
const BORDER: usize = 16;
/// What a loaded machine (two cores, `stress-ng --cpu 2` beside a debug build) may add to the
/// product's own return time: a late wake-up of the display (the least hold, 2 ms, is in it).
const LOADED_MARGIN: Duration = Duration::from_millis(50);
/// Bounds on every wait, so a broken product fails the test instead of hanging it.
const STREAM_WITHIN: Duration = Duration::from_secs(30);
const RETURN_WITHIN: Duration = Duration::from_secs(10);

/// The two whole-pipeline tests share two cores: one at a time, so neither's timing suffers
/// from the other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn frame_interval() -> Duration {
    Duration::from_nanos(1_000_000_000 / FPS)
}

/// Watches the display's output file grow: (length, when first seen).
struct OutputWatch {
    stop: Arc<AtomicBool>,
    sizes: Arc<Mutex<Vec<(u64, Instant)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OutputWatch {
    fn start(path: PathBuf) -> OutputWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, sizes) = (stop.clone(), sizes.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(m) = std::fs::metadata(&path) {
                        if m.len() != last {
                            last = m.len();
                            if let Ok(mut sizes) = sizes.lock() {
                                sizes.push((last, Instant::now()));
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        OutputWatch {
            stop,
            sizes,
            thread: Some(thread),
        }
    }

    /// When the file first held `picture` whole.
    fn appeared(&self, picture: &Y4mPicture) -> Instant {
        self.sizes
            .lock()
            .expect("size log")
            .iter()
            .find(|(len, _)| *len >= picture.end)
            .map(|(_, at)| *at)
            .expect("the watcher saw the picture written")
    }
}

impl Drop for OutputWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The whole installation; every process is killed and the namespaces, segments and files are
/// removed when it drops, whatever the test's outcome.
struct Installation {
    services: Vec<(&'static str, RunningService)>,
    setup: ReceiverSetup,
    pair: NetnsPair,
}

impl Installation {
    /// `loss` goes into the `[loss]` section (`ReceiverSetup::two_pcs` ends its configuration's
    /// first lines with that section open).
    fn start(tag: &str, loss: &str) -> Installation {
        let pair = NetnsPair::create(tag).expect("network namespaces");
        let setup = ReceiverSetup::two_pcs(
            tag,
            &format!(
                "{loss}\n[display]\noutput = \"y4m:{{dir}}/shown.y4m\"\nglow_border_px = {BORDER}\n\
                 playout_max_ms = {PLAYOUT_MAX_MS}\nsignal_lost_ms = {SIGNAL_LOST_MS}\n"
            ),
        );
        let mut installation = Installation {
            services: Vec::new(),
            setup,
            pair,
        };
        for (right, service) in [
            (true, "keymash-loss-controller"),
            (true, "keymash-net-rx"),
            (true, "keymash-display"),
            (false, "keymash-capture"),
            (false, "keymash-delay-buffer"),
            (false, "keymash-encoder"),
            (false, "keymash-net-tx"),
        ] {
            installation.start_service(right, service);
        }
        installation
    }

    fn start_service(&mut self, right: bool, service: &'static str) {
        let ns: &Netns = if right {
            &self.pair.right
        } else {
            &self.pair.left
        };
        let running = self.setup.start_in(ns, service, &[]);
        self.services.push((service, running));
    }

    fn pid(&self, service: &str) -> Pid {
        let (_, running) = self
            .services
            .iter()
            .find(|(name, _)| *name == service)
            .expect("service started");
        Pid::from_raw(running.pid() as i32)
    }

    fn kill_hard(&mut self, service: &str) {
        let at = self
            .services
            .iter()
            .position(|(name, _)| *name == service)
            .expect("service started");
        let (_, mut running) = self.services.remove(at);
        running.kill_hard().expect("kill -9");
    }

    fn output(&self) -> PathBuf {
        self.setup.dir.join("shown.y4m")
    }

    /// The pictures written so far (none before the display flushed its first picture, which
    /// carries the stream header out with it).
    fn pictures(&self) -> Vec<Y4mPicture> {
        let header_written = std::fs::read(self.output())
            .map(|bytes| bytes.contains(&b'\n'))
            .unwrap_or(false);
        if header_written {
            read_y4m_pictures(&self.output())
        } else {
            Vec::new()
        }
    }

    fn display_stats(&self) -> Option<ServiceStats> {
        self.stats(Service::Display)
    }

    fn stats(&self, service: Service) -> Option<ServiceStats> {
        CellReader::<ServiceStats>::open(&self.setup.segment(&service.stats_cell()))
            .ok()?
            .load()
            .ok()
    }

    /// The display's statistics as first published after `ns` (CLOCK_MONOTONIC), waited for.
    fn display_stats_after(&self, ns: u64) -> ServiceStats {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(stats) = self.display_stats().filter(|s| s.heartbeat_ns() > ns) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "the display published no statistics for 5 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until `count` live pictures were written after picture `from`; returns all
    /// pictures.
    fn wait_live_pictures(&self, from: usize, count: usize, within: Duration) -> Vec<Y4mPicture> {
        let deadline = Instant::now() + within;
        loop {
            let pictures = self.pictures();
            let live = pictures
                .iter()
                .skip(from)
                .filter(|p| p.card.is_none())
                .count();
            if live >= count {
                return pictures;
            }
            assert!(
                Instant::now() < deadline,
                "only {live} live pictures after picture {from} within {within:?}; display status: {:?}",
                self.display_stats().map(|s| s.status_line().to_owned())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The display's status line once it says `what` (waited for, bounded), else the panic says
    /// what it said instead.
    fn status_saying(&self, what: &[&str], within: Duration) -> String {
        self.status_of_saying(Service::Display, what, within)
    }

    fn status_of_saying(&self, service: Service, what: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let line = self
                .stats(service)
                .map(|s| s.status_line().to_owned())
                .unwrap_or_default();
            if what.iter().all(|w| line.contains(w)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "{service}'s status did not say {what:?} within {within:?}: {line:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Installation {
    fn drop(&mut self) {
        // A stopped net-tx is killed as it is (SIGKILL needs no SIGCONT); the sender services
        // go first, then the receiver's, then the namespaces (`pair`) and the setup.
        while let Some((_, mut running)) = self.services.pop() {
            let _ = running.kill_hard();
        }
    }
}

/// Checks `card` (a whole headless canvas) pixel by pixel: inside the picture area, the text
/// boxes hold exactly `lines` drawn as the card lays them out, and every other sample is
/// `last`'s (the last live picture's) dimmed to a quarter of its contrast. Returns what differs.
fn card_mismatch(card: &I420Frame, last: &I420Frame, lines: &[&str]) -> Option<String> {
    let geometry = FrameGeometry::new(320, 240).expect("picture geometry");
    let (card, last) = (
        crop_picture(card, BORDER, geometry),
        crop_picture(last, BORDER, geometry),
    );
    let (w, h) = (geometry.width(), geometry.height());
    let layout = card_layout(w, h, lines);
    // The text as the card must show it: drawn onto a plane of a value no box pixel has.
    let mut text = vec![77u8; w * h];
    for (line, &(x, y, scale)) in lines.iter().zip(&layout) {
        draw_text(&mut text, w, h, x, y, line, scale);
    }
    let in_box = |px: usize, py: usize| {
        lines.iter().zip(&layout).any(|(line, &(x, y, s))| {
            (x..x + text_width(line, s) + 2 * s).contains(&px)
                && (y..y + (GLYPH_HEIGHT + 2) * s).contains(&py)
        })
    };
    let dim = |v: u8| (16 + ((i32::from(v) - 16) >> 2)) as u8;
    let (mut text_wrong, mut dim_wrong) = (0usize, 0usize);
    for py in 0..h {
        for px in 0..w {
            let (got, i) = (card.y()[py * w + px], py * w + px);
            if in_box(px, py) {
                text_wrong += usize::from(got != text[i]);
            } else {
                dim_wrong += usize::from(got != dim(last.y()[i]));
            }
        }
    }
    (text_wrong + dim_wrong > 0).then(|| {
        format!(
            "{text_wrong} text samples differ from {lines:?}, {dim_wrong} picture samples are not the last picture dimmed"
        )
    })
}

/// One silence of the sender: the pictures written from `before` on, checked and measured.
/// Returns (last live picture to card, first packet back to the live picture as the display
/// measured it).
fn check_silence(
    installation: &Installation,
    watch: &OutputWatch,
    before: usize,
    resumed: Instant,
    what: &str,
) -> (Duration, Duration) {
    let pictures = installation.wait_live_pictures(before, 10, RETURN_WITHIN);
    // From the last picture written before the sender went quiet: on a loaded machine no frame
    // may be in flight then, and that one is the last live picture.
    let after = &pictures[before.saturating_sub(1)..];
    let first_card = after
        .iter()
        .position(|p| p.card.is_some())
        .unwrap_or_else(|| panic!("{what}: no signal-lost card was written"));
    assert!(
        first_card > 0,
        "{what}: the screen showed a card already before the sender went quiet"
    );
    let (last_live, card) = (&after[first_card - 1], &after[first_card]);
    assert_eq!(
        card.card.as_deref(),
        Some("signal-lost"),
        "{what}: card name"
    );
    assert_eq!(
        card.frame, last_live.frame,
        "{what}: the card is tagged with the last frame shown"
    );
    let lines = [
        "SIGNAL LOST - RECONNECTING",
        LostReason::SenderSilent.card_line(),
    ];
    if let Some(wrong) = card_mismatch(&card.picture, &last_live.picture, &lines) {
        panic!("{what}: the card is not the last picture dimmed with {lines:?}: {wrong}");
    }
    let to_card = watch
        .appeared(card)
        .saturating_duration_since(watch.appeared(last_live));
    assert!(
        to_card <= CARD_WITHIN,
        "{what}: the card appeared {to_card:?} after the last live picture (at most {CARD_WITHIN:?})"
    );
    // Not a moment early either: a frame interval of scheduling noise below the configured time.
    assert!(
        to_card + frame_interval() >= Duration::from_millis(SIGNAL_LOST_MS),
        "{what}: the card appeared only {to_card:?} after the last live picture ({SIGNAL_LOST_MS} ms configured)"
    );
    // From the card to the first live picture: cards only (a new reason would be a new card).
    let back = after[first_card..]
        .iter()
        .position(|p| p.card.is_none())
        .map(|i| first_card + i)
        .expect("live pictures after the card");
    // Every card of the silence says the same: a sender coming back is not called anything else
    // for the moment before its first frame shows.
    for later in &after[first_card + 1..back] {
        if let Some(wrong) = card_mismatch(&later.picture, &last_live.picture, &lines) {
            panic!(
                "{what}: a later card of the same silence differs ({:?}): {wrong}",
                later.card
            );
        }
    }
    let first_live = &after[back];
    assert!(
        first_live.frame > last_live.frame,
        "{what}: the picture after the card is frame {} (before it: {})",
        first_live.frame,
        last_live.frame
    );
    assert!(
        after[back..]
            .windows(2)
            .all(|w| w[0].card.is_none() && w[1].card.is_none() && w[1].frame > w[0].frame),
        "{what}: after the return the pictures are live frames in order: {:?}",
        after[back..]
            .iter()
            .map(|p| (p.frame, p.card.clone()))
            .collect::<Vec<_>>()
    );
    let shown_after_resume = watch
        .appeared(first_live)
        .saturating_duration_since(resumed);
    let stats = installation.display_stats_after(keymash_shm::monotonic_now_ns());
    let return_ms = stats
        .gauge("signal_return_ms")
        .expect("the display published signal_return_ms");
    let returned = Duration::from_secs_f64(return_ms / 1e3);
    eprintln!(
        "{what}: card {:.0} ms after the last live picture (configured {SIGNAL_LOST_MS} ms); live again {return_ms:.1} ms \
         after the first packet arrived (bound: one {:.1} ms frame interval + {} ms for a loaded machine), \
         {:.0} ms after net-tx was back; {} card pictures",
        to_card.as_secs_f64() * 1e3,
        frame_interval().as_secs_f64() * 1e3,
        LOADED_MARGIN.as_millis(),
        shown_after_resume.as_secs_f64() * 1e3,
        back - first_card
    );
    let bound = frame_interval() + LOADED_MARGIN;
    assert!(
        returned <= bound,
        "{what}: the live picture came back {returned:?} after the first packet arrived (at most {bound:?})"
    );
    (to_card, returned)
}

#[test]
fn a_stopped_or_restarted_sender_shows_the_signal_lost_card_and_the_picture_comes_back_by_itself() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // The filter passes everything: its counters still show it saw no packet.
    let mut installation = Installation::start("rx-siglost", "drop_at_rest = 0.0");
    let watch = OutputWatch::start(installation.output());
    installation.wait_live_pictures(0, 30, STREAM_WITHIN);
    let losses_at_start = installation
        .display_stats()
        .and_then(|s| s.counter("signal_lost"))
        .unwrap_or(0);

    // SIGSTOP: the sender just goes quiet (a hung PC, a pulled cable).
    let net_tx = installation.pid("keymash-net-tx");
    let before = installation.pictures().len();
    kill(net_tx, Signal::SIGSTOP).expect("SIGSTOP net-tx");
    let stopped = Instant::now();
    let status = installation.status_saying(&["signal lost", "sender silent"], SILENCE);
    assert!(
        !status.contains("loss 0.0%"),
        "the status shows a live loss figure while the signal is lost: {status:?}"
    );
    // net-rx's own line says there is no video, not "loss 0.0%" of nothing.
    let net_rx_status =
        installation.status_of_saying(Service::NetRx, &["no video", "sender silent"], SILENCE);
    assert!(
        !net_rx_status.contains("loss 0.0%"),
        "net-rx shows a loss figure while no video arrives: {net_rx_status:?}"
    );
    if let Some(wait) = (stopped + SILENCE).checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    kill(net_tx, Signal::SIGCONT).expect("SIGCONT net-tx");
    let resumed = Instant::now();
    let stop_figures = check_silence(&installation, &watch, before, resumed, "net-tx stopped");

    // kill -9 and a start 3 s later: a new net-tx, a new RTP stream (SSRC) to follow.
    let before = installation.pictures().len();
    installation.kill_hard("keymash-net-tx");
    let killed = Instant::now();
    installation.status_saying(&["signal lost", "sender silent"], SILENCE);
    if let Some(wait) = (killed + SILENCE).checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    installation.start_service(false, "keymash-net-tx");
    let restarted = Instant::now();
    let restart_figures =
        check_silence(&installation, &watch, before, restarted, "net-tx restarted");

    let losses = installation
        .display_stats()
        .and_then(|s| s.counter("signal_lost"))
        .unwrap_or(0);
    assert_eq!(
        losses - losses_at_start,
        2,
        "the display counted {} losses for two silences",
        losses - losses_at_start
    );
    eprintln!("figures (to card, back after first arrival): stopped {stop_figures:?}, restarted {restart_figures:?}");
}

#[test]
fn a_filter_that_drops_every_packet_is_named_on_the_card_and_in_the_status() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let installation = Installation::start("rx-sigdrop", "drop_at_rest = 1.0");
    let why = LostReason::AllDropped;
    // The card the display writes while no frame ever came: waited for, bounded.
    let deadline = Instant::now() + STREAM_WITHIN;
    let lines = ["NO SIGNAL YET - WAITING FOR THE SENDER", why.card_line()];
    let card = loop {
        let found = installation
            .pictures()
            .into_iter()
            .rev()
            .find(|p| p.card.is_some());
        if let Some(card) = found.filter(|c| card_text_reads(&c.picture, &lines)) {
            break card;
        }
        assert!(
            Instant::now() < deadline,
            "no card saying {lines:?} within {STREAM_WITHIN:?}; display status: {:?}",
            installation
                .display_stats()
                .map(|s| s.status_line().to_owned())
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // No frame was ever shown: the picture under the text is the display's grey start picture.
    let grey = I420Frame::grey(
        FrameGeometry::new(320 + 2 * BORDER, 240 + 2 * BORDER).expect("canvas geometry"),
    );
    if let Some(wrong) = card_mismatch(&card.picture, &grey, &lines) {
        panic!("the card is not the grey start picture dimmed with {lines:?}: {wrong}");
    }
    assert!(
        installation.pictures().iter().all(|p| p.card.is_some()),
        "a live picture was shown although the filter drops every packet"
    );
    let status = installation.status_saying(&["no signal yet", why.phrase()], SILENCE);
    let seen = installation
        .setup
        .counter(Service::LossController, "seen")
        .unwrap_or(0);
    assert!(seen > 0, "the filter saw no video packet at all");
    eprintln!(
        "all dropped: card {:?} for frame {}; status {status:?}; the filter saw {seen} packets",
        lines, card.frame
    );
}

/// Whether `card`'s text reads `lines` (the rest is checked once it does).
fn card_text_reads(card: &I420Frame, lines: &[&str]) -> bool {
    let geometry = FrameGeometry::new(320, 240).expect("picture geometry");
    let picture = crop_picture(card, BORDER, geometry);
    let (w, h) = (geometry.width(), geometry.height());
    let mut text = vec![77u8; w * h];
    for (line, (x, y, scale)) in lines.iter().zip(card_layout(w, h, lines)) {
        draw_text(&mut text, w, h, x, y, line, scale);
    }
    text.iter()
        .zip(picture.y())
        .all(|(&want, &got)| want == 77 || want == got)
}
