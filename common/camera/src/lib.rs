//! The webcam through Video4Linux2 (the `v4l` crate): device discovery, YUYV or MJPEG
//! negotiation (the decision itself is `keymash_media::negotiate`, unit-tested there),
//! streaming with a poll timeout, conversion of each frame to I420 (strided YUYV or MJPEG
//! decoding, `keymash_media::yuyv` and `keymash_media::mjpeg`), and recovery from unplug and
//! replug with backoff. A frame that cannot become a whole picture (short, corrupt, flagged by
//! the driver) is skipped and counted, never passed on.
//!
//! At every open, after the format and rate, the configuration's `[capture.controls]` are set
//! and read back ([`controls`], deciding with `keymash_media::controls`); a camera that lacks
//! one or cannot take its value is not streamed from. [`listing`] describes devices for
//! `keymash camera`.
//!
//! A library so that keymash-capture and `keymash camera` open a camera the same way. Tested
//! through the real `v4l` code path against the fake camera in `tests/fake-v4l2`; untested on
//! real hardware in CI (no camera there); see the README.

#![forbid(unsafe_code)]

mod controls;
pub mod listing;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use keymash_codec::{FrameGeometry, I420Frame};
use keymash_core::config::{CaptureFormat, ControlSetting};
use keymash_media::negotiate::{
    fourcc_text, negotiate, CameraMode, FrameInterval, Negotiated, OfferedFormat, OfferedSizes,
    PixelFormat,
};
use keymash_media::{Backoff, MjpegDecoder, YuyvLayout};
use v4l::buffer::Flags as BufferFlags;
use v4l::buffer::Type;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, FourCC, Fraction};

/// Driver buffers: enough to absorb a late reader without adding much latency.
const BUFFERS: u32 = 4;
/// How long one wait for a frame may block (the loop must check for SIGTERM and the watchdog).
const POLL_TIMEOUT: Duration = Duration::from_millis(200);
/// A camera that delivers nothing for this long counts as gone (unplugged or wedged).
const STALL_NS: u64 = 2_000_000_000;
const RETRY_FIRST_NS: u64 = 500_000_000;
const RETRY_MAX_NS: u64 = 8_000_000_000;

/// An open, streaming camera.
struct Open {
    // Field order matters: the stream must be dropped (buffers unmapped) before the device.
    stream: Stream<'static>,
    _device: Device,
    path: PathBuf,
    negotiated: Negotiated,
    convert: Convert,
    last_frame_ns: u64,
}

/// How a dequeued buffer becomes I420, by the format the driver applied.
#[derive(Debug)]
enum Convert {
    /// With the line stride (`bytesperline`) the driver reported.
    Yuyv(YuyvLayout),
    Mjpeg(MjpegDecoder),
}

/// The kinds of frame that are skipped, each counted and logged once (a camera that sends one
/// corrupt frame usually sends more; the log says what, the counter how many).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadKind {
    /// The driver marked the buffer V4L2_BUF_FLAG_ERROR (UVC: lost packets).
    Flagged,
    /// A YUYV buffer shorter than a frame.
    ShortYuyv,
    /// An MJPEG frame that does not decode to a whole picture of the configured size.
    BadMjpeg,
}

impl BadKind {
    fn index(self) -> usize {
        match self {
            BadKind::Flagged => 0,
            BadKind::ShortYuyv => 1,
            BadKind::BadMjpeg => 2,
        }
    }
}

/// A camera that may come and go.
pub struct Camera {
    configured_device: String,
    mode: CameraMode,
    format: CaptureFormat,
    geometry: FrameGeometry,
    /// `[capture.controls]`, set at every open (`controls::apply_controls`).
    controls: BTreeMap<String, ControlSetting>,
    open: Option<Open>,
    backoff: Backoff,
    retry_at_ns: u64,
    last_error: Option<String>,
    reconnects: u64,
    /// Skipped frames by [`BadKind`], over the process's life (across replugs).
    bad_frames: [u64; 3],
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("device", &self.configured_device)
            .field("open", &self.open.is_some())
            .finish()
    }
}

/// What one call of [`Camera::poll`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraEvent {
    /// A frame was converted into the caller's buffer, captured at `capture_ns`.
    Frame { capture_ns: u64 },
    /// Nothing within the poll timeout (or waiting to retry).
    Idle,
}

impl Camera {
    pub fn new(
        configured_device: &str,
        mode: CameraMode,
        format: CaptureFormat,
        geometry: FrameGeometry,
    ) -> Self {
        Camera {
            configured_device: configured_device.to_owned(),
            mode,
            format,
            geometry,
            controls: BTreeMap::new(),
            open: None,
            backoff: Backoff::new(RETRY_FIRST_NS, RETRY_MAX_NS),
            retry_at_ns: 0,
            last_error: None,
            reconnects: 0,
            bad_frames: [0; 3],
        }
    }

    /// Sets these V4L2 controls at every open, after the format and rate; a camera that lacks
    /// one or cannot take its value fails to open with an error naming it (and is retried, as
    /// another camera may be plugged in).
    pub fn with_controls(mut self, controls: BTreeMap<String, ControlSetting>) -> Self {
        self.controls = controls;
        self
    }

    /// Opens the camera now, once, with the error if it cannot be (for `keymash camera
    /// --snapshot`, which should say why at once rather than retry); [`Camera::poll`] then
    /// streams from it.
    pub fn open_now(&mut self, now_ns: u64) -> anyhow::Result<()> {
        if self.open.is_none() {
            self.open = Some(self.try_open(now_ns)?);
        }
        Ok(())
    }

    /// One line for STATUS: what the camera gives (format, size and the rate the driver set),
    /// or why there is no camera and when the retry is.
    pub fn status(&self, now_ns: u64) -> String {
        let bad = self.bad_frames();
        match &self.open {
            Some(open) if bad > 0 => {
                format!(
                    "{} {}, {bad} bad frames",
                    open.path.display(),
                    open.negotiated
                )
            }
            Some(open) => format!("{} {}", open.path.display(), open.negotiated),
            None => format!(
                "no camera ({}), retry {} in {:.1} s",
                self.last_error.as_deref().unwrap_or("not opened yet"),
                self.backoff.failures() + 1,
                self.retry_at_ns.saturating_sub(now_ns) as f64 / 1e9
            ),
        }
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Frames skipped because they could not become a whole picture.
    pub fn bad_frames(&self) -> u64 {
        self.bad_frames.iter().sum()
    }

    /// Counts a skipped frame; the first of each kind is logged with its reason.
    fn skipped(&mut self, kind: BadKind, reason: &str) {
        let count = &mut self.bad_frames[kind.index()];
        *count += 1;
        if *count == 1 {
            log::warn!(
                "camera: skipped a frame: {reason} (further ones are counted in bad_frames, \
                 not logged)"
            );
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Waits up to the poll timeout for a frame and converts it into `out`; (re)opens the
    /// device when a retry is due; closes it on errors or a stall. Never fails: a missing camera
    /// is a state the service reports, not a reason to exit.
    pub fn poll(&mut self, now_ns: impl Fn() -> u64, out: &mut I420Frame) -> CameraEvent {
        if self.open.is_none() {
            if now_ns() < self.retry_at_ns {
                std::thread::sleep(
                    POLL_TIMEOUT.min(Duration::from_nanos(self.retry_at_ns - now_ns())),
                );
                return CameraEvent::Idle;
            }
            match self.try_open(now_ns()) {
                Ok(open) => {
                    if let Some(why) = &open.negotiated.fallback {
                        log::warn!("camera {}: {why}", open.path.display());
                    }
                    let stride = match &open.convert {
                        Convert::Yuyv(layout) => {
                            format!(", {} bytes per line", layout.bytes_per_line())
                        }
                        Convert::Mjpeg(_) => String::new(),
                    };
                    log::info!(
                        "camera {} streaming {}{stride}",
                        open.path.display(),
                        open.negotiated
                    );
                    if self.last_error.is_some() {
                        self.reconnects += 1;
                    }
                    self.open = Some(open);
                    self.backoff.succeeded();
                    self.last_error = None;
                }
                Err(e) => {
                    self.fail(now_ns(), format!("{e:#}"));
                    return CameraEvent::Idle;
                }
            }
        }
        let Some(open) = self.open.as_mut() else {
            return CameraEvent::Idle;
        };
        let result = match open.stream.next() {
            Ok((buffer, meta)) => {
                let used = (meta.bytesused as usize).min(buffer.len());
                let now = now_ns();
                // time_t is i32 on 32-bit targets, i64 here: the conversion is for the former.
                #[allow(clippy::useless_conversion)]
                let capture_ns = driver_timestamp_ns(
                    i64::from(meta.timestamp.sec),
                    i64::from(meta.timestamp.usec),
                )
                .filter(|&t| t <= now && now - t < 1_000_000_000)
                .unwrap_or(now);
                // A frame that fails leaves `out` as it was: the converters write only after
                // the checks (YUYV) or a whole decode into scratch space (MJPEG).
                let converted = if meta.flags.contains(BufferFlags::ERROR) {
                    Err((
                        BadKind::Flagged,
                        "the driver marked the buffer as damaged".to_owned(),
                    ))
                } else {
                    let data = &buffer[..used];
                    match &mut open.convert {
                        Convert::Yuyv(layout) => layout
                            .to_i420(data, out)
                            .map_err(|e| (BadKind::ShortYuyv, e.to_string())),
                        Convert::Mjpeg(decoder) => decoder
                            .decode(data, out)
                            .map_err(|e| (BadKind::BadMjpeg, e.to_string())),
                    }
                };
                Ok(converted.map(|()| capture_ns))
            }
            // The poll timeout surfaces as an error of kind TimedOut.
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(None),
            Err(e) => Err(Some(format!("stream error: {e}"))),
        };
        match result {
            Ok(Ok(capture_ns)) => {
                open.last_frame_ns = capture_ns;
                CameraEvent::Frame { capture_ns }
            }
            // Only whole frames reset the stall clock: a camera sending nothing but damaged
            // frames for STALL_NS is closed and opened again like a silent one.
            Ok(Err((kind, reason))) => {
                let stalled = now_ns().saturating_sub(open.last_frame_ns) > STALL_NS;
                self.skipped(kind, &reason);
                if stalled {
                    self.fail(
                        now_ns(),
                        format!(
                            "no whole frame for {} s ({reason})",
                            STALL_NS / 1_000_000_000
                        ),
                    );
                }
                CameraEvent::Idle
            }
            Err(None) => {
                let now = now_ns();
                if now.saturating_sub(open.last_frame_ns) > STALL_NS {
                    self.fail(now, format!("no frame for {} s", STALL_NS / 1_000_000_000));
                }
                CameraEvent::Idle
            }
            Err(Some(reason)) => {
                self.fail(now_ns(), reason);
                CameraEvent::Idle
            }
        }
    }

    fn fail(&mut self, now_ns: u64, reason: String) {
        if self.open.take().is_some() || self.last_error.as_deref() != Some(reason.as_str()) {
            log::warn!("camera: {reason}; retrying with backoff");
        }
        self.retry_at_ns = self.backoff.failed(now_ns);
        self.last_error = Some(reason);
    }

    fn try_open(&self, now_ns: u64) -> anyhow::Result<Open> {
        let path = self.device_path()?;
        let device = match Device::with_path(&path) {
            Ok(device) => device,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                bail!("{}", camera_denied(&path, &e))
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open {}", path.display()));
            }
        };
        let offered = offered_formats(&device)
            .with_context(|| format!("cannot list formats of {}", path.display()))?;
        let mut negotiated = negotiate(&offered, self.mode, self.format)?;
        let mut format = device.format()?;
        format.width = negotiated.width;
        format.height = negotiated.height;
        format.fourcc = FourCC::new(&negotiated.fourcc);
        let applied = device.set_format(&format)?;
        negotiated.check_applied(applied.fourcc.repr, applied.width, applied.height)?;
        let convert = match negotiated.format {
            // The stride S_FMT returned: drivers pad lines to their alignment.
            PixelFormat::Yuyv => {
                Convert::Yuyv(YuyvLayout::new(self.geometry, applied.stride as usize)?)
            }
            PixelFormat::Mjpeg => Convert::Mjpeg(MjpegDecoder::new(self.geometry)),
        };
        if let Some(interval) = negotiated.interval {
            device.set_params(&Parameters::new(Fraction::new(
                interval.numerator,
                interval.denominator,
            )))?;
        }
        // Report the rate the driver really runs at (it may differ from what was asked, and a
        // device that lists no rates keeps its own), read back with G_PARM.
        match device.params() {
            Ok(params) if params.interval.numerator > 0 && params.interval.denominator > 0 => {
                negotiated.interval = Some(FrameInterval {
                    numerator: params.interval.numerator,
                    denominator: params.interval.denominator,
                });
            }
            Ok(_) => {}
            Err(e) => log::debug!("cannot read the frame rate back (G_PARM): {e}"),
        }
        controls::apply_controls(&device, &path, &self.controls)?;
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, BUFFERS)?;
        stream.set_timeout(POLL_TIMEOUT);
        Ok(Open {
            stream,
            _device: device,
            path,
            negotiated,
            convert,
            last_frame_ns: now_ns,
        })
    }

    /// The configured device, or the first `/dev/video*` that can capture video.
    fn device_path(&self) -> anyhow::Result<PathBuf> {
        if !self.configured_device.is_empty() {
            return Ok(PathBuf::from(&self.configured_device));
        }
        let mut nodes = v4l::context::enum_devices();
        nodes.sort_by_key(|n| n.index());
        // A node this user may not open is not skipped in silence: with none usable, the
        // error says which one was refused and which group to join.
        let mut denied = None;
        for node in nodes {
            let device = match Device::with_path(node.path()) {
                Ok(device) => device,
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::PermissionDenied && denied.is_none() {
                        denied = Some(camera_denied(node.path(), &e));
                    }
                    continue;
                }
            };
            if let Ok(caps) = device.query_caps() {
                if caps
                    .capabilities
                    .contains(v4l::capability::Flags::VIDEO_CAPTURE)
                {
                    return Ok(node.path().to_path_buf());
                }
            }
        }
        if let Some(denied) = denied {
            bail!("no video capture device this user may open: {denied}");
        }
        bail!("no video capture device found (plug a camera in, or set `capture.device`)")
    }
}

/// The group that owns video device nodes on Debian and Ubuntu (udev's rules).
const VIDEO_GROUP: &str = "video";

/// Permission denied on the camera `path`: its owner, group and mode, and the group to join.
fn camera_denied(path: &std::path::Path, e: &std::io::Error) -> String {
    format!(
        "{} [{e}]",
        keymash_pipeline::access::denied_advice_now("camera", path, VIDEO_GROUP)
    )
}

/// What the device offers, in the pure negotiation's terms.
fn offered_formats(device: &Device) -> std::io::Result<Vec<OfferedFormat>> {
    let mut offered = Vec::new();
    for description in device.enum_formats()? {
        let fourcc = description.fourcc;
        let mut discrete = Vec::new();
        let mut stepwise = None;
        for size in device.enum_framesizes(fourcc)? {
            match size.size {
                FrameSizeEnum::Discrete(d) => {
                    let intervals = device
                        .enum_frameintervals(fourcc, d.width, d.height)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|i| match i.interval {
                            FrameIntervalEnum::Discrete(f) => Some(FrameInterval {
                                numerator: f.numerator,
                                denominator: f.denominator,
                            }),
                            FrameIntervalEnum::Stepwise(_) => None,
                        })
                        .collect();
                    discrete.push((d.width, d.height, intervals));
                }
                FrameSizeEnum::Stepwise(s) => {
                    stepwise = Some(OfferedSizes::Stepwise {
                        min: (s.min_width, s.min_height),
                        max: (s.max_width, s.max_height),
                        step: (s.step_width, s.step_height),
                    });
                }
            }
        }
        let sizes = stepwise.unwrap_or(OfferedSizes::Discrete(discrete));
        log::debug!("device offers {}", fourcc_text(fourcc.repr));
        offered.push(OfferedFormat {
            fourcc: fourcc.repr,
            sizes,
        });
    }
    Ok(offered)
}

/// A driver timestamp (struct timeval; CLOCK_MONOTONIC for UVC cameras) in nanoseconds.
fn driver_timestamp_ns(sec: i64, usec: i64) -> Option<u64> {
    let ns = sec
        .checked_mul(1_000_000_000)?
        .checked_add(usec.checked_mul(1_000)?)?;
    u64::try_from(ns).ok().filter(|&ns| ns > 0)
}
