//! keymash-media: the pure, sans-IO logic of the sender stages (capture, delay buffer, encoder,
//! net-tx). Nothing here reads a clock, opens a file or touches shared memory: time comes in as
//! `now_ns` (CLOCK_MONOTONIC nanoseconds, the clock of ring timestamps) and frames as buffers.
//!
//! - [`stamp`]: the machine-readable frame number + capture time drawn into a picture, readable
//!   back from a decoded frame after coding at quality 30 or more.
//! - [`scene`]: the synthetic camera-like moving test scene (with the stamp).
//! - [`card`]: the countdown card the delay buffer shows until it holds enough video.
//! - [`schedule`]: which held frame is due at `now` (capture time + delay).
//! - [`memory`]: the delay ring's size for `delay.seconds`, refused above `delay.max_memory_mib`.
//! - [`negotiate`]: picking YUYV at the configured size and rate from what a V4L2 device offers.
//! - [`raw`]: how raw and delayed frames are described in the rings' metadata words.
//! - [`framing`]: one encoded frame's payloads packed into one payload-ring slot.
//! - [`rings`]: the shapes of the raw, delayed and payload rings.
//! - [`backoff`]: retry timing for a camera that went away.
//! - [`transport_settings`]: the transport settings from `[transport]`, `video.fps`, `codec.quality`.
//! - [`percentile`]: p50/p99 over a sliding window, for encode time and latency statistics.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod card;
pub mod font;
pub mod framing;
pub mod memory;
pub mod negotiate;
mod paint;
pub mod percentile;
pub mod raw;
pub mod rings;
pub mod scene;
pub mod schedule;
pub mod stamp;
pub mod transport_settings;

pub use backoff::Backoff;
pub use card::render_countdown;
pub use framing::{pack_payloads, FramingError, PackedPayloads};
pub use memory::{DelayBudget, DelayMemoryError};
pub use negotiate::{negotiate_yuyv, CameraMode, Negotiated, NegotiationError, OfferedFormat};
pub use percentile::Percentiles;
pub use raw::{RawFrameInfo, RawFrameInfoError};
pub use scene::SyntheticScene;
pub use schedule::{DelaySchedule, HeldFrames, Release};
pub use stamp::{draw_stamp, read_stamp, Stamp};
pub use transport_settings::{transport_settings, TransportSettingsError};
