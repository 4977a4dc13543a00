//! Quality and size beside libjpeg-turbo: PSNR and bytes per frame at qualities 10, 30, 50, 75
//! and 90 (and 100, outside the targets) on photographs, and our bytes relative to libjpeg-turbo's at the same PSNR
//! (libjpeg-turbo's size-PSNR curve over qualities 1..=100, interpolated).
//!
//!   common/codec/benches/fetch-images.sh && cargo bench -p keymash-codec --bench quality
//!
//! The images are read from `target/codec-data` of this checkout, or from `KEYMASH_CODEC_IMAGES`
//! (then `fetch-images.sh DIR` with the same directory); without them the bench exits non-zero
//! and prints the command that fetches them.

mod support;

use keymash_codec::{
    Decoder, Encoder, EncoderConfig, FrameGeometry, I420Frame, Layout, PayloadSink, QualitySpec,
};
use keymash_core::{FrameNo, Quality};
use support::{psnr, psnr_yuv, Baseline};

const QUALITIES: [u8; 5] = [10, 30, 50, 75, 90];
/// Printed too, outside the targets: at q100 every quantiser step is 1, so what is left is the
/// transforms' own rounding (ours are 16-bit integer AAN, libjpeg-turbo's the accurate integer
/// DCT).
const INFORMATIVE: [u8; 1] = [100];

fn encode_decode(frame: &I420Frame, quality: u8, layout: Layout) -> Option<(usize, I420Frame)> {
    let geometry = frame.geometry();
    let mut encoder = Encoder::new(EncoderConfig {
        layout,
        ..EncoderConfig::new(geometry)
    })
    .ok()?;
    let mut sink = PayloadSink::new();
    let q = QualitySpec::Uniform(Quality::new(quality).ok()?);
    encoder
        .encode(FrameNo(0), frame.view(), q, &mut sink)
        .ok()?;
    let mut decoder = Decoder::new(geometry);
    for p in sink.iter() {
        decoder.apply(p).ok()?;
    }
    Some((sink.total_bytes(), decoder.frame().clone()))
}

/// libjpeg-turbo's bytes at a given luma PSNR, interpolated linearly in log(bytes) between the
/// two measured qualities that bracket it.
fn baseline_bytes_at(curve: &[(f64, f64)], target_psnr: f64) -> Option<f64> {
    curve.windows(2).find_map(|w| {
        let ((p0, b0), (p1, b1)) = (w[0], w[1]);
        if (p0..=p1).contains(&target_psnr) && p1 > p0 {
            let t = (target_psnr - p0) / (p1 - p0);
            Some((b0.ln() + t * (b1.ln() - b0.ln())).exp())
        } else {
            None
        }
    })
}

fn main() {
    println!("machine: {}", support::machine());
    let helper = support::require_baseline_helper();
    let images = support::require_images(FrameGeometry::VGA);
    let curve_qualities: Vec<u8> = (1..=100).collect();
    let mut worst_psnr_gap = f64::NEG_INFINITY;
    let mut worst_ratio: f64 = 0.0;
    let mut ratios = Vec::new();
    for (name, frame) in &images {
        let baselines: Vec<Baseline> = support::run_baseline(&helper, frame, &curve_qualities, 1)
            .unwrap_or_else(|e| {
                support::fail(&format!("{name}: libjpeg-turbo baseline failed: {e}"))
            });
        let mut curve: Vec<(f64, f64)> = baselines
            .iter()
            .map(|b| (psnr(frame.y(), b.decoded.y()), b.bytes as f64))
            .collect();
        curve.sort_by(|a, b| a.0.total_cmp(&b.0));
        println!("\n== {name} 640x480 ==");
        println!(
            "{:>3} | {:>8} {:>7} {:>7} | {:>8} {:>7} {:>7} | {:>6} {:>9} | {:>8}",
            "q",
            "ours B",
            "Y dB",
            "YUV dB",
            "ljt B",
            "Y dB",
            "YUV dB",
            "dY dB",
            "B ratio",
            "disp. B"
        );
        for &q in QUALITIES.iter().chain(&INFORMATIVE) {
            let Some((bytes, decoded)) = encode_decode(frame, q, Layout::Strips) else {
                support::fail(&format!("{name} q{q}: encode/decode failed"));
            };
            let dispersed = encode_decode(frame, q, Layout::Dispersed)
                .map(|(b, _)| b)
                .unwrap_or(0);
            let Some(b) = baselines.iter().find(|b| b.quality == q) else {
                support::fail(&format!("{name} q{q}: no libjpeg-turbo figure"));
            };
            let (our_y, our_yuv) = (psnr(frame.y(), decoded.y()), psnr_yuv(frame, &decoded));
            let (ljt_y, ljt_yuv) = (psnr(frame.y(), b.decoded.y()), psnr_yuv(frame, &b.decoded));
            let ratio = baseline_bytes_at(&curve, our_y).map(|ljt| bytes as f64 / ljt);
            if QUALITIES.contains(&q) {
                worst_psnr_gap = worst_psnr_gap.max(ljt_y - our_y);
                if let Some(r) = ratio {
                    worst_ratio = worst_ratio.max(r);
                    ratios.push(r);
                }
            }
            println!(
                "{q:>3} | {bytes:>8} {our_y:>7.2} {our_yuv:>7.2} | {:>8} {ljt_y:>7.2} {ljt_yuv:>7.2} | {:>+6.2} {:>9} | {dispersed:>8}",
                b.bytes,
                our_y - ljt_y,
                ratio.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "n/a".into()),
            );
        }
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
    println!("\nours B = keymash payload bytes (headers included, strips); disp. B = same with dispersed layout");
    println!("ljt = libjpeg-turbo 4:2:0 JFIF bytes at the same quality; B ratio = ours / ljt at the same luma PSNR");
    println!(
        "q100 is printed for information only; the two figures below cover qualities {QUALITIES:?}"
    );
    println!("largest PSNR shortfall vs libjpeg-turbo at the same quality: {worst_psnr_gap:.2} dB (target <= 0.5)");
    println!("bytes at the same PSNR: mean {mean:.2}x, worst {worst_ratio:.2}x (target <= 1.5x)");
}
