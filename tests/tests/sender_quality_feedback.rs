//! A quality change the receiver sends as RTCP APP reaches the encoder through net-tx and the
//! quality cell, and changes the bytes per frame within two frame intervals.

use std::time::Duration;

use keymash_core::Quality;
use keymash_shm::monotonic_now_ns;
use keymash_tests::sender::{ReceivedFrame, SenderPipeline, TestReceiver};

const FPS: u32 = 20;

fn mean_bytes(frames: &[ReceivedFrame]) -> f64 {
    frames.iter().map(|f| f.bytes as f64).sum::<f64>() / frames.len().max(1) as f64
}

#[test]
fn a_quality_request_changes_the_bytes_per_frame_within_two_frame_intervals() {
    let mut pipeline = SenderPipeline::new("sender-quality", 320, 240, FPS, 0.0, "");
    let interval = pipeline.frame_interval();
    let mut receiver = TestReceiver::new(&pipeline);
    pipeline.start_all();
    receiver.request_quality(Quality::new(20).unwrap());
    receiver.run_until_frames(20, Duration::from_secs(10));
    receiver.run_until_frames(10, Duration::from_secs(5));

    for (from, to) in [(20u8, 90u8), (90, 20)] {
        let before_start = receiver.frames.len();
        receiver.run_until_frames(10, Duration::from_secs(5));
        let before = mean_bytes(&receiver.frames[before_start..]);
        receiver.request_quality(Quality::new(to).unwrap());
        let sent_ns = monotonic_now_ns();
        let change_start = receiver.frames.len();
        receiver.run_until_frames(10, Duration::from_secs(5));
        let after: Vec<ReceivedFrame> = receiver.frames[change_start..].to_vec();
        let settled = mean_bytes(&after[after.len() / 2..]);
        assert!(
            (settled - before).abs() > 0.3 * before.max(settled),
            "q{from} -> q{to}: bytes per frame barely changed ({before:.0} -> {settled:.0})"
        );
        // The first frame whose size is nearer the new level than the old one.
        let midpoint = (before + settled) / 2.0;
        let changed = after
            .iter()
            .find(|f| (f.bytes as f64 > midpoint) == (settled > before))
            .expect("a frame at the new quality");
        let took = Duration::from_nanos(changed.arrival_ns.saturating_sub(sent_ns));
        assert!(
            took <= 2 * interval,
            "q{from} -> q{to}: first frame at the new quality arrived {took:?} after the request \
             (allowed {:?}); sizes {:?}",
            2 * interval,
            after.iter().map(|f| f.bytes).collect::<Vec<_>>()
        );
    }
    assert!(pipeline.all_running());
}
