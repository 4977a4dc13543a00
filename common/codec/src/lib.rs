//! The keymash intra codec: JPEG-like macroblock coding into self-contained payloads.
//!
//! A frame (I420, or YUYV converted with [`yuyv_to_i420`]) is cut into 16x16 macroblocks, each
//! transformed (8x8 DCT), quantised with the JPEG Annex K tables scaled by an IJG quality that may
//! differ per macroblock, zigzag-scanned and run-length coded with Exp-Golomb codes. Whole
//! macroblocks are packed into payloads of at most `max_payload` bytes, each with a header that
//! names its frame and where its macroblocks go, so every payload decodes on its own.
//!
//! ```
//! use keymash_codec::{Decoder, Encoder, EncoderConfig, FrameGeometry, I420Frame, PayloadSink, QualitySpec};
//! use keymash_core::{FrameNo, Quality};
//!
//! let geometry = FrameGeometry::new(64, 48)?;
//! let frame = I420Frame::grey(geometry);
//! let mut encoder = Encoder::new(EncoderConfig::new(geometry))?;
//! let mut payloads = PayloadSink::new();
//! encoder.encode(FrameNo(1), frame.view(), QualitySpec::Uniform(Quality::new(75)?), &mut payloads)?;
//! let mut decoder = Decoder::new(geometry);
//! for payload in payloads.iter() {
//!     decoder.apply(payload)?;
//! }
//! assert_eq!(decoder.frame(), &frame);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod bitio;
pub mod block;
pub mod dct;
pub mod decoder;
pub mod encoder;
pub mod fdct;
pub mod frame;
// Test support (the decoder fuzz's case generator), not production API: the codec's own tests and
// benches turn it on through their dev-dependency on this crate.
#[cfg(feature = "test-support")]
pub mod fuzz;
pub mod geometry;
pub mod idct;
pub mod join;
pub mod lanes;
pub mod payload;
mod prefetch;
pub mod roundtrip;
pub mod simd;
#[cfg(target_arch = "x86_64")]
mod sse2;
pub mod tables;
pub mod y4m;

pub use decoder::{DecodeError, Decoder, PayloadInfo};
pub use encoder::{
    EncodeError, EncodeStats, Encoder, EncoderConfig, EncoderConfigError, Layout, PayloadSink,
    QualitySpec, DEFAULT_MAX_PAYLOAD,
};
pub use frame::{yuyv_row_pair_to_i420, yuyv_to_i420, FrameError, I420Frame, I420View};
pub use geometry::{FrameGeometry, GeometryError};
pub use join::FrameJoin;
pub use payload::{HeaderError, PayloadHeader};
pub use simd::{Simd, SimdEnvError, SIMD_ENV};
