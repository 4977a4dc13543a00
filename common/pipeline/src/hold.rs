//! The delay hold: the delay buffer's own ring of `delay.seconds` of frames (its slots are
//! [`crate::frames::FrameSlot`]s). How much memory the delay needs, and refusing a delay that
//! cannot fit.
//!
//! The delay buffer keeps `delay.seconds` of raw I420 frames in its own shared-memory ring. The
//! ring gets [`DRIFT_MARGIN`] more slots than the nominal rate needs (a webcam's real rate runs
//! a little fast or slow) plus [`HEADROOM_SECONDS`] of frames, so the frame due now is never the
//! one being overwritten.

use keymash_core::config::{ConfigError, DelayConfig, VideoConfig};
use keymash_shm::layout::{HEADER_SIZE, SLOT_ALIGN, SLOT_HEADER_SIZE};
use keymash_shm::RingGeometry;

use crate::frames::i420_len;

/// Extra fraction of slots for a camera that delivers faster than `video.fps`.
pub const DRIFT_MARGIN: f64 = 0.05;
/// Extra seconds of slots beyond the delay.
pub const HEADROOM_SECONDS: f64 = 1.0;
/// Slots of a pass-through buffer (`delay.seconds = 0`): enough to ride out a stall.
pub const PASS_THROUGH_SLOTS: usize = 8;
const MIB: u64 = 1 << 20;

/// Why a delay configuration was refused. Each names the configuration key to change
/// ([`DelayMemoryError::key`]); as a [`ConfigError`] it is the refusal `keymash check-config`
/// and every service report, word for word.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DelayMemoryError {
    #[error("`{}`: {}", self.key(), self.message())]
    InvalidDelay(f64),
    #[error("`{}`: {}", self.key(), self.message())]
    ZeroFrameRate,
    #[error("`{}`: {}", self.key(), self.message())]
    TooMuchMemory {
        seconds: f64,
        width: u32,
        height: u32,
        fps: u32,
        needed_mib: u64,
        max_mib: u32,
    },
    #[error("`{}`: {}", self.key(), self.message())]
    Unbuildable { seconds: f64, reason: String },
}

impl DelayMemoryError {
    /// The configuration key to change.
    pub fn key(&self) -> &'static str {
        match self {
            DelayMemoryError::ZeroFrameRate => "video.fps",
            DelayMemoryError::InvalidDelay(_)
            | DelayMemoryError::TooMuchMemory { .. }
            | DelayMemoryError::Unbuildable { .. } => "delay.seconds",
        }
    }

    /// What is wrong and what to do, without the key.
    pub fn message(&self) -> String {
        match self {
            DelayMemoryError::InvalidDelay(seconds) => {
                format!("must be a finite number >= 0, got {seconds}")
            }
            DelayMemoryError::ZeroFrameRate => "must be at least 1".to_owned(),
            DelayMemoryError::TooMuchMemory {
                seconds,
                width,
                height,
                fps,
                needed_mib,
                max_mib,
            } => format!(
                "{seconds} s at {width}x{height} and {fps} fps needs {needed_mib} MiB of shared memory, more \
                 than `delay.max_memory_mib` = {max_mib}: shorten the delay, lower the resolution or raise \
                 `delay.max_memory_mib`"
            ),
            DelayMemoryError::Unbuildable { seconds, reason } => {
                format!("{seconds} s gives a ring the shared-memory layer refuses: {reason}")
            }
        }
    }
}

impl From<DelayMemoryError> for ConfigError {
    fn from(e: DelayMemoryError) -> ConfigError {
        ConfigError::Invalid {
            location: "config".to_owned(),
            key: e.key(),
            message: e.message(),
        }
    }
}

/// The delay ring's shape and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayBudget {
    pub geometry: RingGeometry,
    /// The whole segment in bytes (header and slots), as it will sit in /dev/shm.
    pub segment_bytes: u64,
}

impl DelayBudget {
    /// The ring for `delay` at `video`'s size and rate, or why it is refused.
    pub fn for_config(video: &VideoConfig, delay: &DelayConfig) -> Result<Self, DelayMemoryError> {
        if !delay.seconds.is_finite() || delay.seconds < 0.0 {
            return Err(DelayMemoryError::InvalidDelay(delay.seconds));
        }
        if video.fps == 0 {
            return Err(DelayMemoryError::ZeroFrameRate);
        }
        let slot_size = i420_len(video.width, video.height);
        let slot_count = if delay.seconds == 0.0 {
            PASS_THROUGH_SLOTS
        } else {
            let fps = f64::from(video.fps);
            (delay.seconds * fps * (1.0 + DRIFT_MARGIN) + HEADROOM_SECONDS * fps).ceil() as usize
        };
        let segment_bytes = segment_bytes(slot_size, slot_count);
        let max_bytes = u64::from(delay.max_memory_mib) * MIB;
        if segment_bytes > max_bytes {
            return Err(DelayMemoryError::TooMuchMemory {
                seconds: delay.seconds,
                width: video.width,
                height: video.height,
                fps: video.fps,
                needed_mib: segment_bytes.div_ceil(MIB),
                max_mib: delay.max_memory_mib,
            });
        }
        let geometry = RingGeometry::new(slot_size.max(1), slot_count).map_err(|e| {
            DelayMemoryError::Unbuildable {
                seconds: delay.seconds,
                reason: e.to_string(),
            }
        })?;
        Ok(DelayBudget {
            geometry,
            segment_bytes,
        })
    }

    /// Seconds of video the ring holds at `fps` (more than the delay by the margins).
    pub fn seconds_held(&self, fps: u32) -> f64 {
        self.geometry.slot_count() as f64 / f64::from(fps.max(1))
    }

    pub fn mib(&self) -> f64 {
        self.segment_bytes as f64 / MIB as f64
    }
}

/// Bytes of a ring segment with `slot_count` slots of `slot_size`, as keymash-shm lays it out.
fn segment_bytes(slot_size: usize, slot_count: usize) -> u64 {
    let stride = SLOT_HEADER_SIZE as u64
        + (slot_size as u64).div_ceil(SLOT_ALIGN as u64) * SLOT_ALIGN as u64;
    HEADER_SIZE as u64 + stride.saturating_mul(slot_count as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(width: u32, height: u32, fps: u32) -> VideoConfig {
        VideoConfig { width, height, fps }
    }

    #[test]
    fn the_default_thirty_seconds_fit_the_default_limit() {
        let budget =
            DelayBudget::for_config(&VideoConfig::default(), &DelayConfig::default()).unwrap();
        assert_eq!(budget.geometry.slot_size(), 640 * 480 * 3 / 2);
        assert_eq!(
            budget.geometry.slot_count(),
            975,
            "30 s x 30 fps x 1.05 + 1 s"
        );
        // Stride 460800 + 64 bytes of slot header, plus the ring header.
        assert_eq!(budget.segment_bytes, 128 + 975 * 460_864);
        assert!(
            budget.mib() > 428.0 && budget.mib() < 429.0,
            "{} MiB",
            budget.mib()
        );
        assert!(budget.seconds_held(30) > 30.0);
    }

    #[test]
    fn sizes_follow_the_configuration() {
        let cases = [
            // (width, height, fps, seconds, slots)
            (320, 240, 30, 2.0, 93),
            (640, 480, 15, 10.0, 173),
            (1280, 720, 30, 1.0, 62),
            (640, 480, 30, 0.0, PASS_THROUGH_SLOTS),
        ];
        for (w, h, fps, seconds, slots) in cases {
            let delay = DelayConfig {
                seconds,
                max_memory_mib: 4096,
            };
            let budget = DelayBudget::for_config(&video(w, h, fps), &delay).unwrap();
            assert_eq!(
                budget.geometry.slot_count(),
                slots,
                "{w}x{h}@{fps} {seconds}s"
            );
            assert_eq!(budget.geometry.slot_size(), i420_len(w, h));
        }
    }

    #[test]
    fn a_delay_over_the_limit_is_refused_naming_both_keys() {
        let delay = DelayConfig {
            seconds: 120.0,
            max_memory_mib: 1024,
        };
        let err = DelayBudget::for_config(&VideoConfig::default(), &delay).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("delay.seconds") && text.contains("delay.max_memory_mib"),
            "{text}"
        );
        assert!(
            matches!(err, DelayMemoryError::TooMuchMemory { needed_mib, .. } if needed_mib > 1024)
        );
    }

    #[test]
    fn impossible_delays_are_refused() {
        for seconds in [-1.0, f64::NAN, f64::INFINITY] {
            let delay = DelayConfig {
                seconds,
                max_memory_mib: 1024,
            };
            let err = DelayBudget::for_config(&VideoConfig::default(), &delay).unwrap_err();
            assert!(
                err.to_string().contains("delay.seconds"),
                "{seconds}: {err}"
            );
        }
        let err =
            DelayBudget::for_config(&video(640, 480, 0), &DelayConfig::default()).unwrap_err();
        assert_eq!(err, DelayMemoryError::ZeroFrameRate);
    }
}
