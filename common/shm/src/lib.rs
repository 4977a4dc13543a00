//! Shared-memory rings and cells: the zero-copy links between keymash processes.
//!
//! * [`RingWriter`] / [`RingReader`]: one writer, many readers, fixed slots in
//!   `/dev/shm/<prefix>.<name>`. The writer never waits; lapped readers skip ahead and are told
//!   how many frames they missed; a frame overwritten while being read is reported, never
//!   handed out torn; readers sleep on a futex.
//! * [`CellWriter`] / [`CellReader`]: one value (mash level, quality, [`ServiceStats`]) with the
//!   same torn-read protection.
//! * [`list_segments`]: what `keymash status` shows; [`ShmSpace`]: how full `/dev/shm` is.
//!
//! A writer reserves every page of a segment it creates (`posix_fallocate`) after checking it
//! fits the free space of `/dev/shm` ([`OpenError::NoSpace`] otherwise, with nothing left
//! behind): a full tmpfs is an error at creation, never a SIGBUS at a later write.
//!
//! Every segment starts with a versioned [`layout::SegmentHeader`] published last, so an opener
//! gets a typed [`OpenError`] (`NotReady`, `VersionMismatch`, `BadMagic`, `GeometryMismatch`...),
//! never undefined behaviour. Segments are created 0600 (or 0660) whatever the umask.
//!
//! ```no_run
//! use std::time::Duration;
//! use keymash_core::units::FrameNo;
//! use keymash_shm::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let id = SegmentId::new(Prefix::default(), SegmentName::new("raw-frames")?);
//! // Producer: create or re-attach, fill a slot in place, commit.
//! let geometry = RingGeometry::new(460_800, 8)?;
//! let (mut writer, attach) = RingWriter::open(&id, geometry, Permissions::OwnerOnly)?;
//! let mut slot = writer.begin();
//! slot.payload_mut()[..4].copy_from_slice(b"YUYV");
//! let meta = FrameMeta::new(FrameNo(attach.next_seq), monotonic_now_ns()).with_words([640, 480, 0, 0, 0]);
//! slot.commit(4, &meta)?;
//!
//! // Consumer (another process): sleep on the futex, copy the frame out once.
//! let mut reader = RingReader::open_expecting(&id, geometry)?;
//! let mut frame = Vec::with_capacity(geometry.slot_size());
//! match reader.recv_into(Duration::from_millis(100), &mut frame) {
//!     Ok(received) => println!("frame {} ({} missed)", received.meta.frame(), received.missed),
//!     Err(RecvError::TimedOut) => println!("no frame; producer {:?}", reader.producer()),
//!     Err(other) => return Err(other.into()),
//! }
//! # Ok(())
//! # }
//! ```
// This is the one crate in keymash that may use `unsafe`: mapping shared memory and
// futex calls cannot be done without it. Every block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

pub mod cell;
pub mod layout;
pub mod list;
pub mod name;
mod os;
pub mod ring;
mod segment;
pub mod space;
pub mod stats;
// Test support (frames with a checkable pattern), not production API: the crate's own tests, its
// test peer and its bench turn it on through their dev-dependency on this crate.
#[cfg(feature = "test-support")]
pub mod test_pattern;

pub use cell::{CellReader, CellValue, CellWriter, LoadError, WaitError};
pub use layout::{FrameMeta, GeometryError, RingGeometry, SegmentKind};
pub use list::{
    list_segments, remove_segments, ProducerInfo, RemoveSegmentsOnDrop, SegmentInfo, SegmentReport,
};
pub use name::{NameError, Prefix, SegmentId, SegmentName};
pub use os::{monotonic_now_ns, process_alive, Permissions};
pub use ring::{
    Arrival, CommitError, ReadError, Received, RecvError, RingReader, RingWriter, SharedBytes,
    SlotWrite, WriterAttach,
};
pub use segment::{remove_segment, Attach, OpenError};
pub use space::{prefix_usage, NoSpace, PrefixUsage, ShmSpace};
pub use stats::{NamedCounter, NamedGauge, ServiceState, ServiceStats, StatsFull};
