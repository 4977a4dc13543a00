//! In the exhibit the drop probability follows the mash cell through the mash curve, and the
//! kernel's counters appear in the controller's statistics cell.

// A test crate: helpers panic on setup failure, with their location, like the tests do.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use keymash_core::config::Config;
use keymash_core::curves::LossCurve;
use keymash_core::pipeline::{stat, MashRecord, Service, MASH_CELL};
use keymash_core::MashLevel;
use keymash_loss_controller::cells::names;
use keymash_loss_controller::filter::{counters_of_program, ForeignFilter};
use keymash_shm::{
    monotonic_now_ns, CellReader, CellWriter, Permissions, SegmentId, SegmentName, ServiceStats,
};
use keymash_tests::{require_root, NetnsPair};
use support::{
    attached_program_ids, flow, send_paced, traffic_lock, Controller, TestConfig, VIDEO_PORT,
};

const IFACE: &str = NetnsPair::RIGHT_INTERFACE;

fn default_curve() -> LossCurve {
    let loss = Config::default().loss;
    LossCurve::new(
        loss.drop_at_rest,
        loss.exponent,
        loss.zero_loss_at_mash,
    )
    .unwrap()
}

/// Polls the filter's config map until its drop fraction is `expected`; returns how long it took.
fn wait_for_fraction(filter: &ForeignFilter, expected: u32, since: Instant) -> Duration {
    while since.elapsed() < Duration::from_secs(2) {
        if filter.config().unwrap().drop_fraction == expected {
            return since.elapsed();
        }
        std::hint::spin_loop();
    }
    panic!(
        "drop fraction stayed {} instead of {expected}",
        filter.config().unwrap().drop_fraction
    );
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
    wait_for_fraction(&program, at_rest, Instant::now());

    let mut latencies = Vec::new();
    for level in [0.2, 0.5, 0.8, 0.1, 0.0, 0.65, 0.3] {
        let level = MashLevel::new(level).unwrap();
        let expected = curve.drop_probability(level).as_u32_fraction();
        let stored = Instant::now();
        mash.store(&MashRecord::new(level, 0, 0, monotonic_now_ns()));
        latencies.push(wait_for_fraction(&program, expected, stored));
    }
    latencies.sort();
    eprintln!("mash cell store -> filter map: {latencies:?}");
    // Woken by the cell's futex, not by the 20 ms refresh tick.
    assert!(
        latencies[latencies.len() / 2] < Duration::from_millis(10),
        "{latencies:?}"
    );

    // A level that mash-input stopped refreshing counts as nobody mashing.
    let stale = monotonic_now_ns() - 3_000_000_000;
    mash.store(&MashRecord::new(MashLevel::FULL, 0, 0, stale));
    wait_for_fraction(&program, at_rest, Instant::now());
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
        std::thread::sleep(Duration::from_millis(2_000));
        let during = stats.load().unwrap().gauge(names::DROP_PERCENT);
        sender.join().unwrap();
        during
    });
    std::thread::sleep(Duration::from_millis(200));
    let kernel = counters_of_program(program).unwrap();
    let published = stats.load().unwrap();
    assert_eq!(published.counter(names::SEEN), Some(PACKETS));
    assert_eq!(kernel.seen, PACKETS);
    assert_eq!(published.counter(stat::DROPPED), Some(kernel.dropped));
    assert_eq!(published.gauge(names::TARGET_DROP_PERCENT), Some(50.0));
    let percent = drop_percent.unwrap();
    assert!((percent - 50.0).abs() < 5.0, "per-second drop {percent}%");
    drop(controller);
}
