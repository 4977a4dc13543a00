//! A service's statistics reach its shared-memory cell, where `keymash status` reads them.

use keymash_core::config::Config;
use keymash_pipeline::Segments;
use keymash_pipeline::{stat, Service};
use keymash_service::StatsPublisher;
use keymash_shm::{CellReader, Prefix, RemoveSegmentsOnDrop, ServiceState, ServiceStats};

#[test]
fn published_counters_gauges_and_rate_are_read_back_from_the_cell() {
    let mut config = Config::default();
    config.shm.prefix = format!("kmtest-stats-{}", std::process::id());
    let _cleanup = RemoveSegmentsOnDrop(Prefix::new(&config.shm.prefix).unwrap());

    let t0 = 1_000_000_000_000u64;
    let mut publisher = StatsPublisher::open(&config, Service::Encoder, "frames", t0).unwrap();
    let reader: CellReader<ServiceStats> = CellReader::open(
        Segments::new(&config)
            .unwrap()
            .stats_cell(Service::Encoder)
            .unwrap()
            .id(),
    )
    .unwrap();

    publisher.set_state(ServiceState::Running);
    publisher.count("frames", 30);
    publisher.count(stat::DROPPED, 2);
    publisher.gauge("encode_ms_p99", 1.5);
    publisher.set_status_line("encoding 640x480 at q50");
    publisher.publish(t0 + 500_000_000);

    let stats = reader.load().unwrap();
    assert_eq!(stats.state(), Some(ServiceState::Running));
    assert_eq!(stats.pid(), std::process::id());
    assert_eq!(stats.counter("frames"), Some(30));
    assert_eq!(stats.counter(stat::DROPPED), Some(2));
    assert_eq!(stats.gauge("encode_ms_p99"), Some(1.5));
    assert_eq!(stats.status_line(), "encoding 640x480 at q50");
    assert_eq!(stats.heartbeat_ns(), t0 + 500_000_000);
    // Half a second is not yet a rate window.
    assert_eq!(stats.gauge(stat::RATE), None);

    publisher.count("frames", 30);
    publisher.publish(t0 + 2_000_000_000);
    let rate = reader.load().unwrap().gauge(stat::RATE).unwrap();
    assert!(
        (rate - 30.0).abs() < 1e-9,
        "60 frames over 2 s is 30/s, got {rate}"
    );
}

#[test]
fn a_service_that_returns_from_its_loop_shows_stopping_whatever_it_forgot() {
    let mut config = Config::default();
    config.shm.prefix = format!("kmtest-stop-{}", std::process::id());
    let _cleanup = RemoveSegmentsOnDrop(Prefix::new(&config.shm.prefix).unwrap());
    let mut publisher = StatsPublisher::open(&config, Service::Display, "frames", 1).unwrap();
    publisher.set_state(ServiceState::Running);
    publisher.publish(2);
    let reader: CellReader<ServiceStats> = CellReader::open(
        Segments::new(&config)
            .unwrap()
            .stats_cell(Service::Display)
            .unwrap()
            .id(),
    )
    .unwrap();
    assert_eq!(reader.load().unwrap().state(), Some(ServiceState::Running));
    drop(publisher);
    assert_eq!(reader.load().unwrap().state(), Some(ServiceState::Stopping));
}

/// Segments removed under a running service (`rm /dev/shm/keymash.*`): its statistics cell is
/// created again at a publish a second or more later, so `keymash status` keeps showing the
/// stage, with its counters; a stopping service does not create it again.
#[test]
fn a_removed_statistics_cell_is_created_again_while_the_service_runs() {
    let mut config = Config::default();
    config.shm.prefix = format!("kmtest-gone-{}", std::process::id());
    let _cleanup = RemoveSegmentsOnDrop(Prefix::new(&config.shm.prefix).unwrap());
    let segments = Segments::new(&config).unwrap();
    let spec = segments.stats_cell(Service::Display).unwrap();
    let t0 = 1_000_000_000_000u64;
    let mut publisher = StatsPublisher::open(&config, Service::Display, "frames", t0).unwrap();
    publisher.count("frames", 7);

    keymash_shm::remove_segment(spec.id()).unwrap();
    // Within the check interval: not looked at yet.
    publisher.publish(t0 + 500_000_000);
    assert!(CellReader::<ServiceStats>::open(spec.id()).is_err());
    publisher.publish(t0 + 1_500_000_000);
    let stats = CellReader::<ServiceStats>::open(spec.id())
        .expect("the cell was created again")
        .load()
        .unwrap();
    assert_eq!(stats.counter("frames"), Some(7));

    keymash_shm::remove_segment(spec.id()).unwrap();
    drop(publisher);
    assert!(
        CellReader::<ServiceStats>::open(spec.id()).is_err(),
        "a stopping service created its removed cell again"
    );
}
