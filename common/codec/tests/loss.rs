//! A lost payload leaves the previous picture in its macroblocks (the intended glitch), and
//! nothing else is affected.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule); helpers here are test code too.

mod common;

use keymash_codec::{
    Decoder, Encoder, EncoderConfig, FrameGeometry, Layout, PayloadHeader, PayloadSink, QualitySpec,
};
use keymash_core::{FrameNo, Quality};

#[test]
fn a_dropped_payload_leaves_exactly_its_macroblocks_stale() {
    let geometry = FrameGeometry::VGA;
    let old = common::camera_like(geometry, 1);
    let new = common::noise(geometry, 2);
    for layout in [Layout::Strips, Layout::Dispersed] {
        let mut encoder = Encoder::new(EncoderConfig {
            layout,
            ..EncoderConfig::new(geometry)
        })
        .unwrap();
        let mut decoder = Decoder::new(geometry);
        let mut sink = PayloadSink::new();
        let q = QualitySpec::Uniform(Quality::new(50).unwrap());
        encoder
            .encode(FrameNo(0), old.view(), q, &mut sink)
            .unwrap();
        for p in sink.iter() {
            decoder.apply(p).unwrap();
        }
        let first = decoder.frame().clone();
        encoder
            .encode(FrameNo(1), new.view(), q, &mut sink)
            .unwrap();
        let dropped = sink.len() / 3;
        let mut lost = vec![false; geometry.mb_count()];
        for (i, p) in sink.iter().enumerate() {
            if i == dropped {
                let h = PayloadHeader::parse(p).unwrap();
                for k in 0..usize::from(h.mb_count) {
                    lost[h.macroblock_position(k, geometry.mb_count())] = true;
                }
            } else {
                decoder.apply(p).unwrap();
            }
        }
        let w = geometry.width();
        for (mb, &is_lost) in lost.iter().enumerate() {
            let (mx, my) = (mb % geometry.mb_cols(), mb / geometry.mb_cols());
            let top_left = my * 16 * w + mx * 16;
            let same = (0..16).all(|r| {
                decoder.frame().y()[top_left + r * w..top_left + r * w + 16]
                    == first.y()[top_left + r * w..top_left + r * w + 16]
            });
            assert_eq!(same, is_lost, "{layout:?} macroblock {mb}");
        }
    }
}

#[test]
fn each_payload_tells_the_quality_it_was_coded_at() {
    let geometry = FrameGeometry::new(64, 48).unwrap();
    let picture = common::camera_like(geometry, 3);
    let mut encoder = Encoder::new(EncoderConfig::new(geometry)).unwrap();
    let mut decoder = Decoder::new(geometry);
    let mut sink = PayloadSink::new();
    for q in [1, 37, 100] {
        let quality = Quality::new(q).unwrap();
        encoder
            .encode(
                FrameNo(u64::from(q)),
                picture.view(),
                QualitySpec::Uniform(quality),
                &mut sink,
            )
            .unwrap();
        for p in sink.iter() {
            assert_eq!(decoder.apply(p).unwrap().quality, Some(quality), "q{q}");
        }
    }
}
