//! A ring left behind with another geometry (after a change of `video.width`, say) is replaced
//! by its writer, and a reader that met the stale ring first follows the new one without a
//! restart.
//!
//! For each ring writer of the pipeline: the test leaves the ring behind itself (a tiny slot
//! size, one frame written, the writer dropped) under a private shm prefix; starts the ring's
//! reader first and waits until its status line shows that it met the stale ring; then starts
//! the writer. The writer must have replaced the ring by the time it says READY=1 (the ring's
//! geometry is now the one `keymash_pipeline::Segments` gives for the configuration), and the
//! same reader process (same pid, still running) must count new frames or packets from it:
//!
//! | ring           | writer       | reader (counter)                               |
//! |----------------|--------------|------------------------------------------------|
//! | raw-frames     | capture      | delay-buffer (`held`)                          |
//! | delay-hold     | delay-buffer | delay-buffer itself (`held`, `frames` released) |
//! | delayed-frames | delay-buffer | encoder (`frames`)                             |
//! | payloads       | encoder      | net-tx (`frames`)                              |
//! | received       | net-rx       | display (`frames`), fed by a test sender       |
//!
//! Every wait has a deadline on the services' own counters; processes and segments (by prefix)
//! are removed by guards, also when an assertion fails.

use std::time::{Duration, Instant};

use keymash_core::config::Config;
use keymash_core::FrameNo;
use keymash_pipeline::{
    Segments, Service, DELAYED_FRAMES, DELAY_HOLD, PAYLOADS, RAW_FRAMES, RECEIVED_PAYLOADS,
};
use keymash_shm::{
    monotonic_now_ns, CellReader, FrameMeta, Permissions, Prefix, RingGeometry, RingReader,
    RingWriter, SegmentId, SegmentName, ServiceStats,
};
use keymash_tests::receiver::{test_picture, ReceiverSetup};
use keymash_tests::sender::SenderPipeline;

/// The stale ring's shape: nothing the configuration would give.
const STALE_SLOT_SIZE: usize = 64;
const STALE_SLOTS: usize = 4;
/// How long a started reader may take to publish a status line that shows it met the stale
/// ring (it publishes twice a second; this is a deadline for a loaded machine).
const MEET_DEADLINE: Duration = Duration::from_secs(10);
/// How long the reader may take to count [`FRAMES_WANTED`] frames from the new ring once its
/// writer is READY: the follower checks for a replaced ring at least every half second and the
/// stream runs at 30 fps, so a follower does it in about a second.
const FOLLOW_DEADLINE: Duration = Duration::from_secs(20);
/// New frames (or packets) the reader must count from the new ring.
const FRAMES_WANTED: u64 = 15;

fn segment_id(prefix: &str, name: &str) -> SegmentId {
    SegmentId::new(
        Prefix::new(prefix).expect("prefix"),
        SegmentName::new(name).expect("segment name"),
    )
}

/// `service`'s statistics under `prefix`, read straight from its cell.
fn stats_of(prefix: &str, service: Service) -> Option<ServiceStats> {
    CellReader::<ServiceStats>::open(&segment_id(prefix, &service.stats_cell()))
        .ok()?
        .load()
        .ok()
}

/// Leaves `<prefix>.<name>` behind as an older configuration would: a ring of another
/// geometry holding one frame, its writer gone. Returns that geometry.
fn leave_stale_ring(prefix: &str, name: &str, configured: RingGeometry) -> RingGeometry {
    let stale = RingGeometry::new(STALE_SLOT_SIZE, STALE_SLOTS).expect("stale geometry");
    assert_ne!(stale, configured, "the stale geometry must differ");
    let id = segment_id(prefix, name);
    let (mut writer, _) = RingWriter::open(&id, stale, Permissions::OwnerOnly)
        .unwrap_or_else(|e| panic!("leaving {id} behind: {e}"));
    writer
        .write(
            b"a frame of an older configuration",
            &FrameMeta::new(FrameNo(1), monotonic_now_ns()),
        )
        .expect("write the stale frame");
    drop(writer);
    assert_eq!(ring_geometry(prefix, name), Some(stale));
    stale
}

/// The geometry of the ring now under `<prefix>.<name>`, if there is a valid one.
fn ring_geometry(prefix: &str, name: &str) -> Option<RingGeometry> {
    RingReader::open(&segment_id(prefix, name))
        .ok()
        .map(|r| r.geometry())
}

/// Waits until `reader`'s status line leads with the ring `name` (it cannot open it: wrong
/// geometry). Returns the reader's pid, from its statistics.
fn wait_until_reader_meets_stale_ring(prefix: &str, reader: Service, name: &str) -> u32 {
    let id = format!("{prefix}.{name}");
    let start = Instant::now();
    let mut last = None;
    loop {
        if let Some(stats) = stats_of(prefix, reader) {
            let line = stats.status_line().to_owned();
            let first_clause = line.split(';').next().unwrap_or_default();
            if first_clause.contains(&id) {
                eprintln!("{reader} met the stale ring: {line:?}");
                return stats.pid();
            }
            last = Some(line);
        }
        assert!(
            start.elapsed() < MEET_DEADLINE,
            "{MEET_DEADLINE:?} after its READY=1, {reader}'s status line does not say why it cannot read \
             the stale {id}; its line: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The writer has replaced the stale ring: the ring now has the configured geometry.
fn assert_replaced(prefix: &str, name: &str, stale: RingGeometry, configured: RingGeometry) {
    let now = ring_geometry(prefix, name);
    assert_eq!(
        now,
        Some(configured),
        "after its writer said READY=1, {prefix}.{name} holds {now:?} (the stale ring was {stale}, \
         the configuration gives {configured})"
    );
}

/// Counter `counter` of `service` (0 until first counted).
fn counter(prefix: &str, service: Service, counter: &str) -> u64 {
    stats_of(prefix, service)
        .and_then(|s| s.counter(counter))
        .unwrap_or(0)
}

/// Waits until each of `counters` of `reader` has grown by [`FRAMES_WANTED`] from `baseline`
/// (the values before the writer started), its statistics still those of process `pid`, and
/// its status line no longer mentions the ring; `pump` runs between checks (a sender to feed,
/// or nothing) and `alive` says whether every process started is still running.
fn wait_until_reader_follows(
    prefix: &str,
    reader: Service,
    pid: u32,
    name: &str,
    counters: &[(&str, u64)],
    mut pump: impl FnMut(),
    mut alive: impl FnMut() -> bool,
) {
    let id = format!("{prefix}.{name}");
    let start = Instant::now();
    loop {
        let stats = stats_of(prefix, reader).expect("the reader's statistics cell");
        assert_eq!(
            stats.pid(),
            pid,
            "{reader} was restarted (pid {pid} -> {}): it must follow the new {id} without one",
            stats.pid()
        );
        assert!(
            alive(),
            "a service exited while {reader} should follow {id}"
        );
        let grown: Vec<(&str, u64, u64)> = counters
            .iter()
            .map(|&(name, base)| (name, base, stats.counter(name).unwrap_or(0)))
            .collect();
        let line = stats.status_line();
        let counted = grown
            .iter()
            .all(|&(_, base, now)| now >= base + FRAMES_WANTED);
        if counted && !line.contains(&id) {
            eprintln!(
                "{reader} follows the new {id} after {} ms: {grown:?}; {line:?}",
                start.elapsed().as_millis()
            );
            return;
        }
        assert!(
            start.elapsed() < FOLLOW_DEADLINE,
            "{FOLLOW_DEADLINE:?} after its writer replaced {id}, {reader} (same process) does not follow it: \
             counters (name, before, now) {grown:?}, wanted {FRAMES_WANTED} more each; status line {line:?}"
        );
        pump();
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sender_pipeline(tag: &str) -> SenderPipeline {
    // 1 s of delay: real frames reach the delayed ring within the test's deadlines.
    SenderPipeline::new(tag, 320, 240, 30, 1.0, "")
}

#[test]
fn capture_replaces_a_stale_raw_frame_ring_and_the_delay_buffer_follows_it() {
    let mut p = sender_pipeline("stale-raw");
    let configured = Segments::new(&p.config)
        .unwrap()
        .raw_frames()
        .unwrap()
        .geometry();
    let stale = leave_stale_ring(&p.prefix, RAW_FRAMES, configured);

    p.start("delay-buffer");
    let pid = wait_until_reader_meets_stale_ring(&p.prefix, Service::DelayBuffer, RAW_FRAMES);
    let held = counter(&p.prefix, Service::DelayBuffer, "held");
    p.start("capture");
    assert_replaced(&p.prefix, RAW_FRAMES, stale, configured);
    let prefix = p.prefix.clone();
    wait_until_reader_follows(
        &prefix,
        Service::DelayBuffer,
        pid,
        RAW_FRAMES,
        &[("held", held)],
        || {},
        || p.all_running(),
    );
}

#[test]
fn the_delay_buffer_replaces_its_stale_hold_and_releases_from_the_new_one() {
    let mut p = sender_pipeline("stale-hold");
    let (hold, _budget) = Segments::new(&p.config).unwrap().delay_hold().unwrap();
    let configured = hold.geometry();
    let stale = leave_stale_ring(&p.prefix, DELAY_HOLD, configured);

    // The hold's writer and reader are the delay buffer itself; capture feeds it.
    p.start("capture");
    p.start("delay-buffer");
    assert_replaced(&p.prefix, DELAY_HOLD, stale, configured);
    let pid = stats_of(&p.prefix, Service::DelayBuffer)
        .expect("delay-buffer's statistics")
        .pid();
    let prefix = p.prefix.clone();
    // `held`: frames copied into the hold; `frames`: frames released from it after the delay.
    wait_until_reader_follows(
        &prefix,
        Service::DelayBuffer,
        pid,
        DELAY_HOLD,
        &[("held", 0), ("frames", 0)],
        || {},
        || p.all_running(),
    );
}

#[test]
fn the_delay_buffer_replaces_a_stale_delayed_frame_ring_and_the_encoder_follows_it() {
    let mut p = sender_pipeline("stale-delayed");
    let configured = Segments::new(&p.config)
        .unwrap()
        .delayed_frames()
        .unwrap()
        .geometry();
    let stale = leave_stale_ring(&p.prefix, DELAYED_FRAMES, configured);

    p.start("capture");
    p.start("encoder");
    let pid = wait_until_reader_meets_stale_ring(&p.prefix, Service::Encoder, DELAYED_FRAMES);
    let frames = counter(&p.prefix, Service::Encoder, "frames");
    p.start("delay-buffer");
    assert_replaced(&p.prefix, DELAYED_FRAMES, stale, configured);
    let prefix = p.prefix.clone();
    wait_until_reader_follows(
        &prefix,
        Service::Encoder,
        pid,
        DELAYED_FRAMES,
        &[("frames", frames)],
        || {},
        || p.all_running(),
    );
}

#[test]
fn the_encoder_replaces_a_stale_payload_ring_and_net_tx_follows_it() {
    let mut p = sender_pipeline("stale-payloads");
    let configured = Segments::new(&p.config)
        .unwrap()
        .payloads()
        .unwrap()
        .geometry();
    let stale = leave_stale_ring(&p.prefix, PAYLOADS, configured);

    p.start("net-tx");
    let pid = wait_until_reader_meets_stale_ring(&p.prefix, Service::NetTx, PAYLOADS);
    let frames = counter(&p.prefix, Service::NetTx, "frames");
    p.start("capture");
    p.start("delay-buffer");
    p.start("encoder");
    assert_replaced(&p.prefix, PAYLOADS, stale, configured);
    let prefix = p.prefix.clone();
    wait_until_reader_follows(
        &prefix,
        Service::NetTx,
        pid,
        PAYLOADS,
        &[("frames", frames)],
        || {},
        || p.all_running(),
    );
}

#[test]
fn net_rx_replaces_a_stale_received_ring_and_the_display_follows_it() {
    let setup = ReceiverSetup::new("stale-received", "[display]\noutput = \"y4m:/dev/null\"\n");
    let config = Config::load(&setup.config).expect("the test configuration");
    let configured = Segments::new(&config)
        .unwrap()
        .received()
        .unwrap()
        .geometry();
    let stale = leave_stale_ring(&setup.prefix, RECEIVED_PAYLOADS, configured);

    let mut display = setup.start(Service::Display.binary());
    let pid =
        wait_until_reader_meets_stale_ring(&setup.prefix, Service::Display, RECEIVED_PAYLOADS);
    assert_eq!(pid, display.pid(), "display's statistics are not its own");
    let frames = counter(&setup.prefix, Service::Display, "frames");
    let mut net_rx = setup.start(Service::NetRx.binary());
    assert_replaced(&setup.prefix, RECEIVED_PAYLOADS, stale, configured);

    let mut sender = setup.sender();
    let geometry = sender.geometry();
    let mut n = 0;
    wait_until_reader_follows(
        &setup.prefix,
        Service::Display,
        pid,
        RECEIVED_PAYLOADS,
        &[("frames", frames)],
        // Two frames per check, at the quality net-rx asks for (each takes a frame interval).
        || {
            for _ in 0..2 {
                n += 1;
                let quality = sender.requested_quality();
                sender.send_frame(&test_picture(geometry, n), quality, |_| false);
            }
        },
        || matches!(display.try_wait(), Ok(None)) && matches!(net_rx.try_wait(), Ok(None)),
    );
}
