//! What the loss-controller integration tests share: a controller running in the receiving
//! namespace of a [`NetnsPair`], a paced UDP sender and a counting receiver, and the kernel's
//! own counters read back by program id.
#![allow(dead_code)]
// each test file uses a different part
// Test setup: a failure here should fail the test at once, with its location.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keymash_loss_controller::filter::counters_of_program;
use keymash_loss_controller::layout::LossCounters;
use keymash_tests::{ChildGuard, Netns, NetnsPair, NotifySocket};

/// The video port the tests filter, and another port that must never be touched.
pub(crate) const VIDEO_PORT: u16 = 5004;
pub(crate) const OTHER_PORT: u16 = 5005;

/// The controller's fail-safe window with the default config (loss.failsafe_ms).
pub(crate) const FAILSAFE: Duration = Duration::from_millis(250);

/// Traffic phases of different tests must not compete for the 2 CPUs, or the receiver's socket
/// buffer, not the filter, would drop packets.
pub(crate) static TRAFFIC: Mutex<()> = Mutex::new(());

pub(crate) fn traffic_lock() -> std::sync::MutexGuard<'static, ()> {
    TRAFFIC
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A config file with every key at its default except a shared-memory prefix of its own, so
/// parallel tests (and a real installation on the same machine) never share segments; the
/// segments are removed with the file.
pub(crate) struct TestConfig {
    pub path: PathBuf,
    pub prefix: String,
}

impl TestConfig {
    pub(crate) fn new() -> Self {
        let prefix = keymash_tests::unique_name("kmlt");
        let path = std::env::temp_dir().join(format!("{prefix}.toml"));
        let mut file = std::fs::File::create(&path).unwrap();
        writeln!(file, "[shm]\nprefix = \"{prefix}\"").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        TestConfig { path, prefix }
    }

    pub(crate) fn shm_prefix(&self) -> keymash_shm::Prefix {
        keymash_shm::Prefix::new(&self.prefix).unwrap()
    }
}

impl Drop for TestConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Ok(prefix) = keymash_shm::Prefix::new(&self.prefix) {
            let _ = keymash_shm::remove_segments(&prefix);
        }
    }
}

/// A loss-controller running in `netns`, attached to `interface`, ready when constructed.
pub(crate) struct Controller {
    pub child: ChildGuard,
    _notify: NotifySocket,
    pub config: TestConfig,
}

impl Controller {
    /// The binary of this crate.
    pub(crate) fn binary() -> &'static str {
        env!("CARGO_BIN_EXE_keymash-loss-controller")
    }

    /// Starts `keymash-loss-controller --interface IFACE --port VIDEO_PORT <extra>` in `netns`
    /// and waits for READY=1.
    pub(crate) fn start(netns: &Netns, interface: &str, extra: &[&str]) -> Controller {
        Self::start_with(netns.command(Self::binary()), interface, extra)
    }

    /// Like [`Controller::start`] with a prepared command (e.g. wrapped in setpriv).
    pub(crate) fn start_with(command: Command, interface: &str, extra: &[&str]) -> Controller {
        Self::start_configured(command, TestConfig::new(), interface, extra)
    }

    /// Like [`Controller::start_with`] with a prepared config.
    pub(crate) fn start_configured(
        mut command: Command,
        config: TestConfig,
        interface: &str,
        extra: &[&str],
    ) -> Controller {
        let notify = NotifySocket::bind().unwrap();
        notify.allow_any_user().unwrap();
        let (key, value) = notify.env();
        command
            .arg("--config")
            .arg(&config.path)
            .args(["--interface", interface, "--port", &VIDEO_PORT.to_string()])
            .args(extra)
            .env(key, value)
            .env("KEYMASH_LOG", "info")
            .stdin(Stdio::null());
        let mut child = ChildGuard::spawn("keymash-loss-controller", &mut command).unwrap();
        if let Err(e) = notify.wait_ready(Duration::from_secs(20)) {
            let status = child.kill_hard();
            panic!("controller not ready: {e} (exit: {status:?})");
        }
        Controller {
            child,
            _notify: notify,
            config,
        }
    }
}

/// `tc filter show dev IFACE ingress` inside `netns`.
pub(crate) fn ingress_filters(netns: &Netns, interface: &str) -> String {
    netns
        .run("tc", ["filter", "show", "dev", interface, "ingress"])
        .unwrap_or_default()
}

/// Kernel ids of the BPF programs attached at `interface`'s ingress. (By id, not by name: a
/// controller without CAP_PERFMON loads its program nameless, see filter::FILTER_PRIORITY.)
pub(crate) fn attached_program_ids(netns: &Netns, interface: &str) -> Vec<u32> {
    let text = ingress_filters(netns, interface);
    text.lines()
        .filter(|line| line.contains(" bpf ") || line.contains("direct-action"))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.by_ref().find(|w| *w == "id")?;
            words.next()?.parse().ok()
        })
        .collect()
}

/// The kernel counters of the one filter attached at `interface`.
pub(crate) fn kernel_counters(netns: &Netns, interface: &str) -> LossCounters {
    let ids = attached_program_ids(netns, interface);
    assert_eq!(
        ids.len(),
        1,
        "expected exactly one keymash_loss filter, tc shows:\n{}",
        ingress_filters(netns, interface)
    );
    counters_of_program(ids[0]).unwrap()
}

/// A UDP socket bound inside `netns` at `addr`, with a receive buffer big enough for the test's
/// bursts.
pub(crate) fn bind_in(netns: &Netns, addr: SocketAddr) -> UdpSocket {
    netns
        .enter(move || {
            let socket = UdpSocket::bind(addr).unwrap();
            // Root may exceed rmem_max: 8 MiB holds every burst the tests send, so only the
            // filter drops packets.
            nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::RcvBufForce,
                &(8 << 20),
            )
            .unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            socket
        })
        .unwrap()
}

/// What a receiver got: the sequence numbers seen.
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub sequence: BTreeSet<u64>,
}

/// Sets its flag when dropped. The sending side of a scoped test holds one for the flag its
/// receiving threads stop on: a panic in a scope waits for every thread of the scope before it
/// propagates, so a sender that panics (a failed send) must still tell the receivers to stop,
/// or the test would hang instead of failing.
pub(crate) struct SetOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The longest [`receive_until`] waits for its stop flag: far beyond any sending phase of
/// these tests (the longest sends 48,000 packets at 40,000 a second), so reaching it means the
/// sending side never finished.
pub(crate) const RECEIVE_LIMIT: Duration = Duration::from_secs(120);

/// Receives on `socket` until `stop` is set and the socket has been quiet for 200 ms; fails
/// (panics, which the scope's join reports) if `stop` is not set within [`RECEIVE_LIMIT`].
pub(crate) fn receive_until(socket: &UdpSocket, stop: &std::sync::atomic::AtomicBool) -> Received {
    use std::sync::atomic::Ordering;
    let mut received = Received::default();
    let mut buf = [0u8; 2048];
    let mut quiet_since: Option<Instant> = None;
    let give_up = Instant::now() + RECEIVE_LIMIT;
    loop {
        // The socket's read timeout (bind_in: 50 ms) bounds each wait.
        match socket.recv(&mut buf) {
            Ok(n) if n >= 8 => {
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&buf[..8]);
                received.sequence.insert(u64::from_be_bytes(seq));
                quiet_since = None;
            }
            Ok(_) => {}
            Err(_) => {
                if stop.load(Ordering::Acquire) {
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(200) {
                        return received;
                    }
                }
            }
        }
        assert!(
            Instant::now() < give_up,
            "receiving on {:?}: the sending side did not finish within {RECEIVE_LIMIT:?} ({} packets so far)",
            socket.local_addr(),
            received.sequence.len()
        );
    }
}

/// Sends `count` datagrams (8-byte big-endian sequence number + padding to `size`) from
/// `socket` to `to`, paced at about `rate` packets per second in small bursts.
pub(crate) fn send_paced(socket: &UdpSocket, to: SocketAddr, count: u64, size: usize, rate: u64) {
    let mut payload = vec![0u8; size.max(8)];
    let started = Instant::now();
    const BURST: u64 = 32;
    for seq in 0..count {
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        socket.send_to(&payload, to).unwrap();
        if seq % BURST == BURST - 1 {
            let due = started + Duration::from_secs_f64((seq + 1) as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
}

/// Sender and receiver sockets for one flow from `pair.left` to `pair.right` at `port`.
pub(crate) fn flow(pair: &NetnsPair, port: u16, v6: bool) -> (UdpSocket, UdpSocket, SocketAddr) {
    let (from, to): (IpAddr, IpAddr) = if v6 {
        (NetnsPair::LEFT_V6.into(), NetnsPair::RIGHT_V6.into())
    } else {
        (NetnsPair::LEFT_V4.into(), NetnsPair::RIGHT_V4.into())
    };
    let to = SocketAddr::new(to, port);
    let receiver = bind_in(&pair.right, to);
    let sender = bind_in(&pair.left, SocketAddr::new(from, 0));
    (sender, receiver, to)
}

/// Runs `command` to completion like `Command::output`, but kills it and fails the test,
/// saying so, if it has not exited within `timeout`. Its stdout is discarded.
pub(crate) fn output_within(command: &mut Command, timeout: Duration) -> std::process::Output {
    use std::io::Read as _;
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // Read meanwhile, so that a chatty child cannot block on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = reader.join().unwrap_or_default();
            panic!(
                "{command:?} did not exit within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&text)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: reader.join().unwrap_or_default(),
    }
}
