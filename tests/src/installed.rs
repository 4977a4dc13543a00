//! keymash as an installer sets it up, inside a booted systemd ([`crate::systemd`]): what the
//! tests of the real units share (`tests/tests/systemd_*.rs`).
//!
//! - [`PrivateLink`]: the two PCs' network namespaces joined by a veth pair, with addresses
//!   from a private range the units' shipped `IPAddressAllow=` admits, so no drop-in has to widen
//!   it.
//! - [`exhibit_config`] and [`install_commands`]: the configuration file and the setup lines
//!   (`deploy/install.sh --config ...`) a test boots with; [`netns_drop_in`] places a network
//!   stage in one of the namespaces and changes nothing else of its unit.
//! - [`Cells`]: the statistics cells every stage publishes (what `keymash status` reads), read
//!   across restarts: a restarted stage starts its counters from zero under a new pid.
//! - [`DelayedWatch`]: every frame the delay buffer releases, as the encoder sees it: whether it
//!   is camera video or the countdown card, its capture time, and when it was released.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use keymash_pipeline::{FrameKind, Service, DELAYED_FRAMES};
use keymash_shm::{
    monotonic_now_ns, CellReader, Prefix, RecvError, RingReader, SegmentId, SegmentName,
    ServiceState, ServiceStats,
};

use crate::systemd::BootedSystemd;
use crate::NetnsPair;

/// The unit of stage `name` (`keymash-<name>.service`).
pub fn unit(name: &str) -> String {
    format!("keymash-{name}.service")
}

/// The counter each stage's rate is computed from: it moves while the stage does its work.
pub fn work_counter(service: Service) -> &'static str {
    match service {
        Service::NetTx | Service::NetRx => "packets",
        Service::MashInput => "keys",
        Service::LossController => "seen",
        _ => "frames",
    }
}

/// Two network namespaces joined by a veth pair (see [`NetnsPair`]), with an IPv4 address
/// added on each end. The namespaces (and with them the veth pair) are removed on drop.
#[derive(Debug)]
pub struct PrivateLink {
    pub pair: NetnsPair,
    pub sender: Ipv4Addr,
    pub receiver: Ipv4Addr,
}

impl PrivateLink {
    /// `sender` and `receiver` on the left and right ends, in one /24. Inside namespaces the
    /// test created they clash with nothing on the host, whatever its own routes.
    pub fn create(tag: &str, sender: Ipv4Addr, receiver: Ipv4Addr) -> PrivateLink {
        let pair = NetnsPair::create(tag).expect("create the network namespace pair");
        for (ns, interface, address) in [
            (&pair.left, NetnsPair::LEFT_INTERFACE, sender),
            (&pair.right, NetnsPair::RIGHT_INTERFACE, receiver),
        ] {
            ns.run(
                "ip",
                ["addr", "add", &format!("{address}/24"), "dev", interface],
            )
            .unwrap_or_else(|e| panic!("add {address} to {interface}: {e}"));
        }
        PrivateLink {
            pair,
            sender,
            receiver,
        }
    }
}

/// The configuration the systemd tests install: the synthetic camera (its frames carry a
/// stamp the display reads the capture time from) at 320x240, 20 fps, `delay_seconds` of delay,
/// scripted mashing (6 keys/s for ten minutes, so loss and quality vary as at the exhibit), the
/// loss filter on the receiver's veth end, and the display's headless output thrown away (a
/// file would grow by 3.5 MB/s in the booted system's memory).
pub fn exhibit_config(
    prefix: &str,
    sender: Ipv4Addr,
    receiver: Ipv4Addr,
    delay_seconds: f64,
) -> String {
    exhibit_config_with(
        prefix,
        (sender, receiver),
        delay_seconds,
        (320, 240, 20),
        "0-600s:6/s",
    )
}

/// [`exhibit_config`] with the video (`width`, `height`, `fps`) and the mash script
/// (`input.source = "script:..."`) chosen (the soak bench runs the exhibit's 640x480).
pub fn exhibit_config_with(
    prefix: &str,
    (sender, receiver): (Ipv4Addr, Ipv4Addr),
    delay_seconds: f64,
    (width, height, fps): (u32, u32, u32),
    mash_script: &str,
) -> String {
    format!(
        r#"[shm]
prefix = "{prefix}"
[video]
width = {width}
height = {height}
fps = {fps}
[capture]
source = "synthetic"
[delay]
seconds = {delay_seconds:?}
[network]
sender_address = "{sender}"
receiver_address = "{receiver}"
[loss]
interface = "{interface}"
[display]
output = "y4m:/dev/null"
[input]
source = "script:{mash_script}"
"#,
        interface = NetnsPair::RIGHT_INTERFACE,
    )
}

/// Setup lines (bash, run inside the booted system's root before systemd starts) that install
/// keymash for `role` as README's "Setting up two Optiplexes" says: `deploy/install.sh` with the
/// configuration `config` (text, written to a file first; install.sh checks it) and, if given,
/// the link's key copied from the other PC before installing. install.sh enables the role's
/// target.
pub fn install_commands(role: &str, config: &str, key: Option<&Path>) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    install_commands_from(role, config, key, &repo, &crate::binary_dir())
}

/// [`install_commands`] with `deploy/install.sh` and the units from the checkout `repo` and the
/// service binaries from `binaries` (the soak bench runs snapshots of both, so edits made
/// while it runs do not reach it).
pub fn install_commands_from(
    role: &str,
    config: &str,
    key: Option<&Path>,
    repo: &Path,
    binaries: &Path,
) -> String {
    let key = key.map_or(String::new(), |k| {
        format!(
            "install -D -m 0640 {} /etc/keymash/keymash.key\n",
            k.display()
        )
    });
    format!(
        "set -euo pipefail\nmkdir -p /root\ncat > /root/keymash-test.toml <<'CONF'\n{config}CONF\n{key}\
         bash {repo}/deploy/install.sh --root / --no-deps --binaries {bin} --role {role} --config /root/keymash-test.toml\n",
        repo = repo.display(),
        bin = binaries.display(),
    )
}

/// Setup lines for a drop-in that runs `unit` in network namespace `netns` (the PC it belongs
/// to). Nothing else of the unit changes: its `IPAddressAllow=` stays as shipped.
pub fn netns_drop_in(unit: &str, netns: &str) -> String {
    format!(
        "mkdir -p /etc/systemd/system/{unit}.d\nprintf '[Service]\\nNetworkNamespacePath=/run/netns/{netns}\\n' > /etc/systemd/system/{unit}.d/netns.conf\n"
    )
}

/// A new link key made by `keymash keygen` in `dir` (the file an installer copies between the
/// PCs).
pub fn new_key(dir: &Path) -> PathBuf {
    let path = dir.join("keymash.key");
    let out = std::process::Command::new(crate::service_binary("keymash"))
        .args(["keygen", "--output"])
        .arg(&path)
        .output()
        .expect("run keymash keygen");
    assert!(
        out.status.success(),
        "keymash keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// A directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(crate::unique_name(tag));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The statistics cells under one prefix.
#[derive(Debug, Clone)]
pub struct Cells {
    pub prefix: Prefix,
}

/// A counter's value at some moment, with the pid of the process that published it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub pid: u32,
    pub value: u64,
}

impl Cells {
    pub fn new(prefix: &Prefix) -> Cells {
        Cells {
            prefix: prefix.clone(),
        }
    }

    /// The cell of `service`, if it exists and reads whole.
    pub fn stats(&self, service: Service) -> Option<ServiceStats> {
        let id = SegmentId::new(
            self.prefix.clone(),
            SegmentName::new(&service.stats_cell()).ok()?,
        );
        CellReader::<ServiceStats>::open(&id).ok()?.load().ok()
    }

    pub fn counter(&self, service: Service, name: &str) -> u64 {
        self.stats(service)
            .and_then(|s| s.counter(name))
            .unwrap_or(0)
    }

    pub fn gauge(&self, service: Service, name: &str) -> Option<f64> {
        self.stats(service).and_then(|s| s.gauge(name))
    }

    /// Counter `name` of `service` now.
    pub fn mark(&self, service: Service, name: &str) -> Mark {
        let stats = self.stats(service);
        Mark {
            pid: stats.as_ref().map_or(0, ServiceStats::pid),
            value: stats.and_then(|s| s.counter(name)).unwrap_or(0),
        }
    }

    /// How far counter `name` of `service` moved since `mark`: counted from zero if another
    /// process (a restarted stage) publishes the cell now.
    pub fn since(&self, service: Service, name: &str, mark: Mark) -> u64 {
        let now = self.mark(service, name);
        if now.pid == mark.pid {
            now.value.saturating_sub(mark.value)
        } else {
            now.value
        }
    }

    /// Whether `service`'s cell is published by process `pid` (in the booted system's PID
    /// namespace, as `systemctl show -p MainPID` says), running, with counter `name` above
    /// zero: the restarted stage itself works.
    pub fn working(&self, service: Service, pid: u32, name: &str) -> bool {
        self.stats(service).is_some_and(|s| {
            s.pid() == pid
                && s.state() == Some(ServiceState::Running)
                && s.counter(name).unwrap_or(0) > 0
        })
    }
}

/// One frame the delay buffer released into the delayed-frame ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// When the watch saw it (CLOCK_MONOTONIC ns, the clock the capture times use too; the
    /// booted system has no time namespace of its own).
    pub seen_ns: u64,
    pub capture_ns: u64,
    pub kind: FrameKind,
    /// Frames the watch missed just before this one (lapped, or overwritten while reading).
    pub missed: u64,
}

/// Watches the delayed-frame ring from a thread of the test: every frame the delay buffer
/// releases, video or countdown card, in order. It follows the ring across restarts of the
/// delay buffer (the ring survives them) and re-opens it if it is recreated. It waits on the
/// ring's futex, so it sees each frame within microseconds on an idle machine; a frame it misses
/// (lapped: the ring holds half a second) is counted in the next frame's `missed`.
#[derive(Debug)]
pub struct DelayedWatch {
    stop: Arc<AtomicBool>,
    frames: Arc<Mutex<Vec<Released>>>,
    thread: Option<JoinHandle<()>>,
}

impl DelayedWatch {
    pub fn start(prefix: &Prefix) -> DelayedWatch {
        let id = SegmentId::new(
            prefix.clone(),
            SegmentName::new(DELAYED_FRAMES).expect("the delayed ring's name is valid"),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, frames) = (Arc::clone(&stop), Arc::clone(&frames));
            std::thread::spawn(move || watch(&id, &stop, &frames))
        };
        DelayedWatch {
            stop,
            frames,
            thread: Some(thread),
        }
    }

    /// Every frame seen at or after `from_ns` (CLOCK_MONOTONIC).
    pub fn since(&self, from_ns: u64) -> Vec<Released> {
        self.frames
            .lock()
            .expect("the watch thread does not panic")
            .iter()
            .filter(|f| f.seen_ns >= from_ns)
            .copied()
            .collect()
    }

    /// Whether a video frame captured after `capture_ns` has been released.
    pub fn released_video_captured_after(&self, capture_ns: u64) -> bool {
        self.frames
            .lock()
            .expect("the watch thread does not panic")
            .iter()
            .rev()
            .any(|f| f.kind == FrameKind::Video && f.capture_ns > capture_ns)
    }
}

impl Drop for DelayedWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(id: &SegmentId, stop: &AtomicBool, frames: &Mutex<Vec<Released>>) {
    let mut reader: Option<RingReader> = None;
    let mut missed = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(ring) = reader.as_mut() else {
            reader = RingReader::open(id).ok();
            if reader.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            continue;
        };
        match ring.next(Duration::from_millis(100)) {
            Ok(arrival) => {
                let seen_ns = monotonic_now_ns();
                missed += arrival.missed;
                match ring.read_with(|meta, _| (meta.capture_ns(), FrameKind::of(meta))) {
                    Ok((capture_ns, kind)) => {
                        frames
                            .lock()
                            .expect("nobody panics holding the lock")
                            .push(Released {
                                seen_ns,
                                capture_ns,
                                kind,
                                missed,
                            });
                        missed = 0;
                    }
                    Err(_) => missed += 1,
                }
            }
            Err(RecvError::TimedOut) => {
                if ring.is_replaced() {
                    reader = None;
                }
            }
            Err(_) => reader = None,
        }
    }
}

/// `systemctl show` property `name` of `unit` as a number (0 if unset or not a number).
pub fn number(sd: &BootedSystemd, unit: &str, name: &str) -> u64 {
    sd.property(unit, name).parse().unwrap_or(0)
}

/// The last `lines` journal lines of `unit`, for failure messages.
pub fn journal(sd: &BootedSystemd, unit: &str, lines: u32) -> String {
    let out = sd.exec(
        "journalctl",
        &[
            "--no-pager",
            "-o",
            "short-monotonic",
            "-n",
            &lines.to_string(),
            "-u",
            unit,
        ],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ActiveState` of each of `units`, for failure messages.
pub fn states(sd: &BootedSystemd, units: &[String]) -> String {
    units
        .iter()
        .map(|u| format!("{u}={}", sd.property(u, "ActiveState")))
        .collect::<Vec<_>>()
        .join(" ")
}
