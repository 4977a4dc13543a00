//! Encodes or decodes the 640x480 coffee image a given number of times and nothing else, so that
//! an instruction-counting profiler sees only the codec. Wall-clock time on a shared machine is
//! noisy; instruction counts are repeatable and compare versions reliably:
//!
//!   valgrind --tool=callgrind target/release/deps/codec_profile-* encode 20
//!   valgrind --tool=callgrind target/release/deps/codec_profile-* decode 20
//!
//! (`cargo bench -p keymash-codec --bench codec_profile -- encode 20` runs it without a profiler.)

mod support;

use keymash_codec::{Decoder, Encoder, EncoderConfig, FrameGeometry, Layout, PayloadSink, QualitySpec};
use keymash_core::{FrameNo, Quality};

const QUALITY: u8 = 75;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let what = args.first().map(String::as_str).unwrap_or("encode");
    let frames: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let geometry = FrameGeometry::VGA;
    let Some((_, frame)) = support::images(geometry).into_iter().find(|(n, _)| n == "coffee") else {
        println!("coffee image missing (run benches/fetch-images.sh)");
        return;
    };
    let quality = QualitySpec::Uniform(Quality::saturating(i64::from(QUALITY)));
    let Ok(mut encoder) = Encoder::new(EncoderConfig { geometry, layout: Layout::Strips, max_payload: 1188, threads: 1 })
    else {
        println!("encoder setup failed");
        return;
    };
    let mut sink = PayloadSink::new();
    if let Err(e) = encoder.encode(FrameNo(0), frame.view(), quality, &mut sink) {
        println!("encode failed: {e}");
        return;
    }
    let mut decoder = Decoder::new(geometry);
    match what {
        "encode" => {
            for n in 1..=frames {
                let _ = encoder.encode(FrameNo(n), frame.view(), quality, &mut sink);
            }
        }
        "decode" => {
            for _ in 0..frames {
                for p in sink.iter() {
                    let _ = decoder.apply(p);
                }
            }
        }
        other => {
            println!("unknown mode {other}: encode or decode");
            return;
        }
    }
    println!(
        "{what} x{frames}: {} B/frame, PSNR-Y {:.2} dB (decoder frame)",
        sink.total_bytes(),
        support::psnr(frame.y(), decoder.frame().y())
    );
}
