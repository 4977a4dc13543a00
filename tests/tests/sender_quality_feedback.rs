//! A quality change the receiver sends as RTCP APP reaches the encoder through net-tx and the
//! quality cell, and changes the bytes per frame within two frame intervals.
//!
//! Measured on the product's own clocks, so that a loaded machine cannot fail it while the
//! product keeps its promise: net-tx's time of storing the request in the quality cell (in the
//! record), and each frame's capture time (from the stamp in its pixels and its RTP timestamp).
//! When a frame arrives at the test's receiver is printed, not judged: with the debug builds the
//! tests run, encoding and pacing a frame takes 15 to 60 ms depending on the machine's load.

use std::time::Duration;

use keymash_core::Quality;
use keymash_shm::monotonic_now_ns;
use keymash_tests::sender::{
    capture_times_ms, QualityCellWatch, ReceivedFrame, SenderPipeline, TestReceiver,
};

const FPS: u32 = 20;

fn mean_bytes(frames: &[ReceivedFrame]) -> f64 {
    frames.iter().map(|f| f.bytes as f64).sum::<f64>() / frames.len().max(1) as f64
}

#[test]
fn a_quality_request_changes_the_bytes_per_frame_within_two_frame_intervals() {
    let mut pipeline = SenderPipeline::new("sender-quality", 320, 240, FPS, 0.0, "");
    let interval_ms = pipeline.frame_interval().as_secs_f64() * 1e3;
    let mut receiver = TestReceiver::new(&pipeline);
    pipeline.start_all();
    let watch = QualityCellWatch::start(&pipeline);
    receiver.request_quality(Quality::new(20).unwrap());
    receiver.run_until_frames(20, Duration::from_secs(10));
    receiver.run_until_frames(10, Duration::from_secs(5));

    for (from, to) in [(20u8, 90u8), (90, 20)] {
        let before_start = receiver.frames.len();
        receiver.run_until_frames(10, Duration::from_secs(5));
        let before = mean_bytes(&receiver.frames[before_start..]);
        receiver.request_quality(Quality::new(to).unwrap());
        // Taken after the datagram left: a test thread preempted in between makes the request
        // look later than it was, never earlier.
        let sent_ms = monotonic_now_ns() as f64 / 1e6;
        let change_start = receiver.frames.len();
        receiver.run_until_frames(10, Duration::from_secs(5));
        let after = &receiver.frames[change_start..];
        let settled = mean_bytes(&after[after.len() / 2..]);
        assert!(
            (settled - before).abs() > 0.3 * before.max(settled),
            "q{from} -> q{to}: bytes per frame barely changed ({before:.0} -> {settled:.0})"
        );
        // With no delay configured, a frame is encoded as soon as it is captured.
        let captured = capture_times_ms(&receiver.frames).expect("a stamp was readable");
        let captured = &captured[change_start..];
        // The first store of the new quality after the last of the old one.
        let stores = watch.stores();
        let old = stores
            .iter()
            .rposition(|s| s.quality == Some(from))
            .expect("net-tx stored the old quality");
        let stored_ms = stores[old..]
            .iter()
            .find(|s| s.quality == Some(to) && s.from_receiver)
            .map(|s| s.updated_ns as f64 / 1e6)
            .unwrap_or_else(|| {
                panic!(
                    "q{from} -> q{to}: net-tx never stored q{to} in the quality cell: {stores:?}"
                )
            });
        let table: Vec<String> = after
            .iter()
            .zip(captured)
            .map(|(f, c)| {
                format!(
                    "frame {} q{} {} B: captured {:+.1}, arrived {:+.1}..{:+.1}",
                    f.frame_no,
                    f.quality.map_or("?".to_owned(), |q| q.to_string()),
                    f.bytes,
                    c - sent_ms,
                    f.first_arrival_ns as f64 / 1e6 - sent_ms,
                    f.arrival_ns as f64 / 1e6 - sent_ms
                )
            })
            .collect();
        let table = format!(
            "q{from} -> q{to}, ms after the request: net-tx stored it {:+.1}\n  {}",
            stored_ms - sent_ms,
            table.join("\n  ")
        );
        eprintln!("{table}");

        // net-tx reads feedback at least every 2 ms (FEEDBACK_POLL) and stores a new quality at
        // once. Of the two frame intervals promised, one is left for this hop (the other for
        // the next capture): later, and the encoder could code a second frame at the old quality.
        assert!(
            stored_ms - sent_ms <= interval_ms,
            "net-tx was late with the quality: {table}"
        );
        // The encoder reads the cell before each frame: every frame captured (so encoded) after
        // the store is at the new quality. Exact, up to the stamp's 1 ms resolution.
        for (f, c) in after.iter().zip(captured) {
            assert!(
                *c < stored_ms + 1.0 || f.quality == Some(to),
                "frame {} captured after net-tx stored q{to} is at q{:?}: {table}",
                f.frame_no,
                f.quality
            );
        }
        // The promise itself, on the capture clock: the first frame at the new quality was
        // captured at most two frame intervals after the request.
        let first = after
            .iter()
            .position(|f| f.quality == Some(to))
            .expect("a frame at the new quality");
        assert!(
            captured[first] - sent_ms <= 2.0 * interval_ms,
            "q{from} -> q{to}: the first frame at the new quality was captured {:.1} ms after the request \
             (allowed {:.0} ms): {table}",
            captured[first] - sent_ms,
            2.0 * interval_ms
        );
    }
    assert!(pipeline.all_running());
}
