//! In the exhibit the drop probability follows the mash cell through the mash curve, and the
//! kernel's counters appear in the controller's statistics cell.

// A test crate: helpers panic on setup failure, with their location, like the tests do.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use keymash_core::config::Config;
use keymash_core::curves::LossCurve;
use keymash_core::MashLevel;
use keymash_loss_controller::cells::names;
use keymash_loss_controller::filter::{counters_of_program, ForeignFilter};
use keymash_loss_controller::layout::LossConfigRecord;
use keymash_pipeline::{stat, MashRecord, Service, MASH_CELL};
use keymash_shm::{
    monotonic_now_ns, CellReader, CellWriter, Permissions, SegmentId, SegmentName, ServiceStats,
};
use keymash_tests::{require_root, NetnsPair};
use support::{
    attached_program_ids, flow, send_paced, traffic_lock, Controller, TestConfig, FAILSAFE,
    VIDEO_PORT,
};

const IFACE: &str = NetnsPair::RIGHT_INTERFACE;

fn default_curve() -> LossCurve {
    let loss = Config::default().loss;
    LossCurve::new(loss.drop_at_rest, loss.exponent, loss.zero_loss_at_mash).unwrap()
}

/// Polls the filter's config map until its drop fraction is `expected`, at most two seconds
/// (the controller refreshes the map every 20 ms: far less than that); returns the record.
fn wait_for_fraction(filter: &ForeignFilter, expected: u32) -> LossConfigRecord {
    let since = Instant::now();
    loop {
        let record = filter.config().unwrap();
        if record.drop_fraction == expected {
            return record;
        }
        assert!(
            since.elapsed() < Duration::from_secs(2),
            "drop fraction stayed {} instead of {expected} for 2 s",
            record.drop_fraction
        );
        // Short, but not a busy loop that would take a CPU from the controller.
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn the_drop_probability_follows_the_mash_cell_through_the_curve() {
    require_root();
    let pair = NetnsPair::create("mash").unwrap();
    let config = TestConfig::new();
    let mash_id = SegmentId::new(config.shm_prefix(), SegmentName::new(MASH_CELL).unwrap());
    let (mut mash, _) = CellWriter::<MashRecord>::open(&mash_id, Permissions::OwnerOnly).unwrap();
    let controller =
        Controller::start_configured(pair.right.command(Controller::binary()), config, IFACE, &[]);
    let program = ForeignFilter::open(attached_program_ids(&pair.right, IFACE)[0]).unwrap();
    let curve = default_curve();

    // Never stored yet: nobody is mashing, loss at rest.
    let at_rest = curve.drop_probability(MashLevel::IDLE).as_u32_fraction();
    wait_for_fraction(&program, at_rest);

    // How long the controller took, on its own clock: it writes each record at `deadline_ns -
    // FAILSAFE`. The store's time is taken after the store, so a test thread preempted in
    // between makes the controller look faster, never slower. (Should the test look only after
    // the next 20 ms refresh, the later write's time is used: that only errs towards slower.)
    let mut latencies = Vec::new();
    for level in [0.2, 0.5, 0.8, 0.1, 0.0, 0.65, 0.3] {
        let level = MashLevel::new(level).unwrap();
        let expected = curve.drop_probability(level).as_u32_fraction();
        mash.store(&MashRecord::new(level, 0, 0, monotonic_now_ns()));
        let stored_ns = monotonic_now_ns();
        let written_ns =
            wait_for_fraction(&program, expected).deadline_ns - FAILSAFE.as_nanos() as u64;
        latencies.push(Duration::from_nanos(written_ns.saturating_sub(stored_ns)));
    }
    latencies.sort();
    eprintln!("mash cell store -> filter map (controller's clock): {latencies:?}");
    // Woken by the cell's futex, not by the 20 ms refresh tick (which would make the median
    // about 10 ms): the controller promises to follow a change at once.
    assert!(
        latencies[latencies.len() / 2] < Duration::from_millis(10),
        "{latencies:?}"
    );

    // A level that mash-input stopped refreshing counts as nobody mashing.
    let stale = monotonic_now_ns() - 3_000_000_000;
    mash.store(&MashRecord::new(MashLevel::FULL, 0, 0, stale));
    wait_for_fraction(&program, at_rest);
    drop(controller);
}

#[test]
fn the_statistics_cell_carries_the_kernel_counters() {
    require_root();
    let pair = NetnsPair::create("stats").unwrap();
    let controller = Controller::start(&pair.right, IFACE, &["--fixed-drop", "0.5"]);
    let stats_id = SegmentId::new(
        controller.config.shm_prefix(),
        SegmentName::new(&Service::LossController.stats_cell()).unwrap(),
    );
    let stats = CellReader::<ServiceStats>::open(&stats_id).unwrap();
    let program = attached_program_ids(&pair.right, IFACE)[0];
    let (tx, _rx, to) = flow(&pair, VIDEO_PORT, false);

    let _traffic = traffic_lock();
    const RATE: u64 = 4_000;
    const PACKETS: u64 = 10_000; // 2.5 s, so a one-second window closes while traffic flows
    let drop_percent = std::thread::scope(|s| {
        let sender = s.spawn(|| send_paced(&tx, to, PACKETS, 100, RATE));
        // The per-second gauge as it was last while traffic still flowed: a window that closed
        // then lies wholly within the 2.5 s of traffic (any later one would not).
        let mut during = None;
        while !sender.is_finished() {
            during = stats.load().unwrap().gauge(names::DROP_PERCENT).or(during);
            std::thread::sleep(Duration::from_millis(20));
        }
        sender.join().expect("the sending thread");
        during
    });
    // The controller publishes the counters at its next refresh (every 20 ms).
    let deadline = Instant::now() + Duration::from_secs(2);
    while stats.load().unwrap().counter(names::SEEN) != Some(PACKETS) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let kernel = counters_of_program(program).unwrap();
    let published = stats.load().unwrap();
    assert_eq!(published.counter(names::SEEN), Some(PACKETS));
    assert_eq!(kernel.seen, PACKETS);
    assert_eq!(published.counter(stat::DROPPED), Some(kernel.dropped));
    assert_eq!(published.gauge(names::TARGET_DROP_PERCENT), Some(50.0));
    let percent = drop_percent.expect("no one-second window closed while traffic flowed");
    // 4,000 packets in a window at p = 0.5: 5 points is more than 6 standard deviations.
    assert!((percent - 50.0).abs() < 5.0, "per-second drop {percent}%");
    drop(controller);
}
