//! The round trip behind `keymash codec roundtrip`: Y4M in, decoded Y4M out, size and PSNR.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule); helpers here are test code too.

mod common;

use keymash_codec::roundtrip::{roundtrip, RoundtripConfig, RoundtripError};
use keymash_codec::y4m::{Y4mError, Y4mHeader, Y4mReader, Y4mWriter};
use keymash_codec::{FrameGeometry, I420Frame, Layout, DEFAULT_MAX_PAYLOAD};
use keymash_core::Quality;

fn video(geometry: FrameGeometry, frames: u64) -> Vec<u8> {
    let mut w = Y4mWriter::new(Vec::new(), &Y4mHeader::new(geometry, "30:1")).unwrap();
    for s in 0..frames {
        w.write_frame(common::camera_like(geometry, s).view())
            .unwrap();
    }
    w.finish().unwrap()
}

fn config(q: u8, layout: Layout) -> RoundtripConfig {
    RoundtripConfig {
        quality: Quality::new(q).unwrap(),
        layout,
        max_payload: DEFAULT_MAX_PAYLOAD,
        threads: 1,
    }
}

#[test]
fn round_trip_writes_every_decoded_frame_and_reports_size_and_psnr() {
    let geometry = FrameGeometry::new(160, 96).unwrap();
    let input = video(geometry, 3);
    let mut reports = Vec::new();
    for (q, layout) in [(20, Layout::Strips), (80, Layout::Dispersed)] {
        let mut output = Vec::new();
        let report = roundtrip(&input[..], &mut output, config(q, layout), || 0).unwrap();
        assert_eq!(report.frames, 3);
        assert_eq!((report.width, report.height), (160, 96));
        assert!(report.bytes_per_frame > 0.0 && report.payloads_per_frame >= 1.0);
        assert!(report.psnr_y > 25.0 && report.psnr_yuv > 25.0, "{report:?}");
        let mut reader = Y4mReader::new(&output[..]).unwrap();
        assert_eq!(reader.header().geometry, geometry);
        let mut frame = I420Frame::grey(geometry);
        let mut count = 0;
        while reader.read_frame(&mut frame).unwrap() {
            count += 1;
        }
        assert_eq!(count, 3);
        reports.push(report);
    }
    assert!(reports[1].psnr_y > reports[0].psnr_y + 3.0);
    assert!(reports[1].bytes_per_frame > reports[0].bytes_per_frame);
}

#[test]
fn round_trip_times_each_frames_encode_and_decode_with_the_given_clock() {
    let geometry = FrameGeometry::new(160, 96).unwrap();
    let input = video(geometry, 3);
    // The clock is read at each frame's encode start, decode start and decode end: frame i
    // takes i + 1 ms to encode and 0.25 ms to decode.
    let mut readings = Vec::new();
    let mut t = 5_000_000u64;
    for i in 0..3u64 {
        readings.push(t);
        t += (i + 1) * 1_000_000;
        readings.push(t);
        t += 250_000;
        readings.push(t);
        t += 7_000_000; // reading the Y4M, PSNR, writing: not timed
    }
    let mut readings = readings.into_iter();
    let clock = move || {
        readings
            .next()
            .expect("the clock is read three times a frame")
    };
    let report = roundtrip(&input[..], Vec::new(), config(50, Layout::Strips), clock).unwrap();
    assert_eq!((report.encode_ms.p50, report.encode_ms.p99), (2.0, 3.0));
    assert_eq!((report.decode_ms.p50, report.decode_ms.p99), (0.25, 0.25));
}

#[test]
fn round_trip_refuses_unsupported_input_clearly() {
    let bad = b"YUV4MPEG2 W640 H480 F30:1 C422\nFRAME\n";
    let err = roundtrip(&bad[..], Vec::new(), config(50, Layout::Strips), || 0).unwrap_err();
    assert!(
        matches!(err, RoundtripError::Y4m(Y4mError::UnsupportedColorspace(_))),
        "{err}"
    );
    assert!(err.to_string().contains("422"), "{err}");
    let odd = b"YUV4MPEG2 W100 H50 F30:1 C420jpeg\n";
    let err = roundtrip(&odd[..], Vec::new(), config(50, Layout::Strips), || 0).unwrap_err();
    assert!(err.to_string().contains("multiple of 16"), "{err}");
}
