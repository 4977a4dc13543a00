//! keymash-archive records what the screen shows into an AVI file that plays: the test itself
//! publishes a moving 320x240 picture on the screen ring at 30 fps (as the display does), runs
//! the real keymash-archive at `archive.fps = 5`, and reads the result with ffprobe (the
//! demuxer and decoder ffplay and VLC's libavformat use): MJPEG, 320x240, five frames for each
//! second recorded, and a `.jsonl` line a second beside it.
//!
//! - Stopped with SIGTERM, the file is finished (index and all).
//! - Killed with SIGKILL mid-hour, the cut file still plays, up to about its last second.
//!
//! ffprobe (package `ffmpeg`) is required: without it the test fails and says so. Segments
//! and files are removed by `ReceiverSetup`'s guard, also when an assertion fails.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keymash_core::config::Config;
use keymash_core::{FrameNo, Quality};
use keymash_pipeline::{ScreenSlot, Segments};
use keymash_tests::receiver::{service_binary, ReceiverSetup, RunningService};

const WIDTH: usize = 320;
const HEIGHT: usize = 240;
const ARCHIVE_FPS: f64 = 5.0;
/// How long the archive records in each case.
const RECORD_FOR: Duration = Duration::from_secs(6);
/// Frames the count may differ from 5 x seconds recorded: the first tick and the last one on
/// either side of the test's own clock readings.
const FRAME_TOLERANCE: f64 = 2.0;

/// A moving picture: a gradient that slides and a bright bar that crosses it, new each frame.
fn picture(n: usize) -> Vec<u8> {
    let (cw, ch) = (WIDTH / 2, HEIGHT / 2);
    let mut out = Vec::with_capacity(WIDTH * HEIGHT + 2 * cw * ch);
    let bar = (n * 4) % WIDTH;
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let v = if x.abs_diff(bar) < 12 {
                235
            } else {
                30 + ((x + 2 * y + 3 * n) % 200)
            };
            out.push(v as u8);
        }
    }
    for plane in 0..2 {
        for y in 0..ch {
            for x in 0..cw {
                out.push((90 + (x * (1 - plane) + y * plane + n) % 80) as u8);
            }
        }
    }
    out
}

/// Publishes pictures on the screen ring at 30 fps until `stop`, as the display does.
fn publish_screen(config: &Config, stop: &AtomicBool) {
    let segments = Segments::new(config).expect("segments");
    let (mut writer, _) = segments
        .screen()
        .expect("screen ring")
        .create()
        .expect("create the screen ring");
    let start = Instant::now();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let slot = ScreenSlot {
            frame: FrameNo(n as u64),
            presented_ns: keymash_shm::monotonic_now_ns(),
            quality: Some(Quality::new(60).expect("quality")),
            payloads_arrived: 12,
            payloads_total: 12,
            card: false,
        };
        writer
            .write(&picture(n), &slot.meta(&config.video))
            .expect("write the screen ring");
        n += 1;
        let due = start + Duration::from_secs_f64(n as f64 / 30.0);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
}

/// What ffprobe reads from the video stream of `file`.
#[derive(Debug)]
struct Probe {
    codec: String,
    width: u64,
    height: u64,
    frames: u64,
    stderr: String,
}

fn probe(file: &Path) -> Probe {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=width,height,codec_name,nb_read_frames",
        ])
        .args(["-of", "json"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run ffprobe ({e}): this test needs it to read the archive as players \
                 do; install it (`apt-get install -y ffmpeg`)"
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "ffprobe {} failed: {stderr}",
        file.display()
    );
    let json: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("ffprobe printed no JSON ({e}): {stdout}"));
    let stream = &json["streams"][0];
    let frames = match &stream["nb_read_frames"] {
        serde_json::Value::String(s) => s.parse().unwrap_or(0),
        other => other.as_u64().unwrap_or(0),
    };
    Probe {
        codec: stream["codec_name"].as_str().unwrap_or_default().to_owned(),
        width: stream["width"].as_u64().unwrap_or(0),
        height: stream["height"].as_u64().unwrap_or(0),
        frames,
        stderr,
    }
}

/// The `.avi` files in `dir`.
fn avi_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "avi"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}

/// A receiver setup with the archive in `{dir}/archive`, the screen ring being published, and
/// keymash-archive started (ready); returns when it became ready.
struct Recording {
    setup: ReceiverSetup,
    archive_dir: PathBuf,
    log: PathBuf,
}

impl Recording {
    fn new(tag: &str) -> Recording {
        let setup = ReceiverSetup::new(tag, "[archive]\ndir = \"{dir}/archive\"\nfps = 5\n");
        let archive_dir = setup.dir.join("archive");
        let log = setup.dir.join("archive.log");
        Recording {
            setup,
            archive_dir,
            log,
        }
    }

    fn start_archive(&self) -> (RunningService, Instant) {
        let mut command = Command::new(service_binary("keymash-archive"));
        command.stderr(File::create(&self.log).expect("create the log file"));
        let archive = self.setup.start_prepared("keymash-archive", command, false);
        (archive, Instant::now())
    }

    /// The one `.avi` the archive wrote.
    fn the_file(&self) -> PathBuf {
        let files = avi_files(&self.archive_dir);
        assert_eq!(
            files.len(),
            1,
            "one recording expected in {}: {files:?}; log:\n{}",
            self.archive_dir.display(),
            read(&self.log)
        );
        files[0].clone()
    }
}

/// Runs `body` while the screen ring is published at 30 fps (from before it is called).
fn with_screen<R>(setup: &ReceiverSetup, body: impl FnOnce() -> R) -> R {
    let config = Config::load(&setup.config).expect("load the test configuration");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let publisher = s.spawn(|| publish_screen(&config, &stop));
        // The ring exists and holds pictures before the archive starts.
        let ring = setup.segment(keymash_pipeline::SCREEN);
        let deadline = Instant::now() + Duration::from_secs(10);
        while keymash_shm::RingReader::open(&ring).map_or(true, |r| r.write_seq() < 3) {
            assert!(
                Instant::now() < deadline,
                "the screen ring was not published"
            );
            assert!(!publisher.is_finished(), "the publisher stopped");
            std::thread::sleep(Duration::from_millis(10));
        }
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        body()
    })
}

#[test]
fn a_recording_stopped_with_sigterm_plays_at_five_frames_a_second() {
    keymash_tests::require_root();
    let recording = Recording::new("archive-plays");
    let (seconds, status) = with_screen(&recording.setup, || {
        let (mut archive, ready) = recording.start_archive();
        std::thread::sleep(RECORD_FOR);
        let stopped = Instant::now();
        let status = archive
            .child
            .terminate(Duration::from_secs(10))
            .expect("keymash-archive stops on SIGTERM");
        (stopped.duration_since(ready).as_secs_f64(), status)
    });
    assert!(
        status.success(),
        "keymash-archive exited {status:?}; log:\n{}",
        read(&recording.log)
    );
    let file = recording.the_file();
    let probe = probe(&file);
    assert_eq!(probe.codec, "mjpeg", "{probe:?}");
    assert_eq!((probe.width, probe.height), (320, 240), "{probe:?}");
    let expected = ARCHIVE_FPS * seconds;
    eprintln!(
        "SIGTERM after {seconds:.2} s: {} frames (expected {expected:.1})",
        probe.frames
    );
    assert!(
        (probe.frames as f64 - expected).abs() <= FRAME_TOLERANCE,
        "{} frames in {}, expected {expected:.1} (5 fps for {seconds:.2} s); {probe:?}; log:\n{}",
        probe.frames,
        file.display(),
        read(&recording.log)
    );
    assert!(
        probe.stderr.trim().is_empty(),
        "ffprobe complained about the finished file: {}",
        probe.stderr
    );
    let jsonl = read(&file.with_extension("jsonl"));
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        (lines.len() as f64 - seconds).abs() <= 1.5,
        "{} .jsonl lines for {seconds:.2} s recorded:\n{jsonl}",
        lines.len()
    );
    eprintln!("{} .jsonl lines for {seconds:.2} s", lines.len());
    let times: Vec<u64> = lines
        .iter()
        .map(|l| l["unix_ms"].as_u64().expect("unix_ms in every line"))
        .collect();
    assert!(
        times
            .windows(2)
            .all(|w| (500..=1500).contains(&(w[1] - w[0]))),
        "lines about a second apart: {times:?}"
    );
}

#[test]
fn a_recording_cut_by_kill_9_still_plays_up_to_about_its_last_second() {
    keymash_tests::require_root();
    let recording = Recording::new("archive-kill9");
    let seconds = with_screen(&recording.setup, || {
        let (mut archive, ready) = recording.start_archive();
        std::thread::sleep(RECORD_FOR);
        let killed = Instant::now();
        archive.child.kill_hard().expect("kill -9 keymash-archive");
        killed.duration_since(ready).as_secs_f64()
    });
    let file = recording.the_file();
    let probe = probe(&file);
    assert_eq!(probe.codec, "mjpeg", "{probe:?}");
    assert_eq!((probe.width, probe.height), (320, 240), "{probe:?}");
    // A cut in the middle of a frame (a write cut short, a full disk): the frames before it
    // still play (ffprobe may count the cut one too: it decodes what arrived).
    let cut = recording.setup.dir.join("cut.avi");
    let mut bytes = std::fs::read(&file).expect("read the recording");
    bytes.truncate(bytes.len() - 777);
    std::fs::write(&cut, &bytes).expect("write the cut copy");
    let cut_probe = self::probe(&cut);
    eprintln!("cut mid-frame: {} frames", cut_probe.frames);
    assert_eq!(cut_probe.codec, "mjpeg", "{cut_probe:?}");
    assert!(
        (probe.frames.saturating_sub(2)..=probe.frames).contains(&cut_probe.frames),
        "a copy cut 777 bytes short reads {} frames, the file {}",
        cut_probe.frames,
        probe.frames
    );
    // The header is rewritten each second: up to a second (5 frames) after it is lost.
    let most = ARCHIVE_FPS * seconds + FRAME_TOLERANCE;
    let least = ARCHIVE_FPS * (seconds - 1.0) - FRAME_TOLERANCE;
    eprintln!(
        "kill -9 after {seconds:.2} s: {} frames (expected {least:.1} to {most:.1})",
        probe.frames
    );
    assert!(
        (least..=most).contains(&(probe.frames as f64)),
        "{} frames in the cut {}, expected {least:.1} to {most:.1} ({seconds:.2} s recorded); \
         {probe:?}; log:\n{}",
        probe.frames,
        file.display(),
        read(&recording.log)
    );
}
