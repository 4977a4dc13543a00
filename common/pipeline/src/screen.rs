//! The screen segment (display to keymash-web and keymash-archive): the picture the display
//! presents, one whole I420 picture per slot (the decoded stream picture, or the signal-lost
//! card while it shows; without the glow border and the HUD, which the page shows as figures),
//! and what it is: its frame number, when it was presented, the quality it was coded at and how
//! many of its payloads arrived.
//!
//! The display writes a slot per new frame (and once when the card first shows or changes); the
//! readers take the newest and never slow it: one writer, readers lapped as everywhere.

use keymash_core::config::VideoConfig;
use keymash_core::{FrameNo, Quality};
use keymash_shm::{FrameMeta, GeometryError, RingGeometry};

use crate::frames::{check_picture, i420_len, FrameSlotError, FOURCC_I420};

/// Slots of the screen ring: readers want the newest picture; three let one be read while the
/// next is written and a third be taken by a reader that was just lapped.
pub const SCREEN_SLOTS: usize = 3;

/// The `flags` bit of a slot that holds the signal-lost card.
const FLAG_CARD: u32 = 1;
/// Word 2's value for a picture whose quality is not known (the card, a frame with no payload).
const NO_QUALITY: u32 = 0;

/// The shape of the screen ring for `video`.
pub(crate) fn screen_ring(video: &VideoConfig) -> Result<RingGeometry, GeometryError> {
    RingGeometry::new(i420_len(video.width, video.height), SCREEN_SLOTS)
}

/// A screen slot's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenSlot {
    /// The newest stream frame applied to the picture (for the card: the last one before it).
    pub frame: FrameNo,
    /// CLOCK_MONOTONIC nanoseconds when the display presented it.
    pub presented_ns: u64,
    /// The quality the newest frame's payloads were coded at (the first payload's); `None` for
    /// the card.
    pub quality: Option<Quality>,
    /// Payloads of the newest frame that reached the display.
    pub payloads_arrived: u16,
    /// Payloads the sender coded that frame into.
    pub payloads_total: u16,
    /// The picture is the signal-lost card, not live video.
    pub card: bool,
}

impl ScreenSlot {
    /// The ring metadata of this slot holding a picture of `video`'s size.
    pub fn meta(&self, video: &VideoConfig) -> FrameMeta {
        let quality = self.quality.map_or(NO_QUALITY, |q| u32::from(q.get()));
        let payloads = u32::from(self.payloads_arrived) | (u32::from(self.payloads_total) << 16);
        FrameMeta::new(self.frame, self.presented_ns)
            .with_flags(if self.card { FLAG_CARD } else { 0 })
            .with_words([video.width, video.height, FOURCC_I420, quality, payloads])
    }

    /// Reads a slot's metadata, checking it against `video` and the slot's length `len`.
    pub fn read(meta: &FrameMeta, video: &VideoConfig, len: usize) -> Result<Self, FrameSlotError> {
        check_picture(meta, video, len)?;
        let [_, _, _, quality, payloads] = meta.words();
        Ok(ScreenSlot {
            frame: meta.frame(),
            presented_ns: meta.capture_ns(),
            quality: u8::try_from(quality)
                .ok()
                .and_then(|q| Quality::new(q).ok()),
            payloads_arrived: (payloads & 0xffff) as u16,
            payloads_total: (payloads >> 16) as u16,
            card: meta.flags() & FLAG_CARD != 0,
        })
    }
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
    fn a_screen_slot_round_trips_through_the_ring_metadata() {
        let live = ScreenSlot {
            frame: FrameNo(77),
            presented_ns: 123_456,
            quality: Some(Quality::new(63).unwrap()),
            payloads_arrived: 29,
            payloads_total: 31,
            card: false,
        };
        let card = ScreenSlot {
            quality: None,
            card: true,
            ..live
        };
        for slot in [live, card] {
            assert_eq!(ScreenSlot::read(&slot.meta(&VGA), &VGA, 460_800), Ok(slot));
        }
    }

    #[test]
    fn pictures_that_do_not_fit_the_pipeline_are_refused() {
        let slot = ScreenSlot {
            frame: FrameNo(1),
            presented_ns: 2,
            quality: None,
            payloads_arrived: 0,
            payloads_total: 0,
            card: true,
        };
        let qvga = VideoConfig {
            width: 320,
            height: 240,
            fps: 30,
        };
        assert!(matches!(
            ScreenSlot::read(&slot.meta(&VGA), &qvga, 115_200),
            Err(FrameSlotError::WrongSize { .. })
        ));
        assert!(matches!(
            ScreenSlot::read(&slot.meta(&VGA), &VGA, 3),
            Err(FrameSlotError::WrongLength { .. })
        ));
        assert_eq!(screen_ring(&VGA).unwrap().slot_count(), SCREEN_SLOTS);
    }
}
