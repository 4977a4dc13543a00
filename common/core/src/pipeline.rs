//! The shape of the pipeline: its eight services and the names of the shared-memory segments
//! that join them. One list, so a service and `keymash status` can never disagree on a name.
//!
//! Segments live at `/dev/shm/<shm.prefix>.<name>`.

use std::fmt;
use std::time::Duration;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::units::{MashLevel, Quality};

/// Raw frames from the camera: capture writes, delay-buffer reads.
pub const RAW_FRAMES: &str = "raw-frames";
/// The delay buffer's store of held video (`delay.seconds` of frames): delay-buffer writes and
/// reads it; it survives a restart of any sender process.
pub const DELAY_HOLD: &str = "delay-hold";
/// Frames released after the delay: delay-buffer writes, encoder reads.
pub const DELAYED_FRAMES: &str = "delayed-frames";
/// Encoded payloads: encoder writes, net-tx reads.
pub const PAYLOADS: &str = "payloads";
/// Cell with the quality the receiver asks for: net-tx writes, encoder reads.
pub const QUALITY_CELL: &str = "quality";
/// Received and recovered payloads: net-rx writes, display reads. One codec payload per slot;
/// metadata: frame = the payload header's frame number, capture_ns = arrival at net-rx,
/// flags = 0 direct / 1 recovered by FEC / 2 recovered by NACK, words = [extended RTP sequence
/// low 32 bits, high 32 bits, RTP timestamp, marker, 0].
pub const RECEIVED_PAYLOADS: &str = "received";
/// Cell with the mash level: mash-input writes; loss-controller, display and net-rx read.
pub const MASH_CELL: &str = "mash";

/// A mash level older than this counts as nobody mashing: if mash-input dies or hangs, the
/// picture and the loss must not stay stuck wherever the crowd left them. mash-input publishes
/// at 50 Hz or more and systemd restarts it within a second or two, so a live cell is never
/// this old.
pub const MASH_STALE_AFTER: Duration = Duration::from_secs(1);

/// The mash cell's value: how hard visitors are mashing, written by mash-input at 50 Hz or more.
/// Plain data that any byte pattern is valid for; readers go through the accessors, which
/// sanitise (a NaN level reads as idle).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct MashRecord {
    level: f32,
    /// Key presses currently inside the mash window.
    presses_in_window: u32,
    /// Key presses since mash-input started.
    presses_total: u64,
    /// CLOCK_MONOTONIC nanoseconds of this update.
    updated_ns: u64,
}

const _: () = assert!(size_of::<MashRecord>() == 24);

impl MashRecord {
    pub fn new(
        level: MashLevel,
        presses_in_window: u32,
        presses_total: u64,
        updated_ns: u64,
    ) -> Self {
        MashRecord {
            level: level.get(),
            presses_in_window,
            presses_total,
            updated_ns,
        }
    }

    pub fn level(&self) -> MashLevel {
        MashLevel::saturating(self.level)
    }

    /// The level to act on at `now_ns` (CLOCK_MONOTONIC), or `None` once the record is older
    /// than [`MASH_STALE_AFTER`].
    pub fn level_at(&self, now_ns: u64) -> Option<MashLevel> {
        let age = now_ns.saturating_sub(self.updated_ns);
        (u128::from(age) <= MASH_STALE_AFTER.as_nanos()).then(|| self.level())
    }

    pub fn presses_in_window(&self) -> u32 {
        self.presses_in_window
    }

    pub fn presses_total(&self) -> u64 {
        self.presses_total
    }

    pub fn updated_ns(&self) -> u64 {
        self.updated_ns
    }
}

/// The quality cell's value: the quality the encoder should use now, written by net-tx from the
/// receiver's feedback (or its configured default when the feedback falls silent).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct QualityRecord {
    /// 1..=100; anything else means "no request" and the encoder uses its configured quality.
    quality: u32,
    /// 1 while the value comes from live receiver feedback, 0 for the fallback default.
    from_receiver: u32,
    /// CLOCK_MONOTONIC nanoseconds of this update.
    updated_ns: u64,
}

const _: () = assert!(size_of::<QualityRecord>() == 16);

impl QualityRecord {
    pub fn new(quality: Quality, from_receiver: bool, updated_ns: u64) -> Self {
        QualityRecord {
            quality: u32::from(quality.get()),
            from_receiver: u32::from(from_receiver),
            updated_ns,
        }
    }

    /// The requested quality, or `None` if the cell holds no valid request.
    pub fn quality(&self) -> Option<Quality> {
        u8::try_from(self.quality)
            .ok()
            .and_then(|q| Quality::new(q).ok())
    }

    pub fn from_receiver(&self) -> bool {
        self.from_receiver == 1
    }

    pub fn updated_ns(&self) -> u64 {
        self.updated_ns
    }
}

/// Names of the statistics every service publishes in its `stats.<service>` cell, so
/// `keymash status` can show any stage without knowing it.
pub mod stat {
    /// Gauge: the stage's main rate, in [`super::Service::rate_unit`] per second.
    pub const RATE: &str = "rate";
    /// Counter: frames or packets the stage lost or discarded.
    pub const DROPPED: &str = "dropped";
}

/// Which PC a service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Sender,
    Receiver,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        })
    }
}

/// The eight processes of the pipeline, in data-flow order on each PC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Capture,
    DelayBuffer,
    Encoder,
    NetTx,
    NetRx,
    Display,
    MashInput,
    LossController,
}

impl Service {
    pub const ALL: [Service; 8] = [
        Service::Capture,
        Service::DelayBuffer,
        Service::Encoder,
        Service::NetTx,
        Service::NetRx,
        Service::Display,
        Service::MashInput,
        Service::LossController,
    ];

    /// Short name, as in `keymash status` and the stats cell's name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Capture => "capture",
            Service::DelayBuffer => "delay-buffer",
            Service::Encoder => "encoder",
            Service::NetTx => "net-tx",
            Service::NetRx => "net-rx",
            Service::Display => "display",
            Service::MashInput => "mash-input",
            Service::LossController => "loss-controller",
        }
    }

    /// The binary and its systemd unit.
    pub fn binary(self) -> &'static str {
        match self {
            Service::Capture => "keymash-capture",
            Service::DelayBuffer => "keymash-delay-buffer",
            Service::Encoder => "keymash-encoder",
            Service::NetTx => "keymash-net-tx",
            Service::NetRx => "keymash-net-rx",
            Service::Display => "keymash-display",
            Service::MashInput => "keymash-mash-input",
            Service::LossController => "keymash-loss-controller",
        }
    }

    pub fn role(self) -> Role {
        match self {
            Service::Capture | Service::DelayBuffer | Service::Encoder | Service::NetTx => {
                Role::Sender
            }
            Service::NetRx | Service::Display | Service::MashInput | Service::LossController => {
                Role::Receiver
            }
        }
    }

    /// What the stage's [`stat::RATE`] counts.
    pub fn rate_unit(self) -> &'static str {
        match self {
            Service::NetTx | Service::NetRx | Service::LossController => "packets",
            Service::MashInput => "keys",
            _ => "frames",
        }
    }

    /// Name of the cell holding this service's statistics.
    pub fn stats_cell(self) -> String {
        format!("stats.{}", self.name())
    }

    /// The segments this service creates and writes (besides its statistics cell).
    pub fn owned_segments(self) -> &'static [&'static str] {
        match self {
            Service::Capture => &[RAW_FRAMES],
            Service::DelayBuffer => &[DELAY_HOLD, DELAYED_FRAMES],
            Service::Encoder => &[PAYLOADS],
            Service::NetTx => &[QUALITY_CELL],
            Service::NetRx => &[RECEIVED_PAYLOADS],
            Service::MashInput => &[MASH_CELL],
            Service::Display | Service::LossController => &[],
        }
    }

    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_name_round_trips_and_binaries_are_prefixed() {
        for s in Service::ALL {
            assert_eq!(Service::from_name(s.name()), Some(s));
            assert_eq!(s.binary(), format!("keymash-{}", s.name()));
            assert_eq!(s.stats_cell(), format!("stats.{}", s.name()));
        }
        assert_eq!(Service::from_name("nope"), None);
    }

    #[test]
    fn cell_records_sanitise_what_they_read() {
        let garbage = MashRecord::read_from_bytes(&[0xff; 24]).unwrap();
        assert_eq!(garbage.level(), MashLevel::IDLE, "NaN must read as idle");
        let q = QualityRecord::read_from_bytes(&[0xff; 16]).unwrap();
        assert_eq!(q.quality(), None);
        let q = QualityRecord::new(Quality::new(77).unwrap(), true, 5);
        assert_eq!(q.quality().map(Quality::get), Some(77));
        assert!(q.from_receiver());
        let m = MashRecord::new(MashLevel::new(0.5).unwrap(), 3, 9, 1);
        assert_eq!(m.level().get(), 0.5);
    }

    #[test]
    fn every_pipeline_segment_has_exactly_one_owner() {
        let all = [
            RAW_FRAMES,
            DELAY_HOLD,
            DELAYED_FRAMES,
            PAYLOADS,
            QUALITY_CELL,
            RECEIVED_PAYLOADS,
            MASH_CELL,
        ];
        for name in all {
            let owners = Service::ALL
                .iter()
                .filter(|s| s.owned_segments().contains(&name))
                .count();
            assert_eq!(owners, 1, "{name}");
        }
        let owned: usize = Service::ALL.iter().map(|s| s.owned_segments().len()).sum();
        assert_eq!(owned, all.len());
    }

    #[test]
    fn a_mash_record_goes_stale_after_one_second() {
        let m = MashRecord::new(MashLevel::new(0.5).unwrap(), 3, 9, 1_000_000_000);
        assert_eq!(
            m.level_at(1_500_000_000),
            Some(MashLevel::new(0.5).unwrap())
        );
        assert_eq!(
            m.level_at(2_000_000_000),
            Some(MashLevel::new(0.5).unwrap())
        );
        assert_eq!(m.level_at(2_000_000_001), None);
        // A record from the future (clock oddities) is fresh, not stale.
        assert!(m.level_at(0).is_some());
    }

    #[test]
    fn each_pc_runs_four_services() {
        let senders = Service::ALL
            .iter()
            .filter(|s| s.role() == Role::Sender)
            .count();
        assert_eq!(senders, 4);
    }
}
