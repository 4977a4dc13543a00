//! Every vector unit (portable, SSE2, AVX2 where the CPU has it) encodes a frame to the same
//! payloads and decodes payloads to the same picture, at every quality.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule); helpers here are test code too.

mod common;

use keymash_codec::{
    Decoder, Encoder, EncoderConfig, FrameGeometry, I420Frame, Layout, PayloadSink, QualitySpec,
    Simd,
};
use keymash_core::{FrameNo, Quality};

/// The units this CPU has, saying which it lacks.
fn available_units() -> Vec<Simd> {
    Simd::ALL
        .into_iter()
        .filter(|simd| {
            let available = simd.is_available();
            if !available {
                eprintln!("note: this CPU has no {simd}; that path was not tested");
            }
            available
        })
        .collect()
}

fn encode(simd: Simd, frame: &I420Frame, quality: QualitySpec<'_>) -> Vec<Vec<u8>> {
    let mut config = EncoderConfig::new(frame.geometry());
    config.layout = Layout::Dispersed;
    let mut encoder = Encoder::with_simd(config, simd).unwrap();
    assert_eq!(encoder.simd(), simd);
    let mut sink = PayloadSink::new();
    encoder
        .encode(FrameNo(1), frame.view(), quality, &mut sink)
        .unwrap();
    sink.iter().map(<[u8]>::to_vec).collect()
}

fn decode(simd: Simd, geometry: FrameGeometry, payloads: &[Vec<u8>]) -> I420Frame {
    let mut decoder = Decoder::with_simd(geometry, simd);
    assert_eq!(decoder.simd(), simd);
    for p in payloads {
        decoder.apply(p).unwrap();
    }
    decoder.frame().clone()
}

/// A frame with every kind of block: camera-like content on the left, noise on the right, and
/// saturated rows and checkerboards of 0 and 255 across the middle.
fn hostile_frame(geometry: FrameGeometry, seed: u64) -> I420Frame {
    let camera = common::camera_like(geometry, seed);
    let noise = common::noise(geometry, seed + 1);
    let mut frame = camera.clone();
    let width = geometry.width();
    let cw = geometry.chroma_width();
    let (y, u, v) = frame.planes_mut();
    for (plane, other, w) in [
        (y, noise.y(), width),
        (u, noise.u(), cw),
        (v, noise.v(), cw),
    ] {
        let rows = plane.len() / w;
        for (i, p) in plane.iter_mut().enumerate() {
            let (x, r) = (i % w, i / w);
            if x >= w / 2 {
                *p = other[i];
            }
            if r >= rows / 3 && r < 2 * rows / 3 {
                *p = if (x / 2 + r) % 2 == 0 { 0 } else { 255 };
            }
            if r == rows / 2 {
                *p = 255;
            }
        }
    }
    frame
}

#[test]
fn every_vector_unit_encodes_and_decodes_whole_frames_identically_at_every_quality() {
    let units = available_units();
    let geometry = FrameGeometry::new(96, 64).unwrap();
    let frames = [common::camera_like(geometry, 3), hostile_frame(geometry, 5)];
    for (f, frame) in frames.iter().enumerate() {
        for quality in 1..=100u8 {
            let quality = QualitySpec::Uniform(Quality::new(quality).unwrap());
            let reference = encode(Simd::Portable, frame, quality);
            let picture = decode(Simd::Portable, geometry, &reference);
            for &simd in &units {
                assert_eq!(
                    encode(simd, frame, quality),
                    reference,
                    "{simd} frame {f} {quality:?}"
                );
                assert_eq!(
                    decode(simd, geometry, &reference),
                    picture,
                    "{simd} frame {f} {quality:?}"
                );
            }
        }
    }
}

#[test]
fn a_quality_map_with_every_quality_gives_the_same_payloads_on_every_unit() {
    let geometry = FrameGeometry::VGA;
    let frame = hostile_frame(geometry, 11);
    let map: Vec<Quality> = (0..geometry.mb_count())
        .map(|i| Quality::saturating(1 + (i * 37 % 100) as i64))
        .collect();
    let reference = encode(Simd::Portable, &frame, QualitySpec::Map(&map));
    let picture = decode(Simd::Portable, geometry, &reference);
    for simd in available_units() {
        assert_eq!(
            encode(simd, &frame, QualitySpec::Map(&map)),
            reference,
            "{simd}"
        );
        assert_eq!(decode(simd, geometry, &reference), picture, "{simd}");
    }
}

#[test]
fn the_widest_unit_is_the_default_and_a_missing_one_falls_back() {
    let geometry = FrameGeometry::new(32, 32).unwrap();
    let detected = Simd::detect();
    assert!(detected.is_available());
    assert_eq!(Decoder::new(geometry).simd(), detected);
    let encoder = Encoder::new(EncoderConfig::new(geometry)).unwrap();
    assert_eq!(encoder.simd(), detected);
    #[cfg(target_arch = "x86_64")]
    {
        assert!(Simd::Sse2.is_available());
        let expected = if Simd::Avx2.is_available() {
            Simd::Avx2
        } else {
            Simd::Sse2
        };
        assert_eq!(detected, expected);
        let widest = Encoder::with_simd(EncoderConfig::new(geometry), Simd::Avx2).unwrap();
        assert_eq!(widest.simd(), expected);
        assert_eq!(Decoder::with_simd(geometry, Simd::Avx2).simd(), expected);
    }
    for simd in Simd::ALL {
        assert_eq!(simd.name().parse::<Simd>(), Ok(simd));
        assert_eq!(simd.name().to_uppercase().parse::<Simd>(), Ok(simd));
    }
    assert!("avx512".parse::<Simd>().is_err());
}
