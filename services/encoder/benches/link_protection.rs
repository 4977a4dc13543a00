//! What protecting the link costs net-tx and net-rx in CPU: the real release binaries (capture
//! with the synthetic source, delay buffer, encoder, net-tx, net-rx) at 640x480, quality 90,
//! 30 fps on loopback, once with `security.mode = "psk"` (every packet sealed and opened) and
//! once with `"none"`, in turns (psk none psk none ...) so that whatever else the machine does
//! falls on both alike. Capture, delay buffer and encoder run throughout; net-tx and net-rx are
//! started with the turn's configuration, and measured, once the stream flows at quality 90,
//! by utime + stime from /proc/<pid>/stat over a fixed window, as % of one core.
//!
//! `cargo bench -p keymash-encoder --bench link_protection`: the bench first builds the five
//! services of the current source tree (a no-op when they are up to date).
//! `LINK_BENCH_SECONDS` sets the window (default 10), `LINK_BENCH_ROUNDS` the turns of each mode
//! (default 3).

mod support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keymash_pipeline::Service;
use keymash_shm::{remove_segments, Prefix};
use support::{build_services, cpu_model, cpu_ticks, protected_link, stats_of, ticks_per_second};

const UPSTREAM: [&str; 3] = ["capture", "delay-buffer", "encoder"];
const LINK: [&str; 2] = ["net-rx", "net-tx"];
const QUALITY: u8 = 90;
/// After the stream flows at quality 90, this long before the window opens (the receiver's
/// quality request and the first frames' transients are over).
const SETTLE: Duration = Duration::from_secs(1);
/// How long the stream may take to flow after a start before the bench gives up.
const START_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Psk,
    None,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Psk => "psk",
            Mode::None => "none",
        }
    }
}

/// Every process of the bench, killed and its segments and files removed on drop.
struct Bench {
    dir: PathBuf,
    prefix: String,
    upstream: Vec<Child>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        for child in &mut self.upstream {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Ok(prefix) = Prefix::new(&self.prefix) {
            let _ = remove_segments(&prefix);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// net-tx and net-rx of one turn.
struct Link(Vec<Child>);

impl Drop for Link {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(bin_dir: &Path, service: &str, config: &Path) -> Child {
    Command::new(bin_dir.join(format!("keymash-{service}")))
        .arg("--config")
        .arg(config)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start keymash-{service}: {e}"))
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

/// A counter of `service`'s statistics and when it was published (CLOCK_MONOTONIC ns).
fn counter(prefix: &str, service: Service, name: &str) -> Option<(u64, u64)> {
    let stats = stats_of(prefix, service)?;
    Some((stats.counter(name)?, stats.heartbeat_ns()))
}

fn gauge(prefix: &str, service: Service, name: &str) -> Option<f64> {
    stats_of(prefix, service)?.gauge(name)
}

/// Per second between two samples of a counter.
fn rate(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> f64 {
    match (a, b) {
        (Some((a, at)), Some((b, bt))) if bt > at => (b - a) as f64 / ((bt - at) as f64 / 1e9),
        _ => f64::NAN,
    }
}

/// One turn's figures.
#[derive(Debug, Clone, Copy)]
struct Turn {
    mode: Mode,
    net_tx_cpu: f64,
    net_rx_cpu: f64,
}

/// Starts net-rx and net-tx with `mode`'s configuration, waits for the stream to flow at
/// quality 90, and measures them over `window`.
fn turn(
    bench: &Bench,
    bin_dir: &Path,
    mode: Mode,
    config: &Path,
    window: Duration,
    tick_hz: f64,
) -> Turn {
    let prefix = &bench.prefix;
    let mut link = Link(Vec::new());
    for service in LINK {
        link.0.push(spawn(bin_dir, service, config));
    }
    // Flowing: this net-rx (its pid in its statistics) delivers, at the quality it asked for.
    let pids: Vec<u32> = link.0.iter().map(Child::id).collect();
    let deadline = Instant::now() + START_DEADLINE;
    let mut last = None;
    loop {
        let rx = stats_of(prefix, Service::NetRx).filter(|s| s.pid() == pids[0]);
        let delivered = rx.as_ref().and_then(|s| s.counter("delivered"));
        let flowing = delivered.is_some_and(|d| last.is_some_and(|l| d > l))
            && rx.as_ref().and_then(|s| s.gauge("quality")) == Some(f64::from(QUALITY))
            && stats_of(prefix, Service::NetTx)
                .filter(|s| s.pid() == pids[1])
                .and_then(|s| s.gauge("quality"))
                == Some(f64::from(QUALITY));
        if flowing {
            break;
        }
        for child in &mut link.0 {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("error: a {} service exited at start: {status}", mode.name());
                std::process::exit(1);
            }
        }
        if Instant::now() > deadline {
            eprintln!(
                "error: with security.mode = \"{}\" the stream did not flow at quality {QUALITY} within {START_DEADLINE:?}",
                mode.name()
            );
            std::process::exit(1);
        }
        last = delivered.or(last);
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(SETTLE);

    let ticks = |link: &Link| -> Vec<u64> { link.0.iter().map(|c| cpu_ticks(c.id())).collect() };
    let frames_start = counter(prefix, Service::NetTx, "frames");
    let delivered_start = counter(prefix, Service::NetRx, "delivered");
    let start = ticks(&link);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let end = ticks(&link);
    let elapsed = t0.elapsed().as_secs_f64();
    let frames_end = counter(prefix, Service::NetTx, "frames");
    let delivered_end = counter(prefix, Service::NetRx, "delivered");
    let cpu = |i: usize| (end[i] - start[i]) as f64 / tick_hz / elapsed * 100.0;
    let protected = |service| gauge(prefix, service, "protected") == Some(1.0);
    let (tx_protected, rx_protected) = (protected(Service::NetTx), protected(Service::NetRx));
    if (tx_protected, rx_protected) != (mode == Mode::Psk, mode == Mode::Psk) {
        eprintln!(
            "error: mode {} but net-tx protected {tx_protected}, net-rx protected {rx_protected}",
            mode.name()
        );
        std::process::exit(1);
    }
    let result = Turn {
        mode,
        net_tx_cpu: cpu(1),
        net_rx_cpu: cpu(0),
    };
    println!(
        "  {:<4}  net-tx {:5.2} %  net-rx {:5.2} %   {:.1} frames/s sent, {:.0} payloads/s delivered, \
         auth failures {}",
        mode.name(),
        result.net_tx_cpu,
        result.net_rx_cpu,
        rate(frames_start, frames_end),
        rate(delivered_start, delivered_end),
        stats_of(prefix, Service::NetRx)
            .and_then(|s| s.counter("auth_failed"))
            .unwrap_or(0)
    );
    result
}

fn mean(values: impl Iterator<Item = f64>) -> (f64, f64, f64) {
    let v: Vec<f64> = values.collect();
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (v.iter().sum::<f64>() / v.len() as f64, min, max)
}

fn main() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let window = Duration::from_secs(env("LINK_BENCH_SECONDS", 10));
    let rounds = env("LINK_BENCH_ROUNDS", 3).max(1) as usize;
    let tick_hz = ticks_per_second();
    let bin_dir = build_services(&[UPSTREAM.as_slice(), LINK.as_slice()].concat());

    let prefix = format!("kmlink{}", std::process::id());
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).expect("bench directory");
    let mut bench = Bench {
        dir: dir.clone(),
        prefix: prefix.clone(),
        upstream: Vec::new(),
    };
    let (video_port, sender_port) = (free_udp_port(), free_udp_port());
    let common = format!(
        "[shm]\nprefix = \"{prefix}\"\n[video]\nwidth = 640\nheight = 480\nfps = 30\n\
         [codec]\nquality = {QUALITY}\n[quality]\nat_rest = {QUALITY}\nat_full = {QUALITY}\n\
         [capture]\nsource = \"synthetic\"\n[delay]\nseconds = 0.0\n\
         [network]\nsender_address = \"127.0.0.1\"\nreceiver_address = \"127.0.0.1\"\n\
         sender_port = {sender_port}\nvideo_port = {video_port}\n"
    );
    let configs: Vec<(Mode, PathBuf)> = [
        (Mode::Psk, protected_link(&dir)),
        (Mode::None, "[security]\nmode = \"none\"\n".to_owned()),
    ]
    .into_iter()
    .map(|(mode, security)| {
        let path = dir.join(format!("{}.toml", mode.name()));
        std::fs::write(&path, format!("{common}{security}")).expect("write a configuration");
        (mode, path)
    })
    .collect();
    for service in UPSTREAM {
        bench.upstream.push(spawn(&bin_dir, service, &configs[0].1));
    }

    println!(
        "link protection benchmark on {} ({} cores): net-tx and net-rx at 640x480, quality {QUALITY}, 30 fps \
         on loopback, FEC and NACK off (the defaults); window {:.0} s, {rounds} turns of each mode, in turns",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        window.as_secs_f64()
    );
    let mut turns = Vec::new();
    for round in 1..=rounds {
        println!("round {round}:");
        for (mode, config) in &configs {
            turns.push(turn(&bench, &bin_dir, *mode, config, window, tick_hz));
        }
    }
    let encoder = stats_of(&prefix, Service::Encoder);
    println!(
        "encoder: {:.0} bytes/frame at quality {QUALITY}",
        encoder
            .and_then(|s| s.gauge("bytes_per_frame"))
            .unwrap_or(f64::NAN)
    );
    println!("CPU % of one core, mean (min..max) over {rounds} turns:");
    let mut means = Vec::new();
    for mode in [Mode::Psk, Mode::None] {
        let of = |f: fn(&Turn) -> f64| mean(turns.iter().filter(|t| t.mode == mode).map(f));
        let (tx, rx) = (of(|t| t.net_tx_cpu), of(|t| t.net_rx_cpu));
        println!(
            "  {:<4}  net-tx {:5.2} ({:.2}..{:.2})   net-rx {:5.2} ({:.2}..{:.2})",
            mode.name(),
            tx.0,
            tx.1,
            tx.2,
            rx.0,
            rx.1,
            rx.2
        );
        means.push((tx.0, rx.0));
    }
    println!(
        "  psk / none: net-tx {:.2}x, net-rx {:.2}x",
        means[0].0 / means[1].0,
        means[0].1 / means[1].1
    );
    drop(bench);
}
