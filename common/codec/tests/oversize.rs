//! A macroblock too big for one payload is still carried, cut down, never lost and never in an
//! oversize payload.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule); helpers here are test code too.

mod common;

use keymash_codec::encoder::MIN_MAX_PAYLOAD;
use keymash_codec::{
    Decoder, Encoder, EncoderConfig, FrameGeometry, Layout, PayloadHeader, PayloadSink, QualitySpec,
};
use keymash_core::{FrameNo, Quality};

#[test]
fn noise_at_quality_100_in_tiny_payloads_keeps_every_macroblock() {
    let geometry = FrameGeometry::new(128, 64).unwrap();
    let frame = common::noise(geometry, 11);
    for max_payload in [MIN_MAX_PAYLOAD, 64, 200, 600] {
        for layout in [Layout::Strips, Layout::Dispersed] {
            let mut encoder = Encoder::new(EncoderConfig {
                geometry,
                layout,
                max_payload,
                threads: 1,
            })
            .unwrap();
            let mut sink = PayloadSink::new();
            encoder
                .encode(
                    FrameNo(9),
                    frame.view(),
                    QualitySpec::Uniform(Quality::MAX),
                    &mut sink,
                )
                .unwrap();
            let stats = sink.stats();
            assert_eq!(
                stats.macroblocks as usize,
                geometry.mb_count(),
                "{max_payload} {layout:?}"
            );
            assert_eq!(
                stats.truncated_macroblocks as usize,
                geometry.mb_count(),
                "every noisy MB is oversize"
            );
            let mut decoder = Decoder::new(geometry);
            let mut decoded = 0usize;
            for p in sink.iter() {
                assert!(p.len() <= max_payload, "{} > {max_payload}", p.len());
                assert_eq!(
                    PayloadHeader::parse(p).unwrap().mb_count,
                    1,
                    "alone in its payload"
                );
                decoded += usize::from(decoder.apply(p).unwrap().macroblocks);
            }
            assert_eq!(decoded, geometry.mb_count());
        }
    }
}

#[test]
fn a_cut_down_macroblock_keeps_its_low_frequencies() {
    // Noise on top of a strong left-right split: the split (low frequencies) must survive
    // even when the payload can only hold a few coefficients.
    let geometry = FrameGeometry::new(16, 16).unwrap();
    let mut frame = common::noise(geometry, 5);
    for (i, p) in frame.planes_mut().0.iter_mut().enumerate() {
        *p = if i % 16 < 8 { *p / 8 } else { 224 + *p / 8 };
    }
    let mut encoder = Encoder::new(EncoderConfig {
        geometry,
        layout: Layout::Strips,
        max_payload: 80,
        threads: 1,
    })
    .unwrap();
    let mut sink = PayloadSink::new();
    encoder
        .encode(
            FrameNo(0),
            frame.view(),
            QualitySpec::Uniform(Quality::MAX),
            &mut sink,
        )
        .unwrap();
    assert_eq!(sink.stats().truncated_macroblocks, 1);
    let mut decoder = Decoder::new(geometry);
    for p in sink.iter() {
        decoder.apply(p).unwrap();
    }
    let y = decoder.frame().y();
    let left: u32 = (0..16).map(|r| u32::from(y[r * 16 + 1])).sum();
    let right: u32 = (0..16).map(|r| u32::from(y[r * 16 + 14])).sum();
    assert!(
        left / 16 < 80 && right / 16 > 170,
        "left {} right {}",
        left / 16,
        right / 16
    );
}
