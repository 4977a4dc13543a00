//! The bytes of a segment, as `#[repr(C)]` zerocopy types read in place.
//!
//! ```text
//! ring:  SegmentHeader (128 B) | slot 0 | slot 1 | ... | slot N-1
//!        slot = SlotHeader (64 B: stamp, length, FrameMeta) | payload (slot_size, padded to 64 B)
//! cell:  SegmentHeader (128 B) | value (size_of::<T>())
//! ```
//!
//! Every word another process may change concurrently is an atomic. The types derive zerocopy's
//! `FromBytes` (any bit pattern is a valid value, so a corrupt or hostile segment can produce
//! wrong numbers but never undefined behaviour) and `IntoBytes`/`KnownLayout` (no padding, known
//! size), and their sizes are asserted at compile time so the layout cannot drift silently.
//! Offsets only, never pointers: each process maps the segment at its own address.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use keymash_core::units::FrameNo;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// "KEYMASH" + 0x01 in little-endian: the first eight bytes of every keymash segment. It stays the
/// same across layout versions so an old reader can say "version mismatch" rather than "not ours".
pub const MAGIC: u64 = u64::from_le_bytes(*b"KEYMASH\x01");

/// Bumped on every incompatible change of anything in this file. 0 is reserved for "not ready".
pub const LAYOUT_VERSION: u32 = 1;

/// Alignment of slots and payloads: one cache line, so two slots never share a line.
pub const SLOT_ALIGN: usize = 64;

/// What a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SegmentKind {
    Ring = 1,
    Cell = 2,
}

impl SegmentKind {
    pub fn from_word(word: u32) -> Option<Self> {
        match word {
            1 => Some(SegmentKind::Ring),
            2 => Some(SegmentKind::Cell),
            _ => None,
        }
    }
}

impl std::fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SegmentKind::Ring => "ring",
            SegmentKind::Cell => "cell",
        })
    }
}

/// The first 128 bytes of every segment.
///
/// Publication protocol: the creator fills every other field, then stores `version` last with
/// `SeqCst`. An opener loads `version` first: 0 means "still being built", anything but
/// [`LAYOUT_VERSION`] means "incompatible"; only after that does it trust the rest.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout)]
#[repr(C)]
pub struct SegmentHeader {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`LAYOUT_VERSION`] once the segment is ready, 0 before.
    pub version: AtomicU32,
    /// [`SegmentKind`] as a word.
    pub kind: AtomicU32,
    /// Ring: payload capacity of one slot. Cell: size of the value.
    pub slot_size: AtomicU64,
    /// Ring: number of slots. Cell: 1.
    pub slot_count: AtomicU64,
    /// Ring: sequence number the writer commits next (= frames committed so far).
    /// Cell: the seqlock word (odd while a store is in progress; stores = word / 2).
    pub write_seq: AtomicU64,
    /// Futex word: incremented after every commit; readers sleep on it.
    pub wake: AtomicU32,
    /// Process id of the writer that last attached (in its PID namespace).
    pub producer_pid: AtomicU32,
    /// CLOCK_MONOTONIC nanoseconds of the writer's last commit or heartbeat.
    pub producer_heartbeat_ns: AtomicU64,
    /// CLOCK_MONOTONIC nanoseconds when the segment was created.
    pub created_ns: AtomicU64,
    /// Room for later fields without moving the slots.
    pub reserved: [AtomicU64; 8],
}

/// Size of [`SegmentHeader`]; the first slot or the cell value starts here.
pub const HEADER_SIZE: usize = 128;
const _: () = assert!(size_of::<SegmentHeader>() == HEADER_SIZE);
const _: () = assert!(HEADER_SIZE.is_multiple_of(SLOT_ALIGN));

/// Application metadata carried with every ring frame.
///
/// `words` are defined by the ring's users, e.g. width, height and pixel format of raw frames.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct FrameMeta {
    frame_no: u64,
    capture_ns: u64,
    flags: u32,
    words: [u32; FrameMeta::WORDS],
}

const _: () = assert!(size_of::<FrameMeta>() == 40);

impl FrameMeta {
    /// Number of application-defined words.
    pub const WORDS: usize = 5;

    /// Metadata for frame `frame`, captured at `capture_ns` (CLOCK_MONOTONIC nanoseconds).
    pub fn new(frame: FrameNo, capture_ns: u64) -> Self {
        FrameMeta {
            frame_no: frame.0,
            capture_ns,
            flags: 0,
            words: [0; Self::WORDS],
        }
    }

    pub fn with_flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }

    pub fn with_words(mut self, words: [u32; Self::WORDS]) -> Self {
        self.words = words;
        self
    }

    pub fn frame(&self) -> FrameNo {
        FrameNo(self.frame_no)
    }

    pub fn capture_ns(&self) -> u64 {
        self.capture_ns
    }

    pub fn flags(&self) -> u32 {
        self.flags
    }

    pub fn words(&self) -> [u32; Self::WORDS] {
        self.words
    }
}

/// [`FrameMeta`] as it sits in shared memory: the same layout, every field atomic.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout)]
#[repr(C)]
pub struct SharedFrameMeta {
    frame_no: AtomicU64,
    capture_ns: AtomicU64,
    flags: AtomicU32,
    words: [AtomicU32; FrameMeta::WORDS],
}

const _: () = assert!(size_of::<SharedFrameMeta>() == size_of::<FrameMeta>());

impl SharedFrameMeta {
    /// Relaxed loads: the caller validates the slot's stamp afterwards (seqlock).
    pub(crate) fn load(&self) -> FrameMeta {
        FrameMeta {
            frame_no: self.frame_no.load(Ordering::Relaxed),
            capture_ns: self.capture_ns.load(Ordering::Relaxed),
            flags: self.flags.load(Ordering::Relaxed),
            words: std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed)),
        }
    }

    /// Relaxed stores: the caller publishes them with a Release store of the slot's stamp.
    pub(crate) fn store(&self, meta: &FrameMeta) {
        self.frame_no.store(meta.frame_no, Ordering::Relaxed);
        self.capture_ns.store(meta.capture_ns, Ordering::Relaxed);
        self.flags.store(meta.flags, Ordering::Relaxed);
        for (word, value) in self.words.iter().zip(meta.words) {
            word.store(value, Ordering::Relaxed);
        }
    }
}

/// The 64 bytes before every ring payload.
///
/// `stamp` is the slot's seqlock word: 0 = holds nothing, `(seq + 1) * 2` = holds committed frame
/// `seq`, `(seq + 1) * 2 + 1` = frame `seq` is being written. A reader accepts frame `seq` only if
/// the stamp reads `committed(seq)` both before and after it copied the slot.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout)]
#[repr(C)]
pub struct SlotHeader {
    pub stamp: AtomicU64,
    /// Bytes of payload in use (never trusted beyond the slot size).
    pub len: AtomicU64,
    pub meta: SharedFrameMeta,
    pub reserved: [AtomicU64; 1],
}

pub const SLOT_HEADER_SIZE: usize = 64;
const _: () = assert!(size_of::<SlotHeader>() == SLOT_HEADER_SIZE);

/// The stamp of a slot holding committed frame `seq`.
pub(crate) const fn committed_stamp(seq: u64) -> u64 {
    seq.wrapping_add(1).wrapping_mul(2)
}

/// The stamp of a slot while frame `seq` is being written into it.
pub(crate) const fn writing_stamp(seq: u64) -> u64 {
    committed_stamp(seq) | 1
}

/// Shape of a ring: how many slots, how big each payload can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RingGeometry {
    slot_size: usize,
    slot_count: usize,
}

/// A ring shape that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error("slot size must be at least 1 byte")]
    ZeroSlotSize,
    #[error("slot count must be at least 1")]
    ZeroSlotCount,
    #[error("{slot_count} slots of {slot_size} bytes exceed the {max}-byte segment limit")]
    TooLarge {
        slot_size: usize,
        slot_count: usize,
        max: u64,
    },
}

impl RingGeometry {
    /// Largest segment this crate will create or map (64 GiB): a sanity bound so corrupt header
    /// words cannot make us compute absurd sizes, far above the 30-second delay ring (~420 MB).
    pub const MAX_SEGMENT_BYTES: u64 = 64 << 30;

    pub fn new(slot_size: usize, slot_count: usize) -> Result<Self, GeometryError> {
        if slot_size == 0 {
            return Err(GeometryError::ZeroSlotSize);
        }
        if slot_count == 0 {
            return Err(GeometryError::ZeroSlotCount);
        }
        let geometry = RingGeometry {
            slot_size,
            slot_count,
        };
        match geometry.checked_segment_len() {
            Some(len) if len as u64 <= Self::MAX_SEGMENT_BYTES => Ok(geometry),
            _ => Err(GeometryError::TooLarge {
                slot_size,
                slot_count,
                max: Self::MAX_SEGMENT_BYTES,
            }),
        }
    }

    /// Payload capacity of one slot in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    pub fn slot_count(&self) -> usize {
        self.slot_count
    }

    /// Distance between two slot starts.
    pub(crate) fn slot_stride(&self) -> usize {
        SLOT_HEADER_SIZE + self.slot_size.div_ceil(SLOT_ALIGN) * SLOT_ALIGN
    }

    fn checked_segment_len(&self) -> Option<usize> {
        let padded = self.slot_size.checked_add(SLOT_ALIGN - 1)? / SLOT_ALIGN * SLOT_ALIGN;
        let stride = padded.checked_add(SLOT_HEADER_SIZE)?;
        stride
            .checked_mul(self.slot_count)?
            .checked_add(HEADER_SIZE)
    }

    /// Total bytes of the segment (header and all slots). Bounded by construction.
    pub(crate) fn segment_len(&self) -> usize {
        HEADER_SIZE + self.slot_stride() * self.slot_count
    }

    /// The length of the segment file a writer of this ring creates (and reserves), in bytes.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_len() as u64
    }

    /// Offset of slot `index`'s [`SlotHeader`] from the segment start.
    pub(crate) fn slot_offset(&self, index: usize) -> usize {
        HEADER_SIZE + self.slot_stride() * index
    }
}

impl std::fmt::Display for RingGeometry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} slots x {} B", self.slot_count, self.slot_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn stamps_distinguish_empty_committed_and_in_progress() {
        let cases = [(0u64, 2u64, 3u64), (1, 4, 5), (41, 84, 85)];
        for (seq, committed, writing) in cases {
            assert_eq!(committed_stamp(seq), committed, "seq {seq}");
            assert_eq!(writing_stamp(seq), writing, "seq {seq}");
            assert_ne!(
                committed_stamp(seq),
                0,
                "an empty slot never looks committed"
            );
        }
    }

    #[test]
    fn geometry_pads_slots_to_cache_lines_and_refuses_nonsense() {
        let cases: &[(usize, usize, Option<usize>)] = &[
            (64, 4, Some(HEADER_SIZE + 4 * (64 + 64))),
            (65, 2, Some(HEADER_SIZE + 2 * (64 + 128))),
            (460_800, 3, Some(HEADER_SIZE + 3 * (64 + 460_800))),
            (0, 4, None),
            (64, 0, None),
            (usize::MAX, 2, None),
            (1 << 30, 100, None),
        ];
        for &(size, count, len) in cases {
            let got = RingGeometry::new(size, count).ok().map(|g| g.segment_len());
            assert_eq!(got, len, "{count} slots x {size} B");
        }
    }

    #[test]
    fn frame_meta_round_trips_through_its_shared_form() {
        let shared = SharedFrameMeta::new_zeroed();
        let meta = FrameMeta::new(FrameNo(7), 123_456)
            .with_flags(0b101)
            .with_words([1, 2, 3, 4, 5]);
        shared.store(&meta);
        assert_eq!(shared.load(), meta);
        assert_eq!(meta.as_bytes().len(), size_of::<SharedFrameMeta>());
    }

    #[test]
    fn kind_words_map_back_to_kinds() {
        assert_eq!(
            SegmentKind::from_word(SegmentKind::Ring as u32),
            Some(SegmentKind::Ring)
        );
        assert_eq!(
            SegmentKind::from_word(SegmentKind::Cell as u32),
            Some(SegmentKind::Cell)
        );
        assert_eq!(SegmentKind::from_word(0), None);
        assert_eq!(SegmentKind::from_word(3), None);
    }
}
