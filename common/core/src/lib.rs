//! keymash-core: the types every part of keymash shares (quality, drop probability, mash level,
//! frame numbers), the configuration file, and the mash model. Pure code: no I/O.
#![forbid(unsafe_code)]

pub mod config;
pub mod curves;
pub mod font;
pub mod key;
pub mod mash;
pub mod percentile;
pub mod rng;
pub mod units;

pub use percentile::Percentiles;
pub use units::{DropProbability, FrameNo, MashLevel, OutOfRange, Quality};
