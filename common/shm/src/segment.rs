//! Creating, attaching to and opening segments, with the header discipline every kind shares.

use std::sync::atomic::Ordering;

use nix::errno::Errno;

use crate::layout::{RingGeometry, SegmentHeader, SegmentKind, HEADER_SIZE, LAYOUT_VERSION, MAGIC};
use crate::name::SegmentId;
use crate::os::{self, Mapping, Permissions, WriterLock};
use crate::space::{NoSpace, ShmSpace};

/// Why a segment could not be created, attached to or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("{segment} does not exist")]
    NotFound { segment: String },
    #[error("{segment}: permission denied")]
    InsufficientPermissions { segment: String },
    #[error("{segment} is still being initialised by its writer")]
    NotReady { segment: String },
    #[error("{segment} is not a keymash segment (magic {found:#018x})")]
    BadMagic { segment: String, found: u64 },
    #[error("{segment} has layout version {found}, this build speaks version {expected}")]
    VersionMismatch {
        segment: String,
        found: u32,
        expected: u32,
    },
    #[error("{segment} is a {found} segment, expected a {expected}")]
    WrongKind {
        segment: String,
        expected: SegmentKind,
        found: String,
    },
    #[error("{segment} holds {found}, expected {expected}")]
    GeometryMismatch {
        segment: String,
        expected: String,
        found: String,
    },
    #[error("{segment} is {file_len} bytes long but its header describes {needed} bytes")]
    Truncated {
        segment: String,
        file_len: u64,
        needed: u64,
    },
    #[error("{segment} is {file_len} bytes long, more than the {max}-byte limit for a segment")]
    Oversized {
        segment: String,
        file_len: u64,
        max: u64,
    },
    #[error(
        "{segment} header describes an impossible shape ({slot_count} slots of {slot_size} bytes)"
    )]
    CorruptHeader {
        segment: String,
        slot_size: u64,
        slot_count: u64,
    },
    #[error(
        "{segment} needs {needed} bytes in /dev/shm but only {available} bytes are free there: \
         free space in /dev/shm or enlarge the tmpfs"
    )]
    NoSpace {
        segment: String,
        /// Whole pages, as the filesystem counts them.
        needed: u64,
        available: u64,
    },
    #[error("{segment} already has a live writer")]
    WriterActive { segment: String },
    #[error("{segment} has mode {mode:#o}, which lets other users in; refusing to write to it")]
    InsecurePermissions { segment: String, mode: u32 },
    #[error("{segment}: {operation} failed: {errno}")]
    System {
        segment: String,
        operation: &'static str,
        errno: Errno,
    },
}

impl From<NoSpace> for OpenError {
    fn from(no_space: NoSpace) -> Self {
        OpenError::NoSpace {
            segment: no_space.segment,
            needed: no_space.needed,
            available: no_space.available,
        }
    }
}

impl OpenError {
    fn from_errno(id: &SegmentId, operation: &'static str, errno: Errno) -> Self {
        let segment = id.to_string();
        match errno {
            Errno::ENOENT => OpenError::NotFound { segment },
            Errno::EACCES | Errno::EPERM => OpenError::InsufficientPermissions { segment },
            errno => OpenError::System {
                segment,
                operation,
                errno,
            },
        }
    }
}

/// What a segment declares about itself in its (validated) header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub kind: SegmentKind,
    pub slot_size: usize,
    pub slot_count: usize,
}

impl Shape {
    pub(crate) fn ring(geometry: RingGeometry) -> Self {
        Shape {
            kind: SegmentKind::Ring,
            slot_size: geometry.slot_size(),
            slot_count: geometry.slot_count(),
        }
    }

    pub(crate) fn cell(value_size: usize) -> Self {
        Shape {
            kind: SegmentKind::Cell,
            slot_size: value_size,
            slot_count: 1,
        }
    }

    /// Bytes the segment needs, or `None` for a shape no writer of ours would create.
    pub(crate) fn segment_len(&self) -> Option<usize> {
        match self.kind {
            SegmentKind::Ring => RingGeometry::new(self.slot_size, self.slot_count)
                .ok()
                .map(|g| g.segment_len()),
            SegmentKind::Cell => {
                let len = HEADER_SIZE.checked_add(self.slot_size)?;
                (self.slot_count == 1
                    && self.slot_size > 0
                    && len as u64 <= RingGeometry::MAX_SEGMENT_BYTES)
                    .then_some(len)
            }
        }
    }

    fn describe(&self) -> String {
        match self.kind {
            SegmentKind::Ring => format!("{} slots x {} B", self.slot_count, self.slot_size),
            SegmentKind::Cell => format!("a {} B value", self.slot_size),
        }
    }
}

/// An open, validated segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub id: SegmentId,
    pub map: Mapping,
    pub shape: Shape,
    /// Device and inode of the segment when opened, to notice it being removed or replaced.
    identity: (u64, u64),
    /// Held by writers only: the exclusive lock (and the fd it lives on).
    _writer_lock: Option<WriterLock>,
}

/// How a writer got its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// A new segment was created and initialised (or one abandoned half-built was rebuilt).
    Created,
    /// An existing segment with the same shape was taken over (a restarted writer).
    Reattached,
}

impl Segment {
    pub(crate) fn header(&self) -> &SegmentHeader {
        // The mapping is at least HEADER_SIZE long and page-aligned (checked when opened), so
        // this cannot fail; the fallback keeps the type honest without a panic path.
        self.map
            .atomics_at::<SegmentHeader>(0)
            .unwrap_or_else(|| unreachable_header())
    }

    /// Creates the segment, or attaches to an existing one of the same shape, as its one writer.
    ///
    /// Every page of a segment this builds is reserved before it is used, and its size is
    /// checked against the free space of `/dev/shm` first: running out is
    /// [`OpenError::NoSpace`], with nothing left behind, never a SIGBUS at a later write. An
    /// existing segment shorter than its header says is refused with [`OpenError::Truncated`]
    /// (mapping past its end would fault), for the caller to replace.
    pub(crate) fn open_writer(
        id: &SegmentId,
        shape: Shape,
        permissions: Permissions,
    ) -> Result<(Segment, Attach), OpenError> {
        let segment = id.to_string();
        let needed = shape
            .segment_len()
            .ok_or_else(|| OpenError::CorruptHeader {
                segment: segment.clone(),
                slot_size: shape.slot_size as u64,
                slot_count: shape.slot_count as u64,
            })?;
        let shm_name = id.shm_name();
        // Before creating anything: a segment that cannot fit is refused without so much as an
        // empty file. (If the name exists this is a re-attach, which needs no new space, or a
        // rebuild, checked below once the old pages are released.)
        if os::path_identity(&id.path()).is_none() {
            check_space(id, needed)?;
        }
        let (fd, created) = match os::create_exclusive(&shm_name, permissions) {
            Ok(fd) => (fd, true),
            Err(Errno::EEXIST) => (
                os::open_existing(&shm_name, true)
                    .map_err(|e| OpenError::from_errno(id, "open", e))?,
                false,
            ),
            Err(errno) => return Err(OpenError::from_errno(id, "create", errno)),
        };
        let lock = os::lock_writer(fd).map_err(|errno| match errno {
            Errno::EWOULDBLOCK => OpenError::WriterActive {
                segment: segment.clone(),
            },
            errno => OpenError::from_errno(id, "flock", errno),
        })?;
        let facts = os::file_facts(&*lock).map_err(|e| OpenError::from_errno(id, "fstat", e))?;
        // A file we created (and hold the lock of, so nobody else is building it) is ours to
        // remove again if any step below fails.
        let mut unfinished = Unfinished {
            id,
            identity: created.then_some(facts.identity),
        };
        if !created && facts.mode & 0o007 != 0 {
            return Err(OpenError::InsecurePermissions {
                segment,
                mode: facts.mode,
            });
        }

        // An existing segment whose version word is still 0 was left half-built by a creator
        // that died; we hold the writer lock, so nobody else is building it and we may start over.
        if facts.len > RingGeometry::MAX_SEGMENT_BYTES {
            return Err(OpenError::Oversized {
                segment,
                file_len: facts.len,
                max: RingGeometry::MAX_SEGMENT_BYTES,
            });
        }
        if !created && facts.len >= HEADER_SIZE as u64 {
            // Only the file's current length is mapped, so a short file cannot fault here; the
            // header check below compares that length with what the header describes.
            let map = Mapping::map(&*lock, to_usize(facts.len), true)
                .map_err(|e| OpenError::from_errno(id, "mmap", e))?;
            let existing = Segment {
                id: id.clone(),
                map,
                shape,
                identity: facts.identity,
                _writer_lock: None,
            };
            if existing.header().version.load(Ordering::SeqCst) != 0 {
                let found = existing.validate(Some(shape), facts.len)?;
                // A segment made sparse (by an older build that only truncated, or anything
                // else) gets its missing pages now, so no later write can fault. A segment of
                // ours is whole already and this costs nothing.
                if facts.allocated < needed as u64 {
                    reserve(id, &*lock, needed, facts.allocated)?;
                }
                let Segment { map, .. } = existing;
                let segment = Segment {
                    id: id.clone(),
                    map,
                    shape: found,
                    identity: facts.identity,
                    _writer_lock: Some(lock),
                };
                return Ok((segment, Attach::Reattached));
            }
        }

        // Fresh (or abandoned half-built) segment: zero it, reserve it, fill the header, publish
        // the version. From here on an abandoned segment's content is gone, so a failure removes
        // it as it would a fresh one: nothing half-built is left for the next writer.
        unfinished.identity = Some(facts.identity);
        os::set_len(&*lock, 0).map_err(|e| OpenError::from_errno(id, "ftruncate", e))?;
        if !created {
            // Checked now that the old pages are released: they were this segment's own.
            check_space(id, needed)?;
        }
        os::set_len(&*lock, needed).map_err(|e| OpenError::from_errno(id, "ftruncate", e))?;
        reserve(id, &*lock, needed, 0)?;
        let map =
            Mapping::map(&*lock, needed, true).map_err(|e| OpenError::from_errno(id, "mmap", e))?;
        let segment = Segment {
            id: id.clone(),
            map,
            shape,
            identity: facts.identity,
            _writer_lock: Some(lock),
        };
        let header = segment.header();
        let now = os::monotonic_now_ns();
        header.magic.store(MAGIC, Ordering::Relaxed);
        header.kind.store(shape.kind as u32, Ordering::Relaxed);
        header
            .slot_size
            .store(shape.slot_size as u64, Ordering::Relaxed);
        header
            .slot_count
            .store(shape.slot_count as u64, Ordering::Relaxed);
        header
            .producer_pid
            .store(os::current_pid(), Ordering::Relaxed);
        header.producer_heartbeat_ns.store(now, Ordering::Relaxed);
        header.created_ns.store(now, Ordering::Relaxed);
        header.version.store(LAYOUT_VERSION, Ordering::SeqCst);
        unfinished.identity = None;
        // A rebuilt abandoned segment is as new as a created one: nothing of it survives.
        Ok((segment, Attach::Created))
    }

    /// Opens an existing segment read-only and validates its header. `expected` also checks
    /// kind and shape; without it any valid keymash segment is accepted (for `keymash status`).
    pub(crate) fn open_reader(
        id: &SegmentId,
        expected: Option<Shape>,
    ) -> Result<Segment, OpenError> {
        let fd = os::open_existing(&id.shm_name(), false)
            .map_err(|e| OpenError::from_errno(id, "open", e))?;
        let facts = os::file_facts(&fd).map_err(|e| OpenError::from_errno(id, "fstat", e))?;
        if facts.len < HEADER_SIZE as u64 {
            return Err(OpenError::NotReady {
                segment: id.to_string(),
            });
        }
        if facts.len > RingGeometry::MAX_SEGMENT_BYTES {
            return Err(OpenError::Oversized {
                segment: id.to_string(),
                file_len: facts.len,
                max: RingGeometry::MAX_SEGMENT_BYTES,
            });
        }
        let map = Mapping::map(&fd, to_usize(facts.len), false)
            .map_err(|e| OpenError::from_errno(id, "mmap", e))?;
        let placeholder = expected.unwrap_or(Shape {
            kind: SegmentKind::Ring,
            slot_size: 0,
            slot_count: 0,
        });
        let mut segment = Segment {
            id: id.clone(),
            map,
            shape: placeholder,
            identity: facts.identity,
            _writer_lock: None,
        };
        if segment.header().version.load(Ordering::SeqCst) == 0 {
            return Err(OpenError::NotReady {
                segment: id.to_string(),
            });
        }
        segment.shape = segment.validate(expected, facts.len)?;
        Ok(segment)
    }

    /// Checks magic, version, kind and shape of a published header against `expected`.
    fn validate(&self, expected: Option<Shape>, file_len: u64) -> Result<Shape, OpenError> {
        let segment = self.id.to_string();
        let header = self.header();
        // Acquire pairs with the creator's SeqCst publication: everything below was written first.
        let version = header.version.load(Ordering::Acquire);
        let magic = header.magic.load(Ordering::Relaxed);
        if magic != MAGIC {
            return Err(OpenError::BadMagic {
                segment,
                found: magic,
            });
        }
        if version != LAYOUT_VERSION {
            return Err(OpenError::VersionMismatch {
                segment,
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let kind_word = header.kind.load(Ordering::Relaxed);
        let slot_size = header.slot_size.load(Ordering::Relaxed);
        let slot_count = header.slot_count.load(Ordering::Relaxed);
        let Some(kind) = SegmentKind::from_word(kind_word) else {
            let expected = expected.map_or(SegmentKind::Ring, |s| s.kind);
            return Err(OpenError::WrongKind {
                segment,
                expected,
                found: format!("unknown (kind word {kind_word})"),
            });
        };
        if let Some(expected) = expected {
            if kind != expected.kind {
                return Err(OpenError::WrongKind {
                    segment,
                    expected: expected.kind,
                    found: kind.to_string(),
                });
            }
        }
        let corrupt = || OpenError::CorruptHeader {
            segment: segment.clone(),
            slot_size,
            slot_count,
        };
        let found = Shape {
            kind,
            slot_size: usize::try_from(slot_size).map_err(|_| corrupt())?,
            slot_count: usize::try_from(slot_count).map_err(|_| corrupt())?,
        };
        if let Some(expected) = expected {
            if found != expected {
                return Err(OpenError::GeometryMismatch {
                    segment,
                    expected: expected.describe(),
                    found: found.describe(),
                });
            }
        }
        let needed = found.segment_len().ok_or_else(corrupt)?;
        if (self.map.len() as u64) < needed as u64 || file_len < needed as u64 {
            return Err(OpenError::Truncated {
                segment,
                file_len,
                needed: needed as u64,
            });
        }
        Ok(found)
    }

    /// Whether the segment's name was removed or now refers to a different segment (e.g. a writer
    /// recreated it with a new geometry). The mapping stays valid, but nobody writes it any more:
    /// a reader should reopen.
    pub(crate) fn is_replaced(&self) -> bool {
        os::path_identity(&self.id.path()) != Some(self.identity)
    }

    /// Records this process as the producer and refreshes the heartbeat.
    pub(crate) fn claim_producer(&self) {
        let header = self.header();
        header
            .producer_pid
            .store(os::current_pid(), Ordering::Relaxed);
        header
            .producer_heartbeat_ns
            .store(os::monotonic_now_ns(), Ordering::Release);
    }

    /// Wakes every reader sleeping on the segment's wake word.
    pub(crate) fn wake_readers(&self) {
        let header = self.header();
        header.wake.fetch_add(1, Ordering::Release);
        // A failed wake (only possible with a bad address, which a live mapping is not) must not
        // stop the writer: readers still see the data on their next timeout.
        let _woken = os::futex_wake_all(&header.wake);
    }

    /// The producer's heartbeat age at `now_ns`, if it has ever beaten.
    pub(crate) fn heartbeat_age_ns(&self, now_ns: u64) -> Option<u64> {
        let beat = self.header().producer_heartbeat_ns.load(Ordering::Acquire);
        (beat != 0).then(|| now_ns.saturating_sub(beat))
    }
}

/// Refuses a segment of `len` bytes that the free space of `/dev/shm` cannot hold.
fn check_space(id: &SegmentId, len: usize) -> Result<(), OpenError> {
    // No figure to check against (statvfs failed): the reservation still refuses what does not
    // fit, only with a less specific message.
    match ShmSpace::now() {
        Ok(space) => space.check(id, len as u64).map_err(OpenError::from),
        Err(_) => Ok(()),
    }
}

/// Reserves the first `len` bytes of the segment (`allocated` of them are already), naming the
/// figures if `/dev/shm` cannot hold them.
fn reserve(
    id: &SegmentId,
    fd: &impl std::os::fd::AsFd,
    len: usize,
    allocated: u64,
) -> Result<(), OpenError> {
    match os::reserve(fd, len) {
        Ok(()) => Ok(()),
        Err(Errno::ENOSPC) => {
            let space = ShmSpace::now().ok();
            let needed = space.map_or(len as u64, |s| s.occupied_by(len as u64));
            Err(NoSpace {
                segment: id.to_string(),
                needed: needed.saturating_sub(allocated),
                available: space.map_or(0, |s| s.available_bytes),
            }
            .into())
        }
        Err(errno) => Err(OpenError::from_errno(id, "posix_fallocate", errno)),
    }
}

/// A segment this writer created (or started rebuilding) and has not finished: removed on drop
/// unless [`Segment::open_writer`] got to the end. Only if the name still refers to that very
/// file, so a failure never removes a segment someone else made in the meantime.
struct Unfinished<'a> {
    id: &'a SegmentId,
    identity: Option<(u64, u64)>,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        let Some(identity) = self.identity else {
            return;
        };
        if os::path_identity(&self.id.path()) == Some(identity) {
            // Nothing more to do if this fails: the caller already reports the first error.
            let _ = os::unlink(&self.id.shm_name());
        }
    }
}

/// Removes a segment's name from `/dev/shm`. Processes that have it mapped keep their mapping.
pub fn remove_segment(id: &SegmentId) -> Result<(), OpenError> {
    os::unlink(&id.shm_name()).map_err(|e| OpenError::from_errno(id, "shm_unlink", e))
}

fn to_usize(len: u64) -> usize {
    // Callers bound `len` by MAX_SEGMENT_BYTES or by what a usize-sized shape needs.
    usize::try_from(len).unwrap_or(usize::MAX)
}

#[cold]
fn unreachable_header() -> &'static SegmentHeader {
    // Only reachable if a Segment were built around a mapping shorter than a header, which the
    // constructors above rule out. Aborting is the honest answer to a broken invariant here.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileExt, MetadataExt};

    use super::*;
    use crate::name::{Prefix, SegmentName};
    use crate::os::fault;

    /// A segment id no other test uses, removed on drop.
    struct Scratch(SegmentId);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let prefix = format!("kmtunit{tag}{}", std::process::id());
            let id = SegmentId::new(
                Prefix::new(&prefix).expect("prefix"),
                SegmentName::new("ring").expect("name"),
            );
            let _ = remove_segment(&id);
            Scratch(id)
        }

        fn exists(&self) -> bool {
            std::path::Path::new(&self.0.path()).exists()
        }

        fn allocated(&self) -> u64 {
            let meta = std::fs::metadata(self.0.path()).expect("segment file");
            meta.blocks() * 512
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = remove_segment(&self.0);
        }
    }

    fn perms_0600() -> std::fs::Permissions {
        std::os::unix::fs::PermissionsExt::from_mode(0o600)
    }

    fn shape() -> Shape {
        Shape::ring(RingGeometry::new(100_000, 8).expect("geometry"))
    }

    fn needed() -> u64 {
        shape().segment_len().expect("len") as u64
    }

    #[test]
    fn a_created_segment_has_every_page_reserved() {
        let scratch = Scratch::new("whole");
        let (segment, attach) =
            Segment::open_writer(&scratch.0, shape(), Permissions::OwnerOnly).expect("create");
        assert_eq!(attach, Attach::Created);
        assert!(
            scratch.allocated() >= needed(),
            "{} of {} bytes allocated",
            scratch.allocated(),
            needed()
        );
        drop(segment);
    }

    #[test]
    fn a_failed_reservation_leaves_nothing_behind() {
        let scratch = Scratch::new("nospace");
        fault::fail_next_reserve();
        let err = Segment::open_writer(&scratch.0, shape(), Permissions::OwnerOnly)
            .expect_err("the reservation fails");
        assert!(matches!(err, OpenError::NoSpace { .. }), "{err}");
        assert!(!scratch.exists(), "the half-created segment was removed");
        // And the next attempt, with room, creates it whole.
        let (_segment, attach) =
            Segment::open_writer(&scratch.0, shape(), Permissions::OwnerOnly).expect("create");
        assert_eq!(attach, Attach::Created);
    }

    #[test]
    fn a_failed_rebuild_of_an_abandoned_segment_removes_it() {
        let scratch = Scratch::new("abandoned");
        // A creator that died after sizing the file, before publishing the header.
        let file = std::fs::File::create(scratch.0.path()).expect("create file");
        file.set_permissions(perms_0600()).expect("mode 0600");
        file.set_len(needed()).expect("size it");
        drop(file);
        fault::fail_next_reserve();
        let err = Segment::open_writer(&scratch.0, shape(), Permissions::OwnerOnly)
            .expect_err("the reservation fails");
        assert!(matches!(err, OpenError::NoSpace { .. }), "{err}");
        assert!(!scratch.exists());
    }

    #[test]
    fn a_sparse_segment_is_completed_when_its_writer_reattaches() {
        let scratch = Scratch::new("sparse");
        let (segment, _) =
            Segment::open_writer(&scratch.0, shape(), Permissions::OwnerOnly).expect("create");
        drop(segment);
        // What an older build left: the same header, every slot a hole (ftruncate only).
        let mut header = vec![0u8; HEADER_SIZE];
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(scratch.0.path())
            .expect("open");
        file.read_exact_at(&mut header, 0).expect("read header");
        file.set_len(0).expect("empty");
        file.set_len(needed()).expect("sparse");
        file.write_all_at(&header, 0).expect("header back");
        assert!(scratch.allocated() < needed());
        let (_segment, attach) =
            Segment::open_writer(&scratch.0, shape(), Permissions::OwnerOnly).expect("reattach");
        assert_eq!(attach, Attach::Reattached);
        assert!(scratch.allocated() >= needed());
    }

    #[test]
    fn a_truncated_segment_is_refused_by_its_writer_and_its_readers() {
        let scratch = Scratch::new("truncated");
        let (segment, _) =
            Segment::open_writer(&scratch.0, shape(), Permissions::OwnerOnly).expect("create");
        drop(segment);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(scratch.0.path())
            .expect("open");
        file.set_len(needed() / 2).expect("truncate");
        for result in [
            Segment::open_writer(&scratch.0, shape(), Permissions::OwnerOnly).map(|_| ()),
            Segment::open_reader(&scratch.0, Some(shape())).map(|_| ()),
            Segment::open_reader(&scratch.0, None).map(|_| ()),
        ] {
            assert!(
                matches!(result, Err(OpenError::Truncated { file_len, needed: n, .. })
                    if file_len == needed() / 2 && n == needed()),
                "{result:?}"
            );
        }
    }
}
