//! Payloads are bounded, self-describing, cover every macroblock exactly once, and each one
//! decodes on its own.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule); helpers here are test code too.

mod common;

use keymash_codec::{
    Decoder, Encoder, EncoderConfig, FrameGeometry, Layout, PayloadHeader, PayloadSink, QualitySpec,
};
use keymash_core::{FrameNo, Quality};

#[test]
fn every_payload_fits_and_every_macroblock_is_carried_exactly_once() {
    let cases = [
        (FrameGeometry::VGA, Layout::Strips, 1188, 75),
        (FrameGeometry::VGA, Layout::Dispersed, 1188, 75),
        (FrameGeometry::VGA, Layout::Strips, 300, 95),
        (FrameGeometry::HD720, Layout::Dispersed, 1188, 30),
        (
            FrameGeometry::new(48, 32).unwrap(),
            Layout::Dispersed,
            64,
            50,
        ),
    ];
    for (geometry, layout, max_payload, quality) in cases {
        let frame = common::camera_like(geometry, 7);
        let config = EncoderConfig {
            geometry,
            layout,
            max_payload,
            threads: 1,
        };
        let mut encoder = Encoder::new(config).unwrap();
        let mut sink = PayloadSink::new();
        let q = Quality::new(quality).unwrap();
        encoder
            .encode(
                FrameNo(42),
                frame.view(),
                QualitySpec::Uniform(q),
                &mut sink,
            )
            .unwrap();
        let n = geometry.mb_count();
        let mut carried = vec![0u32; n];
        let count = sink.len();
        for (i, payload) in sink.iter().enumerate() {
            assert!(
                payload.len() <= max_payload,
                "{geometry} {layout:?}: {} bytes",
                payload.len()
            );
            let h = PayloadHeader::parse(payload).unwrap();
            assert_eq!(h.frame_no, FrameNo(42));
            assert_eq!(usize::from(h.payload_index), i);
            assert_eq!(usize::from(h.payload_count), count);
            assert!(h.matches(geometry));
            for k in 0..usize::from(h.mb_count) {
                carried[h.macroblock_position(k, n)] += 1;
            }
        }
        assert!(carried.iter().all(|&c| c == 1), "{geometry} {layout:?}");
        assert_eq!(sink.stats().macroblocks as usize, n);
        assert_eq!(sink.stats().payloads as usize, count);
    }
}

#[test]
fn each_payload_decodes_alone_and_in_any_order_to_the_same_picture() {
    let geometry = FrameGeometry::VGA;
    let frame = common::camera_like(geometry, 3);
    for layout in [Layout::Strips, Layout::Dispersed] {
        let mut encoder = Encoder::new(EncoderConfig {
            layout,
            ..EncoderConfig::new(geometry)
        })
        .unwrap();
        let mut sink = PayloadSink::new();
        encoder
            .encode(
                FrameNo(1),
                frame.view(),
                QualitySpec::Uniform(Quality::new(60).unwrap()),
                &mut sink,
            )
            .unwrap();
        let payloads: Vec<&[u8]> = sink.iter().collect();
        let mut in_order = Decoder::new(geometry);
        for p in &payloads {
            in_order.apply(p).unwrap();
        }
        let mut reversed = Decoder::new(geometry);
        for p in payloads.iter().rev() {
            let info = reversed.apply(p).unwrap();
            assert_eq!(info.frame_no, FrameNo(1));
        }
        assert_eq!(in_order.frame(), reversed.frame());
        // Alone: a fresh decoder given one payload differs from grey only where it says.
        let mut alone = Decoder::new(geometry);
        let info = alone.apply(payloads[payloads.len() / 2]).unwrap();
        assert!(info.macroblocks > 0);
    }
}

#[test]
fn dispersed_payloads_spread_over_many_rows_while_strips_stay_together() {
    let geometry = FrameGeometry::VGA;
    let frame = common::camera_like(geometry, 5);
    let rows_touched = |layout| {
        let mut encoder = Encoder::new(EncoderConfig {
            layout,
            ..EncoderConfig::new(geometry)
        })
        .unwrap();
        let mut sink = PayloadSink::new();
        encoder
            .encode(
                FrameNo(0),
                frame.view(),
                QualitySpec::Uniform(Quality::new(50).unwrap()),
                &mut sink,
            )
            .unwrap();
        let p = sink.iter().nth(sink.len() / 2).unwrap();
        let h = PayloadHeader::parse(p).unwrap();
        let mut rows = std::collections::BTreeSet::new();
        for k in 0..usize::from(h.mb_count) {
            let pos = h.macroblock_position(k, geometry.mb_count());
            rows.insert(pos / geometry.mb_cols());
        }
        (rows.len(), usize::from(h.mb_count))
    };
    let (strip_rows, strip_mbs) = rows_touched(Layout::Strips);
    let (dispersed_rows, dispersed_mbs) = rows_touched(Layout::Dispersed);
    assert!(
        strip_rows <= 1 + strip_mbs / geometry.mb_cols() + 1,
        "{strip_rows} rows for {strip_mbs}"
    );
    assert!(
        dispersed_rows >= dispersed_mbs.min(geometry.mb_rows()) / 2,
        "{dispersed_rows} rows for {dispersed_mbs}"
    );
}
