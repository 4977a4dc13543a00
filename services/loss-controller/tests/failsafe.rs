//! A dead controller never leaves the exhibit losing packets: after kill -9 the filter stays
//! attached but passes everything once the deadline (the fail-safe window) has run out. A clean
//! stop leaves no filter behind, and a restart after a crash replaces the stale filter.

// A test crate: helpers panic on setup failure, with their location, like the tests do.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keymash_tests::{require_root, NetnsPair};
use support::{
    attached_program_ids, flow, ingress_filters, kernel_counters, traffic_lock, Controller,
    FAILSAFE, VIDEO_PORT,
};

/// Scheduling slack on a loaded 2-CPU CI machine on top of the fail-safe window.
const SLACK: Duration = Duration::from_millis(100);
const IFACE: &str = NetnsPair::RIGHT_INTERFACE;

#[test]
fn after_kill_9_loss_returns_to_zero_within_the_failsafe_window() {
    require_root();
    let pair = NetnsPair::create("kill9").unwrap();
    let mut controller = Controller::start(&pair.right, IFACE, &["--fixed-drop", "1"]);
    let (tx, rx, to) = flow(&pair, VIDEO_PORT, false);
    rx.set_read_timeout(Some(Duration::from_millis(5))).unwrap();

    let _traffic = traffic_lock();
    let stop = AtomicBool::new(false);
    let (killed_at, first_arrival, arrived_before_kill) = std::thread::scope(|s| {
        // One packet per millisecond, until told to stop.
        let sender = s.spawn(|| {
            let mut seq = 0u64;
            while !stop.load(Ordering::Acquire) {
                tx.send_to(&seq.to_be_bytes(), to).unwrap();
                seq += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let mut buf = [0u8; 64];
        // 300 ms of full loss first: nothing may arrive.
        let until = Instant::now() + Duration::from_millis(300);
        let mut arrived_before_kill = 0;
        while Instant::now() < until {
            if rx.recv(&mut buf).is_ok() {
                arrived_before_kill += 1;
            }
        }
        controller.child.kill_hard().unwrap();
        let killed_at = Instant::now();
        let mut first_arrival = None;
        while killed_at.elapsed() < FAILSAFE * 4 {
            if rx.recv(&mut buf).is_ok() {
                first_arrival = Some(killed_at.elapsed());
                break;
            }
        }
        stop.store(true, Ordering::Release);
        sender.join().unwrap();
        (killed_at, first_arrival, arrived_before_kill)
    });
    let _ = killed_at;
    assert_eq!(
        arrived_before_kill, 0,
        "packets got through while dropping everything"
    );
    let first = first_arrival.expect("no packet arrived after the controller died");
    eprintln!("first packet after kill -9 arrived after {first:?} (fail-safe window {FAILSAFE:?})");
    assert!(
        first <= FAILSAFE + SLACK,
        "loss lasted {first:?} after the controller died"
    );

    // The crashed controller's filter is still there, passing everything and saying why.
    let counters = kernel_counters(&pair.right, IFACE);
    assert!(counters.passed_expired > 0, "{counters:?}");
}

#[test]
fn a_clean_stop_removes_the_filter_and_the_clsact_it_added() {
    require_root();
    let pair = NetnsPair::create("stop").unwrap();
    let mut controller = Controller::start(&pair.right, IFACE, &["--fixed-drop", "0.5"]);
    assert_eq!(attached_program_ids(&pair.right, IFACE).len(), 1);
    let status = controller.child.terminate(Duration::from_secs(5)).unwrap();
    assert!(status.success(), "controller exited with {status}");
    assert_eq!(
        ingress_filters(&pair.right, IFACE).trim(),
        "",
        "filter left on the interface"
    );
    let qdiscs = pair
        .right
        .run("tc", ["qdisc", "show", "dev", IFACE])
        .unwrap();
    assert!(!qdiscs.contains("clsact"), "clsact left behind:\n{qdiscs}");
}

#[test]
fn a_clean_stop_keeps_a_clsact_qdisc_that_was_there_before() {
    require_root();
    let pair = NetnsPair::create("keepq").unwrap();
    pair.right
        .run("tc", ["qdisc", "add", "dev", IFACE, "clsact"])
        .unwrap();
    let mut controller = Controller::start(&pair.right, IFACE, &["--fixed-drop", "0.5"]);
    let status = controller.child.terminate(Duration::from_secs(5)).unwrap();
    assert!(status.success(), "controller exited with {status}");
    assert_eq!(ingress_filters(&pair.right, IFACE).trim(), "");
    let qdiscs = pair
        .right
        .run("tc", ["qdisc", "show", "dev", IFACE])
        .unwrap();
    assert!(
        qdiscs.contains("clsact"),
        "someone else's clsact was removed:\n{qdiscs}"
    );
}

#[test]
fn a_restart_after_a_crash_replaces_the_stale_filter() {
    require_root();
    let pair = NetnsPair::create("stale").unwrap();
    let mut first = Controller::start(&pair.right, IFACE, &["--fixed-drop", "0.5"]);
    let stale = attached_program_ids(&pair.right, IFACE);
    first.child.kill_hard().unwrap();
    assert_eq!(
        attached_program_ids(&pair.right, IFACE),
        stale,
        "kill -9 should leave the filter behind"
    );

    let mut second = Controller::start(&pair.right, IFACE, &["--fixed-drop", "0.5"]);
    let now = attached_program_ids(&pair.right, IFACE);
    assert_eq!(
        now.len(),
        1,
        "expected only the new filter:\n{}",
        ingress_filters(&pair.right, IFACE)
    );
    assert_ne!(now, stale, "the stale filter is still the one attached");

    let status = second.child.terminate(Duration::from_secs(5)).unwrap();
    assert!(status.success());
    assert_eq!(ingress_filters(&pair.right, IFACE).trim(), "");
}
