//! Opening a segment that is not what the opener expects gives a typed error, never undefined
//! behaviour: wrong geometry, kind, version or magic, one still being built, or one truncated.

mod support;

use std::fs::OpenOptions;
use std::mem::offset_of;
use std::os::unix::fs::FileExt;

use keymash_shm::layout::{SegmentHeader, LAYOUT_VERSION};
use keymash_shm::{
    Attach, CellReader, CellWriter, OpenError, Permissions, RingGeometry, RingReader, RingWriter,
    SegmentId,
};
use support::ShmScope;

fn ring(id: &SegmentId, slots: usize) -> Result<RingWriter, OpenError> {
    RingWriter::open(
        id,
        RingGeometry::new(1024, slots).expect("valid geometry"),
        Permissions::OwnerOnly,
    )
    .map(|(w, _)| w)
}

/// Overwrites bytes of a segment file behind the library's back.
fn patch(id: &SegmentId, offset: usize, bytes: &[u8]) {
    let file = OpenOptions::new()
        .write(true)
        .open(id.path())
        .expect("open segment file");
    file.write_all_at(bytes, offset as u64)
        .expect("patch segment file");
}

#[test]
fn opening_a_ring_with_another_geometry_is_a_geometry_mismatch() {
    let scope = ShmScope::new("geom");
    let id = scope.id("frames");
    drop(ring(&id, 16).unwrap());
    assert!(matches!(
        ring(&id, 8),
        Err(OpenError::GeometryMismatch { .. })
    ));
    let other = RingGeometry::new(2048, 16).unwrap();
    assert!(matches!(
        RingReader::open_expecting(&id, other),
        Err(OpenError::GeometryMismatch { .. })
    ));
    assert!(RingReader::open_expecting(&id, RingGeometry::new(1024, 16).unwrap()).is_ok());
    assert!(ring(&id, 16).is_ok(), "the same geometry still re-attaches");
}

#[test]
fn a_second_live_writer_is_refused() {
    let scope = ShmScope::new("twowr");
    let id = scope.id("frames");
    let _first = ring(&id, 4).unwrap();
    assert!(matches!(ring(&id, 4), Err(OpenError::WriterActive { .. })));
}

#[test]
fn a_segment_of_another_layout_version_is_a_version_mismatch() {
    let scope = ShmScope::new("version");
    let id = scope.id("frames");
    drop(ring(&id, 4).unwrap());
    let newer = LAYOUT_VERSION + 1;
    patch(
        &id,
        offset_of!(SegmentHeader, version),
        &newer.to_le_bytes(),
    );
    let expected = |e: &OpenError| matches!(e, OpenError::VersionMismatch { found, expected, .. } if *found == newer && *expected == LAYOUT_VERSION);
    assert!(RingReader::open(&id).as_ref().is_err_and(expected));
    assert!(
        ring(&id, 4).as_ref().is_err_and(expected),
        "a writer must not take over a foreign layout"
    );
}

#[test]
fn a_segment_whose_version_is_not_published_yet_is_not_ready() {
    let scope = ShmScope::new("notready");
    let id = scope.id("frames");
    drop(ring(&id, 4).unwrap());
    patch(&id, offset_of!(SegmentHeader, version), &0u32.to_le_bytes());
    assert!(matches!(
        RingReader::open(&id),
        Err(OpenError::NotReady { .. })
    ));

    // A writer finding it so (its creator died half-way) rebuilds it.
    let (_writer, attach) = RingWriter::open(
        &id,
        RingGeometry::new(1024, 4).unwrap(),
        Permissions::OwnerOnly,
    )
    .unwrap();
    assert_eq!(attach.attach, Attach::Created);
    assert!(RingReader::open(&id).is_ok());
}

#[test]
fn an_empty_segment_file_is_not_ready() {
    let scope = ShmScope::new("empty");
    let id = scope.id("frames");
    std::fs::File::create(id.path()).unwrap();
    assert!(matches!(
        RingReader::open(&id),
        Err(OpenError::NotReady { .. })
    ));
    assert!(matches!(
        CellReader::<u64>::open(&id),
        Err(OpenError::NotReady { .. })
    ));
}

#[test]
fn a_file_with_the_wrong_magic_is_not_taken_for_a_segment() {
    let scope = ShmScope::new("magic");
    let id = scope.id("frames");
    drop(ring(&id, 4).unwrap());
    patch(&id, offset_of!(SegmentHeader, magic), b"NOTOURS!");
    assert!(matches!(
        RingReader::open(&id),
        Err(OpenError::BadMagic { .. })
    ));
    assert!(matches!(ring(&id, 4), Err(OpenError::BadMagic { .. })));
}

#[test]
fn rings_and_cells_are_not_mistaken_for_each_other() {
    let scope = ShmScope::new("kind");
    let ring_id = scope.id("frames");
    let cell_id = scope.id("quality");
    drop(ring(&ring_id, 4).unwrap());
    drop(CellWriter::<u64>::open(&cell_id, Permissions::OwnerOnly).unwrap());
    assert!(matches!(
        CellReader::<u64>::open(&ring_id),
        Err(OpenError::WrongKind { .. })
    ));
    assert!(matches!(
        RingReader::open(&cell_id),
        Err(OpenError::WrongKind { .. })
    ));
    assert!(matches!(
        CellReader::<u32>::open(&cell_id),
        Err(OpenError::GeometryMismatch { .. })
    ));
    assert!(matches!(
        CellWriter::<[u64; 2]>::open(&cell_id, Permissions::OwnerOnly),
        Err(OpenError::GeometryMismatch { .. })
    ));
}

#[test]
fn a_truncated_segment_is_refused() {
    let scope = ShmScope::new("trunc");
    let id = scope.id("frames");
    drop(ring(&id, 4).unwrap());
    OpenOptions::new()
        .write(true)
        .open(id.path())
        .unwrap()
        .set_len(1024)
        .unwrap();
    assert!(
        matches!(RingReader::open(&id), Err(OpenError::Truncated { needed, .. }) if needed > 1024)
    );
}

#[test]
fn a_missing_segment_is_not_found() {
    let scope = ShmScope::new("missing");
    assert!(matches!(
        RingReader::open(&scope.id("nothing")),
        Err(OpenError::NotFound { .. })
    ));
}
