//! Readers in their own processes receive every frame, in order, when they keep up.

mod support;

use keymash_shm::{Permissions, RingGeometry, RingWriter};
use support::{peer, ShmScope, PATIENCE};

#[test]
fn two_reader_processes_receive_every_frame_in_order_from_a_writer_process() {
    let scope = ShmScope::new("order");
    let geometry = RingGeometry::new(1024, 256).unwrap();
    // Create the ring up front so the readers can open it before the writer process starts.
    drop(RingWriter::open(&scope.id("frames"), geometry, Permissions::OwnerOnly).unwrap());

    let frames = "500";
    let mut readers: Vec<_> = (0..2)
        .map(|_| {
            peer(
                &scope,
                "read",
                "frames",
                &["--accept", frames, "--timeout-ms", "20000"],
            )
        })
        .collect();
    for reader in &mut readers {
        assert_eq!(reader.expect("READY", PATIENCE).u64("write_seq"), 0);
    }
    let mut writer = peer(
        &scope,
        "write",
        "frames",
        &[
            "--slot-size",
            "1024",
            "--slots",
            "256",
            "--frames",
            frames,
            "--interval-us",
            "500",
        ],
    );
    let attached = writer.expect("ATTACHED", PATIENCE);
    assert_eq!(attached.get("attach"), "Reattached");
    assert_eq!(attached.u64("next_seq"), 0);

    for reader in &mut readers {
        let result = reader.expect("RESULT", PATIENCE);
        assert_eq!(result.get("outcome"), "complete", "{}", result.line);
        assert_eq!(result.u64("accepted"), 500, "{}", result.line);
        assert_eq!(result.u64("corrupt"), 0, "{}", result.line);
        assert_eq!(result.u64("missed"), 0, "{}", result.line);
        assert_eq!(result.u64("overwritten"), 0, "{}", result.line);
        assert_eq!(result.u64("unexplained_gaps"), 0, "{}", result.line);
        assert_eq!(result.u64("first"), 0, "{}", result.line);
        assert_eq!(result.u64("last"), 499, "{}", result.line);
    }
    writer.expect("DONE", PATIENCE);
}
