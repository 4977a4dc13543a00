//! The controller's shared-memory edges: the mash cell it follows and the statistics cell where
//! it publishes the kernel's counters.

use std::time::{Duration, Instant};

use keymash_core::config::Config;
use keymash_core::pipeline::{stat, MashRecord, Service, MASH_CELL};
use keymash_core::MashLevel;
use keymash_service::stats::{segment_id, StatsError};
use keymash_service::StatsPublisher;
use keymash_shm::{CellReader, LoadError, SegmentId, ServiceState, WaitError};

use crate::layout::LossCounters;
use crate::plan::WindowRate;
use crate::runner::{MashSource, StatsSink};

/// How often to retry opening a mash cell that does not exist yet (mash-input not started).
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// Follows the mash cell `<prefix>.mash`, written by mash-input. Opens it lazily and again
/// after mash-input recreated it; between refresh ticks the controller sleeps on the cell's
/// futex, so a new level reaches the filter map within microseconds, not a tick.
#[derive(Debug)]
pub struct MashCell {
    id: SegmentId,
    reader: Option<CellReader<MashRecord>>,
    last_open_attempt: Option<Instant>,
    seen_version: u64,
}

impl MashCell {
    pub fn new(config: &Config) -> Result<Self, keymash_shm::NameError> {
        Ok(MashCell {
            id: segment_id(config, MASH_CELL)?,
            reader: None,
            last_open_attempt: None,
            seen_version: 0,
        })
    }

    fn reader(&mut self) -> Option<&CellReader<MashRecord>> {
        if self.reader.as_ref().is_some_and(CellReader::is_replaced) {
            log::info!("mash cell {} was recreated; reopening", self.id.path());
            self.reader = None;
        }
        if self.reader.is_none() {
            let due = self
                .last_open_attempt
                .is_none_or(|t| t.elapsed() >= REOPEN_INTERVAL);
            if !due {
                return None;
            }
            self.last_open_attempt = Some(Instant::now());
            match CellReader::open(&self.id) {
                Ok(reader) => {
                    log::info!("following the mash cell {}", self.id.path());
                    self.seen_version = 0;
                    self.reader = Some(reader);
                }
                Err(e) => log::debug!("mash cell {} not available yet: {e}", self.id.path()),
            }
        }
        self.reader.as_ref()
    }
}

impl MashSource for MashCell {
    fn level(&mut self) -> Option<MashLevel> {
        let now_ns = keymash_shm::monotonic_now_ns();
        let reader = self.reader()?;
        match reader.load_versioned() {
            Ok((record, version)) => {
                self.seen_version = version;
                // A stale level (mash-input stopped or hung) is absent: the loss falls back
                // to its value at rest rather than freezing wherever the crowd left it.
                record.level_at(now_ns)
            }
            Err(LoadError::NeverStored | LoadError::Inconsistent { .. }) => None,
        }
    }

    fn wait(&mut self, timeout: Duration) {
        let seen = self.seen_version;
        match self.reader() {
            Some(reader) => {
                // A change or a timeout: the next tick refreshes either way. A failing futex must
                // not turn this wait into a busy loop, so then we just sleep.
                if let Err(WaitError::Wait(errno)) = reader.wait_for_change(seen, timeout) {
                    log::debug!("waiting on the mash cell failed ({errno}); sleeping instead");
                    std::thread::sleep(timeout);
                }
            }
            None => std::thread::sleep(timeout),
        }
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
            self.publisher.set_status_line(&format!(
                "drop {percent:.1}% (target {:.1}%) of {:.0} pkt/s",
                target * 100.0,
                window.packets_per_second()
            ));
        }
        self.publisher.publish(keymash_shm::monotonic_now_ns());
    }

    fn stopping(&mut self) {
        self.publisher.set_state(ServiceState::Stopping);
        self.publisher.publish(keymash_shm::monotonic_now_ns());
    }
}
