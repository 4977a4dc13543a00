//! Display cost per frame: decoding a frame's payloads into the persistent picture, composing
//! the headless picture (glow border + HUD), and I420->RGB for `frames:DIR`, beside a plain copy
//! of the same frame (memcpy) measured in the same run as the baseline.
//!
//! `cargo bench -p keymash-present --bench present`

use std::time::Instant;

use keymash_codec::{
    Decoder, Encoder, EncoderConfig, FrameGeometry, I420Frame, PayloadSink, QualitySpec,
};
use keymash_core::{FrameNo, MashLevel, Quality};
use keymash_present::{compose_headless, headless_canvas, i420_to_rgb};

const ROUNDS: usize = 300;

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A camera-like picture: gradients and texture, so the codec has real work.
fn picture(geometry: FrameGeometry) -> I420Frame {
    let (w, h) = (geometry.width(), geometry.height());
    let y = (0..w * h)
        .map(|i| ((i % w) * 255 / w + ((i / w) * 7 + (i % w) * 13) % 31) as u8)
        .collect();
    let u = (0..geometry.chroma_len())
        .map(|i| (96 + i % 64) as u8)
        .collect();
    let v = (0..geometry.chroma_len())
        .map(|i| (160 - i % 48) as u8)
        .collect();
    I420Frame::from_planes(geometry, y, u, v).expect("planes")
}

/// p50, p99 and max of `samples` in milliseconds.
fn summary(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), samples[samples.len() - 1])
}

fn time_ms(mut f: impl FnMut()) -> Vec<f64> {
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn main() {
    println!(
        "CPU: {} ({} threads visible)",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("{ROUNDS} rounds each; p50 / p99 / max in ms; ratio = p50 / memcpy p50");
    for (w, h) in [(640, 480), (1280, 720)] {
        let geometry = FrameGeometry::new(w, h).expect("geometry");
        let source = picture(geometry);
        let (canvas_geometry, border) = headless_canvas(geometry, 32).expect("canvas");
        for q in [10u8, 50, 90] {
            let mut sink = PayloadSink::new();
            let mut encoder = Encoder::new(EncoderConfig::new(geometry)).expect("encoder");
            encoder
                .encode(
                    FrameNo(1),
                    source.view(),
                    QualitySpec::Uniform(Quality::new(q).expect("q")),
                    &mut sink,
                )
                .expect("encode");
            let payloads: Vec<Vec<u8>> = sink.iter().map(<[u8]>::to_vec).collect();

            let mut copy = I420Frame::grey(geometry);
            let mut memcpy = time_ms(|| {
                let (y, u, v) = copy.planes_mut();
                y.copy_from_slice(source.y());
                u.copy_from_slice(source.u());
                v.copy_from_slice(source.v());
            });
            let mut decoder = Decoder::new(geometry);
            let mut decode = time_ms(|| {
                for p in &payloads {
                    decoder.apply(p).expect("decode");
                }
            });
            let mut canvas = I420Frame::grey(canvas_geometry);
            let mut compose = time_ms(|| {
                compose_headless(
                    decoder.frame().view(),
                    MashLevel::new(0.5).expect("level"),
                    border,
                    Some("loss 12.5% q50 30.0fps mash 0.50"),
                    &mut canvas,
                );
            });
            let mut rgb = Vec::new();
            let mut to_rgb = time_ms(|| i420_to_rgb(canvas.view(), &mut rgb));
            let base = summary(&mut memcpy);
            println!(
                "{w}x{h} q{q} ({} payloads, {} bytes):",
                payloads.len(),
                payloads.iter().map(Vec::len).sum::<usize>()
            );
            for (name, samples) in [
                ("memcpy (baseline)", &mut memcpy),
                ("decode", &mut decode),
                ("compose+HUD", &mut compose),
                ("I420->RGB", &mut to_rgb),
            ] {
                let (p50, p99, max) = summary(samples);
                println!(
                    "  {name:<18} {p50:8.3} {p99:8.3} {max:8.3}   x{:.1}",
                    p50 / base.0.max(1e-9)
                );
            }
        }
    }
}
