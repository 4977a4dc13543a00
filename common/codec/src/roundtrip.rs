//! Encode and decode a whole Y4M video, measuring size, PSNR and time per frame: the logic
//! behind `keymash codec roundtrip`, kept here so it is testable without the binary. The clock
//! comes from the caller, so this stays free of I/O and time.

use crate::decoder::{DecodeError, Decoder};
use crate::encoder::{
    EncodeError, EncodeStats, Encoder, EncoderConfig, EncoderConfigError, Layout, PayloadSink,
    QualitySpec,
};
use crate::frame::{psnr_from_squared_error, squared_error, I420Frame};
use crate::simd::Simd;
use crate::y4m::{Y4mError, Y4mReader, Y4mWriter};
use keymash_core::percentile::nearest_rank;
use keymash_core::{FrameNo, Quality};
use std::io::{Read, Write};

/// Settings of a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundtripConfig {
    pub quality: Quality,
    pub layout: Layout,
    pub max_payload: usize,
    pub threads: usize,
}

/// Why a round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum RoundtripError {
    #[error(transparent)]
    Y4m(#[from] Y4mError),
    #[error("cannot build the encoder: {0}")]
    Config(#[from] EncoderConfigError),
    #[error("encoding frame {frame} failed: {cause}")]
    Encode { frame: u64, cause: EncodeError },
    #[error("decoding frame {frame} failed: {cause}")]
    Decode { frame: u64, cause: DecodeError },
}

/// Figures of a round trip. PSNRs are computed from the squared error summed over all frames
/// (capped at [`crate::frame::PSNR_CAP_DB`] for a lossless result).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundtripReport {
    pub width: usize,
    pub height: usize,
    pub frames: u64,
    pub bytes_per_frame: f64,
    pub payloads_per_frame: f64,
    pub psnr_y: f64,
    pub psnr_yuv: f64,
    /// Totals over all frames: where the bytes went.
    pub stats: EncodeStats,
    /// Time to encode one frame (all its payloads, with the configured threads).
    pub encode_ms: FrameTimes,
    /// Time to decode one frame (apply all its payloads).
    pub decode_ms: FrameTimes,
    /// The vector unit encode and decode ran on (the widest this CPU has).
    pub simd: Simd,
}

/// Milliseconds per frame over a round trip: the median and the 99th percentile (nearest
/// rank; both 0 for a video without frames).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FrameTimes {
    pub p50: f64,
    pub p99: f64,
}

impl FrameTimes {
    fn of(mut ms: Vec<f64>) -> FrameTimes {
        ms.sort_by(f64::total_cmp);
        FrameTimes {
            p50: nearest_rank(&ms, 0.50).unwrap_or(0.0),
            p99: nearest_rank(&ms, 0.99).unwrap_or(0.0),
        }
    }
}

/// Encodes and decodes every frame of `input`, writing the decoded video to `output`.
/// `now_ns` is a monotonic clock in nanoseconds, read around each frame's encode and decode
/// (reading the Y4M, PSNR and writing are not timed).
pub fn roundtrip<R: Read, W: Write>(
    input: R,
    output: W,
    config: RoundtripConfig,
    mut now_ns: impl FnMut() -> u64,
) -> Result<RoundtripReport, RoundtripError> {
    let mut reader = Y4mReader::new(input)?;
    let header = reader.header().clone();
    let geometry = header.geometry;
    let mut writer = Y4mWriter::new(output, &header)?;
    let mut encoder = Encoder::new(EncoderConfig {
        geometry,
        layout: config.layout,
        max_payload: config.max_payload,
        threads: config.threads,
    })?;
    let mut decoder = Decoder::new(geometry);
    let mut sink = PayloadSink::new();
    let mut source = I420Frame::grey(geometry);
    let (mut frames, mut bytes, mut payloads) = (0u64, 0u64, 0u64);
    let (mut se_y, mut se_all) = (0u64, 0u64);
    let mut stats = EncodeStats::default();
    let (mut encode_ms, mut decode_ms) = (Vec::new(), Vec::new());
    let elapsed_ms = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e6;
    while reader.read_frame(&mut source)? {
        let encode_start = now_ns();
        encoder
            .encode(
                FrameNo(frames),
                source.view(),
                QualitySpec::Uniform(config.quality),
                &mut sink,
            )
            .map_err(|cause| RoundtripError::Encode {
                frame: frames,
                cause,
            })?;
        let decode_start = now_ns();
        encode_ms.push(elapsed_ms(encode_start, decode_start));
        for payload in sink.iter() {
            decoder
                .apply(payload)
                .map_err(|cause| RoundtripError::Decode {
                    frame: frames,
                    cause,
                })?;
        }
        decode_ms.push(elapsed_ms(decode_start, now_ns()));
        bytes += sink.total_bytes() as u64;
        payloads += sink.len() as u64;
        stats += sink.stats();
        let out = decoder.frame();
        let y = squared_error(source.y(), out.y());
        se_y += y;
        se_all += y + squared_error(source.u(), out.u()) + squared_error(source.v(), out.v());
        writer.write_frame(out.view())?;
        frames += 1;
    }
    writer.finish()?;
    let per_frame = |v: u64| {
        if frames == 0 {
            0.0
        } else {
            v as f64 / frames as f64
        }
    };
    let luma = geometry.luma_len() as u64 * frames;
    let all = (geometry.luma_len() + 2 * geometry.chroma_len()) as u64 * frames;
    Ok(RoundtripReport {
        width: geometry.width(),
        height: geometry.height(),
        frames,
        bytes_per_frame: per_frame(bytes),
        payloads_per_frame: per_frame(payloads),
        psnr_y: psnr_from_squared_error(se_y, luma),
        psnr_yuv: psnr_from_squared_error(se_all, all),
        stats,
        encode_ms: FrameTimes::of(encode_ms),
        decode_ms: FrameTimes::of(decode_ms),
        simd: encoder.simd(),
    })
}
