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
    stats: ServiceStats,
    /// The counter whose per-second rate is published as the [`stat::RATE`] gauge.
    rate_counter: &'static str,
    rate_sample: Option<(u64, u64)>,
    full_reported: bool,
}

impl StatsPublisher {
    /// The rate gauge is recomputed over windows of at least this long.
    const RATE_WINDOW_NS: u64 = 1_000_000_000;

    /// Open (or re-attach to) `service`'s statistics cell. `rate_counter` names the counter
    /// whose rate is the stage's main figure (frames, packets, keys). `now_ns` is
    /// CLOCK_MONOTONIC ([`keymash_shm::monotonic_now_ns`]), the clock of every later call.
    pub fn open(
        config: &Config,
        service: Service,
        rate_counter: &'static str,
        now_ns: u64,
    ) -> Result<Self, StatsError> {
        let writer = Segments::new(config)?.stats_cell(service)?.create()?;
        let stats = ServiceStats::new(std::process::id(), now_ns);
        let mut publisher = StatsPublisher {
            writer,
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
        self.writer.store(&self.stats);
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

/// A service's statistics say `stopping` once it returns from its loop, whichever way it
/// returns (a clean stop or an error), so `keymash status` never shows a stage that has exited
/// as up. A crash (panic = abort, SIGKILL) leaves the heartbeat to go stale instead.
impl Drop for StatsPublisher {
    fn drop(&mut self) {
        self.stats.set_state(ServiceState::Stopping);
        self.publish(keymash_shm::monotonic_now_ns());
    }
}
