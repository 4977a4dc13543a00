//! The values of the pipeline's cells: the mash level (mash-input to loss-controller, display
//! and net-rx) and the requested quality (net-tx to the encoder). Plain data that any byte
//! pattern is valid for; readers go through the accessors, which sanitise.

use std::time::Duration;

use keymash_core::units::{MashLevel, Quality};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A mash level older than this counts as nobody mashing: if mash-input dies or hangs, the
/// picture and the loss must not stay stuck wherever the crowd left them. mash-input publishes
/// at 50 Hz or more and systemd restarts it within a second or two, so a live cell is never
/// this old.
pub const MASH_STALE_AFTER: Duration = Duration::from_secs(1);

/// The mash cell's value: how hard visitors are mashing, written by mash-input at 50 Hz or more.
/// Plain data that any byte pattern is valid for; readers go through the accessors, which
/// sanitise (a NaN level reads as idle).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct MashRecord {
    level: f32,
    /// Key presses currently inside the mash window.
    presses_in_window: u32,
    /// Key presses since mash-input started.
    presses_total: u64,
    /// CLOCK_MONOTONIC nanoseconds of this update.
    updated_ns: u64,
}

const _: () = assert!(size_of::<MashRecord>() == 24);

impl MashRecord {
    pub fn new(
        level: MashLevel,
        presses_in_window: u32,
        presses_total: u64,
        updated_ns: u64,
    ) -> Self {
        MashRecord {
            level: level.get(),
            presses_in_window,
            presses_total,
            updated_ns,
        }
    }

    pub fn level(&self) -> MashLevel {
        MashLevel::saturating(self.level)
    }

    /// The level to act on at `now_ns` (CLOCK_MONOTONIC), or `None` once the record is older
    /// than [`MASH_STALE_AFTER`].
    pub fn level_at(&self, now_ns: u64) -> Option<MashLevel> {
        let age = now_ns.saturating_sub(self.updated_ns);
        (u128::from(age) <= MASH_STALE_AFTER.as_nanos()).then(|| self.level())
    }

    pub fn presses_in_window(&self) -> u32 {
        self.presses_in_window
    }

    pub fn presses_total(&self) -> u64 {
        self.presses_total
    }

    pub fn updated_ns(&self) -> u64 {
        self.updated_ns
    }
}

/// The quality cell's value: the quality the encoder should use now, written by net-tx from the
/// receiver's feedback (or its configured default when the feedback falls silent).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct QualityRecord {
    /// 1..=100; anything else means "no request" and the encoder uses its configured quality.
    quality: u32,
    /// 1 while the value comes from live receiver feedback, 0 for the fallback default.
    from_receiver: u32,
    /// CLOCK_MONOTONIC nanoseconds of this update.
    updated_ns: u64,
}

const _: () = assert!(size_of::<QualityRecord>() == 16);

impl QualityRecord {
    pub fn new(quality: Quality, from_receiver: bool, updated_ns: u64) -> Self {
        QualityRecord {
            quality: u32::from(quality.get()),
            from_receiver: u32::from(from_receiver),
            updated_ns,
        }
    }

    /// The requested quality, or `None` if the cell holds no valid request.
    pub fn quality(&self) -> Option<Quality> {
        u8::try_from(self.quality)
            .ok()
            .and_then(|q| Quality::new(q).ok())
    }

    pub fn from_receiver(&self) -> bool {
        self.from_receiver == 1
    }

    pub fn updated_ns(&self) -> u64 {
        self.updated_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_records_sanitise_what_they_read() {
        let garbage = MashRecord::read_from_bytes(&[0xff; 24]).unwrap();
        assert_eq!(garbage.level(), MashLevel::IDLE, "NaN must read as idle");
        let q = QualityRecord::read_from_bytes(&[0xff; 16]).unwrap();
        assert_eq!(q.quality(), None);
        let q = QualityRecord::new(Quality::new(77).unwrap(), true, 5);
        assert_eq!(q.quality().map(Quality::get), Some(77));
        assert!(q.from_receiver());
        let m = MashRecord::new(MashLevel::new(0.5).unwrap(), 3, 9, 1);
        assert_eq!(m.level().get(), 0.5);
    }

    #[test]
    fn a_mash_record_goes_stale_after_one_second() {
        let m = MashRecord::new(MashLevel::new(0.5).unwrap(), 3, 9, 1_000_000_000);
        assert_eq!(
            m.level_at(1_500_000_000),
            Some(MashLevel::new(0.5).unwrap())
        );
        assert_eq!(
            m.level_at(2_000_000_000),
            Some(MashLevel::new(0.5).unwrap())
        );
        assert_eq!(m.level_at(2_000_000_001), None);
        // A record from the future (clock oddities) is fresh, not stale.
        assert!(m.level_at(0).is_some());
    }
}
