//! Room in `/dev/shm`: how much the tmpfs holds, how much is free, and whether a segment fits
//! before it is created (`keymash status`, `keymash check-config --memory` and every writer).
//!
//! A segment's pages are reserved when it is created (see [`crate::RingWriter::open`]); this
//! module answers the question asked just before: is there room for it at all? Asking first
//! gives the operator a message naming the segment and both byte counts instead of a bare
//! `ENOSPC`; the reservation stays the authority when two writers race for the last pages.

use std::os::unix::fs::MetadataExt;

use crate::name::{Prefix, SegmentId, SHM_DIR};

/// Size and use of the filesystem holding `/dev/shm` (statvfs), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmSpace {
    /// Allocation unit (`f_frsize`; the page size on tmpfs): a segment occupies whole blocks.
    pub block_size: u64,
    /// Capacity; 0 for a tmpfs mounted without a size limit (`size=0`), which reports no blocks.
    pub total_bytes: u64,
    pub used_bytes: u64,
    /// What an unprivileged writer may still allocate (`f_bavail`).
    pub available_bytes: u64,
}

impl ShmSpace {
    /// The filesystem holding `/dev/shm` now.
    pub fn now() -> std::io::Result<ShmSpace> {
        Self::of(SHM_DIR)
    }

    /// The filesystem holding `path` now.
    pub fn of(path: &str) -> std::io::Result<ShmSpace> {
        let fs = crate::os::filesystem_blocks(path).map_err(std::io::Error::from)?;
        let block = fs.block_size;
        Ok(ShmSpace {
            block_size: block,
            total_bytes: fs.blocks.saturating_mul(block),
            used_bytes: fs.blocks.saturating_sub(fs.free).saturating_mul(block),
            available_bytes: fs.available.saturating_mul(block),
        })
    }

    /// Whether the filesystem reports no capacity at all (tmpfs `size=0`: bounded only by memory),
    /// so there is no free-space figure to check against.
    pub fn is_unlimited(&self) -> bool {
        self.total_bytes == 0
    }

    /// Bytes a file of `len` bytes occupies once every page is allocated: `len` rounded up to
    /// whole blocks.
    pub fn occupied_by(&self, len: u64) -> u64 {
        let block = self.block_size.max(1);
        len.div_ceil(block).saturating_mul(block)
    }

    /// Whether `len` more bytes can be allocated.
    pub fn fits(&self, len: u64) -> bool {
        self.is_unlimited() || self.occupied_by(len) <= self.available_bytes
    }

    /// `Ok` if a new segment of `len` bytes fits, else the figures for [`NoSpace`].
    pub fn check(&self, segment: &SegmentId, len: u64) -> Result<(), NoSpace> {
        if self.fits(len) {
            Ok(())
        } else {
            Err(NoSpace {
                segment: segment.to_string(),
                needed: self.occupied_by(len),
                available: self.available_bytes,
            })
        }
    }
}

/// A segment that does not fit the free space of `/dev/shm`: which one, the bytes it needs
/// (whole pages) and the bytes available. Carried by [`crate::OpenError::NoSpace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSpace {
    pub segment: String,
    pub needed: u64,
    pub available: u64,
}

/// What the segments under one prefix occupy in `/dev/shm` (for `keymash status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefixUsage {
    pub segments: usize,
    /// Sum of the files' lengths.
    pub bytes: u64,
    /// Sum of what the filesystem allocated to them (whole pages, holes not counted).
    pub allocated_bytes: u64,
}

/// Adds up `/dev/shm/<prefix>.*`. A file removed while it is being looked at is skipped.
pub fn prefix_usage(prefix: &Prefix) -> std::io::Result<PrefixUsage> {
    let mut usage = PrefixUsage::default();
    for id in crate::name::segment_ids(prefix)? {
        let Ok(meta) = std::fs::metadata(id.path()) else {
            continue;
        };
        usage.segments += 1;
        usage.bytes = usage.bytes.saturating_add(meta.len());
        usage.allocated_bytes = usage
            .allocated_bytes
            .saturating_add(meta.blocks().saturating_mul(512));
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::SegmentName;

    const MIB: u64 = 1 << 20;

    fn space(total: u64, available: u64) -> ShmSpace {
        ShmSpace {
            block_size: 4096,
            total_bytes: total,
            used_bytes: total - available,
            available_bytes: available,
        }
    }

    fn id() -> SegmentId {
        SegmentId::new(
            Prefix::new("keymash").expect("prefix"),
            SegmentName::new("delay-hold").expect("name"),
        )
    }

    #[test]
    fn a_segment_fits_up_to_the_last_free_page() {
        let s = space(64 * MIB, 8 * MIB);
        assert!(s.fits(8 * MIB));
        assert!(s.fits(8 * MIB - 4095));
        assert!(!s.fits(8 * MIB + 1), "a partial page takes a whole one");
        assert!(s.check(&id(), 8 * MIB).is_ok());
    }

    #[test]
    fn lengths_are_counted_in_whole_pages() {
        let s = space(64 * MIB, 0);
        assert_eq!(s.occupied_by(0), 0);
        assert_eq!(s.occupied_by(1), 4096);
        assert_eq!(s.occupied_by(128 + 1024), 4096);
        assert_eq!(s.occupied_by(4097), 8192);
        // Saturates, never wraps to a small figure that would pass the check.
        assert_eq!(s.occupied_by(u64::MAX), u64::MAX);
    }

    #[test]
    fn not_enough_room_names_the_segment_and_both_byte_counts() {
        let s = space(256 * MIB, 10 * MIB);
        let err = s.check(&id(), 449_355_328).expect_err("does not fit");
        assert_eq!(
            err,
            NoSpace {
                segment: "/dev/shm/keymash.delay-hold".to_owned(),
                needed: 449_355_776,
                available: 10 * MIB,
            }
        );
        let text = crate::OpenError::from(err).to_string();
        for part in [
            "/dev/shm/keymash.delay-hold",
            "449355776",
            "10485760",
            "/dev/shm",
        ] {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
    }

    #[test]
    fn a_tmpfs_without_a_size_limit_refuses_nothing() {
        let s = ShmSpace {
            block_size: 4096,
            total_bytes: 0,
            used_bytes: 0,
            available_bytes: 0,
        };
        assert!(s.is_unlimited());
        assert!(s.fits(64 << 30));
    }

    #[test]
    fn the_real_dev_shm_is_read() {
        let s = ShmSpace::now().expect("statvfs /dev/shm");
        assert!(s.block_size >= 512);
        assert!(s.is_unlimited() || s.available_bytes <= s.total_bytes);
        assert!(s.used_bytes <= s.total_bytes);
    }
}
