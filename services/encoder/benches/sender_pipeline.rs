//! The sender pipeline as it runs on the exhibit: the four release binaries (capture with the
//! synthetic source, delay buffer, encoder, net-tx) at 640x480 and 30 fps, sending to a UDP sink
//! on loopback, protected as on the exhibit (`security.mode = "psk"`, a key file of its own; see
//! `link_protection` for what protection costs). Measured per quality (50 and 90):
//!
//! - CPU per service: utime + stime from /proc/<pid>/stat over a fixed window, as % of one core;
//! - encode milliseconds per frame, p50/p99/max (the encoder's own statistics cell);
//! - capture-to-send latency, p50/p99, with `delay.seconds = 0` (net-tx's statistics: from the
//!   capture timestamp to the frame's last packet leaving the socket);
//! - baseline from the same run: memcpy of one I420 frame, the least any stage can cost per frame.
//!
//! `cargo bench -p keymash-encoder --bench sender_pipeline`: the bench first builds the four
//! services of the current source tree (`cargo build --profile release -p keymash-capture ...`,
//! a no-op when they are up to date). `SENDER_BENCH_SECONDS` sets the window (default 15).

mod support;

use keymash_core::percentile::nearest_rank;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keymash_pipeline::Service;
use keymash_shm::{remove_segments, Prefix, ServiceStats};
use support::{build_services, cpu_model, cpu_ticks, protected_link, stats_of, ticks_per_second};

const SERVICES: [&str; 4] = ["capture", "delay-buffer", "encoder", "net-tx"];
const WARM_UP: Duration = Duration::from_secs(4);

fn percentile(sorted: &[f64], q: f64) -> f64 {
    nearest_rank(sorted, q).unwrap_or(0.0)
}

/// memcpy of one 640x480 I420 frame: p50 and p99 in microseconds.
fn memcpy_baseline() -> (f64, f64) {
    let src = vec![0x5Au8; 640 * 480 * 3 / 2];
    let mut dst = vec![0u8; src.len()];
    let mut samples = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

struct Run {
    children: Vec<(&'static str, Child)>,
    prefix: String,
    dir: PathBuf,
}

impl Drop for Run {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Ok(prefix) = Prefix::new(&self.prefix) {
            let _ = remove_segments(&prefix);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn measure(bin_dir: &Path, quality: u8, window: Duration, tick_hz: f64) {
    let sink = UdpSocket::bind("127.0.0.1:0").expect("sink");
    sink.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let video_port = sink.local_addr().expect("addr").port();
    let sender_port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("port")
        .port();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sink_thread = {
        let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = sink.recv(&mut buf) {
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        })
    };
    let prefix = format!("kmbench{}q{quality}", std::process::id());
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("keymash.toml");
    std::fs::write(
        &config,
        format!(
            "[shm]\nprefix = \"{prefix}\"\n[video]\nwidth = 640\nheight = 480\nfps = 30\n\
             [codec]\nquality = {quality}\n[capture]\nsource = \"synthetic\"\n[delay]\nseconds = 0.0\n\
             [network]\nsender_address = \"127.0.0.1\"\nreceiver_address = \"127.0.0.1\"\n\
             sender_port = {sender_port}\nvideo_port = {video_port}\n{}",
            protected_link(&dir)
        ),
    )
    .expect("config");
    let mut run = Run {
        children: Vec::new(),
        prefix: prefix.clone(),
        dir,
    };
    for service in SERVICES {
        let child = Command::new(bin_dir.join(format!("keymash-{service}")))
            .arg("--config")
            .arg(&config)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start service");
        run.children.push((service, child));
    }
    std::thread::sleep(WARM_UP);
    let start: Vec<u64> = run
        .children
        .iter()
        .map(|(_, c)| cpu_ticks(c.id()))
        .collect();
    let bytes_start = received.load(Ordering::Relaxed);
    let frames_start = stats_of(&prefix, Service::NetTx)
        .and_then(|s| s.counter("frames"))
        .unwrap_or(0);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let elapsed = t0.elapsed().as_secs_f64();
    let end: Vec<u64> = run
        .children
        .iter()
        .map(|(_, c)| cpu_ticks(c.id()))
        .collect();
    let bytes = received.load(Ordering::Relaxed) - bytes_start;
    let frames = stats_of(&prefix, Service::NetTx)
        .and_then(|s| s.counter("frames"))
        .unwrap_or(0)
        - frames_start;

    println!("\nquality {quality}, 640x480 @ 30 fps, delay 0, window {elapsed:.1} s:");
    let mut total = 0.0;
    for (((service, _), a), b) in run.children.iter().zip(&start).zip(&end) {
        let percent = (b - a) as f64 / tick_hz / elapsed * 100.0;
        total += percent;
        println!("  cpu {service:<13} {percent:6.1} % of one core");
    }
    println!("  cpu {:<13} {total:6.1} %", "all four");
    let encoder = stats_of(&prefix, Service::Encoder);
    let gauge = |s: &Option<ServiceStats>, name: &str| {
        s.as_ref().and_then(|s| s.gauge(name)).unwrap_or(f64::NAN)
    };
    println!(
        "  encode ms/frame   p50 {:.2}  p99 {:.2}  max {:.2}   ({:.0} bytes/frame)",
        gauge(&encoder, "encode_ms_p50"),
        gauge(&encoder, "encode_ms_p99"),
        gauge(&encoder, "encode_ms_max"),
        gauge(&encoder, "bytes_per_frame")
    );
    let net_tx = stats_of(&prefix, Service::NetTx);
    println!(
        "  capture-to-send   p50 {:.2} ms  p99 {:.2} ms   (last packet of the frame on the socket)",
        gauge(&net_tx, "latency_ms_p50"),
        gauge(&net_tx, "latency_ms_p99")
    );
    println!(
        "  sent {:.1} frames/s, {:.2} Mbit/s; encoder skipped {} frames",
        frames as f64 / elapsed,
        bytes as f64 * 8.0 / elapsed / 1e6,
        encoder
            .as_ref()
            .and_then(|s| s.counter("dropped"))
            .unwrap_or(0)
    );
    stop.store(true, Ordering::Relaxed);
    let _ = sink_thread.join();
}

fn main() {
    let window = Duration::from_secs(
        std::env::var("SENDER_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(15),
    );
    let tick_hz = ticks_per_second();
    let bin_dir = build_services(&SERVICES);
    println!(
        "sender pipeline benchmark on {} ({} cores)",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let (p50, p99) = memcpy_baseline();
    println!("baseline: memcpy of one 640x480 I420 frame p50 {p50:.1} us, p99 {p99:.1} us");
    for quality in [50, 90] {
        measure(&bin_dir, quality, window, tick_hz);
    }
}
