//! Shared-memory rings and cells: the zero-copy links between keymash processes.
//!
//! * [`RingWriter`] / [`RingReader`]: one writer, many readers, fixed slots in
//!   `/dev/shm/<prefix>.<name>`. The writer never waits; lapped readers skip ahead and are told
//!   how many frames they missed; a frame overwritten while being read is reported, never
//!   handed out torn; readers sleep on a futex.
//! * [`CellWriter`] / [`CellReader`]: one value (mash level, quality, [`ServiceStats`]) with the
//!   same torn-read protection.
//! * [`list_segments`]: what `keymash status` shows.
//!
//! Every segment starts with a versioned [`layout::SegmentHeader`] published last, so an opener
//! gets a typed [`OpenError`] (`NotReady`, `VersionMismatch`, `BadMagic`, `GeometryMismatch`...),
//! never undefined behaviour. Segments are created 0600 (or 0660) whatever the umask.
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
pub mod stats;
pub mod test_pattern;

pub use cell::{CellReader, CellValue, CellWriter, LoadError, WaitError};
pub use layout::{FrameMeta, GeometryError, RingGeometry, SegmentKind};
pub use list::{list_segments, remove_segments, ProducerInfo, SegmentInfo, SegmentReport};
pub use name::{NameError, Prefix, SegmentId, SegmentName};
pub use os::{monotonic_now_ns, process_alive, Permissions};
pub use ring::{
    Arrival, CommitError, ReadError, Received, RecvError, RingReader, RingWriter, SharedBytes, SlotWrite,
    WriterAttach,
};
pub use segment::{remove_segment, Attach, OpenError};
pub use stats::{NamedCounter, NamedGauge, ServiceState, ServiceStats, StatsFull};
