//! keymash-media: the pure, sans-IO logic of the sender stages (capture, delay buffer, encoder,
//! net-tx). Nothing here reads a clock, opens a file or touches shared memory: time comes in as
//! `now_ns` (CLOCK_MONOTONIC nanoseconds, the clock of ring timestamps) and frames as buffers.
//!
//! - [`stamp`]: the machine-readable frame number + capture time drawn into a picture, readable
//!   back from a decoded frame after coding at quality 30 or more.
//! - [`scene`]: the synthetic camera-like moving test scene (with the stamp).
//! - [`card`]: the countdown card the delay buffer shows until it holds enough video.
//! - [`schedule`]: which held frame is due at `now` (capture time + delay).
//! - [`negotiate`]: picking YUYV or MJPEG at the configured size and rate from what a V4L2
//!   device offers and `capture.format`.
//! - [`controls`]: matching `[capture.controls]` to the V4L2 controls a camera offers, the
//!   order to set them in, and what to say about a value the camera refuses or changes.
//! - [`yuyv`]: a YUYV frame with any line stride to I420.
//! - [`mjpeg`]: an MJPEG frame decoded to studio-range I420.
//! - [`newest`]: the encoder's choice of the newest delayed frame.
//! - [`departure`]: when a frame has left net-tx (its last packet sent).
//! - [`backoff`]: retry timing for a camera that went away.
//! - [`reconnect`]: when to look for the camera again, by what failed (absent or refusing).
#![forbid(unsafe_code)]

pub mod backoff;
pub mod card;
pub mod controls;
pub mod departure;
pub mod mjpeg;
pub mod negotiate;
pub mod newest;
mod paint;
pub mod reconnect;
pub mod scene;
pub mod schedule;
pub mod stamp;
pub mod yuyv;

pub use backoff::Backoff;
pub use card::{render_awaiting_video, render_countdown};
pub use departure::{Departed, Departures};
pub use mjpeg::{MjpegDecoder, MjpegError};
pub use negotiate::{
    negotiate, CameraMode, Negotiated, NegotiationError, OfferedFormat, PixelFormat,
};
pub use newest::NewestFrame;
pub use reconnect::{Reconnect, Retry, Unusable};
pub use scene::SyntheticScene;
pub use schedule::{DelaySchedule, HeldFrames, Release, GAP_TOLERANCE_NS};
pub use stamp::{draw_stamp, read_stamp, Stamp};
pub use yuyv::{YuyvError, YuyvLayout};
