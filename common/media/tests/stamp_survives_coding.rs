//! The stamp drawn into the synthetic scene reads back from the decoded picture after coding at
//! quality 30 and above, in both payload layouts, so delay and latency can be measured from
//! pixels alone at the far end.

use keymash_codec::{
    Decoder, Encoder, EncoderConfig, FrameGeometry, I420Frame, Layout, PayloadSink, QualitySpec,
};
use keymash_core::{FrameNo, Quality};
use keymash_media::{read_stamp, Stamp, SyntheticScene};

#[test]
fn the_stamp_reads_back_after_coding_at_quality_30_and_above() {
    let geometry = FrameGeometry::new(320, 240).unwrap();
    let mut scene = SyntheticScene::new(geometry, 3);
    let mut frame = I420Frame::grey(geometry);
    for layout in [Layout::Strips, Layout::Dispersed] {
        let mut encoder = Encoder::new(EncoderConfig {
            layout,
            ..EncoderConfig::new(geometry)
        })
        .unwrap();
        let mut decoder = Decoder::new(geometry);
        let mut sink = PayloadSink::new();
        for (i, quality) in [30u8, 31, 50, 75, 90, 100].into_iter().enumerate() {
            let frame_no = FrameNo(1_000 + i as u64);
            let capture_ns = 5_000_000_000 + i as u64 * 33_333_333;
            assert!(scene.render(frame_no, capture_ns, &mut frame));
            encoder
                .encode(
                    frame_no,
                    frame.view(),
                    QualitySpec::Uniform(Quality::new(quality).unwrap()),
                    &mut sink,
                )
                .unwrap();
            for payload in sink.iter() {
                decoder.apply(payload).unwrap();
            }
            assert_eq!(
                read_stamp(decoder.frame()),
                Some(Stamp::new(frame_no, capture_ns)),
                "{layout:?} at quality {quality}"
            );
        }
    }
}

#[test]
fn a_frame_with_the_stamp_area_missing_reads_as_none_not_as_a_wrong_stamp() {
    let geometry = FrameGeometry::new(320, 240).unwrap();
    let mut scene = SyntheticScene::new(geometry, 3);
    let mut frame = I420Frame::grey(geometry);
    let mut encoder = Encoder::new(EncoderConfig::new(geometry)).unwrap();
    let mut sink = PayloadSink::new();
    // Frame 1 fully decoded, then frame 2 with its first payload (the stamp's top rows) lost:
    // the picture holds a mix of both frames' stamp cells.
    let mut decoder = Decoder::new(geometry);
    assert!(scene.render(FrameNo(1), 1_000_000_000, &mut frame));
    encoder
        .encode(
            FrameNo(1),
            frame.view(),
            QualitySpec::Uniform(Quality::new(50).unwrap()),
            &mut sink,
        )
        .unwrap();
    for payload in sink.iter() {
        decoder.apply(payload).unwrap();
    }
    assert!(scene.render(FrameNo(0x00FF_00FF), 0x7777_0000_0000, &mut frame));
    encoder
        .encode(
            FrameNo(0x00FF_00FF),
            frame.view(),
            QualitySpec::Uniform(Quality::new(50).unwrap()),
            &mut sink,
        )
        .unwrap();
    for payload in sink.iter().skip(1) {
        decoder.apply(payload).unwrap();
    }
    let read = read_stamp(decoder.frame());
    assert!(
        read.is_none() || read == Some(Stamp::new(FrameNo(1), 1_000_000_000)),
        "a mixed picture must not read as a third stamp: {read:?}"
    );
}
