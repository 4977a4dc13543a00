//! The raw-frame ring (capture to delay buffer), the delay hold and the delayed-frame ring (delay
//! buffer to encoder): one whole I420 frame per slot (Y, then U, then V, rows packed). Capture
//! converts the camera's format once, so the delay buffer holds 1.5 bytes per pixel and the
//! encoder reads its input format directly.
//!
//! A slot is described by a [`FrameSlot`]: the frame number, the CLOCK_MONOTONIC capture time
//! and whether it is camera video or the countdown card. In the ring's metadata the slot also
//! carries its width, height and FourCC, which a reader checks against its own configuration
//! before it touches the pixels: a frame of another size (a writer still on an older
//! configuration) is refused by name, never misread.
//!
//! Delayed frames are numbered by the delayed ring's own sequence (so the numbers the encoder and
//! the receiver see never go back, even across restarts of capture or the delay buffer) and keep
//! the capture time of the frame they show.

use keymash_core::config::VideoConfig;
use keymash_core::FrameNo;
use keymash_shm::{FrameMeta, GeometryError, RingGeometry};

/// FourCC of planar 4:2:0 as a little-endian word.
pub const FOURCC_I420: u32 = u32::from_le_bytes(*b"I420");

/// Raw and delayed frame rings hold this many seconds of frames (at least [`MIN_FRAME_SLOTS`]):
/// enough for a reader to ride out a scheduling hiccup; live video wants the newest frame.
pub const FRAME_RING_SECONDS: f64 = 0.5;
/// The fewest slots a frame ring has, whatever the frame rate.
pub const MIN_FRAME_SLOTS: usize = 4;

/// The `flags` bit of a slot that holds the countdown card.
const FLAG_COUNTDOWN: u32 = 1;

/// Bytes of one I420 frame (Y plane plus two quarter-size chroma planes).
pub fn i420_len(width: u32, height: u32) -> usize {
    let (w, h) = (width as usize, height as usize);
    w * h + 2 * (w.div_ceil(2) * h.div_ceil(2))
}

/// The shape of the raw-frame and delayed-frame rings for `video`.
pub(crate) fn frame_ring(video: &VideoConfig) -> Result<RingGeometry, GeometryError> {
    let slots = ((f64::from(video.fps) * FRAME_RING_SECONDS).ceil() as usize).max(MIN_FRAME_SLOTS);
    RingGeometry::new(i420_len(video.width, video.height), slots)
}

/// What a frame slot shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A picture from the camera (or the synthetic scene, or a file).
    Video,
    /// A card the delay buffer made: the countdown until it holds enough video, or the waiting
    /// card while no video arrives.
    Countdown,
}

impl FrameKind {
    /// What a frame slot with metadata `meta` shows, without checking its size (a writer looking
    /// back at its own last slot).
    pub fn of(meta: &FrameMeta) -> Self {
        Self::from_flags(meta.flags())
    }

    pub(crate) fn flags(self) -> u32 {
        match self {
            FrameKind::Video => 0,
            FrameKind::Countdown => FLAG_COUNTDOWN,
        }
    }

    pub(crate) fn from_flags(flags: u32) -> Self {
        if flags & FLAG_COUNTDOWN == 0 {
            FrameKind::Video
        } else {
            FrameKind::Countdown
        }
    }
}

/// A frame slot's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSlot {
    pub frame: FrameNo,
    /// CLOCK_MONOTONIC nanoseconds of the capture (for the countdown card: when it was drawn).
    pub capture_ns: u64,
    pub kind: FrameKind,
}

/// A frame slot that does not hold a frame this pipeline can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameSlotError {
    #[error("slot holds FourCC {0:#010x}, not I420")]
    NotI420(u32),
    #[error("slot holds a {got_width}x{got_height} frame, the pipeline is configured for {width}x{height}")]
    WrongSize {
        width: u32,
        height: u32,
        got_width: u32,
        got_height: u32,
    },
    #[error("slot holds {got} bytes, a {width}x{height} I420 frame has {expected}")]
    WrongLength {
        width: u32,
        height: u32,
        expected: usize,
        got: usize,
    },
}

impl FrameSlot {
    /// A camera frame.
    pub fn video(frame: FrameNo, capture_ns: u64) -> Self {
        FrameSlot {
            frame,
            capture_ns,
            kind: FrameKind::Video,
        }
    }

    /// The ring metadata of this slot holding a frame of `video`'s size.
    pub fn meta(&self, video: &VideoConfig) -> FrameMeta {
        FrameMeta::new(self.frame, self.capture_ns)
            .with_flags(self.kind.flags())
            .with_words([video.width, video.height, FOURCC_I420, 0, 0])
    }

    /// Reads a slot's metadata, checking it against `video` and the slot's length `len`.
    pub fn read(meta: &FrameMeta, video: &VideoConfig, len: usize) -> Result<Self, FrameSlotError> {
        check_picture(meta, video, len)?;
        Ok(FrameSlot {
            frame: meta.frame(),
            capture_ns: meta.capture_ns(),
            kind: FrameKind::from_flags(meta.flags()),
        })
    }
}

/// Checks that a slot with metadata `meta` (words 0-2: width, height, FourCC) and length `len`
/// holds a whole I420 picture of `video`'s size, before anyone reads its pixels.
pub(crate) fn check_picture(
    meta: &FrameMeta,
    video: &VideoConfig,
    len: usize,
) -> Result<(), FrameSlotError> {
    let [got_width, got_height, fourcc, ..] = meta.words();
    if fourcc != FOURCC_I420 {
        return Err(FrameSlotError::NotI420(fourcc));
    }
    let (width, height) = (video.width, video.height);
    if (got_width, got_height) != (width, height) {
        return Err(FrameSlotError::WrongSize {
            width,
            height,
            got_width,
            got_height,
        });
    }
    let expected = i420_len(width, height);
    if len != expected {
        return Err(FrameSlotError::WrongLength {
            width,
            height,
            expected,
            got: len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VGA: VideoConfig = VideoConfig {
        width: 640,
        height: 480,
        fps: 30,
    };

    #[test]
    fn a_frame_slot_round_trips_through_the_ring_metadata() {
        for kind in [FrameKind::Video, FrameKind::Countdown] {
            let slot = FrameSlot {
                frame: FrameNo((7 << 32) | 9),
                capture_ns: 12,
                kind,
            };
            assert_eq!(FrameSlot::read(&slot.meta(&VGA), &VGA, 460_800), Ok(slot));
        }
    }

    #[test]
    fn frames_that_do_not_fit_the_pipeline_are_refused() {
        let meta = FrameSlot::video(FrameNo(1), 2).meta(&VGA);
        let qvga = VideoConfig {
            width: 320,
            height: 240,
            fps: 30,
        };
        assert!(matches!(
            FrameSlot::read(&meta, &qvga, 115_200),
            Err(FrameSlotError::WrongSize { .. })
        ));
        assert!(matches!(
            FrameSlot::read(&meta, &VGA, 100),
            Err(FrameSlotError::WrongLength { .. })
        ));
        let mut words = meta.words();
        words[2] = u32::from_le_bytes(*b"YUYV");
        assert!(matches!(
            FrameSlot::read(&meta.with_words(words), &VGA, 460_800),
            Err(FrameSlotError::NotI420(_))
        ));
    }

    #[test]
    fn ring_shapes_follow_the_video_size_and_rate() {
        assert_eq!(frame_ring(&VGA).unwrap().slot_count(), 15);
        assert_eq!(frame_ring(&VGA).unwrap().slot_size(), 460_800);
        let slow = VideoConfig {
            width: 320,
            height: 240,
            fps: 2,
        };
        assert_eq!(frame_ring(&slow).unwrap().slot_count(), MIN_FRAME_SLOTS);
        assert_eq!(i420_len(3, 3), 9 + 2 * 4);
    }
}
