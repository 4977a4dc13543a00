//! Shapes of the rings between the sender stages, derived from the video configuration so every
//! writer creates, and every reader expects, the same geometry.

use keymash_core::config::VideoConfig;
use keymash_shm::{GeometryError, RingGeometry};

use crate::memory::i420_len;

/// Raw and delayed frame rings hold this many seconds of frames (at least [`MIN_FRAME_SLOTS`]):
/// enough for a reader to ride out a scheduling hiccup; live video wants the newest frame.
pub const FRAME_RING_SECONDS: f64 = 0.5;
pub const MIN_FRAME_SLOTS: usize = 4;
/// Encoded frames the payload ring holds.
pub const PAYLOAD_SLOTS: usize = 16;

/// The raw-frame ring (capture -> delay buffer) and the delayed-frame ring (delay buffer ->
/// encoder): one I420 frame per slot.
pub fn frame_ring(video: &VideoConfig) -> Result<RingGeometry, GeometryError> {
    let slots = ((f64::from(video.fps) * FRAME_RING_SECONDS).ceil() as usize).max(MIN_FRAME_SLOTS);
    RingGeometry::new(i420_len(video.width, video.height), slots)
}

/// The payload ring (encoder -> net-tx): one encoded frame per slot (see [`crate::framing`]).
/// A slot holds twice the raw frame: intra coding of noise at quality 100 stays below 1.5 bytes
/// a pixel, and the payload framing adds 2 bytes per ~1.2 kB payload.
pub fn payload_ring(video: &VideoConfig) -> Result<RingGeometry, GeometryError> {
    RingGeometry::new(
        2 * i420_len(video.width, video.height) + 4096,
        PAYLOAD_SLOTS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_shapes_follow_the_video_size_and_rate() {
        let vga = VideoConfig {
            width: 640,
            height: 480,
            fps: 30,
        };
        assert_eq!(frame_ring(&vga).unwrap().slot_count(), 15);
        assert_eq!(frame_ring(&vga).unwrap().slot_size(), 460_800);
        let slow = VideoConfig {
            width: 320,
            height: 240,
            fps: 2,
        };
        assert_eq!(frame_ring(&slow).unwrap().slot_count(), MIN_FRAME_SLOTS);
        assert_eq!(payload_ring(&vga).unwrap().slot_size(), 2 * 460_800 + 4096);
    }
}
