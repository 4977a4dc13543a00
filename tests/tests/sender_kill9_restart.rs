//! kill -9 of each sender service in turn, then its restart (the test plays systemd): the stream
//! carries on, no more frames are lost than were in flight in the killed stage, and the delay
//! buffer's held video survives its own restart (no countdown, the delay stays right at once).

use std::time::{Duration, Instant};

use keymash_media::Stamp;
use keymash_shm::monotonic_now_ns;
use keymash_tests::sender::{ReceivedFrame, SenderPipeline, TestReceiver, SENDER_SERVICES};

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
    while receiver.frames.iter().filter(|f| f.stamp.is_some()).count() < 20
        && Instant::now() < deadline
    {
        receiver.run_for(Duration::from_millis(100));
    }
    assert!(
        receiver.frames.iter().any(|f| f.stamp.is_some()),
        "no video before the kills (waited 15 s)"
    );
    // Capture to arrival as it is on this machine now (the delay plus the pipeline's own time,
    // which load stretches): the yardstick for the first frame after each restart.
    let mut excess_ms: Vec<f64> = receiver
        .frames
        .iter()
        .filter_map(|f| f.age_ms())
        .map(|age| age as f64 - DELAY_SECONDS * 1e3)
        .collect();
    excess_ms.sort_by(f64::total_cmp);
    let usual_excess_ms = excess_ms[excess_ms.len() / 2];

    for service in SENDER_SERVICES {
        let start = receiver.frames.len();
        let stream_before_kill = receiver.frames.last().map(|f| f.ssrc);
        let killed_ns = monotonic_now_ns();
        pipeline.kill_hard(service);
        receiver.run_for(DOWN_FOR);
        // The receiver keeps reading while the service starts, so arrival times stay true.
        let ready_ns = std::thread::scope(|s| {
            let starting = s.spawn(|| pipeline.start(service));
            while !starting.is_finished() {
                receiver.run_for(Duration::from_millis(5));
            }
            starting
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        // How long the stage was gone: the test's pause plus however long this machine took to
        // start it again (systemd's RestartSec would be similar; load stretches the start).
        let down = Duration::from_nanos(ready_ns.saturating_sub(killed_ns));
        receiver.run_for(Duration::from_millis(1500));
        assert!(
            pipeline.all_running(),
            "after restarting {service}: a service died"
        );
        let frames = &receiver.frames[start..];
        assert!(
            frames.len() > 10,
            "{service}: the stream did not resume ({} frames)",
            frames.len()
        );
        // A frame torn by the kill: net-tx died while pacing its packets out, so only its head
        // arrived. That one frame, and only it, may be torn: the restarted net-tx's new stream
        // is joined on a whole frame (and the other stages hand on whole frames only).
        //
        // Only what the kill can reach is counted: frames whose capture time lies where the
        // killed stage's downtime falls (for the stages behind the delay, a delay earlier).
        // Under load the pipeline also drops frames on its own, anywhere in the stream (the
        // encoder takes the newest frame, the pacer drops a stale frame's rest): a live-video
        // policy, not a restart's doing, and not what this test is about.
        let iv = interval.as_millis() as i64;
        let delay_ms = (DELAY_SECONDS * 1e3) as i64;
        let down_ms = down.as_millis() as i64;
        let reach = match service {
            "capture" => (-2 * iv, down_ms + iv),
            "net-tx" => (
                -delay_ms - 2 * iv,
                down_ms + STREAM_SWITCH.as_millis() as i64 - delay_ms + 2 * iv,
            ),
            _ => (-delay_ms - 2 * iv, down_ms - delay_ms + 2 * iv),
        };
        let kill_ms = (killed_ns / 1_000_000) as u32;
        let since_kill = |s: Stamp| i64::from(s.capture_ms.wrapping_sub(kill_ms) as i32);
        // A torn frame's own stamp may be unreadable: it was captured just after the last
        // frame before it whose stamp reads.
        let reached = |index: usize| {
            receiver.frames[..=index]
                .iter()
                .rev()
                .find_map(|f| f.stamp)
                .is_none_or(|s| (reach.0 - iv..=reach.1).contains(&since_kill(s)))
        };
        let torn: Vec<_> = (start..receiver.frames.len())
            .filter(|&i| !receiver.frames[i].is_whole() && reached(i))
            .map(|i| &receiver.frames[i])
            .collect();
        // Told by its stream, not by arrival time (a loaded test process reads packets late).
        let torn_by_the_kill =
            |f: &&ReceivedFrame| service == "net-tx" && Some(f.ssrc) == stream_before_kill;
        assert!(
            torn.len() <= 1 && torn.iter().all(torn_by_the_kill),
            "{service}: torn frames after the restart (frame, payloads of count, first arrival - kill in ms): {:?}",
            torn.iter()
                .map(|f| (f.frame_no, f.payloads, f.payload_count, (f.first_arrival_ns as f64 - killed_ns as f64) / 1e6))
                .collect::<Vec<_>>()
        );
        assert!(
            frames
                .iter()
                .filter(|f| f.is_whole())
                .all(|f| f.stamp.is_some()),
            "{service}: the countdown card (or a broken picture) appeared after the restart"
        );
        // Frames lost: gaps in the capture frame numbers read from the pixels. Capture numbers
        // its frames by its ring, so frames it never captured while down are not gaps.
        let stamped: Vec<Stamp> = receiver.frames[start.saturating_sub(1)..]
            .iter()
            .filter_map(|f| f.stamp)
            .collect();
        let stamps: Vec<u32> = stamped.iter().map(|s| s.frame).collect();
        let lost: u32 = stamped
            .windows(2)
            .filter(|w| since_kill(w[1]) >= reach.0 && since_kill(w[0]) <= reach.1)
            .map(|w| w[1].frame.saturating_sub(w[0].frame).saturating_sub(1))
            .sum();
        let in_flight = match service {
            // The raw ring keeps what capture wrote: only a frame torn by the kill.
            "capture" => 1,
            // Held frames survive, but those that fell due while the buffer was down are
            // skipped on purpose (played late they would break the delay): the frames in flight.
            "delay-buffer" => frames_in(down, interval) + 1,
            // Frames released while the encoder was down, and the one it was encoding.
            "encoder" => frames_in(down, interval) + 2,
            // Frames encoded while net-tx was down, the one it was sending, those sent before
            // the receiver accepts net-tx's new stream, and the one whose tail the receiver
            // skips because it joined the new stream part-way through it.
            _ => frames_in(down + STREAM_SWITCH, interval) + 3,
        };
        assert!(
            lost <= in_flight,
            "{service}: {lost} frames lost, at most {in_flight} were in flight; stamps {stamps:?}, captured (ms since the kill) {:?}, \
             the kill reaches {reach:?}",
            stamped.iter().map(|&s| since_kill(s)).collect::<Vec<_>>()
        );
        // The delay is right straight after the restart: the held video was not lost.
        // (The torn frame, if any, is left out: it is finished only when the next frame starts.)
        let first_after = frames
            .iter()
            .find(|f| f.is_whole() && f.arrival_ns > ready_ns)
            .and_then(|f| f.age_ms());
        let age = first_after.expect("a stamped frame after the restart");
        // Against the same pipeline before the kills, so load (which delays every frame alike)
        // cannot fail it: a restarted stage's first frame is the one due now, at most a frame
        // interval behind it, plus a frame interval of scheduling slack. Video lost from the
        // hold would show as frames a whole delay off (or the countdown card, caught above).
        let excess_ms = age as f64 - DELAY_SECONDS * 1e3 - usual_excess_ms;
        let interval_ms = interval.as_secs_f64() * 1e3;
        // A new net-tx stream is only accepted after the old one's silence: its first frames
        // arrive that much later than the delay (a receiver rule, not a sender one).
        let allowed_ms = 2.0 * interval_ms
            + if service == "net-tx" {
                STREAM_SWITCH.as_secs_f64() * 1e3
            } else {
                0.0
            };
        assert!(
            (-interval_ms..=allowed_ms).contains(&excess_ms),
            "{service}: first frame after the restart is {age} ms old, {excess_ms:.0} ms more than before the kills \
             (configured delay {DELAY_SECONDS} s, usual excess {usual_excess_ms:.0} ms)"
        );
    }
}

fn frames_in(span: Duration, interval: Duration) -> u32 {
    (span.as_nanos().div_ceil(interval.as_nanos())) as u32
}
