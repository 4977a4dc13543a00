//! keymash-web beside the whole installation: the four sender services in one network
//! namespace, the four receiver services (the eBPF loss filter at the receiver's ingress) in
//! another, the web service reading the receiver's segments.
//!
//! - `/metrics` parses as Prometheus parses it, and its loss and quality are what
//!   `keymash status --json` says at the same moment (within one refresh of the stats cells).
//! - The page in real headless Chromium shows the live picture (the synthetic scene's stamp is
//!   read back from the screenshot and is seconds old at most), the four plots drawn, and the
//!   stages and their numbers.
//! - ffprobe reads `/stream.mjpg` as MJPEG of the stream's size (as VLC and ffplay do).
//! - 50 clients that open the MJPEG stream and never read change neither the display's frame
//!   rate nor its camera-to-screen time by more than 5% (medians of four rounds with and four
//!   without them, interleaved; or by more than the figure moves between rounds without any,
//!   when that is larger), and the web service's memory stays bounded.

// Tests may unwrap (Cargo.toml's lint note); clippy.toml's allow-unwrap-in-tests covers only
// #[test] functions, not this file's helpers.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use keymash_pipeline::Service;
use keymash_tests::receiver::{type_into_fifo, ReceiverSetup};
use keymash_tests::{require_root, NetnsPair};

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

/// GET `path`: the status code and the body (the service closes each connection it answers
/// with `Connection: close`).
fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("response");
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole response head");
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let mut body = response[head_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..line_end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
}

fn status_json(setup: &ReceiverSetup) -> serde_json::Value {
    let out = Command::new(keymash_tests::service_binary("keymash"))
        .args(["status", "--json", "--prefix", &setup.prefix])
        .output()
        .expect("keymash status");
    assert!(out.status.success(), "keymash status --json failed");
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// Gauge `name` of `stage` in a `keymash status --json` report.
fn status_gauge(report: &serde_json::Value, stage: &str, name: &str) -> Option<f64> {
    report["stages"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == stage)?["gauges"]
        .as_array()?
        .iter()
        .find(|g| g[0] == name)?[1]
        .as_f64()
}

/// The value of the metric sample `metric` with label `stage`, from parsed OpenMetrics text.
fn metric(scrape: &prometheus_parse::Scrape, metric: &str, stage: &str) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && s.labels.get("stage") == Some(stage))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// `/metrics` between two `keymash status --json` runs. The stats cells refresh twice a second:
/// when both reports agree on a figure, the metric must be exactly that value; when they differ
/// (a refresh fell between them), it must be one of the two. Only a window that straddled two
/// refreshes (the metric is neither) is tried again, at most five times.
fn metrics_agree_with_status(setup: &ReceiverSetup, addr: SocketAddr) -> Vec<String> {
    const FIGURES: [(&str, &str); 3] = [
        ("net-rx", "loss_percent"),
        ("net-rx", "quality"),
        ("display", "mash"),
    ];
    for attempt in 1..=5 {
        let before = status_json(setup);
        let (code, body) = get(addr, "/metrics");
        let after = status_json(setup);
        assert_eq!(code, 200);
        let text = String::from_utf8(body).expect("metrics are text");
        assert!(text.ends_with("# EOF\n"), "no OpenMetrics end marker");
        let lines: Vec<std::io::Result<String>> = text.lines().map(|l| Ok(l.to_owned())).collect();
        let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("metrics parse");
        assert_eq!(
            metric(&scrape, "keymash_stage_up", "display"),
            Some(1.0),
            "display is up"
        );
        let mut compared = Vec::new();
        let mut straddled = false;
        for (stage, gauge) in FIGURES {
            let (Some(a), Some(b)) = (
                status_gauge(&before, stage, gauge),
                status_gauge(&after, stage, gauge),
            ) else {
                panic!("{stage} published no {gauge} gauge");
            };
            let name = format!("keymash_{gauge}");
            let value = metric(&scrape, &name, stage)
                .unwrap_or_else(|| panic!("no {name}{{stage={stage}}}"));
            // The same f64 through two formatters (serde_json, prometheus-client's dtoa) and
            // two parsers may come back a unit in the last place apart.
            let same = |x: f64, y: f64| (x - y).abs() <= 1e-12 * x.abs().max(1.0);
            if same(a, b) {
                assert!(
                    same(value, a),
                    "{name}{{stage={stage}}} = {value}: keymash status said {a}"
                );
            } else if !same(value, a) && !same(value, b) {
                straddled = true;
            }
            compared.push(format!(
                "{stage} {gauge} {value:.3} (status {a:.3} / {b:.3})"
            ));
        }
        if !straddled {
            return compared;
        }
        eprintln!("attempt {attempt}: the reads straddled two refreshes: {compared:?}");
    }
    panic!("/metrics never matched keymash status --json in five attempts");
}

fn chromium(args: &[&str], url: &str, dir: &Path) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1280,1400",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium (deploy/install-deps.sh test installs it)")
}

/// A rectangle of the page, from the layout the page publishes on `<body data-layout>`.
#[derive(Debug, Clone, Copy)]
struct Rect {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

fn layout_rect(layout: &serde_json::Value, id: &str) -> Rect {
    let r = &layout[id];
    let n = |k: &str| {
        r[k].as_f64()
            .unwrap_or_else(|| panic!("{id}.{k} in {layout}")) as usize
    };
    Rect {
        x: n("x"),
        y: n("y"),
        w: n("w"),
        h: n("h"),
    }
}

/// The page in headless Chromium: its DOM after load (the layout, the numbers) and a screenshot.
fn page_in_chromium(setup: &ReceiverSetup, addr: SocketAddr) {
    let url = format!("http://{addr}/");
    let dom_out = chromium(&["--dump-dom"], &url, &setup.dir);
    let dom = String::from_utf8_lossy(&dom_out.stdout).into_owned();
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page did not draw its first data before load:\n{dom}"
    );
    for stage in Service::ALL {
        assert!(dom.contains(stage.name()), "no {stage} on the page");
    }
    let layout_attr = dom
        .split("data-layout=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("body data-layout")
        .replace("&quot;", "\"");
    let layout: serde_json::Value = serde_json::from_str(&layout_attr).expect("layout JSON");

    let shot = setup.dir.join("page.png");
    let out = chromium(
        &[&format!("--screenshot={}", shot.display())],
        &url,
        &setup.dir,
    );
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let taken_ns = keymash_shm::monotonic_now_ns();
    // To look at the page: KEYMASH_KEEP_PAGE=FILE keeps a copy of the screenshot.
    if let Some(keep) = std::env::var_os("KEYMASH_KEEP_PAGE") {
        std::fs::copy(&shot, keep).expect("copy the screenshot");
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("screenshot"),
    ));
    let mut reader = decoder.read_info().expect("PNG");
    let mut rgba = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut rgba).expect("PNG frame");
    let channels = info.color_type.samples();
    let (width, height) = (info.width as usize, info.height as usize);
    let pixel = |x: usize, y: usize| {
        let i = (y * width + x) * channels;
        (rgba[i], rgba[i + 1], rgba[i + 2])
    };

    // The live picture: at its natural size, so the stamp reads at its own pixel positions.
    let live = layout_rect(&layout, "live");
    assert_eq!((live.w, live.h), (320, 240), "the picture is shown 1:1");
    assert!(live.x + live.w <= width && live.y + live.h <= height);
    let mut luma = Vec::with_capacity(live.w * live.h);
    for y in live.y..live.y + live.h {
        for x in live.x..live.x + live.w {
            let (r, g, b) = pixel(x, y);
            // Back to the pipeline's studio-range BT.601 luma (what the display turns to RGB).
            let y = 16.0
                + (65.481 * f64::from(r) + 128.553 * f64::from(g) + 24.966 * f64::from(b)) / 255.0;
            luma.push(y.round().clamp(0.0, 255.0) as u8);
        }
    }
    let stamp = keymash_media::stamp::read_stamp_from_luma(&luma, live.w, live.h)
        .expect("the synthetic scene's stamp in the page's picture");
    let age_ms = stamp.age_ms(taken_ns);
    eprintln!(
        "page picture: capture frame {}, {age_ms} ms old when the screenshot was read",
        stamp.frame
    );
    assert!(
        (0..10_000).contains(&age_ms),
        "the page's picture is {age_ms} ms old: not the live picture"
    );

    // Each plot has drawn something: more than one colour in its canvas.
    for plot in ["plot-mash", "plot-drop", "plot-quality", "plot-fps"] {
        let r = layout_rect(&layout, plot);
        assert!(r.w > 50 && r.h > 30, "{plot} is {r:?}");
        let mut colours = std::collections::HashSet::new();
        for y in (r.y..r.y + r.h).step_by(2) {
            for x in (r.x..r.x + r.w).step_by(2) {
                if x < width && y < height {
                    colours.insert(pixel(x, y));
                }
            }
        }
        assert!(
            colours.len() > 2,
            "{plot} shows {} colours: not drawn",
            colours.len()
        );
    }
}

/// What a player makes of `/stream.mjpg`: ffprobe (FFmpeg's, as VLC and ffplay read it) must
/// see MJPEG of the stream's size.
fn stream_plays_in_ffprobe(addr: SocketAddr) {
    let out = Command::new("timeout")
        .args(["20", "ffprobe", "-v", "error", "-f", "mpjpeg"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "json",
        ])
        .arg(format!("http://{addr}/stream.mjpg"))
        .output()
        .expect("run ffprobe (deploy/install-deps.sh test installs ffmpeg)");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ffprobe: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let stream = &report["streams"][0];
    assert_eq!(stream["codec_name"], "mjpeg", "{report}");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(320), Some(240))
    );
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("process status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// The display's frame rate and camera-to-screen p50 averaged over `duration` (its p50 is over
/// the last 300 frames, 10 s, so a round is that long). Camera to screen from the RTP header
/// extension, in microseconds; the pixel stamp's capture-to-present counts whole milliseconds,
/// too coarse for 5% of about 8 ms.
fn display_figures(setup: &ReceiverSetup, duration: Duration) -> (f64, f64) {
    let until = Instant::now() + duration;
    let (mut fps, mut latency) = (Vec::new(), Vec::new());
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        fps.extend(setup.gauge(Service::Display, "fps"));
        latency.extend(setup.gauge(Service::Display, "camera_to_screen_p50_ms"));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    (mean(&fps), mean(&latency))
}

fn stalled_viewers_leave_the_pipeline_alone(setup: &ReceiverSetup, addr: SocketAddr, web_pid: u32) {
    const ROUND: Duration = Duration::from_secs(10);
    const VIEWERS: usize = 50;
    const ROUNDS: usize = 4;
    // The mash level has just risen: let the latency window fill with the clear stream first.
    display_figures(setup, ROUND);
    let rss_before = rss_kib(web_pid);
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        without.push(display_figures(setup, ROUND));
        // Viewers that connect, ask for the stream and never read a byte; reconnected as the
        // service drops them for stalling, so the whole round has 50 of them.
        let until = Instant::now() + ROUND;
        let mut viewers: Vec<TcpStream> = Vec::new();
        let figures = std::thread::scope(|scope| {
            let measured = scope.spawn(|| display_figures(setup, ROUND));
            while Instant::now() < until {
                viewers.retain(|v| v.peer_addr().is_ok());
                while viewers.len() < VIEWERS {
                    let Ok(mut v) = TcpStream::connect(addr) else {
                        break;
                    };
                    let _ = v.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: test\r\n\r\n");
                    viewers.push(v);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            measured.join().expect("measuring thread")
        });
        with.push(figures);
        eprintln!(
            "round {round}: without viewers {:.1} fps, camera to screen {:.2} ms; with {VIEWERS} stalled viewers {:.1} fps, {:.2} ms; web RSS {} KiB",
            without[round].0, without[round].1, figures.0, figures.1, rss_kib(web_pid)
        );
        drop(viewers);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut fps0, mut lat0): (Vec<f64>, Vec<f64>) = without.iter().copied().unzip();
    let (mut fps1, mut lat1): (Vec<f64>, Vec<f64>) = with.iter().copied().unzip();
    // How much the figure moves between rounds with no viewer at all: on a shared machine the
    // latency's round-to-round spread is itself about 5% (7.6-8.1 ms seen), so a difference
    // inside it is noise, not the viewers' doing. The bound is 5%, or that spread if larger.
    let spread = |v: &[f64]| {
        v.iter().copied().fold(f64::MIN, f64::max) - v.iter().copied().fold(f64::MAX, f64::min)
    };
    let (fps_spread, lat_spread) = (spread(&fps0), spread(&lat0));
    let (fps0, lat0, fps1, lat1) = (
        median(&mut fps0),
        median(&mut lat0),
        median(&mut fps1),
        median(&mut lat1),
    );
    eprintln!(
        "median: without {fps0:.2} fps, {lat0:.2} ms; with {fps1:.2} fps ({:+.1}%), {lat1:.2} ms ({:+.1}%); \
         spread without viewers {fps_spread:.2} fps, {lat_spread:.2} ms",
        100.0 * (fps1 - fps0) / fps0,
        100.0 * (lat1 - lat0) / lat0
    );
    assert!(
        (fps1 - fps0).abs() <= (0.05 * fps0).max(fps_spread),
        "frame rate {fps1:.2} with stalled viewers vs {fps0:.2} without (spread {fps_spread:.2})"
    );
    assert!(
        (lat1 - lat0).abs() <= (0.05 * lat0).max(lat_spread),
        "camera to screen {lat1:.2} ms with stalled viewers vs {lat0:.2} ms without (spread {lat_spread:.2})"
    );
    let rss_after = rss_kib(web_pid);
    eprintln!("web RSS {rss_before} KiB before the viewers, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 32 * 1024,
        "the web service grew from {rss_before} to {rss_after} KiB"
    );
}

#[test]
fn the_web_service_watches_the_whole_pipeline_without_touching_it() {
    require_root();
    let pair = NetnsPair::create("web2pc").expect("network namespaces");
    let port = free_tcp_port();
    let setup = ReceiverSetup::two_pcs(
        "web-2pc",
        &format!(
            "[display]\noutput = \"frames:{{dir}}/shown\"\nplayout_max_ms = 50\n\
             [input]\nsource = \"fifo:{{dir}}/keys\"\n\
             [web]\nlisten = \"127.0.0.1:{port}\"\nmax_clients = 64\nstall_timeout_ms = 2000\n"
        ),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let _installation = setup.start_installation(&pair);
    // The web service is the receiver's, but only reads shared memory: it runs here, in the
    // test's own namespace, so the test reaches it on loopback.
    let web = setup.start("keymash-web");
    let web_pid = web.child.pid();

    // Nobody mashing: about 40% loss, the quality at rest.
    std::thread::sleep(Duration::from_secs(4));
    let compared = metrics_agree_with_status(&setup, addr);
    eprintln!(
        "at rest, /metrics = keymash status: {}",
        compared.join(", ")
    );

    // Mashing: a clear picture (the stamp needs quality 30 or more).
    let typist = type_into_fifo(setup.dir.join("keys"), 14, Duration::from_secs(110));
    std::thread::sleep(Duration::from_secs(4));
    let compared = metrics_agree_with_status(&setup, addr);
    eprintln!(
        "mashing, /metrics = keymash status: {}",
        compared.join(", ")
    );
    page_in_chromium(&setup, addr);
    stream_plays_in_ffprobe(addr);
    stalled_viewers_leave_the_pipeline_alone(&setup, addr, web_pid);
    typist.join().expect("typist");
}
