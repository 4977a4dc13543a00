//! A segment whose file is shorter than its header says (truncated behind its writer's back, or
//! left by a create that died half-way) never makes anyone die of SIGBUS: a reader that opens it
//! gets a typed error, and the real writer service, started over it, replaces it (one warning)
//! and runs; it does not exit, so there is no restart loop.
//!
//! For every segment of the sender's four services (their rings, the quality cell and their
//! statistics cells): the test creates it with the pipeline's own writer, drops the writer,
//! truncates the file, checks that readers refuse it, then starts the services. Each must say
//! READY=1, keep running, put every segment back at its full length, and move frames (the
//! stream flows through the replaced rings). Then, with the pipeline running, the delay buffer is
//! killed (-9), its hold truncated while no writer holds it, and restarted: it replaces the
//! hold and releases frames again.
//!
//! Processes and segments (by prefix) are removed by guards, also when an assertion fails.

use std::time::{Duration, Instant};

use keymash_pipeline::{Segments, Service, DELAY_HOLD};
use keymash_shm::{CellReader, OpenError, RingReader, SegmentId, SegmentName, ServiceStats};
use keymash_tests::sender::{SenderPipeline, SENDER_SERVICES};

/// How long the stream may take to move frames through every stage once all are READY: it runs
/// at 10 fps with a one-second delay, so a few seconds; the rest is for a loaded machine.
const FLOW_DEADLINE: Duration = Duration::from_secs(30);

fn id(pipeline: &SenderPipeline, name: &str) -> SegmentId {
    Segments::new(&pipeline.config)
        .expect("segments")
        .id(name)
        .expect("segment id")
}

fn file_len(id: &SegmentId) -> u64 {
    std::fs::metadata(id.path())
        .unwrap_or_else(|e| panic!("{id}: {e}"))
        .len()
}

fn truncate(id: &SegmentId, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(id.path())
        .unwrap_or_else(|e| panic!("open {id}: {e}"))
        .set_len(len)
        .unwrap_or_else(|e| panic!("truncate {id}: {e}"));
}

/// Every segment a sender service creates, with its full length, made by the pipeline's own
/// writers (then dropped: no writer holds them).
fn create_sender_segments(pipeline: &SenderPipeline) -> Vec<(SegmentId, u64)> {
    let segments = Segments::new(&pipeline.config).expect("segments");
    let plan = segments.memory_plan().expect("plan");
    let (hold, _) = segments.delay_hold().expect("hold");
    for ring in [
        segments.raw_frames().expect("raw"),
        hold,
        segments.delayed_frames().expect("delayed"),
        segments.payloads().expect("payloads"),
    ] {
        drop(ring.create().expect("create ring"));
    }
    drop(
        segments
            .quality_cell()
            .expect("quality")
            .create()
            .expect("quality"),
    );
    for service in [
        Service::Capture,
        Service::DelayBuffer,
        Service::Encoder,
        Service::NetTx,
    ] {
        drop(
            segments
                .stats_cell(service)
                .expect("stats")
                .create()
                .expect("stats cell"),
        );
    }
    plan.on(keymash_pipeline::Role::Sender)
        .map(|s| (id(pipeline, &s.name), s.bytes))
        .collect()
}

fn counter(pipeline: &SenderPipeline, service: Service, name: &str) -> u64 {
    let cell = SegmentId::new(
        keymash_shm::Prefix::new(&pipeline.prefix).expect("prefix"),
        SegmentName::new(&service.stats_cell()).expect("name"),
    );
    CellReader::<ServiceStats>::open(&cell)
        .ok()
        .and_then(|r| r.load().ok())
        .and_then(|s| s.counter(name))
        .unwrap_or(0)
}

/// Waits until `service`'s counter `name` exceeds `above`.
fn wait_counter(pipeline: &mut SenderPipeline, service: Service, name: &str, above: u64) -> u64 {
    let deadline = Instant::now() + FLOW_DEADLINE;
    loop {
        let now = counter(pipeline, service, name);
        if now > above {
            return now;
        }
        assert!(
            pipeline.all_running(),
            "a service exited; {} log:\n{}",
            service.name(),
            pipeline.log(service.name())
        );
        assert!(
            Instant::now() < deadline,
            "{} counted no more than {above} {name} within {FLOW_DEADLINE:?}; log:\n{}",
            service.name(),
            pipeline.log(service.name())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A reader opening a truncated segment gets a typed error, not SIGBUS.
fn assert_readers_refuse(id: &SegmentId, is_ring: bool) {
    if is_ring {
        let opened = RingReader::open(id);
        assert!(
            matches!(opened, Err(OpenError::Truncated { .. })),
            "{id}: {:?}",
            opened.err()
        );
    } else {
        let opened = CellReader::<ServiceStats>::open(id).map(|_| ());
        assert!(
            matches!(
                opened,
                Err(OpenError::Truncated { .. } | OpenError::GeometryMismatch { .. })
            ),
            "{id}: {opened:?}"
        );
    }
}

#[test]
fn truncated_segments_are_replaced_by_their_writers_and_refused_by_readers() {
    let mut pipeline = SenderPipeline::new("truncated", 160, 128, 10, 1.0, "");
    let planned = create_sender_segments(&pipeline);
    assert_eq!(planned.len(), 9, "{planned:?}");
    for (id, full) in &planned {
        // Rings lose their last slots; cells keep their header but lose their value.
        let short = if *full > 4096 { full / 2 } else { 130 };
        truncate(id, short);
        assert_readers_refuse(id, *full > 4096);
        // A follower, as the services use, sees no reader either (and does not fault).
        if id.name.as_str() == DELAY_HOLD {
            let segments = Segments::new(&pipeline.config).expect("segments");
            let mut follow = segments.delay_hold().expect("hold").0.follow();
            assert!(follow.reader().is_none());
        }
    }

    for service in SENDER_SERVICES {
        pipeline.start(service);
    }
    for (id, full) in &planned {
        assert_eq!(file_len(id), *full, "{id} was not replaced at full length");
    }
    // The stream flows through every replaced ring, and nobody restarted or died.
    wait_counter(&mut pipeline, Service::Capture, "frames", 5);
    wait_counter(&mut pipeline, Service::DelayBuffer, "frames", 5);
    wait_counter(&mut pipeline, Service::Encoder, "frames", 5);
    wait_counter(&mut pipeline, Service::NetTx, "packets", 5);
    assert!(pipeline.all_running());
    for service in ["capture", "delay-buffer"] {
        let log = pipeline.log(service);
        assert!(
            log.contains("WARN") && log.contains("replacing it"),
            "{service} did not warn about the segment it replaced:\n{log}"
        );
    }

    // A crash, the hold truncated while no writer holds it, a restart (as systemd would).
    pipeline.kill_hard("delay-buffer");
    let hold = id(&pipeline, DELAY_HOLD);
    let full = file_len(&hold);
    truncate(&hold, full / 3);
    pipeline.start("delay-buffer");
    assert_eq!(file_len(&hold), full);
    let released = counter(&pipeline, Service::DelayBuffer, "frames");
    wait_counter(&mut pipeline, Service::DelayBuffer, "frames", released + 5);
    assert!(pipeline.all_running(), "{}", pipeline.log("delay-buffer"));
}
