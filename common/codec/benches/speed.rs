//! Encode and decode speed on what a camera gives: clips of different frames (each photograph
//! panned with sensor noise, one of them dark and very noisy, and testsrc2 with noise) at 640x480
//! and 1280x720, keymash and libjpeg-turbo interleaved frame by frame in this one process and
//! thread, so both see the same caches and the same noise.
//!
//!   common/codec/benches/fetch-images.sh && cargo bench -p keymash-codec --bench speed
//!
//! For each frame: keymash encode, libjpeg-turbo compress from planar 4:2:0 YUV, keymash decode
//! of its own payloads, libjpeg-turbo decompress to planar YUV, at quality 75; which coder goes
//! first alternates every frame. One untimed warm-up pass over the clip, then
//! `KEYMASH_BENCH_PASSES` timed passes (default 3). Per clip it prints per-frame p50 and p99 of
//! each, the ratios keymash / libjpeg-turbo, bytes per frame and PSNR-Y of both, keymash's heap
//! allocations per frame in the timed passes, and keymash's all-cores encode p50 (a separate
//! pass). The clips are read from `target/codec-data` of this checkout, or from
//! `KEYMASH_CODEC_IMAGES`; without them the bench exits non-zero and prints the command that
//! makes them.

mod support;
mod turbojpeg;

use keymash_codec::{
    Decoder, Encoder, EncoderConfig, FrameGeometry, I420Frame, Layout, PayloadSink, QualitySpec,
};
use keymash_core::{FrameNo, Quality};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::time::{Duration, Instant};
use support::{ms, percentiles};
use turbojpeg::{Compressor, Decompressor};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const QUALITY: u8 = 75;
const GEOMETRIES: [FrameGeometry; 2] = [FrameGeometry::VGA, FrameGeometry::HD720];

/// One clip's figures, for the summary.
struct Summary {
    clip: String,
    geometry: FrameGeometry,
    /// keymash / libjpeg-turbo, p50 and p99.
    encode: [f64; 2],
    decode: [f64; 2],
}

fn main() {
    let passes: usize = std::env::var("KEYMASH_BENCH_PASSES")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&p| p > 0)
        .unwrap_or(3);
    println!("machine: {}", support::machine());
    println!(
        "quality {QUALITY}, one thread, keymash and libjpeg-turbo interleaved frame by frame, \
         1 warm-up + {passes} timed passes per clip, times per frame in ms"
    );
    // Every clip is checked before anything is measured.
    support::require_clips_exist(&GEOMETRIES);
    let mut summary = Vec::new();
    for geometry in GEOMETRIES {
        println!("\n== {geometry} ==");
        for name in support::CLIP_NAMES {
            let frames = support::require_clip(geometry, name);
            summary.push(bench_clip(name, &frames, passes));
        }
    }
    println!("\nsummary: keymash time / libjpeg-turbo time per frame (below 1 = keymash faster)");
    println!(
        "{:<14} {:<9} {:>9} {:>9} {:>9} {:>9}",
        "clip", "size", "enc p50", "enc p99", "dec p50", "dec p99"
    );
    for s in &summary {
        println!(
            "{:<14} {:<9} {:>8.2}x {:>8.2}x {:>8.2}x {:>8.2}x",
            s.clip,
            s.geometry.to_string(),
            s.encode[0],
            s.encode[1],
            s.decode[0],
            s.decode[1]
        );
    }
}

fn encoder(geometry: FrameGeometry, threads: usize) -> Encoder {
    Encoder::new(EncoderConfig {
        geometry,
        layout: Layout::Strips,
        max_payload: 1188,
        threads,
    })
    .unwrap_or_else(|e| support::fail(&format!("encoder setup failed: {e}")))
}

/// The four coders of one clip and the state they keep between frames.
struct Coders {
    encoder: Encoder,
    sink: PayloadSink,
    decoder: Decoder,
    compressor: Compressor,
    decompressor: Decompressor,
    tj_decoded: I420Frame,
}

/// Time of each step of one frame.
#[derive(Default, Clone, Copy)]
struct FrameTimes {
    km_encode: Duration,
    tj_compress: Duration,
    km_decode: Duration,
    tj_decompress: Duration,
}

/// The libjpeg-turbo handle, or exit non-zero saying how to install the library.
fn tj_or_fail<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| {
        support::fail(&format!(
            "libjpeg-turbo unavailable: {e}\n  install it with: deploy/install-deps.sh test   (or: apt-get install libturbojpeg0-dev)"
        ))
    })
}

fn timed(f: impl FnOnce()) -> Duration {
    let s = Instant::now();
    f();
    s.elapsed()
}

impl Coders {
    fn new(geometry: FrameGeometry) -> Self {
        Coders {
            encoder: encoder(geometry, 1),
            sink: PayloadSink::new(),
            decoder: Decoder::new(geometry),
            compressor: tj_or_fail(Compressor::new(geometry.width(), geometry.height())),
            decompressor: tj_or_fail(Decompressor::new()),
            tj_decoded: I420Frame::grey(geometry),
        }
    }

    /// Codes one frame with both, keymash first or libjpeg-turbo first.
    fn frame(&mut self, n: u64, frame: &I420Frame, keymash_first: bool) -> FrameTimes {
        let quality = QualitySpec::Uniform(Quality::saturating(i64::from(QUALITY)));
        let mut t = FrameTimes::default();
        let Coders {
            encoder,
            sink,
            decoder,
            compressor,
            decompressor,
            tj_decoded,
        } = self;
        let mut km_encode = || {
            timed(|| {
                if let Err(e) = encoder.encode(FrameNo(n), frame.view(), quality, sink) {
                    support::fail(&format!("keymash encode: {e}"));
                }
            })
        };
        let mut tj_compress = || {
            timed(|| {
                if let Err(e) = compressor.compress(frame, QUALITY) {
                    support::fail(&e);
                }
            })
        };
        if keymash_first {
            t.km_encode = km_encode();
            t.tj_compress = tj_compress();
        } else {
            t.tj_compress = tj_compress();
            t.km_encode = km_encode();
        }
        // Outside the timing: that the JPEG is 4:2:0 of this size, so it may be decoded here.
        let g = frame.geometry();
        let jpeg = decompressor
            .check(compressor.jpeg(), g.width(), g.height())
            .unwrap_or_else(|e| support::fail(&e));
        let mut km_decode = || {
            timed(|| {
                for p in sink.iter() {
                    if let Err(e) = decoder.apply(p) {
                        support::fail(&format!("keymash decode: {e}"));
                    }
                }
            })
        };
        let mut tj_decompress = || {
            timed(|| {
                if let Err(e) = decompressor.decompress(&jpeg, tj_decoded) {
                    support::fail(&e);
                }
            })
        };
        if keymash_first {
            t.km_decode = km_decode();
            t.tj_decompress = tj_decompress();
        } else {
            t.tj_decompress = tj_decompress();
            t.km_decode = km_decode();
        }
        t
    }
}

fn p50_p99(times: &mut [Duration]) -> [f64; 2] {
    let p = percentiles(times);
    [ms(p[0]), ms(p[1])]
}

fn bench_clip(name: &str, frames: &[I420Frame], passes: usize) -> Summary {
    let Some(first) = frames.first() else {
        support::fail(&format!("{name}: empty clip"))
    };
    let geometry = first.geometry();
    let mut coders = Coders::new(geometry);

    // Warm-up pass, untimed: buffers grow to their steady size, and the quality of both is
    // measured on every frame.
    let (mut km_bytes, mut tj_bytes, mut km_psnr, mut tj_psnr) = (0usize, 0usize, 0.0, 0.0);
    for (i, frame) in frames.iter().enumerate() {
        let _ = coders.frame(i as u64, frame, i % 2 == 0);
        km_bytes += coders.sink.total_bytes();
        tj_bytes += coders.compressor.jpeg().len();
        km_psnr += support::psnr(frame.y(), coders.decoder.frame().y());
        tj_psnr += support::psnr(frame.y(), coders.tj_decoded.y());
    }
    let count = frames.len() as f64;

    let samples = frames.len() * passes;
    let mut all = Vec::with_capacity(samples);
    let region = Region::new(GLOBAL);
    for pass in 0..passes {
        for (i, frame) in frames.iter().enumerate() {
            let n = (pass + 1) * frames.len() + i;
            all.push(coders.frame(n as u64, frame, n.is_multiple_of(2)));
        }
    }
    let allocations = region.change().allocations;

    let column = |f: fn(&FrameTimes) -> Duration| -> [f64; 2] {
        let mut t: Vec<Duration> = all.iter().map(f).collect();
        p50_p99(&mut t)
    };
    let km_encode = column(|t| t.km_encode);
    let tj_compress = column(|t| t.tj_compress);
    let km_decode = column(|t| t.km_decode);
    let tj_decompress = column(|t| t.tj_decompress);
    let ratio = |a: [f64; 2], b: [f64; 2]| [a[0] / b[0], a[1] / b[1]];
    let encode = ratio(km_encode, tj_compress);
    let decode = ratio(km_decode, tj_decompress);

    // All cores, keymash only: one more pass, apart from the interleaved ones.
    let mut parallel = encoder(geometry, 0);
    let mut sink = PayloadSink::new();
    let quality = QualitySpec::Uniform(Quality::saturating(i64::from(QUALITY)));
    let _ = parallel.encode(FrameNo(0), first.view(), quality, &mut sink);
    let mut t: Vec<Duration> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            timed(|| drop(parallel.encode(FrameNo(i as u64), f.view(), quality, &mut sink)))
        })
        .collect();
    let all_cores = p50_p99(&mut t);

    println!(
        "{name} ({} frames x {passes} passes)          p50     p99   bytes/frame  PSNR-Y",
        frames.len()
    );
    let row = |label: &str, p: [f64; 2], extra: &str| {
        println!("  {label:<32} {:7.3} {:7.3}{extra}", p[0], p[1]);
    };
    row(
        "keymash encode",
        km_encode,
        &format!(
            " {:>10.0} {:7.2} dB",
            km_bytes as f64 / count,
            km_psnr / count
        ),
    );
    row(
        "libjpeg-turbo compress from YUV",
        tj_compress,
        &format!(
            " {:>10.0} {:7.2} dB",
            tj_bytes as f64 / count,
            tj_psnr / count
        ),
    );
    println!(
        "  {:<32} {:6.2}x {:6.2}x",
        "encode keymash/libjpeg-turbo", encode[0], encode[1]
    );
    row("keymash decode", km_decode, "");
    row("libjpeg-turbo decompress to YUV", tj_decompress, "");
    println!(
        "  {:<32} {:6.2}x {:6.2}x",
        "decode keymash/libjpeg-turbo", decode[0], decode[1]
    );
    println!(
        "  keymash encode all cores p50 {:.3} ms; keymash allocations/frame (encode + decode) {:.2}",
        all_cores[0],
        allocations as f64 / samples as f64
    );
    Summary {
        clip: name.to_owned(),
        geometry,
        encode,
        decode,
    }
}
