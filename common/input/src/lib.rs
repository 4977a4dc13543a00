//! keymash-input: the pure logic behind `keymash-mash-input`, with no files, devices or clocks.
//!
//! - [`event`]: `struct input_event` records (24 bytes on 64-bit Linux) parsed from a byte
//!   stream that may split records anywhere, and [`event::key_press`], which keeps key presses
//!   and drops releases, autorepeat (value 2) and everything that is not a key.
//! - [`caps`]: deciding whether an input device is a keyboard from its capability bitmaps as
//!   sysfs prints them (`/sys/class/input/eventN/device/capabilities/{ev,key}`).
//! - [`script`]: the scripted mash pattern (`"0-10s:0/s,10-20s:12/s"`), its parser with errors
//!   that say what is wrong where, and a player that turns it into key presses over time.
//!
//! The service owns the devices and the clock and feeds what it reads in here; the mash level
//! itself is computed by [`keymash_core::mash::MashMeter`].
#![forbid(unsafe_code)]

pub mod caps;
pub mod event;
pub mod reading;
pub mod script;

pub use caps::{is_keyboard, parse_bitmap, CapsError};
pub use event::{key_press, EventParser, InputEvent, EVENT_SIZE};
pub use reading::{current_level, MASH_READ_INTERVAL, MASH_STALE_AFTER};
pub use script::{MashScript, ScriptError, ScriptPlayer, Segment};
