//! No torn frame is ever accepted: a writer rewrites a tiny ring flat out while two reader
//! processes check every frame they accept; and a slot rewritten during a read is reported.

mod support;

use std::time::Duration;

use keymash_core::units::FrameNo;
use keymash_shm::{
    test_pattern, FrameMeta, Permissions, ReadError, RingGeometry, RingReader, RingWriter,
};
use support::{peer, ShmScope, PATIENCE};

/// Each reader accepts this many frames; two readers make at least 100,000 checked frames.
const FRAMES_PER_READER: &str = "60000";

#[test]
fn readers_accept_no_torn_frame_while_a_writer_laps_them_flat_out() {
    let scope = ShmScope::new("torn");
    // Four 4 KiB slots: the writer comes round to the slot a reader is copying constantly.
    let ring = ["--slot-size", "4096", "--slots", "4"];
    let geometry = RingGeometry::new(4096, 4).unwrap();
    drop(RingWriter::open(&scope.id("frames"), geometry, Permissions::OwnerOnly).unwrap());

    // One reader follows the newest frame; the other always reads the oldest, the slot the
    // writer overwrites next.
    let common = ["--accept", FRAMES_PER_READER, "--timeout-ms", "30000"];
    let mut readers = vec![
        peer(&scope, "read", "frames", &common),
        peer(
            &scope,
            "read",
            "frames",
            &[&common[..], &["--oldest"]].concat(),
        ),
    ];
    for reader in &mut readers {
        reader.expect("READY", PATIENCE);
    }
    // Effectively endless; killed once both readers have their frames.
    let mut writer = peer(
        &scope,
        "write",
        "frames",
        &[&ring[..], &["--frames", "1000000000"]].concat(),
    );
    writer.expect("ATTACHED", PATIENCE);

    let mut accepted = 0;
    for reader in &mut readers {
        let result = reader.expect("RESULT", Duration::from_secs(150));
        eprintln!("{}", result.line);
        assert_eq!(result.get("outcome"), "complete", "{}", result.line);
        assert_eq!(
            result.u64("corrupt"),
            0,
            "torn frames were accepted: {}",
            result.line
        );
        assert_eq!(result.u64("unexplained_gaps"), 0, "{}", result.line);
        accepted += result.u64("accepted");
    }
    assert!(accepted >= 100_000, "only {accepted} frames checked");
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
