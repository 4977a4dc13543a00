//! The working loop: key presses in, the mash level out to the mash cell at `input.publish_hz`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use keymash_core::config::{Config, InputSource};
use keymash_core::mash::MashMeter;
use keymash_core::pipeline::{MashRecord, Service, MASH_CELL};
use keymash_input::{MashScript, ScriptPlayer};
use keymash_service::stats::{permissions, segment_id};
use keymash_service::{Lifecycle, StatsPublisher};
use keymash_shm::{monotonic_now_ns, CellWriter};

use crate::keys::{Fifo, KeySource, Keyboards};

/// Statistics published every this many cell updates (the cell itself goes at publish_hz).
const STATS_EVERY: u32 = 10;
/// Bound on the presses counted for the cell (a stuck or hostile device cannot grow memory);
/// far above what the saturation rate puts in a window.
const MAX_COUNTED_PRESSES: usize = 4096;

pub fn run(lifecycle: &mut Lifecycle, config: Config) -> anyhow::Result<()> {
    let mut source = match &config.input.source {
        InputSource::Evdev => KeySource::Evdev(Keyboards::default()),
        InputSource::Fifo(path) => KeySource::Fifo(Fifo::open(path)?),
        InputSource::Script(pattern) => {
            let script: MashScript = pattern
                .parse()
                .with_context(|| format!("input.source: mash pattern {pattern:?}"))?;
            KeySource::Script(ScriptPlayer::new(script, Instant::now()))
        }
    };
    let id = segment_id(&config, MASH_CELL)?;
    let (mut cell, _) = CellWriter::<MashRecord>::open(&id, permissions(&config))
        .with_context(|| format!("opening the mash cell {id}"))?;
    let mut stats = StatsPublisher::open(&config, Service::MashInput, "keys", monotonic_now_ns())?;
    let mut meter = MashMeter::new(config.mash.clone());
    // MashMeter keeps its window private; this counts the presses in it for the cell's
    // `presses_in_window` (same window length, same times).
    let window = Duration::from_millis(u64::from(config.mash.window_ms));
    let mut recent: VecDeque<Instant> = VecDeque::new();
    // publish_hz is validated (>= 50) by the configuration.
    let period = Duration::from_secs_f64(1.0 / f64::from(config.input.publish_hz.max(1)));

    let mut presses_total: u64 = 0;
    let mut presses = Vec::new();
    let mut next_publish = Instant::now();
    let mut publishes: u32 = 0;
    lifecycle.ready(&format!(
        "reading {}",
        String::from(config.input.source.clone())
    ));
    while !lifecycle.stop_requested() {
        presses.clear();
        source.wait_for_presses(next_publish, &mut presses)?;
        let now = Instant::now();
        for &key in &presses {
            meter.press(key, now);
            if recent.len() == MAX_COUNTED_PRESSES {
                recent.pop_front();
            }
            recent.push_back(now);
        }
        while recent
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > window)
        {
            recent.pop_front();
        }
        presses_total += presses.len() as u64;
        stats.count("keys", presses.len() as u64);
        // A key press publishes at once (keypress-to-screen latency); otherwise at the tick.
        if presses.is_empty() && now < next_publish {
            continue;
        }
        let level = meter.level(now);
        let in_window = u32::try_from(recent.len()).unwrap_or(u32::MAX);
        cell.store(&MashRecord::new(
            level,
            in_window,
            presses_total,
            monotonic_now_ns(),
        ));
        if now >= next_publish {
            next_publish += period;
            // After a stall (suspend, debugger) start afresh rather than publish in a burst.
            if next_publish < now {
                next_publish = now + period;
            }
        }
        lifecycle.progress(now);
        publishes = publishes.wrapping_add(1);
        if publishes % STATS_EVERY == 0 {
            let line = format!(
                "mash {:.2}, {in_window} keys in window, {presses_total} keys, {} device(s)",
                level.get(),
                source.devices()
            );
            stats.gauge("level", f64::from(level.get()));
            stats.gauge("devices", source.devices() as f64);
            stats.set_status_line(&line);
            stats.publish(monotonic_now_ns());
            lifecycle.status(now, &line);
        }
    }
    Ok(())
}
