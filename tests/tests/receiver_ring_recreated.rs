//! The received ring removed and recreated under a running display (the README's desktop
//! recipe plus a restart of the receiver target: net-rx's segments removed, net-rx started
//! again): the display, never restarted, follows the new ring and presents its frames within
//! 2 s of the new net-rx being ready, and its log says it re-opened the ring.
//!
//! Every segment is removed, the display's own statistics cell too: the display creates that
//! again, so `keymash status` keeps showing it. Measured on the display's own `frames` counter (new frames presented), read from its
//! statistics cell, with a test sender streaming throughout; the display writes a headless Y4M
//! stream. Processes, segments and files are removed by guards, also when an assertion fails.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keymash_pipeline::{Service, RECEIVED_PAYLOADS};
use keymash_shm::{CellReader, ServiceStats};
use keymash_tests::receiver::{service_binary, ReceiverSetup, RunningService};

/// What the issue asks: frames from the new ring within 2 s.
const FOLLOW_WITHIN: Duration = Duration::from_secs(2);
/// New frames that count as "presenting the new ring" (at 30 fps, a third of a second).
const FRAMES_WANTED: u64 = 10;
/// Deadline for the first display to present the stream at all (a loaded machine).
const START_DEADLINE: Duration = Duration::from_secs(20);

/// `binary` started with this setup, its stderr in `log`.
fn start_logged(setup: &ReceiverSetup, binary: &str, log: &Path) -> RunningService {
    let mut command = Command::new(service_binary(binary));
    command.stderr(File::create(log).expect("create the log file"));
    setup.start_prepared(binary, command, false)
}

fn display_stats(setup: &ReceiverSetup) -> Option<ServiceStats> {
    CellReader::<ServiceStats>::open(&setup.segment(&Service::Display.stats_cell()))
        .ok()?
        .load()
        .ok()
}

fn frames_shown(setup: &ReceiverSetup) -> u64 {
    display_stats(setup)
        .and_then(|s| s.counter("frames"))
        .unwrap_or(0)
}

/// Polls the display's `frames` counter until it reaches `wanted` or `deadline` passes;
/// returns when it got there.
fn wait_for_frames(setup: &ReceiverSetup, wanted: u64, deadline: Instant) -> Option<Instant> {
    loop {
        if frames_shown(setup) >= wanted {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_running_display_follows_a_received_ring_that_was_removed_and_recreated() {
    let setup = ReceiverSetup::new(
        "rx-recreate",
        "[display]\noutput = \"y4m:{dir}/shown.y4m\"\nplayout_max_ms = 30\n",
    );
    let (net_rx_log, display_log) = (setup.dir.join("net-rx.log"), setup.dir.join("display.log"));
    let mut net_rx = start_logged(&setup, "keymash-net-rx", &net_rx_log);
    let display = start_logged(&setup, "keymash-display", &display_log);
    let ring = setup.segment(RECEIVED_PAYLOADS);

    let mut sender = setup.sender();
    let streaming = AtomicBool::new(true);
    std::thread::scope(|s| {
        // The sender streams throughout: the display must pick the stream up from the new
        // ring, not from a sender that waited for it.
        let sending = s.spawn(|| {
            while streaming.load(Ordering::Relaxed) {
                sender.stream_at_requested_quality(Duration::from_millis(200));
            }
        });
        let stop = || streaming.store(false, Ordering::Relaxed);
        // Stop the sender whatever happens below, so the scope can end.
        struct StopOnDrop<F: Fn()>(F);
        impl<F: Fn()> Drop for StopOnDrop<F> {
            fn drop(&mut self) {
                (self.0)();
            }
        }
        let stop_sender = StopOnDrop(stop);

        assert!(
            wait_for_frames(&setup, FRAMES_WANTED, Instant::now() + START_DEADLINE).is_some(),
            "the display never presented the stream before the ring was recreated (log: {})",
            read(&display_log)
        );

        // The receiver target stops and every segment is removed (`rm /dev/shm/<prefix>.*`,
        // the display's own statistics cell too), then net-rx starts again.
        net_rx.kill_hard().expect("kill -9 net-rx");
        let prefix = keymash_shm::Prefix::new(&setup.prefix).expect("prefix");
        keymash_shm::remove_segments(&prefix).expect("remove the receiver's segments");
        assert!(
            keymash_shm::RingReader::open(&ring).is_err(),
            "{ring} still there"
        );
        // The running display creates its statistics cell again (checked once a second), so
        // `keymash status` still shows it; it notices the writer's silence meanwhile.
        let deadline = Instant::now() + Duration::from_secs(5);
        while display_stats(&setup).is_none() {
            assert!(
                Instant::now() < deadline,
                "the running display did not create its removed statistics cell again within 5 s; \
                 log:\n{}",
                read(&display_log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        let before = frames_shown(&setup);
        net_rx = start_logged(&setup, "keymash-net-rx", &net_rx_log);
        let ready = Instant::now();
        assert!(
            keymash_shm::RingReader::open(&ring).is_ok(),
            "net-rx is ready but its ring {ring} is not there"
        );

        let shown = wait_for_frames(
            &setup,
            before + FRAMES_WANTED,
            ready + FOLLOW_WITHIN.max(Duration::from_secs(10)),
        );
        let status = display_stats(&setup)
            .map(|s| s.status_line().to_owned())
            .unwrap_or_default();
        let took = shown.map(|t| t.duration_since(ready));
        assert!(
            took.is_some_and(|t| t <= FOLLOW_WITHIN),
            "the display presented {FRAMES_WANTED} frames from the recreated ring after {took:?} \
             (wanted within {FOLLOW_WITHIN:?}; {} frames before, {} now); status: {status:?}; \
             display log:\n{}",
            before,
            frames_shown(&setup),
            read(&display_log)
        );
        assert!(
            !status.contains(&ring.to_string()),
            "the display follows the ring but its status still names it: {status:?}"
        );
        eprintln!("presented {FRAMES_WANTED} frames from the recreated ring {took:?} after net-rx's READY=1");
        drop(stop_sender);
        sending
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });
    drop(display);
    drop(net_rx);

    let log = read(&display_log);
    let ring_name = ring.to_string();
    assert!(
        log.lines()
            .any(|l| l.contains(&ring_name) && l.contains("was replaced")),
        "the display's log does not say the ring was replaced:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("was removed under this running service")),
        "the display's log does not say it created its statistics cell again:\n{log}"
    );
    let follows = log
        .lines()
        .filter(|l| l.contains(&format!("following {ring_name}")))
        .count();
    assert_eq!(
        follows, 2,
        "the display's log should say it followed the ring twice (first and recreated):\n{log}"
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}
