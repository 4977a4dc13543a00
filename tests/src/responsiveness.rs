//! Support for the responsiveness bench (`tests/benches/responsiveness.rs`, issue 16): the
//! whole pipeline of a chosen build (a directory of `keymash-*` binaries) in two network
//! namespaces at 640x480, and two watchers that turn what it does into timed facts:
//!
//! - [`ReceivedWatch`] reads net-rx's received ring as a second reader and records,
//!   per stream frame, when its payloads arrived (the slot's CLOCK_MONOTONIC arrival time) and
//!   at which quality its macroblocks were coded (read with the codec's own macroblock reader).
//! - [`ShownWatch`] takes each picture display writes to its `frames:DIR` output: the frame
//!   number (the file name), when it was presented (see [`Shown::presented`]) and the synthetic
//!   scene's pixel stamp (capture frame and capture time) read back from the PPM; it deletes the
//!   file at once (640x480 at 30 fps is 33 MB/s).
//!
//! [`before_binaries`] provides the "before" build: the binaries of an older revision, built
//! once from a `git worktree` under `target/responsiveness-before/` and kept there.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keymash_codec::bitio::BitReader;
use keymash_codec::block::{read_macroblock, DecodedMacroblock, PredictionState, QuantTables};
use keymash_codec::payload::HEADER_LEN;
use keymash_codec::PayloadHeader;
use keymash_core::config::Config;
use keymash_media::stamp::{self, Stamp};
use keymash_pipeline::{ReceivedSlot, Segments, Service};
use keymash_shm::{monotonic_now_ns, CellReader, RecvError, RingReader, ServiceStats};

use crate::receiver::{free_udp_port, write_test_key, ReceiverSetup, RunningService};
use crate::{unique_name, NetnsPair};

/// The revision just before issue 16's work: the "before" build.
pub const BEFORE_REVISION: &str = "74cec1f";

/// The eight services, in the order a pipeline starts them (receiver side first, so nothing
/// the sender sends is refused by a port nobody listens on yet), with the side each runs on
/// (true: the sender PC, the left namespace).
pub const SERVICES: [(&str, bool); 8] = [
    ("keymash-mash-input", false),
    ("keymash-loss-controller", false),
    ("keymash-net-rx", false),
    ("keymash-display", false),
    ("keymash-capture", true),
    ("keymash-delay-buffer", true),
    ("keymash-encoder", true),
    ("keymash-net-tx", true),
];

/// Whether `dir` holds every service binary; the first one missing otherwise.
pub fn check_binaries(dir: &Path) -> Result<(), String> {
    for (name, _) in SERVICES {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(format!("{} is missing", path.display()));
        }
    }
    Ok(())
}

/// A private copy of a build's service binaries, removed when dropped: a run that takes minutes
/// keeps measuring the build it started with while `cargo build` replaces `target/release`.
#[derive(Debug)]
pub struct BinarySnapshot {
    dir: PathBuf,
}

impl BinarySnapshot {
    /// Copies the service binaries in `from` to a new directory under the system's temporary
    /// directory.
    pub fn take(from: &Path) -> Result<BinarySnapshot, String> {
        check_binaries(from)?;
        let dir = std::env::temp_dir().join(format!("keymash-{}", unique_name("binaries")));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let snapshot = BinarySnapshot { dir };
        for (name, _) in SERVICES {
            std::fs::copy(from.join(name), snapshot.dir.join(name))
                .map_err(|e| format!("copying {}: {e}", from.join(name).display()))?;
        }
        Ok(snapshot)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for BinarySnapshot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `q` quantile (nearest rank, as the services' own `Percentiles`) of `samples`.
pub fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

/// The arithmetic mean, `None` for no samples.
pub fn mean(samples: &[f64]) -> Option<f64> {
    (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64)
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC in nanoseconds, read back to back (the closest of a
/// few tries), to put a file's mtime on the clock of the pixel stamp and the ring's slots.
pub fn realtime_minus_monotonic_ns() -> i128 {
    let mut best: Option<(u64, i128)> = None;
    for _ in 0..5 {
        let before = monotonic_now_ns();
        let real = system_ns(SystemTime::now());
        let after = monotonic_now_ns();
        let offset = real - i128::from(before / 2 + after / 2);
        let spread = after - before;
        if best.is_none_or(|(s, _)| spread < s) {
            best = Some((spread, offset));
        }
    }
    best.map_or(0, |(_, offset)| offset)
}

/// Nanoseconds since the Unix epoch (negative before it).
pub fn system_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// `later - earlier` in milliseconds, negative if `later` is earlier.
pub fn system_ms_between(earlier: SystemTime, later: SystemTime) -> f64 {
    (system_ns(later) - system_ns(earlier)) as f64 / 1e6
}

/// A small deterministic random source (xorshift64*), for the phase of key presses.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

// ---------------------------------------------------------------------------------------------
// The "before" build

/// Where the binaries of the "before" build are, or `None` when `KEYMASH_BEFORE=off`.
///
/// `KEYMASH_BEFORE_BINARIES=DIR` names a directory with them. Otherwise they are built from
/// revision `KEYMASH_BEFORE_REV` (default [`BEFORE_REVISION`]) of the repository this crate
/// is in, once: a detached `git worktree` at `target/responsiveness-before/src` is built with
/// `cargo build --release --workspace --bins --locked` into its own target directory
/// (`target/responsiveness-before/target`: the current tree's build writes binaries of the same
/// names into `target/release`), the eight service binaries are copied to
/// `target/responsiveness-before/bin-<commit>`, and the worktree and its build directory are
/// removed again (also when the build fails or `stop` is raised). A later run finds the
/// binaries there and builds nothing. `progress` is told what is going on.
pub fn before_binaries(
    stop: &AtomicBool,
    progress: &dyn Fn(&str),
) -> Result<Option<PathBuf>, String> {
    if std::env::var("KEYMASH_BEFORE").is_ok_and(|v| v == "off" || v == "0") {
        return Ok(None);
    }
    if let Some(dir) = std::env::var_os("KEYMASH_BEFORE_BINARIES") {
        let dir = PathBuf::from(dir);
        check_binaries(&dir).map_err(|e| format!("KEYMASH_BEFORE_BINARIES: {e}"))?;
        return Ok(Some(dir));
    }
    let revision = std::env::var("KEYMASH_BEFORE_REV").unwrap_or_else(|_| BEFORE_REVISION.into());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the tests crate has no parent directory")?
        .to_owned();
    let commit = git(
        &repo,
        &["rev-parse", "--verify", &format!("{revision}^{{commit}}")],
    )
    .map_err(|e| format!("revision {revision} of {}: {e}", repo.display()))?;
    let base = target_dir()?.join("responsiveness-before");
    let short = &commit[..commit.len().min(12)];
    let bin = base.join(format!("bin-{short}"));
    if check_binaries(&bin).is_ok() {
        progress(&format!(
            "before build: binaries of {short} already built in {}",
            bin.display()
        ));
        return Ok(Some(bin));
    }
    std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let worktree = WorktreeBuild {
        repo: repo.clone(),
        src: base.join("src"),
        target: base.join("target"),
    };
    // Whatever an interrupted run left.
    worktree.remove();
    git(
        &repo,
        &[
            "worktree",
            "add",
            "--detach",
            &worktree.src.to_string_lossy(),
            &commit,
        ],
    )
    .map_err(|e| format!("git worktree add: {e}"))?;
    let log_path = base.join("build.log");
    progress(&format!(
        "before build: building {short} in {} (log {}); minutes on two cores, once",
        worktree.src.display(),
        log_path.display()
    ));
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--release", "--workspace", "--bins", "--locked"])
        .arg("--manifest-path")
        .arg(worktree.src.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&worktree.target)
        .current_dir(&worktree.src)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let mut child = command
        .spawn()
        .map_err(|e| format!("running {}: {e}", cargo.to_string_lossy()))?;
    let status = loop {
        if stop.load(Ordering::Relaxed) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("interrupted while building the before binaries".into());
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for cargo: {e}")),
        }
    };
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        return Err(format!(
            "building {short} failed ({status}); the end of {}:\n{}",
            log_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    let partial = base.join(format!("bin-{short}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    for (name, _) in SERVICES {
        let from = worktree.target.join("release").join(name);
        std::fs::copy(&from, partial.join(name))
            .map_err(|e| format!("copying {}: {e}", from.display()))?;
    }
    std::fs::write(partial.join("COMMIT"), format!("{commit}\n")).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::rename(&partial, &bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    drop(worktree);
    progress(&format!("before build: binaries in {}", bin.display()));
    Ok(Some(bin))
}

/// A git worktree and its build directory, removed when dropped.
#[derive(Debug)]
struct WorktreeBuild {
    repo: PathBuf,
    src: PathBuf,
    target: PathBuf,
}

impl WorktreeBuild {
    fn remove(&self) {
        if self.src.exists() {
            let _ = git(
                &self.repo,
                &["worktree", "remove", "--force", &self.src.to_string_lossy()],
            );
            let _ = std::fs::remove_dir_all(&self.src);
        }
        let _ = git(&self.repo, &["worktree", "prune"]);
        let _ = std::fs::remove_dir_all(&self.target);
    }
}

impl Drop for WorktreeBuild {
    fn drop(&mut self) {
        self.remove();
    }
}

fn git(repo: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The cargo target directory this executable was built into (the nearest ancestor with
/// cargo's `CACHEDIR.TAG`).
fn target_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("executable path: {e}"))?;
    exe.ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .map(Path::to_owned)
        .ok_or_else(|| format!("{} is not inside a cargo target directory", exe.display()))
}

/// The short commit and whether the working tree has local changes, of the repository this
/// crate is in (what the "after" binaries were built from when they are the current tree's).
pub fn source_state() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match git(&repo, &["rev-parse", "--short", "HEAD"]) {
        Ok(head) => {
            let files = git(&repo, &["status", "--short", "--untracked-files=no"])
                .map(|s| s.lines().count())
                .unwrap_or(0);
            format!("commit {head} with {files} changed file(s)")
        }
        Err(_) => "not a git checkout".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// The pipeline

/// What a pipeline is configured with beyond the common part (640x480 at 30 fps, synthetic
/// camera, `delay.seconds = 0`, frames:DIR output, FIFO keyboard, eBPF loss filter). Keys the
/// two builds name differently (playout, pacing) are never set: each build runs on its defaults.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// `loss.drop_at_rest`: with nobody mashing the filter drops this fraction.
    pub drop_at_rest: f64,
    /// `quality.at_rest = quality.at_full = Q`: the quality no matter the mashing.
    pub pinned_quality: Option<u8>,
    /// `mash.window_ms`.
    pub mash_window_ms: Option<u32>,
}

impl PipelineSpec {
    fn sections(&self, dir: &Path) -> String {
        let mut text = format!(
            "[capture]\nsource = \"synthetic\"\n[delay]\nseconds = 0.0\n\
             [loss]\ninterface = \"{}\"\ndrop_at_rest = {:?}\n\
             [display]\noutput = \"frames:{}\"\n[input]\nsource = \"fifo:{}\"\n",
            NetnsPair::RIGHT_INTERFACE,
            self.drop_at_rest,
            dir.join("shown").display(),
            dir.join("keys").display(),
        );
        if let Some(q) = self.pinned_quality {
            text.push_str(&format!("[quality]\nat_rest = {q}\nat_full = {q}\n"));
        }
        if let Some(ms) = self.mash_window_ms {
            text.push_str(&format!("[mash]\nwindow_ms = {ms}\n"));
        }
        text
    }
}

/// The whole installation of one build in two network namespaces (sender services in the
/// left one, receiver services and the loss filter in the right one), with both watchers.
/// Everything goes away on drop: the watchers stop, the services are killed, the segments
/// and the directory are removed, then the namespaces.
#[derive(Debug)]
pub struct Pipeline {
    // Fields drop in this order.
    received: Option<ReceivedWatch>,
    shown: Option<ShownWatch>,
    services: Vec<(&'static str, RunningService)>,
    pub setup: ReceiverSetup,
    pair: NetnsPair,
    binaries: PathBuf,
    spec: PipelineSpec,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC when the pipeline started.
    pub clock_offset_ns: i128,
    /// Remove `KEYMASH_LOG` from the services' environment (the bench set it for itself).
    quiet_env: bool,
}

impl Pipeline {
    /// Creates the namespaces, writes the configuration and starts the eight services of the
    /// build in `binaries` (each waited for until READY=1; their stderr goes to
    /// `DIR/logs/<service>.log`), and the two watchers.
    pub fn start(
        tag: &str,
        binaries: &Path,
        spec: PipelineSpec,
        quiet_env: bool,
    ) -> Result<Pipeline, String> {
        let pair = NetnsPair::create(tag).map_err(|e| format!("network namespaces: {e}"))?;
        let name = unique_name(tag);
        let dir = std::env::temp_dir().join(format!("keymash-{name}"));
        std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let prefix = format!(
            "kmb{}",
            name.replace('-', "")
                .chars()
                .rev()
                .take(20)
                .collect::<String>()
        );
        let (key, _) = write_test_key(&dir);
        let setup = ReceiverSetup {
            config: dir.join("keymash.toml"),
            dir,
            prefix,
            sender_port: free_udp_port(),
            video_port: free_udp_port(),
            key,
            geometry: keymash_codec::FrameGeometry::new(spec.width as usize, spec.height as usize)
                .map_err(|e| format!("the bench's picture size: {e}"))?,
        };
        let mut pipeline = Pipeline {
            received: None,
            shown: None,
            services: Vec::new(),
            setup,
            pair,
            binaries: binaries.to_owned(),
            spec,
            clock_offset_ns: realtime_minus_monotonic_ns(),
            quiet_env,
        };
        pipeline.write_config()?;
        let config = Config::load(&pipeline.setup.config)
            .map_err(|e| format!("the bench's own configuration: {e}"))?;
        for (name, _) in SERVICES {
            pipeline.start_service(name)?;
        }
        pipeline.received = Some(ReceivedWatch::start(config));
        pipeline.shown = Some(ShownWatch::start(
            pipeline.setup.dir.join("shown"),
            pipeline.spec.width as usize,
            pipeline.spec.height as usize,
        ));
        Ok(pipeline)
    }

    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }

    fn write_config(&self) -> Result<(), String> {
        let s = &self.setup;
        let security = format!(
            "[security]\nkey_file = \"{}\"\n",
            s.dir.join("keymash.key").display()
        );
        let text = format!(
            "[shm]\nprefix = \"{}\"\n[video]\nwidth = {}\nheight = {}\nfps = {}\n\
             [network]\nsender_address = \"{}\"\nsender_port = {}\n\
             receiver_address = \"{}\"\nvideo_port = {}\n{security}{}",
            s.prefix,
            self.spec.width,
            self.spec.height,
            self.spec.fps,
            NetnsPair::LEFT_V4,
            s.sender_port,
            NetnsPair::RIGHT_V4,
            s.video_port,
            self.spec.sections(&s.dir)
        );
        std::fs::write(&s.config, text).map_err(|e| format!("{}: {e}", s.config.display()))
    }

    fn start_service(&mut self, name: &'static str) -> Result<(), String> {
        let left = SERVICES.iter().any(|(n, l)| *n == name && *l);
        let netns = if left {
            &self.pair.left
        } else {
            &self.pair.right
        };
        let log_path = self.log_path(name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut command = netns.command(self.binaries.join(name));
        command.stdout(Stdio::null()).stderr(log);
        if self.quiet_env {
            command.env_remove("KEYMASH_LOG");
        }
        let setup = &self.setup;
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| {
            setup.start_prepared(name, command, false)
        }));
        match started {
            Ok(service) => {
                self.services.push((name, service));
                Ok(())
            }
            Err(panic) => Err(format!(
                "{name} did not start: {}\n{}",
                panic_text(&*panic),
                self.log_tail(name, 15)
            )),
        }
    }

    fn log_path(&self, service: &str) -> PathBuf {
        self.setup.dir.join("logs").join(format!("{service}.log"))
    }

    /// The last `lines` lines `service` wrote to stderr, indented, for an error message.
    pub fn log_tail(&self, service: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(service)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        tail.into_iter()
            .rev()
            .map(|l| format!("    {service}: {l}\n"))
            .collect()
    }

    /// Every service's log tail and exit status, for a failure report.
    pub fn diagnose(&mut self) -> String {
        let mut text = String::new();
        let names: Vec<&'static str> = self.services.iter().map(|(n, _)| *n).collect();
        for (name, service) in &mut self.services {
            if let Ok(Some(status)) = service.try_wait() {
                text.push_str(&format!("  {name} exited: {status}\n"));
            }
        }
        for name in names {
            text.push_str(&self.log_tail(name, 4));
        }
        text
    }

    /// The first service that has exited, with its status.
    pub fn exited(&mut self) -> Option<String> {
        self.services.iter_mut().find_map(|(name, service)| {
            service
                .try_wait()
                .ok()
                .flatten()
                .map(|status| format!("{name} exited ({status})"))
        })
    }

    /// Stops loss-controller (SIGTERM), sets `loss.drop_at_rest` in the configuration and starts
    /// it again; the other services keep running (they read the file only at start).
    pub fn restart_loss_controller(&mut self, drop_at_rest: f64) -> Result<(), String> {
        const NAME: &str = "keymash-loss-controller";
        if let Some(i) = self.services.iter().position(|(n, _)| *n == NAME) {
            let (_, mut service) = self.services.remove(i);
            let _ = service.child.terminate(Duration::from_secs(5));
        }
        self.spec.drop_at_rest = drop_at_rest;
        self.write_config()?;
        self.start_service(NAME)
    }

    pub fn received(&self) -> &ReceivedWatch {
        self.received.as_ref().expect("started with the pipeline")
    }

    pub fn shown(&self) -> &ShownWatch {
        self.shown.as_ref().expect("started with the pipeline")
    }

    /// `service`'s statistics cell now.
    pub fn stats(&self, service: Service) -> Option<ServiceStats> {
        CellReader::<ServiceStats>::open(&self.setup.segment(&service.stats_cell()))
            .ok()?
            .load()
            .ok()
    }

    /// The FIFO mash-input reads key events from.
    pub fn keys_fifo(&self) -> PathBuf {
        self.setup.dir.join("keys")
    }

    /// A file time (CLOCK_REALTIME) on the CLOCK_MONOTONIC clock of stamps and ring slots.
    pub fn to_monotonic_ns(&self, t: SystemTime) -> u64 {
        u64::try_from((system_ns(t) - self.clock_offset_ns).max(0)).unwrap_or(0)
    }
}

/// The text of a caught panic.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned())
}

// ---------------------------------------------------------------------------------------------
// The received ring

/// One stream frame as it reached net-rx's received ring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameArrival {
    /// The lowest and highest quality of the frame's macroblocks seen (each payload's first
    /// macroblock, which always carries its quality explicitly).
    pub quality_min: u8,
    pub quality_max: u8,
    /// CLOCK_MONOTONIC arrival of the first and the last of its payloads at net-rx.
    pub first_arrival_ns: u64,
    pub last_arrival_ns: u64,
    pub payloads: u16,
    pub payload_count: u16,
}

type ArrivalLog = Arc<Mutex<BTreeMap<u64, FrameArrival>>>;

/// A thread following the received ring (see the module documentation).
#[derive(Debug)]
pub struct ReceivedWatch {
    stop: Arc<AtomicBool>,
    frames: ArrivalLog,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReceivedWatch {
    pub fn start(config: Config) -> ReceivedWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let frames: ArrivalLog = Arc::default();
        let thread = {
            let (stop, frames) = (stop.clone(), frames.clone());
            std::thread::spawn(move || follow_received(&config, &stop, &frames))
        };
        ReceivedWatch {
            stop,
            frames,
            thread: Some(thread),
        }
    }

    /// Runs `f` on the frames seen so far, by stream frame number.
    pub fn with<R>(&self, f: impl FnOnce(&BTreeMap<u64, FrameArrival>) -> R) -> R {
        match self.frames.lock() {
            Ok(frames) => f(&frames),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    pub fn get(&self, frame: u64) -> Option<FrameArrival> {
        self.with(|frames| frames.get(&frame).copied())
    }
}

impl Drop for ReceivedWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opened by name whatever its geometry (the before build's ring may be shaped differently from
/// what this tree's configuration gives), positioned at its newest payload, and never
/// re-opened: net-rx is not restarted while a pipeline runs.
fn follow_received(config: &Config, stop: &AtomicBool, frames: &ArrivalLog) {
    let Ok(spec) = Segments::new(config).and_then(|s| s.received()) else {
        return;
    };
    let tables = QuantTables::new();
    let mut buf = Vec::new();
    let mut reader = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(reader) = reader.as_mut() else {
            reader = RingReader::open(spec.id()).ok();
            if reader.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            continue;
        };
        match reader.recv_into(Duration::from_millis(50), &mut buf) {
            Ok(received) => {
                let slot = ReceivedSlot::read(&received.meta);
                let (Ok(header), Some(quality)) =
                    (PayloadHeader::parse(&buf), payload_quality(&buf, &tables))
                else {
                    continue;
                };
                let mut frames = match frames.lock() {
                    Ok(f) => f,
                    Err(poisoned) => poisoned.into_inner(),
                };
                frames
                    .entry(header.frame_no.0)
                    .and_modify(|f| {
                        f.quality_min = f.quality_min.min(quality);
                        f.quality_max = f.quality_max.max(quality);
                        f.first_arrival_ns = f.first_arrival_ns.min(slot.arrival_ns);
                        f.last_arrival_ns = f.last_arrival_ns.max(slot.arrival_ns);
                        f.payloads += 1;
                    })
                    .or_insert(FrameArrival {
                        quality_min: quality,
                        quality_max: quality,
                        first_arrival_ns: slot.arrival_ns,
                        last_arrival_ns: slot.arrival_ns,
                        payloads: 1,
                        payload_count: header.payload_count,
                    });
            }
            Err(RecvError::TimedOut) => {}
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The quality the payload's first macroblock was coded at, as the decoder reads it (`None`
/// for a payload without one or that does not decode).
pub fn payload_quality(payload: &[u8], tables: &QuantTables) -> Option<u8> {
    let body = payload.get(HEADER_LEN..)?;
    let mut reader = BitReader::new(body);
    let mut state = PredictionState::default();
    let mut mb = DecodedMacroblock::default();
    read_macroblock(&mut reader, tables, &mut state, &mut mb).ok()?;
    Some(mb.quality.get())
}

// ---------------------------------------------------------------------------------------------
// The pictures shown

/// One picture display presented (a new frame in its `frames:DIR` output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// The newest stream frame applied to the picture (the file's name).
    pub frame: u64,
    /// When display finished writing the picture: the middle of [`Shown::earliest`,
    /// `Shown::latest`] (see [`bracket`]).
    pub presented: SystemTime,
    pub earliest: SystemTime,
    pub latest: SystemTime,
    /// The pixel stamp of the synthetic scene, where it reads (quality 30 or more, undamaged).
    pub stamp: Option<Stamp>,
}

/// When display finished writing a picture, as `(earliest, latest)`, from what is known of
/// its file:
///
/// - its mtime, set by the picture's last write but from the kernel's coarse clock, which is
///   up to one tick behind (`tick`, [`coarse_clock_resolution`], 4 ms at HZ=250): the write
///   was in `[mtime, mtime + tick]`;
/// - the watcher's listings of the directory, one a millisecond: display writes the picture
///   under a temporary name and renames it when it is whole, so the write was done before the
///   listing that first showed the final name ended (`seen`), and, unless display stalled
///   between its last write and the rename, after the previous listing, which did not show
///   it, began (`absent_at`).
///
/// With the watcher on time the interval is about a millisecond wide; a watcher held up by a
/// busy machine leaves at most the tick. Should the listings contradict the file time (a
/// stall between write and rename), the file time's interval alone is used.
pub fn bracket(
    mtime: SystemTime,
    tick: Duration,
    absent_at: SystemTime,
    seen: SystemTime,
) -> (SystemTime, SystemTime) {
    let latest = seen.clamp(mtime, mtime + tick);
    let earliest = absent_at.max(mtime);
    if earliest <= latest {
        (earliest, latest)
    } else {
        (mtime, latest)
    }
}

/// The middle of `(earliest, latest)`.
pub fn middle((earliest, latest): (SystemTime, SystemTime)) -> SystemTime {
    earliest + latest.duration_since(earliest).unwrap_or_default() / 2
}

/// The resolution of the kernel's coarse clock, which file times come from
/// (`clock_getres(CLOCK_REALTIME_COARSE)`, one scheduler tick); 10 ms if it cannot be read.
pub fn coarse_clock_resolution() -> Duration {
    nix::time::clock_getres(nix::time::ClockId::CLOCK_REALTIME_COARSE)
        .map(Duration::from)
        .unwrap_or(Duration::from_millis(10))
}

/// A thread taking display's pictures out of its `frames:DIR` directory (see the module
/// documentation).
#[derive(Debug)]
pub struct ShownWatch {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Shown>>>,
    cards: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ShownWatch {
    pub fn start(dir: PathBuf, width: usize, height: usize) -> ShownWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let cards = Arc::new(AtomicU64::new(0));
        let tick = coarse_clock_resolution();
        let thread = {
            let (stop, log, cards) = (stop.clone(), log.clone(), cards.clone());
            std::thread::spawn(move || {
                let mut absent_at = UNIX_EPOCH;
                while !stop.load(Ordering::Relaxed) {
                    let listing = SystemTime::now();
                    take_pictures(&dir, (width, height), (tick, absent_at), &log, &cards);
                    absent_at = listing;
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        ShownWatch {
            stop,
            log,
            cards,
            thread: Some(thread),
        }
    }

    /// Runs `f` on the pictures taken so far, in the order shown.
    pub fn with<R>(&self, f: impl FnOnce(&[Shown]) -> R) -> R {
        match self.log.lock() {
            Ok(log) => f(&log),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Pictures taken so far.
    pub fn count(&self) -> usize {
        self.with(<[Shown]>::len)
    }

    /// Signal-lost cards display wrote (the current build writes one when the stream stops).
    pub fn cards(&self) -> u64 {
        self.cards.load(Ordering::Relaxed)
    }
}

impl Drop for ShownWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Takes the pictures in `dir`; `absent_at`: when the previous listing began.
fn take_pictures(
    dir: &Path,
    (width, height): (usize, usize),
    (tick, absent_at): (Duration, SystemTime),
    log: &Mutex<Vec<Shown>>,
    cards: &AtomicU64,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let entries: Vec<_> = entries.flatten().collect();
    // Every file listed was whole (renamed) by now.
    let seen = SystemTime::now();
    let mut frames: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("frame-")
            .and_then(|n| n.strip_suffix(".ppm"))
            .and_then(|n| n.parse().ok())
        {
            frames.push((n, entry.path()));
        } else if name.ends_with(".ppm") {
            // A card (signal-lost-NNNNNN.ppm): not a frame.
            cards.fetch_add(1, Ordering::Relaxed);
            let _ = std::fs::remove_file(entry.path());
        }
    }
    frames.sort();
    let mut taken = Vec::with_capacity(frames.len());
    for (frame, path) in frames {
        let Ok(mtime) = std::fs::metadata(&path).and_then(|m| m.modified()) else {
            continue;
        };
        let stamp = read_ppm_stamp(&path, width, height).ok().flatten();
        let _ = std::fs::remove_file(&path);
        let (earliest, latest) = bracket(mtime, tick, absent_at, seen);
        taken.push(Shown {
            frame,
            presented: middle((earliest, latest)),
            earliest,
            latest,
            stamp,
        });
    }
    if taken.is_empty() {
        return;
    }
    let mut log = match log.lock() {
        Ok(l) => l,
        Err(poisoned) => poisoned.into_inner(),
    };
    log.extend(taken);
}

/// Reads the pixel stamp of a `width` x `height` picture back out of a PPM display wrote: the
/// composed headless canvas, the picture 1:1 in the middle of the glow border. Only the rows
/// that hold the stamp are read; their RGB goes back to BT.601 luma (the stamp's cells are
/// black and white, so the conversion is exact to a level). `Ok(None)`: no stamp reads there.
pub fn read_ppm_stamp(path: &Path, width: usize, height: usize) -> Result<Option<Stamp>, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut head = [0u8; 64];
    let n = file.read(&mut head).map_err(|e| e.to_string())?;
    let (canvas_w, canvas_h, data_start) =
        parse_ppm_header(&head[..n]).ok_or_else(|| format!("{}: not a PPM", path.display()))?;
    if canvas_w < width || canvas_h < height {
        return Err(format!(
            "{}: {canvas_w}x{canvas_h} is smaller than the picture",
            path.display()
        ));
    }
    let (border_x, border_y) = ((canvas_w - width) / 2, (canvas_h - height) / 2);
    // The stamp's area: picture rows ORIGIN.1.., columns ORIGIN.0.., in a luma buffer just
    // large enough for the stamp reader (which wants the origin inside it).
    let (w, h) = (
        stamp::ORIGIN.0 + stamp::SIZE.0,
        stamp::ORIGIN.1 + stamp::SIZE.1,
    );
    let first_row = border_y + stamp::ORIGIN.1;
    let rows = stamp::SIZE.1;
    let mut rgb = vec![0u8; rows * canvas_w * 3];
    file.seek(std::io::SeekFrom::Start(
        (data_start + first_row * canvas_w * 3) as u64,
    ))
    .map_err(|e| e.to_string())?;
    file.read_exact(&mut rgb)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut luma = vec![0u8; w * h];
    for r in 0..rows {
        for c in 0..stamp::SIZE.0 {
            let at = (r * canvas_w + border_x + stamp::ORIGIN.0 + c) * 3;
            let (red, green, blue) = (
                f64::from(rgb[at]),
                f64::from(rgb[at + 1]),
                f64::from(rgb[at + 2]),
            );
            let y = 16.0 + (65.481 * red + 128.553 * green + 24.966 * blue) / 255.0;
            luma[(stamp::ORIGIN.1 + r) * w + stamp::ORIGIN.0 + c] =
                y.round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(stamp::read_stamp_from_luma(&luma, w, h))
}

/// (width, height, offset of the pixels) of a binary PPM header with maxval 255.
fn parse_ppm_header(head: &[u8]) -> Option<(usize, usize, usize)> {
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while head.get(at)?.is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !head.get(at)?.is_ascii_whitespace() {
            at += 1;
        }
        fields.push(std::str::from_utf8(&head[start..at]).ok()?);
    }
    // Exactly one whitespace byte ends the header.
    let data_start = at + 1;
    if fields[0] != "P6" || fields[3] != "255" {
        return None;
    }
    Some((fields[1].parse().ok()?, fields[2].parse().ok()?, data_start))
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// Polls `done` every `step` until it returns `Some`, `timeout` passes or `stop` is raised.
pub fn wait_for<T>(
    timeout: Duration,
    step: Duration,
    stop: &AtomicBool,
    mut done: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = done() {
            return Some(v);
        }
        if Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
            return None;
        }
        std::thread::sleep(step);
    }
}

/// Sleeps `duration`, in short steps so that `stop` is noticed; false if it was.
pub fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
    }
    !stop.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymash_codec::{FrameGeometry, I420Frame};
    use keymash_core::{FrameNo, MashLevel};

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v[..51], 0.99), Some(51.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn the_stamp_reads_back_from_the_composed_ppm_display_writes() {
        let geometry = FrameGeometry::new(640, 480).unwrap();
        let mut picture = I420Frame::grey(geometry);
        let stamp = Stamp::new(FrameNo(1234), 987_654_321_000_000);
        assert!(stamp::draw_stamp(&mut picture, stamp));
        let (canvas_geometry, border) = keymash_present::headless_canvas(geometry, 32).unwrap();
        let mut canvas = I420Frame::grey(canvas_geometry);
        // A bright green glow around it, as while mashing.
        assert!(keymash_present::compose_headless(
            picture.view(),
            MashLevel::saturating(1.0),
            border,
            None,
            &mut canvas
        ));
        let mut rgb = Vec::new();
        keymash_present::i420_to_rgb(canvas.view(), &mut rgb);
        let dir = std::env::temp_dir().join(unique_name("resp-ppm"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("frame-00000001.ppm");
        keymash_present::write_ppm(
            std::fs::File::create(&path).unwrap(),
            canvas_geometry.width(),
            canvas_geometry.height(),
            &rgb,
        )
        .unwrap();
        let read = read_ppm_stamp(&path, 640, 480);
        let grey = {
            let canvas = I420Frame::grey(canvas_geometry);
            keymash_present::i420_to_rgb(canvas.view(), &mut rgb);
            let path = dir.join("grey.ppm");
            keymash_present::write_ppm(
                std::fs::File::create(&path).unwrap(),
                canvas_geometry.width(),
                canvas_geometry.height(),
                &rgb,
            )
            .unwrap();
            read_ppm_stamp(&path, 640, 480)
        };
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read, Ok(Some(stamp)));
        assert_eq!(grey, Ok(None));
    }

    #[test]
    fn the_quality_of_a_payload_is_read_from_its_first_macroblock() {
        use keymash_codec::{Encoder, EncoderConfig, PayloadSink, QualitySpec};
        let geometry = FrameGeometry::new(64, 48).unwrap();
        let picture = crate::receiver::test_picture(geometry, 3);
        let tables = QuantTables::new();
        for q in [10u8, 45, 90] {
            let mut encoder = Encoder::new(EncoderConfig::new(geometry)).unwrap();
            let mut sink = PayloadSink::new();
            encoder
                .encode(
                    FrameNo(1),
                    picture.view(),
                    QualitySpec::Uniform(keymash_core::Quality::saturating(i64::from(q))),
                    &mut sink,
                )
                .unwrap();
            for payload in sink.iter() {
                assert_eq!(payload_quality(payload, &tables), Some(q));
            }
        }
    }

    #[test]
    fn a_picture_is_presented_between_its_file_time_and_the_listings_around_it() {
        let t = |ms: u64| UNIX_EPOCH + Duration::from_millis(1_000_000 + ms);
        let tick = Duration::from_millis(4);
        // On time: between the listing that missed it and the one that saw it.
        assert_eq!(bracket(t(10), tick, t(11), t(12)), (t(11), t(12)));
        // The watcher was held up: the file time's tick bounds it.
        assert_eq!(bracket(t(10), tick, t(9), t(30)), (t(10), t(14)));
        // Display stalled between the write and the rename: the file time alone.
        assert_eq!(bracket(t(10), tick, t(20), t(21)), (t(10), t(14)));
        assert_eq!(middle((t(10), t(14))), t(12));
    }

    #[test]
    fn the_realtime_offset_puts_now_on_the_monotonic_clock() {
        let offset = realtime_minus_monotonic_ns();
        let mono = monotonic_now_ns();
        let from_real = system_ns(SystemTime::now()) - offset;
        assert!((from_real - i128::from(mono)).abs() < 5_000_000);
    }
}
