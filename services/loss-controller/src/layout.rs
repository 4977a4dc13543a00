//! The Rust mirror of `ebpf/keymash_loss.h`: map names and the byte layout of map values.
//!
//! The map values cross into the kernel as plain byte or word arrays (which aya accepts as
//! `Pod` without any `unsafe` here); the `#[repr(C)]` records below are converted to and from
//! those arrays with zerocopy, and their sizes and offsets are asserted at compile time against
//! the same numbers the C header asserts with `_Static_assert`.

use core::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Name of the classifier function (and so of the kernel program and its tc filter).
pub const PROGRAM_NAME: &str = "keymash_loss";
/// `BPF_MAP_TYPE_ARRAY`, one entry of [`LossConfigRecord`].
pub const CONFIG_MAP: &str = "km_config";
/// `BPF_MAP_TYPE_PERCPU_ARRAY`, one entry of [`LossCounters`] per CPU.
pub const COUNTERS_MAP: &str = "km_counters";
/// `BPF_MAP_TYPE_ARRAY`, one entry: the Gilbert-Elliott chain's state (u32, 0 good, 1 bad).
pub const GE_STATE_MAP: &str = "km_ge_state";
/// Every map above has exactly one entry, at this key.
pub const ONLY_KEY: u32 = 0;

/// `KEYMASH_MODEL_PASS`: the filter drops nothing.
pub const MODEL_PASS: u32 = 0;
/// `KEYMASH_MODEL_BERNOULLI`: independent drops.
pub const MODEL_BERNOULLI: u32 = 1;
/// `KEYMASH_MODEL_GILBERT_ELLIOTT`: two-state burst loss with netem's gemodel meaning.
pub const MODEL_GILBERT_ELLIOTT: u32 = 2;

/// Size of `struct keymash_loss_config`.
pub const CONFIG_SIZE: usize = 40;
/// Size of `struct keymash_loss_counters`.
pub const COUNTERS_SIZE: usize = 24;

/// The config map's value as it travels through aya.
pub type ConfigMapValue = [u8; CONFIG_SIZE];
/// The counter map's per-CPU value as it travels through aya (seen, dropped, passed_expired).
pub type CountersMapValue = [u64; 3];
/// The Gilbert-Elliott state map's value.
pub type GeStateMapValue = u32;

/// `struct keymash_loss_config`: what the filter does with the video flow until `deadline_ns`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct LossConfigRecord {
    /// CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`) after which the filter passes everything.
    pub deadline_ns: u64,
    /// UDP destination port of the video flow, host order; 0 matches nothing.
    pub port: u16,
    pub reserved0: u16,
    /// One of the `MODEL_*` constants.
    pub model: u32,
    /// Bernoulli drop probability, fraction of 2^32 (`u32::MAX` = always).
    pub drop_fraction: u32,
    /// Gilbert-Elliott good -> bad per packet (netem p).
    pub ge_p: u32,
    /// Gilbert-Elliott bad -> good per packet (netem r).
    pub ge_r: u32,
    /// Gilbert-Elliott drop probability in the bad state (netem 1-h).
    pub ge_loss_bad: u32,
    /// Gilbert-Elliott drop probability in the good state (netem 1-k).
    pub ge_loss_good: u32,
    pub reserved1: u32,
}

const _: () = {
    assert!(size_of::<LossConfigRecord>() == CONFIG_SIZE);
    assert!(offset_of!(LossConfigRecord, deadline_ns) == 0);
    assert!(offset_of!(LossConfigRecord, port) == 8);
    assert!(offset_of!(LossConfigRecord, model) == 12);
    assert!(offset_of!(LossConfigRecord, drop_fraction) == 16);
    assert!(offset_of!(LossConfigRecord, ge_p) == 20);
    assert!(offset_of!(LossConfigRecord, ge_r) == 24);
    assert!(offset_of!(LossConfigRecord, ge_loss_bad) == 28);
    assert!(offset_of!(LossConfigRecord, ge_loss_good) == 32);
    assert!(size_of::<CountersMapValue>() == COUNTERS_SIZE);
    assert!(size_of::<GeStateMapValue>() == 4);
};

impl LossConfigRecord {
    /// The record as the bytes the kernel map stores.
    pub fn to_map_value(self) -> ConfigMapValue {
        zerocopy::transmute!(self)
    }

    /// A record read back from the kernel map.
    pub fn from_map_value(value: ConfigMapValue) -> Self {
        zerocopy::transmute!(value)
    }
}

/// `struct keymash_loss_counters`, summed over CPUs: kernel truth about the video flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LossCounters {
    /// Packets of the video flow the filter saw.
    pub seen: u64,
    /// Of those, packets it dropped.
    pub dropped: u64,
    /// Of those, packets it passed because the controller's deadline had expired.
    pub passed_expired: u64,
}

impl LossCounters {
    /// One CPU's value as stored in the map.
    pub fn from_map_value([seen, dropped, passed_expired]: CountersMapValue) -> Self {
        LossCounters {
            seen,
            dropped,
            passed_expired,
        }
    }

    /// Counts since `earlier` (wrapping-safe).
    pub fn since(self, earlier: LossCounters) -> Self {
        LossCounters {
            seen: self.seen.wrapping_sub(earlier.seen),
            dropped: self.dropped.wrapping_sub(earlier.dropped),
            passed_expired: self.passed_expired.wrapping_sub(earlier.passed_expired),
        }
    }
}

/// Sums two CPUs' counters (wrapping, as the kernel's u64 counters do).
impl core::ops::Add for LossCounters {
    type Output = LossCounters;

    fn add(self, other: LossCounters) -> LossCounters {
        LossCounters {
            seen: self.seen.wrapping_add(other.seen),
            dropped: self.dropped.wrapping_add(other.dropped),
            passed_expired: self.passed_expired.wrapping_add(other.passed_expired),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_record_bytes_follow_the_c_layout() {
        let record = LossConfigRecord {
            deadline_ns: 0x0102_0304_0506_0708,
            port: 0x1234,
            model: MODEL_GILBERT_ELLIOTT,
            drop_fraction: 0xa1a2_a3a4,
            ge_p: 5,
            ge_r: 6,
            ge_loss_bad: 7,
            ge_loss_good: 8,
            ..LossConfigRecord::default()
        };
        let bytes = record.to_map_value();
        let cases: [(usize, &[u8]); 8] = [
            (0, &0x0102_0304_0506_0708u64.to_ne_bytes()),
            (8, &0x1234u16.to_ne_bytes()),
            (12, &MODEL_GILBERT_ELLIOTT.to_ne_bytes()),
            (16, &0xa1a2_a3a4u32.to_ne_bytes()),
            (20, &5u32.to_ne_bytes()),
            (24, &6u32.to_ne_bytes()),
            (28, &7u32.to_ne_bytes()),
            (32, &8u32.to_ne_bytes()),
        ];
        for (offset, expected) in cases {
            assert_eq!(
                &bytes[offset..offset + expected.len()],
                expected,
                "field at offset {offset}"
            );
        }
        assert_eq!(LossConfigRecord::from_map_value(bytes), record);
    }

    #[test]
    fn counters_add_and_subtract_across_wraparound() {
        let a = LossCounters {
            seen: u64::MAX,
            dropped: 1,
            passed_expired: 0,
        };
        let b = LossCounters {
            seen: 2,
            dropped: 1,
            passed_expired: 3,
        };
        let sum = a + b;
        assert_eq!(
            sum,
            LossCounters {
                seen: 1,
                dropped: 2,
                passed_expired: 3
            }
        );
        assert_eq!(sum.since(a), b);
        assert_eq!(
            LossCounters::from_map_value([4, 5, 6]),
            LossCounters {
                seen: 4,
                dropped: 5,
                passed_expired: 6
            }
        );
    }
}
