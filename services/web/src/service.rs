//! Wiring: the listening socket, the runtime's thread, the JPEG thread, and the main thread's
//! loop (lifecycle, history, status line) until SIGTERM.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use keymash_core::config::Config;
use keymash_pipeline::Segments;
use keymash_service::Lifecycle;
use keymash_shm::Prefix;
use keymash_watch::history::Sample;
use keymash_watch::status;
use tokio::sync::Notify;

use crate::pictures::Encoder;
use crate::server;
use crate::shared::{Settings, Shared};

/// The history is sampled this often (the page plots one point a second).
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// How long the runtime is given to end its connections when the service stops.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

pub(crate) fn run(lifecycle: &mut Lifecycle, config: Config) -> anyhow::Result<()> {
    let web = &config.web;
    let listen: SocketAddr = web.listen.parse().with_context(|| {
        format!(
            "web.listen = {:?} is not an address and port such as \"0.0.0.0:8088\"",
            web.listen
        )
    })?;
    let prefix = Prefix::new(&config.shm.prefix).context("shm.prefix")?;
    let screen = Segments::new(&config)?
        .screen()
        .context("the screen segment")?
        .follow();
    let history_capacity = web.history_minutes as usize * 60;
    let shared = Arc::new(Shared::new(
        Settings::new(&config, listen, prefix.clone()),
        history_capacity,
    ));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        // Status, metrics and history are made on the blocking pool; two threads are plenty
        // for reads of shared memory that take a millisecond.
        .max_blocking_threads(2)
        .thread_name("keymash-web-blocking")
        .build()
        .context("cannot start the async runtime")?;
    let listener = {
        let _inside = runtime.enter();
        server::listen(listen).with_context(|| {
            format!(
                "cannot listen on web.listen = {:?} (another service on that port? an address \
                 this PC does not have?)",
                web.listen
            )
        })?
    };
    let listening = listener.local_addr().unwrap_or(listen);

    let encoder = Encoder::new(
        screen,
        config.video.clone(),
        web.jpeg_quality,
        Arc::clone(&shared),
    );
    let encoder = std::thread::Builder::new()
        .name("keymash-web-jpeg".to_owned())
        .spawn(move || encoder.run())
        .context("cannot start the JPEG thread")?;
    shared.demand.set_encoder(encoder.thread().clone());

    let stop = Arc::new(Notify::new());
    let io = {
        let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("keymash-web-io".to_owned())
            .spawn(move || {
                runtime.block_on(server::serve(listener, shared, stop));
                // Connections still open (stream viewers) end here.
                runtime.shutdown_timeout(SHUTDOWN_GRACE);
            })
            .context("cannot start the HTTP thread")?
    };

    let mut threads = Threads {
        shared: Arc::clone(&shared),
        stop,
        encoder: Some(encoder),
        io: Some(io),
    };
    lifecycle.ready(&status_line(&shared, listening));
    let mut sampler = Sampler::new(prefix);
    let mut stuck_logged = false;
    loop {
        if lifecycle.stop_requested() {
            break;
        }
        if let Some(name) = threads.finished() {
            return Err(anyhow!("{name} ended on its own"));
        }
        let now = Instant::now();
        sampler.sample_if_due(now, &shared);
        // The watchdog is kicked only while every thread beats, so a hung one gets the
        // service restarted.
        match shared.stuck_thread() {
            None => {
                lifecycle.progress(now);
                stuck_logged = false;
            }
            Some(name) if !stuck_logged => {
                log::error!(
                    "{name} has not gone round for a long time; no longer kicking the watchdog"
                );
                stuck_logged = true;
            }
            Some(_) => {}
        }
        lifecycle.status(now, &status_line(&shared, listening));
        std::thread::sleep(Lifecycle::MAX_WAIT);
    }
    threads.stop_and_join();
    Ok(())
}

fn status_line(shared: &Shared, listening: SocketAddr) -> String {
    let screen = if shared.absent().is_some() {
        ", no screen picture"
    } else {
        ""
    };
    format!(
        "{} clients, {} viewers, serving on {listening}{screen}",
        shared.clients(),
        shared.demand.viewers()
    )
}

/// The two worker threads, stopped and joined also when the main loop fails.
#[derive(Debug)]
struct Threads {
    shared: Arc<Shared>,
    stop: Arc<Notify>,
    encoder: Option<JoinHandle<()>>,
    io: Option<JoinHandle<()>>,
}

impl Threads {
    /// A thread that ended although nobody asked it to.
    fn finished(&self) -> Option<&'static str> {
        if self.io.as_ref().is_some_and(JoinHandle::is_finished) {
            return Some("the HTTP thread");
        }
        if self.encoder.as_ref().is_some_and(JoinHandle::is_finished) {
            return Some("the JPEG thread");
        }
        None
    }

    fn stop_and_join(&mut self) {
        self.shared.quit.store(true, Ordering::Relaxed);
        // A stored permit: the server sees it even if it is not waiting right now.
        self.stop.notify_one();
        if let Some(encoder) = self.encoder.take() {
            encoder.thread().unpark();
            let _ = encoder.join();
        }
        if let Some(io) = self.io.take() {
            let _ = io.join();
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Samples the figures the page plots once a second.
#[derive(Debug)]
struct Sampler {
    prefix: Prefix,
    next: Instant,
    failure: Option<String>,
}

impl Sampler {
    fn new(prefix: Prefix) -> Self {
        Sampler {
            prefix,
            next: Instant::now(),
            failure: None,
        }
    }

    fn sample_if_due(&mut self, now: Instant, shared: &Shared) {
        if now < self.next {
            return;
        }
        // Once a second on the second's grid; after a long stall, from now on.
        self.next += SAMPLE_INTERVAL;
        if self.next <= now {
            self.next = now + SAMPLE_INTERVAL;
        }
        match status::gather(&self.prefix) {
            Ok(report) => {
                let unix_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                let sample = Sample::from_report(&report, unix_ms);
                shared.history().push(sample);
                self.failure = None;
            }
            Err(e) => {
                let why = format!("{e:#}");
                if self.failure.as_deref() != Some(why.as_str()) {
                    log::warn!("cannot sample the status for the history: {why}");
                    self.failure = Some(why);
                }
            }
        }
    }
}
