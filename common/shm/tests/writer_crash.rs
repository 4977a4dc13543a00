//! A writer killed with SIGKILL half-way through a frame leaves nothing torn behind, and a
//! restarted writer repairs the slot and continues the sequence.

mod support;

use std::time::Duration;

use keymash_shm::{list_segments, test_pattern, ReadError, RecvError, RingReader};
use support::{peer, ShmScope, PATIENCE};

#[test]
fn when_the_writer_is_killed_mid_write_readers_reject_the_slot_and_a_restarted_writer_continues() {
    let scope = ShmScope::new("crash");
    let id = scope.id("frames");
    let ring = ["--slot-size", "4096", "--slots", "32"];
    let mut doomed = peer(
        &scope,
        "write",
        "frames",
        &[&ring[..], &["--frames", "50", "--stop-mid-write"]].concat(),
    );
    assert_eq!(doomed.expect("MIDWRITE", PATIENCE).u64("seq"), 50);

    let mut reader = RingReader::open(&id).unwrap();
    assert_eq!(reader.write_seq(), 50);
    let mut buf = Vec::new();
    let newest = reader.recv_into(Duration::ZERO, &mut buf).unwrap();
    assert_eq!(newest.seq, 49);
    assert!(test_pattern::verify(49, &buf));
    // Frame 18 shared its slot with the half-written frame 50.
    assert_eq!(
        reader.read_seq_into(18, &mut buf),
        Err(ReadError::Overwritten { seq: 18 })
    );
    assert!(reader.read_seq_into(19, &mut buf).is_ok());

    let doomed_pid = doomed.pid();
    assert!(reader.producer().alive);
    assert_eq!(reader.producer().pid, doomed_pid);
    doomed.kill();
    assert!(!reader.producer().alive, "status must see the dead writer");
    let listed = list_segments(&scope.prefix).unwrap();
    let info = listed[0].info.as_ref().unwrap();
    assert_eq!(
        (info.producer.pid, info.producer.alive, info.writes),
        (doomed_pid, false, 50)
    );

    // Nothing torn comes out while the writer is dead.
    assert_eq!(
        reader.recv_into(Duration::from_millis(100), &mut buf),
        Err(RecvError::TimedOut)
    );

    let mut restarted = peer(
        &scope,
        "write",
        "frames",
        &[&ring[..], &["--frames", "20"]].concat(),
    );
    let attached = restarted.expect("ATTACHED", PATIENCE);
    assert_eq!(attached.get("attach"), "Reattached");
    assert_eq!(attached.u64("next_seq"), 50);
    assert_eq!(attached.u64("repaired"), 1);
    assert_eq!(restarted.expect("DONE", PATIENCE).u64("next_seq"), 70);
    assert!(reader.producer().pid != doomed_pid);

    for expected in 50..70 {
        let received = reader.recv_into(Duration::ZERO, &mut buf).unwrap();
        assert_eq!((received.seq, received.missed), (expected, 0));
        assert_eq!(received.meta.frame().0, expected);
        assert!(
            test_pattern::verify(expected, &buf),
            "frame {expected} intact"
        );
    }
}
