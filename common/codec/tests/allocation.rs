//! In steady state, encoding (one thread) and decoding a frame allocate nothing on the heap.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule)

mod common;

use keymash_codec::{
    Decoder, Encoder, EncoderConfig, FrameGeometry, Layout, PayloadSink, QualitySpec,
};
use keymash_core::{FrameNo, Quality};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn encoding_and_decoding_allocate_nothing_once_warmed_up() {
    let geometry = FrameGeometry::VGA;
    let frames = [
        common::camera_like(geometry, 1),
        common::noise(geometry, 2),
        common::camera_like(geometry, 3),
    ];
    for layout in [Layout::Strips, Layout::Dispersed] {
        let mut encoder = Encoder::new(EncoderConfig {
            layout,
            ..EncoderConfig::new(geometry)
        })
        .unwrap();
        let mut decoder = Decoder::new(geometry);
        let mut sink = PayloadSink::new();
        let q = |i: u64| QualitySpec::Uniform(Quality::saturating(10 + (i as i64 * 37) % 90));
        // Warm-up: the noisiest frame at the highest quality sizes the buffers.
        encoder
            .encode(
                FrameNo(0),
                frames[1].view(),
                QualitySpec::Uniform(Quality::MAX),
                &mut sink,
            )
            .unwrap();
        let region = Region::new(GLOBAL);
        for i in 0..6u64 {
            encoder
                .encode(FrameNo(i), frames[i as usize % 3].view(), q(i), &mut sink)
                .unwrap();
            for p in sink.iter() {
                decoder.apply(p).unwrap();
            }
        }
        let stats = region.change();
        assert_eq!(
            stats.allocations + stats.reallocations,
            0,
            "{layout:?}: {stats:?}"
        );
    }
}
