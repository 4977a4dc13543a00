//! A dead controller never leaves the exhibit losing packets: after kill -9 the filter stays
//! attached but passes everything once the deadline (the fail-safe window) has run out. A clean
//! stop leaves no filter behind, and a restart after a crash replaces the stale filter.

// A test crate: helpers panic on setup failure, with their location, like the tests do.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keymash_loss_controller::filter::config_of_program;
use keymash_loss_controller::runner::monotonic_now_ns;
use keymash_tests::{require_root, NetnsPair};
use support::{
    attached_program_ids, flow, ingress_filters, kernel_counters, traffic_lock, Controller,
    SetOnDrop, FAILSAFE, VIDEO_PORT,
};

const IFACE: &str = NetnsPair::RIGHT_INTERFACE;

/// Judged on the kernel's own clock, so that a loaded machine cannot fail it while the product
/// keeps its promise: the deadline the dead controller left in the filter's map (checked to be
/// at most the fail-safe window after the kill), which the classifier compares with
/// `bpf_ktime_get_ns` for every packet (exactly, see classifier.rs). When the test's own threads
/// see the first packet come through depends on their scheduling and is only printed.
#[test]
fn after_kill_9_loss_returns_to_zero_within_the_failsafe_window() {
    require_root();
    let pair = NetnsPair::create("kill9").unwrap();
    let mut controller = Controller::start(&pair.right, IFACE, &["--fixed-drop", "1"]);
    let program = attached_program_ids(&pair.right, IFACE)[0];
    let (tx, rx, to) = flow(&pair, VIDEO_PORT, false);
    rx.set_read_timeout(Some(Duration::from_millis(5))).unwrap();

    let _traffic = traffic_lock();
    let stop = AtomicBool::new(false);
    let (killed_ns, deadline_ns, first_arrival_ns, arrived_before_kill) = std::thread::scope(|s| {
        // One packet per millisecond, until told to stop (also when this side panics).
        let sender = s.spawn(|| {
            let mut seq = 0u64;
            while !stop.load(Ordering::Acquire) {
                tx.send_to(&seq.to_be_bytes(), to).unwrap();
                seq += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let _stop_sender = SetOnDrop(&stop);
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
        // The controller is dead and reaped: whatever it wrote, it wrote before this.
        let killed_ns = monotonic_now_ns().unwrap();
        let deadline_ns = config_of_program(program).unwrap().deadline_ns;
        // Bounded: the window and then five seconds for the first packet to come through.
        let give_up = Instant::now() + FAILSAFE + Duration::from_secs(5);
        let mut first_arrival_ns = None;
        while Instant::now() < give_up {
            if rx.recv(&mut buf).is_ok() {
                first_arrival_ns = Some(monotonic_now_ns().unwrap());
                break;
            }
        }
        drop(_stop_sender);
        sender.join().expect("the sending thread");
        (
            killed_ns,
            deadline_ns,
            first_arrival_ns,
            arrived_before_kill,
        )
    });
    assert_eq!(
        arrived_before_kill, 0,
        "packets got through while dropping everything"
    );
    let ms = |ns: u64| ns as f64 / 1e6;
    let deadline_after_kill = ms(deadline_ns) - ms(killed_ns);
    // The promise: a controller refreshes the deadline to at most one fail-safe window ahead,
    // so once it is dead the filter drops for at most that long.
    assert!(
        deadline_after_kill <= ms(FAILSAFE.as_nanos() as u64),
        "the dead controller left a deadline {deadline_after_kill:.1} ms after its death (window {FAILSAFE:?})"
    );
    let first = first_arrival_ns.unwrap_or_else(|| {
        panic!("no packet arrived within {FAILSAFE:?} + 5 s of the kill (the filter's deadline was {deadline_after_kill:.1} ms after it)")
    });
    eprintln!(
        "after kill -9: the filter's deadline {deadline_after_kill:.1} ms later (window {FAILSAFE:?}), \
         first packet seen by the test {:.1} ms later",
        ms(first) - ms(killed_ns)
    );
    // Seen by the test no earlier than the kernel passed it: a packet seen before the deadline
    // went through while the filter still had to drop it.
    assert!(
        first >= deadline_ns,
        "a packet got through {:.1} ms before the filter's deadline",
        ms(deadline_ns) - ms(first)
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
