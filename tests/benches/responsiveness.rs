//! The responsiveness bench of issue 16: how fast the installation answers, before and after,
//! measured in the same run on the same machine.
//!
//! - Key press to better picture: the whole pipeline (synthetic camera, `delay.seconds = 0`,
//!   640x480 at 30 fps, no loss) in two network namespaces; a burst of 20 varied keys is written
//!   into mash-input's FIFO; the time from right after the write to the first picture display
//!   presents whose frame was coded at a quality above the rest quality, told from the payloads
//!   themselves (net-rx's received ring, read as a second reader, each payload's first
//!   macroblock). When a picture was presented is told from its file in display's `frames:DIR`
//!   output: its mtime (a coarse clock, 4 ms ticks here) and the bench's listings of the
//!   directory every millisecond bound it to about a millisecond (see
//!   `keymash_tests::responsiveness::bracket`). Between presses the mash level falls back to
//!   rest (frames at the rest quality arrive again) and a random wait of up to 100 ms spreads the
//!   presses over the frame interval. The pixel stamp of the picture shown says when it was
//!   captured, relative to the press.
//! - Capture to present: the same pipeline with the quality pinned (`quality.at_rest =
//!   quality.at_full`, so the stamp reads) and nobody mashing, at 0% and at 10% loss
//!   (`loss.drop_at_rest`, loss-controller restarted in between): per picture shown, the
//!   stamp's capture time to the picture's presentation (and, from the ring, to the arrival of
//!   the frame's last payload at net-rx), beside the services' own gauges and the components
//!   they give (capture to send, pacing, network, playout hold, decode, present).
//!
//! Each round runs a fresh pipeline of each variant in turn: before, after, before, after...
//! so both see the same machine noise. "before" is revision 74cec1f (just before issue 16's
//! work), built once into `target/responsiveness-before/` (see
//! `keymash_tests::responsiveness::before_binaries`); "after" is the current source tree
//! (built by `keymash_tests::binary_dir`, as the tests do). Neither variant's playout or pacing
//! keys are set: each build runs on its own defaults.
//!
//! `cargo bench -p keymash-tests --bench responsiveness` as root. Environment:
//! `KEYMASH_BEFORE=off` (no before variant), `KEYMASH_BEFORE_BINARIES=DIR` (prebuilt before
//! binaries), `KEYMASH_BEFORE_REV` (74cec1f), `KEYMASH_AFTER_BINARIES=DIR` (instead of the
//! current tree's), `KEYMASH_RESP_ROUNDS` (3), `KEYMASH_RESP_PRESSES` (51 per variant in all),
//! `KEYMASH_RESP_WARMUP_SECONDS` (10), `KEYMASH_RESP_MEASURE_SECONDS` (20 per loss level and
//! round), `KEYMASH_RESP_QUALITY` (50), `KEYMASH_RESP_MASH_WINDOW_MS` (1000), `KEYMASH_RESP_SEED`.
//!
//! Exit status: 0 when the after variant meets the targets (key press p50 < 50 ms and p99 < 80
//! ms with no press unanswered; capture to present at 0% loss p50 < 15 ms and p99 < 30 ms, own
//! measurement), 1 when it misses one, 2 on an error or an interruption. Namespaces, processes,
//! segments and directories go away at the end, on failure and on Ctrl-C/SIGTERM (checked
//! between steps; a second signal exits at once).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use keymash_media::stamp::Stamp;
use keymash_pipeline::Service;
use keymash_shm::monotonic_now_ns;
use keymash_tests::receiver::{FifoKeyboard, LETTER_KEYS};
use keymash_tests::require_root;
use keymash_tests::responsiveness::{
    before_binaries, coarse_clock_resolution, mean, panic_text, quantile, sleep_unless_stopped,
    source_state, system_ms_between, wait_for, BinarySnapshot, Pipeline, PipelineSpec, Rng, Shown,
    BEFORE_REVISION,
};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
const FPS: u32 = 30;
/// Keys in one burst: 20 varied keys give the mash level 20/45 and, on the default curve, a
/// quality of about 46 (the stamp reads from 30 up).
const KEYS_IN_A_BURST: usize = 20;
/// A press not answered on screen within this long counts as missed.
const PRESS_TIMEOUT: Duration = Duration::from_secs(3);
/// Up to this much random wait before a press, so presses fall all over the frame interval.
const PRESS_JITTER: Duration = Duration::from_millis(100);
/// The before build's display leaves its fixed playout delay (`display.playout_delay_ms`,
/// default 100) out of its capture-to-present gauge; it is added back.
const OLD_PLAYOUT_DELAY_MS: f64 = 100.0;
const LOSS_LEVELS: [f64; 2] = [0.0, 0.10];

const KEY_P50_TARGET_MS: f64 = 50.0;
const KEY_P99_TARGET_MS: f64 = 80.0;
const C2P_P50_TARGET_MS: f64 = 15.0;
const C2P_P99_TARGET_MS: f64 = 30.0;

/// Gauges sampled while capture to present is measured: (service, name).
const GAUGES: [(Service, &str); 14] = [
    (Service::Display, "capture_to_present_p50_ms"),
    (Service::Display, "capture_to_present_p99_ms"),
    (Service::Display, "capture_to_arrival_p50_ms"),
    (Service::Display, "capture_to_arrival_p99_ms"),
    (Service::Display, "playout_hold_p50_ms"),
    (Service::Display, "playout_hold_p99_ms"),
    (Service::Display, "decode_ms"),
    (Service::Display, "present_ms"),
    (Service::Display, "fps"),
    (Service::NetTx, "latency_ms_p50"),
    (Service::NetTx, "latency_ms_p99"),
    (Service::NetTx, "pacing_ms_p50"),
    (Service::NetTx, "pacing_ms_p99"),
    (Service::NetRx, "loss_percent"),
];

#[derive(Debug, Clone)]
struct Settings {
    rounds: usize,
    presses: usize,
    warmup: Duration,
    measure: Duration,
    quality: u8,
    mash_window_ms: u32,
    seed: u64,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name}={v:?} is not a valid value")),
                Err(_) => Ok(default),
            }
        }
        let seed = var(
            "KEYMASH_RESP_SEED",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        )?;
        let settings = Settings {
            rounds: var("KEYMASH_RESP_ROUNDS", 3)?,
            presses: var("KEYMASH_RESP_PRESSES", 51)?,
            warmup: Duration::from_secs_f64(var("KEYMASH_RESP_WARMUP_SECONDS", 10.0)?),
            measure: Duration::from_secs_f64(var("KEYMASH_RESP_MEASURE_SECONDS", 20.0)?),
            quality: var("KEYMASH_RESP_QUALITY", 50)?,
            mash_window_ms: var("KEYMASH_RESP_MASH_WINDOW_MS", 1000)?,
            seed,
        };
        if settings.rounds == 0 || settings.presses == 0 {
            return Err("KEYMASH_RESP_ROUNDS and KEYMASH_RESP_PRESSES must be at least 1".into());
        }
        if !(30..=100).contains(&settings.quality) {
            return Err(
                "KEYMASH_RESP_QUALITY must be in 30..=100 (the stamp reads from 30 up)".into(),
            );
        }
        Ok(settings)
    }

    /// Presses in round `round` (0-based): the total spread over the rounds.
    fn presses_in_round(&self, round: usize) -> usize {
        self.presses / self.rounds + usize::from(round < self.presses % self.rounds)
    }
}

#[derive(Debug)]
struct Variant {
    name: &'static str,
    binaries: PathBuf,
    what: String,
}

/// One answered key press.
#[derive(Debug, Clone, Copy)]
struct Press {
    /// Press to the better picture on screen.
    to_screen_ms: f64,
    /// Press to the first payload of the first better frame at net-rx.
    to_net_rx_ms: f64,
    /// Capture time of the picture shown minus the press (pixel stamp), where it reads.
    captured_after_press_ms: Option<f64>,
    quality: u8,
    /// Half the width of the interval the picture's presentation time is known to be in.
    uncertainty_ms: f64,
}

#[derive(Debug, Default)]
struct KeyResults {
    presses: Vec<Press>,
    missed: Vec<String>,
    rest_quality: Option<u8>,
}

/// Capture to present at one loss level, over the rounds.
#[derive(Debug, Default)]
struct LatencyResults {
    /// Per picture shown with a new readable stamp: capture to presentation (file time).
    own_ms: Vec<f64>,
    /// Capture to the arrival of the shown frame's last payload at net-rx.
    to_net_rx_ms: Vec<f64>,
    /// That arrival to the presentation.
    net_rx_to_screen_ms: Vec<f64>,
    /// Per round: each gauge's mean over the window.
    gauges: Vec<BTreeMap<String, f64>>,
    /// Per round: what the kernel filter dropped, percent of the video packets it saw.
    filter_loss: Vec<f64>,
    shown: usize,
    stamped: usize,
    /// Per picture: half the width of the interval its presentation time is known to be in.
    uncertainty_ms: Vec<f64>,
    seconds: f64,
}

impl LatencyResults {
    /// A gauge's mean over the rounds that published it.
    fn gauge(&self, service: Service, name: &str) -> Option<f64> {
        let key = gauge_key(service, name);
        let values: Vec<f64> = self
            .gauges
            .iter()
            .filter_map(|g| g.get(&key).copied())
            .collect();
        mean(&values)
    }
}

fn gauge_key(service: Service, name: &str) -> String {
    format!("{}.{name}", service.name())
}

fn print_line(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"))
}

fn ratio(after: Option<f64>, before: Option<f64>) -> String {
    match (after, before) {
        (Some(a), Some(b)) if b > 0.0 => format!("x{:.2}", a / b),
        _ => "n/a".to_owned(),
    }
}

/// Half the width of the interval a picture's presentation time is known to be in (see
/// `keymash_tests::responsiveness::bracket`): how far off the middle taken can be.
fn uncertainty_ms(s: &Shown) -> f64 {
    system_ms_between(s.earliest, s.latest) / 2.0
}

/// Age in milliseconds of a stamp at `now_ns` (CLOCK_MONOTONIC), to a fraction of a
/// millisecond: the stamp holds whole milliseconds (truncated), so half of one is taken off.
fn stamp_age_ms(stamp: Stamp, now_ns: u64) -> f64 {
    let whole = stamp.age_ms(now_ns) as f64;
    whole + (now_ns % 1_000_000) as f64 / 1e6 - 0.5
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; a filter argument that is not this bench skips the run,
    // as the libtest harness would (`cargo bench other_bench` runs every bench binary).
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"responsiveness".contains(a.as_str()))
    {
        return ExitCode::SUCCESS;
    }
    require_root();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("responsiveness: {e}");
            return ExitCode::from(2);
        }
    };
    // The bench's own log (the ring follower's) at warn; the services keep their default.
    let quiet_env = std::env::var_os("KEYMASH_LOG").is_none();
    if quiet_env {
        std::env::set_var("KEYMASH_LOG", "warn");
    }
    let lifecycle = match keymash_service::Lifecycle::start("keymash-responsiveness") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("responsiveness: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = lifecycle.stop_flag();
    let outcome = std::panic::catch_unwind(|| run(&settings, &stop, quiet_env));
    match outcome {
        Ok(Ok(failures)) if failures.is_empty() => {
            print_line("responsiveness: PASS: the after variant meets every target");
            ExitCode::SUCCESS
        }
        Ok(Ok(failures)) => {
            print_line(&format!(
                "responsiveness: FAIL: the after variant misses {} target(s):",
                failures.len()
            ));
            for f in failures {
                print_line(&format!("  - {f}"));
            }
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            print_line(&format!("responsiveness: ERROR: {e}"));
            ExitCode::from(2)
        }
        Err(panic) => {
            print_line(&format!(
                "responsiveness: ERROR: panicked: {}",
                panic_text(&*panic)
            ));
            ExitCode::from(2)
        }
    }
}

/// The whole run; returns the targets the after variant misses.
fn run(settings: &Settings, stop: &AtomicBool, quiet_env: bool) -> Result<Vec<String>, String> {
    let progress = |line: &str| print_line(&format!("responsiveness: {line}"));
    let (after_dir, after_what) = match std::env::var_os("KEYMASH_AFTER_BINARIES") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let what = format!("binaries in {} (KEYMASH_AFTER_BINARIES)", dir.display());
            (dir, what)
        }
        None => {
            progress("after build: building the current tree's release binaries");
            let dir =
                std::panic::catch_unwind(keymash_tests::binary_dir).map_err(|p| panic_text(&*p))?;
            let what = format!(
                "the current tree ({}), binaries from {}",
                source_state(),
                dir.display()
            );
            (dir, what)
        }
    };
    // Copied, so that a build during the run cannot swap them under it; removed at the end.
    let snapshot = BinarySnapshot::take(&after_dir).map_err(|e| format!("after binaries: {e}"))?;
    let after = Variant {
        name: "after",
        what: format!("{after_what}, copied to {}", snapshot.path().display()),
        binaries: snapshot.path().to_owned(),
    };
    let mut variants = Vec::new();
    if let Some(dir) = before_binaries(stop, &progress)? {
        variants.push(Variant {
            name: "before",
            what: format!(
                "revision {}, binaries in {}",
                std::env::var("KEYMASH_BEFORE_REV").unwrap_or_else(|_| BEFORE_REVISION.into()),
                dir.display()
            ),
            binaries: dir,
        });
    }
    variants.push(after);
    for v in &variants {
        progress(&format!("{}: {}", v.name, v.what));
    }
    progress(&format!(
        "{WIDTH}x{HEIGHT} at {FPS} fps, synthetic camera, delay.seconds = 0, headless frames:DIR output, \
         {} round(s), {} key presses per variant, capture to present over {:.0} s per loss level and \
         round after {:.0} s of warm-up at quality {}, mash.window_ms = {}, seed {}",
        settings.rounds,
        settings.presses,
        settings.measure.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        settings.quality,
        settings.mash_window_ms,
        settings.seed
    ));
    progress(&format!(
        "a picture's presentation time: the middle of what its file's mtime (coarse clock, {:.1} ms ticks) and \
         the bench's listings of the directory (every 1 ms) leave; its half-width is shown as +-",
        coarse_clock_resolution().as_secs_f64() * 1e3
    ));

    let mut rng = Rng::new(settings.seed);
    let mut keys: Vec<KeyResults> = variants.iter().map(|_| KeyResults::default()).collect();
    let mut latency: Vec<[LatencyResults; 2]> = variants
        .iter()
        .map(|_| [LatencyResults::default(), LatencyResults::default()])
        .collect();
    for round in 0..settings.rounds {
        for (i, variant) in variants.iter().enumerate() {
            let tag = format!("round {}/{} {}", round + 1, settings.rounds, variant.name);
            let n = settings.presses_in_round(round);
            let before = keys[i].presses.len();
            key_round(
                variant,
                settings,
                n,
                stop,
                quiet_env,
                &mut rng,
                &mut keys[i],
            )
            .map_err(|e| format!("{tag}, key presses: {e}"))?;
            let answered: Vec<f64> = keys[i].presses[before..]
                .iter()
                .map(|p| p.to_screen_ms)
                .collect();
            progress(&format!(
                "{tag}: key press to better picture p50 {} ms, p99 {} ms ({} of {n} answered)",
                ms(quantile(&answered, 0.5)),
                ms(quantile(&answered, 0.99)),
                answered.len()
            ));
            let windows = latency_round(variant, settings, stop, quiet_env)
                .map_err(|e| format!("{tag}, capture to present: {e}"))?;
            for (level, window) in windows.into_iter().enumerate() {
                progress(&format!(
                    "{tag}: capture to present at {:.0}% loss p50 {} ms, p99 {} ms over {} pictures; filter dropped {}%",
                    LOSS_LEVELS[level] * 100.0,
                    ms(quantile(&window.own_ms, 0.5)),
                    ms(quantile(&window.own_ms, 0.99)),
                    window.own_ms.len(),
                    ms(window.filter_loss.first().copied())
                ));
                let total = &mut latency[i][level];
                total.own_ms.extend(window.own_ms);
                total.to_net_rx_ms.extend(window.to_net_rx_ms);
                total.net_rx_to_screen_ms.extend(window.net_rx_to_screen_ms);
                total.gauges.extend(window.gauges);
                total.filter_loss.extend(window.filter_loss);
                total.shown += window.shown;
                total.stamped += window.stamped;
                total.uncertainty_ms.extend(window.uncertainty_ms);
                total.seconds += window.seconds;
            }
        }
    }
    Ok(report(&variants, &keys, &latency, settings))
}

/// Key presses on a fresh pipeline of `variant`, added to `results`.
fn key_round(
    variant: &Variant,
    settings: &Settings,
    presses: usize,
    stop: &AtomicBool,
    quiet_env: bool,
    rng: &mut Rng,
    results: &mut KeyResults,
) -> Result<(), String> {
    let spec = PipelineSpec {
        width: WIDTH,
        height: HEIGHT,
        fps: FPS,
        drop_at_rest: 0.0,
        pinned_quality: None,
        mash_window_ms: Some(settings.mash_window_ms),
    };
    let mut pipeline = Pipeline::start("rkey", &variant.binaries, spec, quiet_env)?;
    let fifo = pipeline.keys_fifo();
    let mut keyboard =
        std::panic::catch_unwind(|| FifoKeyboard::open(&fifo, Duration::from_secs(10)))
            .map_err(|p| panic_text(&*p))?;
    wait_for_stream(&mut pipeline, stop)?;
    if !sleep_unless_stopped(Duration::from_secs(1), stop) {
        return Err("interrupted".into());
    }
    // The quality at rest: what the newest frames were coded at with nobody mashing.
    let rest = pipeline
        .received()
        .with(|frames| frames.values().next_back().map(|f| f.quality_max))
        .ok_or("no frame arrived")?;
    results.rest_quality.get_or_insert(rest);
    let window_ns = u64::from(settings.mash_window_ms) * 1_000_000;
    let mut last_press_ns = 0u64;
    for i in 0..presses {
        if let Some(exited) = pipeline.exited() {
            return Err(format!("{exited}\n{}", pipeline.diagnose()));
        }
        // Back at rest: the mash window of the last burst is over and the newest frames that
        // arrived after it were coded at the rest quality again.
        let since = last_press_ns + window_ns;
        let at_rest = wait_for(
            Duration::from_secs(10),
            Duration::from_millis(5),
            stop,
            || {
                pipeline.received().with(|frames| {
                    let newest: Vec<u8> = frames
                        .values()
                        .rev()
                        .take_while(|f| f.first_arrival_ns > since)
                        .take(3)
                        .map(|f| f.quality_max)
                        .collect();
                    (newest.len() == 3 && newest.iter().all(|&q| q == rest)).then_some(())
                })
            },
        );
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("interrupted".into());
        }
        if at_rest.is_none() {
            results.missed.push(format!(
                "{}: press {i}: the quality did not fall back to {rest} within 10 s",
                variant.name
            ));
            continue;
        }
        std::thread::sleep(PRESS_JITTER.mul_f64(rng.unit()));
        let newest_before = pipeline
            .received()
            .with(|frames| frames.keys().next_back().copied())
            .unwrap_or(0);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            keyboard.press_and_release(&LETTER_KEYS[..KEYS_IN_A_BURST]);
        }))
        .map_err(|p| panic_text(&*p))?;
        let press_ns = monotonic_now_ns();
        let pressed = SystemTime::now();
        last_press_ns = press_ns;
        let answer = wait_for(PRESS_TIMEOUT, Duration::from_millis(1), stop, || {
            let (frame, arrival) = pipeline.received().with(|frames| {
                frames
                    .range(newest_before + 1..)
                    .find(|(_, f)| f.first_arrival_ns > press_ns && f.quality_min > rest)
                    .map(|(n, f)| (*n, *f))
            })?;
            let shown = pipeline.shown().with(|shown| {
                shown
                    .iter()
                    .rev()
                    .take_while(|s| s.frame >= frame)
                    .last()
                    .copied()
            })?;
            Some((arrival, shown))
        });
        match answer {
            Some((arrival, shown)) => {
                let quality = pipeline
                    .received()
                    .get(shown.frame)
                    .map_or(0, |f| f.quality_min);
                results.presses.push(Press {
                    to_screen_ms: system_ms_between(pressed, shown.presented),
                    to_net_rx_ms: arrival.first_arrival_ns.saturating_sub(press_ns) as f64 / 1e6,
                    captured_after_press_ms: shown.stamp.map(|s| -stamp_age_ms(s, press_ns)),
                    quality,
                    uncertainty_ms: uncertainty_ms(&shown),
                });
            }
            None if stop.load(std::sync::atomic::Ordering::Relaxed) => {
                return Err("interrupted".into())
            }
            None => results.missed.push(format!(
                "{}: press {i}: no picture above quality {rest} on screen within {PRESS_TIMEOUT:?}",
                variant.name
            )),
        }
    }
    Ok(())
}

/// Waits until pictures are shown and frames arrive (20 s at most).
fn wait_for_stream(pipeline: &mut Pipeline, stop: &AtomicBool) -> Result<(), String> {
    let up = wait_for(
        Duration::from_secs(20),
        Duration::from_millis(50),
        stop,
        || {
            (pipeline.shown().count() >= 10 && pipeline.received().with(|f| f.len() >= 10))
                .then_some(())
        },
    );
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        return Err("interrupted".into());
    }
    if up.is_none() {
        return Err(format!(
            "no picture on screen within 20 s ({} shown, {} frames at net-rx)\n{}",
            pipeline.shown().count(),
            pipeline.received().with(|f| f.len()),
            pipeline.diagnose()
        ));
    }
    Ok(())
}

/// Capture to present on a fresh pipeline of `variant` at each of [`LOSS_LEVELS`].
fn latency_round(
    variant: &Variant,
    settings: &Settings,
    stop: &AtomicBool,
    quiet_env: bool,
) -> Result<Vec<LatencyResults>, String> {
    let spec = PipelineSpec {
        width: WIDTH,
        height: HEIGHT,
        fps: FPS,
        drop_at_rest: LOSS_LEVELS[0],
        pinned_quality: Some(settings.quality),
        mash_window_ms: None,
    };
    let mut pipeline = Pipeline::start("rlat", &variant.binaries, spec, quiet_env)?;
    wait_for_stream(&mut pipeline, stop)?;
    let mut windows = Vec::new();
    for (level, &loss) in LOSS_LEVELS.iter().enumerate() {
        if level > 0 {
            pipeline.restart_loss_controller(loss)?;
        }
        if !sleep_unless_stopped(settings.warmup, stop) {
            return Err("interrupted".into());
        }
        windows.push(measure_latency(&mut pipeline, settings.measure, stop)?);
    }
    Ok(windows)
}

/// Capture to present over `duration` from now: the pictures shown (own figures) and the
/// gauges, sampled every 500 ms.
fn measure_latency(
    pipeline: &mut Pipeline,
    duration: Duration,
    stop: &AtomicBool,
) -> Result<LatencyResults, String> {
    let counters = |p: &Pipeline| {
        p.stats(Service::LossController).map(|s| {
            (
                s.counter("seen").unwrap_or(0),
                s.counter("dropped").unwrap_or(0),
            )
        })
    };
    let start = SystemTime::now();
    let started = Instant::now();
    let counters_before = counters(pipeline);
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    while started.elapsed() < duration {
        if !sleep_unless_stopped(Duration::from_millis(500), stop) {
            return Err("interrupted".into());
        }
        if let Some(exited) = pipeline.exited() {
            return Err(format!("{exited}\n{}", pipeline.diagnose()));
        }
        for service in [Service::Display, Service::NetTx, Service::NetRx] {
            let Some(stats) = pipeline.stats(service) else {
                continue;
            };
            for (_, name) in GAUGES.iter().filter(|(s, _)| *s == service) {
                if let Some(v) = stats.gauge(name) {
                    samples.entry(gauge_key(service, name)).or_default().push(v);
                }
            }
        }
    }
    let end = SystemTime::now();
    let counters_after = counters(pipeline);
    let mut results = LatencyResults {
        seconds: started.elapsed().as_secs_f64(),
        ..LatencyResults::default()
    };
    results.gauges.push(
        samples
            .into_iter()
            .filter_map(|(k, v)| mean(&v).map(|m| (k, m)))
            .collect(),
    );
    if let (Some((seen0, dropped0)), Some((seen1, dropped1))) = (counters_before, counters_after) {
        let seen = seen1.saturating_sub(seen0);
        if seen > 0 {
            results
                .filter_loss
                .push(100.0 * dropped1.saturating_sub(dropped0) as f64 / seen as f64);
        }
    }
    let shown: Vec<_> = pipeline.shown().with(<[_]>::to_vec);
    let mut last_stamp = None;
    for s in shown {
        let in_window = s.presented >= start && s.presented <= end;
        let Some(stamp) = s.stamp else {
            results.shown += usize::from(in_window);
            continue;
        };
        // The same stamp again is stale blocks left by a lost packet, not this frame's age.
        let new = last_stamp != Some(stamp.frame);
        last_stamp = Some(stamp.frame);
        if !in_window {
            continue;
        }
        results.shown += 1;
        if !new {
            continue;
        }
        results.stamped += 1;
        results.uncertainty_ms.push(uncertainty_ms(&s));
        let presented_ns = pipeline.to_monotonic_ns(s.presented);
        results.own_ms.push(stamp_age_ms(stamp, presented_ns));
        if let Some(arrival) = pipeline.received().get(s.frame) {
            results
                .to_net_rx_ms
                .push(stamp_age_ms(stamp, arrival.last_arrival_ns));
            results
                .net_rx_to_screen_ms
                .push(presented_ns.saturating_sub(arrival.last_arrival_ns) as f64 / 1e6);
        }
    }
    Ok(results)
}

/// Prints the tables; returns the targets the after variant misses.
fn report(
    variants: &[Variant],
    keys: &[KeyResults],
    latency: &[[LatencyResults; 2]],
    settings: &Settings,
) -> Vec<String> {
    let after = variants.len() - 1;
    let before = variants.iter().position(|v| v.name == "before");
    let mut failures = Vec::new();
    print_line("");
    print_line(&format!(
        "== Key press to better picture: {KEYS_IN_A_BURST} keys at once into mash-input's FIFO, no loss, \
         to the first picture on screen coded above the rest quality (quality {}); ms, nearest rank ==",
        keys.iter()
            .find_map(|k| k.rest_quality)
            .map_or("?".to_owned(), |q| q.to_string())
    ));
    print_line(&format!(
        "{:<8} {:>7} {:>6} {:>7} {:>7} {:>7} | {:>14} {:>15} | {:>15} {:>11} {:>7} {:>4}",
        "variant",
        "presses",
        "missed",
        "p50",
        "p99",
        "max",
        "press>net-rx50",
        "net-rx>screen50",
        "press>capture50",
        "capt<press",
        "quality",
        "+-50"
    ));
    let key_figures = |k: &KeyResults| {
        let to_screen: Vec<f64> = k.presses.iter().map(|p| p.to_screen_ms).collect();
        (
            quantile(&to_screen, 0.5),
            quantile(&to_screen, 0.99),
            quantile(&to_screen, 1.0),
        )
    };
    for (v, k) in variants.iter().zip(keys) {
        let (p50, p99, max) = key_figures(k);
        let to_rx: Vec<f64> = k.presses.iter().map(|p| p.to_net_rx_ms).collect();
        let rx_to_screen: Vec<f64> = k
            .presses
            .iter()
            .map(|p| p.to_screen_ms - p.to_net_rx_ms)
            .collect();
        let captured: Vec<f64> = k
            .presses
            .iter()
            .filter_map(|p| p.captured_after_press_ms)
            .collect();
        let before_press = captured.iter().filter(|&&c| c < 0.0).count();
        let qualities: Vec<f64> = k.presses.iter().map(|p| f64::from(p.quality)).collect();
        print_line(&format!(
            "{:<8} {:>7} {:>6} {:>7} {:>7} {:>7} | {:>14} {:>15} | {:>15} {:>11} {:>7} {:>4}",
            v.name,
            k.presses.len() + k.missed.len(),
            k.missed.len(),
            ms(p50),
            ms(p99),
            ms(max),
            ms(quantile(&to_rx, 0.5)),
            ms(quantile(&rx_to_screen, 0.5)),
            ms(quantile(&captured, 0.5)),
            format!("{before_press}/{}", captured.len()),
            ms(quantile(&qualities, 0.5)),
            ms(quantile(
                &k.presses
                    .iter()
                    .map(|p| p.uncertainty_ms)
                    .collect::<Vec<_>>(),
                0.5
            ))
        ));
    }
    if let Some(b) = before {
        let (a50, a99, _) = key_figures(&keys[after]);
        let (b50, b99, _) = key_figures(&keys[b]);
        print_line(&format!(
            "{:<8} {:>7} {:>6} {:>7} {:>7}",
            "aft/bef",
            "",
            "",
            ratio(a50, b50),
            ratio(a99, b99)
        ));
    }
    print_line("  press>net-rx50: press to the first payload of the first better frame at net-rx (p50); net-rx>screen50: from there to the screen (p50);");
    print_line("  press>capture50: the shown picture's capture (pixel stamp) minus the press (p50); capt<press: pictures captured before the press / stamps read;");
    print_line("  quality: p50 of the quality of the pictures shown; +-50: p50 of the half-width of the interval each picture's presentation time is known to be in");
    for k in keys {
        for m in &k.missed {
            print_line(&format!("  missed: {m}"));
        }
    }
    {
        let k = &keys[after];
        let (p50, p99, _) = key_figures(k);
        if !k.missed.is_empty() {
            failures.push(format!(
                "key press: {} of {} presses not answered on screen",
                k.missed.len(),
                k.presses.len() + k.missed.len()
            ));
        }
        match (p50, p99) {
            (Some(p50), Some(p99)) => check_targets(
                "key press to better picture",
                (p50, p99),
                (KEY_P50_TARGET_MS, KEY_P99_TARGET_MS),
                &mut failures,
            ),
            _ => failures.push("key press: no press answered".into()),
        }
    }

    print_line("");
    print_line(&format!(
        "== Capture to present: pixel stamp to the picture written (file time), quality {} pinned, nobody mashing; ms, nearest rank ==",
        settings.quality
    ));
    print_line(&format!(
        "{:<5} {:<8} {:>9} {:>5} {:>6} {:>7} {:>7} | {:>8} {:>8} | {:>10} {:>10} {:>10} {:>10}",
        "loss",
        "variant",
        "pictures",
        "+-50",
        "filter",
        "p50",
        "p99",
        "gauge50",
        "gauge99",
        "capt>rx50",
        "capt>rx99",
        "rx>scr50",
        "rx>scr99"
    ));
    for (level, loss) in LOSS_LEVELS.iter().enumerate() {
        for (v, l) in variants.iter().zip(latency) {
            let r = &l[level];
            let (g50, g99) = display_gauge(r);
            print_line(&format!(
                "{:<5} {:<8} {:>9} {:>5} {:>6} {:>7} {:>7} | {:>8} {:>8} | {:>10} {:>10} {:>10} {:>10}",
                format!("{:.0}%", loss * 100.0),
                v.name,
                format!("{}/{}", r.stamped, r.shown),
                ms(quantile(&r.uncertainty_ms, 0.5)),
                format!("{}%", ms(mean(&r.filter_loss))),
                ms(quantile(&r.own_ms, 0.5)),
                ms(quantile(&r.own_ms, 0.99)),
                ms(g50),
                ms(g99),
                ms(quantile(&r.to_net_rx_ms, 0.5)),
                ms(quantile(&r.to_net_rx_ms, 0.99)),
                ms(quantile(&r.net_rx_to_screen_ms, 0.5)),
                ms(quantile(&r.net_rx_to_screen_ms, 0.99)),
            ));
        }
        if let Some(b) = before {
            let (a, bb) = (&latency[after][level], &latency[b][level]);
            let ((ag50, ag99), (bg50, bg99)) = (display_gauge(a), display_gauge(bb));
            print_line(&format!(
                "{:<5} {:<8} {:>9} {:>5} {:>6} {:>7} {:>7} | {:>8} {:>8} | {:>10} {:>10} {:>10} {:>10}",
                "",
                "aft/bef",
                "",
                "",
                "",
                ratio(quantile(&a.own_ms, 0.5), quantile(&bb.own_ms, 0.5)),
                ratio(quantile(&a.own_ms, 0.99), quantile(&bb.own_ms, 0.99)),
                ratio(ag50, bg50),
                ratio(ag99, bg99),
                ratio(
                    quantile(&a.to_net_rx_ms, 0.5),
                    quantile(&bb.to_net_rx_ms, 0.5)
                ),
                ratio(
                    quantile(&a.to_net_rx_ms, 0.99),
                    quantile(&bb.to_net_rx_ms, 0.99)
                ),
                ratio(
                    quantile(&a.net_rx_to_screen_ms, 0.5),
                    quantile(&bb.net_rx_to_screen_ms, 0.5)
                ),
                ratio(
                    quantile(&a.net_rx_to_screen_ms, 0.99),
                    quantile(&bb.net_rx_to_screen_ms, 0.99)
                ),
            ));
        }
    }
    print_line("  pictures: with a new readable stamp / written; +-50: p50 of the half-width of the interval each presentation time is known to be in;");
    print_line(
        "  filter: what the eBPF filter dropped of the video packets it saw (kernel counters);",
    );
    print_line("  p50/p99: this bench's own figure over every picture; gauge50/99: display's capture_to_present gauges (mean of samples every 500 ms),");
    print_line(&format!(
        "  with display.playout_delay_ms ({OLD_PLAYOUT_DELAY_MS:.0} ms, fixed) added back for a build whose display leaves it out (no playout_hold gauge);"
    ));
    print_line("  capt>rx: capture to the arrival of the shown frame's last payload at net-rx (received ring); rx>scr: from there to the picture written");

    print_line("");
    print_line("== Components from the services' gauges (p50/p99, ms; decode and present are means; n/a where a build does not publish the gauge) ==");
    print_line(&format!(
        "{:<5} {:<8} {:>13} {:>13} {:>13} {:>13} {:>13} {:>7} {:>8} {:>13}",
        "loss",
        "variant",
        "capture>sent",
        "capture>send",
        "pacing",
        "network",
        "playout hold",
        "decode",
        "present",
        "c2p (gauge)"
    ));
    for (level, loss) in LOSS_LEVELS.iter().enumerate() {
        for (v, l) in variants.iter().zip(latency) {
            let r = &l[level];
            let g = |s, n| r.gauge(s, n);
            let pair = |a: Option<f64>, b: Option<f64>| format!("{}/{}", ms(a), ms(b));
            let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
            let (lat50, lat99) = (
                g(Service::NetTx, "latency_ms_p50"),
                g(Service::NetTx, "latency_ms_p99"),
            );
            let (pace50, pace99) = (
                g(Service::NetTx, "pacing_ms_p50"),
                g(Service::NetTx, "pacing_ms_p99"),
            );
            let (arr50, arr99) = (
                g(Service::Display, "capture_to_arrival_p50_ms"),
                g(Service::Display, "capture_to_arrival_p99_ms"),
            );
            let (c50, c99) = display_gauge(r);
            print_line(&format!(
                "{:<5} {:<8} {:>13} {:>13} {:>13} {:>13} {:>13} {:>7} {:>8} {:>13}",
                format!("{:.0}%", loss * 100.0),
                v.name,
                pair(lat50, lat99),
                pair(diff(lat50, pace50), diff(lat99, pace99)),
                pair(pace50, pace99),
                pair(diff(arr50, lat50), diff(arr99, lat99)),
                pair(
                    g(Service::Display, "playout_hold_p50_ms"),
                    g(Service::Display, "playout_hold_p99_ms")
                ),
                ms(g(Service::Display, "decode_ms")),
                ms(g(Service::Display, "present_ms")),
                pair(c50, c99),
            ));
        }
    }
    print_line("  capture>sent: net-tx latency_ms (capture to the frame's last packet sent); capture>send = that - pacing_ms (frame queued to last packet sent);");
    print_line("  network = display capture_to_arrival - net-tx latency_ms (differences of percentiles, approximate); c2p (gauge) as in the table above;");
    print_line("  a build without pacing or arrival gauges shows n/a; the own columns above (capt>rx, rx>scr) measure both builds the same way");

    {
        let r = &latency[after][0];
        match (quantile(&r.own_ms, 0.5), quantile(&r.own_ms, 0.99)) {
            (Some(p50), Some(p99)) => check_targets(
                "capture to present at 0% loss",
                (p50, p99),
                (C2P_P50_TARGET_MS, C2P_P99_TARGET_MS),
                &mut failures,
            ),
            _ => failures.push("capture to present at 0% loss: no picture with a stamp".into()),
        }
    }
    failures
}

/// Display's capture-to-present gauges (p50, p99), with the fixed playout delay added back for
/// a build that leaves it out (one that publishes no playout hold).
fn display_gauge(r: &LatencyResults) -> (Option<f64>, Option<f64>) {
    let hold_included = r.gauge(Service::Display, "playout_hold_p50_ms").is_some();
    let add = if hold_included {
        0.0
    } else {
        OLD_PLAYOUT_DELAY_MS
    };
    (
        r.gauge(Service::Display, "capture_to_present_p50_ms")
            .map(|v| v + add),
        r.gauge(Service::Display, "capture_to_present_p99_ms")
            .map(|v| v + add),
    )
}

/// Notes in `failures` each of `measured` (p50, p99, ms) not below its `target`.
fn check_targets(what: &str, measured: (f64, f64), target: (f64, f64), failures: &mut Vec<String>) {
    for (name, value, bound) in [("p50", measured.0, target.0), ("p99", measured.1, target.1)] {
        if value >= bound {
            failures.push(format!("{what} {name} {value:.1} ms (target < {bound} ms)"));
        }
    }
}
