//! A restarted reader resumes at the newest frame instead of replaying the ring.

mod support;

use std::time::Duration;

use keymash_shm::{test_pattern, RecvError, RingReader};
use support::{peer, ShmScope, PATIENCE};

#[test]
fn when_a_reader_restarts_it_resumes_at_the_newest_frame() {
    let scope = ShmScope::new("rrestart");
    let id = scope.id("frames");
    let ring = ["--slot-size", "512", "--slots", "16"];
    let mut writer = peer(
        &scope,
        "write",
        "frames",
        &[&ring[..], &["--frames", "10"]].concat(),
    );
    writer.expect("DONE", PATIENCE);
    // The next writer can attach only once this one has exited and the kernel dropped its lock.
    writer.wait_success(PATIENCE);

    let mut buf = Vec::new();
    let mut first = RingReader::open(&id).unwrap();
    let received = first.recv_into(Duration::ZERO, &mut buf).unwrap();
    assert_eq!((received.seq, received.missed), (9, 0));
    drop(first);

    let mut writer = peer(
        &scope,
        "write",
        "frames",
        &[&ring[..], &["--frames", "5"]].concat(),
    );
    assert_eq!(writer.expect("ATTACHED", PATIENCE).u64("next_seq"), 10);
    writer.expect("DONE", PATIENCE);

    let mut restarted = RingReader::open(&id).unwrap();
    let received = restarted.recv_into(Duration::ZERO, &mut buf).unwrap();
    assert_eq!(
        (received.seq, received.missed),
        (14, 0),
        "starts at the newest frame"
    );
    assert!(test_pattern::verify(14, &buf));
    assert_eq!(
        restarted.recv_into(Duration::from_millis(50), &mut buf),
        Err(RecvError::TimedOut)
    );
}

#[test]
fn a_reader_notices_when_its_ring_is_removed_and_recreated() {
    let scope = ShmScope::new("replaced");
    let id = scope.id("frames");
    let ring = |slots: &'static str| ["--slot-size", "512", "--slots", slots, "--frames", "1"];
    peer(&scope, "write", "frames", &ring("16")).wait_success(PATIENCE);
    let reader = RingReader::open(&id).unwrap();
    assert!(!reader.is_replaced());

    keymash_shm::remove_segment(&id).unwrap();
    assert!(reader.is_replaced(), "removed");
    peer(&scope, "write", "frames", &ring("8")).wait_success(PATIENCE);
    assert!(reader.is_replaced(), "recreated with another geometry");
    let reopened = RingReader::open(&id).unwrap();
    assert_eq!(reopened.geometry().slot_count(), 8);
    assert!(!reopened.is_replaced());
}
