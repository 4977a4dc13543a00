//! `[capture.controls]` with the fake V4L2 camera (`tests/fake-v4l2/`) and the real
//! keymash-capture:
//!
//! - The controls are set at open, switches before the values they unlock whatever the order in
//!   the file, before the stream starts; the values read back are logged, a value the driver
//!   rounded with what was asked and what the camera took; after an unplug and replug (the
//!   fake, like a real camera, forgets its settings) they are set again before streaming.
//! - An unknown control, and a value out of range, keep the camera closed: capture's log and
//!   status name the control and list what the camera offers; nothing is set and nothing
//!   streamed.
//!
//! Processes, files and shared-memory segments are removed by guards, also on failure.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use keymash_shm::{monotonic_now_ns, RecvError};
use keymash_tests::fake_v4l2::{
    synthetic_yuyv, wait_until, CaptureWithFake, FakeCamera, FakeEvent,
};

const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;
const FPS: u32 = 30;
/// From READY to streaming, and from a replug to streaming again (capture's backoff after 2 s
/// unplugged can put its retry up to 2 s after the replug), with room for a loaded machine.
const STREAMING_DEADLINE: Duration = Duration::from_secs(10);

/// The fake with its controls; brightness on a step of 4, so 10 is rounded by the "driver".
fn camera(tag: &str) -> FakeCamera {
    let mut camera = FakeCamera::new(tag, WIDTH, HEIGHT);
    camera
        .yuyv_frames(&synthetic_yuyv(WIDTH, HEIGHT, 4))
        .set("FPS", FPS.to_string())
        .set("FORMATS", "yuyv")
        .set(
            "CONTROLS",
            "brightness=-64:64:4:0,white_balance_automatic,power_line_frequency,auto_exposure,\
             exposure_time_absolute",
        );
    camera
}

/// The `ctrl` events (name, value) logged between `from_ns` and `to_ns`.
fn controls_set(events: &[FakeEvent], from_ns: u64, to_ns: u64) -> Vec<(String, i64)> {
    events
        .iter()
        .filter(|e| e.kind == "ctrl" && e.at_ns >= from_ns && e.at_ns <= to_ns)
        .map(|e| (e.fields[1].clone(), e.fields[2].parse().unwrap()))
        .collect()
}

/// The controls as the fake logs them: the switches (menus and booleans) first, then the
/// integers, each in name order; brightness rounded to its step.
fn expected_controls() -> Vec<(String, i64)> {
    [
        ("auto_exposure", 1),
        ("white_balance_automatic", 0),
        ("brightness", 12),
        ("exposure_time_absolute", 500),
    ]
    .iter()
    .map(|&(name, value)| (name.to_owned(), value))
    .collect()
}

/// Waits for capture to open the camera at or after `after_ns` and stream from it; checks that
/// exactly the expected controls were set in between and none at another time. Returns the
/// times of the open and of the stream start.
fn assert_controls_set_before_streaming(
    run: &CaptureWithFake,
    after_ns: u64,
    when: &str,
) -> (u64, u64) {
    let streaming = wait_until(STREAMING_DEADLINE, || {
        open_and_streamon(&run.camera, after_ns).is_some()
    });
    assert!(
        streaming,
        "capture never streamed {when}\n{}",
        run.diagnosis()
    );
    let (opened, streaming) = open_and_streamon(&run.camera, after_ns).unwrap();
    let events = run.camera.events();
    assert_eq!(
        controls_set(&events, opened, streaming),
        expected_controls(),
        "controls set between the open and the stream {when}\n{}",
        run.diagnosis()
    );
    assert_eq!(
        controls_set(&events, after_ns, u64::MAX).len(),
        4,
        "controls set {when} but not between the open and the stream\n{}",
        run.diagnosis()
    );
    (opened, streaming)
}

/// The events of one open: the `open` at or after `after_ns` and the `streamon` that follows;
/// their times.
fn open_and_streamon(camera: &FakeCamera, after_ns: u64) -> Option<(u64, u64)> {
    let events = camera.events();
    let open = events
        .iter()
        .find(|e| e.kind == "open" && e.at_ns >= after_ns)?;
    let streamon = events
        .iter()
        .find(|e| e.kind == "streamon" && e.at_ns >= open.at_ns)?;
    Some((open.at_ns, streamon.at_ns))
}

#[test]
fn controls_from_the_configuration_are_set_at_open_and_again_after_a_replug() {
    // Listed with the value before the mode that unlocks it.
    let controls = "[capture.controls]\nexposure_time_absolute = 500\nbrightness = 10\n\
                    white_balance_automatic = false\nauto_exposure = \"Manual Mode\"\n";
    let mut run = CaptureWithFake::start("ctrl-replug", camera("ctrl-replug"), FPS, controls);
    let (opened, streaming) = assert_controls_set_before_streaming(&run, 0, "at start");
    // The values read back, and the rounded one with what was asked.
    let log = run.log();
    assert!(
        log.contains(
            "controls set, read back: auto_exposure = \"Manual Mode\", white_balance_automatic = \
             false, brightness = 12, exposure_time_absolute = 500"
        ),
        "{}",
        run.diagnosis()
    );
    assert!(
        log.contains(
            "capture.controls.brightness: asked 10, the camera took 12 (integer -64..64, step 4"
        ),
        "{}",
        run.diagnosis()
    );
    // exposure_time_absolute was set after auto_exposure made it active: no inactive warning.
    assert!(!log.contains("inactive"), "{}", run.diagnosis());

    // Frames flow with those settings.
    let mut ring = run.raw_frames();
    let frame = wait_until(STREAMING_DEADLINE, || {
        ring.next(Duration::from_millis(50)).is_ok()
    });
    assert!(frame, "no frame in the ring\n{}", run.diagnosis());

    // Unplug until capture has closed the device, then replug: the reopened camera has its
    // defaults back (as a real one would) and gets every control again before it streams.
    run.camera.unplug();
    let closed = wait_until(Duration::from_secs(5), || {
        run.camera
            .events_of("close")
            .iter()
            .any(|e| e.at_ns > streaming)
    });
    assert!(
        closed,
        "capture kept the unplugged device\n{}",
        run.diagnosis()
    );
    std::thread::sleep(Duration::from_millis(300));
    run.camera.replug();
    let replugged_ns = monotonic_now_ns();
    let (reopened, streaming_again) =
        assert_controls_set_before_streaming(&run, replugged_ns, "after the replug");
    assert_eq!(
        run.log()
            .matches("controls set, read back: auto_exposure = \"Manual Mode\"")
            .count(),
        2,
        "{}",
        run.diagnosis()
    );
    assert!(run.running(), "capture exited\n{}", run.diagnosis());
    println!(
        "controls set {:.1} ms after the open and {:.1} ms after the reopen, before each stream",
        (streaming - opened) as f64 / 1e6,
        (streaming_again - reopened) as f64 / 1e6
    );
}

/// How long capture may take to try the camera twice (its first retry comes after a backoff).
const RETRY_DEADLINE: Duration = Duration::from_secs(20);

/// Capture with `controls` that the fake cannot take, once it has opened the camera twice (a
/// refusal is retried: another camera may be plugged in) and published a status since.
fn refused(tag: &str, controls: &str) -> CaptureWithFake {
    let run = CaptureWithFake::start(tag, camera(tag), FPS, controls);
    let retried = wait_until(RETRY_DEADLINE, || run.camera.events_of("open").len() >= 2);
    assert!(
        retried,
        "capture did not retry the open\n{}",
        run.diagnosis()
    );
    // The status is published every half second.
    std::thread::sleep(Duration::from_millis(700));
    run
}

/// Nothing was set and nothing streamed; the log has the whole error, the status line (cut to
/// 128 bytes) names the control.
fn assert_refused(run: &mut CaptureWithFake, control: &str, error: &str) {
    let diagnosis = run.diagnosis();
    let camera = &run.camera;
    assert!(camera.events_of("ctrl").is_empty(), "{diagnosis}");
    assert!(camera.events_of("streamon").is_empty(), "{diagnosis}");
    assert!(camera.events_of("reqbufs").is_empty(), "{diagnosis}");
    let mut ring = run.raw_frames();
    assert!(
        matches!(
            ring.next(Duration::from_millis(200)),
            Err(RecvError::TimedOut)
        ),
        "a frame reached the ring\n{diagnosis}"
    );
    assert!(run.log().contains(error), "{diagnosis}");
    let status = run.stats().unwrap();
    let line = status.status_line();
    assert!(
        line.contains(&format!("capture.controls.{control}")),
        "status: {line}\n{diagnosis}"
    );
    assert_eq!(status.gauge("camera_open"), Some(0.0), "{diagnosis}");
    assert!(run.running(), "capture exited\n{diagnosis}");
    println!("status: {line}");
}

#[test]
fn an_unknown_control_is_refused_naming_it_and_listing_what_the_camera_offers() {
    let mut run = refused(
        "ctrl-unknown",
        "[capture.controls]\nauto_exposure = \"Manual Mode\"\nexposure_time_absolut = 500\n",
    );
    let error = "capture.controls.exposure_time_absolut: the camera has no such control (did you \
                 mean exposure_time_absolute?); it offers: brightness (integer -64..64, step 4, \
                 default 0); white_balance_automatic (boolean, default true); \
                 power_line_frequency (menu 0 \"Disabled\", 1 \"50 Hz\", 2 \"60 Hz\", default \
                 \"50 Hz\"); auto_exposure (menu 1 \"Manual Mode\", 3 \"Aperture Priority \
                 Mode\", default \"Aperture Priority Mode\"); exposure_time_absolute (integer \
                 3..2047, default 250, inactive now)";
    assert_refused(&mut run, "exposure_time_absolut", error);
}

#[test]
fn a_value_out_of_range_is_refused_naming_the_control_and_its_range() {
    let mut run = refused(
        "ctrl-range",
        "[capture.controls]\nauto_exposure = \"Manual Mode\"\nexposure_time_absolute = 5000\n",
    );
    let error = "capture.controls.exposure_time_absolute = 5000 is out of range \
                 (exposure_time_absolute is integer 3..2047, default 250, inactive now)";
    assert_refused(&mut run, "exposure_time_absolute", error);
}
