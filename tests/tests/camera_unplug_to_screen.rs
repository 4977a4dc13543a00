//! A camera unplugged for 2 s, seen on the receiver's screen (issue 18, item 4: "the sender
//! keeps sending the last state honestly; the receiver's signal-lost rules apply, not a frozen
//! picture passed off as live").
//!
//! The whole installation on loopback: the real keymash-capture with the fake V4L2 camera
//! preloaded (`tests/fake-v4l2`), delay-buffer with no delay, encoder and net-tx, into net-rx
//! and a headless display writing its pictures to a Y4M file. While the camera is away capture
//! stays alive and produces nothing, so nothing reaches the receiver: after
//! `display.signal_lost_ms` the display shows the signal-lost card (the last picture dimmed,
//! tagged as a card), and no live picture appears until the camera is back; then live pictures
//! of frames newer than any before the unplug return by themselves.
//!
//! Away for longer than the delay buffer's gap tolerance (3 s), the stream carries its waiting
//! card ("WAITING FOR THE CAMERA"), recognised by comparing pictures with the card and with the
//! camera's frames: never an old camera picture, never a countdown that stands still.
//!
//! When each picture appeared is sampled from the output file's length every 5 ms. Processes,
//! segments and files are removed by guards, also when an assertion fails.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use keymash_codec::{yuyv_to_i420, FrameGeometry, I420Frame};
use keymash_media::render_awaiting_video;
use keymash_pipeline::Service;
use keymash_tests::fake_v4l2::{psnr, synthetic_yuyv, FakeCamera};
use keymash_tests::receiver::{read_y4m_pictures, ReceiverSetup, RunningService, Y4mPicture};

const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;
const SIGNAL_LOST_MS: u64 = 1000;
const UNPLUGGED: Duration = Duration::from_secs(2);
/// What a loaded machine may add to the display's own 1 s before it shows the card.
const CARD_MARGIN: Duration = Duration::from_millis(500);
/// Live pictures must be back within this of the replug: capture's 1 s (tested in
/// fake_v4l2_device.rs) plus the way through encoder, network and playout, with margin.
const RETURN_WITHIN: Duration = Duration::from_secs(2);
/// Bound on waiting for the stream to start, so a broken product fails instead of hanging.
const STREAM_WITHIN: Duration = Duration::from_secs(30);

/// The output file's length over time: (length, when first seen).
struct Growth(Vec<(u64, Instant)>);

impl Growth {
    /// Samples the length of `path` every 5 ms for `duration`.
    fn sample(&mut self, path: &Path, duration: Duration) {
        let end = Instant::now() + duration;
        while Instant::now() < end {
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            if self.0.last().is_none_or(|&(last, _)| len != last) {
                self.0.push((len, Instant::now()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// When `picture` was first seen whole in the file (the first sample for one written before
    /// sampling started; `None` for one not seen whole).
    fn appeared(&self, picture: &Y4mPicture) -> Option<Instant> {
        self.0
            .iter()
            .find(|&&(len, _)| len >= picture.end)
            .map(|&(_, at)| at)
    }
}

fn pictures(path: &Path) -> Vec<Y4mPicture> {
    let started = std::fs::read(path).is_ok_and(|bytes| bytes.contains(&b'\n'));
    if started {
        read_y4m_pictures(path)
    } else {
        Vec::new()
    }
}

/// What the receiver's screen showed around an unplug of the camera.
struct UnplugRun {
    /// Every picture the display wrote, with when it appeared (those seen whole).
    shown: Vec<Y4mPicture>,
    growth: Growth,
    unplugged: Instant,
    replugged: Instant,
    /// Capture's status line just before the replug.
    absent_line: String,
    /// Capture's status and the fake camera's last events, for failure messages.
    diagnosis: String,
    /// The camera's source frames as I420, for telling what a picture shows.
    sources: Vec<I420Frame>,
}

impl UnplugRun {
    fn timed(&self) -> Vec<(&Y4mPicture, Instant)> {
        self.shown
            .iter()
            .filter_map(|p| Some((p, self.growth.appeared(p)?)))
            .collect()
    }
}

/// Runs the whole installation with the fake camera, unplugs it for `unplugged`, replugs it,
/// and returns what the screen showed until `RETURN_WITHIN` + 1 s after the replug.
fn unplug_on_screen(tag: &str, unplugged_for: Duration) -> UnplugRun {
    let source = synthetic_yuyv(WIDTH, HEIGHT, 15);
    let mut camera = FakeCamera::new(tag, WIDTH, HEIGHT);
    camera
        .yuyv_frames(&source)
        .set("FPS", "30")
        .set("FORMATS", "yuyv");
    let setup = ReceiverSetup::new(
        tag,
        &format!(
            "[capture]\nsource = \"v4l2\"\ndevice = \"{}\"\n[delay]\nseconds = 0.0\n\
             [display]\noutput = \"y4m:{{dir}}/shown.y4m\"\nhud = false\n\
             signal_lost_ms = {SIGNAL_LOST_MS}\nglow_border_px = 0\n",
            camera.device_path()
        ),
    );
    let output = setup.dir.join("shown.y4m");
    let camera_env = camera.env();
    let camera_env: Vec<(&str, &str)> = camera_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Declared after `setup`: the services stop before its segments and files are removed.
    let _services: Vec<RunningService> = vec![
        setup.start("keymash-net-rx"),
        setup.start("keymash-display"),
        setup.start_with_env("keymash-capture", &camera_env),
        setup.start("keymash-delay-buffer"),
        setup.start("keymash-encoder"),
        setup.start("keymash-net-tx"),
    ];
    let capture_line = || {
        keymash_shm::CellReader::<keymash_shm::ServiceStats>::open(
            &setup.segment(&Service::Capture.stats_cell()),
        )
        .ok()
        .and_then(|cell| cell.load().ok())
        .map(|stats| stats.status_line().to_owned())
        .unwrap_or_default()
    };
    let diagnosis = || {
        format!(
            "capture: {}\nfake camera's last events:\n{}",
            capture_line(),
            camera.log_tail(20)
        )
    };

    // Live video on screen.
    let start = Instant::now();
    while pictures(&output)
        .iter()
        .filter(|p| p.card.is_none())
        .count()
        < 30
    {
        assert!(
            start.elapsed() < STREAM_WITHIN,
            "no live video on the receiver within {STREAM_WITHIN:?}\n{}",
            diagnosis()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut growth = Growth(Vec::new());
    growth.sample(&output, Duration::from_millis(500));

    camera.unplug();
    let unplugged = Instant::now();
    growth.sample(&output, unplugged_for);
    let absent_line = capture_line();
    camera.replug();
    let replugged = Instant::now();
    growth.sample(&output, RETURN_WITHIN + Duration::from_secs(1));
    let geometry = FrameGeometry::new(WIDTH as usize, HEIGHT as usize).unwrap();
    let sources = source
        .iter()
        .map(|yuyv| {
            let mut frame = I420Frame::grey(geometry);
            yuyv_to_i420(yuyv, geometry, &mut frame).unwrap();
            frame
        })
        .collect();
    UnplugRun {
        shown: pictures(&output),
        growth,
        unplugged,
        replugged,
        absent_line,
        diagnosis: diagnosis(),
        sources,
    }
}

/// Checks the start and the end of an unplug: the signal-lost card within the display's limit
/// (and no live picture after it), live pictures of newer frames back by themselves within
/// `RETURN_WITHIN` of the replug. Returns (card after unplug, back after replug, frames).
fn assert_card_then_live_again(
    run: &UnplugRun,
    live_allowed_while_away: impl Fn(&Y4mPicture) -> bool,
) -> (Duration, Duration, u64, u64) {
    let timed = run.timed();
    let diagnosis = &run.diagnosis;
    let last_live_before = timed
        .iter()
        .filter(|(p, at)| p.card.is_none() && *at < run.unplugged)
        .map(|(p, _)| p.frame)
        .max()
        .expect("live pictures before the unplug");

    // While the camera is away: after the display's silence limit, only cards (or what the
    // caller allows), and a card does come (the gap is longer than the limit).
    let card_by = run.unplugged + Duration::from_millis(SIGNAL_LOST_MS) + CARD_MARGIN;
    let live_while_away: Vec<u64> = timed
        .iter()
        .filter(|(p, at)| {
            p.card.is_none() && *at > card_by && *at < run.replugged && !live_allowed_while_away(p)
        })
        .map(|(p, _)| p.frame.0)
        .collect();
    assert!(
        live_while_away.is_empty(),
        "live pictures shown while the camera was unplugged (frames {live_while_away:?})\n{diagnosis}",
    );
    let first_card = timed
        .iter()
        .find(|(p, at)| p.card.is_some() && *at > run.unplugged && *at < run.replugged)
        .unwrap_or_else(|| panic!("no card while the camera was unplugged\n{diagnosis}"));
    assert_eq!(first_card.0.card.as_deref(), Some("signal-lost"));
    let card_after = first_card.1 - run.unplugged;
    assert!(
        first_card.1 <= card_by,
        "the signal-lost card came {card_after:?} after the unplug\n{diagnosis}",
    );

    // Back: live pictures of newer frames, by themselves.
    let back = timed
        .iter()
        .find(|(p, at)| p.card.is_none() && *at > run.replugged && !live_allowed_while_away(p))
        .unwrap_or_else(|| {
            panic!(
                "no live picture within {:?} of the replug\n{diagnosis}",
                RETURN_WITHIN + Duration::from_secs(1),
            )
        });
    let back_after = back.1 - run.replugged;
    assert!(
        back_after <= RETURN_WITHIN,
        "live pictures returned {back_after:?} after the replug, want within {RETURN_WITHIN:?}\n{diagnosis}",
    );
    assert!(
        back.0.frame > last_live_before,
        "the picture after the replug is frame {}, not newer than {} from before the unplug",
        back.0.frame,
        last_live_before
    );
    assert!(
        run.absent_line.starts_with("no camera, absent for"),
        "capture's status while unplugged: {}",
        run.absent_line
    );
    (card_after, back_after, back.0.frame.0, last_live_before.0)
}

#[test]
fn an_unplugged_camera_shows_the_signal_lost_card_on_the_receiver_and_live_video_returns() {
    let run = unplug_on_screen("unplug-screen", UNPLUGGED);
    let (card_after, back_after, back, before) = assert_card_then_live_again(&run, |_| false);
    println!(
        "camera unplugged {UNPLUGGED:?}: signal-lost card {card_after:?} after the unplug, no \
         live picture while away; live pictures back {back_after:?} after the replug (frame \
         {back} after {before} before); capture said \"{}\"",
        run.absent_line
    );
}

#[test]
fn a_camera_away_longer_than_the_gap_tolerance_shows_the_waiting_card_never_an_old_picture() {
    // Past GAP_TOLERANCE_NS without video the delay buffer sends its waiting card ("WAITING
    // FOR THE CAMERA"), which the receiver shows as the stream's picture: never an old camera
    // picture, never a countdown that stands still.
    const AWAY: Duration = Duration::from_secs(6);
    let run = unplug_on_screen("unplug-long", AWAY);
    let geometry = FrameGeometry::new(WIDTH as usize, HEIGHT as usize).unwrap();
    let mut waiting = I420Frame::grey(geometry);
    render_awaiting_video(&mut waiting, 0);
    let luma_psnr = |a: &I420Frame, b: &I420Frame| psnr(a.y(), b.y());
    // A picture shows the waiting card if it is far closer to it than to any camera picture.
    let is_waiting_card = |p: &Y4mPicture| {
        let to_card = luma_psnr(&p.picture, &waiting);
        let to_camera = run
            .sources
            .iter()
            .map(|s| luma_psnr(&p.picture, s))
            .fold(0.0, f64::max);
        to_card > 20.0 && to_card > to_camera + 6.0
    };
    let (card_after, back_after, back, before) = assert_card_then_live_again(&run, is_waiting_card);
    let tolerance = Duration::from_nanos(keymash_media::GAP_TOLERANCE_NS);
    let timed = run.timed();
    let waiting_shown: Vec<Instant> = timed
        .iter()
        .filter(|(p, at)| {
            p.card.is_none() && *at > run.unplugged && *at < run.replugged && is_waiting_card(p)
        })
        .map(|(_, at)| *at)
        .collect();
    let first_waiting = waiting_shown.first().copied().unwrap_or_else(|| {
        panic!(
            "no waiting card in {AWAY:?} without the camera\n{}",
            run.diagnosis
        )
    });
    let waiting_after = first_waiting - run.unplugged;
    // The tolerance runs from the last frame captured, up to a frame interval before the
    // unplug (plus the fake's 1 ms look at its control file).
    let earliest = tolerance - Duration::from_millis(100);
    assert!(
        waiting_after >= earliest && waiting_after <= tolerance + Duration::from_secs(2),
        "the waiting card came {waiting_after:?} after the unplug (gap tolerance {tolerance:?})"
    );
    // Shown steadily from then until the replug (the stream's rate, not one picture).
    let expected = (run.replugged - first_waiting).as_secs_f64() * 30.0;
    assert!(
        waiting_shown.len() as f64 >= expected * 0.5,
        "only {} waiting-card pictures in {:?}",
        waiting_shown.len(),
        run.replugged - first_waiting
    );
    println!(
        "camera unplugged {AWAY:?}: signal-lost card {card_after:?} after the unplug, the waiting \
         card from {waiting_after:?} ({} pictures), live pictures back {back_after:?} after the \
         replug (frame {back} after {before} before)",
        waiting_shown.len()
    );
}
