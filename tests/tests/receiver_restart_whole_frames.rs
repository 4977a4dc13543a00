//! A restarted receiver stage starts on a whole frame: a net-rx that locks onto the stream
//! part-way through a frame, or a display that opens the received ring part-way through one,
//! skips that frame's tail instead of painting it over the old picture (a torn frame no network
//! loss caused). The only torn frame a kill may leave is the one in flight at the kill.

use std::collections::BTreeMap;
use std::time::Duration;

use keymash_codec::{Decoder, I420Frame};
use keymash_core::FrameNo;
use keymash_tests::receiver::{
    crop_picture, read_tagged_y4m, ReceiverSetup, SentFrame, TestSender,
};

const BORDER: usize = 16;
/// net-rx restarts: each joins the stream wherever the sender is, usually part-way through a
/// frame, so a few of them make a join at a frame start by luck unlikely to hide a bug.
const NET_RX_RESTARTS: usize = 4;

fn stream(
    sender: &mut TestSender,
    sent: &mut BTreeMap<FrameNo, SentFrame>,
    duration: Duration,
) -> FrameNo {
    let frames = sender.stream_at_requested_quality(duration);
    let last = frames.last().map_or(FrameNo(0), |f| f.frame);
    sent.extend(frames.into_iter().map(|f| (f.frame, f)));
    last
}

/// The frames of a display's Y4M output whose picture is not the whole frame as sent: each
/// frame covers every macroblock, so a whole frame shows exactly its own decode, whatever was
/// on screen before.
fn torn_frames(
    setup: &ReceiverSetup,
    shown: &[(FrameNo, I420Frame)],
    sent: &BTreeMap<FrameNo, SentFrame>,
) -> Vec<FrameNo> {
    let geometry = setup.geometry();
    shown
        .iter()
        .filter(|(frame, canvas)| {
            let sent = sent
                .get(frame)
                .unwrap_or_else(|| panic!("display showed frame {frame}, which was never sent"));
            let mut whole = Decoder::new(geometry);
            for payload in &sent.payloads {
                whole
                    .apply(payload)
                    .expect("the test's own payloads decode");
            }
            crop_picture(canvas, BORDER, geometry) != *whole.frame()
        })
        .map(|(frame, _)| *frame)
        .collect()
}

#[test]
fn restarted_net_rx_and_display_start_on_a_whole_frame() {
    let setup = ReceiverSetup::new(
        "rx-whole",
        // At rest quality 90, a frame is several payloads, so a join can fall inside one.
        &format!(
            "[display]\noutput = \"y4m:{{dir}}/shown.y4m\"\nglow_border_px = {BORDER}\nplayout_max_ms = 30\n\
             [quality]\nat_rest = 90\n"
        ),
    );
    let mut net_rx = setup.start("keymash-net-rx");
    let mut display = setup.start("keymash-display");
    let mut sender = setup.sender();
    let mut sent = BTreeMap::new();
    let mut last_sent = stream(&mut sender, &mut sent, Duration::from_secs(1));

    // The frame in flight at a net-rx kill (the last one sent before it) may have lost its
    // tail with the process, still unread in its socket.
    let mut in_flight_at_kill = Vec::new();
    for restart in 0..NET_RX_RESTARTS {
        net_rx.kill_hard().expect("kill -9 net-rx");
        in_flight_at_kill.push(last_sent);
        // The sender keeps streaming while net-rx starts again, so the new net-rx meets the
        // stream wherever it is: at a different point of a frame each time.
        net_rx = std::thread::scope(|s| {
            let streaming = s.spawn(|| stream(&mut sender, &mut sent, Duration::from_millis(400)));
            std::thread::sleep(Duration::from_millis(100 + 11 * restart as u64));
            let started = setup.start("keymash-net-rx");
            streaming
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            started
        });
        last_sent = stream(&mut sender, &mut sent, Duration::from_millis(600));
    }
    display
        .terminate(Duration::from_secs(5))
        .expect("display stops cleanly");
    let first_display = setup.dir.join("shown-first.y4m");
    std::fs::rename(setup.dir.join("shown.y4m"), &first_display)
        .expect("keep the first display's output");

    stream(&mut sender, &mut sent, Duration::from_millis(300));
    let mut display = setup.start("keymash-display");
    stream(&mut sender, &mut sent, Duration::from_millis(1500));
    display
        .terminate(Duration::from_secs(5))
        .expect("display stops cleanly");
    drop(net_rx);

    let shown_before = read_tagged_y4m(&first_display);
    let shown_after = read_tagged_y4m(&setup.dir.join("shown.y4m"));
    assert!(
        shown_before.len() > 30,
        "the first display showed only {} frames",
        shown_before.len()
    );
    assert!(
        shown_after.len() > 20,
        "the restarted display showed only {} frames",
        shown_after.len()
    );

    let torn = torn_frames(&setup, &shown_before, &sent);
    let payloads = sent.values().map(|f| f.payloads.len());
    let (fewest, most) = (
        payloads.clone().min().unwrap_or(0),
        payloads.max().unwrap_or(0),
    );
    assert!(
        fewest >= 4,
        "frames of {fewest}..{most} payloads: too few for a join inside a frame"
    );
    assert!(
        torn.iter().all(|f| in_flight_at_kill.contains(f)),
        "torn frames {torn:?} after net-rx restarts; only those in flight at a kill ({in_flight_at_kill:?}) may be"
    );
    let torn = torn_frames(&setup, &shown_after, &sent);
    assert!(
        torn.is_empty(),
        "the restarted display showed torn frames {torn:?} (first shown: {:?})",
        shown_after.first().map(|f| f.0)
    );
}
