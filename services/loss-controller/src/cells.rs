//! The controller's shared-memory edges: the mash cell it follows and the statistics cell where
//! it publishes the kernel's counters.

use std::time::Duration;

use keymash_core::config::Config;
use keymash_core::MashLevel;
use keymash_pipeline::{stat, Follow, MashRecord, PipelineError, Segments, Service};
use keymash_service::stats::StatsError;
use keymash_service::StatsPublisher;
use keymash_shm::{CellReader, LoadError, ServiceState, WaitError};

use crate::layout::LossCounters;
use crate::plan::WindowRate;
use crate::runner::{MashSource, StatsSink};

/// Follows the mash cell `<prefix>.mash`, written by mash-input, through keymash-pipeline: opens
/// it once it exists and again after mash-input recreated it. Between refresh ticks the
/// controller sleeps on the cell's futex, so a new level reaches the filter map within
/// microseconds, not a tick.
#[derive(Debug)]
pub struct MashCell {
    follow: Follow<CellReader<MashRecord>>,
    /// The reader [`MashCell::seen_version`] belongs to ([`Follow::opens`]).
    opens: u64,
    seen_version: u64,
}

impl MashCell {
    pub fn new(config: &Config) -> Result<Self, PipelineError> {
        Ok(MashCell {
            follow: Segments::new(config)?.mash_cell()?.follow(),
            opens: 0,
            seen_version: 0,
        })
    }

    /// The reader, if the cell is there; a new reader starts from version 0.
    fn reader(&mut self) -> Option<(&CellReader<MashRecord>, &mut u64)> {
        self.follow.reader()?;
        if self.follow.opens() != self.opens {
            self.opens = self.follow.opens();
            self.seen_version = 0;
        }
        let reader = self.follow.reader()?;
        Some((reader, &mut self.seen_version))
    }
}

impl MashSource for MashCell {
    fn level(&mut self) -> Option<MashLevel> {
        let now_ns = keymash_shm::monotonic_now_ns();
        let (reader, seen_version) = self.reader()?;
        match reader.load_versioned() {
            Ok((record, version)) => {
                *seen_version = version;
                // A stale level (mash-input stopped or hung) is absent: the loss falls back
                // to its value at rest rather than freezing wherever the crowd left it.
                let level = record.level_at(now_ns);
                if level.is_none() {
                    // Nobody writes this cell: has mash-input replaced it with a new one?
                    self.follow.silent();
                }
                level
            }
            Err(LoadError::NeverStored | LoadError::Inconsistent { .. }) => None,
        }
    }

    fn wait(&mut self, timeout: Duration) {
        match self.reader() {
            Some((reader, seen_version)) => {
                // A change or a timeout: the next tick refreshes either way. A failing futex must
                // not turn this wait into a busy loop, so then we just sleep.
                if let Err(WaitError::Wait(errno)) = reader.wait_for_change(*seen_version, timeout)
                {
                    log::debug!("waiting on the mash cell failed ({errno}); sleeping instead");
                    std::thread::sleep(timeout);
                }
            }
            None => std::thread::sleep(timeout),
        }
    }

    fn waiting(&self) -> Option<&str> {
        self.follow.waiting()
    }
}

/// Publishes kernel-truth counters in `stats.loss-controller`: counters `seen`, `dropped`
/// (also the pipeline-wide [`stat::DROPPED`]), `passed_expired`; gauges `drop_percent` (over
/// the last second), `rate` (video packets per second) and `target_drop_percent`.
#[derive(Debug)]
pub struct StatsCell {
    publisher: StatsPublisher,
}

/// Names of the loss-controller's statistics.
pub mod names {
    pub const SEEN: &str = "seen";
    pub const PASSED_EXPIRED: &str = "passed_expired";
    pub const DROP_PERCENT: &str = "drop_percent";
    pub const TARGET_DROP_PERCENT: &str = "target_drop_percent";
    pub const MASH_LEVEL: &str = "mash_level";
}

impl StatsCell {
    pub fn open(config: &Config) -> Result<Self, StatsError> {
        let now_ns = keymash_shm::monotonic_now_ns();
        let mut publisher =
            StatsPublisher::open(config, Service::LossController, names::SEEN, now_ns)?;
        publisher.set_state(ServiceState::Running);
        Ok(StatsCell { publisher })
    }
}

impl StatsSink for StatsCell {
    fn publish(
        &mut self,
        totals: LossCounters,
        closed_window: Option<WindowRate>,
        target: f64,
        mash: Option<MashLevel>,
        waiting: Option<&str>,
    ) {
        self.publisher.set_count(names::SEEN, totals.seen);
        self.publisher.set_count(stat::DROPPED, totals.dropped);
        self.publisher
            .set_count(names::PASSED_EXPIRED, totals.passed_expired);
        self.publisher
            .gauge(names::TARGET_DROP_PERCENT, target * 100.0);
        self.publisher.gauge(
            names::MASH_LEVEL,
            f64::from(mash.unwrap_or(MashLevel::IDLE).get()),
        );
        if let Some(window) = closed_window {
            let percent = window.drop_ratio().map_or(0.0, |d| d.get() * 100.0);
            self.publisher.gauge(names::DROP_PERCENT, percent);
            let line = format!(
                "drop {percent:.1}% (target {:.1}%) of {:.0} pkt/s",
                target * 100.0,
                window.packets_per_second()
            );
            // No mash cell (mash-input not running): say so first; the loss is the one at rest.
            match waiting {
                Some(why) => self.publisher.set_status_line(&format!("{why}; {line}")),
                None => self.publisher.set_status_line(&line),
            }
        }
        self.publisher.publish(keymash_shm::monotonic_now_ns());
    }

    fn stopping(&mut self) {
        self.publisher.set_state(ServiceState::Stopping);
        self.publisher.publish(keymash_shm::monotonic_now_ns());
    }
}
