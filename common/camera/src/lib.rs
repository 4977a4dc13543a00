//! The webcam through Video4Linux2 (the `v4l` crate): device discovery, YUYV or MJPEG
//! negotiation (the decision itself is `keymash_media::negotiate`, unit-tested there),
//! streaming with a poll timeout, conversion of each frame to I420 (strided YUYV or MJPEG
//! decoding, `keymash_media::yuyv` and `keymash_media::mjpeg`), and recovery from unplug and
//! replug: an absent camera is looked for every quarter second, one that refuses is retried
//! with a growing backoff (the decision is `keymash_media::reconnect`, unit-tested there). A frame that cannot become a whole picture (short, corrupt, flagged by
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
use keymash_media::reconnect::ABSENT_LOOK_NS;
use keymash_media::{MjpegDecoder, Reconnect, Unusable, YuyvLayout};
use v4l::buffer::Flags as BufferFlags;
use v4l::buffer::Type;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::io::mmap::Stream;
use v4l::io::traits::{CaptureStream, Stream as StreamTrait};
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, FourCC, Fraction};

/// Driver buffers: enough to absorb a late reader without adding much latency.
const BUFFERS: u32 = 4;
/// How long one wait for a frame may block (the loop must check for SIGTERM and the watchdog).
const POLL_TIMEOUT: Duration = Duration::from_millis(200);
const POLL_TIMEOUT_MS: i32 = POLL_TIMEOUT.as_millis() as i32;
/// A camera that delivers nothing for this long counts as gone (unplugged or wedged).
const STALL_NS: u64 = 2_000_000_000;

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
    reconnect: Reconnect,
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
            reconnect: Reconnect::new(),
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
    /// or that there is none, since when, why (the last error) and when it is tried again.
    /// The state and its age lead: the capture status line is cut at 128 bytes.
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
            None => {
                let error = self.last_error.as_deref().unwrap_or("not opened yet");
                let next_s = self.retry_at_ns.saturating_sub(now_ns) as f64 / 1e9;
                match (self.reconnect.last(), self.reconnect.down_since_ns()) {
                    (Some(why), Some(since)) => {
                        let down_s = now_ns.saturating_sub(since) as f64 / 1e9;
                        let next = match why {
                            Unusable::Absent => {
                                format!("looking every {:.2} s", ABSENT_LOOK_NS as f64 / 1e9)
                            }
                            Unusable::Refused => {
                                format!("retry {} in {next_s:.1} s", self.reconnect.attempts() + 1)
                            }
                        };
                        format!(
                            "no camera, {} for {down_s:.1} s: {error}; {next}",
                            why.describe()
                        )
                    }
                    _ => format!("no camera: {error}"),
                }
            }
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
                    // A udev symlink (`/dev/v4l/by-id/...`) is opened afresh at every attempt,
                    // so a camera re-enumerated under another node after a replug is found
                    // again; the log says which node it is this time.
                    let node = match std::fs::canonicalize(&open.path) {
                        Ok(node) if node != open.path => format!(" ({})", node.display()),
                        _ => String::new(),
                    };
                    log::info!(
                        "camera {}{node} streaming {}{stride}",
                        open.path.display(),
                        open.negotiated
                    );
                    if self.last_error.is_some() {
                        self.reconnects += 1;
                    }
                    self.open = Some(open);
                    self.last_error = None;
                }
                Err(e) => {
                    self.fail(now_ns(), error_text(&e), unusable(&e));
                    return CameraEvent::Idle;
                }
            }
        }
        let Some(open) = self.open.as_mut() else {
            return CameraEvent::Idle;
        };
        // Wait for a frame with poll(2) here, never inside `next()` (see `start_streaming`).
        let ready = open.stream.handle().poll(libc::POLLIN, POLL_TIMEOUT_MS);
        let next = match ready {
            Ok(0) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no frame within the poll timeout",
            )),
            Ok(_) => open.stream.next(),
            Err(e) => Err(e),
        };
        let result = match next {
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
            // No frame within the poll timeout: not an error by itself (a camera in dim light
            // may take longer per frame); the stall clock decides.
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(None),
            // ENODEV here is a USB disconnect: closed at once below, and looked for again
            // within the short interval.
            Err(e) => Err(Some((
                format!("stream error: {e}"),
                Unusable::of_errno(e.raw_os_error()),
            ))),
        };
        match result {
            Ok(Ok(capture_ns)) => {
                open.last_frame_ns = capture_ns;
                self.reconnect.working();
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
                        Unusable::Refused,
                    );
                }
                CameraEvent::Idle
            }
            Err(None) => {
                let now = now_ns();
                if now.saturating_sub(open.last_frame_ns) > STALL_NS {
                    self.fail(
                        now,
                        format!("no frame for {} s", STALL_NS / 1_000_000_000),
                        Unusable::Refused,
                    );
                }
                CameraEvent::Idle
            }
            Err(Some((reason, why))) => {
                self.fail(now_ns(), reason, why);
                CameraEvent::Idle
            }
        }
    }

    /// Closes the camera (if open) and schedules the next attempt by what failed. Logged when
    /// it is news (the camera stopped working, or went from absent to refusing or back) or a
    /// refusal gives a new reason; an absent camera looked for four times a second is logged
    /// once.
    fn fail(&mut self, now_ns: u64, reason: String, why: Unusable) {
        let closed = self.open.take().is_some();
        let retry = self.reconnect.failed(now_ns, why);
        let new_reason = self.last_error.as_deref() != Some(reason.as_str());
        if closed || retry.news || (why == Unusable::Refused && new_reason) {
            match why {
                Unusable::Absent => log::warn!(
                    "camera: {reason}; absent, looking for it every {} ms (logged once)",
                    ABSENT_LOOK_NS / 1_000_000
                ),
                Unusable::Refused => log::warn!(
                    "camera: {reason}; retrying in {:.1} s (waits grow while it refuses)",
                    retry.at_ns.saturating_sub(now_ns) as f64 / 1e9
                ),
            }
        }
        self.retry_at_ns = retry.at_ns;
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
        start_streaming(&mut stream)?;
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
        Err(NoCaptureNode.into())
    }
}

/// Discovery found no node that can capture video: no camera is plugged in (or udev has not
/// made its node yet), a case of [`Unusable::Absent`].
#[derive(Debug)]
struct NoCaptureNode;

impl std::fmt::Display for NoCaptureNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no video capture device found (plug a camera in, or set `capture.device`)")
    }
}

impl std::error::Error for NoCaptureNode {}

/// An opening error for the log and the status line: an OS error first (what went wrong), then
/// where (`No such file or directory (os error 2) - cannot open /dev/v4l/by-id/...`), so that
/// the cause survives the status line's cut at 128 bytes behind a long udev path; anything
/// else as anyhow writes it (outermost context first).
fn error_text(e: &anyhow::Error) -> String {
    let causes: Vec<String> = e.chain().map(ToString::to_string).collect();
    match causes.split_last() {
        Some((root, contexts)) if !contexts.is_empty() && e.root_cause().is::<std::io::Error>() => {
            format!("{root} - {}", contexts.join(": "))
        }
        _ => format!("{e:#}"),
    }
}

/// Why opening failed, for the retry policy: by the errno of the first OS error in the chain
/// (ENOENT from `open` of an unplugged node, ENODEV from a node torn down while it was being
/// set up), or absent when discovery found no capture node; anything else (a refused format,
/// permission) came from a camera that is there.
fn unusable(e: &anyhow::Error) -> Unusable {
    if e.chain().any(|cause| cause.is::<NoCaptureNode>()) {
        return Unusable::Absent;
    }
    let errno = e
        .chain()
        .find_map(|cause| cause.downcast_ref::<std::io::Error>())
        .and_then(std::io::Error::raw_os_error);
    Unusable::of_errno(errno)
}

/// Starts `stream` so that [`Stream::next`] never has to wait for a frame.
///
/// `next()` gives the buffer it returned last back to the driver before it dequeues the next
/// one. If that dequeue times out, the buffer stays queued, the following `next()` queues it
/// again, and the driver refuses (EINVAL): with `next()` waiting with a timeout, any frame
/// slower than the timeout (a camera at 5 fps or less, as in dim light with auto exposure)
/// would tear the stream down. So [`Camera::poll`] waits with poll(2) itself and calls
/// `next()` only once a frame is ready, and streaming starts here rather than in the first
/// `next()`: every buffer but the first is queued now, and that first `next()` queues buffer 0
/// (where the stream's index starts) before its dequeue, so all of them circulate.
fn start_streaming(stream: &mut Stream<'static>) -> std::io::Result<()> {
    for index in 1..BUFFERS as usize {
        CaptureStream::queue(stream, index)?;
    }
    StreamTrait::start(stream)?;
    // A safety net only: the dequeue inside next() follows a poll that saw a frame ready.
    stream.set_timeout(POLL_TIMEOUT);
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_errors_are_classified_by_their_os_error_through_the_context() {
        // Linux errno values: ENOENT 2, ENODEV 19, EBUSY 16.
        let gone = Err::<(), _>(std::io::Error::from_raw_os_error(2))
            .context("cannot open /dev/video0")
            .unwrap_err();
        assert_eq!(unusable(&gone), Unusable::Absent);
        let torn_down = anyhow::Error::new(std::io::Error::from_raw_os_error(19));
        assert_eq!(unusable(&torn_down), Unusable::Absent);
        let busy = anyhow::Error::new(std::io::Error::from_raw_os_error(16)); // EBUSY
        assert_eq!(unusable(&busy), Unusable::Refused);
        let none = anyhow::Error::new(NoCaptureNode);
        assert_eq!(unusable(&none), Unusable::Absent);
        let refused = anyhow::anyhow!("the camera offers no YUYV at 640x480");
        assert_eq!(unusable(&refused), Unusable::Refused);
    }

    #[test]
    fn an_os_error_leads_the_error_text_and_other_errors_read_as_written() {
        let gone = Err::<(), _>(std::io::Error::from_raw_os_error(2))
            .context("cannot open /dev/video0")
            .unwrap_err();
        assert_eq!(
            error_text(&gone),
            "No such file or directory (os error 2) - cannot open /dev/video0"
        );
        let refused = anyhow::anyhow!("no YUYV at 640x480").context("negotiation");
        assert_eq!(error_text(&refused), "negotiation: no YUYV at 640x480");
        let bare = anyhow::Error::new(std::io::Error::from_raw_os_error(16));
        assert_eq!(error_text(&bare), "Device or resource busy (os error 16)");
    }
}
