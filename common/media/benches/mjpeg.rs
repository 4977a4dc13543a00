//! Decode time of one webcam MJPEG frame into the pipeline's I420
//! (`keymash_media::MjpegDecoder::decode`), per frame, on one thread: what capture spends per
//! frame when the camera gives MJPEG.
//!
//! `cargo bench -p keymash-media --bench mjpeg` prints p50/p99/max and the mean frame size for
//! 640x480 and 1280x720, 4:2:2 (what UVC webcams send) at q80 and q90, each over different
//! frames of a moving scene with sensor-like grain (a still picture in a loop would measure a
//! warm cache and a branch predictor that learnt the picture). The frames are encoded first,
//! untimed. The baseline, from the same run and the same frames, is zune-jpeg's own decode to
//! interleaved YCbCr: the difference is what the I420 conversion and the checks cost. A YUYV
//! row shows the strided YUYV conversion of the same size for comparison.
//!
//! `FRAMES=N` changes the frames per case (default 300).

use keymash_core::percentile::nearest_rank;
use std::time::{Duration, Instant};

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use keymash_codec::{FrameGeometry, I420Frame};
use keymash_core::FrameNo;
use keymash_media::{MjpegDecoder, SyntheticScene, YuyvLayout};
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// xorshift64 grain, as a sensor adds: it is what makes real webcam frames cost bits.
struct Grain(u64);

impl Grain {
    fn next(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 & 0x0f) as u8
    }
}

/// The synthetic scene's frame `t` as interleaved full-range YCbCr with grain.
fn camera_frame(scene: &mut SyntheticScene, grain: &mut Grain, t: u64, out: &mut Vec<u8>) {
    let g = scene.geometry();
    let mut frame = I420Frame::grey(g);
    scene.render(FrameNo(t), t * 33_333_333, &mut frame);
    let (w, cw) = (g.width(), g.chroma_width());
    out.clear();
    for row in 0..g.height() {
        for col in 0..w {
            let c = row / 2 * cw + col / 2;
            let y = frame.y()[row * w + col]
                .saturating_add(grain.next())
                .saturating_sub(8);
            out.extend_from_slice(&[y, frame.u()[c], frame.v()[c]]);
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    nearest_rank(sorted, p).unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn row(case: &str, mut times: Vec<Duration>, mean_kib: f64) {
    times.sort();
    println!(
        "{case:<36} {:>8} {:>8} {:>8} {:>9.1}",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times[times.len() - 1]),
        mean_kib
    );
}

fn main() {
    let frames: usize = std::env::var("FRAMES")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(300);
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
        "MJPEG decode per frame, one thread, {frames} different frames per case; {cpu}, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<36} {:>8} {:>8} {:>8} {:>9}",
        "case", "p50 ms", "p99 ms", "max ms", "mean KiB"
    );
    for geometry in [FrameGeometry::VGA, FrameGeometry::HD720] {
        let (w, h) = (geometry.width(), geometry.height());
        for quality in [80u8, 90] {
            let mut scene = SyntheticScene::new(geometry, 7);
            let mut grain = Grain(0x9e37_79b9_7f4a_7c15);
            let mut ycbcr = Vec::new();
            // Encoded first so the timed loop reads each frame once, as capture does.
            let jpegs: Vec<Vec<u8>> = (0..frames as u64 + 10)
                .map(|t| {
                    camera_frame(&mut scene, &mut grain, t, &mut ycbcr);
                    let mut jpeg = Vec::new();
                    let mut encoder = Encoder::new(&mut jpeg, quality);
                    encoder.set_sampling_factor(SamplingFactor::F_2_1);
                    encoder
                        .encode(&ycbcr, w as u16, h as u16, ColorType::Ycbcr)
                        .expect("the scene encodes");
                    jpeg
                })
                .collect();
            let mean_kib =
                jpegs.iter().map(Vec::len).sum::<usize>() as f64 / jpegs.len() as f64 / 1024.0;
            let mut decoder = MjpegDecoder::new(geometry);
            let mut frame = I420Frame::grey(geometry);
            let mut ours = Vec::with_capacity(frames);
            let mut baseline = Vec::with_capacity(frames);
            let mut interleaved = vec![0u8; w * h * 3];
            // The first 10 frames are untimed: page faults of the buffers, CPU frequency ramp.
            for (i, jpeg) in jpegs.iter().enumerate() {
                let start = Instant::now();
                decoder
                    .decode(jpeg, &mut frame)
                    .expect("a whole frame decodes");
                let took = start.elapsed();
                let start = Instant::now();
                let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::YCbCr);
                JpegDecoder::new_with_options(ZCursor::new(&jpeg[..]), options)
                    .decode_into(&mut interleaved)
                    .expect("a whole frame decodes");
                let took_baseline = start.elapsed();
                if i >= 10 {
                    ours.push(took);
                    baseline.push(took_baseline);
                }
            }
            row(&format!("{w}x{h} 4:2:2 q{quality} -> I420"), ours, mean_kib);
            row(
                &format!("{w}x{h} 4:2:2 q{quality} zune-jpeg alone"),
                baseline,
                mean_kib,
            );
        }
        // For comparison: the YUYV path at the same size, lines padded by 64 bytes.
        let stride = 2 * w + 64;
        let layout = YuyvLayout::new(geometry, stride).expect("stride fits");
        let buffer: Vec<u8> = (0..stride * h).map(|i| (i * 7 % 251) as u8).collect();
        let mut frame = I420Frame::grey(geometry);
        let mut times = Vec::with_capacity(frames);
        for i in 0..frames + 10 {
            let start = Instant::now();
            layout
                .to_i420(&buffer, &mut frame)
                .expect("a whole frame converts");
            if i >= 10 {
                times.push(start.elapsed());
            }
        }
        row(
            &format!("{w}x{h} YUYV stride {stride} -> I420"),
            times,
            buffer.len() as f64 / 1024.0,
        );
    }
}
