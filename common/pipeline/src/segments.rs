//! Every segment of the pipeline, from the configuration: its id (`/dev/shm/<shm.prefix>.<name>`),
//! its shape, who writes it, and the one way to create a writer ([`RingSpec::create`],
//! [`CellSpec::create`]: create, re-attach, or replace a segment of stale shape) and to follow it
//! ([`RingSpec::follow`], [`CellSpec::follow`]).

use std::marker::PhantomData;

use keymash_core::config::Config;
use keymash_shm::{
    CellReader, CellValue, CellWriter, GeometryError, NameError, OpenError, Permissions, Prefix,
    RingGeometry, RingReader, RingWriter, SegmentId, SegmentName, ServiceStats, WriterAttach,
};

use crate::cells::{MashRecord, QualityRecord};
use crate::follow::Follow;
use crate::hold::{DelayBudget, DelayMemoryError};
use crate::topology::{
    Service, DELAYED_FRAMES, DELAY_HOLD, MASH_CELL, PAYLOADS, QUALITY_CELL, RAW_FRAMES,
    RECEIVED_PAYLOADS, SCREEN,
};
use crate::{frames, payloads, received, screen};

/// A segment could not be named, shaped or created.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("`shm.prefix`: {0}")]
    Name(#[from] NameError),
    #[error("{segment}: {source}")]
    Geometry {
        segment: &'static str,
        source: GeometryError,
    },
    #[error(transparent)]
    Delay(#[from] DelayMemoryError),
    #[error(
        "not enough shared memory for {segment}: it needs {needed} bytes ({needed_mib:.1} MiB) and \
         /dev/shm has {available} bytes ({available_mib:.1} MiB) free. Free space in /dev/shm \
         (`keymash status` shows what is there), lower `delay.seconds` (and `delay.max_memory_mib`, \
         so `keymash check-config` refuses what this machine cannot hold; \
         `keymash check-config --memory` lists every segment), or enlarge the tmpfs \
         (`mount -o remount,size=... /dev/shm`)",
        needed_mib = *needed as f64 / MIB,
        available_mib = *available as f64 / MIB
    )]
    NoSpace {
        segment: String,
        needed: u64,
        available: u64,
    },
    #[error("cannot create {segment}: {source}")]
    Create { segment: String, source: OpenError },
    #[error("cannot open {segment}: {source}")]
    Open { segment: String, source: OpenError },
}

const MIB: f64 = (1u64 << 20) as f64;

impl PipelineError {
    /// Whether restarting the service cannot help: the configuration, or a segment as it sits in
    /// `/dev/shm`, needs the operator. Services exit with EX_CONFIG (78) for these, which their
    /// units list in `RestartPreventExitStatus=`, so a refusal stops the unit with its message
    /// instead of a restart loop; everything else exits 1 and systemd retries.
    pub fn is_permanent(&self) -> bool {
        match self {
            // The configuration names an impossible prefix, ring or delay: the same file gives
            // the same refusal on every start.
            PipelineError::Name(_) | PipelineError::Geometry { .. } | PipelineError::Delay(_) => {
                true
            }
            // The tmpfs is as full on the next start: someone must free or enlarge it, or
            // shorten the delay.
            PipelineError::NoSpace { .. } => true,
            PipelineError::Create { source, .. } => writer_refusal_is_permanent(source),
            PipelineError::Open { source, .. } => reader_refusal_is_permanent(source),
        }
    }
}

/// A writer's refusal, after [`RingSpec::create`] / [`CellSpec::create`] tried to replace what
/// they may replace (stale geometry, truncated).
fn writer_refusal_is_permanent(error: &OpenError) -> bool {
    match error {
        // Still the wrong shape or short after being replaced, or a header no writer of ours
        // makes: something keeps making it so, and a restart meets it again.
        OpenError::GeometryMismatch { .. }
        | OpenError::Truncated { .. }
        | OpenError::CorruptHeader { .. }
        // Not ours to remove (another program's file, another build's layout, a ring where a
        // cell belongs, a file too large to be one of ours): `keymash clean` or the operator.
        | OpenError::BadMagic { .. }
        | OpenError::VersionMismatch { .. }
        | OpenError::WrongKind { .. }
        | OpenError::Oversized { .. }
        // Owner, group or mode: a restart runs as the same user against the same file.
        | OpenError::InsufficientPermissions { .. }
        | OpenError::InsecurePermissions { .. }
        | OpenError::NoSpace { .. } => true,
        // Another writer holds the segment: when it exits (a predecessor still dying, a manual
        // run ending) the next start gets it; the unit's start limit bounds the retries.
        OpenError::WriterActive { .. }
        // The name vanished between create and open (a concurrent `keymash clean`), or a
        // system call failed for a reason of the moment (memory, descriptors): try again.
        | OpenError::NotFound { .. }
        | OpenError::NotReady { .. }
        | OpenError::System { .. } => false,
    }
}

/// A reader's refusal of a segment its writer keeps.
fn reader_refusal_is_permanent(error: &OpenError) -> bool {
    match error {
        // The writer replaces these (a missing, half-built, short or stale segment) on its next
        // start: after a restart the reader finds a good one.
        OpenError::NotFound { .. }
        | OpenError::NotReady { .. }
        | OpenError::GeometryMismatch { .. }
        | OpenError::Truncated { .. }
        | OpenError::CorruptHeader { .. }
        | OpenError::WriterActive { .. }
        | OpenError::System { .. } => false,
        // As for a writer: not ours to replace, or a matter of owner and mode.
        OpenError::BadMagic { .. }
        | OpenError::VersionMismatch { .. }
        | OpenError::WrongKind { .. }
        | OpenError::Oversized { .. }
        | OpenError::InsufficientPermissions { .. }
        | OpenError::InsecurePermissions { .. }
        | OpenError::NoSpace { .. } => true,
    }
}

/// The pipeline's segments under one configuration.
#[derive(Debug, Clone)]
pub struct Segments {
    config: Config,
    prefix: Prefix,
    permissions: Permissions,
}

impl Segments {
    pub fn new(config: &Config) -> Result<Self, PipelineError> {
        Ok(Segments {
            config: config.clone(),
            prefix: Prefix::new(&config.shm.prefix)?,
            permissions: if config.shm.group_access {
                Permissions::OwnerAndGroup
            } else {
                Permissions::OwnerOnly
            },
        })
    }

    /// The segment `name` under the configured prefix.
    pub fn id(&self, name: &str) -> Result<SegmentId, PipelineError> {
        Ok(SegmentId::new(self.prefix.clone(), SegmentName::new(name)?))
    }

    /// The permissions segments are created with (`shm.group_access`).
    pub fn permissions(&self) -> Permissions {
        self.permissions
    }

    fn ring(
        &self,
        name: &'static str,
        geometry: Result<RingGeometry, GeometryError>,
    ) -> Result<RingSpec, PipelineError> {
        Ok(RingSpec {
            id: self.id(name)?,
            geometry: geometry.map_err(|source| PipelineError::Geometry {
                segment: name,
                source,
            })?,
            permissions: self.permissions,
            writer: Service::writer_of(name).map_or("its writer", Service::binary),
        })
    }

    fn cell<T: CellValue>(
        &self,
        name: &str,
        writer: Service,
    ) -> Result<CellSpec<T>, PipelineError> {
        Ok(CellSpec {
            id: self.id(name)?,
            permissions: self.permissions,
            writer: writer.binary(),
            _value: PhantomData,
        })
    }

    /// Raw frames: capture writes, delay-buffer reads.
    pub fn raw_frames(&self) -> Result<RingSpec, PipelineError> {
        self.ring(RAW_FRAMES, frames::frame_ring(&self.config.video))
    }

    /// The delay buffer's hold of `delay.seconds` of frames; refused when it exceeds
    /// `delay.max_memory_mib`.
    pub fn delay_hold(&self) -> Result<(RingSpec, DelayBudget), PipelineError> {
        let budget = DelayBudget::for_config(&self.config.video, &self.config.delay)?;
        Ok((self.ring(DELAY_HOLD, Ok(budget.geometry))?, budget))
    }

    /// Frames released after the delay: delay-buffer writes, encoder reads.
    pub fn delayed_frames(&self) -> Result<RingSpec, PipelineError> {
        self.ring(DELAYED_FRAMES, frames::frame_ring(&self.config.video))
    }

    /// Encoded frames: encoder writes, net-tx reads.
    pub fn payloads(&self) -> Result<RingSpec, PipelineError> {
        self.ring(PAYLOADS, payloads::payload_ring(&self.config.video))
    }

    /// Received payloads: net-rx writes, display reads.
    pub fn received(&self) -> Result<RingSpec, PipelineError> {
        self.ring(
            RECEIVED_PAYLOADS,
            received::received_ring(self.config.codec.max_payload_bytes),
        )
    }

    /// The picture on the screen: display writes, keymash-web and keymash-archive read.
    pub fn screen(&self) -> Result<RingSpec, PipelineError> {
        self.ring(SCREEN, screen::screen_ring(&self.config.video))
    }

    /// The mash level: mash-input writes; loss-controller, display and net-rx read.
    pub fn mash_cell(&self) -> Result<CellSpec<MashRecord>, PipelineError> {
        self.cell(MASH_CELL, Service::MashInput)
    }

    /// The quality the receiver asks for: net-tx writes, encoder reads.
    pub fn quality_cell(&self) -> Result<CellSpec<QualityRecord>, PipelineError> {
        self.cell(QUALITY_CELL, Service::NetTx)
    }

    /// `service`'s statistics, which `keymash status` reads.
    pub fn stats_cell(&self, service: Service) -> Result<CellSpec<ServiceStats>, PipelineError> {
        self.cell(&service.stats_cell(), service)
    }
}

/// One ring of the pipeline: where it is, its shape, who writes it.
#[derive(Debug, Clone)]
pub struct RingSpec {
    id: SegmentId,
    geometry: RingGeometry,
    permissions: Permissions,
    writer: &'static str,
}

impl RingSpec {
    pub fn id(&self) -> &SegmentId {
        &self.id
    }

    pub fn geometry(&self) -> RingGeometry {
        self.geometry
    }

    /// The writer's end: creates the ring, re-attaches to it (a restarted writer continues the
    /// sequence), or replaces a ring an older configuration left with another shape (its content
    /// is of no use at the new size; its readers follow the new one).
    ///
    /// A ring shorter than its header says (truncated behind its writer's back, or by a create
    /// that died) is replaced too: mapping it whole would fault on its missing end.
    pub fn create(&self) -> Result<(RingWriter, WriterAttach), PipelineError> {
        let create = || RingWriter::open(&self.id, self.geometry, self.permissions);
        match create() {
            Err(OpenError::GeometryMismatch { found, .. }) => {
                log::warn!(
                    "{} holds {found} from an older configuration; replacing it with {}",
                    self.id,
                    self.geometry
                );
                keymash_shm::remove_segment(&self.id)
                    .map_err(|source| create_error(&self.id, source))?;
                create().map_err(|source| create_error(&self.id, source))
            }
            Err(truncated @ OpenError::Truncated { .. }) => {
                log::warn!(
                    "{truncated}; replacing it with a new ring of {}",
                    self.geometry
                );
                keymash_shm::remove_segment(&self.id)
                    .map_err(|source| create_error(&self.id, source))?;
                create().map_err(|source| create_error(&self.id, source))
            }
            other => other.map_err(|source| create_error(&self.id, source)),
        }
    }

    /// A reader of a ring this process writes itself (the delay buffer reads its hold).
    pub fn open_own(&self) -> Result<RingReader, PipelineError> {
        RingReader::open_expecting(&self.id, self.geometry).map_err(|source| PipelineError::Open {
            segment: self.id.to_string(),
            source,
        })
    }

    /// Follows the ring its writer keeps (see [`Follow`]).
    pub fn follow(&self) -> Follow<RingReader> {
        Follow::new(self.id.clone(), self.geometry, self.writer)
    }
}

/// A writer's failure, with running out of `/dev/shm` told as such (bytes, what to do).
fn create_error(id: &SegmentId, source: OpenError) -> PipelineError {
    match source {
        OpenError::NoSpace {
            segment,
            needed,
            available,
        } => PipelineError::NoSpace {
            segment,
            needed,
            available,
        },
        source => PipelineError::Create {
            segment: id.to_string(),
            source,
        },
    }
}

/// One cell of the pipeline holding a `T`.
#[derive(Debug)]
pub struct CellSpec<T> {
    id: SegmentId,
    permissions: Permissions,
    writer: &'static str,
    _value: PhantomData<fn() -> T>,
}

impl<T: CellValue> CellSpec<T> {
    pub fn id(&self) -> &SegmentId {
        &self.id
    }

    /// The writer's end: creates the cell, re-attaches to it, or replaces a cell of another
    /// value size left by an older build, or one shorter than its header says.
    pub fn create(&self) -> Result<CellWriter<T>, PipelineError> {
        let create = || CellWriter::<T>::open(&self.id, self.permissions);
        let created = match create() {
            Err(OpenError::GeometryMismatch { found, .. }) => {
                log::warn!(
                    "{} holds {found} from an older build; replacing it",
                    self.id
                );
                keymash_shm::remove_segment(&self.id)
                    .map_err(|source| create_error(&self.id, source))?;
                create()
            }
            Err(truncated @ OpenError::Truncated { .. }) => {
                log::warn!("{truncated}; replacing it with a new cell");
                keymash_shm::remove_segment(&self.id)
                    .map_err(|source| create_error(&self.id, source))?;
                create()
            }
            other => other,
        };
        created
            .map(|(writer, _attach)| writer)
            .map_err(|source| create_error(&self.id, source))
    }

    /// Bytes of the segment [`CellSpec::create`] makes (header and value).
    pub fn segment_bytes(&self) -> u64 {
        CellWriter::<T>::segment_bytes()
    }

    /// Follows the cell its writer keeps (see [`Follow`]).
    pub fn follow(&self) -> Follow<CellReader<T>> {
        Follow::new(self.id.clone(), (), self.writer)
    }
}

#[cfg(test)]
mod tests {
    use keymash_shm::{Attach, RemoveSegmentsOnDrop};

    use super::*;

    fn scratch(tag: &str) -> (Segments, RemoveSegmentsOnDrop) {
        let mut config = Config::default();
        config.video.width = 64;
        config.video.height = 48;
        config.delay.seconds = 1.0;
        config.shm.prefix = format!("kmtseg{tag}{}", std::process::id());
        let segments = Segments::new(&config).expect("segments");
        let guard = RemoveSegmentsOnDrop(Prefix::new(&config.shm.prefix).expect("prefix"));
        let _ = keymash_shm::remove_segments(&guard.0);
        (segments, guard)
    }

    fn truncate(id: &SegmentId, len: u64) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(id.path())
            .expect("open the segment file")
            .set_len(len)
            .expect("truncate");
    }

    fn file_len(id: &SegmentId) -> u64 {
        std::fs::metadata(id.path()).expect("segment file").len()
    }

    #[test]
    fn a_truncated_ring_is_replaced_by_its_writer_and_refused_by_its_readers() {
        let (segments, _guard) = scratch("ring");
        let spec = segments.raw_frames().expect("spec");
        let full = spec.geometry().segment_bytes();
        drop(spec.create().expect("create"));
        truncate(spec.id(), full / 3);
        assert!(matches!(
            spec.open_own(),
            Err(PipelineError::Open {
                source: OpenError::Truncated { .. },
                ..
            })
        ));
        let (_writer, attach) = spec.create().expect("replaced");
        assert_eq!(attach.attach, Attach::Created);
        assert_eq!(file_len(spec.id()), full);
        assert!(spec.open_own().is_ok());
    }

    #[test]
    fn a_truncated_cell_is_replaced_by_its_writer() {
        let (segments, _guard) = scratch("cell");
        let spec = segments.quality_cell().expect("spec");
        drop(spec.create().expect("create"));
        truncate(spec.id(), 130);
        let mut writer = spec.create().expect("replaced");
        writer.store(&QualityRecord::new(
            keymash_core::Quality::new(50).expect("quality"),
            true,
            1,
        ));
        assert_eq!(file_len(spec.id()), spec.segment_bytes());
    }

    #[test]
    fn running_out_of_dev_shm_names_bytes_and_what_to_do_and_is_permanent() {
        let err = create_error(
            &SegmentId::new(
                Prefix::new("keymash").expect("prefix"),
                SegmentName::new(DELAY_HOLD).expect("name"),
            ),
            OpenError::NoSpace {
                segment: "/dev/shm/keymash.delay-hold".to_owned(),
                needed: 449_355_776,
                available: 67_108_864,
            },
        );
        let text = err.to_string();
        for part in [
            "/dev/shm/keymash.delay-hold",
            "449355776 bytes (428.5 MiB)",
            "67108864 bytes (64.0 MiB) free",
            "delay.seconds",
            "delay.max_memory_mib",
            "enlarge the tmpfs",
        ] {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
        assert!(err.is_permanent());
    }

    #[test]
    fn refusals_a_restart_cannot_fix_are_permanent_and_the_rest_are_not() {
        let segment = || "/dev/shm/k.x".to_owned();
        let create = |source| PipelineError::Create {
            segment: segment(),
            source,
        };
        let open = |source| PipelineError::Open {
            segment: segment(),
            source,
        };
        let permanent_for_both = [
            OpenError::BadMagic {
                segment: segment(),
                found: 1,
            },
            OpenError::VersionMismatch {
                segment: segment(),
                found: 9,
                expected: 1,
            },
            OpenError::InsufficientPermissions { segment: segment() },
            OpenError::InsecurePermissions {
                segment: segment(),
                mode: 0o666,
            },
        ];
        for source in permanent_for_both {
            assert!(create(source.clone()).is_permanent(), "{source}");
            assert!(open(source.clone()).is_permanent(), "{source}");
        }
        // The writer already tried to replace these; a reader waits for its writer to.
        let replaced_by_the_writer = [
            OpenError::Truncated {
                segment: segment(),
                file_len: 10,
                needed: 20,
            },
            OpenError::GeometryMismatch {
                segment: segment(),
                expected: "a".to_owned(),
                found: "b".to_owned(),
            },
        ];
        for source in replaced_by_the_writer {
            assert!(create(source.clone()).is_permanent(), "{source}");
            assert!(!open(source.clone()).is_permanent(), "{source}");
        }
        let transient = [
            OpenError::WriterActive { segment: segment() },
            OpenError::NotFound { segment: segment() },
            OpenError::System {
                segment: segment(),
                operation: "mmap",
                errno: nix::errno::Errno::ENOMEM,
            },
        ];
        for source in transient {
            assert!(!create(source.clone()).is_permanent(), "{source}");
            assert!(!open(source.clone()).is_permanent(), "{source}");
        }
        let mut config = Config::default();
        config.delay.seconds = -1.0;
        let delay = Segments::new(&config)
            .expect("segments")
            .delay_hold()
            .expect_err("refused");
        assert!(delay.is_permanent());
    }
}
