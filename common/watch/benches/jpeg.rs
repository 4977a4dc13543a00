//! Encode time of one screen picture as a JPEG (`keymash_watch::jpeg::encode_i420`), per frame,
//! on one thread: what keymash-web's MJPEG stream and keymash-archive spend per picture.
//!
//! `cargo bench -p keymash-watch --bench jpeg` prints p50/p99/max and the mean JPEG size for
//! 640x480 and 1280x720 at q70 and q80, each over a moving scene (a new picture per iteration:
//! a still picture in a loop would measure a warm cache and a branch predictor that learnt the
//! picture). The baseline, from the same run, is jpeg-encoder fed its own interleaved YCbCr
//! buffer of the same picture: the difference is what reading the I420 planes costs.
//!
//! `FRAMES=N` changes the frames per case (default 400).

use keymash_core::percentile::nearest_rank;
use std::time::{Duration, Instant};

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use keymash_watch::jpeg::encode_i420;

/// A moving scene: a slow gradient, two discs crossing it, fine sensor-like noise and a chroma
/// wash that drifts, all moving with `t`, so every frame differs everywhere.
struct Scene {
    width: usize,
    height: usize,
    seed: u64,
}

impl Scene {
    fn noise(&mut self) -> u8 {
        // xorshift64: cheap, deterministic, good enough for grain.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed & 0x0f) as u8
    }

    fn frame(&mut self, t: usize, out: &mut Vec<u8>) {
        let (w, h) = (self.width, self.height);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        out.clear();
        let discs = [
            ((t * 7) % w, h / 3, h / 5),
            (w - 1 - (t * 4) % w, 2 * h / 3, h / 4),
        ];
        for y in 0..h {
            for x in 0..w {
                let mut v = 40 + ((x + y + 3 * t) % (w + h)) * 140 / (w + h);
                for (i, &(cx, cy, r)) in discs.iter().enumerate() {
                    let (dx, dy) = (x.abs_diff(cx), y.abs_diff(cy));
                    if dx * dx + dy * dy < r * r {
                        // Stripes inside the discs: edges the DCT has to spend bits on.
                        v = if (x / (3 + i) + t).is_multiple_of(2) {
                            220
                        } else {
                            30
                        };
                    }
                }
                out.push((v as u8).saturating_add(self.noise()));
            }
        }
        for plane in 0..2 {
            for y in 0..ch {
                for x in 0..cw {
                    let v = if plane == 0 {
                        96 + ((x + t) % cw) * 64 / cw
                    } else {
                        100 + ((y + 2 * t) % ch) * 56 / ch
                    };
                    out.push(v as u8 + self.noise() / 4);
                }
            }
        }
    }
}

/// The same I420 picture as interleaved full-resolution YCbCr, jpeg-encoder's own input.
fn interleaved(i420: &[u8], w: usize, h: usize, out: &mut Vec<u8>) {
    let cw = w.div_ceil(2);
    let (y, chroma) = i420.split_at(w * h);
    let (u, v) = chroma.split_at(cw * h.div_ceil(2));
    out.clear();
    for row in 0..h {
        for col in 0..w {
            let c = row / 2 * cw + col / 2;
            out.extend_from_slice(&[y[row * w + col], u[c], v[c]]);
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    nearest_rank(sorted, p).unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

struct Figures {
    times: Vec<Duration>,
    bytes: usize,
}

impl Figures {
    fn row(mut self, case: &str) {
        self.times.sort();
        let n = self.times.len();
        println!(
            "{case:<34} {:>8} {:>8} {:>8} {:>9.1}",
            ms(percentile(&self.times, 0.5)),
            ms(percentile(&self.times, 0.99)),
            ms(self.times[n - 1]),
            self.bytes as f64 / n as f64 / 1024.0
        );
    }
}

fn main() {
    let frames: usize = std::env::var("FRAMES")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(400);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    println!(
        "JPEG encode per frame, one thread, {frames} different frames per case; {cpu}, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>9}",
        "case", "p50 ms", "p99 ms", "max ms", "mean KiB"
    );
    let (mut picture, mut ycbcr, mut jpeg) = (Vec::new(), Vec::new(), Vec::new());
    for (w, h) in [(640usize, 480usize), (1280, 720)] {
        for quality in [70u8, 80] {
            let mut scene = Scene {
                width: w,
                height: h,
                seed: 0x9e37_79b9_7f4a_7c15,
            };
            let mut ours = Figures {
                times: Vec::with_capacity(frames),
                bytes: 0,
            };
            let mut baseline = Figures {
                times: Vec::with_capacity(frames),
                bytes: 0,
            };
            // A few frames first, untimed: page faults of the buffers, CPU frequency ramp.
            for t in 0..frames + 10 {
                scene.frame(t, &mut picture);
                let start = Instant::now();
                encode_i420(&picture, w as u32, h as u32, quality, &mut jpeg)
                    .expect("a picture of the right size encodes");
                let took = start.elapsed();
                let size = jpeg.len();

                interleaved(&picture, w, h, &mut ycbcr);
                jpeg.clear();
                let start = Instant::now();
                let mut encoder = Encoder::new(&mut jpeg, quality);
                encoder.set_sampling_factor(SamplingFactor::F_2_2);
                encoder
                    .encode(&ycbcr, w as u16, h as u16, ColorType::Ycbcr)
                    .expect("the baseline encodes");
                let baseline_took = start.elapsed();
                if t >= 10 {
                    ours.times.push(took);
                    ours.bytes += size;
                    baseline.times.push(baseline_took);
                    baseline.bytes += jpeg.len();
                }
            }
            ours.row(&format!("encode_i420 {w}x{h} q{quality}"));
            baseline.row("  baseline: interleaved YCbCr");
        }
    }
}
