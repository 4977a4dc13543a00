//! `list_segments` reports every segment under a prefix, valid or not, for `keymash status`.

mod support;

use keymash_shm::{
    list_segments, remove_segments, CellWriter, OpenError, Permissions, RingGeometry, RingWriter,
    SegmentKind, ServiceStats,
};
use support::ShmScope;

#[test]
fn listing_reports_rings_cells_and_broken_segments_under_the_prefix_only() {
    let scope = ShmScope::new("list");
    let other = ShmScope::new("listother");
    let (mut ring, _) = RingWriter::open(
        &scope.id("raw-frames"),
        RingGeometry::new(1024, 8).unwrap(),
        Permissions::OwnerOnly,
    )
    .unwrap();
    for _ in 0..3 {
        ring.write(&[1, 2, 3], &Default::default()).unwrap();
    }
    let (mut cell, _) =
        CellWriter::<ServiceStats>::open(&scope.id("stats.capture"), Permissions::OwnerOnly)
            .unwrap();
    cell.store(&ServiceStats::new(1, 0));
    std::fs::File::create(scope.id("half-built").path()).unwrap();
    drop(CellWriter::<u32>::open(&other.id("mash"), Permissions::OwnerOnly).unwrap());

    let listed = list_segments(&scope.prefix).unwrap();
    let names: Vec<&str> = listed.iter().map(|r| r.id.name.as_str()).collect();
    assert_eq!(names, ["half-built", "raw-frames", "stats.capture"]);

    assert!(matches!(listed[0].info, Err(OpenError::NotReady { .. })));
    let ring_info = listed[1].info.as_ref().unwrap();
    assert_eq!(
        (
            ring_info.kind,
            ring_info.slot_size,
            ring_info.slot_count,
            ring_info.writes
        ),
        (SegmentKind::Ring, 1024, 8, 3)
    );
    assert_eq!(ring_info.producer.pid, std::process::id());
    assert!(ring_info.producer.alive);
    assert!(ring_info.producer.heartbeat_age.is_some());
    let cell_info = listed[2].info.as_ref().unwrap();
    assert_eq!(
        (cell_info.kind, cell_info.slot_size, cell_info.writes),
        (SegmentKind::Cell, size_of::<ServiceStats>(), 1)
    );

    assert_eq!(remove_segments(&scope.prefix).unwrap(), 3);
    assert!(list_segments(&scope.prefix).unwrap().is_empty());
    assert_eq!(
        list_segments(&other.prefix).unwrap().len(),
        1,
        "other prefixes are left alone"
    );
}
