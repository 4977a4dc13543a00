//! The working loop: key presses in, the mash level out to the mash cell at `input.publish_hz`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use keymash_core::config::{Config, InputSource};
use keymash_core::mash::{KeyCode, MashMeter};
use keymash_input::{MashScript, ScriptPlayer};
use keymash_pipeline::{MashRecord, Segments, Service};
use keymash_service::{Lifecycle, StatsPublisher};
use keymash_shm::{monotonic_now_ns, ServiceState};

use crate::keys::{Fifo, KeySource, Keyboards};

/// Statistics published every this many cell updates (the cell itself goes at publish_hz).
const STATS_EVERY: u32 = 10;
/// Bound on the presses counted for the cell (a stuck or hostile device cannot grow memory);
/// far above what the saturation rate puts in a window.
const MAX_COUNTED_PRESSES: usize = 4096;

pub(crate) fn run(lifecycle: &mut Lifecycle, config: Config) -> anyhow::Result<()> {
    let mut source = open_source(&config.input.source)?;
    let mut cell = Segments::new(&config)?.mash_cell()?.create()?;
    let mut stats = StatsPublisher::open(&config, Service::MashInput, "keys", monotonic_now_ns())?;
    let mut mashing = Mashing::new(&config);
    // publish_hz is validated (>= 50) by the configuration.
    let period = Duration::from_secs_f64(1.0 / f64::from(config.input.publish_hz.max(1)));
    let mut presses = Vec::new();
    let mut next_publish = Instant::now();
    let mut publishes: u32 = 0;
    lifecycle.ready(&format!(
        "reading {}",
        String::from(config.input.source.clone())
    ));
    stats.set_state(ServiceState::Running);
    while !lifecycle.stop_requested() {
        presses.clear();
        source.wait_for_presses(next_publish, &mut presses)?;
        let now = Instant::now();
        mashing.press(&presses, now);
        stats.count("keys", presses.len() as u64);
        // A key press publishes at once (keypress-to-screen latency); otherwise at the tick.
        if presses.is_empty() && now < next_publish {
            continue;
        }
        let record = mashing.record(now);
        cell.store(&record);
        if now >= next_publish {
            next_publish += period;
            // After a stall (suspend, debugger) start afresh rather than publish in a burst.
            if next_publish < now {
                next_publish = now + period;
            }
        }
        lifecycle.progress(now);
        publishes = publishes.wrapping_add(1);
        if publishes.is_multiple_of(STATS_EVERY) {
            let level = record.level().get();
            let figures = format!(
                "mash {level:.2}, {} keys in window, {} keys, {} device(s)",
                record.presses_in_window(),
                record.presses_total(),
                source.devices()
            );
            // What keeps keys from counting comes first: the status line is cut at 128 bytes.
            let line = match source.problem() {
                Some(problem) => format!("{problem}; {figures}"),
                None => figures,
            };
            stats.gauge("level", f64::from(level));
            stats.gauge("devices", source.devices() as f64);
            stats.set_status_line(&line);
            stats.publish(monotonic_now_ns());
            lifecycle.status(now, &line);
        }
    }
    Ok(())
}

/// The configured key source (`input.source`).
fn open_source(source: &InputSource) -> anyhow::Result<KeySource> {
    Ok(match source {
        InputSource::Evdev => KeySource::Evdev(Keyboards::default()),
        InputSource::Fifo(path) => KeySource::Fifo(Fifo::open(path)?),
        InputSource::Script(pattern) => {
            let script: MashScript = pattern
                .parse()
                .with_context(|| format!("input.source: mash pattern {pattern:?}"))?;
            KeySource::Script(ScriptPlayer::new(script, Instant::now()))
        }
    })
}

/// The mash model and the counts the mash cell carries beside its level.
struct Mashing {
    meter: MashMeter,
    /// MashMeter keeps its window private; this counts the presses in it for the cell's
    /// `presses_in_window` (same window length, same times).
    window: Duration,
    recent: VecDeque<Instant>,
    presses_total: u64,
}

impl Mashing {
    fn new(config: &Config) -> Self {
        Mashing {
            meter: MashMeter::new(config.mash.clone()),
            window: Duration::from_millis(u64::from(config.mash.window_ms)),
            recent: VecDeque::new(),
            presses_total: 0,
        }
    }

    /// `keys` were pressed at `now`.
    fn press(&mut self, keys: &[KeyCode], now: Instant) {
        for &key in keys {
            self.meter.press(key, now);
            if self.recent.len() == MAX_COUNTED_PRESSES {
                self.recent.pop_front();
            }
            self.recent.push_back(now);
        }
        while self
            .recent
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > self.window)
        {
            self.recent.pop_front();
        }
        self.presses_total += keys.len() as u64;
    }

    /// The cell's value at `now`.
    fn record(&mut self, now: Instant) -> MashRecord {
        MashRecord::new(
            self.meter.level(now),
            u32::try_from(self.recent.len()).unwrap_or(u32::MAX),
            self.presses_total,
            monotonic_now_ns(),
        )
    }
}
