//! Encoding with any number of worker threads gives the same bytes as one thread.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule); helpers here are test code too.

mod common;

use keymash_codec::{Encoder, EncoderConfig, FrameGeometry, Layout, PayloadSink, QualitySpec};
use keymash_core::{FrameNo, Quality};

fn encode_all(
    config: EncoderConfig,
    frames: &[keymash_codec::I420Frame],
    quality: QualitySpec<'_>,
) -> Vec<Vec<u8>> {
    let mut encoder = Encoder::new(config).unwrap();
    let mut sink = PayloadSink::new();
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        encoder
            .encode(FrameNo(i as u64), f.view(), quality, &mut sink)
            .unwrap();
        out.extend(sink.iter().map(<[u8]>::to_vec));
    }
    out
}

#[test]
fn multithreaded_output_is_byte_identical_to_single_threaded() {
    let map: Vec<Quality> = (0..FrameGeometry::VGA.mb_count())
        .map(|i| Quality::saturating(1 + (i % 100) as i64))
        .collect();
    let cases: Vec<(FrameGeometry, Layout, QualitySpec<'_>)> = vec![
        (
            FrameGeometry::VGA,
            Layout::Strips,
            QualitySpec::Uniform(Quality::new(75).unwrap()),
        ),
        (
            FrameGeometry::VGA,
            Layout::Dispersed,
            QualitySpec::Map(&map),
        ),
        (
            FrameGeometry::HD720,
            Layout::Dispersed,
            QualitySpec::Uniform(Quality::new(20).unwrap()),
        ),
        (
            FrameGeometry::new(32, 32).unwrap(),
            Layout::Strips,
            QualitySpec::Uniform(Quality::MAX),
        ),
    ];
    for (geometry, layout, quality) in cases {
        let frames: Vec<_> = (0..2).map(|s| common::camera_like(geometry, s)).collect();
        let base = EncoderConfig {
            geometry,
            layout,
            max_payload: 1188,
            threads: 1,
        };
        let single = encode_all(base.clone(), &frames, quality);
        for threads in [2, 3, 0] {
            let multi = encode_all(
                EncoderConfig {
                    threads,
                    ..base.clone()
                },
                &frames,
                quality,
            );
            assert!(
                single == multi,
                "{geometry} {layout:?} with {threads} threads differs"
            );
        }
    }
}
