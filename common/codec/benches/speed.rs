//! Encode and decode speed on what a camera gives: clips of different frames (each photograph
//! panned with sensor noise, one of them dark and very noisy, and testsrc2 with noise) at 640x480
//! and 1280x720, keymash and libjpeg-turbo interleaved frame by frame in this one process and
//! thread, so both see the same caches and the same noise.
//!
//!   common/codec/benches/fetch-images.sh && cargo bench -p keymash-codec --bench speed
//!
//! keymash runs twice: on the widest vector unit the CPU has (AVX2 here; `KEYMASH_CODEC_SIMD`
//! names another) and forced to SSE2, the unit every x86-64 CPU has. For each frame: keymash
//! encode on each unit, libjpeg-turbo compress from planar 4:2:0 YUV, then keymash decode of its
//! own payloads on each unit, libjpeg-turbo decompress to planar YUV, at quality 75
//! (`KEYMASH_BENCH_QUALITY` sets another); which of the three goes first rotates every frame.
//! One untimed warm-up pass over the clip (which also checks that both units give the same
//! payloads and pictures), then `KEYMASH_BENCH_PASSES` timed passes (default 3). Per clip it
//! prints per-frame p50 and p99 of each, the ratios keymash / libjpeg-turbo for both units,
//! bytes per frame and PSNR-Y of both coders, keymash's heap allocations per frame in the timed
//! passes, and keymash's all-cores encode p50 (a separate pass, widest unit). The clips are read from `target/codec-data` of this checkout, or from
//! `KEYMASH_CODEC_IMAGES`; without them the bench exits non-zero and prints the command that
//! makes them.

mod support;
mod turbojpeg;

use keymash_codec::{
    Decoder, Encoder, EncoderConfig, FrameGeometry, I420Frame, Layout, PayloadSink, QualitySpec,
    Simd,
};
use keymash_core::{FrameNo, Quality};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::time::{Duration, Instant};
use support::{ms, percentiles};
use turbojpeg::{Compressor, Decompressor};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const DEFAULT_QUALITY: u8 = 75;
const GEOMETRIES: [FrameGeometry; 2] = [FrameGeometry::VGA, FrameGeometry::HD720];

/// The two vector units keymash is timed on: the widest (or the one `KEYMASH_CODEC_SIMD` names)
/// and SSE2.
#[derive(Clone, Copy)]
struct Units {
    wide: Simd,
    sse2: Simd,
}

/// One clip's figures, for the summary.
struct Summary {
    clip: String,
    geometry: FrameGeometry,
    /// keymash / libjpeg-turbo, p50 and p99, per unit (wide, SSE2).
    encode: [[f64; 2]; 2],
    decode: [[f64; 2]; 2],
}

fn main() {
    let passes: usize = std::env::var("KEYMASH_BENCH_PASSES")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&p| p > 0)
        .unwrap_or(3);
    let quality: u8 = std::env::var("KEYMASH_BENCH_QUALITY")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|q| (1..=100).contains(q))
        .unwrap_or(DEFAULT_QUALITY);
    let wide = Simd::from_env().unwrap_or_else(|e| support::fail(&e.to_string()));
    let units = Units {
        wide,
        sse2: Simd::Sse2,
    };
    println!("machine: {}", support::machine());
    println!(
        "quality {quality}, one thread, keymash ({wide} and sse2) and libjpeg-turbo interleaved \
         frame by frame, 1 warm-up + {passes} timed passes per clip, times per frame in ms"
    );
    // Every clip is checked before anything is measured.
    support::require_clips_exist(&GEOMETRIES);
    let mut summary = Vec::new();
    for geometry in GEOMETRIES {
        println!("\n== {geometry} ==");
        for name in support::CLIP_NAMES {
            let frames = support::require_clip(geometry, name);
            summary.push(bench_clip(name, &frames, passes, quality, units));
        }
    }
    println!(
        "\nsummary, quality {quality}: keymash time / libjpeg-turbo time per frame (below 1 = \
         keymash faster)"
    );
    println!(
        "{:<14} {:<9} {:>21} {:>21} {:>21} {:>21}",
        "",
        "",
        format!("encode {wide}"),
        "encode sse2",
        format!("decode {wide}"),
        "decode sse2"
    );
    println!(
        "{:<14} {:<9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "clip", "size", "p50", "p99", "p50", "p99", "p50", "p99", "p50", "p99"
    );
    for s in &summary {
        let [ew, es] = s.encode;
        let [dw, ds] = s.decode;
        println!(
            "{:<14} {:<9} {:>9.2}x {:>9.2}x {:>9.2}x {:>9.2}x {:>9.2}x {:>9.2}x {:>9.2}x {:>9.2}x",
            s.clip,
            s.geometry.to_string(),
            ew[0],
            ew[1],
            es[0],
            es[1],
            dw[0],
            dw[1],
            ds[0],
            ds[1]
        );
    }
}

fn encoder(geometry: FrameGeometry, threads: usize, simd: Simd) -> Encoder {
    let config = EncoderConfig {
        geometry,
        layout: Layout::Strips,
        max_payload: 1188,
        threads,
    };
    Encoder::with_simd(config, simd)
        .unwrap_or_else(|e| support::fail(&format!("encoder setup failed: {e}")))
}

/// keymash on one vector unit: its encoder, payloads and decoder.
struct Keymash {
    encoder: Encoder,
    sink: PayloadSink,
    decoder: Decoder,
}

impl Keymash {
    fn new(geometry: FrameGeometry, simd: Simd) -> Self {
        let keymash = Keymash {
            encoder: encoder(geometry, 1, simd),
            sink: PayloadSink::new(),
            decoder: Decoder::with_simd(geometry, simd),
        };
        if keymash.encoder.simd() != simd || keymash.decoder.simd() != simd {
            support::fail(&format!("keymash cannot run on {simd} here"));
        }
        keymash
    }

    fn encode(&mut self, n: u64, frame: &I420Frame, quality: u8) -> Duration {
        let quality = QualitySpec::Uniform(Quality::saturating(i64::from(quality)));
        timed(|| {
            if let Err(e) = self
                .encoder
                .encode(FrameNo(n), frame.view(), quality, &mut self.sink)
            {
                support::fail(&format!("keymash encode: {e}"));
            }
        })
    }

    fn decode(&mut self) -> Duration {
        timed(|| {
            for p in self.sink.iter() {
                if let Err(e) = self.decoder.apply(p) {
                    support::fail(&format!("keymash decode: {e}"));
                }
            }
        })
    }
}

/// The coders of one clip and the state they keep between frames: keymash on the wide unit and
/// on SSE2, and libjpeg-turbo.
struct Coders {
    wide: Keymash,
    sse2: Keymash,
    compressor: Compressor,
    decompressor: Decompressor,
    tj_decoded: I420Frame,
}

/// Time of each step of one frame.
#[derive(Default, Clone, Copy)]
struct FrameTimes {
    /// keymash encode, wide unit then SSE2.
    km_encode: [Duration; 2],
    tj_compress: Duration,
    /// keymash decode, wide unit then SSE2.
    km_decode: [Duration; 2],
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
    fn new(geometry: FrameGeometry, units: Units) -> Self {
        Coders {
            wide: Keymash::new(geometry, units.wide),
            sse2: Keymash::new(geometry, units.sse2),
            compressor: tj_or_fail(Compressor::new(geometry.width(), geometry.height())),
            decompressor: tj_or_fail(Decompressor::new()),
            tj_decoded: I420Frame::grey(geometry),
        }
    }

    /// Codes one frame with all three; `first` (0, 1 or 2) rotates which goes first: keymash
    /// wide, keymash SSE2, libjpeg-turbo.
    fn frame(&mut self, n: u64, frame: &I420Frame, quality: u8, first: usize) -> FrameTimes {
        let mut t = FrameTimes::default();
        for step in 0..3 {
            match (first + step) % 3 {
                0 => t.km_encode[0] = self.wide.encode(n, frame, quality),
                1 => t.km_encode[1] = self.sse2.encode(n, frame, quality),
                _ => {
                    t.tj_compress = timed(|| {
                        if let Err(e) = self.compressor.compress(frame, quality) {
                            support::fail(&e);
                        }
                    })
                }
            }
        }
        // Outside the timing: that the JPEG is 4:2:0 of this size, so it may be decoded here.
        let g = frame.geometry();
        let jpeg = self
            .decompressor
            .check(self.compressor.jpeg(), g.width(), g.height())
            .unwrap_or_else(|e| support::fail(&e));
        for step in 0..3 {
            match (first + step) % 3 {
                0 => t.km_decode[0] = self.wide.decode(),
                1 => t.km_decode[1] = self.sse2.decode(),
                _ => {
                    t.tj_decompress = timed(|| {
                        if let Err(e) = self.decompressor.decompress(&jpeg, &mut self.tj_decoded) {
                            support::fail(&e);
                        }
                    })
                }
            }
        }
        t
    }
}

fn p50_p99(times: &mut [Duration]) -> [f64; 2] {
    let p = percentiles(times);
    [ms(p[0]), ms(p[1])]
}

fn bench_clip(
    name: &str,
    frames: &[I420Frame],
    passes: usize,
    quality: u8,
    units: Units,
) -> Summary {
    let Some(first) = frames.first() else {
        support::fail(&format!("{name}: empty clip"))
    };
    let geometry = first.geometry();
    let mut coders = Coders::new(geometry, units);

    // Warm-up pass, untimed: buffers grow to their steady size, the quality of both coders is
    // measured on every frame, and both keymash units must agree byte for byte.
    let (mut km_bytes, mut tj_bytes, mut km_psnr, mut tj_psnr) = (0usize, 0usize, 0.0, 0.0);
    for (i, frame) in frames.iter().enumerate() {
        let _ = coders.frame(i as u64, frame, quality, i % 3);
        if !coders.wide.sink.iter().eq(coders.sse2.sink.iter())
            || coders.wide.decoder.frame() != coders.sse2.decoder.frame()
        {
            support::fail(&format!(
                "{name} frame {i}: keymash on {} and on {} disagree",
                units.wide, units.sse2
            ));
        }
        km_bytes += coders.wide.sink.total_bytes();
        tj_bytes += coders.compressor.jpeg().len();
        km_psnr += support::psnr(frame.y(), coders.wide.decoder.frame().y());
        tj_psnr += support::psnr(frame.y(), coders.tj_decoded.y());
    }
    let count = frames.len() as f64;

    let samples = frames.len() * passes;
    let mut all = Vec::with_capacity(samples);
    let region = Region::new(GLOBAL);
    for pass in 0..passes {
        for (i, frame) in frames.iter().enumerate() {
            let n = (pass + 1) * frames.len() + i;
            all.push(coders.frame(n as u64, frame, quality, n % 3));
        }
    }
    // Two keymash encoders and decoders ran per frame.
    let allocations = region.change().allocations as f64 / 2.0;

    let column = |f: &dyn Fn(&FrameTimes) -> Duration| -> [f64; 2] {
        let mut t: Vec<Duration> = all.iter().map(f).collect();
        p50_p99(&mut t)
    };
    let km_encode = [column(&|t| t.km_encode[0]), column(&|t| t.km_encode[1])];
    let tj_compress = column(&|t| t.tj_compress);
    let km_decode = [column(&|t| t.km_decode[0]), column(&|t| t.km_decode[1])];
    let tj_decompress = column(&|t| t.tj_decompress);
    let ratio = |a: [f64; 2], b: [f64; 2]| [a[0] / b[0], a[1] / b[1]];
    let encode = km_encode.map(|k| ratio(k, tj_compress));
    let decode = km_decode.map(|k| ratio(k, tj_decompress));

    // All cores, keymash only: one more pass, apart from the interleaved ones.
    let mut parallel = encoder(geometry, 0, units.wide);
    let mut sink = PayloadSink::new();
    let q = QualitySpec::Uniform(Quality::saturating(i64::from(quality)));
    let _ = parallel.encode(FrameNo(0), first.view(), q, &mut sink);
    let mut t: Vec<Duration> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| timed(|| drop(parallel.encode(FrameNo(i as u64), f.view(), q, &mut sink))))
        .collect();
    let all_cores = p50_p99(&mut t);

    println!(
        "{name} ({} frames x {passes} passes)          p50     p99   bytes/frame  PSNR-Y",
        frames.len()
    );
    let row = |label: &str, p: [f64; 2], extra: &str| {
        println!("  {label:<32} {:7.3} {:7.3}{extra}", p[0], p[1]);
    };
    let ratio_row = |label: &str, r: [f64; 2]| {
        println!("  {label:<32} {:6.2}x {:6.2}x", r[0], r[1]);
    };
    let (wide, sse2) = (units.wide, units.sse2);
    row(
        &format!("keymash encode {wide}"),
        km_encode[0],
        &format!(
            " {:>10.0} {:7.2} dB",
            km_bytes as f64 / count,
            km_psnr / count
        ),
    );
    row(&format!("keymash encode {sse2}"), km_encode[1], "");
    row(
        "libjpeg-turbo compress from YUV",
        tj_compress,
        &format!(
            " {:>10.0} {:7.2} dB",
            tj_bytes as f64 / count,
            tj_psnr / count
        ),
    );
    ratio_row(&format!("encode {wide}/libjpeg-turbo"), encode[0]);
    ratio_row(&format!("encode {sse2}/libjpeg-turbo"), encode[1]);
    row(&format!("keymash decode {wide}"), km_decode[0], "");
    row(&format!("keymash decode {sse2}"), km_decode[1], "");
    row("libjpeg-turbo decompress to YUV", tj_decompress, "");
    ratio_row(&format!("decode {wide}/libjpeg-turbo"), decode[0]);
    ratio_row(&format!("decode {sse2}/libjpeg-turbo"), decode[1]);
    println!(
        "  keymash encode all cores ({wide}) p50 {:.3} ms; keymash allocations/frame (encode + decode) {:.2}",
        all_cores[0],
        allocations / samples as f64
    );
    Summary {
        clip: name.to_owned(),
        geometry,
        encode,
        decode,
    }
}
