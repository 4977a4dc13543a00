//! What the loss filter costs and how fast mashing reaches it.
//!
//! `sudo cargo bench -p keymash-loss-controller --bench loss_filter [live|test_run|mash|keypress]`
//! (root: namespaces, BPF; the optional word runs one part only; `keypress` also needs the
//! release mash-input: `cargo build --release -p keymash-mash-input` first).
//!
//! 1. Per-packet cost of the attached classifier on real traffic through a veth pair, from the
//!    kernel's own run_time_ns / run_cnt (BPF stats switched on through a BPF_ENABLE_STATS fd,
//!    which switches them off again when it closes, so `kernel.bpf_stats_enabled` is never left
//!    changed), next to the whole per-packet cost of the send -> veth -> UDP receive path.
//! 2. The same through BPF_PROG_TEST_RUN per invocation (p50/p99/max) and over 1M repeats.
//! 3. Mash cell store -> filter map updated, end to end through the real binary, next to the bare
//!    shared-memory cell hop (store -> futex wake of a reader) as the baseline.
//! 4. Key press -> filter map updated: an input_event written into the real mash-input's FIFO,
//!    through the mash cell and the real loss-controller to the BPF map, next to a bare pipe hop
//!    (write -> read in another thread) as the baseline.

// A benchmark: setup failures panic with their location.
#![allow(clippy::unwrap_used)]

use keymash_core::percentile::nearest_rank;
use std::net::{SocketAddr, UdpSocket};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keymash_core::config::Config;
use keymash_core::curves::LossCurve;
use keymash_core::{DropProbability, MashLevel};
use keymash_loss_controller::filter::{AttachedFilter, ForeignFilter, LossFilter};
use keymash_loss_controller::loss_model::LossModel;
use keymash_loss_controller::runner::monotonic_now_ns;
use keymash_pipeline::{MashRecord, MASH_CELL};
use keymash_shm::{CellReader, CellWriter, Permissions, Prefix, SegmentId, SegmentName};
use keymash_tests::{require_root, ChildGuard, NetnsPair, NotifySocket};

const PORT: u16 = 5004;
const IFACE: &str = NetnsPair::RIGHT_INTERFACE;

fn main() {
    require_root();
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wants = |part: &str| only.as_deref().is_none_or(|o| part.contains(o));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "CPU: {cpu} x{}; kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.trim()
    );

    if wants("live") {
        live_cost();
    }
    if wants("test_run") {
        test_run_cost();
    }
    if wants("mash") {
        mash_latency();
    }
    if wants("keypress") {
        keypress_latency();
    }
}

fn percentiles(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q| nearest_rank(samples, q).unwrap_or(0.0);
    (at(0.5), at(0.99), at(1.0))
}

fn bpf_stats_sysctl() -> String {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn bind_in(ns: &keymash_tests::Netns, addr: SocketAddr) -> UdpSocket {
    ns.enter(move || {
        let s = UdpSocket::bind(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        s
    })
    .unwrap()
}

/// 1. Attached filter, real packets.
fn live_cost() {
    const BATCH: u64 = 10_000;
    const BATCHES: u64 = 20;
    println!(
        "\n== attached classifier, {} packets per case through a veth pair ==",
        BATCH * BATCHES
    );
    let pair = NetnsPair::create("bench").unwrap();
    let mut filter = LossFilter::load().unwrap();
    let model = LossModel::Bernoulli(DropProbability::new(0.4).unwrap());
    filter
        .write_config(&model.record(PORT, monotonic_now_ns().unwrap() + 3_600_000_000_000))
        .unwrap();
    // Netlink talks to the namespace of the calling thread: attach (and later detach) in it.
    let mut attached = pair
        .right
        .enter(move || AttachedFilter::attach(filter, IFACE))
        .unwrap()
        .unwrap();

    let sysctl_before = bpf_stats_sysctl();
    let stats_fd = aya::sys::enable_stats(aya::sys::Stats::RunTime).unwrap();

    let to_video = SocketAddr::new(NetnsPair::RIGHT_V4.into(), PORT);
    let to_other = SocketAddr::new(NetnsPair::RIGHT_V4.into(), PORT + 1);
    let rx_video = bind_in(&pair.right, to_video);
    let rx_other = bind_in(&pair.right, to_other);
    let tx = bind_in(&pair.left, SocketAddr::new(NetnsPair::LEFT_V4.into(), 0));
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for rx in [&rx_video, &rx_other] {
            let done = &done;
            s.spawn(move || {
                let mut buf = [0u8; 2048];
                while !done.load(Ordering::Acquire) {
                    let _ = rx.recv(&mut buf);
                }
            });
        }
        let payload = [0u8; 1000];
        for (what, to) in [
            ("video flow, drop 40%", to_video),
            ("other UDP port (parsed, not counted)", to_other),
        ] {
            let mut filter_ns = Vec::new();
            let mut path_ns = Vec::new();
            for _ in 0..BATCHES {
                let (t0, c0) = attached.filter_mut().run_stats().unwrap();
                let started = Instant::now();
                for _ in 0..BATCH {
                    tx.send_to(&payload, to).unwrap();
                }
                let wall = started.elapsed();
                let (t1, c1) = attached.filter_mut().run_stats().unwrap();
                let runs = c1.saturating_sub(c0).max(1);
                filter_ns.push((t1 - t0).as_nanos() as f64 / runs as f64);
                path_ns.push(wall.as_nanos() as f64 / BATCH as f64);
                // Let the receivers drain so the next batch is not throttled by full buffers.
                std::thread::sleep(Duration::from_millis(5));
            }
            let (f50, f99, fmax) = percentiles(&mut filter_ns);
            let (p50, p99, pmax) = percentiles(&mut path_ns);
            println!("{what}:");
            println!("  classifier run_time_ns/run_cnt per batch of {BATCH}: p50 {f50:.0} ns  p99 {f99:.0} ns  max {fmax:.0} ns");
            println!("  baseline, whole send->veth->tc->UDP path per packet: p50 {p50:.0} ns  p99 {p99:.0} ns  max {pmax:.0} ns");
            println!(
                "  classifier share of the path (p50): {:.1}%",
                100.0 * f50 / p50
            );
        }
        done.store(true, Ordering::Release);
    });
    let counters = attached.filter().counters().unwrap();
    println!(
        "  kernel counters: seen {} dropped {} ({:.2}%)",
        counters.seen,
        counters.dropped,
        100.0 * counters.dropped as f64 / counters.seen.max(1) as f64
    );
    drop(stats_fd);
    println!(
        "  kernel.bpf_stats_enabled before {sysctl_before}, after closing the stats fd {}",
        bpf_stats_sysctl()
    );
    pair.right
        .enter(move || attached.detach())
        .unwrap()
        .unwrap();
}

fn udp4_frame(port: u16) -> Vec<u8> {
    let mut p = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    p.extend_from_slice(&[
        0x45, 0, 0, 48, 0, 1, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
    ]);
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&port.to_be_bytes());
    p.extend_from_slice(&[0, 28, 0, 0]);
    p.extend_from_slice(&[0u8; 20]);
    p
}

fn arp_frame() -> Vec<u8> {
    let mut p = vec![
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06,
    ];
    p.extend_from_slice(&[
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2,
    ]);
    p
}

/// 2. BPF_PROG_TEST_RUN, not attached.
fn test_run_cost() {
    const SINGLE: usize = 20_000;
    const REPEAT: u32 = 1_000_000;
    println!(
        "\n== BPF_PROG_TEST_RUN (kernel-timed, includes the test runner's own per-run overhead) =="
    );
    let mut filter = LossFilter::load().unwrap();
    let model = LossModel::Bernoulli(DropProbability::new(0.4).unwrap());
    filter
        .write_config(&model.record(PORT, monotonic_now_ns().unwrap() + 3_600_000_000_000))
        .unwrap();
    for (what, packet) in [
        ("video flow, drop 40%", udp4_frame(PORT)),
        ("other UDP port", udp4_frame(PORT + 1)),
        ("ARP", arp_frame()),
    ] {
        let mut single: Vec<f64> = (0..SINGLE)
            .map(|_| filter.test_run_timed(&packet, 1).unwrap().1.as_nanos() as f64)
            .collect();
        let (p50, p99, max) = percentiles(&mut single);
        let (_, mean) = filter.test_run_timed(&packet, REPEAT).unwrap();
        println!("{what}: single runs p50 {p50:.0} ns  p99 {p99:.0} ns  max {max:.0} ns; mean over {REPEAT} repeats {} ns", mean.as_nanos());
    }
}

// 3. Mash cell -> map, through the real binary.

/// The real loss-controller, attached in the receiving namespace, and a handle on its maps.
struct RunningController {
    process: ChildGuard,
    /// Kept alive (and drained) for as long as the controller runs.
    notify: NotifySocket,
    filter: ForeignFilter,
}

fn start_controller(pair: &NetnsPair, config_path: &std::path::Path) -> RunningController {
    let notify = NotifySocket::bind().unwrap();
    let (key, value) = notify.env();
    let mut command = pair
        .right
        .command(env!("CARGO_BIN_EXE_keymash-loss-controller"));
    command
        .arg("--config")
        .arg(config_path)
        .args(["--interface", IFACE, "--port", &PORT.to_string()])
        .env(key, value)
        .env("KEYMASH_LOG", "warn")
        .stdin(Stdio::null());
    let process = ChildGuard::spawn("keymash-loss-controller", &mut command).unwrap();
    notify.wait_ready(Duration::from_secs(20)).unwrap();
    let tc = pair
        .right
        .run("tc", ["filter", "show", "dev", IFACE, "ingress"])
        .unwrap();
    let id: u32 = tc
        .split_whitespace()
        .skip_while(|w| *w != "id")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    RunningController {
        process,
        notify,
        filter: ForeignFilter::open(id).unwrap(),
    }
}

fn mash_latency() {
    const CHANGES: usize = 300;
    println!("\n== mash cell store -> filter map updated ({CHANGES} changes) ==");
    let prefix_text = keymash_tests::unique_name("kmlb");
    let prefix = Prefix::new(&prefix_text).unwrap();
    let config_path = std::env::temp_dir().join(format!("{prefix_text}.toml"));
    std::fs::write(&config_path, format!("[shm]\nprefix = \"{prefix_text}\"\n")).unwrap();

    // Baseline: the bare cell hop, store in one thread -> futex wake in another.
    let hop_id = SegmentId::new(prefix.clone(), SegmentName::new("bench-hop").unwrap());
    let (mut hop_writer, _) = CellWriter::<u64>::open(&hop_id, Permissions::OwnerOnly).unwrap();
    hop_writer.store(&0);
    let hop_reader = CellReader::<u64>::open(&hop_id).unwrap();
    let mut hop = Vec::new();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let mut seen = hop_reader.version();
            let mut wakes = Vec::new();
            for _ in 0..CHANGES {
                seen = hop_reader
                    .wait_for_change(seen, Duration::from_secs(2))
                    .unwrap();
                wakes.push((monotonic_now_ns().unwrap(), hop_reader.load().unwrap()));
            }
            wakes
        });
        for _ in 0..CHANGES {
            std::thread::sleep(Duration::from_millis(3));
            hop_writer.store(&monotonic_now_ns().unwrap());
        }
        for (woke, stored) in waiter.join().unwrap() {
            hop.push(woke.saturating_sub(stored) as f64);
        }
    });

    let pair = NetnsPair::create("benchm").unwrap();
    let mash_id = SegmentId::new(prefix.clone(), SegmentName::new(MASH_CELL).unwrap());
    let (mut mash, _) = CellWriter::<MashRecord>::open(&mash_id, Permissions::OwnerOnly).unwrap();
    let RunningController {
        mut process,
        notify: _notify,
        filter: foreign,
    } = start_controller(&pair, &config_path);

    let loss = Config::default().loss;
    let curve = LossCurve::new(loss.drop_at_rest, loss.exponent, loss.zero_loss_at_mash).unwrap();
    let mut end_to_end = Vec::new();
    let mut state = 0x2545_f491_u32;
    let mut current = foreign.config().unwrap().drop_fraction;
    while end_to_end.len() < CHANGES {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let level = MashLevel::saturating((state % 1000) as f32 / 1000.0);
        let expected = curve.drop_probability(level).as_u32_fraction();
        if expected == current {
            continue;
        }
        std::thread::sleep(Duration::from_micros(2_000 + u64::from(state % 6_000)));
        let stored = Instant::now();
        mash.store(&MashRecord::new(level, 0, 0, monotonic_now_ns().unwrap()));
        while foreign.config().unwrap().drop_fraction != expected {
            assert!(
                stored.elapsed() < Duration::from_secs(1),
                "map never followed the mash cell"
            );
            // Two CPUs: leave the controller room to run.
            std::thread::yield_now();
        }
        end_to_end.push(stored.elapsed().as_nanos() as f64);
        current = expected;
    }
    let (h50, h99, hmax) = percentiles(&mut hop);
    let (e50, e99, emax) = percentiles(&mut end_to_end);
    println!(
        "baseline, cell store -> reader woken: p50 {:.1} us  p99 {:.1} us  max {:.1} us",
        h50 / 1e3,
        h99 / 1e3,
        hmax / 1e3
    );
    println!("mash cell store -> map updated (seen by a map lookup): p50 {:.1} us  p99 {:.1} us  max {:.1} us", e50 / 1e3, e99 / 1e3, emax / 1e3);
    println!("ratio to the bare cell hop (p50): {:.1}x; a tick-only design would average half the 20 ms refresh period", e50 / h50);

    process.terminate(Duration::from_secs(5)).unwrap();
    let _ = std::fs::remove_file(&config_path);
    let _ = keymash_shm::remove_segments(&prefix);
}

/// One `struct input_event` (64-bit layout): a key press of `code`.
fn key_press_record(code: u16) -> [u8; 24] {
    let mut record = [0u8; 24];
    record[16..18].copy_from_slice(&1u16.to_ne_bytes()); // EV_KEY
    record[18..20].copy_from_slice(&code.to_ne_bytes());
    record[20..24].copy_from_slice(&1i32.to_ne_bytes()); // pressed
    record
}

fn keypress_latency() {
    use std::io::{Read, Write};
    const PRESSES: usize = 60;
    println!("\n== key press into mash-input's FIFO -> filter map updated ({PRESSES} presses) ==");

    // Baseline: a bare pipe hop, write in one thread -> read returns in another.
    let (mut tx, mut rx) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut pipe = Vec::new();
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let mut buf = [0u8; 8];
            let mut hops = Vec::new();
            for _ in 0..PRESSES {
                rx.read_exact(&mut buf).unwrap();
                hops.push(
                    monotonic_now_ns()
                        .unwrap()
                        .saturating_sub(u64::from_ne_bytes(buf)),
                );
            }
            hops
        });
        for _ in 0..PRESSES {
            std::thread::sleep(Duration::from_millis(3));
            tx.write_all(&monotonic_now_ns().unwrap().to_ne_bytes())
                .unwrap();
        }
        pipe = reader
            .join()
            .unwrap()
            .into_iter()
            .map(|n| n as f64)
            .collect();
    });

    let prefix_text = keymash_tests::unique_name("kmkp");
    let prefix = Prefix::new(&prefix_text).unwrap();
    let dir = std::env::temp_dir().join(&prefix_text);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo_path = dir.join("keys.fifo");
    let config_path = dir.join("keymash.toml");
    std::fs::write(
        &config_path,
        format!(
            "[shm]\nprefix = \"{prefix_text}\"\n[input]\nsource = \"fifo:{}\"\n",
            fifo_path.display()
        ),
    )
    .unwrap();
    let pair = NetnsPair::create("benchk").unwrap();

    let input_notify = NotifySocket::bind().unwrap();
    let (key, value) = input_notify.env();
    let mut input = ChildGuard::spawn(
        "keymash-mash-input",
        std::process::Command::new(keymash_tests::receiver::service_binary(
            "keymash-mash-input",
        ))
        .arg("--config")
        .arg(&config_path)
        .env(key, value)
        .env("KEYMASH_LOG", "warn")
        .stdin(Stdio::null()),
    )
    .unwrap();
    input_notify.wait_ready(Duration::from_secs(20)).unwrap();

    let RunningController {
        mut process,
        notify: _notify,
        filter: foreign,
    } = start_controller(&pair, &config_path);

    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo_path)
        .unwrap();
    let mut samples = Vec::new();
    let mut unchanged = 0;
    for i in 0..PRESSES {
        // 2.5 presses a second keep the level low, where every press moves the drop probability.
        std::thread::sleep(Duration::from_millis(400));
        let before = foreign.config().unwrap().drop_fraction;
        let record = key_press_record(16 + (i % 26) as u16);
        let pressed = Instant::now();
        fifo.write_all(&record).unwrap();
        loop {
            if foreign.config().unwrap().drop_fraction != before {
                samples.push(pressed.elapsed().as_nanos() as f64);
                break;
            }
            if pressed.elapsed() > Duration::from_secs(1) {
                unchanged += 1;
                break;
            }
            std::thread::yield_now();
        }
    }
    let (p50, p99, pmax) = percentiles(&mut pipe);
    let (k50, k99, kmax) = percentiles(&mut samples);
    println!(
        "baseline, pipe write -> read in another thread: p50 {:.1} us  p99 {:.1} us  max {:.1} us",
        p50 / 1e3,
        p99 / 1e3,
        pmax / 1e3
    );
    println!(
        "key press -> map updated: p50 {:.1} us  p99 {:.1} us  max {:.1} us ({} presses, {unchanged} left the map unchanged within 1 s)",
        k50 / 1e3,
        k99 / 1e3,
        kmax / 1e3,
        samples.len()
    );
    println!("ratio to the bare pipe hop (p50): {:.1}x", k50 / p50);

    process.terminate(Duration::from_secs(5)).unwrap();
    input.terminate(Duration::from_secs(5)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = keymash_shm::remove_segments(&prefix);
}
