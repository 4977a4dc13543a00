//! Cells: one value shared between processes with the rings' header discipline and torn-read
//! protection; the statistics record travels through one.

mod support;

use std::time::{Duration, Instant};

use keymash_shm::test_pattern::PatternRecord;
use keymash_shm::{
    Attach, CellReader, CellWriter, LoadError, Permissions, ServiceState, ServiceStats, WaitError,
};
use support::{peer, ShmScope, PATIENCE};

#[test]
fn a_cell_holds_the_last_stored_value_and_counts_its_versions() {
    let scope = ShmScope::new("cell");
    let id = scope.id("quality");
    let (mut writer, attach) = CellWriter::<u64>::open(&id, Permissions::OwnerOnly).unwrap();
    assert_eq!(attach, Attach::Created);
    let reader = CellReader::<u64>::open(&id).unwrap();
    assert_eq!(reader.load(), Err(LoadError::NeverStored));
    for (value, version) in [(80u64, 1u64), (35, 2), (100, 3)] {
        writer.store(&value);
        assert_eq!(reader.load_versioned(), Ok((value, version)));
    }
    drop(writer);

    // A restarted writer re-attaches and the value and its version carry on.
    let (mut writer, attach) = CellWriter::<u64>::open(&id, Permissions::OwnerOnly).unwrap();
    assert_eq!(attach, Attach::Reattached);
    assert_eq!(reader.load_versioned(), Ok((100, 3)));
    writer.store(&7);
    assert_eq!(reader.load_versioned(), Ok((7, 4)));
}

#[test]
fn loads_never_return_a_torn_value_while_another_process_stores_flat_out() {
    let scope = ShmScope::new("celltorn");
    let id = scope.id("pattern");
    drop(CellWriter::<PatternRecord>::open(&id, Permissions::OwnerOnly).unwrap());
    let reader = CellReader::<PatternRecord>::open(&id).unwrap();
    let mut writer = peer(&scope, "cell-write", "pattern", &[]);
    writer.expect("ATTACHED", PATIENCE);

    // Keep loading until 100,000 loads have been checked AND the writer has been seen to change
    // the value 10,000 times, so the loads really overlapped the stores.
    let (mut loaded, mut inconsistent_errors, mut distinct, mut last) = (0u64, 0u64, 0u64, 0u64);
    let deadline = Instant::now() + PATIENCE;
    while (loaded < 100_000 || distinct < 10_000) && Instant::now() < deadline {
        match reader.load() {
            Ok(record) => {
                assert!(
                    record.is_consistent(),
                    "torn value accepted: seq {}",
                    record.seq()
                );
                loaded += 1;
                if record.seq() != last {
                    distinct += 1;
                    last = record.seq();
                }
            }
            Err(LoadError::NeverStored) => std::thread::yield_now(),
            Err(LoadError::Inconsistent { .. }) => inconsistent_errors += 1,
        }
    }
    writer.kill();
    eprintln!("loaded {loaded}, distinct values {distinct}, gave up {inconsistent_errors} times");
    assert!(
        loaded >= 100_000 && distinct >= 10_000,
        "ran out of time: {loaded} loads, {distinct} values"
    );
}

#[test]
fn a_store_in_another_process_wakes_a_reader_waiting_for_a_change() {
    let scope = ShmScope::new("cellwake");
    let id = scope.id("pattern");
    drop(CellWriter::<PatternRecord>::open(&id, Permissions::OwnerOnly).unwrap());
    let reader = CellReader::<PatternRecord>::open(&id).unwrap();
    assert_eq!(
        reader.wait_for_change(0, Duration::from_millis(50)),
        Err(WaitError::TimedOut)
    );

    let mut writer = peer(&scope, "cell-write", "pattern", &["--stores", "1"]);
    let started = Instant::now();
    let version = reader.wait_for_change(0, Duration::from_secs(30)).unwrap();
    assert_eq!(version, 1);
    // Woken by the store (the peer's start and one store), not by the 30 s timeout: the margin
    // between the two is what makes this hold on a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken after {:?}",
        started.elapsed()
    );
    assert_eq!(reader.load().unwrap(), PatternRecord::new(1));
    writer.expect("DONE", PATIENCE);
}

#[test]
fn service_statistics_travel_through_a_cell_intact() {
    let scope = ShmScope::new("stats");
    let id = scope.id("stats.encoder");
    assert_eq!(id.name.stats_service(), Some("encoder"));
    let (mut writer, _) =
        CellWriter::<ServiceStats>::open(&id, Permissions::OwnerAndGroup).unwrap();
    let mut stats = ServiceStats::new(4242, 1_000);
    stats.set_state(ServiceState::Running);
    stats.add_counter("frames", 300).unwrap();
    stats.set_gauge("encode_ms_p99", 4.5).unwrap();
    stats.set_status_line("30.0 fps q80");
    stats.set_last_error("camera hiccup");
    writer.store(&stats);

    let loaded = CellReader::<ServiceStats>::open(&id)
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(loaded, stats);
    assert_eq!(loaded.state(), Some(ServiceState::Running));
    assert_eq!(loaded.counter("frames"), Some(300));
    assert_eq!(loaded.gauge("encode_ms_p99"), Some(4.5));
    assert_eq!(loaded.status_line(), "30.0 fps q80");
    assert_eq!(loaded.last_error(), "camera hiccup");
}
