//! The four sender services, chained through real rings with the synthetic source and a 2 s
//! delay, deliver frames in order over UDP; until the delay is filled they show the countdown
//! card; after that the stamp read from the decoded pixels shows the configured delay within one
//! frame interval.

use std::time::Duration;

use keymash_tests::sender::{SenderPipeline, TestReceiver};

const DELAY_SECONDS: f64 = 2.0;
const FPS: u32 = 20;

#[test]
fn frames_arrive_in_order_and_their_stamps_show_the_configured_delay() {
    let mut pipeline = SenderPipeline::new("sender-delay", 320, 240, FPS, DELAY_SECONDS, "");
    let mut receiver = TestReceiver::new(&pipeline);
    pipeline.start_all();
    receiver.run_for(Duration::from_secs_f64(DELAY_SECONDS + 3.0));
    assert!(pipeline.all_running(), "a service died; encoder log:\n{}", pipeline.log("encoder"));

    let frames = &receiver.frames;
    assert!(frames.len() as f64 > 0.8 * f64::from(FPS) * (DELAY_SECONDS + 3.0), "only {} frames arrived", frames.len());
    for pair in frames.windows(2) {
        assert!(pair[1].frame_no > pair[0].frame_no, "frame {} after {}", pair[1].frame_no, pair[0].frame_no);
    }

    // First the countdown card (no stamp), then video (stamped), and never a card again.
    let first_video = frames.iter().position(|f| f.stamp.is_some()).expect("video arrived after the countdown");
    assert!(first_video > 0, "the countdown card must come first");
    assert!(frames[first_video..].iter().all(|f| f.stamp.is_some()), "a frame without a stamp after the video started");
    let video = &frames[first_video..];
    assert!(video.len() as f64 > 2.0 * f64::from(FPS), "only {} video frames", video.len());
    // Capture frame numbers only go forward.
    for pair in video.windows(2) {
        let (a, b) = (pair[0].stamp.map(|s| s.frame), pair[1].stamp.map(|s| s.frame));
        assert!(b > a, "capture frame {b:?} after {a:?}");
    }

    // Delay from the pixels: arrival minus the stamped capture time, minus the configured delay.
    let interval_ms = 1000.0 / f64::from(FPS);
    let mut excess: Vec<f64> = video.iter().filter_map(|f| f.age_ms()).map(|age| age as f64 - DELAY_SECONDS * 1e3).collect();
    excess.sort_by(f64::total_cmp);
    let median = excess[excess.len() / 2];
    let p90 = excess[excess.len() * 9 / 10];
    assert!(
        (0.0..=interval_ms).contains(&median) && p90 <= interval_ms,
        "delay from the pixels exceeds {DELAY_SECONDS} s by median {median} ms, p90 {p90} ms \
         (allowed 0..={interval_ms} ms); min {} max {}",
        excess[0],
        excess[excess.len() - 1]
    );
}
