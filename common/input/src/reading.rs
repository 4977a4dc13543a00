//! How the mash cell's readers (net-rx, display, loss-controller) interpret what they read.

use keymash_core::MashLevel;
use keymash_pipeline::MashRecord;
pub use keymash_pipeline::MASH_STALE_AFTER;
use std::time::Duration;

/// How often net-rx reads the mash cell. Its loop sleeps on the socket, not on the cell's futex,
/// so this is a wait added to every change of the requested quality (which goes to the sender
/// at once, see `keymash_transport::QualityPush`): a small fraction of a frame interval at any
/// frame rate. A load is a copy of a few dozen bytes.
pub const MASH_READ_INTERVAL: Duration = Duration::from_millis(2);

/// The level to act on at `now_ns` (CLOCK_MONOTONIC): the record's, or idle once it is older
/// than [`MASH_STALE_AFTER`].
pub fn current_level(record: &MashRecord, now_ns: u64) -> MashLevel {
    record.level_at(now_ns).unwrap_or(MashLevel::IDLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_mash_level_reads_as_idle() {
        let level = MashLevel::new(0.7).unwrap();
        let record = MashRecord::new(level, 10, 100, 5_000_000_000);
        let table = [
            (5_000_000_000, level),
            (5_999_999_999, level),
            (6_000_000_001, MashLevel::IDLE),
            (0, level),
        ];
        for (now_ns, want) in table {
            assert_eq!(current_level(&record, now_ns), want, "at {now_ns}");
        }
    }
}
