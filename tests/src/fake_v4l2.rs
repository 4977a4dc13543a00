//! A fake V4L2 webcam for tests on machines with no camera, `vivid` or `v4l2loopback`: the C
//! library in `tests/fake-v4l2/fake_v4l2.c`, loaded with `LD_PRELOAD` into the process under test
//! (the real `keymash-capture`, say), answers `open`, `ioctl` (also through
//! `syscall(SYS_ioctl, ..)`, which is how the `v4l` crate issues them), `mmap`, `poll` and `close`
//! for one device path, like a UVC camera; everything else passes through.
//!
//! - [`library`] builds it with the system C compiler (`$CC`, else `cc`) into
//!   `target/<profile>/fake-v4l2/`, once per test process, so a test never runs a stale one.
//! - [`FakeCamera`] is one configured device: a private directory with its frames, its event
//!   log and its unplug switch, the environment for the process under test ([`FakeCamera::apply`]),
//!   and the log read back as [`FakeEvent`]s. Everything is removed on drop.
//! - [`synthetic_yuyv`] makes a moving test picture; [`psnr`] compares pictures.
//! - [`CaptureWithFake`] runs the real keymash-capture with a fake camera and a configuration
//!   of the test's (`[capture.controls]`, say); [`wait_until`] polls for an event;
//!   [`yuyv_as_i420`] is a source frame as the raw-frame ring should hold it.
//!
//! The environment interface (each variable documented at the top of the C file):
//! `KEYMASH_FAKE_V4L2_PATH`, `_SIZE`, `_EXTRA_SIZE`, `_FPS`, `_YUYV_FILE`, `_MJPEG_DIR`,
//! `_FORMATS`, `_BYTESPERLINE`, `_CORRUPT_EVERY`, `_CORRUPT_MODE`, `_CONTROLS`, `_CONTROL_FILE`,
//! `_LOG`. [`FakeCamera`] sets the path, size, frames, log and control file; [`FakeCamera::set`]
//! sets any of the others by its name without the prefix (`set("BYTESPERLINE", "704")`).
//!
//! The log has one line per event, `<CLOCK_MONOTONIC ns> <event> <details>`: `open`, `close`,
//! `s_fmt`, `s_parm`, `reqbufs`, `streamon`, `streamoff`, `dqbuf seq=N buf=N src=N bytes=N
//! [corrupt]`, `ctrl 0xID name value via=S_CTRL|S_EXT_CTRLS`, `unplugged`, `replugged`,
//! `moved PATH`, `open-refused`, `enodev`, `served frames=N cpu_ns=N` (the fake's own CPU time,
//! for benchmarks), `unhandled 0xREQUEST`, `error ...`.
//!
//! The device path may be opened through a symbolic link (resolved at every open, as the kernel
//! follows a udev symlink), and [`FakeCamera::replug_as`] brings the camera back under another
//! path, as a re-enumerated USB camera comes back as `/dev/video2` instead of `/dev/video0`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::unique_name;

/// The fake device's C source.
pub const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fake-v4l2/fake_v4l2.c");

/// The shared library, built from [`SOURCE`] on the first call in this process (later calls
/// return the same path). Panics with the compiler's output if it cannot be built.
pub fn library() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(build_library)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn build_library() -> Result<PathBuf, String> {
    // Beside the test executable: target/<profile>/deps/<test> -> target/<profile>/fake-v4l2/.
    let exe = std::env::current_exe().map_err(|e| format!("test executable path: {e}"))?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("fake-v4l2"))
        .unwrap_or_else(|| std::env::temp_dir().join("keymash-fake-v4l2"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let out = dir.join("libfake_v4l2.so");
    // Built under a private name and renamed into place: test processes running side by side
    // never load a half-written library.
    let tmp = dir.join(format!("libfake_v4l2.so.{}.tmp", std::process::id()));
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let output = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-g", "-Wall", "-Wextra", "-o"])
        .arg(&tmp)
        .arg(SOURCE)
        .args(["-ldl", "-pthread"])
        .output()
        .map_err(|e| {
            format!(
                "cannot run the C compiler {} ({e}): the fake V4L2 device needs one (gcc or clang)",
                cc.to_string_lossy()
            )
        })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "building the fake V4L2 device from {SOURCE} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::rename(&tmp, &out).map_err(|e| format!("rename to {}: {e}", out.display()))?;
    Ok(out)
}

/// One fake camera: its private directory (frames, event log, unplug switch) and the
/// environment that makes a process see it. Removed on drop.
#[derive(Debug)]
pub struct FakeCamera {
    dir: PathBuf,
    device: String,
    width: u32,
    height: u32,
    /// `KEYMASH_FAKE_V4L2_*` variables, without the prefix.
    settings: Vec<(String, String)>,
}

impl FakeCamera {
    /// A camera of `width` x `height` at a device path of its own (nothing is created there: the
    /// library answers `open` of that string), present, with no frame source yet.
    pub fn new(tag: &str, width: u32, height: u32) -> FakeCamera {
        let name = unique_name(tag);
        let dir = std::env::temp_dir().join(format!("keymash-fake-v4l2-{name}"));
        std::fs::create_dir_all(&dir).expect("fake camera directory");
        let mut camera = FakeCamera {
            device: format!("/dev/video-keymash-fake-{name}"),
            width,
            height,
            settings: Vec::new(),
            dir,
        };
        camera.replug();
        camera.set("SIZE", format!("{width}x{height}"));
        camera
    }

    /// The path the process under test should open (`capture.device`).
    pub fn device_path(&self) -> &str {
        &self.device
    }

    /// The camera's private directory (frames, log, control file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sets `KEYMASH_FAKE_V4L2_<name>` for processes started after this.
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> &mut FakeCamera {
        let value = value.into();
        match self.settings.iter_mut().find(|(n, _)| n == name) {
            Some(setting) => setting.1 = value,
            None => self.settings.push((name.to_owned(), value)),
        }
        self
    }

    /// Serves these packed YUYV frames (2 * width * height bytes each) in a loop, and offers
    /// YUYV.
    pub fn yuyv_frames(&mut self, frames: &[Vec<u8>]) -> &mut FakeCamera {
        let len = self.width as usize * self.height as usize * 2;
        let mut all = Vec::with_capacity(len * frames.len());
        for frame in frames {
            assert_eq!(
                frame.len(),
                len,
                "a YUYV frame of {}x{}",
                self.width,
                self.height
            );
            all.extend_from_slice(frame);
        }
        let path = self.dir.join("frames.yuyv");
        std::fs::write(&path, all).expect("write the YUYV frames");
        let path = path.display().to_string();
        self.set("YUYV_FILE", path)
    }

    /// Serves these JPEG files (width x height each) in a loop, and offers MJPEG.
    pub fn mjpeg_frames(&mut self, jpegs: &[Vec<u8>]) -> &mut FakeCamera {
        let dir = self.dir.join("jpeg");
        std::fs::create_dir_all(&dir).expect("JPEG directory");
        for (i, jpeg) in jpegs.iter().enumerate() {
            std::fs::write(dir.join(format!("{i:06}.jpg")), jpeg).expect("write a JPEG frame");
        }
        let dir = dir.display().to_string();
        self.set("MJPEG_DIR", dir)
    }

    /// Unplugs the camera: `open` gives ENOENT, descriptors already open give ENODEV.
    pub fn unplug(&self) {
        self.write_control("gone\n");
    }

    /// Plugs it back in: it can be opened and streams again.
    pub fn replug(&self) {
        self.write_control("present\n");
    }

    /// Plugs it back in under another device path (re-enumerated): from now on `path` (or a
    /// symbolic link to it) is the camera, and the path it had is nothing.
    pub fn replug_as(&self, path: &str) {
        self.write_control(&format!("present {path}\n"));
    }

    /// Replaces the control file whole (written aside and renamed), so the fake never reads a
    /// half-written path.
    fn write_control(&self, text: &str) {
        let aside = self.dir.join("control.new");
        std::fs::write(&aside, text).expect("write the control file");
        std::fs::rename(&aside, self.control_file()).expect("replace the control file");
    }

    fn control_file(&self) -> PathBuf {
        self.dir.join("control")
    }

    /// The event log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("events.log")
    }

    /// The environment of a process that should see the camera: `LD_PRELOAD` of the built
    /// [`library`] and every `KEYMASH_FAKE_V4L2_*` variable.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("LD_PRELOAD".to_owned(), library().display().to_string()),
            ("KEYMASH_FAKE_V4L2_PATH".to_owned(), self.device.clone()),
            (
                "KEYMASH_FAKE_V4L2_LOG".to_owned(),
                self.log_path().display().to_string(),
            ),
            (
                "KEYMASH_FAKE_V4L2_CONTROL_FILE".to_owned(),
                self.control_file().display().to_string(),
            ),
        ];
        env.extend(
            self.settings
                .iter()
                .map(|(n, v)| (format!("KEYMASH_FAKE_V4L2_{n}"), v.clone())),
        );
        env
    }

    /// Adds [`FakeCamera::env`] to `command`.
    pub fn apply<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command.envs(self.env())
    }

    /// The events logged so far, in order.
    pub fn events(&self) -> Vec<FakeEvent> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(FakeEvent::parse)
            .collect()
    }

    /// The events named `kind` logged so far.
    pub fn events_of(&self, kind: &str) -> Vec<FakeEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.kind == kind)
            .collect()
    }

    /// The log as text, for assertion messages (the last `lines` lines).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for FakeCamera {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One line of the fake device's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeEvent {
    /// CLOCK_MONOTONIC nanoseconds (comparable with `keymash_shm::monotonic_now_ns`).
    pub at_ns: u64,
    /// `open`, `dqbuf`, `ctrl`, ...
    pub kind: String,
    /// The rest of the line, split at spaces.
    pub fields: Vec<String>,
}

impl FakeEvent {
    fn parse(line: &str) -> Option<FakeEvent> {
        let mut words = line.split_whitespace();
        let at_ns = words.next()?.parse().ok()?;
        let kind = words.next()?.to_owned();
        Some(FakeEvent {
            at_ns,
            kind,
            fields: words.map(str::to_owned).collect(),
        })
    }

    /// The value of a `key=value` field.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find_map(|f| f.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
    }
}

/// `count` packed YUYV frames of a moving picture: diagonal luma ramps, a bright bar sweeping
/// across, a dark square moving down and chroma that changes across the picture and over time.
/// Every frame differs from the others, and fine detail (the ramps, 1-pixel steps) shows any
/// misplaced line or pixel.
pub fn synthetic_yuyv(width: u32, height: u32, count: usize) -> Vec<Vec<u8>> {
    let (w, h) = (width as usize, height as usize);
    (0..count)
        .map(|k| {
            let mut frame = Vec::with_capacity(w * h * 2);
            let bar = (k * w / count.max(1)) % w;
            let square_y = (k * h / count.max(1)) % h;
            for y in 0..h {
                for x in (0..w).step_by(2) {
                    let luma = |x: usize| -> u8 {
                        let in_bar = x >= bar && x < bar + w / 16;
                        let in_square = y >= square_y
                            && y < square_y + h / 8
                            && x >= w / 3
                            && x < w / 3 + h / 8;
                        if in_square {
                            20
                        } else if in_bar {
                            235
                        } else {
                            (16 + (x + 2 * y + 3 * k) % 200) as u8
                        }
                    };
                    let u = (16 + (x * 224 / w + k * 7) % 224) as u8;
                    let v = (16 + (y * 224 / h + k * 11) % 224) as u8;
                    frame.extend_from_slice(&[luma(x), u, luma(x + 1), v]);
                }
            }
            frame
        })
        .collect()
}

/// Peak signal-to-noise ratio of `b` against `a` in dB (8-bit samples); infinite when equal.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "pictures of one size");
    let squared: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = u64::from(x.abs_diff(y));
            d * d
        })
        .sum();
    if squared == 0 {
        return f64::INFINITY;
    }
    let mse = squared as f64 / a.len() as f64;
    10.0 * (255.0 * 255.0 / mse).log10()
}

/// The real keymash-capture streaming from a [`FakeCamera`]: its own directory (configuration,
/// stderr log) and shared-memory prefix; the configuration has the camera's size at `fps`,
/// `capture.device` the fake, and `extra_toml` appended (sections of its own, such as
/// `[capture.controls]`). Killed, and its directory and segments removed, on drop, also when
/// an assertion fails.
#[derive(Debug)]
pub struct CaptureWithFake {
    pub camera: FakeCamera,
    dir: PathBuf,
    prefix: String,
    config: keymash_core::config::Config,
    // Dropped before the directory and the segments go.
    capture: Option<(crate::ChildGuard, crate::NotifySocket)>,
}

impl CaptureWithFake {
    /// Starts capture and waits for READY=1 (capture is ready without a camera: it retries).
    pub fn start(tag: &str, camera: FakeCamera, fps: u32, extra_toml: &str) -> CaptureWithFake {
        let name = unique_name(tag);
        let dir = std::env::temp_dir().join(format!("keymash-{name}"));
        std::fs::create_dir_all(&dir).expect("capture directory");
        let prefix = format!("kmt{}", name.replace('-', ""));
        let text = format!(
            "[shm]\nprefix = \"{prefix}\"\n[video]\nwidth = {}\nheight = {}\nfps = {fps}\n\
             [capture]\nsource = \"v4l2\"\ndevice = \"{}\"\n{extra_toml}",
            camera.width,
            camera.height,
            camera.device_path()
        );
        let config = keymash_core::config::Config::from_toml_str(&text)
            .unwrap_or_else(|e| panic!("test configuration refused: {e}\n{text}"));
        let config_path = dir.join("keymash.toml");
        std::fs::write(&config_path, &text).expect("write the configuration");
        let mut run = CaptureWithFake {
            camera,
            dir,
            prefix,
            config,
            capture: None,
        };
        let log = std::fs::File::create(run.dir.join("capture.log")).expect("capture log");
        let notify = crate::NotifySocket::bind().expect("notify socket");
        let (key, socket) = notify.env();
        let mut command = Command::new(crate::service_binary("keymash-capture"));
        command
            .arg("--config")
            .arg(&config_path)
            .env(key, socket)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        run.camera.apply(&mut command);
        let child = crate::ChildGuard::spawn("keymash-capture", &mut command)
            .expect("start keymash-capture");
        run.capture = Some((child, notify));
        let ready = run
            .capture
            .as_ref()
            .map(|(_, notify)| notify.wait_ready(std::time::Duration::from_secs(20)));
        if let Some(Err(e)) = ready {
            panic!("capture did not become ready ({e})\n{}", run.diagnosis());
        }
        run
    }

    /// Whether capture still runs.
    pub fn running(&mut self) -> bool {
        matches!(
            self.capture.as_mut().map(|(child, _)| child.try_wait()),
            Some(Ok(None))
        )
    }

    /// What capture wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("capture.log")).unwrap_or_default()
    }

    /// Capture's log and the fake camera's last events, for failure messages.
    pub fn diagnosis(&self) -> String {
        format!(
            "capture's log:\n{}\nthe fake camera's last events:\n{}",
            self.log(),
            self.camera.log_tail(40)
        )
    }

    /// The raw-frame ring, once capture has created it.
    pub fn raw_frames(&self) -> keymash_shm::RingReader {
        let segments = keymash_pipeline::Segments::new(&self.config).expect("segments");
        let id = segments.raw_frames().expect("raw-frame ring").id().clone();
        keymash_shm::RingReader::open(&id).expect("open the raw-frame ring")
    }

    /// Capture's statistics cell (status line, counters), if published yet.
    pub fn stats(&self) -> Option<keymash_shm::ServiceStats> {
        let id = keymash_shm::SegmentId::new(
            keymash_shm::Prefix::new(&self.prefix).ok()?,
            keymash_shm::SegmentName::new(&keymash_pipeline::Service::Capture.stats_cell()).ok()?,
        );
        keymash_shm::CellReader::<keymash_shm::ServiceStats>::open(&id)
            .ok()?
            .load()
            .ok()
    }
}

impl Drop for CaptureWithFake {
    fn drop(&mut self) {
        self.capture = None;
        if let Ok(prefix) = keymash_shm::Prefix::new(&self.prefix) {
            let _ = keymash_shm::remove_segments(&prefix);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `done` every 20 ms until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A packed YUYV source frame as the raw-frame ring should hold it: I420, chroma averaged over
/// each row pair as capture converts it.
pub fn yuyv_as_i420(width: u32, height: u32, yuyv: &[u8]) -> keymash_codec::I420Frame {
    let geometry = keymash_codec::FrameGeometry::new(width as usize, height as usize)
        .expect("a frame size the codec codes");
    let mut i420 = keymash_codec::I420Frame::grey(geometry);
    keymash_codec::yuyv_to_i420(yuyv, geometry, &mut i420).expect("a whole YUYV frame");
    i420
}
