//! How the raw-frame and delayed-frame rings describe their frames.
//!
//! Both rings carry whole I420 frames (Y, then U, then V, rows packed): capture converts the
//! camera's YUYV once, so the delay buffer holds 1.5 bytes per pixel instead of 2 and the
//! encoder reads its input format directly. A slot's [`keymash_shm::FrameMeta`] holds the frame
//! number and CLOCK_MONOTONIC capture time; its application words say what is in the slot:
//!
//! | word | meaning |
//! |---|---|
//! | 0 | width in pixels |
//! | 1 | height in pixels |
//! | 2 | FourCC, [`FOURCC_I420`] |
//! | 3, 4 | the capture frame number (low, high 32 bits); on raw frames the same as the frame number |
//!
//! Delayed frames are numbered by the delayed ring's own sequence (so the numbers the encoder and
//! receiver see never go back, even across restarts of capture or the delay buffer), keep the
//! capture time of the frame they show, and carry [`FLAG_COUNTDOWN`] when they are the
//! countdown card rather than video.

use keymash_core::FrameNo;
use keymash_shm::FrameMeta;

/// FourCC of planar 4:2:0 as a little-endian word.
pub const FOURCC_I420: u32 = u32::from_le_bytes(*b"I420");

/// Flag on a delayed frame that is the countdown card, not camera video.
pub const FLAG_COUNTDOWN: u32 = 1;

/// Words of a frame's metadata that do not describe a frame this pipeline can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawFrameInfoError {
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

/// What a raw or delayed frame slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFrameInfo {
    pub width: u32,
    pub height: u32,
    pub capture_frame: FrameNo,
}

impl RawFrameInfo {
    pub fn words(&self) -> [u32; FrameMeta::WORDS] {
        let frame = self.capture_frame.0;
        [
            self.width,
            self.height,
            FOURCC_I420,
            frame as u32,
            (frame >> 32) as u32,
        ]
    }

    /// Reads the words of `meta` and checks them against the configured size and the slot's
    /// payload length.
    pub fn check(
        meta: &FrameMeta,
        width: u32,
        height: u32,
        len: usize,
    ) -> Result<Self, RawFrameInfoError> {
        let [got_width, got_height, fourcc, lo, hi] = meta.words();
        if fourcc != FOURCC_I420 {
            return Err(RawFrameInfoError::NotI420(fourcc));
        }
        if (got_width, got_height) != (width, height) {
            return Err(RawFrameInfoError::WrongSize {
                width,
                height,
                got_width,
                got_height,
            });
        }
        let expected = crate::memory::i420_len(width, height);
        if len != expected {
            return Err(RawFrameInfoError::WrongLength {
                width,
                height,
                expected,
                got: len,
            });
        }
        Ok(RawFrameInfo {
            width,
            height,
            capture_frame: FrameNo(u64::from(lo) | (u64::from(hi) << 32)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_info_round_trips_through_the_metadata_words() {
        let info = RawFrameInfo {
            width: 640,
            height: 480,
            capture_frame: FrameNo((7 << 32) | 9),
        };
        let meta = FrameMeta::new(FrameNo(1), 2).with_words(info.words());
        assert_eq!(RawFrameInfo::check(&meta, 640, 480, 460_800), Ok(info));
    }

    #[test]
    fn frames_that_do_not_fit_the_pipeline_are_refused() {
        let info = RawFrameInfo {
            width: 640,
            height: 480,
            capture_frame: FrameNo(1),
        };
        let meta = FrameMeta::new(FrameNo(1), 2).with_words(info.words());
        assert!(matches!(
            RawFrameInfo::check(&meta, 320, 240, 115_200),
            Err(RawFrameInfoError::WrongSize { .. })
        ));
        assert!(matches!(
            RawFrameInfo::check(&meta, 640, 480, 100),
            Err(RawFrameInfoError::WrongLength { .. })
        ));
        let mut words = info.words();
        words[2] = u32::from_le_bytes(*b"YUYV");
        let meta = FrameMeta::new(FrameNo(1), 2).with_words(words);
        assert!(matches!(
            RawFrameInfo::check(&meta, 640, 480, 460_800),
            Err(RawFrameInfoError::NotI420(_))
        ));
    }
}
