//! The service lifecycle every keymash binary follows under systemd (`Type=notify`).
//!
//! 1. [`Lifecycle::start`] installs the logger and the SIGTERM/SIGINT handlers.
//! 2. The service initialises (opens rings, sockets, devices), then calls [`Lifecycle::ready`]:
//!    `READY=1` tells systemd the unit is up, so ordering in the targets means something.
//! 3. Its working loop calls [`Lifecycle::progress`] each time round. That sends `WATCHDOG=1`
//!    (rate-limited to a quarter of `WatchdogSec=`), so a loop that hangs stops kicking the
//!    watchdog and systemd kills and restarts the service. There is deliberately no timer thread.
//! 4. The loop polls [`Lifecycle::stop_requested`] and returns when it is set; blocking waits in
//!    the loop use timeouts of at most [`Lifecycle::MAX_WAIT`] so SIGTERM ends the process within
//!    a second. A second SIGTERM/SIGINT while stopping exits at once with status 1.
//! 5. [`Lifecycle::stopping`] sends `STOPPING=1`; `main` returns and the process exits with 0.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) the notifications are no-ops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::logging;

/// Failures while setting a service up.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("could not install the handler for {signal}: {source}")]
    SignalHandler {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A service's connection to its supervisor: stop requests in, readiness/liveness/status out.
#[derive(Debug)]
pub struct Lifecycle {
    name: &'static str,
    stop: Arc<AtomicBool>,
    watchdog_interval: Option<Duration>,
    last_watchdog: Option<Instant>,
    last_status: Option<Instant>,
}

impl Lifecycle {
    /// The longest a working loop should block between checks of [`Self::stop_requested`].
    pub const MAX_WAIT: Duration = Duration::from_millis(200);

    /// STATUS= is a live summary for `systemctl status`; more than once a second is noise.
    const STATUS_INTERVAL: Duration = Duration::from_secs(1);

    /// Install logging and signal handling for the binary `name`.
    pub fn start(name: &'static str) -> Result<Self, LifecycleError> {
        logging::init(name);
        let stop = Arc::new(AtomicBool::new(false));
        for (signal, signal_name) in [
            (signal_hook::consts::SIGTERM, "SIGTERM"),
            (signal_hook::consts::SIGINT, "SIGINT"),
        ] {
            // Order matters: the conditional shutdown is registered first, so it sees the flag
            // as it was before this delivery; only a second signal makes it exit.
            signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
                .map_err(|source| LifecycleError::SignalHandler {
                    signal: signal_name,
                    source,
                })?;
            signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|source| {
                LifecycleError::SignalHandler {
                    signal: signal_name,
                    source,
                }
            })?;
        }
        let watchdog_interval = sd_notify::watchdog_enabled();
        if let Some(interval) = watchdog_interval {
            log::debug!("systemd watchdog every {interval:?}");
        }
        Ok(Lifecycle {
            name,
            stop,
            watchdog_interval,
            last_watchdog: None,
            last_status: None,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Initialisation is complete: tell systemd, with a first status line.
    pub fn ready(&mut self, status: &str) {
        log::info!("ready: {status}");
        self.notify(&[NotifyState::Ready, NotifyState::Status(status)]);
        self.last_status = Some(Instant::now());
        self.last_watchdog = Some(Instant::now());
    }

    /// True once SIGTERM or SIGINT has arrived.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The stop flag, for a worker thread that must also notice SIGTERM.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// The working loop went round once: kick the watchdog if it is due.
    pub fn progress(&mut self, now: Instant) {
        let Some(interval) = self.watchdog_interval else {
            return;
        };
        let due = self
            .last_watchdog
            .is_none_or(|last| now.saturating_duration_since(last) >= interval / 4);
        if due {
            self.notify(&[NotifyState::Watchdog]);
            self.last_watchdog = Some(now);
        }
    }

    /// Publish a live one-line summary (shown by `systemctl status`), at most once a second.
    pub fn status(&mut self, now: Instant, line: &str) {
        let due = self
            .last_status
            .is_none_or(|last| now.saturating_duration_since(last) >= Self::STATUS_INTERVAL);
        if due {
            self.notify(&[NotifyState::Status(line)]);
            self.last_status = Some(now);
        }
    }

    /// The service is shutting down cleanly.
    pub fn stopping(&self) {
        log::info!("stopping");
        self.notify(&[NotifyState::Stopping]);
    }

    /// For a service that has nothing to do but stay up (it still answers the watchdog and
    /// SIGTERM): wait until a stop is requested.
    pub fn wait_for_stop(&mut self) {
        while !self.stop_requested() {
            std::thread::sleep(Self::MAX_WAIT);
            self.progress(Instant::now());
        }
    }

    fn notify(&self, states: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(states) {
            // Not fatal: systemd would time the start out and say so far more clearly.
            log::warn!("sd_notify failed: {e}");
        }
    }
}
