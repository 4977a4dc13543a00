//! What publishing the picture into the `screen` segment costs the display (issue 17): the
//! video pipeline on loopback (synthetic camera, 640x480 at 30 fps, no delay, the display's
//! Y4M output to /dev/null), the display restarted with `display.publish_picture` on and off in
//! turn, rounds interleaved so both see the same machine noise. Per variant: the display's CPU
//! (user + system time over wall time, from /proc), its camera-to-screen p50 (from the RTP
//! header extension, to the picture written: everything included; the pixel stamp's figure
//! counts whole milliseconds, too coarse here) and, with publishing on,
//! the time the copy into the ring took per picture (the display's own counters).
//!
//! Then, with publishing on, the two readers of the segment at their defaults: keymash-web's CPU
//! with 0, 1 and 10 viewers reading `/stream.mjpg` as fast as it comes (and the pictures a
//! second each viewer got), and keymash-archive's CPU and bytes per hour (5 pictures a second,
//! JPEG q70; the synthetic scene at q50, so a camera's pictures will differ).
//!
//! `cargo bench -p keymash-tests --bench watchers` (release binaries; no root needed).
//! `KEYMASH_PUBLISH_ROUNDS` (default 4) rounds of `KEYMASH_PUBLISH_SECONDS` (default 15) per
//! variant, after 4 s of warm-up each; `KEYMASH_WATCHER_SECONDS` (default 30) per web
//! measurement and for the archive.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keymash_pipeline::Service;
use keymash_tests::cpu_seconds;
use keymash_tests::receiver::{ReceiverSetup, RunningService};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    cpu_percent: f64,
    latency_p50_ms: f64,
    publish_us: Option<f64>,
    fps: f64,
}

fn measure(setup: &ReceiverSetup, display: &RunningService, seconds: u64) -> Figures {
    let pid = display.child.pid();
    let counter = |name| setup.counter(Service::Display, name).unwrap_or(0);
    let (published0, spent0) = (counter("screen_published"), counter("screen_publish_us"));
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    let (mut latency, mut fps) = (Vec::new(), Vec::new());
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(500));
        latency.extend(setup.gauge(Service::Display, "camera_to_screen_p50_ms"));
        fps.extend(setup.gauge(Service::Display, "fps"));
    }
    let cpu = cpu_seconds(pid) - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let (published, spent) = (
        counter("screen_published") - published0,
        counter("screen_publish_us") - spent0,
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Figures {
        cpu_percent: 100.0 * cpu / wall,
        latency_p50_ms: mean(&latency),
        publish_us: (published > 0).then(|| spent as f64 / published as f64),
        fps: mean(&fps),
    }
}

/// `viewers` clients reading `/stream.mjpg` for `seconds`: keymash-web's CPU over that time and
/// the JPEG parts each viewer received per second.
fn web_with_viewers(web: &RunningService, port: u16, viewers: usize, seconds: u64) -> (f64, f64) {
    let stop = AtomicBool::new(false);
    let parts = AtomicU64::new(0);
    let pid = web.child.pid();
    std::thread::scope(|scope| {
        for _ in 0..viewers {
            scope.spawn(|| {
                let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                    return;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: bench\r\n\r\n");
                let mut buf = vec![0u8; 1 << 16];
                let mut tail: Vec<u8> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            // Count part headers, also one split across two reads.
                            tail.extend_from_slice(&buf[..n]);
                            let needle = b"Content-Type: image/jpeg";
                            let found = tail.windows(needle.len()).filter(|w| w == needle).count();
                            parts.fetch_add(found as u64, Ordering::Relaxed);
                            let keep = tail.len().min(needle.len() - 1);
                            tail.drain(..tail.len() - keep);
                        }
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs(2));
        let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
        let parts0 = parts.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(seconds));
        let cpu = cpu_seconds(pid) - cpu0;
        let wall = t0.elapsed().as_secs_f64();
        let got = parts.load(Ordering::Relaxed) - parts0;
        stop.store(true, Ordering::Relaxed);
        (
            100.0 * cpu / wall,
            got as f64 / wall / viewers.max(1) as f64,
        )
    })
}

fn main() {
    let web_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port");
    let watcher_seconds = env_or("KEYMASH_WATCHER_SECONDS", 30);
    let rounds = env_or("KEYMASH_PUBLISH_ROUNDS", 4);
    let seconds = env_or("KEYMASH_PUBLISH_SECONDS", 15);
    let config = |publish: bool| {
        format!(
            "[capture]\nsource = \"synthetic\"\n[delay]\nseconds = 0.0\n\
             [quality]\nat_rest = 50\nat_full = 50\n\
             [display]\noutput = \"y4m:/dev/null\"\nhud = false\npublish_picture = {publish}\n\
             [web]\nlisten = \"127.0.0.1:{web_port}\"\n\
             [archive]\ndir = \"{{dir}}/archive\"\n"
        )
    };
    let setup = ReceiverSetup::sized("watchers", 640, 480, &config(true));
    let _sender: Vec<RunningService> = [
        "keymash-net-rx",
        "keymash-capture",
        "keymash-delay-buffer",
        "keymash-encoder",
        "keymash-net-tx",
    ]
    .iter()
    .map(|name| setup.start(name))
    .collect();
    let base = std::fs::read_to_string(&setup.config).expect("configuration");
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which variant goes first, so neither always follows the other.
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for publish in order {
            let text = base.replace(
                "publish_picture = true",
                &format!("publish_picture = {publish}"),
            );
            std::fs::write(&setup.config, text).expect("rewrite the configuration");
            let mut display = setup.start("keymash-display");
            std::thread::sleep(Duration::from_secs(4));
            let figures = measure(&setup, &display, seconds);
            display
                .child
                .terminate(Duration::from_secs(3))
                .expect("display stops");
            println!(
                "round {round} publish {:<5}: display {:5.2}% of a core, {:4.1} fps, camera to screen p50 {:5.2} ms{}",
                publish,
                figures.cpu_percent,
                figures.fps,
                figures.latency_p50_ms,
                figures
                    .publish_us
                    .map_or(String::new(), |us| format!(", copy into the ring {us:.1} us/picture"))
            );
            if publish { &mut on } else { &mut off }.push(figures);
        }
    }
    let median = |v: &[Figures], f: fn(&Figures) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let (cpu_on, cpu_off) = (
        median(&on, |f| f.cpu_percent),
        median(&off, |f| f.cpu_percent),
    );
    let (lat_on, lat_off) = (
        median(&on, |f| f.latency_p50_ms),
        median(&off, |f| f.latency_p50_ms),
    );
    let copy = median(&on, |f| f.publish_us.unwrap_or(f64::NAN));
    let summary = format!(
        "median over {rounds} rounds of {seconds} s, 640x480 30 fps: display CPU {cpu_on:.2}% publishing vs {cpu_off:.2}% not \
         ({:+.2} points, x{:.3}); camera to screen p50 {lat_on:.2} vs {lat_off:.2} ms ({:+.2} ms); \
         copy into the ring {copy:.1} us per picture",
        cpu_on - cpu_off,
        cpu_on / cpu_off,
        lat_on - lat_off
    );
    println!("{summary}");

    // The readers, beside a display that publishes.
    std::fs::write(&setup.config, &base).expect("rewrite the configuration");
    let _display = setup.start("keymash-display");
    let web = setup.start("keymash-web");
    for viewers in [0, 1, 10] {
        let (cpu, fps) = web_with_viewers(&web, web_port, viewers, watcher_seconds);
        println!(
            "keymash-web, {viewers:2} viewers of /stream.mjpg (640x480, stream_fps 15, q80): {cpu:5.2}% of a core{}",
            if viewers > 0 { format!(", {fps:.1} pictures/s each") } else { String::new() }
        );
    }
    drop(web);
    let archive = setup.start("keymash-archive");
    let archived = || -> u64 {
        std::fs::read_dir(setup.dir.join("archive"))
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    let (cpu0, t0, bytes0) = (cpu_seconds(archive.child.pid()), Instant::now(), archived());
    std::thread::sleep(Duration::from_secs(watcher_seconds));
    let cpu = 100.0 * (cpu_seconds(archive.child.pid()) - cpu0) / t0.elapsed().as_secs_f64();
    let mut archive = archive;
    archive
        .child
        .terminate(Duration::from_secs(5))
        .expect("archive stops");
    let recorded = t0.elapsed().as_secs_f64();
    let bytes = archived() - bytes0;
    println!(
        "keymash-archive (640x480, 5 fps, q70, the synthetic scene at q50): {cpu:.2}% of a core, \
         {bytes} bytes in {recorded:.0} s (.avi and .jsonl) = about {:.2} GB an hour",
        bytes as f64 * 3600.0 / recorded / 1e9
    );
}
