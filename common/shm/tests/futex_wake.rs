//! Readers sleep on the futex: a commit in another process wakes them at once, and with nothing
//! written they return after their timeout, having used (next to) no CPU meanwhile.

mod support;

use std::time::{Duration, Instant};

use keymash_shm::{Permissions, RecvError, RingGeometry, RingReader, RingWriter};
use support::{Peer, ShmScope, PATIENCE};

/// CPU time (user + system) this thread has used, from /proc/thread-self/stat, in clock ticks.
fn thread_cpu_ticks() -> u64 {
    let stat =
        std::fs::read_to_string("/proc/thread-self/stat").expect("read /proc/thread-self/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')').expect("command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| fields[index].parse::<u64>().expect("tick count");
    ticks(11) + ticks(12)
}

#[test]
fn a_commit_in_another_process_wakes_a_sleeping_reader_long_before_its_timeout() {
    let scope = ShmScope::new("wake");
    let id = scope.id("frames");
    let geometry = RingGeometry::new(64, 4).unwrap();
    drop(RingWriter::open(&id, geometry, Permissions::OwnerOnly).unwrap());
    let mut reader = RingReader::open(&id).unwrap();

    let writer_scope_prefix = scope.prefix.to_string();
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut writer = Peer::spawn(&[
            "write",
            "--prefix",
            &writer_scope_prefix,
            "--name",
            "frames",
            "--slot-size",
            "64",
            "--slots",
            "4",
            "--frames",
            "1",
        ]);
        writer.expect("DONE", PATIENCE);
    });
    let timeout = Duration::from_secs(30);
    let started = Instant::now();
    let arrival = reader.next(timeout).unwrap();
    let waited = started.elapsed();
    starter.join().unwrap();
    assert_eq!((arrival.seq, arrival.missed), (0, 0));
    assert!(
        waited >= Duration::from_millis(250),
        "returned before anything was written: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "woken by the timeout, not the commit: {waited:?}"
    );
}

#[test]
fn with_nothing_written_next_times_out_after_its_timeout_without_spinning() {
    let scope = ShmScope::new("timeout");
    let id = scope.id("frames");
    let (_writer, _) = RingWriter::open(
        &id,
        RingGeometry::new(64, 4).unwrap(),
        Permissions::OwnerOnly,
    )
    .unwrap();
    let mut reader = RingReader::open(&id).unwrap();
    let timeout = Duration::from_millis(600);
    let cpu_before = thread_cpu_ticks();
    let started = Instant::now();
    assert_eq!(reader.next(timeout), Err(RecvError::TimedOut));
    let waited = started.elapsed();
    let cpu_ticks = thread_cpu_ticks() - cpu_before;
    assert!(waited >= timeout, "returned early: {waited:?}");
    // A timed futex wait returns within scheduling latency of its timeout (milliseconds, also
    // with every CPU busy); seconds late would be a wait that ignores its timeout.
    assert!(
        waited < timeout + Duration::from_secs(2),
        "overslept: {waited:?}"
    );
    // A busy loop would burn ~60 ticks (at 100 Hz) in 600 ms; a futex sleep burns about none.
    assert!(
        cpu_ticks <= 5,
        "used {cpu_ticks} ticks of CPU while waiting"
    );
}
