//! A reader the writer has lapped skips to the newest frame and is told how many it missed.

mod support;

use std::time::Duration;

use keymash_shm::{
    test_pattern, Permissions, ReadError, RecvError, RingGeometry, RingReader, RingWriter,
};
use support::{peer, ShmScope, PATIENCE};

#[test]
fn a_lapped_reader_skips_to_the_newest_frame_and_is_told_how_many_it_missed() {
    let scope = ShmScope::new("lap");
    let id = scope.id("frames");
    let geometry = RingGeometry::new(256, 8).unwrap();
    drop(RingWriter::open(&id, geometry, Permissions::OwnerOnly).unwrap());
    let mut reader = RingReader::open_expecting(&id, geometry).unwrap();

    let mut writer = peer(
        &scope,
        "write",
        "frames",
        &["--slot-size", "256", "--slots", "8", "--frames", "100"],
    );
    assert_eq!(writer.expect("DONE", PATIENCE).u64("next_seq"), 100);

    let arrival = reader.next(Duration::ZERO).unwrap();
    assert_eq!((arrival.seq, arrival.missed), (99, 99));
    let mut buf = Vec::new();
    let meta = reader.read_into(&mut buf).unwrap();
    assert_eq!(meta.frame().0, 99);
    assert!(test_pattern::verify(99, &buf));
    assert_eq!(
        reader.next(Duration::from_millis(50)),
        Err(RecvError::TimedOut)
    );

    // Random access by sequence number: only the last eight frames are still there.
    assert_eq!(reader.retained(), 92..100);
    let cases: &[(u64, Result<(), ReadError>)] = &[
        (50, Err(ReadError::Overwritten { seq: 50 })),
        (91, Err(ReadError::Overwritten { seq: 91 })),
        (92, Ok(())),
        (99, Ok(())),
        (
            100,
            Err(ReadError::NotYetWritten {
                seq: 100,
                write_seq: 100,
            }),
        ),
    ];
    for (seq, expected) in cases {
        let got = reader.read_seq_into(*seq, &mut buf).map(|meta| {
            assert_eq!(meta.frame().0, *seq);
            assert!(test_pattern::verify(*seq, &buf), "frame {seq} intact");
        });
        assert_eq!(&got, expected, "read_seq({seq})");
    }
}
