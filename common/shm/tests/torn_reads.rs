//! No torn frame is ever accepted: a writer rewrites a tiny ring flat out while two reader
//! processes check every frame they accept; and a slot rewritten during a read is reported.

mod support;

use std::time::Duration;

use keymash_core::units::FrameNo;
use keymash_shm::{
    test_pattern, FrameMeta, Permissions, ReadError, RingGeometry, RingReader, RingWriter,
};
use support::{peer, ShmScope, PATIENCE};

/// The reader that follows the newest frame accepts this many, each checked.
const CHECKED_FRAMES: &str = "100000";
/// How long the reader on the oldest slot races the writer. It loses almost every race on an
/// idle machine (the writer runs flat out on the other core), so it runs for a time, not for a
/// number of frames: its job is to provoke torn reads and show that none is accepted.
const OLDEST_READER_MS: &str = "10000";

#[test]
fn readers_accept_no_torn_frame_while_a_writer_laps_them_flat_out() {
    let scope = ShmScope::new("torn");
    // Four 4 KiB slots: the writer comes round to the slot a reader is copying constantly.
    let ring = ["--slot-size", "4096", "--slots", "4"];
    let geometry = RingGeometry::new(4096, 4).unwrap();
    drop(RingWriter::open(&scope.id("frames"), geometry, Permissions::OwnerOnly).unwrap());

    // One reader follows the newest frame; the other always reads the oldest, the slot the
    // writer overwrites next.
    let timeout = ["--timeout-ms", "30000"];
    let mut newest = peer(
        &scope,
        "read",
        "frames",
        &[&timeout[..], &["--accept", CHECKED_FRAMES]].concat(),
    );
    let mut oldest = peer(
        &scope,
        "read",
        "frames",
        &[&timeout[..], &["--for-ms", OLDEST_READER_MS, "--oldest"]].concat(),
    );
    newest.expect("READY", PATIENCE);
    oldest.expect("READY", PATIENCE);
    // Effectively endless; killed once both readers are done.
    let mut writer = peer(
        &scope,
        "write",
        "frames",
        &[&ring[..], &["--frames", "1000000000"]].concat(),
    );
    writer.expect("ATTACHED", PATIENCE);

    let result = newest.expect("RESULT", Duration::from_secs(150));
    eprintln!("newest: {}", result.line);
    assert_eq!(result.get("outcome"), "complete", "{}", result.line);
    assert_eq!(
        result.u64("corrupt"),
        0,
        "torn frames were accepted: {}",
        result.line
    );
    assert_eq!(result.u64("unexplained_gaps"), 0, "{}", result.line);
    assert!(
        result.u64("accepted") >= 100_000,
        "only {} frames checked",
        result.u64("accepted")
    );

    let result = oldest.expect("RESULT", Duration::from_secs(150));
    eprintln!("oldest: {}", result.line);
    assert_eq!(result.get("outcome"), "complete", "{}", result.line);
    assert_eq!(
        result.u64("corrupt"),
        0,
        "torn frames were accepted: {}",
        result.line
    );
    assert!(
        result.u64("overwritten") > 0,
        "the oldest-slot reader never lost a race: {}",
        result.line
    );
    writer.kill();
}

fn frame(seq: u64, len: usize) -> (Vec<u8>, FrameMeta) {
    let mut payload = vec![0; len];
    test_pattern::fill(seq, &mut payload);
    (payload, FrameMeta::new(FrameNo(seq), 0))
}

#[test]
fn a_slot_rewritten_during_a_read_is_reported_overwritten_not_returned() {
    let scope = ShmScope::new("overwr");
    let id = scope.id("frames");
    let (mut writer, _) = RingWriter::open(
        &id,
        RingGeometry::new(64, 2).unwrap(),
        Permissions::OwnerOnly,
    )
    .unwrap();
    let mut reader = RingReader::open(&id).unwrap();
    let (payload, meta) = frame(0, 64);
    writer.write(&payload, &meta).unwrap();
    assert_eq!(reader.next(Duration::ZERO).unwrap().seq, 0);

    // The writer laps the reader (frame 2 lands in frame 0's slot) while the closure runs.
    let outcome = reader.read_with(|_meta, shared| {
        let mut copy = vec![0; shared.len()];
        for seq in 1..=2 {
            let (payload, meta) = frame(seq, 64);
            writer.write(&payload, &meta).unwrap();
        }
        shared.copy_to_slice(&mut copy);
        copy
    });
    assert_eq!(outcome, Err(ReadError::Overwritten { seq: 0 }));
}

#[test]
fn a_frame_being_written_or_abandoned_is_never_readable() {
    let scope = ShmScope::new("inprog");
    let id = scope.id("frames");
    let (mut writer, _) = RingWriter::open(
        &id,
        RingGeometry::new(64, 2).unwrap(),
        Permissions::OwnerOnly,
    )
    .unwrap();
    let reader = RingReader::open(&id).unwrap();
    for seq in 0..2 {
        let (payload, meta) = frame(seq, 64);
        writer.write(&payload, &meta).unwrap();
    }
    let mut buf = Vec::new();
    assert!(reader.read_seq_into(0, &mut buf).is_ok());

    // Frame 2 is being written into frame 0's slot: frame 0 is gone, frame 2 not there yet.
    let mut slot = writer.begin();
    assert_eq!(slot.seq(), 2);
    slot.payload_mut()[..8].copy_from_slice(&[0xAA; 8]);
    assert_eq!(
        reader.read_seq_into(0, &mut buf),
        Err(ReadError::Overwritten { seq: 0 })
    );
    assert!(buf.is_empty(), "a rejected read leaves nothing behind");
    assert_eq!(
        reader.read_seq_into(2, &mut buf),
        Err(ReadError::NotYetWritten {
            seq: 2,
            write_seq: 2
        })
    );

    // Abandoned: the sequence number is not used up and the slot stays unreadable.
    drop(slot);
    assert_eq!(writer.next_seq(), 2);
    assert_eq!(
        reader.read_seq_into(0, &mut buf),
        Err(ReadError::Overwritten { seq: 0 })
    );
    assert!(
        reader.read_seq_into(1, &mut buf).is_ok(),
        "the other slot is untouched"
    );
}
