//! Cells: one-value segments (mash level, quality, per-service statistics).
//!
//! The header's `write_seq` is the cell's seqlock word: even when stable, odd while a store is in
//! progress, `word / 2` = the number of completed stores (the value's *version*). Readers copy the
//! value and accept it only if the word was even and unchanged around the copy, so they never see
//! a torn value; a writer killed mid-store leaves the word odd, which readers report as
//! [`LoadError::Inconsistent`] until the restarted writer's next store.

use std::marker::PhantomData;
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::layout::HEADER_SIZE;
use crate::name::SegmentId;
use crate::os::{self, FutexWait, Permissions};
use crate::ring::Deadline;
use crate::segment::{Attach, OpenError, Segment, Shape};
use crate::ProducerInfo;

/// Values a cell can hold: fixed-size plain data for which every byte pattern is valid.
pub trait CellValue: FromBytes + IntoBytes + Immutable + KnownLayout {}
impl<T: FromBytes + IntoBytes + Immutable + KnownLayout> CellValue for T {}

/// Attempts [`CellReader::load`] makes before giving up on a value that keeps changing (or a
/// writer that died mid-store). A store takes well under a microsecond; after the first few
/// spins the reader yields its CPU, so this bound spans milliseconds, not a busy second.
pub const LOAD_ATTEMPTS: u32 = 1_000;
const SPINS_BEFORE_YIELD: u32 = 16;

/// The writing end of a cell; one per cell at a time.
#[derive(Debug)]
pub struct CellWriter<T> {
    segment: Segment,
    _value: PhantomData<fn(&T)>,
}

impl<T: CellValue> CellWriter<T> {
    /// Creates the cell, or re-attaches to an existing cell holding a value of the same size.
    /// A newly created cell holds no value until the first [`CellWriter::store`].
    pub fn open(
        id: &SegmentId,
        permissions: Permissions,
    ) -> Result<(CellWriter<T>, Attach), OpenError> {
        let (segment, attach) = Segment::open_writer(id, Shape::cell(size_of::<T>()), permissions)?;
        segment.claim_producer();
        Ok((
            CellWriter {
                segment,
                _value: PhantomData,
            },
            attach,
        ))
    }

    /// The length of the segment file [`CellWriter::open`] creates (and reserves) for a `T`, in
    /// bytes: the header and the value.
    pub fn segment_bytes() -> u64 {
        // A value too large for a segment is refused by `open`; 0 says "no such segment" here.
        Shape::cell(size_of::<T>())
            .segment_len()
            .map_or(0, |len| len as u64)
    }

    /// Publishes `value`, bumps the heartbeat and wakes readers waiting for a change.
    pub fn store(&mut self, value: &T) {
        let header = self.segment.header();
        // We are the only writer, so nobody else moves the word; `| 1` also recovers from a
        // predecessor killed mid-store (word left odd).
        let writing = header.write_seq.load(Ordering::Relaxed) | 1;
        header.write_seq.store(writing, Ordering::Relaxed);
        // Orders the odd word before the value bytes (seqlock writer side).
        fence(Ordering::Release);
        let bytes = value.as_bytes();
        if let Some(dst) = self.segment.map.ptr_at(HEADER_SIZE, bytes.len()) {
            // SAFETY: `dst` addresses `size_of::<T>()` bytes inside our writable mapping (bounds
            // checked by ptr_at); `bytes` is a private value, so the ranges are disjoint.
            unsafe { os::copy_to_shared(bytes.as_ptr(), dst, bytes.len()) };
        }
        header
            .write_seq
            .store(writing.wrapping_add(1), Ordering::Release);
        header
            .producer_heartbeat_ns
            .store(os::monotonic_now_ns(), Ordering::Release);
        self.segment.wake_readers();
    }

    /// Refreshes the heartbeat without changing the value (for writers with nothing new to say).
    pub fn heartbeat(&self) {
        self.segment
            .header()
            .producer_heartbeat_ns
            .store(os::monotonic_now_ns(), Ordering::Release);
    }
}

/// Reading a cell failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("the cell has never been stored to")]
    NeverStored,
    #[error("the value kept changing or stayed half-written over {attempts} attempts")]
    Inconsistent { attempts: u32 },
}

/// Waiting for a cell to change failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    #[error("the value did not change within the timeout")]
    TimedOut,
    #[error("futex wait failed: {0}")]
    Wait(Errno),
}

/// The reading end of a cell.
#[derive(Debug)]
pub struct CellReader<T> {
    segment: Segment,
    _value: PhantomData<fn() -> T>,
}

impl<T: CellValue> CellReader<T> {
    /// Opens an existing cell read-only; its value size must be `size_of::<T>()`.
    pub fn open(id: &SegmentId) -> Result<CellReader<T>, OpenError> {
        let segment = Segment::open_reader(id, Some(Shape::cell(size_of::<T>())))?;
        Ok(CellReader {
            segment,
            _value: PhantomData,
        })
    }

    /// The current value.
    pub fn load(&self) -> Result<T, LoadError> {
        self.load_versioned().map(|(value, _version)| value)
    }

    /// The current value and its version (number of stores so far), for change detection.
    pub fn load_versioned(&self) -> Result<(T, u64), LoadError> {
        let header = self.segment.header();
        let Some(src) = self.segment.map.ptr_at(HEADER_SIZE, size_of::<T>()) else {
            // Unreachable: the shape was validated against the mapping length on open.
            return Err(LoadError::Inconsistent { attempts: 0 });
        };
        for attempt in 0..LOAD_ATTEMPTS {
            let before = header.write_seq.load(Ordering::Acquire);
            if before == 0 {
                return Err(LoadError::NeverStored);
            }
            if before & 1 == 0 {
                let mut value = T::new_zeroed();
                let dst = value.as_mut_bytes();
                // SAFETY: `src` addresses size_of::<T>() bytes in the live mapping (ptr_at),
                // `dst` is our private value of the same size. T: FromBytes makes whatever bytes
                // we copy, torn or not, a valid T; a torn one is discarded just below.
                unsafe { os::copy_from_shared(src, dst.as_mut_ptr(), dst.len()) };
                // The copy happens before the second load of the word (seqlock reader side).
                fence(Ordering::Acquire);
                if header.write_seq.load(Ordering::Relaxed) == before {
                    return Ok((value, before / 2));
                }
            }
            if attempt < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        Err(LoadError::Inconsistent {
            attempts: LOAD_ATTEMPTS,
        })
    }

    /// The version (number of completed stores) without reading the value.
    pub fn version(&self) -> u64 {
        self.segment.header().write_seq.load(Ordering::Acquire) / 2
    }

    /// Sleeps until the version exceeds `seen` (a store completed), at most `timeout`.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> Result<u64, WaitError> {
        let deadline = Deadline::after(timeout);
        let header = self.segment.header();
        loop {
            let wake = header.wake.load(Ordering::Acquire);
            let version = header.write_seq.load(Ordering::Acquire) / 2;
            if version > seen {
                return Ok(version);
            }
            let Some(remaining) = deadline.remaining() else {
                return Err(WaitError::TimedOut);
            };
            match os::futex_wait(&header.wake, wake, remaining) {
                Ok(FutexWait::Retry | FutexWait::TimedOut) => {}
                Err(errno) => return Err(WaitError::Wait(errno)),
            }
        }
    }

    /// The producer's pid, liveness and heartbeat age.
    pub fn producer(&self) -> ProducerInfo {
        ProducerInfo::of(&self.segment)
    }

    /// Whether the cell's name was removed or recreated since this reader opened it.
    pub fn is_replaced(&self) -> bool {
        self.segment.is_replaced()
    }
}
