//! How the mash cell's readers (net-rx, display, loss-controller) interpret what they read.

use std::time::Duration;

use keymash_core::pipeline::MashRecord;
use keymash_core::MashLevel;

/// A mash level older than this counts as nobody mashing: if mash-input has died, the picture
/// must not stay stuck at whatever quality it had (systemd restarts mash-input well within it,
/// and mash-input publishes at 50 Hz or more, so a live cell is never this old).
pub const MASH_STALE_AFTER: Duration = Duration::from_secs(1);

/// The level to act on at `now_ns` (CLOCK_MONOTONIC): the record's, or idle if it is stale.
pub fn current_level(record: &MashRecord, now_ns: u64) -> MashLevel {
    let age_ns = now_ns.saturating_sub(record.updated_ns());
    if u128::from(age_ns) > MASH_STALE_AFTER.as_nanos() {
        MashLevel::IDLE
    } else {
        record.level()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_mash_level_reads_as_idle() {
        let level = MashLevel::new(0.7).unwrap();
        let record = MashRecord::new(level, 10, 100, 5_000_000_000);
        let table = [(5_000_000_000, level), (5_999_999_999, level), (6_000_000_001, MashLevel::IDLE), (0, level)];
        for (now_ns, want) in table {
            assert_eq!(current_level(&record, now_ns), want, "at {now_ns}");
        }
    }
}
