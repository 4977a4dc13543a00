//! A seeded generator of hostile payloads for the decoder, shared by the test suite (thousands of
//! cases) and the `decoder_fuzz` bench (millions). Stable Rust has no cargo-fuzz, so this plays
//! its part: random bytes, valid payloads with mutations, and header fields set to edge values.

use crate::decoder::{DecodeError, Decoder};
use crate::encoder::{Encoder, EncoderConfig, Layout, PayloadSink, QualitySpec};
use crate::frame::I420Frame;
use crate::geometry::FrameGeometry;
use crate::simd::Simd;
use keymash_core::{FrameNo, Quality};

/// The seeded generator that drives the fuzzer reproducibly (shared with the transport's FEC).
pub use keymash_core::rng::SplitMix64;

/// Fills a frame with content that exercises every code path: gradients, edges and noise.
pub fn textured_frame(geometry: FrameGeometry, rng: &mut SplitMix64) -> I420Frame {
    let mut frame = I420Frame::grey(geometry);
    let width = geometry.width();
    let noise = rng.below(200);
    let (y, u, v) = frame.planes_mut();
    for (i, p) in y.iter_mut().enumerate() {
        let (x, row) = (i % width, i / width);
        let base = (x * 3 + row * 2) % 256;
        let edge = if (x / 13 + row / 9) % 2 == 0 { 60 } else { 0 };
        *p = (base + edge + rng.below(noise + 1)).min(255) as u8;
    }
    for p in u.iter_mut().chain(v.iter_mut()) {
        *p = (64 + rng.below(128)) as u8;
    }
    frame
}

/// Valid payloads of random frames at random settings: the seeds mutations start from.
pub fn payload_corpus(
    geometry: FrameGeometry,
    rng: &mut SplitMix64,
    frames: usize,
) -> Vec<Vec<u8>> {
    let mut corpus = Vec::new();
    let mut sink = PayloadSink::new();
    for f in 0..frames {
        let layout = if rng.below(2) == 0 {
            Layout::Strips
        } else {
            Layout::Dispersed
        };
        let max_payload = [48, 100, 300, 1188][rng.below(4)];
        let config = EncoderConfig {
            geometry,
            layout,
            max_payload,
            threads: 1,
        };
        let Ok(mut encoder) = Encoder::new(config) else {
            continue;
        };
        let frame = textured_frame(geometry, rng);
        let quality = Quality::saturating(1 + rng.below(100) as i64);
        if encoder
            .encode(
                FrameNo(f as u64),
                frame.view(),
                QualitySpec::Uniform(quality),
                &mut sink,
            )
            .is_ok()
        {
            corpus.extend(sink.iter().map(<[u8]>::to_vec));
        }
    }
    corpus
}

/// Writes the next fuzz case into `out`: random bytes, or a corpus payload mutated one to eight
/// times (bit flips, random bytes, edge values in header fields, truncation, extension, splices).
pub fn next_case(rng: &mut SplitMix64, corpus: &[Vec<u8>], out: &mut Vec<u8>) {
    out.clear();
    if corpus.is_empty() || rng.below(8) == 0 {
        let len = rng.below(1400);
        out.extend((0..len).map(|_| rng.byte()));
        // Half the random cases get a valid-looking magic and version, to get past the header.
        if rng.below(2) == 0 && out.len() >= 2 {
            out[0] = crate::payload::MAGIC;
            out[1] = crate::payload::VERSION;
        }
        return;
    }
    out.extend_from_slice(&corpus[rng.below(corpus.len())]);
    // Half the cases get a single mutation, which keeps many of them decodable deep into the body.
    let mutations = if rng.below(2) == 0 {
        1
    } else {
        1 + rng.below(8)
    };
    for _ in 0..mutations {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.byte();
            }
            2 => {
                // An edge value in one 16-bit header field.
                let field = 2 + 2 * rng.below(11);
                let value: u16 = [0, 1, 2, 0x7fff, 0xfffe, 0xffff][rng.below(6)];
                if let Some(f) = out.get_mut(field..field + 2) {
                    f.copy_from_slice(&value.to_be_bytes());
                }
            }
            3 => out.truncate(rng.below(len + 1)),
            4 => {
                let extra = rng.below(64);
                out.extend((0..extra).map(|_| rng.byte()));
            }
            5 => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ if len > 24 => {
                // Zero or saturate a run of body bytes.
                let start = 24 + rng.below(len - 24);
                let end = (start + rng.below(16)).min(len);
                let fill = if rng.below(2) == 0 { 0 } else { 0xff };
                out[start..end].fill(fill);
            }
            _ => {}
        }
    }
}

/// Outcome of a fuzz run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FuzzSummary {
    pub cases: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Refusals past the header checks, i.e. inside the macroblock decoder.
    pub rejected_in_body: u64,
}

/// A fault the fuzz run found (a panic would abort the run by itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FuzzFinding {
    #[error("case {case}: the decoder changed pixels outside the macroblocks the payload names")]
    WroteOutsideClaimedMacroblocks { case: u64 },
    #[error("case {case}: the decoder accepted a payload and then changed the frame size")]
    GeometryChanged { case: u64 },
    #[error("case {case}: the {unit} decoder answered {got}, the {reference} one {expected}")]
    UnitsAnsweredDifferently {
        case: u64,
        unit: Simd,
        reference: Simd,
        got: String,
        expected: String,
    },
    #[error("case {case}: the {unit} and {reference} decoders left different pictures")]
    UnitsDrewDifferently {
        case: u64,
        unit: Simd,
        reference: Simd,
    },
}

/// How a fuzz run checks the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuzzOptions {
    /// Check that each accepted payload changed only the macroblocks its header names (slower).
    pub check_writes: bool,
    /// The vector unit of the decoder under test (falls back to the next one down if the CPU
    /// lacks it, as [`Decoder::with_simd`] does).
    pub unit: Simd,
    /// A second decoder on this unit takes every case too: any difference in what it answers is
    /// a finding, and so is any difference in the picture, compared after every case when
    /// `check_writes` is on and every 64th case otherwise (a difference stays in the picture
    /// until both decoders overwrite that macroblock).
    pub reference: Option<Simd>,
}

impl FuzzOptions {
    /// The widest unit against the portable reference, with the write check.
    pub fn thorough() -> Self {
        FuzzOptions {
            check_writes: true,
            unit: Simd::detect(),
            reference: Some(Simd::Portable),
        }
    }
}

/// Runs `cases` fuzz cases against a decoder of `geometry`, checked as `options` says.
pub fn run_decoder_fuzz(
    geometry: FrameGeometry,
    seed: u64,
    cases: u64,
    options: FuzzOptions,
) -> Result<FuzzSummary, FuzzFinding> {
    let mut rng = SplitMix64::new(seed);
    let corpus = payload_corpus(geometry, &mut rng, 24);
    let mut decoder = Decoder::with_simd(geometry, options.unit);
    let unit = decoder.simd();
    let mut reference = options
        .reference
        .map(|simd| Decoder::with_simd(geometry, simd));
    let mut before = I420Frame::grey(geometry);
    let mut case = Vec::with_capacity(2048);
    let mut summary = FuzzSummary::default();
    for n in 0..cases {
        next_case(&mut rng, &corpus, &mut case);
        if options.check_writes {
            let _ = before.copy_from(decoder.frame().view());
        }
        let outcome = decoder.apply(&case);
        if let Some(reference) = reference.as_mut() {
            let expected = reference.apply(&case);
            if outcome != expected {
                return Err(FuzzFinding::UnitsAnsweredDifferently {
                    case: n,
                    unit,
                    reference: reference.simd(),
                    got: format!("{outcome:?}"),
                    expected: format!("{expected:?}"),
                });
            }
            if (options.check_writes || n % 64 == 0) && decoder.frame() != reference.frame() {
                return Err(FuzzFinding::UnitsDrewDifferently {
                    case: n,
                    unit,
                    reference: reference.simd(),
                });
            }
        }
        match outcome {
            Ok(_) => {
                summary.accepted += 1;
                if decoder.geometry() != geometry {
                    return Err(FuzzFinding::GeometryChanged { case: n });
                }
                if options.check_writes
                    && !only_claimed_changed(geometry, &case, &before, decoder.frame())
                {
                    return Err(FuzzFinding::WroteOutsideClaimedMacroblocks { case: n });
                }
            }
            Err(e) => {
                summary.rejected += 1;
                if matches!(
                    e,
                    DecodeError::Macroblock { .. } | DecodeError::TrailingBytes(_)
                ) {
                    summary.rejected_in_body += 1;
                }
            }
        }
        summary.cases += 1;
    }
    Ok(summary)
}

fn only_claimed_changed(
    geometry: FrameGeometry,
    payload: &[u8],
    before: &I420Frame,
    after: &I420Frame,
) -> bool {
    let Ok(h) = crate::payload::PayloadHeader::parse(payload) else {
        return false;
    };
    let n = geometry.mb_count();
    let mut claimed = vec![false; n];
    for i in 0..usize::from(h.mb_count) {
        claimed[h.macroblock_position(i, n)] = true;
    }
    let cols = geometry.mb_cols();
    let (w, cw) = (geometry.width(), geometry.chroma_width());
    let luma_ok = before
        .y()
        .iter()
        .zip(after.y())
        .enumerate()
        .all(|(i, (a, b))| a == b || claimed[(i / w / 16) * cols + (i % w) / 16]);
    let chroma_ok = |x: &[u8], y: &[u8]| {
        x.iter()
            .zip(y)
            .enumerate()
            .all(|(i, (a, b))| a == b || claimed[(i / cw / 8) * cols + (i % cw) / 8])
    };
    luma_ok && chroma_ok(before.u(), after.u()) && chroma_ok(before.v(), after.v())
}
