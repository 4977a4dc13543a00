//! Support for the soak bench (`benches/soak.rs`): its settings, what it samples once a minute
//! from outside the pipeline (a process's RSS and open fds from `/proc`, the run's segments in
//! `/dev/shm`, the delay and latency from the stages' statistics cells), and the judgement of a
//! run: which figure grew or drifted beyond noise.
//!
//! The judgement is a plain function of the samples ([`judge`]), so its bounds are tested here
//! without a pipeline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use keymash_pipeline::Service;

/// A stage's RSS may grow by this much (or [`RSS_GROWTH_FRACTION`] of its baseline, whichever
/// is larger) between its first sample after warm-up and its last: allocator arenas, the
/// journal's buffers and lazily touched pages of mapped rings move by a few MiB without leaking.
pub const RSS_GROWTH_KIB: u64 = 8 * 1024;
/// See [`RSS_GROWTH_KIB`].
pub const RSS_GROWTH_FRACTION: f64 = 0.10;
/// Open fds may grow by this many: a reconnecting follower or a socket being replaced holds
/// one or two more for a moment; a leak grows without bound.
pub const FD_GROWTH: u64 = 4;

/// The bench's settings, from the environment (each has a default for the real soak).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `KEYMASH_SOAK_MINUTES` (default 30): how long the pipeline runs.
    pub run: Duration,
    /// `KEYMASH_SOAK_SAMPLE_SECONDS` (default 60): the sampling period.
    pub sample_every: Duration,
    /// `KEYMASH_SOAK_WARMUP_SECONDS` (default 90): samples before this (and of a process younger
    /// than this) are shown but are not baselines: the delay buffer fills, rings are first
    /// written through, the loss filter and quality settle.
    pub warmup: Duration,
    /// `KEYMASH_SOAK_KILL_SECONDS` (default 180): the mean time between two SIGKILLs; each gap
    /// is drawn uniformly from half to one and a half times this.
    pub kill_every: Duration,
    /// `KEYMASH_SOAK_SEED`: the seed of the kill schedule (default: from the clock; printed, so
    /// a run can be repeated).
    pub seed: u64,
    /// `KEYMASH_SOAK_DELAY` (default 5): `delay.seconds`.
    pub delay_seconds: f64,
    /// `KEYMASH_SOAK_VIDEO` (default `640x480@30`, the exhibit's): `WIDTHxHEIGHT@FPS`.
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// `KEYMASH_SOAK_DELAY_NOISE_MS` (default 25): how far the measured delay may stray beyond
    /// the one frame interval the design allows (scheduling on a loaded machine).
    pub delay_noise_ms: f64,
    /// `KEYMASH_SOAK_BINARIES`: a directory of prebuilt service binaries (default: build the
    /// current source tree's, see [`crate::binary_dir`]).
    pub binaries: Option<PathBuf>,
    /// `KEYMASH_SOAK_REPO`: the source tree whose deploy/install.sh and units are installed
    /// (default: this one). A long run can use a snapshot so others' edits do not reach it.
    pub repo: PathBuf,
}

fn env_f64(name: &str, default: f64) -> Result<f64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| format!("{name}={v:?} is not a non-negative number")),
        Err(_) => Ok(default),
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        let video = std::env::var("KEYMASH_SOAK_VIDEO").unwrap_or_else(|_| "640x480@30".into());
        let (size, fps) = video
            .split_once('@')
            .ok_or_else(|| format!("KEYMASH_SOAK_VIDEO={video:?}: expected WIDTHxHEIGHT@FPS"))?;
        let (width, height) = size
            .split_once('x')
            .ok_or_else(|| format!("KEYMASH_SOAK_VIDEO={video:?}: expected WIDTHxHEIGHT@FPS"))?;
        let number = |s: &str| {
            s.parse::<u32>()
                .map_err(|e| format!("KEYMASH_SOAK_VIDEO={video:?}: {s:?}: {e}"))
        };
        let seed = match std::env::var("KEYMASH_SOAK_SEED") {
            Ok(v) => v
                .parse::<u64>()
                .map_err(|e| format!("KEYMASH_SOAK_SEED={v:?}: {e}"))?,
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        };
        Ok(Settings {
            run: Duration::from_secs_f64(env_f64("KEYMASH_SOAK_MINUTES", 30.0)? * 60.0),
            sample_every: Duration::from_secs_f64(
                env_f64("KEYMASH_SOAK_SAMPLE_SECONDS", 60.0)?.max(1.0),
            ),
            warmup: Duration::from_secs_f64(env_f64("KEYMASH_SOAK_WARMUP_SECONDS", 90.0)?),
            kill_every: Duration::from_secs_f64(
                env_f64("KEYMASH_SOAK_KILL_SECONDS", 180.0)?.max(5.0),
            ),
            seed,
            delay_seconds: env_f64("KEYMASH_SOAK_DELAY", 5.0)?,
            width: number(width)?,
            height: number(height)?,
            fps: number(fps)?,
            delay_noise_ms: env_f64("KEYMASH_SOAK_DELAY_NOISE_MS", 25.0)?,
            binaries: std::env::var_os("KEYMASH_SOAK_BINARIES").map(PathBuf::from),
            repo: std::env::var_os("KEYMASH_SOAK_REPO")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")),
        })
    }

    pub fn frame_interval_ms(&self) -> f64 {
        1000.0 / f64::from(self.fps.max(1))
    }
}

/// A small deterministic generator (SplitMix64) for the kill schedule: the seed printed at the
/// start repeats a run's schedule.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// One process as `/proc` shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcFigures {
    pub rss_kib: u64,
    pub fds: u64,
    /// Seconds since the process started (from `/proc/PID/stat` and `/proc/uptime`).
    pub age_s: f64,
}

/// RSS (`VmRSS`), open fds and age of host process `pid`; `None` if it is gone.
pub fn proc_figures(pid: u32) -> Option<ProcFigures> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, so split after its last ')'):
    // state is field 3, starttime field 22, so index 19 here.
    let start_ticks: f64 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // USER_HZ is 100 on every Linux architecture keymash runs on (the kernel's ABI for /proc).
    Some(ProcFigures {
        rss_kib,
        fds,
        age_s: uptime - start_ticks / 100.0,
    })
}

/// The PID namespace of host process `pid` (`pid:[INODE]`).
pub fn pid_namespace(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The host pid of the process that is `ns_pid` in PID namespace `namespace`: the booted
/// systemd's units report pids of its own namespace, and other tests may boot their own with
/// the same small numbers, so the namespace is matched too.
pub fn host_pid(namespace: &str, ns_pid: u32) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let nspids: Vec<u32> = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if nspids.len() >= 2
            && nspids.last() == Some(&ns_pid)
            && pid_namespace(pid).as_deref() == Some(namespace)
        {
            return Some(pid);
        }
    }
    None
}

/// This run's shared memory and the tmpfs it lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShmFigures {
    /// Segments of the run's prefix.
    pub segments: u64,
    /// Their total size (what `ftruncate` gave them).
    pub bytes: u64,
    /// Their pages actually allocated in the tmpfs.
    pub allocated: u64,
    /// The whole `/dev/shm` tmpfs in use (other tests' segments included).
    pub tmpfs_used: u64,
}

/// The segments `/dev/shm/<prefix>.*` and the tmpfs's use.
pub fn shm_figures(prefix: &str) -> ShmFigures {
    let mut figures = ShmFigures::default();
    let start = format!("{prefix}.");
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&start) {
                continue;
            }
            if let Ok(meta) = entry.metadata() {
                figures.segments += 1;
                figures.bytes += meta.len();
                figures.allocated += meta.blocks() * 512;
            }
        }
    }
    if let Ok(out) = std::process::Command::new("df")
        .args(["--output=used", "-B1", "/dev/shm"])
        .output()
    {
        figures.tmpfs_used = String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
    }
    figures
}

/// One stage at one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageSample {
    /// The host pid (`None`: the stage had no process at that moment).
    pub pid: Option<u32>,
    pub figures: Option<ProcFigures>,
    /// systemd's `NRestarts` of the unit.
    pub restarts: u32,
    pub active: bool,
}

/// Everything sampled at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the pipeline started.
    pub at_s: f64,
    /// In [`Service::ALL`] order.
    pub stages: Vec<StageSample>,
    pub shm: ShmFigures,
    /// net-tx's capture-to-send time, p50 and p99, ms (the real delay at the sender's outlet;
    /// `None` while its window is empty, just after a restart).
    pub sent_age_p50_ms: Option<f64>,
    pub sent_age_p99_ms: Option<f64>,
    /// display's capture-to-present time, p50 and p99, ms (playout delay left out; includes
    /// `delay.seconds`).
    pub shown_age_p50_ms: Option<f64>,
    pub shown_age_p99_ms: Option<f64>,
    /// display's frame rate gauge.
    pub display_fps: Option<f64>,
    /// delay-buffer shows a card instead of video: the countdown (its `countdown` gauge ≥ 0) or
    /// the waiting card (`awaiting_video` 1).
    pub countdown: bool,
    /// A stage was killed within the last few seconds: the stream may be paused, so the flow
    /// and delay of this sample are shown but not judged.
    pub recent_kill: bool,
}

/// One figure that grew or drifted beyond its bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding(pub String);

/// The bounds of a run; see the constants and [`judge`].
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub warmup_s: f64,
    pub delay_ms: f64,
    pub frame_interval_ms: f64,
    pub delay_noise_ms: f64,
}

impl Bounds {
    /// How much the display's capture-to-present p50 may grow between the start (after
    /// warm-up) and the end of the run: two frame intervals plus the delay noise. Why: the
    /// display presents on a frame-rate clock, so a frame waits up to one tick, and the playout
    /// queue holds it up to about one more while jitter is measured; a queue that builds up
    /// (frames presented ever later) adds whole frame intervals and passes this within
    /// minutes, while scheduling on a loaded machine moves p50 by a few ms either way.
    pub fn latency_growth_ms(&self) -> f64 {
        2.0 * self.frame_interval_ms + self.delay_noise_ms
    }
}

fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    (!values.is_empty()).then(|| values[values.len() / 2])
}

/// What grew or drifted in `samples` (empty: the run passes).
///
/// - RSS and fds per process, not per stage: a restarted process starts its own baseline, its
///   first sample after the warm-up at which it is itself older than the warm-up.
/// - `/dev/shm`: the run's segments (count, size, allocated pages) may not change at all after
///   the warm-up. The tmpfs as a whole is not judged (other tests share it).
/// - delay: each judged sample's net-tx p50 must lie within `[-noise, interval + noise]` of
///   `delay.seconds` (the design: a frame is sent within one frame interval of falling due).
/// - latency: display p50, median of the last three judged samples against the median of the
///   first three, may grow by at most [`Bounds::latency_growth_ms`]; every judged sample must
///   show frames (fps ≥ 1) and no countdown card.
pub fn judge(samples: &[Sample], bounds: &Bounds) -> Vec<Finding> {
    let mut findings = Vec::new();
    let settled: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at_s >= bounds.warmup_s)
        .collect();
    if settled.len() < 2 {
        findings.push(Finding(format!(
            "only {} sample(s) after the warm-up of {} s: nothing to compare",
            settled.len(),
            bounds.warmup_s
        )));
        return findings;
    }
    for (i, service) in Service::ALL.iter().enumerate() {
        // pid -> (baseline, last) among settled samples of a process past its own warm-up.
        let mut instances: BTreeMap<u32, (ProcFigures, f64, ProcFigures, f64)> = BTreeMap::new();
        for s in &settled {
            let Some(stage) = s.stages.get(i) else {
                continue;
            };
            let (Some(pid), Some(f)) = (stage.pid, stage.figures) else {
                continue;
            };
            if f.age_s < bounds.warmup_s {
                continue;
            }
            instances
                .entry(pid)
                .and_modify(|e| {
                    e.2 = f;
                    e.3 = s.at_s;
                })
                .or_insert((f, s.at_s, f, s.at_s));
        }
        for (pid, (first, first_at, last, last_at)) in instances {
            if last_at <= first_at {
                continue;
            }
            let allowed = RSS_GROWTH_KIB.max((first.rss_kib as f64 * RSS_GROWTH_FRACTION) as u64);
            if last.rss_kib > first.rss_kib + allowed {
                findings.push(Finding(format!(
                    "{} (pid {pid}): RSS grew from {} KiB at {first_at:.0} s to {} KiB at {last_at:.0} s \
                     (allowed +{allowed} KiB)",
                    service.name(),
                    first.rss_kib,
                    last.rss_kib
                )));
            }
            if last.fds > first.fds + FD_GROWTH {
                findings.push(Finding(format!(
                    "{} (pid {pid}): open fds grew from {} at {first_at:.0} s to {} at {last_at:.0} s \
                     (allowed +{FD_GROWTH})",
                    service.name(),
                    first.fds,
                    last.fds
                )));
            }
        }
    }
    let shm0 = settled[0].shm;
    for s in &settled[1..] {
        let (a, b) = (shm0, s.shm);
        if (a.segments, a.bytes, a.allocated) != (b.segments, b.bytes, b.allocated) {
            findings.push(Finding(format!(
                "/dev/shm: the run's segments changed from {} segments, {} B ({} B allocated) at {:.0} s \
                 to {} segments, {} B ({} B allocated) at {:.0} s",
                a.segments, a.bytes, a.allocated, settled[0].at_s, b.segments, b.bytes, b.allocated, s.at_s
            )));
            break;
        }
    }
    let judged: Vec<&Sample> = settled.iter().copied().filter(|s| !s.recent_kill).collect();
    let (low, high) = (
        -bounds.delay_noise_ms,
        bounds.frame_interval_ms + bounds.delay_noise_ms,
    );
    for s in &judged {
        if let Some(p50) = s.sent_age_p50_ms {
            let excess = p50 - bounds.delay_ms;
            if !(low..=high).contains(&excess) {
                findings.push(Finding(format!(
                    "delay at {:.0} s: net-tx sends frames {excess:+.1} ms from delay.seconds \
                     (allowed {low:+.0}..{high:+.0} ms)",
                    s.at_s
                )));
            }
        }
        if s.display_fps.unwrap_or(0.0) < 1.0 {
            findings.push(Finding(format!(
                "stream at {:.0} s: the display presents {:?} fps",
                s.at_s, s.display_fps
            )));
        }
        if s.countdown {
            findings.push(Finding(format!(
                "delay-buffer shows the countdown card at {:.0} s, after the warm-up",
                s.at_s
            )));
        }
        if let Some(i) = s.stages.iter().position(|st| !st.active) {
            findings.push(Finding(format!(
                "{} is not active at {:.0} s",
                Service::ALL[i].name(),
                s.at_s
            )));
        }
    }
    let latencies: Vec<f64> = judged.iter().filter_map(|s| s.shown_age_p50_ms).collect();
    if latencies.len() >= 2 {
        let n = (latencies.len() / 2).clamp(1, 3);
        let first = median(&mut latencies[..n].to_vec()).unwrap_or(0.0);
        let last = median(&mut latencies[latencies.len() - n..].to_vec()).unwrap_or(0.0);
        if last - first > bounds.latency_growth_ms() {
            findings.push(Finding(format!(
                "latency: the display's capture-to-present p50 grew from {first:.1} ms to {last:.1} ms \
                 (median of {n} samples each; allowed +{:.1} ms)",
                bounds.latency_growth_ms()
            )));
        }
    } else {
        findings.push(Finding(
            "latency: fewer than two samples with the display's capture-to-present figure".into(),
        ));
    }
    findings
}

fn short_name(service: Service) -> &'static str {
    match service.name() {
        "capture" => "cap",
        "delay-buffer" => "delay",
        "encoder" => "enc",
        "net-tx" => "tx",
        "net-rx" => "rx",
        "display" => "disp",
        "mash-input" => "mash",
        "loss-controller" => "loss",
        other => other,
    }
}

/// The table's header: per stage `RSS MiB/fds`, then shared memory, delay and latency.
pub fn table_header() -> String {
    let mut line = format!("{:>6} ", "m:ss");
    for s in Service::ALL {
        let _ = write!(line, "{:>11} ", short_name(s));
    }
    let _ = write!(
        line,
        "{:>8} {:>9} {:>9} {:>15} {:>15} {:>5}",
        "shm MiB", "alloc MiB", "tmpfs MiB", "delay p50/p99", "c2s p50/p99", "fps"
    );
    line
}

/// One row of the table. A stage's cell is `RSS MiB/fds`, with `*` when its process is not the
/// one of the previous row (killed and restarted); `-` when it had no process. delay is net-tx's
/// capture-to-send minus `delay.seconds`, c2s the display's capture-to-present minus
/// `delay.seconds` (both ms). `K` marks a row taken just after a kill, `C` the countdown card.
pub fn table_row(sample: &Sample, previous: Option<&Sample>, delay_ms: f64) -> String {
    let secs = sample.at_s.round() as u64;
    let mut line = format!("{:>3}:{:02} ", secs / 60, secs % 60);
    for (i, stage) in sample.stages.iter().enumerate() {
        let changed = previous
            .and_then(|p| p.stages.get(i))
            .is_some_and(|p| p.pid != stage.pid);
        let cell = match stage.figures {
            Some(f) => format!(
                "{:.1}/{}{}",
                f.rss_kib as f64 / 1024.0,
                f.fds,
                if changed { "*" } else { "" }
            ),
            None => "-".into(),
        };
        let _ = write!(line, "{cell:>11} ");
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let pair = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:+.1}/{:+.1}", a - delay_ms, b - delay_ms),
        _ => "-".into(),
    };
    let _ = write!(
        line,
        "{:>8.1} {:>9.1} {:>9.1} {:>15} {:>15} {:>5}",
        mib(sample.shm.bytes),
        mib(sample.shm.allocated),
        mib(sample.shm.tmpfs_used),
        pair(sample.sent_age_p50_ms, sample.sent_age_p99_ms),
        pair(sample.shown_age_p50_ms, sample.shown_age_p99_ms),
        sample
            .display_fps
            .map_or_else(|| "-".into(), |f| format!("{f:.1}"))
    );
    if sample.recent_kill {
        line.push_str(" K");
    }
    if sample.countdown {
        line.push_str(" C");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: f64, pid: u32, rss_kib: u64, fds: u64, latency: f64) -> Sample {
        let stage = StageSample {
            pid: Some(pid),
            figures: Some(ProcFigures {
                rss_kib,
                fds,
                age_s: at_s,
            }),
            restarts: 0,
            active: true,
        };
        Sample {
            at_s,
            stages: vec![stage; 8],
            shm: ShmFigures {
                segments: 12,
                bytes: 1 << 20,
                allocated: 1 << 20,
                tmpfs_used: 0,
            },
            sent_age_p50_ms: Some(5010.0),
            sent_age_p99_ms: Some(5030.0),
            shown_age_p50_ms: Some(latency),
            shown_age_p99_ms: Some(latency + 20.0),
            display_fps: Some(30.0),
            countdown: false,
            recent_kill: false,
        }
    }

    const BOUNDS: Bounds = Bounds {
        warmup_s: 60.0,
        delay_ms: 5000.0,
        frame_interval_ms: 33.3,
        delay_noise_ms: 25.0,
    };

    #[test]
    fn a_steady_run_passes_and_each_growth_is_found() {
        let steady: Vec<Sample> = (1..=5)
            .map(|m| sample(f64::from(m) * 60.0, 10, 20_000, 12, 5040.0))
            .collect();
        assert_eq!(judge(&steady, &BOUNDS), vec![]);

        let mut leaky = steady.clone();
        leaky[4] = sample(300.0, 10, 30_000, 17, 5200.0);
        let found = judge(&leaky, &BOUNDS);
        assert!(found.iter().any(|f| f.0.contains("RSS grew")), "{found:?}");
        assert!(found.iter().any(|f| f.0.contains("fds grew")), "{found:?}");

        let mut shm = steady.clone();
        shm[3].shm.allocated += 4096;
        assert_eq!(judge(&shm, &BOUNDS).len(), 1);

        let mut late = steady.clone();
        for s in &mut late[2..] {
            s.shown_age_p50_ms = Some(5200.0);
        }
        assert_eq!(judge(&late, &BOUNDS).len(), 1);

        let mut drift = steady.clone();
        drift[2].sent_age_p50_ms = Some(5100.0);
        assert_eq!(judge(&drift, &BOUNDS).len(), 1);
    }

    #[test]
    fn a_restarted_process_starts_its_own_baseline() {
        let mut run: Vec<Sample> = (1..=6)
            .map(|m| sample(f64::from(m) * 60.0, 10, 20_000, 12, 5040.0))
            .collect();
        // Restarted at 170 s with a larger footprint that then stays put: no finding.
        for s in &mut run[3..] {
            s.stages[2].pid = Some(11);
            s.stages[2].figures = Some(ProcFigures {
                rss_kib: 40_000,
                fds: 20,
                age_s: s.at_s - 170.0,
            });
        }
        assert_eq!(judge(&run, &BOUNDS), vec![]);
    }
}
