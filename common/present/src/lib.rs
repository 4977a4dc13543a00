//! keymash-present: the pure logic of `keymash-display`, with no window, files or clocks.
//!
//! - [`playout`]: the playback cursor's timing. [`PlayoutQueue`] gathers received payloads by
//!   frame and releases each frame whole at its play time: its RTP timestamp plus a hold that
//!   follows the measured jitter (so network jitter does not show, at the least wait it
//!   allows); [`PresentClock`] says when to present again while no frame comes.
//! - [`compose`]: the picture as the exhibit shows it: the decoded frame fitted into the screen
//!   with its aspect kept, inside a border that glows green in proportion to the mash level
//!   (the original's cue that visitors are near the peak), and the optional one-line HUD.
//! - [`hud`]: the HUD's text and a tiny built-in 5x7 bitmap font to draw it with.
//! - [`rgb`]: I420 to RGB (BT.601, limited range) and binary PPM images for `frames:DIR`.
//! - [`y4m`]: the `y4m:PATH` stream, each picture tagged with its frame number.
//! - [`signal`]: [`SignalWatch`], live or signal lost (no frame for `display.signal_lost_ms`)
//!   and why, told from the other receiver stages' counters; [`card`]: the signal-lost card.
//! - [`camera_latency`]: [`CameraLatency`], camera-to-screen time for any camera from the
//!   sender's capture-age RTP header extension; [`delay_watch`]: [`DelayWatch`], whether the
//!   delay measured from it has strayed from `delay.seconds` for more than a few seconds.
//!
//! Time is always a parameter (`now`), as everywhere in keymash's `common/`.
#![forbid(unsafe_code)]

pub mod camera_latency;
pub mod card;
pub mod compose;
pub mod delay_watch;
pub mod hud;
pub mod playout;
pub mod rgb;
pub mod signal;
pub mod y4m;

pub use camera_latency::{CameraLatency, FrameAge};
pub use card::{card_layout, compose_card, CARD_DIM_MAX_LUMA};
pub use compose::{
    compose_headless, fit_inside, glow_rgb, headless_canvas, inside_border, picture_of_headless,
    rgb_to_ycbcr, stamp_hud, Rect,
};
pub use delay_watch::{DelayChange, DelayWatch, DELAY_OFF_PATIENCE};
pub use hud::{draw_text, text_width, HudFigures, GLYPH_HEIGHT, GLYPH_WIDTH};
pub use playout::{
    PayloadTiming, PlayoutBounds, PlayoutQueue, PlayoutStats, PresentClock, PushError,
    ReleasedFrame,
};
pub use rgb::{i420_to_rgb, write_ppm};
pub use signal::{Evidence, FilterCounters, LostReason, SignalState, SignalWatch};
pub use y4m::{frame_tag, is_card, Y4mStream, CARD_TAG};
