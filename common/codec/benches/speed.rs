//! Encode and decode speed at 640x480 and 1280x720, one thread and all cores, beside
//! libjpeg-turbo compressing from and decompressing to planar YUV in the same run, and a count
//! of heap allocations per frame in steady state.
//!
//!   common/codec/benches/fetch-images.sh && cargo bench -p keymash-codec --bench speed
//!
//! `KEYMASH_BENCH_ITERATIONS` sets the frames per figure (default 200). The images are read from
//! `target/codec-data` of this checkout, or from `KEYMASH_CODEC_IMAGES`; without them the bench
//! exits non-zero and prints the command that fetches them.

mod support;

use keymash_codec::{
    Decoder, Encoder, EncoderConfig, FrameGeometry, I420Frame, Layout, PayloadSink, QualitySpec,
};
use keymash_core::{FrameNo, Quality};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::time::{Duration, Instant};
use support::{ms, percentiles};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const QUALITY: u8 = 75;

fn fmt(p: [Duration; 3]) -> String {
    format!("{:7.3} {:7.3} {:7.3}", ms(p[0]), ms(p[1]), ms(p[2]))
}

/// Fastest run: on a shared, noisy machine the least disturbed figure, printed beside p50.
fn min_of(t: &[Duration]) -> f64 {
    t.iter().min().map(|d| ms(*d)).unwrap_or(0.0)
}

fn main() {
    let iterations: usize = std::env::var("KEYMASH_BENCH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    println!("machine: {}", support::machine());
    println!("quality {QUALITY}, {iterations} iterations per figure, times in ms (p50 p99 max)");
    let helper = support::require_baseline_helper();
    // Both sizes are checked before anything is measured.
    let frames = [FrameGeometry::VGA, FrameGeometry::HD720]
        .map(|g| (g, support::require_image(g, "coffee")));
    for (geometry, frame) in &frames {
        bench_size(*geometry, frame, iterations, &helper);
    }
}

fn bench_size(
    geometry: FrameGeometry,
    frame: &I420Frame,
    iterations: usize,
    helper: &std::path::Path,
) {
    println!("\n== {geometry} (coffee) ==");
    let quality = QualitySpec::Uniform(Quality::saturating(i64::from(QUALITY)));
    // memcpy of one frame: the floor any codec sits on.
    let mut copy = I420Frame::grey(geometry);
    let mut t = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let s = Instant::now();
        let _ = copy.copy_from(frame.view());
        t.push(s.elapsed());
    }
    let memcpy = percentiles(&mut t);
    println!("{:<38} {}", "memcpy of the frame", fmt(memcpy));

    let mut encoded: Vec<Vec<u8>> = Vec::new();
    let mut results = Vec::new();
    for (label, threads) in [
        ("keymash encode, 1 thread", 1usize),
        ("keymash encode, all cores", 0),
    ] {
        for layout in [Layout::Strips, Layout::Dispersed] {
            let Ok(mut encoder) = Encoder::new(EncoderConfig {
                geometry,
                layout,
                max_payload: 1188,
                threads,
            }) else {
                support::fail("encoder setup failed");
            };
            let mut sink = PayloadSink::new();
            // Warm up: buffers grow to their steady-state size.
            for n in 0..3 {
                let _ = encoder.encode(FrameNo(n), frame.view(), quality, &mut sink);
            }
            let mut t = Vec::with_capacity(iterations);
            let region = Region::new(GLOBAL);
            for n in 0..iterations as u64 {
                let s = Instant::now();
                let _ = encoder.encode(FrameNo(n), frame.view(), quality, &mut sink);
                t.push(s.elapsed());
            }
            let allocs = region.change().allocations;
            let fastest = min_of(&t);
            let p = percentiles(&mut t);
            println!(
                "{:<38} {} min {fastest:.3}  {} B/frame, {} payloads, {:.2} allocations/frame",
                format!("{label} ({layout:?})"),
                fmt(p),
                sink.total_bytes(),
                sink.len(),
                allocs as f64 / iterations as f64
            );
            if threads == 1 && layout == Layout::Strips {
                encoded = sink.iter().map(<[u8]>::to_vec).collect();
            }
            results.push((label, layout, p));
        }
    }
    let mut decoder = Decoder::new(geometry);
    let mut t = Vec::with_capacity(iterations);
    for p in &encoded {
        let _ = decoder.apply(p);
    }
    let region = Region::new(GLOBAL);
    for _ in 0..iterations {
        let s = Instant::now();
        for p in &encoded {
            let _ = decoder.apply(p);
        }
        t.push(s.elapsed());
    }
    let allocs = region.change().allocations;
    let fastest = min_of(&t);
    let decode = percentiles(&mut t);
    println!(
        "{:<38} {} min {fastest:.3}  {:.2} allocations/frame, PSNR-Y {:.2} dB",
        "keymash decode, 1 thread",
        fmt(decode),
        allocs as f64 / iterations as f64,
        support::psnr(frame.y(), decoder.frame().y())
    );
    let baseline = support::run_baseline(helper, frame, &[QUALITY], iterations)
        .unwrap_or_else(|e| support::fail(&format!("libjpeg-turbo baseline failed: {e}")));
    let Some(b) = baseline.first() else {
        support::fail("libjpeg-turbo baseline printed no figure")
    };
    println!(
        "{:<38} {}   {} B/frame",
        "libjpeg-turbo compress from YUV",
        fmt(b.compress),
        b.bytes
    );
    println!(
        "{:<38} {}   PSNR-Y {:.2} dB",
        "libjpeg-turbo decompress to YUV",
        fmt(b.decompress),
        support::psnr(frame.y(), b.decoded.y())
    );
    println!("ratios of p50 (keymash / libjpeg-turbo; below 1 = keymash faster):");
    for (label, layout, p) in &results {
        println!(
            "  {:<32} {:.2}",
            format!("{label} ({layout:?})"),
            ms(p[0]) / ms(b.compress[0])
        );
    }
    println!(
        "  {:<32} {:.2}",
        "decode, 1 thread",
        ms(decode[0]) / ms(b.decompress[0])
    );
}
