//! Each receiver service can die by SIGKILL and be restarted (as systemd would), and the
//! pipeline carries on: display shows new frames again, net-rx's feedback resumes, mash-input's
//! level comes back.
//!
//! Each recovery is waited for with a deadline (and fails naming what it waited for), not
//! sampled after a fixed time. How far the screen lags behind the sender is measured on the
//! product's clock: the time display wrote a frame's file against the time the frame was
//! encoded, not against the moment the test thread happened to look.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keymash_core::FrameNo;
use keymash_tests::receiver::{ReceiverSetup, SentFrame, TestSender};

/// How long a recovery may take before the test gives up: a restarted service is ready in
/// well under a second (the start waits for its READY=1), so this is only a deadline.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(10);

/// The most a frame may take from being encoded to being on screen: the configured playout
/// bound (50 ms) plus ten frame intervals of the 30 fps stream. display presents the newest
/// frame (it never queues), so a display that keeps up is far below it (about 60 ms).
const MAX_LAG: Duration = Duration::from_millis(50 + 10 * 1000 / 30);

fn shown_file(dir: &Path, frame: FrameNo) -> PathBuf {
    dir.join(format!("frame-{:08}.ppm", frame.0))
}

/// The newest frame number among `frame-NNNNNNNN.ppm` files written by display.
fn newest_shown(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("frame-")?
                        .strip_suffix(".ppm")?
                        .parse()
                        .ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Streams for `duration` and returns what was sent.
fn stream(sender: &mut TestSender, duration: Duration) -> Vec<SentFrame> {
    sender.stream_at_requested_quality(duration)
}

/// Streams until `done` holds, failing the test with `what` after [`RECOVERY_DEADLINE`].
fn stream_until(
    sender: &mut TestSender,
    what: &str,
    mut done: impl FnMut(&TestSender) -> bool,
) -> Duration {
    let start = Instant::now();
    while !done(sender) {
        assert!(
            start.elapsed() < RECOVERY_DEADLINE,
            "waited {RECOVERY_DEADLINE:?} for {what}"
        );
        stream(sender, Duration::from_millis(200));
    }
    start.elapsed()
}

/// The last frame of `sent` reaches the screen (display shows the newest frame, so once the
/// stream stops it must show the last one), and no later than [`MAX_LAG`] after it was encoded.
fn check_screen_keeps_up(shown: &Path, sent: &[SentFrame], after: &str) {
    let last = sent.last().expect("frames were sent");
    let file = shown_file(shown, last.frame);
    let start = Instant::now();
    let written = loop {
        if let Some(time) = std::fs::metadata(&file)
            .ok()
            .and_then(|m| m.modified().ok())
        {
            break time;
        }
        assert!(
            start.elapsed() < RECOVERY_DEADLINE,
            "{after}: the last frame sent ({}) was not shown within {RECOVERY_DEADLINE:?}; newest shown {}",
            last.frame,
            newest_shown(shown)
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let lag = written.duration_since(last.encoded_at).unwrap_or_default();
    eprintln!("{after}: the last frame was on screen {lag:?} after it was encoded");
    assert!(lag <= MAX_LAG, "{after}: display lags: the last frame was shown {lag:?} after it was encoded (allowed {MAX_LAG:?})");
}

#[test]
fn every_receiver_service_killed_with_sigkill_is_recovered_from_by_a_restart() {
    let setup = ReceiverSetup::new(
        "rx-kill9",
        "[display]\noutput = \"frames:{dir}/shown\"\nplayout_max_ms = 50\n[input]\nsource = \"script:0-600s:12/s\"\n",
    );
    let shown = setup.dir.join("shown");
    let mut mash_input = setup.start("keymash-mash-input");
    let mut net_rx = setup.start("keymash-net-rx");
    let mut display = setup.start("keymash-display");
    let mut sender = setup.sender();

    let sent = stream(&mut sender, Duration::from_secs(3));
    check_screen_keeps_up(&shown, &sent, "before the kills");
    // The script mashes 12 varied keys a second from mash-input's start: its level passes 0.5
    // (quality 50) after about two seconds, by mash-input's own clock.
    stream_until(
        &mut sender,
        "scripted mashing to raise the quality above 40",
        |s| s.requested_quality().get() > 40,
    );

    // net-rx: the ring survives; display picks the stream up again after the restart.
    net_rx.kill_hard().expect("kill -9 net-rx");
    let before = stream(&mut sender, Duration::from_millis(500))
        .last()
        .map_or(0, |f| f.frame.0);
    net_rx = setup.start("keymash-net-rx");
    let took = stream_until(
        &mut sender,
        "a new frame on screen after net-rx restarted",
        |_| newest_shown(&shown) > before,
    );
    eprintln!("net-rx restarted: a new frame on screen after {took:?}");
    let sent = stream(&mut sender, Duration::from_secs(1));
    check_screen_keeps_up(&shown, &sent, "after net-rx restarted");

    // display: a new one resumes at the newest payloads.
    display.kill_hard().expect("kill -9 display");
    let before = stream(&mut sender, Duration::from_millis(500))
        .last()
        .map_or(0, |f| f.frame.0);
    display = setup.start("keymash-display");
    let took = stream_until(
        &mut sender,
        "a new frame on screen after display restarted",
        |_| newest_shown(&shown) > before,
    );
    eprintln!("display restarted: a new frame on screen after {took:?}");
    let sent = stream(&mut sender, Duration::from_secs(1));
    check_screen_keeps_up(&shown, &sent, "after display restarted");

    // mash-input: the cell is re-attached and the level rises again from the script.
    mash_input.kill_hard().expect("kill -9 mash-input");
    let total_before = setup.mash().expect("mash cell").presses_total();
    mash_input = setup.start("keymash-mash-input");
    // Its script starts over with it: the level passes 0.5 about two seconds after the start.
    stream_until(
        &mut sender,
        "the restarted mash-input's level to pass 0.5",
        |_| setup.mash().is_some_and(|r| r.level().get() > 0.5),
    );
    let record = setup.mash().expect("mash cell after restart");
    assert!(
        record.presses_total() < total_before,
        "a restarted mash-input counts afresh"
    );
    stream_until(
        &mut sender,
        "the quality asked for to pass 40 after mash-input restarted",
        |s| s.requested_quality().get() > 40,
    );

    for service in [&mut mash_input, &mut net_rx, &mut display] {
        // A service turns its loop at least every 200 ms (Lifecycle::MAX_WAIT) and then exits;
        // systemd would wait TimeoutStopSec = 5 s.
        let status = service
            .terminate(Duration::from_secs(2))
            .expect("clean stop");
        assert!(status.success(), "exit status {status:?}");
    }
}
