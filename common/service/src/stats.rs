//! Publishing a service's statistics in its `stats.<service>` cell, where `keymash status`
//! (and tests) read them.

use keymash_core::config::Config;
use keymash_pipeline::{stat, Service};
use keymash_pipeline::{PipelineError, Segments};
use keymash_shm::{CellWriter, ServiceState, ServiceStats};

/// Why the statistics cell could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("cannot open the statistics cell: {0}")]
    Open(#[from] PipelineError),
}

/// A service's statistics: updated locally as work happens, stored in shared memory by
/// [`StatsPublisher::publish`] (a few times a second is plenty; each store is one small copy).
#[derive(Debug)]
pub struct StatsPublisher {
    writer: CellWriter<ServiceStats>,
    /// Where the cell is and which file it was (device, inode): if the segments are removed
    /// under a running service (by hand, or a cleanup run too early), the cell is created again
    /// instead of the stage vanishing from `keymash status` while it runs.
    segments: Segments,
    service: Service,
    identity: Option<(u64, u64)>,
    next_check_ns: u64,
    recreate_failed: bool,
    stats: ServiceStats,
    /// The counter whose per-second rate is published as the [`stat::RATE`] gauge.
    rate_counter: &'static str,
    rate_sample: Option<(u64, u64)>,
    full_reported: bool,
}

impl StatsPublisher {
    /// The rate gauge is recomputed over windows of at least this long.
    const RATE_WINDOW_NS: u64 = 1_000_000_000;
    /// How often the cell's file is checked for removal (one `stat`).
    const REPLACED_CHECK_NS: u64 = 1_000_000_000;

    /// Open (or re-attach to) `service`'s statistics cell. `rate_counter` names the counter
    /// whose rate is the stage's main figure (frames, packets, keys). `now_ns` is
    /// CLOCK_MONOTONIC ([`keymash_shm::monotonic_now_ns`]), the clock of every later call.
    pub fn open(
        config: &Config,
        service: Service,
        rate_counter: &'static str,
        now_ns: u64,
    ) -> Result<Self, StatsError> {
        let segments = Segments::new(config)?;
        let spec = segments.stats_cell(service)?;
        let writer = spec.create()?;
        let identity = file_identity(&spec.id().path());
        let stats = ServiceStats::new(std::process::id(), now_ns);
        let mut publisher = StatsPublisher {
            writer,
            segments,
            service,
            identity,
            next_check_ns: now_ns.saturating_add(Self::REPLACED_CHECK_NS),
            recreate_failed: false,
            stats,
            rate_counter,
            rate_sample: None,
            full_reported: false,
        };
        publisher.count(rate_counter, 0);
        publisher.count(stat::DROPPED, 0);
        publisher.publish(now_ns);
        Ok(publisher)
    }

    /// Add `delta` to counter `name`.
    pub fn count(&mut self, name: &str, delta: u64) {
        let result = self.stats.add_counter(name, delta);
        self.note_full(result);
    }

    /// Set counter `name` to a total kept elsewhere (kernel counters, a protocol's stats).
    pub fn set_count(&mut self, name: &str, total: u64) {
        let result = self.stats.set_counter(name, total);
        self.note_full(result);
    }

    pub fn counter(&self, name: &str) -> Option<u64> {
        self.stats.counter(name)
    }

    /// Set gauge `name` (a current value: fps, loss %, milliseconds).
    pub fn gauge(&mut self, name: &str, value: f64) {
        let result = self.stats.set_gauge(name, value);
        self.note_full(result);
    }

    pub fn set_state(&mut self, state: ServiceState) {
        self.stats.set_state(state);
    }

    pub fn set_status_line(&mut self, line: &str) {
        self.stats.set_status_line(line);
    }

    /// Record the most recent error (shown by `keymash status` until replaced).
    pub fn set_last_error(&mut self, error: &str) {
        self.stats.set_last_error(error);
    }

    /// Recompute the rate gauge if a window has passed, stamp the heartbeat and store.
    pub fn publish(&mut self, now_ns: u64) {
        self.store(now_ns, true);
    }

    /// [`StatsPublisher::publish`]; `recreate` allows creating a removed cell again (not when
    /// stopping: a cleanup that removes the segments of stopping stages means it).
    fn store(&mut self, now_ns: u64, recreate: bool) {
        let total = self.stats.counter(self.rate_counter).unwrap_or(0);
        match self.rate_sample {
            None => self.rate_sample = Some((now_ns, total)),
            Some((since, base)) if now_ns.saturating_sub(since) >= Self::RATE_WINDOW_NS => {
                let seconds = (now_ns - since) as f64 / 1e9;
                let rate = total.saturating_sub(base) as f64 / seconds;
                let result = self.stats.set_gauge(stat::RATE, rate);
                self.note_full(result);
                self.rate_sample = Some((now_ns, total));
            }
            Some(_) => {}
        }
        self.stats.set_heartbeat_ns(now_ns);
        if recreate && now_ns >= self.next_check_ns {
            self.next_check_ns = now_ns.saturating_add(Self::REPLACED_CHECK_NS);
            self.recreate_if_removed();
        }
        self.writer.store(&self.stats);
    }

    /// Creates the cell again if its file was removed or replaced since it was opened.
    fn recreate_if_removed(&mut self) {
        let Ok(spec) = self.segments.stats_cell(self.service) else {
            return;
        };
        let path = spec.id().path();
        if file_identity(&path) == self.identity {
            return;
        }
        match spec.create() {
            Ok(writer) => {
                log::warn!("{path} was removed under this running service; created it again");
                self.writer = writer;
                self.identity = file_identity(&path);
                self.recreate_failed = false;
            }
            // Said once; the next check tries again.
            Err(e) if !self.recreate_failed => {
                log::warn!("{path} was removed and cannot be created again: {e}");
                self.recreate_failed = true;
            }
            Err(_) => {}
        }
    }

    fn note_full<E: std::fmt::Display>(&mut self, result: Result<(), E>) {
        if let Err(e) = result {
            if !self.full_reported {
                log::warn!("statistics: {e}");
                self.full_reported = true;
            }
        }
    }
}

/// Device and inode of the file at `path`, if there is one.
fn file_identity(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A service's statistics say `stopping` once it returns from its loop, whichever way it
/// returns (a clean stop or an error), so `keymash status` never shows a stage that has exited
/// as up. A crash (panic = abort, SIGKILL) leaves the heartbeat to go stale instead.
impl Drop for StatsPublisher {
    fn drop(&mut self) {
        self.stats.set_state(ServiceState::Stopping);
        self.store(keymash_shm::monotonic_now_ns(), false);
    }
}
