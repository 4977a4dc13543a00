//! The one way to create a writer and to follow a segment, against real shared memory: a
//! follower waits (and says why) while its segment is missing or of another shape, opens it when
//! it appears, and follows a writer that replaced it; a writer replaces a ring an older
//! configuration left with another shape.

use std::time::{Duration, Instant};

use keymash_core::config::Config;
use keymash_core::FrameNo;
use keymash_pipeline::{FrameSlot, MashRecord, RingSpec, Segments};
use keymash_shm::{FrameMeta, Prefix, RemoveSegmentsOnDrop, RingGeometry, RingWriter};

/// Longer than any retry or replacement check of the follower: waits end on success, not here.
const PATIENCE: Duration = Duration::from_secs(10);

fn config(tag: &str, width: u32) -> (Config, RemoveSegmentsOnDrop) {
    let mut config = Config::default();
    config.shm.prefix = format!("kmpipe{tag}{}", std::process::id());
    config.video.width = width;
    config.video.height = 240;
    config.delay.seconds = 1.0;
    let cleanup = RemoveSegmentsOnDrop(Prefix::new(&config.shm.prefix).expect("test prefix"));
    (config, cleanup)
}

/// Calls `reader()` until it yields a reader, up to [`PATIENCE`].
fn until_following<R: keymash_pipeline::follow::Followable>(
    follow: &mut keymash_pipeline::Follow<R>,
) -> &mut R {
    let start = Instant::now();
    while follow.reader().is_none() {
        assert!(
            start.elapsed() < PATIENCE,
            "never followed {}: {:?}",
            follow.id(),
            follow.waiting()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    follow.reader().expect("followed above")
}

fn write_frame(writer: &mut RingWriter, config: &Config, frame: u64) {
    let len = writer.geometry().slot_size();
    let meta = FrameSlot::video(FrameNo(frame), frame).meta(&config.video);
    writer
        .write(&vec![frame as u8; len], &meta)
        .expect("a frame the ring fits");
}

#[test]
fn a_follower_says_what_it_waits_for_then_opens_the_segment_when_it_appears() {
    let (config, _cleanup) = config("wait", 320);
    let spec = Segments::new(&config).unwrap().raw_frames().unwrap();
    let mut follow = spec.follow();
    assert!(follow.reader().is_none());
    let waiting = follow.waiting().unwrap().to_owned();
    assert!(
        waiting.contains(&spec.id().to_string()) && waiting.contains("keymash-capture"),
        "{waiting}"
    );

    let (mut writer, _) = spec.create().unwrap();
    let reader = until_following(&mut follow);
    write_frame(&mut writer, &config, 1);
    let mut buf = Vec::new();
    let got = reader.recv_into(PATIENCE, &mut buf).unwrap();
    assert_eq!(got.meta.frame(), FrameNo(1));
    assert_eq!(follow.waiting(), None);
    assert_eq!(follow.opens(), 1);
}

/// Every ring of the pipeline: a ring left by a configuration of another frame size is replaced
/// by its writer, and a follower that met the stale ring first follows the new one.
#[test]
fn every_ring_writer_replaces_a_ring_of_another_shape_and_its_followers_move_on() {
    let (config, _cleanup) = config("stale", 320);
    let segments = Segments::new(&config).unwrap();
    let rings: Vec<(&str, RingSpec)> = vec![
        ("raw", segments.raw_frames().unwrap()),
        ("hold", segments.delay_hold().unwrap().0),
        ("delayed", segments.delayed_frames().unwrap()),
        ("payloads", segments.payloads().unwrap()),
        ("received", segments.received().unwrap()),
    ];
    for (what, spec) in rings {
        // An older configuration's ring: another slot size.
        let stale = RingGeometry::new(spec.geometry().slot_size() / 2, 4).unwrap();
        let (old, _) =
            RingWriter::open(spec.id(), stale, segments.permissions()).expect("stale ring");
        drop(old);

        let mut follow = spec.follow();
        assert!(follow.reader().is_none(), "{what}: followed a stale ring");
        assert!(
            follow.waiting().unwrap().contains("holds"),
            "{what}: {:?}",
            follow.waiting()
        );
        // It names the writer to restart (the one that replaces a ring of another shape).
        let waiting = follow.waiting().unwrap();
        assert!(
            waiting.contains("restart keymash-") && waiting.len() <= 128,
            "{what}: {waiting}"
        );

        let (mut writer, _) = spec.create().expect("replace the stale ring");
        assert_eq!(writer.geometry(), spec.geometry(), "{what}");
        let reader = until_following(&mut follow);
        assert_eq!(reader.geometry(), spec.geometry(), "{what}");
        write_frame(&mut writer, &config, 7);
        let mut buf = Vec::new();
        let got = reader.recv_into(PATIENCE, &mut buf).unwrap();
        assert_eq!(got.meta.frame(), FrameNo(7), "{what}");
    }
}

#[test]
fn a_follower_moves_to_a_ring_its_writer_recreated() {
    let (config, _cleanup) = config("recreate", 320);
    let spec = Segments::new(&config).unwrap().received().unwrap();
    let (writer, _) = spec.create().unwrap();
    let mut follow = spec.follow();
    until_following(&mut follow);
    assert_eq!(follow.opens(), 1);

    // The segments removed by hand and the writer restarted (a new inode, the same name).
    drop(writer);
    keymash_shm::remove_segment(spec.id()).unwrap();
    let (mut writer, _) = spec.create().unwrap();
    write_frame(&mut writer, &config, 3);

    follow.silent();
    let start = Instant::now();
    while follow.opens() < 2 {
        follow.reader();
        assert!(
            start.elapsed() < PATIENCE,
            "the recreated ring was never followed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let reader = until_following(&mut follow);
    let mut buf = Vec::new();
    // A fresh reader starts at the newest frame.
    let got = reader.recv_into(Duration::ZERO, &mut buf).unwrap();
    assert_eq!(got.meta.frame(), FrameNo(3));
}

#[test]
fn a_cell_follower_moves_to_a_cell_its_writer_recreated() {
    let (config, _cleanup) = config("cell", 320);
    let spec = Segments::new(&config).unwrap().mash_cell().unwrap();
    let mut writer = spec.create().unwrap();
    writer.store(&MashRecord::default());
    let mut follow = spec.follow();
    until_following(&mut follow);

    drop(writer);
    keymash_shm::remove_segment(spec.id()).unwrap();
    let mut writer = spec.create().unwrap();
    let fresh = MashRecord::new(keymash_core::MashLevel::new(0.5).unwrap(), 1, 2, 3);
    writer.store(&fresh);

    follow.silent();
    let start = Instant::now();
    loop {
        if let Some(record) = follow.reader().and_then(|r| r.load().ok()) {
            if record == fresh {
                break;
            }
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the recreated cell was never followed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(follow.opens(), 2);
}

#[test]
fn a_frame_of_another_size_is_refused_by_name() {
    let (config, _cleanup) = config("size", 320);
    let meta: FrameMeta = FrameSlot::video(FrameNo(1), 1).meta(&config.video);
    let mut other = config.video.clone();
    other.width = 640;
    let err = FrameSlot::read(&meta, &other, 640 * 240 * 3 / 2).unwrap_err();
    assert!(err.to_string().contains("320x240"), "{err}");
}

/// A ring cut short (a writer that died mid-resize, a full `/dev/shm`): the follower refuses it
/// and says what to do, in a status line's 128 bytes, and follows the ring once it is rebuilt.
#[test]
fn a_follower_of_a_truncated_ring_says_which_writer_to_restart() {
    let (config, _cleanup) = config("short", 320);
    let spec = Segments::new(&config).unwrap().received().unwrap();
    let (writer, _) = spec.create().unwrap();
    drop(writer);
    let len = std::fs::metadata(spec.id().path()).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(spec.id().path())
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let mut follow = spec.follow();
    assert!(follow.reader().is_none());
    let waiting = follow.waiting().unwrap().to_owned();
    assert!(
        waiting.contains(&spec.id().to_string())
            && waiting.contains("damaged")
            && waiting.contains("restart keymash-net-rx")
            && waiting.len() <= 128,
        "{waiting}"
    );

    // What the message says to do: remove it and restart the writer.
    keymash_shm::remove_segment(spec.id()).unwrap();
    let (_writer, _) = spec.create().unwrap();
    until_following(&mut follow);
    assert_eq!(follow.waiting(), None);
}
