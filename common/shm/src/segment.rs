//! Creating, attaching to and opening segments, with the header discipline every kind shares.

use std::sync::atomic::Ordering;

use nix::errno::Errno;

use crate::layout::{RingGeometry, SegmentHeader, SegmentKind, HEADER_SIZE, LAYOUT_VERSION, MAGIC};
use crate::name::SegmentId;
use crate::os::{self, Mapping, Permissions, WriterLock};

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

        // Fresh (or abandoned half-built) segment: zero it, fill the header, publish the version.
        os::set_len(&*lock, 0).map_err(|e| OpenError::from_errno(id, "ftruncate", e))?;
        os::set_len(&*lock, needed).map_err(|e| OpenError::from_errno(id, "ftruncate", e))?;
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
