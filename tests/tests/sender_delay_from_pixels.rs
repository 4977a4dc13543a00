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
    assert!(
        pipeline.all_running(),
        "a service died; encoder log:\n{}",
        pipeline.log("encoder")
    );

    let frames = &receiver.frames;
    // The sender sends FPS frames a second (the countdown card, then video); a fifth is left
    // for the services' start inside the receiving window.
    assert!(
        frames.len() as f64 > 0.8 * f64::from(FPS) * (DELAY_SECONDS + 3.0),
        "only {} frames arrived",
        frames.len()
    );
    for pair in frames.windows(2) {
        assert!(
            pair[1].frame_no > pair[0].frame_no,
            "frame {} after {}",
            pair[1].frame_no,
            pair[0].frame_no
        );
    }

    // First the countdown card (no stamp), then video (stamped), and never a card again.
    let first_video = frames
        .iter()
        .position(|f| f.stamp.is_some())
        .expect("video arrived after the countdown");
    assert!(first_video > 0, "the countdown card must come first");
    assert!(
        frames[first_video..].iter().all(|f| f.stamp.is_some()),
        "a frame without a stamp after the video started"
    );
    let video = &frames[first_video..];
    assert!(
        video.len() as f64 > 2.0 * f64::from(FPS),
        "only {} video frames",
        video.len()
    );
    // Capture frame numbers only go forward.
    for pair in video.windows(2) {
        let (a, b) = (
            pair[0].stamp.map(|s| s.frame),
            pair[1].stamp.map(|s| s.frame),
        );
        assert!(b > a, "capture frame {b:?} after {a:?}");
    }

    // Delay from the pixels: arrival minus the stamped capture time, minus the configured delay.
    // The promise: the delay buffer releases a frame when its capture time plus the delay falls
    // due (by CLOCK_MONOTONIC, to the millisecond), the encoder takes it at once and net-tx
    // paces its packets over a third of a frame interval, so each frame is complete at the
    // receiver within one frame interval of falling due. Measured here: about 17 ms idle (the
    // pacing), p90 20-40 ms with both CPUs busy. The arrival time is when the test's receiver
    // took the last packet, which a loaded machine can make a few ms late (a kernel receive
    // timestamp would not be; the test support has no socket API that gives one).
    let interval_ms = 1000.0 / f64::from(FPS);
    let mut excess: Vec<f64> = video
        .iter()
        .filter_map(|f| f.age_ms())
        .map(|age| age as f64 - DELAY_SECONDS * 1e3)
        .collect();
    excess.sort_by(f64::total_cmp);
    let mut first_excess: Vec<f64> = video
        .iter()
        .filter_map(|f| {
            f.stamp
                .map(|s| s.age_ms(f.first_arrival_ns) as f64 - DELAY_SECONDS * 1e3)
        })
        .collect();
    first_excess.sort_by(f64::total_cmp);
    eprintln!(
        "excess over the delay, last packet: median {} p90 {} max {}; first packet: median {} p90 {} max {}",
        excess[excess.len() / 2],
        excess[excess.len() * 9 / 10],
        excess[excess.len() - 1],
        first_excess[first_excess.len() / 2],
        first_excess[first_excess.len() * 9 / 10],
        first_excess[first_excess.len() - 1]
    );
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
