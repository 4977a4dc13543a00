//! Rings: one writer, any number of readers, fixed-size slots.
//!
//! The writer never waits. It fills slot `seq % slot_count` in place, then commits. Each slot's
//! stamp is a seqlock word ([`crate::layout::SlotHeader`]); a reader copies or inspects a slot and
//! then checks the stamp again, so a frame overwritten under it is reported as
//! [`ReadError::Overwritten`] and never handed out as valid. Readers sleep on the header's wake
//! word with `FUTEX_WAIT`; every commit bumps it and issues `FUTEX_WAKE`.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::layout::{
    committed_stamp, writing_stamp, FrameMeta, RingGeometry, SlotHeader, SLOT_HEADER_SIZE,
};
use crate::name::SegmentId;
use crate::os::{self, FutexWait, Permissions};
use crate::segment::{Attach, OpenError, Segment, Shape};
use crate::ProducerInfo;

/// The writing end of a ring. Exactly one per ring at a time (enforced with a lock the kernel
/// releases when the process dies).
#[derive(Debug)]
pub struct RingWriter {
    segment: Segment,
    geometry: RingGeometry,
    next_seq: u64,
}

/// How [`RingWriter::open`] found the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterAttach {
    pub attach: Attach,
    /// The sequence number the next commit gets (continues a previous writer's sequence).
    pub next_seq: u64,
    /// Slots a previous writer left half-written (killed mid-write) and this one marked empty.
    pub repaired_slots: usize,
}

/// A commit was refused; the slot is left empty and the sequence number is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    #[error("payload of {len} bytes does not fit a {slot_size}-byte slot")]
    PayloadTooLarge { len: usize, slot_size: usize },
}

impl RingWriter {
    /// Creates the ring `id` with `geometry`, or re-attaches to it if it already exists with the
    /// same geometry (a restarted writer continues the sequence where the last one stopped).
    pub fn open(
        id: &SegmentId,
        geometry: RingGeometry,
        permissions: Permissions,
    ) -> Result<(RingWriter, WriterAttach), OpenError> {
        let (segment, attach) = Segment::open_writer(id, Shape::ring(geometry), permissions)?;
        let next_seq = segment.header().write_seq.load(Ordering::Acquire);
        let writer = RingWriter {
            segment,
            geometry,
            next_seq,
        };
        let repaired_slots = writer.repair_half_written_slots();
        writer.segment.claim_producer();
        Ok((
            writer,
            WriterAttach {
                attach,
                next_seq,
                repaired_slots,
            },
        ))
    }

    /// A writer killed between `begin` and `commit` leaves a slot stamped "being written". Such a
    /// slot is already rejected by readers; marking it empty makes that explicit and lets
    /// `keymash status` and random-access readers tell "gone" from "in progress".
    fn repair_half_written_slots(&self) -> usize {
        (0..self.geometry.slot_count())
            .filter_map(|index| slot_header(&self.segment, &self.geometry, index))
            .filter(|slot| {
                let stamp = slot.stamp.load(Ordering::Acquire);
                stamp & 1 == 1
                    && slot
                        .stamp
                        .compare_exchange(stamp, 0, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
            })
            .count()
    }

    pub fn geometry(&self) -> RingGeometry {
        self.geometry
    }

    /// Sequence number of the next frame this writer commits.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Starts writing the next frame in place. Fill [`SlotWrite::payload_mut`], then
    /// [`SlotWrite::commit`]. Dropping the `SlotWrite` without committing leaves the slot empty.
    ///
    /// The slot's previous frame (`next_seq - slot_count`) is gone from this moment: readers
    /// still copying it will see their read fail validation.
    pub fn begin(&mut self) -> SlotWrite<'_> {
        let seq = self.next_seq;
        let index = slot_index(seq, &self.geometry);
        let payload = payload_ptr(&self.segment, &self.geometry, index);
        if let Some(slot) = slot_header(&self.segment, &self.geometry, index) {
            slot.stamp.store(writing_stamp(seq), Ordering::Relaxed);
        }
        // Orders the "being written" stamp before every payload byte the caller writes next, so a
        // reader that sees any new byte also sees the stamp change (seqlock writer side).
        fence(Ordering::Release);
        SlotWrite {
            writer: self,
            seq,
            index,
            payload,
            committed: false,
        }
    }

    /// Copies `payload` into the next slot and commits it: for producers that already hold the
    /// bytes elsewhere. Zero-copy producers use [`RingWriter::begin`].
    pub fn write(&mut self, payload: &[u8], meta: &FrameMeta) -> Result<u64, CommitError> {
        let slot_size = self.geometry.slot_size();
        if payload.len() > slot_size {
            return Err(CommitError::PayloadTooLarge {
                len: payload.len(),
                slot_size,
            });
        }
        let mut slot = self.begin();
        slot.payload_mut()[..payload.len()].copy_from_slice(payload);
        slot.commit(payload.len(), meta)
    }

    /// Refreshes the producer heartbeat without publishing a frame (for idle producers).
    pub fn heartbeat(&self) {
        self.segment
            .header()
            .producer_heartbeat_ns
            .store(os::monotonic_now_ns(), Ordering::Release);
    }
}

/// A slot being written. See [`RingWriter::begin`].
#[derive(Debug)]
pub struct SlotWrite<'w> {
    writer: &'w mut RingWriter,
    seq: u64,
    index: usize,
    payload: Option<*mut u8>,
    committed: bool,
}

impl SlotWrite<'_> {
    /// The sequence number this frame will get.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The whole payload area of the slot (`slot_size` bytes), holding stale bytes of an older
    /// frame: write what you need, then commit its length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        match self.payload {
            // SAFETY: the pointer addresses `slot_size` bytes inside the writer's live, writable
            // mapping (bounds checked in `payload_ptr`). Only this process writes the segment
            // (the writer lock), and `&mut self` makes this the only live reference to the slot
            // in it, so handing out `&mut` cannot alias another Rust reference. Readers in other
            // processes (or other mappings in this one) read the bytes concurrently through raw
            // copies and discard what they read if the stamp changed; any bit pattern is a
            // valid u8, so they can never observe an invalid value.
            Some(ptr) => unsafe {
                std::slice::from_raw_parts_mut(ptr, self.writer.geometry.slot_size())
            },
            None => &mut [],
        }
    }

    /// Publishes the first `len` bytes of the payload with `meta`, bumps the heartbeat and wakes
    /// sleeping readers. Returns the frame's sequence number.
    pub fn commit(mut self, len: usize, meta: &FrameMeta) -> Result<u64, CommitError> {
        let slot_size = self.writer.geometry.slot_size();
        if len > slot_size {
            return Err(CommitError::PayloadTooLarge { len, slot_size });
        }
        let writer = &mut *self.writer;
        let segment = &writer.segment;
        if let Some(slot) = slot_header(segment, &writer.geometry, self.index) {
            slot.len.store(len as u64, Ordering::Relaxed);
            slot.meta.store(meta);
            // Release: payload, length and metadata become visible before the committed stamp.
            slot.stamp
                .store(committed_stamp(self.seq), Ordering::Release);
        }
        let header = segment.header();
        header.write_seq.store(self.seq + 1, Ordering::Release);
        header
            .producer_heartbeat_ns
            .store(os::monotonic_now_ns(), Ordering::Release);
        segment.wake_readers();
        writer.next_seq = self.seq + 1;
        self.committed = true;
        Ok(self.seq)
    }
}

impl Drop for SlotWrite<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // Abandoned (or refused) write: the slot's old frame is already damaged, so mark the
            // slot empty; the sequence number is reused by the next begin().
            if let Some(slot) = slot_header(&self.writer.segment, &self.writer.geometry, self.index)
            {
                slot.stamp.store(0, Ordering::Release);
            }
        }
    }
}

/// The reading end of a ring. Any number per ring; each keeps its own position.
#[derive(Debug)]
pub struct RingReader {
    segment: Segment,
    geometry: RingGeometry,
    /// Next sequence number [`RingReader::next`] delivers.
    cursor: u64,
    /// Sequence number of the frame [`RingReader::next`] delivered last.
    current: Option<u64>,
}

/// A frame is available: `seq` is its sequence number; `missed` frames were skipped to get to
/// it because the writer lapped this reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub seq: u64,
    pub missed: u64,
}

/// A frame copied out by [`RingReader::recv_into`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub seq: u64,
    /// Frames skipped since the previous one this reader received (lapping or overwrites).
    pub missed: u64,
    pub meta: FrameMeta,
}

/// Waiting for a frame failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    #[error("no new frame within the timeout")]
    TimedOut,
    #[error("futex wait failed: {0}")]
    Wait(Errno),
    #[error("slot of frame {seq} claims {len} bytes, more than the slot holds (corrupt segment)")]
    CorruptSlot { seq: u64, len: u64 },
}

/// Reading one frame failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("frame {seq} is not written yet (next is {write_seq})")]
    NotYetWritten { seq: u64, write_seq: u64 },
    #[error("frame {seq} was overwritten by newer data")]
    Overwritten { seq: u64 },
    #[error("slot of frame {seq} claims {len} bytes, more than the slot holds (corrupt segment)")]
    CorruptSlot { seq: u64, len: u64 },
    #[error("no frame has been received with next() yet")]
    NoCurrentFrame,
}

impl RingReader {
    /// Opens an existing ring of any geometry, positioned at its newest frame: the first
    /// [`RingReader::next`] returns the newest committed frame (or waits for the first one).
    pub fn open(id: &SegmentId) -> Result<RingReader, OpenError> {
        let segment = Segment::open_reader(id, None)?;
        if segment.shape.kind != crate::SegmentKind::Ring {
            return Err(OpenError::WrongKind {
                segment: id.to_string(),
                expected: crate::SegmentKind::Ring,
                found: segment.shape.kind.to_string(),
            });
        }
        let geometry = RingGeometry::new(segment.shape.slot_size, segment.shape.slot_count)
            .map_err(|_| OpenError::CorruptHeader {
                segment: id.to_string(),
                slot_size: segment.shape.slot_size as u64,
                slot_count: segment.shape.slot_count as u64,
            })?;
        Ok(Self::positioned_at_newest(segment, geometry))
    }

    /// Opens an existing ring that must have exactly `geometry`.
    pub fn open_expecting(id: &SegmentId, geometry: RingGeometry) -> Result<RingReader, OpenError> {
        let segment = Segment::open_reader(id, Some(Shape::ring(geometry)))?;
        Ok(Self::positioned_at_newest(segment, geometry))
    }

    fn positioned_at_newest(segment: Segment, geometry: RingGeometry) -> RingReader {
        let write_seq = segment.header().write_seq.load(Ordering::Acquire);
        RingReader {
            segment,
            geometry,
            cursor: write_seq.saturating_sub(1),
            current: None,
        }
    }

    pub fn geometry(&self) -> RingGeometry {
        self.geometry
    }

    /// Sequence number the writer commits next (= frames committed so far).
    pub fn write_seq(&self) -> u64 {
        self.segment.header().write_seq.load(Ordering::Acquire)
    }

    /// Sequence numbers still held in the ring. The oldest may be under rewrite at any moment.
    pub fn retained(&self) -> Range<u64> {
        let write_seq = self.write_seq();
        write_seq.saturating_sub(self.geometry.slot_count() as u64)..write_seq
    }

    /// Makes [`RingReader::next`] deliver `seq` next (e.g. the delay buffer rewinding).
    pub fn seek(&mut self, seq: u64) {
        self.cursor = seq;
    }

    /// Moves to the newest committed frame, as a freshly opened reader is.
    pub fn seek_to_newest(&mut self) {
        self.cursor = self.write_seq().saturating_sub(1);
    }

    /// The producer's pid, liveness and heartbeat age.
    pub fn producer(&self) -> ProducerInfo {
        ProducerInfo::of(&self.segment)
    }

    /// Whether the ring's name was removed or recreated since this reader opened it (a writer
    /// started with another geometry, or an operator cleaned up); the reader should reopen.
    /// A `stat` call: check it on timeouts, not per frame.
    pub fn is_replaced(&self) -> bool {
        self.segment.is_replaced()
    }

    /// Waits up to `timeout` for the next frame, sleeping on the futex. A reader that has been
    /// lapped skips to the newest frame and reports how many it missed.
    ///
    /// The frame is then read with [`RingReader::read_with`] or [`RingReader::read_into`]
    /// (which may still report it overwritten if the writer laps the reader meanwhile).
    pub fn next(&mut self, timeout: Duration) -> Result<Arrival, RecvError> {
        let deadline = Deadline::after(timeout);
        let header = self.segment.header();
        loop {
            // Wake word first, then the sequence: if a commit lands between the two loads, the
            // futex sees a changed word and returns at once instead of sleeping through it.
            let wake = header.wake.load(Ordering::Acquire);
            let write_seq = header.write_seq.load(Ordering::Acquire);
            if write_seq > self.cursor {
                let mut seq = self.cursor;
                let mut missed = 0;
                // At `slot_count` behind, the writer is (or is about to be) rewriting our slot.
                if write_seq - seq >= self.geometry.slot_count() as u64 {
                    let newest = write_seq - 1;
                    missed = newest - seq;
                    seq = newest;
                }
                self.cursor = seq + 1;
                self.current = Some(seq);
                return Ok(Arrival { seq, missed });
            }
            let Some(remaining) = deadline.remaining() else {
                return Err(RecvError::TimedOut);
            };
            match os::futex_wait(&header.wake, wake, remaining) {
                Ok(FutexWait::Retry | FutexWait::TimedOut) => {}
                Err(errno) => return Err(RecvError::Wait(errno)),
            }
        }
    }

    /// Runs `f` on the frame [`RingReader::next`] delivered last, borrowing it from the mapping.
    /// See [`RingReader::read_seq_with`].
    pub fn read_with<R>(
        &self,
        f: impl FnOnce(&FrameMeta, SharedBytes<'_>) -> R,
    ) -> Result<R, ReadError> {
        let seq = self.current.ok_or(ReadError::NoCurrentFrame)?;
        self.read_seq_with(seq, f)
    }

    /// Copies the frame [`RingReader::next`] delivered last into `buf` (one copy, no allocation
    /// once `buf` has grown to the largest frame).
    pub fn read_into(&self, buf: &mut Vec<u8>) -> Result<FrameMeta, ReadError> {
        let seq = self.current.ok_or(ReadError::NoCurrentFrame)?;
        self.read_seq_into(seq, buf)
    }

    /// Runs `f` on frame `seq` where it lies in shared memory, then checks that the writer did
    /// not touch the slot meanwhile (seqlock). Returns `f`'s result only if the frame stayed
    /// intact, [`ReadError::Overwritten`] otherwise.
    ///
    /// `f` may be shown bytes of a newer frame mixed in if the writer laps this reader during the
    /// call; its result is then discarded. So `f` should only compute or copy, not cause effects
    /// it cannot take back (such as committing a write elsewhere).
    pub fn read_seq_with<R>(
        &self,
        seq: u64,
        f: impl FnOnce(&FrameMeta, SharedBytes<'_>) -> R,
    ) -> Result<R, ReadError> {
        let write_seq = self.write_seq();
        if seq >= write_seq {
            return Err(ReadError::NotYetWritten { seq, write_seq });
        }
        if write_seq - seq > self.geometry.slot_count() as u64 {
            return Err(ReadError::Overwritten { seq });
        }
        let index = slot_index(seq, &self.geometry);
        let slot = slot_header(&self.segment, &self.geometry, index)
            .ok_or(ReadError::Overwritten { seq })?;
        let expected = committed_stamp(seq);
        // Acquire pairs with the writer's Release of the committed stamp: length, metadata and
        // payload of `seq` are visible if the stamp says `seq`.
        if slot.stamp.load(Ordering::Acquire) != expected {
            return Err(ReadError::Overwritten { seq });
        }
        let len = slot.len.load(Ordering::Relaxed);
        let meta = slot.meta.load();
        let payload = match usize::try_from(len) {
            Ok(len) if len <= self.geometry.slot_size() => {
                payload_ptr(&self.segment, &self.geometry, index).map(|ptr| SharedBytes {
                    ptr,
                    len,
                    _mapping: PhantomData,
                })
            }
            _ => None,
        };
        let result = payload.map(|payload| f(&meta, payload));
        // Acquire fence: every load above (including the closure's copies) happens before the
        // stamp is loaded again, so a writer that touched the slot has changed the stamp by then.
        fence(Ordering::Acquire);
        if slot.stamp.load(Ordering::Relaxed) != expected {
            return Err(ReadError::Overwritten { seq });
        }
        result.ok_or(ReadError::CorruptSlot { seq, len })
    }

    /// Copies frame `seq` into `buf` and validates it; `buf` is left empty on error.
    pub fn read_seq_into(&self, seq: u64, buf: &mut Vec<u8>) -> Result<FrameMeta, ReadError> {
        let outcome = self.read_seq_with(seq, |meta, payload| {
            payload.copy_into_vec(buf);
            *meta
        });
        if outcome.is_err() {
            buf.clear();
        }
        outcome
    }

    /// Waits for the next frame and copies it into `buf`: [`RingReader::next`] plus
    /// [`RingReader::read_into`], skipping frames overwritten before they could be copied
    /// (counted in `missed`).
    pub fn recv_into(
        &mut self,
        timeout: Duration,
        buf: &mut Vec<u8>,
    ) -> Result<Received, RecvError> {
        let deadline = Deadline::after(timeout);
        let mut missed = 0;
        loop {
            let arrival = self.next(deadline.remaining().unwrap_or(Duration::ZERO))?;
            missed += arrival.missed;
            match self.read_seq_into(arrival.seq, buf) {
                Ok(meta) => {
                    return Ok(Received {
                        seq: arrival.seq,
                        missed,
                        meta,
                    })
                }
                Err(ReadError::Overwritten { .. }) => missed += 1,
                Err(ReadError::CorruptSlot { seq, len }) => {
                    return Err(RecvError::CorruptSlot { seq, len })
                }
                // `next` only delivers committed sequence numbers and sets the current frame.
                Err(ReadError::NotYetWritten { .. } | ReadError::NoCurrentFrame) => missed += 1,
            }
        }
    }
}

/// A frame's payload, borrowed from the shared mapping for the duration of a read.
///
/// Deliberately not a `&[u8]`: the writer may rewrite these bytes at any moment, and a shared
/// slice would promise the compiler they cannot change. Reads go through raw-pointer copies whose
/// result counts only if the surrounding seqlock check passes.
#[derive(Debug, Clone, Copy)]
pub struct SharedBytes<'a> {
    ptr: *mut u8,
    len: usize,
    _mapping: PhantomData<&'a ()>,
}

impl SharedBytes<'_> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `min(len, dst.len())` bytes from the start; returns how many.
    pub fn copy_to_slice(&self, dst: &mut [u8]) -> usize {
        self.copy_range_to(0, dst).unwrap_or(0)
    }

    /// Copies `dst.len()` bytes starting at `offset`, or as many as remain; `None` if `offset`
    /// is past the end.
    pub fn copy_range_to(&self, offset: usize, dst: &mut [u8]) -> Option<usize> {
        let available = self.len.checked_sub(offset)?;
        let count = available.min(dst.len());
        // SAFETY: offset + count <= len, and `ptr..ptr+len` lies in the live mapping borrowed for
        // 'a; `dst` is a distinct private buffer. See `os::copy_from_shared` for the race.
        unsafe { os::copy_from_shared(self.ptr.add(offset), dst.as_mut_ptr(), count) };
        Some(count)
    }

    /// Replaces the contents of `buf` with a copy of the payload. Allocates only if `buf` is
    /// smaller than the payload.
    pub fn copy_into_vec(&self, buf: &mut Vec<u8>) {
        buf.clear();
        buf.reserve(self.len);
        // SAFETY: `reserve` guarantees capacity >= len; source range as in `copy_range_to`.
        unsafe {
            os::copy_from_shared(self.ptr, buf.as_mut_ptr(), self.len);
            // Every byte up to `len` was just written, and any bit pattern is a valid u8.
            buf.set_len(self.len);
        }
    }

    /// One byte, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<u8> {
        (index < self.len).then(|| {
            // SAFETY: index < len keeps the read inside the mapping; volatile because the byte
            // may change concurrently and must be read exactly once, as it is now.
            unsafe { self.ptr.add(index).read_volatile() }
        })
    }
}

fn slot_index(seq: u64, geometry: &RingGeometry) -> usize {
    // The remainder is < slot_count, which is a usize.
    (seq % geometry.slot_count() as u64) as usize
}

fn slot_header<'s>(
    segment: &'s Segment,
    geometry: &RingGeometry,
    index: usize,
) -> Option<&'s SlotHeader> {
    segment
        .map
        .atomics_at::<SlotHeader>(geometry.slot_offset(index))
}

fn payload_ptr(segment: &Segment, geometry: &RingGeometry, index: usize) -> Option<*mut u8> {
    segment.map.ptr_at(
        geometry.slot_offset(index) + SLOT_HEADER_SIZE,
        geometry.slot_size(),
    )
}

/// An absolute deadline on the monotonic clock, so EINTR and spurious wake-ups never extend a
/// wait beyond what the caller asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    pub(crate) fn after(timeout: Duration) -> Self {
        Deadline(Instant::now().checked_add(timeout))
    }

    /// Time left, or `None` once the deadline has passed. A deadline too far to represent waits
    /// in day-long steps.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        match self.0 {
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                (!left.is_zero()).then_some(left)
            }
            None => Some(Duration::from_secs(86_400)),
        }
    }
}
