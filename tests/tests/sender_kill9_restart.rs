//! kill -9 of each sender service in turn, then its restart (the test plays systemd): the stream
//! carries on, no more frames are lost than were in flight in the killed stage, and the delay
//! buffer's held video survives its own restart (no countdown, the delay stays right at once).

use std::time::{Duration, Instant};

use keymash_shm::monotonic_now_ns;
use keymash_tests::sender::{SenderPipeline, TestReceiver, SENDER_SERVICES};

const DELAY_SECONDS: f64 = 2.0;
const FPS: u32 = 20;
/// How long the killed service stays down before the test restarts it (systemd's RestartSec
/// would be similar).
const DOWN_FOR: Duration = Duration::from_millis(100);
/// A restarted net-tx starts a new RTP stream (new SSRC); receivers follow it after this much
/// silence of the old one (keymash-transport's `stream_switch_silence`).
const STREAM_SWITCH: Duration = Duration::from_millis(250);

#[test]
fn killing_and_restarting_each_sender_service_loses_only_the_frames_in_flight() {
    let mut pipeline = SenderPipeline::new("sender-kill9", 320, 240, FPS, DELAY_SECONDS, "");
    let interval = pipeline.frame_interval();
    let mut receiver = TestReceiver::new(&pipeline);
    pipeline.start_all();
    // Wait for the delay to fill and the video to flow.
    let deadline = Instant::now() + Duration::from_secs(15);
    while receiver.frames.iter().filter(|f| f.stamp.is_some()).count() < 20 && Instant::now() < deadline {
        receiver.run_for(Duration::from_millis(100));
    }
    assert!(receiver.frames.iter().any(|f| f.stamp.is_some()), "no video before the kills");

    for service in SENDER_SERVICES {
        let start = receiver.frames.len();
        let killed_ns = monotonic_now_ns();
        pipeline.kill_hard(service);
        receiver.run_for(DOWN_FOR);
        pipeline.start(service);
        receiver.run_for(Duration::from_millis(1500));
        assert!(pipeline.all_running(), "after restarting {service}: a service died");
        let frames = &receiver.frames[start..];
        assert!(frames.len() > 10, "{service}: the stream did not resume ({} frames)", frames.len());
        assert!(
            frames.iter().all(|f| f.stamp.is_some()),
            "{service}: the countdown card (or a broken picture) appeared after the restart"
        );
        // Frames lost: gaps in the capture frame numbers read from the pixels. Capture numbers
        // its frames by its ring, so frames it never captured while down are not gaps.
        let stamps: Vec<u32> = receiver.frames[start.saturating_sub(1)..].iter().filter_map(|f| f.stamp).map(|s| s.frame).collect();
        let lost: u32 = stamps.windows(2).map(|w| w[1].saturating_sub(w[0]).saturating_sub(1)).sum();
        let in_flight = match service {
            // The raw ring keeps what capture wrote: only a frame torn by the kill.
            "capture" => 1,
            // Held frames survive, but those that fell due while the buffer was down are
            // skipped on purpose (played late they would break the delay): the frames in flight.
            "delay-buffer" => frames_in(DOWN_FOR + Duration::from_millis(100), interval) + 1,
            // Frames released while the encoder was down, or encoded while net-tx was down
            // (plus the time the receiver needs to accept net-tx's new stream).
            "encoder" => frames_in(DOWN_FOR + Duration::from_millis(100), interval) + 2,
            _ => frames_in(DOWN_FOR + STREAM_SWITCH + Duration::from_millis(100), interval) + 2,
        };
        assert!(lost <= in_flight, "{service}: {lost} frames lost, at most {in_flight} were in flight; stamps {stamps:?}");
        // The delay is right straight after the restart: the held video was not lost.
        let first_after = frames.iter().find(|f| f.arrival_ns > killed_ns + DOWN_FOR.as_nanos() as u64).and_then(|f| f.age_ms());
        let age = first_after.expect("a stamped frame after the restart");
        let excess_ms = age as f64 - DELAY_SECONDS * 1e3;
        let interval_ms = interval.as_secs_f64() * 1e3;
        // A new net-tx stream is only accepted after the old one's silence: its first frames
        // arrive that much later than the delay (a receiver rule, not a sender one).
        let allowed_ms = 2.0 * interval_ms + if service == "net-tx" { STREAM_SWITCH.as_secs_f64() * 1e3 } else { 0.0 };
        assert!(
            (-interval_ms..=allowed_ms).contains(&excess_ms),
            "{service}: first frame after the restart is {age} ms old, configured delay {DELAY_SECONDS} s"
        );
    }
}

fn frames_in(span: Duration, interval: Duration) -> u32 {
    (span.as_nanos().div_ceil(interval.as_nanos())) as u32
}
