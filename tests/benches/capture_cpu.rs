//! What capturing from a webcam costs (issue 18): the release keymash-capture with the fake
//! V4L2 camera (`tests/fake-v4l2`, in `LD_PRELOAD`) at 640x480 and 1280x720, 30 fps, packed
//! YUYV and MJPEG, writing I420 into its raw-frame ring (no other stage runs).
//!
//! The sources are many different frames, as a camera's are: 60 YUYV frames and 90 JPEGs (q80,
//! what `keymash_watch::jpeg` makes, full-range JFIF as webcams send) of the moving synthetic
//! scene with its sensor noise, served in a loop.
//!
//! The fake runs inside the capture process, so its own work (filling a driver buffer, its
//! `poll` emulation, its log) is in the process's CPU time. It accounts for that itself
//! (CLOCK_THREAD_CPUTIME_ID around every call it answers, logged as `served frames=N
//! cpu_ns=N`); the bench reports the process, the fake, and capture = process - fake. A real
//! driver's copy happens in the kernel (USB), so "capture" is the figure for a real camera.
//!
//! Each measurement starts a fresh capture, waits 3 s (opening, negotiating, warm caches), then
//! measures `KEYMASH_CAPTURE_SECONDS` (default 10) of CPU from /proc and frames from capture's
//! own counter. `KEYMASH_CAPTURE_ROUNDS` (default 3) rounds, the four cases interleaved in a
//! rotating order within each round so that all see the same machine noise; medians, min and
//! max over the rounds are printed.
//!
//! `cargo bench -p keymash-tests --bench capture_cpu` (release binaries; no root needed).

use std::time::{Duration, Instant};

use keymash_codec::{FrameGeometry, I420Frame};
use keymash_core::FrameNo;
use keymash_media::SyntheticScene;
use keymash_shm::RingReader;
use keymash_tests::cpu_seconds;
use keymash_tests::fake_v4l2::{FakeCamera, FakeEvent};
use keymash_tests::receiver::ReceiverSetup;

const FPS: u32 = 30;
const YUYV_FRAMES: usize = 60;
const JPEG_FRAMES: usize = 90;
const JPEG_QUALITY: u8 = 80;
const WARM_UP: Duration = Duration::from_secs(3);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Yuyv,
    Mjpeg,
}

impl Format {
    fn config(self) -> &'static str {
        match self {
            Format::Yuyv => "yuyv",
            Format::Mjpeg => "mjpeg",
        }
    }
}

/// One case: its camera (frames written once) and configuration.
struct Case {
    width: u32,
    height: u32,
    format: Format,
    camera: FakeCamera,
    setup: ReceiverSetup,
    frame_bytes: f64,
}

/// One measurement of a case.
#[derive(Debug, Clone, Copy)]
struct Figures {
    process_percent: f64,
    fake_percent: f64,
    fps: f64,
}

impl Figures {
    fn capture_percent(&self) -> f64 {
        self.process_percent - self.fake_percent
    }
}

/// `count` frames of the synthetic scene, 1/30 s apart, as I420.
fn scene_frames(geometry: FrameGeometry, count: usize) -> Vec<I420Frame> {
    let mut scene = SyntheticScene::new(geometry, 7);
    (0..count)
        .map(|i| {
            let mut frame = I420Frame::grey(geometry);
            scene.render(
                FrameNo(i as u64),
                1_000_000_000 + i as u64 * 1_000_000_000 / u64::from(FPS),
                &mut frame,
            );
            frame
        })
        .collect()
}

/// Packs an I420 picture as YUYV 4:2:2 (each chroma row used for the two luma rows it covers).
fn packed_yuyv(frame: &I420Frame) -> Vec<u8> {
    let geometry = frame.geometry();
    let (w, h) = (geometry.width(), geometry.height());
    let (y, u, v) = (frame.y(), frame.u(), frame.v());
    let mut out = Vec::with_capacity(w * h * 2);
    for row in 0..h {
        for x in (0..w).step_by(2) {
            let c = (row / 2) * (w / 2) + x / 2;
            out.extend_from_slice(&[y[row * w + x], u[c], y[row * w + x + 1], v[c]]);
        }
    }
    out
}

impl Case {
    fn new(width: u32, height: u32, format: Format) -> Case {
        let tag = format!("cpu-{}-{width}x{height}", format.config());
        let geometry = FrameGeometry::new(width as usize, height as usize).expect("geometry");
        let mut camera = FakeCamera::new(&tag, width, height);
        let frame_bytes = match format {
            Format::Yuyv => {
                let frames: Vec<Vec<u8>> = scene_frames(geometry, YUYV_FRAMES)
                    .iter()
                    .map(packed_yuyv)
                    .collect();
                camera.yuyv_frames(&frames).set("FORMATS", "yuyv");
                f64::from(width * height * 2)
            }
            Format::Mjpeg => {
                let jpegs: Vec<Vec<u8>> = scene_frames(geometry, JPEG_FRAMES)
                    .iter()
                    .map(|frame| {
                        let planes = [frame.y(), frame.u(), frame.v()].concat();
                        let mut jpeg = Vec::new();
                        keymash_watch::jpeg::encode_i420(
                            &planes,
                            width,
                            height,
                            JPEG_QUALITY,
                            &mut jpeg,
                        )
                        .expect("encode a JPEG");
                        jpeg
                    })
                    .collect();
                let mean = jpegs.iter().map(Vec::len).sum::<usize>() as f64 / jpegs.len() as f64;
                camera.mjpeg_frames(&jpegs).set("FORMATS", "mjpeg");
                mean
            }
        };
        camera.set("FPS", FPS.to_string());
        let setup = ReceiverSetup::sized(
            &tag,
            width,
            height,
            &format!(
                // No delay: the delay buffer does not run, but its memory check would refuse
                // 30 s at 1280x720.
                "[capture]\nsource = \"v4l2\"\ndevice = \"{}\"\nformat = \"{}\"\n\
                 [delay]\nseconds = 0.0\n",
                camera.device_path(),
                format.config()
            ),
        );
        Case {
            width,
            height,
            format,
            camera,
            setup,
            frame_bytes,
        }
    }

    fn name(&self) -> String {
        format!(
            "{}x{} {}",
            self.width,
            self.height,
            match self.format {
                Format::Yuyv => "YUYV",
                Format::Mjpeg => "MJPEG",
            }
        )
    }

    /// The fake's last `served` record: (when, CPU ns so far).
    fn fake_cpu(&self) -> Option<(u64, u64)> {
        let served: Vec<FakeEvent> = self.camera.events_of("served");
        let last = served.last()?;
        Some((last.at_ns, last.field("cpu_ns")?.parse().ok()?))
    }

    /// Starts a capture, warms up, measures `seconds`, stops it.
    fn measure(&self, seconds: u64) -> Figures {
        let env = self.camera.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut capture = self.setup.start_with_env("keymash-capture", &env);
        std::thread::sleep(WARM_UP);
        let pid = capture.child.pid();
        // Frames written, from the raw-frame ring's write sequence (exact, unlike the
        // statistics cell published every 0.5 s).
        let ring = RingReader::open(&self.setup.segment("raw-frames")).expect("raw-frame ring");
        let frames = || ring.write_seq();
        let (cpu0, frames0, fake0, t0) =
            (cpu_seconds(pid), frames(), self.fake_cpu(), Instant::now());
        std::thread::sleep(Duration::from_secs(seconds));
        let (cpu1, frames1, fake1) = (cpu_seconds(pid), frames(), self.fake_cpu());
        let wall = t0.elapsed().as_secs_f64();
        capture
            .child
            .terminate(Duration::from_secs(5))
            .expect("capture stops");
        // The fake's share over the span between its records (logged once a second).
        let fake_percent = match (fake0, fake1) {
            (Some((at0, ns0)), Some((at1, ns1))) if at1 > at0 => {
                100.0 * (ns1 - ns0) as f64 / (at1 - at0) as f64
            }
            _ => f64::NAN,
        };
        Figures {
            process_percent: 100.0 * (cpu1 - cpu0) / wall,
            fake_percent,
            fps: frames1.saturating_sub(frames0) as f64 / wall,
        }
    }
}

/// (median, min, max) of `f` over `runs`.
fn spread(runs: &[Figures], f: fn(&Figures) -> f64) -> (f64, f64, f64) {
    let mut x: Vec<f64> = runs.iter().map(f).collect();
    x.sort_by(f64::total_cmp);
    (x[x.len() / 2], x[0], x[x.len() - 1])
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores available")
}

fn main() {
    let rounds = env_or("KEYMASH_CAPTURE_ROUNDS", 3) as usize;
    let seconds = env_or("KEYMASH_CAPTURE_SECONDS", 10);
    println!("machine: {}", machine());
    let cases: Vec<Case> = [
        (640, 480, Format::Yuyv),
        (640, 480, Format::Mjpeg),
        (1280, 720, Format::Yuyv),
        (1280, 720, Format::Mjpeg),
    ]
    .into_iter()
    .map(|(w, h, f)| Case::new(w, h, f))
    .collect();
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); cases.len()];
    for round in 0..rounds {
        // Each round starts with another case, so none always follows the same one.
        for k in 0..cases.len() {
            let i = (round + k) % cases.len();
            let figures = cases[i].measure(seconds);
            println!(
                "round {round} {:<16}: process {:6.2}%, fake {:5.2}%, capture {:6.2}% of a core, {:5.2} fps",
                cases[i].name(),
                figures.process_percent,
                figures.fake_percent,
                figures.capture_percent(),
                figures.fps
            );
            runs[i].push(figures);
        }
    }
    println!(
        "\nmedian (min..max) over {rounds} rounds of {seconds} s, {FPS} fps asked, % of one core:"
    );
    println!(
        "{:<16} {:>10} {:>22} {:>22} {:>22} {:>8}",
        "case", "frame B", "capture", "process", "fake", "fps"
    );
    for (case, runs) in cases.iter().zip(&runs) {
        let cell = |(m, lo, hi): (f64, f64, f64)| format!("{m:6.2} ({lo:5.2}..{hi:5.2})");
        println!(
            "{:<16} {:>10.0} {:>22} {:>22} {:>22} {:>8.2}",
            case.name(),
            case.frame_bytes,
            cell(spread(runs, Figures::capture_percent)),
            cell(spread(runs, |f| f.process_percent)),
            cell(spread(runs, |f| f.fake_percent)),
            spread(runs, |f| f.fps).0
        );
    }
}
