//! The controller's working loop: load and attach the filter, refresh its map at the refresh
//! rate with a moving deadline, publish kernel-truth counters, and take everything away again on
//! SIGTERM/SIGINT.

use std::time::{Duration, Instant};

use keymash_core::MashLevel;
use keymash_service::Lifecycle;
use nix::time::{clock_gettime, ClockId};

use crate::cli::Settings;
use crate::filter::{AttachedFilter, FilterError, LossFilter};
use crate::layout::LossCounters;
use crate::plan::{pass_everything, DropRateMeter, WindowRate};

/// Where the mash level comes from (the mash cell in the exhibit).
pub trait MashSource {
    /// The current mash level, or `None` when there is none (no writer yet, or a stale one).
    fn level(&mut self) -> Option<MashLevel>;

    /// Blocks until the level may have changed or `timeout` has passed, whichever is first.
    /// The default just sleeps: the level is then picked up at the next refresh tick.
    fn wait(&mut self, timeout: Duration) {
        std::thread::sleep(timeout);
    }

    /// Why there is no level to read (the cell is missing), for the status line; `None` while
    /// the source is there.
    fn waiting(&self) -> Option<&str> {
        None
    }
}

/// No mash input: every tick reads `None` (counts as nobody mashing).
#[derive(Debug, Default)]
pub struct NoMash;

impl MashSource for NoMash {
    fn level(&mut self) -> Option<MashLevel> {
        None
    }
}

/// Where kernel-truth counters are published (the statistics cell in the exhibit).
pub trait StatsSink {
    /// Called once per refresh with the kernel's totals, the one-second window that closed on
    /// this refresh (if any), the long-run drop probability aimed at, the mash level used and
    /// why there is no mash source (see [`MashSource::waiting`]).
    fn publish(
        &mut self,
        totals: LossCounters,
        closed_window: Option<WindowRate>,
        target: f64,
        mash: Option<MashLevel>,
        waiting: Option<&str>,
    );

    /// The controller is stopping.
    fn stopping(&mut self) {}
}

/// Publishes nothing beyond the log and the systemd STATUS line.
#[derive(Debug, Default)]
pub struct NoStats;

impl StatsSink for NoStats {
    fn publish(
        &mut self,
        _: LossCounters,
        _: Option<WindowRate>,
        _: f64,
        _: Option<MashLevel>,
        _: Option<&str>,
    ) {
    }
}

/// Errors that end the controller.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("reading CLOCK_MONOTONIC: {0}")]
    Clock(#[source] nix::Error),
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`, which the deadline uses.
pub fn monotonic_now_ns() -> Result<u64, RunError> {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).map_err(RunError::Clock)?;
    let secs = u64::try_from(now.tv_sec()).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec()).unwrap_or(0);
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// Runs the controller until a stop is requested. On return the filter is detached and the
/// clsact qdisc removed if this run added it; the counters at the end are returned.
pub fn run(
    settings: &Settings,
    lifecycle: &mut Lifecycle,
    mash: &mut dyn MashSource,
    stats: &mut dyn StatsSink,
) -> Result<LossCounters, RunError> {
    let mut filter = LossFilter::load()?;
    // Configure before attaching, so the first packet the filter sees already meets the plan.
    filter.reset_gilbert_elliott_state()?;
    filter.write_config(&settings.plan.record(monotonic_now_ns()?, mash.level()))?;
    let mut attached = AttachedFilter::attach(filter, &settings.interface)?;
    log::info!(
        "filter attached at {} ingress (clsact {}), UDP port {}, {:?}, refresh every {:?}, fail-safe after {:?}",
        settings.interface,
        if attached.created_clsact() { "added" } else { "already present" },
        settings.plan.port,
        settings.plan.drive,
        settings.refresh_interval,
        settings.plan.failsafe,
    );
    lifecycle.ready(&format!(
        "filtering UDP {} on {}",
        settings.plan.port, settings.interface
    ));

    let result = refresh_until_stopped(settings, lifecycle, &mut attached, mash, stats);

    // Whatever ended the loop: stop dropping first, then take the filter away.
    let stop_dropping = attached
        .filter_mut()
        .write_config(&pass_everything(settings.plan.port));
    let totals = attached.filter().counters();
    stats.stopping();
    let detached = attached.detach();
    result?;
    stop_dropping?;
    detached?;
    let totals = totals?;
    log::info!(
        "stopped cleanly; kernel counters: seen {} dropped {} passed-after-deadline {}",
        totals.seen,
        totals.dropped,
        totals.passed_expired
    );
    Ok(totals)
}

fn refresh_until_stopped(
    settings: &Settings,
    lifecycle: &mut Lifecycle,
    attached: &mut AttachedFilter,
    mash: &mut dyn MashSource,
    stats: &mut dyn StatsSink,
) -> Result<(), RunError> {
    let mut meter = DropRateMeter::new(Duration::from_secs(1));
    let mut next_tick = Instant::now() + settings.refresh_interval;
    while !lifecycle.stop_requested() {
        let level = mash.level();
        let record = settings.plan.record(monotonic_now_ns()?, level);
        attached.filter_mut().write_config(&record)?;

        let totals = attached.filter().counters()?;
        let closed = meter.observe(monotonic_now_ns()?, totals);
        let target = settings.plan.model(level).mean_loss();
        stats.publish(totals, closed, target, level, mash.waiting());
        let now = Instant::now();
        lifecycle.progress(now);
        if let Some(window) = closed {
            let drop = window
                .drop_ratio()
                .map_or_else(|| "-".to_owned(), |d| d.to_string());
            let line = format!(
                "drop {drop} of {:.0} pkt/s (target {:.1}%), seen {} dropped {}",
                window.packets_per_second(),
                target * 100.0,
                totals.seen,
                totals.dropped
            );
            match mash.waiting() {
                Some(why) => lifecycle.status(now, &format!("{why}; {line}")),
                None => lifecycle.status(now, &line),
            }
        }

        // Refresh at least every tick; a mash change (the mash cell's futex) wakes us sooner.
        let now = Instant::now();
        if now >= next_tick {
            next_tick += settings.refresh_interval;
            if next_tick <= now {
                // Fell behind (a stall): restart the rhythm rather than burst to catch up.
                log::debug!("refresh tick late by {:?}", now - next_tick);
                next_tick = now + settings.refresh_interval;
            }
        }
        mash.wait(next_tick.saturating_duration_since(now));
    }
    Ok(())
}
