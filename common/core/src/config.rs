//! The keymash configuration: one TOML file (`/etc/keymash/keymash.toml`) for both PCs.
//!
//! Every key has a default, so an empty file is a valid configuration. The annotated example
//! that `deploy/install.sh` copies, `deploy/keymash.toml`, lists every key with its default and
//! a comment; a test keeps the two in step.
//!
//! Refusal is strict and always names the key: an unknown key (a typo would otherwise be
//! silently ignored at an exhibition), a value of the wrong type, or a value out of range.
//! Parsing is pure (`Config::from_toml_str`); only [`Config::load`] touches the file system.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::key::PreSharedKey;
use crate::mash::MashModelConfig;
use crate::units::{DropProbability, MashLevel, Quality};

/// Defaults of the loss curve (config section of loss-controller).
pub mod loss_defaults {
    /// Drop probability when nobody mashes: the original exhibit's 40 %.
    pub const DROP_AT_REST: f64 = 0.40;
    /// Exponent of the fall-off: 2 makes the first mashing pay off most, as it should feel.
    pub const EXPONENT: f64 = 2.0;
    /// The mash level from which loss is zero. Below 1.0 so that a crowd can actually reach a
    /// clean picture: a fully saturated level is rarely held for long.
    pub const ZERO_LOSS_AT: f32 = 0.8;
}

/// Where services look for the configuration unless given `--config`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/keymash/keymash.toml";

/// Largest `codec.max_payload_bytes`: 1188 bytes of codec payload fill a 1208-byte RTP packet
/// (12-byte header, 8-byte capture-age extension), the most the transport sends in one datagram
/// (keymash-transport's `MAX_PAYLOAD_LEN`, which it asserts equal to this at compile time).
pub const MAX_PAYLOAD_BYTES: u32 = 1188;

/// `transport.pacing_rate_mbit`'s default: a fifth of the gigabit port of the PCs it runs on, so a
/// frame never leaves at line rate into a switch's buffer, yet a 60 KB frame (640x480 at high
/// quality) is out in 2.4 ms rather than spread over a third of the frame interval (11 ms).
pub const DEFAULT_PACING_RATE_MBIT: u32 = 200;

/// Smallest `codec.max_payload_bytes`: below ~200 bytes a payload cannot hold a useful
/// macroblock plus headers.
pub const MIN_PAYLOAD_BYTES: u32 = 200;

/// Why `name` cannot be a Linux network interface name, or `Ok`. The kernel's own rule
/// (`dev_valid_name`: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace), narrowed to
/// printable ASCII: a NUL byte or a control character could never reach the kernel intact
/// (aya refused a NUL with an error only when loss-controller attached the filter). Shared by
/// the configuration (`loss.interface`) and loss-controller's `--interface`.
pub fn check_interface_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_graphic() && c != '/' && c != ':';
    if name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || !name.chars().all(allowed)
    {
        return Err(format!(
            "must be a network interface name as `ip link` shows it: 1 to 15 printable ASCII characters \
             without '/', ':' or spaces, got {name:?}"
        ));
    }
    Ok(())
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML, or a value does not fit its key's type.
    #[error("{location}: {}{message}", key.as_deref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
    Parse {
        location: String,
        key: Option<String>,
        message: String,
    },
    /// A value is well-formed but out of range or in conflict with another key.
    #[error("{location}: `{key}`: {message}")]
    Invalid {
        location: String,
        key: &'static str,
        message: String,
    },
}

impl ConfigError {
    /// The dotted key the error is about (`codec.quality`), when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { key, .. } => key.as_deref(),
            ConfigError::Invalid { key, .. } => Some(key),
        }
    }

    /// Say which file the error is in (a check run after [`Config::load`], such as
    /// `keymash_service::preflight`, names the file the same way `load` does).
    pub fn in_file(self, path: &Path) -> ConfigError {
        match self {
            ConfigError::Parse {
                location,
                key,
                message,
            } => ConfigError::Parse {
                location: format!("{}: {location}", path.display()),
                key,
                message,
            },
            ConfigError::Invalid { key, message, .. } => ConfigError::Invalid {
                location: path.display().to_string(),
                key,
                message,
            },
            read @ ConfigError::Read { .. } => read,
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub shm: ShmConfig,
    pub video: VideoConfig,
    pub codec: CodecConfig,
    pub network: NetworkConfig,
    pub transport: TransportSection,
    pub loss: LossConfig,
    pub mash: MashModelConfig,
    pub quality: QualityCurveConfig,
    pub capture: CaptureConfig,
    pub delay: DelayConfig,
    pub display: DisplayConfig,
    pub input: InputConfig,
    pub security: SecurityConfig,
    pub web: WebConfig,
    pub archive: ArchiveConfig,
}

/// Where the key file is unless the configuration names another.
pub const DEFAULT_KEY_PATH: &str = "/etc/keymash/keymash.key";

/// Whether the link is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityMode {
    /// Every packet sealed (AEAD) under keys derived from the pre-shared key file.
    Psk,
    /// No protection at all: anyone on the network can put pictures on the screen. Logged and
    /// shown in status as unprotected.
    None,
}

/// Protection of the link between the two PCs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    pub mode: SecurityMode,
    /// The pre-shared key file (`keymash keygen` writes one); both PCs need the same file.
    pub key_file: PathBuf,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            mode: SecurityMode::Psk,
            key_file: PathBuf::from(DEFAULT_KEY_PATH),
        }
    }
}

/// Shared-memory segments (`/dev/shm/<prefix>.<name>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShmConfig {
    /// Name prefix of every segment, so several independent pipelines (tests, the demo) can run
    /// on one machine side by side.
    pub prefix: String,
    /// Segments readable and writable by the owning group (0660) rather than the owner only (0600).
    pub group_access: bool,
}

impl Default for ShmConfig {
    fn default() -> Self {
        ShmConfig {
            prefix: "keymash".to_owned(),
            group_access: true,
        }
    }
}

/// The picture as captured and sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VideoConfig {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            width: 640,
            height: 480,
            fps: 30,
        }
    }
}

/// How macroblocks are spread over payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadLayout {
    /// Raster order: a lost packet leaves a horizontal strip (the original's look).
    Strips,
    /// Macroblocks spread over payloads: a lost packet leaves scattered single blocks.
    Dispersed,
}

/// The codec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodecConfig {
    /// Quality used until the receiver asks for another, and when its feedback falls silent.
    pub quality: Quality,
    pub layout: PayloadLayout,
    /// Largest codec payload; 1188 fills a 1208-byte RTP packet after the 12-byte RTP header and
    /// the 8-byte capture-age extension.
    pub max_payload_bytes: u32,
    /// Encoder threads; 0 means one per core.
    pub threads: u32,
}

impl Default for CodecConfig {
    fn default() -> Self {
        CodecConfig {
            quality: Quality::saturating(50),
            layout: PayloadLayout::Strips,
            max_payload_bytes: 1188,
            threads: 0,
        }
    }
}

/// The two PCs' addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// The sender PC. net-rx accepts video only from this address.
    pub sender_address: IpAddr,
    /// net-tx's local UDP port; the receiver's RTCP feedback comes back to it.
    pub sender_port: u16,
    /// The receiver PC, where net-tx sends the video.
    pub receiver_address: IpAddr,
    /// The UDP port of the video stream on the receiver; the loss filter drops only this flow.
    pub video_port: u16,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            sender_address: IpAddr::from([192, 168, 50, 1]),
            sender_port: 5006,
            receiver_address: IpAddr::from([192, 168, 50, 2]),
            video_port: 5004,
        }
    }
}

/// The real-time protocol. Recovery is off by default: the exhibit shows raw loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSection {
    /// RTP payload type of video packets (dynamic range 96..=127).
    pub payload_type: u8,
    /// RTP payload type of FEC repair packets (dynamic range, not the video one).
    pub fec_payload_type: u8,
    /// Repair packets per frame as a percentage of its source packets; 0 switches FEC off.
    pub fec_overhead_percent: u32,
    /// Ask the sender to retransmit lost packets that can still arrive in time.
    pub nack: bool,
    /// A frame's packets leave at this rate, in megabits per second, not in one burst that
    /// overflows switch and socket buffers. 0: spread over `pacing_fraction` of the frame
    /// interval whatever the frame's size (the way before rate pacing: 11 ms at 30 fps).
    pub pacing_rate_mbit: u32,
    /// A frame's packets never take longer than this fraction of the frame interval to leave,
    /// whatever the rate: a large frame at a low rate would otherwise delay the next.
    pub pacing_fraction: f64,
    /// How often the receiver sends RTCP feedback. A change of the requested quality goes at
    /// once instead (at most one a frame interval); this is for the statistics and the fallback.
    pub feedback_interval_ms: u32,
    /// The sender falls back to `codec.quality` when it has heard no feedback for this long.
    pub quality_fallback_ms: u32,
    /// Keepalive interval on an idle path (keeps NAT/conntrack state, tells each side the other lives).
    pub keepalive_interval_ms: u32,
    /// The peer counts as gone after this long without a packet.
    pub peer_timeout_ms: u32,
}

impl Default for TransportSection {
    fn default() -> Self {
        TransportSection {
            payload_type: 96,
            fec_payload_type: 97,
            fec_overhead_percent: 0,
            nack: false,
            pacing_rate_mbit: DEFAULT_PACING_RATE_MBIT,
            pacing_fraction: 1.0 / 3.0,
            feedback_interval_ms: 100,
            quality_fallback_ms: 2000,
            keepalive_interval_ms: 500,
            peer_timeout_ms: 3000,
        }
    }
}

/// How the loss filter decides which packets to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossModelKind {
    /// Each packet independently (the original installation).
    Bernoulli,
    /// Burst loss: a two-state Gilbert-Elliott chain with netem's `gemodel p r 1-h 1-k` meaning.
    GilbertElliott,
}

/// The kernel loss filter on the receiver and the curve that mashing moves it along.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// The receiver's network interface carrying the video (the filter sits on its ingress).
    pub interface: String,
    /// Drop probability when nobody mashes.
    pub drop_at_rest: DropProbability,
    /// Shape of the curve from `drop_at_rest` down to 0: 1 is linear, 2 eases off quadratically.
    pub exponent: f64,
    /// The mash level (0..1] at which loss reaches 0.
    pub zero_loss_at_mash: MashLevel,
    /// How often loss-controller refreshes the filter's map (at least 50 Hz).
    pub refresh_hz: u32,
    /// The filter passes everything when the map has not been refreshed for this long.
    pub failsafe_ms: u32,
    pub model: LossModelKind,
    /// Gilbert-Elliott: per-packet probability of moving from the good to the bad state (netem p).
    pub ge_p: DropProbability,
    /// Gilbert-Elliott: per-packet probability of moving from bad back to good (netem r);
    /// the mean burst lasts 1/r packets.
    pub ge_r: DropProbability,
    /// Gilbert-Elliott: drop probability in the bad state (netem 1-h).
    pub ge_loss_bad: DropProbability,
    /// Gilbert-Elliott: drop probability in the good state (netem 1-k).
    pub ge_loss_good: DropProbability,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            interface: "eth0".to_owned(),
            drop_at_rest: DropProbability::saturating(loss_defaults::DROP_AT_REST),
            exponent: loss_defaults::EXPONENT,
            zero_loss_at_mash: MashLevel::saturating(loss_defaults::ZERO_LOSS_AT),
            refresh_hz: 50,
            failsafe_ms: 250,
            model: LossModelKind::Bernoulli,
            ge_p: DropProbability::saturating(0.1),
            ge_r: DropProbability::saturating(0.25),
            ge_loss_bad: DropProbability::saturating(1.0),
            ge_loss_good: DropProbability::saturating(0.0),
        }
    }
}

/// How mashing raises the quality the receiver asks the sender for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityCurveConfig {
    /// Quality asked for when nobody mashes.
    pub at_rest: Quality,
    /// Quality asked for at full mashing.
    pub at_full: Quality,
    /// Shape of the curve: 1 is linear in the mash level.
    pub exponent: f64,
}

impl Default for QualityCurveConfig {
    fn default() -> Self {
        QualityCurveConfig {
            at_rest: Quality::saturating(10),
            at_full: Quality::saturating(90),
            exponent: 1.0,
        }
    }
}

/// Where frames come from: `"v4l2"`, `"synthetic"` or `"y4m:/path/to/file.y4m"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CaptureSource {
    /// A webcam through Video4Linux2.
    V4l2,
    /// A moving test scene with the frame number and capture time stamped into the picture.
    Synthetic,
    /// A 4:2:0 Y4M file, looped.
    Y4m(PathBuf),
}

impl TryFrom<String> for CaptureSource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match split_source(&s) {
            ("v4l2", None) => Ok(CaptureSource::V4l2),
            ("synthetic", None) => Ok(CaptureSource::Synthetic),
            ("y4m", Some(path)) => Ok(CaptureSource::Y4m(PathBuf::from(path))),
            _ => Err(format!(
                "expected \"v4l2\", \"synthetic\" or \"y4m:PATH\", got {s:?}"
            )),
        }
    }
}

impl From<CaptureSource> for String {
    fn from(s: CaptureSource) -> String {
        match s {
            CaptureSource::V4l2 => "v4l2".to_owned(),
            CaptureSource::Synthetic => "synthetic".to_owned(),
            CaptureSource::Y4m(p) => format!("y4m:{}", p.display()),
        }
    }
}

/// `kind:argument` -> (kind, Some(argument)); a bare `kind` -> (kind, None). An empty
/// argument counts as missing.
fn split_source(s: &str) -> (&str, Option<&str>) {
    match s.split_once(':') {
        Some((kind, arg)) if !arg.is_empty() => (kind, Some(arg)),
        Some((kind, _)) => (kind, None),
        None => (s, None),
    }
}

/// The pixel format capture asks a V4L2 camera for (`capture.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureFormat {
    /// YUYV when the camera gives it at the configured size and at least the configured rate
    /// (no decoding), else MJPEG at that size and rate, else the best the camera offers.
    Auto,
    /// Packed YUYV 4:2:2 only; a camera without it at the configured size is refused.
    Yuyv,
    /// Motion JPEG only (decoded on the sender); a camera without it is refused.
    Mjpeg,
}

/// The camera or other frame source (sender).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    pub source: CaptureSource,
    /// V4L2 device path; empty means the first device that can capture video.
    pub device: String,
    /// The pixel format asked of a V4L2 camera.
    pub format: CaptureFormat,
    /// V4L2 controls set at every open of the camera (`[capture.controls]`), by the name
    /// `keymash camera` and `v4l2-ctl` print. Whether the camera has them, and takes the value,
    /// is decided at open (`keymash_media::controls`); here only the form is checked. Left out
    /// of the printed configuration when empty, so the annotated example can show it commented.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub controls: BTreeMap<String, ControlSetting>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            source: CaptureSource::V4l2,
            device: String::new(),
            format: CaptureFormat::Auto,
            controls: BTreeMap::new(),
        }
    }
}

/// One value under `[capture.controls]`: an integer (also a menu item's index, or 0/1 for a
/// boolean control), a boolean, or a menu item by its name. Any other TOML type (a float, an
/// array, a table, a date) is refused while parsing, naming `capture.controls.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "an integer, true/false, or a menu item's name in quotes"
)]
pub enum ControlSetting {
    Integer(i64),
    Boolean(bool),
    MenuItem(String),
}

impl std::fmt::Display for ControlSetting {
    /// As written in the TOML file.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlSetting::Integer(v) => write!(f, "{v}"),
            ControlSetting::Boolean(v) => write!(f, "{v}"),
            ControlSetting::MenuItem(item) => write!(f, "{item:?}"),
        }
    }
}

/// The name of a V4L2 control as `v4l2-ctl` prints it and `[capture.controls]` takes it: the
/// kernel's name lowercased, every run of characters other than ASCII letters and digits turned
/// into one `_`, none at either end ("Exposure Time, Absolute" -> `exposure_time_absolute`).
pub fn control_key(kernel_name: &str) -> String {
    let mut key = String::with_capacity(kernel_name.len());
    let mut gap = false;
    for c in kernel_name.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !key.is_empty() {
                key.push('_');
            }
            gap = false;
            key.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    key
}

/// The delay between capture and encoding (sender).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DelayConfig {
    /// Seconds of video held back; 0 passes frames straight through.
    pub seconds: f64,
    /// The delay buffer refuses to start if holding `seconds` of video needs more than this.
    pub max_memory_mib: u32,
}

impl Default for DelayConfig {
    fn default() -> Self {
        DelayConfig {
            seconds: 30.0,
            max_memory_mib: 1024,
        }
    }
}

/// Where the display sends the picture: `"window"`, `"frames:/dir"` or `"y4m:/file.y4m"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DisplayOutput {
    /// An SDL2 window (X11, Wayland, or KMSDRM on a console).
    Window,
    /// Each presented picture as a numbered image file in this directory (headless).
    Frames(PathBuf),
    /// The presented pictures as one Y4M video (headless).
    Y4m(PathBuf),
}

impl TryFrom<String> for DisplayOutput {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match split_source(&s) {
            ("window", None) => Ok(DisplayOutput::Window),
            ("frames", Some(dir)) => Ok(DisplayOutput::Frames(PathBuf::from(dir))),
            ("y4m", Some(path)) => Ok(DisplayOutput::Y4m(PathBuf::from(path))),
            _ => Err(format!(
                "expected \"window\", \"frames:DIR\" or \"y4m:PATH\", got {s:?}"
            )),
        }
    }
}

impl From<DisplayOutput> for String {
    fn from(o: DisplayOutput) -> String {
        match o {
            DisplayOutput::Window => "window".to_owned(),
            DisplayOutput::Frames(p) => format!("frames:{}", p.display()),
            DisplayOutput::Y4m(p) => format!("y4m:{}", p.display()),
        }
    }
}

/// The picture on the exhibit screen (receiver).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DisplayConfig {
    pub output: DisplayOutput,
    /// Fill the screen (window output).
    pub fullscreen: bool,
    /// The least time a frame waits, beyond the fastest frame's arrival, before it is shown.
    /// The wait follows the measured jitter between this and `playout_max_ms`.
    pub playout_min_ms: u32,
    /// The most a frame waits to smooth the network's jitter; a frame later than this is shown
    /// as soon as it is whole (a stutter, not a growing delay).
    pub playout_max_ms: u32,
    /// The fixed playout delay of earlier versions, still in the configuration files of PCs
    /// installed before: read only to be refused with what replaces it (never written).
    #[serde(skip_serializing)]
    pub playout_delay_ms: Option<u32>,
    /// Width of the border that glows green with the mash level, in pixels (0 = no glow).
    pub glow_border_px: u32,
    /// A one-line overlay with loss %, quality and fps.
    pub hud: bool,
    /// With no frame presented for this long, the screen shows the signal-lost card (the last
    /// picture dimmed, "signal lost, reconnecting" and why) instead of a frozen picture.
    pub signal_lost_ms: u32,
    /// Publish each presented picture into the `screen` segment, for keymash-web and
    /// keymash-archive (one copy of the picture per new frame).
    pub publish_picture: bool,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        DisplayConfig {
            output: DisplayOutput::Window,
            fullscreen: true,
            playout_min_ms: 2,
            playout_max_ms: 100,
            playout_delay_ms: None,
            glow_border_px: 32,
            hud: false,
            signal_lost_ms: 1000,
            publish_picture: true,
        }
    }
}

/// Where key presses come from: `"evdev"`, `"fifo:/path"` or `"script:PATTERN"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum InputSource {
    /// Every keyboard under /dev/input, found and followed through hot-plug.
    Evdev,
    /// Raw `struct input_event` records written into a named pipe (tests, remote control).
    Fifo(PathBuf),
    /// A scripted mashing pattern over time (the demo); the pattern's syntax is mash-input's.
    Script(String),
}

impl TryFrom<String> for InputSource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match split_source(&s) {
            ("evdev", None) => Ok(InputSource::Evdev),
            ("fifo", Some(path)) => Ok(InputSource::Fifo(PathBuf::from(path))),
            ("script", Some(pattern)) => Ok(InputSource::Script(pattern.to_owned())),
            _ => Err(format!(
                "expected \"evdev\", \"fifo:PATH\" or \"script:PATTERN\", got {s:?}"
            )),
        }
    }
}

impl From<InputSource> for String {
    fn from(i: InputSource) -> String {
        match i {
            InputSource::Evdev => "evdev".to_owned(),
            InputSource::Fifo(p) => format!("fifo:{}", p.display()),
            InputSource::Script(pattern) => format!("script:{pattern}"),
        }
    }
}

/// The keyboards visitors mash (receiver).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputConfig {
    pub source: InputSource,
    /// How often mash-input publishes the mash level (Hz, at least 50).
    pub publish_hz: u32,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            source: InputSource::Evdev,
            publish_hz: 100,
        }
    }
}

/// keymash-web, the read-only web service on each PC (optional: its unit is enabled only when
/// `install.sh --web` asks for it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Address and port to listen on, e.g. "0.0.0.0:8088" (every interface) or "127.0.0.1:8088".
    pub listen: String,
    /// The most clients served at once; more are answered 503 at once.
    pub max_clients: u32,
    /// The most pictures a second the MJPEG stream sends each viewer.
    pub stream_fps: u32,
    /// JPEG quality of the stream and the snapshot (1-100).
    pub jpeg_quality: u8,
    /// A client that takes no data for this long (ms) is dropped.
    pub stall_timeout_ms: u32,
    /// Minutes of history the page plots.
    pub history_minutes: u32,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: "0.0.0.0:8088".to_owned(),
            max_clients: 16,
            stream_fps: 15,
            jpeg_quality: 80,
            stall_timeout_ms: 5000,
            history_minutes: 10,
        }
    }
}

/// keymash-archive, the receiver's recording of what the screen shows (optional: its unit is
/// enabled only when `install.sh --archive` asks for it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Where the hourly files go.
    pub dir: PathBuf,
    /// Pictures a second recorded (at most the stream's rate).
    pub fps: u32,
    /// JPEG quality of the recorded pictures (1-100).
    pub jpeg_quality: u8,
    /// When the archive's files together exceed this (GiB), the oldest are deleted.
    pub max_gib: f64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            dir: PathBuf::from("/var/lib/keymash/archive"),
            fps: 5,
            jpeg_quality: 70,
            max_gib: 20.0,
        }
    }
}

impl Config {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    /// Parse and validate configuration text.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| parse_error(text, None, &e))?;
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            parse_error(text, (key != ".").then_some(key), e.inner())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The annotated example configuration, with every key at its default.
    pub fn example_toml() -> &'static str {
        include_str!("../../../deploy/keymash.toml")
    }

    /// The pre-shared key named by `security.key_file`, or `None` with `security.mode = "none"`.
    /// A missing, unreadable or damaged file is refused naming the file and the key
    /// `security.key_file`, and saying how to make one (`keymash keygen`).
    pub fn load_key(&self) -> Result<Option<PreSharedKey>, ConfigError> {
        if self.security.mode == SecurityMode::None {
            return Ok(None);
        }
        let path = &self.security.key_file;
        let invalid = |message: String| ConfigError::Invalid {
            location: path.display().to_string(),
            key: "security.key_file",
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            invalid(format!(
                "cannot read the key file: {e}; create it with `keymash keygen --output {}` and copy it to \
                 the other PC, or set security.mode = \"none\" to run unprotected",
                path.display()
            ))
        })?;
        PreSharedKey::parse(&text).map(Some).map_err(|e| {
            invalid(format!(
                "not a key file: {e}; copy the other PC's key file here, or make a new one with \
                 `keymash keygen --force --output {}` and copy it to the other PC",
                path.display()
            ))
        })
    }

    /// Checks that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| {
            Err(ConfigError::Invalid {
                location: "config".to_owned(),
                key,
                message,
            })
        };

        // The shared-memory layer's rule for a prefix (keymash-shm's `Prefix`, which refused a
        // leading '-' only when a service named its first segment).
        let prefix = &self.shm.prefix;
        if prefix.is_empty()
            || prefix.len() > 32
            || prefix.starts_with('-')
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return invalid(
                "shm.prefix",
                format!(
                    "must be 1 to 32 characters of a-z, 0-9, '-' or '_', not starting with '-', got {prefix:?}"
                ),
            );
        }

        for (key, value) in [
            ("video.width", self.video.width),
            ("video.height", self.video.height),
        ] {
            if value == 0 || value % 16 != 0 || value > 4096 {
                return invalid(
                    key,
                    format!("must be a multiple of 16 from 16 to 4096, got {value}"),
                );
            }
        }
        if !(1..=120).contains(&self.video.fps) {
            return invalid(
                "video.fps",
                format!("must be in 1..=120, got {}", self.video.fps),
            );
        }

        // The transport sends at most MAX_PAYLOAD_BYTES in one packet (sealed and in IPv6 it
        // still fits the minimum MTU); a larger payload was accepted here once and then every
        // frame was refused by net-tx, one warning a frame, with nothing on screen.
        if !(MIN_PAYLOAD_BYTES..=MAX_PAYLOAD_BYTES).contains(&self.codec.max_payload_bytes) {
            return invalid(
                "codec.max_payload_bytes",
                format!(
                    "must be in {MIN_PAYLOAD_BYTES}..={MAX_PAYLOAD_BYTES} (the most the transport sends in \
                     one packet), got {}",
                    self.codec.max_payload_bytes
                ),
            );
        }
        if self.codec.threads > 256 {
            return invalid(
                "codec.threads",
                format!("must be in 0..=256, got {}", self.codec.threads),
            );
        }

        for (key, port) in [
            ("network.sender_port", self.network.sender_port),
            ("network.video_port", self.network.video_port),
        ] {
            if port == 0 {
                return invalid(key, "must be a port in 1..=65535, got 0".to_owned());
            }
        }
        if self.network.sender_address == self.network.receiver_address
            && self.network.sender_port == self.network.video_port
        {
            return invalid(
                "network.video_port",
                format!(
                    "equals network.sender_port ({}) on the same address; the two ends need different ports",
                    self.network.sender_port
                ),
            );
        }

        let t = &self.transport;
        for (key, pt) in [
            ("transport.payload_type", t.payload_type),
            ("transport.fec_payload_type", t.fec_payload_type),
        ] {
            if !(96..=127).contains(&pt) {
                return invalid(
                    key,
                    format!("must be a dynamic RTP payload type in 96..=127, got {pt}"),
                );
            }
        }
        if t.payload_type == t.fec_payload_type {
            return invalid(
                "transport.fec_payload_type",
                format!(
                    "must differ from transport.payload_type ({})",
                    t.payload_type
                ),
            );
        }
        if t.fec_overhead_percent > 100 {
            return invalid(
                "transport.fec_overhead_percent",
                format!("must be in 0..=100, got {}", t.fec_overhead_percent),
            );
        }
        usable_number("transport.pacing_fraction", t.pacing_fraction)?;
        if !(t.pacing_fraction > 0.0 && t.pacing_fraction <= 1.0) {
            return invalid(
                "transport.pacing_fraction",
                format!("must be in (0, 1], got {}", t.pacing_fraction),
            );
        }
        if t.pacing_rate_mbit > 100_000 {
            return invalid(
                "transport.pacing_rate_mbit",
                format!(
                    "must be 0 (spread over pacing_fraction) or at most 100000, got {}",
                    t.pacing_rate_mbit
                ),
            );
        }
        for (key, ms, lo, hi) in [
            (
                "transport.feedback_interval_ms",
                t.feedback_interval_ms,
                10,
                5_000,
            ),
            (
                "transport.quality_fallback_ms",
                t.quality_fallback_ms,
                100,
                600_000,
            ),
            (
                "transport.keepalive_interval_ms",
                t.keepalive_interval_ms,
                50,
                60_000,
            ),
            ("transport.peer_timeout_ms", t.peer_timeout_ms, 100, 600_000),
        ] {
            if !(lo..=hi).contains(&ms) {
                return invalid(key, format!("must be in {lo}..={hi}, got {ms}"));
            }
        }

        let l = &self.loss;
        if let Err(message) = check_interface_name(&l.interface) {
            return invalid("loss.interface", message);
        }
        usable_number("loss.exponent", l.exponent)?;
        if !(l.exponent > 0.0 && l.exponent <= 10.0) {
            return invalid(
                "loss.exponent",
                format!("must be in (0, 10], got {}", l.exponent),
            );
        }
        if l.zero_loss_at_mash.get() <= 0.0 {
            return invalid(
                "loss.zero_loss_at_mash",
                format!("must be in (0, 1], got {}", l.zero_loss_at_mash.get()),
            );
        }
        if !(50..=1000).contains(&l.refresh_hz) {
            return invalid(
                "loss.refresh_hz",
                format!("must be in 50..=1000, got {}", l.refresh_hz),
            );
        }
        // The map must be refreshed at least twice within the fail-safe window, or a single late
        // tick would switch the loss off.
        let min_failsafe = 2 * 1000 / l.refresh_hz + 1;
        if l.failsafe_ms < min_failsafe || l.failsafe_ms > 10_000 {
            return invalid(
                "loss.failsafe_ms",
                format!(
                    "must be in {min_failsafe}..=10000 (at least two refresh periods at loss.refresh_hz = {}), got {}",
                    l.refresh_hz, l.failsafe_ms
                ),
            );
        }
        // The filter holds probabilities as fractions of 2^32: anything below half of one part
        // in 2^32 is 0 there, and the first burst would never end.
        if l.model == LossModelKind::GilbertElliott && l.ge_r.as_u32_fraction() == 0 {
            return invalid(
                "loss.ge_r",
                format!(
                    "must be at least {:.1e} (one in 2^32, the loss filter's resolution) with loss.model = \
                     \"gilbert-elliott\" (at 0 the first burst never ends), got {}",
                    1.0 / 4_294_967_296.0,
                    l.ge_r.get()
                ),
            );
        }

        let m = &self.mash;
        usable_number("mash.saturation_score", m.saturation_score)?;
        usable_number("mash.repeat_penalty", m.repeat_penalty)?;
        if !(100..=60_000).contains(&m.window_ms) {
            return invalid(
                "mash.window_ms",
                format!("must be in 100..=60000, got {}", m.window_ms),
            );
        }
        if !(m.saturation_score >= 1.0 && m.saturation_score <= 10_000.0) {
            return invalid(
                "mash.saturation_score",
                format!("must be in 1..=10000, got {}", m.saturation_score),
            );
        }
        if !(0.0..=1.0).contains(&m.repeat_penalty) {
            return invalid(
                "mash.repeat_penalty",
                format!("must be in 0.0..=1.0, got {}", m.repeat_penalty),
            );
        }

        let q = &self.quality;
        if q.at_full < q.at_rest {
            return invalid(
                "quality.at_full",
                format!(
                    "must be at least quality.at_rest ({}), got {}",
                    q.at_rest.get(),
                    q.at_full.get()
                ),
            );
        }
        usable_number("quality.exponent", q.exponent)?;
        if !(q.exponent > 0.0 && q.exponent <= 10.0) {
            return invalid(
                "quality.exponent",
                format!("must be in (0, 10], got {}", q.exponent),
            );
        }

        let d = &self.delay;
        usable_number("delay.seconds", d.seconds)?;
        if !(0.0..=600.0).contains(&d.seconds) {
            return invalid(
                "delay.seconds",
                format!("must be in 0..=600, got {}", d.seconds),
            );
        }
        if !(1..=65_536).contains(&d.max_memory_mib) {
            return invalid(
                "delay.max_memory_mib",
                format!("must be in 1..=65536, got {}", d.max_memory_mib),
            );
        }

        let p = &self.display;
        if let Some(old) = p.playout_delay_ms {
            return invalid(
                "display.playout_delay_ms",
                format!(
                    "was replaced by playout_min_ms and playout_max_ms (the wait now follows the \
                     network's jitter between them): write playout_max_ms = {old} instead, or \
                     remove the line for the defaults (2 and 100)"
                ),
            );
        }
        if p.playout_max_ms > 5_000 {
            return invalid(
                "display.playout_max_ms",
                format!("must be in 0..=5000, got {}", p.playout_max_ms),
            );
        }
        if p.playout_min_ms > p.playout_max_ms {
            return invalid(
                "display.playout_min_ms",
                format!(
                    "must not be above display.playout_max_ms ({}), got {}",
                    p.playout_max_ms, p.playout_min_ms
                ),
            );
        }
        if p.glow_border_px > 512 {
            return invalid(
                "display.glow_border_px",
                format!("must be in 0..=512, got {}", p.glow_border_px),
            );
        }
        // Below a few frame intervals the card would flash at every hiccup of the network; above
        // a minute a frozen screen would pass for live.
        if !(100..=60_000).contains(&p.signal_lost_ms) {
            return invalid(
                "display.signal_lost_ms",
                format!("must be in 100..=60000, got {}", p.signal_lost_ms),
            );
        }

        let w = &self.web;
        if let Err(e) = w.listen.parse::<std::net::SocketAddr>() {
            return invalid(
                "web.listen",
                format!(
                    "must be an address and port such as \"0.0.0.0:8088\" or \"[::]:8088\", got {:?} ({e})",
                    w.listen
                ),
            );
        }
        for (key, value, lo, hi) in [
            ("web.max_clients", w.max_clients, 1, 1024),
            ("web.stream_fps", w.stream_fps, 1, 60),
            ("web.stall_timeout_ms", w.stall_timeout_ms, 100, 600_000),
            ("web.history_minutes", w.history_minutes, 1, 1440),
            ("archive.fps", self.archive.fps, 1, 60),
        ] {
            if !(lo..=hi).contains(&value) {
                return invalid(key, format!("must be in {lo}..={hi}, got {value}"));
            }
        }
        for (key, quality) in [
            ("web.jpeg_quality", w.jpeg_quality),
            ("archive.jpeg_quality", self.archive.jpeg_quality),
        ] {
            if !(1..=100).contains(&quality) {
                return invalid(key, format!("must be in 1..=100, got {quality}"));
            }
        }
        let a = &self.archive;
        usable_number("archive.max_gib", a.max_gib)?;
        if !(a.max_gib >= 0.01 && a.max_gib <= 100_000.0) {
            return invalid(
                "archive.max_gib",
                format!("must be in 0.01..=100000, got {}", a.max_gib),
            );
        }
        if !a.dir.is_absolute() {
            return invalid(
                "archive.dir",
                format!(
                    "must be an absolute path, got {:?}",
                    a.dir.display().to_string()
                ),
            );
        }

        if self.security.mode == SecurityMode::Psk && self.security.key_file.as_os_str().is_empty()
        {
            return invalid(
                "security.key_file",
                "must name the key file with security.mode = \"psk\"".to_owned(),
            );
        }

        // A NUL byte can be written in TOML ("\u0000") but no path can hold one: capture's V4L2
        // crate panicked on it and the other sources failed only when opened.
        let paths: [(&'static str, &Path); 6] = [
            ("capture.device", Path::new(&self.capture.device)),
            (
                "capture.source",
                match &self.capture.source {
                    CaptureSource::Y4m(path) => path,
                    CaptureSource::V4l2 | CaptureSource::Synthetic => Path::new(""),
                },
            ),
            (
                "display.output",
                match &self.display.output {
                    DisplayOutput::Frames(path) | DisplayOutput::Y4m(path) => path,
                    DisplayOutput::Window => Path::new(""),
                },
            ),
            (
                "input.source",
                match &self.input.source {
                    InputSource::Fifo(path) => path,
                    // A pattern is mash-input's to parse (and it refuses a NUL as it is).
                    InputSource::Script(_) | InputSource::Evdev => Path::new(""),
                },
            ),
            ("security.key_file", &self.security.key_file),
            ("archive.dir", &self.archive.dir),
        ];
        for (key, path) in paths {
            if path.as_os_str().as_encoded_bytes().contains(&0) {
                return invalid(
                    key,
                    format!("contains a NUL byte, which no file name can hold: {path:?}"),
                );
            }
        }

        // A camera's controls are known only when it is opened; a name that cannot be one
        // (empty, or not in the form `keymash camera` prints) is refused now.
        for name in self.capture.controls.keys() {
            let key = control_key(name);
            if key.is_empty() {
                return invalid(
                    "capture.controls",
                    format!(
                        "{name:?} is no control name; write names as `keymash camera` lists them, \
                         e.g. exposure_time_absolute = 250"
                    ),
                );
            }
            if key != *name {
                return invalid(
                    "capture.controls",
                    format!(
                        "control {name:?}: write its name as `keymash camera` and `v4l2-ctl --list-ctrls` \
                         print it, `{key}`"
                    ),
                );
            }
        }

        if !(50..=1000).contains(&self.input.publish_hz) {
            return invalid(
                "input.publish_hz",
                format!("must be in 50..=1000, got {}", self.input.publish_hz),
            );
        }
        Ok(())
    }
}

/// Refuses what no setting means and the arithmetic downstream cannot take: NaN, the
/// infinities (TOML writes them `nan` and `inf`) and subnormal numbers, which are below
/// `f64::MIN_POSITIVE` (2.2e-308) and turn into zero or infinity in the first division
/// (`transport.pacing_fraction = 5e-324` gave net-tx a zero pacing spread). Ranges are each
/// key's own check.
fn usable_number(key: &'static str, value: f64) -> Result<(), ConfigError> {
    let message = if !value.is_finite() {
        format!("must be a finite number, got {value}")
    } else if value != 0.0 && !value.is_normal() {
        format!(
            "{value:e} is too small to mean anything (below {:.1e}); write 0 or a larger number",
            f64::MIN_POSITIVE
        )
    } else {
        return Ok(());
    };
    Err(ConfigError::Invalid {
        location: "config".to_owned(),
        key,
        message,
    })
}

/// Turn a toml/serde error into one that names the key and the line.
fn parse_error(text: &str, key: Option<String>, error: &toml::de::Error) -> ConfigError {
    let location = match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}")
        }
        None => "config".to_owned(),
    };
    // toml's message repeats the offending source line with a caret; the first line of its
    // message proper is what a person needs next to the key.
    let message = error
        .message()
        .lines()
        .next()
        .unwrap_or("invalid value")
        .trim()
        .to_owned();
    let key = key.or_else(|| unknown_field(&message));
    ConfigError::Parse {
        location,
        key,
        message,
    }
}

/// An unknown top-level key is reported by serde as "unknown field `x`" with no path; make `x`
/// the key.
fn unknown_field(message: &str) -> Option<String> {
    message
        .strip_prefix("unknown field `")?
        .split('`')
        .next()
        .map(str::to_owned)
}
