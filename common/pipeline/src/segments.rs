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
    RECEIVED_PAYLOADS,
};
use crate::{frames, payloads, received};

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
    #[error("cannot create {segment}: {source}")]
    Create { segment: String, source: OpenError },
    #[error("cannot open {segment}: {source}")]
    Open { segment: String, source: OpenError },
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
                    .map_err(|source| self.create_error(source))?;
                create().map_err(|source| self.create_error(source))
            }
            other => other.map_err(|source| self.create_error(source)),
        }
    }

    fn create_error(&self, source: OpenError) -> PipelineError {
        PipelineError::Create {
            segment: self.id.to_string(),
            source,
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
    /// value size left by an older build.
    pub fn create(&self) -> Result<CellWriter<T>, PipelineError> {
        let create = || CellWriter::<T>::open(&self.id, self.permissions);
        let created = match create() {
            Err(OpenError::GeometryMismatch { found, .. }) => {
                log::warn!(
                    "{} holds {found} from an older build; replacing it",
                    self.id
                );
                keymash_shm::remove_segment(&self.id).map_err(|source| self.error(source))?;
                create()
            }
            other => other,
        };
        created
            .map(|(writer, _attach)| writer)
            .map_err(|source| self.error(source))
    }

    fn error(&self, source: OpenError) -> PipelineError {
        PipelineError::Create {
            segment: self.id.to_string(),
            source,
        }
    }

    /// Follows the cell its writer keeps (see [`Follow`]).
    pub fn follow(&self) -> Follow<CellReader<T>> {
        Follow::new(self.id.clone(), (), self.writer)
    }
}
