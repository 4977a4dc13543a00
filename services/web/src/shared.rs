//! What the threads of the service share: settings, demand for pictures, the published
//! picture, the history, the counters and each thread's heartbeat.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use keymash_core::config::Config;
use keymash_shm::Prefix;
use keymash_watch::history::History;
use keymash_watch::metrics::WebFigures;
use tokio::sync::{watch, Semaphore};

use crate::demand::Demand;
use crate::figures::Counters;
use crate::pictures::Published;

/// The settings the threads need, from `[web]` and `[shm]`.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) prefix: Prefix,
    pub(crate) max_clients: usize,
    pub(crate) stream_fps: u32,
    pub(crate) stall_timeout: Duration,
    /// The stream's picture size: the page reserves the picture's place before it arrives.
    pub(crate) picture: (u32, u32),
}

impl Settings {
    pub(crate) fn new(config: &Config, listen: SocketAddr, prefix: Prefix) -> Self {
        let web = &config.web;
        Settings {
            listen,
            prefix,
            max_clients: web.max_clients as usize,
            stream_fps: web.stream_fps,
            stall_timeout: Duration::from_millis(u64::from(web.stall_timeout_ms)),
            picture: (config.video.width, config.video.height),
        }
    }
}

/// A thread that has not beaten for this long is stuck: the watchdog is no longer kicked, and
/// systemd restarts the service.
pub(crate) const BEAT_STALE: Duration = Duration::from_secs(10);

/// Everything the threads share.
/// Refused clients whose connections stay open at once until they have read their 503; beyond
/// this a refused client is answered and closed at once.
const LINGERING_REFUSALS: usize = 32;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) demand: Arc<Demand>,
    pub(crate) counters: Counters,
    /// One permit per client connected; [`Settings::max_clients`] in all.
    pub(crate) permits: Arc<Semaphore>,
    /// One permit per refused client whose connection is kept open until it has read the 503
    /// (see `server::refuse`); bounded so a flood of refused clients holds little.
    pub(crate) lingering_refusals: Arc<Semaphore>,
    /// The newest picture on the screen as JPEG; `None` until the first is encoded.
    pub(crate) pictures: watch::Sender<Published>,
    /// Why this PC has no screen picture (no screen segment: the sender, or the display is not
    /// running); `None` while the segment is followed.
    absent: Mutex<Option<String>>,
    /// Why the last picture could not be encoded; `None` once one was.
    encode_error: Mutex<Option<String>>,
    pub(crate) history: Mutex<History>,
    /// The service is stopping: the encoder thread returns.
    pub(crate) quit: AtomicBool,
    start: Instant,
    io_beat_ms: AtomicU64,
    encoder_beat_ms: AtomicU64,
}

/// A mutex whose holder panicked still holds consistent data here (a string, the history);
/// and with `panic = "abort"` there is no such holder anyway.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(settings: Settings, history_capacity: usize) -> Self {
        let (pictures, _) = watch::channel(None);
        Shared {
            permits: Arc::new(Semaphore::new(settings.max_clients)),
            lingering_refusals: Arc::new(Semaphore::new(LINGERING_REFUSALS)),
            settings,
            demand: Arc::new(Demand::default()),
            counters: Counters::default(),
            pictures,
            absent: Mutex::new(Some(
                "keymash-web has not looked for the screen segment yet".to_owned(),
            )),
            encode_error: Mutex::new(None),
            history: Mutex::new(History::new(history_capacity)),
            quit: AtomicBool::new(false),
            start: Instant::now(),
            io_beat_ms: AtomicU64::new(0),
            encoder_beat_ms: AtomicU64::new(0),
        }
    }

    /// Clients connected now.
    pub(crate) fn clients(&self) -> usize {
        self.settings
            .max_clients
            .saturating_sub(self.permits.available_permits())
    }

    pub(crate) fn figures(&self) -> WebFigures {
        self.counters
            .figures(self.clients() as u64, self.demand.viewers() as u64)
    }

    pub(crate) fn absent(&self) -> Option<String> {
        lock(&self.absent).clone()
    }

    pub(crate) fn set_absent(&self, why: Option<&str>) {
        let mut absent = lock(&self.absent);
        if absent.as_deref() != why {
            *absent = why.map(str::to_owned);
        }
    }

    pub(crate) fn encode_error(&self) -> Option<String> {
        lock(&self.encode_error).clone()
    }

    pub(crate) fn set_encode_error(&self, error: Option<String>) {
        *lock(&self.encode_error) = error;
    }

    pub(crate) fn history(&self) -> std::sync::MutexGuard<'_, History> {
        lock(&self.history)
    }

    fn since_start_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn beat_io(&self) {
        self.io_beat_ms
            .store(self.since_start_ms(), Ordering::Relaxed);
    }

    pub(crate) fn beat_encoder(&self) {
        self.encoder_beat_ms
            .store(self.since_start_ms(), Ordering::Relaxed);
    }

    /// The thread that has not beaten for [`BEAT_STALE`], if any.
    pub(crate) fn stuck_thread(&self) -> Option<&'static str> {
        let now = self.since_start_ms();
        let stale = BEAT_STALE.as_millis() as u64;
        [
            ("the HTTP thread", &self.io_beat_ms),
            ("the JPEG thread", &self.encoder_beat_ms),
        ]
        .into_iter()
        .find(|(_, beat)| now.saturating_sub(beat.load(Ordering::Relaxed)) > stale)
        .map(|(name, _)| name)
    }
}
