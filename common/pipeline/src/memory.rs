//! How much shared memory the pipeline takes: every segment a service creates, with the length
//! its writer gives the file, per PC. `keymash check-config --memory` prints it and the README's
//! figure comes from it; a test creates the segments and checks their files add up to it.

use std::os::unix::fs::MetadataExt;

use keymash_shm::ShmSpace;

use crate::segments::{PipelineError, Segments};
use crate::topology::{
    Role, Service, DELAYED_FRAMES, DELAY_HOLD, MASH_CELL, PAYLOADS, QUALITY_CELL, RAW_FRAMES,
    RECEIVED_PAYLOADS, SCREEN,
};

/// One segment as its writer creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSegment {
    /// The name after the prefix (`delay-hold`, `stats.capture`, ...).
    pub name: String,
    /// The service that creates and writes it (so: on which PC it lives).
    pub writer: Service,
    /// Length of the segment file, every page of it reserved at creation.
    pub bytes: u64,
}

impl PlannedSegment {
    pub fn role(&self) -> Role {
        self.writer.role()
    }
}

/// Every segment of the pipeline under one configuration, in data-flow order, stats cells last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    pub segments: Vec<PlannedSegment>,
}

impl MemoryPlan {
    /// The segments created on `role`'s PC.
    pub fn on(&self, role: Role) -> impl Iterator<Item = &PlannedSegment> {
        self.segments.iter().filter(move |s| s.role() == role)
    }

    /// Sum of the segment lengths on `role`'s PC: what `ls -l /dev/shm/<prefix>.*` adds up to.
    pub fn total_bytes(&self, role: Role) -> u64 {
        self.on(role).map(|s| s.bytes).sum()
    }

    /// What those segments take from a filesystem of `space`'s block size: each rounded up to
    /// whole blocks (pages, on tmpfs), as `df /dev/shm` counts them.
    pub fn occupied_bytes(&self, role: Role, space: &ShmSpace) -> u64 {
        self.on(role).map(|s| space.occupied_by(s.bytes)).sum()
    }
}

impl Segments {
    /// Every segment of the pipeline with the exact length its writer's create path gives it
    /// (header, slots or value), and which service (so which PC) creates it. Refused like the
    /// services refuse: a delay over `delay.max_memory_mib`, a ring too large to build.
    pub fn memory_plan(&self) -> Result<MemoryPlan, PipelineError> {
        let (hold, _budget) = self.delay_hold()?;
        let rings = [
            (RAW_FRAMES, self.raw_frames()?.geometry()),
            (DELAY_HOLD, hold.geometry()),
            (DELAYED_FRAMES, self.delayed_frames()?.geometry()),
            (PAYLOADS, self.payloads()?.geometry()),
            (RECEIVED_PAYLOADS, self.received()?.geometry()),
            (SCREEN, self.screen()?.geometry()),
        ]
        .map(|(name, geometry)| (name, geometry.segment_bytes()));
        let cells = [
            (QUALITY_CELL, self.quality_cell()?.segment_bytes()),
            (MASH_CELL, self.mash_cell()?.segment_bytes()),
        ];
        let mut segments = Vec::new();
        for (name, bytes) in rings.into_iter().chain(cells) {
            // Every name here has exactly one writer (topology's test checks the list).
            if let Some(writer) = Service::writer_of(name) {
                segments.push(PlannedSegment {
                    name: name.to_owned(),
                    writer,
                    bytes,
                });
            }
        }
        for service in Service::ALL {
            segments.push(PlannedSegment {
                name: service.stats_cell(),
                writer: service,
                bytes: self.stats_cell(service)?.segment_bytes(),
            });
        }
        // Data-flow order within each PC, senders first, as `keymash status` lists stages.
        segments.sort_by_key(|s| {
            let stats = s.name.starts_with("stats.");
            (
                s.role() == Role::Receiver,
                stats,
                Service::ALL.iter().position(|&x| x == s.writer),
            )
        });
        Ok(MemoryPlan { segments })
    }

    /// Refuses to start `service` when the segments it creates do not fit the free space of
    /// `/dev/shm` together. Each writer's create checks its own segment too, but checked one at a
    /// time the delay buffer would reserve its 428 MiB hold and only then find no room for its
    /// delayed-frame ring: exit 78 with most of the memory taken. Pages a segment of that name
    /// already holds (a restart re-attaches to them) count as room.
    pub fn check_room_for(&self, service: Service, space: &ShmSpace) -> Result<(), PipelineError> {
        if space.is_unlimited() {
            return Ok(());
        }
        let plan = self.memory_plan()?;
        let mut names = Vec::new();
        let mut needed = 0u64;
        for segment in plan.segments.iter().filter(|s| s.writer == service) {
            let id = self.id(&segment.name)?;
            let held = std::fs::metadata(id.to_string()).map_or(0, |m| m.blocks() * 512);
            needed = needed.saturating_add(space.occupied_by(segment.bytes).saturating_sub(held));
            names.push(id.to_string());
        }
        if needed <= space.available_bytes {
            return Ok(());
        }
        Err(PipelineError::NoSpace {
            segment: format!(
                "the segments of keymash-{} ({})",
                service.name(),
                names.join(", ")
            ),
            needed,
            available: space.available_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use keymash_core::config::Config;

    use super::*;

    fn plan(config: &Config) -> MemoryPlan {
        Segments::new(config)
            .expect("segments")
            .memory_plan()
            .expect("plan")
    }

    #[test]
    fn every_segment_a_service_creates_is_in_the_plan_once() {
        let plan = plan(&Config::default());
        let mut want: Vec<String> = Service::ALL
            .iter()
            .flat_map(|s| {
                s.owned_segments()
                    .iter()
                    .map(|n| (*n).to_owned())
                    .chain([s.stats_cell()])
            })
            .collect();
        let mut got: Vec<String> = plan.segments.iter().map(|s| s.name.clone()).collect();
        want.sort();
        got.sort();
        assert_eq!(got, want);
        for s in &plan.segments {
            assert!(s.bytes > 128, "{s:?}");
            assert_eq!(Service::writer_of(&s.name).unwrap_or(s.writer), s.writer);
        }
    }

    #[test]
    fn the_hold_is_most_of_the_sender_and_the_totals_add_up() {
        let config = Config::default();
        let plan = plan(&config);
        let (_, budget) = Segments::new(&config)
            .expect("segments")
            .delay_hold()
            .expect("hold");
        let hold = plan
            .segments
            .iter()
            .find(|s| s.name == DELAY_HOLD)
            .expect("hold planned");
        assert_eq!(hold.bytes, budget.segment_bytes);
        let sender = plan.total_bytes(Role::Sender);
        let receiver = plan.total_bytes(Role::Receiver);
        assert!(sender > hold.bytes && sender < hold.bytes * 2, "{sender}");
        assert!(receiver > 0 && receiver < sender, "{receiver}");
        assert_eq!(
            sender + receiver,
            plan.segments.iter().map(|s| s.bytes).sum::<u64>()
        );
        let space = ShmSpace {
            block_size: 4096,
            total_bytes: 1 << 30,
            used_bytes: 0,
            available_bytes: 1 << 30,
        };
        let occupied = plan.occupied_bytes(Role::Receiver, &space);
        assert!(occupied >= receiver && occupied.is_multiple_of(4096));
    }

    #[test]
    fn a_refused_delay_gives_no_plan() {
        let mut config = Config::default();
        config.delay.seconds = 600.0;
        config.delay.max_memory_mib = 1024;
        let err = Segments::new(&config)
            .expect("segments")
            .memory_plan()
            .expect_err("refused");
        assert!(matches!(err, PipelineError::Delay(_)), "{err}");
        assert!(err.is_permanent());
    }

    #[test]
    fn a_service_is_refused_when_its_segments_together_do_not_fit() {
        let mut config = Config::default();
        // A prefix no segment exists under, so nothing counts as already held.
        config.shm.prefix = "kmroomcheck".to_owned();
        let segments = Segments::new(&config).expect("segments");
        let plan = segments.memory_plan().expect("plan");
        let page = 4096;
        let needed: u64 = plan
            .segments
            .iter()
            .filter(|s| s.writer == Service::DelayBuffer)
            .map(|s| s.bytes.div_ceil(page) * page)
            .sum();
        let space = |available| ShmSpace {
            block_size: page,
            total_bytes: 1 << 40,
            used_bytes: 0,
            available_bytes: available,
        };
        assert!(segments
            .check_room_for(Service::DelayBuffer, &space(needed))
            .is_ok());
        match segments.check_room_for(Service::DelayBuffer, &space(needed - 1)) {
            Err(PipelineError::NoSpace {
                segment,
                needed: n,
                available,
            }) => {
                assert_eq!((n, available), (needed, needed - 1));
                assert!(segment.contains("delay-hold") && segment.contains("delayed-frames"));
            }
            other => panic!("expected NoSpace, got {other:?}"),
        }
        // A tmpfs without a size limit has no free-space figure to refuse by.
        let unlimited = ShmSpace {
            total_bytes: 0,
            ..space(0)
        };
        assert!(segments
            .check_room_for(Service::DelayBuffer, &unlimited)
            .is_ok());
    }
}
