//! keymash-pipeline: the typed layer between shared memory (`keymash-shm`, the mechanism) and
//! the eight services. It holds, once, the contract of every segment of the pipeline:
//!
//! - [`topology`]: the services, which PC runs them, the segment names and who writes each.
//! - [`segments`]: every segment from the configuration ([`Segments`]): its id, its shape, the
//!   one way to create a writer (create, re-attach, or replace a segment of stale shape) and the
//!   one way to follow it ([`Follow`]).
//! - [`frames`], [`hold`], [`payloads`], [`received`], [`screen`]: what each ring's slots hold,
//!   as typed descriptions ([`FrameSlot`], [`PayloadSlot`], [`ReceivedSlot`], [`ScreenSlot`])
//!   instead of positional words.
//! - [`cells`]: the mash and quality cells' values.
//! - [`memory`]: the shared memory every segment takes ([`MemoryPlan`]), per PC.
//! - [`access`]: what to tell the operator when a segment or device may not be opened.
//! - [`check`]: every segment built from a configuration without creating one: the refusals
//!   `keymash check-config` shares with the services ([`check_config`]).
//!
//! A service opens a segment only through this crate:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let config = keymash_core::config::Config::default();
//! let segments = keymash_pipeline::Segments::new(&config)?;
//! let mut delayed = segments.delayed_frames()?.follow();
//! let (mut payloads, _attach) = segments.payloads()?.create()?;
//! if let Some(reader) = delayed.reader() {
//!     // read the newest frame, encode it, commit it to `payloads`
//! #   let _ = (reader, &mut payloads);
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod access;
pub mod cells;
pub mod check;
pub mod follow;
pub mod frames;
pub mod hold;
pub mod memory;
pub mod payloads;
pub mod received;
pub mod screen;
pub mod segments;
pub mod topology;

pub use cells::{MashRecord, QualityRecord, MASH_STALE_AFTER};
pub use check::check_config;
pub use follow::Follow;
pub use frames::{FrameKind, FrameSlot, FrameSlotError};
pub use hold::{DelayBudget, DelayMemoryError};
pub use memory::{MemoryPlan, PlannedSegment};
pub use payloads::{pack_payloads, FramingError, PackedPayloads, PayloadSlot};
pub use received::{Arrived, CameraTiming, ReceivedSlot};
pub use screen::ScreenSlot;
pub use segments::{CellSpec, PipelineError, RingSpec, Segments};
pub use topology::{
    stat, Role, Service, DELAYED_FRAMES, DELAY_HOLD, MASH_CELL, PAYLOADS, QUALITY_CELL, RAW_FRAMES,
    RECEIVED_PAYLOADS, SCREEN,
};
