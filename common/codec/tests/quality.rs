//! Quality means what it means in JPEG: higher quality, higher PSNR and more bytes; a quality
//! map sets quality per macroblock.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule); helpers here are test code too.

mod common;

use keymash_codec::{
    Decoder, EncodeError, Encoder, EncoderConfig, FrameGeometry, I420Frame, PayloadSink,
    QualitySpec,
};
use keymash_core::{FrameNo, Quality};

fn round_trip(frame: &I420Frame, quality: QualitySpec<'_>) -> (I420Frame, usize) {
    let geometry = frame.geometry();
    let mut encoder = Encoder::new(EncoderConfig::new(geometry)).unwrap();
    let mut sink = PayloadSink::new();
    encoder
        .encode(FrameNo(0), frame.view(), quality, &mut sink)
        .unwrap();
    let mut decoder = Decoder::new(geometry);
    for p in sink.iter() {
        decoder.apply(p).unwrap();
    }
    (decoder.frame().clone(), sink.total_bytes())
}

#[test]
fn psnr_and_size_rise_with_quality() {
    let frame = common::camera_like(FrameGeometry::VGA, 21);
    // Lower bounds of luma PSNR for this picture (noise of +-4 caps it near 44 dB at q100).
    let cases: &[(u8, f64)] = &[
        (5, 24.0),
        (10, 27.0),
        (30, 31.0),
        (50, 33.0),
        (75, 35.0),
        (90, 38.0),
        (100, 45.0),
    ];
    let mut last = (0.0, 0);
    for &(q, min_psnr) in cases {
        let (decoded, bytes) = round_trip(&frame, QualitySpec::Uniform(Quality::new(q).unwrap()));
        let psnr = common::psnr(frame.y(), decoded.y());
        assert!(psnr >= min_psnr, "q{q}: {psnr:.2} dB < {min_psnr}");
        assert!(
            psnr > last.0 && bytes > last.1,
            "q{q}: {psnr:.2} dB {bytes} B after {last:?}"
        );
        last = (psnr, bytes);
    }
}

#[test]
fn quality_map_applies_per_macroblock() {
    let geometry = FrameGeometry::new(64, 32).unwrap();
    let frame = common::camera_like(geometry, 4);
    // Left half quality 5, right half 95.
    let map: Vec<Quality> = (0..geometry.mb_count())
        .map(|i| {
            if i % geometry.mb_cols() < 2 {
                Quality::new(5).unwrap()
            } else {
                Quality::new(95).unwrap()
            }
        })
        .collect();
    let (decoded, _) = round_trip(&frame, QualitySpec::Map(&map));
    let half = |plane: &[u8], right: bool| -> Vec<u8> {
        plane
            .chunks(64)
            .flat_map(|row| if right { &row[32..] } else { &row[..32] })
            .copied()
            .collect()
    };
    let left = common::psnr(&half(frame.y(), false), &half(decoded.y(), false));
    let right = common::psnr(&half(frame.y(), true), &half(decoded.y(), true));
    assert!(
        right > left + 10.0,
        "left {left:.1} dB, right {right:.1} dB"
    );

    let mut encoder = Encoder::new(EncoderConfig::new(geometry)).unwrap();
    let err = encoder
        .encode(
            FrameNo(0),
            frame.view(),
            QualitySpec::Map(&map[1..]),
            &mut PayloadSink::new(),
        )
        .unwrap_err();
    assert_eq!(
        err,
        EncodeError::QualityMapLength {
            expected: 8,
            got: 7
        }
    );
}

#[test]
fn a_frame_of_another_size_is_refused() {
    let mut encoder = Encoder::new(EncoderConfig::new(FrameGeometry::VGA)).unwrap();
    let frame = I420Frame::grey(FrameGeometry::HD720);
    let err = encoder
        .encode(
            FrameNo(0),
            frame.view(),
            QualitySpec::Uniform(Quality::MAX),
            &mut PayloadSink::new(),
        )
        .unwrap_err();
    assert!(matches!(err, EncodeError::GeometryMismatch { .. }));
}
