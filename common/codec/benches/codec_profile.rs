//! Encodes or decodes the 640x480 coffee image a given number of times and nothing else, so that
//! an instruction-counting profiler sees only the codec (a clip's name after the count, such as
//! `coffeedim`, codes that clip's frames in turn instead). Wall-clock time on a shared machine is
//! noisy; instruction counts are repeatable and compare versions reliably:
//!
//!   cargo bench -p keymash-codec --bench codec_profile --no-run   # prints the executable's path
//!   valgrind --tool=callgrind target/release/deps/codec_profile-<hash> encode 20
//!   valgrind --tool=callgrind target/release/deps/codec_profile-<hash> decode 20
//!
//! (`cargo bench -p keymash-codec --bench codec_profile -- encode 20` runs it without a profiler.)
//! It runs on the widest vector unit the CPU has; `KEYMASH_CODEC_SIMD=sse2` (or `portable`)
//! forces another.
//! The image comes from `target/codec-data` of this checkout or `KEYMASH_CODEC_IMAGES`; without
//! it the run exits non-zero with the command that fetches it (`benches/fetch-images.sh`).

mod support;

use keymash_codec::{
    Decoder, Encoder, EncoderConfig, FrameGeometry, Layout, PayloadSink, QualitySpec, Simd,
};
use keymash_core::{FrameNo, Quality};

const QUALITY: u8 = 75;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let what = args.first().map(String::as_str).unwrap_or("encode");
    let frames: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let geometry = FrameGeometry::VGA;
    // A clip's name as the third argument cycles through its frames instead of the still.
    let frames_to_code = match args.get(2) {
        Some(clip) => support::require_clip(geometry, clip),
        None => vec![support::require_image(geometry, "coffee")],
    };
    let frame = &frames_to_code[0];
    let simd = Simd::from_env().unwrap_or_else(|e| support::fail(&e.to_string()));
    let quality = QualitySpec::Uniform(Quality::saturating(i64::from(QUALITY)));
    let Ok(mut encoder) = Encoder::with_simd(
        EncoderConfig {
            geometry,
            layout: Layout::Strips,
            max_payload: 1188,
            threads: 1,
        },
        simd,
    ) else {
        support::fail("encoder setup failed");
    };
    let mut sink = PayloadSink::new();
    if let Err(e) = encoder.encode(FrameNo(0), frame.view(), quality, &mut sink) {
        support::fail(&format!("encode failed: {e}"));
    }
    let mut decoder = Decoder::with_simd(geometry, simd);
    match what {
        "encode" => {
            for (n, frame) in (1..=frames).zip(frames_to_code.iter().cycle()) {
                let _ = encoder.encode(FrameNo(n), frame.view(), quality, &mut sink);
            }
        }
        "decode" => {
            // Every frame's payloads, coded before the decoding starts.
            let mut coded: Vec<Vec<Vec<u8>>> = Vec::new();
            for (n, frame) in (1..).zip(&frames_to_code) {
                let _ = encoder.encode(FrameNo(n), frame.view(), quality, &mut sink);
                coded.push(sink.iter().map(<[u8]>::to_vec).collect());
            }
            for (_, payloads) in (0..frames).zip(coded.iter().cycle()) {
                for p in payloads {
                    let _ = decoder.apply(p);
                }
            }
        }
        other => support::fail(&format!("unknown mode {other}: encode or decode")),
    }
    println!(
        "{what} x{frames} ({simd}): {} B/frame, PSNR-Y {:.2} dB (decoder frame)",
        sink.total_bytes(),
        support::psnr(frame.y(), decoder.frame().y())
    );
}
